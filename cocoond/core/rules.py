"""Every finding rule, one small function each. Pure: each takes the facts
it looks at and returns a Finding or None. The index (reconcile.py) decides
when to call which; what a rule says is here, with the line of cocoon's
source it follows (cocoonstack/cocoon at 34c6c4a), so that the message tells
an operator what cocoon will really do."""

from __future__ import annotations

import errno
import os
from collections.abc import Collection, Mapping
from typing import TypeVar

from cocoond.core import findings as fk
from cocoond.core.facts import (
    CH_CONFIG,
    CH_STATE,
    FC_COW,
    FC_MEM,
    FC_VMSTATE,
    MEMORY_RANGE,
    MISSING,
    SIDECAR,
    VALID,
    BlobFile,
    CreatingVM,
    DirContents,
    DirState,
    ImageClaim,
    RecFacts,
    TempEntry,
    VMClaim,
)
from cocoond.core.findings import Finding, Key
from cocoond.core.gcmodel import CREATING_GRACE, STALE_TEMP_AGE, Blocker
from cocoond.errors import DBError
from cocoond.output import quoted

_K = TypeVar("_K")
_V = TypeVar("_V")

SNAPSHOT_DB = "snapshot/db/snapshots.json"
LOCALFILE = "snapshot/localfile"
#: The subject of the one finding about data dirs cocoond may not read.
DATA_DIRS = f"{LOCALFILE}/*"
#: cocoon gc drops pending records older than this (snapshot/localfile/gc.go:20).
PENDING_GC_HOURS = 24
#: The hypervisor names cocoon records (hypervisor/*/…go `typ`).
FIRECRACKER = "firecracker"
CLOUD_HYPERVISOR = "cloud-hypervisor"


def db_unreadable(relpath: str, error: DBError) -> Finding:
    # Every cocoon command decodes its DB first (storage/json/json.go:84);
    # gc aborts when any module's DB fails to load (gc/orchestrator.go:76-80).
    if error.errno in (errno.EACCES, errno.EPERM):
        # cocoond's own lack of permission says nothing about the DB.
        return Finding(
            fk.DB_UNREADABLE,
            relpath,
            f"cocoond cannot read {relpath} ({error.reason}); what depends on it is unknown: "
            "give cocoond read access (the unit's CAP_DAC_READ_SEARCH does)",
            path=error.path,
        )
    return Finding(
        fk.DB_UNREADABLE,
        relpath,
        f"{relpath} is not a valid DB ({error.reason}); cocoon commands that read it fail "
        "and `cocoon gc` aborts: restore it from the last good copy",
        path=error.path,
    )


def dir_unreadable(relpath: str, why: str, path: str) -> Finding:
    return Finding(
        fk.DIR_UNREADABLE,
        relpath,
        f"cocoond cannot list {relpath} ({why}); findings that depend on it are unknown "
        "until it can (check the directory's mode and owner)",
        path=path,
    )


def missing_data_dirs_summary(ids: Collection[str], root: str) -> Finding:
    """Many committed snapshots without their data dirs at once, as one
    finding (the daemon's missing bursts, check's table): a wrong rm -rf of
    snapshot/localfile/ or the disk mounted there unmounted, not thousands
    of separate faults. Restore reads each recorded dir
    (`snapshot/localfile/localfile.go:222-233`)."""
    ordered = sorted(ids)
    examples = ", ".join(ordered[:3]) + (", ..." if len(ordered) > 3 else "")
    return Finding(
        fk.MISSING_DATA_DIR,
        LOCALFILE,
        f"{len(ordered)} committed snapshots lost their data dirs in {LOCALFILE}/ at once ({examples}): "
        f"was {LOCALFILE}/ emptied (a wrong rm -rf), or is the disk mounted there unmounted? "
        "`cocoon vm restore` of each fails; `cocoond check --json` lists them all",
        path=os.path.join(root, LOCALFILE),
    )


def root_unseen(root: str, cause: str) -> Finding:
    """The root itself cannot be seen (cocoond/core/rootview.py says why):
    every other finding is unknown, not fixed. Cocoon's backends create
    their DB dirs when they start (`snapshot/localfile/config.go:20-26`,
    `images/baseconfig.go:41-43`, `hypervisor/baseconfig.go:48-50`), so a
    root without any is not one cocoon has used."""
    return Finding(
        fk.ROOT_UNSEEN,
        root,
        f"cocoond cannot see the cocoon root {root}: {cause}; "
        "every finding is unknown until it can (open ones stay open, none resolves)",
        path=root,
    )


def data_dirs_unreadable(count: int, example: str, why: str, root: str) -> Finding:
    """One finding for every committed snapshot's data dir cocoond may not
    read (cocoon writes them 0750 and cocoon.json 0600, as root): without
    CAP_DAC_READ_SEARCH that is all of them, so one per dir would flood."""
    return Finding(
        fk.DIR_UNREADABLE,
        DATA_DIRS,
        f"cocoond cannot read {count} data dir{'s' if count != 1 else ''} of committed snapshots "
        f"(e.g. {LOCALFILE}/{example}: {why}); whether they would restore is unknown until it can "
        "(the unit grants CAP_DAC_READ_SEARCH for this; check the dirs' mode and owner)",
        path=_join(root, LOCALFILE),
    )


