"""A whole Cocoon host written by hand the way cocoon's Go code writes it
(cocoonstack/cocoon at 34c6c4a), not through cocoond.sim, so a misreading
shared by the simulator and cocoond cannot hide. Every builder cites the
write path it follows:

- images: `cocoon image pull` of an OCI image (images/oci/commit.go:60-116:
  layers to oci/blobs/<hex>.erofs, vmlinuz / initrd.img to
  oci/boot/<layer hex>/, the entry keyed by the ref as typed:
  name.ParseReference(ref).String() is the input string, fetch.go:21-25),
  of a cloud image by URL and `cocoon image import` by name
  (images/cloudimg/commit.go:150-160);
- VMs: hypervisor.ReserveVM then FinalizeCreate (hypervisor/backend.go:180-200,
  511-526; cloudhypervisor/create.go:21-141: a cloud-image VM's disks are
  overlay (cow, no serial), data, cidata, its base blob only in
  image_blob_ids; firecracker/create.go:74-100: the kernel becomes
  oci/boot/<hex>/vmlinux), CNI records (network/cni/db.go);
- snapshots: Snapshot + localfile.Create (cloudhypervisor/snapshot.go:30-165,
  firecracker/snapshot.go:38-144, snapshot/localfile/localfile.go:81-137),
  `cocoon snapshot import` (snapshot/localfile/import.go:25-88) and a VM
  cloned from a snapshot (firecracker/clone.go:34-133).

`check` must say nothing about the healthy host, `gc-plan` must delete
nothing, and each broken variant gets the verdict cocoon's code gives."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cocoond.cli.check import run_check
from cocoond.cli.main import main
from cocoond.core.findings import Finding
from cocoond.storage.paths import Paths

CREATED = "2026-11-30T09:15:02.123456789Z"  # time.Time's RFC 3339 nano, UTC
LOCAL = "2026-11-30T17:15:02.5+08:00"  # and with a local offset
L0 = "11" * 32
L1 = "22" * 32
L2 = "33" * 32
QCOW = "44" * 32
QCOW2 = "55" * 32
MANIFEST = "sha256:" + "66" * 32
CH_CLOUD = "CHCLOUDVMAAAAAAAAAAAAAAAAA"
CH_OCI = "CHOCIVMBBBBBBBBBBBBBBBBBBB"
FC_VM = "FCVMCCCCCCCCCCCCCCCCCCCCCC"
FC_CLONE = "FCCLONEDDDDDDDDDDDDDDDDDDD"
CREATING = "CREATINGEEEEEEEEEEEEEEEEEE"
SNAP_CH_CLOUD = "SCHCLOUDAAAAAAAAAAAAAAAAAA"
SNAP_CH_OCI = "SCHOCIBBBBBBBBBBBBBBBBBBBB"
SNAP_FC = "SFCCCCCCCCCCCCCCCCCCCCCCCC"
SNAP_IMPORTED = "SIMPORTEDDDDDDDDDDDDDDDDDD"
#: The VM an imported snapshot was taken of, on the host it came from.
ELSEWHERE_VM = "SOURCEHOSTVMZZZZZZZZZZZZZZ"


def go_json(doc: Any) -> str:
    """encoding/json.Marshal: compact; utils.AtomicWriteJSON adds a newline."""
    return json.dumps(doc, separators=(",", ":"))


def write(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def disk(path: str, role: str, *, ro: bool, serial: str = "", **extra: Any) -> dict[str, Any]:
    """types.StorageConfig (types/storage.go:30-38): path, ro, serial, role always; the rest omitempty."""
    return {"path": path, "ro": ro, "serial": serial, "role": role, **extra}


@dataclass
class Host:
    root: Path
    run: Path
    log: Path
    vms: dict[str, dict[str, Any]] = field(default_factory=lambda: {"cloudhypervisor": {}, "firecracker": {}})
    snapshots: dict[str, Any] = field(default_factory=dict)
    snapshot_names: dict[str, str] = field(default_factory=dict)

    # ---------------------------------------------------------------- images
    def pull_oci(self) -> None:
        """Two images sharing a layer; one keeps vmlinuz and initrd.img in
        different layers (commit.go:75-80 takes each from the layer that has it)."""
        for hex_ in (L0, L1, L2):
            write(self.root / "oci/blobs" / f"{hex_}.erofs", b"\xe2\xe1\xf5\xe0erofs")
        write(self.root / "oci/boot" / L1 / "vmlinuz", b"MZ\x00compressed-kernel")
        write(self.root / "oci/boot" / L1 / "initrd.img", b"\x1f\x8binitrd")
        write(self.root / "oci/boot" / L2 / "vmlinuz", b"MZ\x00other-kernel")
        write(self.root / "oci/boot" / L0 / "initrd.img", b"\x1f\x8binitrd0")
        images = {
            # the key is the ref as the user typed it (fetch.go:25: String() is the input)
            "ubuntu:24.04": self._oci_entry("ubuntu:24.04", [L0, L1], L1, L1),
            "ghcr.io/acme/app@sha256:" + "77" * 32: self._oci_entry(
                "ghcr.io/acme/app@sha256:" + "77" * 32, [L0, L2], L2, L0
            ),
        }
        write(self.root / "oci/db/images.json", go_json({"images": images}) + "\n")
        write(self.root / "oci/db/images.lock", b"")
        (self.root / "oci/temp").mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _oci_entry(ref: str, layers: list[str], kernel: str, initrd: str) -> dict[str, Any]:
        return {
            "ref": ref,
            "manifest_digest": MANIFEST,
            "layers": [{"digest": "sha256:" + h} for h in layers],
            "kernel_layer": "sha256:" + kernel,
            "initrd_layer": "sha256:" + initrd,
            "size": 123456,
            "created_at": CREATED,
        }

    def pull_cloudimg(self) -> None:
        write(self.root / "cloudimg/blobs" / f"{QCOW}.qcow2", b"QFI\xfb\x00\x00\x00\x03")
        write(self.root / "cloudimg/blobs" / f"{QCOW2}.qcow2", b"QFI\xfb\x00\x00\x00\x03")
        url = "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img"
        images = {
            url: {"ref": url, "content_sum": "sha256:" + QCOW, "size": 8, "created_at": LOCAL},
            "my-image": {
                "ref": "my-image",
                "content_sum": "sha256:" + QCOW2,
                "size": 8,
                "created_at": CREATED,
            },
        }
        write(self.root / "cloudimg/db/images.json", go_json({"images": images}) + "\n")
        write(self.root / "cloudimg/db/images.lock", b"")
        # the convert lock cloudimg keeps forever (commit.go:117)
        write(self.root / "cloudimg/temp" / f".tmp-{QCOW}.qcow2.lock", b"")
        write(self.root / "firmware/CLOUDHV.fd", b"\x00UEFI-firmware")

    # ------------------------------------------------------------------- VMs
    def vm_dir(self, backend: str, vm_id: str) -> Path:
        return self.run / backend / vm_id

    def add_vm(
        self,
        backend: str,
        vm_id: str,
        name: str,
        state: str,
        disks: list[dict[str, Any]],
        boot: dict[str, str] | None,
        blobs: list[str],
        *,
        snapshots: list[str] = (),  # type: ignore[assignment]
        image: str = "ubuntu:24.04",
        image_type: str = "oci",
        nics: int = 1,
    ) -> None:
        """hypervisor.VMRecord (hypervisor/db.go:14-22) as FinalizeCreate leaves it."""
        run, log = self.vm_dir(backend, vm_id), self.log / backend / vm_id
        run.mkdir(parents=True, exist_ok=True)
        log.mkdir(parents=True, exist_ok=True)
        for d in disks:
            if d["role"] != "layer" and d["path"].startswith(str(run)):
                write(Path(d["path"]), b"disk")
        rec: dict[str, Any] = {
            "id": vm_id,
            "hypervisor": "cloud-hypervisor" if backend == "cloudhypervisor" else "firecracker",
            "state": state,
            "config": {
                "cpu": 2,
                "memory": 1 << 30,
                "storage": 10 << 30,
                "image": image,
                "image_digest": MANIFEST if image_type == "oci" else "sha256:" + QCOW,
                "image_type": image_type,
                "name": name,
            },
            "pid": 0,
            "network_configs": [
                {
                    "tap": f"tap{vm_id[:8].lower()}{i}",
                    "mac": f"02:00:00:00:00:0{i}",
                    "num_queues": 2,
                    "queue_size": 256,
                    "backend": "cni",
                    "netns_path": f"/var/run/netns/cocoon-{vm_id}",
                    "network": {"ip": f"10.88.0.{10 + i}", "gateway": "10.88.0.1", "prefix": 16},
                }
                for i in range(nics)
            ],
            "storage_configs": disks,
            "first_booted": state != "created",
            "created_at": CREATED,
            "updated_at": CREATED,
            "image_blob_ids": {h: {} for h in blobs},
            "run_dir": str(run),
            "log_dir": str(log),
        }
        if boot is not None:
            rec["boot_config"] = boot
        if snapshots:
            rec["snapshot_ids"] = {s: {} for s in snapshots}
        if state == "running":
            rec["started_at"] = CREATED
            write(run / ("ch.pid" if backend == "cloudhypervisor" else "fc.pid"), "4242")
        if state == "stopped":
            rec["stopped_at"] = LOCAL
        self.vms[backend][vm_id] = rec

    def ch_cloud_vm(self, snapshots: list[str]) -> list[dict[str, Any]]:
        run = self.vm_dir("cloudhypervisor", CH_CLOUD)
        disks = [
            disk(str(run / "overlay.qcow2"), "cow", ro=False),
            disk(
                str(run / "data-pgdata.raw"),
                "data",
                ro=False,
                serial="pgdata",
                mount_point="/var/lib/pg",
                fstype="ext4",
            ),
            disk(str(run / "cidata.img"), "cidata", ro=True),
        ]
        boot = {"firmware_path": str(self.root / "firmware/CLOUDHV.fd")}
        url = "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img"
        self.add_vm(
            "cloudhypervisor",
            CH_CLOUD,
            "web-1",
            "running",
            disks,
            boot,
            [QCOW],
            snapshots=snapshots,
            image=url,
            image_type="cloudimg",
        )
        return disks

    def oci_layers(self, layers: list[str]) -> list[dict[str, Any]]:
        return [
            disk(str(self.root / "oci/blobs" / f"{h}.erofs"), "layer", ro=True, serial=f"cocoon-layer{i}")
            for i, h in enumerate(layers)
        ]

    def ch_oci_vm(self, snapshots: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        run = self.vm_dir("cloudhypervisor", CH_OCI)
        disks = [*self.oci_layers([L0, L1]), disk(str(run / "cow.raw"), "cow", ro=False, serial="cocoon-cow")]
        boot = {
            "kernel_path": str(self.root / "oci/boot" / L1 / "vmlinuz"),
            "initrd_path": str(self.root / "oci/boot" / L1 / "initrd.img"),
            "cmdline": "console=hvc0 cocoon.layers=cocoon-layer1,cocoon-layer0 cocoon.cow=cocoon-cow",
        }
        self.add_vm("cloudhypervisor", CH_OCI, "api-1", "stopped", disks, boot, [L0, L1], snapshots=snapshots)
        return disks, boot

    def fc_vm(
        self, vm_id: str, name: str, state: str, snapshots: list[str]
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        run = self.vm_dir("firecracker", vm_id)
        disks = [
            *self.oci_layers([L0, L2]),
            disk(str(run / "cow.raw"), "cow", ro=False, serial="cocoon-cow"),
            disk(str(run / "data-cache.raw"), "data", ro=False, serial="cache", fstype="none"),
        ]
        # FC boots the ELF kernel it extracted next to vmlinuz (firecracker/create.go:84-91).
        write(self.root / "oci/boot" / L2 / "vmlinux", b"\x7fELFkernel")
        boot = {
            "kernel_path": str(self.root / "oci/boot" / L2 / "vmlinux"),
            "initrd_path": str(self.root / "oci/boot" / L0 / "initrd.img"),
            "cmdline": "console=ttyS0 cocoon.layers=cocoon-layer1,cocoon-layer0",
        }
        image = "ghcr.io/acme/app@sha256:" + "77" * 32
        self.add_vm(
            "firecracker", vm_id, name, state, disks, boot, [L0, L2], snapshots=snapshots, image=image
        )
        return disks, boot

    def creating_vm(self) -> None:
        """A `cocoon vm run` in progress: ReserveVM's placeholder (backend.go:189-197)."""
        run, log = self.vm_dir("cloudhypervisor", CREATING), self.log / "cloudhypervisor" / CREATING
        run.mkdir(parents=True)
        log.mkdir(parents=True)
        self.vms["cloudhypervisor"][CREATING] = {
            "id": CREATING,
            "hypervisor": "cloud-hypervisor",
            "state": "creating",
            "config": {
                "cpu": 1,
                "memory": 512 << 20,
                "storage": 10 << 30,
                "image": "ubuntu:24.04",
                "name": "new-1",
            },
            "pid": 0,
            "first_booted": False,
            "created_at": CREATED,
            "updated_at": _now_rfc3339(),
            "image_blob_ids": {L0: {}, L1: {}},
            "run_dir": str(run),
            "log_dir": str(log),
        }

    # ------------------------------------------------------------- snapshots
    def snapshot(
        self,
        sid: str,
        name: str,
        hypervisor: str,
        blobs: list[str],
        image_type: str,
        image: str,
        *,
        nics: int = 1,
    ) -> Path:
        """localfile.Create's committed record (localfile.go:96-133) from
        BuildSnapshotConfig (hypervisor/backend.go:448-456)."""
        d = self.root / "snapshot/localfile" / sid
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o750)
        rec: dict[str, Any] = {
            "cpu": 2,
            "memory": 1 << 30,
            "storage": 10 << 30,
            "image": image,
            "image_digest": MANIFEST,
            "image_type": image_type,
            "id": sid,
            "name": name,
            "image_blob_ids": {h: {} for h in blobs},
            "hypervisor": hypervisor,
            "nics": nics,
            "created_at": CREATED,
            "data_dir": str(d),
        }
        self.snapshots[sid] = rec
        self.snapshot_names[name] = sid
        return d

    def snap_ch_cloud(self, vm_disks: list[dict[str, Any]]) -> None:
        """CH snapshot of a cloud-image VM: config.json and state.json from CH,
        memory-ranges, the overlay (snapshot.go:88), cidata.img (:108-118),
        data disks (utils.go:192-203), the sidecar mirroring config.json's disks (:138-165)."""
        url = "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img"
        d = self.snapshot(SNAP_CH_CLOUD, "web-1-before-upgrade", "cloud-hypervisor", [QCOW], "cloudimg", url)
        firmware = str(self.root / "firmware/CLOUDHV.fd")
        write(
            d / "cocoon.json",
            go_json({"storage_configs": vm_disks, "boot_config": {"firmware_path": firmware}}),
            0o600,
        )
        write(d / "config.json", go_json(ch_config(vm_disks, {"firmware": firmware})))
        write(d / "state.json", '{"version":1}')
        write(d / "memory-ranges", b"\0" * 8192)
        write(d / "overlay.qcow2", b"QFI\xfb")
        write(d / "data-pgdata.raw", b"ext4")
        write(d / "cidata.img", b"cidata", 0o600)

    def snap_ch_oci(self, vm_disks: list[dict[str, Any]], boot: dict[str, str]) -> None:
        d = self.snapshot(SNAP_CH_OCI, "api-1-s1", "cloud-hypervisor", [L0, L1], "oci", "ubuntu:24.04")
        write(d / "cocoon.json", go_json({"storage_configs": vm_disks, "boot_config": boot}), 0o600)
        payload = {
            "kernel": boot["kernel_path"],
            "initramfs": boot["initrd_path"],
            "cmdline": boot["cmdline"],
        }
        write(d / "config.json", go_json(ch_config(vm_disks, payload)))
        write(d / "state.json", '{"version":1}')
        write(d / "memory-range-0", b"\0" * 4096)
        write(d / "memory-range-1", b"\0" * 4096)
        write(d / "cow.raw", b"ext4cow")

    def fc_sidecar(self, vm_disks: list[dict[str, Any]], boot: dict[str, str]) -> dict[str, Any]:
        """saveSnapshotMeta (firecracker/snapshot.go:124-144): vmlinuz, not vmlinux; no cmdline."""
        b = {
            "kernel_path": boot["kernel_path"].replace("/vmlinux", "/vmlinuz"),
            "initrd_path": boot["initrd_path"],
        }
        return {"storage_configs": vm_disks, "boot_config": b, "cpu": 2, "memory": 1 << 30}

    def snap_fc(self, sid: str, name: str, sidecar: dict[str, Any]) -> Path:
        image = "ghcr.io/acme/app@sha256:" + "77" * 32
        d = self.snapshot(sid, name, "firecracker", [L0, L2], "oci", image)
        write(d / "cocoon.json", go_json(sidecar), 0o600)
        write(d / "vmstate", b"FCSTATE")
        write(d / "mem", b"\0" * 8192)
        write(d / "cow.raw", b"ext4cow")
        write(d / "data-cache.raw", b"raw")
        return d

    # ---------------------------------------------------------------- finish
    def save(self) -> None:
        for backend, vms in self.vms.items():
            names = {v["config"]["name"]: vm_id for vm_id, v in vms.items()}
            write(self.root / backend / "db/vms.json", go_json({"vms": vms, "names": names}) + "\n")
            write(self.root / backend / "db/vms.lock", b"")
        networks = {}
        for vms in self.vms.values():
            for vm_id, v in vms.items():
                for i, nic in enumerate(v.get("network_configs") or []):
                    networks[f"{vm_id}-eth{i}"] = {
                        "network": nic["network"],
                        "id": f"{vm_id}-eth{i}",
                        "type": "bridge",
                        "vm_id": vm_id,
                        "if_name": f"eth{i}",
                    }
        write(self.root / "cni/db/networks.json", go_json({"networks": networks}) + "\n")
        write(self.root / "cni/db/networks.lock", b"")
        write(
            self.root / "snapshot/db/snapshots.json",
            go_json({"snapshots": self.snapshots, "names": self.snapshot_names}) + "\n",
        )
        write(self.root / "snapshot/db/snapshots.lock", b"")


