"""The wall clock the index judges by, steady across clock steps.

Ages in cocoon's tree are wall-clock differences: a record's `created_at`,
a dir's or temp file's mtime, against now. A clock step (NTP correcting a
VM host at boot, a host resumed after days) moves "now" but not the times
already written, so every age jumps: +2 days made an import still being
written an orphan and a live pending record stale; -1 h made an open
orphan's dir look written in the future, so it resolved, then opened
again an hour later.

A step is seen as a change in (wall - monotonic) beyond STEP_TOLERANCE
(NTP slews are far below that). After one, the index keeps judging on the
timeline from before it (wall minus the step): what was written before
the step keeps its true age. What is written after the step then looks
off by the step: younger after a forward step (a finding about it waits),
older after a backward one (the daemon's `_hold` also asks the plain wall
clock, so nothing opens early). Once the step is older than the horizon
(the longest age a finding depends on, plus the step itself) every time
written before it is past every threshold either way, and the plain wall
clock is used again. Durations the daemon measures itself (settling,
reminders, open_seconds) are on the monotonic clock throughout.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: A change of (wall - monotonic) beyond this between two readings is a step.
STEP_TOLERANCE: Final = 2.0
#: Steps remembered at once (older ones are dropped first).
MAX_STEPS: Final = 16


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # monotonic time it was seen
    seconds: float  # how far the wall clock moved (+ forward)


class Timeline:
    """Callable: the wall time to judge ages by (see the module doc)."""

    def __init__(
        self,
        horizon: Callable[[], float],
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._horizon = horizon
        self._wall = wall
        self._mono = mono
        self._offset = wall() - mono()
        self.steps: deque[Step] = deque(maxlen=MAX_STEPS)
        #: Steps seen and not yet logged (`take_news`).
        self._news: list[Step] = []

    def __call__(self) -> float:
        wall, mono = self._wall(), self._mono()
        offset = wall - mono
        moved = offset - self._offset
        self._offset = offset  # follows slews too
        if abs(moved) > STEP_TOLERANCE:
            step = Step(mono, moved)
            self.steps.append(step)
            self._news.append(step)
        horizon = self._horizon()
        while self.steps and mono - self.steps[0].at >= horizon + abs(self.steps[0].seconds):
            self.steps.popleft()
        return wall - sum(step.seconds for step in self.steps)

    def wall(self) -> float:
        """The plain wall clock."""
        return self._wall()

    @property
    def offset(self) -> float:
        """Seconds the plain wall clock is ahead of this timeline (the sum
        of the steps in effect; 0 when none)."""
        return sum(step.seconds for step in self.steps)

    def take_news(self) -> list[Step]:
        news, self._news = self._news, []
        return news


class PlainAge:
    """Is something the index calls old enough (by the steady timeline)
    old enough by the plain wall clock too? Only asked while a backward
    step is in effect (the timeline then runs ahead of the wall clock, so
    what was written since looks older than it is). A finding's age is
    as of its last evaluation, so the first answer is carried forward on
    the monotonic clock rather than recomputed from a frozen value."""

    def __init__(self, timeline: Timeline, mono: Callable[[], float] = time.monotonic) -> None:
        self._timeline = timeline
        self._mono = mono
        self._first: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (mono, plain age then)

    def wait(self, key: tuple[str, str], timeline_age: float, limit: float) -> float | None:
        """Seconds until the plain age passes `limit`, or None (judge now)."""
        offset = self._timeline.offset
        if offset >= 0:
            self._first.clear()
            return None
        mono = self._mono()
        since, age = self._first.setdefault(key, (mono, timeline_age + offset))
        age += mono - since
        if age > limit:
            del self._first[key]
            return None
        return limit - age
