"""Will `cocoon vm restore` / `cocoon vm clone` of a committed snapshot
work? Trees built here by hand from cocoon's Go structs (cocoonstack/cocoon
at 34c6c4a), not through the simulator or cocoond's own decoders, so a
misreading shared by both cannot hide:

- snapshot.SnapshotRecord (snapshot/db.go:13, types/snapshot.go:7-22);
- CH's snapshotMeta (hypervisor/cloudhypervisor/snapshot.go:22-25), FC's
  (hypervisor/firecracker/snapshot.go:28-33), types.StorageConfig and
  types.BootConfig (types/storage.go:30, types/boot.go:4);
- CH's chVMConfig (hypervisor/cloudhypervisor/api.go:3-90).

Each test says the verdict cocoon's source gives and the line it follows."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from cocoond.cli.check import run_check
from cocoond.core.findings import Finding
from cocoond.scan import DEFAULT_RUN_DIR
from cocoond.storage.paths import Paths


@pytest.fixture(autouse=True)
def _cocoons_default_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """These trees name VM dirs under cocoon's default run dir, which
    Firecracker trusts; conftest points COCOON_RUN_DIR elsewhere so no test
    reads the host's, and nothing here lists it."""
    monkeypatch.setenv("COCOON_RUN_DIR", DEFAULT_RUN_DIR)


SID = "S2JHTLGMXGEDN73U55XTPLPFT7"
VM = "V4SEH2KVJ72CEUVW75EFR6EDT4"
LAYER0 = "526a55ece7cfe95f48e707ae46fd7f281280d4d1d6dae3afcf2cf3c11dc78778"
LAYER1 = "090478cc1046d746c34c2ea861402834dff0579adbb771e86b5b8f658670b23d"
QCOW = "5b1b6ad242123a3e44b318a9449451f5dac7c7c4d2fda5e37daeb6cd9cc4cd73"
#: ExtractBlobIDs for an OCI VM: the layers and the boot dir's hex (hypervisor/utils.go:59-70).
OCI_BLOBS: dict[str, dict[str, Any]] = {LAYER0: {}, LAYER1: {}}
#: cocoon's default run dir (cmd/root.go:58): Firecracker trusts storage under it.
RUN = "/var/lib/cocoon/run"


def write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def go_json(doc: Any) -> str:
    """encoding/json.Marshal's compact form."""
    return json.dumps(doc, separators=(",", ":"))


def record(root: Path, hypervisor: str, *, data_dir: str | None = None, **extra: Any) -> None:
    """snapshots.json with one committed record (omitempty fields left out)."""
    rec = {
        "cpu": 2,
        "memory": 1 << 30,
        "storage": 10 << 30,
        "id": SID,
        "name": "snap",
        "hypervisor": hypervisor,
        "created_at": "2026-03-02T10:00:00.5Z",
        "data_dir": data_dir or str(root / "snapshot" / "localfile" / SID),
        **extra,
    }
    write(
        root / "snapshot/db/snapshots.json", go_json({"snapshots": {SID: rec}, "names": {"snap": SID}}) + "\n"
    )


def storage(path: str, role: str, *, ro: bool, serial: str = "", **extra: Any) -> dict[str, Any]:
    return {"path": path, "ro": ro, "serial": serial, "role": role, **extra}


def ch_config(disks: list[dict[str, Any]], payload: dict[str, str], **extra: Any) -> dict[str, Any]:
    """chVMConfig as CH writes it: more fields than cocoon declares (Go ignores them)."""
    return {
        "cpus": {"boot_vcpus": 2, "max_vcpus": 2, "topology": None, "kvm_hyperv": False, "max_phys_bits": 46},
        "memory": {"size": 1 << 30, "hugepages": False, "shared": False, "thp": True},
        "payload": payload,
        "disks": [
            {
                "path": d["path"],
                "readonly": d["ro"],
                "direct": not d["ro"],
                "num_queues": 2,
                "queue_size": 512,
            }
            for d in disks
        ],
        "net": [
            {"tap": "tapX-0", "mac": "02:5e:a1:0c:33:7f", "num_queues": 4, "queue_size": 512, "id": "_net1"}
        ],
        "rng": {"src": "/dev/urandom", "iommu": False},
        "watchdog": False,
        "platform": {"num_pci_segments": 1},
        **extra,
    }


