"""write_snapshot_db replaces the DB atomically (temp file in the same dir,
fsync, rename, fsync dir): never a partial DB, never a temp file left behind.
update_snapshot_db writes nothing when its change fails."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import cocoond
from cocoond import Paths, SnapshotDB, SnapshotRecord
from cocoond.storage.atomic import atomic_write

REAL_RENAME = os.rename
REAL_FSYNC = os.fsync
REAL_WRITE = os.write


def db_dir_entries(paths: Paths) -> list[str]:
    return sorted(os.listdir(paths.snapshot_db_dir()))


def tmp_files(paths: Paths) -> list[str]:
    return [n for n in db_dir_entries(paths) if n.startswith(".tmp-")]


@pytest.fixture
def tree(root: Path, sim: ModuleType) -> Paths:
    hex_ = sim.pull_image(str(root))
    sim.create(str(root), name="a", blobs=[hex_])
    sim.create(str(root), name="b")
    return Paths(root, lock_timeout=2)


def changed(paths: Paths) -> SnapshotDB:
    db = paths.read_snapshot_db()
    db.snapshots["NEWNEWNEWNEWNEWNEWNEWNEW22"] = SnapshotRecord("NEWNEWNEWNEWNEWNEWNEWNEW22", name="new")
    db.names["new"] = "NEWNEWNEWNEWNEWNEWNEWNEW22"
    return db


class Boom(OSError):
    pass


# ------------------------------------------------------------- success
def test_successful_write_leaves_no_temp_file(tree: Paths) -> None:
    tree.write_snapshot_db(changed(tree))
    assert db_dir_entries(tree) == ["snapshots.json", "snapshots.lock"]
    assert "new" in tree.read_snapshot_db().names
    assert stat.S_IMODE(tree.snapshot_db_file().stat().st_mode) == 0o644


def test_many_writes_leave_no_temp_file(tree: Paths) -> None:
    for i in range(20):
        db = tree.read_snapshot_db()
        db.extra["generation"] = i
        tree.write_snapshot_db(db)
    assert db_dir_entries(tree) == ["snapshots.json", "snapshots.lock"]
    assert json.loads(tree.snapshot_db_file().read_bytes())["generation"] == 19


def test_write_replaces_the_file_not_its_contents(tree: Paths) -> None:
    # A reader holding the old file keeps the old, complete DB: the new one
    # arrives by rename, never by rewriting the old inode in place.
    db_file = tree.snapshot_db_file()
    before = db_file.read_bytes()
    with open(db_file, "rb") as old:
        ino = os.fstat(old.fileno()).st_ino
        tree.write_snapshot_db(changed(tree))
        assert old.read() == before
    assert db_file.stat().st_ino != ino
    assert db_file.read_bytes() != before


def test_write_sequence_is_fsync_rename_fsync_dir(tree: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, ...]] = []

    def fsync(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind))
        REAL_FSYNC(fd)

    def rename(src: Any, dst: Any) -> None:
        events.append(("rename", os.fspath(src), os.fspath(dst)))
        REAL_RENAME(src, dst)

    monkeypatch.setattr("cocoond.storage.atomic.os.fsync", fsync)
    monkeypatch.setattr("cocoond.storage.atomic.os.rename", rename)
    tree.write_snapshot_db(changed(tree))
    monkeypatch.undo()

    assert [e[0] for e in events] == ["fsync", "rename", "fsync"]
    assert events[0] == ("fsync", "file")
    assert events[2] == ("fsync", "dir")
    _, src, dst = events[1]
    assert dst == str(tree.snapshot_db_file())
    assert os.path.dirname(src) == str(tree.snapshot_db_dir())
    assert os.path.basename(src).startswith(".tmp-")


def test_short_os_writes_still_write_everything(tree: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    def write(fd: int, data: Any) -> int:
        return REAL_WRITE(fd, bytes(data[:7]))

    db = changed(tree)
    monkeypatch.setattr("cocoond.storage.atomic.os.write", write)
    tree.write_snapshot_db(db)
    monkeypatch.undo()
    assert tree.snapshot_db_file().read_bytes() == db.encode()


def test_atomic_write_directly(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write(target, b"one\n")
    assert target.read_bytes() == b"one\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    atomic_write(target, b"two\n", mode=0o600)
    assert target.read_bytes() == b"two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["f.json"]


# ------------------------------------------------------------- failure
def _raise_boom(*args: Any, **kwargs: Any) -> Any:
    raise Boom(errno.EIO, "injected failure")


def _partial_then_enospc(fd: int, data: Any) -> int:
    # The first call writes 10 bytes, the next finds the disk full.
    if os.fstat(fd).st_size == 0:
        return REAL_WRITE(fd, bytes(data[:10]))
    raise Boom(errno.ENOSPC, "No space left on device")


def _interrupt(*args: Any, **kwargs: Any) -> Any:
    raise KeyboardInterrupt


FAILURES = {
    "rename": ("rename", _raise_boom, Boom),
    "fsync": ("fsync", _raise_boom, Boom),
    "write-midway": ("write", _partial_then_enospc, Boom),
    "fchmod": ("fchmod", _raise_boom, Boom),
    "interrupted-rename": ("rename", _interrupt, KeyboardInterrupt),
    "interrupted-fsync": ("fsync", _interrupt, KeyboardInterrupt),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failed_write_leaves_db_and_dir_untouched(
    tree: Paths, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    name, replacement, exc = FAILURES[case]
    db_file = tree.snapshot_db_file()
    before = db_file.read_bytes()
    ino = db_file.stat().st_ino
    entries = db_dir_entries(tree)
    db = changed(tree)

    monkeypatch.setattr(f"cocoond.storage.atomic.os.{name}", replacement)
    with pytest.raises(exc):
        tree.write_snapshot_db(db)
    monkeypatch.undo()

    assert db_file.read_bytes() == before
    assert db_file.stat().st_ino == ino
    assert tmp_files(tree) == []
    assert db_dir_entries(tree) == entries
    # and the next write works
    tree.write_snapshot_db(db)
    assert "new" in tree.read_snapshot_db().names
    assert tmp_files(tree) == []


@pytest.mark.parametrize("name", ["rename", "fsync"])
def test_failed_first_write_leaves_no_db(
    root: Path, sim: ModuleType, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    sim.init(str(root))
    paths = Paths(root)
    monkeypatch.setattr(f"cocoond.storage.atomic.os.{name}", _raise_boom)
    with pytest.raises(Boom):
        paths.write_snapshot_db(SnapshotDB(snapshots={"K": SnapshotRecord("K")}))
    monkeypatch.undo()
    assert not paths.snapshot_db_file().exists()
    assert tmp_files(paths) == []


def test_unencodable_db_writes_nothing(tree: Paths) -> None:
    before = tree.snapshot_db_file().read_bytes()
    db = tree.read_snapshot_db()
    db.extra["bad"] = object()
    with pytest.raises(TypeError):
        tree.write_snapshot_db(db)
    assert tree.snapshot_db_file().read_bytes() == before
    assert tmp_files(tree) == []


# ---------------------------------------------------------------- update
def test_update_change_that_raises_writes_nothing(tree: Paths) -> None:
    db_file = tree.snapshot_db_file()
    before = db_file.read_bytes()
    st_before = db_file.stat()

    def change(db: SnapshotDB) -> None:
        db.snapshots.clear()
        db.names.clear()
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        tree.update_snapshot_db(change)
    assert db_file.read_bytes() == before
    st_after = db_file.stat()
    assert (st_after.st_ino, st_after.st_mtime_ns) == (st_before.st_ino, st_before.st_mtime_ns)
    assert tmp_files(tree) == []


def test_update_change_that_adds_a_record_is_visible(tree: Paths, root: Path, sim: ModuleType) -> None:
    before = json.loads(tree.snapshot_db_file().read_bytes())
    seen: list[set[str]] = []

    def change(db: SnapshotDB) -> str:
        seen.append(set(db.names))
        db.snapshots["ADDEDADDEDADDEDADDEDADDED2"] = SnapshotRecord(
            "ADDEDADDEDADDEDADDEDADDED2", name="added", cpu=4, image_blob_ids={"c" * 64}
        )
        db.names["added"] = "ADDEDADDEDADDEDADDEDADDED2"
        return "done"

    assert tree.update_snapshot_db(change) == "done"
    assert seen == [{"a", "b"}]
    db = tree.read_snapshot_db()
    assert db.names["added"] == "ADDEDADDEDADDEDADDEDADDED2"
    assert db.snapshots["ADDEDADDEDADDEDADDEDADDED2"].image_blob_ids == {"c" * 64}
    assert cocoond.snapshot_exists(tree, "added")
    assert tree.resolve_snapshot_id("added") == "ADDEDADDEDADDEDADDEDADDED2"
    after = json.loads(tree.snapshot_db_file().read_bytes())
    for sid, rec in before["snapshots"].items():
        assert after["snapshots"][sid] == rec
    # cocoon sees it too
    assert sim.load_snapshots(str(root))["names"]["added"] == "ADDEDADDEDADDEDADDEDADDED2"
    assert tmp_files(tree) == []


def test_update_reads_the_current_db(tree: Paths, sim: ModuleType, root: Path) -> None:
    sid = sim.create(str(root), name="late")
    names: list[str] = []
    tree.update_snapshot_db(lambda db: names.extend(db.names))
    assert "late" in names
    assert tree.read_snapshot_db().names["late"] == sid


def test_update_of_a_corrupt_db_raises_and_writes_nothing(tree: Paths, sim: ModuleType, root: Path) -> None:
    sim.inject(str(root), "corrupt-db")
    before = tree.snapshot_db_file().read_bytes()
    calls: list[int] = []
    with pytest.raises(cocoond.DBError):
        tree.update_snapshot_db(lambda db: calls.append(1))
    assert calls == []
    assert tree.snapshot_db_file().read_bytes() == before
    assert tmp_files(tree) == []


def test_update_failure_in_write_leaves_db(tree: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tree.snapshot_db_file().read_bytes()
    monkeypatch.setattr("cocoond.storage.atomic.os.rename", _raise_boom)
    with pytest.raises(Boom):
        tree.update_snapshot_db(lambda db: db.names.clear())
    monkeypatch.undo()
    assert tree.snapshot_db_file().read_bytes() == before
    assert tmp_files(tree) == []
