"""The disk and the DBs as the core sees them: plain values that the shell
(scan.py) fills in and the index keeps. Nothing here does I/O.

Each value keeps only what a finding rule needs, because the daemon holds
one per snapshot (100k of them on a big host)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from cocoond.errors import DBError
from cocoond.storage.dbspans import DBDelta, Spans
from cocoond.storage.records import SnapshotDB

if TYPE_CHECKING:
    from cocoond.core.gcmodel import VMDirs

#: What an entry of snapshot/localfile/ is:
#: - "dir": a real directory, which cocoon's gc lists (`ScanSubdirs` keeps
#:   `DirEntry.IsDir()` only, cocoon utils/file.go:46-55);
#: - "link": a symlink to a directory, which restore follows (os.Stat) but
#:   gc never sees;
#: - "other": a file, a dangling symlink, anything else.
EntryKind = Literal["dir", "link", "other"]

#: Names in a data dir that cocoon's restore preflight stats.
SIDECAR = "cocoon.json"
CH_CONFIG = "config.json"
CH_STATE = "state.json"
FC_VMSTATE = "vmstate"
FC_MEM = "mem"
#: Firecracker's clone renames the copied cow.raw into place (firecracker/clone.go:51-55).
FC_COW = "cow.raw"
SNAPSHOT_FILES = frozenset({SIDECAR, CH_CONFIG, CH_STATE, FC_VMSTATE, FC_MEM, FC_COW})
#: Stands for "some entry's name starts with memory-range" in
#: `DirContents.present` (CH checks names only: cloudhypervisor/helper.go:92-103).
MEMORY_RANGE = "memory-range*"


@dataclass(frozen=True, slots=True)
class DirContents:
    """What cocoon's restore preflight would find in a data dir. Equal
    contents are shared (most dirs look alike), so keep it hashable."""

    #: Which of SNAPSHOT_FILES exist (following symlinks), plus MEMORY_RANGE.
    present: frozenset[str]
    #: cocoon.json exists but cannot be used (unreadable, not Go-decodable,
    #: fails types.ValidateStorageConfigs).
    sidecar_problem: str | None = None
    #: Snapshot-resident disks (COW, cidata, data) the sidecar names that are
    #: not in the dir.
    missing_disks: tuple[str, ...] = ()
    #: config.json exists but is unusable, or its disks differ from the
    #: sidecar's (Cloud Hypervisor only checks this).
    config_problem: str | None = None
    #: cocoond may not read the dir or its sidecar (why): restore-ability is
    #: unknown, which is said once for all such dirs, not guessed per dir.
    unreadable: str | None = None
    #: cocoon.json decodes as CH's snapshotMeta but not as Firecracker's own
    #: (cpu int, memory int64: firecracker/snapshot.go:28-33, 152-155).
    fc_sidecar_problem: str | None = None
    #: Firecracker's trusted-path check fails (firecracker/snapshot.go:156-168):
    #: which path, said as an operator reads it.
    fc_untrusted: str | None = None
    #: Entries restore or clone need that exist (os.Stat passes) but are not
    #: regular files, which the copy step skips (hypervisor/utils.go:364-367):
    #: (name, what) with what one of "file" (a named snapshot file or
    #: memory-range*) or the disk role ("cow", "cidata", "data").
    irregular: tuple[tuple[str, str], ...] = ()
    #: The disk roles the sidecar names, in its order (clone needs a COW with
    #: CH, no cidata with FC; restore matches them against the VM's).
    roles: tuple[str, ...] = ()
    #: Absolute paths clone os.Stats (hypervisor/utils.go:331-356), as
    #: (what, path): the sidecar's layers, then the boot files. CH takes
    #: them from config.json's payload, FC from the sidecar's boot_config.
    ch_base: tuple[tuple[str, str], ...] = ()
    fc_base: tuple[tuple[str, str], ...] = ()
    #: Firecracker's sidecar (cpu, memory) (omitempty: 0): clone refuses a
    #: record whose values differ from them (firecracker/clone.go:42-48).
    fc_machine: tuple[int, int] = (0, 0)


class DirState(NamedTuple):
    """One entry of snapshot/localfile/."""

    kind: EntryKind
    #: The entry's own mtime (ns): the shell re-inspects contents only when
    #: it moved.
    mtime_ns: int = 0
    #: Inspected contents (dirs of committed records); None: not looked at.
    contents: DirContents | None = None
    #: Newest mtime (epoch seconds) of the dir and its direct entries, for
    #: dirs without a record: an import still being written is not an orphan.
    last_write: float | None = None


@dataclass(frozen=True, slots=True)
class BlobFile:
    """An entry of a blob dir, named `<hex><suffix>`."""

    relpath: str
    hex: str
    #: os.Stat (following links) says regular and non-empty: cocoon boots
    #: from it (utils.ValidFile, utils/file.go:30-33).
    usable: bool
    #: Not a directory: gc's ScanFileStems lists it, a symlink included
    #: (utils/file.go:35-44), so an unreferenced one is deleted.
    gc_sees: bool = True
    symlink: bool = False
    #: A regular file of size 0 (said in the message: cocoon refuses it).
    empty: bool = False
    #: What deleting this entry frees (its own allocated blocks).
    disk_bytes: int = 0


#: What os.Stat says of a file a snapshot, image or VM names by absolute path.
MISSING, PRESENT, VALID = 0, 1, 2  # VALID: a regular file of size > 0 (utils.ValidFile)
#: (what, absolute path), e.g. ("kernel", "/var/lib/cocoon/oci/boot/<hex>/vmlinuz").
NamedFile = tuple[str, str]


class ImageClaim(NamedTuple):
    """What `cocoon vm run` of one image DB entry needs (images/oci/oci.go:109-152,
    images/cloudimg/cloudimg.go:98-133)."""

    ref: str
    #: Why creating a VM from it fails before any file is looked at.
    problem: str | None
    #: Files that must be valid (regular, size > 0), in cocoon's order.
    files: tuple[NamedFile, ...]


class VMClaim(NamedTuple):
    """What one VM record names: the snapshots it lists, the base files its
    hypervisor opens when it (re)launches it."""

    vm_id: str
    name: str
    state: str
    snapshot_ids: frozenset[str]
    base: tuple[NamedFile, ...]
    #: image_blob_ids: for a cloud-image VM, the blob its qcow2 overlay is
    #: backed by (hypervisor/utils.go:71-73); judged like missing_blob.
    blobs: frozenset[str] = frozenset()
    #: The roles of its storage_configs, in order (restore's ValidateRoleSequence).
    roles: tuple[str, ...] = ()
    #: len(network_configs): restore compares it with the snapshot's `nics`.
    nics: int = 0
    #: config's (cpu, memory, storage): restore keeps them, and refuses less
    #: than the snapshot's (cmd/core/helpers.go:404-420, 592-600).
    machine: tuple[int, int, int] = (0, 0, 0)


class ClaimRefs(frozenset[str]):
    """An image or VM DB's blob hexes (what pins blobs), carrying what its
    entries need, decoded in the same pass (decoding a VM DB is most of its
    cost)."""

    claims: tuple[ImageClaim | VMClaim, ...]

    def __new__(cls, hexes: frozenset[str] | set[str], claims: tuple[ImageClaim | VMClaim, ...]) -> ClaimRefs:
        made = super().__new__(cls, hexes)
        made.claims = claims
        return made


class CreatingVM(NamedTuple):
    """A VM record still in `creating`: gc drops it once its updated_at is
    older than 24 h (hypervisor/gc.go:47, backend.go:31)."""

    name: str
    #: updated_at as epoch seconds (Go's zero time, or none: -inf).
    updated: float
    #: Where gc removes its dirs from: the record's own run_dir and log_dir
    #: (hypervisor/backend.go:402-406).
    run_dir: str
    log_dir: str


class RefFacts(NamedTuple):
    """What a VM or CNI DB gives cocoon's gc beyond the blobs it pins."""

    refs: frozenset[str]
    #: VM DB: the IDs of its non-nil records (ActiveVMIDs); CNI DB: the
    #: vm_id of each non-nil network record.
    ids: frozenset[str] = frozenset()
    creating: Mapping[str, CreatingVM] = {}
    #: VM DB: what each VM needs to (re)launch (rules: vm_base_missing...).
    claims: tuple[VMClaim, ...] = ()


