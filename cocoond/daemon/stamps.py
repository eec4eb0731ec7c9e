"""`opened_at` is a fact, not a computation.

The lifecycle measures how long a finding has been open on the monotonic
clock; turning that back into a wall-clock time (`now - open_seconds`)
gives a slightly different string on every restart (the microseconds of
two clock readings), and a different one again after a clock step. Alert
pipelines de-duplicate on `opened_at`, so it must be the very string the
finding opened with: written once when `finding.opened` is logged, kept
verbatim in the state file, and repeated as is by every reminder, across
any number of restarts.
"""

from __future__ import annotations

from typing import Any, Final

from cocoond.core import findings as fk
from cocoond.core.findings import Key
from cocoond.core.lifecycle import Event, Opened, Resolved
from cocoond.daemon.state import rfc3339
from cocoond.output import bounded

#: A finding's fields that say which thing it is about (not what is wrong).
IDENTIFYING: Final = ("severity", "snapshot_id", "name", "path")


class OpenedStamps:
    """key -> the `opened_at` string of each open finding."""

    def __init__(self) -> None:
        self._stamps: dict[Key, str] = {}

    def restore(self, saved: dict[Key, str]) -> None:
        """The strings a previous run saved (a finding it had open)."""
        self._stamps.update(saved)

    def note(self, events: list[Event], wall: float) -> None:
        """Stamp what opens now; forget what resolved. A finding restored
        from a previous run keeps its saved stamp (it is not `Opened` again)."""
        for event in events:
            if isinstance(event, Opened):
                self._stamps.setdefault(event.finding.key, rfc3339(wall))
            elif isinstance(event, Resolved):
                self._stamps.pop((event.kind, event.subject), None)

    def get(self, key: Key) -> str | None:
        return self._stamps.get(key)


def resolved_fields(event: Resolved) -> dict[str, Any]:
    """`finding.resolved`'s fields: what resolved, named as it opened
    (kind, subject, severity, snapshot_id, name, path), so a search by any
    of them (`journalctl COCOOND_SNAPSHOT_ID=...`) finds both ends; not its
    message or measurements (they described the problem)."""
    fields: dict[str, Any] = {"kind": event.kind, "subject": bounded(event.subject)}
    if event.finding is not None:
        opened = event.finding.to_dict()
        fields.update((k, opened[k]) for k in IDENTIFYING if k in opened)
    else:
        fields["severity"] = fk.SEVERITY_OF.get(event.kind, "info")
    fields["open_seconds"] = round(max(0.0, event.open_seconds), 3)
    return fields