def _now_rfc3339() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ch_config(disks: list[dict[str, Any]], payload: dict[str, str]) -> dict[str, Any]:
    """Cloud Hypervisor's config.json: more fields than cocoon's chVMConfig
    (hypervisor/cloudhypervisor/api.go:3-90) declares; Go ignores the rest."""
    return {
        "cpus": {"boot_vcpus": 2, "max_vcpus": 2, "topology": None, "kvm_hyperv": False, "max_phys_bits": 46},
        "memory": {
            "size": 1 << 30,
            "mergeable": False,
            "hotplug_method": "Acpi",
            "shared": False,
            "hugepages": False,
        },
        "payload": payload,
        "rate_limit_groups": None,
        "disks": [
            {
                "path": d["path"],
                "readonly": d["ro"],
                "direct": not d["ro"],
                "iommu": False,
                "num_queues": 2,
                "queue_size": 256,
                "vhost_user": False,
                "id": f"_disk{i}",
                "pci_segment": 0,
                "serial": d["serial"] or None,
            }
            for i, d in enumerate(disks)
        ],
        "net": [
            {
                "tap": "tapx0",
                "ip": "192.168.249.1",
                "mask": "255.255.255.0",
                "mac": "02:00:00:00:00:00",
                "iommu": False,
                "num_queues": 4,
                "queue_size": 256,
                "id": "_net2",
                "offload_tso": True,
            }
        ],
        "rng": {"src": "/dev/urandom", "iommu": False},
        "balloon": {"id": None, "size": 268435456, "deflate_on_oom": True, "free_page_reporting": True},
        "serial": {"file": None, "mode": "Null", "iommu": False, "socket": None},
        "console": {"file": None, "mode": "Pty", "iommu": False, "socket": None},
        "iommu": False,
        "watchdog": False,
        "pvpanic": False,
    }


