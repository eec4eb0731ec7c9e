"""`cocoond show REF`: one snapshot, image or VM as cocoon resolves REF
(cocoond/core/resolve.py): what cocoon has on record, what is on disk, what
refers to it and what it refers to, whether restore / clone / VM create
would work now, what gc would do with it, and its open findings.

"Would it work" is never a second reading of cocoon: it is the union of the
`fails` of the subject's findings, made by the same rules (rules.py) and
the same index (reconcile.py) as `check`, with their messages as reasons.
For a snapshot the index is fed only that snapshot (its record, its data
dir, its blobs, every image and VM DB), so that `show` at 100k snapshots
costs about one parse of the DB; images and VMs get a full reconcile
without data dir contents. Takes no lock, like `check`."""

from __future__ import annotations

import dataclasses
import os
import stat
import textwrap
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from cocoond.cli.check import CannotCheck, load_for, refuse_unreadable, status_line
from cocoond.config import Config
from cocoond.core import findings as fk
from cocoond.core import gcmodel, rules
from cocoond.core.facts import BlobFile, IndexedDB, Listing, RecFacts, RefFacts
from cocoond.core.findings import Finding
from cocoond.core.reconcile import Reconciler
from cocoond.core.resolve import Match, lookup_image, resolve_ref
from cocoond.errors import DBError
from cocoond.output import json_line, printable, quoted
from cocoond.scan import (
    BLOB_DIRS,
    REF_DBS,
    fulfil,
    inspect_data_dir,
    read_recorded,
    read_vm_dirs,
    root_aliases,
    stat_blob,
    stat_boot_dir,
    stat_recorded_dir,
    trusted_for,
)
from cocoond.sizes import disk_usage
from cocoond.storage.dbfile import read_db_bytes
from cocoond.storage.records import LazyDB, decode_lazily, no_gc
from cocoond.storage.refdbs import decode_with_top
from cocoond.storage.units import human_size

KINDS = ("snapshot", "image", "vm")
WIDTH = 80
EXIT_OK, EXIT_WARNING, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 2, 3
#: The operations `show` answers for, per kind of REF.
OPERATIONS_OF: dict[str, tuple[fk.Operation, ...]] = {
    "snapshot": (fk.RESTORE, fk.CLONE),
    "image": (fk.VM_CREATE,),
    "vm": (),
}
IMAGE_DBS = {"cloudimg": "cloudimg/db/images.json", "oci": "oci/db/images.json"}
VM_DBS = {"cloud-hypervisor": "cloudhypervisor/db/vms.json", "firecracker": "firecracker/db/vms.json"}
SNAPSHOT_DB = "snapshot/db/snapshots.json"
#: Candidates listed in an ambiguity error at most.
MAX_CANDIDATES = 10


class ShowError(CannotCheck):
    """REF names nothing, or more than one thing (exit 3, one line)."""


@dataclass(slots=True)
class Shown:
    root: str
    ref: str
    match: Match
    record: dict[str, Any] | None
    disk: dict[str, Any] = field(default_factory=dict)
    refers_to: list[dict[str, Any]] = field(default_factory=list)
    referred_by: list[dict[str, Any]] = field(default_factory=list)
    gc: str = ""
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: cocoond could not see something the verdict depends on.
    unknown: str | None = None
    #: Why cocoon refuses an operation on a healthy record (not a finding:
    #: nothing is wrong), e.g. restoring a snapshot no VM lists.
    refusals: dict[str, list[str]] = field(default_factory=dict)

    def operations(self) -> dict[str, dict[str, Any]]:
        """Each operation: works, or the messages of the findings that say
        it fails, and cocoon's own refusals."""
        out: dict[str, dict[str, Any]] = {}
        for op in OPERATIONS_OF[self.match.kind]:
            reasons = [f.message for f in self.findings if op in f.fails] + self.refusals.get(op, [])
            works: bool | None = not reasons
            if self.unknown is not None and not reasons:
                works = None
            out[op] = {"works": works, "reasons": reasons}
        return out

    @property
    def exit_code(self) -> int:
        if self.unknown is not None:
            return EXIT_UNKNOWN
        return {-1: EXIT_OK, 0: EXIT_OK, 1: EXIT_WARNING, 2: EXIT_ERROR}[fk.worst(self.findings)]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "ref": self.ref,
            "kind": self.match.kind,
            "backend": self.match.backend,
            "id": self.match.id,
            "resolved_by": self.match.how,
            "record": self.record,
            "disk": self.disk,
            "refers_to": self.refers_to,
            "referred_by": self.referred_by,
            "operations": self.operations(),
            "gc": self.gc,
            "findings": [dict(f.to_dict(), fails=list(f.fails)) for f in self.findings],
            "unknown": self.unknown,
            "notes": self.notes,
        }


