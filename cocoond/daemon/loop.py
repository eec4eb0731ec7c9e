"""`cocoond run`: the shell around the reconcile core.

One thread does all the work. watchdog's threads and the signal handlers
only put items on a SimpleQueue; the loop takes them, waits out the
debounce, re-stats what the events named, feeds the index, and turns what
changed into log lines through the finding lifecycle. Everything else is a
timer on the same loop: heartbeat, safety-net rescan, systemd watchdog,
and the moments a finding changes by time alone (settling, going stale,
reminders). Idle, the loop sleeps until the next of those.
"""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Callable
from typing import Any

from cocoond import __version__
from cocoond.config import Config, ConfigChoice, load_config
from cocoond.core import findings as fk
from cocoond.core import gcmodel, rules
from cocoond.core.findings import Finding, Key
from cocoond.core.lifecycle import Event, Lifecycle, Opened, Reminder, Resolved
from cocoond.core.reconcile import DB_DEPENDENT, Reconciler
from cocoond.daemon import crash, reminders
from cocoond.daemon.bursts import SUMMARY_KEY as ORPHAN_SUMMARY
from cocoond.daemon.bursts import OrphanBursts
from cocoond.daemon.clock import PlainAge, Timeline
from cocoond.daemon.gcsizer import GCSizer, GCTotals
from cocoond.daemon.inflight import InFlight
from cocoond.daemon.logsetup import configure
from cocoond.daemon.metrics import MetricsFile, Readings
from cocoond.daemon.missingbursts import SUMMARY_KEY as MISSING_SUMMARY
from cocoond.daemon.missingbursts import MissingBursts
from cocoond.daemon.offload import Abandoned, Offloader, freeze_heap
from cocoond.daemon.rootwatch import ROOT_POLL, RootWatch, same_root
from cocoond.daemon.sdnotify import Notifier
from cocoond.daemon.sizer import Sizer
from cocoond.daemon.stamps import OpenedStamps, resolved_fields
from cocoond.daemon.state import StateKeeper, rfc3339
from cocoond.daemon.statedir import StateDirBusy
from cocoond.daemon.watch import DAEMON_SIGNALS, Change, Watcher, classify
from cocoond.errors import ConfigError
from cocoond.scan import (
    blob_relpath_ok,
    file_id,
    fulfil,
    inspect_data_dir,
    last_write,
    read_ref_db,
    read_snapshot_db,
    root_aliases,
    run_walks_with,
    scan,
    stat_base_files,
    stat_blob,
    stat_boot_dir,
    stat_temp,
)
from cocoond.sizes import wants_size
from cocoond.storage.memory import release_free_memory
from cocoond.storage.paths import Paths

#: Longest the loop sleeps when nothing is due: bounds the damage of a
#: clock jump, keeps absurd config values (1e300 s) harmless, and is the
#: backstop for a signal that still reached another thread.
MAX_SLEEP = 5.0
#: A burst of events is processed at the latest this long after it began,
#: so continuous activity cannot postpone processing forever.
MAX_DEBOUNCE = 1.0

#: Longest the loop spends reading data dir contents before it looks at
#: its queue again (a first scan of 100k dirs takes seconds).
INSPECT_SLICE = 0.05
#: Compact the index after this many data-dir reads (a start, a big DB
#: change), not after each snapshot a create commits: a compaction copies
#: every dir's facts.
COMPACT_AFTER = 1000
#: Shortest time between two gc plans made for the metrics on a change.
GC_PLAN_MIN_INTERVAL = 10.0
#: Shortest wait before a held finding is looked at again.
MIN_HOLD = 0.1
#: sysexits.h EX_TEMPFAIL: another daemon has the state dir; the unit
#: restarts this one later (it may be gone by then).
EX_TEMPFAIL = 75
#: `_db_id` before snapshots.json was first looked at (None means absent).
_NEVER_READ = object()

