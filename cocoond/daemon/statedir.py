"""The daemon's own state dir, handled with the care cocoon's files get.

- **One daemon per state dir.** Two daemons sharing it (a second unit, a
  manual `cocoond run` with the same STATE_DIRECTORY) would each overwrite
  the other's findings.json. The first takes a flock on `lock` in the state
  dir (ours, never one of cocoon's) for as long as it runs; a second one
  refuses to start, naming the holder's PID from /proc/locks.
- **No leftovers.** A kill -9 in the middle of a write leaves its temp file
  (`.tmp-<10 hex>`, atomic.py's pattern). Once the lock is held no write of
  ours is in flight, so any such file is a leftover: removed at start.
- **A bounded, non-blocking read.** The state file is opened O_NONBLOCK (a
  FIFO put in its place must not hang the start before READY), must be a
  regular file once opened (a symlink to /dev/zero is refused) and no
  larger than MAX_STATE_BYTES; too deep a nesting is an error, not a crash.
  Any of these starts the run fresh, with the reason logged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
from typing import Final

from cocoond.daemon.proclocks import holders

LOCK_FILE: Final = "lock"
#: 100k open findings make a file of about 45 MB.
MAX_STATE_BYTES: Final = 256 << 20
#: Temp files of atomic_write (cocoond/storage/atomic.py).
_TEMP: Final = re.compile(r"\.tmp-[0-9a-f]{10}")


class StateDirBusy(RuntimeError):
    """Another process holds this state dir's lock."""


class Unreadable(ValueError):
    """The state file exists but is not one to read (says why, one line)."""


def lock(state_dir: str) -> int:
    """Take the state dir's lock (creating the dir, 0700, if need be) and
    return its fd, to keep open for the daemon's lifetime (closing it, or
    the process ending, releases the lock). StateDirBusy when held."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        pids = holders(path) or []
        who = f"PID {', '.join(map(str, pids))}" if pids else "another process"
        raise StateDirBusy(
            f"state dir {state_dir} is in use by {who} (another cocoond?): "
            "two daemons must not share one (give each its own state_dir)"
        ) from None
    with contextlib.suppress(OSError):  # for a person looking: who has it
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def remove_leftovers(state_dir: str) -> list[str]:
    """Remove temp files a killed write left (call with the lock held)."""
    removed: list[str] = []
    try:
        names = os.listdir(state_dir)
    except OSError:
        return removed
    for name in names:
        if not _TEMP.fullmatch(name):
            continue
        path = os.path.join(state_dir, name)
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed.append(name)
    return sorted(removed)


def read_state(path: str, limit: int = MAX_STATE_BYTES) -> bytes | None:
    """The file's bytes; None when there is none; Unreadable otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unreadable(f"cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable(f"not a regular file ({_type_name(st.st_mode)})")
        if st.st_size > limit:
            raise Unreadable(f"{st.st_size} bytes, more than the {limit} a state file may have")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise Unreadable(f"more than the {limit} bytes a state file may have")
        return b"".join(chunks)
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _type_name(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"