def gc_note(gc: Blocker | None) -> str:
    """What every message that says gc deletes something adds while gc
    would abort (gc/orchestrator.go:74-81): nothing is deleted, and why."""
    return "" if gc is None else f"; but {gc.sentence()} (see gc_blocked)"


def gc_blocked(gc: Blocker, root: str) -> Finding:
    """One finding for the module whose load makes `cocoon gc` abort before
    it deletes anything (gc/orchestrator.go:74-81): orphans, stale records
    and old blobs pile up until it is fixed."""
    return Finding(
        fk.GC_BLOCKED,
        "gc",
        f"{gc.sentence()}; orphan dirs, unreferenced blobs and stale records stay until "
        f"{gc.relpath} {gc.fix()}",
        path=_join(root, gc.relpath),
    )


#: Restore and clone of a pending record fail: cocoon's snapshot lookup
#: answers ErrNotFound for it (snapshot/localfile/localfile.go:69,223).
PENDING_FAILS: tuple[fk.Operation, ...] = (fk.RESTORE, fk.CLONE)


def pending(sid: str, rec: RecFacts, age: float, stale_after: float, gc: Blocker | None = None) -> Finding:
    label = quoted(rec.name) or sid
    if age > stale_after:
        # snapshot/localfile/gc.go:52: gc drops pending records older than 24 h.
        return Finding(
            fk.STALE_PENDING,
            sid,
            f"snapshot {label} has been pending for {format_age(age)} (a create that crashed or hangs): "
            "restore and clone of it fail (cocoon answers not found for a pending record); "
            f"`cocoon gc` drops pending records older than {PENDING_GC_HOURS} h, with their data dir"
            + gc_note(gc),
            snapshot_id=sid,
            name=rec.name or None,
            age_seconds=age,
            fails=PENDING_FAILS,
        )
    return Finding(
        fk.PENDING,
        sid,
        f"snapshot {label} is being created (pending for {format_age(age)}): "
        "restore and clone of it fail until it commits",
        snapshot_id=sid,
        name=rec.name or None,
        age_seconds=age,
        fails=PENDING_FAILS,
    )


def orphan_data_dir(
    sid: str, state: DirState, null_record: bool, root: str, gc: Blocker | None = None
) -> Finding | None:
    """A localfile/ entry no record claims. gc lists real directories only
    (utils.ScanSubdirs, utils/file.go:46-55) and deletes those whose ID has
    no record, a `null` record included (snapshot/localfile/gc.go:44-47,67)."""
    rel = f"{LOCALFILE}/{sid}"
    if state.kind == "dir":
        why = (
            f"its record in {SNAPSHOT_DB} is null (cocoon skips null records)"
            if null_record
            else f"it has no record in {SNAPSHOT_DB}"
        )
        action = "`cocoon gc` deletes it (copy it away first if someone still needs it)" + gc_note(gc)
    elif state.kind == "link":
        why = "it is a symlink to a directory with no record"
        action = "`cocoon gc` never sees symlinks, so it stays until removed by hand"
    else:
        return None
    return Finding(
        fk.ORPHAN_DATA_DIR, sid, f"data dir {rel}: {why}; {action}", snapshot_id=sid, path=_join(root, rel)
    )


def missing_data_dir(
    sid: str, rec: RecFacts, state: DirState | None, recorded_is_dir: bool | None, root: str
) -> Finding | None:
    """A committed record whose data dir restore cannot read. Restore tars
    the *recorded* data_dir (snapshot/localfile/localfile.go:227,233);
    delete and gc use snapshot/localfile/<ID> (localfile.go:188, gc.go:75)."""
    label = quoted(rec.name) or sid
    rel = f"{LOCALFILE}/{sid}"
    if rec.recorded == "":
        what = "records no data_dir, so restoring it reads nothing and fails"
        path = None
    elif rec.recorded is not None:
        if recorded_is_dir is not False:
            return None  # there (or not looked at yet): stat only, nothing walked
        what = f"records data_dir {quoted(rec.recorded)}, which is missing or not a directory; restore fails"
        path = rec.recorded
    else:
        if state is not None and state.kind in ("dir", "link"):
            return None
        what = f"has no data dir {rel}" if state is None else f"has {rel}, but it is not a directory"
        what += "; restoring it fails"
        path = _join(root, rel)
    return Finding(
        fk.MISSING_DATA_DIR,
        sid,
        f"snapshot {label} is committed but {what}: restore the dir from backup or `cocoon snapshot rm` it",
        snapshot_id=sid,
        name=rec.name or None,
        path=path,
        fails=(fk.RESTORE, fk.CLONE),
    )


def preflight_problems(hypervisor: str, contents: DirContents) -> list[str]:
    """What stops `cocoon vm restore` of this data dir, in cocoon's order:
    its preflight, then the copy step. The backend is the record's
    `hypervisor`: "firecracker" is Firecracker, anything else non-empty
    Cloud Hypervisor, and no value means the host's default backend, so
    either layout passes (cmd/vm/run.go:93-94)."""
    key = (hypervisor, id(contents))
    hit = _PREFLIGHT.get(key)
    if hit is not None and hit[0] is contents:
        return list(hit[1])
    problems = _by_backend(hypervisor, _ch_problems(contents), _fc_problems(contents))
    _remember(_PREFLIGHT, key, (contents, tuple(problems)))
    return problems


