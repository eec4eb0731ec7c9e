"""cocoond benchmark harness: `python -m bench` (or `python bench/run.py`).

Prints, after a machine header:
  1. `cocoond check` wall time and peak RSS beside the floor, at each size;
  2. `cocoond check` against the doctor-style bash + jq loop;
  3. the daemon (`cocoond run`) at the largest size, against its targets;
  4. the daemon's growth across sizes.
Benchmarks report; they never fail on numbers. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.daemon import CLK_TCK, SETTLE_SECONDS, DaemonResult, bench_daemon, percentile
from bench.measure import (
    Best,
    cocoond_version,
    findings_summary,
    measure_check,
    measure_doctor,
    measure_floor,
    measure_gc_plan,
    measure_json_loads,
    measure_show,
)
from bench.report import Table, fmt_mib, fmt_s, machine_header, mark
from bench.trees import Tree, get_tree, log

FLOOR_TARGET_SIZE = 100_000
P99_TARGET_S = 0.250
RSS_TARGET_KIB = 200 * 1024
#: Issue 20's targets at 100k: check's CPU against the floor's, one
#: one-record rewrite's daemon CPU against one json.loads of the DB, the
#: peak over rewrites against the steady RSS.
CPU_TARGET_RATIO = 1.5
REWRITE_TARGET = 0.1
PEAK_TARGET = 1.15
IDLE_TARGET_S_PER_60 = 0.1
SHOW_TARGET_RATIO = 1.5


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(x.replace("_", "")) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def default_cocoond() -> str:
    """The cocoond beside this interpreter (a venv's bin/), else the one on PATH."""
    here = Path(sys.executable).parent / "cocoond"
    if here.exists():
        return str(here)
    return shutil.which("cocoond") or "cocoond"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=parse_sizes, help="snapshot counts (default 1000,10000,100000)")
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 1000,10000, fewer daemon events")
    ap.add_argument("--skip-daemon", action="store_true", help="skip the `cocoond run` tables")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument(
        "--workdir", type=Path, default=Path("/tmp/cocoond-bench"), help="trees and scratch files"
    )
    ap.add_argument("--fresh", action="store_true", help="rebuild the cached trees")
    ap.add_argument(
        "--images", type=int, default=50, help="images per tree, cloud and OCI in turn (default 50)"
    )
    ap.add_argument("--seed", type=int, default=1, help="populate seed (default 1)")
    ap.add_argument("--doctor-sizes", type=parse_sizes, default=[200, 1000], help="default 200,1000")
    ap.add_argument("--repeat", type=int, default=3, help="runs per check/floor measurement (best of)")
    ap.add_argument("--events", type=int, help="removals and orphan creations each (default 100, quick 20)")
    ap.add_argument(
        "--idle-seconds", type=float, help="idle CPU window at the largest size (default 60, quick 10)"
    )
    ap.add_argument("--cocoond", default=default_cocoond(), help="the cocoond executable")
    return ap


# ------------------------------------------------------------------ tables 1, 2
def check_error(best: Best) -> str:
    return best.error or "no run"


