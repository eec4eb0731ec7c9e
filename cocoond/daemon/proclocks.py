"""Who holds a lock, read from /proc/locks, without taking it.

A cocoon command in flight holds its DB's flock (`snapshot/db/
snapshots.lock`) while it rewrites the DB. cocoond must never take that
lock (cocoon's gc uses a non-blocking TryLock and would find it busy), but
the kernel lists every held lock in /proc/locks, one line each:

    1: FLOCK  ADVISORY  WRITE 4242 fd:01:1835012 0 EOF

(`id: type mode access pid major:minor:inode start end`; a waiter's line
has `->` after the id and holds nothing). Matching the lock file's inode
tells whether someone holds it now. Only the inode is compared: the device
a stat reports can differ from the superblock's the kernel prints (btrfs
subvolumes, overlayfs), and a false match (the same inode number on
another filesystem) only delays a judgment, for a time the caller bounds.

Under the unit, /proc/locks needs `ProcSubset=` left at its default
(`pid` hides every non-process file of /proc); `ProtectProc=invisible`
does not hide it.
"""

from __future__ import annotations

import os

PROC_LOCKS = "/proc/locks"


def holders(path: str, proc_locks: str = PROC_LOCKS) -> list[int] | None:
    """PIDs holding a lock on `path` now ([] when none, or when `path` does
    not exist); None when /proc/locks cannot be read (unknown, not free)."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    try:
        with open(proc_locks, "rb") as fh:
            text = fh.read(16 << 20)
    except OSError:
        return None
    want_ino = str(st.st_ino).encode()
    pids: list[int] = []
    for line in text.splitlines():
        if want_ino not in line:
            continue
        fields = line.split()
        if len(fields) < 6 or fields[1] == b"->":
            continue
        where = fields[5].split(b":")
        if len(where) != 3 or where[2] != want_ino:
            continue
        try:
            pids.append(int(fields[4]))
        except ValueError:
            continue
    return pids