# Snapshots of one VM share one DirContents (scan interns them), so what
# depends on it alone is worked out once per distinct dir, not per snapshot.
# Keyed by identity: the entry holds the object, so its id stays its own.
_MEMO_ENTRIES = 4096
_PREFLIGHT: dict[tuple[str, int], tuple[DirContents, tuple[str, ...]]] = {}
_CLONE_OWN: dict[int, tuple[DirContents, tuple[str, ...], tuple[str, ...]]] = {}
#: role_sequence_problem by (snapshot's roles, VM's roles): a host has few layouts.
_ROLE_PROBLEMS: dict[tuple[tuple[str, ...], tuple[str, ...]], str | None] = {}


def _remember(memo: dict[_K, _V], key: _K, value: _V) -> None:
    if len(memo) >= _MEMO_ENTRIES:
        del memo[next(iter(memo))]  # the oldest
    memo[key] = value


def _by_backend(hypervisor: str, ch: list[str], fc: list[str]) -> list[str]:
    if hypervisor == FIRECRACKER:
        return fc
    if hypervisor:
        return ch
    if not ch or not fc:
        return []
    return ch if len(ch) <= len(fc) else fc


def _common_problems(c: DirContents) -> list[str]:
    # Both backends: the sidecar loads and validates, and every COW, cidata
    # and data disk it names is in the dir (hypervisor/utils.go:278-292).
    if SIDECAR not in c.present:
        return [f"{SIDECAR} is missing"]
    if c.sidecar_problem:
        return [f"{SIDECAR}: {c.sidecar_problem}"]
    return [f"{disk} (named in {SIDECAR}) is missing" for disk in c.missing_disks]


def _ch_problems(c: DirContents) -> list[str]:
    # hypervisor/cloudhypervisor/helper.go:54-88.
    problems = _common_problems(c)
    if CH_CONFIG not in c.present:
        problems.append(f"{CH_CONFIG} is missing")
    elif c.config_problem:
        problems.append(f"{CH_CONFIG}: {c.config_problem}")
    if CH_STATE not in c.present:
        problems.append(f"{CH_STATE} is missing")
    if MEMORY_RANGE not in c.present:
        problems.append("no memory-range* file")
    return problems + _copy_problems(c, _CH_NEEDED)


def _fc_problems(c: DirContents) -> list[str]:
    # hypervisor/firecracker/helper.go:18-31; the sidecar is Firecracker's
    # own struct, and its paths must be trusted (firecracker/snapshot.go:147-168).
    if SIDECAR in c.present and not c.sidecar_problem:
        if c.fc_sidecar_problem:
            return [f"{SIDECAR}: {c.fc_sidecar_problem} (Firecracker's snapshotMeta)"]
        if c.fc_untrusted:
            return [f"{SIDECAR}: {c.fc_untrusted}, which Firecracker refuses"]
    problems = _common_problems(c)
    problems += [f"{name} is missing" for name in (FC_VMSTATE, FC_MEM) if name not in c.present]
    return problems + _copy_problems(c, _FC_NEEDED)


MEMORY_PREFIX = "memory-range"
#: Files restore needs in the run dir after the copy step, per backend (CH:
#: cleanSnapshotFiles then cloneSnapshotFiles, cloudhypervisor/direct.go:43-51,
#: and restoreAfterExtract reads the sidecar there, restore.go:97; FC:
#: firecracker/direct.go:49-56, whose restoreAfterExtract never reads the
#: sidecar again, restore.go:86-136), besides the COW and data disks.
_CH_NEEDED = frozenset({SIDECAR, CH_CONFIG, CH_STATE})
_FC_NEEDED = frozenset({FC_VMSTATE, FC_MEM})


def _copy_problems(c: DirContents, needed: frozenset[str]) -> list[str]:
    """Restore and clone copy the data dir into the VM's run dir, regular
    files only (hypervisor/utils.go:358-367): a needed file that is a
    symlink or a directory passes the preflight's os.Stat and is then not
    there. A COW left behind means restore runs on the VM's current disk."""
    return [
        f"{name} is not a regular file, and restore copies regular files only"
        for name, what in c.irregular
        if what in ("cow", "data")
        or name in needed
        or (needed is _CH_NEEDED and name.startswith(MEMORY_PREFIX))
    ]


def incomplete_data_dir(sid: str, rec: RecFacts, state: DirState | None, root: str) -> Finding | None:
    """A committed record whose data dir exists but cannot be restored: its
    preflight or its copy step fails for its hypervisor. Clone runs the
    same checks on the copy (cloudhypervisor/clone.go:50-56; firecracker/
    clone.go:37-40 and snapshot/load), so it fails too. `state`: the dir
    they read, snapshot/localfile/<ID> or the record's foreign data_dir
    (localfile.go:63-73,227: the caller picks)."""
    if state is None or state.contents is None or state.contents.unreadable:
        return None
    problems = preflight_problems(rec.hypervisor, state.contents)
    if not problems:
        return None
    backend = _backend_name(rec.hypervisor)
    return Finding(
        fk.INCOMPLETE_DATA_DIR,
        sid,
        f"snapshot {quoted(rec.name) or sid} cannot be restored or cloned: its data dir fails {backend}'s "
        f"restore checks ({'; '.join(problems)}): restore the dir from backup or `cocoon snapshot rm` it",
        snapshot_id=sid,
        name=rec.name or None,
        path=_read_path(sid, rec, root),
        fails=(fk.RESTORE, fk.CLONE),
    )