def table_check_vs_floor(args: argparse.Namespace, trees: dict[int, Tree | str]) -> Table:
    t = Table(
        f"1. `cocoond check --json` vs the floor (best of {args.repeat}, warm cache, {args.images} images)",
        [
            "snapshots",
            "check",
            "check CPU",
            "check peak RSS",
            "floor",
            "floor CPU",
            "floor peak RSS",
            "CPU check/floor",
            "target",
            "ok",
        ],
    )
    for n in args.sizes:
        tree = trees[n]
        if isinstance(tree, str):
            t.add(f"{n:,}", f"ERROR (note {t.note(f'{n:,}: tree: {tree}')})")
            continue
        log(f"check vs floor at {n:,} ...")
        floor = measure_floor(tree.root, args.repeat)
        check = measure_check(args.cocoond, tree.root, args.repeat)
        target = f"≤ {CPU_TARGET_RATIO:g}x" if n == FLOOR_TARGET_SIZE else ""
        f_wall = (
            fmt_s(floor.wall) if floor.ok else f"ERROR (note {t.note(f'{n:,} floor: {check_error(floor)}')})"
        )
        f_rss = fmt_mib(floor.maxrss_kib) if floor.ok else "—"
        f_cpu = fmt_s(floor.cpu) if floor.ok else "—"
        c_cpu = fmt_s(check.cpu) if check.ok else "—"
        if check.ok:
            c_wall, c_rss = fmt_s(check.wall), fmt_mib(check.maxrss_kib)
            rc = check.runs[0].returncode
            if rc != 0:
                found = findings_summary(check.runs[0])
                t.note(f"{n:,}: check exit {rc} on a consistent tree; findings: {found}")
        else:
            c_wall = f"ERROR (note {t.note(f'{n:,} check: {check_error(check)}')})"
            c_rss = "—"
        f_cpu = fmt_s(floor.cpu) if floor.ok else "—"
        c_cpu = fmt_s(check.cpu) if check.ok else "—"
        if check.ok and floor.ok:
            ratio = check.cpu / max(floor.cpu, 1e-9)
            r = f"{ratio:.2f}x"
            ok = mark(ratio <= CPU_TARGET_RATIO) if target else ""
        else:
            r, ok = "—", ("—" if target else "")
        t.add(f"{n:,}", c_wall, c_cpu, c_rss, f_wall, f_cpu, f_rss, r, target, ok)
    if FLOOR_TARGET_SIZE not in args.sizes:
        t.note(f"the {CPU_TARGET_RATIO:g}x target applies at {FLOOR_TARGET_SIZE:,} snapshots, not run here")
    t.note(
        "floor: a separate Python process that reads and json.loads snapshots.json, lists "
        "snapshot/localfile/ once with os.scandir (+ is_dir per entry) and, in each data dir, lists its "
        "entries with their types and reads cocoon.json and config.json (not parsed); then reads and "
        "json.loads both image DBs, both VM DBs and the CNI DB and os.stats each file they name (layer "
        "blobs, kernels, initrds, firmware); lists both blob dirs (an lstat per blob), oci/boot (a "
        "listing of each boot dir) and the DB and image temp dirs, as the gc model does; same "
        "interpreter, same measurement. The ratio and its target are CPU time (user + sys, rusage) "
        "of both, best of the runs"
    )
    t.note(
        "wall time includes interpreter start-up for both; CPU is the child's user+sys and peak RSS its "
        "ru_maxrss (os.wait4); the target is on CPU (wall swings 2x with the page cache and the neighbours)"
    )
    return t


def table_doctor(args: argparse.Namespace) -> Table:
    t = Table(
        "2. `cocoond check` vs the doctor-style bash + jq loop",
        ["snapshots", "doctor (bash + jq)", "jq calls", f"check (best of {args.repeat})", "speed-up"],
    )
    for n in args.doctor_sizes:
        try:
            tree = get_tree(args.workdir, n, args.images, args.seed, args.fresh and n not in args.sizes)
        except (OSError, RuntimeError) as e:
            t.add(f"{n:,}", f"ERROR (note {t.note(f'{n:,}: tree: {e}')})")
            continue
        log(f"doctor vs check at {n:,} (about {n * 0.025:.0f} s of jq) ...")
        doctor = measure_doctor(args.workdir, tree.root)
        check = measure_check(args.cocoond, tree.root, args.repeat)
        d = (
            fmt_s(doctor.wall)
            if doctor.ok
            else f"ERROR (note {t.note(f'{n:,} doctor: {check_error(doctor)}')})"
        )
        c = fmt_s(check.wall) if check.ok else f"ERROR (note {t.note(f'{n:,} check: {check_error(check)}')})"
        speed = f"{doctor.wall / check.wall:.0f}x" if doctor.ok and check.ok else "—"
        t.add(f"{n:,}", d, f"{n + 1:,}", c, speed)
    t.note(
        "doctor: for each dir in snapshot/localfile/, `jq -e --arg id ID '.snapshots[$id] != null'`; "
        "then one jq listing committed record IDs and `[ -d ]` for each (bench/measure.py DOCTOR_SCRIPT); "
        "run once"
    )
    return t


def first_snapshot(root: Path) -> str:
    """A snapshot ID of the tree (its data dir's name: no parse of the DB)."""
    with os.scandir(root / "snapshot" / "localfile") as it:
        return min(e.name for e in it)


