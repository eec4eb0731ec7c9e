"""The finding lifecycle is pure: time is an argument, so every rule can be
checked to the millisecond without a daemon or a clock."""

from __future__ import annotations

from cocoond.core.findings import Finding, Key
from cocoond.core.lifecycle import BURST_CAP, Lifecycle, Opened, Reminder, Resolved

SETTLE = 2.0


def finding(kind: str = "missing_data_dir", subject: str = "A") -> Finding:
    return Finding(kind, subject, f"{kind} {subject}")


def change(f: Finding) -> list[tuple[Key, Finding | None]]:
    return [(f.key, f)]


def gone(f: Finding) -> list[tuple[Key, Finding | None]]:
    return [(f.key, None)]


def test_opens_only_after_settle_and_resolves_once() -> None:
    life = Lifecycle(settle=SETTLE, reminder=0)
    f = finding()
    assert life.observe(0.0, change(f)) == []
    assert life.tick(SETTLE - 0.001, quiet_since=-100) == []
    assert life.next_deadline() == SETTLE
    assert life.tick(SETTLE, quiet_since=-100) == [Opened(f)]
    assert life.tick(SETTLE + 50, quiet_since=-100) == []  # opened once
    assert life.open_counts() == {"info": 0, "warning": 0, "error": 1}
    assert life.observe(10.0, gone(f)) == [Resolved(f.kind, f.subject, 10.0 - SETTLE)]
    assert life.observe(11.0, gone(f)) == []  # resolved once
    assert life.open_counts()["error"] == 0


def test_a_condition_passing_through_opens_nothing() -> None:
    life = Lifecycle(settle=SETTLE, reminder=0)
    f = finding()
    life.observe(0.0, change(f))
    assert life.observe(1.9, gone(f)) == []  # a delete in flight: record removed in time
    assert life.tick(5.0, quiet_since=-100) == []
    assert life.tick(100.0, quiet_since=-100) == []


def test_reappearing_starts_a_new_settle() -> None:
    life = Lifecycle(settle=SETTLE, reminder=0)
    f = finding()
    life.observe(0.0, change(f))
    life.observe(1.0, gone(f))
    life.observe(1.5, change(f))
    assert life.tick(2.5, quiet_since=-100) == []  # 2 s after the first sighting, 1 s after this one
    assert life.tick(3.5, quiet_since=-100) == [Opened(f)]


def test_data_dir_findings_wait_for_quiet_up_to_the_cap() -> None:
    """A bulk import writes dirs for longer than settle before its DB
    rewrite: orphans must wait while snapshot/ is busy, but not forever."""
    life = Lifecycle(settle=SETTLE, reminder=0)
    orphan = finding("orphan_data_dir")
    blob = finding("missing_blob", "hex")
    life.observe(0.0, change(orphan) + change(blob))
    busy_until = 5.0
    assert life.tick(3.0, quiet_since=busy_until - 2.5) == [Opened(blob)]  # not a burst kind
    assert life.tick(busy_until + SETTLE - 0.01, quiet_since=busy_until) == []
    assert life.tick(busy_until + SETTLE, quiet_since=busy_until) == [Opened(orphan)]

    life2 = Lifecycle(settle=SETTLE, reminder=0)
    life2.observe(0.0, change(orphan))
    cap = SETTLE * BURST_CAP
    assert life2.tick(cap - 0.01, quiet_since=cap - 0.1) == []  # endless activity...
    assert life2.tick(cap, quiet_since=cap) == [Opened(orphan)]  # ...holds it only up to the cap


def test_reminders_for_warnings_and_errors_only() -> None:
    life = Lifecycle(settle=0.0, reminder=10.0)
    err, info = finding(), finding("unreferenced_blob", "hex")
    life.observe(0.0, change(err) + change(info))
    assert set(map(type, life.tick(0.0, quiet_since=-100))) == {Opened}
    assert life.tick(9.9, quiet_since=-100) == []
    assert life.tick(10.0, quiet_since=-100) == [Reminder(err, 10.0)]
    assert life.tick(20.0, quiet_since=-100) == [Reminder(err, 20.0)]
    updated = Finding(err.kind, err.subject, "new text")
    life.observe(25.0, change(updated))  # same key: no new open, reminders carry the new content
    assert life.tick(30.0, quiet_since=-100) == [Reminder(updated, 30.0)]


def test_reconfigure_starts_stops_and_shortens_reminders() -> None:
    life = Lifecycle(settle=0.0, reminder=0.0)
    f = finding()
    life.observe(0.0, change(f))
    life.tick(0.0, quiet_since=-100)
    assert life.tick(1000.0, quiet_since=-100) == []  # reminders off
    life.reconfigure(0.0, 5.0, now=1000.0)
    assert life.tick(1005.0, quiet_since=-100) == [Reminder(f, 1005.0)]
    life.reconfigure(0.0, 3600.0, now=1006.0)
    life.reconfigure(0.0, 1.0, now=1007.0)  # shorter: the next one moves earlier
    assert life.tick(1008.0, quiet_since=-100) == [Reminder(f, 1008.0)]
    life.reconfigure(0.0, 0.0, now=1009.0)
    assert life.tick(5000.0, quiet_since=-100) == []
