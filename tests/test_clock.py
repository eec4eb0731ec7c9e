"""cocoond/daemon/clock.py with a faked wall clock: steps are seen, ages
stay true across them, and the plain wall clock takes over again later."""

from __future__ import annotations

from cocoond.daemon.clock import STEP_TOLERANCE, PlainAge, Timeline


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.step = 0.0

    def wall(self) -> float:
        return 1_000_000.0 + self.mono + self.step


def test_no_step_is_the_wall_clock_and_slews_are_not_steps() -> None:
    c = Clocks()
    t = Timeline(lambda: 3600.0, c.wall, lambda: c.mono)
    assert t() == c.wall()
    c.step += STEP_TOLERANCE / 2  # a slew between two readings
    c.mono += 10
    assert t() == c.wall() and t.take_news() == [] and t.offset == 0


def test_a_forward_step_keeps_the_old_timeline_until_the_horizon_passes() -> None:
    c = Clocks()
    t = Timeline(lambda: 3600.0, c.wall, lambda: c.mono)
    before = t()
    c.mono += 1
    c.step = 2 * 86400
    assert t() == before + 1  # ages of what was written before stay true
    (step,) = t.take_news()
    assert step.seconds == 2 * 86400 and t.offset == 2 * 86400
    c.mono += 3600 + 2 * 86400  # horizon plus the step itself
    assert t() == c.wall() and t.offset == 0


def test_a_backward_step_never_runs_the_timeline_back() -> None:
    c = Clocks()
    t = Timeline(lambda: 60.0, c.wall, lambda: c.mono)
    before = t()
    c.mono += 1
    c.step = -3600
    assert t() == before + 1
    assert t.offset == -3600


def test_plain_age_holds_what_only_the_timeline_calls_old_and_counts_on() -> None:
    c = Clocks()
    t = Timeline(lambda: 7200.0, c.wall, lambda: c.mono)
    plain = PlainAge(t, lambda: c.mono)
    assert plain.wait(("stale_pending", "A"), 3601.0, 3600.0) is None  # no step: judge now
    c.mono += 1
    c.step = -3600
    t()
    # Written 5 s ago by the wall clock; the timeline says 3605 s.
    assert plain.wait(("stale_pending", "A"), 3605.0, 3600.0) == 3595.0
    c.mono += 3000
    assert plain.wait(("stale_pending", "A"), 3605.0, 3600.0) == 595.0  # counted on, not frozen
    c.mono += 600
    assert plain.wait(("stale_pending", "A"), 3605.0, 3600.0) is None