class TempEntry(NamedTuple):
    """A leftover of an interrupted write or download."""

    mtime: float
    #: True where `cocoon gc` removes old ones (cloudimg/temp, oci/temp);
    #: False in the DB dirs, where nothing of cocoon's ever does.
    gc_removes: bool


class RecFacts(NamedTuple):
    """The little the index keeps of a snapshot record."""

    name: str
    pending: bool
    created: float  # epoch seconds; only meaningful while pending
    blobs: frozenset[str]
    id_mismatch: str | None  # the record's own `id` when it differs from its key
    #: None: data_dir is snapshot/localfile/<ID> under this root; "": no
    #: data_dir recorded; else the foreign path restore would read.
    recorded: str | None
    hypervisor: str
    #: `nics` (omitempty: 0): restore refuses a VM with another NIC count
    #: (cmd/vm/run.go:171-174).
    nics: int = 0
    #: (cpu, memory, storage) as recorded (omitempty: 0): clone validates
    #: them as a new VM's, restore refuses a VM with less (cmd/core/helpers.go).
    machine: tuple[int, int, int] = (0, 0, 0)


@dataclass(frozen=True, slots=True)
class IndexedDB:
    """snapshots.json as the index holds it."""

    records: dict[str, RecFacts]
    null_ids: frozenset[str]
    names: dict[str, str]
    #: Where its entries sat (None: not as Go writes it): the next rewrite
    #: is absorbed from this (storage/dbspans.py).
    spans: Spans | None = None