def table_show_gc_plan(args: argparse.Namespace, trees: dict[int, Tree | str]) -> Table:
    t = Table(
        f"5. `cocoond show` of one snapshot and `cocoond gc-plan`, CPU (user+sys), best of {args.repeat}",
        [
            "snapshots",
            "show",
            "json.loads",
            "show/json.loads",
            "ok",
            "gc-plan",
            "floor",
            "gc-plan/floor",
            "ok",
        ],
    )
    for n in args.sizes:
        tree = trees[n]
        if isinstance(tree, str):
            t.add(f"{n:,}", f"ERROR (note {t.note(f'{n:,}: tree: {tree}')})")
            continue
        log(f"show and gc-plan at {n:,} ...")
        loads = measure_json_loads(tree.root, args.repeat)
        show = measure_show(args.cocoond, tree.root, first_snapshot(tree.root), args.repeat)
        plan = measure_gc_plan(args.cocoond, tree.root, args.repeat)
        floor = measure_floor(tree.root, args.repeat)
        cells = []
        for best, label in ((show, "show"), (loads, "json.loads"), (plan, "gc-plan"), (floor, "floor")):
            cells.append(
                fmt_s(best.cpu)
                if best.ok
                else f"ERROR (note {t.note(f'{n:,} {label}: {check_error(best)}')})"
            )
        show_r = show.cpu / loads.cpu if show.ok and loads.ok and loads.cpu else None
        plan_r = plan.cpu / floor.cpu if plan.ok and floor.ok and floor.cpu else None
        at_target = n == FLOOR_TARGET_SIZE
        t.add(
            f"{n:,}",
            cells[0],
            cells[1],
            "—" if show_r is None else f"{show_r:.2f}x",
            mark(show_r < SHOW_TARGET_RATIO) if at_target and show_r is not None else "",
            cells[2],
            cells[3],
            "—" if plan_r is None else f"{plan_r:.2f}x",
            mark(plan_r <= CPU_TARGET_RATIO) if at_target and plan_r is not None else "",
        )
    t.note(
        f"targets at {FLOOR_TARGET_SIZE:,}: show < {SHOW_TARGET_RATIO:g}x a bare json.loads of the DB "
        f"(a separate python process), gc-plan ≤ {CPU_TARGET_RATIO:g}x the floor of table 1 (check's "
        "bar); CPU is the child's user+sys from os.wait4, interpreter start-up included on both sides"
    )
    return t


# ------------------------------------------------------------------ tables 3, 4
def idle_text(r: DaemonResult) -> tuple[str, bool | None]:
    if r.idle_cpu_s is None or not r.idle_window_s:
        return "—", None
    per60 = r.idle_cpu_s * 60 / r.idle_window_s
    window = round(r.idle_window_s)
    if window >= 59:
        return f"{r.idle_cpu_s:.3f} s in {window} s", per60 < IDLE_TARGET_S_PER_60
    return f"{r.idle_cpu_s:.3f} s in {window} s (≈{per60:.3f} s/60 s)", per60 < IDLE_TARGET_S_PER_60


def lat_text(values: list[float]) -> str:
    if not values:
        return "—"
    return (
        f"p50 {fmt_s(percentile(values, 50))}, p99 {fmt_s(percentile(values, 99))}, "
        f"max {fmt_s(max(values))} (n={len(values)})"
    )


