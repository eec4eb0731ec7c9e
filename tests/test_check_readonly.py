"""`cocoond check` only reads: nothing under the root changes (bytes,
mtimes, the set of paths), and it never touches cocoon's locks: it opens no
lock file, cocoon holding its lock does not delay it, and cocoon's gc taking
its locks with a non-blocking TryLock always succeeds while check runs. Its
consistent view comes from the DB files' identities around each pass."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond.cli import check as check_module
from cocoond.cli.main import main
from tests.conftest import FAULTS, file_content
from tests.test_check import check, check_human, keys


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under the root (the root too): type, size, mtime_ns and the
    bytes of files, the target of links."""
    state: dict[str, tuple[Any, ...]] = {}

    def note(path: str) -> None:
        st = os.lstat(path)
        if os.path.islink(path):
            extra: Any = os.readlink(path)
        elif os.path.isfile(path):
            extra = file_content(path)
        else:
            extra = None
        state[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, extra)

    note(str(root))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            note(os.path.join(dirpath, name))
    return state


def every_fault_tree(sim: ModuleType, root: Path) -> set[tuple[str, str]]:
    """One tree with each fault the simulator can inject, plus temp files and
    a hand-edited mismatch; returns the (kind, subject) keys it promises."""
    expected = set()
    sim.create(str(root), name="healthy")
    for fault in FAULTS:
        if fault != "corrupt-db":
            got = sim.inject(str(root), fault)
            expected.add((got["kind"], got["subject"]))
    old = time.time() - 7200
    for relpath in ("snapshot/db/.tmp-deadbeef01", "cloudimg/temp/.tmp-cafe.qcow2"):
        (root / relpath).write_bytes(b"partial")
        os.utime(root / relpath, (old, old))
        expected.add(("stale_temp", relpath))
    (root / "firecracker" / "db").mkdir(parents=True, exist_ok=True)
    (root / "firecracker" / "db" / "vms.json").write_text('{"vms": {"v": {"image_blob_ids": null}}}')
    return expected