def ch_cloudimg(root: Path) -> Path:
    """A CH snapshot of a cloud-image VM (cidata, data disk, UEFI firmware)."""
    run = f"{RUN}/cloudhypervisor/{VM}"
    disks = [
        storage(f"{run}/overlay.qcow2", "cow", ro=False),
        storage(f"{run}/data-data1.raw", "data", ro=False, serial="data1", fstype="ext4"),
        storage(f"{run}/cidata.img", "cidata", ro=True),
    ]
    firmware = str(root / "firmware" / "CLOUDHV.fd")
    write(root / "firmware" / "CLOUDHV.fd", b"\x7fUEFI")
    d = root / "snapshot" / "localfile" / SID
    write(
        d / "cocoon.json",
        go_json({"storage_configs": disks, "boot_config": {"firmware_path": firmware}}),
        0o600,
    )
    write(d / "config.json", go_json(ch_config(disks, {"firmware": firmware})))
    write(d / "state.json", "{}")
    write(d / "memory-range-0", b"\0" * 4096)
    for name in ("overlay.qcow2", "data-data1.raw", "cidata.img"):
        write(d / name, b"disk")
    # The overlay's backing file: the cloud image blob (hypervisor/utils.go:71-73).
    write(root / "cloudimg" / "blobs" / f"{QCOW}.qcow2", b"QFI\xfb")
    record(root, "cloud-hypervisor", image_blob_ids={QCOW: {}}, image_type="cloudimg")
    return d


def oci_image(root: Path) -> tuple[list[dict[str, Any]], str, str]:
    """An OCI image's two layers and its boot files (images/oci/oci.go)."""
    layers = []
    for i, hex_ in enumerate((LAYER0, LAYER1)):
        write(root / "oci" / "blobs" / f"{hex_}.erofs", b"erofs")
        layers.append(
            storage(str(root / "oci/blobs" / f"{hex_}.erofs"), "layer", ro=True, serial=f"cocoon-layer{i}")
        )
    boot = root / "oci" / "boot" / LAYER1
    write(boot / "vmlinuz", b"MZkernel")
    write(boot / "initrd.img", b"initrd")
    return layers, str(boot / "vmlinuz"), str(boot / "initrd.img")


def ch_oci(root: Path) -> Path:
    """A CH snapshot of an OCI VM (direct boot: kernel + initramfs, cow.raw)."""
    layers, kernel, initrd = oci_image(root)
    disks = [*layers, storage(f"{RUN}/cloudhypervisor/{VM}/cow.raw", "cow", ro=False, serial="cocoon-cow")]
    d = root / "snapshot" / "localfile" / SID
    boot = {"kernel_path": kernel, "initrd_path": initrd, "cmdline": "console=hvc0"}
    write(d / "cocoon.json", go_json({"storage_configs": disks, "boot_config": boot}), 0o600)
    payload = {"kernel": kernel, "initramfs": initrd, "cmdline": "console=hvc0 boot=cocoon-overlay"}
    write(d / "config.json", go_json(ch_config(disks, payload)))
    write(d / "state.json", "{}")
    write(d / "memory-range-0", b"\0" * 4096)
    write(d / "cow.raw", b"cow")
    record(root, "cloud-hypervisor", image_blob_ids=OCI_BLOBS, image_type="oci")
    return d


def fc_meta(root: Path, **override: Any) -> dict[str, Any]:
    layers, kernel, initrd = oci_image(root)
    disks = [
        *layers,
        storage(f"{RUN}/firecracker/{VM}/cow.raw", "cow", ro=False, serial="cocoon-cow"),
        storage(f"{RUN}/firecracker/{VM}/data-db.raw", "data", ro=False, serial="db", fstype="none"),
    ]
    # saveSnapshotMeta stores vmlinuz and drops the cmdline (firecracker/snapshot.go:130-137).
    meta = {"storage_configs": disks, "boot_config": {"kernel_path": kernel, "initrd_path": initrd}}
    return {**meta, "cpu": 2, "memory": 1 << 30, **override}


def fc_oci(root: Path, meta: dict[str, Any] | None = None) -> Path:
    d = root / "snapshot" / "localfile" / SID
    write(d / "cocoon.json", go_json(meta or fc_meta(root)), 0o600)
    write(d / "vmstate", b"FCVMSTATE")
    write(d / "mem", b"\0" * 4096)
    write(d / "cow.raw", b"cow")
    write(d / "data-db.raw", b"data")
    record(root, "firecracker", image_blob_ids=OCI_BLOBS, image_type="oci")
    return d