# ------------------------------------------------------------------ reading
def _read_db(root: str, relpath: str, max_bytes: int | None) -> tuple[Any, dict[str, Any] | DBError]:
    """A ref DB's facts (read_ref_db's: None when absent) and its document,
    from one read and one decode."""
    path = os.path.join(root, relpath)
    try:
        data = read_db_bytes(path, max_bytes)
        if data is None:
            return None, {}
        return decode_with_top(relpath, data, path)
    except DBError as exc:
        return exc, exc


def _entries(top: dict[str, Any] | DBError, table: str) -> dict[str, dict[str, Any]]:
    if isinstance(top, DBError):
        return {}
    return {k: v for k, v in (top.get(table) or {}).items() if isinstance(v, dict)}


def _image_hexes(backend: str, entry: Mapping[str, Any]) -> list[str]:
    """DigestHexes (cloudimg/image.go:52, oci/image.go:73)."""
    if backend == "oci":
        return [str(layer.get("digest", "")).partition(":")[2] for layer in entry.get("layers") or ()]
    return [str(entry.get("content_sum", "")).partition(":")[2]]


@dataclass(slots=True)
class _World:
    """The image, VM and CNI DBs as cocoon's commands read them, each read
    and decoded once: the records to show, and the index's ref DBs."""

    images: dict[str, dict[str, dict[str, Any]]]
    vms: dict[str, dict[str, dict[str, Any]]]
    vm_names: dict[str, dict[str, str]]
    errors: dict[str, DBError]
    #: VM IDs whose record is null: cocoon's prefix match walks them too.
    vm_nulls: dict[str, frozenset[str]] = field(default_factory=dict)
    ref_dbs: dict[str, Any] = field(default_factory=dict)

    def blob_users(self) -> dict[str, list[str]]:
        """hex -> "cloudimg <ref>", "oci <ref>", "vm <id>" that name it."""
        out: dict[str, list[str]] = {}
        for backend, entries in self.images.items():
            for ref, entry in entries.items():
                for hex_ in _image_hexes(backend, entry):
                    out.setdefault(hex_, []).append(f"image {ref}")
        for entries in self.vms.values():
            for vm_id, vm in entries.items():
                for hex_ in vm.get("image_blob_ids") or ():
                    out.setdefault(hex_, []).append(f"vm {vm_id}")
        return out


def _read_world(root: str, max_bytes: int | None) -> _World:
    world = _World({}, {}, {}, {})
    tops: dict[str, dict[str, Any] | DBError] = {}
    for relpath in REF_DBS:
        facts, tops[relpath] = _read_db(root, relpath, max_bytes)
        if facts is not None:
            world.ref_dbs[relpath] = facts
        if isinstance(facts, DBError):
            world.errors[relpath] = facts
    for backend, relpath in IMAGE_DBS.items():
        world.images[backend] = _entries(tops[relpath], "images")
    for backend, relpath in VM_DBS.items():
        top = tops[relpath]
        world.vms[backend] = _entries(top, "vms")
        world.vm_names[backend] = {} if isinstance(top, DBError) else dict(top.get("names") or {})
        if not isinstance(top, DBError):
            world.vm_nulls[backend] = frozenset(k for k, v in (top.get("vms") or {}).items() if v is None)
    return world


