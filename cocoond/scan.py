"""The disk side: reads cocoon's tree into what the reconciler consumes.
Only reads; never writes, never creates, never locks.

Each `read_*`/`stat_*`/`inspect_*` function looks at one thing, so the
daemon can refresh exactly the entry an inotify event named; `scan` calls
them all for a full pass.
"""

from __future__ import annotations

import functools
import itertools
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from cocoond.core.facts import (
    CH_CONFIG,
    FC_COW,
    MEMORY_RANGE,
    MISSING,
    PRESENT,
    SIDECAR,
    SNAPSHOT_FILES,
    VALID,
    BlobFile,
    DirContents,
    DirState,
    EntryKind,
    ImageClaim,
    IndexedDB,
    Listing,
    RecFacts,
    RefFacts,
    TempEntry,
)
from cocoond.core.gcmodel import MODULES as GC_MODULES
from cocoond.core.gcmodel import VM_MODULES, VMDirs
from cocoond.core.reconcile import LOCALFILE, Reconciler, Wants
from cocoond.errors import CocoondError, DBError
from cocoond.sizes import disk_usage
from cocoond.storage import vmdelta
from cocoond.storage.dbfile import read_db_bytes
from cocoond.storage.dbspans import Chunk, DBDelta, absorb, cut_short, load, text_pieces
from cocoond.storage.memory import interned, own
from cocoond.storage.paths import DEFAULT_ROOT_DIR, VM_BACKENDS, Paths, default_root
from cocoond.storage.records import decode_records
from cocoond.storage.refdbs import CNI_DB, IMAGE_DB, OCI_IMAGE_DB, decoder_for, vm_db_relpaths
from cocoond.storage.snapshotdir import BaseFile, FormatProblem, Sidecar, _digest, parse_sidecar, read_config

#: Blob dirs under the root and the suffix a blob file has in each.
BLOB_DIRS: tuple[tuple[str, str], ...] = (("cloudimg/blobs", ".qcow2"), ("oci/blobs", ".erofs"))
#: OCI boot files, one dir per layer hex; gc deletes it with its blob.
OCI_BOOT = "oci/boot"
#: Image temp dirs: `cocoon gc` removes old entries there (images/index.go:153-165).
CLOUDIMG_TEMP = "cloudimg/temp"
OCI_TEMP = "oci/temp"
#: Every DB dir: cocoon's AtomicWriteJSON leaves `.tmp-*` there when it dies
#: between create and rename (utils/atomic.go:14-48).
DB_DIRS: tuple[str, ...] = (
    "snapshot/db",
    "cloudimg/db",
    "oci/db",
    *(f"{b}/db" for b in VM_BACKENDS),
    "cni/db",
)
TEMP_DIRS: tuple[str, ...] = (*DB_DIRS, CLOUDIMG_TEMP, OCI_TEMP)
TEMP_PREFIX = ".tmp-"
#: The seed's own writer (and the first epoch registry) used a fixed temp name.
SEED_TEMP = "snapshot/db/snapshots.json.tmp"
#: The DBs besides snapshots.json that cocoon's gc loads (gcmodel.MODULES).
REF_DBS: tuple[str, ...] = (IMAGE_DB, OCI_IMAGE_DB, *vm_db_relpaths(VM_BACKENDS), CNI_DB)
_VM_DBS = frozenset(vm_db_relpaths(VM_BACKENDS))


@dataclass(frozen=True, slots=True)
class FileId:
    """Enough of a stat to tell whether a DB file was replaced."""

    ino: int
    size: int
    mtime_ns: int


def read_snapshot_db(
    paths: Paths, index: Reconciler, max_bytes: int | None = None
) -> IndexedDB | DBDelta[RecFacts] | DBError | None:
    """snapshots.json decoded for `index`, its error, or None when there is
    none yet. A rewrite of the DB the index holds comes as what changed
    (dbspans.absorb), when that can be proved equal to a full decode."""
    path = str(paths.snapshot_db_file())
    if index.db_spans is not None and index.db_error is None and index.db_known:
        delta = absorb(
            path,
            index.db_spans,
            index.record_decoder,
            records=_Keys(index),
            names=index.names,
            copy_keys=True,
            max_bytes=max_bytes,
        )
        if delta is not None:
            return delta
    if index.absorb_rewrites:
        whole = load(path, index.record_decoder, copy_keys=True, max_bytes=max_bytes)
        if whole is not None:
            return _indexed(whole)
    try:
        data = read_db_bytes(path, max_bytes)
        if index.absorb_rewrites and data is not None:
            # The daemon (spans wanted: the walk over text decodes): to text
            # first and the bytes let go, 45 MB less at 100k at the peak; a
            # slice at a time (see text_pieces).
            cut = cut_short(data)
            pieces = text_pieces(data)
            del data
            text = "".join(pieces)
            del pieces
            if cut:
                # Not JSON: only the error's wording is wanted, and the same
                # walk gives it without building the records it passes.
                try:
                    decode_records(text, path, _nothing)
                except DBError as exc:
                    return exc
            return index.decode_db(text, path)
        # A one-shot reader (`check`): the fast route (gofast, msgspec) reads
        # the bytes without a text copy.
        return index.decode_db(data, path)
    except DBError as exc:
        return exc


