"""The file-system primitives cocoon's writers are made of.

- `flock`: lock/flock/flock.go over gofrs/flock: the lock file is opened
  O_CREATE|O_RDONLY, 0600, and never removed; Lock() retries a
  non-blocking LOCK_EX every 100 ms (TryLockContext), TryLock() tries once.
- `atomic_write_file` / `atomic_write_json`: utils/atomic.go: os.CreateTemp
  (dir, ".tmp-*") (0600), write, fsync, chmod, close, rename, fsync the dir.
- `create_temp` / `mkdir_temp`: Go's os.CreateTemp / os.MkdirTemp: the `*`
  (or the end) is replaced by a decimal uint32 (os/tempfile.go nextRandom);
  files 0600 O_EXCL, dirs 0700.
- `ensure_dirs`: utils.EnsureDirs, MkdirAll 0750.
- `Store`: storage/json/json.go: a typed DB read (a missing file is an
  empty DB), changed and written back under its lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import secrets
import time
from collections.abc import Iterator
from typing import Any

from cocoond.sim import gojson, schema

LOCK_RETRY_SECONDS = 0.1  # lock/flock/flock.go:13
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_sysrand = random.SystemRandom()


class SimError(Exception):
    """A step cocoon would refuse, with cocoon's reason (one line)."""


# ----------------------------------------------------------------- names
def new_id(rng: random.Random | None = None) -> str:
    """utils.GenerateID: crypto/rand.Text(), 26 base32 characters."""
    r = rng or _sysrand
    return "".join(r.choice(_B32) for _ in range(26))


def new_hex(seed: bytes | None = None) -> str:
    """A sha256 hex (of `seed`, or of random bytes)."""
    import hashlib

    return hashlib.sha256(seed if seed is not None else secrets.token_bytes(32)).hexdigest()


def temp_name(pattern: str, rng: random.Random | None = None) -> str:
    """A name os.CreateTemp / os.MkdirTemp would pick for `pattern`."""
    number = str((rng or _sysrand).getrandbits(32))
    head, star, tail = pattern.rpartition("*")
    return head + number + tail if star else pattern + number


def create_temp(directory: str, pattern: str, rng: random.Random | None = None) -> tuple[int, str]:
    """os.CreateTemp: (open fd, path)."""
    while True:
        path = os.path.join(directory, temp_name(pattern, rng))
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), path
        except FileExistsError:
            continue


def mkdir_temp(directory: str, pattern: str, rng: random.Random | None = None) -> str:
    """os.MkdirTemp."""
    while True:
        path = os.path.join(directory, temp_name(pattern, rng))
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def ensure_dirs(*dirs: str) -> None:
    for d in dirs:
        os.makedirs(d, 0o750, exist_ok=True)


# ------------------------------------------------------------------ locks
@contextlib.contextmanager
def flock(path: str, blocking: bool = True) -> Iterator[bool]:
    """Hold cocoon's lock on `path` (yields True), or with blocking=False
    yield False at once when another process holds it (gc's TryLock)."""
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDONLY, 0o600)
        except OSError:
            if blocking:
                raise
            # gc's TryLock errs (a directory there): the module is skipped
            # like a busy one (gc/orchestrator.go:47-51).
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not blocking:
                yield False
                return
            time.sleep(LOCK_RETRY_SECONDS)
            continue
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return


@contextlib.contextmanager
def try_lock_all(paths: list[str]) -> Iterator[list[str]]:
    """gc's first phase: TryLock each lock in turn; yields the ones that
    were busy (all others are held until the block ends)."""
    with contextlib.ExitStack() as stack:
        busy = [path for path in paths if not stack.enter_context(flock(path, blocking=False))]
        yield busy


# ---------------------------------------------------------------- writing
def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write_file(path: str, data: bytes, perm: int, crash: bool = False) -> str:
    """utils.AtomicWriteFile. `crash`: the process dies after writing the
    temp file, which stays (the deferred Remove never runs). Returns the
    temp file's path."""
    directory = os.path.dirname(path)
    fd, tmp = create_temp(directory, ".tmp-*")
    try:
        if crash:
            os.write(fd, data[: len(data) // 2])
            return tmp
        os.write(fd, data)
        os.fsync(fd)
        os.fchmod(fd, perm)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(directory)
    return tmp


def atomic_write_json(path: str, obj: Any, crash: bool = False) -> None:
    """utils.AtomicWriteJSON: json.Marshal + "\\n", mode 0644. `obj` must
    already be in Go's shape (structs in field order); see Store for DBs."""
    atomic_write_file(path, gojson.marshal(obj) + b"\n", 0o644, crash=crash)


def write_file(path: str, data: bytes, perm: int) -> None:
    """os.WriteFile: O_WRONLY|O_CREATE|O_TRUNC (umask applies)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perm)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_sparse(path: str, size: int, head: bytes = b"", perm: int = 0o644) -> None:
    """A file of `size` bytes that holds only `head`: the rest is a hole."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perm)
    try:
        if head:
            os.write(fd, head)
        os.ftruncate(fd, max(size, len(head)))
    finally:
        os.close(fd)


def sparse_copy(dst: str, src: str, perm: int = 0o644) -> None:
    """utils.SparseCopy / ReflinkCopy: same bytes, holes kept holes."""
    size = os.stat(src).st_size
    fin = os.open(src, os.O_RDONLY)
    fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perm)
    try:
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fin, offset, os.SEEK_DATA)
            except OSError:
                break  # only a hole is left
            end = os.lseek(fin, start, os.SEEK_HOLE)
            os.lseek(fin, start, os.SEEK_SET)
            os.lseek(fout, start, os.SEEK_SET)
            remaining = end - start
            while remaining > 0:
                chunk = os.read(fin, min(remaining, 1 << 20))
                if not chunk:
                    break
                os.write(fout, chunk)
                remaining -= len(chunk)
            offset = end
        os.ftruncate(fout, size)
    finally:
        os.close(fin)
        os.close(fout)


def backdate(path: str, seconds: float) -> None:
    """Set a path's mtime (and atime) `seconds` into the past."""
    when = time.time() - seconds
    os.utime(path, (when, when), follow_symlinks=False)


# ------------------------------------------------------------------ stores
class Store:
    """One of cocoon's JSON DBs (storage/json/json.go) with its Go type."""

    def __init__(self, path: str, lock: str, top: schema.Struct) -> None:
        self.path, self.lock, self.top = path, lock, top

    def read_raw(self) -> dict[str, Any]:
        """load(): a missing file is the empty DB; anything Go cannot
        decode raises GoDecodeError."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return schema.init_maps(schema.zero(self.top.type))
        except OSError as exc:
            raise SimError(f"read {self.path}: {exc.strerror}") from None
        return schema.init_maps(schema.decode(self.top, data, self.path))

    def write_raw(self, index: dict[str, Any], crash: bool = False) -> None:
        atomic_write_json(self.path, schema.encode(self.top.type, index), crash=crash)

    @contextlib.contextmanager
    def with_(self) -> Iterator[dict[str, Any]]:
        """Store.With: read under the lock."""
        with flock(self.lock):
            yield self.read_raw()

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Store.Update: read, change, write back, all under the lock; an
        exception in the block writes nothing."""
        with flock(self.lock):
            index = self.read_raw()
            yield index
            self.write_raw(index)
