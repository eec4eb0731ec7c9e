"""One-shot measurements: `cocoond check`, the floor and the doctor loop, each a
child process timed by wall clock with its peak RSS taken from os.wait4."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The floor: the least any reconcile must do, in the same language and the same
# kind of process. Read and parse snapshots.json, list snapshot/localfile/ once,
# and what the restore and clone rules must read of each data dir: its entries
# with their types (the copy step takes regular files only) and the bytes of
# its sidecar cocoon.json and Cloud Hypervisor's config.json (read, not parsed:
# interpreting them is the reconciler's work). Then what the image and VM
# rules read: the two image DBs and both VM DBs (read and json.loads'ed), and
# one os.stat of each file they name by path (layer blobs, kernels, initrds,
# the firmware): the base files snapshots name are among these. Then what
# the gc model reads (gc-plan and the gc findings): the CNI DB (gc loads it
# too), both blob dirs with one lstat per blob, oci/boot with a listing of
# each boot dir (its size), and the DB and image temp dirs' listings.
FLOOR_SCRIPT = """\
import json, os, sys
root = sys.argv[1]
with open(os.path.join(root, "snapshot", "db", "snapshots.json"), "rb") as f:
    db = json.loads(f.read())
n = 0
with os.scandir(os.path.join(root, "snapshot", "localfile")) as it:
    for e in it:
        if e.is_dir():
            n += 1
            with os.scandir(e.path) as inner:
                names = {x.name: x.is_file(follow_symlinks=False) for x in inner}
            for name in ("cocoon.json", "config.json"):
                if name in names:
                    with open(os.path.join(e.path, name), "rb") as f:
                        f.read()
paths = {os.path.join(root, "firmware", "CLOUDHV.fd")}
dbs = ("cloudimg/db/images.json", "oci/db/images.json",
       "cloudhypervisor/db/vms.json", "firecracker/db/vms.json", "cni/db/networks.json")
