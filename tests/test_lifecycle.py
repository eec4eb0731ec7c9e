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


def test_presettled_kinds_open_without_a_second_settle_but_still_wait_for_quiet() -> None:
    """Orphans come from the index already quiet for a settle."""
    life = Lifecycle(settle=SETTLE, reminder=0, presettled=frozenset({"orphan_data_dir"}))
    orphan, missing = finding("orphan_data_dir", "B"), finding()
    life.observe(10.0, change(orphan) + change(missing))
    assert life.tick(10.0, quiet_since=10.0 - SETTLE) == [Opened(orphan)]
    assert life.next_deadline() == 10.0 + SETTLE  # the other kind settles as before
    assert life.tick(10.0 + SETTLE, quiet_since=10.0 - SETTLE) == [Opened(missing)]
    other = finding("orphan_data_dir", "C")
    life.observe(20.0, change(other))
    assert life.tick(20.0, quiet_since=19.5) == []  # snapshot/ is busy: wait for quiet
    assert life.next_deadline() == 19.5 + SETTLE
    assert life.tick(19.5 + SETTLE, quiet_since=19.5) == [Opened(other)]


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


# ------------------------------------------------ restore after a restart
def restored(reminder: float = 0.0) -> tuple[Lifecycle, Finding, Finding]:
    """A new run at t=100 that had `kept` open for 40 s and `fixed` for 10 s."""
    life = Lifecycle(settle=SETTLE, reminder=reminder)
    kept, fixed = finding(subject="kept"), finding(subject="fixed")
    life.restore(100.0, [(kept, 40.0), (fixed, 10.0)])
    return life, kept, fixed


def test_restore_reminds_what_is_still_open_and_resolves_what_went_away() -> None:
    life, kept, fixed = restored()
    new = finding(subject="new")
    # The first full pass: the index has `kept` and `new`, not `fixed`.
    assert life.observe(100.5, change(kept) + change(new)) == []
    assert life.open_findings(100.5) == [(kept, 40.5), (fixed, 10.5)]  # not judged yet
    events = life.settle_restored(100.5)
    assert events == [Reminder(kept, 40.5), Resolved(fixed.kind, fixed.subject, 10.5)]
    assert life.settle_restored(101.0) == []  # once
    # `kept` never opens a second time; `new` opens after settle, as always.
    assert life.tick(100.5 + SETTLE, quiet_since=-100) == [Opened(new)]
    assert life.tick(500.0, quiet_since=-100) == []
    assert sorted(life.open_findings(110.0), key=lambda x: x[0].subject) == [
        (kept, 50.0),
        (new, 110.0 - 102.5),
    ]
    # It resolves later with its open time counted from the original opening.
    assert life.observe(200.0, gone(kept)) == [Resolved(kept.kind, kept.subject, 140.0)]
    assert life.open_counts()["error"] == 1


def test_restored_finding_keeps_its_reminder_schedule() -> None:
    life, kept, _ = restored(reminder=30.0)
    life.observe(100.0, change(kept))
    assert life.settle_restored(100.0) == [Reminder(kept, 40.0), Resolved("missing_data_dir", "fixed", 10.0)]
    assert life.tick(129.0, quiet_since=-100) == []
    assert life.tick(130.0, quiet_since=-100) == [Reminder(kept, 70.0)]


def test_restored_info_finding_is_reminded_once_but_not_scheduled() -> None:
    life = Lifecycle(settle=SETTLE, reminder=30.0)
    info = finding(kind="unreferenced_blob", subject="b" * 64)
    life.restore(0.0, [(info, 5.0)])
    life.observe(0.0, change(info))
    assert life.settle_restored(0.0) == [Reminder(info, 5.0)]
    assert life.tick(1000.0, quiet_since=-100) == []
    assert life.open_counts()["info"] == 1


def test_undecided_restored_finding_waits_until_the_index_can_tell() -> None:
    """snapshots.json unreadable at start: a missing_data_dir the index
    cannot judge is neither resolved nor re-opened; once the DB reads again,
    it is reminded (present) or resolved (absent)."""
    life, kept, fixed = restored()
    db_unreadable = True

    def undecided(key: Key) -> bool:
        return db_unreadable

    assert life.settle_restored(100.0, undecided) == []
    assert {f.subject for f, _ in life.open_findings(100.0)} == {"kept", "fixed"}  # still saved
    db_unreadable = False
    life.observe(105.0, change(kept))
    assert life.settle_restored(105.0, undecided) == [
        Reminder(kept, 45.0),
        Resolved(fixed.kind, fixed.subject, 15.0),
    ]
    assert life.tick(200.0, quiet_since=-100) == []  # no second opening


def test_present_restored_finding_is_adopted_even_if_undecided() -> None:
    life, kept, _ = restored()
    life.observe(100.0, change(kept))
    assert life.settle_restored(100.0, lambda key: True) == [Reminder(kept, 40.0)]
