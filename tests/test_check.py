"""`cocoond check` against trees made by the simulator's real sequences (and a
few hand edits of the DBs cocoon itself never makes): each finding kind, its
severity and fields, the exit codes, and the human output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond.cli.main import main
from tests.conftest import CONTRACT_SEVERITY, FAULTS, run_sim

EXIT_FOR = {None: 0, "info": 0, "warning": 1, "error": 2}
RANK = {"info": 0, "warning": 1, "error": 2}
SNAPSHOT_DB = "snapshot/db/snapshots.json"
#: What a DB that cocoon's gc loads and Go cannot decode adds: gc aborts.
GC_BLOCKED = ("gc_blocked", "gc")


# ---------------------------------------------------------------- helpers
def check(root: Path | str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    """`cocoond check --root ROOT --json` in-process: (exit code, the object)."""
    capsys.readouterr()
    rc = main(["check", "--root", str(root), "--json", *extra])
    out, _err = capsys.readouterr()
    assert out.endswith("\n") and out.count("\n") == 1, "--json prints exactly one line"
    return rc, json.loads(out)


def check_human(root: Path | str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["check", "--root", str(root), *extra])
    out, _err = capsys.readouterr()
    return rc, out


def keys(result: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["kind"], f["subject"]) for f in result["findings"]}


def worst(result: dict[str, Any]) -> str | None:
    sevs = [f["severity"] for f in result["findings"]]
    return max(sevs, key=RANK.__getitem__) if sevs else None


def the(result: dict[str, Any], kind: str, subject: str) -> dict[str, Any]:
    hits = [f for f in result["findings"] if (f["kind"], f["subject"]) == (kind, subject)]
    assert len(hits) == 1, (kind, subject, result["findings"])
    return hits[0]


def assert_well_formed(result: dict[str, Any]) -> None:
    """What every finding must look like (contract section 3)."""
    for f in result["findings"]:
        assert f["severity"] == CONTRACT_SEVERITY[f["kind"]], f
        assert isinstance(f["subject"], str) and f["subject"], f
        msg = f["message"]
        assert isinstance(msg, str) and msg.strip(), f
        assert "\n" not in msg and "\r" not in msg and len(msg.splitlines()) == 1, f"not one line: {msg!r}"
        assert set(f) <= {
            "kind",
            "severity",
            "subject",
            "snapshot_id",
            "name",
            "path",
            "bytes",
            "bytes_partial",
            "age_seconds",
            "message",
        }, f


def assert_only(
    result: dict[str, Any], rc: int, kind: str, subject: str, also: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Exactly this finding, with the contract's severity; nothing else above
    info but the kinds in `also` (what the same fault breaks besides)."""
    assert_well_formed(result)
    finding = the(result, kind, subject)
    assert finding["severity"] == CONTRACT_SEVERITY[kind]
    others = [
        f
        for f in result["findings"]
        if f is not finding
        and f["severity"] != "info"
        # a DB gc loads that Go cannot decode also stops gc: one gc_blocked
        and not (kind == "db_unreadable" and f["kind"] == "gc_blocked")
    ]
    assert [f for f in others if f["kind"] not in also] == [], others
    worst = max([kind, *(f["kind"] for f in others)], key=lambda k: EXIT_FOR[CONTRACT_SEVERITY[k]])
    assert rc == EXIT_FOR[CONTRACT_SEVERITY[worst]]
    return finding


#: What a fault breaks besides its own finding: the cloud image blob of a VM
#: and its snapshot, removed, leaves the image and the VM unusable too.
FAULT_ALSO = {"missing-blob": frozenset({"image_unusable", "vm_base_missing"})}


def tree_blocks(path: str) -> int:
    """Allocated bytes of a dir tree: st_blocks * 512 of the dir and everything in it."""
    total = os.lstat(path).st_blocks * 512
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def created_at(root: Path, sid: str) -> float:
    """A record's created_at as cocoon wrote it, in epoch seconds."""
    rec = json.loads((root / SNAPSHOT_DB).read_bytes())["snapshots"][sid]
    return datetime.fromisoformat(rec["created_at"].replace("Z", "+00:00")).timestamp()


def edit_db(root: Path, relpath: str, change: Any) -> None:
    """A hand edit of a DB file (what an operator or a foreign tool does)."""
    path = root / relpath
    obj = json.loads(path.read_bytes())
    change(obj)
    path.write_text(json.dumps(obj))


def blob_refs_in_tree(root: Path) -> set[str]:
    """Every blob hex something references, read straight from the DB files."""
    refs: set[str] = set()
    snaps = json.loads((root / SNAPSHOT_DB).read_bytes()) if (root / SNAPSHOT_DB).exists() else {}
    for r in (snaps.get("snapshots") or {}).values():
        refs.update((r or {}).get("image_blob_ids") or {})
    images = root / "cloudimg/db/images.json"
    if images.exists():
        for e in (json.loads(images.read_bytes()).get("images") or {}).values():
            refs.add((e or {}).get("content_sum", "").rpartition(":")[2])
    oci = root / "oci/db/images.json"
    if oci.exists():
        for e in (json.loads(oci.read_bytes()).get("images") or {}).values():
            refs.update(layer["digest"].rpartition(":")[2] for layer in (e or {}).get("layers") or [])
    for vms in (root / "cloudhypervisor/db/vms.json", root / "firecracker/db/vms.json"):
        if vms.exists():
            for r in (json.loads(vms.read_bytes()).get("vms") or {}).values():
                refs.update((r or {}).get("image_blob_ids") or {})
    return refs


