"""`cocoon gc` as a whole: a pure model of its orchestrator, so that every
face of cocoond (findings, `show`, `gc-plan`, metrics) says what gc does on
the tree as it stands, from one set of functions.

gc (gc/orchestrator.go:40-103, modules registered by
cmd/others/handler.go:38-52, in this order) first TryLocks every module's
lock and aborts the whole run if one is busy (:46-71); then loads every
module's DB and listings and aborts the whole run on the first that fails
(:74-81); then each module resolves its targets against all modules'
snapshots (:84-89) and only modules with targets collect (:92-101).

cocoond never takes a lock, so a busy lock is the one abort it cannot see:
every face says so. Everything else is here, with no I/O: the shell hands
over a `GCView` (what the reconciler's index holds, plus cocoon's run and
log dirs), and `plan` returns what gc would remove, or why it removes
nothing. Sizes are measured by the shell afterwards (off the event loop in
the daemon).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from cocoond.core.facts import BlobFile, DirState, RecFacts, RefFacts, TempEntry
from cocoond.errors import DBError

#: snapshot/localfile/gc.go:20: pending records older than this are dropped.
PENDING_GRACE: Final = 24 * 3600.0
#: hypervisor/backend.go:31: VM records `creating` for longer are dropped.
CREATING_GRACE: Final = 24 * 3600.0
#: utils/file.go:17: image temp entries older than this go (in a collecting run).
STALE_TEMP_AGE: Final = 3600.0
#: hypervisor/gc.go:68: never an orphan VM dir (RunDir may be RootDir).
RESERVED_VM_DIRS: Final = frozenset({"db"})

#: Why a directory gc lists that is something else stops it: the backends'
#: EnsureDirs (MkdirAll) fail before the orchestrator runs
#: (cmd/others/handler.go:25-36), and ScanSubdirs / ScanFileStems would
#: return the error (utils/file.go:105-112, orchestrator.go:76-78).
NOT_A_DIR: Final = "exists but is not a directory"

#: Said wherever gc's outcome is stated: the one abort cocoond cannot see.
LOCK_CAVEAT: Final = (
    "cocoond takes no lock: a cocoon command holding any module's lock when gc starts "
    "also makes gc abort and delete nothing (gc/orchestrator.go:46-71)"
)


@dataclass(frozen=True, slots=True)
class GCModule:
    """One module cocoon's gc registers: its name (what gc's errors say),
    its lock and the DB its ReadDB loads, relative to the root."""

    name: str
    lock: str
    db: str | None
    #: Directories its ReadDB lists under the root (ScanFileStems /
    #: ScanSubdirs: an error other than "does not exist" aborts gc).
    lists: tuple[str, ...]
    source: str


#: In registration order (cmd/others/handler.go:38-52; image backends
#: cmd/core/helpers.go:100, hypervisors :40-43): gc locks, loads and
#: collects in this order, and names the first module that fails.
MODULES: Final[tuple[GCModule, ...]] = (
    GCModule(
        "oci", "oci/db/images.lock", "oci/db/images.json", ("oci/blobs", "oci/boot"), "images/oci/gc.go:11-25"
    ),
    GCModule(
        "cloudimg",
        "cloudimg/db/images.lock",
        "cloudimg/db/images.json",
        ("cloudimg/blobs",),
        "images/cloudimg/gc.go:11-24",
    ),
    GCModule(
        "cloud-hypervisor",
        "cloudhypervisor/db/vms.lock",
        "cloudhypervisor/db/vms.json",
        (),
        "hypervisor/gc.go:29-77",
    ),
    GCModule(
        "firecracker", "firecracker/db/vms.lock", "firecracker/db/vms.json", (), "hypervisor/gc.go:29-77"
    ),
    GCModule("cni", "cni/db/networks.lock", "cni/db/networks.json", (), "network/cni/gc.go:22-49"),
    GCModule("bridge", "bridge/gc.lock", None, (), "network/bridge/gc_linux.go:29-49"),
    GCModule(
        "snapshot",
        "snapshot/db/snapshots.lock",
        "snapshot/db/snapshots.json",
        ("snapshot/localfile",),
        "snapshot/localfile/gc.go:34-85",
    ),
)
#: The order `cocoon gc` initialises the backends in, each making its dirs
#: first (cmd/others/handler.go:25-48): a dir that is something else stops
#: gc there, before any lock is taken.
INIT_ORDER: Final = ("oci", "cloudimg", "cni", "snapshot", "cloud-hypervisor", "firecracker")
#: Each module's directory under the root.
MODULE_DIR: Final = {
    "oci": "oci",
    "cloudimg": "cloudimg",
    "cni": "cni",
    "snapshot": "snapshot",
    "cloud-hypervisor": "cloudhypervisor",
    "firecracker": "firecracker",
}
#: Image module -> (blob dir, suffix, temp dir, temp is dirs only).
IMAGE_MODULES: Final[dict[str, tuple[str, str, str, bool]]] = {
    "oci": ("oci/blobs", ".erofs", "oci/temp", True),
    "cloudimg": ("cloudimg/blobs", ".qcow2", "cloudimg/temp", False),
}
#: VM module -> its directory name under run_dir and log_dir (and the root).
VM_MODULES: Final[dict[str, str]] = {"cloud-hypervisor": "cloudhypervisor", "firecracker": "firecracker"}

What = Literal[
    "blob",
    "boot_dir",
    "temp",
    "vm_run_dir",
    "vm_log_dir",
    "vm_record",
    "cni_records",
    "data_dir",
    "pending_record",
    "subtree",
]


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why gc would abort before deleting anything."""

    module: str
    #: The DB (or directory) under the root that stops it.
    relpath: str
    reason: str

    def stage(self) -> str:
        """Where gc stops: taking the module's lock, or loading it."""
        return "locking" if self.relpath.endswith(".lock") else "loading"

    def fix(self) -> str:
        """What must change for gc to run again."""
        return "can be decoded again" if self.relpath.endswith(".json") else "is fixed"

    def sentence(self) -> str:
        return (
            f"`cocoon gc` currently deletes nothing: it aborts {self.stage()} module {self.module} "
            f"({self.relpath}: {self.reason})"
        )


