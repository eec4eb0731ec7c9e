"""Cocoon's persisted Go structs, and Go's encoding/json rules for them.

Each struct below is copied from its Go definition (the source line is in
the struct's `source`): field order, JSON names, omitempty, Go types, with
embedded structs promoted in place as encoding/json promotes them. The
simulator reads a DB by `decode` (what Go's json.Unmarshal keeps of it) and
writes it by `encode` (what json.Marshal makes of the Go value), so a DB
goes through the simulator as it goes through cocoon: unknown keys are
dropped, `"Pending"` sets `pending`, a wrong JSON type fails the command.

Decoded values are plain Python: a struct is a dict holding every field
(zero values filled in), a pointer is None or its value, a slice or map is
None (Go's nil) or a list / dict, a time is its RFC 3339 text as Go writes
it back, `map[string]struct{}` is a dict of `{}`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cocoond.sim.gojson import ZERO_TIME, TimeError, normalize_time

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True)
class GoType:
    """A Go type as encoding/json sees it. `kind`: string, int, int64,
    bool, time, set (map[string]struct{}), map, slice, ptr, struct."""

    kind: str
    go: str  # the Go spelling, for error texts
    elem: GoType | None = None
    struct: Struct | None = None


@dataclass(frozen=True)
class Field:
    name: str  # the Go field name
    json: str  # the tag's name
    type: GoType
    omitempty: bool = False


@dataclass(frozen=True)
class Struct:
    go: str  # package.Type
    source: str  # file:line in cocoonstack/cocoon at 34c6c4a
    fields: tuple[Field, ...]
    by_json: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [f.json for f in self.fields]
        if len(set(names)) != len(names):  # Go would drop both; cocoon has no such clash
            raise ValueError(f"{self.go}: duplicate JSON names")
        object.__setattr__(self, "by_json", {f.json: f for f in self.fields})

    @property
    def type(self) -> GoType:
        return GoType("struct", self.go, struct=self)


STRING = GoType("string", "string")
INT = GoType("int", "int")
INT64 = GoType("int64", "int64")
BOOL = GoType("bool", "bool")
TIME = GoType("time", "time.Time")
SET = GoType("set", "map[string]struct {}")
EMPTY_STRUCT = GoType("empty", "struct {}")  # the set's values


def ptr(t: GoType) -> GoType:
    return GoType("ptr", "*" + t.go, elem=t)


def slice_of(t: GoType) -> GoType:
    return GoType("slice", "[]" + t.go, elem=t)


def map_of(t: GoType) -> GoType:
    return GoType("map", "map[string]" + t.go, elem=t)


def f(name: str, tag: str, t: GoType) -> Field:
    json_name, _, opts = tag.partition(",")
    return Field(name, json_name, t, omitempty="omitempty" in opts.split(","))


def embed(s: Struct) -> tuple[Field, ...]:
    """An embedded struct: its fields are promoted in place."""
    return s.fields


def struct(go: str, source: str, *fields: Field | tuple[Field, ...]) -> Struct:
    flat: list[Field] = []
    for item in fields:
        flat.extend(item if isinstance(item, tuple) else (item,))
    return Struct(go, source, tuple(flat))


# ------------------------------------------------------------ cocoon's structs
CONFIG = struct(
    "types.Config",
    "types/config.go:6",
    f("CPU", "cpu,omitempty", INT),
    f("Memory", "memory,omitempty", INT64),
    f("Storage", "storage,omitempty", INT64),
    f("QueueSize", "queue_size,omitempty", INT),
    f("DiskQueueSize", "disk_queue_size,omitempty", INT),
    f("Image", "image,omitempty", STRING),
    f("ImageDigest", "image_digest,omitempty", STRING),
    f("ImageType", "image_type,omitempty", STRING),
    f("Network", "network,omitempty", STRING),
    f("NoDirectIO", "no_direct_io,omitempty", BOOL),
    f("Windows", "windows,omitempty", BOOL),
)
SNAPSHOT_CONFIG = struct(
    "types.SnapshotConfig",
    "types/snapshot.go:7",
    embed(CONFIG),
    f("ID", "id,omitempty", STRING),
    f("Name", "name", STRING),
    f("Description", "description,omitempty", STRING),
    f("ImageBlobIDs", "image_blob_ids,omitempty", SET),
    f("Hypervisor", "hypervisor,omitempty", STRING),
    f("NICs", "nics,omitempty", INT),
)
SNAPSHOT = struct(
    "types.Snapshot", "types/snapshot.go:19", embed(SNAPSHOT_CONFIG), f("CreatedAt", "created_at", TIME)
)
SNAPSHOT_RECORD = struct(
    "snapshot.SnapshotRecord",
    "snapshot/db.go:13",
    embed(SNAPSHOT),
    f("Pending", "pending,omitempty", BOOL),
    f("DataDir", "data_dir,omitempty", STRING),
)
SNAPSHOT_INDEX = struct(
    "snapshot.SnapshotIndex",
    "snapshot/db.go:20",
    f("Snapshots", "snapshots", map_of(ptr(SNAPSHOT_RECORD.type))),
    f("Names", "names", map_of(STRING)),
)
SNAPSHOT_EXPORT = struct(
    "types.SnapshotExport",
    "types/snapshot.go:25",
    f("Config", "config", SNAPSHOT_CONFIG.type),
    f("Version", "version", INT),
)

BOOT_CONFIG = struct(
    "types.BootConfig",
    "types/boot.go:4",
    f("KernelPath", "kernel_path,omitempty", STRING),
    f("InitrdPath", "initrd_path,omitempty", STRING),
    f("Cmdline", "cmdline,omitempty", STRING),
    f("FirmwarePath", "firmware_path,omitempty", STRING),
)
STORAGE_CONFIG = struct(
    "types.StorageConfig",
    "types/storage.go:30",
    f("Path", "path", STRING),
    f("RO", "ro", BOOL),
    f("Serial", "serial", STRING),
    f("Role", "role", STRING),
    f("MountPoint", "mount_point,omitempty", STRING),
    f("FSType", "fstype,omitempty", STRING),
    f("DirectIO", "direct_io,omitempty", ptr(BOOL)),
)
NETWORK = struct(
    "types.Network",
    "types/network.go:32",
    f("IP", "ip,omitempty", STRING),
    f("Gateway", "gateway,omitempty", STRING),
    f("Prefix", "prefix,omitempty", INT),
)
NETWORK_CONFIG = struct(
    "types.NetworkConfig",
    "types/network.go:4",
    f("Tap", "tap", STRING),
    f("Mac", "mac", STRING),
    f("NumQueues", "num_queues", INT),
    f("QueueSize", "queue_size", INT),
    f("Backend", "backend,omitempty", STRING),
    f("BridgeDev", "bridge_dev,omitempty", STRING),
    f("NetnsPath", "netns_path,omitempty", STRING),
    f("Network", "network,omitempty", ptr(NETWORK.type)),
)
VM_CONFIG = struct(
    # OnDemand, User, Password, DataDisks are `json:"-"`: never persisted.
    "types.VMConfig",
    "types/vm.go:29",
    embed(CONFIG),
    f("Name", "name", STRING),
)
VM = struct(
    "types.VM",
    "types/vm.go:40",
    f("ID", "id", STRING),
    f("Hypervisor", "hypervisor,omitempty", STRING),
    f("State", "state", STRING),
    f("Config", "config", VM_CONFIG.type),
    f("PID", "pid", INT),
    f("SocketPath", "socket_path,omitempty", STRING),
    f("NetworkConfigs", "network_configs,omitempty", slice_of(ptr(NETWORK_CONFIG.type))),
    f("StorageConfigs", "storage_configs,omitempty", slice_of(ptr(STORAGE_CONFIG.type))),
    f("FirstBooted", "first_booted", BOOL),
    f("SnapshotIDs", "snapshot_ids,omitempty", SET),
    f("CreatedAt", "created_at", TIME),
    f("UpdatedAt", "updated_at", TIME),
    f("StartedAt", "started_at,omitempty", ptr(TIME)),
    f("StoppedAt", "stopped_at,omitempty", ptr(TIME)),
)
VM_RECORD = struct(
    "hypervisor.VMRecord",
    "hypervisor/db.go:14",
    embed(VM),
    f("BootConfig", "boot_config,omitempty", ptr(BOOT_CONFIG.type)),
    f("ImageBlobIDs", "image_blob_ids,omitempty", SET),
    f("RunDir", "run_dir,omitempty", STRING),
    f("LogDir", "log_dir,omitempty", STRING),
)
VM_INDEX = struct(
    "hypervisor.VMIndex",
    "hypervisor/db.go:28",
    f("VMs", "vms", map_of(ptr(VM_RECORD.type))),
    f("Names", "names", map_of(STRING)),
)

CNI_RECORD = struct(
    # types.Network has a json tag: a field "network", not embedded.
    "cni.networkRecord",
    "network/cni/db.go:9",
    f("Network", "network", NETWORK.type),
    f("ID", "id", STRING),
    f("Type", "type", STRING),
    f("VMID", "vm_id", STRING),
    f("IfName", "if_name", STRING),
)
CNI_INDEX = struct(
    "cni.networkIndex",
    "network/cni/db.go:22",
    f("Networks", "networks", map_of(ptr(CNI_RECORD.type))),
)

CLOUDIMG_ENTRY = struct(
    "cloudimg.imageEntry",
    "images/cloudimg/image.go:13",
    f("Ref", "ref", STRING),
    f("ContentSum", "content_sum", STRING),  # images.Digest, a string
    f("Size", "size", INT64),
    f("CreatedAt", "created_at", TIME),
)
CLOUDIMG_INDEX = struct(
    # imageIndex embeds images.Index[imageEntry] (images/index.go:30).
    "cloudimg.imageIndex",
    "images/cloudimg/image.go:9",
    f("Images", "images", map_of(ptr(CLOUDIMG_ENTRY.type))),
)
OCI_LAYER = struct("oci.layerEntry", "images/oci/image.go:26", f("Digest", "digest", STRING))
OCI_ENTRY = struct(
    "oci.imageEntry",
    "images/oci/image.go:16",
    f("Ref", "ref", STRING),
    f("ManifestDigest", "manifest_digest", STRING),
    f("Layers", "layers", slice_of(OCI_LAYER.type)),
    f("KernelLayer", "kernel_layer", STRING),
    f("InitrdLayer", "initrd_layer", STRING),
    f("Size", "size", INT64),
    f("CreatedAt", "created_at", TIME),
)
OCI_INDEX = struct(
    "oci.imageIndex", "images/oci/image.go:11", f("Images", "images", map_of(ptr(OCI_ENTRY.type)))
)

#: The sidecar cocoon.json of a snapshot data dir.
CH_SNAPSHOT_META = struct(
    "cloudhypervisor.snapshotMeta",
    "hypervisor/cloudhypervisor/snapshot.go:22",
    f("StorageConfigs", "storage_configs", slice_of(ptr(STORAGE_CONFIG.type))),
    f("BootConfig", "boot_config,omitempty", ptr(BOOT_CONFIG.type)),
)
FC_SNAPSHOT_META = struct(
    "firecracker.snapshotMeta",
    "hypervisor/firecracker/snapshot.go:28",
    f("StorageConfigs", "storage_configs", slice_of(ptr(STORAGE_CONFIG.type))),
    f("BootConfig", "boot_config,omitempty", ptr(BOOT_CONFIG.type)),
    f("CPU", "cpu,omitempty", INT),
    f("Memory", "memory,omitempty", INT64),
)


# ------------------------------------------------------------------ encode
def zero(t: GoType) -> Any:
    if t.kind == "string":
        return ""
    if t.kind in ("int", "int64"):
        return 0
    if t.kind == "bool":
        return False
    if t.kind == "time":
        return ZERO_TIME
    if t.kind == "struct":
        assert t.struct is not None
        return {fl.json: zero(fl.type) for fl in t.struct.fields}
    if t.kind == "empty":
        return {}
    return None  # ptr, slice, map, set: nil


def complete(s: Struct, value: dict[str, Any]) -> dict[str, Any]:
    """A struct value with every field present (zero where not given)."""
    out: dict[str, Any] = zero(s.type)
    out.update(value)
    return out


def _is_empty(t: GoType, v: Any) -> bool:
    """encoding/json's isEmptyValue: structs and time.Time are never empty."""
    if t.kind in ("struct", "time"):
        return False
    if t.kind in ("slice", "map", "set"):
        return v is None or len(v) == 0
    return v is None or v == "" or v is False or (v == 0 and type(v) is int)


