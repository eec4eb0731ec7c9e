"""VMs in both hypervisor DBs: create, start, rm, and the snapshot ID a VM
records (hypervisor/backend.go, hypervisor/cloudhypervisor/create.go,
hypervisor/firecracker/create.go, cmd/vm/run.go createVM).

create: ReserveVM (a "creating" record under vms.lock) -> the run and log
dirs -> disks (cloudimg: overlay.qcow2 backed by the blob, data disks,
cidata.img; OCI: cow.raw, data disks; Firecracker also extracts vmlinux next
to the OCI kernel) -> FinalizeCreate (the full record, state "created").
start: Cloud Hypervisor's argv saved as `cmdline` in the run dir, then the
record marked running and first_booted. rm: the dirs first, the record after.

A VM made from explicit blob hexes (`blobs=`) instead of an image ref is a
stand-in for one whose image was there when it was made: its storage names
those blobs without checking them, as cocoon did at the time.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cocoond.sim import content, gojson, layout
from cocoond.sim.fsops import SimError, create_temp, ensure_dirs, new_id
from cocoond.sim.images import Crash, digest_hex, install_firmware, lookup, valid_file
from cocoond.sim.layout import CH, CLOUDIMG, FC, OCI, Hypervisor, ImageBackend
from cocoond.sim.schema import VM_RECORD, complete
from cocoond.sim.stores import image_store, vm_store

CREATE_CRASH_POINTS = ("reserve", "dirs", "disks")
RM_CRASH_POINTS = ("rmdirs",)
COW_SERIAL = "cocoon-cow"  # hypervisor/backend.go:28
LAYER_SERIAL = "cocoon-layer"  # images/oci/oci.go:23
DEFAULT_DISK_QUEUE_SIZE = 512  # hypervisor/cloudhypervisor/args.go:18
NET_QUEUE_SIZE = 512  # network/utils.go:9
MIN_BALLOON_MEMORY = 256 << 20  # hypervisor/backend.go:38
_DATA_DISK_NAME = re.compile(r"[a-z][a-z0-9_-]{0,19}")  # types/storage.go:23


@dataclass(frozen=True)
class DataDisk:
    """One --data-disk name=..,size=..,fstype=..,mount=.. (DataDiskSpec)."""

    name: str
    size: int = 64 << 20
    fstype: str = "ext4"
    mount_point: str = ""

    @classmethod
    def parse(cls, spec: str) -> DataDisk:
        """NAME[:SIZE[:FSTYPE[:MOUNT]]]"""
        parts = spec.split(":")
        size = int(parts[1]) if len(parts) > 1 and parts[1] else 64 << 20
        return cls(parts[0], size, parts[2] if len(parts) > 2 else "ext4", parts[3] if len(parts) > 3 else "")


def find_vm(root: str, ref: str) -> tuple[Hypervisor, str, dict[str, Any]]:
    """resolveVMOwner: the one backend whose DB resolves `ref` (exact ID,
    name, ID prefix of 3+), with the record. Like cocoon it initialises
    every hypervisor backend to look (cmd/core/helpers.go:127-145)."""
    ensure_dirs(*layout.backend_dirs(root, hypervisors=layout.HYPERVISORS))
    hits = []
    for hv in layout.HYPERVISORS:
        with vm_store(root, hv).with_() as idx:
            vm_id = resolve_ref(idx["vms"], idx["names"], ref)
            if vm_id is not None:
                hits.append((hv, vm_id, idx["vms"][vm_id]))
    if not hits:
        raise SimError(f"VM {ref!r}: VM not found")
    if len(hits) > 1:
        raise SimError(f"VM {ref}: VM ref resolves to multiple backends")
    return hits[0]


def resolve_ref(items: dict[str, Any], names: dict[str, str], ref: str) -> str | None:
    """utils.ResolveRef (utils/resolve.go:10-32): exact ID, name, unique ID
    prefix of 3+ characters; None when not found (SimError when ambiguous)."""
    if items.get(ref) is not None:
        return ref
    sid = names.get(ref)
    if sid is not None and items.get(sid) is not None:
        return sid
    if len(ref) >= 3:
        hits = [i for i in items if i.startswith(ref)]
        if len(hits) > 1:
            raise SimError(f"ambiguous ref {ref!r}: multiple matches")
        if hits:
            return hits[0]
    return None


# ------------------------------------------------------------------- create
def _resolve_image(root: str, image: str) -> tuple[list[dict[str, Any]], dict[str, Any], str, str]:
    """cmdcore.ResolveImage over both backends' Config."""
    found = []
    for backend in layout.IMAGE_BACKENDS:
        with image_store(root, backend).with_() as idx:
            hit = lookup(backend, idx["images"], image)
        if hit is not None:
            found.append((backend, hit[1]))
    if not found:
        raise SimError(f"image {image!r} not resolved: not found in oci or cloudimg")
    if len(found) > 1:
        raise SimError(
            f"image {image}: image ref resolves to multiple backends (matched both oci and cloudimg)"
        )
    backend, entry = found[0]
    return image_storage(root, backend, entry, check=True)


