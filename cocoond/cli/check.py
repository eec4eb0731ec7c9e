"""`cocoond check`: one reconcile, for a person or a script.

It takes no lock and opens no lock file: cocoon's gc takes every module's
lock with a non-blocking TryLock and skips its whole run when one is busy
(gc/orchestrator.go:47,69-70), so a check from cron or a monitoring agent
must never hold one, not even shared. A consistent view comes instead from
the DB files' identities (device, inode, size, mtime, ctime), taken before
the DBs are read and again after the tree is listed: every cocoon write
replaces a DB file, so if none changed, the DBs read belong with the
listing. If one did, the pass is repeated, up to MAX_ATTEMPTS passes, and
the result says whether it got a stable view.

What check cannot read it does not guess about: a directory it cannot
list, a DB or data dir it may not read is "could not check" (exit 3),
never a finding that calls a healthy snapshot broken or missing.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import Any, TextIO

from cocoond.config import Config
from cocoond.core import findings as fk
from cocoond.core import rules
from cocoond.core.facts import Listing
from cocoond.core.findings import Finding
from cocoond.core.reconcile import Reconciler
from cocoond.core.rootview import judge
from cocoond.core.rules import LOCALFILE, SNAPSHOT_DB, format_age
from cocoond.errors import CocoondError, DBError
from cocoond.output import bounded, escape_controls, json_line, printable
from cocoond.rootlook import look
from cocoond.scan import REF_DBS, fulfil, root_aliases, scan
from cocoond.sizes import with_sizes
from cocoond.storage.paths import ROOT_ENV, Paths
from cocoond.storage.units import human_size

#: Passes over the tree before check settles for a view cocoon changed
#: while it looked (each pass costs about 1 s per 15k snapshots).
MAX_ATTEMPTS = 3
#: The files whose identity decides whether a pass saw one state.
DB_FILES: tuple[str, ...] = (SNAPSHOT_DB, *REF_DBS)
EXIT_OK, EXIT_WARNING, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 2, 3
_DENIED = (errno.EACCES, errno.EPERM)

Identity = tuple[int, int, int, int, int] | None


@dataclass(frozen=True, slots=True)
class CheckResult:
    root: str
    snapshots: int
    blobs: int
    findings: list[Finding]
    #: No DB file changed during the last pass.
    consistent: bool
    attempts: int
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
            "consistent": self.consistent,
            "attempts": self.attempts,
        }


class CannotCheck(CocoondError):
    """Something check must read cannot be read (the root, a directory, a
    DB, a data dir): it cannot say anything trustworthy (exit 3)."""


@dataclass(slots=True)
class Loaded:
    """One consistent reconcile of the tree: what check, gc-plan and show
    all start from (one model, one reading)."""

    index: Reconciler
    listing: Listing
    consistent: bool
    attempts: int


def run_check(
    paths: Paths,
    *,
    pending_stale_seconds: float,
    temp_stale_seconds: float,
    orphan_quiet_seconds: float = 0.0,
    max_db_bytes: int | None = None,
    run_dir: str | None = None,
    log_dir: str | None = None,
    root_from: str | None = None,
) -> CheckResult:
    """One reconcile of `paths`' root. `root_from` says where the root came
    from (a config file, `--root`, `COCOON_ROOT_DIR`; None: the default), so
    a missing root's error names what to change."""
    started = time.monotonic()
    loaded = load_index(
        paths,
        pending_stale_seconds=pending_stale_seconds,
        temp_stale_seconds=temp_stale_seconds,
        orphan_quiet_seconds=orphan_quiet_seconds,
        max_db_bytes=max_db_bytes,
        run_dir=run_dir,
        log_dir=log_dir,
        root_from=root_from,
    )
    index = loaded.index
    index.evaluate(time.time())
    return CheckResult(
        root=paths.root_dir,
        snapshots=index.snapshot_count,
        blobs=len(loaded.listing.blobs),
        findings=with_sizes(index.findings()),
        consistent=loaded.consistent,
        attempts=loaded.attempts,
        duration=time.monotonic() - started,
    )


def load_for(config: Config, *, contents: bool = True) -> Loaded:
    """load_index with the config's root, thresholds and dirs: what show
    and gc-plan read, so each command reads the tree the way check does."""
    return load_index(
        Paths(os.path.abspath(config.root_dir)),
        pending_stale_seconds=config.thresholds.pending_stale_seconds,
        temp_stale_seconds=config.thresholds.temp_stale_seconds,
        orphan_quiet_seconds=config.watch.settle_seconds,
        max_db_bytes=config.limits.max_db_bytes,
        run_dir=config.run_dir,
        log_dir=config.log_dir,
        contents=contents,
        root_from=config.sources.get("root_dir"),
    )