# ---------------------------------------------------------------- resolving
def resolve(
    ref: str,
    kind: str | None,
    world: _World,
    snapshots: _Snapshots | DBError | None,
    orphan_hint: str | Callable[[], str] = "",
) -> Match:
    """The one record REF names among the kinds allowed, as cocoon resolves it."""
    found: list[Match] = []
    if kind in (None, "snapshot"):
        if isinstance(snapshots, DBError):
            if kind == "snapshot":
                raise ShowError(f"{ref}: cannot resolve: {snapshots} (cocoon cannot either)")
        elif snapshots is not None:
            found += resolve_ref(
                "snapshot", "snapshot", snapshots.records.keys(), snapshots.names, ref, snapshots.null_ids
            )
    if kind in (None, "image"):
        for backend, entries in world.images.items():
            ids = {
                k: str(v.get("manifest_digest" if backend == "oci" else "content_sum", ""))
                for k, v in entries.items()
            }
            found += lookup_image(backend, ids, ref)
    if kind in (None, "vm"):
        for backend, entries in world.vms.items():
            found += resolve_ref(
                "vm", backend, entries.keys(), world.vm_names[backend], ref, world.vm_nulls.get(backend, ())
            )
    if not found:
        # A DB cocoon cannot decode resolves nothing, for cocoon either: say which.
        blind = [str(snapshots)] if isinstance(snapshots, DBError) and kind in (None, "snapshot") else []
        for relpath, error in sorted(world.errors.items()):
            looked = (
                "image" if relpath in IMAGE_DBS.values() else "vm" if relpath in VM_DBS.values() else None
            )
            if looked is not None and kind in (None, looked):
                blind.append(str(error))
        what = kind or "snapshot, image or VM"
        unsure = f"; cannot look in {'; '.join(blind)}" if blind else ""
        hint = orphan_hint() if callable(orphan_hint) else orphan_hint
        raise ShowError(f"{ref}: no {what} by that ID, name, ref or prefix{hint}{unsure}")
    if len(found) > 1:
        listed = ", ".join(f"{m.kind} {m.id} ({m.backend}, by {m.how})" for m in found[:MAX_CANDIDATES])
        more = f" and {len(found) - MAX_CANDIDATES} more" if len(found) > MAX_CANDIDATES else ""
        raise ShowError(f"{ref}: ambiguous, matches {listed}{more}; give more of it or --kind")
    return found[0]


# ------------------------------------------------------------------- disk
def _dir_entries(path: str) -> dict[str, Any]:
    """A directory as `ls -l` and `du` would give it (not followed if a link)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"path": path, "exists": False}
    except OSError as exc:
        return {"path": path, "exists": None, "error": exc.strerror or str(exc)}
    out: dict[str, Any] = {"path": path, "exists": True, "type": _type(st.st_mode)}
    if not stat.S_ISDIR(st.st_mode):
        return out
    entries = []
    try:
        with os.scandir(path) as it:
            for e in sorted(it, key=lambda e: e.name):
                est = e.stat(follow_symlinks=False)
                entries.append(
                    {
                        "name": e.name,
                        "type": _type(est.st_mode),
                        "size": est.st_size,
                        "bytes": disk_usage(e.path).bytes,
                    }
                )
    except OSError as exc:
        out["error"] = exc.strerror or str(exc)
    out["entries"] = entries
    out["bytes"] = disk_usage(path).bytes
    return out


def _type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file" if stat.S_ISREG(mode) else "other"


def _blob_facts(root: str, hex_: str, users: list[str]) -> dict[str, Any]:
    files = []
    for blob_dir, suffix in BLOB_DIRS:
        blob = stat_blob(root, f"{blob_dir}/{hex_}{suffix}")
        if blob is not None:
            files.append({"path": blob.relpath, "usable": blob.usable, "bytes": blob.disk_bytes})
    boot = stat_boot_dir(root, hex_)
    out: dict[str, Any] = {"blob": hex_, "files": files, "named_by": users}
    if boot is not None:
        out["boot_dir"] = {"path": f"oci/boot/{hex_}", "bytes": boot}
    return out


# ------------------------------------------------------------------- show
def show(config: Config, ref: str, kind: str | None = None) -> Shown:
    """What `cocoond show REF` prints, as data. The cyclic collector is
    paused throughout: the decoded DBs hold no cycle, and its passes over
    them were a tenth of show's CPU at 100k snapshots."""
    with no_gc():
        return _show(config, ref, kind)


def _show(config: Config, ref: str, kind: str | None) -> Shown:
    root = os.path.abspath(config.root_dir)
    if not os.path.isdir(root):
        raise CannotCheck(f"{root}: no such directory (is COCOON_ROOT_DIR or --root right?)")
    max_bytes = config.limits.max_db_bytes
    world = _read_world(root, max_bytes)
    refuse_unreadable(root, {}, list(world.errors.values()))
    index = _index(config, root)
    snapshots = _read_snapshots(root, ref, max_bytes, index) if kind in (None, "snapshot") else None
    if isinstance(snapshots, DBError):
        refuse_unreadable(root, {}, [snapshots])
    # The hint lists snapshot/localfile/ (100k names): only for an unknown REF.
    match = resolve(ref, kind, world, snapshots, lambda: _orphan_hint(root, ref))
    if match.kind == "snapshot":
        assert isinstance(snapshots, _Snapshots)
        return _show_snapshot(config, root, ref, match, snapshots, index, world)
    return _show_other(config, root, ref, match, world)


