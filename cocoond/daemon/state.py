"""What `cocoond run` remembers across a restart: the findings it has open.

Alert rules fire on `finding.opened`. Without this file every restart
(upgrade, reboot, watchdog kill) would open everything again and page
someone for what they already know. With it, a new run announces only what
changed while it was away: still open -> `finding.reminder` (with the
original `opened_at`), gone -> `finding.resolved`, new -> `finding.opened`
after settling, as always (the rules are `Lifecycle.restore`).

The file is the daemon's only write: `$STATE_DIRECTORY/findings.json` (the
unit's StateDirectory=) or `state_dir` from the config, replaced atomically
(temp file, fsync, rename, fsync dir) when the open set changes (spaced out,
see `StateKeeper`), so a kill -9 at any moment leaves the previous or the
new version, never half of one. A missing or unreadable file is not an error: it is logged and the run
starts fresh, as if there had been no previous one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from cocoond import __version__
from cocoond.core import findings as fk
from cocoond.core.findings import Finding, Key
from cocoond.core.lifecycle import Event, Lifecycle
from cocoond.daemon import statedir
from cocoond.storage.atomic import atomic_write

STATE_FILE: Final = "findings.json"
#: Writes are at least this many seconds apart ...
MIN_INTERVAL: Final = 1.0
#: ... and this many times as long as the last write took.
COST_FACTOR: Final = 10.0
#: A failed write (ENOSPC, EROFS) is tried again after 2, 4, 8 ... seconds,
#: at most this far apart, and once more at stop.
MAX_RETRY: Final = 60.0
#: Bumped when the layout changes incompatibly; another number starts fresh.
FORMAT: Final = 1
_OPTIONAL_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "snapshot_id": (str,),
    "name": (str,),
    "path": (str,),
    "bytes": (int,),
    "age_seconds": (int, float),
}


class StateError(ValueError):
    """The state file exists but is not one this version can use."""


def rfc3339(epoch: float) -> str:
    """UTC with microseconds and a Z, like the log lines' `timestamp`."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _epoch(text: object) -> float:
    if not isinstance(text, str):
        raise StateError(f"opened_at: expected an RFC 3339 string, got {type(text).__name__}")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise StateError(f"opened_at: not RFC 3339: {text[:40]!r}") from None
    if when.tzinfo is None:
        raise StateError(f"opened_at: no UTC offset: {text[:40]!r}")
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class Saved:
    """A state file's content: the root it was about and each open finding
    with when it opened (wall clock, epoch seconds)."""

    root: str
    open: list[tuple[Finding, float]]
    #: Entries of kinds this version does not know (written by a newer one).
    skipped: int = 0
    #: Each finding's `opened_at` exactly as written: repeated verbatim.
    stamps: dict[Key, str] = field(default_factory=dict)