def _nothing(_sid: str, _fields: object, _raw: object) -> None:
    return None


def _indexed(whole: DBDelta[RecFacts]) -> IndexedDB:
    """A whole load (dbspans.load) as the index holds a DB: null records
    apart, names' IDs shared with the records' keys (memory.own)."""
    added = whole.added
    nulls = frozenset(k for k, v in added.items() if v is None)
    records: dict[str, RecFacts] = {k: v for k, v in added.items() if v is not None} if nulls else added  # type: ignore[assignment]
    del added
    whole.added = {}
    ids = {sid: sid for sid in records}
    names: dict[str, str] = {}
    for name, sid in whole.names_added.items():
        # A name that is its record's name is that record's string too.
        rec = records.get(sid)
        names[rec.name if rec is not None and rec.name == name else name] = ids.get(sid) or own(sid)
    spans = whole.spans
    if spans is not None:
        spans.names = _shared_keys(spans.names, names)
    return IndexedDB(records, nulls, names, spans)


def _shared_keys(chunks: list[Chunk], names: dict[str, str]) -> list[Chunk]:
    """The `names` chunks with the names map's own key strings (the
    records' names: see _indexed) instead of copies: 60 bytes a snapshot.
    The chunks list the map's keys in its order, as the map does."""
    keys = iter(names)
    shared = []
    for chunk in chunks:
        same = tuple(itertools.islice(keys, len(chunk.keys)))
        shared.append(chunk._replace(keys=same) if same == chunk.keys else chunk)
    return shared


class _Keys:
    """The index's snapshot keys (records and null ones) as a container."""

    __slots__ = ("_index",)

    def __init__(self, index: Reconciler) -> None:
        self._index = index

    def __contains__(self, sid: object) -> bool:
        return isinstance(sid, str) and self._index.has_snapshot_key(sid)


def read_ref_db(
    root: str, relpath: str, max_bytes: int | None = None, *, remember: bool = True
) -> frozenset[str] | RefFacts | DBError | None:
    """The blob hexes an image DB pins (a VM or CNI DB: with the IDs gc
    reads), its error, or None if absent. A VM DB rewrite is absorbed from what changed where that is provably
    the full decode's answer (vmdelta); `remember=False` (a one-shot
    reader) decodes it whole and keeps nothing."""
    path = os.path.join(root, relpath)
    vm_db = relpath in _VM_DBS and remember
    if vm_db and (refs := vmdelta.absorbed(path, max_bytes)) is not None:
        return refs
    try:
        data = read_db_bytes(path, max_bytes)
        if data is None:
            vmdelta.forget(path)
            return None
        if vm_db:
            return vmdelta.decode(data, path)
        return decoder_for(relpath)(data, path)
    except DBError as exc:
        return exc


class Trusted(NamedTuple):
    """Where Firecracker's loadSnapshotMeta accepts paths: cocoon's root
    (every spelling of it cocoond knows) and its run dir."""

    roots: tuple[str, ...] = ()
    run_dir: str = ""


# ------------------------------------------------------------------ data dirs
# Interning tables (memory.interned: bounded, the daemon lives for months).
_CONTENTS: dict[DirContents, DirContents] = {}