def _orphan_hint(root: str, ref: str) -> str:
    """cocoon resolves records only; a record-less data dir is worth a word."""
    if len(ref) < 3:
        return ""
    try:
        names = [n for n in os.listdir(os.path.join(root, rules.LOCALFILE)) if n.startswith(ref)]
    except OSError:
        return ""
    if len(names) != 1:
        return ""
    return f" (snapshot/localfile/{names[0]} exists without a record: see `cocoond check`, orphan_data_dir)"


@dataclass(slots=True)
class _Snapshots:
    """snapshots.json as `show` reads it: proved Go-valid as a whole, every
    ID (to resolve REF), the names and null IDs; a record's facts and raw
    form made only for the few records shown (at 100k records, making every
    record's facts was a third of `show`'s CPU)."""

    records: Mapping[str, RecFacts]
    null_ids: frozenset[str]
    names: dict[str, str]
    #: The record as the file has it (None: not kept).
    raw: Callable[[str], dict[str, Any] | None]
    #: (ID, image_blob_ids) of every record naming a blob.
    blob_sets: Callable[[], Iterable[tuple[str, Collection[str]]]]


class _LazyFacts(Mapping[str, RecFacts]):
    """A LazyDB's records as facts, each made the first time it is read."""

    def __init__(self, db: LazyDB, index: Reconciler) -> None:
        self._db = db
        self._index = index
        self._made: dict[str, RecFacts] = {}

    def __getitem__(self, sid: str) -> RecFacts:
        made = self._made.get(sid)
        if made is None:
            made = self._made[sid] = self._index.record_facts(sid, self._db.fields(sid))
        return made

    def __contains__(self, sid: object) -> bool:
        return isinstance(sid, str) and self._db.has(sid)

    def __iter__(self) -> Iterator[str]:
        return self._db.ids()

    def __len__(self) -> int:
        return len(self._db.raws) - len(self._db.null_ids)


def _read_snapshots(
    root: str, ref: str, max_bytes: int | None, index: Reconciler
) -> _Snapshots | DBError | None:
    path = os.path.join(root, SNAPSHOT_DB)
    try:
        data = read_db_bytes(path, max_bytes)
    except DBError as exc:
        return exc
    if data is None:
        return None
    lazy = decode_lazily(data, path)
    if lazy is not None:
        return _Snapshots(
            _LazyFacts(lazy, index),
            frozenset(lazy.null_ids),
            lazy.names,
            lambda sid: lazy.raw(sid) if lazy.has(sid) else None,
            lazy.blobs,
        )
    # Not as Go writes it (or not valid): the exact decode, every record's
    # facts made, the raw records kept that REF may resolve to (by ID,
    # prefix or name).
    db, kept = index.decode_db_keeping(data, path, lambda sid, name: sid.startswith(ref) or name == ref)
    if isinstance(db, DBError):
        return db
    records = db.records
    return _Snapshots(
        records, db.null_ids, db.names, kept.get, lambda: ((sid, f.blobs) for sid, f in records.items())
    )


def _index(config: Config, root: str) -> Reconciler:
    return Reconciler(
        root,
        pending_stale_seconds=config.thresholds.pending_stale_seconds,
        temp_stale_seconds=config.thresholds.temp_stale_seconds,
        orphan_quiet_seconds=config.watch.settle_seconds,
        root_aliases=root_aliases(root),
    )


