"""CPU of absorbing a one-VM rewrite of a `vms.json` (issue 20, point 1)
beside one `json.loads` of the same file, in the same process and run.

cocoon rewrites its VM DB for every VM command and every `snapshot save`
(the VM's `snapshot_ids`, hypervisor/backend.go:437-440). The records are
built from cocoon's Go structs (hypervisor/db.go:14-27, types/vm.go:40-68)
and written as json.Marshal writes them (map keys sorted, no white space).
Each rewrite adds a snapshot to one VM; the fast route's result is checked
against the full decode every time (a wrong answer is not a speed-up).

    python -m bench.vm_rewrite [--vms 4000] [--rewrites 20]
    python -m bench.vm_rewrite --sizes 1000,10000,100000 [--markdown]

`--sizes`: snapshot counts, one VM per 25 snapshots (the bench trees'
ratio: 4,000 VMs at 100k), one table row each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from functools import partial
from typing import Any, NamedTuple

from bench.daemon import cpu_of
from bench.report import Table, fmt_s, mark
from cocoond.scan import read_ref_db
from cocoond.storage import vmdelta
from cocoond.storage.refdbs import decode_vm_facts

REL = "cloudhypervisor/db/vms.json"


def vm_record(i: int) -> dict[str, Any]:
    """One VMRecord in Go's field order (the embedded VM's fields first)."""
    vid = f"{i:08x}-{'a' * 4}-4{'b' * 3}-8{'c' * 3}-{i:012x}"
    hex_ = f"{i % 50:064x}"
    return {
        "id": vid,
        "hypervisor": "cloud-hypervisor",
        "state": "running" if i % 10 else "stopped",
        "config": {
            "cpu": 2,
            "memory": 2 << 30,
            "storage": 10 << 30,
            "image": "ghcr.io/x/y:1",
            "name": f"vm-{i}",
        },
        "pid": 1000 + i,
        "socket_path": f"/run/cocoon/ch/{vid}/api.sock",
        "storage_configs": [
            {"path": f"/var/lib/cocoon/oci/blobs/{hex_}.erofs", "ro": True, "serial": "l0", "role": "layer"},
            {"path": f"/var/lib/cocoon/run/{vid}/cow.raw", "ro": False, "serial": "cow", "role": "cow"},
        ],
        "first_booted": True,
        "snapshot_ids": {f"snap-{i}-{k}": {} for k in range(3)},
        "created_at": "2026-01-02T03:04:05.123456789Z",
        "updated_at": "2026-01-02T03:04:05.123456789Z",
        "boot_config": {
            "kernel_path": f"/var/lib/cocoon/oci/boot/{hex_}/vmlinuz",
            "initrd_path": f"/var/lib/cocoon/oci/boot/{hex_}/initrd.img",
            "cmdline": "console=ttyS0 cocoon.layers=1",
        },
        "image_blob_ids": {hex_: {}},
        "run_dir": f"/run/cocoon/ch/{vid}",
        "log_dir": f"/var/log/cocoon/ch/{vid}",
    }


def go_bytes(vms: dict[str, Any]) -> bytes:
    names = {rec["config"]["name"]: vid for vid, rec in vms.items()}
    doc = {"vms": dict(sorted(vms.items())), "names": dict(sorted(names.items()))}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _absorb_into(out: list[Any], path: str) -> None:
    out.append(vmdelta.absorbed(path, None))


#: Snapshots per VM in the bench trees (bench/trees.py: 4,000 VMs at 100k).
SNAPSHOTS_PER_VM = 25


class Result(NamedTuple):
    vms: int
    size: int
    first: float
    absorb: float
    whole: float
    loads: float


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=4000)
    ap.add_argument("--sizes", help="snapshot counts (one VM per 25 snapshots), comma-separated")
    ap.add_argument("--rewrites", type=int, default=20)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    if not args.sizes:
        r = measure(args.vms, args.rewrites)
        print(f"vms.json: {r.vms} VMs, {r.size / 1e6:.2f} MB; medians of {args.rewrites} one-VM rewrites")
        print(f"  first load (full decode, remembered): {r.first * 1e3:8.2f} ms CPU")
        print(f"  one-VM rewrite absorbed (vmdelta):     {r.absorb * 1e3:8.2f} ms CPU")
        print(f"  full decode of the same file:          {r.whole * 1e3:8.2f} ms CPU")
        print(f"  one json.loads of the same file:       {r.loads * 1e3:8.2f} ms CPU")
        print(f"  absorb / json.loads = {r.absorb / r.loads:.3f}x (target <= 0.1x)")
        return 0
    t = Table(
        "one-VM rewrite of `vms.json`: CPU absorbed (vmdelta) vs one `json.loads` of the file, "
        f"medians of {args.rewrites}",
        ["snapshots", "VMs", "vms.json", "absorbed", "full decode", "json.loads", "absorbed/loads", "ok"],
    )
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure(max(1, n // SNAPSHOTS_PER_VM), args.rewrites)
        ratio = r.absorb / r.loads
        t.add(
            f"{n:,}",
            f"{r.vms:,}",
            f"{r.size / 2**20:.2f} MiB",
            fmt_s(r.absorb),
            fmt_s(r.whole),
            fmt_s(r.loads),
            f"{ratio:.3f}x",
            mark(ratio <= 0.1) if n >= 100_000 else "",
        )
    t.note("target at 100,000 snapshots: ≤ 0.1x; each absorbed result is checked against the full decode")
    print(t.render(args.markdown))
    return 0


def measure(n_vms: int, rewrites: int) -> Result:
    """Medians over `rewrites` one-VM rewrites of a `vms.json` of `n_vms` VMs."""
    vms = {rec["id"]: rec for rec in map(vm_record, range(n_vms))}
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, REL)
        os.makedirs(os.path.dirname(path))
        data = go_bytes(vms)
        write(path, data)
        full = cpu_of(lambda: read_ref_db(root, REL))  # the whole decode, remembered
        keys = sorted(vms)
        absorb_s: list[float] = []
        loads_s: list[float] = []
        whole_s: list[float] = []
        for n in range(rewrites):
            vid = keys[(n * 7919) % len(keys)]
            vms[vid]["snapshot_ids"] = dict(sorted({**vms[vid]["snapshot_ids"], f"new-{n}": {}}.items()))
            data = go_bytes(vms)
            write(path, data)
            got: list[Any] = []
            absorb_s.append(cpu_of(partial(_absorb_into, got, path)))
            if got[0] is None or got[0] != decode_vm_facts(data, path):
                raise SystemExit(f"rewrite {n}: the fast route did not give the full decode's result")
            loads_s.append(cpu_of(partial(json.loads, data)))
            whole_s.append(cpu_of(lambda: read_ref_db(root, REL, remember=False)))
    absorb, loads, whole = (statistics.median(x) for x in (absorb_s, loads_s, whole_s))
    return Result(n_vms, len(data), full, absorb, whole, loads)


if __name__ == "__main__":
    raise SystemExit(main())
