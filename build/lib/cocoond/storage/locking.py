"""Cocoon's lock, for writers only.

Writers take the lock exactly as cocoon does (flock(2) exclusive on
`snapshots.lock`, file kept forever) through filelock. Readers (`check`,
`run`) never take it, not even shared: cocoon's gc takes its locks with a
non-blocking TryLock and skips its whole run when one is busy
(gc/orchestrator.go:47,69-70). `check` gets a consistent view by comparing
the DB files' identities around its pass instead (cli/check.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from cocoond.errors import LockTimeout

#: How long a write waits for cocoon's lock before giving up.
DEFAULT_LOCK_TIMEOUT = 5.0


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