for rel in dbs:
    try:
        with open(os.path.join(root, rel), "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        continue
    for e in (doc.get("images") or {}).values():
        if e.get("content_sum"):
            paths.add(os.path.join(root, "cloudimg", "blobs", e["content_sum"].split(":")[-1] + ".qcow2"))
        for la in e.get("layers") or ():
            paths.add(os.path.join(root, "oci", "blobs", la["digest"].split(":")[-1] + ".erofs"))
        for k, name in (("kernel_layer", "vmlinuz"), ("initrd_layer", "initrd.img")):
            if e.get(k):
                paths.add(os.path.join(root, "oci", "boot", e[k].split(":")[-1], name))
    for vm in (doc.get("vms") or {}).values():
        paths.update(sc["path"] for sc in vm.get("storage_configs") or () if sc.get("role") == "layer")
        paths.update(v for k, v in (vm.get("boot_config") or {}).items() if k.endswith("_path") and v)
for p in paths:
    try:
        os.stat(p)
    except OSError:
        pass
def listing(rel):
    try:
        with os.scandir(os.path.join(root, rel)) as it:
            return list(it)
    except OSError:
        return []
for rel in ("cloudimg/blobs", "oci/blobs"):
    for e in listing(rel):
        e.stat(follow_symlinks=False)
for e in listing("oci/boot"):
    for x in listing("oci/boot/" + e.name):
        x.stat(follow_symlinks=False)
for rel in ("snapshot/db", "cloudimg/db", "oci/db", "cloudhypervisor/db", "firecracker/db", "cni/db",
            "cloudimg/temp", "oci/temp"):
    listing(rel)
print(len(db["snapshots"]), n, len(paths))
"""

# The doctor-style approach: one jq per data dir asking whether the DB has a
# record for it, then one jq listing the committed record IDs and a `test -d`
# for each.
DOCTOR_SCRIPT = r"""#!/usr/bin/env bash
set -u
root=$1
db=$root/snapshot/db/snapshots.json
problems=0
for d in "$root"/snapshot/localfile/*/; do
  [ -d "$d" ] || continue
  id=$(basename "$d")
  if ! jq -e --arg id "$id" '.snapshots[$id] != null' "$db" >/dev/null; then
    echo "orphan_data_dir $id"
    problems=$((problems + 1))
  fi
done
while IFS= read -r id; do
  if [ ! -d "$root/snapshot/localfile/$id" ]; then
    echo "missing_data_dir $id"
    problems=$((problems + 1))
  fi
done < <(jq -r '.snapshots | to_entries[] | select(.value.pending != true) | .key' "$db")
echo "problems=$problems"
[ "$problems" -eq 0 ]
"""


@dataclass
class Run:
    """One child process: wall seconds, peak RSS (KiB), exit code, output."""

    wall: float
    maxrss_kib: int
    returncode: int
    stdout: str
    stderr: str
    #: CPU seconds (user + sys) of the child, from the same os.wait4.
    cpu: float = 0.0


@dataclass
class Best:
    """Best-of-N wall time, and the largest peak RSS seen over the N runs."""

    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    @property
    def wall(self) -> float:
        return min(r.wall for r in self.runs)

    @property
    def cpu(self) -> float:
        return min(r.cpu for r in self.runs)

    @property
    def maxrss_kib(self) -> int:
        return max(r.maxrss_kib for r in self.runs)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)


# Runs one child and reports its wall time and rusage. The harness does not fork
# the measured command itself: on exec, Linux folds the old address space's peak
# RSS into the new process's ru_maxrss, and a vfork/fork from the harness (which
# has parsed 100k-record DBs) would report the harness's peak instead of the
# child's. This launcher is a fresh, small interpreter, smaller than any child.
LAUNCHER_SCRIPT = """\
import json, os, subprocess, sys, threading, time
timeout, out, err, argv = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
with open(out, "wb") as o, open(err, "wb") as e:
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    except OSError as x:
        print(json.dumps({"error": str(x)}))
        sys.exit(0)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    timer.cancel()
p.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss": ru.ru_maxrss, "rc": p.returncode,
                  "timed_out": wall >= timeout}))
"""


def run_child(argv: list[str], timeout: float) -> Run:
    """Run argv to completion through the launcher: blocking os.wait4 on the
    child (so ru_maxrss is the child's own), stdout/stderr to temp files (no
    pipe to drain), killed at the deadline."""
    with tempfile.TemporaryDirectory(prefix="cocoond-bench-run-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", LAUNCHER_SCRIPT, str(timeout), str(out), str(err), *argv],
            capture_output=True,
            text=True,
            timeout=timeout + 60,
        )
        try:
            rep = json.loads(done.stdout)
        except ValueError:
            raise OSError(f"launcher failed (exit {done.returncode}): {tail(done.stderr)}") from None
        if "error" in rep:
            raise OSError(rep["error"])
        if rep["timed_out"]:
            raise TimeoutError(f"{Path(argv[0]).name} did not finish within {timeout:.0f} s")
        return Run(
            float(rep["wall"]),
            int(rep["maxrss"]),
            int(rep["rc"]),
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
            float(rep.get("cpu", 0.0)),
        )


def tail(text: str, lines: int = 6, width: int = 300) -> str:
    t = " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
    return t[-width:] if t else "(no output)"


def check_argv(cocoond: str, root: Path) -> list[str]:
    return [cocoond, "check", "--no-config", "--root", str(root), "--json"]


def parse_check(run: Run) -> dict[str, Any] | None:
    try:
        obj = json.loads(run.stdout)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def describe_check_failure(run: Run) -> str:
    """Why a `cocoond check --json` run is not a usable measurement, or '' when
    it is (exit 0-2 and one JSON object on stdout)."""
    if run.returncode not in (0, 1, 2):
        return f"check exit {run.returncode}: {tail(run.stderr or run.stdout)}"
    if parse_check(run) is None:
        return f"check exit {run.returncode} but stdout is not one JSON object: {tail(run.stdout)}"
    return ""


def findings_summary(run: Run) -> str:
    """'kind x count, ...' for a check run's findings ('' for none)."""
    obj = parse_check(run) or {}
    counts: dict[str, int] = {}
    for f in obj.get("findings") or []:
        k = str(f.get("kind", "?")) if isinstance(f, dict) else "?"
        counts[k] = counts.get(k, 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))


def best_of(argv: list[str], repeat: int, timeout: float, validate: Any = None) -> Best:
    """Run argv `repeat` times. `validate(run) -> str` returns an error text for
    an unusable run (the first one stops the series)."""
    best = Best()
    for _ in range(repeat):
        try:
            r = run_child(argv, timeout)
        except (OSError, TimeoutError) as e:
            best.error = str(e)
            return best
        if validate is not None:
            problem = validate(r)
            if problem:
                best.error = problem
                best.runs.append(r)
                return best
        best.runs.append(r)
    return best


def measure_check(cocoond: str, root: Path, repeat: int = 3, timeout: float = 300) -> Best:
    return best_of(check_argv(cocoond, root), repeat, timeout, describe_check_failure)


def measure_floor(root: Path, repeat: int = 3, timeout: float = 300) -> Best:
    def validate(r: Run) -> str:
        return "" if r.returncode == 0 else f"floor exit {r.returncode}: {tail(r.stderr)}"

    return best_of([sys.executable, "-c", FLOOR_SCRIPT, str(root)], repeat, timeout, validate)


def measure_doctor(workdir: Path, root: Path, repeat: int = 1, timeout: float = 600) -> Best:
    script = workdir / "doctor.sh"
    script.write_text(DOCTOR_SCRIPT)
    script.chmod(0o755)

    def validate(r: Run) -> str:
        if r.returncode != 0:
            return f"doctor exit {r.returncode}: {tail(r.stdout + r.stderr)}"
        return ""

    return best_of(["/bin/bash", str(script), str(root)], repeat, timeout, validate)


def cocoond_version(cocoond: str) -> str:
    try:
        done = subprocess.run([cocoond, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    return (done.stdout or done.stderr).strip() or f"exit {done.returncode}"


# A bare parse of the snapshot DB: what `show` of one snapshot is held to.
JSON_LOADS_SCRIPT = """\
import json, os, sys
with open(os.path.join(sys.argv[1], "snapshot", "db", "snapshots.json"), "rb") as f:
    print(len(json.loads(f.read())["snapshots"]))
"""


def _ok_exit(*codes: int) -> Any:
    def validate(r: Run) -> str:
        return "" if r.returncode in codes else f"exit {r.returncode}: {tail(r.stderr or r.stdout)}"

    return validate


def measure_json_loads(root: Path, repeat: int = 3, timeout: float = 300) -> Best:
    return best_of([sys.executable, "-c", JSON_LOADS_SCRIPT, str(root)], repeat, timeout, _ok_exit(0))


def measure_show(cocoond: str, root: Path, ref: str, repeat: int = 3, timeout: float = 300) -> Best:
    argv = [cocoond, "show", "--no-config", "--root", str(root), "--json", "--kind", "snapshot", ref]
    return best_of(argv, repeat, timeout, _ok_exit(0, 1, 2))


def measure_gc_plan(cocoond: str, root: Path, repeat: int = 3, timeout: float = 300) -> Best:
    argv = [cocoond, "gc-plan", "--no-config", "--root", str(root), "--json"]
    return best_of(argv, repeat, timeout, _ok_exit(0, 1))
