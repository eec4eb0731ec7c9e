"""`cocoon gc`: the orchestrator (gc/orchestrator.go:40-103) with the
modules cmd/others/handler.go:20-58 registers, in its order: the image
backends (oci, cloudimg), both hypervisors, the network providers (CNI,
bridge), then snapshots. Of the network modules only what is under the root
is modelled: CNI's lock and DB (a networks.json Go cannot decode aborts the
run; records of VMs no VM DB holds are dropped), the bridge's lock; netns
and TAP devices are outside the root and left alone.

1. TryLock every module's lock; if any is busy, abort the whole run.
2. ReadDB every module (a DB Go cannot decode aborts the run).
3. Resolve each module's targets against every module's snapshot.
4. Collect only for modules that have targets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cocoond.sim import gojson, layout
from cocoond.sim.fsops import SimError, Store, ensure_dirs, try_lock_all
from cocoond.sim.images import blob_hexes
from cocoond.sim.layout import OCI, Hypervisor, ImageBackend
from cocoond.sim.schema import GoDecodeError
from cocoond.sim.stores import cni_store, image_store, snapshot_store, vm_store

PENDING_GC_GRACE = 24 * 3600  # snapshot/localfile/gc.go:20
CREATING_GC_GRACE = 24 * 3600  # hypervisor/backend.go:31
STALE_TEMP_AGE = 3600  # utils/file.go:17


class GCAborted(SimError):
    """gc did nothing: a lock was busy or a DB could not be read."""


@dataclass
class Removed:
    data_dirs: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    boot_dirs: list[str] = field(default_factory=list)
    temps: list[str] = field(default_factory=list)
    vm_dirs: list[str] = field(default_factory=list)
    vms: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)  # VM IDs whose CNI records went
    subtrees: list[str] = field(default_factory=list)  # whole dirs a derived path hit (relpaths)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in self.__dict__.items()}


def scan_file_stems(directory: str, suffix: str) -> list[str]:
    """utils.ScanFileStems: non-directories (symlinks too) with the suffix."""
    try:
        with os.scandir(directory) as it:
            return [
                e.name[: -len(suffix)]
                for e in it
                if not e.is_dir(follow_symlinks=False) and e.name.endswith(suffix)
            ]
    except FileNotFoundError:
        return []


def scan_subdirs(directory: str) -> list[str]:
    """utils.ScanSubdirs: DirEntry.IsDir(), so never a symlink."""
    try:
        with os.scandir(directory) as it:
            return [e.name for e in it if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _older(text: str, grace: float, now_ns: int) -> bool:
    return gojson.time_ns(text) < now_ns - int(grace * 1e9)


@dataclass
class Module:
    name: str
    lock: str
    read: Callable[[], dict[str, Any]]
    resolve: Callable[[dict[str, Any], dict[str, dict[str, Any]]], list[str]]
    collect: Callable[[list[str], Removed], None]


def _image_module(root: str, backend: ImageBackend) -> Module:
    """images.BuildGCModule (images/gchelper.go:40-76) as oci/gc.go and
    cloudimg/gc.go configure it."""
    store = image_store(root, backend)

    def read() -> dict[str, Any]:
        idx = store.read_raw()
        refs = {h for e in idx["images"].values() if e is not None for h in blob_hexes(backend, e)}
        disk = scan_file_stems(backend.blobs(root), backend.blob_ext)
        if backend is OCI:
            disk += scan_subdirs(layout.oci_boot_base(root))
        return {"refs": refs, "disk": disk}

    def resolve(snap: dict[str, Any], others: dict[str, dict[str, Any]]) -> list[str]:
        used = set().union(*(o.get("used_blobs", set()) for o in others.values()))
        return sorted({h for h in snap["disk"] if h not in snap["refs"] and h not in used})

    def collect(ids: list[str], removed: Removed) -> None:
        removed.temps += gc_stale_temp(backend.temp(root), dir_only=backend is OCI)
        for hex_ in ids:
            try:
                os.remove(backend.blob(root, hex_))
                removed.blobs.append(hex_)
            except FileNotFoundError:
                pass
            if backend is not OCI:
                continue
            # os.RemoveAll(filepath.Join(boot, hex)) (images/oci/gc.go:21):
            # Join cleans, so a stem "" or "." is oci/boot, ".." is oci/.
            boot = layout.oci_boot_base(root)
            path = os.path.normpath(f"{boot}/{hex_}" if hex_ else boot)
            if not os.path.lexists(path):
                continue
            _remove_all(path)
            if os.path.dirname(path) == boot:
                removed.boot_dirs.append(hex_)
            else:
                removed.subtrees.append(os.path.relpath(path, root))

    return Module(backend.type, backend.lock(root), read, resolve, collect)


def gc_stale_temp(directory: str, dir_only: bool) -> list[str]:
    """images.GCStaleTemp (images/index.go:153-165): entries older than an
    hour, but never a non-directory `*.lock`; OCI only removes dirs."""
    cutoff = time.time() - STALE_TEMP_AGE
    gone = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for e in entries:
        is_dir = e.is_dir(follow_symlinks=False)
        if dir_only and not is_dir:
            continue
        if not is_dir and e.name.endswith(".lock"):
            continue
        try:
            if e.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        _remove_all(e.path)
        gone.append(os.path.relpath(e.path, os.path.dirname(os.path.dirname(directory))))
    return gone


def _remove_all(path: str) -> None:
    """os.RemoveAll: a dir with its contents, or a file or symlink."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _vm_module(root: str, hv: Hypervisor) -> Module:
    """Backend.BuildGCModule (hypervisor/gc.go:29-77) and GCCollect
    (hypervisor/backend.go:396-418)."""
    store = vm_store(root, hv)

    def read() -> dict[str, Any]:
        idx = store.read_raw()
        now = gojson.now_ns()
        live = {k: v for k, v in idx["vms"].items() if v is not None}
        return {
            "used_blobs": {h for r in live.values() for h in r["image_blob_ids"] or {}},
            "ids": set(live),
            "stale": [
                k
                for k, r in live.items()
                if r["state"] == "creating" and _older(r["updated_at"], CREATING_GC_GRACE, now)
            ],
            "run": scan_subdirs(layout.run_dir(root, hv)),
            "log": scan_subdirs(layout.log_dir(root, hv)),
        }

    def resolve(snap: dict[str, Any], others: dict[str, dict[str, Any]]) -> list[str]:
        keep = snap["ids"] | {"db"}
        return sorted({d for d in snap["run"] + snap["log"] if d not in keep} | set(snap["stale"]))

    def collect(ids: list[str], removed: Removed) -> None:
        idx = store.read_raw()
        for vm_id in ids:
            rec = idx["vms"].get(vm_id)
            run = rec["run_dir"] if rec else layout.vm_run_dir(root, hv, vm_id)
            logs = rec["log_dir"] if rec else layout.vm_log_dir(root, hv, vm_id)
            for d in (run, logs):
                if os.path.lexists(d):
                    _remove_all(d)
                    removed.vm_dirs.append(os.path.relpath(d, root))
        # CleanStalePlaceholders: WriteRaw, so vms.json is rewritten even if nothing is stale.
        idx = store.read_raw()
        now = gojson.now_ns()
        for vm_id in ids:
            rec = idx["vms"].get(vm_id)
            if (
                rec is None
                or rec["state"] != "creating"
                or not _older(rec["updated_at"], CREATING_GC_GRACE, now)
            ):
                continue
            if rec["config"]["name"]:
                idx["names"].pop(rec["config"]["name"], None)
            del idx["vms"][vm_id]
            removed.vms.append(vm_id)
        store.write_raw(idx)

    return Module(hv.name, layout.vm_lock(root, hv), read, resolve, collect)