def blob_files_in_tree(root: Path) -> set[str]:
    """The hex of every blob file, cloud image or OCI layer."""
    return {p.name.removesuffix(".qcow2") for p in (root / "cloudimg/blobs").iterdir()} | {
        p.name.removesuffix(".erofs") for p in (root / "oci/blobs").iterdir()
    }


# ---------------------------------------------------------- 1. each fault
@pytest.mark.parametrize("fault", FAULTS)
def test_each_injected_fault_is_reported_exactly(
    fault: str, sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.create(str(root))  # a healthy snapshot next to the fault
    expected = sim.inject(str(root), fault)
    t0 = time.time()
    rc, result = check(root, capsys)
    t1 = time.time()
    finding = assert_only(
        result, rc, expected["kind"], expected["subject"], FAULT_ALSO.get(fault, frozenset())
    )
    if "snapshot_id" in expected:
        assert finding["snapshot_id"] == expected["snapshot_id"]
    kind, subject = expected["kind"], expected["subject"]
    if kind in ("orphan_data_dir", "missing_data_dir"):
        assert finding["path"] == str(root / "snapshot" / "localfile" / subject)
        assert finding["snapshot_id"] == subject
    if kind == "orphan_data_dir":
        assert finding["bytes"] > 0
        assert finding["bytes"] == tree_blocks(finding["path"])
    if kind == "unreferenced_blob":
        blob = root / "cloudimg" / "blobs" / f"{subject}.qcow2"
        assert finding["path"] == str(blob)
        assert finding["bytes"] > 0
        assert finding["bytes"] == os.lstat(blob).st_blocks * 512
    if kind in ("pending", "stale_pending"):
        created = created_at(root, subject)
        assert t0 - created - 0.01 <= finding["age_seconds"] <= t1 - created + 0.01
    else:
        assert "age_seconds" not in finding
    if kind == "db_unreadable":
        # no flood of orphans and missing dirs: the DB, and gc stopped by it
        assert keys(result) == {(kind, subject), ("gc_blocked", "gc")}


def test_check_as_a_real_process_reports_the_fault(sim: ModuleType, root: Path) -> None:
    expected = json.loads(run_sim(root, "inject", "orphan-dir"))
    done = subprocess.run(
        [sys.executable, "-m", "cocoond", "check", "--root", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stderr == ""
    result = json.loads(done.stdout)
    assert result["root"] == str(root)
    assert keys(result) == {(expected["kind"], expected["subject"])}
    assert done.returncode == 1  # a warning
    assert_well_formed(result)


def test_console_script_human_output(root: Path) -> None:
    script = Path(sys.executable).with_name("cocoond")
    if not script.exists():
        pytest.skip("no cocoond console script next to this interpreter")
    expected = json.loads(run_sim(root, "inject", "missing-dir"))
    done = subprocess.run(
        [str(script), "check", "--root", str(root)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout.startswith("COCOOND CRITICAL - ")
    rows = [line for line in done.stdout.splitlines()[2:] if expected["subject"] in line]
    assert len(rows) == 1 and rows[0].split()[:2] == ["ERROR", "missing_data_dir"]


# ------------------------------------------------- cocoon's crash points
def test_create_crashed_before_extract_is_pending(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sid = run_sim(root, "create", "--crash-at", "pending").strip()
    t0 = time.time()
    rc, result = check(root, capsys)
    t1 = time.time()
    f = assert_only(result, rc, "pending", sid)
    assert rc == 0 and len(result["findings"]) == 1  # no missing dir while pending
    created = created_at(root, sid)
    assert t0 - created - 0.01 <= f["age_seconds"] <= t1 - created + 0.01


def test_create_crashed_after_extract_long_ago_is_stale_pending(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = sim.go_time(datetime.now(UTC) - timedelta(hours=5))
    sid = sim.create(str(root), crash_at="extract", created_at=old)
    rc, result = check(root, capsys)
    f = assert_only(result, rc, "stale_pending", sid)
    assert len(result["findings"]) == 1  # its data dir exists and has a record: no orphan
    assert f["age_seconds"] >= 5 * 3600
    assert f["name"] == json.loads((root / SNAPSHOT_DB).read_bytes())["snapshots"][sid]["name"]


def test_pending_threshold_comes_from_the_config(
    sim: ModuleType, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = sim.create(
        str(root), crash_at="extract", created_at=sim.go_time(datetime.now(UTC) - timedelta(seconds=60))
    )
    rc, result = check(root, capsys)
    assert keys(result) == {("pending", sid)} and rc == 0
    config = tmp_path / "cocoond.toml"
    config.write_text("[thresholds]\npending_stale_seconds = 30\n")
    rc, result = check(root, capsys, "--config", str(config))
    assert_only(result, rc, "stale_pending", sid)


def test_delete_crashed_after_rmdir_is_missing_data_dir(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = sim.create(str(root))
    assert run_sim(root, "delete", sid, "--crash-at", "rmdir").strip() == sid
    rc, result = check(root, capsys)
    f = assert_only(result, rc, "missing_data_dir", sid)
    assert len(result["findings"]) == 1
    assert f["path"] == str(root / "snapshot" / "localfile" / sid)


def test_completed_create_and_delete_leave_nothing(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hex_ = sim.pull_image(str(root))
    keep = sim.create(str(root), blobs=[hex_])
    gone = sim.create(str(root), blobs=[hex_])
    sim.delete(str(root), gone)
    sim.epoch_import(str(root), blobs=[hex_])  # the registry's unlocked, indented rewrite
    rc, result = check(root, capsys)
    # `cocoon snapshot rm` leaves the VM's snapshot_ids as they are: an info
    # line says the VM lists a snapshot that is gone, nothing more.
    gone_info = [f for f in result["findings"] if f["kind"] == "vm_snapshot_gone"]
    assert [f["snapshot_id"] for f in gone_info] == [gone] and gone_info[0]["severity"] == "info"
    assert (rc, [f for f in result["findings"] if f["kind"] != "vm_snapshot_gone"]) == (0, [])
    assert result["snapshots"] == 2 and result["blobs"] == 1
    assert keep in json.loads((root / SNAPSHOT_DB).read_bytes())["snapshots"]


# -------------------------------------------------- 2. hand-edited DBs
def test_wrong_data_dir_is_data_dir_mismatch(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = sim.create(str(root))
    foreign = root.parent / "data02" / "snapshot" / "localfile" / sid
    # a complete copy: restore reads the recorded dir, and it would work
    shutil.copytree(root / "snapshot" / "localfile" / sid, foreign, symlinks=True)
    edit_db(root, SNAPSHOT_DB, lambda db: db["snapshots"][sid].__setitem__("data_dir", str(foreign)))
    rc, result = check(root, capsys)
    f = assert_only(result, rc, "data_dir_mismatch", sid)
    assert len(result["findings"]) == 1
    assert f["path"] == str(foreign) and f["snapshot_id"] == sid
    # Restore reads the recorded path: gone there is an error, whatever the
    # canonical dir holds (snapshot/localfile/localfile.go:227,233).
    shutil.rmtree(foreign)
    rc, result = check(root, capsys)
    assert rc == 2
    assert the(result, "missing_data_dir", sid)["path"] == str(foreign)
    assert the(result, "data_dir_mismatch", sid)


def test_key_differing_from_record_id_is_name_mismatch(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = sim.create(str(root))
    edit_db(root, SNAPSHOT_DB, lambda db: db["snapshots"][sid].__setitem__("id", sim.new_id()))
    rc, result = check(root, capsys)
    assert_only(result, rc, "name_mismatch", sid)
    assert len(result["findings"]) == 1


def test_name_not_in_names_is_name_mismatch(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = sim.create(str(root), name="web")
    edit_db(root, SNAPSHOT_DB, lambda db: db["names"].pop("web"))
    rc, result = check(root, capsys)
    f = assert_only(result, rc, "name_mismatch", sid)
    assert len(result["findings"]) == 1 and f["name"] == "web"


def test_names_entry_pointing_at_a_record_with_another_name(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = sim.create(str(root), name="web")
    edit_db(root, SNAPSHOT_DB, lambda db: db["names"].__setitem__("alias", sid))
    rc, result = check(root, capsys)
    f = assert_only(result, rc, "name_mismatch", "alias")
    assert len(result["findings"]) == 1
    assert f["snapshot_id"] == sid


def backdate(path: Path, seconds: float = 3600) -> None:
    """A dir and its entries last written long ago (not an import in flight)."""
    then = time.time() - seconds
    for entry in [*path.iterdir(), path]:
        os.utime(entry, (then, then))


def test_null_record_is_name_mismatch_and_its_dir_an_orphan_gc_deletes(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gc skips null records (snapshot/localfile/gc.go:45-47): their dirs are
    unreferenced and deleted."""
    sim.create(str(root))
    sid = sim.create(str(root), name="nulled")

    def nullify(db: dict[str, Any]) -> None:
        db["snapshots"][sid] = None
        del db["names"]["nulled"]

    edit_db(root, SNAPSHOT_DB, nullify)
    backdate(root / "snapshot" / "localfile" / sid)
    rc, result = check(root, capsys)
    assert rc == 1
    # The VM still lists the snapshot (info: vm_snapshot_gone).
    assert {k for k in keys(result) if k[0] != "vm_snapshot_gone"} == {
        ("name_mismatch", sid),
        ("orphan_data_dir", sid),
    }
    assert "null" in the(result, "orphan_data_dir", sid)["message"]


def test_an_orphan_dir_still_being_written_is_not_reported(
    sim: ModuleType, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cocoon snapshot import` fills the dir before it writes the record
    (snapshot/localfile/import.go:34-87): a dir written within settle_seconds
    is an import in flight, not an orphan."""
    sim.init(str(root))
    sid = sim.new_id()
    data = root / "snapshot" / "localfile" / sid
    sim.write_snapshot_files(str(data))
    backdate(data)
    (data / "memory-ranges").write_bytes(b"still arriving")
    config = tmp_path / "c.toml"
    config.write_text("[watch]\nsettle_seconds = 600\n")
    assert keys(check(root, capsys, "--config", str(config))[1]) == set()
    backdate(data)
    assert keys(check(root, capsys, "--config", str(config))[1]) == {("orphan_data_dir", sid)}


def test_null_record_whose_name_is_kept(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = sim.create(str(root), name="nulled")
    edit_db(root, SNAPSHOT_DB, lambda db: db["snapshots"].__setitem__(sid, None))
    rc, result = check(root, capsys)
    assert_well_formed(result)
    assert rc == EXIT_FOR[worst(result)]
    assert ("name_mismatch", sid) in keys(result)
    assert ("orphan_data_dir", sid) not in keys(result)
    assert ("missing_data_dir", sid) not in keys(result)


def _flood_material(sim: ModuleType, root: Path) -> None:
    """Snapshots with dirs and blobs, and an rmi'd blob: what an unreadable DB
    must not turn into orphans, missing dirs or unreferenced blobs."""
    for _ in range(3):
        sim.create(str(root), blobs=[sim.pull_image(str(root))])
    sim.rmi(str(root), sim.pull_image(str(root)))


def test_db_path_being_a_directory(sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _flood_material(sim, root)
    db = root / SNAPSHOT_DB
    db.unlink()
    db.mkdir()
    rc, result = check(root, capsys)
    assert_only(result, rc, "db_unreadable", SNAPSHOT_DB)
    assert keys(result) == {("db_unreadable", SNAPSHOT_DB), GC_BLOCKED}


def test_truncated_db_is_db_unreadable_only(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flood_material(sim, root)
    expected = sim.inject(str(root), "corrupt-db")
    rc, result = check(root, capsys)
    assert_only(result, rc, expected["kind"], expected["subject"])
    assert keys(result) == {(expected["kind"], expected["subject"]), GC_BLOCKED}


@pytest.mark.parametrize("body", [b'{"snapshots": {"A": {"id": 5}}}', b"[]", b'{"names": []}', b"\xff\xfe"])
def test_wrong_shape_db_is_db_unreadable(
    body: bytes, sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flood_material(sim, root)
    (root / SNAPSHOT_DB).write_bytes(body)
    rc, result = check(root, capsys)
    assert keys(result) == {("db_unreadable", SNAPSHOT_DB), GC_BLOCKED} and rc == 2


@pytest.mark.parametrize(
    "relpath", ["cloudimg/db/images.json", "cloudhypervisor/db/vms.json", "firecracker/db/vms.json"]
)
@pytest.mark.parametrize("body", [b'{"images": {"x": ', b"[1, 2]", b'{"vms": "no", "images": 7}'])
def test_corrupt_image_or_vm_db_stops_unreferenced_blobs(
    relpath: str, body: bytes, sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flood_material(sim, root)
    rc, result = check(root, capsys)
    assert {k for k, _ in keys(result)} == {"unreferenced_blob"}  # the test can see the difference
    (root / relpath).parent.mkdir(parents=True, exist_ok=True)
    (root / relpath).write_bytes(body)
    rc, result = check(root, capsys)
    assert_only(result, rc, "db_unreadable", relpath)
    assert keys(result) == {("db_unreadable", relpath), GC_BLOCKED}


# ---------------------------------------------------------- 3. stale_temp
def test_old_temp_files_are_stale_temp_and_fresh_ones_nothing(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.init(str(root))
    old = {"snapshot/db/.tmp-3f9a1c0b2e": 7200, "cloudimg/temp/.tmp-" + sim.new_hex() + ".qcow2": 4000}
    fresh = ["snapshot/db/.tmp-00aa11bb22", "cloudimg/temp/.tmp-" + sim.new_hex() + ".qcow2"]
    # gc keeps cocoon's convert lock forever; anything else old in
    # cloudimg/temp it removes (images/index.go:153-165), so it counts.
    ignored = ["snapshot/db/notatemp", "cloudimg/temp/.tmp-x.qcow2.lock"]
    old["cloudimg/temp/x.qcow2"] = 9000
    now = time.time()
    for relpath in [*old, *fresh, *ignored]:
        (root / relpath).write_bytes(b"partial")
    for relpath, age in {**old, **dict.fromkeys(ignored, 9000)}.items():
        os.utime(root / relpath, (now - age, now - age))
    (root / "snapshot/db/.tmp-adir").mkdir()  # not a file: not AtomicWriteJSON's
    os.utime(root / "snapshot/db/.tmp-adir", (now - 9000, now - 9000))
    t0 = time.time()
    rc, result = check(root, capsys)
    t1 = time.time()
    assert_well_formed(result)
    assert rc == 0
    assert keys(result) == {("stale_temp", relpath) for relpath in old}
    for relpath, age in old.items():
        f = the(result, "stale_temp", relpath)
        assert f["severity"] == "info"
        assert f["path"] == str(root / relpath)
        assert t0 - (now - age) - 0.01 <= f["age_seconds"] <= t1 - (now - age) + 0.01


def test_temp_threshold_comes_from_the_config(
    sim: ModuleType, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.init(str(root))
    temp = root / "cloudimg/temp/.tmp-abc.qcow2"
    temp.write_bytes(b"x")
    os.utime(temp, (time.time() - 120, time.time() - 120))
    assert check(root, capsys)[1]["findings"] == []
    config = tmp_path / "c.toml"
    config.write_text("[thresholds]\ntemp_stale_seconds = 60\n")
    assert keys(check(root, capsys, "--config", str(config))[1]) == {
        ("stale_temp", "cloudimg/temp/.tmp-abc.qcow2")
    }


# ----------------------------------------------------------- 4. churn, gc
def test_tree_after_churn_and_gc_is_clean(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """churn runs only legitimate operations to completion: afterwards no
    create is in flight and every delete finished, so the only thing that
    can remain is a blob `cocoon image rm` left for gc. gc removes exactly
    those, and then there is nothing at all."""
    counts = json.loads(run_sim(root, "churn", "--seconds", "3", "--pause", "0.002"))
    assert counts.get("create", 0) > 0
    rc, result = check(root, capsys)
    assert_well_formed(result)
    assert rc == 0
    assert {k for k, _ in keys(result)} <= {"unreferenced_blob", "vm_snapshot_gone"}
    blobs = {s for k, s in keys(result) if k == "unreferenced_blob"}
    assert blobs == blob_files_in_tree(root) - blob_refs_in_tree(root)
    removed = json.loads(run_sim(root, "gc"))
    assert set(removed["blobs"]) == blobs
    assert removed["data_dirs"] == [] and removed["records"] == []

    rc, result = check(root, capsys)
    # VMs keep listing deleted snapshots (`snapshot rm` leaves them): info only.
    assert (rc, [f for f in result["findings"] if f["kind"] != "vm_snapshot_gone"]) == (0, [])
    db = json.loads((root / SNAPSHOT_DB).read_bytes())
    assert result["snapshots"] == len(db["snapshots"])
    assert result["blobs"] == len(blob_files_in_tree(root))


def test_populated_tree_is_clean(sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    made = sim.populate(str(root), snapshots=2000, images=50)
    rc, result = check(root, capsys)
    assert rc == 0
    assert result["findings"] == []
    assert result["snapshots"] == made["snapshots"]
    # 25 cloud images, 25 OCI images of a shared base layer and their own
    assert result["blobs"] == len(blob_files_in_tree(root)) == 25 + 1 + 25


# --------------------------------------------------------------- 5. blobs
@pytest.mark.parametrize("backend", ["cloudhypervisor", "firecracker"])
def test_vm_pinned_blob_is_not_unreferenced(
    backend: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hex_ = run_sim(root, "pull-image").strip()
    run_sim(root, "rmi", hex_)
    assert keys(check(root, capsys)[1]) == {("unreferenced_blob", hex_)}
    vms = root / backend / "db" / "vms.json"
    vms.parent.mkdir(parents=True, exist_ok=True)
    vms.write_text(json.dumps({"vms": {"vm1": {"image_blob_ids": {hex_: {}}}}, "names": {"web": "vm1"}}))
    rc, result = check(root, capsys)
    assert (rc, result["findings"]) == (0, [])
    assert result["blobs"] == 1


def test_vm_referencing_a_missing_blob_is_missing_blob(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.init(str(root))
    hex_ = sim.new_hex()
    (root / "cloudhypervisor/db/vms.json").write_text(
        json.dumps({"vms": {"vm1": {"image_blob_ids": {hex_: {}}}}})
    )
    rc, result = check(root, capsys)
    assert_only(result, rc, "missing_blob", hex_, frozenset({"vm_base_missing"}))
    assert the(result, "vm_base_missing", "vm1")["severity"] == "error"


def test_image_pinned_blob_is_not_unreferenced(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.init(str(root))  # a CH host: its UEFI firmware installed
    hex_ = run_sim(root, "pull-image").strip()
    rc, result = check(root, capsys)
    assert (rc, result["findings"]) == (0, [])
    assert result["blobs"] == 1
    sim.rmi(str(root), hex_)
    assert keys(check(root, capsys)[1]) == {("unreferenced_blob", hex_)}


def test_empty_blob_referenced_by_a_snapshot_is_missing(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hex_ = sim.pull_image(str(root))
    sid = sim.create(str(root), blobs=[hex_])
    assert check(root, capsys)[1]["findings"] == []
    blob = root / "cloudimg" / "blobs" / f"{hex_}.qcow2"
    os.truncate(blob, 0)
    rc, result = check(root, capsys)
    # The image and the VM made from it cannot use it either.
    f = assert_only(result, rc, "missing_blob", hex_, frozenset({"image_unusable", "vm_base_missing"}))
    assert f["snapshot_id"] == sid
    assert f["path"] == str(blob)


def test_oci_blob_is_present(sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim.init(str(root))
    hex_ = sim.new_hex()
    (root / "oci" / "blobs" / f"{hex_}.erofs").write_bytes(b"\xe2\xe1\xf5\xe0" + b"\0" * 8188)
    sim.create(str(root), blobs=[hex_])
    rc, result = check(root, capsys)
    assert (rc, result["findings"]) == (0, [])
    assert result["blobs"] == 1


def test_unreferenced_oci_blob(sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim.create(str(root))
    hex_ = sim.new_hex()
    blob = root / "oci" / "blobs" / f"{hex_}.erofs"
    blob.write_bytes(b"\xe2\xe1\xf5\xe0" + b"\1" * 8188)
    rc, result = check(root, capsys)
    f = assert_only(result, rc, "unreferenced_blob", hex_)
    assert f["path"] == str(blob)
    assert f["bytes"] == os.lstat(blob).st_blocks * 512 > 0


def test_symlinked_blob_is_judged_as_os_stat_judges_it(
    sim: ModuleType, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cocoon's ValidFile is os.Stat, which follows the link: a symlink to a
    good file boots (utils/file.go:30-33); a dangling one does not."""
    sim.init(str(root))
    target = tmp_path / "elsewhere.qcow2"
    target.write_bytes(b"QFI\xfb" + b"\0" * 4092)
    hex_ = sim.new_hex()
    link = root / "cloudimg" / "blobs" / f"{hex_}.qcow2"
    link.symlink_to(target)
    sim.create(str(root), blobs=[hex_])
    rc, result = check(root, capsys)
    assert (rc, keys(result)) == (0, set())
    target.unlink()
    rc, result = check(root, capsys)
    assert (
        "symlink" in assert_only(result, rc, "missing_blob", hex_, frozenset({"vm_base_missing"}))["message"]
    )


# ------------------------------------------------------- 6. hostile names
HOSTILE = [
    "\x1b[31mred\x1b[0m",
    "two\nlines",
    "bidi\u202eevil",
    "cr\rreturn",
    "ls\u2028sep",
    "nel\x85x",
    "tab\tx",
]


def _human_lines(out: str) -> list[str]:
    assert out.endswith("\n")
    lines = out[:-1].split("\n")
    assert out.splitlines() == lines, "a line break other than \\n in the output"
    for line in lines:
        assert "\x1b" not in line and "\r" not in line and "\u202e" not in line, repr(line)
        assert all(ch.isprintable() or unicodedata.category(ch) == "Zs" for ch in line), repr(line)
    return lines


def test_hostile_snapshot_names(sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    by_sid = {}
    for name in HOSTILE:
        sid = sim.create(str(root), name=name)
        shutil.rmtree(root / "snapshot" / "localfile" / sid)
        by_sid[sid] = name
    ghost_name = "\x1b]0;pwned\x07\nghost"
    edit_db(root, SNAPSHOT_DB, lambda db: db["names"].__setitem__(ghost_name, sim.new_id()))

    rc, result = check(root, capsys)
    assert rc == 2
    assert_well_formed(result)
    assert keys(result) == {("missing_data_dir", sid) for sid in by_sid} | {("dangling_name", ghost_name)}
    for sid, name in by_sid.items():
        assert the(result, "missing_data_dir", sid)["name"] == name  # the exact name, round-tripped
    assert the(result, "dangling_name", ghost_name)["name"] == ghost_name

    rc_h, out = check_human(root, capsys)
    assert rc_h == rc
    lines = _human_lines(out)
    assert len(lines) == 2 + len(result["findings"])  # status, header, one row per finding
    assert lines[0].startswith("COCOOND CRITICAL - ")
    assert lines[1].split() == ["SEVERITY", "KIND", "SUBJECT", "SIZE/AGE", "MESSAGE"]
    for sid in by_sid:
        rows = [line for line in lines[2:] if sid in line]
        assert len(rows) == 1 and rows[0].split()[:3] == ["ERROR", "missing_data_dir", sid]


def test_hostile_file_names_keep_messages_on_one_line(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Subjects that come from file names (an orphan dir, a blob, a temp
    file) can hold a newline or ESC too; the message must still be one line."""
    sim.create(str(root))
    orphan = "ORPHAN\n\x1b[2Jx"
    orphan_dir = root / "snapshot" / "localfile" / orphan
    sim.write_snapshot_files(str(orphan_dir))
    long_ago = time.time() - 3600  # left long ago, not an import in progress
    for entry in [*orphan_dir.iterdir(), orphan_dir]:
        os.utime(entry, (long_ago, long_ago))
    blob = root / "oci" / "blobs" / "evil\nhex.erofs"
    blob.write_bytes(b"data")
    temp = root / "cloudimg" / "temp" / ".tmp-\x1b[1m\n.qcow2"
    temp.write_bytes(b"x")
    os.utime(temp, (time.time() - 9000, time.time() - 9000))
    rc, result = check(root, capsys)
    assert rc == 1
    assert keys(result) == {
        ("orphan_data_dir", orphan),
        ("unreferenced_blob", "evil\nhex"),
        ("stale_temp", "cloudimg/temp/.tmp-\x1b[1m\n.qcow2"),
    }
    assert_well_formed(result)
    lines = _human_lines(check_human(root, capsys)[1])
    assert len(lines) == 2 + 3


def test_hostile_db_strings_keep_messages_on_one_line(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Strings messages quote from the DB (a blob hex, the ID a name points
    at, a record's key) can hold a newline or ESC as well."""
    bad_hex = "ab\n\x1b[2Jcd"
    blob_user = sim.create(str(root), blobs=[bad_hex])
    ghost = "GH\nOST"
    bad_key = "KEY\n\x1b[31m"

    def edit(db: dict[str, Any]) -> None:
        db["names"]["dangler"] = ghost
        db["snapshots"][bad_key] = sim.record(bad_key, "unnamed-in-names")

    edit_db(root, SNAPSHOT_DB, edit)
    rc, result = check(root, capsys)
    assert rc == 2
    assert keys(result) - {k for k in keys(result) if k[0] == "vm_base_missing"} == {
        ("missing_blob", bad_hex),
        ("dangling_name", "dangler"),
        ("name_mismatch", bad_key),
        ("missing_data_dir", bad_key),
    }
    assert the(result, "missing_blob", bad_hex)["snapshot_id"] == blob_user
    assert_well_formed(result)
    lines = _human_lines(check_human(root, capsys)[1])
    assert len(lines) == 2 + 5  # the VM of the blob's snapshot: vm_base_missing


def test_hostile_root_path(sim: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "co\x1b[31m\ncoon"
    sim.inject(str(root), "orphan-dir")
    rc, out = check_human(root, capsys)
    assert rc == 1
    assert len(_human_lines(out)) == 3
    assert check(root, capsys)[1]["root"] == str(root)


def test_lone_surrogate_in_a_name_does_not_break_json_output(sim: ModuleType, root: Path) -> None:
    """Python's json.dump (the epoch registry's writer) stores a lone
    surrogate as a "\\ud800" escape, which reads back fine; check --json must
    still print valid output and the contract's exit code."""
    sid = sim.epoch_import(str(root), name="bad\ud800name")
    shutil.rmtree(root / "snapshot" / "localfile" / sid)
    done = subprocess.run(
        [sys.executable, "-m", "cocoond", "check", "--root", str(root), "--json"],
        capture_output=True,
        timeout=60,
    )
    assert done.stderr == b""
    result = json.loads(done.stdout)
    assert keys(result) == {("missing_data_dir", sid)}
    assert done.returncode == 2


def test_db_that_is_a_fifo_does_not_hang_check(sim: ModuleType, root: Path) -> None:
    """A DB path that is not a regular file (here a FIFO nobody writes to) is
    an unreadable DB; opening it for reading must not block check forever."""
    sim.create(str(root))
    db = root / SNAPSHOT_DB
    db.unlink()
    os.mkfifo(db)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cocoond", "check", "--root", str(root), "--json"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("check blocked opening a FIFO at snapshot/db/snapshots.json")
    result = json.loads(done.stdout)
    assert keys(result) == {("db_unreadable", SNAPSHOT_DB), GC_BLOCKED}
    assert done.returncode == 2


# ---------------------------------------------- 7. config and exit codes
def test_exit_codes(sim: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Cocoon makes its DB dirs when it first runs: an empty directory is not
    # a fresh host but an unmounted mount point or a mistyped root (issue 18).
    unmounted = tmp_path / "unmounted"
    unmounted.mkdir()
    assert main(["check", "--root", str(unmounted), "--json"]) == 3
    assert "is empty" in capsys.readouterr().err
    empty = tmp_path / "fresh-host"
    sim.init(str(empty))
    rc, result = check(empty, capsys)
    assert rc == 0
    assert {k: result[k] for k in ("root", "snapshots", "blobs", "findings")} == {
        "root": str(empty),
        "snapshots": 0,
        "blobs": 0,
        "findings": [],
    }
    clean = tmp_path / "clean"
    sim.create(str(clean))
    assert check(clean, capsys)[0] == 0
    info = tmp_path / "info"
    sim.inject(str(info), "unreferenced-blob")
    assert check(info, capsys)[0] == 0
    warn = tmp_path / "warn"
    sim.inject(str(warn), "orphan-dir")
    assert check(warn, capsys)[0] == 1
    err = tmp_path / "err"
    sim.inject(str(err), "orphan-dir")
    sim.inject(str(err), "dangling-name")
    assert check(err, capsys)[0] == 2
    for rc, tree in ((0, empty), (0, clean), (1, warn), (2, err)):
        assert check_human(tree, capsys)[0] == rc


@pytest.mark.parametrize("what", ["missing", "file"])
def test_root_that_cannot_be_checked_exits_3(
    what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "nope"
    if what == "file":
        root.write_text("not a dir")
    capsys.readouterr()
    assert main(["check", "--root", str(root), "--json"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert str(root) in err and len(err.strip().splitlines()) == 1


def test_bad_config_exits_3_naming_file_and_key(
    sim: ModuleType, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.create(str(root))
    config = tmp_path / "cocoond.toml"
    config.write_text("[thresholds]\npending_stale_secs = 10\n")
    capsys.readouterr()
    assert main(["check", "--root", str(root), "--config", str(config), "--json"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert str(config) in err and "thresholds.pending_stale_secs" in err
    config.write_text("[thresholds]\npending_stale_seconds = -1\n")
    assert main(["check", "--root", str(root), "--config", str(config)]) == 3
    out, err = capsys.readouterr()
    assert out.startswith("COCOOND UNKNOWN - ") and err == ""
    assert str(config) in out and "thresholds.pending_stale_seconds" in out
    assert main(["check", "--root", str(root), "--config", str(tmp_path / "absent.toml")]) == 3


def test_root_precedence(
    sim: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    via_flag, via_file, via_env = tmp_path / "flag", tmp_path / "file", tmp_path / "env"
    for tree in (via_flag, via_file, via_env):
        sim.init(str(tree))
    flag_orphan = sim.inject(str(via_flag), "orphan-dir")["subject"]
    file_orphan = sim.inject(str(via_file), "orphan-dir")["subject"]
    env_orphan = sim.inject(str(via_env), "orphan-dir")["subject"]
    monkeypatch.setenv("COCOON_ROOT_DIR", str(via_env))
    config = tmp_path / "c.toml"
    config.write_text(f"root_dir = {json.dumps(str(via_file))}\n")

    def run(*args: str) -> dict[str, Any]:
        capsys.readouterr()
        main(["check", "--json", *args])
        return json.loads(capsys.readouterr().out)

    got = run("--root", str(via_flag), "--config", str(config))
    assert (got["root"], {s for _, s in keys(got)}) == (str(via_flag), {flag_orphan})
    got = run("--root", str(via_flag))
    assert (got["root"], {s for _, s in keys(got)}) == (str(via_flag), {flag_orphan})
    got = run("--config", str(config))
    assert (got["root"], {s for _, s in keys(got)}) == (str(via_file), {file_orphan})
    got = run()
    assert (got["root"], {s for _, s in keys(got)}) == (str(via_env), {env_orphan})


def test_symlinked_root_accepts_data_dirs_written_through_the_real_path(
    sim: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real"
    sim.create(str(real))
    link = tmp_path / "link"
    link.symlink_to(real)
    rc, result = check(link, capsys)
    assert (rc, result["findings"]) == (0, [])


def test_records_written_through_a_symlinked_root_match_the_real_one(
    sim: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """cocoon runs at /data01/cocoon where /data01 is a symlink; cocoond is
    given the resolved path. Its records' data_dir use cocoon's spelling."""
    real = tmp_path / "disk" / "cocoon"
    real.parent.mkdir()
    link = tmp_path / "data01"
    link.symlink_to(real.parent)
    sim.create(str(link / "cocoon"), name="web")
    monkeypatch.setenv("COCOON_ROOT_DIR", str(link / "cocoon"))
    rc, out = check(real, capsys)
    assert (rc, out["findings"]) == (0, []), out
    monkeypatch.delenv("COCOON_ROOT_DIR")
    rc, out = check(real, capsys)  # without a hint of cocoon's spelling, it cannot know
    assert [f["kind"] for f in out["findings"]] == ["data_dir_mismatch"], out


def test_a_symlinked_dir_in_localfile_is_never_seen_by_gc(
    sim: ModuleType, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gc lists localfile/ with ScanSubdirs, which keeps real directories only
    (utils/file.go:46-55): a record-less symlink stays; the message must not
    say gc deletes it. A record whose dir is a symlink restores through it."""
    elsewhere = tmp_path / "elsewhere"
    sim.write_snapshot_files(str(elsewhere))
    sid = sim.create(str(root), name="linked")
    data = root / "snapshot" / "localfile" / sid
    shutil.rmtree(data)
    data.symlink_to(elsewhere)
    stray = root / "snapshot" / "localfile" / sim.new_id()
    stray.symlink_to(elsewhere)
    backdate(elsewhere)
    os.utime(stray, (time.time() - 3600, time.time() - 3600), follow_symlinks=False)
    rc, result = check(root, capsys)
    assert rc == 1  # warnings only
    f = next(f for f in result["findings"] if f["kind"] == "orphan_data_dir")
    assert "never sees symlinks" in f["message"] and "deletes it" not in f["message"]
    # The dir was written for a root at tmp_path: its config.json names
    # tmp_path/firmware/CLOUDHV.fd, which clone's os.Stat does not find.
    assert keys(result) == {("orphan_data_dir", stray.name), ("clone_blocked", sid)}
    blocked = next(f for f in result["findings"] if f["kind"] == "clone_blocked")
    assert f"firmware {tmp_path}/firmware/CLOUDHV.fd is missing" in blocked["message"], blocked


def test_many_missing_data_dirs_are_one_row_for_a_person(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """snapshot/localfile/ emptied (issue 18): the table shows one
    missing_data_dir row beyond orphan_burst_threshold, as the daemon logs
    one finding; --json still lists each. A tree written by hand from
    cocoon's SnapshotRecord (types/snapshot.go: id, name, created_at; no
    data_dir recorded, so restore reads snapshot/localfile/<ID>)."""
    root = tmp_path / "cocoon"
    (root / "snapshot" / "localfile").mkdir(parents=True)
    (root / "snapshot" / "db").mkdir()
    ids = [f"ID{i:024d}" for i in range(4)]
    records = {
        sid: {"id": sid, "name": f"vm-{i}", "created_at": "2026-11-01T10:00:00Z"} for i, sid in enumerate(ids)
    }
    names = {f"vm-{i}": sid for i, sid in enumerate(ids)}
    (root / "snapshot" / "db" / "snapshots.json").write_text(
        json.dumps({"snapshots": records, "names": names})
    )
    config = tmp_path / "config.toml"
    config.write_text("[alerts]\norphan_burst_threshold = 3\n")
    rc, result = check(root, capsys, "--config", str(config))
    assert rc == 2 and keys(result) == {("missing_data_dir", sid) for sid in ids}
    rc, out = check_human(root, capsys, "--config", str(config))
    assert rc == 2
    rows = [line for line in out.splitlines() if line.startswith("ERROR ")]
    assert len(rows) == 1 and "snapshot/localfile" in rows[0] and "4 committed snapshots" in rows[0], out
    assert "note: 4 missing_data_dir findings shown as one row; --json lists each" in out
    config.write_text("[alerts]\norphan_burst_threshold = 4\n")
    rc, out = check_human(root, capsys, "--config", str(config))
    assert sum(line.startswith("ERROR ") for line in out.splitlines()) == 4