def check(root: Path) -> dict[tuple[str, str], Finding]:
    result = run_check(Paths(str(root)), pending_stale_seconds=3600, temp_stale_seconds=3600)
    return {f.key: f for f in result.findings}


def only(root: Path, kind: str) -> Finding:
    found = check(root)
    assert set(found) == {(kind, SID)}, found
    return found[(kind, SID)]


def symlink_in_place(path: Path) -> None:
    """Move a file away and leave a symlink to it (os.Stat still finds it)."""
    away = path.parent.parent / f"away-{path.name}"
    path.rename(away)
    path.symlink_to(away)


BUILDERS = {"ch-cloudimg": ch_cloudimg, "ch-oci": ch_oci, "fc-oci": fc_oci}


# --------------------------------------------------------------- healthy trees
@pytest.mark.parametrize("build", sorted(BUILDERS))
def test_healthy_snapshots_as_cocoon_makes_them_raise_nothing(tmp_path: Path, build: str) -> None:
    BUILDERS[build](tmp_path)
    assert check(tmp_path) == {}


def test_imported_snapshot_with_this_roots_paths_raises_nothing(tmp_path: Path) -> None:
    """`cocoon snapshot import` extracts into localfile/<new ID> and records
    that dir (snapshot/localfile/import.go:34-66); the sidecar keeps the
    source VM's run paths, which only the basenames matter for."""
    meta = fc_meta(tmp_path)
    for sc in meta["storage_configs"]:
        sc["path"] = sc["path"].replace(f"/{VM}/", "/IMPORTEDSOURCEVMXXXXXXXXXX/")
    fc_oci(tmp_path, meta)
    assert check(tmp_path) == {}