def _show_snapshot(
    config: Config,
    root: str,
    ref: str,
    match: Match,
    db: _Snapshots,
    index: Reconciler,
    world: _World,
) -> Shown:
    """The index fed this snapshot only: its record (and the records its
    name points at, so names read as they do in the whole DB), its data dir,
    its blobs, every image and VM DB. Its findings are then check's."""
    sid = match.id
    rec = db.records[sid]
    # One pass over the DB's names (100k at 100k snapshots); all uses below read `names`.
    names = {n: i for n, i in db.names.items() if i == sid or n in (rec.name, sid)}
    around = {sid} | {i for n, i in names.items() if n in (rec.name, sid) and i in db.records}
    mini = IndexedDB({i: db.records[i] for i in around}, db.null_ids & {sid}, names)
    blobs: dict[str, BlobFile] = {}
    for hex_ in rec.blobs:
        for blob_dir, suffix in BLOB_DIRS:
            blob = stat_blob(root, f"{blob_dir}/{hex_}{suffix}")
            if blob is not None:
                blobs[blob.relpath] = blob
    boot = {h: b for h in rec.blobs if (b := stat_boot_dir(root, h)) is not None}
    state = inspect_data_dir(root, sid, contents=True, activity=False, run_dir=config.run_dir)
    recorded = {rec.recorded: stat_recorded_dir(rec.recorded)} if rec.recorded else {}
    subjects = {sid, rec.name, *rec.blobs, "gc", rules.DATA_DIRS} - {""}
    listing = Listing(
        snapshot_db=mini,
        ref_dbs={relpath: _claims_about(facts, sid, subjects) for relpath, facts in world.ref_dbs.items()},
        data_dirs={sid: state} if state is not None else {},
        recorded_dirs=recorded,
        recorded_contents=read_recorded(recorded, trusted_for(root, config.run_dir)),
        blobs=blobs,
        boot_dirs=boot,
        vm_dirs=read_vm_dirs(config.run_dir, config.log_dir),
    )
    index.apply_listing(listing)
    fulfil(root, index, index.take_wants(), config.run_dir)
    now = time.time()
    index.evaluate(now)
    found = [f for f in index.findings() if f.key[1] in subjects]
    # Only a missing_blob needs the whole DB's users of the blob (a walk of every record).
    missing = [f.subject for f in found if f.kind == fk.MISSING_BLOB]
    users = _snapshot_users(db, missing) if missing else {}
    found = [_full_count(f, index, db, users) for f in found]
    shown = Shown(root, ref, match, db.raw(sid), findings=found)
    if any(f.key == (fk.DIR_UNREADABLE, rules.DATA_DIRS) for f in found):
        shown.unknown = "cocoond cannot read this snapshot's data dir: whether restore works is unknown"
    canonical = os.path.join(root, rules.LOCALFILE, sid)
    shown.disk = {"data_dir": _dir_entries(canonical)}
    if rec.recorded is not None:
        shown.disk["recorded_data_dir"] = _dir_entries(rec.recorded) if rec.recorded else {"path": ""}
        shown.notes.append(
            "restore reads the recorded data_dir; `cocoon snapshot rm` and gc use snapshot/localfile/<ID>"
        )
    blob_users = world.blob_users()
    shown.refers_to = [_blob_facts(root, h, blob_users.get(h, [])) for h in sorted(rec.blobs)]
    shown.referred_by = [{"name": n} for n in sorted(n for n, i in names.items() if i == sid)]
    for backend, entries in world.vms.items():
        for vm_id, vm in sorted(entries.items()):
            if sid in (vm.get("snapshot_ids") or {}):
                shown.referred_by.append(
                    {"vm": vm_id, "backend": backend, "name": (vm.get("config") or {}).get("name")}
                )
    if not any("vm" in r for r in shown.referred_by):
        shown.refusals[fk.RESTORE] = [
            "no VM lists this snapshot in its snapshot_ids, and `cocoon vm restore` takes only a VM's own "
            "snapshots (cmd/vm/run.go:167-169): it can be cloned, not restored"
        ]
    shown.gc = _snapshot_gc(rec, now, index.gc_blocker)
    seed = db.names.get(ref)
    if match.how != "name" and seed is not None and seed in db.records and seed != sid:
        shown.notes.append(
            f"cocoon resolves {quoted(ref)} by ID first; the storage API (name first, as the seed) "
            f"would pick {seed}"
        )
    return shown


def _claims_about(facts: Any, sid: str, subjects: set[str]) -> Any:
    """A VM DB's facts with only the VMs that can bear on this snapshot's
    findings: those listing it (restore's VM: the first, as before) and any
    whose ID is a subject shown. The index judges each VM it is fed against
    the one-snapshot index (8,000 verdicts at 100k, a third of `show`'s
    CPU), and every other VM's findings were filtered out anyway."""
    if not isinstance(facts, RefFacts) or not facts.claims:
        return facts
    return facts._replace(
        claims=tuple(c for c in facts.claims if sid in c.snapshot_ids or c.vm_id in subjects)
    )