def inspect_data_dir(
    root: str, name: str, *, contents: bool, activity: bool, run_dir: str | None = None
) -> DirState | None:
    """snapshot/localfile/<name>: what it is, and (when asked) what restore
    would find in it and when it was last written. None: no such entry.
    `run_dir`: cocoon's (the config's `run_dir`; None: cocoon's default)."""
    path = os.path.join(root, LOCALFILE, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return DirState("other")
    return _dir_state(root, path, st, contents=contents, activity=activity, run_dir=run_dir)


def _dir_state(
    root: str, path: str, st: os.stat_result, *, contents: bool, activity: bool, run_dir: str | None
) -> DirState:
    kind: EntryKind
    if stat.S_ISDIR(st.st_mode):
        kind = "dir"
    elif stat.S_ISLNK(st.st_mode) and _is_dir(path):
        kind = "link"
    else:
        return DirState("other")
    return DirState(
        kind,
        st.st_mtime_ns,
        read_contents(path, trusted_for(root, run_dir)) if contents else None,
        last_write(path, st.st_mtime) if activity else None,
    )


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def _exists(path: str) -> bool:
    """os.Stat succeeds (following symlinks), whatever the file type."""
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def read_contents(
    path: str, trusted: Trusted | None = None, memo: dict[_DirKey, DirContents] | None = None
) -> DirContents | None:
    """What cocoon's restore and clone would find in the data dir at `path`
    (see storage/snapshotdir.py); None when the dir cannot be read, which
    leaves the finding unknown rather than calling the snapshot broken.
    `trusted`: where Firecracker's loadSnapshotMeta accepts paths (no
    roots: that check is skipped). `memo`: a one-shot reader's own memo
    (new_memo), keyed by the documents' bytes; None: the module's, keyed
    by their digests."""
    try:
        with os.scandir(path) as it:
            entries = {e.name: e for e in it}
    except PermissionError as exc:
        return _unreadable(exc.strerror or str(exc))
    except OSError:
        return None
    key = _memo_key(entries, trusted, memo is None)
    if key is None:
        return _judge_dir(entries, trusted, {})
    dirs = _DIRS if memo is None else memo
    found = dirs.get(key[0])
    if found is None:
        found = _judge_dir(entries, trusted, key[1])
        if len(dirs) >= MEMO_DIRS:
            del dirs[next(iter(dirs))]  # the oldest
        dirs[key[0]] = found
    return found


#: Data dirs judged, by what the judgement reads (see _memo_key): snapshots
#: of one VM hold the same file names and the same sidecar and config.json,
#: so at 100k snapshots most dirs are judged by one dict lookup.
MEMO_DIRS = 4096
#: (sorted entry names, those that are not regular files, the sidecar's and
#: config.json's bytes or digests, the trusted roots).
_DirKey = tuple[tuple[str, ...], tuple[str, ...], bytes | None, bytes | None, Trusted | None]
_DIRS: dict[_DirKey, DirContents] = {}


def new_memo() -> dict[_DirKey, DirContents]:
    """A memo for one pass that is dropped after it (`check`): keyed by the
    documents themselves, which spares hashing each twice (a digest, then
    its dict hash: 0.3 s at 100k snapshots); bounded as the module's is (at
    most MEMO_DIRS documents' bytes, about 14 MB, alive during the pass).
    The daemon's memo lives on, so it keeps 16-byte digests instead."""
    return {}


def _memo_key(
    entries: dict[str, os.DirEntry[str]], trusted: Trusted | None, digest: bool
) -> tuple[_DirKey, dict[str, bytes]] | None:
    """Everything _judge_dir's verdict depends on, when no entry is a
    symlink (a symlink's target is looked up anew each time: no key): the
    entries' names, which of them are not regular files, the sidecar's and
    config.json's bytes (`digest`: their digests), and the trusted roots.
    Also returns the bytes read, so a miss does not read them twice. None
    when a read fails: _judge_dir then reads and reports it as it always
    did."""
    other: list[str] = []
    for entry in entries.values():
        if not entry.is_file(follow_symlinks=False):
            if entry.is_symlink():
                return None
            other.append(entry.name)
    read: dict[str, bytes] = {}
    docs: list[bytes | None] = [None, None]
    for i, name in enumerate((SIDECAR, CH_CONFIG)):
        found = entries.get(name)
        if found is not None:
            data = None if other and name in other else _read_regular(found.path)
            if data is None:
                return None
            read[name] = data
            docs[i] = _digest(data) if digest else data
    return (tuple(sorted(entries)), tuple(sorted(other)), docs[0], docs[1], trusted), read


def _read_regular(path: str) -> bytes | None:
    """A regular file's bytes, all of them; None when it cannot be read
    (the caller then takes the road that reports why)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, READ_CHUNK)
        if len(data) < READ_CHUNK:  # a regular file: a short read is its end
            return data
        chunks = [data]
        while len(chunk := os.read(fd, READ_CHUNK)) == READ_CHUNK:
            chunks.append(chunk)
        chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _judge_dir(
    entries: dict[str, os.DirEntry[str]], trusted: Trusted | None, read: dict[str, bytes]
) -> DirContents:
    """read_contents' verdict on a listed dir; `read`: files' bytes already
    read (the others are read here)."""

    def whole(name: str) -> bytes:
        data = read.get(name)
        return _read_whole(entries[name]) if data is None else data

    def there(name: str) -> bool:
        entry = entries.get(name)
        return entry is not None and (not entry.is_symlink() or _exists(entry.path))

    def irregular(name: str) -> bool:
        """There (os.Stat), but the copy step skips it: not a regular file
        itself (a symlink, even to a file, is not: DirEntry.Type())."""
        entry = entries.get(name)
        return entry is not None and not entry.is_file(follow_symlinks=False) and there(name)

    present = {name for name in SNAPSHOT_FILES if there(name)}
    odd = [(name, "file") for name in sorted(present) if name != FC_COW and irregular(name)]
    for name in sorted(entries):
        if name.startswith("memory-range"):
            present.add(MEMORY_RANGE)
            if irregular(name):
                odd.append((name, "file"))
    sidecar_problem = config_problem = fc_problem = untrusted = None
    missing: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    ch_base: tuple[BaseFile, ...] = ()
    fc_base: tuple[BaseFile, ...] = ()
    fc_machine = (0, 0)
    try:
        if SIDECAR in present:
            try:
                sidecar = parse_sidecar(whole(SIDECAR))
            except FormatProblem as exc:
                sidecar_problem = str(exc)
            else:
                fc_problem = sidecar.fc_problem
                fc_machine = sidecar.fc_machine
                untrusted = _untrusted(sidecar, trusted) if trusted is not None else None
                roles = tuple(d.role for d in sidecar.disks)
                missing = tuple(d.resident for d in sidecar.disks if d.resident and not there(d.resident))
                odd += [(d.resident, d.role) for d in sidecar.disks if d.resident and irregular(d.resident)]
                layers = tuple(("base layer", d.path) for d in sidecar.disks if d.role == "layer")
                fc_base = _interned(layers + sidecar.boot)
                if CH_CONFIG in present:
                    try:
                        config = read_config(whole(CH_CONFIG), sidecar)
                    except FormatProblem as exc:
                        config_problem = str(exc)
                    else:
                        config_problem = config.problem
                        ch_base = _interned(layers + config.boot)
    except PermissionError as exc:
        # cocoon writes cocoon.json 0600 and reads it as root: a reader
        # without that right knows nothing, and the snapshot is not broken.
        return _unreadable(f"{SIDECAR}: {exc.strerror or exc}")
    found = DirContents(
        frozenset(present),
        sidecar_problem,
        missing,
        config_problem,
        fc_sidecar_problem=fc_problem,
        fc_untrusted=untrusted,
        irregular=tuple(odd),
        roles=roles,
        ch_base=ch_base,
        fc_base=fc_base,
        fc_machine=fc_machine,
    )
    return interned(_CONTENTS, found)


_BASES: dict[tuple[BaseFile, ...], tuple[BaseFile, ...]] = {}


def _interned(base: tuple[BaseFile, ...]) -> tuple[BaseFile, ...]:
    """Snapshots of one image name the same base files: one tuple for all."""
    return interned(_BASES, base)


#: cocoon's run dir when nothing sets it (cmd/root.go:58; viper's
#: AutomaticEnv reads COCOON_RUN_DIR first). Firecracker trusts storage
#: paths under it.
DEFAULT_RUN_DIR = "/var/lib/cocoon/run"
RUN_DIR_ENV = "COCOON_RUN_DIR"


def trusted_for(root: str, run_dir: str | None = None) -> Trusted:
    """The root as given, its other spellings, and cocoon's run dir: the one
    run dir of the config (`run_dir`, which took $COCOON_RUN_DIR and the
    default as cocoon does) that the VM-dir rules use too. `check`, `show`
    and the daemon always pass it; None is a caller without a config (the
    Python API), resolved as cocoon resolves it. Firecracker checks against
    its conf.RootDir and conf.RunDir (firecracker/helper.go:19, clone.go:37)."""
    return _trusted(root, run_dir or os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)


@functools.lru_cache(maxsize=8)
def _trusted(root: str, run_dir: str) -> Trusted:
    here = os.path.abspath(root)
    return Trusted((here, *root_aliases(here)), run_dir)


_UNTRUSTED: dict[tuple[Sidecar, Trusted], str | None] = {}


def _untrusted(sidecar: Sidecar, trusted: Trusted) -> str | None:
    """_fc_untrusted, once per distinct sidecar (snapshots of a VM share one)."""
    key = (sidecar, trusted)
    if key not in _UNTRUSTED:
        if len(_UNTRUSTED) >= 4096:
            del _UNTRUSTED[next(iter(_UNTRUSTED))]
        _UNTRUSTED[key] = _fc_untrusted(sidecar, trusted)
    return _UNTRUSTED[key]


def _fc_untrusted(sidecar: Sidecar, trusted: Trusted) -> str | None:
    """firecracker/snapshot.go:156-168: every storage path under the root or
    the run dir, kernel and initrd under the root (isUnderDir: a lexical
    prefix after filepath.Clean)."""
    if not trusted.roots:
        return None
    storage_ok = (*trusted.roots, trusted.run_dir) if trusted.run_dir else trusted.roots
    for disk in sidecar.disks:
        if not _under_any(disk.path, storage_ok):
            return f"storage path {disk.path!r} is outside cocoon's root and run dir"
    for what, path in sidecar.boot:
        if what in ("kernel", "initrd") and not _under_any(path, trusted.roots):
            return f"{what} path {path!r} is outside cocoon's root"
    return None


def _under_any(path: str, dirs: tuple[str, ...]) -> bool:
    """isUnderDir (firecracker/snapshot.go:172-179): Clean both, then a
    prefix test against dir + "/" (so a root of "/" contains nothing, as
    "//" prefixes no cleaned path)."""
    cleaned = _go_clean(path)
    return any(d and cleaned.startswith(_go_clean(d) + "/") for d in dirs)


def _go_clean(path: str) -> str:
    """filepath.Clean: normpath, but a leading "//" folds to "/"."""
    cleaned = os.path.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def _unreadable(why: str) -> DirContents:
    found = DirContents(frozenset(), unreadable=why)
    return interned(_CONTENTS, found)


#: Bytes per read() of a data dir's JSON file (they are a few KB; no cap).
#: Under malloc's mmap threshold: os.read allocates the whole chunk before
#: it trims it, and a 1 MiB one per file is an mmap and munmap each.
READ_CHUNK = 1 << 16


def _read_whole(entry: os.DirEntry[str]) -> bytes:
    """A regular file's bytes, all of them, as cocoon's os.ReadFile gets
    them (no size cap: cocoon has none). A FIFO or a device is a problem,
    not a hang. The entry's type comes with the listing (no stat for plain
    files); a symlink is followed, as os.ReadFile does."""
    try:
        if not entry.is_file():
            raise FormatProblem("not a regular file")
        fd = os.open(entry.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError:
        raise
    except OSError as exc:
        raise FormatProblem(f"cannot read: {exc.strerror or exc}") from None
    chunks = []
    try:
        while True:  # a regular file: a short read is its end, so one read gets a small one
            chunk = os.read(fd, READ_CHUNK)
            chunks.append(chunk)
            if len(chunk) < READ_CHUNK:
                break
    except OSError as exc:
        raise FormatProblem(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


#: Runs a walk whose cost grows with what it finds (`last_write`: a
#: record-less dir of 1M files takes seconds). The daemon runs such walks
#: off its loop (daemon/offload.py) and sets this while it runs; `check`
#: walks in place.
_walk_runner: Callable[[Callable[[], float]], float] | None = None


def run_walks_with(runner: Callable[[Callable[[], float]], float] | None) -> None:
    global _walk_runner
    _walk_runner = runner


def last_write(path: str, own_mtime: float) -> float:
    """Newest mtime of a dir and its direct entries: a `cocoon snapshot
    import` still extracting into it keeps moving this."""
    runner = _walk_runner
    if runner is not None:
        return runner(partial(_last_write, path, own_mtime))
    return _last_write(path, own_mtime)


def _last_write(path: str, own_mtime: float) -> float:
    newest = own_mtime
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue
    except OSError:
        pass
    return newest


def stat_recorded_dir(path: str) -> bool:
    """A record's foreign data_dir: restore reads it (os.Stat: links followed)."""
    return _is_dir(path)