def test_no_size_cap_on_files_cocoon_reads_whole(tmp_path: Path) -> None:
    """os.ReadFile has no limit (cloudhypervisor/snapshot.go:169,
    clone.go:224): a 2 MiB config.json (CH keeps fields cocoon ignores) is fine."""
    d = ch_cloudimg(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["platform"] = {"oem_strings": ["x" * 1024] * 2048}
    write(d / "config.json", go_json(cfg))
    assert (d / "config.json").stat().st_size > 2 << 20
    assert check(tmp_path) == {}


# ------------------------------------------------------------ the copy step
@pytest.mark.parametrize(
    ("build", "name"),
    [
        ("ch-cloudimg", "state.json"),
        ("ch-cloudimg", "config.json"),
        ("ch-cloudimg", "cocoon.json"),
        ("ch-cloudimg", "memory-range-0"),
        ("ch-cloudimg", "overlay.qcow2"),
        ("ch-cloudimg", "data-data1.raw"),
        ("fc-oci", "mem"),
        ("fc-oci", "vmstate"),
        ("fc-oci", "cow.raw"),
    ],
)
def test_a_needed_file_that_is_a_symlink_fails_restore_and_clone(
    tmp_path: Path, build: str, name: str
) -> None:
    """CloneSnapshotFiles skips what is not a regular file
    (hypervisor/utils.go:364-367); the preflight's os.Stat followed the link."""
    d = BUILDERS[build](tmp_path)
    symlink_in_place(d / name)
    f = only(tmp_path, "incomplete_data_dir")
    assert f.severity == "error" and f.fails == ("restore", "clone")
    assert f"{name} is not a regular file, and restore copies regular files only" in f.message, f.message


def test_a_memory_file_that_is_a_directory_fails_restore(tmp_path: Path) -> None:
    d = ch_cloudimg(tmp_path)
    (d / "memory-range-0").unlink()
    (d / "memory-range-0").mkdir()
    f = only(tmp_path, "incomplete_data_dir")
    assert "memory-range-0 is not a regular file" in f.message


def test_cidata_that_is_a_symlink_fails_only_clone(tmp_path: Path) -> None:
    """Restore keeps the VM's own cidata (cleanSnapshotFiles does not remove
    it: cloudhypervisor/direct.go:81-95); clone checks the copy
    (clone.go:54) and fails."""
    d = ch_cloudimg(tmp_path)
    symlink_in_place(d / "cidata.img")
    f = only(tmp_path, "clone_blocked")
    assert f.severity == "warning" and f.fails == ("clone",)
    assert "cidata.img (cidata) is not a regular file" in f.message


# -------------------------------------------------- config.json, decoded whole
@pytest.mark.parametrize(
    ("path", "value", "go_says"),
    [
        (("memory", "size"), "1G", "chMemory.size of type int64"),
        (("cpus", "boot_vcpus"), 2.5, "chCPUs.boot_vcpus of type int"),
        (("net", 0, "num_queues"), "4", "chNet.net.num_queues of type int"),
        (("payload", "firmware"), 7, "chPayload.payload.firmware of type string"),
        (("watchdog",), "no", "chVMConfig.watchdog of type bool"),
    ],
)
def test_config_json_fails_as_go_decodes_the_whole_struct(
    tmp_path: Path, path: tuple[Any, ...], value: Any, go_says: str
) -> None:
    """parseCHConfig unmarshals all of chVMConfig (cloudhypervisor/clone.go:223-233)."""
    d = ch_cloudimg(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    node = cfg
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    write(d / "config.json", go_json(cfg))
    f = only(tmp_path, "incomplete_data_dir")
    assert "config.json: json: cannot unmarshal" in f.message, f.message
    assert f.fails == ("restore", "clone")


# ------------------------------------------------------ Firecracker's own struct
def test_fc_sidecar_decoded_with_fcs_struct(tmp_path: Path) -> None:
    """cpu is an int in firecracker.snapshotMeta (snapshot.go:31); CH's struct
    has no cpu and would take the document."""
    fc_oci(tmp_path, fc_meta(tmp_path, cpu="2"))
    f = only(tmp_path, "incomplete_data_dir")
    assert "cocoon.json" in f.message and "Firecracker's snapshotMeta" in f.message, f.message


def test_the_same_odd_field_does_not_matter_to_cloud_hypervisor(tmp_path: Path) -> None:
    d = ch_cloudimg(tmp_path)
    meta = json.loads((d / "cocoon.json").read_text())
    meta["cpu"] = "2"
    write(d / "cocoon.json", go_json(meta), 0o600)
    assert check(tmp_path) == {}


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("kernel", lambda m: m["boot_config"].__setitem__("kernel_path", "/opt/kernels/vmlinuz")),
        ("initrd", lambda m: m["boot_config"].__setitem__("initrd_path", "/var/lib/cocoon-old/initrd.img")),
        ("storage", lambda m: m["storage_configs"][0].__setitem__("path", "/mnt/other/oci/blobs/x.erofs")),
        # isUnderDir is lexical after Clean: "..", not a real link, decides.
        ("storage", lambda m: m["storage_configs"][2].__setitem__("path", f"{RUN}/../elsewhere/cow.raw")),
    ],
)
def test_fc_trusted_path_check(tmp_path: Path, what: str, change: Any) -> None:
    """firecracker/snapshot.go:156-168: storage under the root or run dir,
    kernel and initrd under the root; else restore's preflight and clone fail."""
    meta = fc_meta(tmp_path)
    change(meta)
    fc_oci(tmp_path, meta)
    f = only(tmp_path, "incomplete_data_dir")
    assert f"{what} path" in f.message and "which Firecracker refuses" in f.message, f.message


def test_fc_snapshot_imported_from_another_root(tmp_path: Path) -> None:
    """Every path of the source host's root: the first untrusted one is said."""
    meta = json.loads(go_json(fc_meta(tmp_path)).replace(str(tmp_path), "/srv/other-cocoon"))
    fc_oci(tmp_path, meta)
    f = only(tmp_path, "incomplete_data_dir")
    assert "'/srv/other-cocoon/oci/blobs/" in f.message, f.message


# -------------------------------------------------------------- clone only
def test_ch_clone_needs_a_cow_disk(tmp_path: Path) -> None:
    """updateCOWPath fails without a COW (cloudhypervisor/clone.go:298-309);
    restore's checks pass (sidecar and config.json agree)."""
    d = ch_cloudimg(tmp_path)
    for name in ("cocoon.json", "config.json"):
        doc = json.loads((d / name).read_text())
        key = "storage_configs" if name == "cocoon.json" else "disks"
        doc[key] = [x for x in doc[key] if not x["path"].endswith("overlay.qcow2")]
        write(d / name, go_json(doc), 0o600)
    (d / "overlay.qcow2").unlink()
    f = only(tmp_path, "clone_blocked")
    assert "names no COW disk" in f.message and f.fails == ("clone",)


