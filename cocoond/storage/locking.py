"""Cocoon's lock files, two ways.

Writers take the lock exactly as cocoon does (flock(2) exclusive on
`snapshots.lock`, file kept forever) through filelock. Readers that must not
change the tree (`check`, `run`) take a shared flock on a read-only
descriptor of an existing lock file: it keeps cocoon's writers out for the
moment of reading, and it neither creates the file nor touches its mtime.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cocoond.errors import LockTimeout

#: How long a write waits for cocoon's lock before giving up.
DEFAULT_LOCK_TIMEOUT = 5.0
_POLL = 0.02


@contextmanager
def exclusive_lock(path: str | os.PathLike[str], timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold cocoon's lock for a write. The lock file is created 0600 (as
    cocoon creates it) when missing and is never removed: removing it would
    let two writers lock two different inodes."""
    # Imported here: `check` and `run` never write, and filelock costs a
    # third of `cocoond check`'s start-up on a small tree.
    from filelock import Timeout, UnixFileLock

    lock = UnixFileLock(
        os.fspath(path),
        timeout=timeout,
        mode=0o600,
        preserve_lock_file=True,
        fallback_to_soft=False,
        thread_local=False,
    )
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(path, timeout) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def shared_read_lock(path: str | os.PathLike[str], timeout: float) -> Iterator[bool]:
    """Yield True while holding a shared flock on an existing lock file, or
    False when there is no lock file or it stayed busy for `timeout` seconds
    (the caller proceeds unlocked and says so). Never creates anything."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + timeout
        locked = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                locked = True
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    break
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        try:
            yield locked
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