@dataclass(frozen=True, slots=True)
class Item:
    """One thing gc would remove."""

    module: str
    what: What
    #: ID, blob hex or path under the root: what the matching finding names.
    subject: str
    #: The absolute path removed (os.RemoveAll / os.Remove), None for a DB
    #: record only.
    path: str | None


@dataclass(slots=True)
class Plan:
    """What `cocoon gc` run now would do, as far as cocoond can see."""

    #: Set: gc aborts, `items` is empty.
    blocker: Blocker | None = None
    #: Why cocoond cannot tell (a DB or dir it may not read): `items` may
    #: miss things, or gc may abort where cocoond cannot see it.
    unknown: list[str] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    #: Notes that hold whatever the plan is (cocoon's dirs outside the root
    #: that are absent, what is outside cocoond's view).
    notes: list[str] = field(default_factory=list)

    def subtrees(self) -> list[Item]:
        """Whole dirs gc removes because a name turns a path into them."""
        return [i for i in self.items if i.what == "subtree"]

    def modules(self) -> dict[str, list[Item]]:
        """Items per module, every module present, in gc's order."""
        out: dict[str, list[Item]] = {m.name: [] for m in MODULES}
        for item in self.items:
            out[item.module].append(item)
        return out


@dataclass(frozen=True, slots=True)
class VMDirs:
    """A VM module's run or log dir (outside the root by default) as cocoond
    found it: the names of its subdirectories, or why it could not say."""

    path: str
    #: None: the dir is absent (gc lists nothing there, utils/file.go:105-110).
    subdirs: frozenset[str] | None = None
    #: Set: cocoond could not list it (what gc would do there is unknown).
    unreadable: str | None = None
    #: It exists but is not a directory: gc fails there.
    not_dir: bool = False


@dataclass(frozen=True, slots=True)
class GCView:
    """Everything gc reads, as the reconciler's index holds it."""

    root: str
    now: float
    #: DBs gc loads that cannot be read or decoded, by relpath.
    db_errors: Mapping[str, DBError]
    #: Image DB relpath -> hexes it references (ReferencedDigests).
    image_refs: Mapping[str, frozenset[str]]
    #: VM and CNI DB relpath -> what they hold (absent file: not here).
    ref_facts: Mapping[str, RefFacts]
    #: Non-null snapshot records.
    snapshots: Mapping[str, RecFacts]
    #: Entries of snapshot/localfile/.
    data_dirs: Mapping[str, DirState]
    blobs: Iterable[BlobFile]
    boot_dirs: Iterable[str]
    temps: Mapping[str, TempEntry]
    #: Directories under the root cocoond could not list, relpath -> why.
    unreadable: Mapping[str, str]
    #: (VM module, "run" | "log") -> that dir; missing key: not configured.
    vm_dirs: Mapping[tuple[str, str], VMDirs] = field(default_factory=dict)
    #: Directories under the root that exist as something else.
    not_dirs: frozenset[str] = frozenset()
    #: Lock files gc's TryLock cannot open, relpath -> why.
    lock_problems: Mapping[str, str] = field(default_factory=dict)
    #: Shortcuts an index may give (None: derived from `snapshots`): the
    #: blobs snapshot records name, and the pending records' created times.
    snapshot_blobs: Collection[str] | None = None
    pending: Mapping[str, float] | None = None