def image_storage(
    root: str, backend: ImageBackend, entry: dict[str, Any], check: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any], str, str]:
    """An image backend's Config for one VM (cloudimg/cloudimg.go:98-133,
    oci/oci.go:109-152): storage configs, boot config, digest, image type."""
    if backend is CLOUDIMG:
        blob = CLOUDIMG.blob(root, digest_hex(entry["content_sum"]))
        if check and not valid_file(blob):
            raise SimError(f"blob invalid for VM ({entry['content_sum']})")
        storage = [{"path": blob, "ro": True, "serial": "cocoon-base", "role": "layer"}]
        return storage, {"firmware_path": layout.firmware_path(root)}, entry["content_sum"], "cloudimg"
    storage = []
    for j, la in enumerate(entry["layers"] or []):
        blob = OCI.blob(root, digest_hex(la["digest"]))
        if check and not valid_file(blob):
            raise SimError(f"blob invalid for VM layer {j} ({la['digest']})")
        storage.append({"path": blob, "ro": True, "serial": f"{LAYER_SERIAL}{j}", "role": "layer"})
    boot = {
        "kernel_path": layout.kernel_path(root, digest_hex(entry["kernel_layer"])),
        "initrd_path": layout.initrd_path(root, digest_hex(entry["initrd_layer"])),
    }
    for what in ("kernel_path", "initrd_path"):
        if check and not valid_file(boot[what]):
            raise SimError(f"{what.split('_')[0]} invalid for VM ({boot[what]})")
    return storage, boot, entry["manifest_digest"], "oci"


def _stand_in_image(
    root: str, hv: Hypervisor, blobs: Sequence[str], image_type: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, str]:
    kind = image_type or ("oci" if hv is FC or len(blobs) > 1 else "cloudimg")
    if kind == "cloudimg":
        storage = [
            {"path": CLOUDIMG.blob(root, h), "ro": True, "serial": "cocoon-base", "role": "layer"}
            for h in blobs[:1]
        ]
        return storage, {"firmware_path": layout.firmware_path(root)}, kind
    storage = [
        {"path": OCI.blob(root, h), "ro": True, "serial": f"{LAYER_SERIAL}{j}", "role": "layer"}
        for j, h in enumerate(blobs)
    ]
    if not blobs:
        return storage, None, kind
    last = blobs[-1]
    return (
        storage,
        {"kernel_path": layout.kernel_path(root, last), "initrd_path": layout.initrd_path(root, last)},
        kind,
    )