def _read_path(sid: str, rec: RecFacts, root: str) -> str:
    """The data dir restore and clone read: the recorded one when it is
    foreign (localfile.go:227), else snapshot/localfile/<ID>."""
    return rec.recorded or _join(root, f"{LOCALFILE}/{sid}")


def _backend_name(hypervisor: str) -> str:
    return {FIRECRACKER: "Firecracker", "": "either backend"}.get(hypervisor, "Cloud Hypervisor")


def clone_problems(hypervisor: str, contents: DirContents, base_files: Mapping[str, int]) -> list[str]:
    """What stops `cocoon vm clone` of a snapshot that restore would take.
    `base_files`: path -> MISSING / PRESENT / VALID (absent: not known yet)."""
    hit = _CLONE_OWN.get(id(contents))
    if hit is None or hit[0] is not contents:
        hit = (contents, tuple(_ch_clone_own(contents)), tuple(_fc_clone_own(contents)))
        _remember(_CLONE_OWN, id(contents), hit)
    ch = [*hit[1], *_missing_base(contents.ch_base, base_files)]
    return _by_backend(hypervisor, ch, [*hit[2], *_missing_base(contents.fc_base, base_files)])


def _ch_clone_own(c: DirContents) -> list[str]:
    """CH clone's problems that come from the dir alone (the base files apart)."""
    problems = [
        f"{name} (cidata) is not a regular file, and clone copies regular files only"
        for name, what in c.irregular
        if what == "cidata"
    ]
    if "cow" not in c.roles:
        # updateCOWPath (cloudhypervisor/clone.go:298-309).
        problems.append(f"{SIDECAR} names no COW disk, and clone needs one to rewrite")
    return problems


def _fc_clone_own(c: DirContents) -> list[str]:
    """FC clone's problems that come from the dir alone (the base files apart)."""
    problems = []
    if any(name == SIDECAR for name, _ in c.irregular):
        # Clone copies regular files only, then loads the sidecar from its
        # copy (firecracker/clone.go:37); restore never reads it again.
        problems.append(f"{SIDECAR} is not a regular file, and clone copies regular files only")
    if FC_COW not in c.present or any(name == FC_COW for name, _ in c.irregular):
        # The copied cow.raw is renamed into place (firecracker/clone.go:51-55).
        problems.append(f"no regular {FC_COW} for clone to move into the new VM")
    if "cidata" in c.roles:
        # rebuildCloneStorage (firecracker/clone.go:184-185).
        problems.append(f"{SIDECAR} names a cidata disk, which Firecracker cannot clone")
    return problems


#: types/vm.go:77-85 (VMConfig.Validate): a new VM's least cpu, memory, storage.
MIN_CPU, MIN_MEMORY, MIN_STORAGE = 1, 512 << 20, 10 << 30


def clone_minimum_problems(rec: RecFacts) -> list[str]:
    """Clone takes the record's cpu, memory and storage (its flags default
    to "inherit": cmd/vm/commands.go:179-181, cmd/core/helpers.go:374) and
    validates them as a new VM's (helpers.go:398, types/vm.go:77-85).
    A larger --cpu/--memory/--storage gets past it, but Firecracker refuses
    any --memory and a --cpu other than the record's (cmd/vm/run.go:531-537)."""
    cpu, memory, storage = rec.machine
    fc = rec.hypervisor == FIRECRACKER
    problems = []
    if cpu < MIN_CPU:
        problems.append(
            f"its cpu is {cpu} and clone fails `--cpu must be at least 1`"
            + (" (Firecracker takes no other --cpu)" if fc else " unless --cpu 1 or more is given")
        )
    if memory < MIN_MEMORY:
        problems.append(
            f"its memory is {memory} bytes and clone fails `--memory must be at least 512M`"
            + (" (Firecracker takes no --memory)" if fc else " unless --memory 512M or more is given")
        )
    if storage < MIN_STORAGE:
        problems.append(
            f"its storage is {storage} bytes and clone fails `--storage must be at least 10G` "
            "unless --storage 10G or more is given"
        )
    return problems


def fc_machine_problems(rec: RecFacts, c: DirContents) -> list[str]:
    """Firecracker cannot change cpu or memory after snapshot/load: clone
    refuses a sidecar value (when above 0) other than the clone's, which is
    the record's (firecracker/clone.go:42-48; no flag changes it:
    cmd/vm/run.go:531-537)."""
    (cpu, memory), (rec_cpu, rec_memory, _) = c.fc_machine, rec.machine
    problems = []
    if cpu > 0 and cpu != rec_cpu:
        problems.append(f"{SIDECAR} has cpu {cpu}, the record {rec_cpu}, and Firecracker cannot change CPU")
    if memory > 0 and memory != rec_memory:
        problems.append(
            f"{SIDECAR} has memory {memory}, the record {rec_memory}, and Firecracker cannot change memory"
        )
    return problems


