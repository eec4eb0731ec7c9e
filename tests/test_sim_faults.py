"""Every fault the simulator injects leaves the state it says (checked by
cocoond's own reading: `cocoond check` reports exactly the finding the
fault promises, or nothing where it promises none), next to a healthy
snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoond import sim
from cocoond.cli.main import main
from cocoond.sim.schema import GoDecodeError
from tests.conftest import CONTRACT_SEVERITY, run_sim

#: Findings a fault brings with it besides the one it is about.
SIDE_FINDINGS = {
    # cocoond also reports the null record itself (name_mismatch).
    "null-record-with-dir": {"name_mismatch"},
    # the registry wrote its data dir before it died: an orphan once quiet.
    "stale-epoch-tmp": {"orphan_data_dir"},
    # a blob gone: the image cannot create VMs, the VM using it cannot relaunch.
    "missing-blob": {"image_unusable", "vm_base_missing"},
    "missing-oci-layer": {"image_unusable"},
    # the VM the snapshot came from still has its COW: restore onto it fails too.
    "ch-no-cow": {"restore_blocked"},
    "dangling-symlinked-blob": {"image_unusable"},
    # the record is a stale pending one too (gc drops it: that is the harm).
    "gc-destroys-snapshot": {"stale_pending"},
}


@pytest.mark.parametrize("fault", sorted(sim.FAULTS))
def test_fault_leaves_what_it_promises(
    fault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(tmp_path / "cocoon")
    monkeypatch.setenv("COCOON_RUN_DIR", f"{root}/run")  # the simulator's run and log dirs
    monkeypatch.setenv("COCOON_LOG_DIR", f"{root}/log")
    healthy = sim.create(root, name="healthy")
    expected = sim.inject(root, fault)
    assert expected["fault"] == fault and expected["kind"] == sim.FAULTS[fault].kind
    capsys.readouterr()
    rc = main(["check", "--no-config", "--root", root, "--json"])
    result = json.loads(capsys.readouterr().out)
    findings = result["findings"]
    assert not [f for f in findings if f.get("snapshot_id") == healthy], findings
    if expected["kind"] is None:
        assert [f for f in findings if f["severity"] != "info"] == [], findings
        assert not [f for f in findings if f["subject"] == expected["subject"]], findings
        assert rc == 0
        return
    hits = [f for f in findings if (f["kind"], f["subject"]) == (expected["kind"], expected["subject"])]
    assert len(hits) == 1, (expected, findings)
    finding = hits[0]
    assert finding["severity"] == CONTRACT_SEVERITY[expected["kind"]]
    for key in ("snapshot_id", "path"):
        if key in expected:
            assert finding[key] == expected[key], (key, finding)
    others = {f["kind"] for f in findings if f is not finding and f["severity"] != "info"}
    # A DB gc loads that Go cannot decode also stops gc: gc_blocked says so.
    blocked = {"gc_blocked"} if expected["kind"] == "db_unreadable" else set()
    assert others <= SIDE_FINDINGS.get(fault, set()) | blocked, findings


def test_every_fault_is_listed_with_its_kind(tmp_path: Path) -> None:
    listed = run_sim(tmp_path, "inject", "--list").splitlines()
    assert [line.split()[0] for line in listed] == list(sim.FAULTS)
    for line, fault in zip(listed, sim.FAULTS.values(), strict=True):
        assert line.split()[1] == (fault.kind or "-")
    required = {
        "orphan-dir", "missing-dir", "missing-blob", "dangling-name", "stale-pending", "fresh-pending",
        "unreferenced-blob", "corrupt-db", "null-record-with-dir", "symlinked-blob",
        "dangling-symlinked-blob",
        "symlink-dir-in-localfile", "missing-oci-layer", "corrupt-oci-db", "undecodable-snapshot-field",
        "undecodable-vm-field", "undecodable-image-field", "case-variant-key", "recorded-data-dir-elsewhere",
        "stale-pull-img", "stale-import-img", "stale-epoch-tmp", "stale-oci-pull-dir", "convert-lock",
    }  # fmt: skip
    assert required <= set(sim.FAULTS)
    for part in ("sidecar", "config", "state", "memory", "cow", "cidata", "data-disk", "disk-mismatch"):
        assert f"incomplete-ch-{part}" in sim.FAULTS
    for part in ("sidecar", "vmstate", "mem", "cow", "data-disk"):
        assert f"incomplete-fc-{part}" in sim.FAULTS
    for db in ("snapshot", "cloudimg", "oci", "cloudhypervisor", "firecracker"):
        assert f"stale-db-tmp-{db}" in sim.FAULTS


def test_undecodable_fields_are_what_go_refuses(tmp_path: Path) -> None:
    """The simulator itself (Go's rules) cannot read the DBs these faults
    leave: every cocoon command on them fails, gc included."""
    for fault, step in (
        ("undecodable-snapshot-field", lambda r: sim.delete(r, "healthy")),
        ("undecodable-vm-field", lambda r: sim.rm_vm(r, "x")),
        ("undecodable-image-field", lambda r: sim.rmi(r, "x")),
        ("corrupt-oci-db", lambda r: sim.rmi(r, "x")),
    ):
        root = str(tmp_path / fault)
        sim.create(root, name="healthy")
        sim.inject(root, fault)
        with pytest.raises(GoDecodeError):
            step(root)
        with pytest.raises(sim.GCAborted):
            sim.gc(root)
