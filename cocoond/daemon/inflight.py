"""A cocoon command in flight is visible without taking any lock.

`cocoon snapshot rm` removes the data dir, then rewrites snapshots.json
under the DB's flock (snapshot/localfile/localfile.go: Delete, RemoveAll
then store.Update). In between, the tree shows a record without its dir,
for as long as the rewrite takes, which grows with the DB: at 10k
snapshots a fixed settle of 0.5 s opened a false `missing_data_dir` for
43 of 44 deletes. Settling by a fixed time is a guess; the lock is a fact.
While someone holds `snapshot/db/snapshots.lock` (read from /proc/locks:
proclocks.py; cocoond never takes it), judgments about data dirs against
the records wait, up to MAX_HOLD per finding so a stuck holder cannot
hide a real problem forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cocoond.core import findings as fk
from cocoond.core.findings import Key
from cocoond.daemon.proclocks import holders

#: What a DB rewrite in flight makes in passing: a record without its dir
#: (rm), a dir without its record (create, import).
KINDS: Final = frozenset({fk.MISSING_DATA_DIR, fk.ORPHAN_DATA_DIR})
#: Longest a finding waits for the lock to be free.
MAX_HOLD: Final = 30.0
#: How often a held finding looks again (and how long one read of
#: /proc/locks is reused).
POLL: Final = 0.1


class InFlight:
    """Answers `hold(key, now)` for the daemon's `_hold`."""

    def __init__(self, lock_path: str, read: Callable[[str], list[int] | None] = holders) -> None:
        self.lock_path = lock_path
        self._read = read
        self._since: dict[Key, float] = {}
        self._cached: tuple[float, list[int]] | None = None

    def busy(self, now: float) -> list[int]:
        """PIDs holding cocoon's snapshot DB lock now ([] when free or
        unknown: without /proc/locks the settle alone decides, as before)."""
        if self._cached is None or now - self._cached[0] >= POLL or now < self._cached[0]:
            self._cached = (now, self._read(self.lock_path) or [])
        return self._cached[1]

    def hold(
        self, key: Key, now: float, first: Callable[[Key, list[int]], None] | None = None
    ) -> float | None:
        """None to judge `key` now, else when to ask again. `first(key,
        pids)` is told when a hold of `key` begins (for a debug line)."""
        if key[0] not in KINDS:
            return None
        pids = self.busy(now)
        if not pids:
            self._since.clear()
            return None
        if key not in self._since:
            self._since[key] = now
            if first is not None:
                first(key, pids)
        if now - self._since[key] >= MAX_HOLD:
            return None
        return now + POLL
