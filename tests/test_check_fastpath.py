"""check's fast paths decide nothing of their own: the one-shot data dir
memo (keyed by the documents' bytes) judges every dir as the daemon's
digest-keyed memo does, and the reconciler's per-(dir, hypervisor) and
per-(dir, VM) health verdicts are forgotten when what they read changes,
so an index kept after a first load agrees with a fresh one."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import ModuleType

import pytest

from cocoond.cli.check import load_index
from cocoond.core.findings import Key
from cocoond.core.reconcile import Reconciler
from cocoond.scan import new_memo, read_contents, read_ref_db, stat_base_files
from cocoond.storage.paths import Paths
from tests.test_scan import write_ch_dir


def test_one_shot_memo_judges_each_dir_as_the_daemons_memo(tmp_path: Path) -> None:
    """Same names, same documents but one entry a directory; one byte of
    config.json apart; one disk missing; a symlink (never memoised): each
    gets its own verdict, and alike dirs share one."""
    names = ("a", "same", "dir-state", "other-config", "no-overlay", "linked")
    for name in names:
        write_ch_dir(tmp_path / name)
    (tmp_path / "dir-state" / "state.json").unlink()
    (tmp_path / "dir-state" / "state.json").mkdir()
    config = tmp_path / "other-config" / "config.json"
    config.write_text(config.read_text().replace('"readonly": true', '"readonly": "yes"'))
    (tmp_path / "no-overlay" / "overlay.qcow2").unlink()
    (tmp_path / "linked" / "state.json").unlink()
    (tmp_path / "linked" / "state.json").symlink_to(tmp_path / "a" / "state.json")
    memo = new_memo()
    once = {n: read_contents(str(tmp_path / n), None, memo) for n in names}
    daemon = {n: read_contents(str(tmp_path / n)) for n in names}
    assert once == daemon
    assert once["same"] is once["a"]
    assert len({once[n] for n in names}) == len(names) - 2  # "same" and "linked" look like "a"
    state_dir = once["dir-state"]
    assert state_dir is not None and ("state.json", "file") in state_dir.irregular
    other = once["other-config"]
    assert other is not None and other.config_problem is not None
    missing = once["no-overlay"]
    assert missing is not None and missing.missing_disks == ("overlay.qcow2",)


def fresh(root: Path) -> set[Key]:
    loaded = load_index(Paths(str(root)), pending_stale_seconds=3600, temp_stale_seconds=3600)
    loaded.index.evaluate(time.time())
    return {f.key for f in loaded.index.findings()}


def kept(root: Path) -> Reconciler:
    index = load_index(Paths(str(root)), pending_stale_seconds=3600, temp_stale_seconds=3600).index
    index.evaluate(time.time())
    assert index.findings() == []
    return index


def keys(index: Reconciler) -> set[Key]:
    index.evaluate(time.time())
    return {f.key for f in index.findings()}


def test_a_base_file_gone_after_a_first_load_is_judged_anew(sim: ModuleType, root: Path) -> None:
    """A first load judged every dir healthy once per (hypervisor, dir);
    a kernel or firmware those dirs name then goes (no dir changes, the
    daemon re-stats the file): the snapshots naming it are judged again."""
    sim.populate(str(root), snapshots=60, images=4)
    index = kept(root)
    named = sorted(
        path
        for state in index.dirs.values()
        if state.contents is not None
        for _, path in (*state.contents.ch_base, *state.contents.fc_base)
        if "/blobs/" not in path
    )
    assert named
    os.remove(named[0])
    index.set_base_files(stat_base_files(index.base_files))
    got = keys(index)
    assert got == fresh(root)
    assert any(k[0] == "clone_blocked" for k in got)


def test_a_vm_record_edited_after_a_first_load_is_judged_anew(sim: ModuleType, root: Path) -> None:
    """The restore verdict kept per (dir, VM) is the VM record's it came
    from: a VM whose data disk is then removed from its record by hand (no
    dir changes) refuses its snapshots (ValidateRoleSequence)."""
    sim.populate(str(root), snapshots=60, images=4)
    index = kept(root)
    relpath = "cloudhypervisor/db/vms.json"
    raw = json.loads((root / relpath).read_text())
    owned = [vm for vm in raw["vms"].values() if vm.get("snapshot_ids")]
    assert owned
    disks = owned[0]["storage_configs"]
    owned[0]["storage_configs"] = [d for d in disks if d["role"] != "cow"] + [
        d for d in disks if d["role"] == "cow"
    ]  # the COW moved last: the snapshot's roles are no longer the VM's prefix
    assert owned[0]["storage_configs"] != disks
    (root / relpath).write_text(json.dumps(raw))
    index.set_ref_db(relpath, read_ref_db(str(root), relpath))
    got = keys(index)
    assert got == fresh(root)
    assert any(k[0] == "restore_blocked" for k in got)


def test_json_of_the_sidecar_is_what_the_memo_reads(tmp_path: Path) -> None:
    """A sidecar rewritten in place (same names, other bytes) is a new key."""
    write_ch_dir(tmp_path / "s")
    memo = new_memo()
    before = read_contents(str(tmp_path / "s"), None, memo)
    sidecar = tmp_path / "s" / "cocoon.json"
    doc = json.loads(sidecar.read_text())
    doc["storage_configs"] = doc["storage_configs"][:1]
    sidecar.write_text(json.dumps(doc))
    after = read_contents(str(tmp_path / "s"), None, memo)
    assert before is not None and after is not None and before != after
    assert after == read_contents(str(tmp_path / "s"))


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("nics", "restore_blocked"),  # cmd/vm/run.go:171-174
        ("cpu", "restore_blocked"),  # the VM's cpu below the snapshot's: cmd/core/helpers.go:592-600
        ("storage", "clone_blocked"),  # below a new VM's 10G: types/vm.go:77-85
    ],
)
def test_snapshots_of_one_dir_with_other_record_values_are_each_judged(
    sim: ModuleType, root: Path, field: str, kind: str
) -> None:
    """Snapshots of one VM share one data dir verdict, but restore and
    clone also read each record's own values (its NIC count, cpu, memory,
    storage): whichever snapshot is judged first, only the one whose value
    differs is refused."""
    sim.populate(str(root), snapshots=60, images=4)
    db = root / "snapshot" / "db" / "snapshots.json"
    original = db.read_text()
    doc = json.loads(original)
    vms = json.loads((root / "cloudhypervisor" / "db" / "vms.json").read_text())["vms"]
    vm = next(v for v in vms.values() if len(set(v.get("snapshot_ids") or ()) & doc["snapshots"].keys()) >= 3)
    sids = sorted(set(vm["snapshot_ids"]) & doc["snapshots"].keys())
    value = {
        "nics": len(vm.get("network_configs") or ()) + 1,
        "cpu": vm["config"]["cpu"] + 1,
        "storage": 1 << 30,
    }[field]
    for odd in sids[:3]:
        doc = json.loads(original)
        doc["snapshots"][odd][field] = value
        db.write_text(json.dumps(doc))
        assert {k for k in fresh(root) if k[1] in sids} == {(kind, odd)}