def _snapshot_users(db: _Snapshots | IndexedDB, hexes: Iterable[str]) -> dict[str, set[str]]:
    wanted = set(hexes)
    users: dict[str, set[str]] = {h: set() for h in wanted}
    if wanted:
        if isinstance(db, _Snapshots):
            pairs = db.blob_sets()
        else:
            pairs = ((sid, facts.blobs) for sid, facts in db.records.items())
        for sid, blobs in pairs:
            for hex_ in wanted.intersection(blobs):
                users[hex_].add(sid)
    return users


def _full_count(f: Finding, index: Reconciler, db: _Snapshots, users: Mapping[str, set[str]]) -> Finding:
    """missing_blob names how many snapshots use the blob: the index was fed
    one snapshot, so ask the same rule with the whole DB's users."""
    if f.kind != fk.MISSING_BLOB or f.subject not in users:
        return f
    sids = users[f.subject]
    first = min(sids) if sids else None
    again = rules.missing_blob(
        f.subject,
        sids,
        index.other_refs.get(f.subject, 0),
        index.blob_files.get(f.subject, {}),
        db.records.get(first) if first else None,
        index.root,
    )
    return dataclasses.replace(again, fails=f.fails) if again is not None else f


def _snapshot_gc(rec: RecFacts, now: float, blocker: gcmodel.Blocker | None) -> str:
    if rec.pending and gcmodel.pending_dropped(rec, now):
        said = "`cocoon gc` drops this pending record (over 24 h old) and deletes snapshot/localfile/<ID>"
    elif rec.pending:
        said = "`cocoon gc` keeps it while it is pending for less than 24 h"
    else:
        said = "`cocoon gc` never deletes a committed snapshot or its data dir"
    return said + rules.gc_note(blocker)


def _show_other(config: Config, root: str, ref: str, match: Match, world: _World) -> Shown:
    """An image or VM: one full reconcile (no data dir contents), its findings."""
    loaded = load_for(config, contents=False)
    index = loaded.index
    now = time.time()
    index.evaluate(now)
    blob_users = world.blob_users()
    if match.kind == "image":
        entry = world.images[match.backend][match.id]
        hexes = [h for h in _image_hexes(match.backend, entry) if h]
        subjects = {match.id, *hexes, "gc"}
        shown = Shown(root, ref, match, entry)
        shown.refers_to = [_blob_facts(root, h, blob_users.get(h, [])) for h in hexes]
        users = _snapshot_users(_indexed(index), hexes)
        for hex_ in hexes:
            for sid in sorted(users.get(hex_, ()))[:MAX_CANDIDATES]:
                shown.referred_by.append({"snapshot": sid, "blob": hex_})
            shown.referred_by += [
                {"vm": u[3:], "blob": hex_} for u in blob_users.get(hex_, []) if u.startswith("vm ")
            ]
        shown.gc = "`cocoon gc` keeps the blobs an image in the DB references" + rules.gc_note(
            index.gc_blocker
        )
    else:
        vm = world.vms[match.backend][match.id]
        subjects = {match.id, "gc", *(vm.get("image_blob_ids") or ())}
        shown = Shown(root, ref, match, vm)
        shown.disk = {
            "run_dir": _dir_entries(vm.get("run_dir") or ""),
            "log_dir": _dir_entries(vm.get("log_dir") or ""),
        }
        shown.refers_to = [
            _blob_facts(root, h, blob_users.get(h, [])) for h in sorted(vm.get("image_blob_ids") or ())
        ]
        for sid in sorted(vm.get("snapshot_ids") or ()):
            shown.refers_to.append({"snapshot": sid, "exists": sid in index.records})
        facts = index.ref_facts.get(VM_DBS[match.backend])
        stuck = facts.creating.get(match.id) if facts is not None else None
        if stuck is not None and gcmodel.creating_dropped(stuck.updated, now):
            shown.gc = "`cocoon gc` drops this record (creating for over 24 h) with its run and log dirs"
        else:
            shown.gc = "`cocoon gc` keeps a VM that has a record"
        shown.gc += rules.gc_note(index.gc_blocker)
    shown.findings = [f for f in index.findings() if f.key[1] in subjects]
    return shown


def _indexed(index: Reconciler) -> IndexedDB:
    return IndexedDB(index.records, index.null_ids, {})


