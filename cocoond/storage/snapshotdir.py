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

import json
import re
from dataclasses import dataclass
from typing import Any

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


def _folded(obj: dict[str, Any]) -> dict[str, Any]:
    """An object's keys as Go's decoder matches them to struct fields:
    exactly or under case folding (ASCII, plus U+017F and U+212A, which fold
    to 's' and 'k'), the later key winning as Go assigns in order."""
    joined = "".join(obj)
    if joined.isascii() and (joined.islower() or not joined):
        return obj  # every key is already as Go's struct tags spell them
    return {k.translate(_FOLD).lower(): v for k, v in obj.items()}


_FOLD = {0x17F: "s", 0x212A: "k"}


def _typed(value: Any, kind: type, what: str) -> Any:
    if value is not None and type(value) is not kind:
        label = {str: "a string", bool: "a boolean", list: "an array", dict: "an object"}[kind]
        raise FormatProblem(f"{what} is not {label}")
    return value


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        top = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        raise FormatProblem("not valid JSON") from None
    if top is None:
        return {}
    return dict(_typed(top, dict, what))


def parse_sidecar(data: bytes) -> Sidecar:
    """cocoon.json -> its disks, or FormatProblem."""
    top = _folded(_object(data, "the document"))
    configs = _typed(top.get("storage_configs"), list, "storage_configs") or []
    disks = []
    for i, sc in enumerate(configs):
        if sc is None:
            raise FormatProblem(f"storage config {i}: nil")
        disks.append(_disk(i, _folded(_typed(sc, dict, f"storage config {i}"))))
    return Sidecar(tuple(disks))


def _disk(i: int, sc: dict[str, Any]) -> Disk:
    where = f"storage config {i}"
    get = sc.get
    path, ro, role, serial = get("path"), get("ro"), get("role"), get("serial")
    mount, fstype, direct_io = get("mount_point"), get("fstype"), get("direct_io")
    if not (
        (path is None or type(path) is str)
        and (ro is None or type(ro) is bool)
        and (role is None or type(role) is str)
        and (serial is None or type(serial) is str)
        and (mount is None or type(mount) is str)
        and (fstype is None or type(fstype) is str)
        and (direct_io is None or type(direct_io) is bool)
    ):
        for name, kind in _DISK_TYPES:
            _typed(get(name), kind, f"{where} {name}")
    path, ro, role, serial, mount, fstype = (
        path or "",
        ro or False,
        role or "",
        serial or "",
        mount or "",
        fstype or "",
    )
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


_DISK_TYPES = (
    ("path", str),
    ("ro", bool),
    ("role", str),
    ("serial", str),
    ("mount_point", str),
    ("fstype", str),
    ("direct_io", bool),
)


def config_mismatch(data: bytes, sidecar: Sidecar) -> str | None:
    """Why CH's config.json does not match the sidecar (None: it does)."""
    try:
        top = _folded(_object(data, "the document"))
        disks = _typed(top.get("disks"), list, "disks") or []
        parsed = []
        for i, d in enumerate(disks):
            d = _folded(_typed(d, dict, f"disk {i}") or {})
            path, ro = d.get("path"), d.get("readonly")
            if not ((path is None or type(path) is str) and (ro is None or type(ro) is bool)):
                _typed(path, str, f"disk {i} path")
                _typed(ro, bool, f"disk {i} readonly")
            parsed.append((path or "", ro or False))
    except FormatProblem as exc:
        return str(exc)
    if len(parsed) != len(sidecar.disks):
        return f"{len(sidecar.disks)} disks in cocoon.json vs {len(parsed)} here"
    for i, (disk, (path, ro)) in enumerate(zip(sidecar.disks, parsed, strict=True)):
        if disk.path != path:
            return f"disk[{i}] path {path!r} differs from cocoon.json's {disk.path!r}"
        if disk.ro != ro:
            return f"disk[{i}] readonly={str(ro).lower()} differs from cocoon.json's {str(disk.ro).lower()}"
    return None