def go_join(base: str, name: str) -> str:
    """filepath.Join(base, name): joined, then Cleaned (`..` climbs, `.`
    and an empty name vanish; an absolute name does not reset the path)."""
    return os.path.normpath(f"{base}/{name}" if name else base)


def destroys(base: str, name: str) -> str | None:
    """The path `os.RemoveAll(filepath.Join(base, name))` removes when it is
    not the entry `name` of `base` (a name "", "." or ".." makes it `base`
    itself or its parent): what gc deletes far beyond one entry. None for a
    plain name."""
    path, top = go_join(base, name), os.path.normpath(base)
    return path if path == top or not path.startswith(top.rstrip("/") + "/") else None


def oci_boot_destroys(root: str, hex_: str) -> str | None:
    """images/oci/gc.go:21 removes `os.RemoveAll(BootDir(hex))` for every
    unreferenced blob stem (images/oci/config.go:37-39): a stem "" or "."
    (`oci/blobs/.erofs`, `..erofs`) makes that all of oci/boot, ".."
    (`...erofs`) all of oci/."""
    return destroys(os.path.join(root, "oci/boot"), hex_)


def snapshot_destroys(root: str, sid: str) -> str | None:
    """snapshot/localfile/gc.go:75 removes `os.RemoveAll(SnapshotDataDir(id))`
    for every stale pending record (config.go:32): an ID "" or "." makes
    that all of snapshot/localfile, ".." all of snapshot/, and an ID with
    `/` in it may climb further (the path need not exist: RemoveAll of
    nothing is a no-op)."""
    return destroys(os.path.join(root, "snapshot/localfile"), sid)


def cannot_read(error: DBError) -> bool:
    """cocoond's own lack of permission says nothing about the DB."""
    return error.errno in (errno.EACCES, errno.EPERM)


def blocker(view: GCView) -> tuple[Blocker | None, list[str]]:
    """The first module (in gc's order) whose load fails, and what cocoond
    cannot tell on the way there (orchestrator.go:74-81). A DB cocoond may
    not read is unknown, not a blocker; gc, as root, may read it."""
    unknown: list[str] = []
    for name in INIT_ORDER:
        for relpath in sorted(view.not_dirs):
            if relpath.split("/", 1)[0] == MODULE_DIR[name]:
                return Blocker(name, relpath, NOT_A_DIR), unknown
    for module in MODULES:
        # Every TryLock comes before any load; one that errs skips its
        # module and the run aborts (gc/orchestrator.go:46-71).
        if module.lock in view.lock_problems:
            return Blocker(module.name, module.lock, view.lock_problems[module.lock]), unknown
    for module in MODULES:
        if module.db is not None:
            error = view.db_errors.get(module.db)
            if error is not None:
                if cannot_read(error):
                    unknown.append(f"cocoond cannot read {module.db} ({error.reason})")
                else:
                    return Blocker(module.name, module.db, error.reason), unknown
        for relpath in module.lists:
            if relpath in view.not_dirs:
                return Blocker(module.name, relpath, NOT_A_DIR), unknown
            why = view.unreadable.get(relpath)
            if why is not None:
                unknown.append(f"cocoond cannot list {relpath} ({why})")
        if module.name in VM_MODULES:
            for kind in ("run", "log"):
                dirs = view.vm_dirs.get((module.name, kind))
                if dirs is not None and dirs.not_dir:
                    return Blocker(module.name, dirs.path, NOT_A_DIR), unknown
                if dirs is not None and dirs.unreadable:
                    unknown.append(f"cocoond cannot list {dirs.path} ({dirs.unreadable})")
    return None, unknown


def pending_dropped(rec: RecFacts, now: float) -> bool:
    """snapshot/localfile/gc.go:52: `rec.Pending && rec.CreatedAt.Before(cutoff)`."""
    return rec.pending and rec.created < now - PENDING_GRACE


