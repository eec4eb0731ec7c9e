"""Each simulator command does to the tree what the cocoon command does, in
cocoon's order, and each crash point leaves what a crash there leaves."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cocoond import sim
from cocoond.sim import CH, CLOUDIMG, FC, OCI, DataDisk, SimError
from tests.conftest import SIM_CMD, run_sim

ID = re.compile(r"[A-Z2-7]{26}")


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def listing(path: str | Path) -> list[str]:
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def snapshots(root: str) -> dict[str, Any]:
    return sim.load_snapshots(root)


def vms(root: str, hv: Any) -> dict[str, Any]:
    return sim.load_vms(root, hv)


# ------------------------------------------------------------ cloud images
def test_cloudimg_pull_fast_path(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    hex_ = sim.pull_image(root, url="https://x/a.img")
    blob = CLOUDIMG.blob(root, hex_)
    assert mode(blob) == 0o444  # chmod after the rename (commit.go:57)
    assert listing(CLOUDIMG.temp(root)) == []  # pull-*.img renamed away, nothing left
    entry = sim.load_images(root)["images"]["https://x/a.img"]
    assert entry == {
        "ref": "https://x/a.img",
        "content_sum": "sha256:" + hex_,
        "size": os.path.getsize(blob),
        "created_at": entry["created_at"],
    }
    assert mode(sim.cloudimg_db(root)) == 0o644 and mode(sim.cloudimg_lock(root)) == 0o600
    assert sim.pull_image(root, url="https://x/a.img") == hex_  # idempotent: the URL is cached
    assert not os.path.exists(
        os.path.join(root, "cloudhypervisor")
    )  # image commands init image backends only


def test_cloudimg_pull_slow_path_keeps_the_convert_lock(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    hex_ = sim.pull_image(root, fmt="raw")
    assert listing(CLOUDIMG.temp(root)) == [f".tmp-{hex_}.qcow2.lock"]
    assert mode(os.path.join(CLOUDIMG.temp(root), f".tmp-{hex_}.qcow2.lock")) == 0o600
    assert os.path.getsize(CLOUDIMG.blob(root, hex_)) > 0


@pytest.mark.parametrize(
    ("fmt", "crash", "left", "indexed"),
    [
        ("qcow2", "download", [r"pull-\d+\.img"], False),
        ("qcow2", "tmp-blob", [r"\.tmp-{hex}\.qcow2"], False),
        ("raw", "tmp-blob", [r"\.tmp-{hex}\.qcow2", r"\.tmp-{hex}\.qcow2\.lock", r"pull-\d+\.img"], False),
        ("qcow2", "blob", [], False),
        ("raw", "blob", [r"\.tmp-{hex}\.qcow2\.lock", r"pull-\d+\.img"], False),
    ],
)
def test_cloudimg_pull_crash_points(
    tmp_path: Path, fmt: str, crash: str, left: list[str], indexed: bool
) -> None:
    root = str(tmp_path / "r")
    hex_ = sim.pull_image(root, fmt=fmt, crash_at=crash)
    temps = listing(CLOUDIMG.temp(root))
    patterns = sorted(p.format(hex=hex_) for p in left)
    assert len(temps) == len(patterns), temps
    assert all(any(re.fullmatch(p, t) for t in temps) for p in patterns), (temps, patterns)
    assert os.path.exists(CLOUDIMG.blob(root, hex_)) == (crash == "blob")
    assert sim.load_images(root)["images"] == {}


def test_cloudimg_import(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    hex_ = sim.import_image(root, "my-image")
    assert sim.load_images(root)["images"]["my-image"]["content_sum"] == "sha256:" + hex_
    left = sim.import_image(root, "dead", crash_at="download")
    assert [t for t in listing(CLOUDIMG.temp(root)) if t.startswith("import-")] != []
    assert not os.path.exists(CLOUDIMG.blob(root, left))


# --------------------------------------------------------------------- OCI
def test_oci_pull(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    info = sim.pull_oci(root, "ubuntu:24.04", layers=3)
    # name.ParseReference(...).String() is the input (go-containerregistry v0.21.0 pkg/name/tag.go:63-65)
    assert info["ref"] == "ubuntu:24.04"
    entry = json.loads(Path(OCI.db(root)).read_bytes())["images"][info["ref"]]
    assert list(entry) == [
        "ref",
        "manifest_digest",
        "layers",
        "kernel_layer",
        "initrd_layer",
        "size",
        "created_at",
    ]
    assert [la["digest"] for la in entry["layers"]] == ["sha256:" + h for h in info["layers"]]
    boot_hex = info["layers"][-1]
    assert entry["kernel_layer"] == entry["initrd_layer"] == "sha256:" + boot_hex
    assert sorted(listing(OCI.blobs(root))) == sorted(h + ".erofs" for h in info["layers"])
    assert listing(os.path.join(root, "oci/boot")) == [boot_hex]
    assert listing(os.path.join(root, "oci/boot", boot_hex)) == ["initrd.img", "vmlinuz"]
    assert listing(OCI.temp(root)) == []  # the work dir removed
    assert entry["size"] == sum(
        os.path.getsize(p)
        for p in [OCI.blob(root, h) for h in info["layers"]]
        + [os.path.join(root, "oci/boot", boot_hex, n) for n in ("vmlinuz", "initrd.img")]
    )
    db_before = Path(OCI.db(root)).read_bytes()
    assert sim.pull_oci(root, "ubuntu:24.04", layers=3)["layers"] == info["layers"]  # up to date
    assert json.loads(Path(OCI.db(root)).read_bytes()) == json.loads(db_before)


def test_oci_pull_crash_points(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    info = sim.pull_oci(root, "registry.example/a", crash_at="workdir")
    (work,) = listing(OCI.temp(root))
    assert re.fullmatch(r"pull-\d+", work)
    assert listing(os.path.join(OCI.temp(root), work)) == ["layer-0", "layer-1"]
    top = info["layers"][1]
    assert listing(os.path.join(OCI.temp(root), work, "layer-1")) == sorted(
        [f"{top}.erofs", f"{top}.initrd.img", f"{top}.vmlinuz"]
    )
    assert listing(OCI.blobs(root)) == [] and not os.path.exists(OCI.db(root))
    root2 = str(tmp_path / "r2")
    info = sim.pull_oci(root2, "registry.example/a", crash_at="commit")
    assert sorted(listing(OCI.blobs(root2))) == sorted(h + ".erofs" for h in info["layers"])
    assert listing(os.path.join(root2, "oci/boot")) == [info["layers"][1]]
    assert len(listing(OCI.temp(root2))) == 1  # the deferred RemoveAll never ran
    assert not os.path.exists(OCI.db(root2))  # the index was never written


def test_oci_import(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    info = sim.import_oci(root, "local/app:1", layers=2)
    entry = json.loads(Path(OCI.db(root)).read_bytes())["images"]["local/app:1"]
    assert (
        entry["manifest_digest"] == "sha256:" + hashlib.sha256("".join(info["layers"]).encode()).hexdigest()
    )
    sim.import_oci(root, "dead", crash_at="workdir")
    (work,) = listing(OCI.temp(root))
    assert re.fullmatch(r"import-\d+", work)
    assert "layer-0.erofs" in listing(os.path.join(OCI.temp(root), work, "layer-0"))


def test_rmi(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    hex_ = sim.pull_image(root, url="https://x/a.img")
    sim.pull_image(root, url="https://x/b.img")
    oci = sim.pull_oci(root, "registry.example/a:1")
    assert sim.rmi(root, hex_) == ["https://x/a.img"]  # by content digest
    assert sim.rmi(root, "registry.example/a:1") == [oci["ref"]]
    assert os.path.exists(CLOUDIMG.blob(root, hex_))  # blobs stay until gc
    with pytest.raises(SimError, match="not found in any backend"):
        sim.rmi(root, "nothing")


# --------------------------------------------------------------------- VMs
def test_vm_create_cloud_image_on_cloud_hypervisor(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    hex_ = sim.pull_image(root, url="https://x/a.img")
    vm = sim.create_vm(root, image="https://x/a.img", name="web", data_disks=[DataDisk("data1")])
    rec = vms(root, CH)["vms"][vm]
    run = os.path.join(root, "run/cloudhypervisor", vm)
    assert rec["state"] == "running" and rec["first_booted"] is True
    assert rec["config"]["image_digest"] == "sha256:" + hex_ and rec["config"]["image_type"] == "cloudimg"
    assert rec["image_blob_ids"] == {hex_: {}}
    assert [(s["role"], os.path.basename(s["path"])) for s in rec["storage_configs"]] == [
        ("cow", "overlay.qcow2"),
        ("data", "data-data1.raw"),
        ("cidata", "cidata.img"),
    ]
    assert listing(run) == ["cidata.img", "cmdline", "data-data1.raw", "overlay.qcow2"]
    assert mode(os.path.join(root, "run/cloudhypervisor")) == 0o750
    assert Path(run, "overlay.qcow2").read_bytes()[:4] == b"QFI\xfb"
    assert CLOUDIMG.blob(root, hex_).encode() in Path(run, "overlay.qcow2").read_bytes()  # the backing file
    assert os.path.isdir(os.path.join(root, "log/cloudhypervisor", vm))
    assert os.path.isfile(os.path.join(root, "firmware/CLOUDHV.fd"))
    assert vms(root, CH)["names"] == {"web": vm}


def test_vm_create_windows_has_no_cidata(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    sim.pull_image(root, url="https://x/a.img")
    vm = sim.create_vm(root, image="https://x/a.img", windows=True)
    rec = vms(root, CH)["vms"][vm]
    assert [s["role"] for s in rec["storage_configs"]] == ["cow"]
    with pytest.raises(SimError, match="mutually exclusive"):
        sim.create_vm(root, hypervisor=FC, image="https://x/a.img", windows=True)


def test_vm_create_oci_on_firecracker(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    info = sim.pull_oci(root, "registry.example/a:1")
    vm = sim.create_vm(root, hypervisor=FC, image=info["ref"], name="fc")
    rec = vms(root, FC)["vms"][vm]
    boot = os.path.join(root, "oci/boot", info["layers"][-1])
    assert rec["boot_config"]["kernel_path"] == os.path.join(boot, "vmlinux")  # EnsureVmlinux
    assert Path(boot, "vmlinux").read_bytes()[:4] == b"\x7fELF"
    assert [s["serial"] for s in rec["storage_configs"]] == ["cocoon-layer0", "cocoon-layer1", "cocoon-cow"]
    assert set(rec["image_blob_ids"]) == set(info["layers"])
    assert "cocoon.layers=/dev/vdb,/dev/vda cocoon.cow=/dev/vdc" in rec["boot_config"]["cmdline"]
    assert not os.path.exists(os.path.join(root, "run/firecracker", vm, "cmdline"))  # CH only
    with pytest.raises(SimError, match="requires OCI"):
        sim.pull_image(root, url="https://x/a.img")
        sim.create_vm(root, hypervisor=FC, image="https://x/a.img")


@pytest.mark.parametrize("crash", ["reserve", "dirs", "disks"])
def test_vm_create_crash_points(tmp_path: Path, crash: str) -> None:
    root = str(tmp_path / "r")
    vm = sim.create_vm(root, crash_at=crash)
    rec = vms(root, CH)["vms"][vm]
    assert rec["state"] == "creating" and "storage_configs" not in rec
    run = os.path.join(root, "run/cloudhypervisor", vm)
    assert os.path.isdir(run) == (crash != "reserve")
    assert (listing(run) != []) == (crash == "disks")


def test_vm_rm(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    a = sim.create_vm(root, name="a")
    b = sim.create_vm(root, hypervisor=FC, name="b")
    assert sim.rm_vm(root, "b", crash_at="rmdirs") == b
    assert not os.path.exists(os.path.join(root, "run/firecracker", b)) and b in vms(root, FC)["vms"]
    sim.rm_vm(root, b)
    sim.rm_vm(root, a[:5])  # an ID prefix
    assert vms(root, CH) == {"vms": {}, "names": {}} and vms(root, FC) == {"vms": {}, "names": {}}
    with pytest.raises(SimError, match="VM not found"):
        sim.rm_vm(root, "a")


# --------------------------------------------------------------- snapshots
def test_save_cloud_hypervisor(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    sim.pull_image(root, url="https://x/a.img")
    vm = sim.create_vm(root, image="https://x/a.img", name="web", data_disks=[DataDisk("data1")])
    sid = sim.create(root, vm="web", name="s", description="d")
    data = sim.data_dir(root, sid)
    assert mode(data) == 0o750
    assert listing(data) == [
        "cidata.img", "cocoon.json", "config.json", "data-data1.raw",
        "memory-ranges", "overlay.qcow2", "state.json",
    ]  # fmt: skip
    assert mode(os.path.join(data, "cocoon.json")) == 0o600
    sidecar = json.loads(Path(data, "cocoon.json").read_bytes())
    config = json.loads(Path(data, "config.json").read_bytes())
    assert [(d["path"], d["readonly"]) for d in config["disks"]] == [
        (s["path"], s["ro"]) for s in sidecar["storage_configs"]
    ]
    rec = snapshots(root)["snapshots"][sid]
    assert rec["hypervisor"] == "cloud-hypervisor" and "pending" not in rec and rec["data_dir"] == data
    assert sid in vms(root, CH)["vms"][vm]["snapshot_ids"]
    assert not [
        n for n in listing(os.path.join(root, "run/cloudhypervisor", vm)) if n.startswith("snapshot-")
    ]


def test_save_firecracker(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    info = sim.pull_oci(root, "registry.example/a:1")
    vm = sim.create_vm(root, hypervisor=FC, image=info["ref"], data_disks=[DataDisk("data1")])
    sid = sim.create(root, vm=vm)
    data = sim.data_dir(root, sid)
    assert listing(data) == ["cocoon.json", "cow.raw", "data-data1.raw", "mem", "vmstate"]
    sidecar = json.loads(Path(data, "cocoon.json").read_bytes())
    assert list(sidecar) == ["storage_configs", "boot_config", "cpu", "memory"]
    assert (
        sidecar["boot_config"]["kernel_path"].endswith("/vmlinuz") and "cmdline" not in sidecar["boot_config"]
    )
    assert os.path.getsize(os.path.join(data, "mem")) == 1 << 30
    assert os.stat(os.path.join(data, "mem")).st_blocks == 0  # sparse
    run = os.path.join(root, "run/firecracker", vm)
    assert {"cow.raw.clone.lock", "data-data1.raw.clone.lock"} <= set(listing(run))


def test_save_memory_file_spellings(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    a = sim.create(root, memory_file="memory-range-0")
    b = sim.create(root)
    assert "memory-range-0" in listing(sim.data_dir(root, a))
    assert "memory-ranges" in listing(sim.data_dir(root, b))


@pytest.mark.parametrize("crash", ["snapshot", "recorded", "pending", "mkdir", "mid-extract", "extract"])
@pytest.mark.parametrize("hv", ["cloud-hypervisor", "firecracker"])
def test_save_crash_points(tmp_path: Path, crash: str, hv: str) -> None:
    root = str(tmp_path / "r")
    vm = sim.create_vm(root, hypervisor=hv)
    hyper = sim.CH if hv == "cloud-hypervisor" else sim.FC
    complete = listing(sim.data_dir(root, sim.create(root, vm=vm, name="full")))
    sid = sim.create(root, vm=vm, name="crashed", crash_at=crash)
    run = os.path.join(root, "run", hyper.dir, vm)
    tmp_dirs = [n for n in listing(run) if n.startswith("snapshot-")]
    order = ["snapshot", "recorded", "pending", "mkdir", "mid-extract", "extract"]
    step = order.index(crash)
    assert (tmp_dirs != []) == (step <= order.index("mid-extract"))  # the stream removes it once read
    assert (sid in (vms(root, hyper)["vms"][vm]["snapshot_ids"] or {})) == (step >= 1)
    rec = snapshots(root)["snapshots"].get(sid)
    assert (rec is not None) == (step >= 2)
    if rec is not None:
        assert rec["pending"] is True
    data = sim.data_dir(root, sid)
    assert os.path.isdir(data) == (step >= 3)
    files = listing(data)
    if crash == "mkdir":
        assert files == []
    elif crash == "mid-extract":
        assert files == complete[: len(complete) // 2]  # tar order: by name
    elif crash == "extract":
        assert files == complete


def test_save_refuses_a_name_in_use(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    sid = sim.create(root, name="a")
    with pytest.raises(SimError, match="already exists"):
        sim.create(root, name="a")
    with pytest.raises(SimError, match="already exists"):
        sim.create(root, name=sid[:4])  # Inspect resolves an ID prefix too
    assert sim.create(root, name="") in snapshots(root)["snapshots"]  # unnamed
    assert list(snapshots(root)["names"]) == ["a"]


@pytest.mark.parametrize("crash", [None, "mid-rmdir", "rmdir"])
def test_delete(tmp_path: Path, crash: str | None) -> None:
    root = str(tmp_path / "r")
    sid = sim.create(root, name="a")
    before = listing(sim.data_dir(root, sid))
    assert sim.delete(root, "a", crash_at=crash) == sid
    left = listing(sim.data_dir(root, sid))
    assert (sid in snapshots(root)["snapshots"]) == (crash is not None)
    if crash == "mid-rmdir":
        assert left == before[len(before) // 2 :]
    else:
        assert not os.path.exists(sim.data_dir(root, sid))
    assert ("a" in snapshots(root)["names"]) == (crash is not None)


def test_import_of_an_export(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    src = sim.create(root, name="src", description="from here")
    archive = sim.export(root, src)
    assert archive[0].name == "snapshot.json"
    envelope = json.loads(archive[0].data)
    assert list(envelope) == ["config", "version"] and envelope["version"] == 1
    assert envelope["config"]["id"] == src and "created_at" not in envelope["config"]
    assert archive[0].data.startswith(b'{\n  "config": {\n')  # MarshalIndent
    sid = sim.import_snapshot(root, source=src, name="copy")
    rec = snapshots(root)["snapshots"][sid]
    assert rec["id"] == sid and rec["name"] == "copy" and rec["description"] == "from here"
    assert "pending" not in rec
    assert listing(sim.data_dir(root, sid)) == listing(sim.data_dir(root, src))  # snapshot.json removed
    with pytest.raises(SimError, match="already in use"):
        sim.import_snapshot(root, source=src, name="copy")
    assert len(listing(os.path.join(root, "snapshot/localfile"))) == 2  # the failed import's dir removed


@pytest.mark.parametrize("crash", ["mkdir", "mid-extract", "extract", "envelope"])
def test_import_crash_points(tmp_path: Path, crash: str) -> None:
    root = str(tmp_path / "r")
    sid = sim.import_snapshot(root, hypervisor="firecracker", crash_at=crash)
    assert sid not in snapshots(root)["snapshots"]  # dir first, record after, no pending
    files = listing(sim.data_dir(root, sid))
    assert ("snapshot.json" in files) == (crash in ("mid-extract", "extract"))
    if crash == "mkdir":
        assert files == []
    if crash == "envelope":
        assert files == ["cocoon.json", "cow.raw", "mem", "vmstate"]


def test_epoch_import(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    first = sim.create(root, name="native")
    sid = sim.epoch_import(root, name="pulled")
    raw = Path(sim.snapshot_db(root)).read_bytes()
    assert raw.startswith(b'{\n  "snapshots": {\n')  # the registry's indented rewrite
    db = json.loads(raw)
    assert db["names"] == {"native": first, "pulled": sid}
    assert not os.path.exists(sim.snapshot_db(root) + ".tmp")
    left = sim.epoch_import(root, name="dead", crash_at="tmp")
    assert os.path.exists(sim.snapshot_db(root) + ".tmp")
    assert left not in json.loads(Path(sim.snapshot_db(root)).read_bytes())["snapshots"]
    assert os.path.isdir(sim.data_dir(root, left))  # its data came first


def test_write_snapshot_files_is_a_complete_dir(tmp_path: Path) -> None:
    d = tmp_path / "r" / "snapshot" / "localfile" / "X"
    sim.write_snapshot_files(str(d))
    sidecar = json.loads((d / "cocoon.json").read_bytes())
    assert all(s["path"].startswith(str(tmp_path / "r" / "run")) for s in sidecar["storage_configs"])
    assert listing(d) == [
        "cidata.img",
        "cocoon.json",
        "config.json",
        "memory-ranges",
        "overlay.qcow2",
        "state.json",
    ]
    f = tmp_path / "fc"
    sim.write_snapshot_files(str(f), hypervisor="firecracker")
    assert listing(f) == ["cocoon.json", "cow.raw", "mem", "vmstate"]


# ---------------------------------------------------------------------- CLI
def test_cli_runs_each_command(tmp_path: Path) -> None:
    root = tmp_path / "r"
    assert run_sim(root, "init") == ""
    hex_ = run_sim(root, "pull-image", "--url", "https://x/a.img").strip()
    assert re.fullmatch("[0-9a-f]{64}", hex_)
    assert re.fullmatch("[0-9a-f]{64}", run_sim(root, "import-image", "n", "--format", "raw").strip())
    ref = json.loads(run_sim(root, "pull-oci", "registry.example/a:1"))["ref"]
    assert json.loads(run_sim(root, "import-oci", "local/b"))["ref"] == "local/b"
    vm = run_sim(
        root, "vm-create", "--fc", "--image", ref, "--name", "fc", "--data-disk", "d1:33554432"
    ).strip()
    assert ID.fullmatch(vm)
    sid = run_sim(root, "create", "--vm", "fc", "--name", "s").strip()
    copy = run_sim(root, "import", "--from", "s", "--name", "s2").strip()
    assert {sid, copy} <= set(snapshots(str(root))["snapshots"])
    assert run_sim(root, "delete", "s2").strip() == copy
    assert json.loads(run_sim(root, "rmi", "local/b")) == ["local/b"]
    assert run_sim(root, "vm-rm", "fc").strip() == vm
    assert set(json.loads(run_sim(root, "gc"))) >= {"blobs", "data_dirs", "records", "temps"}
    assert ID.fullmatch(run_sim(root, "epoch-import", "--name", "e").strip())
    assert json.loads(run_sim(root, "churn", "--seconds", "0.2"))["create"] >= 1
    assert json.loads(run_sim(root, "inject", "dangling-name"))["kind"] == "dangling_name"
    assert "convert-lock" in run_sim(root, "inject", "--list")
    assert json.loads(run_sim(tmp_path / "p", "populate", "--snapshots", "3", "--images", "2")) == {
        "snapshots": 3,
        "images": 2,
        "vms": 1,
    }
    held = run_sim(root, "hold-lock", "--db", "oci", "--db", "firecracker", "--seconds", "0")
    assert held.split("\n")[:2] == [
        f"locked {root}/oci/db/images.lock",
        f"locked {root}/firecracker/db/vms.lock",
    ]


def test_cli_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = subprocess.run([*SIM_CMD, str(tmp_path), "delete", "nope"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "snapshot not found" in done.stderr
    done = subprocess.run(
        [*SIM_CMD, str(tmp_path), "inject", "no-such-fault"], capture_output=True, text=True
    )
    assert done.returncode == 2  # argparse: not a fault
