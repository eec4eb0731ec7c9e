"""`cocoond check`: one consistent reconcile, for a person or a script.

Read, resolve, report: take cocoon's lock (shared, briefly) so the DB and
the listing describe the same moment, reconcile, then measure what only
needs measuring for the findings that exist (orphan dir sizes)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, TextIO

from cocoond.core import findings as fk
from cocoond.core.findings import Finding
from cocoond.core.reconcile import Reconciler
from cocoond.core.rules import format_age
from cocoond.errors import CocoondError
from cocoond.output import bounded, json_line, printable
from cocoond.scan import fulfil, root_aliases, scan, with_sizes
from cocoond.storage.locking import shared_read_lock
from cocoond.storage.paths import Paths
from cocoond.storage.units import human_size

#: How long check waits for cocoon's lock before reading without it.
LOCK_WAIT_SECONDS = 2.0
EXIT_OK, EXIT_WARNING, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class CheckResult:
    root: str
    snapshots: int
    blobs: int
    findings: list[Finding]
    lock: str  # "held", "busy" (read without it), or "absent" (no lock file yet)
    duration: float

    @property
    def exit_code(self) -> int:
        return {-1: EXIT_OK, 0: EXIT_OK, 1: EXIT_WARNING, 2: EXIT_ERROR}[fk.worst(self.findings)]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "snapshots": self.snapshots,
            "blobs": self.blobs,
            "findings": [f.to_dict() for f in self.findings],
            "lock": self.lock,
        }


class RootUnreadable(CocoondError):
    """The root is missing or cannot be listed: `check` cannot say anything."""


def run_check(
    paths: Paths,
    *,
    pending_stale_seconds: float,
    temp_stale_seconds: float,
    orphan_quiet_seconds: float = 0.0,
    max_db_bytes: int | None = None,
) -> CheckResult:
    started = time.monotonic()
    root = paths.root_dir
    if not os.path.isdir(root):
        raise RootUnreadable(f"{root}: no such directory (is COCOON_ROOT_DIR or --root right?)")
    try:
        os.listdir(root)
    except OSError as exc:
        raise RootUnreadable(f"{root}: cannot read: {exc.strerror or exc}") from None
    index = Reconciler(
        root,
        pending_stale_seconds=pending_stale_seconds,
        temp_stale_seconds=temp_stale_seconds,
        orphan_quiet_seconds=orphan_quiet_seconds,
        root_aliases=root_aliases(root),
    )
    lock_file = paths.snapshot_lock_file()
    with shared_read_lock(lock_file, LOCK_WAIT_SECONDS) as held:
        lock = "held" if held else ("busy" if lock_file.exists() else "absent")
        listing = scan(paths, index=index, max_db_bytes=max_db_bytes, one_shot=True)
    if listing.unreadable:
        where, why = sorted(listing.unreadable.items())[0]
        raise RootUnreadable(f"{os.path.join(root, where)}: cannot list: {why}")
    index.apply_listing(listing)
    fulfil(root, index, index.take_wants())
    index.evaluate(time.time())
    found = with_sizes(root, index.findings())
    return CheckResult(
        root=root,
        snapshots=index.snapshot_count,
        blobs=len(listing.blobs),
        findings=found,
        lock=lock,
        duration=time.monotonic() - started,
    )


def write_json(result: CheckResult, out: TextIO) -> None:
    out.write(json_line(result.to_json()))


def write_human(result: CheckResult, out: TextIO) -> None:
    counts = {sev: 0 for sev in fk.SEVERITIES}
    for f in result.findings:
        counts[f.severity] += 1
    status = {EXIT_OK: "OK", EXIT_WARNING: "WARNING", EXIT_ERROR: "ERROR"}[result.exit_code]
    out.write(
        f"{status}: {printable(result.root)}: {result.snapshots} snapshots, {result.blobs} blobs; "
        f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} info "
        f"({result.duration:.2f}s)\n"
    )
    if result.lock == "busy":
        out.write("note: cocoon's lock stayed busy; read without it (a cocoon command was running)\n")
    if not result.findings:
        return
    rows = [
        (
            f.severity.upper(),
            f.kind,
            printable(bounded(f.subject)),
            human_size(f.bytes)
            if f.bytes is not None
            else (format_age(f.age_seconds) if f.age_seconds else ""),
            bounded(f.message, fk.MESSAGE_LIMIT),
        )
        for f in result.findings
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    widths = [
        max(w, len(h)) for w, h in zip(widths, ("SEVERITY", "KIND", "SUBJECT", "SIZE/AGE"), strict=True)
    ]
    header = ("SEVERITY", "KIND", "SUBJECT", "SIZE/AGE", "MESSAGE")
    for row in (header, *rows):
        out.write("  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip())
        out.write("\n")