def _cni_module(root: str) -> Module:
    """network/cni/gc.go:22-103, without the netns (outside the root)."""
    store = cni_store(root)

    def read() -> dict[str, Any]:
        idx = store.read_raw()
        return {"vm_ids": {r["vm_id"] for r in idx["networks"].values() if r is not None}}

    def resolve(snap: dict[str, Any], others: dict[str, dict[str, Any]]) -> list[str]:
        active = set().union(*(o.get("ids", set()) for n, o in others.items() if n in _VM_MODULES))
        return sorted(snap["vm_ids"] - active)

    def collect(ids: list[str], removed: Removed) -> None:
        for vm_id in ids:
            idx = store.read_raw()
            if any(r is not None and r["vm_id"] == vm_id for r in idx["networks"].values()):
                idx["networks"] = {
                    k: r for k, r in idx["networks"].items() if r is None or r["vm_id"] != vm_id
                }
                store.write_raw(idx)
                removed.networks.append(vm_id)

    return Module("cni", layout.cni_lock(root), read, resolve, collect)


def _bridge_module(root: str) -> Module:
    """network/bridge/gc_linux.go:29-97: its lock is under the root; what it
    reads and deletes (TAP links) is not."""
    return Module(
        "bridge", layout.bridge_lock(root), lambda: {}, lambda snap, others: [], lambda ids, removed: None
    )


