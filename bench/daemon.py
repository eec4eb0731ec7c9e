"""The `cocoond run` benchmark: READY time, DB-rewrite absorption, event latency,
memory, idle CPU and SIGTERM, against one cached tree.

The daemon is started as systemd would (Type=notify): NOTIFY_SOCKET names an
AF_UNIX datagram socket the harness binds, and stdout carries JSON log lines,
read in a thread that stamps each line on arrival. Every wait has a deadline;
the daemon is killed in a `finally`, and the tree is restored (removed data dirs
recreated, orphans deleted) so the cached copy stays consistent.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar

from bench.trees import Tree, inconsistency, log, restore, sim, stash_copies

T = TypeVar("T")

SETTLE_SECONDS = 0.5
DEBOUNCE_SECONDS = 0.05
CONFIG_TOML = f"""\
# written by the cocoond benchmark harness
[watch]
settle_seconds = {SETTLE_SECONDS}
debounce_seconds = {DEBOUNCE_SECONDS}

[alerts]
heartbeat_seconds = 3600

[log]
format = "json"
# index.loaded is at debug when the counts did not change (a one-record rewrite)
level = "debug"
"""

CLK_TCK = os.sysconf("SC_CLK_TCK")


class DaemonError(Exception):
    """A wait that failed: deadline passed or the daemon exited."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def parse_ts(value: Any) -> float | None:
    """An RFC 3339 timestamp as epoch seconds (None if absent or unparsable)."""
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


@dataclass
class Line:
    arrival: float  # time.time() when the harness read the line
    obj: dict[str, Any]
    ts: float | None  # the line's own `timestamp`, epoch seconds

    @property
    def event(self) -> str:
        return str(self.obj.get("event", ""))


