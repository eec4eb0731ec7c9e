"""Benchmark trees: built with the project's simulator (`python -m cocoond.sim
ROOT populate`), cached under the work dir.

A tree is keyed by (snapshots, images, seed) and lives at
``WORKDIR/trees/s<N>-i<I>-seed<S>/root``. ``meta.json`` beside ``root`` is written
only once populate has finished, so an interrupted build is never reused. Records
store their data dir as an absolute path, which is why a tree is built in place
and never moved or copied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

SIM_CMD = (sys.executable, "-m", "cocoond.sim")


def sim() -> ModuleType:
    """The simulator's Python API (the benchmarks drive it in-process where
    a step must be timed, e.g. a DB rewrite)."""
    from cocoond import sim as cocoond_sim

    return cocoond_sim


def log(msg: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass
class Tree:
    snapshots: int
    images: int
    seed: int
    base: Path  # WORKDIR/trees/<key>

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def meta(self) -> Path:
        return self.base / "meta.json"

    @property
    def db_file(self) -> Path:
        return self.root / "snapshot" / "db" / "snapshots.json"

    @property
    def localfile(self) -> Path:
        return self.root / "snapshot" / "localfile"

    @property
    def stash(self) -> Path:
        """Where the daemon benchmark keeps copies of the data dirs it
        removes, to put them back exactly (same filesystem, outside the root)."""
        return self.base / "stash"

    def data_dir(self, sid: str) -> Path:
        return self.localfile / sid

    def load_db(self) -> dict[str, Any]:
        with open(self.db_file, "rb") as f:
            db: dict[str, Any] = json.loads(f.read())
        return db


def tree_key(snapshots: int, images: int, seed: int) -> str:
    return f"s{snapshots}-i{images}-seed{seed}"


def inconsistency(tree: Tree) -> str | None:
    """A stdlib check that the cached tree is still what populate made: every
    committed record has its data dir (at the recorded path), every data dir has
    a record, nothing pending, the expected count. None when consistent."""
    try:
        db = tree.load_db()
    except (OSError, ValueError) as e:
        return f"snapshot DB unreadable: {e}"
    recs = db.get("snapshots") or {}
    if len(recs) != tree.snapshots:
        return f"{len(recs)} records, expected {tree.snapshots}"
    try:
        with os.scandir(tree.localfile) as it:
            dirs = {e.name for e in it if e.is_dir()}
    except OSError as e:
        return f"cannot list {tree.localfile}: {e}"
    for sid, rec in recs.items():
        if rec.get("pending"):
            return f"record {sid} is pending"
        if rec.get("data_dir") != str(tree.data_dir(sid)):
            return f"record {sid} data_dir {rec.get('data_dir')!r} is not under this tree"
    missing = len(set(recs) - dirs)
    orphans = len(dirs - set(recs))
    if missing or orphans:
        return f"{missing} missing data dirs, {orphans} orphan data dirs"
    return None


def populate(tree: Tree) -> float:
    """Build the tree with `python -m cocoond.sim ROOT populate` (a separate
    process, as cocoon is one). Returns the seconds it took."""
    if tree.base.exists():
        shutil.rmtree(tree.base)
    tree.base.mkdir(parents=True)
    t0 = time.perf_counter()
    done = subprocess.run(
        [
            *SIM_CMD,
            str(tree.root),
            "populate",
            "--snapshots",
            str(tree.snapshots),
            "--images",
            str(tree.images),
            "--seed",
            str(tree.seed),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(
            f"cocoond.sim populate failed (exit {done.returncode}): {done.stderr.strip()[-800:]}"
        )
    tree.meta.write_text(
        json.dumps(
            {
                "snapshots": tree.snapshots,
                "images": tree.images,
                "seed": tree.seed,
                "populate_seconds": round(took, 3),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        + "\n"
    )
    return took


def get_tree(workdir: Path, snapshots: int, images: int, seed: int, fresh: bool = False) -> Tree:
    """The cached tree for (snapshots, images, seed), built when absent,
    incomplete, inconsistent, or when `fresh` is set."""
    tree = Tree(snapshots, images, seed, workdir.resolve() / "trees" / tree_key(snapshots, images, seed))
    if not fresh and tree.meta.is_file():
        problem = inconsistency(tree)
        if problem is None:
            log(f"tree {tree.base.name}: cached")
            return tree
        log(f"tree {tree.base.name}: cached copy is inconsistent ({problem}); rebuilding")
    log(f"tree {tree.base.name}: populating ...")
    took = populate(tree)
    log(f"tree {tree.base.name}: populated in {took:.1f} s")
    problem = inconsistency(tree)
    if problem is not None:
        raise RuntimeError(f"freshly populated tree {tree.root} is inconsistent: {problem}")
    return tree


def stash_copies(tree: Tree, sids: list[str]) -> None:
    """Copy these data dirs to the stash (sparse files kept sparse), before
    the benchmark removes them, so that `restore` can put back exactly what
    was there: a hypervisor's own files, sparse disks and all."""
    s = sim()
    for sid in sids:
        copy = tree.stash / sid
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir(parents=True)
        for entry in os.scandir(tree.data_dir(sid)):
            s.FileSpec.read(entry.path).write(str(copy))


def restore(tree: Tree, removed: list[str], orphans: list[str]) -> None:
    """Undo the daemon benchmark's damage: move removed data dirs back from
    the stash (one rename each), delete orphan dirs. Idempotent."""
    for sid in removed:
        if (tree.stash / sid).is_dir() and not tree.data_dir(sid).exists():
            os.rename(tree.stash / sid, tree.data_dir(sid))
    for sid in orphans:
        shutil.rmtree(tree.data_dir(sid), ignore_errors=True)