@dataclass(slots=True)
class Listing:
    """Everything the reconciler needs from disk, taken in one pass."""

    #: None: no DB file yet. The API's SnapshotDB is taken too (tests, tools).
    snapshot_db: IndexedDB | DBDelta[RecFacts] | SnapshotDB | DBError | None = None
    keep_db: bool = False  # the snapshot DB was not read: keep the index's
    #: Existing files only; a VM or CNI DB's with what gc reads of it.
    ref_dbs: dict[str, frozenset[str] | RefFacts | DBError] = field(default_factory=dict)
    data_dirs: dict[str, DirState] = field(default_factory=dict)
    #: Foreign recorded data_dir paths -> is a directory (os.Stat).
    recorded_dirs: dict[str, bool] = field(default_factory=dict)
    #: What restore would find in those that are dirs (read like a data dir).
    recorded_contents: dict[str, DirContents] = field(default_factory=dict)
    #: Files data dirs, images and VMs name by absolute path (layers,
    #: kernel, initrd, firmware) -> MISSING, PRESENT or VALID.
    base_files: dict[str, int] = field(default_factory=dict)
    blobs: dict[str, BlobFile] = field(default_factory=dict)  # relpath -> entry
    boot_dirs: dict[str, int] = field(default_factory=dict)  # oci/boot/<hex> -> bytes
    temps: dict[str, TempEntry] = field(default_factory=dict)  # relpath -> entry
    #: Directories under the root that exist but could not be listed
    #: (relpath -> why): what depends on them is unknown, not missing.
    unreadable: dict[str, str] = field(default_factory=dict)
    #: Directories of the tree that exist but are not directories.
    not_dirs: frozenset[str] = frozenset()
    #: gc modules' lock files (relpath) that cannot be opened as a file ->
    #: why (a directory there): gc's TryLock fails on them.
    lock_problems: dict[str, str] = field(default_factory=dict)
    #: cocoon's VM run and log dirs (outside the root by default), by
    #: (gc module, "run"|"log"); only those configured.
    vm_dirs: dict[tuple[str, str], VMDirs] = field(default_factory=dict)