def read_recorded(recorded: Mapping[str, bool], trusted: Trusted) -> dict[str, DirContents]:
    """What restore and clone would find in the foreign data_dirs that are
    dirs: they read the recorded one (snapshot/localfile/localfile.go:63-73,
    227-233), so it is judged as a data dir is. Few: imports and moves."""
    out: dict[str, DirContents] = {}
    for path, is_dir in recorded.items():
        if is_dir and (contents := read_contents(path, trusted)) is not None:
            out[path] = contents
    return out


# ---------------------------------------------------------------------- blobs
def blob_relpath_ok(relpath: str) -> bool:
    """Is this a name cocoon's gc takes for a blob (`<stem><suffix>` in a
    blob dir: images/cloudimg/gc.go:17, images/oci/gc.go:17)?"""
    directory, _, name = relpath.rpartition("/")
    for blob_dir, suffix in BLOB_DIRS:
        if directory == blob_dir:
            # `.erofs` itself too: its stem is "" (utils/file.go:39-41).
            return name.endswith(suffix)
    return False


def stat_blob(root: str, relpath: str) -> BlobFile | None:
    """A blob entry's facts, or None if absent. Usable is what cocoon's
    ValidFile says (os.Stat follows links: a symlink to a good file boots);
    what gc sees and deletes is the entry itself."""
    path = os.path.join(root, relpath)
    hex_ = relpath.rpartition("/")[2].rsplit(".", 1)[0]
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return BlobFile(relpath, hex_, usable=False)
    symlink = stat.S_ISLNK(lst.st_mode)
    st: os.stat_result | None = lst
    if symlink:
        try:
            st = os.stat(path)
        except OSError:
            st = None
    regular = st is not None and stat.S_ISREG(st.st_mode)
    size = st.st_size if st is not None else 0
    return BlobFile(
        relpath,
        hex_,
        usable=regular and size > 0,
        gc_sees=not stat.S_ISDIR(lst.st_mode),
        symlink=symlink,
        empty=regular and size == 0,
        disk_bytes=lst.st_blocks * 512 if not stat.S_ISDIR(lst.st_mode) else 0,
    )