def extract_blob_ids(storage: list[dict[str, Any]], boot: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """hypervisor.ExtractBlobIDs (hypervisor/utils.go:59-76)."""
    ids: dict[str, dict[str, Any]] = {}
    if boot and boot.get("kernel_path"):
        for sc in storage:
            if sc["role"] == "layer":
                ids[_blob_hex_from_path(sc["path"])] = {}
        ids[os.path.basename(os.path.dirname(boot["kernel_path"]))] = {}
        if boot.get("initrd_path"):
            ids[os.path.basename(os.path.dirname(boot["initrd_path"]))] = {}
    elif storage:
        ids[_blob_hex_from_path(storage[0]["path"])] = {}
    return ids


def _blob_hex_from_path(path: str) -> str:
    base = os.path.basename(path)
    stem, dot, _ = base.rpartition(".")
    return stem if dot else base


def _network_configs(
    vm_id: str, nics: int, cpu: int, queue_size: int, rng: random.Random
) -> list[dict[str, Any]]:
    """What the CNI provider returns (network/cni/create.go:93-101)."""
    out = []
    for i in range(nics):
        mac = "02:" + ":".join(f"{rng.getrandbits(8):02x}" for _ in range(5))
        out.append(
            {
                "tap": f"tap{vm_id[:8]}-{i}",
                "mac": mac,
                "num_queues": 2 if cpu <= 1 else cpu * 2,
                "queue_size": queue_size if queue_size > 0 else NET_QUEUE_SIZE,
                "backend": "cni",
                "netns_path": f"/var/run/netns/cocoon-{vm_id}",
                "network": {
                    "ip": f"10.88.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
                    "gateway": "10.88.0.1",
                    "prefix": 16,
                },
            }
        )
    return out


def _layer_devs(storage: list[dict[str, Any]]) -> list[str]:
    return [sc["serial"] for sc in storage if sc["role"] == "layer"]


def _cmdline(hv: Hypervisor, storage: list[dict[str, Any]], nets: list[dict[str, Any]], name: str) -> str:
    """buildCmdline (cloudhypervisor/clone.go:312-325, firecracker/create.go:215-248)."""
    ip_params = ""
    if nets:
        ip_params = " net.ifnames=0 cocoon.hostname=" + name
        for i, nic in enumerate(nets):
            net = nic.get("network") or {}
            if net.get("ip"):
                ip_params += (
                    f" ip={net['ip']}::{net['gateway']}:255.255.0.0:{name}:eth{i}:off:8.8.8.8:1.1.1.1"
                )
    if hv is CH:
        layers = ",".join(reversed(_layer_devs(storage)))
        return (
            f"console=hvc0 loglevel=3 boot=cocoon-overlay cocoon.layers={layers} cocoon.cow={COW_SERIAL} "
            f"clocksource=kvm-clock rw{ip_params}"
        )
    n = len(_layer_devs(storage))
    devs = ",".join(f"/dev/vd{chr(ord('a') + n - 1 - i)}" for i in range(n))
    return (
        "console=ttyS0 reboot=k loglevel=3 pci=off i8042.noaux 8250.nr_uarts=1 boot=cocoon-overlay "
        f"cocoon.layers={devs} cocoon.cow=/dev/vd{chr(ord('a') + n)} clocksource=kvm-clock rw{ip_params}"
    )


def _ensure_vmlinux(kernel_path: str) -> str:
    """EnsureVmlinux (firecracker/create.go:103-155): an ELF kernel is used as
    is; otherwise vmlinux is decompressed next to it (via .vmlinux-<n>)."""
    try:
        with open(kernel_path, "rb") as fh:
            data = fh.read()
    except OSError:
        return kernel_path  # a stand-in VM's kernel that is not there
    if data[:4] == content.ELF_MAGIC:
        return kernel_path
    target = os.path.join(os.path.dirname(kernel_path), "vmlinux")
    if os.path.exists(target):
        return target
    fd, tmp = create_temp(os.path.dirname(kernel_path), ".vmlinux-*")
    try:
        os.write(fd, content.vmlinux(data))
    finally:
        os.close(fd)
    os.rename(tmp, target)
    return target


def vm_config(
    name: str,
    image: str,
    digest: str,
    kind: str,
    cpu: int = 2,
    memory: int = 1 << 30,
    storage: int = 10 << 30,
    queue_size: int = 0,
    disk_queue_size: int = 0,
    network: str = "",
    no_direct_io: bool = False,
    windows: bool = False,
) -> dict[str, Any]:
    """types.VMConfig as VMConfigFromFlags fills it (cmd/core/helpers.go:299-352),
    with ImageDigest and ImageType set by the image backend's Config."""
    return {
        "cpu": cpu,
        "memory": memory,
        "storage": storage,
        "queue_size": queue_size,
        "disk_queue_size": disk_queue_size,
        "image": image,
        "image_digest": digest,
        "image_type": kind if image else "",
        "network": network,
        "no_direct_io": no_direct_io,
        "windows": windows,
        "name": name,
    }


def build_vm(
    root: str,
    hv: Hypervisor,
    vm_id: str,
    config: dict[str, Any],
    base_storage: list[dict[str, Any]],
    boot: dict[str, Any] | None,
    data_disks: Sequence[DataDisk],
    nics: int,
    rng: random.Random,
    crash_at: str | None = None,
) -> dict[str, Any]:
    """The run and log dirs, the disks, and the record FinalizeCreate
    writes (backend.go:511-526): state "created"."""
    run, logs = layout.vm_run_dir(root, hv, vm_id), layout.vm_log_dir(root, hv, vm_id)
    ensure_dirs(run, logs)
    if crash_at == "dirs":
        raise Crash
    direct = bool(boot and boot.get("kernel_path"))
    boot_copy = dict(boot) if boot else None
    prepared = _prepare_disks(root, hv, vm_id, config, base_storage, boot_copy, data_disks, direct)
    nets = _network_configs(vm_id, nics, config["cpu"], config["queue_size"], rng)
    if boot_copy is not None and direct:
        boot_copy["cmdline"] = _cmdline(hv, prepared, nets, config["name"])
    if crash_at == "disks":
        raise Crash
    now = gojson.go_time()
    return complete(
        VM_RECORD,
        {
            "id": vm_id,
            "hypervisor": hv.name,
            "state": "created",
            "config": config,
            "network_configs": nets,
            "storage_configs": prepared,
            "created_at": now,
            "updated_at": now,
            "boot_config": boot_copy,
            "image_blob_ids": extract_blob_ids(base_storage, boot),
            "run_dir": run,
            "log_dir": logs,
        },
    )


def create_vm(
    root: str,
    *,
    hypervisor: str | Hypervisor = CH,
    image: str | None = None,
    blobs: Sequence[str] = (),
    image_type: str | None = None,
    name: str | None = None,
    cpu: int = 2,
    memory: int = 1 << 30,
    storage: int = 10 << 30,
    queue_size: int = 0,
    disk_queue_size: int = 0,
    network: str = "",
    no_direct_io: bool = False,
    windows: bool = False,
    nics: int = 1,
    data_disks: Sequence[DataDisk] = (),
    crash_at: str | None = None,
    start: bool = True,
    vm_id: str | None = None,
    rng: random.Random | None = None,
) -> str:
    """`cocoon vm create` (and `vm run`'s start); returns the VM ID."""
    hv = hypervisor if isinstance(hypervisor, Hypervisor) else layout.hypervisor(hypervisor)
    rng = rng or random.Random()
    # cmdcore.InitBackends + initNetwork: both image backends, this hypervisor, CNI.
    ensure_dirs(*layout.backend_dirs(root, images=True, hypervisors=(hv,), cni=True))
    boot: dict[str, Any] | None
    if image:
        base_storage, boot, digest, kind = _resolve_image(root, image)
    else:
        base_storage, boot, kind = _stand_in_image(root, hv, blobs, image_type)
        digest = ""
    check_backend(hv, kind, bool(boot and boot.get("kernel_path")), windows)
    if boot and boot.get("firmware_path"):
        install_firmware(root)
    vm_id = vm_id or new_id(rng)
    name = name or ("vm-" + vm_id[:8].lower())
    config = vm_config(
        name,
        image or "",
        digest,
        kind,
        cpu,
        memory,
        storage,
        queue_size,
        disk_queue_size,
        network,
        no_direct_io,
        windows,
    )
    store = vm_store(root, hv)
    try:
        now = gojson.go_time()
        with store.update() as idx:  # ReserveVM (backend.go:180-201)
            if idx["vms"].get(vm_id) is not None:
                raise SimError(f"reserve VM record: id collision {vm_id!r} (retry)")
            if name in idx["names"]:
                raise SimError(
                    f"reserve VM record: vm name {name!r} already exists (id: {idx['names'][name]})"
                )
            idx["vms"][vm_id] = {
                "id": vm_id,
                "hypervisor": hv.name,
                "state": "creating",
                "config": config,
                "created_at": now,
                "updated_at": now,
                "image_blob_ids": extract_blob_ids(base_storage, boot),
                "run_dir": layout.vm_run_dir(root, hv, vm_id),
                "log_dir": layout.vm_log_dir(root, hv, vm_id),
            }
            idx["names"][name] = vm_id
        if crash_at == "reserve":
            raise Crash
        try:
            rec = build_vm(root, hv, vm_id, config, base_storage, boot, data_disks, nics, rng, crash_at)
        except SimError:
            shutil.rmtree(layout.vm_run_dir(root, hv, vm_id), ignore_errors=True)
            shutil.rmtree(layout.vm_log_dir(root, hv, vm_id), ignore_errors=True)
            _rollback(store, vm_id, name)
            raise
        with store.update() as idx:  # FinalizeCreate
            existing = idx["vms"].get(vm_id)
            if existing is None:
                raise SimError(f"finalize VM record: vm {vm_id} disappeared from index")
            idx["vms"][vm_id] = {**rec, "run_dir": existing["run_dir"], "log_dir": existing["log_dir"]}
    except Crash:
        return vm_id
    if start:
        start_vm(root, vm_id)
    return vm_id


def check_backend(hv: Hypervisor, kind: str, direct: bool, windows: bool) -> None:
    """createVM's backend/boot-mode checks (cmd/vm/run.go:316-350)."""
    if hv is FC and windows:
        raise SimError(
            "--fc and --windows are mutually exclusive: Firecracker does not support Windows guests"
        )
    if windows and direct:
        raise SimError("--windows requires cloudimg (UEFI boot), got OCI direct boot image")
    if hv is FC and not direct and kind == "cloudimg":
        raise SimError(
            "--fc requires OCI images (direct kernel boot): Firecracker does not support UEFI boot"
        )


def _rollback(store: Any, vm_id: str, name: str) -> None:
    with store.update() as idx:
        idx["vms"].pop(vm_id, None)
        if idx["names"].get(name) == vm_id:
            del idx["names"][name]


def _prepare_disks(
    root: str,
    hv: Hypervisor,
    vm_id: str,
    config: dict[str, Any],
    storage: list[dict[str, Any]],
    boot: dict[str, Any] | None,
    data_disks: Sequence[DataDisk],
    direct: bool,
) -> list[dict[str, Any]]:
    """prepareOCI / prepareCloudimg (cloudhypervisor/create.go:81-141,
    firecracker/create.go:74-100)."""
    run = layout.vm_run_dir(root, hv, vm_id)
    if direct or hv is FC:
        content.FileSpec.sparse("cow.raw", config["storage"], content.ext4_head(), 0o600).write(run)
        out = [
            *storage,
            {"path": os.path.join(run, "cow.raw"), "ro": False, "serial": COW_SERIAL, "role": "cow"},
        ]
        out += _data_disks(run, data_disks)
        if hv is FC and boot and boot.get("kernel_path"):
            boot["kernel_path"] = _ensure_vmlinux(boot["kernel_path"])
        return out
    backing = storage[0]["path"] if storage else ""
    overlay = content.qcow2(config["storage"], 3, backing=backing)
    content.FileSpec.of("overlay.qcow2", overlay).write(run)
    out = [{"path": os.path.join(run, "overlay.qcow2"), "ro": False, "serial": "", "role": "cow"}]
    out += _data_disks(run, data_disks)
    if config["windows"]:
        return out
    content.FileSpec.of("cidata.img", content.cidata(vm_id.encode()), 0o600).write(run)
    out.append({"path": os.path.join(run, "cidata.img"), "ro": True, "serial": "", "role": "cidata"})
    return out


def _data_disks(run: str, disks: Sequence[DataDisk]) -> list[dict[str, Any]]:
    """hypervisor.PrepareDataDisks (hypervisor/utils.go:210-252)."""
    out = []
    seen: set[str] = set()
    for i, d in enumerate(disks):
        if d.name in seen:
            raise SimError(f"data disk: name {d.name!r} duplicated")
        if d.fstype not in ("ext4", "none"):
            raise SimError(f"data disk {d.name}: fstype {d.fstype!r} not supported")
        if d.size < 16 << 20:
            raise SimError(f"data disk {d.name}: size {d.size} below {16 << 20} minimum")
        if not _DATA_DISK_NAME.fullmatch(d.name) or d.name.startswith("cocoon-"):
            raise SimError(f"data disk {i}: invalid name {d.name!r}")
        seen.add(d.name)
        head = content.ext4_head() if d.fstype == "ext4" else b""
        content.FileSpec.sparse(f"data-{d.name}.raw", d.size, head, 0o600).write(run)
        sc: dict[str, Any] = {
            "path": os.path.join(run, f"data-{d.name}.raw"),
            "ro": False,
            "serial": d.name,
            "role": "data",
            "mount_point": d.mount_point,
            "fstype": d.fstype,
        }
        out.append(sc)
    return out


# -------------------------------------------------------------------- start
def active_disks(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """activeDisks (cloudhypervisor/args.go:278-288): cidata is left out
    once a cloud-image VM has booted before."""
    direct = bool((rec.get("boot_config") or {}).get("kernel_path"))
    skip = rec["first_booted"] and not direct
    return [sc for sc in rec["storage_configs"] or [] if not (skip and sc["role"] == "cidata")]


def ch_disk_args(rec: dict[str, Any], disks: list[dict[str, Any]]) -> list[str]:
    """storageConfigToDisk + diskToCLIArg (cloudhypervisor/args.go:175-229)."""
    cfg = rec["config"]
    cpu, queue = cfg["cpu"], cfg["disk_queue_size"] or DEFAULT_DISK_QUEUE_SIZE
    args = []
    for sc in disks:
        direct = (
            sc["direct_io"] if sc.get("direct_io") is not None else (not sc["ro"] and not cfg["no_direct_io"])
        )
        kv = ["path=" + sc["path"]]
        if sc["ro"]:
            kv.append("readonly=on")
        if direct:
            kv.append("direct=on")
        qcow = sc["path"].endswith(".qcow2")
        if not qcow and not sc["ro"]:
            kv.append("sparse=on")
        kv.append("image_type=" + ("qcow2" if qcow else "raw"))
        if qcow and not sc["ro"]:
            kv.append("backing_files=on")
        kv += [f"num_queues={cpu}", f"queue_size={queue}"]
        if cpu > 1 and not sc["ro"]:
            kv.append("queue_affinity=[" + ",".join(f"{i}@[{i}]" for i in range(cpu)) + "]")
        if sc["serial"]:
            kv.append("serial=" + sc["serial"])
        args.append(",".join(kv))
    return args


def ch_argv(rec: dict[str, Any]) -> list[str]:
    """buildVMConfig + buildCLIArgs (cloudhypervisor/args.go:44-161)."""
    cfg, run = rec["config"], rec["run_dir"]
    boot = rec.get("boot_config") or {}
    direct = bool(boot.get("kernel_path"))
    cpus = f"boot={cfg['cpu']},max={os.cpu_count() or 1}" + (",kvm_hyperv=on" if cfg["windows"] else "")
    argv = [
        "--api-socket",
        os.path.join(run, "api.sock"),
        "--cpus",
        cpus,
        "--memory",
        f"size={cfg['memory']}",
    ]
    disks = ch_disk_args(rec, active_disks(rec))
    if disks:
        argv += ["--disk", *disks]
    if direct:
        argv += [
            "--kernel",
            boot["kernel_path"],
            "--initramfs",
            boot.get("initrd_path", ""),
            "--cmdline",
            boot.get("cmdline", ""),
        ]
    elif boot.get("firmware_path"):
        argv += ["--firmware", boot["firmware_path"]]
    nets = [
        f"tap={n['tap']},mac={n['mac']},num_queues={n['num_queues']},queue_size={n['queue_size']},"
        "offload_tso=on,offload_ufo=on,offload_csum=on"
        for n in rec["network_configs"] or []
    ]
    if nets:
        argv += ["--net", *nets]
    argv += ["--rng", "src=/dev/urandom", "--watchdog"]
    if cfg["memory"] >= MIN_BALLOON_MEMORY and not cfg["windows"]:
        argv += ["--balloon", f"size={cfg['memory'] // 4},deflate_on_oom=on,free_page_reporting=on"]
    if direct:
        argv += ["--serial", "off", "--console", "pty"]
    else:
        argv += ["--serial", "socket=" + os.path.join(run, "console.sock"), "--console", "off"]
    return argv


def launched_disks(rec: dict[str, Any]) -> list[tuple[str, bool]]:
    """(path, readonly) of the disks the running Cloud Hypervisor was
    started with, from the argv saved in the run dir's `cmdline`."""
    try:
        with open(os.path.join(rec["run_dir"], "cmdline")) as fh:
            argv = fh.read().split(" ")
    except OSError:
        return [(sc["path"], sc["ro"]) for sc in active_disks(rec)]
    out = []
    if "--disk" in argv:
        for arg in argv[argv.index("--disk") + 1 :]:
            if arg.startswith("--"):
                break
            kv = dict(part.split("=", 1) for part in arg.split(",") if "=" in part)
            out.append((kv["path"], kv.get("readonly") == "on"))
    return out


def start_vm(root: str, vm_ref: str) -> None:
    """`cocoon vm start`: Cloud Hypervisor's argv saved as `cmdline` in the
    run dir (cloudhypervisor/utils.go:18-23), then BatchMarkStarted
    (backend.go:359-377)."""
    hv, vm_id, rec = find_vm(root, vm_ref)
    if rec["state"] == "running":
        return
    with vm_store(root, hv).update() as idx:
        r = idx["vms"].get(vm_id)
        if r is not None:
            mark_started(r)


def mark_started(rec: dict[str, Any]) -> None:
    """A VM launched: CH's argv saved (0600), the record running, first_booted."""
    if rec["hypervisor"] == CH.name:
        line = "cloud-hypervisor " + " ".join(ch_argv(rec))
        content.FileSpec.of("cmdline", line.encode(), 0o600).write(rec["run_dir"])
    now = gojson.go_time()
    rec.update(state="running", started_at=now, updated_at=now, first_booted=True)


# ----------------------------------------------------------------------- rm
def rm_vm(root: str, ref: str, crash_at: str | None = None) -> str:
    """`cocoon vm rm`: the dirs first, the record after (cloudhypervisor.go:51-86)."""
    ensure_dirs(*layout.backend_dirs(root, hypervisors=layout.HYPERVISORS))
    hv, vm_id, rec = find_vm(root, ref)
    shutil.rmtree(rec["run_dir"], ignore_errors=True)
    shutil.rmtree(rec["log_dir"], ignore_errors=True)
    if crash_at == "rmdirs":
        return vm_id
    with vm_store(root, hv).update() as idx:
        r = idx["vms"].get(vm_id)
        if r is None:
            raise SimError("VM not found")
        idx["names"].pop(r["config"]["name"], None)
        del idx["vms"][vm_id]
    return vm_id


def record_snapshot(root: str, hv: Hypervisor, vm_id: str, snap_id: str) -> None:
    """Backend.RecordSnapshot (backend.go:424-446)."""
    with vm_store(root, hv).update() as idx:
        r = idx["vms"].get(vm_id)
        if r is None:
            raise SimError(f"record snapshot on VM: vm {vm_id} disappeared from index")
        r["snapshot_ids"] = {**(r["snapshot_ids"] or {}), snap_id: {}}


def list_vms(root: str) -> list[tuple[Hypervisor, str, dict[str, Any]]]:
    out = []
    for hv in layout.HYPERVISORS:
        with vm_store(root, hv).with_() as idx:
            out += [(hv, vm_id, rec) for vm_id, rec in idx["vms"].items() if rec is not None]
    return out
