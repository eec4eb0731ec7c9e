"""Atomic file replacement, as cocoon's utils.AtomicWriteJSON does it."""

from __future__ import annotations

import contextlib
import os


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    fd = os.open(os.fspath(directory), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Temp file in the same directory (so rename is atomic), write, fsync,
    rename over `path`, fsync the directory (so the rename survives a power
    cut). The temp name is `.tmp-<hex>` like cocoon's, so a crash in between
    leaves a file that `stale_temp` reports; on any error here the temp file
    is removed and `path` is untouched. `sync=False` skips both fsyncs, for
    a file that is rewritten soon anyway: readers still see the old file or
    the new one, never part of one."""
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    tmp = os.path.join(directory, ".tmp-" + os.urandom(5).hex())  # secrets.token_hex(5), without its import
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if sync:
                os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(directory)
