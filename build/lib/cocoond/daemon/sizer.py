"""Orphan sizes, measured off the event loop.

A size walk is an lstat per entry and an orphan can hold millions of them
on slow storage: on the loop it would delay every event, the systemd
watchdog ping and SIGTERM. So the loop asks, one worker thread walks
(bounded, cocoond/sizes.py) and posts `("size", (key, paths, DiskUsage))`
back on the loop's queue (the dirs of an orphan burst are one job, all
walks within one time budget). The worker is a daemon thread and nothing
ever joins it: a stop never waits for a walk, not even one stuck in a
syscall on storage that stopped answering.

`finding.opened` of an orphan waits for its size, so the line carries
`bytes`, but at most SIZE_WAIT_SECONDS (a walk's own bound plus a little);
past that, or when the finding resolves, is reminded of or the daemon
stops first, it is logged without `bytes` (unknown). A size that arrives
later is kept for the finding's reminders.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from cocoond.core.findings import Finding, Key
from cocoond.daemon.watch import signals_blocked
from cocoond.sizes import SIZE_MAX_SECONDS, DiskUsage, sized, total_usage

#: Longest a `finding.opened` of an orphan waits for its size.
SIZE_WAIT_SECONDS = SIZE_MAX_SECONDS + 2.0

#: What a finding's `bytes` adds up: its dir, or every dir of an orphan burst.
Paths = tuple[str, ...]
Job = tuple[Key, Paths]


class Sizer:
    """The worker, and the loop's record of what waits for it. Every method
    but the worker's runs on the loop's thread."""

    def __init__(self, out: queue.SimpleQueue[tuple[str, Any]]) -> None:
        self._out = out
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: dict[Key, tuple[Finding, float, Paths]] = {}  # finding, open it unsized at, paths
        self._sizes: dict[Key, tuple[Paths, DiskUsage]] = {}  # open findings' sizes

    # ------------------------------------------------ the loop's side
    def hold(self, finding: Finding, now: float, paths: Paths) -> None:
        """Keep an opened orphan back until the size of `paths` is known."""
        self._held[finding.key] = (finding, now + SIZE_WAIT_SECONDS, paths)
        self.request(finding.key, paths)

    def arrived(self, key: Key, paths: Paths, usage: DiskUsage) -> Finding | None:
        """A walk's answer: the held finding, sized, if it was waiting for it."""
        self._sizes[key] = (paths, usage)
        held = self._held.get(key)
        if held is None or held[2] != paths:
            return None  # given up on, or an answer for other dirs under the same key
        del self._held[key]
        return sized(held[0], usage)

    def holds(self, key: Key) -> bool:
        """Is this finding's `finding.opened` still waiting for its size?"""
        return key in self._held

    def release(self, key: Key) -> Finding | None:
        """The held finding to open now, unsized, if there is one."""
        held = self._held.pop(key, None)
        return None if held is None else held[0]

    def forget(self, key: Key) -> None:
        """The finding resolved: its size is no one's business any more."""
        self._sizes.pop(key, None)

    def expired(self, now: float) -> list[Finding]:
        """Held findings whose wait is over."""
        return [self._held.pop(key)[0] for key, (_, until, _) in list(self._held.items()) if until <= now]

    def drain(self) -> list[Finding]:
        held, self._held = self._held, {}
        return [finding for finding, _, _ in held.values()]

    def next_deadline(self) -> float | None:
        return min((until for _, until, _ in self._held.values()), default=None)

    def with_size(self, finding: Finding, paths: Paths) -> Finding:
        """A reminder's copy of the finding, with the size last measured for
        these very `paths` (none when they changed since)."""
        known = self._sizes.get(finding.key)
        if known is None or known[0] != paths or finding.bytes is not None:
            return finding
        return sized(finding, known[1])

    # ------------------------------------------------------ the worker
    def request(self, key: Key, paths: Paths) -> None:
        """Measure `paths`; the answer arrives on the loop's queue."""
        if self._closed.is_set():
            return
        if self._thread is None:
            # Started with the daemon's signals blocked, like watchdog's threads.
            with signals_blocked():
                self._thread = threading.Thread(target=self._work, name="cocoond-sizer", daemon=True)
                self._thread.start()
        self._jobs.put((key, paths))

    def close(self) -> None:
        """Returns at once: a walk in progress stops at its next entry, and
        a thread stuck in a syscall is left behind (a daemon thread does not
        keep the process alive)."""
        self._closed.set()
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None and not self._closed.is_set():
            key, paths = job
            usage = total_usage(paths, cancelled=self._closed.is_set)
            if not self._closed.is_set():
                self._out.put(("size", (key, paths, usage)))
