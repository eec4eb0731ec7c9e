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
    STORAGE_CONFIG,
    STRING,
    GoType,
    f,
    ptr,
    slice_of,
    struct,
)

#: snapshotMeta, the sidecar (hypervisor/cloudhypervisor/snapshot.go:22-25; the
#: Firecracker one, firecracker/snapshot.go:28-33, adds cpu and memory).
SIDECAR_META = struct(
    "cloudhypervisor.snapshotMeta",
    "hypervisor/cloudhypervisor/snapshot.go:22",
    f("StorageConfigs", "storage_configs", slice_of(ptr(STORAGE_CONFIG))),
    f("BootConfig", "boot_config", ptr(BOOT_CONFIG)),
)
#: The part of Cloud Hypervisor's config.json the preflight compares
#: (hypervisor/cloudhypervisor/api.go:3-17, chDisk at api.go:49-61).
CH_VM_CONFIG = struct(
    "cloudhypervisor.chVMConfig",
    "hypervisor/cloudhypervisor/api.go:3",
    f(
        "Disks",
        "disks",
        slice_of(
            struct(
                "cloudhypervisor.chDisk",
                "hypervisor/cloudhypervisor/api.go:49",
                f("Path", "path", STRING),
                f("ReadOnly", "readonly", BOOL),
            )
        ),
    ),
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


@dataclass(frozen=True, slots=True)
class Sidecar:
    disks: tuple[Disk, ...]


class FormatProblem(ValueError):
    """A sidecar or config.json cocoon's restore would reject; the message
    says why, in a few words."""


def _decoded(data: bytes, t: GoType) -> dict[str, Any]:
    """The document as Go's json.Unmarshal into `t` leaves it (goplain), or
    FormatProblem with Go's error."""
    try:
        return unmarshal(data, "", t)
    except DBError as exc:
        raise FormatProblem(exc.reason) from None


# Snapshots of one VM carry the same sidecar and config.json byte for byte
# (the VM's disks), so a host with many snapshots per VM judges each document
# once: at 100k snapshots that was a third of `check`. Keyed by a digest, not
# the bytes, so the daemon keeps a few hundred KB, not the documents.
MEMO_ENTRIES = 4096
_sidecars: dict[bytes, Sidecar | str] = {}
_configs: dict[tuple[bytes, Sidecar], str | None] = {}


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
    configs = _decoded(data, SIDECAR_META).get("storage_configs") or []
    disks = []
    for i, sc in enumerate(configs):
        if sc is None:
            raise FormatProblem(f"storage config {i}: nil")
        disks.append(_disk(i, sc))
    return Sidecar(tuple(disks))


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


def config_mismatch(data: bytes, sidecar: Sidecar) -> str | None:
    """Why CH's config.json does not match the sidecar (None: it does)."""
    key = (_digest(data), sidecar)
    if key in _configs:
        return _configs[key]
    return _remember(_configs, key, _config_mismatch(data, sidecar))


def _config_mismatch(data: bytes, sidecar: Sidecar) -> str | None:
    try:
        disks = _decoded(data, CH_VM_CONFIG).get("disks") or []
    except FormatProblem as exc:
        return str(exc)
    parsed = [((d or {}).get("path") or "", (d or {}).get("readonly") or False) for d in disks]
    if len(parsed) != len(sidecar.disks):
        return f"{len(sidecar.disks)} disks in cocoon.json vs {len(parsed)} here"
    for i, (disk, (path, ro)) in enumerate(zip(sidecar.disks, parsed, strict=True)):
        if disk.path != path:
            return f"disk[{i}] path {path!r} differs from cocoon.json's {disk.path!r}"
        if disk.ro != ro:
            return f"disk[{i}] readonly={str(ro).lower()} differs from cocoon.json's {str(disk.ro).lower()}"
    return None