def restore_minimum_problems(rec: RecFacts, owner: VMClaim, firecracker: bool) -> list[str]:
    """Restore keeps the VM's cpu, memory and storage and refuses less than
    the snapshot's (RestoreVMConfigFromFlags, cmd/core/helpers.go:404-420,
    592-600: "--cpu 1 below snapshot minimum 2"). A larger flag gets past
    it, but Firecracker refuses a cpu or memory other than the VM's
    (firecracker/restore.go:148-153)."""
    problems = []
    for what, vm, snap in zip(("cpu", "memory", "storage"), owner.machine, rec.machine, strict=True):
        if vm < snap:
            way = (
                " (Firecracker takes no other)"
                if firecracker and what != "storage"
                else f" unless --{what} of at least the snapshot's is given"
            )
            problems.append(
                f"the VM's {what} ({vm}) is below the snapshot's ({snap}): "
                f"`--{what} ... below snapshot minimum`{way}"
            )
    return problems


def _missing_base(base: tuple[tuple[str, str], ...], base_files: Mapping[str, int]) -> list[str]:
    # VerifyBaseFiles (hypervisor/utils.go:331-356): os.Stat of each.
    return [f"{what} {path} is missing" for what, path in base if base_files.get(path) == MISSING]


def clone_blocked(
    sid: str, rec: RecFacts, state: DirState | None, base_files: Mapping[str, int], root: str
) -> Finding | None:
    """A committed snapshot restore would take but `cocoon vm clone` would
    not: a warning, since the VM it belongs to can still go back to it.
    Nothing until the dir has been read: "restore would take it" is only
    known then, as for incomplete_data_dir and restore_blocked (which judge
    the record's own values, NIC count and cpu/memory/storage, only then
    too); an unread dir has its own finding (dir_unreadable)."""
    if state is None or state.contents is None or state.contents.unreadable:
        return None
    problems = clone_minimum_problems(rec) + clone_problems(rec.hypervisor, state.contents, base_files)
    if rec.hypervisor == FIRECRACKER:
        problems += fc_machine_problems(rec, state.contents)
    if not problems:
        return None
    return Finding(
        fk.CLONE_BLOCKED,
        sid,
        f"snapshot {quoted(rec.name) or sid} cannot be cloned with {_backend_name(rec.hypervisor)} "
        f"({'; '.join(problems)}); restore does not check these",
        snapshot_id=sid,
        name=rec.name or None,
        path=_read_path(sid, rec, root),
        fails=(fk.CLONE,),
    )


def role_sequence_problem(snapshot: tuple[str, ...], vm: tuple[str, ...]) -> str | None:
    """hypervisor.ValidateRoleSequence (hypervisor/utils.go:298-313): the
    snapshot's disks must be a prefix of the VM's, by role, and the VM may
    only add cidata after them."""
    if len(snapshot) > len(vm):
        return f"the snapshot has {len(snapshot)} disks, the VM only {len(vm)}"
    for i, role in enumerate(snapshot):
        if vm[i] != role:
            return f"disk[{i}] is {role or '(none)'} in the snapshot but {vm[i] or '(none)'} in the VM"
    for i in range(len(snapshot), len(vm)):
        if vm[i] != "cidata":
            return f"the VM's disk[{i}] ({vm[i] or '(none)'}) is not in the snapshot, and only cidata may be"
    return None


def restore_blocked(
    sid: str,
    rec: RecFacts,
    state: DirState | None,
    db: str,
    owner: VMClaim,
    base_files: Mapping[str, int],
    root: str,
) -> Finding | None:
    """A snapshot its own VM (the one listing it in snapshot_ids, which
    restore requires: cmd/vm/run.go:167-169) cannot be restored to: the VM
    has another disk layout, which restore's preflight refuses before it
    stops the VM (hypervisor/utils.go:298-313 via cloudhypervisor/restore.go:
    54-63, firecracker/helper.go:18-31); or the VM's own layers or boot
    files are gone, which the relaunch after the kill needs
    (cloudhypervisor/restore.go:94-145, firecracker/restore.go:86-127).
    Or the snapshot's NIC count is not the VM's (cmd/vm/run.go:171-174).
    Clone builds a new VM from the snapshot's own files."""
    if state is None or state.contents is None or state.contents.unreadable:
        return None
    roles = (state.contents.roles, owner.roles)
    if roles in _ROLE_PROBLEMS:
        role_problem = _ROLE_PROBLEMS[roles]
    else:
        role_problem = role_sequence_problem(*roles)
        _remember(_ROLE_PROBLEMS, roles, role_problem)
    problems = [role_problem] if role_problem else []
    if rec.nics != owner.nics:
        # cmd/vm/run.go:171-174, before any backend code runs.
        problems.append(
            f"the snapshot has {rec.nics} NIC(s), the VM {owner.nics}, and restore refuses a mismatch"
        )
    problems += restore_minimum_problems(rec, owner, db.startswith("firecracker/"))
    if owner.state != "creating":
        gone = [f"{what} {path}" for what, path in owner.base if base_files.get(path) == MISSING]
        if gone:
            problems.append(f"the VM's {'; '.join(gone)} {'is' if len(gone) == 1 else 'are'} gone")
    if not problems:
        return None
    return Finding(
        fk.RESTORE_BLOCKED,
        sid,
        f"snapshot {quoted(rec.name) or sid} cannot be restored onto its VM "
        f"{quoted(owner.name) or owner.vm_id} ({db}): {'; '.join(problems)}; clone does not depend on these",
        snapshot_id=sid,
        name=rec.name or None,
        path=_read_path(sid, rec, root),
        fails=(fk.RESTORE,),
    )