class Monitor:
    """Collects the daemon's stdout JSON lines and sd_notify datagrams, each
    with its arrival time, under one condition variable."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket, stderr_path: Path) -> None:
        self.proc = proc
        self.sock = sock
        self.stderr_path = stderr_path
        self.cond = threading.Condition()
        self.lines: list[Line] = []
        self.notify: list[tuple[float, str]] = []
        self.skipped = 0
        self.stdout_closed = False
        self.opened: dict[tuple[str, str], Line] = {}
        self.resolved: dict[tuple[str, str], Line] = {}
        assert proc.stdout is not None
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(proc.stdout,), daemon=True),
            threading.Thread(target=self._read_notify, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_stdout(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            now = time.time()
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
            with self.cond:
                if not isinstance(obj, dict):
                    self.skipped += 1  # not a JSON object: skipped, as the brief says
                    continue
                line = Line(now, obj, parse_ts(obj.get("timestamp")))
                self.lines.append(line)
                key = (str(obj.get("kind", "")), str(obj.get("subject", "")))
                if line.event == "finding.opened":
                    self.opened.setdefault(key, line)
                elif line.event == "finding.resolved":
                    self.resolved.setdefault(key, line)
                self.cond.notify_all()
        with self.cond:
            self.stdout_closed = True
            self.cond.notify_all()

    def _read_notify(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return  # socket closed by the harness
            now = time.time()
            with self.cond:
                self.notify.append((now, data.decode(errors="replace")))
                self.cond.notify_all()

    def stderr_tail(self, lines: int = 8) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "(no stderr)"
        t = " | ".join(x.strip() for x in text.strip().splitlines()[-lines:])
        return t[-600:] if t else "(stderr empty)"

    def wait(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """Wait until probe() (called under the lock) returns non-None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = probe()
                if got is not None:
                    return got
                if self.stdout_closed or self.proc.poll() is not None:
                    rc = self.proc.wait()
                    raise DaemonError(
                        f"daemon exited (code {rc}) while waiting for {what}; stderr: {self.stderr_tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DaemonError(f"no {what} within {timeout:.0f} s")
                self.cond.wait(min(left, 0.5))

    @staticmethod
    def has_all(seen: dict[tuple[str, str], Line], keys: list[tuple[str, str]]) -> bool | None:
        """True once every key is in `seen` (call under the lock), else None."""
        return True if all(k in seen for k in keys) else None

    def nth(self, event: str, n: int) -> Line | None:
        """The n-th (0-based) line of `event`, or None (call under the lock)."""
        seen = [x for x in self.lines if x.event == event]
        return seen[n] if len(seen) > n else None

    def count(self, event: str) -> int:
        with self.cond:
            return sum(1 for x in self.lines if x.event == event)

    def events_since(self, index: int) -> dict[str, int]:
        with self.cond:
            out: dict[str, int] = {}
            for x in self.lines[index:]:
                out[x.event] = out.get(x.event, 0) + 1
            return out


def proc_status_kib(pid: int, key: str) -> int | None:
    """VmRSS / VmHWM etc. from /proc/PID/status, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime (+ cutime + cstime) of PID from /proc/PID/stat, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def proc_cpu_ns(pid: int) -> int | None:
    """CPU time (user+sys) of every thread of PID, in nanoseconds: the sum of
    /proc/PID/task/*/schedstat's first field (sum_exec_runtime). /proc/PID/stat
    counts in 10 ms ticks, too coarse for one DB rewrite at 1k records."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (`echo 5 > /proc/PID/clear_refs`), so
    the peak of what follows can be read on its own."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def cpu_of(fn: Callable[[], object]) -> float:
    """CPU seconds (this thread's user+sys) that fn() takes."""
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


@dataclass
class DaemonResult:
    snapshots: int
    error: str | None = None
    ready_s: float | None = None
    initial_load_ms: float | None = None
    absorb_s: list[float] = field(default_factory=list)  # mtime -> index.loaded arrival
    absorb_ts_s: list[float] = field(default_factory=list)  # mtime -> index.loaded `timestamp`
    absorb_duration_ms: list[float] = field(default_factory=list)  # index.loaded duration_ms
    latency_missing: list[float] = field(default_factory=list)
    latency_orphan: list[float] = field(default_factory=list)
    latency_ts: list[float] = field(default_factory=list)  # by the lines' own timestamps
    latency_after_burst: list[float] = field(default_factory=list)  # from the batch's last fs op
    events_expected: int = 0
    resolve_s: list[float] = field(default_factory=list)
    rss_ready_kib: int | None = None
    hwm_ready_kib: int | None = None
    rss_events_kib: int | None = None
    rss_end_kib: int | None = None
    hwm_kib: int | None = None
    idle_window_s: float | None = None
    idle_cpu_s: float | None = None
    idle_lines: dict[str, int] = field(default_factory=dict)
    exit_s: float | None = None
    exit_code: int | None = None
    line_counts: dict[str, int] = field(default_factory=dict)
    skipped_lines: int = 0
    notes: list[str] = field(default_factory=list)
    #: One-record rewrites: the daemon's CPU for each (user+sys, /proc), and
    #: the harness's CPU for one json.loads of the same DB (best of 3).
    rewrite_cpu_s: list[float] = field(default_factory=list)
    loads_cpu_s: float | None = None
    db_bytes: int | None = None
    #: VmRSS before the rewrites and VmHWM over them (reset just before).
    rss_steady_kib: int | None = None
    hwm_rewrites_kib: int | None = None
    #: `snapshot save` burst: creates, wall seconds, daemon CPU, simulator CPU.
    burst_saves: int = 0
    burst_wall_s: float | None = None
    burst_daemon_cpu_s: float | None = None
    burst_sim_cpu_s: float | None = None

    @property
    def latencies(self) -> list[float]:
        return self.latency_missing + self.latency_orphan


def notify_socket_path(workdir: Path) -> tuple[Path, Path | None]:
    """A socket path short enough for sun_path (108 bytes); the second value is
    a temp dir to remove afterwards, if one was needed."""
    path = workdir / "notify.sock"
    if len(str(path).encode()) < 100:
        return path, None
    tmp = Path(tempfile.mkdtemp(prefix="cocoond-bench-"))
    return tmp / "notify.sock", tmp


def bench_daemon(
    cocoond: str,
    tree: Tree,
    workdir: Path,
    events_per_kind: int,
    idle_seconds: float,
    batch: int = 10,
    spacing: float = 0.005,
    rewrites: int = 5,
    seed: int = 1,
    burst_saves: int = 10,
) -> DaemonResult:
    res = DaemonResult(tree.snapshots)
    s = sim()
    root = tree.root
    n = tree.snapshots
    big_wait = 60 + n / 1000  # generous deadline for whole-DB work (READY, reloads)
    cfg = workdir / "daemon.toml"
    cfg.write_text(CONFIG_TOML)
    stderr_path = workdir / f"daemon-{n}.stderr"
    sock_path, sock_tmp = notify_socket_path(workdir)
    sock_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    removed: list[str] = []
    orphans: list[str] = []
    proc: subprocess.Popen[bytes] | None = None
    mon: Monitor | None = None
    stage = "start"
    try:
        env = dict(os.environ, NOTIFY_SOCKET=str(sock_path))
        with open(stderr_path, "wb") as err:
            t_spawn = time.time()
            proc = subprocess.Popen(
                [cocoond, "run", "--root", str(root), "--config", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
            )
        mon = Monitor(proc, sock, stderr_path)
        m = mon

        # ---- READY
        stage = "READY"
        t_ready = m.wait(
            lambda: next((t for t, msg in m.notify if "READY=1" in msg.split("\n")), None),
            big_wait,
            "READY=1 on NOTIFY_SOCKET",
        )
        res.ready_s = t_ready - t_spawn
        res.rss_ready_kib = proc_status_kib(proc.pid, "VmRSS")
        res.hwm_ready_kib = proc_status_kib(proc.pid, "VmHWM")
        time.sleep(SETTLE_SECONDS + 0.5)  # let any start-up findings settle and print
        with m.cond:
            early = [x.obj for x in m.lines if x.event == "finding.opened"]
            first_load = m.nth("index.loaded", 0)
        if first_load is None:
            res.notes.append("no index.loaded line at start")
        elif isinstance(first_load.obj.get("duration_ms"), int | float):
            res.initial_load_ms = float(first_load.obj["duration_ms"])
        if early:
            kinds = sorted({str(o.get("kind")) for o in early})
            res.notes.append(
                f"{len(early)} finding(s) opened on a consistent tree at start: {', '.join(kinds)}"
            )

        # ---- DB rewrite absorption: one record's description changed per
        # write (as a `snapshot save` changes one record), atomically, under
        # cocoon's lock. The daemon's CPU per write beside one json.loads of
        # the same DB here; VmHWM reset first, so the peak is the rewrites'.
        stage = "DB rewrite"
        raw_db = tree.db_file.read_bytes()
        res.db_bytes = len(raw_db)
        res.loads_cpu_s = min(cpu_of(partial(json.loads, raw_db)) for _ in range(3))
        del raw_db
        db = tree.load_db()
        db_path = str(tree.db_file)
        victim = sorted(db["snapshots"])[len(db["snapshots"]) // 2]
        original = db["snapshots"][victim].get("description")
        time.sleep(0.5)
        if reset_peak_rss(proc.pid):
            res.rss_steady_kib = proc_status_kib(proc.pid, "VmRSS")
        for k in range(rewrites + 1):
            restoring = k == rewrites  # the original written back: not measured
            if restoring:
                db["snapshots"][victim]["description"] = original
            else:
                db["snapshots"][victim]["description"] = f"bench rewrite {k}"
            before = m.count("index.loaded")
            r0 = proc_cpu_ns(proc.pid)
            with s.flock(s.snapshot_lock(str(root))):
                s.atomic_write_json(db_path, db)
            mtime = os.stat(db_path).st_mtime
            line = m.wait(partial(m.nth, "index.loaded", before), big_wait, "index.loaded after a DB rewrite")
            time.sleep(0.2)  # what the loop does after the line (findings, state)
            r1 = proc_cpu_ns(proc.pid)
            if restoring:
                break
            if r0 is not None and r1 is not None:
                res.rewrite_cpu_s.append((r1 - r0) / 1e9)
            res.absorb_s.append(line.arrival - mtime)
            if line.ts is not None:
                res.absorb_ts_s.append(line.ts - mtime)
            dur = line.obj.get("duration_ms")
            if isinstance(dur, int | float):
                res.absorb_duration_ms.append(float(dur))
            if k == rewrites - 1 and res.rss_steady_kib is not None:
                res.hwm_rewrites_kib = proc_status_kib(proc.pid, "VmHWM")
            time.sleep(SETTLE_SECONDS)
        del db

        # ---- events: remove committed data dirs and create orphan dirs, interleaved, in batches.
        # cocoond holds data-dir findings until snapshot/ has been quiet for settle_seconds (up to
        # 10x settle: bulk writers look broken while they run), so a continuous stream would measure
        # that hold, not the cost of an event. Each batch is a quick burst; the next one starts
        # once every finding of the last has opened.
        stage = "events"
        snap_ids = sorted(k for k, v in tree.load_db()["snapshots"].items() if not v.get("pending"))
        rng = random.Random(seed)
        victims = rng.sample(snap_ids, min(events_per_kind, len(snap_ids)))
        stash_copies(tree, victims)
        known = set(snap_ids)
        plan: list[tuple[str, str]] = []
        for i in range(events_per_kind):
            if i < len(victims):
                plan.append(("missing_data_dir", victims[i]))
            oid = s.new_id()
            while oid in known:
                oid = s.new_id()
            known.add(oid)
            plan.append(("orphan_data_dir", oid))
        ops: list[tuple[str, str, float]] = []
        for start in range(0, len(plan), batch):
            chunk: list[tuple[str, str, float]] = []
            for kind, sid in plan[start : start + batch]:
                if kind == "missing_data_dir":
                    removed.append(sid)
                    shutil.rmtree(tree.data_dir(sid))
                else:
                    orphans.append(sid)
                    s.write_snapshot_files(str(tree.data_dir(sid)))
                chunk.append((kind, sid, time.time()))
                time.sleep(spacing)
            ops += chunk
            keys = [(k, sid) for k, sid, _ in chunk]
            try:
                m.wait(
                    partial(m.has_all, m.opened, keys),
                    SETTLE_SECONDS * 10 + 10 + n / 5000,
                    f"finding.opened for a batch of {len(keys)} events",
                )
            except DaemonError as e:
                with m.cond:
                    got = sum(1 for k in keys if k in m.opened)
                res.notes.append(f"{e} ({got} of {len(keys)} arrived); stopped the event series")
                if proc.poll() is not None:
                    raise
                break
            last = chunk[-1][2]
            with m.cond:
                for kind, sid, t_op in chunk:
                    hit = m.opened[(kind, sid)]
                    lat = hit.arrival - t_op - SETTLE_SECONDS
                    (res.latency_missing if kind == "missing_data_dir" else res.latency_orphan).append(lat)
                    res.latency_after_burst.append(hit.arrival - last - SETTLE_SECONDS)
                    if hit.ts is not None:
                        res.latency_ts.append(hit.ts - t_op - SETTLE_SECONDS)
            time.sleep(0.05)
        res.events_expected = len(plan)
        keys = [(k, sid) for k, sid, _ in ops]
        with m.cond:
            expected = set(keys)
            extra = [k for k in m.opened if k not in expected]
        if extra:
            res.notes.append(f"{len(extra)} unexpected finding(s) opened during the run, e.g. {extra[:3]}")
        res.rss_events_kib = proc_status_kib(proc.pid, "VmRSS")

        # ---- restore the tree (the daemon should resolve every finding)
        stage = "restore"
        undo: list[tuple[str, str, float]] = []
        for kind, sid, _ in ops:
            if kind == "missing_data_dir":
                os.rename(tree.stash / sid, tree.data_dir(sid))
            else:
                shutil.rmtree(tree.data_dir(sid), ignore_errors=True)
            undo.append((kind, sid, time.time()))
        try:
            m.wait(
                lambda: True if all(k in m.resolved for k in keys if k in m.opened) else None,
                SETTLE_SECONDS + 30 + n / 5000,
                "finding.resolved for every opened finding",
            )
        except DaemonError as e:
            res.notes.append(str(e))
            if proc.poll() is not None:
                raise
        with m.cond:
            for kind, sid, t_op in undo:
                done = m.resolved.get((kind, sid))
                if done is not None:
                    res.resolve_s.append(done.arrival - t_op)

        # ---- idle CPU
        stage = "idle"
        time.sleep(max(1.0, SETTLE_SECONDS * 2))  # let the last batch finish
        with m.cond:
            idx0 = len(m.lines)
        c0, w0 = proc_cpu_seconds(proc.pid), time.monotonic()
        end = w0 + idle_seconds
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise DaemonError(
                    f"daemon exited (code {proc.returncode}) while idle; stderr: {m.stderr_tail()}"
                )
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        c1, w1 = proc_cpu_seconds(proc.pid), time.monotonic()
        res.idle_window_s = w1 - w0
        if c0 is not None and c1 is not None:
            res.idle_cpu_s = c1 - c0
        res.idle_lines = m.events_since(idx0)
        res.rss_end_kib = proc_status_kib(proc.pid, "VmRSS")
        res.hwm_kib = proc_status_kib(proc.pid, "VmHWM")

        # ---- `snapshot save` burst: the simulator's create in a loop (each
        # writes snapshots.json twice and the VM DB once, and a data dir)
        stage = "save burst"
        from cocoond.sim.vms import list_vms

        vms = [vm_id for _, vm_id, _ in list_vms(str(root))]
        if vms and burst_saves:
            made: list[str] = []
            b0, w0, h0 = proc_cpu_ns(proc.pid), time.monotonic(), time.thread_time()
            for i in range(burst_saves):
                made.append(s.create(str(root), vm=vms[i % len(vms)]))
            h1 = time.thread_time()
            m.wait(
                lambda: next(
                    (
                        x
                        for x in m.lines[::-1]
                        if x.event == "index.loaded" and x.obj.get("snapshots") == n + len(made)
                    ),
                    None,
                ),
                big_wait,
                "index.loaded after the save burst",
            )
            time.sleep(SETTLE_SECONDS + 0.5)  # data dirs read, pending findings resolved
            b1, w1 = proc_cpu_ns(proc.pid), time.monotonic()
            res.burst_saves = len(made)
            res.burst_wall_s = w1 - w0
            res.burst_sim_cpu_s = h1 - h0
            if b0 is not None and b1 is not None:
                res.burst_daemon_cpu_s = (b1 - b0) / 1e9
            for sid in made:
                s.delete(str(root), sid)
            m.wait(
                lambda: next(
                    (x for x in m.lines[::-1] if x.event == "index.loaded" and x.obj.get("snapshots") == n),
                    None,
                ),
                big_wait,
                "index.loaded after the burst's snapshots were removed",
            )

        stage = "SIGTERM"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            res.exit_code = proc.wait(timeout=30)
            res.exit_s = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            res.notes.append("did not exit within 30 s of SIGTERM (killed)")
        if m.count("daemon.stopping") == 0:
            res.notes.append("no daemon.stopping line on SIGTERM")
    except (DaemonError, OSError, ValueError) as e:
        res.error = f"{stage}: {e}"
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        sock.close()
        sock_path.unlink(missing_ok=True)
        if sock_tmp is not None:
            shutil.rmtree(sock_tmp, ignore_errors=True)
        restore(tree, removed, orphans)
        if mon is not None:
            for t in mon._threads:
                t.join(timeout=5)
            with mon.cond:
                for x in mon.lines:
                    res.line_counts[x.event] = res.line_counts.get(x.event, 0) + 1
                res.skipped_lines = mon.skipped
        problem = inconsistency(tree)
        if problem is not None:
            log(f"tree {tree.base.name} left inconsistent after the daemon run: {problem}")
    if res.skipped_lines:
        res.notes.append(f"{res.skipped_lines} stdout line(s) were not JSON objects (skipped)")
    return res
