"""`cocoond gc-plan` against the simulator's `cocoon gc` on the same tree,
case by case: the plan lists exactly what the simulated gc then removes,
with the bytes `du` counted before, or says gc aborts when it does. Plus
trees built by hand from cocoon's Go structs, so that a misreading shared
by the simulator and cocoond cannot hide."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond.cli.main import main
from cocoond.core import gcmodel


def du(path: str) -> int:
    """What `du` counts: st_blocks * 512 of the path and all under it, links not followed."""
    total = 0
    seen = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total + os.lstat(path).st_blocks * 512


@pytest.fixture
def vm_dirs(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator keeps cocoon's run and log dirs in ROOT/run and ROOT/log."""
    monkeypatch.setenv("COCOON_RUN_DIR", str(root / "run"))
    monkeypatch.setenv("COCOON_LOG_DIR", str(root / "log"))


def plan(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    rc = main(["gc-plan", "--root", str(root), "--json"])
    out, err = capsys.readouterr()
    assert out.count("\n") == 1, (out, err)
    return rc, json.loads(out)


#: gc-plan's item kinds as the simulator's gc reports what it removed.
SIM_KEY = {
    "data_dir": "data_dirs",
    "pending_record": "records",
    "blob": "blobs",
    "boot_dir": "boot_dirs",
    "temp": "temps",
    "vm_run_dir": "vm_dirs",
    "vm_log_dir": "vm_dirs",
    "vm_record": "vms",
    "cni_records": "networks",
    "subtree": "subtrees",
}


def as_removed(root: Path, result: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {k: [] for k in set(SIM_KEY.values())}
    for module in result["modules"]:
        for item in module["items"]:
            what = item["what"]
            value = (
                os.path.relpath(item["path"], root)
                if what.endswith("_dir") and what.startswith("vm")
                else item["subject"]
            )
            out[SIM_KEY[what]].append(value)
    return {k: sorted(v) for k, v in out.items()}


def agree(root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """gc-plan, then the simulated gc: the same things, the same bytes."""
    rc, result = plan(root, capsys)
    assert rc == 0 and result["gc"] == "runs", result
    sizes = {i["path"]: du(i["path"]) for m in result["modules"] for i in m["items"] if "path" in i}
    for module in result["modules"]:
        for item in module["items"]:
            if "path" in item:
                assert item["bytes"] == sizes[item["path"]], item
        assert module["bytes"] == sum(i.get("bytes", 0) for i in module["items"])
    assert result["bytes"] == sum(sizes.values())
    removed = sim.gc(str(root))
    assert as_removed(root, result) == {k: v for k, v in removed.items() if k in set(SIM_KEY.values())}
    for path in sizes:
        assert not os.path.lexists(path), path
    # and after gc, nothing is left to do but what gc leaves by design
    rc, after = plan(root, capsys)
    assert after["bytes"] == 0 or all(i["what"] in ("temp",) for m in after["modules"] for i in m["items"]), (
        after
    )
    return result


def items(result: dict[str, Any], what: str) -> list[str]:
    return sorted(i["subject"] for m in result["modules"] for i in m["items"] if i["what"] == what)


# ------------------------------------------------------------- vs the sim
def test_healthy_tree_plans_nothing(root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    sim.create(str(root))
    result = agree(root, sim, capsys)
    assert result["bytes"] == 0
    assert "lock" in result["locks"] and "abort" in result["locks"]


def test_orphans_blobs_and_dirs(
    root: Path, sim: ModuleType, vm_dirs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.create(str(root))
    orphan = sim.inject(str(root), "orphan-dir")["subject"]
    nulled = sim.inject(str(root), "null-record-with-dir")["subject"]
    blob = sim.inject(str(root), "unreferenced-blob")["subject"]
    sim.inject(str(root), "orphan-symlink-dir")  # gc never sees a symlink
    vm = sim.inject(str(root), "stale-creating-vm")["subject"]
    run = sim.inject(str(root), "orphan-vm-run-dir")["subject"]
    live = next(iter(json.loads((root / "cloudhypervisor/db/vms.json").read_bytes())["vms"]))
    net = {"network": {"ip": "10.0.0.2"}, "type": "cocoon", "if_name": "eth0"}
    (root / "cni/db/networks.json").write_text(
        json.dumps(
            {
                "networks": {
                    "n1": {**net, "id": "n1", "vm_id": live},
                    "n2": {**net, "id": "n2", "vm_id": "GONEVM"},
                    "n3": None,
                }
            }
        )
    )
    result = agree(root, sim, capsys)
    assert items(result, "cni_records") == ["GONEVM"]
    assert items(result, "data_dir") == sorted([orphan, nulled])
    assert items(result, "blob") == [blob]
    assert items(result, "vm_record") == [vm]
    assert os.path.basename(run) in items(result, "vm_run_dir")
    assert result["bytes"] > 0


def test_stale_pending_only_past_gcs_24h(
    root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.create(str(root))
    young = sim.inject(str(root), "stale-pending")["subject"]  # 2 h: cocoond warns, gc keeps it
    old = sim.inject(str(root), "stale-pending")["subject"]
    db = root / "snapshot/db/snapshots.json"
    raw = json.loads(db.read_bytes())
    raw["snapshots"][old]["created_at"] = "2020-01-01T00:00:00Z"
    db.write_text(json.dumps(raw))
    result = agree(root, sim, capsys)
    assert items(result, "pending_record") == [old]
    assert young not in items(result, "data_dir")


@pytest.mark.parametrize("with_oci_blob", [False, True])
def test_temp_files_only_in_a_run_that_deletes_a_blob_of_that_type(
    root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str], with_oci_blob: bool
) -> None:
    """images/index.go:153-171 runs from Collect, which only modules with
    targets reach (gc/orchestrator.go:91-97)."""
    sim.create(str(root))
    pull = sim.inject(str(root), "stale-oci-pull-dir")["subject"]
    img = sim.inject(str(root), "stale-pull-img")["subject"]
    sim.inject(str(root), "convert-lock")  # *.lock: kept at any age
    fresh = root / "cloudimg/temp/pull-fresh.img"
    fresh.write_bytes(b"x")
    sim.inject(str(root), "unreferenced-blob")  # a cloudimg blob: cloudimg sweeps its temp dir
    if with_oci_blob:
        ref = sim.pull_oci(str(root), "registry.example/gone")["ref"]
        sim.rmi(str(root), ref)
    capsys.readouterr()
    main(["check", "--root", str(root), "--json"])
    said = {f["subject"]: f["message"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert ("the next `cocoon gc` removes it" in said[pull]) is with_oci_blob
    assert ("the next gc keeps it" in said[pull]) is not with_oci_blob
    assert "the next `cocoon gc` removes it" in said[img]  # an unreferenced cloudimg blob: swept
    result = agree(root, sim, capsys)
    temps = items(result, "temp")
    assert img in temps and str(fresh.relative_to(root)) not in temps
    assert not any(t.endswith(".lock") for t in temps)
    assert (pull in temps) is with_oci_blob
    assert fresh.exists()


@pytest.mark.parametrize(
    ("fault", "module"),
    [
        ("corrupt-db", "snapshot"),
        ("corrupt-oci-db", "oci"),
        ("undecodable-image-field", "cloudimg"),
        ("undecodable-vm-field", "cloud-hypervisor"),
        ("corrupt-cni-db", "cni"),
    ],
)
def test_abort_deletes_nothing_and_names_the_module(
    root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str], fault: str, module: str
) -> None:
    sim.create(str(root))
    sim.inject(str(root), "orphan-dir")
    sim.inject(str(root), "unreferenced-blob")
    expected = sim.inject(str(root), fault)
    rc, result = plan(root, capsys)
    assert rc == 1 and result["gc"] == "aborts"
    assert result["blocker"]["module"] == module and result["blocker"]["path"] == expected["subject"]
    assert result["bytes"] == 0 and all(m["items"] == [] for m in result["modules"])
    before = sorted(p for p, _, _ in os.walk(root))
    with pytest.raises(sim.GCAborted, match=f"snapshot {module}:"):
        sim.gc(str(root))
    # nothing removed (gc's backends' EnsureDirs may add empty dirs)
    assert set(before) <= {p for p, _, _ in os.walk(root)}
    # the finding names the blocker; the orphan's says gc deletes nothing now
    capsys.readouterr()
    main(["check", "--root", str(root), "--json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    blocked = [f for f in findings if f["kind"] == "gc_blocked"]
    assert len(blocked) == 1 and f"module {module}" in blocked[0]["message"]
    promises = [f for f in findings if f["kind"] in ("orphan_data_dir", "unreferenced_blob")]
    for f in promises:
        assert "currently deletes nothing" in f["message"], f
    # the CNI DB pins no blob: the blob stays known to be unreferenced
    assert ("unreferenced_blob" in {f["kind"] for f in promises}) is (module == "cni")


@pytest.mark.parametrize(("relpath", "module"), [("snapshot/localfile", "snapshot"), ("oci/boot", "oci")])
def test_a_dir_gc_lists_that_is_a_file_stops_gc(
    root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str], relpath: str, module: str
) -> None:
    """cocoon gc's backends MkdirAll their dirs first (cmd/others/handler.go:25-36)."""
    sim.create(str(root))
    sim.inject(str(root), "unreferenced-blob")
    path = root / relpath
    if path.is_dir():
        import shutil

        shutil.rmtree(path)
    path.write_bytes(b"not a dir")
    rc, result = plan(root, capsys)
    assert rc == 1 and result["blocker"]["module"] == module and result["blocker"]["path"] == relpath
    with pytest.raises(sim.GCAborted):
        sim.gc(str(root))
    assert path.is_file()


def test_first_module_in_gcs_order_is_named(
    root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.create(str(root))
    sim.inject(str(root), "corrupt-db")
    sim.inject(str(root), "corrupt-cni-db")
    _, result = plan(root, capsys)
    assert result["blocker"]["module"] == "cni"  # registered before snapshot (cmd/others/handler.go:50-52)
    with pytest.raises(sim.GCAborted, match="snapshot cni:"):
        sim.gc(str(root))


def test_human_output(root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    sim.create(str(root))
    sim.inject(str(root), "orphan-dir")
    capsys.readouterr()
    assert main(["gc-plan", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"GC RUNS: {root}: `cocoon gc` would remove 1 item, ")
    assert "takes no lock" in out and "snapshot  data_dir" in out and "TOTAL  " in out
    assert all(len(line) <= 200 for line in out.splitlines())


def test_unknown_root_is_exit_3(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gc-plan", "--root", str(root)]) == 3
    assert capsys.readouterr().err.count("\n") == 1


# ------------------------------------------------------------ by hand
def _write(path: Path, data: bytes | str = b"x" * 5000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def test_hand_built_tree(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """From cocoon's structs: snapshot.SnapshotIndex, hypervisor.VMIndex,
    oci and cloudimg imageIndex, cni networkIndex."""
    monkeypatch.setenv("COCOON_RUN_DIR", str(root / "rundir"))
    monkeypatch.setenv("COCOON_LOG_DIR", str(root / "logdir"))
    pinned, by_vm, by_snap, loose, boot_only = (c * 64 for c in "abcde")
    _write(
        root / "snapshot/db/snapshots.json",
        json.dumps(
            {
                "snapshots": {
                    "S1": {
                        "id": "S1",
                        "name": "s1",
                        "image_blob_ids": {by_snap: {}},
                        "created_at": "2026-01-01T00:00:00Z",
                    },
                    "S2": {"id": "S2", "pending": True, "created_at": "2020-01-01T00:00:00Z"},
                    "S3": None,
                },
                "names": {"s1": "S1"},
            }
        ),
    )
    for sid in ("S1", "S2", "S3", "S4"):
        _write(root / "snapshot/localfile" / sid / "f")
    _write(
        root / "cloudimg/db/images.json",
        json.dumps({"images": {"u": {"ref": "u", "content_sum": f"sha256:{pinned}"}}}),
    )
    for hex_ in (pinned, by_vm, by_snap, loose):
        _write(root / "cloudimg/blobs" / f"{hex_}.qcow2")
    _write(root / "oci/boot" / boot_only / "vmlinuz")
    vm = {
        "id": "V1",
        "state": "running",
        "config": {"name": "v1"},
        "image_blob_ids": {by_vm: {}},
        "updated_at": "2026-01-01T00:00:00Z",
    }
    stuck = {
        "id": "V2",
        "state": "creating",
        "config": {"name": "v2"},
        "updated_at": "2020-01-01T00:00:00Z",
        "run_dir": str(root / "rundir/cloudhypervisor/V2"),
        "log_dir": str(root / "logdir/cloudhypervisor/V2"),
    }
    _write(
        root / "cloudhypervisor/db/vms.json",
        json.dumps({"vms": {"V1": vm, "V2": stuck}, "names": {"v1": "V1", "v2": "V2"}}),
    )
    for d in (
        "rundir/cloudhypervisor/V1",
        "rundir/cloudhypervisor/V2",
        "rundir/cloudhypervisor/V9",
        "rundir/cloudhypervisor/db",
    ):
        _write(root / d / "f")
    _write(
        root / "cni/db/networks.json",
        json.dumps({"networks": {"n1": {"vm_id": "V1"}, "n2": {"vm_id": "V7"}}}),
    )
    rc, result = plan(root, capsys)
    assert rc == 0, result
    got = {(m["module"], i["what"], i["subject"]) for m in result["modules"] for i in m["items"]}
    assert got == {
        ("cloudimg", "blob", loose),
        ("oci", "boot_dir", boot_only),
        ("cloud-hypervisor", "vm_run_dir", "V2"),
        ("cloud-hypervisor", "vm_record", "V2"),
        ("cloud-hypervisor", "vm_run_dir", "V9"),
        ("cni", "cni_records", "V7"),
        ("snapshot", "data_dir", "S2"),
        ("snapshot", "pending_record", "S2"),
        ("snapshot", "data_dir", "S3"),
        ("snapshot", "data_dir", "S4"),
    }
    # check says the same, in findings (an orphan once its dir was quiet)
    for path in (root / "snapshot/localfile/S4", root / "snapshot/localfile/S4/f"):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    capsys.readouterr()
    main(["check", "--root", str(root), "--json"])
    findings = {(f["kind"], f["subject"]) for f in json.loads(capsys.readouterr().out)["findings"]}
    assert ("stale_creating_vm", "V2") in findings
    assert ("orphan_vm_dir", str(root / "rundir/cloudhypervisor/V9")) in findings
    assert ("unreferenced_blob", loose) in findings and ("unreferenced_blob", boot_only) in findings
    assert ("orphan_data_dir", "S4") in findings


def test_view_of_an_unreadable_db_is_unknown_not_blocked() -> None:
    """cocoond's own EACCES says nothing about what gc (root) reads."""
    import errno

    from cocoond.errors import DBError

    view = gcmodel.GCView(
        root="/r",
        now=time.time(),
        db_errors={"oci/db/images.json": DBError("/r/oci/db/images.json", "denied", errno=errno.EACCES)},
        image_refs={},
        ref_facts={},
        snapshots={},
        data_dirs={},
        blobs=[],
        boot_dirs=[],
        temps={},
        unreadable={},
    )
    result = gcmodel.plan(view)
    assert result.blocker is None and result.unknown


def test_hand_built_cni_db_of_the_wrong_type_blocks_gc(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """network/cni/db.go:22: `networks` is a map; Go refuses a number there,
    and gc's cni module aborts the run (gc/orchestrator.go:76-78)."""
    _write(root / "snapshot/db/snapshots.json", json.dumps({"snapshots": {}, "names": {}}))
    _write(root / "snapshot/localfile/ORPHAN1/f")
    _write(root / "cni/db/networks.json", '{"networks": 5}')
    rc, result = plan(root, capsys)
    assert rc == 1 and result["blocker"]["module"] == "cni"
    assert result["blocker"]["path"] == "cni/db/networks.json"
    capsys.readouterr()
    main(["check", "--root", str(root), "--json"])
    found = {(f["kind"], f["subject"]): f for f in json.loads(capsys.readouterr().out)["findings"]}
    assert ("db_unreadable", "cni/db/networks.json") in found
    assert "module cni" in found[("gc_blocked", "gc")]["message"]


@pytest.mark.parametrize(
    ("fault", "gone"), [("gc-destroys-oci-boot", "oci/boot"), ("gc-destroys-oci", "oci")]
)
def test_a_blob_name_that_makes_gc_remove_a_whole_dir(
    root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str], fault: str, gone: str
) -> None:
    """The plan lists the whole dir gc's RemoveAll(oci/boot/<stem>) hits
    (images/oci/gc.go:21), with du's bytes, and nothing in it a second
    time; the simulated gc removes that dir; gc-plan exits 2."""
    sim.create(str(root))
    sim.inject(str(root), fault)
    before = du(str(root / gone))
    rc, result = plan(root, capsys)
    assert (rc, result["gc"]) == (2, "runs"), result
    wide = [i for m in result["modules"] for i in m["items"] if i["what"] == "subtree"]
    assert [(i["subject"], i["bytes"]) for i in wide] == [(gone, before)]
    inside = [
        i
        for m in result["modules"]
        for i in m["items"]
        if i.get("path", "").startswith(wide[0]["path"] + "/")
    ]
    assert inside == []
    removed = sim.gc(str(root))
    assert removed["subtrees"] == [gone] and not (root / gone).exists()