def table_daemon_detail(r: DaemonResult, events_per_kind: int) -> Table:
    t = Table(
        f"3. `cocoond run` at {r.snapshots:,} snapshots (settle {SETTLE_SECONDS:g} s, debounce 0.05 s)",
        ["measure", "value", "target", "ok"],
    )
    if r.ready_s is None:  # never got going: one row, the reason in a note
        t.add("cocoond run", f"ERROR (note {t.note(r.error or 'no READY=1')})")
        return t
    lat = r.latencies
    p99 = percentile(lat, 99) if lat else None
    hwm_ok = None if r.hwm_kib is None else r.hwm_kib < RSS_TARGET_KIB
    idle, idle_ok = idle_text(r)
    t.add("time to READY=1 (spawn -> datagram)", fmt_s(r.ready_s))
    t.add(
        "  initial index.loaded duration_ms",
        "—" if r.initial_load_ms is None else f"{r.initial_load_ms:.0f} ms",
    )
    t.add(
        f"DB rewrite absorbed (mtime -> index.loaded line), median of {len(r.absorb_s)}",
        fmt_s(percentile(r.absorb_s, 50)) if r.absorb_s else "—",
    )
    t.add(
        "  same, by the line's own timestamp",
        fmt_s(percentile(r.absorb_ts_s, 50)) if r.absorb_ts_s else "—",
    )
    t.add(
        "  index.loaded duration_ms (reload)",
        f"{percentile(r.absorb_duration_ms, 50):.0f} ms" if r.absorb_duration_ms else "—",
    )
    t.add(
        f"one-record DB rewrite: daemon CPU (user+sys), median of {len(r.rewrite_cpu_s)}",
        rewrite_text(r),
        f"≤ {REWRITE_TARGET:g}x json.loads" if r.snapshots == FLOOR_TARGET_SIZE else "",
        mark(None if (x := rewrite_ratio(r)) is None else x <= REWRITE_TARGET)
        if r.snapshots == FLOOR_TARGET_SIZE
        else "",
    )
    peak = r.hwm_rewrites_kib / r.rss_steady_kib if r.hwm_rewrites_kib and r.rss_steady_kib else None
    t.add(
        f"peak RSS over the {len(r.rewrite_cpu_s)} rewrites (VmHWM, reset before) / steady RSS",
        "—" if peak is None else f"{fmt_mib(r.hwm_rewrites_kib)} / {fmt_mib(r.rss_steady_kib)} = {peak:.2f}x",
        f"≤ {PEAK_TARGET:g}x",
        mark(None if peak is None else peak <= PEAK_TARGET),
    )
    t.add(f"`snapshot save` burst ({r.burst_saves} simulator creates)", burst_text(r))
    t.add(
        f"event latency, all {r.events_expected} events (arrival - fs op - settle)",
        lat_text(lat),
        f"p99 < {fmt_s(P99_TARGET_S)}",
        mark(None if p99 is None else p99 < P99_TARGET_S),
    )
    t.add("  data dir removed -> finding.opened missing_data_dir", lat_text(r.latency_missing))
    t.add("  orphan dir created -> finding.opened orphan_data_dir", lat_text(r.latency_orphan))
    t.add("  all events, by the lines' own timestamps", lat_text(r.latency_ts))
    t.add("  from the batch's last fs op (the daemon's own reaction)", lat_text(r.latency_after_burst))
    t.add("tree restored -> finding.resolved (no settle subtracted)", lat_text(r.resolve_s))
    t.add("RSS after READY / peak so far (VmHWM)", f"{fmt_mib(r.rss_ready_kib)} / {fmt_mib(r.hwm_ready_kib)}")
    t.add(
        "RSS after the events",
        fmt_mib(r.rss_events_kib),
        "< 200 MiB",
        mark(None if r.rss_events_kib is None else r.rss_events_kib < RSS_TARGET_KIB),
    )
    t.add(
        "RSS at the end / peak over the run (VmHWM)",
        f"{fmt_mib(r.rss_end_kib)} / {fmt_mib(r.hwm_kib)}",
        "peak < 200 MiB",
        mark(hwm_ok),
    )
    t.add("CPU while idle (utime+stime)", idle, "< 0.1 s / 60 s", mark(idle_ok))
    if r.idle_lines:
        t.add("  log lines while idle", ", ".join(f"{k} x{v}" for k, v in sorted(r.idle_lines.items())))
    t.add(
        "SIGTERM -> exit (exit code)",
        "—" if r.exit_s is None else f"{fmt_s(r.exit_s)} (code {r.exit_code})",
        "code 0",
        mark(None if r.exit_code is None else r.exit_code == 0),
    )
    if r.error:
        t.note(f"ERROR: {r.error}")
    for n in r.notes:
        t.note(n)
    if r.line_counts:
        t.note("log lines seen: " + ", ".join(f"{k} x{v}" for k, v in sorted(r.line_counts.items())))
    t.note(
        f"events: {events_per_kind} data-dir removals and {events_per_kind} orphan creations, interleaved, "
        "in bursts of 10 (5 ms apart); the next burst starts once every finding of the last has opened. "
        "cocoond holds data-dir findings until snapshot/ has been quiet for settle_seconds (at most 10x "
        "settle), so an event's latency includes the rest of its burst"
    )
    t.note(
        "DB rewrite: one record's description changed per write, written with cocoond.sim.atomic_write_json "
        "under cocoon's lock; daemon CPU from /proc/PID/task/*/schedstat (user+sys, every thread) from just "
        "before the write to 0.2 s after its index.loaded line; json.loads: the harness's own thread CPU for "
        "one json.loads of the same bytes (best of 3), in the same run"
    )
    t.note(
        "save burst: cocoond.sim.create in a loop in the harness (each writes snapshots.json twice, "
        "the VM DB once, and a data dir); daemon CPU from the first create until it logged the final "
        "count and the settle passed; the simulator's CPU is the harness thread's"
    )
    return t


def rewrite_ratio(r: DaemonResult) -> float | None:
    if not r.rewrite_cpu_s or not r.loads_cpu_s:
        return None
    return percentile(r.rewrite_cpu_s, 50) / r.loads_cpu_s


def rewrite_text(r: DaemonResult) -> str:
    if not r.rewrite_cpu_s:
        return "—"
    med = percentile(r.rewrite_cpu_s, 50)
    text = f"{fmt_s(med)} (max {fmt_s(max(r.rewrite_cpu_s))})"
    if r.loads_cpu_s:
        size = f" of {r.db_bytes / 2**20:.1f} MiB" if r.db_bytes else ""
        text += f"; json.loads{size}: {fmt_s(r.loads_cpu_s)}; ratio {med / r.loads_cpu_s:.3f}x"
    return text