def image_unusable(db: str, claim: ImageClaim, base_files: Mapping[str, int]) -> Finding | None:
    """An image in the DB that `cocoon vm run` cannot create a VM from: a
    layer blob, kernel or initrd (OCI, images/oci/oci.go:122-143) or the
    blob or firmware (cloudimg, images/cloudimg/cloudimg.go:110-125) that
    utils.ValidFile refuses (missing, not regular, empty: utils/file.go:30),
    or a boot-layer digest Go panics on."""
    problems = [claim.problem] if claim.problem else []
    for what, path in claim.files:
        state = base_files.get(path)
        if state is not None and state != VALID:
            problems.append(
                f"{what} {path} is {'missing' if state == MISSING else 'not a non-empty regular file'}"
            )
    if not problems:
        return None
    return Finding(
        fk.IMAGE_UNUSABLE,
        claim.ref,
        f"image {quoted(claim.ref)} in {db} cannot be used to create a VM: {'; '.join(problems)}; "
        "`cocoon vm run` of it fails: pull the image again",
        fails=(fk.VM_CREATE,),
    )


def vm_snapshot_gone(db: str, claim: VMClaim, snapshot_ids: Collection[str]) -> Finding | None:
    """A VM record listing snapshots snapshots.json does not have. Normal
    after `cocoon snapshot rm`, which leaves the VM's snapshot_ids as they
    are (snapshot/localfile/localfile.go:173-209; only RecordSnapshot
    writes them, hypervisor/backend.go:424-446): restoring the VM to one
    fails (cmd/vm/run.go:163-169) and `cocoon snapshot list --vm` skips it."""
    gone = sorted([sid for sid in claim.snapshot_ids if sid not in snapshot_ids])
    if not gone:
        return None
    label = quoted(claim.name) or claim.vm_id
    return Finding(
        fk.VM_SNAPSHOT_GONE,
        claim.vm_id,
        f"VM {label} ({db}) lists {len(gone)} snapshot(s) that no longer exist (e.g. {gone[0]}); "
        "normal after `cocoon snapshot rm`, which does not update the VM: it cannot be restored to them",
        snapshot_id=gone[0],
        name=claim.name or None,
    )


def vm_base_missing(
    db: str, claim: VMClaim, base_files: Mapping[str, int], lost_blobs: Collection[str] = ()
) -> Finding | None:
    """A VM whose layer disks, boot files or base image are gone: the
    hypervisor opens them whenever cocoon launches the VM, i.e. on `cocoon vm
    start` (cloudhypervisor/start.go:40-56) and on every `cocoon vm restore`,
    which kills the VM first and relaunches it with the record's disks
    (cloudhypervisor/restore.go:94-145, firecracker/restore.go:86-127). A
    running VM keeps the files it has open. An image blob (image_blob_ids)
    with no usable file: a cloud-image VM's overlay is backed by it. VMs
    still being created are gc's business (hypervisor/backend.go:380-396)."""
    if claim.state == "creating":
        return None
    lost = [(what, path) for what, path in claim.base if base_files.get(path) == MISSING]
    lost += [("image blob", hex_) for hex_ in sorted(lost_blobs)]
    if not lost:
        return None
    gone = [f"{what} {path}" for what, path in lost]
    label = quoted(claim.name) or claim.vm_id
    return Finding(
        fk.VM_BASE_MISSING,
        claim.vm_id,
        f"VM {label} ({db}, {claim.state or 'no state'}) names {'; '.join(gone)}, which "
        f"{'is' if len(gone) == 1 else 'are'} gone: `cocoon vm start` and `cocoon vm restore` of it fail "
        "(restore after stopping it): pull its image again",
        name=claim.name or None,
        path=lost[0][1] if lost[0][0] != "image blob" else None,
        fails=(fk.RESTORE,),
    )


def data_dir_mismatch(sid: str, rec: RecFacts, root: str) -> Finding | None:
    if not rec.recorded:
        return None
    return Finding(
        fk.DATA_DIR_MISMATCH,
        sid,
        f"snapshot {quoted(rec.name) or sid} records data_dir {quoted(rec.recorded)}, "
        f"not {LOCALFILE}/{sid} under {root}: restore reads the recorded path, but "
        "`cocoon snapshot rm` and gc use their own (was the DB copied from another host or root?)",
        snapshot_id=sid,
        name=rec.name or None,
        path=rec.recorded,
    )


