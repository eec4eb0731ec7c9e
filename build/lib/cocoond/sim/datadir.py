"""What a snapshot data dir holds, per hypervisor: the files
hypervisor.Snapshot writes into its temp dir, which localfile.Create then
extracts into snapshot/localfile/<ID>/ (one flat tar, utils/tar.go).

Cloud Hypervisor (cloudhypervisor/snapshot.go:30-165): CH's own snapshot
(`config.json`, `state.json`, a memory file named memory-range* —
current CH writes `memory-ranges`), the COW disk (`overlay.qcow2` for a
cloud image, `cow.raw` for an OCI direct boot), data disks as
`data-<serial>.raw`, `cidata.img` when a cloud-image VM has one, and the
sidecar `cocoon.json` (snapshotMeta: the VM's storage configs in
config.json's disk order, and its boot config).

Firecracker (firecracker/snapshot.go:38-144): `vmstate`, `mem`, `cow.raw`,
data disks, and `cocoon.json` (every storage config, the boot config with
vmlinuz for vmlinux and no cmdline, cpu and memory).

Storage configs keep the VM's runtime paths (layers under the root's blob
dirs, COW / cidata / data disks under the VM's run dir); the restore
preflight matches resident disks by basename (hypervisor/utils.go:480-492).
"""

from __future__ import annotations

import copy
import os
import random
from typing import Any

from cocoond.sim import content, gojson, layout, schema
from cocoond.sim.content import FileSpec
from cocoond.sim.fsops import new_id
from cocoond.sim.layout import CH, FC, Hypervisor
from cocoond.sim.vms import COW_SERIAL, launched_disks

#: The memory file current Cloud Hypervisor writes; older ones wrote
#: memory-range-<n>. cocoon accepts any name starting with "memory-range".
MEMORY_FILE = "memory-ranges"


def _disk_spec(sc: dict[str, Any], name: str, fallback_size: int) -> FileSpec:
    """A copy of the VM's disk (ReflinkCopy/SparseCopy: os.Create, 0644)."""
    path = sc["path"]
    if os.path.isfile(path):
        spec = FileSpec.read(path, name)
        spec.mode = 0o644
        return spec
    head = content.qcow2(fallback_size) if name.endswith(".qcow2") else content.ext4_head()
    if sc["role"] == "cidata":
        head = content.cidata(name.encode())
    return FileSpec.sparse(name, fallback_size, head)