def encode(t: GoType, v: Any) -> Any:
    """The Go value `v` of type `t` as json.Marshal writes it (JSON-ready,
    dicts in output order). A struct dict may leave fields out (zero)."""
    kind = t.kind
    if kind == "struct":
        assert t.struct is not None
        out: dict[str, Any] = {}
        for fl in t.struct.fields:
            fv = v.get(fl.json) if v is not None else None
            if fv is None and fl.type.kind not in ("ptr", "slice", "map", "set"):
                fv = zero(fl.type)
            if fl.omitempty and _is_empty(fl.type, fv):
                continue
            out[fl.json] = encode(fl.type, fv)
        return out
    if v is None:
        return None
    if kind == "ptr":
        assert t.elem is not None
        return encode(t.elem, v)
    if kind == "set":
        return {k: {} for k in sorted(v)}
    if kind == "map":
        assert t.elem is not None
        elem = t.elem
        return {k: encode(elem, v[k]) for k in sorted(v)}
    if kind == "slice":
        assert t.elem is not None
        return [encode(t.elem, x) for x in v]
    return v


# ------------------------------------------------------------------ decode
class GoDecodeError(ValueError):
    """What json.Unmarshal reports; the whole DB is unreadable to cocoon."""


class _Pairs(list[tuple[str, Any]]):
    """A JSON object with its keys in document order, duplicates kept."""