def test_fc_clone_refuses_cidata(tmp_path: Path) -> None:
    """rebuildCloneStorage: a cidata role is an error (firecracker/clone.go:184-185)."""
    meta = fc_meta(tmp_path)
    meta["storage_configs"].append(storage(f"{RUN}/firecracker/{VM}/cidata.img", "cidata", ro=True))
    d = fc_oci(tmp_path, meta)
    write(d / "cidata.img", b"ci")
    f = only(tmp_path, "clone_blocked")
    assert "cidata disk, which Firecracker cannot clone" in f.message


@pytest.mark.parametrize(
    ("build", "gone", "said"),
    [
        ("ch-oci", f"oci/blobs/{LAYER0}.erofs", "base layer"),
        ("ch-oci", f"oci/boot/{LAYER1}/vmlinuz", "kernel"),
        ("ch-oci", f"oci/boot/{LAYER1}/initrd.img", "initrd"),
        ("ch-cloudimg", "firmware/CLOUDHV.fd", "firmware"),
        ("fc-oci", f"oci/blobs/{LAYER1}.erofs", "base layer"),
        ("fc-oci", f"oci/boot/{LAYER1}/vmlinuz", "kernel"),
    ],
)
def test_clone_needs_every_base_file(tmp_path: Path, build: str, gone: str, said: str) -> None:
    """VerifyBaseFiles os.Stats the layers and the boot files (hypervisor/
    utils.go:331-356): CH takes the boot files from config.json's payload
    (clone.go:59), FC from the sidecar (clone.go:65-77). Restore uses the
    VM's own disks and does not look."""
    BUILDERS[build](tmp_path)
    (tmp_path / gone).unlink()
    found = check(tmp_path)
    # A layer the record pins is a missing_blob too (its own rule).
    assert {k[0] for k in found} - {"missing_blob"} == {"clone_blocked"}, found
    f = found[("clone_blocked", SID)]
    assert f"{said} {tmp_path / gone} is missing" in f.message, f.message
    assert f.severity == "warning" and f.fails == ("clone",)