def test_check_changes_nothing(sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = every_fault_tree(sim, root)
    before = tree_state(root)
    rc, result = check(root, capsys)
    # The missing-blob fault's image and VM cannot use the blob either.
    beside = {k for k in keys(result) if k[0] in ("image_unusable", "vm_base_missing")}
    assert rc == 2 and keys(result) - beside == expected and beside
    rc, _ = check_human(root, capsys)
    assert rc == 2
    assert tree_state(root) == before

    # And with the DB unreadable (the fail-closed paths), as a real process too.
    got = sim.inject(str(root), "corrupt-db")
    before = tree_state(root)
    rc, result = check(root, capsys)
    assert (got["kind"], got["subject"]) in keys(result)
    check_human(root, capsys)
    subprocess.run(
        [sys.executable, "-m", "cocoond", "check", "--root", str(root), "--json"],
        capture_output=True,
        timeout=60,
    )
    assert tree_state(root) == before


def test_check_does_not_create_the_lock_file(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = sim.inject(str(root), "orphan-dir")  # no cocoon command has taken the lock yet
    lock = root / "snapshot" / "db" / "snapshots.lock"
    assert not lock.exists()
    before = tree_state(root)
    rc, result = check(root, capsys)
    assert keys(result) == {(got["kind"], got["subject"])} and rc == 1
    assert result["consistent"] is True and result["attempts"] == 1
    check_human(root, capsys)
    assert not lock.exists()
    assert tree_state(root) == before


def test_check_on_a_fresh_host_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty dir is unknown (exit 3: unmounted? mistyped?), and check
    still makes nothing there; cocoon's bare DB dirs are a fresh host."""
    root = tmp_path / "empty"
    root.mkdir()
    capsys.readouterr()
    assert main(["check", "--root", str(root), "--json"]) == 3
    assert list(root.iterdir()) == []
    (root / "snapshot" / "db").mkdir(parents=True)
    rc, result = check(root, capsys)
    assert rc == 0 and result["findings"] == []
    assert [str(p.relative_to(root)) for p in root.rglob("*")] == ["snapshot", "snapshot/db"]


# ------------------------------------------------------------------ locks
#: Every lock cocoon's gc try-locks (IndexLock of each module).
COCOON_LOCKS = (
    "snapshot/db/snapshots.lock",
    "cloudimg/db/images.lock",
    "oci/db/images.lock",
    "cloudhypervisor/db/vms.lock",
    "firecracker/db/vms.lock",
)


def make_locks(root: Path) -> list[Path]:
    """The lock files as cocoon leaves them (created 0600, never removed)."""
    locks = []
    for relpath in COCOON_LOCKS:
        lock = root / relpath
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch(mode=0o600)
        locks.append(lock)
    return locks


def try_lock(lock: Path) -> bool:
    """cocoon's gc: a non-blocking exclusive flock, released at once."""
    fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_check_runs_while_cocoon_holds_every_lock(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cocoon holding its locks (a command in flight) is no reason for check
    to wait or to say anything about locks."""
    got = sim.inject(str(root), "orphan-dir")
    fds = []
    try:
        for lock in make_locks(root):
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc, result = check(root, capsys)
        assert keys(result) == {(got["kind"], got["subject"])} and rc == 1
        assert result["consistent"] is True and result["attempts"] == 1
        # The contract's keys, plus consistent and attempts (no "lock" any more).
        assert set(result) == {"root", "snapshots", "blobs", "findings", "consistent", "attempts"}
        rc, out = check_human(root, capsys)
        assert rc == 1 and len(out.splitlines()) == 3  # status, header, one row: no note
    finally:
        for fd in fds:
            os.close(fd)


def test_gc_trylock_always_succeeds_while_check_runs(sim: ModuleType, root: Path) -> None:
    """gc aborts its whole run when a TryLock fails. A check that held a
    lock, even shared, for its scan would make some of these fail."""
    sim.populate(str(root), snapshots=3000, images=20)
    locks = make_locks(root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cocoond", "check", "--root", str(root), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    tries = failed = 0
    try:
        while proc.poll() is None:
            for lock in locks:
                tries += 1
                failed += not try_lock(lock)
    finally:
        proc.wait(timeout=120)
    assert proc.returncode in (0, 1, 2), proc.stderr.read() if proc.stderr else ""
    assert tries > len(locks)  # the loop ran while check did
    assert failed == 0, f"{failed} of {tries} TryLocks failed while check ran"


def test_check_opens_no_lock_file(sim: ModuleType, root: Path) -> None:
    """Seen by the kernel (inotify IN_OPEN on every DB dir), so no code path
    of check, its imports included, can open a `*.lock` unnoticed."""
    from watchdog.events import FileOpenedEvent, FileSystemEvent, FileSystemEventHandler
    from watchdog.observers.inotify import InotifyObserver

    sim.inject(str(root), "orphan-dir")
    sim.create(str(root), name="a", blobs=[sim.pull_image(str(root))])
    locks = make_locks(root)
    dirs = sorted({lock.parent for lock in locks})
    opened: list[str] = []

    class Record(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            opened.append(os.fsdecode(event.src_path))

    observer = InotifyObserver(timeout=0.1)
    for d in dirs:
        observer.schedule(Record(), str(d), recursive=False, event_filter=[FileOpenedEvent])
    observer.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cocoond", "check", "--root", str(root), "--json"],
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        # inotify delivers in order: once our own markers are seen, every
        # open check made has been too.
        markers = [str(d / "flush.marker") for d in dirs]
        for marker in markers:
            Path(marker).touch()
        deadline = time.monotonic() + 30
        while not set(markers) <= set(opened):
            assert time.monotonic() < deadline, "inotify never reported the markers"
            time.sleep(0.01)  # polling, with a deadline
    finally:
        observer.stop()
        observer.join(10)
    assert str(root / "snapshot/db/snapshots.json") in opened  # it does see check's opens
    assert [p for p in opened if p.endswith(".lock")] == []


# ------------------------------------------------------------ consistency
def cocoon_delete_without_waiting(sim: ModuleType, root: Path, sid: str) -> None:
    """`cocoon snapshot rm` as it runs: the data dir first, then the record
    (under cocoon's lock, which nothing of ours contends for)."""
    shutil.rmtree(sim.data_dir(str(root), sid))
    with sim.flock(sim.snapshot_lock(str(root)), blocking=False) as got:
        assert got, "check holds cocoon's lock"
        idx = sim.load_snapshots(str(root))
        name = idx["snapshots"].pop(sid)["name"]
        idx["names"].pop(name, None)
        sim.atomic_write_json(sim.snapshot_db(str(root)), idx)


def test_a_delete_during_the_pass_is_read_again_not_reported(
    sim: ModuleType, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The race a lock used to prevent: the DB is read with the record, the
    listing runs after its dir is gone. One pass alone would call that
    `missing_data_dir`; the DB's new identity sends check round again."""
    from cocoond import scan as scan_module

    sim.create(str(root), name="keep")
    victim = sim.create(str(root), name="going")
    real_read = scan_module.read_snapshot_db
    reads = []

    def read_then_cocoon_deletes(*args: Any, **kwargs: Any) -> Any:
        db = real_read(*args, **kwargs)
        reads.append(1)
        if len(reads) == 1:
            cocoon_delete_without_waiting(sim, root, victim)
        return db

    monkeypatch.setattr(scan_module, "read_snapshot_db", read_then_cocoon_deletes)
    rc, result = check(root, capsys)
    # The victim's VM still lists it (`snapshot rm` leaves snapshot_ids): info only.
    assert [f for f in result["findings"] if f["kind"] != "vm_snapshot_gone"] == [] and rc == 0
    assert result["snapshots"] == 1
    assert result["consistent"] is True and result["attempts"] == 2 == len(reads)


@pytest.mark.parametrize("relpath", ["snapshot/db/snapshots.json", "cloudimg/db/images.json"])
def test_a_db_that_changes_every_pass_is_reported_as_such(
    relpath: str,
    sim: ModuleType,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bounded: after MAX_ATTEMPTS passes check reports the last one and
    says it is not a stable view. An in-place write (same inode) counts."""
    from cocoond.scan import scan as real_scan

    sim.create(str(root), name="a", blobs=[sim.pull_image(str(root))])
    passes = []

    def scan_while_cocoon_writes(*args: Any, **kwargs: Any) -> Any:
        listing = real_scan(*args, **kwargs)
        passes.append(1)
        with open(root / relpath, "ab") as f:  # same inode, new size and mtime
            f.write(b" ")
        return listing

    monkeypatch.setattr(check_module, "scan", scan_while_cocoon_writes)
    rc, result = check(root, capsys)
    assert result["consistent"] is False
    assert result["attempts"] == check_module.MAX_ATTEMPTS == len(passes)
    assert result["findings"] == [] and rc == 0  # the findings of the last pass
    passes.clear()
    rc, out = check_human(root, capsys)
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("COCOOND OK - ")
    assert f"during each of {check_module.MAX_ATTEMPTS} passes" in lines[1]
