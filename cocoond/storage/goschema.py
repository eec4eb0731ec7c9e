"""Cocoon's Go types for its DB files, as encoding/json sees them.

Each struct names the file and line of cocoon's source it copies
(repository cocoonstack/cocoon, commit 34c6c4a); cocoon decodes every DB
with json.Unmarshal into these (storage/json/json.go:84). A struct's JSON
fields are worked out from its Go fields as encoding/json's typeFields does
(encode.go): embedded structs' fields promoted, the shallowest name winning
(a tagged one at equal depth), `json:"-"` fields dropped.

Only what decoding needs is kept: a field's Go name (for embedded structs:
Go names them in its error texts), its JSON name and its type; types carry
the name reflect.Type.String() gives them, which Go's errors print."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property


class Kind(Enum):
    STRING = "string"
    BOOL = "bool"
    INT = "int"  # int and int64: cocoon builds for 64-bit Linux only
    TIME = "time"  # time.Time: a json.Unmarshaler taking an RFC 3339 string
    PTR = "ptr"
    SLICE = "slice"
    MAP = "map"  # keys are strings in every cocoon DB
    STRUCT = "struct"


@dataclass(frozen=True, eq=False)
class GoType:
    kind: Kind
    #: reflect.Type.String(): what Go's UnmarshalTypeError prints.
    name: str
    elem: GoType | None = None
    struct: Struct | None = None


@dataclass(frozen=True, eq=False)
class GoField:
    """A field as declared: Go name, `json` tag name ("" untagged, "-"
    never decoded), type, whether embedded (anonymous)."""

    go_name: str
    tag: str
    type: GoType
    embedded: bool = False
    #: `json:",omitempty"`: Go's json.Marshal leaves the field out when it
    #: holds its zero value. Recorded for the snapshot record's structs,
    #: where the fast decoder (gofast) needs to know what Go writes.
    omitempty: bool = False


@dataclass(frozen=True, eq=False)
class Field:
    """A JSON field of a struct after promotion: its JSON name, type, index
    sequence and the Go names of the embedded fields it is reached through
    (Go 1.24+ prints them in an error's field path)."""

    name: str
    type: GoType
    index: tuple[int, ...]
    via: tuple[str, ...]
    tagged: bool
    omitempty: bool = False


@dataclass(frozen=True, eq=False)
class Struct:
    #: Qualified name, e.g. "snapshot.SnapshotRecord".
    name: str
    #: Where cocoon declares it.
    source: str
    go_fields: tuple[GoField, ...] = field(default=())

    @cached_property
    def short_name(self) -> str:
        """reflect.Type.Name(): Go's errors name the struct this way."""
        return self.name.rpartition(".")[2]

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        return _type_fields(self)

    @cached_property
    def exact(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @cached_property
    def folded(self) -> dict[str, Field]:
        # "For historical reasons, first folded match takes precedence."
        out: dict[str, Field] = {}
        for f in self.fields:
            out.setdefault(fold_name(f.name), f)
        return out

    def lookup(self, key: str) -> Field | None:
        """The field a JSON key sets: an exact match, else a case-insensitive
        one (decode.go object: byExactName, then byFoldedName)."""
        f = self.exact.get(key)
        return f if f is not None else self.folded.get(fold_name(key))


# Go's foldName (fold.go): ASCII letters upper-cased, any other rune folded
# to the smallest rune of its Unicode simple-fold orbit. The only non-ASCII
# runes whose orbit holds an ASCII letter are U+017F (long s: S, s) and
# U+212A (Kelvin sign: K, k), so with ASCII field names these two are all
# the non-ASCII folding that can make a key match.
_FOLD = str.maketrans(
    {**{chr(c): chr(c - 32) for c in range(ord("a"), ord("z") + 1)}, "\u017f": "S", "\u212a": "K"}
)


def fold_name(key: str) -> str:
    return key.translate(_FOLD)


def _type_fields(st: Struct) -> tuple[Field, ...]:
    """encoding/json typeFields (encode.go), breadth first over embedded
    structs, then Go's dominance rule for names found more than once."""
    found: list[Field] = []
    level: list[tuple[Struct, tuple[int, ...], tuple[str, ...]]] = [(st, (), ())]
    seen: set[int] = set()
    while level:
        below: list[tuple[Struct, tuple[int, ...], tuple[str, ...]]] = []
        counts: dict[int, int] = {}
        for s, _, _ in level:
            counts[id(s)] = counts.get(id(s), 0) + 1
        for s, index, via in level:
            if id(s) in seen:
                continue
            seen.add(id(s))
            for i, gf in enumerate(s.go_fields):
                if gf.tag == "-":
                    continue
                inner = gf.type.elem if gf.type.kind is Kind.PTR else gf.type
                if gf.embedded and not gf.tag and inner is not None and inner.struct is not None:
                    below.append((inner.struct, (*index, i), (*via, gf.go_name)))
                    continue
                f = Field(gf.tag or gf.go_name, gf.type, (*index, i), via, bool(gf.tag), gf.omitempty)
                found.append(f)
                if counts[id(s)] > 1:  # reached twice at this depth: annihilates
                    found.append(f)
        level = below
    by_name: dict[str, list[Field]] = {}
    for f in found:
        by_name.setdefault(f.name, []).append(f)
    kept: list[Field] = []
    for same in by_name.values():
        same.sort(key=lambda f: (len(f.index), not f.tagged, f.index))
        if len(same) > 1 and len(same[0].index) == len(same[1].index) and same[0].tagged == same[1].tagged:
            continue  # ambiguous: Go drops the name
        kept.append(same[0])
    return tuple(sorted(kept, key=lambda f: f.index))


# ------------------------------------------------------------------ types
def _scalar(kind: Kind, name: str) -> GoType:
    return GoType(kind, name)


def ptr(t: GoType) -> GoType:
    return GoType(Kind.PTR, "*" + t.name, t)


def slice_of(t: GoType) -> GoType:
    return GoType(Kind.SLICE, "[]" + t.name, t)


def map_of(t: GoType) -> GoType:
    return GoType(Kind.MAP, "map[string]" + t.name, t)


def struct(name: str, source: str, *go_fields: GoField) -> GoType:
    return GoType(Kind.STRUCT, name, struct=Struct(name, source, go_fields))


def f(go_name: str, tag: str, t: GoType, *, omitempty: bool = False) -> GoField:
    return GoField(go_name, tag, t, omitempty=omitempty)


def embed(go_name: str, t: GoType) -> GoField:
    return GoField(go_name, "", t, embedded=True)


STRING = _scalar(Kind.STRING, "string")
BOOL = _scalar(Kind.BOOL, "bool")
INT = _scalar(Kind.INT, "int")
INT64 = _scalar(Kind.INT, "int64")
TIME = _scalar(Kind.TIME, "time.Time")
#: images.Digest (images/digest.go:7): a string type; no UnmarshalJSON.
DIGEST = _scalar(Kind.STRING, "images.Digest")
VM_STATE = _scalar(Kind.STRING, "types.VMState")  # types/vm.go:26
STORAGE_ROLE = _scalar(Kind.STRING, "types.StorageRole")  # types/storage.go:27
#: map[string]struct{}: a Go set, as image_blob_ids is written {"<hex>": {}}.
SET = map_of(struct("struct {}", "(Go's empty struct)"))
#: The range of Go's int and int64.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

# ------------------------------------------------------------- snapshots
CONFIG = struct(
    "types.Config",
    "types/config.go:6",
    f("CPU", "cpu", INT, omitempty=True),
    f("Memory", "memory", INT64, omitempty=True),
    f("Storage", "storage", INT64, omitempty=True),
    f("QueueSize", "queue_size", INT, omitempty=True),
    f("DiskQueueSize", "disk_queue_size", INT, omitempty=True),
    f("Image", "image", STRING, omitempty=True),
    f("ImageDigest", "image_digest", STRING, omitempty=True),
    f("ImageType", "image_type", STRING, omitempty=True),
    f("Network", "network", STRING, omitempty=True),
    f("NoDirectIO", "no_direct_io", BOOL, omitempty=True),
    f("Windows", "windows", BOOL, omitempty=True),
)
SNAPSHOT_CONFIG = struct(
    "types.SnapshotConfig",
    "types/snapshot.go:7",
    embed("Config", CONFIG),
    f("ID", "id", STRING, omitempty=True),
    f("Name", "name", STRING),
    f("Description", "description", STRING, omitempty=True),
    f("ImageBlobIDs", "image_blob_ids", SET, omitempty=True),
    f("Hypervisor", "hypervisor", STRING, omitempty=True),
    f("NICs", "nics", INT, omitempty=True),
)
SNAPSHOT = struct(
    "types.Snapshot",
    "types/snapshot.go:19",
    embed("SnapshotConfig", SNAPSHOT_CONFIG),
    f("CreatedAt", "created_at", TIME),
)
SNAPSHOT_RECORD = struct(
    "snapshot.SnapshotRecord",
    "snapshot/db.go:13",
    embed("Snapshot", SNAPSHOT),
    f("Pending", "pending", BOOL, omitempty=True),
    f("DataDir", "data_dir", STRING, omitempty=True),
)
SNAPSHOT_INDEX = struct(
    "snapshot.SnapshotIndex",
    "snapshot/db.go:20",
    f("Snapshots", "snapshots", map_of(ptr(SNAPSHOT_RECORD))),
    f("Names", "names", map_of(STRING)),
)

# -------------------------------------------------------------------- VMs
NETWORK = struct(
    "types.Network",
    "types/network.go:32",
    f("IP", "ip", STRING),
    f("Gateway", "gateway", STRING),
    f("Prefix", "prefix", INT),
)
NETWORK_CONFIG = struct(
    "types.NetworkConfig",
    "types/network.go:4",
    f("Tap", "tap", STRING),
    f("Mac", "mac", STRING),
    f("NumQueues", "num_queues", INT),
    f("QueueSize", "queue_size", INT),
    f("Backend", "backend", STRING),
    f("BridgeDev", "bridge_dev", STRING),
    f("NetnsPath", "netns_path", STRING),
    f("Network", "network", ptr(NETWORK)),
)
STORAGE_CONFIG = struct(
    "types.StorageConfig",
    "types/storage.go:30",
    f("Path", "path", STRING),
    f("RO", "ro", BOOL),
    f("Serial", "serial", STRING),
    f("Role", "role", STORAGE_ROLE),
    f("MountPoint", "mount_point", STRING),
    f("FSType", "fstype", STRING),
    f("DirectIO", "direct_io", ptr(BOOL)),
)
BOOT_CONFIG = struct(
    "types.BootConfig",
    "types/boot.go:4",
    f("KernelPath", "kernel_path", STRING),
    f("InitrdPath", "initrd_path", STRING),
    f("Cmdline", "cmdline", STRING),
    f("FirmwarePath", "firmware_path", STRING),
)
VM_CONFIG = struct(
    "types.VMConfig",
    "types/vm.go:29",
    embed("Config", CONFIG),
    f("Name", "name", STRING),
    f("OnDemand", "-", BOOL),
    f("User", "-", STRING),
    f("Password", "-", STRING),
    f("DataDisks", "-", STRING),  # []DataDiskSpec, never decoded
)
VM = struct(
    "types.VM",
    "types/vm.go:40",
    f("ID", "id", STRING),
    f("Hypervisor", "hypervisor", STRING),
    f("State", "state", VM_STATE),
    f("Config", "config", VM_CONFIG),
    f("PID", "pid", INT),
    f("SocketPath", "socket_path", STRING),
    f("NetworkConfigs", "network_configs", slice_of(ptr(NETWORK_CONFIG))),
    f("StorageConfigs", "storage_configs", slice_of(ptr(STORAGE_CONFIG))),
    f("FirstBooted", "first_booted", BOOL),
    f("SnapshotIDs", "snapshot_ids", SET),
    f("CreatedAt", "created_at", TIME),
    f("UpdatedAt", "updated_at", TIME),
    f("StartedAt", "started_at", ptr(TIME)),
    f("StoppedAt", "stopped_at", ptr(TIME)),
)
VM_RECORD = struct(
    "hypervisor.VMRecord",
    "hypervisor/db.go:14",
    embed("VM", VM),
    f("BootConfig", "boot_config", ptr(BOOT_CONFIG)),
    f("ImageBlobIDs", "image_blob_ids", SET),
    f("RunDir", "run_dir", STRING),
    f("LogDir", "log_dir", STRING),
)
VM_INDEX = struct(
    "hypervisor.VMIndex",
    "hypervisor/db.go:28",
    f("VMs", "vms", map_of(ptr(VM_RECORD))),
    f("Names", "names", map_of(STRING)),
)


# ------------------------------------------------------------------- CNI
#: network/cni/db.go:9: `types.Network` carries a json tag, so it is a
#: field named "network", not an embedded one.
CNI_RECORD = struct(
    "cni.networkRecord",
    "network/cni/db.go:9",
    f("Network", "network", NETWORK),
    f("ID", "id", STRING),
    f("Type", "type", STRING),
    f("VMID", "vm_id", STRING),
    f("IfName", "if_name", STRING),
)
CNI_INDEX = struct(
    "cni.networkIndex",
    "network/cni/db.go:22",
    f("Networks", "networks", map_of(ptr(CNI_RECORD))),
)


# ----------------------------------------------------------------- images
def _image_index(pkg: str, source: str, entry: GoType) -> GoType:
    """`type imageIndex struct { images.Index[imageEntry] }`, the generic
    base (images/index.go:30) embedded under its Go name "Index"."""
    base = struct(
        f"images.Index[github.com/cocoonstack/cocoon/images/{entry.name}]",
        "images/index.go:30",
        f("Images", "images", map_of(ptr(entry))),
    )
    return struct(f"{pkg}.imageIndex", source, embed("Index", base))


CLOUDIMG_ENTRY = struct(
    "cloudimg.imageEntry",
    "images/cloudimg/image.go:13",
    f("Ref", "ref", STRING),
    f("ContentSum", "content_sum", DIGEST),
    f("Size", "size", INT64),
    f("CreatedAt", "created_at", TIME),
)
CLOUDIMG_INDEX = _image_index("cloudimg", "images/cloudimg/image.go:9", CLOUDIMG_ENTRY)

OCI_LAYER = struct("oci.layerEntry", "images/oci/image.go:26", f("Digest", "digest", DIGEST))
OCI_ENTRY = struct(
    "oci.imageEntry",
    "images/oci/image.go:16",
    f("Ref", "ref", STRING),
    f("ManifestDigest", "manifest_digest", DIGEST),
    f("Layers", "layers", slice_of(OCI_LAYER)),
    f("KernelLayer", "kernel_layer", DIGEST),
    f("InitrdLayer", "initrd_layer", DIGEST),
    f("Size", "size", INT64),
    f("CreatedAt", "created_at", TIME),
)
OCI_INDEX = _image_index("oci", "images/oci/image.go:11", OCI_ENTRY)


def fields_of(t: GoType) -> Struct:
    assert t.struct is not None, t.name
    return t.struct
