"""`cocoond run` reaches the same restore/clone verdicts as `check`: faults
made inside committed snapshots' data dirs (no event reaches the
non-recursive watch of localfile/: the safety-net rescan sees them), and a
base file removed under a watched blob dir (the blob event re-stats the base
files snapshots name, no watch per data dir)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cocoond.cli.main import main
from cocoond.sim import faults
from cocoond.sim import layout as sim_layout
from tests.daemon_harness import Daemons, daemons_for, opened, resolved

OPS_KINDS = {"incomplete_data_dir", "clone_blocked", "restore_blocked"}


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def check_keys(root: Path, capsys: pytest.CaptureFixture[str]) -> set[tuple[str, str]]:
    capsys.readouterr()
    main(["check", "--no-config", "--root", str(root), "--json"])
    out = json.loads(capsys.readouterr().out)
    return {(f["kind"], f["subject"]) for f in out["findings"] if f["kind"] in OPS_KINDS}


def test_run_reaches_checks_restore_and_clone_verdicts(
    daemons: Daemons, sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.init(str(root))
    daemon = daemons.start(
        root,
        overrides={
            "watch": {"settle_seconds": 0.3, "debounce_seconds": 0.05, "full_rescan_seconds": 1.0},
            "alerts": {"heartbeat_seconds": 0.5},
        },
    )
    daemon.wait_ready()
    healthy_fc = faults._fc_snapshot(str(root))
    expected = [
        sim.inject(str(root), fault)
        for fault in (
            "copy-skips-symlink-ch-state",
            "fc-sidecar-cpu-string",
            "ch-no-cow",
            "imported-ch-other-root",
            "snapshot-memory-below-minimum",
            "vm-cpu-below-snapshot",
        )
    ]
    for want in expected:
        daemon.wait_for(opened(want["kind"], want["subject"]), timeout=20, what=want["fault"])
    # A layer of the healthy FC snapshot removed: a blob event, the base
    # files re-stated, clone_blocked opens (missing_blob with it).
    meta = json.loads((Path(sim_layout.data_dir(str(root), healthy_fc)) / "cocoon.json").read_text())
    layer = next(sc["path"] for sc in meta["storage_configs"] if sc["role"] == "layer")
    moved = root / "elsewhere-layer"
    os.rename(layer, moved)
    line = daemon.wait_for(
        opened("clone_blocked", healthy_fc), timeout=20, what="clone_blocked on a layer removed"
    )
    assert f"base layer {layer} is missing" in line["message"], line
    no_cow = next(w["subject"] for w in expected if w["fault"] == "ch-no-cow")
    want = {(w["kind"], w["subject"]) for w in expected} | {
        ("clone_blocked", healthy_fc),
        ("restore_blocked", no_cow),  # its VM still has the COW
        ("restore_blocked", healthy_fc),  # its VM lost the same layer
    }
    assert check_keys(root, capsys) == want
    current = {
        (x["kind"], x["subject"])
        for x in daemon.events("finding.opened")
        if x.get("kind") in OPS_KINDS
        and not daemon.events("finding.resolved", kind=x["kind"], subject=x["subject"])
    }
    assert current == want
    os.rename(moved, layer)  # put back: resolved by the next blob event
    daemon.wait_for(resolved("clone_blocked", healthy_fc), timeout=20, what="resolved once the layer is back")


IMAGE_VM_KINDS = {"image_unusable", "vm_base_missing", "vm_snapshot_gone"}


def test_run_reaches_checks_image_and_vm_verdicts(
    daemons: Daemons, sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Image DB and VM DB changes arrive as events; files inside oci/boot/<hex>/
    (not watched) are looked at again by the safety-net rescan."""
    sim.init(str(root))
    daemon = daemons.start(
        root,
        overrides={
            "watch": {"settle_seconds": 0.3, "debounce_seconds": 0.05, "full_rescan_seconds": 1.0},
            "alerts": {"heartbeat_seconds": 0.5},
        },
    )
    daemon.wait_ready()
    expected = [
        sim.inject(str(root), fault)
        for fault in (
            "oci-boot-files-gone",
            "empty-kernel-layer",
            "vm-kernel-gone",
            "vm-lists-deleted-snapshot",
        )
    ]
    for want in expected:
        daemon.wait_for(opened(want["kind"], want["subject"]), timeout=20, what=want["fault"])
    capsys.readouterr()
    main(["check", "--no-config", "--root", str(root), "--json"])
    out = json.loads(capsys.readouterr().out)
    by_check = {(f["kind"], f["subject"]) for f in out["findings"] if f["kind"] in IMAGE_VM_KINDS}
    assert by_check == {(w["kind"], w["subject"]) for w in expected}
    opened_now = {
        (x["kind"], x["subject"])
        for x in daemon.events("finding.opened")
        if x.get("kind") in IMAGE_VM_KINDS
        and not daemon.events("finding.resolved", kind=x["kind"], subject=x["subject"])
    }
    assert opened_now == by_check


def test_run_reaches_checks_gc_destroys_verdict(
    daemons: Daemons, sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stray oci/blobs/...erofs arrives as a blob event: gc_destroys opens
    as `check` has it, and resolves once the file is renamed to a plain name
    (then only an unreferenced blob, which gc deletes alone)."""
    sim.init(str(root))
    daemon = daemons.start(
        root,
        overrides={
            "watch": {"settle_seconds": 0.3, "debounce_seconds": 0.05},
            "alerts": {"heartbeat_seconds": 0.5},
        },
    )
    daemon.wait_ready()
    made = ("gc-destroys-oci", "gc-destroys-oci-boot", "gc-destroys-snapshot")
    want = [sim.inject(str(root), fault) for fault in made]
    for w in want:
        daemon.wait_for(opened(w["kind"], w["subject"]), timeout=20, what=w["fault"])
    capsys.readouterr()
    main(["check", "--no-config", "--root", str(root), "--json"])
    out = json.loads(capsys.readouterr().out)
    by_check = {(f["kind"], f["subject"]) for f in out["findings"] if f["kind"] == "gc_destroys"}
    assert by_check == {(w["kind"], w["subject"]) for w in want}
    os.rename(root / "oci/blobs/...erofs", root / "oci/blobs/stray.erofs")
    daemon.wait_for(resolved("gc_destroys", "oci/blobs/...erofs"), timeout=20, what="renamed away")
    current = {
        (x["kind"], x["subject"])
        for x in daemon.events("finding.opened")
        if x.get("kind") == "gc_destroys"
        and not daemon.events("finding.resolved", kind=x["kind"], subject=x["subject"])
    }
    assert current == {("gc_destroys", "oci/blobs/..erofs"), ("gc_destroys", "..")}