def creating_dropped(updated: float, now: float) -> bool:
    """hypervisor/gc.go:47: `State == creating && UpdatedAt.Before(cutoff)`."""
    return updated < now - CREATING_GRACE


def temp_removed(entry: TempEntry, now: float) -> bool:
    """images/index.go:153-165 (which entries temp_rule already chose):
    modified more than an hour ago."""
    return entry.gc_removes and entry.mtime < now - STALE_TEMP_AGE


def used_blobs(view: GCView) -> set[str]:
    """gc.Collect(others, gc.BlobIDs): what VM and snapshot records pin
    (gc/refs.go:27-44; image modules' snapshots do not implement it)."""
    used: set[str] = set()
    for relpath, facts in view.ref_facts.items():
        if relpath.endswith("/vms.json"):
            used |= facts.refs
    if view.snapshot_blobs is not None:
        used.update(view.snapshot_blobs)
    else:
        for rec in view.snapshots.values():
            used |= rec.blobs
    return used


def image_targets(module: str, view: GCView, used: set[str]) -> list[Item]:
    """images/gchelper.go:44-74: blob stems (ScanFileStems: any non-dir
    entry, a symlink too) and, for OCI, boot dirs (ScanSubdirs), that neither
    the module's own DB nor any VM or snapshot references. Each hex loses
    its blob file and its boot dir; the temp dir is swept in the same run.
    A stem that makes the boot dir's path oci/boot or oci/ itself
    (oci_boot_destroys) removes that whole subtree."""
    blob_dir, suffix, temp_dir, _dir_only = IMAGE_MODULES[module]
    refs = view.image_refs.get(f"{module}/db/images.json", frozenset()) | used
    stems = {b.hex for b in view.blobs if b.gc_sees and b.relpath.startswith(blob_dir + "/")}
    boots = set(view.boot_dirs) if module == "oci" else set()
    items: list[Item] = []
    for hex_ in sorted((stems | boots) - refs):
        if hex_ in stems:
            rel = f"{blob_dir}/{hex_}{suffix}"
            items.append(Item(module, "blob", hex_, os.path.join(view.root, rel)))
            wide = oci_boot_destroys(view.root, hex_) if module == "oci" else None
            if wide is not None:
                items.append(Item(module, "subtree", os.path.relpath(wide, view.root), wide))
        if hex_ in boots:
            items.append(Item(module, "boot_dir", hex_, os.path.join(view.root, "oci/boot", hex_)))
    if items:
        for relpath in sorted(view.temps):
            entry = view.temps[relpath]
            if relpath.startswith(temp_dir + "/") and temp_removed(entry, view.now):
                items.append(Item(module, "temp", relpath, os.path.join(view.root, relpath)))
    return items


def active_vm_ids(view: GCView) -> set[str]:
    """gc.Collect(others, gc.VMIDs): IDs of both VM DBs' non-nil records."""
    ids: set[str] = set()
    for backend in VM_MODULES.values():
        facts = view.ref_facts.get(f"{backend}/db/vms.json")
        if facts is not None:
            ids |= facts.ids
    return ids


def vm_targets(module: str, view: GCView) -> list[Item]:
    """hypervisor/gc.go:64-74 and backend.go:399-417: subdirs of the
    module's run and log dirs with no record (but `db`), and records stuck
    in `creating` past the grace; each target loses its run and log dir
    (the record's own, else <dir>/<ID>) and a stale record its DB entry."""
    backend = VM_MODULES[module]
    facts = view.ref_facts.get(f"{backend}/db/vms.json", RefFacts(frozenset()))
    run = view.vm_dirs.get((module, "run"))
    log = view.vm_dirs.get((module, "log"))
    orphans: set[str] = set()
    for dirs in (run, log):
        if dirs is not None and dirs.subdirs:
            orphans |= dirs.subdirs - facts.ids - RESERVED_VM_DIRS
    stale = {vm_id for vm_id, vm in facts.creating.items() if creating_dropped(vm.updated, view.now)}
    items: list[Item] = []
    for vm_id in sorted(orphans | stale):
        vm = facts.creating.get(vm_id) if vm_id in facts.ids else None
        run_path = vm.run_dir if vm is not None else (os.path.join(run.path, vm_id) if run else "")
        log_path = vm.log_dir if vm is not None else (os.path.join(log.path, vm_id) if log else "")
        for what, path, dirs in (("vm_run_dir", run_path, run), ("vm_log_dir", log_path, log)):
            if path and _listed(path, dirs):
                items.append(Item(module, what, vm_id, path))  # type: ignore[arg-type]
        if vm_id in stale:
            items.append(Item(module, "vm_record", vm_id, None))
    return items