def test_ch_snapshot_from_another_root_names_its_firmware(tmp_path: Path) -> None:
    """An import from a host whose root is /srv/other: config.json's payload
    names /srv/other/firmware/CLOUDHV.fd, which is not here."""
    d = ch_cloudimg(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["payload"]["firmware"] = "/srv/other/firmware/CLOUDHV.fd"
    write(d / "config.json", go_json(cfg))
    f = only(tmp_path, "clone_blocked")
    assert "firmware /srv/other/firmware/CLOUDHV.fd is missing" in f.message


def test_a_base_file_that_is_a_symlink_to_a_file_is_there(tmp_path: Path) -> None:
    """os.Stat follows links: a layer moved elsewhere behind a link is fine."""
    ch_oci(tmp_path)
    symlink_in_place(tmp_path / "oci" / "blobs" / f"{LAYER0}.erofs")
    assert check(tmp_path) == {}


def test_a_restore_failure_is_not_also_reported_as_clone_only(tmp_path: Path) -> None:
    d = ch_oci(tmp_path)
    (d / "state.json").unlink()
    (tmp_path / "oci" / "boot" / LAYER1 / "vmlinuz").unlink()
    only(tmp_path, "incomplete_data_dir")


def test_record_data_dir_is_what_restore_reads(tmp_path: Path) -> None:
    """Sanity for the builders: the record's data_dir is the canonical dir."""
    ch_cloudimg(tmp_path)
    db = json.loads((tmp_path / "snapshot/db/snapshots.json").read_text())
    assert db["snapshots"][SID]["data_dir"] == os.path.join(tmp_path, "snapshot", "localfile", SID)


# ------------------------------------------------------------------ images
def oci_db(root: Path, **entry: Any) -> str:
    """oci/db/images.json: images.Index[imageEntry] (images/oci/image.go:11-28)."""
    ref = "ghcr.io/cocoonstack/ubuntu:24.04"
    doc = {
        "ref": ref,
        "manifest_digest": "sha256:" + "c" * 64,
        "layers": [{"digest": f"sha256:{LAYER0}"}, {"digest": f"sha256:{LAYER1}"}],
        "kernel_layer": f"sha256:{LAYER1}",
        "initrd_layer": f"sha256:{LAYER1}",
        "size": 312475648,
        "created_at": "2026-03-02T09:45:10.5Z",
        **entry,
    }
    write(root / "oci/db/images.json", go_json({"images": {ref: doc}}) + "\n")
    return ref


def cloudimg_db(root: Path) -> str:
    """cloudimg/db/images.json (images/cloudimg/image.go:9-30)."""
    ref = "https://cloud-images.example/noble/noble-server-cloudimg-amd64.img"
    doc = {
        "ref": ref,
        "content_sum": f"sha256:{QCOW}",
        "size": 614662144,
        "created_at": "2026-03-02T09:40:00Z",
    }
    write(root / "cloudimg/db/images.json", go_json({"images": {ref: doc}}) + "\n")
    write(root / "cloudimg" / "blobs" / f"{QCOW}.qcow2", b"QFI\xfb")
    return ref


def test_healthy_images_raise_nothing(tmp_path: Path) -> None:
    oci_image(tmp_path)
    oci_db(tmp_path)
    cloudimg_db(tmp_path)
    write(tmp_path / "firmware" / "CLOUDHV.fd", b"\x7fUEFI")
    assert check(tmp_path) == {}


@pytest.mark.parametrize(
    ("gone", "said"),
    [
        (f"oci/boot/{LAYER1}/vmlinuz", "kernel"),
        (f"oci/boot/{LAYER1}/initrd.img", "initrd"),
        (f"oci/blobs/{LAYER0}.erofs", "layer 0 blob"),
    ],
)
def test_oci_image_without_its_files_cannot_create_a_vm(tmp_path: Path, gone: str, said: str) -> None:
    """OCI.Config: every layer blob, the kernel and the initrd of the layers
    the entry names must be utils.ValidFile (images/oci/oci.go:122-143)."""
    oci_image(tmp_path)
    ref = oci_db(tmp_path)
    (tmp_path / gone).unlink()
    found = check(tmp_path)
    assert {k[0] for k in found} - {"missing_blob"} == {"image_unusable"}, found
    f = found[("image_unusable", ref)]
    assert f.severity == "error" and f.fails == ("vm_create",)
    assert f"{said} {tmp_path / gone} is missing" in f.message, f.message


def test_an_empty_boot_file_is_not_valid(tmp_path: Path) -> None:
    """ValidFile wants size > 0 (utils/file.go:30-32)."""
    oci_image(tmp_path)
    ref = oci_db(tmp_path)
    (tmp_path / "oci" / "boot" / LAYER1 / "initrd.img").write_bytes(b"")
    f = only_key(tmp_path, ("image_unusable", ref))
    assert "is not a non-empty regular file" in f.message


def test_boot_files_follow_the_layer_the_entry_names(tmp_path: Path) -> None:
    """kernel_layer names LAYER0 here: its boot dir is looked at, not LAYER1's."""
    oci_image(tmp_path)
    ref = oci_db(tmp_path, kernel_layer=f"sha256:{LAYER0}")
    f = only_key(tmp_path, ("image_unusable", ref))
    assert f"kernel {tmp_path}/oci/boot/{LAYER0}/vmlinuz is missing" in f.message


@pytest.mark.parametrize("value", ["", LAYER1])
def test_a_boot_layer_go_panics_on_poisons_only_that_image(tmp_path: Path, value: str) -> None:
    """Digest.Hex() of a digest without ':' panics (go-digest Encoded), but
    only `vm run` takes kernel_layer's Hex(); gc reads the DB fine, so the
    layers stay pinned and no db_unreadable is raised."""
    oci_image(tmp_path)
    ref = oci_db(tmp_path, kernel_layer=value)
    f = only_key(tmp_path, ("image_unusable", ref))
    assert "its kernel_layer is" in f.message and "no ':' separator" in f.message


def test_cloud_image_needs_the_hosts_firmware(tmp_path: Path) -> None:
    """CloudImg.Config checks <root>/firmware/CLOUDHV.fd (images/cloudimg/
    cloudimg.go:122-125, config.go:28-30)."""
    ref = cloudimg_db(tmp_path)
    f = only_key(tmp_path, ("image_unusable", ref))
    assert f"firmware {tmp_path}/firmware/CLOUDHV.fd is missing" in f.message, f.message


def only_key(root: Path, key: tuple[str, str]) -> Finding:
    found = check(root)
    assert set(found) == {key}, found
    return found[key]


# --------------------------------------------------------------------- VMs
def vm_db(root: Path, backend: str, vm: dict[str, Any]) -> None:
    """<backend>/db/vms.json: hypervisor.VMIndex (hypervisor/db.go:14-33)."""
    write(
        root / backend / "db" / "vms.json",
        go_json({"vms": {vm["id"]: vm}, "names": {vm["config"]["name"]: vm["id"]}}),
    )


def fc_vm(root: Path, **extra: Any) -> dict[str, Any]:
    """A Firecracker VM of the OCI image: types.VM embedded in VMRecord."""
    layers, _kernel, initrd = oci_image(root)
    vmlinux = root / "oci" / "boot" / LAYER1 / "vmlinux"
    write(vmlinux, b"\x7fELF")
    return {
        "id": VM,
        "hypervisor": "firecracker",
        "state": "running",
        "config": {"cpu": 2, "memory": 1 << 30, "storage": 10 << 30, "image_type": "oci", "name": "web-1"},
        "pid": 4242,
        "storage_configs": [
            *layers,
            storage(f"{RUN}/firecracker/{VM}/cow.raw", "cow", ro=False, serial="cocoon-cow"),
            storage(f"{RUN}/firecracker/{VM}/data-db.raw", "data", ro=False, serial="db", fstype="none"),
        ],
        "first_booted": True,
        "created_at": "2026-03-02T10:10:00.1Z",
        "updated_at": "2026-03-02T10:10:02.2Z",
        "boot_config": {"kernel_path": str(vmlinux), "initrd_path": initrd, "cmdline": "console=ttyS0"},
        "image_blob_ids": OCI_BLOBS,
        "run_dir": f"{RUN}/firecracker/{VM}",
        "log_dir": f"/var/log/cocoon/firecracker/{VM}",
        **extra,
    }


def test_healthy_vm_with_its_snapshot_raises_nothing(tmp_path: Path) -> None:
    fc_oci(tmp_path)
    vm_db(tmp_path, "firecracker", fc_vm(tmp_path, snapshot_ids={SID: {}}))
    assert check(tmp_path) == {}


def test_vm_listing_a_snapshot_that_is_gone(tmp_path: Path) -> None:
    """Only RecordSnapshot writes snapshot_ids (hypervisor/backend.go:424-446);
    `snapshot rm` leaves them (snapshot/localfile/localfile.go:173-209):
    info, the VM cannot be restored to it."""
    fc_oci(tmp_path)
    vm_db(tmp_path, "firecracker", fc_vm(tmp_path, snapshot_ids={SID: {}, "GONEGONEGONEGONEGONEGONE42": {}}))
    f = only_key(tmp_path, ("vm_snapshot_gone", VM))
    assert f.severity == "info" and f.snapshot_id == "GONEGONEGONEGONEGONEGONE42"
    assert "1 snapshot(s) that no longer exist" in f.message


@pytest.mark.parametrize(
    ("gone", "said"), [(f"oci/boot/{LAYER1}/vmlinux", "kernel"), (f"oci/blobs/{LAYER0}.erofs", "base layer")]
)
def test_vm_whose_base_files_are_gone(tmp_path: Path, gone: str, said: str) -> None:
    """The hypervisor opens the record's layers and boot files whenever
    cocoon launches the VM: `vm start`, and `vm restore` after killing it
    (firecracker/restore.go:86-127)."""
    vm_db(tmp_path, "firecracker", fc_vm(tmp_path))
    (tmp_path / gone).unlink()
    found = check(tmp_path)
    f = found[("vm_base_missing", VM)]
    assert f.severity == "error" and f.fails == ("restore",)
    assert f"{said} {tmp_path / gone}" in f.message and "`cocoon vm start`" in f.message, f.message


def test_cloud_image_vm_whose_image_blob_is_gone(tmp_path: Path) -> None:
    """A cloud-image VM's overlay is backed by its image blob (image_blob_ids)."""
    vm = fc_vm(
        tmp_path,
        hypervisor="cloud-hypervisor",
        storage_configs=[],
        boot_config={"firmware_path": str(tmp_path / "firmware/CLOUDHV.fd")},
        image_blob_ids={QCOW: {}},
    )
    write(tmp_path / "firmware" / "CLOUDHV.fd", b"\x7fUEFI")
    vm_db(tmp_path, "cloudhypervisor", vm)
    found = check(tmp_path)
    assert {k[0] for k in found} == {"missing_blob", "vm_base_missing", "unreferenced_blob"}, found
    assert f"image blob {QCOW}" in found[("vm_base_missing", VM)].message


def test_restore_checks_the_snapshots_disks_against_its_vms(tmp_path: Path) -> None:
    """ValidateRoleSequence (hypervisor/utils.go:298-313): the VM listing the
    snapshot (restore's VM, cmd/vm/run.go:167) lost its data disk since: its
    roles are layer, layer, cow; the snapshot's layer, layer, cow, data."""
    fc_oci(tmp_path)
    vm = fc_vm(tmp_path, snapshot_ids={SID: {}})
    vm["storage_configs"] = vm["storage_configs"][:3]
    vm_db(tmp_path, "firecracker", vm)
    f = only(tmp_path, "restore_blocked")
    assert f.severity == "error" and f.fails == ("restore",)
    assert "the snapshot has 4 disks, the VM only 3" in f.message, f.message


def test_a_vm_may_add_only_cidata_after_the_snapshots_disks(tmp_path: Path) -> None:
    """A cloud-image snapshot taken after first boot lacks cidata: fine."""
    d = ch_cloudimg(tmp_path)
    for name, key in (("cocoon.json", "storage_configs"), ("config.json", "disks")):
        doc = json.loads((d / name).read_text())
        doc[key] = [x for x in doc[key] if not x["path"].endswith("cidata.img")]
        write(d / name, go_json(doc), 0o600)
    (d / "cidata.img").unlink()
    run = f"{RUN}/cloudhypervisor/{VM}"
    disks = [
        storage(f"{run}/overlay.qcow2", "cow", ro=False),
        storage(f"{run}/data-data1.raw", "data", ro=False, serial="data1", fstype="ext4"),
        storage(f"{run}/cidata.img", "cidata", ro=True),
    ]
    vm = fc_vm(tmp_path, hypervisor="cloud-hypervisor", storage_configs=disks, snapshot_ids={SID: {}})
    vm.update(boot_config={"firmware_path": str(tmp_path / "firmware/CLOUDHV.fd")}, image_blob_ids={QCOW: {}})
    vm_db(tmp_path, "cloudhypervisor", vm)
    assert {k[0] for k in check(tmp_path)} <= {"unreferenced_blob"}  # the OCI image nobody uses
    vm["storage_configs"] = [disks[1], disks[0], disks[2]]  # data before cow: order matters
    vm_db(tmp_path, "cloudhypervisor", vm)
    f = check(tmp_path)[("restore_blocked", SID)]
    assert "disk[0] is cow in the snapshot but data in the VM" in f.message, f.message


def test_a_vm_being_created_is_not_judged(tmp_path: Path) -> None:
    vm = fc_vm(tmp_path, state="creating")
    # Still being created: updated now, within gc's 24 h grace (hypervisor/gc.go:47).
    vm["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    vm_db(tmp_path, "firecracker", vm)
    (tmp_path / "oci" / "boot" / LAYER1 / "vmlinux").unlink()
    assert check(tmp_path) == {}


def test_a_vms_lost_kernel_blocks_restoring_its_snapshots(tmp_path: Path) -> None:
    """Restore relaunches the VM with its own record's boot files after the
    kill (firecracker/restore.go:86-127): the snapshot cannot be restored
    onto it, though it still clones (its sidecar names vmlinuz, still there)."""
    fc_oci(tmp_path)
    vm_db(tmp_path, "firecracker", fc_vm(tmp_path, snapshot_ids={SID: {}}))
    (tmp_path / "oci" / "boot" / LAYER1 / "vmlinux").unlink()
    found = check(tmp_path)
    assert set(found) == {("vm_base_missing", VM), ("restore_blocked", SID)}, found
    f = found[("restore_blocked", SID)]
    assert f"the VM's kernel {tmp_path}/oci/boot/{LAYER1}/vmlinux is gone" in f.message, f.message
    assert f.fails == ("restore",)