def load_index(
    paths: Paths,
    *,
    pending_stale_seconds: float,
    temp_stale_seconds: float,
    orphan_quiet_seconds: float = 0.0,
    max_db_bytes: int | None = None,
    run_dir: str | None = None,
    log_dir: str | None = None,
    contents: bool = True,
    root_from: str | None = None,
) -> Loaded:
    """Scan until the DBs held still (at most MAX_ATTEMPTS passes) and
    reconcile. Without `contents` the data dirs' files are not read (gc-plan
    needs only their names): their restore findings are then not made, and
    an unreadable one is not a reason to refuse."""
    root = paths.root_dir
    if not os.path.isdir(root):
        raise CannotCheck(f"{root}: no such directory ({root_hint(root_from)})")
    try:
        os.listdir(root)
    except OSError as exc:
        raise CannotCheck(f"{root}: cannot read: {exc.strerror or exc}") from None
    # A root that holds none of cocoon's DB dirs (an unmounted mount point,
    # a mistyped root) is "could not check" too, never an empty host.
    if (cause := judge(look(root), None)) is not None:
        raise CannotCheck(f"{root}: not a cocoon root cocoond can see: {cause} ({root_hint(root_from)})")
    attempts = 0
    while True:
        attempts += 1
        before = db_identities(root)
        index = Reconciler(
            root,
            pending_stale_seconds=pending_stale_seconds,
            temp_stale_seconds=temp_stale_seconds,
            orphan_quiet_seconds=orphan_quiet_seconds,
            root_aliases=root_aliases(root),
        )
        listing = scan(
            paths,
            index=index,
            max_db_bytes=max_db_bytes,
            one_shot=True,
            dir_contents=contents,
            run_dir=run_dir,
            log_dir=log_dir,
        )
        refuse_unreadable(root, listing.unreadable, [listing.snapshot_db, *listing.ref_dbs.values()])
        index.apply_listing(listing)
        wants = index.take_wants()
        if not contents:
            wants.contents = set()
        fulfil(root, index, wants, run_dir)
        if contents:
            refuse_unread_data_dirs(root, index)
        consistent = db_identities(root) == before
        if consistent or attempts >= MAX_ATTEMPTS:
            break
    return Loaded(index, listing, consistent, attempts)


def root_hint(root_from: str | None) -> str:
    """Where to fix a root that is not there: the setting it came from."""
    if root_from == "--root":
        return "from --root"
    if root_from == ROOT_ENV:
        return f"from ${ROOT_ENV}; root_dir in the config or --root overrides it"
    if root_from:
        return f"root_dir in {root_from}"
    return f"the default; set root_dir in the config, --root or ${ROOT_ENV}"


def db_identities(root: str) -> tuple[Identity, ...]:
    """Who each DB file is right now (None: absent). A DB that cannot even
    be stat'ed (a dir on its path the user may not search) stops check."""
    out: list[Identity] = []
    for relpath in DB_FILES:
        path = os.path.join(root, relpath)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            out.append(None)
            continue
        except OSError as exc:
            raise CannotCheck(f"{path}: cannot read: {exc.strerror or exc}") from None
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def refuse_unreadable(root: str, unreadable: dict[str, str], dbs: list[object]) -> None:
    """A directory that cannot be listed, or a DB the user may not read:
    reading on would turn our blindness into cocoon's faults."""
    if unreadable:
        where, why = sorted(unreadable.items())[0]
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        raise CannotCheck(f"{os.path.join(root, where)}: cannot list: {why}{more}")
    for db in dbs:
        if isinstance(db, DBError) and db.errno in _DENIED:
            raise CannotCheck(str(db))


def refuse_unread_data_dirs(root: str, index: Reconciler) -> None:
    """Data dirs of committed records whose contents could not be read
    (cocoon writes them 0750 and cocoon.json 0600, as root): whether they
    would restore is unknown."""
    unread = sorted(
        sid
        for sid, rec in index.records.items()
        if not rec.pending
        and rec.recorded is None
        and (state := index.dirs.get(sid)) is not None
        and state.kind != "other"
        and (state.contents is None or state.contents.unreadable)
    )
    if unread:
        more = f" (and {len(unread) - 1} more)" if len(unread) > 1 else ""
        path = os.path.join(root, LOCALFILE, unread[0])
        raise CannotCheck(f"{path}: cannot read the data dir's files{more}")


