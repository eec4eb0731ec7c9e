"""The disk side: reads cocoon's tree into what the reconciler consumes. Only
reads (and the shared flock in locking.py); never writes, never creates.

Each `read_*`/`stat_*` function looks at one thing, so the daemon can
refresh exactly the entry an inotify event named; `scan` calls them all for
a full pass.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from cocoond.core import findings as fk
from cocoond.core.findings import Finding
from cocoond.core.reconcile import BlobFile, IndexedDB, Listing, Reconciler
from cocoond.errors import CocoondError, DBError
from cocoond.storage.dbfile import read_db_bytes
from cocoond.storage.gojson import text_go
from cocoond.storage.memory import own
from cocoond.storage.paths import DEFAULT_ROOT_DIR, VM_BACKENDS, Paths, default_root
from cocoond.storage.records import SnapshotDB, decode_snapshot_db
from cocoond.storage.refdbs import IMAGE_DB, OCI_IMAGE_DB, decoder_for, vm_db_relpaths

#: Blob dirs under the root and the suffix a blob file has in each.
BLOB_DIRS: tuple[tuple[str, str], ...] = (("cloudimg/blobs", ".qcow2"), ("oci/blobs", ".erofs"))
#: Dirs whose `.tmp-*` files are writes or downloads in flight.
TEMP_DIRS: tuple[str, ...] = ("snapshot/db", "cloudimg/temp")
TEMP_PREFIX = ".tmp-"
REF_DBS: tuple[str, ...] = (IMAGE_DB, OCI_IMAGE_DB, *vm_db_relpaths(VM_BACKENDS))


@dataclass(frozen=True, slots=True)
class FileId:
    """Enough of a stat to tell whether a DB file was replaced."""

    ino: int
    size: int
    mtime_ns: int


def read_snapshot_db(
    paths: Paths, index: Reconciler | None = None
) -> SnapshotDB | IndexedDB | DBError | None:
    """snapshots.json (decoded for `index` when given), its error, or None
    when there is none yet."""
    path = str(paths.snapshot_db_file())
    try:
        data = read_db_bytes(path)
        if index is not None:
            # Decoded to text first and the bytes let go: at 100k records
            # that is 45 MB less at the load's peak.
            text = None if data is None else text_go(data)
            del data
            return index.decode_db(text, path)
        return None if data is None else decode_snapshot_db(data, path)
    except DBError as exc:
        return exc


def read_ref_db(root: str, relpath: str) -> frozenset[str] | DBError | None:
    """The blob hexes an image or VM DB pins, its error, or None if absent."""
    path = os.path.join(root, relpath)
    try:
        data = read_db_bytes(path)
        if data is None:
            return None
        refs: frozenset[str] = decoder_for(relpath)(data, path)
        return refs
    except DBError as exc:
        return exc


def stat_data_dir(root: str, name: str) -> bool | None:
    """Is snapshot/localfile/<name> a directory (following a symlink, as
    cocoon's os.Stat does)? None when it does not exist."""
    path = os.path.join(root, "snapshot", "localfile", name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        # A dangling symlink is an entry that is not a directory, as the
        # full listing (DirEntry.is_dir) sees it.
        return False if os.path.lexists(path) else None
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode)


def blob_relpath_ok(relpath: str) -> bool:
    """Is this a name a blob file would have (not a temp or stray file)?"""
    directory, _, name = relpath.rpartition("/")
    for blob_dir, suffix in BLOB_DIRS:
        if directory == blob_dir:
            return name.endswith(suffix) and not name.startswith(".") and len(name) > len(suffix)
    return False


def stat_blob(root: str, relpath: str) -> BlobFile | None:
    """A blob file's facts (lstat: a symlink is not a regular file and
    cocoon would not boot from a dangling one), or None if absent."""
    try:
        st = os.lstat(os.path.join(root, relpath))
    except FileNotFoundError:
        return None
    except OSError:
        st = None
    name = relpath.rpartition("/")[2]
    hex_ = name.rsplit(".", 1)[0]
    if st is None:
        return BlobFile(relpath, hex_, False, 0, 0)
    regular = stat.S_ISREG(st.st_mode)
    return BlobFile(relpath, hex_, regular, st.st_size, st.st_blocks * 512 if regular else 0)


def stat_temp(root: str, relpath: str) -> float | None:
    """mtime of a temp file, None if it is gone (or is not a file)."""
    try:
        st = os.lstat(os.path.join(root, relpath))
    except OSError:
        return None
    return st.st_mtime if stat.S_ISREG(st.st_mode) else None


def file_id(path: str) -> FileId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return FileId(st.st_ino, st.st_size, st.st_mtime_ns)


class ScanError(CocoondError):
    """A directory of the tree exists but cannot be listed. Treating it as
    empty would report every snapshot as missing; the caller must say it
    could not look instead."""


def _list(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise ScanError(f"{directory}: cannot list: {exc.strerror or exc}") from None


def list_data_dirs(root: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for entry in _list(os.path.join(root, "snapshot", "localfile")):
        try:
            out[own(entry.name)] = entry.is_dir()
        except OSError:
            out[own(entry.name)] = False
    return out


def list_blobs(root: str) -> dict[str, BlobFile]:
    out: dict[str, BlobFile] = {}
    for blob_dir, _suffix in BLOB_DIRS:
        for entry in _list(os.path.join(root, blob_dir)):
            relpath = f"{blob_dir}/{entry.name}"
            if blob_relpath_ok(relpath):
                blob = stat_blob(root, relpath)
                if blob is not None:
                    out[relpath] = blob
    return out


def list_temps(root: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for temp_dir in TEMP_DIRS:
        for entry in _list(os.path.join(root, temp_dir)):
            if entry.name.startswith(TEMP_PREFIX):
                mtime = stat_temp(root, f"{temp_dir}/{entry.name}")
                if mtime is not None:
                    out[f"{temp_dir}/{entry.name}"] = mtime
    return out


def scan(paths: Paths, *, include_db: bool = True, index: Reconciler | None = None) -> Listing:
    """One full pass over the tree (without snapshots.json if the caller
    reads that itself). Raises ScanError if a directory cannot be listed."""
    root = paths.root_dir
    ref_dbs: dict[str, frozenset[str] | DBError] = {}
    for relpath in REF_DBS:
        refs = read_ref_db(root, relpath)
        if refs is not None:
            ref_dbs[relpath] = refs
    return Listing(
        snapshot_db=read_snapshot_db(paths, index) if include_db else None,
        keep_db=not include_db,
        ref_dbs=ref_dbs,
        data_dirs=list_data_dirs(root),
        blobs=list_blobs(root),
        temps=list_temps(root),
    )


def with_sizes(root: str, found: list[Finding]) -> list[Finding]:
    """Fill in `bytes` for orphan dirs: a walk per orphan, so only for the
    few that are findings, never for the 100k healthy dirs."""
    return [
        dataclasses.replace(f, bytes=disk_usage(f.path))
        if f.kind == fk.ORPHAN_DATA_DIR and f.bytes is None and f.path
        else f
        for f in found
    ]


def disk_usage(path: str) -> int:
    """Bytes allocated under `path` (st_blocks, so sparse memory files count
    what they really take), not following symlinks, each inode once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            st = os.lstat(current)
        except OSError:
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            continue
        seen.add(ident)
        total += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(current) as it:
                    stack.extend(e.path for e in it)
            except OSError:
                continue  # counts what it can see: a size, not an audit
    return total


def root_aliases(root: str, others: Iterable[str] | None = None) -> tuple[str, ...]:
    """Other spellings of the root a record's data_dir may use: its realpath,
    and those of `others` that resolve to the same directory. `others`
    defaults to where cocoon itself may think the root is ($COCOON_ROOT_DIR,
    the default root), so a host where /data01 is a symlink and cocoond is
    given the resolved path does not flag every record."""
    here = os.path.abspath(root)
    real = os.path.realpath(root)
    if others is None:
        others = (default_root(), DEFAULT_ROOT_DIR)
    found = {real} | {os.path.abspath(o) for o in others if o and os.path.realpath(o) == real}
    return tuple(sorted(found - {here}))