#: An OCI boot dir holds a kernel and an initrd; it is sized on the event
#: loop (in every listing), so its walk gets a far smaller bound than an
#: orphan's (see cocoond/sizes.py).
BOOT_DIR_MAX_ENTRIES = 1000
BOOT_DIR_MAX_SECONDS = 0.5


def stat_boot_dir(root: str, hex_: str) -> int | None:
    """oci/boot/<hex>: its size if it is a real dir (ScanSubdirs), else None."""
    path = os.path.join(root, OCI_BOOT, hex_)
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return None
    except OSError:
        return None
    return disk_usage(path, max_entries=BOOT_DIR_MAX_ENTRIES, max_seconds=BOOT_DIR_MAX_SECONDS).bytes


# ---------------------------------------------------------------------- temps
def temp_rule(relpath: str, is_dir: bool) -> bool | None:
    """Is this entry a temp leftover, and does gc remove it (True) or does
    nothing (False)? None: not a temp entry."""
    directory, _, name = relpath.rpartition("/")
    if directory == CLOUDIMG_TEMP:
        # Every old entry except a non-dir `*.lock`: the convert lock is kept
        # forever (images/index.go:159, images/cloudimg/commit.go:117).
        return None if not is_dir and name.endswith(".lock") else True
    if directory == OCI_TEMP:
        return True if is_dir else None  # dirOnly (images/oci/gc.go:24)
    if directory in DB_DIRS and not is_dir and (name.startswith(TEMP_PREFIX) or relpath == SEED_TEMP):
        return False
    return None


