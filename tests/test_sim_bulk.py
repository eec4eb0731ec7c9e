"""populate and churn: large and busy trees that stay consistent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cocoond import sim
from cocoond.sim import CH, FC
from tests.conftest import run_sim


def consistency_problems(root: str) -> list[str]:
    """The invariants cocoon's own commands keep, read with the simulator's
    model (not cocoond's): every committed record has its complete data dir
    and nothing else is in localfile/, no record is pending, no temp entry
    is left, every VM has its run dir, every referenced blob is there."""
    problems = []
    db = sim.load_snapshots(root)
    local = os.path.join(root, "snapshot/localfile")
    dirs = set(os.listdir(local))
    for sid, rec in db["snapshots"].items():
        if rec.get("pending"):
            problems.append(f"{sid} pending")
        if sid not in dirs:
            problems.append(f"{sid} has no dir")
            continue
        files = set(os.listdir(os.path.join(local, sid)))
        sidecar = json.loads(Path(local, sid, "cocoon.json").read_bytes())
        for sc in sidecar["storage_configs"] or []:
            name = f"data-{sc['serial']}.raw" if sc["role"] == "data" else os.path.basename(sc["path"])
            if sc["role"] != "layer" and name not in files:
                problems.append(f"{sid} lacks {name}")
        need = {"vmstate", "mem"} if rec["hypervisor"] == "firecracker" else {"config.json", "state.json"}
        problems += [f"{sid} lacks {n}" for n in need - files]
        for h in rec.get("image_blob_ids") or {}:
            if not any(os.path.exists(b.blob(root, h)) for b in (sim.CLOUDIMG, sim.OCI)):
                problems.append(f"{sid} blob {h} missing")
    problems += [f"orphan {d}" for d in dirs - set(db["snapshots"])]
    for name, sid in db["names"].items():
        if (db["snapshots"].get(sid) or {}).get("name") != name:
            problems.append(f"name {name} -> {sid}")
    problems += [f"{s} not in names" for s, r in db["snapshots"].items() if db["names"].get(r["name"]) != s]
    for temp in ("cloudimg/temp", "oci/temp"):
        left = [n for n in os.listdir(os.path.join(root, temp)) if not n.endswith(".lock")]
        problems += [f"{temp}/{n} left" for n in left]
    for hv in (CH, FC):
        for vm_id, rec in sim.load_vms(root, hv)["vms"].items():
            if rec["state"] != "running" or not os.path.isdir(rec["run_dir"]):
                problems.append(f"VM {vm_id} {rec['state']}")
    return problems


def kinds(root: str) -> dict[str, set[Any]]:
    db = sim.load_snapshots(root)
    return {
        "hypervisor": {r["hypervisor"] for r in db["snapshots"].values()},
        "image_type": {r.get("image_type") for r in db["snapshots"].values()},
    }


def test_populate_is_consistent_mixed_and_deterministic(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert sim.populate(a, 120, 4, seed=5) == {"snapshots": 120, "images": 4, "vms": 5}
    assert consistency_problems(a) == []
    assert kinds(a) == {"hypervisor": {"cloud-hypervisor", "firecracker"}, "image_type": {"cloudimg", "oci"}}
    sim.populate(b, 120, 4, seed=5)
    ids = sorted(sim.load_snapshots(a)["snapshots"])
    assert ids == sorted(sim.load_snapshots(b)["snapshots"])  # the seed decides the IDs
    assert sorted(os.listdir(os.path.join(a, "run/cloudhypervisor"))) == sorted(
        os.listdir(os.path.join(b, "run/cloudhypervisor"))
    )
    vm_snaps = [s for hv in (CH, FC) for r in sim.load_vms(a, hv)["vms"].values() for s in r["snapshot_ids"]]
    assert sorted(vm_snaps) == ids  # each snapshot is recorded on its VM
    big = os.path.join(a, "snapshot/localfile", ids[0])
    assert sum(os.stat(os.path.join(big, n)).st_blocks for n in os.listdir(big)) * 512 < 64 << 10  # sparse


def test_populate_without_images_and_with_old_memory_files(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    run_sim(Path(root), "populate", "--snapshots", "10", "--images", "0", "--memory-file", "memory-range-0")
    assert consistency_problems(root) == []
    dirs = os.listdir(os.path.join(root, "snapshot/localfile"))
    assert all("memory-range-0" in os.listdir(os.path.join(root, "snapshot/localfile", d)) for d in dirs)


def test_churn_runs_every_legitimate_command_and_leaves_a_consistent_tree(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    counts = sim.churn(root, seconds=3, seed=3, pause=0)
    assert "failed" not in counts, counts
    assert {"create", "delete", "import", "pull", "pull-oci", "rmi", "vm-create", "vm-rm", "gc"} <= set(
        counts
    )
    assert consistency_problems(root) == []
    assert kinds(root)["hypervisor"] == {"cloud-hypervisor", "firecracker"}


def test_churn_goes_on_when_a_fault_makes_commands_fail(tmp_path: Path) -> None:
    """A snapshot DB Go cannot decode (injected while churn runs, on a host):
    every snapshot command fails, as in cocoon, and churn carries on with
    the others."""
    root = str(tmp_path / "r")
    sim.inject(root, "undecodable-snapshot-field")
    counts = sim.churn(root, seconds=1, seed=4, pause=0)
    assert counts["failed"] >= 1 and "create" not in counts and "delete" not in counts, counts
    assert counts.get("pull", 0) + counts.get("pull-oci", 0) + counts.get("vm-create", 0) >= 1, counts


def test_churn_on_a_populated_tree(tmp_path: Path) -> None:
    """The same seed for both: churn's IDs are random, not the seed's."""
    root = str(tmp_path / "r")
    sim.populate(root, 60, 3, seed=1)
    sim.churn(root, seconds=1, seed=1, pause=0)
    assert consistency_problems(root) == []