def healthy(tmp_path: Path) -> Host:
    host = Host(tmp_path / "root", tmp_path / "run", tmp_path / "log")
    host.pull_oci()
    host.pull_cloudimg()
    cloud_disks = host.ch_cloud_vm([SNAP_CH_CLOUD])
    host.snap_ch_cloud(cloud_disks)
    oci_disks, oci_boot = host.ch_oci_vm([SNAP_CH_OCI])
    host.snap_ch_oci(oci_disks, oci_boot)
    fc_disks, fc_boot = host.fc_vm(FC_VM, "job-1", "running", [SNAP_FC])
    host.snap_fc(SNAP_FC, "job-1-s1", host.fc_sidecar(fc_disks, fc_boot))
    # Imported from another host with the same layout: the sidecar names the
    # source VM's run dir, which only the basenames matter for (utils.go:480-492).
    src = str(host.vm_dir("firecracker", ELSEWHERE_VM))
    imported = host.fc_sidecar(
        [{**d, "path": d["path"].replace(str(host.vm_dir("firecracker", FC_VM)), src)} for d in fc_disks],
        fc_boot,
    )
    host.snap_fc(SNAP_IMPORTED, "imported", imported)
    host.snapshots[SNAP_IMPORTED]["description"] = "from host b"
    # A VM cloned from the FC snapshot: rebuildCloneStorage (clone.go:172-192).
    host.fc_vm(FC_CLONE, "job-1-clone", "created", [])
    host.creating_vm()
    host.save()
    return host