def missing_blob(
    hex_: str,
    snapshot_users: Collection[str],
    other_users: int,
    files: Mapping[str, BlobFile],
    first_user: RecFacts | None,
    root: str,
) -> Finding | None:
    """A referenced blob with no usable file: VM creation and restores that
    need it fail (cloudimg/cloudimg.go:110-113, oci/oci.go:123-126)."""
    if not snapshot_users and not other_users:
        return None
    if any(f.usable for f in files.values()):
        return None
    empty = sorted(f.relpath for f in files.values() if f.empty)
    links = sorted(f.relpath for f in files.values() if f.symlink)
    if empty:
        why = f"{quoted(empty[0])} is empty"
    elif links:
        why = f"{quoted(links[0])} is a symlink to nothing usable"
    else:
        why = "no usable blob file"
    users = []
    first = min(snapshot_users) if snapshot_users else None
    if first is not None:
        users.append(f"{len(snapshot_users)} snapshot(s) (e.g. {first})")
    if other_users:
        users.append(f"{other_users} image/VM DB(s)")
    return Finding(
        fk.MISSING_BLOB,
        hex_,
        f"blob {hex_[:12]} is referenced by {' and '.join(users)} but {why} "
        "(cloudimg/blobs/<hex>.qcow2 or oci/blobs/<hex>.erofs); VMs and restores using it fail: "
        "re-pull the image",
        snapshot_id=first,
        name=(first_user.name or None) if first_user else None,
        path=_join(root, empty[0]) if empty else None,
    )


def unreferenced_blob(
    hex_: str, files: Mapping[str, BlobFile], boot_bytes: int | None, root: str, gc: Blocker | None = None
) -> Finding | None:
    """A blob (or OCI boot dir) nothing references: gc deletes what its
    ScanFileStems / ScanSubdirs list (images/gchelper.go:65-70,
    images/oci/gc.go:17-22). The caller has checked nothing references it
    and every DB that could is readable."""
    seen = sorted((f for f in files.values() if f.gc_sees), key=lambda f: f.relpath)
    if not seen and boot_bytes is None:
        return None
    total = sum(f.disk_bytes for f in seen) + (boot_bytes or 0)
    if seen:
        first = seen[0]
        what = f"blob {first.relpath}" + (
            " (a symlink: gc deletes the link, not its target)" if first.symlink else ""
        )
        path = _join(root, first.relpath)
    else:
        what = f"OCI boot dir oci/boot/{hex_}"
        path = _join(root, f"oci/boot/{hex_}")
    return Finding(
        fk.UNREFERENCED_BLOB,
        hex_,
        f"{what} is referenced by no image, snapshot or VM; normal after `cocoon image rm`: "
        "the next `cocoon gc` deletes it" + gc_note(gc),
        path=path,
        bytes=total,
    )


def gc_destroys_oci(relpath: str, destroyed: str, root: str, gc: Blocker | None = None) -> Finding:
    """An unreferenced OCI blob entry whose stem ("", ".", "..": `.erofs`,
    `..erofs`, `...erofs`) makes gc's `os.RemoveAll(BootDir(stem))`
    (images/oci/gc.go:17-21, images/oci/config.go:37-39, filepath.Join
    cleans the path) remove all of oci/boot or all of oci/: boot files and,
    for oci/, the DB and blobs of images still in use. `destroyed` is that
    path (gcmodel.oci_boot_destroys)."""
    rel = os.path.relpath(destroyed, root)
    lost = (
        "every OCI image's DB entry, layer blobs and boot files"
        if rel == "oci"
        else "every OCI image's kernel and initrd, those of images in use too"
    )
    return Finding(
        fk.GC_DESTROYS,
        relpath,
        f"{relpath} is referenced by nothing, so the next `cocoon gc` removes it and then "
        f"oci/boot/{relpath.rpartition('/')[2][: -len('.erofs')]} (its name without .erofs), which is all "
        f"of {rel}/ ({lost}); `cocoon vm run` of OCI images and relaunch of OCI VMs then fail. Remove or "
        "rename this file before gc runs" + gc_note(gc),
        path=_join(root, relpath),
    )


def gc_destroys_snapshot(sid: str, destroyed: str, root: str, gc: Blocker | None = None) -> Finding:
    """A pending record past gc's 24 h whose ID ("", ".", "..", or one with
    `/`) turns gc's `os.RemoveAll(snapshot/localfile/<ID>)` into more than
    its own dir (snapshot/localfile/gc.go:52,75, config.go:32; filepath.Join
    cleans the path). `destroyed` is that path (gcmodel.snapshot_destroys)."""
    rel = os.path.relpath(destroyed, root)
    shown = destroyed if rel == ".." or rel.startswith("../") else f"{rel}/"
    return Finding(
        fk.GC_DESTROYS,
        sid,
        f"pending snapshot record {quoted(sid) or repr(sid)} is over {PENDING_GC_HOURS} h old, so the next "
        f"`cocoon gc` removes snapshot/localfile/ joined with its ID, which is {shown} (with all in it: "
        "other snapshots' data, maybe their DB). Remove the record from snapshots.json before gc runs"
        + gc_note(gc),
        snapshot_id=sid,
        path=destroyed,
    )


