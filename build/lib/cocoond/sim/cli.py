"""`python -m cocoond.sim ROOT COMMAND ...`: the simulator's command line.

Each command does to ROOT what the cocoon command (or tool) named in its
help does, and prints its result on stdout (an ID, a hex, or one JSON
line). A step cocoon would refuse is one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from cocoond.sim import layout
from cocoond.sim.bulk import churn, populate
from cocoond.sim.epoch import epoch_import
from cocoond.sim.faults import FAULTS, inject
from cocoond.sim.fsops import SimError, flock
from cocoond.sim.gc import gc
from cocoond.sim.images import (
    CLOUDIMG_CRASH_POINTS,
    OCI_CRASH_POINTS,
    import_image,
    import_oci,
    layout_init,
    pull_image,
    pull_oci,
    rmi,
)
from cocoond.sim.schema import GoDecodeError
from cocoond.sim.snapshots import (
    DELETE_CRASH_POINTS,
    IMPORT_CRASH_POINTS,
    SAVE_CRASH_POINTS,
    create,
    delete,
    import_snapshot,
)
from cocoond.sim.vms import CREATE_CRASH_POINTS, RM_CRASH_POINTS, DataDisk, create_vm, rm_vm

PROG = "python -m cocoond.sim"


def _hv(args: argparse.Namespace) -> str:
    return layout.FC.name if args.fc else layout.CH.name


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Does to ROOT what cocoon does to its storage (cocoon's own sequences, "
        "crashes between their steps, faults). Writes only under ROOT.",
    )
    ap.add_argument("root", metavar="ROOT")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def cmd(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text)

    cmd("init", "the dirs every cocoon command's backends create (EnsureDirs)")
    s = cmd("populate", "a large consistent tree, each DB written once (for benchmarks)")
    s.add_argument("--snapshots", type=int, default=1000)
    s.add_argument("--images", type=int, default=20)
    s.add_argument("--vms", type=int, help="default: one per 25 snapshots")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument(
        "--memory-file", default="memory-ranges", help="CH's memory file name (memory-range-0 ...)"
    )

    s = cmd("pull-image", "`cocoon image pull URL` of a cloud image; prints the blob hex")
    s.add_argument("--url")
    s.add_argument("--size", type=int, default=65536)
    s.add_argument("--format", choices=["qcow2", "qcow2-v2", "raw"], default="qcow2")
    s.add_argument("--force", action="store_true")
    s.add_argument("--crash-at", choices=CLOUDIMG_CRASH_POINTS)
    s = cmd("import-image", "`cocoon image import NAME FILE` of a qcow2/raw file; prints the blob hex")
    s.add_argument("name")
    s.add_argument("--size", type=int, default=65536)
    s.add_argument("--format", choices=["qcow2", "qcow2-v2", "raw"], default="qcow2")
    s.add_argument("--crash-at", choices=CLOUDIMG_CRASH_POINTS)
    s = cmd("pull-oci", "`cocoon image pull REF` of an OCI image; prints JSON")
    s.add_argument("ref")
    s.add_argument("--layers", type=int, default=2)
    s.add_argument("--seed", help="images pulled with one seed share layers")
    s.add_argument("--crash-at", choices=OCI_CRASH_POINTS)
    s = cmd("import-oci", "`cocoon image import NAME LAYER.tar...` of OCI layers; prints JSON")
    s.add_argument("name")
    s.add_argument("--layers", type=int, default=1)
    s.add_argument("--crash-at", choices=OCI_CRASH_POINTS)
    s = cmd("rmi", "`cocoon image rm REF` (blobs stay until gc); prints the refs removed")
    s.add_argument("ref")

    s = cmd("vm-create", "`cocoon vm run` (create and start); prints the VM ID")
    s.add_argument("--fc", action="store_true", help="Firecracker (default Cloud Hypervisor)")
    s.add_argument("--image", help="an image ref in cloudimg/ or oci/ images.json")
    s.add_argument("--blob", action="append", default=[], help="stand in for an image: its blob hexes")
    s.add_argument("--name")
    s.add_argument("--cpu", type=int, default=2)
    s.add_argument("--memory", type=int, default=1 << 30)
    s.add_argument("--storage", type=int, default=10 << 30)
    s.add_argument("--queue-size", type=int, default=0)
    s.add_argument("--disk-queue-size", type=int, default=0)
    s.add_argument("--network", default="")
    s.add_argument("--no-direct-io", action="store_true")
    s.add_argument("--windows", action="store_true")
    s.add_argument("--nics", type=int, default=1)
    s.add_argument("--data-disk", action="append", default=[], metavar="NAME[:SIZE[:FSTYPE[:MOUNT]]]")
    s.add_argument("--no-start", action="store_true")
    s.add_argument("--crash-at", choices=CREATE_CRASH_POINTS)
    s = cmd("vm-rm", "`cocoon vm rm REF`: dirs first, record after")
    s.add_argument("ref")
    s.add_argument("--crash-at", choices=RM_CRASH_POINTS)

    s = cmd("create", "`cocoon snapshot save` (of --vm, or of a VM made first); prints the snapshot ID")
    s.add_argument("--name", help='default snap-<id>; "" for none')
    s.add_argument("--description", default="")
    s.add_argument("--vm")
    s.add_argument("--fc", action="store_true", help="the VM made first is a Firecracker one")
    s.add_argument("--image", help="the VM made first boots this image")
    s.add_argument("--blob", action="append", default=[], help="the VM made first stands in for these blobs")
    s.add_argument("--memory-file", default="memory-ranges")
    s.add_argument("--crash-at", choices=SAVE_CRASH_POINTS)
    s = cmd("delete", "`cocoon snapshot rm REF`: data dir first, record after")
    s.add_argument("ref")
    s.add_argument("--crash-at", choices=DELETE_CRASH_POINTS)
    s = cmd("import", "`cocoon snapshot import` of an export (--from REF) or of a foreign snapshot")
    s.add_argument("--from", dest="source")
    s.add_argument("--name", default="")
    s.add_argument("--description", default="")
    s.add_argument("--fc", action="store_true")
    s.add_argument("--blob", action="append", default=[])
    s.add_argument("--crash-at", choices=IMPORT_CRASH_POINTS)

    cmd("gc", "`cocoon gc`; prints what it removed (exit 1 when it aborts)")
    s = cmd("epoch-import", "the epoch registry's pull: data dir, then an unlocked indented DB rewrite")
    s.add_argument("--name")
    s.add_argument("--blob", action="append", default=[])
    s.add_argument("--fc", action="store_true")
    s.add_argument("--crash-at", choices=["tmp"])
    s = cmd("churn", "legitimate commands at random for a while; prints how many of each")
    s.add_argument("--seconds", type=float, default=10)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--pause", type=float, default=0.01)
    s = cmd("inject", "one fault; prints the finding cocoond should report (kind null: none)")
    s.add_argument("fault", nargs="?", choices=sorted(FAULTS), metavar="FAULT")
    s.add_argument("--list", action="store_true", help="list the faults")
    s = cmd("hold-lock", "hold cocoon's lock(s) as cocoon does (flock, file kept)")
    s.add_argument("--db", action="append", choices=sorted(layout.all_dbs()), help="default: snapshot")
    s.add_argument("--seconds", type=float, default=5)
    return ap


def _out(value: Any) -> None:
    print(value if isinstance(value, str) else json.dumps(value), flush=True)


def _hold(root: str, dbs: Sequence[str], seconds: float) -> None:
    with ExitStack() as stack:
        for db in dbs:
            path = os.path.join(root, layout.all_dbs()[db][1])
            os.makedirs(os.path.dirname(path), 0o750, exist_ok=True)
            stack.enter_context(flock(path))
            _out(f"locked {path}")
        time.sleep(seconds)


COMMANDS: dict[str, Callable[[str, argparse.Namespace], Any]] = {
    "init": lambda r, a: layout_init(r),
    "populate": lambda r, a: populate(r, a.snapshots, a.images, a.seed, a.vms, a.memory_file),
    "pull-image": lambda r, a: pull_image(r, a.size, a.url, a.format, a.crash_at, a.force),
    "import-image": lambda r, a: import_image(r, a.name, a.size, a.format, a.crash_at),
    "pull-oci": lambda r, a: pull_oci(r, a.ref, a.layers, a.crash_at, a.seed),
    "import-oci": lambda r, a: import_oci(r, a.name, a.layers, a.crash_at),
    "rmi": lambda r, a: rmi(r, a.ref),
    "vm-create": lambda r, a: create_vm(
        r,
        hypervisor=_hv(a),
        image=a.image,
        blobs=a.blob,
        name=a.name,
        cpu=a.cpu,
        memory=a.memory,
        storage=a.storage,
        queue_size=a.queue_size,
        disk_queue_size=a.disk_queue_size,
        network=a.network,
        no_direct_io=a.no_direct_io,
        windows=a.windows,
        nics=a.nics,
        data_disks=[DataDisk.parse(d) for d in a.data_disk],
        crash_at=a.crash_at,
        start=not a.no_start,
    ),
    "vm-rm": lambda r, a: rm_vm(r, a.ref, a.crash_at),
    "create": lambda r, a: create(
        r,
        a.name,
        a.blob,
        a.crash_at,
        hypervisor=_hv(a),
        vm=a.vm,
        image=a.image,
        description=a.description,
        memory_file=a.memory_file,
    ),
    "delete": lambda r, a: delete(r, a.ref, a.crash_at),
    "import": lambda r, a: import_snapshot(
        r, a.source, a.name, a.description, hypervisor=_hv(a), blobs=a.blob, crash_at=a.crash_at
    ),
    "gc": lambda r, a: gc(r),
    "epoch-import": lambda r, a: epoch_import(r, a.name, a.blob, hypervisor=_hv(a), crash_at=a.crash_at),
    "churn": lambda r, a: churn(r, a.seconds, a.seed, a.pause),
    "hold-lock": lambda r, a: _hold(r, a.db or ["snapshot"], a.seconds),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "inject":
            if args.list or not args.fault:
                for f in FAULTS.values():
                    print(f"{f.name:30} {f.kind or '-':20} {f.how}")
                return 0
            _out(inject(args.root, args.fault))
            return 0
        result = COMMANDS[args.cmd](args.root, args)
    except (SimError, GoDecodeError, OSError) as exc:
        print(f"{PROG}: {args.cmd}: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        _out(result)
    return 0
