"""`cocoond run` at a size that tests its unit (issue 20's 1M snapshots):
is it alive inside `WatchdogSec=`, `TimeoutStopSec=` and `MemoryMax=`?

    .venv/bin/python -m bench.big --snapshots 1000000 [--markdown]

Builds (or reuses) the simulator's tree like the main bench (1M: about
20 GB and several minutes; see `df -h` first), starts the daemon as systemd
does with WATCHDOG_USEC set, and records every WATCHDOG=1 datagram's
arrival. Phases: start to READY=1; READY until the first inspection of
every data dir is done (the daemon's CPU goes quiet); a one-record rewrite;
a full reload (the same DB with one space where Go writes none: nothing to
absorb, decoded a window at a time all the same); SIGTERM in the middle of another full reload. For each: the
longest gap between pings, the daemon's CPU (user+sys, /proc) and wall
time. Peak RSS is VmHWM over the whole run. The DB's original bytes are
put back at the end. Nothing fails on a number."""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.daemon import Monitor, notify_socket_path, proc_cpu_ns, proc_status_kib, reset_peak_rss
from bench.report import Table, fmt_mib, fmt_s, mark
from bench.run import default_cocoond
from bench.trees import get_tree, log
from cocoond.daemon.offload import THREAD_NAME

CONFIG = """\
[watch]
settle_seconds = 0.5
debounce_seconds = 0.05
full_rescan_seconds = 0
[alerts]
heartbeat_seconds = 0
[log]
format = "json"
# index.loaded is at debug when the counts did not change (a one-record rewrite)
level = "debug"
"""


