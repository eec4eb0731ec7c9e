"""Does the unit's yielding to the VMs cost event latency? `cocoond run`
at normal priority against the same daemon under the unit's CPU and I/O
settings (Nice=10, IOSchedulingClass=best-effort, IOSchedulingPriority=7)
and under the harshest I/O class (idle), in alternating rounds on one tree.

    .venv/bin/python -m bench.priority [--snapshots 1000] [--events 20] [--rounds 2]

Each run is bench/daemon.py's run (READY, DB rewrites, removed and orphan
data dirs in bursts, restore, SIGTERM); the latency is from a filesystem
operation to its finding.opened line, less the configured settle time.
`nice` and `ionice` (util-linux) stand in for what systemd sets from the
unit: both are inherited by exec, so the daemon itself runs with them.
CPUWeight=/IOWeight= need a cgroup of their own and are not reproduced.
On an idle host the three rows should be within noise of each other: the
settings only matter when something else wants the CPU or the disk.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/priority.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.daemon import DaemonResult, bench_daemon, percentile
from bench.measure import cocoond_version
from bench.report import machine_header
from bench.run import default_cocoond
from bench.trees import get_tree, log

#: (label, the command prefix systemd's settings amount to).
MODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("normal", ()),
    ("unit: nice 10, best-effort 7", ("nice", "-n", "10", "ionice", "-c", "2", "-n", "7")),
    ("nice 10, idle I/O", ("nice", "-n", "10", "ionice", "-c", "3")),
)


def wrapper(workdir: Path, name: str, prefix: tuple[str, ...], cocoond: str) -> str:
    """An executable that execs cocoond under `prefix` (same pid: the
    harness measures the daemon itself)."""
    path = workdir / f"cocoond-{name}"
    path.write_text(f'#!/bin/sh\nexec {shlex.join([*prefix, cocoond])} "$@"\n')
    path.chmod(0o755)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.priority", description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshots", type=int, default=1000)
    ap.add_argument("--events", type=int, default=20, help="removals and orphan creations each per run")
    ap.add_argument("--rounds", type=int, default=2, help="runs per mode, alternating")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cocoond-bench"))
    ap.add_argument("--cocoond", default=default_cocoond())
    args = ap.parse_args(argv)
    for tool in ("nice", "ionice"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (coreutils / util-linux)", file=sys.stderr)
            return 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    tree = get_tree(args.workdir, args.snapshots, 10, 1)
    commands = {
        label: wrapper(args.workdir, f"mode{i}", prefix, args.cocoond)
        for i, (label, prefix) in enumerate(MODES)
    }
    results: dict[str, list[DaemonResult]] = {label: [] for label, _ in MODES}
    for r in range(args.rounds):
        for label, _ in MODES:
            log(f"round {r + 1}/{args.rounds}: {label}")
            res = bench_daemon(commands[label], tree, args.workdir, args.events, idle_seconds=1.0, seed=r + 1)
            if res.error:
                log(f"  error: {res.error}")
            results[label].append(res)
    print(machine_header(cocoond_version(args.cocoond), False))
    print(
        f"\n{args.snapshots} snapshots, {args.events} removals + {args.events} orphans per run, "
        f"{args.rounds} runs per mode"
    )
    print(f"\n{'mode':<30} {'events':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'READY s':>8}")
    for label, runs in results.items():
        lat = [x for res in runs for x in res.latencies]
        ready = [res.ready_s for res in runs if res.ready_s is not None]
        errors = [res.error for res in runs if res.error]
        if not lat:
            print(f"{label:<30} {'-':>6}  no events ({'; '.join(errors) or 'none measured'})")
            continue
        p50, p95 = percentile(lat, 50) * 1000, percentile(lat, 95) * 1000
        print(
            f"{label:<30} {len(lat):>6} {p50:>8.0f} {p95:>8.0f} "
            f"{max(lat) * 1000:>8.0f} {max(ready) if ready else float('nan'):>8.2f}"
            + (f"  ({len(errors)} run(s) failed)" if errors else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
