"""`cocoond run` and gc as a whole: the daemon reaches check's verdict on
the gc rules (gc_blocked, stale_creating_vm, orphan_vm_dir) after settle,
and its metrics file carries gc-plan's bytes per module and whether gc
would abort."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.daemon_harness import Daemons, daemons_for, opened
from tests.test_daemon_metrics import read, wait_file
from tests.test_fault_campaign import CAMPAIGN, agree
from tests.test_gcplan import du


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


@pytest.fixture(autouse=True)
def sim_vm_dirs(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's run and log dirs, for the daemon and for check alike."""
    monkeypatch.setenv("COCOON_RUN_DIR", str(root / "run"))
    monkeypatch.setenv("COCOON_LOG_DIR", str(root / "log"))


def test_run_agrees_with_check_on_the_gc_rules(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.populate(str(root), snapshots=5, images=2)
    daemon = daemons.start(root, CAMPAIGN, overrides={"watch": {"full_rescan_seconds": 1}})
    daemon.wait_ready()
    agree(daemon, root, "start")
    for fault in ("stale-creating-vm", "orphan-vm-run-dir", "orphan-dir"):
        expected = sim.inject(str(root), fault)
        daemon.wait_for(opened(expected["kind"], expected["subject"]), what=fault)
        agree(daemon, root, fault)
    expected = sim.inject(str(root), "corrupt-cni-db")
    blocked = daemon.wait_for(opened("gc_blocked", "gc"), what="gc_blocked")
    assert "module cni" in blocked["message"]
    found = agree(daemon, root, "corrupt-cni-db")
    assert found[("db_unreadable", "cni/db/networks.json")] == "error"
    assert daemon.stop()[0] == 0


def test_metrics_carry_the_gc_plan(daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path) -> None:
    sim.populate(str(root), snapshots=3, images=1)
    prom = tmp_path / "cocoond.prom"
    daemon = daemons.start(
        root, overrides={"metrics": {"textfile": str(prom)}, "alerts": {"heartbeat_seconds": 0.5}}
    )
    daemon.wait_ready()
    wait_file(prom, lambda s: s.get(("cocoond_gc_would_abort", ())) == 0.0, "gc runs")
    orphan = sim.inject(str(root), "orphan-dir")["path"]
    blob = sim.inject(str(root), "unreferenced-blob")["subject"]
    daemon.wait_for(opened("orphan_data_dir"), what="the orphan")
    want = {"snapshot": du(orphan), "cloudimg": du(str(root / "cloudimg/blobs" / f"{blob}.qcow2"))}
    samples = wait_file(
        prom,
        lambda s: all(
            s.get(("cocoond_gc_reclaimable_bytes", (("module", m),))) == b for m, b in want.items()
        ),
        "the orphan's and the blob's bytes",
    )
    assert samples[("cocoond_gc_reclaimable_bytes", (("module", "oci"),))] == 0
    sim.inject(str(root), "corrupt-oci-db")
    samples = wait_file(prom, lambda s: s.get(("cocoond_gc_would_abort", ())) == 1.0, "gc would abort")
    assert samples[("cocoond_gc_reclaimable_bytes", (("module", "snapshot"),))] == 0
    assert os.path.isdir(orphan)  # cocoond deletes nothing
    assert read(prom)
    assert daemon.stop()[0] == 0