def encode(
    root: str,
    open_findings: list[tuple[Finding, float]],
    now: float,
    stamp: Callable[[Key], str | None] | None = None,
) -> bytes:
    """`open_findings` as (finding, opened_at epoch); `stamp(key)`, when it
    has one, is the `opened_at` string to write instead (the one the finding
    opened with, never recomputed: see stamps.py). Raw field values, not
    the log's shortened ones: a subject must come back exactly to match.
    ASCII-only JSON, so names that are not valid UTF-8 survive the trip."""
    entries = []
    for finding, opened_at in sorted(open_findings, key=lambda item: fk.sort_key(item[0])):
        entry: dict[str, Any] = {
            "kind": finding.kind,
            "subject": finding.subject,
            "severity": finding.severity,  # for a person reading the file; the kind decides
            "opened_at": (stamp(finding.key) if stamp else None) or rfc3339(opened_at),
            "message": finding.message,
        }
        entry.update({k: getattr(finding, k) for k in _OPTIONAL_TYPES if getattr(finding, k) is not None})
        entries.append(entry)
    doc = {
        "format": FORMAT,
        "written_by": f"cocoond {__version__}",
        "root": root,
        "saved_at": rfc3339(now),
        "open": entries,
    }
    return (json.dumps(doc, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def decode(data: bytes) -> Saved:
    """The inverse of `encode`; StateError says what is wrong, on one line."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"not JSON: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise StateError("nested too deeply") from None
    if not isinstance(doc, dict):
        raise StateError("not a JSON object")
    if doc.get("format") != FORMAT:
        raise StateError(f"format {doc.get('format')!r}, this version reads {FORMAT}")
    root, entries = doc.get("root"), doc.get("open")
    if not isinstance(root, str) or not isinstance(entries, list):
        raise StateError("no 'root' string or 'open' list")
    found: list[tuple[Finding, float]] = []
    stamps: dict[Key, str] = {}
    skipped = 0
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise StateError(f"open[{i}]: not an object")
        if entry.get("kind") not in fk.SEVERITY_OF:
            skipped += 1
            continue
        finding = _finding(i, entry)
        found.append((finding, _epoch(entry.get("opened_at"))))
        stamps[finding.key] = entry["opened_at"]
    return Saved(root, found, skipped, stamps)


def _finding(i: int, entry: dict[str, Any]) -> Finding:
    for key in ("subject", "message"):
        if not isinstance(entry.get(key), str):
            raise StateError(f"open[{i}].{key}: expected a string")
    optional: dict[str, Any] = {}
    for key, types in _OPTIONAL_TYPES.items():
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise StateError(f"open[{i}].{key}: wrong type {type(value).__name__}")
        optional[key] = value
    return Finding(entry["kind"], entry["subject"], entry["message"], **optional)


def load(path: str) -> Saved | None:
    """None when there is no file; StateError when it cannot be used."""
    try:
        data = statedir.read_state(path)
    except statedir.Unreadable as exc:
        raise StateError(str(exc)) from None
    return None if data is None else decode(data)


class StateKeeper:
    """The daemon's side of it: where the file is, restoring at start,
    saving when the open set changes, and saying what it did in the log
    (once each, not every loop turn).

    Writing costs time in proportion to what is open (0.7 s and 45 MB at
    100k open findings), so writes are spaced: at least MIN_INTERVAL apart
    and COST_FACTOR times as long as the last one took, which keeps saving
    under a tenth of the daemon's time however many findings come and go.
    A change within that gap is written when it ends (`due`) or at stop; a
    kill -9 inside it loses only that gap's changes, which the next run then
    announces again."""

    def __init__(self, state_dir: str | None, timer: Callable[[], float] = time.monotonic) -> None:
        self.path = os.path.join(state_dir, STATE_FILE) if state_dir else None
        self._timer = timer
        self._dirty = False
        self._next_write = -math.inf  # on the daemon's clock
        self._last_error: str | None = None
        #: The saved `opened_at` strings, for the daemon's OpenedStamps.
        self.saved_stamps: dict[Key, str] = {}
        self._failures = 0  # writes failed in a row
        self._lock_fd: int | None = None

    def acquire(self, log: Any) -> None:
        """Lock the state dir for this run and remove what a killed write
        left (statedir.py). StateDirBusy when another daemon has it."""
        if self.path is None or self._lock_fd is not None:
            return
        directory = os.path.dirname(self.path)
        try:
            self._lock_fd = statedir.lock(directory)
        except OSError as exc:  # cannot even make the dir: saving will say so too
            log.warning("state.lock_failed", path=directory, error=f"{exc.strerror or exc}")
            return
        if removed := statedir.remove_leftovers(directory):
            log.info("state.leftovers_removed", path=directory, files=removed)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def restore(self, log: Any, lifecycle: Lifecycle, root: str, now: float, wall: float) -> list[Event]:
        """Hand the saved open set to the lifecycle. Findings saved for
        another root are resolved at once: this run no longer watches it."""
        if self.path is None:
            log.info("state.off", reason="no state_dir and no STATE_DIRECTORY: open findings are not kept")
            return []
        try:
            saved = load(self.path)
        except StateError as exc:
            log.warning("state.fresh", path=self.path, reason=f"unusable state file: {exc}")
            return []
        if saved is None:
            log.info("state.fresh", path=self.path, reason="no state file")
            return []
        # An `opened_at` in the future (saved before a clock step back) has
        # been open for no time, not for a negative one.
        lifecycle.restore(now, [(finding, max(0.0, wall - opened_at)) for finding, opened_at in saved.open])
        self.saved_stamps = saved.stamps
        log.info(
            "state.restored", path=self.path, open=len(saved.open), skipped=saved.skipped, root=saved.root
        )
        return lifecycle.settle_restored(now) if saved.root != root else []

    def changed(self) -> None:
        """The open set changed: it is written at the next `flush` that is due."""
        self._dirty = self.path is not None

    def due(self) -> float | None:
        """When a pending write may happen (the daemon's clock), or None."""
        return self._next_write if self._dirty else None

    def flush(
        self,
        log: Any,
        lifecycle: Lifecycle,
        root: str,
        now: float,
        wall: float,
        *,
        skip: Callable[[Key], bool] | None = None,
        force: bool = False,
        stamp: Callable[[Key], str | None] | None = None,
    ) -> None:
        """Write the open set if it changed and the gap since the last write
        is over (`force`: regardless, at stop). `skip(key)` leaves out an
        open finding whose `finding.opened` has not been logged yet (held
        for its size): if the daemon dies first, the next run opens it."""
        if self.path is None or not self._dirty or (now < self._next_write and not force):
            return
        started = self._timer()
        self._dirty = False
        open_findings = [
            (finding, wall - seconds)
            for finding, seconds in lifecycle.open_findings(now)
            if skip is None or not skip(finding.key)
        ]
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            atomic_write(self.path, encode(root, open_findings, wall, stamp), mode=0o600)
        except OSError as exc:
            error = f"{exc.strerror or exc}"
            if error != self._last_error:  # one line per new problem, not one per change
                log.warning("state.save_failed", path=self.path, error=error)
            self._last_error = error
            # Still to be written: again after a backoff, and at stop.
            self._dirty = True
            self._failures += 1
            self._next_write = now + min(MAX_RETRY, MIN_INTERVAL * 2.0**self._failures)
            return
        if self._last_error is not None:
            log.info("state.saved", path=self.path, after_failures=self._failures)
        self._last_error = None
        self._failures = 0
        self._next_write = now + max(MIN_INTERVAL, COST_FACTOR * (self._timer() - started))
