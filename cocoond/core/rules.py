"""Every finding rule, one small function each. Pure: each takes the facts
it looks at and returns a Finding or None. The index (reconcile.py) decides
when to call which; what a rule says is here, with the line of cocoon's
source it follows (cocoonstack/cocoon at 34c6c4a), so that the message tells
an operator what cocoon will really do."""

from __future__ import annotations

import errno
import os
from collections.abc import Collection, Mapping

from cocoond.core import findings as fk
from cocoond.core.facts import (
    CH_CONFIG,
    CH_STATE,
    FC_MEM,
    FC_VMSTATE,
    MEMORY_RANGE,
    SIDECAR,
    BlobFile,
    DirContents,
    DirState,
    RecFacts,
    TempEntry,
)
from cocoond.core.findings import Finding, Key
from cocoond.core.gcmodel import CREATING_GRACE, STALE_TEMP_AGE, Blocker
from cocoond.errors import DBError
from cocoond.output import quoted
from cocoond.storage.refdbs import CreatingVM

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
        f"{gc.relpath} can be decoded again",
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
    """What cocoon's restore preflight would fail on, in its order. The
    backend is the record's `hypervisor`: "firecracker" is Firecracker,
    anything else non-empty Cloud Hypervisor, and no value means the host's
    default backend, so either layout passes (cmd/vm/run.go:93-94)."""
    if hypervisor == FIRECRACKER:
        return _fc_problems(contents)
    if hypervisor:
        return _ch_problems(contents)
    ch, fc = _ch_problems(contents), _fc_problems(contents)
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
    return problems


def _fc_problems(c: DirContents) -> list[str]:
    # hypervisor/firecracker/helper.go:18-31.
    problems = _common_problems(c)
    problems += [f"{name} is missing" for name in (FC_VMSTATE, FC_MEM) if name not in c.present]
    return problems


def incomplete_data_dir(sid: str, rec: RecFacts, state: DirState | None, root: str) -> Finding | None:
    """A committed record whose data dir exists but fails the restore
    preflight for its hypervisor: restore fails although the dir is there."""
    if rec.recorded is not None or state is None or state.contents is None or state.contents.unreadable:
        return None
    problems = preflight_problems(rec.hypervisor, state.contents)
    if not problems:
        return None
    backend = {FIRECRACKER: "Firecracker", "": "either backend"}.get(rec.hypervisor, "Cloud Hypervisor")
    return Finding(
        fk.INCOMPLETE_DATA_DIR,
        sid,
        f"snapshot {quoted(rec.name) or sid} cannot be restored: its data dir fails {backend}'s "
        f"restore preflight ({'; '.join(problems)}): restore the dir from backup or `cocoon snapshot rm` it",
        snapshot_id=sid,
        name=rec.name or None,
        path=_join(root, f"{LOCALFILE}/{sid}"),
        fails=(fk.RESTORE, fk.CLONE),
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