_VM_MODULES = {hv.name for hv in layout.HYPERVISORS}


def _snapshot_module(root: str) -> Module:
    """snapshot/localfile/gc.go:34-103."""
    store: Store = snapshot_store(root)

    def read() -> dict[str, Any]:
        idx = store.read_raw()
        now = gojson.now_ns()
        live = {k: v for k, v in idx["snapshots"].items() if v is not None}  # a null record is skipped
        return {
            "used_blobs": {h for r in live.values() for h in r["image_blob_ids"] or {}},
            "ids": set(live),
            "stale": [
                k for k, r in live.items() if r["pending"] and _older(r["created_at"], PENDING_GC_GRACE, now)
            ],
            "dirs": scan_subdirs(layout.localfile_dir(root)),
        }

    def resolve(snap: dict[str, Any], others: dict[str, dict[str, Any]]) -> list[str]:
        return sorted({d for d in snap["dirs"] if d not in snap["ids"]} | set(snap["stale"]))

    def collect(ids: list[str], removed: Removed) -> None:
        base = layout.localfile_dir(root)
        for sid in ids:
            # os.RemoveAll(filepath.Join(localfile, id)) (gc.go:75): Join
            # cleans, so a pending record's ID "", "." or ".." is more.
            d = os.path.normpath(f"{base}/{sid}" if sid else base)
            if os.path.lexists(d):
                _remove_all(d)
                if os.path.dirname(d) == base:
                    removed.data_dirs.append(sid)
                else:
                    removed.subtrees.append(os.path.relpath(d, root))
        idx = store.read_raw()  # cleanStalePending: WriteRaw, re-checked
        now = gojson.now_ns()
        for sid in ids:
            rec = idx["snapshots"].get(sid)
            if rec is None or not rec["pending"] or not _older(rec["created_at"], PENDING_GC_GRACE, now):
                continue
            if rec["name"]:
                idx["names"].pop(rec["name"], None)
            del idx["snapshots"][sid]
            removed.records.append(sid)
        try:
            store.write_raw(idx)
        except FileNotFoundError:
            # WriteRaw's AtomicWriteJSON into a db dir gc removed itself:
            # gc reports the error, what it removed stays removed.
            removed.records.clear()

    return Module("snapshot", layout.snapshot_lock(root), read, resolve, collect)


def modules(root: str) -> list[Module]:
    return [
        *(_image_module(root, b) for b in layout.IMAGE_BACKENDS),
        *(_vm_module(root, hv) for hv in layout.HYPERVISORS),
        _cni_module(root),
        _bridge_module(root),
        _snapshot_module(root),
    ]


def gc(root: str) -> dict[str, list[str]]:
    """One gc run; what it removed, or GCAborted."""
    try:
        ensure_dirs(*layout.all_backend_dirs(root))  # cmd/others/handler.go:20-52 initialises every backend
        ensure_dirs(os.path.dirname(layout.bridge_lock(root)))  # network/bridge/gc_linux.go:31
    except OSError as exc:
        raise GCAborted(f"gc failed before it ran: create directory {exc.filename}: {exc.strerror}") from None
    mods = modules(root)
    with try_lock_all([m.lock for m in mods]) as busy:
        if busy:
            names = [m.name for m in mods if m.lock in busy]
            raise GCAborted(f"gc aborted: modules skipped (lock busy): {', '.join(names)}")
        snaps: dict[str, dict[str, Any]] = {}
        for m in mods:
            try:
                snaps[m.name] = m.read()
            except (GoDecodeError, SimError) as exc:
                raise GCAborted(f"gc aborted: snapshot {m.name}: {exc}") from None
        targets = {m.name: ids for m in mods if (ids := m.resolve(snaps[m.name], snaps))}
        removed = Removed()
        for m in mods:
            if targets.get(m.name):
                m.collect(targets[m.name], removed)
    return removed.as_dict()