# ------------------------------------------------------------------ output
def write_json(shown: Shown, out: TextIO) -> None:
    out.write(json_line(shown.to_json()))


def write_human(shown: Shown, out: TextIO) -> None:
    """First line in the monitoring-plugin form `check` uses (CONTRACT §4:
    show's exit codes follow that convention, so its status word does too:
    CRITICAL for exit 2), then the details, wrapped at 80 columns."""
    m = shown.match
    verdicts = ", ".join(
        f"{op} {({True: 'works', False: 'FAILS', None: 'unknown'})[v['works']]}"
        for op, v in shown.operations().items()
    )
    summary = f"{m.kind} {m.id} ({m.backend}; {shown.ref} resolved by {m.how})" + (
        f": {verdicts}" if verdicts else ""
    )
    out.write(status_line(shown.exit_code, summary) + "\n")
    if shown.record is not None:
        out.write("record:\n")
        for key in sorted(shown.record):
            value = shown.record[key]
            if isinstance(value, dict | list):
                value = f"{len(value)} entr{'y' if len(value) == 1 else 'ies'}" if value else "none"
            _wrapped(out, f"{key}: {printable(str(value))}", "  ", "    ")
    for label, d in shown.disk.items():
        _write_dir(out, label, d)
    if shown.refers_to:
        out.write("refers to:\n")
        for r in shown.refers_to:
            for line in _ref_lines(r):
                _wrapped(out, line, "  ", "      ")
    if shown.referred_by:
        out.write("referred by:\n")
        for r in shown.referred_by:
            out.write(
                "  " + ", ".join(f"{k} {printable(str(v))}" for k, v in r.items() if v is not None) + "\n"
            )
    for op, verdict in shown.operations().items():
        works = verdict["works"]
        word = {True: "works", False: "FAILS", None: "unknown"}[works]
        out.write(f"{op}: {word}\n")
        for reason in verdict["reasons"]:
            _wrapped(out, printable(reason), "  - ", "    ")
    _wrapped(out, f"gc: {printable(shown.gc)}", "", "    ")
    if shown.unknown:
        out.write(f"unknown: {printable(shown.unknown)}\n")
    for note in shown.notes:
        out.write(f"note: {printable(note)}\n")
    out.write(f"findings: {len(shown.findings) or 'none'}\n")
    for f in shown.findings:
        _wrapped(
            out, f"{f.severity.upper()} {f.kind} {printable(f.subject)}: {printable(f.message)}", "  ", "    "
        )


def _write_dir(out: TextIO, label: str, d: Mapping[str, Any]) -> None:
    path = printable(d.get("path") or "(none)")
    if not d.get("exists"):
        out.write(f"{label}: {path}: {'missing' if d.get('exists') is False else d.get('error', 'none')}\n")
        return
    size = f", {human_size(d['bytes'])}" if "bytes" in d else ""
    out.write(f"{label}: {path} ({d['type']}{size})\n")
    for e in d.get("entries", ()):
        size, used = human_size(e["size"]), human_size(e["bytes"])
        out.write(f"  {printable(e['name']):<40} {e['type']:<7} {size:>8} {used:>8}\n")


def _ref_lines(r: Mapping[str, Any]) -> list[str]:
    if "snapshot" in r:
        return [f"snapshot {r['snapshot']}" + ("" if r["exists"] else " (no such snapshot)")]
    hex_ = r["blob"]
    lines = [f"blob {hex_[:12]}" + ("" if r["files"] else ": no blob file")]
    for f in r["files"]:
        short = f["path"].replace(hex_, hex_[:12] + "...")
        lines.append(f"  {short} {human_size(f['bytes'])}{'' if f['usable'] else ' (UNUSABLE)'}")
    if "boot_dir" in r:
        lines.append(f"  oci/boot/{hex_[:12]}.../ {human_size(r['boot_dir']['bytes'])}")
    if r["named_by"]:
        lines.append(f"  named by {', '.join(printable(n) for n in r['named_by'])}")
    return lines


def _wrapped(out: TextIO, text: str, first: str, rest: str) -> None:
    """One item, wrapped to 80 columns (long words, such as paths, stay whole)."""
    out.write(
        textwrap.fill(
            text,
            WIDTH,
            initial_indent=first,
            subsequent_indent=rest,
            break_on_hyphens=False,
            break_long_words=False,
        )
        + "\n"
    )