def write_json(result: CheckResult, out: TextIO) -> None:
    out.write(json_line(result.to_json()))


def grouped(findings: list[Finding], root: str, threshold: int) -> tuple[list[Finding], int]:
    """The table's rows: more than `threshold` missing data dirs (a wrong
    rm -rf of snapshot/localfile/, its disk unmounted) are one row, as the
    daemon reports them (daemon/missingbursts.py); `--json` keeps each.
    Returns the rows and how many findings the summary stands for."""
    missing = [f for f in findings if f.kind == fk.MISSING_DATA_DIR and f.subject != LOCALFILE]
    if threshold <= 0 or len(missing) <= threshold:
        return findings, 0
    summary = rules.missing_data_dirs_summary([f.subject for f in missing], root)
    rows = [f for f in findings if not (f.kind == fk.MISSING_DATA_DIR and f.subject != LOCALFILE)]
    return sorted([summary, *rows], key=fk.sort_key), len(missing)


#: The monitoring-plugin status word of each exit code (the plugin
#: guidelines' OK/WARNING/CRITICAL/UNKNOWN, which Icinga and Nagios show).
STATUS_WORDS: dict[int, str] = {
    EXIT_OK: "OK",
    EXIT_WARNING: "WARNING",
    EXIT_ERROR: "CRITICAL",
    EXIT_UNKNOWN: "UNKNOWN",
}
#: Every status line starts with this, as `check_disk` starts with "DISK".
SERVICE = "COCOOND"


def plugin_text(text: str) -> str:
    """Text for a status line: one line, and no '|', which a monitoring
    agent takes for the start of the performance data."""
    return escape_controls(text).replace("|", "\\x7c")


def status_line(code: int, summary: str, perfdata: str = "") -> str:
    """`COCOOND WORD - summary | perfdata`, the first line a monitoring
    agent reads (the monitoring-plugins development guidelines)."""
    line = f"{SERVICE} {STATUS_WORDS[code]} - {plugin_text(summary)}"
    return f"{line} | {perfdata}" if perfdata else line


def perfdata(result: CheckResult) -> str:
    """The guidelines' `label=value[UOM];[warn];[crit];[min];[max]`, space
    separated. The thresholds are the exit code's own rule: any error is
    critical (crit range 0: alert above 0), any warning a warning."""
    counts = {sev: 0 for sev in fk.SEVERITIES}
    for f in result.findings:
        counts[f.severity] += 1
    return " ".join(
        (
            f"errors={counts['error']};;0;0",
            f"warnings={counts['warning']};0;;0",
            f"infos={counts['info']};;;0",
            f"snapshots={result.snapshots};;;0",
            f"blobs={result.blobs};;;0",
            f"seconds={result.duration:.3f}s;;;0",
        )
    )


def write_human(result: CheckResult, out: TextIO, group_over: int = 0) -> None:
    """The plugin status line, then (as before) a note and the findings table."""
    counts = {sev: 0 for sev in fk.SEVERITIES}
    for f in result.findings:
        counts[f.severity] += 1
    summary = (
        f"{printable(result.root)}: {result.snapshots} snapshots, {result.blobs} blobs; "
        f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} info "
        f"({result.duration:.2f}s)"
    )
    out.write(status_line(result.exit_code, summary, perfdata(result)) + "\n")
    if not result.consistent:
        out.write(
            f"note: cocoon changed its DBs during each of {result.attempts} passes; "
            "findings may include a cocoon command in flight\n"
        )
    findings, summarised = grouped(result.findings, result.root, group_over)
    if summarised:
        out.write(f"note: {summarised} missing_data_dir findings shown as one row; --json lists each\n")
    if not findings:
        return
    rows = [
        (
            f.severity.upper(),
            f.kind,
            printable(bounded(f.subject)),
            _size_or_age(f),
            bounded(f.message, fk.MESSAGE_LIMIT),
        )
        for f in findings
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    widths = [
        max(w, len(h)) for w, h in zip(widths, ("SEVERITY", "KIND", "SUBJECT", "SIZE/AGE"), strict=True)
    ]
    header = ("SEVERITY", "KIND", "SUBJECT", "SIZE/AGE", "MESSAGE")
    for row in (header, *rows):
        out.write("  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip())
        out.write("\n")


def _size_or_age(f: Finding) -> str:
    if f.bytes is not None:
        # A cut size walk counted at least this much.
        return f">={human_size(f.bytes)}" if f.bytes_partial else human_size(f.bytes)
    return format_age(f.age_seconds) if f.age_seconds else ""
