"""A snapshot data dir as cocoon's restore preflight reads it: the sidecar
`cocoon.json` (which disks the snapshot carries) and Cloud Hypervisor's own
`config.json` (which disks CH will open, in order). Pure: bytes in, facts
out; scan.py does the reading.

The rules are cocoon's (cocoonstack/cocoon at 34c6c4a):
- the sidecar decodes as snapshotMeta (hypervisor/cloudhypervisor/snapshot.go:22-25,
  hypervisor/firecracker/snapshot.go:28-33) and passes
  types.ValidateStorageConfigs (types/storage.go:54-96);
- every COW, cidata and data disk it names is in the dir, by basename
  (hypervisor/utils.go:272-292, 480-492: snapshotResidentBasename);
- Cloud Hypervisor: config.json decodes and its disks match the sidecar's in
  number, path and readonly, in order (hypervisor/cloudhypervisor/helper.go:54-76).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from cocoond.errors import DBError
from cocoond.storage.goplain import unmarshal
from cocoond.storage.goschema import (
    BOOL,
    BOOT_CONFIG,
    INT,
    INT64,
    STORAGE_CONFIG,
    STRING,
    GoField,
    GoType,
    f,
    ptr,
    slice_of,
    struct,
)

#: snapshotMeta, Cloud Hypervisor's sidecar (hypervisor/cloudhypervisor/snapshot.go:22-25).
SIDECAR_META = struct(
    "cloudhypervisor.snapshotMeta",
    "hypervisor/cloudhypervisor/snapshot.go:22",
    f("StorageConfigs", "storage_configs", slice_of(ptr(STORAGE_CONFIG))),
    f("BootConfig", "boot_config", ptr(BOOT_CONFIG)),
)
#: Firecracker's own snapshotMeta (hypervisor/firecracker/snapshot.go:28-33):
#: CH's fields plus cpu (int) and memory (int64), decoded whole
#: (snapshot.go:152-155), so `"cpu": "2"` fails Firecracker only.
FC_SIDECAR_META = struct(
    "firecracker.snapshotMeta",
    "hypervisor/firecracker/snapshot.go:28",
    f("StorageConfigs", "storage_configs", slice_of(ptr(STORAGE_CONFIG))),
    f("BootConfig", "boot_config", ptr(BOOT_CONFIG)),
    f("CPU", "cpu", INT),
    f("Memory", "memory", INT64),
)


def _ch_struct(name: str, line: int, *fields: GoField) -> GoType:
    return struct(f"cloudhypervisor.{name}", f"hypervisor/cloudhypervisor/api.go:{line}", *fields)


_CH_RUNTIME_FILE = _ch_struct(
    "chRuntimeFile", 79, f("Mode", "mode", STRING), f("File", "file", STRING), f("Socket", "socket", STRING)
)
#: Cloud Hypervisor's config.json as cocoon decodes it, whole
#: (chVMConfig, hypervisor/cloudhypervisor/api.go:3-90; parseCHConfig,
#: clone.go:223-233): one wrong type anywhere fails restore and clone.
CH_VM_CONFIG = _ch_struct(
    "chVMConfig",
    3,
    f(
        "Payload",
        "payload",
        ptr(
            _ch_struct(
                "chPayload",
                31,
                f("Firmware", "firmware", STRING),
                f("Kernel", "kernel", STRING),
                f("Initramfs", "initramfs", STRING),
                f("Cmdline", "cmdline", STRING),
            )
        ),
    ),
    f(
        "Balloon",
        "balloon",
        ptr(
            _ch_struct(
                "chBalloon",
                68,
                f("ID", "id", STRING),
                f("Size", "size", INT64),
                f("DeflateOnOOM", "deflate_on_oom", BOOL),
                f("FreePageReporting", "free_page_reporting", BOOL),
            )
        ),
    ),
    f("Serial", "serial", ptr(_CH_RUNTIME_FILE)),
    f("Console", "console", ptr(_CH_RUNTIME_FILE)),
    f(
        "CPUs",
        "cpus",
        _ch_struct(
            "chCPUs",
            38,
            f("BootVCPUs", "boot_vcpus", INT),
            f("MaxVCPUs", "max_vcpus", INT),
            f("KVMHyperV", "kvm_hyperv", BOOL),
        ),
    ),
    f(
        "Memory",
        "memory",
        _ch_struct("chMemory", 44, f("Size", "size", INT64), f("HugePages", "hugepages", BOOL)),
    ),
    f(
        "Disks",
        "disks",
        slice_of(
            _ch_struct(
                "chDisk",
                49,
                f("ID", "id", STRING),
                f("Path", "path", STRING),
                f("ReadOnly", "readonly", BOOL),
                f("DirectIO", "direct", BOOL),
                f("Sparse", "sparse", BOOL),
                f("ImageType", "image_type", STRING),
                f("BackingFiles", "backing_files", BOOL),
                f("NumQueues", "num_queues", INT),
                f("QueueSize", "queue_size", INT),
                f(
                    "QueueAffinity",
                    "queue_affinity",
                    slice_of(
                        _ch_struct(
                            "chQueueAffinity",
                            63,
                            f("QueueIndex", "queue_index", INT),
                            f("HostCPUs", "host_cpus", slice_of(INT)),
                        )
                    ),
                ),
                f("Serial", "serial", STRING),
            )
        ),
    ),
    f(
        "Nets",
        "net",
        slice_of(
            _ch_struct(
                "chNet",
                19,
                f("ID", "id", STRING),
                f("Tap", "tap", STRING),
                f("Mac", "mac", STRING),
                f("NumQueues", "num_queues", INT),
                f("QueueSize", "queue_size", INT),
                f("OffloadTSO", "offload_tso", BOOL),
                f("OffloadUFO", "offload_ufo", BOOL),
                f("OffloadCsum", "offload_csum", BOOL),
            )
        ),
    ),
    f("RNG", "rng", _ch_struct("chRNG", 75, f("Src", "src", STRING))),
    f("Watchdog", "watchdog", BOOL),
)

K = TypeVar("K")
V = TypeVar("V")

_DATA_DISK_NAME = re.compile(r"[a-z][a-z0-9_-]{0,19}")
_ROLES_RO = {"layer": True, "cidata": True, "cow": False, "data": False}


@dataclass(frozen=True, slots=True)
class Disk:
    """One entry of the sidecar's storage_configs: what the checks need."""

    path: str
    ro: bool
    role: str
    resident: str  # basename inside the data dir; "" for a shared layer