Item = tuple[str, Any]


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        choice: ConfigChoice | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.choice = choice or ConfigChoice(path=config.source, use_default=False)
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.wall = wall
        # What the index judges ages by: steady across clock steps (clock.py).
        self.timeline = Timeline(self._age_horizon, wall, clock)
        self._plain_age = PlainAge(self.timeline, clock)
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.sizer = Sizer(self.queue)
        self.gc_sizer = GCSizer(self.queue)
        self._gc_totals: GCTotals | None = None  # the last measured gc plan
        self._gc_planned_at = float("-inf")  # on the daemon's clock
        self._vm_dirs_told: set[str] = set()  # absent run/log dirs said once
        self.log = configure(config.log.format, config.log.level)
        self._setup_root(config)
        # The index holds orphans until their dir has been quiet for the settle.
        self.lifecycle = Lifecycle(
            config.watch.settle_seconds,
            config.alerts.reminder_seconds,
            presettled=frozenset({fk.ORPHAN_DATA_DIR}),
        )
        self.state = StateKeeper(config.state_dir)
        self.stamps = OpenedStamps()
        self.metrics = MetricsFile(config.metrics.textfile)
        self._stop_signal: str | None = None
        self._quiet_since = clock()
        self._burst: dict[str, set[str]] = {}
        self._burst_first = 0.0
        self._burst_last = 0.0
        self._db_id: Any = _NEVER_READ
        self._status = ""
        self._due_at: dict[str, float] = {}  # when each periodic job runs next
        self._last_full_scan: float | None = None  # wall clock
        self._index_load_seconds: float | None = None  # the last good load of snapshots.json
        self._to_inspect: dict[str, None] = {}  # data dirs whose contents to read, newest wants first
        self._inspected = 0  # since the last compaction
        self._also: set[Key] = set()  # keys to look up once judging resumes
        self._loaded_counts: tuple[int, int, int] | None = None  # as index.loaded last said
        # Set by the signal handler itself: a step running off the loop
        # (offload.py) gives up waiting once a stop is asked for.
        self._stop_requested: str | None = None
        self._offload = Offloader(self._watchdog_beat, lambda: self._stop_requested is not None)

    @property
    def _max_db_bytes(self) -> int | None:
        return self.config.limits.max_db_bytes

    def _setup_root(self, config: Config) -> None:
        self.root = os.path.abspath(config.root_dir)
        self.paths = Paths(self.root)
        self.index = self._new_index(config)
        self.watcher = Watcher(self.root, self.queue, self.clock)
        self._orphan_bursts = OrphanBursts(self.root)
        self._in_flight = InFlight(str(self.paths.snapshot_lock_file()))
        self._missing_bursts = MissingBursts(self.root)
        self.rootwatch = RootWatch(self.root)
        #: Why the root cannot be seen (root_unseen), or None.
        self._unseen: str | None = None
        #: The root came back: judge nothing until its data dirs are read.
        self._returning = False

    def _new_index(self, config: Config) -> Reconciler:
        index = Reconciler(
            self.root,
            pending_stale_seconds=config.thresholds.pending_stale_seconds,
            temp_stale_seconds=config.thresholds.temp_stale_seconds,
            orphan_quiet_seconds=config.watch.settle_seconds,
            root_aliases=root_aliases(self.root),
        )
        index.absorb_rewrites = True  # rewrites cost what they changed (dbspans)
        return index

    # ------------------------------------------------------------ main loop
    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in DAEMON_SIGNALS}
        unhook = crash.report_threads(lambda exc: self.queue.put(("crash", exc)))
        try:
            self.log.info("daemon.started", root=self.root, version=__version__, pid=os.getpid())
            self.state.acquire(self.log)  # StateDirBusy: see run_daemon
            restored = self.state.restore(self.log, self.lifecycle, self.root, self.clock(), self.wall())
            self.stamps.restore(self.state.saved_stamps)
            self.rootwatch.remember(self.state.root_seen)
            self._publish(restored)
            run_walks_with(self._offload.run)
            try:
                self._arm_and_rescan(None)
                if not self.notifier.ready(self._status_line()) and self.notifier.last_error:
                    # Under systemd this start will time out; say why, once.
                    self.log.warning("daemon.notify_failed", error=self.notifier.last_error)
                self._loop()
            except Abandoned:
                self._stop_signal = self._stop_requested  # a step was left running: say goodbye now
            self._open_unsized(self.sizer.drain())
            self._flush_state(force=True)
            self.log.info("daemon.stopping", signal=self._stop_signal)
            self.notifier.stopping()
            freeze_heap()  # the interpreter's last collection: nothing to walk
            return 0
        finally:
            run_walks_with(None)
            unhook()
            self.state.release()
            self.sizer.close()
            self.gc_sizer.close()
            self.watcher.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum != signal.SIGHUP:
            self._stop_requested = signal.Signals(signum).name
        self.queue.put(("signal", signum))

    def _loop(self) -> None:
        now = self.clock()
        self._due_at = {
            "heartbeat": now + self.config.alerts.heartbeat_seconds,
            "rescan": now + self.config.watch.full_rescan_seconds,
            "watchdog": now,
            "root": now + ROOT_POLL,
        }
        while self._stop_signal is None:
            now = self.clock()
            due = self._next_due(now)
            try:
                item = self.queue.get(timeout=max(0.0, min(due - now, MAX_SLEEP)))
            except queue.Empty:
                item = None
            if item is not None:
                self._take(item)
                # Drain what else is waiting before doing any work.
                while self._stop_signal is None:
                    try:
                        self._take(self.queue.get_nowait())
                    except queue.Empty:
                        break
            now = self.clock()
            if self._burst and (
                now - self._burst_last >= self.config.watch.debounce_seconds
                or now - self._burst_first >= max(MAX_DEBOUNCE, self.config.watch.debounce_seconds)
            ):
                self._process_burst()
            if self._to_inspect and not self._burst:
                self._inspect_some()
            self._publish(self.lifecycle.tick(self.clock(), self._quiet_since, self._hold))
            self._timers(self.clock())

    def _next_due(self, now: float) -> float:
        due = [now + MAX_SLEEP]
        if self._to_inspect:
            due.append(now)
        if self._burst:
            due.append(
                min(
                    self._burst_last + self.config.watch.debounce_seconds,
                    self._burst_first + max(MAX_DEBOUNCE, self.config.watch.debounce_seconds),
                )
            )
        if (lifecycle_due := self.lifecycle.next_deadline()) is not None:
            due.append(lifecycle_due)
        for pending_write in (self.state.due(), self.metrics.due()):
            if pending_write is not None:
                due.append(pending_write)
        wall_now = self.timeline()
        if (transition := self.index.next_transition(wall_now)) is not None:
            due.append(now + (transition - wall_now) + 0.01)
        if self.config.alerts.heartbeat_seconds > 0:
            due.append(self._due_at["heartbeat"])
        if self.config.watch.full_rescan_seconds > 0:
            due.append(self._due_at["rescan"])
        if self.notifier.watchdog_interval() is not None:
            due.append(self._due_at["watchdog"])
        due.append(self._due_at["root"])
        for when in (self.watcher.retry_at, self.sizer.next_deadline()):
            if when is not None:
                due.append(when)
        return min(due)

    def _timers(self, now: float) -> None:
        for step in self.timeline.take_news():
            self.log.warning(
                "clock.stepped",
                step_seconds=round(step.seconds, 3),
                steady_for_seconds=round(self._age_horizon() + abs(step.seconds), 3),
            )
        # Time alone can change findings: pending records go stale, temp files age.
        self._feed_lifecycle()
        self._open_unsized(self.sizer.expired(now))
        if self.watcher.retry_at is not None and now >= self.watcher.retry_at:
            restored = self.watcher.retry()
            self._report_watches()
            if restored:
                self._rescan("watch_restored")
        self._watchdog_beat()
        heartbeat = self.config.alerts.heartbeat_seconds
        if heartbeat > 0 and now >= self._due_at["heartbeat"]:
            self.log.info(
                "daemon.heartbeat",
                open=self.lifecycle.open_counts(),
                snapshots=self.index.snapshot_count,
                blobs=self.index.blob_count,
            )
            self.metrics.changed()
            self._plan_gc()
            self._due_at["heartbeat"] = now + heartbeat
        if now >= self._due_at["root"]:
            # A root replaced or unmounted under us sends no event at all.
            if self._unseen is not None or self.rootwatch.moved() is not None:
                self._rescan(None)
            self._due_at["root"] = self.clock() + ROOT_POLL
        rescan = self.config.watch.full_rescan_seconds
        if rescan > 0 and now >= self._due_at["rescan"]:
            self._rescan("timer")
            self._due_at["rescan"] = self.clock() + rescan
        self._update_status()
        self.metrics.flush(self.log, self.clock(), self._readings)

    def _watchdog_beat(self) -> None:
        """WATCHDOG=1 when due: from the loop's timers, and between the
        slices of a step running off the loop (offload.py)."""
        now = self.clock()
        if (interval := self.notifier.watchdog_interval()) is not None and now >= self._due_at.get(
            "watchdog", now
        ):
            self.notifier.watchdog()
            self._due_at["watchdog"] = now + interval

    def _readings(self) -> Readings:
        """What the metrics file says now. Open findings are those announced
        (as the state file keeps them), orphans with their measured size."""
        announced = [
            self.sizer.with_size(finding, self._size_paths(finding))
            if finding.kind == fk.ORPHAN_DATA_DIR
            else finding
            for finding, _ in self.lifecycle.open_findings(self.clock())
            if not self.sizer.holds(finding.key)
        ]
        return Readings(
            open_findings=announced,
            snapshots=self.index.snapshot_count,
            pending_snapshots=self.index.pending_count,
            blobs=self.index.blob_count,
            last_full_scan=self._last_full_scan,
            index_load_seconds=self._index_load_seconds,
            full_rescan_interval=self.config.watch.full_rescan_seconds,
            heartbeat_interval=self.config.alerts.heartbeat_seconds,
            root_ok=self._unseen is None,
            gc_would_abort=self.index.gc_blocker is not None,
            gc_module_bytes=None if self._gc_totals is None else self._gc_totals.module_bytes,
        )

    # ---------------------------------------------------------------- input
    def _take(self, item: Item) -> None:
        kind, value = item
        if kind == "signal":
            self._signal(value)
        elif kind == "rescan":
            self._add_to_burst(Change("rescan", str(value)))
        elif kind in ("fs", "attrib"):
            change = classify(self.root, value, attrib=kind == "attrib")
            if change is not None:
                self._add_to_burst(change)
        elif kind == "gc_plan":
            self._gc_totals = value
            self.metrics.changed()
        elif kind == "crash":
            raise value  # a worker thread died: see crash.py
        elif kind == "size":
            finding = self.sizer.arrived(*value)
            if finding is not None:
                self._emit(finding.severity, "finding.opened", finding.to_dict())
                self._open_set_changed()  # announced now, so it belongs in the saved open set

    def _add_to_burst(self, change: Change) -> None:
        now = self.clock()
        if not self._burst:
            self._burst_first = now
        self._burst_last = now
        if change.what in ("data_dir", "db"):
            self._quiet_since = now
        self._burst.setdefault(change.what, set()).add(change.name)

    def _signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self._reload()
        else:
            self._stop_signal = signal.Signals(signum).name

    def _process_burst(self) -> None:
        burst, self._burst = self._burst, {}
        if "structure" in burst or "rearm" in burst:
            # A chmod/chown of a watched dir: it may be (un)readable now.
            self._arm_and_rescan("root_changed" if "structure" in burst else "attributes_changed")
            return
        if (root := self._root_check()) != "seen":
            if root == "back":
                self._rescan(None)
            return
        if "rescan" in burst:
            for reason in sorted(burst["rescan"]):
                self.log.warning("watch.rescan", reason=reason)
            self._arm()
            self._rescan(None)
            return
        loaded = self._load_db() if "db" in burst and self._db_changed(force=False) else None
        root, index = self.root, self.index
        for name in burst.get("data_dir", ()):
            rec = index.records.get(name)
            index.set_data_dir(
                name,
                inspect_data_dir(
                    root,
                    name,
                    contents=rec is not None and not rec.pending and rec.recorded is None,
                    activity=rec is None,
                    run_dir=self.config.run_dir,
                ),
            )
        for relpath in burst.get("blob", ()):
            index.set_blob(relpath, stat_blob(root, relpath) if blob_relpath_ok(relpath) else None)
        for hex_ in burst.get("boot", ()):
            index.set_boot_dir(hex_, stat_boot_dir(root, hex_))
        if "blob" in burst or "boot" in burst:
            # An image's files came or went: the base files snapshots name
            # (few distinct paths) are looked at again; others, at a rescan.
            index.set_base_files(stat_base_files(index.base_files))
        for relpath in burst.get("temp", ()):
            index.set_temp(relpath, stat_temp(root, relpath))
        for relpath in burst.get("ref_db", ()):
            index.set_ref_db(relpath, read_ref_db(root, relpath, self._max_db_bytes))
        # A DB just read may name dirs and blobs whose events are still in
        # the queue: look at them now, so no finding opens from a state that
        # never existed on disk.
        self._fulfil_wants()
        self._log_loaded(loaded)
        if loaded is not None:
            self._remember_root()
        self._feed_lifecycle()

    # ----------------------------------------------------------------- work
    def _db_changed(self, force: bool) -> bool:
        """Is snapshots.json another file than the one last parsed (a
        rename, an in-place write, created or removed)? Records the new
        identity; a DB that stays absent is not a change."""
        ident = file_id(str(self.paths.snapshot_db_file()))
        if not force and ident == self._db_id:
            return False
        self._db_id = ident
        return True

    def _load_db(self) -> float | None:
        """Re-parse snapshots.json into the index. Returns the seconds it
        took when a good DB was loaded (the caller logs `index.loaded` once
        the rest of the index is current too), else None."""
        started = self.clock()
        index, paths, limit = self.index, self.paths, self._max_db_bytes
        self._offload.run(lambda: index.set_snapshot_db(read_snapshot_db(paths, index, limit)))
        return self._loaded_since(started)

    def _loaded_since(self, started: float) -> float | None:
        release_free_memory()
        if self.index.db_error is not None:
            self._loaded_counts = None  # the next good load is news, whatever its counts
            return None  # db_unreadable opens through the lifecycle; the last good index stays
        return self.clock() - started

    def _log_loaded(self, seconds: float | None) -> None:
        if seconds is not None:
            self._index_load_seconds = seconds
            counts = (self.index.snapshot_count, self.index.name_count, self.index.blob_count)
            # At info only when the counts changed: under churn a DB load a
            # second is noise that buries findings (the heartbeat has the rest).
            level = self.log.info if counts != self._loaded_counts else self.log.debug
            self._loaded_counts = counts
            level(
                "index.loaded",
                snapshots=self.index.snapshot_count,
                names=self.index.name_count,
                blobs=self.index.blob_count,
                duration_ms=round(seconds * 1000, 1),
            )

    def _arm_and_rescan(self, reason: str | None, also: set[Key] | None = None) -> None:
        """(Re)arm the watches first, then list: anything that changes in
        between is seen by both, never by neither."""
        watched = self._arm()
        if not os.path.isdir(self.root):
            self.log.warning("watch.rescan", reason="root_missing", root=self.root, watching=watched)
        elif reason is not None:
            self.log.info("watch.rescan", reason=reason)
        self._rescan(None, force_db=self._db_id is _NEVER_READ, also=also)

    def _arm(self) -> list[str]:
        watched = self.watcher.arm()
        self._report_watches()
        return watched

    def _report_watches(self) -> None:
        """Say once which directories cannot be watched (events there are
        missed until a retry succeeds), and when they can be again."""
        failed, restored = self.watcher.news()
        for directory, error in sorted(failed.items()):
            self.log.warning("watch.failed", dir=directory, error=error)
        for directory in restored:
            self.log.info("watch.restored", dir=directory)
        self._db_watch_news()

    def _db_watch_news(self) -> None:
        """Judge nothing against a DB whose changes cannot be seen: with
        snapshot/db unwatched (the inotify watch limit, say) every save
        would look like an orphan until the next rescan. What depends on
        snapshots.json is held (neither opened nor resolved) until the
        watch works again; then the DB is read afresh."""
        unwatched = any(
            os.path.join(self.root, d) in self.watcher.failed for d in ("snapshot/db", "snapshot")
        )
        if unwatched == self.index.db_unwatched:
            return
        self.index.db_unwatched = unwatched
        if unwatched:
            self.log.warning(
                "index.held",
                dir=os.path.join(self.root, "snapshot/db"),
                reason="snapshot/db is not watched: findings that depend on snapshots.json are held "
                "(neither opened nor resolved) until it is",
            )
        else:
            self.log.info("index.resumed", dir=os.path.join(self.root, "snapshot/db"))
            self._db_id = _NEVER_READ  # re-read: what was held is judged against it

    def _rescan(self, reason: str | None, *, force_db: bool = False, also: set[Key] | None = None) -> None:
        """The safety net: list everything and let the index find what the
        events missed. The DB is re-parsed only if it is another file."""
        if reason is not None:
            self.log.info("watch.rescan", reason=reason)
        if self._root_check() == "unseen":
            self._feed_lifecycle(also)
            return
        started = self.clock()
        reload = self._db_changed(force_db)
        # Dirs, blobs and the DB in one go: loading the DB against a stale dir
        # listing would make (and drop) a finding per record. A directory
        # that cannot be listed keeps what the index knew (dir_unreadable).
        index, paths, limit, config = self.index, self.paths, self._max_db_bytes, self.config

        def step() -> dict[str, Any]:
            listing = scan(
                paths,
                include_db=reload,
                index=index,
                max_db_bytes=limit,
                dir_contents=False,
                run_dir=config.run_dir,
                log_dir=config.log_dir,
            )
            index.apply_listing(listing)
            return dict(listing.vm_dirs)

        vm_dirs = self._offload.run(step)
        for dirs in vm_dirs.values():
            if dirs.subdirs is None and dirs.unreadable is None and dirs.path not in self._vm_dirs_told:
                # cocoon's run/log dirs live outside the root: say once that one is not there.
                self._vm_dirs_told.add(dirs.path)
                self.log.info("vm_dirs.absent", dir=dirs.path)
        self._fulfil_wants()
        if not self._to_inspect:
            self._compact()
        loaded = self._loaded_since(started) if reload else None
        self._log_loaded(loaded)
        self._last_full_scan = self.wall()
        self.metrics.changed()
        self._remember_root()
        self._feed_lifecycle(also)
        self._plan_gc(force=True)

    def _remember_root(self) -> None:
        """What the root holds, for a later root_unseen message (saved with
        the open set; a change worth it is saved on its own)."""
        if self.rootwatch.seen(self.index.snapshot_count):
            self.state.changed()
        self.state.root_seen = self.rootwatch.memo_json()

    def _root_check(self) -> str:
        """Look at the root before anything is judged against it (issue 18):
        "unseen" (missing, unreadable, not a cocoon root: one root_unseen
        error, everything else stays as it was, unknown), "back" (seen
        again, or another directory now: the watches are re-armed and the
        caller must rescan in full, the DB re-read), or "seen"."""
        before = self.rootwatch.last
        look = self.rootwatch.look()
        cause = self.rootwatch.cause
        key = (fk.ROOT_UNSEEN, self.root)
        if cause is not None:
            if cause != self._unseen:
                self.log.warning("root.unseen", root=self.root, cause=cause)
                self._unseen = cause
                self._db_id = _NEVER_READ  # whatever comes back is read afresh
                finding = rules.root_unseen(self.root, cause)
                self._publish(self.lifecycle.observe(self.clock(), [(key, finding)]))
                self._update_status()
                self.metrics.changed()  # cocoond_root_ok 0
            return "unseen"
        if self._unseen is not None:
            self.log.info("root.seen", root=self.root, realpath=look.realpath)
            self._unseen = None
        elif before is not None and before.kind == "dir" and before.identity != look.identity:
            # Renamed away and another moved in, a symlink repointed, a mount:
            # the watches are on the old inodes.
            self.log.warning(
                "watch.rescan",
                reason="root_replaced",
                root=self.root,
                was=f"{before.realpath} (device {before.dev}, inode {before.ino})",
                now=f"{look.realpath} (device {look.dev}, inode {look.ino})",
            )
            self._db_id = _NEVER_READ
        else:
            return "seen"
        # Whatever is there now is read afresh into a new index (its realpath,
        # which records' data_dir may name, may differ too); what the old
        # one had open is looked up once judging resumes.
        self.index = self._new_index(self.config)
        self._to_inspect = {}
        # The burst summaries stay with their groups; their members are looked up.
        members = set(self._missing_bursts.members) | set(self._orphan_bursts.members)
        summaries = {key, MISSING_SUMMARY, ORPHAN_SUMMARY}
        self._also |= (self.lifecycle.tracked_keys() | members) - summaries
        self._returning = True
        self._publish(self.lifecycle.observe(self.clock(), [(key, None)]))
        self._arm()
        return "back"

    def _paused(self) -> bool:
        """Judging waits: the root is unseen, or back with data dirs still
        to read (a finding about one must not resolve and open again)."""
        if self._unseen is not None:
            return True
        if self._returning and not self._to_inspect:
            self._returning = False
        return self._returning

    def _fulfil_wants(self) -> None:
        """Look at what the index asked for. Dirs that a new snapshots.json
        left without a record, beyond the threshold, are one finding: only a
        new DB makes many orphans at once for one reason (dirs that appear,
        an import or an overflow rescan, stay single). Data dir contents (a few small
        reads per snapshot) go to a queue that `_inspect_some` works off a
        slice at a time, so 100k of them never stall events or READY.
        Taking the wants judges what a load changed (which VM owns which
        snapshot: seconds at 1M): off the loop's thread, as the load is."""
        index, root, run_dir = self.index, self.root, self.config.run_dir

        def step() -> tuple[set[str], dict[str, None]]:
            wants = index.take_wants()
            inspect = dict.fromkeys(sorted(wants.contents))
            wants.contents = set()
            fulfil(root, index, wants, run_dir)
            return wants.orphaned, inspect

        orphaned, inspect = self._offload.run(step)
        self._orphan_bursts.expect(
            [(fk.ORPHAN_DATA_DIR, sid) for sid in orphaned],
            self.lifecycle.tracks,
            self._burst_threshold,
        )
        if self._to_inspect:
            self._to_inspect.update(inspect)
        else:
            self._to_inspect = inspect

    def _inspect_some(self) -> None:
        deadline = self.clock() + INSPECT_SLICE
        index, todo = self.index, self._to_inspect
        while todo and self.clock() < deadline:
            # popitem: O(1). next(iter(todo)) + del is O(deleted so far) (the
            # dict skips its emptied slots), quadratic: 5 min of CPU at 1M.
            name, _ = todo.popitem()
            rec = index.records.get(name)
            if rec is not None and not rec.pending and rec.recorded is None:
                index.set_data_dir(
                    name,
                    inspect_data_dir(
                        self.root, name, contents=True, activity=False, run_dir=self.config.run_dir
                    ),
                )
                self._inspected += 1
        if not todo and self._inspected >= COMPACT_AFTER:
            self._compact()
        freeze_heap()  # what the slice read: see offload.freeze_heap
        self._feed_lifecycle()

    def _compact(self) -> None:
        """After a full scan, or once many data dirs were read: see
        Reconciler.compact (a copy of every dir's facts: off the loop)."""
        self._offload.run(self.index.compact)
        release_free_memory()
        self._inspected = 0

    def _hold(self, key: Key, finding: Finding) -> float | None:
        """Asked by the lifecycle before it opens a settled finding: None to
        open it now, or when to ask again. While snapshots.json is
        unreadable nothing that depends on it opens (the index is older than
        the disk); a record-less dir still being written (an import in
        progress) is not an orphan yet."""
        now = self.clock()
        settle = max(self.config.watch.settle_seconds, MIN_HOLD)
        if key[0] != fk.ROOT_UNSEEN and self._paused():
            return now + settle
        if self.index.frozen and key[0] in DB_DEPENDENT:
            return now + settle
        if key[0] == fk.ORPHAN_DATA_DIR and finding.path:
            try:
                written = last_write(finding.path, os.lstat(finding.path).st_mtime)
            except OSError:
                return None  # gone: the index resolves it
            # Quiet by both clocks: a step cannot make a dir being written look old.
            quiet_for = min(self.wall(), self.timeline()) - written
            if quiet_for < self.config.watch.settle_seconds:
                return now + max(self.config.watch.settle_seconds - quiet_for, MIN_HOLD)
        if (again := self._aged_by_both_clocks(finding, now)) is not None:
            return again
        # A cocoon command rewriting the DB right now (inflight.py).
        return self._in_flight.hold(key, now, self._held_for_cocoon)

    def _held_for_cocoon(self, key: Key, pids: list[int]) -> None:
        self.log.debug("finding.held", kind=key[0], subject=key[1], reason="cocoon_lock_held", pids=pids)

    def _aged_by_both_clocks(self, finding: Finding, now: float) -> float | None:
        """A finding that exists because something is old enough (stale
        pending record, stale temp file) opens only if it is old enough by
        the plain wall clock too: after a backward step, what was written
        since looks older on the steady timeline than it is."""
        thresholds = self.config.thresholds
        limit = {
            fk.STALE_PENDING: thresholds.pending_stale_seconds,
            fk.STALE_TEMP: thresholds.temp_stale_seconds,
        }
        if finding.kind not in limit or finding.age_seconds is None:
            return None
        wait = self._plain_age.wait(finding.key, finding.age_seconds, limit[finding.kind])
        return None if wait is None else now + max(wait, MIN_HOLD)

    def _age_horizon(self) -> float:
        """The longest age a finding depends on: a clock step older than
        this (plus its size) no longer matters (clock.py)."""
        t = self.config.thresholds
        return max(t.pending_stale_seconds, t.temp_stale_seconds, self.config.watch.settle_seconds * 10)

    def _feed_lifecycle(self, also: set[Key] | None = None) -> None:
        if self._paused():
            # Nothing is judged: what the index has not handed over waits
            # for the root (its changes add up until then).
            if also:
                self._also |= also
            self._publish(self.lifecycle.settle_restored(self.clock(), self._undecided))
            return
        changed = self.index.evaluate(self.timeline())
        also, self._also = (also or set()) | self._also, set()
        if also:
            changed |= also
        if changed:
            current = self.index.current
            changes = self._orphan_bursts.regroup([(key, current(key)) for key in changed])
            changes = self._missing_bursts.regroup(
                changes,
                announced=self.lifecycle.announced,
                settling=self.lifecycle.settling,
                current=current,
                threshold=self._burst_threshold,
            )
            self._publish(self.lifecycle.observe(self.clock(), changes))
        if pruned := self._orphan_bursts.prune(self.index.orphan_possible):
            self._publish(self.lifecycle.observe(self.clock(), pruned))
        # What a previous run had open is judged once the index can tell (state.py).
        self._publish(self.lifecycle.settle_restored(self.clock(), self._undecided))

    def _undecided(self, key: Key) -> bool:
        """The index cannot yet tell whether a finding a previous run had
        open still holds: its DB is unreadable, or its data dir's contents
        are still queued for `_inspect_some` (subject = snapshot ID), or
        the root cannot be seen."""
        if key[0] != fk.ROOT_UNSEEN and self._paused():
            return True
        held = self.index.db_error is not None or self.index.frozen
        return (held and key[0] in DB_DEPENDENT) or key[1] in self._to_inspect

    @property
    def _burst_threshold(self) -> int:
        return self.config.alerts.orphan_burst_threshold

    def _publish(self, events: list[Event]) -> None:
        self.stamps.note(events, self.wall())
        crowded = reminders.crowded(events, self._burst_threshold)
        for event in events:
            if isinstance(event, Opened):
                if wants_size(event.finding):
                    # Opened once its size is known (the total for an orphan burst).
                    self.sizer.hold(event.finding, self.clock(), self._size_paths(event.finding))
                else:
                    self._emit(event.finding.severity, "finding.opened", event.finding.to_dict())
            elif isinstance(event, Resolved):
                key = (event.kind, event.subject)
                self._open_unsized([held] if (held := self.sizer.release(key)) else [])
                self.sizer.forget(key)
                self.log.info("finding.resolved", **resolved_fields(event))
            elif isinstance(event, Reminder):
                # The index's copy is current (ages move on); the lifecycle's
                # is as of the last change.
                self._open_unsized([held] if (held := self.sizer.release(event.finding.key)) else [])
                if event.finding.kind in crowded:
                    continue  # one line for its kind, below
                current = self.index.current(event.finding.key) or event.finding
                fields = self.sizer.with_size(current, self._size_paths(current)).to_dict()
                fields["open_seconds"] = round(event.open_seconds, 3)
                fields["opened_at"] = self._stamp(event)
                self._emit(event.finding.severity, "finding.reminder", fields)
        for kind, found in crowded.items():
            self._emit(fk.SEVERITY_OF[kind], "finding.reminders", reminders.summary(kind, found, self._stamp))
        if events:
            self._update_status()
        if any(not isinstance(event, Reminder) for event in events):
            self._open_set_changed()
        self._flush_state()

    def _stamp(self, event: Reminder) -> str:
        return self.stamps.get(event.finding.key) or rfc3339(self.wall() - event.open_seconds)

    def _size_paths(self, finding: Finding) -> tuple[str, ...]:
        """What an orphan finding's `bytes` adds up: its dir, or every dir of a burst."""
        members = self._orphan_bursts.member_paths(finding)
        return members if members is not None else (finding.path,) if finding.path else ()

    def _open_unsized(self, findings: list[Finding]) -> None:
        """Orphans whose size did not come in time: opened without `bytes`."""
        for finding in findings:
            self._emit(finding.severity, "finding.opened", finding.to_dict())
        if findings:
            self._open_set_changed()

    def _flush_state(self, *, force: bool = False) -> None:
        """The state file as of now (skipping what the sizer still holds);
        `force` at stop, else only when due."""
        self.state.flush(
            self.log,
            self.lifecycle,
            self.root,
            self.clock(),
            self.wall(),
            skip=self.sizer.holds,
            force=force,
            stamp=self.stamps.get,
        )

    def _open_set_changed(self) -> None:
        self.state.changed()
        self.metrics.changed()
        self._plan_gc()

    def _plan_gc(self, *, force: bool = False) -> None:
        """gc's plan from the index (no I/O), measured on a worker thread:
        after each full scan, and when the open findings change (at most
        every GC_PLAN_MIN_INTERVAL; a heartbeat catches up)."""
        now = self.clock()
        if not force and now - self._gc_planned_at < GC_PLAN_MIN_INTERVAL:
            return
        self._gc_planned_at = now
        self.gc_sizer.request(self.root, gcmodel.plan(self.index.gc_view(self.wall())))

    def _emit(self, severity: str, event: str, fields: dict[str, Any]) -> None:
        fields = dict(fields)
        fields.pop("severity", None)  # the line's `level` says it
        getattr(self.log, severity)(event, severity=severity, **fields)

    def _status_line(self) -> str:
        counts = self.lifecycle.open_counts()
        state = "watching" if self._unseen is None else "CANNOT SEE"
        return (
            f"{state} {self.root}: {self.index.snapshot_count} snapshots, {self.index.blob_count} blobs; "
            f"open: {counts['error']} errors, {counts['warning']} warnings, {counts['info']} info"
        )

    def _update_status(self) -> None:
        line = self._status_line()
        if line != self._status:
            self._status = line
            self.notifier.status(line)

    def _reload(self) -> None:
        """SIGHUP: a bad new config is logged and the old one kept."""
        self.notifier.reloading()
        path = self.choice.file()
        try:
            new = load_config(path, root=self.choice.root)
        except ConfigError as exc:
            self.log.error("config.reload_failed", error=str(exc), config=path)
            self.notifier.ready(self._status_line())
            return
        old, self.config = self.config, new
        # Logged before the new level applies: a reload to level "warning"
        # must still leave a trace of itself.
        self.log.info("config.reloaded", config=path, root=os.path.abspath(new.root_dir))
        self.log = configure(new.log.format, new.log.level)
        self.metrics.move(new.metrics.textfile)
        now = self.clock()
        self.lifecycle.reconfigure(new.watch.settle_seconds, new.alerts.reminder_seconds, now)
        for job, before, after in (
            ("heartbeat", old.alerts.heartbeat_seconds, new.alerts.heartbeat_seconds),
            ("rescan", old.watch.full_rescan_seconds, new.watch.full_rescan_seconds),
        ):
            if after != before and after > 0:
                # A shorter interval takes effect now, not after the old one runs out.
                self._due_at[job] = min(self._due_at[job], now + after) if before > 0 else now + after
        self.index.pending_stale_seconds = new.thresholds.pending_stale_seconds
        self.index.temp_stale_seconds = new.thresholds.temp_stale_seconds
        self.index.orphan_quiet_seconds = new.watch.settle_seconds
        if not same_root(self.root, os.path.abspath(new.root_dir)):
            # Another tree: start a new index, and resolve what the old one had open.
            self._open_unsized(self.sizer.drain())
            self.watcher.close()
            self._setup_root(new)
            self._db_id = _NEVER_READ
            self._arm_and_rescan("root_changed", also=self.lifecycle.tracked_keys())
        self.notifier.ready(self._status_line())


def run_daemon(config: Config, *, choice: ConfigChoice | None = None) -> int:
    """`cocoond run`: 0 when stopped, EX_SOFTWARE after `daemon.crashed`."""
    daemon: Daemon | None = None
    try:
        daemon = Daemon(config, choice=choice)
        return daemon.run()
    except StateDirBusy as exc:
        assert daemon is not None
        daemon.log.error("state.dir_busy", error=str(exc))
        return EX_TEMPFAIL
    except Exception as exc:  # any bug: said once, structured, then exit
        log = daemon.log if daemon is not None else configure(config.log.format, config.log.level)
        return crash.report(log, exc)
