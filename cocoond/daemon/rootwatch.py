"""The daemon's eye on the root itself (issue 18): missing, unreadable, not
a cocoon root, or replaced by another directory under a running daemon.

inotify watches inodes, not names: when the root's name comes to mean
another directory (a symlinked root repointed, the dir renamed away and
another moved in, a filesystem mounted on it or unmounted from it) the
watches stay on the old inodes and nothing at all is reported. So the
daemon compares the root's identity, (st_dev, st_ino) and its realpath,
with the last look's at every burst of events and every ROOT_POLL seconds
(two syscalls and a realpath: nothing measurable), and re-arms and rescans
when it moved. What a look means is judged in `cocoond/core/rootview.py`.
"""

from __future__ import annotations

import os

from cocoond.core.rootview import RootLook, RootMemo, judge, same_dir
from cocoond.rootlook import identity, look

#: Seconds between two looks at the root's identity when no event came.
ROOT_POLL = 2.0


def same_root(a: str, b: str, memo: object = None) -> bool:
    """Two names of one root (a symlink and its target, `/x/../y` and
    `/y`): the same tree, so one must not resolve what the other opened.
    `memo` (`RootMemo.to_json` of `a`) answers when `a` cannot be looked at
    now (unmounted)."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    saved = RootMemo.from_json(memo)
    if saved is not None and saved.realpath == os.path.realpath(b):
        return True
    first, second = look(a), look(b)
    if first.kind == "dir" and second.kind == "dir":
        return same_dir(first, second)
    return os.path.realpath(a) == os.path.realpath(b)


class RootWatch:
    """Looks at the root and keeps what the last look saw: whether it is a
    cocoon root (`cause` None) or why not, which directory it was, and the
    memo of the last good look that a restart inherits."""

    def __init__(self, root: str, memo: RootMemo | None = None) -> None:
        self.root = root
        self.memo = memo
        self.last: RootLook | None = None
        #: Why the root cannot be seen, or None (after the first `look`).
        self.cause: str | None = None

    def look(self) -> RootLook:
        self.last = look(self.root)
        self.cause = judge(self.last, self.memo)
        return self.last

    def remember(self, saved: object) -> None:
        """Take the memo a previous run saved (state file), if it is one and
        about this root."""
        memo = RootMemo.from_json(saved)
        if memo is not None and self.memo is None:
            self.memo = memo

    def seen(self, snapshots: int) -> bool:
        """The root was read as a cocoon root holding `snapshots` records.
        True when the memo changed in a way worth saving: another directory,
        or populated <-> empty (not every snapshot a create adds)."""
        last, old = self.last, self.memo
        if last is None or self.cause is not None:
            return False
        self.memo = RootMemo(last.realpath, last.dev, last.ino, snapshots)
        return (
            old is None
            or (old.realpath, old.dev, old.ino) != (last.realpath, last.dev, last.ino)
            or (old.snapshots > 0) != (snapshots > 0)
        )

    def memo_json(self) -> dict[str, object] | None:
        return None if self.memo is None else self.memo.to_json()

    def moved(self) -> tuple[tuple[int, int, str] | None, tuple[int, int, str] | None] | None:
        """(before, now) when the root's name means another directory than
        at the last look (None on either side: no directory), else None."""
        before = self.last.identity if self.last is not None and self.last.kind == "dir" else None
        now = identity(self.root)
        return (before, now) if before != now else None