#: (what, absolute path) of a base file clone `os.Stat`s (hypervisor/utils.go:331-356).
BaseFile = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Sidecar:
    disks: tuple[Disk, ...]
    #: The sidecar's boot_config as (what, path): kernel, initrd, firmware
    #: (Firecracker's clone boots from these: firecracker/clone.go:65-77).
    boot: tuple[BaseFile, ...] = ()
    #: Why Firecracker's own struct rejects the document (None: it takes it).
    fc_problem: str | None = None
    #: Firecracker's (cpu, memory) as its struct decodes them (0: absent).
    fc_machine: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True)
class ChConfig:
    """What Cloud Hypervisor's config.json tells restore and clone."""

    #: Why the preflight rejects it (decode, or disks differ from the sidecar).
    problem: str | None
    #: The payload's boot files, as clone rebuilds them (rebuildBootConfig,
    #: cloudhypervisor/clone.go:235-249): none unless a kernel or firmware is set.
    boot: tuple[BaseFile, ...] = ()


class FormatProblem(ValueError):
    """A sidecar or config.json cocoon's restore would reject; the message
    says why, in a few words."""


def _decoded(data: bytes, t: GoType) -> dict[str, Any]:
    """The document as Go's json.Unmarshal into `t` leaves it (goplain), or
    FormatProblem with Go's error. Cloud Hypervisor's config.json carries
    many fields cocoon's struct does not name: decoded leniently (gofast)."""
    try:
        return unmarshal(data, "", t, lenient=t is CH_VM_CONFIG)
    except DBError as exc:
        raise FormatProblem(exc.reason) from None


# Snapshots of one VM carry the same sidecar and config.json byte for byte
# (the VM's disks), so a host with many snapshots per VM judges each document
# once: at 100k snapshots that was a third of `check`. Keyed by a digest, not
# the bytes, so the daemon keeps a few hundred KB, not the documents.
MEMO_ENTRIES = 4096
_sidecars: dict[bytes, Sidecar | str] = {}
_configs: dict[tuple[bytes, Sidecar], ChConfig] = {}


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _remember(memo: dict[K, V], key: K, value: V) -> V:
    if len(memo) >= MEMO_ENTRIES:
        del memo[next(iter(memo))]  # the oldest
    memo[key] = value
    return value


def parse_sidecar(data: bytes) -> Sidecar:
    """cocoon.json -> its disks, or FormatProblem."""
    key = _digest(data)
    judged = _sidecars.get(key)
    if judged is None:
        try:
            judged = _parse_sidecar(data)
        except FormatProblem as exc:
            judged = str(exc)
        _remember(_sidecars, key, judged)
    if isinstance(judged, str):
        raise FormatProblem(judged)
    return judged