def stat_temp(root: str, relpath: str) -> TempEntry | None:
    """A temp entry's age facts, None if gone or not a temp entry."""
    try:
        st = os.lstat(os.path.join(root, relpath))
    except OSError:
        return None
    rule = temp_rule(relpath, stat.S_ISDIR(st.st_mode))
    return None if rule is None else TempEntry(st.st_mtime, rule)


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


class Lister:
    """Lists directories, recording the ones that exist but cannot be read."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.unreadable: dict[str, str] = {}
        #: Directories of the tree that exist as something else: cocoon's
        #: gc fails on them (its backends' EnsureDirs, then its listings).
        self.not_dirs: set[str] = set()

    def entries(self, relpath: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(os.path.join(self.root, relpath)) as it:
                found = list(it)
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            # It, or a dir on the way, is something else.
            self.not_dirs.add(relpath)
            return []
        except OSError as exc:
            self.unreadable[relpath] = exc.strerror or str(exc)
            return []
        try:
            if found:
                # Readable but not searchable (r without x): the names list,
                # but every stat of an entry fails, which would read as
                # "not a dir", "empty blob" for each of them.
                os.lstat(found[0].path)
        except PermissionError as exc:
            self.unreadable[relpath] = exc.strerror or str(exc)
            return []
        except OSError:
            pass  # that entry went away meanwhile: the listing stands
        return found

    def each(self, relpath: str) -> Iterator[os.DirEntry[str]]:
        """`entries(relpath)` one at a time: snapshot/localfile/ at 1M
        snapshots is a list of 1M DirEntry objects otherwise (about 400 MB
        at once beside the index, and, freed among the index's objects, a
        heap the daemon cannot hand back). A dir that fails part way is
        unreadable, as if its listing had failed at once."""
        try:
            it = os.scandir(os.path.join(self.root, relpath))
        except FileNotFoundError:
            return
        except NotADirectoryError:
            self.not_dirs.add(relpath)
            return
        except OSError as exc:
            self.unreadable[relpath] = exc.strerror or str(exc)
            return
        with it:
            first = True
            while True:
                try:
                    entry = next(it, None)
                except OSError as exc:
                    self.unreadable[relpath] = exc.strerror or str(exc)
                    return
                if entry is None:
                    return
                if first:
                    first = False
                    try:  # readable but not searchable: see entries()
                        os.lstat(entry.path)
                    except PermissionError as exc:
                        self.unreadable[relpath] = exc.strerror or str(exc)
                        return
                    except OSError:
                        pass
                yield entry


def list_data_dirs(
    lister: Lister,
    records: Mapping[str, RecFacts],
    previous: Mapping[str, DirState] | None = None,
    *,
    track_mtime: bool = True,
    contents: bool = True,
    run_dir: str | None = None,
) -> dict[str, DirState]:
    """Every entry of snapshot/localfile/: what restore would find in the
    dirs of committed records (re-read only when the dir's mtime moved since
    `previous`; with `contents=False` left unknown for the caller to read
    later), and when record-less dirs were last written. A one-shot caller
    (`check`) needs no mtimes and saves a stat per snapshot."""
    out: dict[str, DirState] = {}
    trusted = trusted_for(lister.root, run_dir)
    # A one-shot pass (no mtimes kept) judges its dirs with a memo of its
    # own, and its entries are equal for snapshots whose dirs look alike
    # (no mtime in them): one DirState per distinct contents.
    memo = None if track_mtime else new_memo()
    alike: dict[int, DirState] = {}
    previous = previous or {}
    for entry in lister.each(LOCALFILE):
        # Kept names are copied, off the listing's arenas (memory.own), by
        # a caller that keeps them.
        name = own(entry.name) if track_mtime else entry.name
        rec = records.get(name)
        try:
            kind = "dir" if entry.is_dir(follow_symlinks=False) else _entry_kind(entry)
            st = (
                entry.stat(follow_symlinks=False)
                if kind != "other" and (track_mtime or rec is None)
                else None
            )
        except OSError:
            kind, st = "other", None
        if kind == "other":
            out[name] = DirState("other")
            continue
        want_contents = rec is not None and not rec.pending and rec.recorded is None
        if st is None:  # a one-shot look at a record's dir
            found = read_contents(entry.path, trusted, memo) if want_contents and contents else None
            if found is None or kind != "dir":
                out[name] = DirState(kind, 0, found)
            else:
                state = alike.get(id(found))
                if state is None:
                    state = alike[id(found)] = DirState(kind, 0, found)  # holds `found`: its id stays its own
                out[name] = state
            continue
        mtime_ns = st.st_mtime_ns
        old = previous.get(name)
        if (
            want_contents
            and old is not None
            and old.contents is not None
            and not old.contents.unreadable  # a chmod moves no mtime: look again
            and old.mtime_ns == mtime_ns
        ):
            out[name] = old
            continue
        path = entry.path
        out[name] = DirState(
            kind,
            mtime_ns,
            read_contents(path, trusted, memo) if want_contents and contents else None,
            last_write(path, st.st_mtime) if rec is None else None,
        )
    return {} if LOCALFILE in lister.unreadable else out


def _entry_kind(entry: os.DirEntry[str]) -> EntryKind:
    """From the listing's own type (no syscall for a plain dir)."""
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "link" if entry.is_symlink() and entry.is_dir() else "other"