def gap(pings: list[float], start: float, end: float) -> float:
    times = [start, *(t for t in pings if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def worker_cpu(pid: int) -> int:
    """CPU ns of the daemon's step thread (daemon/offload.py)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != THREAD_NAME:
                    continue
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                return int(f.read().split()[0])
        except (OSError, ValueError):
            continue
    return 0


def quiet(pid: int, window: float = 3.0, limit: float = 0.05, deadline: float = 3600.0) -> float:
    """Wait until the daemon uses less than `limit` CPU seconds in `window`."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        c0 = proc_cpu_ns(pid) or 0
        time.sleep(window)
        if ((proc_cpu_ns(pid) or 0) - c0) / 1e9 < limit:
            return time.time() - window
    raise TimeoutError("the daemon did not go quiet")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.big", description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshots", type=int, default=1_000_000)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cocoond-bench"))
    ap.add_argument("--watchdog-sec", type=float, default=30.0, help="as WatchdogSec= (default 30)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument(
        "--no-inspection-wait",
        action="store_true",
        help="go on right after READY (data dirs still being read)",
    )
    ap.add_argument("--cocoond", default=default_cocoond())
    args = ap.parse_args(argv)
    tree = get_tree(args.workdir, args.snapshots, args.images, 1)
    root, db_path = tree.root, tree.db_file
    original = db_path.read_bytes()
    cfg = args.workdir / "big.toml"
    cfg.write_text(CONFIG)
    sock_path, sock_tmp = notify_socket_path(args.workdir)
    sock_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    usec = int(args.watchdog_sec * 1e6)
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC=str(usec))
    rows: list[tuple[str, str, str, str]] = []
    half = args.watchdog_sec / 2
    proc = None
    try:
        err = open(args.workdir / "big.stderr", "wb")  # noqa: SIM115 (closed below)
        t0 = time.time()
        proc = subprocess.Popen(
            [args.cocoond, "run", "--root", str(root), "--config", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
        m = Monitor(proc, sock, args.workdir / "big.stderr")

        def pings() -> list[float]:
            with m.cond:
                return [t for t, msg in m.notify if "WATCHDOG=1" in msg.split("\n")]

        ready = m.wait(
            lambda: next((t for t, msg in m.notify if "READY=1" in msg.split("\n")), None),
            3600,
            "READY=1",
        )
        rows.append(
            (
                "start -> READY=1 (peak RSS so far)",
                f"{fmt_s(ready - t0)} ({fmt_mib(proc_status_kib(proc.pid, 'VmHWM'))})",
                f"CPU {(proc_cpu_ns(proc.pid) or 0) / 1e9:.1f} s",
                "",
            )
        )
        if not args.no_inspection_wait:
            log("READY; waiting for the data dirs to be inspected ...")
            done = quiet(proc.pid)
            g = gap(pings(), ready, done)
            rows.append(
                (
                    "READY -> data dirs inspected: longest ping gap",
                    fmt_s(g),
                    f"{fmt_s(done - ready)} wall",
                    mark(g <= half),
                )
            )
        steady = proc_status_kib(proc.pid, "VmRSS")
        peak = proc_status_kib(proc.pid, "VmHWM")

        def rewrite(data: bytes, what: str) -> None:
            nonlocal peak
            before = m.count("index.loaded")
            rss0 = proc_status_kib(proc.pid, "VmRSS") or 0
            reset_peak_rss(proc.pid)
            c0 = proc_cpu_ns(proc.pid) or 0
            tmp = db_path.with_name(".tmp-big")
            tmp.write_bytes(data)
            os.replace(tmp, db_path)
            w = time.time()
            line = m.wait(lambda: m.nth("index.loaded", before), 3600, f"index.loaded after {what}")
            time.sleep(0.3)
            cpu = ((proc_cpu_ns(proc.pid) or 0) - c0) / 1e9
            g = gap(pings(), w, line.arrival)
            hwm = proc_status_kib(proc.pid, "VmHWM") or 0
            peak = max(peak or 0, hwm)
            rows.append(
                (
                    f"{what}: absorbed / longest ping gap",
                    f"{fmt_s(line.arrival - w)} / {fmt_s(g)}",
                    f"CPU {fmt_s(cpu)}; RSS {fmt_mib(rss0)} -> peak {fmt_mib(hwm)}",
                    mark(g <= half),
                )
            )

        text = original.decode()
        key = '"description":"'
        at = text.index(key) + len(key)
        one = (text[:at] + "big rewrite " + text[at:]).encode()
        rewrite(one, "one-record rewrite")
        # A whole reload of Go's layout (what a DB that was unreadable
        # costs): the file cut short first, then put back.
        opened = m.count("finding.opened")
        tmp = db_path.with_name(".tmp-big")
        tmp.write_bytes(original[: len(original) // 2])
        os.replace(tmp, db_path)
        m.wait(lambda: m.nth("finding.opened", opened), 3600, "db_unreadable")
        rewrite(original, "whole reload, Go's layout (after db_unreadable)")
        foreign = b"{ " + original[1:]
        rewrite(foreign, "whole reload, foreign layout (white space)")
        # SIGTERM once the worker has spent a second (or a tenth, when small) on the next full reload.
        before = worker_cpu(proc.pid)
        tmp = db_path.with_name(".tmp-big")
        tmp.write_bytes(b"{  " + original[1:])
        os.replace(tmp, db_path)
        into = min(1.0, args.snapshots / 1e5)
        end = time.monotonic() + 600
        while worker_cpu(proc.pid) - before < into * 1e9 and time.monotonic() < end:
            time.sleep(0.01)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        took = time.monotonic() - sent
        rows.append(
            ("SIGTERM mid-reload -> exit (code)", f"{fmt_s(took)} ({rc})", "", mark(took < 1.0 and rc == 0))
        )
        rows.append(
            (
                "RSS before the rewrites / peak over the run (VmHWM)",
                f"{fmt_mib(steady)} / {fmt_mib(peak)}",
                "",
                mark(peak is not None and peak < 1.5 * 2**20),
            )
        )
        err.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        sock_path.unlink(missing_ok=True)
        if sock_tmp is not None:
            shutil.rmtree(sock_tmp, ignore_errors=True)
        tmp = db_path.with_name(".tmp-big")
        tmp.write_bytes(original)
        os.replace(tmp, db_path)
    t = Table(
        f"`cocoond run` at {args.snapshots:,} snapshots (WatchdogSec={args.watchdog_sec:g}: a ping due every "
        f"{half:g} s; DB {len(original) / 2**20:.0f} MiB)",
        ["measure", "value", "also", "ok"],
    )
    for row in rows:
        t.add(*row)
    t.note(
        f"targets: no ping gap over WatchdogSec/2 = {half:g} s after READY, stop < 1 s, peak RSS < 1.5 GiB"
    )
    print(t.render(args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