def _parse_sidecar(data: bytes) -> Sidecar:
    # Firecracker's struct is CH's plus two fields: a document it takes, CH's
    # takes too, so the common case decodes once.
    fc_problem = None
    try:
        decoded = _decoded(data, FC_SIDECAR_META)
    except FormatProblem as exc:
        fc_problem = str(exc)
        decoded = _decoded(data, SIDECAR_META)
    disks = []
    for i, sc in enumerate(decoded.get("storage_configs") or []):
        if sc is None:
            raise FormatProblem(f"storage config {i}: nil")
        disks.append(_disk(i, sc))
    boot = decoded.get("boot_config") or {}
    return Sidecar(
        tuple(disks),
        _boot_files(boot.get("kernel_path"), boot.get("initrd_path"), boot.get("firmware_path")),
        fc_problem,
        (decoded.get("cpu") or 0, decoded.get("memory") or 0) if fc_problem is None else (0, 0),
    )


def _boot_files(kernel: str | None, initrd: str | None, firmware: str | None) -> tuple[BaseFile, ...]:
    """VerifyBaseFiles' order, empty paths skipped (hypervisor/utils.go:343-354)."""
    named = (("kernel", kernel), ("initrd", initrd), ("firmware", firmware))
    return tuple((what, path) for what, path in named if path)


def _disk(i: int, sc: dict[str, Any]) -> Disk:
    """types.ValidateStorageConfigs for one entry (its types already checked)."""
    where = f"storage config {i}"
    get = sc.get
    path, ro, role, serial = get("path") or "", get("ro") or False, get("role") or "", get("serial") or ""
    mount, fstype, direct_io = get("mount_point") or "", get("fstype") or "", get("direct_io")
    if role not in _ROLES_RO:
        raise FormatProblem(f"{where}: role must be one of layer/cow/cidata/data, got {role!r}")
    if ro != _ROLES_RO[role]:
        raise FormatProblem(f"{where}: role {role} requires RO={'true' if _ROLES_RO[role] else 'false'}")
    if role != "data":
        if direct_io is not None:
            raise FormatProblem(f"{where}: direct_io only allowed on data disks")
        resident = "" if role == "layer" else path.rpartition("/")[2] or "."
        return Disk(path, ro, role, resident)
    if fstype not in ("ext4", "none"):
        raise FormatProblem(f"data disk {serial!r}: fstype must be ext4 or none, got {fstype!r}")
    if fstype == "none" and mount:
        raise FormatProblem(f"data disk {serial!r}: fstype=none requires mount_point empty")
    if mount and (not mount.startswith("/") or "\0" in mount or "\n" in mount):
        raise FormatProblem(f"data disk {serial!r}: bad mount_point {mount!r}")
    if not _DATA_DISK_NAME.fullmatch(serial) or serial.startswith("cocoon-"):
        raise FormatProblem(f"data disk: serial {serial!r} does not match name rules")
    return Disk(path, ro, role, f"data-{serial}.raw")


def read_config(data: bytes, sidecar: Sidecar) -> ChConfig:
    """CH's config.json against the sidecar, and the boot files it names."""
    key = (_digest(data), sidecar)
    found = _configs.get(key)
    if found is None:
        found = _remember(_configs, key, _read_config(data, sidecar))
    return found


def config_mismatch(data: bytes, sidecar: Sidecar) -> str | None:
    """Why CH's config.json does not match the sidecar (None: it does)."""
    return read_config(data, sidecar).problem


def _read_config(data: bytes, sidecar: Sidecar) -> ChConfig:
    try:
        decoded = _decoded(data, CH_VM_CONFIG)
    except FormatProblem as exc:
        return ChConfig(str(exc))
    payload = decoded.get("payload") or {}
    kernel, firmware = payload.get("kernel") or "", payload.get("firmware") or ""
    boot = _boot_files(kernel, payload.get("initramfs"), firmware) if kernel or firmware else ()
    return ChConfig(_disks_mismatch(decoded.get("disks") or [], sidecar), boot)


def _disks_mismatch(disks: list[Any], sidecar: Sidecar) -> str | None:
    """hypervisor/cloudhypervisor/helper.go:62-76."""
    parsed = [((d or {}).get("path") or "", (d or {}).get("readonly") or False) for d in disks]
    if len(parsed) != len(sidecar.disks):
        return f"{len(sidecar.disks)} disks in cocoon.json vs {len(parsed)} here"
    for i, (disk, (path, ro)) in enumerate(zip(sidecar.disks, parsed, strict=True)):
        if disk.path != path:
            return f"disk[{i}] path {path!r} differs from cocoon.json's {disk.path!r}"
        if disk.ro != ro:
            return f"disk[{i}] readonly={str(ro).lower()} differs from cocoon.json's {str(disk.ro).lower()}"
    return None