def burst_text(r: DaemonResult) -> str:
    if r.burst_wall_s is None:
        return "—"
    text = f"{fmt_s(r.burst_wall_s)} wall"
    if r.burst_daemon_cpu_s is not None:
        text += (
            f"; daemon CPU {fmt_s(r.burst_daemon_cpu_s)} "
            f"({100 * r.burst_daemon_cpu_s / r.burst_wall_s:.0f}% of a core over the burst"
        )
        if r.burst_sim_cpu_s:
            sim_cpu = fmt_s(r.burst_sim_cpu_s)
            text += f", {r.burst_daemon_cpu_s / r.burst_sim_cpu_s:.2f}x the simulator's {sim_cpu}"
        text += ")"
    return text


def table_growth(results: list[DaemonResult]) -> Table:
    t = Table(
        "4. `cocoond run` growth (an event should cost the same at every size; a DB rewrite grows with it)",
        [
            "snapshots",
            "READY",
            "DB rewrite absorbed",
            "one-record rewrite: daemon CPU / json.loads CPU",
            "rewrites' peak / steady RSS",
            "event p50",
            "event p99",
            "RSS (peak)",
            "idle CPU",
        ],
    )
    for r in results:
        if r.error and r.ready_s is None:
            t.add(f"{r.snapshots:,}", f"ERROR (note {t.note(f'{r.snapshots:,}: {r.error}')})")
            continue
        lat = r.latencies
        idle, _ = idle_text(r)
        t.add(
            f"{r.snapshots:,}",
            fmt_s(r.ready_s),
            fmt_s(percentile(r.absorb_s, 50)) if r.absorb_s else "—",
            "—"
            if (x := rewrite_ratio(r)) is None
            else f"{fmt_s(percentile(r.rewrite_cpu_s, 50))} / {fmt_s(r.loads_cpu_s or 0)} = {x:.3f}x",
            "—"
            if not (r.hwm_rewrites_kib and r.rss_steady_kib)
            else f"{r.hwm_rewrites_kib / r.rss_steady_kib:.2f}x",
            fmt_s(percentile(lat, 50)) if lat else "—",
            fmt_s(percentile(lat, 99)) if lat else "—",
            f"{fmt_mib(r.rss_events_kib)} ({fmt_mib(r.hwm_kib)})",
            idle,
        )
        if r.error:
            t.note(f"{r.snapshots:,}: {r.error}")
    windows = sorted({round(r.idle_window_s) for r in results if r.idle_window_s})
    if windows:
        which = (
            f"a {windows[0]} s window at every size"
            if len(windows) == 1
            else f"{windows[-1]} s at the largest size, {windows[0]} s at the others"
        )
        t.note(
            f"idle CPU: {which}; shorter windows are also shown scaled to 60 s; "
            f"/proc counts CPU in ticks of {1000 // CLK_TCK} ms"
        )
    return t


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sizes is None:
        args.sizes = [1000, 10000] if args.quick else [1000, 10000, 100_000]
    events = args.events if args.events is not None else (20 if args.quick else 100)
    long_idle = args.idle_seconds if args.idle_seconds is not None else (10.0 if args.quick else 60.0)
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    md = args.markdown

    version = cocoond_version(args.cocoond)
    out: list[str] = [machine_header(version, md)]

    def emit(block: str) -> None:
        out.append(block)
        print(block + "\n", flush=True)

    print(out[0] + "\n", flush=True)

    trees: dict[int, Tree | str] = {}
    for n in args.sizes:
        try:
            trees[n] = get_tree(args.workdir, n, args.images, args.seed, args.fresh)
        except (OSError, RuntimeError) as e:
            log(f"tree at {n:,}: {e}")
            trees[n] = str(e)

    emit(table_check_vs_floor(args, trees).render(md))
    emit(table_doctor(args).render(md))
    emit(table_show_gc_plan(args, trees).render(md))

    if not args.skip_daemon:
        results: list[DaemonResult] = []
        largest = max(args.sizes)
        for n in args.sizes:
            tree = trees[n]
            if isinstance(tree, str):
                results.append(DaemonResult(n, error=f"tree: {tree}"))
                continue
            idle = long_idle if n == largest else min(10.0, long_idle)
            log(f"daemon at {n:,}: {events} + {events} events, {idle:.0f} s idle ...")
            r = bench_daemon(args.cocoond, tree, args.workdir, events, idle, seed=args.seed)
            if r.error:
                log(f"daemon at {n:,}: {r.error}")
            results.append(r)
        emit(table_daemon_detail(results[-1], events).render(md))
        emit(table_growth(results).render(md))

    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