def list_blobs(lister: Lister) -> dict[str, BlobFile]:
    out: dict[str, BlobFile] = {}
    for blob_dir, _suffix in BLOB_DIRS:
        for entry in lister.entries(blob_dir):
            relpath = f"{blob_dir}/{entry.name}"
            if blob_relpath_ok(relpath):
                blob = stat_blob(lister.root, relpath)
                if blob is not None:
                    out[relpath] = blob
    return out


def list_boot_dirs(lister: Lister) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in lister.entries(OCI_BOOT):
        size = stat_boot_dir(lister.root, entry.name)
        if size is not None:
            out[entry.name] = size
    return out


def list_temps(lister: Lister) -> dict[str, TempEntry]:
    out: dict[str, TempEntry] = {}
    for temp_dir in TEMP_DIRS:
        for entry in lister.entries(temp_dir):
            relpath = f"{temp_dir}/{entry.name}"
            if temp_rule(relpath, entry.is_dir(follow_symlinks=False)) is not None:
                found = stat_temp(lister.root, relpath)
                if found is not None:
                    out[relpath] = found
    return out


def scan(
    paths: Paths,
    *,
    index: Reconciler,
    include_db: bool = True,
    max_db_bytes: int | None = None,
    one_shot: bool = False,
    dir_contents: bool = True,
    run_dir: str | None = None,
    log_dir: str | None = None,
) -> Listing:
    """One full pass over the tree (without snapshots.json if the caller
    keeps the index's). Directories that cannot be listed are named in
    `Listing.unreadable`, never read as empty. `one_shot`: no rescan will
    follow (`check`), so nothing is kept for the next one. Without
    `dir_contents`, data dirs whose contents changed are left unknown: the
    index asks for them (`Wants.contents`) and the daemon reads them a slice
    at a time, so its first READY does not wait for 100k dirs."""
    root = paths.root_dir
    db = read_snapshot_db(paths, index, max_db_bytes) if include_db else None
    if isinstance(db, IndexedDB):
        records: Mapping[str, RecFacts] = db.records
    elif db is None and include_db:
        records = {}
    else:
        records = index.records  # the last good index decides what to inspect
    ref_dbs: dict[str, frozenset[str] | RefFacts | DBError] = {}
    for relpath in REF_DBS:
        refs = read_ref_db(root, relpath, max_db_bytes, remember=index.absorb_rewrites)
        if refs is not None:
            ref_dbs[relpath] = refs
    lister = Lister(root)
    recorded = {rec.recorded: stat_recorded_dir(rec.recorded) for rec in records.values() if rec.recorded}
    data_dirs = list_data_dirs(
        lister, records, index.dirs, track_mtime=not one_shot, contents=dir_contents, run_dir=run_dir
    )
    return Listing(
        snapshot_db=db,
        keep_db=not include_db,
        ref_dbs=ref_dbs,
        data_dirs=data_dirs,
        base_files=stat_base_files(
            _base_paths(data_dirs.values()) | _claim_paths(ref_dbs) | index.base_files.keys()
        ),
        recorded_dirs=recorded,
        recorded_contents=read_recorded(recorded, trusted_for(root, run_dir)),
        blobs=list_blobs(lister),
        boot_dirs=list_boot_dirs(lister),
        temps=list_temps(lister),
        unreadable=lister.unreadable,
        not_dirs=frozenset(lister.not_dirs),
        lock_problems=lock_problems(root),
        vm_dirs=read_vm_dirs(run_dir, log_dir),
    )