def name_findings(
    records: Mapping[str, RecFacts], null_ids: Collection[str], names: Mapping[str, str]
) -> dict[Key, Finding]:
    """dangling_name and name_mismatch, both sides: a record whose name or id
    does not map back to its key, a names entry pointing at a record with
    another name or at none. Merged per subject, since a name can equal an
    ID. Resolution goes exact ID, name, ID prefix (utils/resolve.go:10-31),
    so a broken map makes lookups pick the wrong snapshot or none."""
    problems: dict[str, list[str]] = {}
    about: dict[str, tuple[str | None, str | None]] = {}
    out: dict[Key, Finding] = {}
    for sid in null_ids:
        problems.setdefault(sid, []).append("its record is null (cocoon ignores it)")
        about[sid] = (sid, None)
    for sid, rec in records.items():
        if rec.id_mismatch is None and (not rec.name or names.get(rec.name) == sid):
            continue  # the common case, 100k times per DB load
        found = problems.setdefault(sid, [])
        about[sid] = (sid, rec.name or None)
        if rec.id_mismatch is not None:
            found.append(f"record {quoted(sid)} says id {quoted(rec.id_mismatch)}")
        if rec.name and names.get(rec.name) != sid:
            points_to = names.get(rec.name)
            named_as = f"record {quoted(sid)} is named {quoted(rec.name)}"
            found.append(
                f"{named_as}, which is not in names"
                if points_to is None
                else f"{named_as}, but that name points at {quoted(points_to)}"
            )
    for name, sid in names.items():
        named = records.get(sid)
        if named is None:
            out[(fk.DANGLING_NAME, name)] = Finding(
                fk.DANGLING_NAME,
                name,
                f"name {quoted(name)} points at {quoted(sid) or '(empty)'}, which has no record; "
                "`cocoon snapshot` commands using this name fail: remove the name from the DB",
                snapshot_id=sid or None,
                name=name,
            )
        elif named.name != name:
            problems.setdefault(name, []).append(
                f"name {quoted(name)} points at {quoted(sid)}, whose record is named {quoted(named.name)}"
            )
            about.setdefault(name, (sid, name))
    for subject, found in problems.items():
        snapshot_id, label = about[subject]
        out[(fk.NAME_MISMATCH, subject)] = Finding(
            fk.NAME_MISMATCH,
            subject,
            f"{'; '.join(found)}; lookups by name or ID may pick the wrong snapshot: fix the DB entry",
            snapshot_id=snapshot_id,
            name=label,
        )
    return out


def stale_temp(
    relpath: str,
    entry: TempEntry,
    age: float,
    stale_after: float,
    root: str,
    gc: Blocker | None = None,
    sweeping: bool | None = None,
) -> Finding | None:
    """`sweeping`: whether gc's module for this image type has blobs to
    delete now (gcmodel.image_targets), None when not known."""
    if age <= stale_after:
        return None
    if entry.gc_removes:
        # images/index.go:153-165 (GCStaleTemp), run only from an image
        # module's Collect, i.e. when it has blobs to delete (gc/orchestrator.go:91-97).
        image = relpath.split("/", 1)[0]
        if sweeping and age > STALE_TEMP_AGE:
            action = f"the next `cocoon gc` removes it (that run also deletes an unreferenced {image} blob)"
        elif sweeping:
            action = "`cocoon gc` removes temp entries only once they are over 1 h old"
        elif sweeping is False:
            action = (
                f"`cocoon gc` removes {image} temp entries over 1 h old only in a run that also deletes "
                f"an unreferenced {image} blob, and none is unreferenced now: the next gc keeps it"
            )
        else:
            action = (
                "`cocoon gc` removes temp entries older than 1 h, but only in a run that also "
                "deletes an unreferenced blob of that image type"
            )
        action += gc_note(gc)
    else:
        action = "nothing in cocoon removes it: delete it by hand while no cocoon command runs"
    return Finding(
        fk.STALE_TEMP,
        relpath,
        f"temp entry {relpath} is {format_age(age)} old, left by a write or download that died; {action}",
        path=_join(root, relpath),
        age_seconds=age,
    )


def stale_creating_vm(module: str, vm_id: str, vm: CreatingVM, age: float, gc: Blocker | None) -> Finding:
    """A VM record stuck in `creating` past gc's 24 h grace: gc removes its
    run and log dirs and drops the record (hypervisor/gc.go:47,
    backend.go:380-417)."""
    label = f"VM {quoted(vm.name)} ({vm_id})" if vm.name else f"VM {vm_id}"
    return Finding(
        fk.STALE_CREATING_VM,
        vm_id,
        f"{label} in {module}'s vms.json has been `creating` for "
        f"{'ever (no updated_at)' if age == float('inf') else format_age(age)} (a create that died); "
        f"`cocoon gc` drops records creating for over {CREATING_GRACE / 3600:.0f} h, "
        "with its run and log dirs" + gc_note(gc),
        name=vm.name or None,
        path=vm.run_dir or None,
        age_seconds=None if age == float("inf") else age,
    )


def orphan_vm_dir(module: str, vm_id: str, path: str, kind: str, gc: Blocker | None) -> Finding:
    """A subdir of a VM module's run or log dir with no record in its
    vms.json: gc kills a hypervisor left running from it and deletes it
    (hypervisor/gc.go:56-73, backend.go:399-411)."""
    return Finding(
        fk.ORPHAN_VM_DIR,
        path,
        f"VM {kind} dir {path} has no record in {module}'s vms.json; `cocoon gc` kills any "
        "hypervisor process left in it and deletes it, and the VM's other dir" + gc_note(gc),
        path=path,
    )


def format_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _join(root: str, rel: str) -> str:
    return os.path.join(root, rel)