def ch_vm_config(rec: dict[str, Any], disks: list[tuple[str, bool]]) -> dict[str, Any]:
    """Cloud Hypervisor's own config.json (its VmConfig as serde writes it).
    cocoon reads only `disks[].path` and `disks[].readonly` of it
    (cloudhypervisor/api.go:3-61, helper.go:54-76); the rest is there so the
    file looks like CH's."""
    cfg = rec["config"]
    boot = rec.get("boot_config") or {}
    by_path = {sc["path"]: sc for sc in rec["storage_configs"] or []}
    cpu = cfg["cpu"]
    queue = cfg["disk_queue_size"] or 512
    disk_list = []
    for i, (path, ro) in enumerate(disks):
        sc = by_path.get(path, {"serial": "", "direct_io": None})
        qcow = path.endswith(".qcow2")
        direct = (
            sc.get("direct_io") if sc.get("direct_io") is not None else (not ro and not cfg["no_direct_io"])
        )
        disk_list.append(
            {
                "path": path,
                "readonly": ro,
                "direct": direct,
                "iommu": False,
                "num_queues": cpu,
                "queue_size": queue,
                "vhost_user": False,
                "vhost_socket": None,
                "rate_limit_group": None,
                "rate_limiter_config": None,
                "id": f"_disk{i}",
                "disable_io_uring": False,
                "disable_aio": False,
                "pci_segment": 0,
                "serial": sc.get("serial") or None,
                "queue_affinity": (
                    [{"queue_index": q, "host_cpus": [q]} for q in range(cpu)] if cpu > 1 and not ro else None
                ),
                "image_type": "Qcow2" if qcow else "Raw",
                "backing_files": qcow and not ro,
                "sparse": not qcow and not ro,
            }
        )
    nets = [
        {
            "tap": n["tap"],
            "ip": "192.168.249.1",
            "mask": "255.255.255.0",
            "mac": n["mac"],
            "host_mac": None,
            "mtu": None,
            "iommu": False,
            "num_queues": n["num_queues"],
            "queue_size": n["queue_size"],
            "vhost_user": False,
            "vhost_socket": None,
            "vhost_mode": "Client",
            "id": f"_net{len(disks) + i}",
            "fds": None,
            "rate_limiter_config": None,
            "pci_segment": 0,
            "offload_tso": True,
            "offload_ufo": True,
            "offload_csum": True,
        }
        for i, n in enumerate(rec["network_configs"] or [])
    ]
    direct = bool(boot.get("kernel_path"))
    run = rec["run_dir"]
    payload: dict[str, Any] = {"firmware": None, "kernel": None, "cmdline": None, "initramfs": None}
    if direct:
        payload.update(
            kernel=boot["kernel_path"], cmdline=boot.get("cmdline"), initramfs=boot.get("initrd_path")
        )
    else:
        payload["firmware"] = boot.get("firmware_path")
    memory = cfg["memory"]
    return {
        "cpus": {
            "boot_vcpus": cpu,
            "max_vcpus": os.cpu_count() or 1,
            "topology": None,
            "kvm_hyperv": cfg["windows"],
            "max_phys_bits": 46,
            "affinity": None,
            "features": {"amx": False},
        },
        "memory": {
            "size": memory,
            "mergeable": False,
            "hotplug_method": "Acpi",
            "hotplug_size": None,
            "hotplugged_size": None,
            "shared": False,
            "hugepages": False,
            "hugepage_size": None,
            "prefault": False,
            "zones": None,
            "thp": True,
        },
        "payload": payload,
        "rate_limit_groups": None,
        "disks": disk_list,
        "net": nets or None,
        "rng": {"src": "/dev/urandom", "iommu": False},
        "balloon": (
            {"size": memory // 4, "deflate_on_oom": True, "free_page_reporting": True}
            if memory >= 256 << 20 and not cfg["windows"]
            else None
        ),
        "fs": None,
        "pmem": None,
        "serial": (
            {"file": None, "mode": "Off", "iommu": False, "socket": None}
            if direct
            else {"file": None, "mode": "Socket", "iommu": False, "socket": os.path.join(run, "console.sock")}
        ),
        "console": {"file": None, "mode": "Pty" if direct else "Off", "iommu": False, "socket": None},
        "debug_console": {"file": None, "mode": "Off", "iobase": 233},
        "devices": None,
        "user_devices": None,
        "vdpa": None,
        "vsock": None,
        "pvpanic": False,
        "iommu": False,
        "sgx_epc": None,
        "numa": None,
        "watchdog": True,
        "pci_segments": None,
        "platform": None,
        "tpm": None,
        "landlock_enable": False,
        "landlock_rules": None,
    }


def ch_state(rec: dict[str, Any]) -> bytes:
    """A stand-in for CH's state.json (device and vCPU state)."""
    state = {"snapshots": {"vm": {"id": "vm", "state": rec["id"]}, "cpu-manager": {}, "device-manager": {}}}
    return gojson.marshal(state)


def ch_sidecar(rec: dict[str, Any], disks: list[tuple[str, bool]]) -> bytes:
    """writeSnapshotMeta (cloudhypervisor/snapshot.go:138-165)."""
    by_path = {sc["path"]: sc for sc in rec["storage_configs"] or []}
    storage = [copy.deepcopy(by_path[path]) for path, _ in disks]
    meta = {"storage_configs": storage, "boot_config": copy.deepcopy(rec.get("boot_config"))}
    return gojson.marshal(schema.encode(schema.CH_SNAPSHOT_META.type, meta))


def fc_sidecar(rec: dict[str, Any]) -> bytes:
    """saveSnapshotMeta (firecracker/snapshot.go:124-144)."""
    boot = copy.deepcopy(rec.get("boot_config"))
    if boot is not None:
        kernel = boot.get("kernel_path") or ""
        if os.path.basename(kernel) == "vmlinux":
            boot["kernel_path"] = os.path.join(os.path.dirname(kernel), "vmlinuz")
        boot["cmdline"] = ""
    storage = [copy.deepcopy(sc) for sc in rec["storage_configs"]] if rec["storage_configs"] else None
    meta = {
        "storage_configs": storage,
        "boot_config": boot,
        "cpu": rec["config"]["cpu"],
        "memory": rec["config"]["memory"],
    }
    return gojson.marshal(schema.encode(schema.FC_SNAPSHOT_META.type, meta))


def snapshot_specs(rec: dict[str, Any], memory_file: str = MEMORY_FILE) -> list[FileSpec]:
    """The files hypervisor.Snapshot leaves in its temp dir for this VM, in
    the order the tar carries them (os.ReadDir: by name)."""
    hv = layout.hypervisor(rec["hypervisor"])
    return sorted(_ch_specs(rec, memory_file) if hv is CH else _fc_specs(rec), key=lambda s: s.name)


def _resident(rec: dict[str, Any], disks: list[dict[str, Any]]) -> list[FileSpec]:
    """The COW copy and each data disk (ReflinkCopy, ReflinkDataDisks)."""
    out = []
    for sc in disks:
        if sc["role"] == "cow":
            out.append(_disk_spec(sc, os.path.basename(sc["path"]), rec["config"]["storage"]))
        elif sc["role"] == "data":
            out.append(_disk_spec(sc, f"data-{sc['serial']}.raw", 64 << 20))
    return out


def _ch_specs(rec: dict[str, Any], memory_file: str) -> list[FileSpec]:
    disks = launched_disks(rec)
    cfg = rec["config"]
    specs = [
        FileSpec.of("config.json", gojson.marshal(ch_vm_config(rec, disks))),
        FileSpec.of("state.json", ch_state(rec)),
        FileSpec.sparse(memory_file, cfg["memory"]),
    ]
    direct = bool((rec.get("boot_config") or {}).get("kernel_path"))
    cow = "cow.raw" if direct else "overlay.qcow2"  # ch.cowPath (cloudhypervisor/utils.go:27-32)
    specs.append(_disk_spec({"path": os.path.join(rec["run_dir"], cow), "role": "cow"}, cow, cfg["storage"]))
    specs += _resident(rec, [sc for sc in rec["storage_configs"] or [] if sc["role"] == "data"])
    cidata = os.path.join(rec["run_dir"], "cidata.img")
    if not direct and not cfg["windows"]:
        if os.path.isfile(cidata):
            specs.append(_disk_spec({"path": cidata, "role": "cidata"}, "cidata.img", 0))
        elif any(sc["role"] == "cidata" for sc in rec["storage_configs"] or []):
            # A stand-in VM (no run dir): its cidata disk as the sidecar names it.
            specs.append(FileSpec.of("cidata.img", content.cidata(rec["id"].encode())))
    specs.append(FileSpec.of("cocoon.json", ch_sidecar(rec, disks), 0o600))
    return specs


def _fc_specs(rec: dict[str, Any]) -> list[FileSpec]:
    cfg = rec["config"]
    specs = [
        FileSpec.of("vmstate", b"FCVMSTATE\0" + rec["id"].encode() + bytes(256)),
        FileSpec.sparse("mem", cfg["memory"]),
    ]
    specs += _resident(rec, rec["storage_configs"] or [])
    specs.append(FileSpec.of("cocoon.json", fc_sidecar(rec), 0o600))
    return specs


def stand_in_vm(
    root: str,
    hv: Hypervisor = CH,
    blobs: list[str] | None = None,
    rng: random.Random | None = None,
    cpu: int = 2,
    memory: int = 1 << 30,
    storage: int = 10 << 30,
) -> dict[str, Any]:
    """A VM record that is in no DB and has no run dir: the source of a
    snapshot made on another host (imports, the epoch registry, a person
    recreating a data dir). Cloud Hypervisor: a cloud-image VM with
    cidata; Firecracker: an OCI VM."""
    vm_id = new_id(rng)
    run = layout.vm_run_dir(root, hv, vm_id)
    blobs = list(blobs or [])
    sc_cow: dict[str, Any]
    boot: dict[str, Any]
    if hv is CH and len(blobs) <= 1:
        sc_cow = {"path": os.path.join(run, "overlay.qcow2"), "ro": False, "serial": "", "role": "cow"}
        storage_configs = [
            sc_cow,
            {"path": os.path.join(run, "cidata.img"), "ro": True, "serial": "", "role": "cidata"},
        ]
        boot = {"firmware_path": layout.firmware_path(root)}
        kind = "cloudimg"
        layers = [layout.CLOUDIMG.blob(root, h) for h in blobs]
    else:
        layers = [layout.OCI.blob(root, h) for h in blobs]
        sc_cow = {"path": os.path.join(run, "cow.raw"), "ro": False, "serial": COW_SERIAL, "role": "cow"}
        storage_configs = [
            *(
                {"path": p, "ro": True, "serial": f"cocoon-layer{j}", "role": "layer"}
                for j, p in enumerate(layers)
            ),
            sc_cow,
        ]
        last = blobs[-1] if blobs else new_id(rng).lower()
        boot = {"kernel_path": layout.kernel_path(root, last), "initrd_path": layout.initrd_path(root, last)}
        if hv is FC:
            boot["kernel_path"] = os.path.join(os.path.dirname(boot["kernel_path"]), "vmlinux")
        boot["cmdline"] = "console=hvc0 boot=cocoon-overlay rw"
        kind = "oci"
    now = gojson.go_time()
    return schema.complete(
        schema.VM_RECORD,
        {
            "id": vm_id,
            "hypervisor": hv.name,
            "state": "running",
            "config": {
                "cpu": cpu,
                "memory": memory,
                "storage": storage,
                "queue_size": 0,
                "disk_queue_size": 0,
                "image": "",
                "image_digest": "",
                "image_type": kind if blobs else "",
                "network": "",
                "no_direct_io": False,
                "windows": False,
                "name": "vm-" + vm_id[:8].lower(),
            },
            "network_configs": None,
            "storage_configs": storage_configs,
            "first_booted": False,  # as at its launch: a cloud image's cidata is attached
            "snapshot_ids": None,
            "created_at": now,
            "updated_at": now,
            "boot_config": boot,
            "image_blob_ids": {h: {} for h in blobs},
            "run_dir": run,
            "log_dir": layout.vm_log_dir(root, hv, vm_id),
        },
    )


def _root_of(directory: str) -> str:
    parent = os.path.dirname(os.path.abspath(directory))
    if os.path.basename(parent) == "localfile":
        return os.path.dirname(os.path.dirname(parent))
    return parent


def write_snapshot_files(
    directory: str,
    size: int | None = None,
    *,
    hypervisor: str = CH.name,
    blobs: list[str] | None = None,
    memory_file: str = MEMORY_FILE,
) -> None:
    """A complete data dir for a snapshot of a stand-in VM, written straight
    into `directory` (created 0750): what a person restoring a data dir from
    a backup, or an import, puts there. `size` is the memory size."""
    hv = layout.hypervisor(hypervisor)
    os.makedirs(directory, 0o750, exist_ok=True)
    rec = stand_in_vm(_root_of(directory), hv, blobs, memory=size or 1 << 30)
    rec["config"]["memory"] = size or rec["config"]["memory"]
    content.write_specs(directory, snapshot_specs(rec, memory_file))