def check(host: Host) -> dict[tuple[str, str], Finding]:
    result = run_check(
        Paths(str(host.root)),
        pending_stale_seconds=3600,
        temp_stale_seconds=3600,
        run_dir=str(host.run),
        log_dir=str(host.log),
    )
    return {f.key: f for f in result.findings}


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    h = healthy(tmp_path)
    # cocoon's run dir is the config's (run_dir), never cocoond's environment
    monkeypatch.setenv("COCOON_RUN_DIR", "/nonexistent/elsewhere")
    monkeypatch.setenv("COCOON_LOG_DIR", "/nonexistent/elsewhere-log")
    return h


def config_file(host: Host) -> str:
    path = host.root.parent / "cocoond.toml"
    path.write_text(f'root_dir = "{host.root}"\nrun_dir = "{host.run}"\nlog_dir = "{host.log}"\n')
    return str(path)


# ----------------------------------------------------------------- healthy
def test_the_healthy_host_raises_nothing(host: Host) -> None:
    assert check(host) == {}


def test_gc_on_the_healthy_host_deletes_nothing(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["gc-plan", "--config", config_file(host), "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert (rc, plan["gc"], plan["bytes"]) == (0, "runs", 0), plan
    assert [m["items"] for m in plan["modules"] if m["items"]] == []


@pytest.mark.parametrize("sid", [SNAP_CH_CLOUD, SNAP_CH_OCI, SNAP_FC, SNAP_IMPORTED])
def test_show_says_every_healthy_snapshot_restores_and_clones(
    host: Host, capsys: pytest.CaptureFixture[str], sid: str
) -> None:
    rc = main(["show", "--config", config_file(host), "--json", sid])
    shown = json.loads(capsys.readouterr().out)
    assert rc == 0, shown
    assert shown["operations"]["clone"]["works"] is True
    # only a snapshot its VM lists can be restored (cmd/vm/run.go:167-169)
    assert shown["operations"]["restore"]["works"] is (sid != SNAP_IMPORTED)


# ------------------------------------------------------------ broken variants
def kinds(found: dict[tuple[str, str], Finding]) -> set[tuple[str, str]]:
    return set(found)


def test_fc_trusted_path_uses_the_configured_run_dir(host: Host) -> None:
    """loadSnapshotMeta(dir, RootDir, RunDir) (firecracker/snapshot.go:147-160):
    storage under cocoon's configured run dir is trusted; the environment of
    cocoond has nothing to do with it."""
    found = run_check(
        Paths(str(host.root)),
        pending_stale_seconds=3600,
        temp_stale_seconds=3600,
        run_dir="/var/lib/cocoon/run",
        log_dir=str(host.log),
    ).findings
    untrusted = {f.subject for f in found if f.kind == "incomplete_data_dir"}
    assert untrusted == {SNAP_FC, SNAP_IMPORTED}, found
    assert all(
        "outside cocoon's root and run dir" in f.message for f in found if f.kind == "incomplete_data_dir"
    )


def test_creating_vm_past_the_grace_is_dropped_by_gc(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    vms = json.loads((host.root / "cloudhypervisor/db/vms.json").read_text())
    vms["vms"][CREATING]["updated_at"] = CREATED
    write(host.root / "cloudhypervisor/db/vms.json", go_json(vms) + "\n")
    assert kinds(check(host)) == {("stale_creating_vm", CREATING)}
    main(["gc-plan", "--config", config_file(host), "--json"])
    plan = json.loads(capsys.readouterr().out)
    items = {(i["what"], i["subject"]) for m in plan["modules"] for i in m["items"]}
    # its run and log dirs and its record; its CNI records stay: it is still a VM ID gc holds
    assert items == {("vm_run_dir", CREATING), ("vm_log_dir", CREATING), ("vm_record", CREATING)}


def test_a_removed_image_leaves_what_gc_deletes(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    """`cocoon image rm my-image`: its blob is named by nothing now; gc
    deletes it, and in that run the stale temp files, but never the
    convert lock (images/index.go:153-165)."""
    db = json.loads((host.root / "cloudimg/db/images.json").read_text())
    del db["images"]["my-image"]
    write(host.root / "cloudimg/db/images.json", go_json(db) + "\n")
    old = write(host.root / "cloudimg/temp/pull-123.img", b"partial")
    os.utime(old, (1, 1))
    os.utime(host.root / f"cloudimg/temp/.tmp-{QCOW}.qcow2.lock", (1, 1))
    main(["gc-plan", "--config", config_file(host), "--json"])
    plan = json.loads(capsys.readouterr().out)
    items = {(i["what"], i["subject"]) for m in plan["modules"] for i in m["items"]}
    assert items == {("blob", QCOW2), ("temp", "cloudimg/temp/pull-123.img")}


# ------------------------------------------------ gc, vs the simulator and Go
def inside(tmp_path: Path) -> Host:
    """The healthy host with cocoon's run and log dirs under the root (where
    the simulator keeps them), so the simulator's gc can run on it."""
    host = Host(tmp_path / "root", tmp_path / "root/run", tmp_path / "root/log")
    host.pull_oci()
    host.pull_cloudimg()
    host.snap_ch_cloud(host.ch_cloud_vm([SNAP_CH_CLOUD]))
    host.snap_ch_oci(*host.ch_oci_vm([SNAP_CH_OCI]))
    fc_disks, fc_boot = host.fc_vm(FC_VM, "job-1", "running", [SNAP_FC])
    host.snap_fc(SNAP_FC, "job-1-s1", host.fc_sidecar(fc_disks, fc_boot))
    host.fc_vm(FC_CLONE, "job-1-clone", "created", [])
    host.creating_vm()
    host.save()
    return host


def gc_plan(host: Host, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    rc = main(["gc-plan", "--config", config_file(host), "--json"])
    return rc, json.loads(capsys.readouterr().out)


def planned(result: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i["what"], i["subject"]) for m in result["modules"] for i in m["items"]}


def sim_gc(host: Host) -> dict[str, list[str]] | str:
    from cocoond import sim

    try:
        return {k: sorted(v) for k, v in sim.gc(str(host.root)).items() if v}
    except sim.GCAborted as exc:
        return str(exc)


def test_healthy_host_under_the_simulators_gc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = inside(tmp_path)
    rc, result = gc_plan(host, capsys)
    assert (rc, result["gc"], planned(result)) == (0, "runs", set()), result
    assert sim_gc(host) == {}


#: A field of the wrong type in each DB gc loads (storage/json/json.go:84
#: decodes into typed structs): gc aborts on the first in registration order
#: (cmd/others/handler.go:38-52, gc/orchestrator.go:74-81).
UNDECODABLE = [
    ("oci/db/images.json", ("images", "ubuntu:24.04", "size"), "big", "oci"),
    ("cloudimg/db/images.json", ("images", "my-image", "size"), "8", "cloudimg"),
    ("cloudhypervisor/db/vms.json", ("vms", CH_OCI, "pid"), "4242", "cloud-hypervisor"),
    ("firecracker/db/vms.json", ("vms", FC_VM, "first_booted"), "yes", "firecracker"),
    ("cni/db/networks.json", ("networks", f"{FC_VM}-eth0", "network", "prefix"), "16", "cni"),
    ("snapshot/db/snapshots.json", ("snapshots", SNAP_FC, "nics"), 1.5, "snapshot"),
]


@pytest.mark.parametrize(("relpath", "path", "value", "module"), UNDECODABLE)
def test_a_db_go_cannot_decode_stops_gc(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    relpath: str,
    path: tuple[str, ...],
    value: Any,
    module: str,
) -> None:
    host = inside(tmp_path)
    db = json.loads((host.root / relpath).read_text())
    node = db
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    write(host.root / relpath, go_json(db) + "\n")
    (host.root / "snapshot/localfile/ORPHANDIRXXXXXXXXXXXXXXXXX").mkdir()
    rc, result = gc_plan(host, capsys)
    assert (rc, result["gc"], result["blocker"]["module"], result["blocker"]["path"]) == (
        1,
        "aborts",
        module,
        relpath,
    ), result
    said = sim_gc(host)
    assert isinstance(said, str) and f"snapshot {module}:" in said, said


def test_symlinks_gc_sees_and_does_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ScanFileStems keeps every non-dir entry, a symlink too, and gc
    removes the link (utils/file.go:37-44, images/oci/gc.go:20); ScanSubdirs
    keeps real dirs only (utils/file.go:48-55): a symlinked boot dir, data
    dir or VM run dir is never listed, so never deleted."""
    host = inside(tmp_path)
    target = write(tmp_path / "elsewhere/blob", b"erofs")
    gone_hex, boot_hex = "88" * 32, "99" * 32
    (host.root / "oci/blobs" / f"{gone_hex}.erofs").symlink_to(target)
    (tmp_path / "elsewhere/bootdir").mkdir()
    (host.root / "oci/boot" / boot_hex).symlink_to(tmp_path / "elsewhere/bootdir")
    (tmp_path / "elsewhere/snap").mkdir()
    (host.root / "snapshot/localfile/LINKEDXXXXXXXXXXXXXXXXXXXX").symlink_to(tmp_path / "elsewhere/snap")
    (tmp_path / "elsewhere/run").mkdir()
    (host.run / "cloudhypervisor/LINKEDRUNXXXXXXXXXXXXXXXXX").symlink_to(tmp_path / "elsewhere/run")
    _rc, result = gc_plan(host, capsys)
    assert planned(result) == {("blob", gone_hex)}, result
    assert sim_gc(host) == {"blobs": [gone_hex]}
    assert target.exists() and (host.root / "oci/boot" / boot_hex).is_symlink()


def test_grace_periods_at_their_boundary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`Before(now - 24h)` for pending snapshots and creating VMs
    (snapshot/localfile/gc.go:52, hypervisor/gc.go:47), `Before(now - 1h)`
    for temp entries (images/index.go:163): a minute inside stays, a minute
    past goes."""
    import datetime
    import time

    now = time.time()

    def ts(age: float) -> str:
        return datetime.datetime.fromtimestamp(now - age, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    host = inside(tmp_path)
    snaps = json.loads((host.root / "snapshot/db/snapshots.json").read_text())
    for sid, age in (("PENDINGOLDXXXXXXXXXXXXXXXX", 86400 + 60), ("PENDINGYOUNGXXXXXXXXXXXXXX", 86400 - 60)):
        snaps["snapshots"][sid] = {
            "id": sid,
            "name": "",
            "created_at": ts(age),
            "pending": True,
            "data_dir": str(host.root / "snapshot/localfile" / sid),
        }
        (host.root / "snapshot/localfile" / sid).mkdir()
    write(host.root / "snapshot/db/snapshots.json", go_json(snaps) + "\n")
    vms = json.loads((host.root / "cloudhypervisor/db/vms.json").read_text())
    vms["vms"][CREATING]["updated_at"] = ts(86400 - 60)
    old = dict(
        vms["vms"][CREATING],
        id="CREATINGOLDXXXXXXXXXXXXXXX",
        updated_at=ts(86400 + 60),
        run_dir=str(host.run / "cloudhypervisor/CREATINGOLDXXXXXXXXXXXXXXX"),
        log_dir=str(host.log / "cloudhypervisor/CREATINGOLDXXXXXXXXXXXXXXX"),
    )
    old["config"] = dict(old["config"], name="new-2")
    vms["vms"][old["id"]] = old
    vms["names"]["new-2"] = old["id"]
    (host.run / "cloudhypervisor" / old["id"]).mkdir()
    write(host.root / "cloudhypervisor/db/vms.json", go_json(vms) + "\n")
    # an unreferenced OCI blob makes the oci module collect, and sweep its temp dir
    write(host.root / "oci/blobs" / f"{'ab' * 32}.erofs", b"erofs")
    for name, age in (("pull-old", 3600 + 60), ("pull-young", 3600 - 60)):
        (host.root / "oci/temp" / name).mkdir()
        os.utime(host.root / "oci/temp" / name, (now - age, now - age))
    _rc, result = gc_plan(host, capsys)
    assert planned(result) == {
        ("data_dir", "PENDINGOLDXXXXXXXXXXXXXXXX"),
        ("pending_record", "PENDINGOLDXXXXXXXXXXXXXXXX"),
        ("vm_run_dir", "CREATINGOLDXXXXXXXXXXXXXXX"),
        ("vm_record", "CREATINGOLDXXXXXXXXXXXXXXX"),
        ("blob", "ab" * 32),
        ("temp", "oci/temp/pull-old"),
    }, result
    assert sim_gc(host) == {
        "blobs": ["ab" * 32],
        "data_dirs": ["PENDINGOLDXXXXXXXXXXXXXXXX"],
        "records": ["PENDINGOLDXXXXXXXXXXXXXXXX"],
        "temps": ["oci/temp/pull-old"],
        "vm_dirs": ["run/cloudhypervisor/CREATINGOLDXXXXXXXXXXXXXXX"],
        "vms": ["CREATINGOLDXXXXXXXXXXXXXXX"],
    }


def test_removed_image_and_vm_leftovers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cocoon image rm` leaves the layers and boot dirs no one else names
    (gc deletes both per hex: images/oci/gc.go:19-22); a VM removed by hand
    leaves its run and log dirs and its CNI records (hypervisor/gc.go:64-74,
    network/cni/gc.go:50-64); `db` under the run dir is never an orphan."""
    host = inside(tmp_path)
    extra = "cd" * 32
    write(host.root / "oci/blobs" / f"{extra}.erofs", b"erofs")
    write(host.root / "oci/boot" / extra / "vmlinuz", b"MZ")
    (host.run / "firecracker/db").mkdir()
    vms = json.loads((host.root / "firecracker/db/vms.json").read_text())
    del vms["vms"][FC_CLONE]
    del vms["names"]["job-1-clone"]
    write(host.root / "firecracker/db/vms.json", go_json(vms) + "\n")
    _rc, result = gc_plan(host, capsys)
    assert planned(result) == {
        ("blob", extra),
        ("boot_dir", extra),
        ("vm_run_dir", FC_CLONE),
        ("vm_log_dir", FC_CLONE),
        ("cni_records", FC_CLONE),
    }, result
    said = sim_gc(host)
    assert said == {
        "blobs": [extra],
        "boot_dirs": [extra],
        "networks": [FC_CLONE],
        "vm_dirs": sorted([f"run/firecracker/{FC_CLONE}", f"log/firecracker/{FC_CLONE}"]),
    }, said


@pytest.mark.parametrize("lock", ["snapshot/db/snapshots.lock", "cni/db/networks.lock", "bridge/gc.lock"])
def test_a_lock_file_that_is_a_directory_stops_gc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lock: str
) -> None:
    """gc TryLocks every module's lock file (gofrs/flock opens it O_CREATE|
    O_RDWR): a directory there is a TryLock error, the module is skipped and
    the whole run aborts (gc/orchestrator.go:46-71)."""
    host = inside(tmp_path)
    path = host.root / lock
    if path.exists():
        path.unlink()
    path.mkdir(parents=True)
    (host.root / "snapshot/localfile/ORPHANDIRXXXXXXXXXXXXXXXXX").mkdir()
    rc, result = gc_plan(host, capsys)
    assert (rc, result["gc"], result["blocker"]["path"]) == (1, "aborts", lock), result
    said = sim_gc(host)
    assert isinstance(said, str) and "abort" in said, said


# ------------------------------------------- broken variants, one at a time
def symlink_in_place(path: Path) -> None:
    away = path.parent.parent / f"away-{path.parent.name}-{path.name}"
    path.rename(away)
    path.symlink_to(away)


def only(host: Host) -> tuple[str, str, Finding]:
    found = check(host)
    assert len(found) == 1, found
    (kind, subject), f = next(iter(found.items()))
    return kind, subject, f


def test_fc_sidecar_that_is_a_symlink_fails_only_clone(host: Host) -> None:
    """Restore: the preflight reads the link (firecracker/helper.go:19), the
    copy skips it (hypervisor/utils.go:365) and restoreAfterExtract never
    reads it again (firecracker/restore.go:86-136): restore works. Clone
    loads it from its copy (firecracker/clone.go:37) and fails."""
    symlink_in_place(host.root / "snapshot/localfile" / SNAP_FC / "cocoon.json")
    kind, subject, f = only(host)
    assert (kind, subject, f.fails) == ("clone_blocked", SNAP_FC, ("clone",)), f
    assert "cocoon.json is not a regular file" in f.message


def test_ch_sidecar_that_is_a_symlink_fails_restore_too(host: Host) -> None:
    """CH's restoreAfterExtract loads the sidecar from the run dir after the
    copy (cloudhypervisor/restore.go:97)."""
    symlink_in_place(host.root / "snapshot/localfile" / SNAP_CH_OCI / "cocoon.json")
    kind, subject, f = only(host)
    assert (kind, subject, f.fails) == ("incomplete_data_dir", SNAP_CH_OCI, ("restore", "clone")), f


@pytest.mark.parametrize(
    ("sid", "gone", "said"),
    [
        (SNAP_FC, f"oci/boot/{L2}/vmlinuz", "kernel"),  # FC clone opens vmlinuz (clone.go:66-71)
        (SNAP_CH_OCI, f"oci/boot/{L1}/initrd.img", "initrd"),  # VerifyBaseFiles (utils.go:343-354)
        (SNAP_CH_CLOUD, "firmware/CLOUDHV.fd", "firmware"),
    ],
)
def test_a_base_file_gone_blocks_clone_and_what_else_uses_it(
    host: Host, sid: str, gone: str, said: str
) -> None:
    (host.root / gone).unlink()
    found = check(host)
    assert found[("clone_blocked", sid)].fails == ("clone",)
    assert f"{said} {host.root / gone} is missing" in found[("clone_blocked", sid)].message
    # and the images and VMs that need the same file say so too
    assert {k for k, _ in found} <= {"clone_blocked", "image_unusable", "vm_base_missing", "restore_blocked"}


def test_a_vm_with_a_data_disk_more_than_its_snapshot_cannot_be_restored_to_it(host: Host) -> None:
    """ValidateRoleSequence (hypervisor/utils.go:298-313): the VM may add only
    cidata after the snapshot's disks."""
    vms = json.loads((host.root / "cloudhypervisor/db/vms.json").read_text())
    rec = vms["vms"][CH_OCI]
    rec["storage_configs"].append(
        disk(
            str(host.vm_dir("cloudhypervisor", CH_OCI) / "data-logs.raw"),
            "data",
            ro=False,
            serial="logs",
            fstype="ext4",
        )
    )
    write(host.root / "cloudhypervisor/db/vms.json", go_json(vms) + "\n")
    kind, subject, f = only(host)
    assert (kind, subject, f.fails) == ("restore_blocked", SNAP_CH_OCI, ("restore",)), f


def test_cloud_image_snapshot_taken_after_a_restart_is_healthy(host: Host) -> None:
    """After the first boot and a restart CH runs without cidata, so the
    snapshot's config.json and sidecar lack it while the VM record keeps it
    last (ValidateRoleSequence allows that: hypervisor/utils.go:307-311);
    Snapshot still copies cidata.img into the dir (cloudhypervisor/snapshot.go:110-118)."""
    d = host.root / "snapshot/localfile" / SNAP_CH_CLOUD
    meta = json.loads((d / "cocoon.json").read_text())
    meta["storage_configs"] = [sc for sc in meta["storage_configs"] if sc["role"] != "cidata"]
    write(d / "cocoon.json", go_json(meta), 0o600)
    firmware = meta["boot_config"]["firmware_path"]
    write(d / "config.json", go_json(ch_config(meta["storage_configs"], {"firmware": firmware})))
    assert check(host) == {}


def test_omitempty_fields_absent_and_unnamed_snapshot_are_healthy(host: Host) -> None:
    """A snapshot saved without --name ("name": "" and no names entry:
    localfile.go:91-106), no nics/description/image fields (omitempty,
    types/snapshot.go, types/config.go), its VM without NICs (network_configs
    omitempty)."""
    snaps = json.loads((host.root / "snapshot/db/snapshots.json").read_text())
    rec = snaps["snapshots"][SNAP_CH_OCI]
    rec["name"] = ""
    for key in ("nics", "image", "image_digest", "image_type"):
        rec.pop(key, None)
    del snaps["names"]["api-1-s1"]
    write(host.root / "snapshot/db/snapshots.json", go_json(snaps) + "\n")
    # its VM has no NIC, so the snapshot's nics (omitempty) is absent too
    vms = json.loads((host.root / "cloudhypervisor/db/vms.json").read_text())
    vms["vms"][CH_OCI].pop("network_configs")
    write(host.root / "cloudhypervisor/db/vms.json", go_json(vms) + "\n")
    cni = json.loads((host.root / "cni/db/networks.json").read_text())
    cni["networks"] = {k: v for k, v in cni["networks"].items() if v["vm_id"] != CH_OCI}
    write(host.root / "cni/db/networks.json", go_json(cni) + "\n")
    assert check(host) == {}


def test_restore_refuses_a_nic_count_mismatch(host: Host) -> None:
    """cmd/vm/run.go:171-174: the snapshot's `nics` must equal the VM's
    len(network_configs); clone may add NICs (run.go:268-274) and is not affected."""
    vms = json.loads((host.root / "cloudhypervisor/db/vms.json").read_text())
    nics = vms["vms"][CH_OCI]["network_configs"]
    nics.append({**nics[0], "tap": "tapx1", "mac": "02:00:00:00:00:09"})
    write(host.root / "cloudhypervisor/db/vms.json", go_json(vms) + "\n")
    kind, subject, f = only(host)
    assert (kind, subject, f.fails) == ("restore_blocked", SNAP_CH_OCI, ("restore",)), f
    assert "1 NIC(s), the VM 2" in f.message


def test_a_foreign_data_dir_is_judged_as_restore_reads_it(host: Host, tmp_path: Path) -> None:
    """Restore and clone read the record's data_dir (localfile.go:63-73,227),
    gc and `snapshot rm` snapshot/localfile/<ID>: a record pointing at a
    complete dir elsewhere restores (data_dir_mismatch only), one pointing
    at an incomplete dir does not, whatever the canonical dir holds."""
    import shutil

    moved = tmp_path / "moved" / SNAP_CH_OCI
    shutil.copytree(host.root / "snapshot/localfile" / SNAP_CH_OCI, moved, symlinks=True)
    snaps = json.loads((host.root / "snapshot/db/snapshots.json").read_text())
    snaps["snapshots"][SNAP_CH_OCI]["data_dir"] = str(moved)
    write(host.root / "snapshot/db/snapshots.json", go_json(snaps) + "\n")
    assert set(check(host)) == {("data_dir_mismatch", SNAP_CH_OCI)}
    (moved / "state.json").unlink()
    found = check(host)
    assert set(found) == {("data_dir_mismatch", SNAP_CH_OCI), ("incomplete_data_dir", SNAP_CH_OCI)}, found
    assert found[("incomplete_data_dir", SNAP_CH_OCI)].path == str(moved)
    assert "state.json is missing" in found[("incomplete_data_dir", SNAP_CH_OCI)].message


def test_every_typed_config_field_set_is_healthy(host: Host) -> None:
    """types.Config's other fields (types/config.go:7-17) set as `cocoon vm
    run --network --queue-size --disk-queue-size --no-direct-io` writes them,
    in the snapshot record and the VM record; a VM's socket_path (types/vm.go)."""
    extra = {"queue_size": 256, "disk_queue_size": 128, "network": "cocoon-net", "no_direct_io": True}
    snaps = json.loads((host.root / "snapshot/db/snapshots.json").read_text())
    snaps["snapshots"][SNAP_CH_CLOUD].update(extra)
    write(host.root / "snapshot/db/snapshots.json", go_json(snaps) + "\n")
    vms = json.loads((host.root / "cloudhypervisor/db/vms.json").read_text())
    vms["vms"][CH_CLOUD]["config"].update(extra)
    vms["vms"][CH_CLOUD]["socket_path"] = str(host.vm_dir("cloudhypervisor", CH_CLOUD) / "api.sock")
    write(host.root / "cloudhypervisor/db/vms.json", go_json(vms) + "\n")
    assert check(host) == {}


def test_the_python_api_without_a_run_dir_resolves_it_as_cocoon(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_check without run_dir (no config): $COCOON_RUN_DIR, else
    /var/lib/cocoon/run, as cocoon's viper resolves it (cmd/root.go:54-58)."""

    def fc_findings() -> set[str]:
        result = run_check(Paths(str(host.root)), pending_stale_seconds=3600, temp_stale_seconds=3600)
        return {f.subject for f in result.findings if f.kind == "incomplete_data_dir"}

    assert fc_findings() == {SNAP_FC, SNAP_IMPORTED}  # the fixture's COCOON_RUN_DIR is elsewhere
    monkeypatch.setenv("COCOON_RUN_DIR", str(host.run))
    assert fc_findings() == set()


# ------------------------------- gc and blob names it turns into whole dirs
def du(path: Path) -> int:
    """What `du` counts: allocated blocks of the path and all under it."""
    total = os.lstat(path).st_blocks * 512
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


@pytest.mark.parametrize(
    ("name", "destroyed"), [(".erofs", "oci/boot"), ("..erofs", "oci/boot"), ("...erofs", "oci")]
)
def test_an_oci_blob_name_that_makes_gc_remove_a_whole_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, destroyed: str
) -> None:
    """ScanFileStems (utils/file.go:37-44) takes the stem "", "." or ".."
    from these names; nothing references it, so gc runs
    os.RemoveAll(filepath.Join(oci/boot, stem)) (images/oci/gc.go:21,
    config.go:37-39, images/index.go:172-176): Join cleans it to oci/boot
    itself, or oci/: the boot files (and DB and blobs) of images in use."""
    host = inside(tmp_path)
    write(host.root / "oci/blobs" / name, b"junk")
    found = check(host)
    relpath = f"oci/blobs/{name}"
    assert found[("gc_destroys", relpath)].severity == "error"
    assert f"all of {destroyed}/" in found[("gc_destroys", relpath)].message
    assert {k for k in found if k[0] != "unreferenced_blob"} == {("gc_destroys", relpath)}, found
    rc, result = gc_plan(host, capsys)
    assert rc == 2 and result["gc"] == "runs", result
    oci = next(m for m in result["modules"] if m["module"] == "oci")
    wide = [i for i in oci["items"] if i["what"] == "subtree"]
    assert [(i["subject"], i["bytes"]) for i in wide] == [(destroyed, du(host.root / destroyed))]
    # what the subtree takes with it is not counted twice
    assert all(not i["path"].startswith(wide[0]["path"] + "/") for i in oci["items"])
    said = sim_gc(host)
    assert isinstance(said, dict) and said["subtrees"] == [destroyed], said
    assert not (host.root / destroyed).exists()
    assert not (host.root / "oci/boot" / L1 / "vmlinuz").exists()  # ubuntu:24.04's kernel


def test_odd_blob_names_gc_deletes_only_themselves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cloudimg's gc only os.Removes BlobPath(stem) (cloudimg/gc.go:19):
    `.qcow2` is that file itself. A directory `...erofs` is no stem
    (ScanFileStems skips dirs). Neither is more than itself."""
    host = inside(tmp_path)
    write(host.root / "cloudimg/blobs/.qcow2", b"junk")
    (host.root / "oci/blobs/...erofs").mkdir()
    assert not [k for k in check(host) if k[0] == "gc_destroys"]
    _rc, result = gc_plan(host, capsys)
    assert planned(result) == {("blob", "")}, result
    assert sim_gc(host) == {"blobs": [""]}
    assert (host.root / "oci/blobs/...erofs").is_dir() and (host.root / "oci/boot" / L1).is_dir()


def test_gc_destroys_says_gc_deletes_nothing_while_it_aborts(host: Host) -> None:
    write(host.root / "oci/blobs/...erofs", b"junk")
    write(host.root / "cni/db/networks.json", "{")
    found = check(host)
    assert "currently deletes nothing" in found[("gc_destroys", "oci/blobs/...erofs")].message


# ------------------------------------------ clone and restore on record values
def edit_json(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    write(path, go_json(doc) + "\n", path.stat().st_mode & 0o777)


def set_record(host: Host, sid: str, **values: int) -> None:
    edit_json(host.root / "snapshot/db/snapshots.json", lambda d: d["snapshots"][sid].update(values))


def set_vm(host: Host, backend: str, vm_id: str, **values: int) -> None:
    edit_json(host.root / backend / "db/vms.json", lambda d: d["vms"][vm_id]["config"].update(values))


#: types/vm.go:77-85: the least cpu, memory, storage Validate passes.
MINIMUMS = [("cpu", 1, "--cpu must be at least 1"), ("memory", 512 << 20, "--memory must be at least 512M")]
MINIMUMS += [("storage", 10 << 30, "--storage must be at least 10G")]


@pytest.mark.parametrize(("field", "least", "error"), MINIMUMS)
def test_clone_validates_the_records_values_as_a_new_vms(
    host: Host, field: str, least: int, error: str
) -> None:
    """CloneVMConfigFromFlags inherits the record's cpu, memory, storage and
    validates them (cmd/core/helpers.go:374-398, types/vm.go:77-85): at the
    minimum clone works, one below it fails; restore keeps the VM's values
    and is not affected (the VM has more than the snapshot)."""
    set_record(host, SNAP_CH_OCI, **{field: least})
    assert check(host) == {}
    set_record(host, SNAP_CH_OCI, **{field: least - 1})
    kind, subject, f = only(host)
    assert (kind, subject, f.fails) == ("clone_blocked", SNAP_CH_OCI, ("clone",)), f
    assert error in f.message and f"--{field} " in f.message.split(error)[1], f.message


def test_clone_of_a_firecracker_record_below_the_minimum_takes_no_cpu_or_memory_flag(host: Host) -> None:
    """Firecracker refuses any --memory and a --cpu other than the record's
    (cmd/vm/run.go:531-537): no flag gets past Validate there. The sidecar
    says the same values (else firecracker/clone.go:42-48 refuses too)."""
    set_record(host, SNAP_FC, memory=256 << 20)
    edit_json(
        host.root / "snapshot/localfile" / SNAP_FC / "cocoon.json", lambda d: d.update(memory=256 << 20)
    )
    kind, subject, f = only(host)
    assert (kind, subject) == ("clone_blocked", SNAP_FC), f
    assert "Firecracker takes no --memory" in f.message


@pytest.mark.parametrize("field", ["cpu", "memory"])
def test_firecracker_clone_refuses_a_sidecar_that_differs_from_the_record(host: Host, field: str) -> None:
    """firecracker/clone.go:42-48: `meta.CPU > 0 && vmCfg.CPU != meta.CPU`
    (memory alike); the clone's values are the record's. Absent (0) in the
    sidecar is not checked; equal passes (the healthy host)."""
    sidecar = host.root / "snapshot/localfile" / SNAP_FC / "cocoon.json"
    edit_json(sidecar, lambda d: d.pop(field))
    assert check(host) == {}
    edit_json(sidecar, lambda d: d.update({field: 4 if field == "cpu" else 2 << 30}))
    kind, subject, f = only(host)
    assert (kind, subject, f.fails) == ("clone_blocked", SNAP_FC, ("clone",)), f
    assert f"Firecracker cannot change {'CPU' if field == 'cpu' else 'memory'}" in f.message


@pytest.mark.parametrize("field", ["cpu", "memory", "storage"])
@pytest.mark.parametrize(
    ("backend", "vm_id", "sid"), [("cloudhypervisor", CH_OCI, SNAP_CH_OCI), ("firecracker", FC_VM, SNAP_FC)]
)
def test_restore_refuses_a_vm_below_the_snapshots_values(
    host: Host, field: str, backend: str, vm_id: str, sid: str
) -> None:
    """RestoreVMConfigFromFlags keeps the VM's values and refuses less than
    the snapshot's (cmd/core/helpers.go:404-420, 592-600): equal passes (the
    healthy host), one below fails. Firecracker takes no other cpu or
    memory (firecracker/restore.go:148-153); storage a flag can raise."""
    snap = json.loads((host.root / "snapshot/db/snapshots.json").read_text())["snapshots"][sid][field]
    set_vm(host, backend, vm_id, **{field: snap - 1})
    kind, subject, f = only(host)
    assert (kind, subject, f.fails) == ("restore_blocked", sid, ("restore",)), f
    assert "below snapshot minimum" in f.message
    fixed_by_flag = backend == "cloudhypervisor" or field == "storage"
    assert ("Firecracker takes no other" in f.message) is not fixed_by_flag, f.message


def test_show_says_clone_fails_on_a_record_below_the_minimum(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    set_record(host, SNAP_CH_OCI, cpu=0)
    rc = main(["show", "--config", config_file(host), "--json", SNAP_CH_OCI])
    shown = json.loads(capsys.readouterr().out)
    assert rc == 1, shown
    assert shown["operations"]["clone"]["works"] is False
    assert shown["operations"]["restore"]["works"] is True
    assert any("--cpu must be at least 1" in why for why in shown["operations"]["clone"]["reasons"]), shown


@pytest.mark.parametrize(("sid", "destroyed"), [("", "snapshot/localfile"), ("..", "snapshot")])
def test_a_stale_pending_id_that_makes_gc_remove_a_whole_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sid: str, destroyed: str
) -> None:
    """gc drops pending records over 24 h old with os.RemoveAll(filepath.
    Join(localfile, id)) (snapshot/localfile/gc.go:52,75, config.go:32):
    an ID "" is all of snapshot/localfile, ".." all of snapshot/. Younger
    than 24 h, gc does not take it: only `pending`."""
    host = inside(tmp_path)
    old = "2026-01-01T00:00:00Z"
    edit_json(
        host.root / "snapshot/db/snapshots.json",
        lambda d: d["snapshots"].update(
            {sid: {"id": sid, "name": "", "pending": True, "created_at": _now_rfc3339()}}
        ),
    )
    assert not [k for k in check(host) if k[0] == "gc_destroys"]
    edit_json(host.root / "snapshot/db/snapshots.json", lambda d: d["snapshots"][sid].update(created_at=old))
    found = check(host)
    f = found[("gc_destroys", sid)]
    assert f.severity == "error" and f.path == str(host.root / destroyed), f
    before = du(host.root / destroyed)
    rc, result = gc_plan(host, capsys)
    assert rc == 2, result
    wide = [i for m in result["modules"] for i in m["items"] if i["what"] == "subtree"]
    assert [(i["subject"], i["bytes"]) for i in wide] == [(destroyed, before)]
    said = sim_gc(host)
    assert isinstance(said, dict) and said["subtrees"] == [destroyed], said
    assert not (host.root / destroyed).exists()