def _listed(path: str, dirs: VMDirs | None) -> bool:
    """Is there something at `path` to remove? Known for paths directly in
    a listed VM dir; a record's own elsewhere is assumed there (RemoveAll of
    a missing path is a no-op, so listing it costs only a line)."""
    if dirs is not None and os.path.dirname(os.path.normpath(path)) == os.path.normpath(dirs.path):
        return dirs.subdirs is not None and os.path.basename(os.path.normpath(path)) in dirs.subdirs
    return True


def cni_targets(view: GCView, active: set[str]) -> list[Item]:
    """network/cni/gc.go:50-64: VM IDs in the CNI DB with no VM record: gc
    releases their IPs and drops their records (netns under /var/run/netns
    are outside the root and not shown)."""
    facts = view.ref_facts.get("cni/db/networks.json")
    if facts is None:
        return []
    return [Item("cni", "cni_records", vm_id, None) for vm_id in sorted(facts.ids - active)]


def snapshot_targets(view: GCView) -> list[Item]:
    """snapshot/localfile/gc.go:61-83: real dirs of snapshot/localfile/
    (ScanSubdirs: never a symlink) with no non-null record, and pending
    records past the grace: each loses snapshot/localfile/<ID> (RemoveAll:
    a link itself, not its target) and a stale record its DB entry; an ID
    that turns that path into more (snapshot_destroys) loses that subtree."""
    orphans = {
        name for name, state in view.data_dirs.items() if state.kind == "dir" and name not in view.snapshots
    }
    if view.pending is not None:
        stale = {sid for sid, created in view.pending.items() if created < view.now - PENDING_GRACE}
    else:
        stale = {sid for sid, rec in view.snapshots.items() if pending_dropped(rec, view.now)}
    items: list[Item] = []
    for sid in sorted(orphans | stale):
        wide = snapshot_destroys(view.root, sid) if sid in stale else None
        if wide is not None:
            items.append(Item("snapshot", "subtree", _under(view.root, wide), wide))
        elif sid in orphans or (sid in view.data_dirs):
            items.append(
                Item("snapshot", "data_dir", sid, os.path.join(view.root, "snapshot/localfile", sid))
            )
        if sid in stale:
            items.append(Item("snapshot", "pending_record", sid, None))
    return items


def _under(root: str, path: str) -> str:
    """A path as findings name it: under the root relative, else absolute."""
    rel = os.path.relpath(path, root)
    return path if rel == ".." or rel.startswith("../") else rel


def plan(view: GCView) -> Plan:
    """What one `cocoon gc` run would do now (locks aside: LOCK_CAVEAT)."""
    stop, unknown = blocker(view)
    result = Plan(blocker=stop, unknown=unknown)
    for vm_module in VM_MODULES:
        for kind in ("run", "log"):
            dirs = view.vm_dirs.get((vm_module, kind))
            if dirs is None:
                result.notes.append(f"{vm_module}'s {kind} dir is not configured: not looked at")
            elif dirs.subdirs is None and dirs.unreadable is None:
                result.notes.append(f"{dirs.path} does not exist: nothing there to delete")
    if stop is not None:
        return result
    used = used_blobs(view)
    active = active_vm_ids(view)
    for module in MODULES:
        if module.name in IMAGE_MODULES:
            result.items += image_targets(module.name, view, used)
        elif module.name in VM_MODULES:
            result.items += vm_targets(module.name, view)
        elif module.name == "cni":
            result.items += cni_targets(view, active)
        elif module.name == "snapshot":
            result.items += snapshot_targets(view)
    result.items = _outermost(result.items)
    return result


def _outermost(items: list[Item]) -> list[Item]:
    """Drop what a `subtree` item removes with it (and its repeats): gc
    deletes it either way, and its bytes are counted once, in the subtree's."""
    wide = sorted({i.path for i in items if i.what == "subtree" and i.path})
    if not wide:
        return items
    out: list[Item] = []
    kept: set[str] = set()
    for item in items:
        path = item.path
        if path is not None and any(path != w and path.startswith(w.rstrip("/") + "/") for w in wide):
            continue
        if item.what == "subtree" and path in kept:
            continue
        if item.what == "subtree" and path is not None:
            kept.add(path)
        out.append(item)
    return out
