"""Many reminders at once are one line per kind.

A restart with 20k open findings would log 20k `finding.reminder` lines in
one go: journald's default rate limit (10,000 per 30 s per unit) then
drops entries, unrelated ones too. As for orphan bursts (bursts.py): when
one batch of reminders holds more than the threshold of one kind
(`[alerts] orphan_burst_threshold`; 0 turns this off), that kind gets one
`finding.reminders` line at its severity saying how many are still open,
with a few examples and the oldest `opened_at`; `check` lists each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Final

from cocoond.core import findings as fk
from cocoond.core.lifecycle import Event, Reminder
from cocoond.output import bounded

#: Subjects a summary names as examples.
EXAMPLES: Final = 3


def crowded(events: Sequence[Event], threshold: int) -> dict[str, list[Reminder]]:
    """Kinds with more than `threshold` reminders in `events`, with them."""
    if threshold <= 0:
        return {}
    by_kind: dict[str, list[Reminder]] = defaultdict(list)
    for event in events:
        if isinstance(event, Reminder):
            by_kind[event.finding.kind].append(event)
    return {kind: found for kind, found in by_kind.items() if len(found) > threshold}


def summary(kind: str, found: list[Reminder], stamp: Callable[[Reminder], str]) -> dict[str, Any]:
    """The fields of one kind's `finding.reminders` line."""
    subjects = sorted(event.finding.subject for event in found)
    oldest = max(found, key=lambda event: event.open_seconds)
    return {
        "kind": kind,
        "severity": fk.SEVERITY_OF[kind],
        "count": len(found),
        "examples": [bounded(subject) for subject in subjects[:EXAMPLES]],
        "oldest_opened_at": stamp(oldest),
        "message": (
            f"{len(found)} {kind} findings are still open (one line for all; `cocoond check` lists each)"
        ),
    }
