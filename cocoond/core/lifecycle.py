"""When a finding is announced: opened once it has persisted, resolved once
it is gone, reminded while it stays. Pure: time comes in as an argument.

Cocoon's own writers pass through states that look broken for a moment (a
pending record before its dir exists, a dir before its record, a record
after its dir was removed). `settle` hides those. Bulk writers (a registry
import, a restore of many snapshots) keep the tree in such a state for as
long as they run, so findings about data dirs also wait until snapshot/
activity has been quiet for `settle`, up to `BURST_CAP` times `settle`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from cocoond.core import findings as fk
from cocoond.core.findings import Finding, Key

#: Findings that bulk writes produce in passing.
BURST_KINDS = frozenset({fk.ORPHAN_DATA_DIR, fk.MISSING_DATA_DIR})
BURST_CAP = 10.0
#: A held finding is asked about again no sooner than this.
MIN_RETRY = 0.01


@dataclass(frozen=True, slots=True)
class Opened:
    finding: Finding


@dataclass(frozen=True, slots=True)
class Resolved:
    kind: str
    subject: str
    open_seconds: float
    #: The finding as it was last known, so the resolved line can carry the
    #: fields it opened with (snapshot_id, name, path...): a search by any
    #: of them finds both ends. Not part of equality.
    finding: Finding | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Reminder:
    finding: Finding
    open_seconds: float


Event = Opened | Resolved | Reminder
#: See `Lifecycle.tick`.
Hold = Callable[[Key, Finding], float | None]


@dataclass(slots=True)
class _Tracked:
    finding: Finding
    first_seen: float
    opened_at: float | None = None
    next_reminder: float | None = None


@dataclass(slots=True)
class Lifecycle:
    settle: float
    reminder: float  # 0: no reminders
    #: Kinds the index reports only once they have been quiet for `settle`
    #: (orphans: measured from the dir's last write, stricter than a first
    #: sighting), so they do not wait a second settle here.
    presettled: frozenset[str] = frozenset()
    _tracked: dict[Key, _Tracked] = field(default_factory=dict)
    _due: list[tuple[float, Key]] = field(default_factory=list)  # candidates to open
    _reminders: list[tuple[float, Key]] = field(default_factory=list)
    #: What a previous run had open and this one has not yet judged:
    #: key -> (the finding as saved, when it opened on this clock).
    _restored: dict[Key, tuple[Finding, float]] = field(default_factory=dict)

    def restore(self, now: float, saved: list[tuple[Finding, float]]) -> None:
        """Take the findings a previous run had open, each with how long it
        had been open at `now`. Call before the first `observe`; judged by
        `settle_restored` once the index has been observed in full."""
        for finding, open_seconds in saved:
            self._restored[finding.key] = (finding, now - open_seconds)

    def settle_restored(self, now: float, undecided: Callable[[Key], bool] | None = None) -> list[Event]:
        """Judge the restored findings against what has been observed since:
        one the index still has stays open from its original time, without
        a second `Opened` (a restart is not news), and is announced as a
        `Reminder`; one it no longer has went away while no one watched and
        is `Resolved`. `undecided(key)` true keeps an absent one waiting
        (the index cannot tell yet, e.g. its DB is unreadable). Cheap when
        nothing is restored, so the shell may call it after every observe."""
        events: list[Event] = []
        for key, (saved, opened_at) in list(self._restored.items()):
            tracked = self._tracked.get(key)
            if tracked is None and undecided is not None and undecided(key):
                continue
            del self._restored[key]
            if tracked is None:
                events.append(Resolved(key[0], key[1], max(0.0, now - opened_at), saved))
            elif tracked.opened_at is None:
                tracked.opened_at = opened_at
                events.append(Reminder(tracked.finding, now - opened_at))
                if self.reminder > 0 and tracked.finding.severity != "info":
                    tracked.next_reminder = now + self.reminder
                    heapq.heappush(self._reminders, (tracked.next_reminder, key))
        return events

    def open_findings(self, now: float) -> list[tuple[Finding, float]]:
        """Each open finding with how long it has been open: what a restart
        needs to carry on (restored ones not yet judged included)."""
        out = [(t.finding, now - t.opened_at) for t in self._tracked.values() if t.opened_at is not None]
        out += [(finding, now - opened_at) for finding, opened_at in self._restored.values()]
        return out

    def observe(self, now: float, changes: list[tuple[Key, Finding | None]]) -> list[Event]:
        """Feed what the index says changed. Resolutions are announced at
        once; new findings wait in `tick` until they settle."""
        events: list[Event] = []
        for key, finding in changes:
            tracked = self._tracked.get(key)
            if finding is None:
                if tracked is not None:
                    del self._tracked[key]
                    if tracked.opened_at is not None:
                        events.append(Resolved(key[0], key[1], now - tracked.opened_at, tracked.finding))
            elif tracked is None:
                if key[0] in self.presettled:
                    self._tracked[key] = _Tracked(finding, now - self.settle)
                    heapq.heappush(self._due, (now, key))
                else:
                    self._tracked[key] = _Tracked(finding, now)
                    heapq.heappush(self._due, (now + self.settle, key))
            else:
                tracked.finding = finding
        return events

    def tick(self, now: float, quiet_since: float, hold: Hold | None = None) -> list[Event]:
        """Open what has settled and remind what is due. `quiet_since` is
        when the last data-dir or snapshot-DB change was seen. `hold`, when
        given, is asked before each opening: it returns None to open now, or
        the time to ask again (the shell's view of things the index cannot
        know, such as a dir still being written)."""
        events: list[Event] = []
        held: list[tuple[float, Key]] = []
        while self._due and self._due[0][0] <= now:
            _, key = heapq.heappop(self._due)
            tracked = self._tracked.get(key)
            if tracked is None or tracked.opened_at is not None:
                continue
            if now - tracked.first_seen < self.settle:
                heapq.heappush(self._due, (tracked.first_seen + self.settle, key))
                continue
            if key[0] in BURST_KINDS and now - quiet_since < self.settle:
                cap = tracked.first_seen + self.settle * BURST_CAP
                if now < cap:
                    heapq.heappush(self._due, (min(quiet_since + self.settle, cap), key))
                    continue
            if hold is not None and (again := hold(key, tracked.finding)) is not None:
                held.append((max(again, now + MIN_RETRY), key))
                continue
            tracked.opened_at = now
            events.append(Opened(tracked.finding))
            if self.reminder > 0 and tracked.finding.severity != "info":
                tracked.next_reminder = now + self.reminder
                heapq.heappush(self._reminders, (tracked.next_reminder, key))
        for item in held:
            heapq.heappush(self._due, item)
        while self._reminders and self._reminders[0][0] <= now:
            due, key = heapq.heappop(self._reminders)
            tracked = self._tracked.get(key)
            if tracked is None or tracked.opened_at is None or tracked.next_reminder != due:
                continue
            events.append(Reminder(tracked.finding, now - tracked.opened_at))
            if self.reminder > 0:
                tracked.next_reminder = now + self.reminder
                heapq.heappush(self._reminders, (tracked.next_reminder, key))
        return events

    def next_deadline(self) -> float | None:
        times = [heap[0][0] for heap in (self._due, self._reminders) if heap]
        return min(times, default=None)

    def reconfigure(self, settle: float, reminder: float, now: float) -> None:
        """New settings (SIGHUP). An open finding's next reminder moves
        earlier if the new interval says so (or starts, if reminders were
        off), and stops if reminders are now off."""
        self.settle = settle
        self.reminder = reminder
        for key, tracked in self._tracked.items():
            if tracked.opened_at is None or tracked.finding.severity == "info":
                continue
            if reminder <= 0:
                tracked.next_reminder = None
            elif tracked.next_reminder is None or tracked.next_reminder > now + reminder:
                tracked.next_reminder = now + reminder
                heapq.heappush(self._reminders, (tracked.next_reminder, key))

    def open_counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(fk.SEVERITIES, 0)
        for tracked in self._tracked.values():
            if tracked.opened_at is not None:
                counts[tracked.finding.severity] += 1
        return counts

    def tracked_keys(self) -> set[Key]:
        return set(self._tracked)

    def tracks(self, key: Key) -> bool:
        """Is this finding settling or open (or open in a previous run, and
        not judged yet)?"""
        return key in self._tracked or key in self._restored
