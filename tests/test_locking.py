"""Writes take cocoon's lock (flock(2) on snapshots.lock, file kept forever);
a held lock blocks them until a timeout, with nothing written."""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

import cocoond
from cocoond import LockTimeout, Paths
from cocoond.errors import CocoondError
from cocoond.storage.locking import exclusive_lock
from tests.conftest import SIM_CMD, run_sim

DEADLINE = 10.0
SHORT = 0.3

# Holds cocoon's lock exactly as cocoon does (cocoond.sim.flock), says so on
# stdout, and lets go when its stdin closes.
HOLDER = """
import sys
from cocoond.sim import flock
with flock(sys.argv[1]) as held:
    assert held
    print("held", flush=True)
    sys.stdin.readline()
"""


@contextmanager
def held_lock(lock: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds `lock` for the duration of the block (or until
    its stdin is closed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
        assert ready, "lock holder did not start"
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        release(proc)


def release(proc: subprocess.Popen[str]) -> None:
    if proc.stdin and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def lock_is_free(sim: ModuleType, lock: Path) -> bool:
    with sim.flock(str(lock), blocking=False) as got:
        return bool(got)


def wait_until_held(sim: ModuleType, lock: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE
    while lock_is_free(sim, lock):
        assert proc.poll() is None, "hold-lock exited early"
        assert time.monotonic() < deadline, "hold-lock never took the lock"
        time.sleep(0.01)  # polling, with a deadline


def tmp_files(paths: Paths) -> list[str]:
    return sorted(n for n in os.listdir(paths.snapshot_db_dir()) if n.startswith(".tmp-"))


def renamed(paths: Paths) -> cocoond.SnapshotDB:
    db = paths.read_snapshot_db()
    for rec in db.snapshots.values():
        rec.description = "changed by cocoond"
    return db


@pytest.fixture
def tree(root: Path, sim: ModuleType) -> Paths:
    sim.create(str(root), name="a")
    sim.create(str(root), name="b")
    return Paths(root, lock_timeout=SHORT)


# ------------------------------------------------------------ blocking
def test_write_blocks_while_the_simulator_holds_the_lock(tree: Paths, sim: ModuleType, root: Path) -> None:
    db_file, lock = tree.snapshot_db_file(), tree.snapshot_lock_file()
    before = db_file.read_bytes()
    new = renamed(tree)
    proc = subprocess.Popen([*SIM_CMD, str(root), "hold-lock", "--seconds", "120"], stdout=subprocess.DEVNULL)
    try:
        wait_until_held(sim, lock, proc)
        start = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            tree.write_snapshot_db(new)
        assert time.monotonic() - start >= SHORT * 0.9
        assert db_file.read_bytes() == before
        assert tmp_files(tree) == []
        assert info.value.path == str(lock)
        assert str(lock) in str(info.value)
    finally:
        proc.kill()
        proc.wait()
    tree.write_snapshot_db(new)
    assert db_file.read_bytes() != before
    assert {r["description"] for r in json.loads(db_file.read_bytes())["snapshots"].values()} == {
        "changed by cocoond"
    }


def test_write_waits_for_the_holder_and_then_proceeds(tree: Paths) -> None:
    db_file = tree.snapshot_db_file()
    before = db_file.read_bytes()
    new = renamed(tree)
    patient = Paths(tree.root_dir, lock_timeout=DEADLINE)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            patient.write_snapshot_db(new)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with held_lock(tree.snapshot_lock_file()) as holder:
        writer = threading.Thread(target=write)
        writer.start()
        writer.join(SHORT)
        assert writer.is_alive(), "the write did not wait for the lock"
        assert db_file.read_bytes() == before
        release(holder)
        writer.join(DEADLINE)
    assert not writer.is_alive()
    assert errors == []
    assert db_file.read_bytes() != before
    assert json.loads(db_file.read_bytes()) == json.loads(new.encode())


def test_update_blocks_without_calling_change(tree: Paths) -> None:
    before = tree.snapshot_db_file().read_bytes()
    calls: list[int] = []
    with held_lock(tree.snapshot_lock_file()) as holder:
        with pytest.raises(LockTimeout):
            tree.update_snapshot_db(lambda db: calls.append(1))
        assert calls == []
        assert tree.snapshot_db_file().read_bytes() == before
        release(holder)
        tree.update_snapshot_db(lambda db: calls.append(1))
    assert calls == [1]


def test_lock_timeout_error(tree: Paths) -> None:
    lock = tree.snapshot_lock_file()
    with held_lock(lock), pytest.raises(LockTimeout) as info:
        tree.write_snapshot_db(tree.read_snapshot_db())
    err = info.value
    assert isinstance(err, TimeoutError)
    assert isinstance(err, CocoondError)
    assert isinstance(err, cocoond.LockTimeout)
    assert err.path == str(lock)
    assert err.timeout == SHORT
    assert "nothing was written" in str(err)


def test_zero_timeout_fails_at_once_when_busy_and_succeeds_when_free(tree: Paths) -> None:
    now = Paths(tree.root_dir, lock_timeout=0)
    with held_lock(tree.snapshot_lock_file()), pytest.raises(LockTimeout):
        now.write_snapshot_db(now.read_snapshot_db())
    now.write_snapshot_db(now.read_snapshot_db())


def test_lock_is_released_after_write_and_after_errors(tree: Paths, sim: ModuleType) -> None:
    lock = tree.snapshot_lock_file()
    tree.write_snapshot_db(tree.read_snapshot_db())
    assert lock_is_free(sim, lock)

    def boom(db: cocoond.SnapshotDB) -> None:
        raise RuntimeError("change failed")

    with pytest.raises(RuntimeError):
        tree.update_snapshot_db(boom)
    assert lock_is_free(sim, lock)


def test_cocoon_operates_after_our_writes(tree: Paths, root: Path) -> None:
    tree.write_snapshot_db(renamed(tree))
    sid = run_sim(root, "create", "--name", "after").strip()
    run_sim(root, "delete", "a")
    db = tree.read_snapshot_db()
    assert db.names["after"] == sid
    assert "a" not in db.names
    assert {r.description for s, r in db.snapshots.items() if s != sid} == {"changed by cocoond"}


# ------------------------------------------------------------ the file
def test_lock_file_is_never_deleted(tree: Paths) -> None:
    lock = tree.snapshot_lock_file()
    ino = lock.stat().st_ino
    tree.write_snapshot_db(tree.read_snapshot_db())
    assert lock.stat().st_ino == ino
    tree.update_snapshot_db(lambda db: None)
    assert lock.stat().st_ino == ino
    with pytest.raises(ZeroDivisionError):
        tree.update_snapshot_db(lambda db: 1 / 0)
    assert lock.stat().st_ino == ino
    with held_lock(lock), pytest.raises(LockTimeout):
        tree.write_snapshot_db(tree.read_snapshot_db())
    assert lock.stat().st_ino == ino


def test_lock_file_created_0600_when_missing(root: Path, sim: ModuleType) -> None:
    sim.init(str(root))
    paths = Paths(root)
    lock = paths.snapshot_lock_file()
    assert not lock.exists()
    old = os.umask(0)
    try:
        paths.write_snapshot_db(cocoond.SnapshotDB())
    finally:
        os.umask(old)
    assert lock.is_file()
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert lock.stat().st_size == 0
    ino = lock.stat().st_ino
    paths.write_snapshot_db(cocoond.SnapshotDB())
    assert lock.stat().st_ino == ino


def test_exclusive_lock_directly(tmp_path: Path, sim: ModuleType) -> None:
    lock = tmp_path / "x.lock"
    with exclusive_lock(lock, timeout=SHORT):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert not lock_is_free(sim, lock)
    assert lock_is_free(sim, lock)
    assert lock.exists()


def test_exclusive_lock_times_out_against_a_holder(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with held_lock(lock):
        start = time.monotonic()
        with pytest.raises(LockTimeout), exclusive_lock(lock, timeout=SHORT):
            pytest.fail("acquired a lock another process holds")
        assert time.monotonic() - start >= SHORT * 0.9