def _reject_constant(name: str) -> Any:
    raise GoDecodeError(f"invalid character {name[0]!r} looking for beginning of value")


def loads(data: bytes) -> Any:
    """JSON text -> Python, objects as key/value pairs (Go applies every
    key in order, so a later duplicate or folded key wins)."""
    try:
        text = data.decode("utf-8", "replace")
        return json.loads(text, object_pairs_hook=_Pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise GoDecodeError(f"invalid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise GoDecodeError("exceeded max depth") from None


_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_KIND = {str: "string", bool: "bool", int: "number", float: "number", list: "array", _Pairs: "object"}


def fold(name: str) -> str:
    """The key folding Go's decoder uses to match a key to a field when no
    field has exactly that name (bytes.EqualFold: simple case folding, so
    the Kelvin sign matches k and the long s matches s)."""
    return name.lower().replace("\u212a", "k").replace("\u017f", "s")


@dataclass
class _Decoder:
    errors: list[str] = field(default_factory=list)

    def fail(self, v: Any, t: GoType, where: str) -> Any:
        kind = "null" if v is None else _JSON_KIND.get(type(v), "value")
        if type(v) in (int, float):
            kind = f"number {json.dumps(v)}"
        self.errors.append(f"json: cannot unmarshal {kind} into Go {where} of type {t.go}")
        return zero(t)

    def value(self, t: GoType, v: Any, where: str, old: Any) -> Any:
        kind = t.kind
        if v is None:  # null leaves a value as it was; it makes a pointer, map or slice nil
            return None if kind in ("ptr", "slice", "map", "set") else old
        if kind == "ptr":
            assert t.elem is not None
            return self.value(t.elem, v, where, old if old is not None else zero(t.elem))
        if kind == "string":
            return _SURROGATE.sub("\ufffd", v) if type(v) is str else self.fail(v, t, where)
        if kind == "bool":
            return v if type(v) is bool else self.fail(v, t, where)
        if kind in ("int", "int64"):
            if type(v) is not int or not INT64_MIN <= v <= INT64_MAX:
                return self.fail(v, t, where)
            return v
        if kind == "time":
            if type(v) is not str:
                return self.fail(v, t, where)
            try:
                return normalize_time(v)
            except TimeError as exc:
                self.errors.append(f"{where}: {exc}")
                return ZERO_TIME
        if kind == "struct":
            return self.struct(t, v, where, old)
        if kind == "slice":
            assert t.elem is not None
            if type(v) is not list:
                return self.fail(v, t, where)
            return [self.value(t.elem, x, where, zero(t.elem)) for x in v]
        if kind in ("map", "set"):
            if type(v) is not _Pairs:
                return self.fail(v, t, where)
            out: dict[str, Any] = dict(old) if isinstance(old, dict) else {}
            for key, item in v:
                if kind == "set":
                    if item is not None and type(item) is not _Pairs:
                        self.fail(item, EMPTY_STRUCT, where)
                    out[key] = {}
                else:
                    assert t.elem is not None
                    out[key] = self.value(t.elem, item, where, out.get(key, zero(t.elem)))
            return out
        raise AssertionError(kind)

    def struct(self, t: GoType, v: Any, where: str, old: Any) -> Any:
        s = t.struct
        assert s is not None
        if type(v) is not _Pairs:
            return self.fail(v, t, where)
        out = dict(old) if isinstance(old, dict) else zero(t)
        for key, item in v:
            fl = s.by_json.get(key)
            if fl is None:
                folded = fold(key)
                fl = next((x for x in s.fields if fold(x.json) == folded), None)
            if fl is None:
                continue  # unknown keys are dropped
            out[fl.json] = self.value(
                fl.type, item, f"struct field {s.go.split('.')[-1]}.{fl.json}", out[fl.json]
            )
        return out


def decode(s: Struct, data: bytes, path: str) -> dict[str, Any]:
    """json.Unmarshal(data, &v) for a top-level struct; GoDecodeError names
    the file. A top-level null leaves the zero value."""
    try:
        raw = loads(data)
    except GoDecodeError as exc:
        raise GoDecodeError(f"parse {path}: {exc}") from None
    d = _Decoder()
    if raw is None:
        return zero(s.type)  # type: ignore[no-any-return]
    out = d.value(s.type, raw, s.go, zero(s.type))
    if d.errors:
        raise GoDecodeError(f"parse {path}: {d.errors[0]}")
    return out  # type: ignore[no-any-return]


def decode_value(t: GoType, data: bytes, path: str) -> Any:
    """json.Unmarshal into a value of any type (sidecars, envelopes)."""
    try:
        raw = loads(data)
    except GoDecodeError as exc:
        raise GoDecodeError(f"parse {path}: {exc}") from None
    d = _Decoder()
    out = d.value(t, raw, t.go, zero(t))
    if d.errors:
        raise GoDecodeError(f"parse {path}: {d.errors[0]}")
    return out


def init_maps(index: dict[str, Any]) -> dict[str, Any]:
    """storage.Initer: nil top-level maps become empty (utils.InitNamedIndex,
    images.Index.Init)."""
    for k, v in index.items():
        if v is None:
            index[k] = {}
    return index
