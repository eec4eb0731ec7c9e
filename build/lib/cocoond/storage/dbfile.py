"""Reading one of cocoon's DB files: the bytes, or why there are none."""

from __future__ import annotations

import os
import stat

from cocoond.errors import DBError


def read_db_bytes(path: str | os.PathLike[str], max_bytes: int | None = None) -> bytes | None:
    """A DB file's bytes; None when it does not exist (a fresh host). Raises
    DBError for anything that exists but is not a readable regular file: a
    directory, a FIFO (which a plain open() would wait on forever), a
    device, a permission error, and for a file over `max_bytes` (reading a
    DB takes about twice its size in memory: a runaway file must not take
    the host's memory with it)."""
    where = os.fspath(path)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DBError(where, f"cannot read: {exc.strerror or exc}", errno=exc.errno) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise DBError(where, "is a directory, not a DB file")
        if not stat.S_ISREG(mode):
            raise DBError(where, "is not a regular file")
        size = os.fstat(fd).st_size
        if max_bytes is not None and size > max_bytes:
            raise DBError(where, f"is {size} bytes, over the {max_bytes}-byte limit ([limits] max_db_bytes)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as exc:
        raise DBError(where, f"cannot read: {exc.strerror or exc}", errno=exc.errno) from None
    finally:
        os.close(fd)