def lock_problems(root: str) -> dict[str, str]:
    """gc modules' lock files gofrs/flock cannot open (O_CREATE|O_RDONLY,
    through symlinks): a directory there, or a file where the lock's dir
    should be. gc's TryLock then errs and the run aborts
    (lock/flock/flock.go:50-58,81-87, gc/orchestrator.go:46-71). Absent is
    fine: TryLock creates it."""
    out: dict[str, str] = {}
    for module in GC_MODULES:
        path = os.path.join(root, module.lock)
        try:
            if stat.S_ISDIR(os.stat(path).st_mode):
                out[module.lock] = "the lock file is a directory, so gc's TryLock fails"
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            out[module.lock] = "the lock file's dir is not a directory, so gc's TryLock fails"
        except OSError:
            continue  # cocoond may not look; gc, as root, may
    return out


def read_vm_dirs(run_dir: str | None, log_dir: str | None) -> dict[tuple[str, str], VMDirs]:
    """cocoon's per-VM run and log dirs: `<run_dir>/<backend>/<ID>` and
    `<log_dir>/<backend>/<ID>` (hypervisor/baseconfig.go:29-39), outside the
    root by default. gc lists their subdirs (utils.ScanSubdirs: real dirs,
    a missing dir is empty, utils/file.go:46-55,105-110)."""
    out: dict[tuple[str, str], VMDirs] = {}
    for kind, base in (("run", run_dir), ("log", log_dir)):
        if not base:
            continue
        for module, backend in VM_MODULES.items():
            path = os.path.join(base, backend)
            try:
                with os.scandir(path) as it:
                    names = frozenset(own(e.name) for e in it if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                out[(module, kind)] = VMDirs(path)
                continue
            except NotADirectoryError:
                out[(module, kind)] = VMDirs(path, not_dir=True)
                continue
            except OSError as exc:
                out[(module, kind)] = VMDirs(path, unreadable=exc.strerror or str(exc))
                continue
            out[(module, kind)] = VMDirs(path, names)
    return out


def _base_paths(states: Iterable[DirState]) -> set[str]:
    """The base files the inspected data dirs name (few distinct: one set per image)."""
    seen: set[int] = set()
    paths: set[str] = set()
    for state in states:
        c = state.contents
        if c is None or id(c) in seen:
            continue
        seen.add(id(c))
        paths.update(p for _, p in c.ch_base)
        paths.update(p for _, p in c.fc_base)
    return paths


def stat_base_files(paths: Iterable[str]) -> dict[str, int]:
    """What os.Stat (links followed) says of each file snapshots, images and
    VMs name: MISSING, PRESENT, or VALID (regular, size > 0: utils.ValidFile)."""
    return {path: _file_state(path) for path in paths}


def _file_state(path: str) -> int:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return MISSING
    return VALID if stat.S_ISREG(st.st_mode) and st.st_size > 0 else PRESENT


def _claim_paths(ref_dbs: Mapping[str, object]) -> set[str]:
    paths: set[str] = set()
    for refs in ref_dbs.values():
        for claim in getattr(refs, "claims", ()):
            paths.update(p for _, p in (claim.files if isinstance(claim, ImageClaim) else claim.base))
    return paths


def fulfil(root: str, index: Reconciler, wants: Wants, run_dir: str | None = None) -> None:
    """Look at what the index asked for after a DB load, and tell it."""
    for name in wants.contents | wants.activity:
        index.set_data_dir(
            name,
            inspect_data_dir(
                root, name, contents=name in wants.contents, activity=name in wants.activity, run_dir=run_dir
            ),
        )
    for path in wants.recorded:
        is_dir = stat_recorded_dir(path)
        contents = read_contents(path, trusted_for(root, run_dir)) if is_dir else None
        index.set_recorded_dir(path, is_dir, contents)
    if wants.base:
        index.set_base_files(stat_base_files(wants.base))
    for hex_ in wants.hexes:
        for blob_dir, suffix in BLOB_DIRS:
            relpath = f"{blob_dir}/{hex_}{suffix}"
            index.set_blob(relpath, stat_blob(root, relpath))
        index.set_boot_dir(hex_, stat_boot_dir(root, hex_))


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
