"""Where cocoon keeps things under its root, and the snapshot DB operations
other tools (a registry's push and pull) build on."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cocoond.errors import CocoondError, DBError, SnapshotNotFound
from cocoond.storage.atomic import atomic_write
from cocoond.storage.dbfile import read_db_bytes
from cocoond.storage.locking import DEFAULT_LOCK_TIMEOUT, exclusive_lock
from cocoond.storage.records import SnapshotDB, decode_snapshot_db

DEFAULT_ROOT_DIR = "/data01/cocoon"
ROOT_ENV = "COCOON_ROOT_DIR"
#: The hypervisor backends whose VM DBs can pin blobs.
VM_BACKENDS = ("cloudhypervisor", "firecracker")
#: Shortest ID prefix `resolve_snapshot_id` accepts, as cocoon's CLI.
MIN_PREFIX = 3

T = TypeVar("T")


def default_root() -> str:
    """`COCOON_ROOT_DIR` when set and non-empty, else `DEFAULT_ROOT_DIR`."""
    return os.environ.get(ROOT_ENV) or DEFAULT_ROOT_DIR


class Paths:
    """Cocoon's layout under one root. Pure path arithmetic, except for the
    DB methods, which read or write snapshots.json."""

    def __init__(
        self, root_dir: str | os.PathLike[str] | None = None, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> None:
        # None or "" is the default root, as the seed's NewPaths("").
        self.root_dir = (os.fspath(root_dir) if root_dir is not None else "") or default_root()
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"Paths({self.root_dir!r})"

    def _p(self, *parts: str) -> Path:
        return Path(self.root_dir, *parts)

    # -- snapshot module
    def snapshot_db_dir(self) -> Path:
        return self._p("snapshot", "db")

    def snapshot_db_file(self) -> Path:
        return self._p("snapshot", "db", "snapshots.json")

    def snapshot_lock_file(self) -> Path:
        return self._p("snapshot", "db", "snapshots.lock")

    def snapshot_localfile_dir(self) -> Path:
        return self._p("snapshot", "localfile")

    def snapshot_data_dir(self, snapshot_id: str) -> Path:
        return self._p("snapshot", "localfile", snapshot_id)

    # -- images
    def cloudimg_blob_dir(self) -> Path:
        return self._p("cloudimg", "blobs")

    def cloudimg_blob_file(self, hex_: str) -> Path:
        return self._p("cloudimg", "blobs", hex_ + ".qcow2")

    def cloudimg_db_file(self) -> Path:
        return self._p("cloudimg", "db", "images.json")

    def cloudimg_lock_file(self) -> Path:
        return self._p("cloudimg", "db", "images.lock")

    def cloudimg_temp_dir(self) -> Path:
        return self._p("cloudimg", "temp")

    def oci_blob_dir(self) -> Path:
        return self._p("oci", "blobs")

    def oci_blob_file(self, hex_: str) -> Path:
        return self._p("oci", "blobs", hex_ + ".erofs")

    # -- VMs
    def vm_db_files(self) -> list[Path]:
        return [self._p(backend, "db", "vms.json") for backend in VM_BACKENDS]

    # -- the snapshot DB
    def read_snapshot_db(self) -> SnapshotDB:
        """The DB as it is now; a missing file is an empty DB (a fresh host).
        Anything unreadable raises DBError naming the file."""
        path = self.snapshot_db_file()
        data = read_db_bytes(path)
        return SnapshotDB() if data is None else decode_snapshot_db(data, path)

    def write_snapshot_db(self, db: SnapshotDB) -> None:
        """Replace the DB atomically while holding cocoon's lock. Prefer
        `update_snapshot_db` when the new DB depends on the old one: reading
        outside the lock loses concurrent changes."""
        self._require_db_dir()
        with exclusive_lock(self.snapshot_lock_file(), self.lock_timeout):
            self._write_locked(db)

    def update_snapshot_db(self, change: Callable[[SnapshotDB], T]) -> T:
        """Read, `change(db)` in place, write: all under one hold of cocoon's
        lock, so no cocoon command can slip in between. If `change` raises,
        nothing is written."""
        self._require_db_dir()
        with exclusive_lock(self.snapshot_lock_file(), self.lock_timeout):
            db = self.read_snapshot_db()
            result = change(db)
            self._write_locked(db)
            return result

    def _require_db_dir(self) -> None:
        """Before taking the lock: filelock would create the lock file's
        parents, turning a mistyped root into a fresh, empty cocoon tree."""
        directory = self.snapshot_db_dir()
        if not directory.is_dir():
            raise CocoondError(f"{directory}: no such directory (is {self.root_dir} a cocoon root?)")

    def _write_locked(self, db: SnapshotDB) -> None:
        atomic_write(self.snapshot_db_file(), db.encode())

    def resolve_snapshot_id(self, ref: str) -> str:
        return resolve_in(self.read_snapshot_db(), ref)


def resolve_in(db: SnapshotDB, ref: str) -> str:
    """Name first (as the seed), then exact ID, then a unique ID prefix of
    at least MIN_PREFIX characters (as cocoon's CLI)."""
    sid = db.names.get(ref)
    if sid is not None and sid in db.snapshots:
        return sid
    if ref in db.snapshots:
        return ref
    if len(ref) >= MIN_PREFIX:
        hits = [s for s in db.snapshots if s.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise SnapshotNotFound(ref, ambiguous=hits)
    raise SnapshotNotFound(ref)


def snapshot_exists(paths: Paths, name: str) -> bool:
    """True iff `name` is a snapshot name in the DB; False, not an error,
    when the DB cannot be read (callers use it as a cheap guard)."""
    try:
        return name in paths.read_snapshot_db().names
    except (DBError, OSError):
        return False
