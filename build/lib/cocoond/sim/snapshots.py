"""Snapshots: `cocoon snapshot save`, `rm`, `export` and `import`, step by
step, each step a place the process can die (`crash_at`).

save (cmd/snapshot/handler.go:25-80):
  hypervisor.Snapshot: a temp dir `snapshot-<n>` in the VM's run dir filled
  with the snapshot ("snapshot"), the new ID added to the VM's
  snapshot_ids in its vms.json ("recorded");
  localfile.Create (snapshot/localfile/localfile.go:81-138): a pending
  record under snapshots.lock ("pending"), the data dir made 0750
  ("mkdir"), the files extracted ("mid-extract" halfway, "extract" when
  done and the temp dir gone), pending dropped under the lock.
rm (localfile.go:174-209): resolved under the lock, the canonical data dir
  removed ("mid-rmdir" halfway, "rmdir"), then the record and its name.
import (snapshot/localfile/import.go:25-88): the data dir made ("mkdir"),
  the archive extracted with its snapshot.json ("mid-extract", "extract"),
  snapshot.json read and removed ("envelope"), then the record, with no
  pending phase.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Sequence
from typing import Any

from cocoond.sim import gojson, layout, schema
from cocoond.sim.content import FileSpec
from cocoond.sim.datadir import MEMORY_FILE, snapshot_specs, stand_in_vm
from cocoond.sim.fsops import SimError, ensure_dirs, mkdir_temp, new_id
from cocoond.sim.images import Crash
from cocoond.sim.layout import CH, FC, Hypervisor
from cocoond.sim.stores import snapshot_store
from cocoond.sim.vms import create_vm, find_vm, record_snapshot, resolve_ref, start_vm

SAVE_CRASH_POINTS = ("snapshot", "recorded", "pending", "mkdir", "mid-extract", "extract")
DELETE_CRASH_POINTS = ("mid-rmdir", "rmdir")
IMPORT_CRASH_POINTS = ("mkdir", "mid-extract", "extract", "envelope")
ENVELOPE = "snapshot.json"  # snapshot/localfile/export.go:16
_CONFIG_FIELDS = tuple(f.json for f in schema.SNAPSHOT_CONFIG.fields)


def _check(point: str | None, here: str) -> None:
    if point == here:
        raise Crash


def _extract(directory: str, specs: Sequence[FileSpec], crash_at: str | None) -> None:
    """utils.ExtractTar: flat entries in archive order."""
    half = len(specs) // 2
    for i, spec in enumerate(specs):
        if crash_at == "mid-extract" and i == half:
            raise Crash
        spec.write(directory)


def snapshot_config(snap_id: str, rec: dict[str, Any], hv: Hypervisor) -> dict[str, Any]:
    """Backend.BuildSnapshotConfig (hypervisor/backend.go:448-457)."""
    cfg = {k: v for k, v in rec["config"].items() if k != "name"}
    blob_ids = rec.get("image_blob_ids")
    cfg.update(
        id=snap_id,
        hypervisor=hv.name,
        nics=len(rec["network_configs"] or []),
        image_blob_ids=dict(blob_ids) if blob_ids is not None else None,
    )
    return cfg


def create(
    root: str,
    name: str | None = None,
    blobs: Sequence[str] = (),
    crash_at: str | None = None,
    sid: str | None = None,
    created_at: str | None = None,
    *,
    hypervisor: str = CH.name,
    vm: str | None = None,
    image: str | None = None,
    description: str = "",
    memory_file: str = MEMORY_FILE,
    rng: random.Random | None = None,
) -> str:
    """`cocoon snapshot save VM [--name N] [--description D]`; returns the
    snapshot ID. Without `vm`, a VM is made first (`hypervisor`, from
    `image` or standing in for `blobs`) and started. `name=None` names it
    snap-<id>; "" leaves it unnamed. `created_at` backdates the record (for
    a create that has been pending for a while)."""
    if crash_at is not None and crash_at not in SAVE_CRASH_POINTS:
        raise SimError(f"unknown crash point {crash_at!r} (one of {', '.join(SAVE_CRASH_POINTS)})")
    if vm is None:
        vm = create_vm(root, hypervisor=hypervisor, image=image, blobs=blobs, rng=rng)
    # FindHypervisor (all hypervisors) and InitSnapshot.
    ensure_dirs(*layout.backend_dirs(root, hypervisors=layout.HYPERVISORS, snapshot=True))
    hv, vm_id, rec = find_vm(root, vm)
    if rec["state"] != "running":
        start_vm(root, vm_id)
        hv, vm_id, rec = find_vm(root, vm_id)
    snap_id = sid or new_id(rng)
    name = ("snap-" + snap_id[:8].lower()) if name is None else name
    store = snapshot_store(root)
    if name:  # the handler's pre-check: Inspect(name) (handler.go:44-51)
        with store.with_() as idx:
            found = resolve_ref(idx["snapshots"], idx["names"], name)
            if found is not None and not idx["snapshots"][found]["pending"]:
                raise SimError(f"snapshot name {name!r} already exists")
    try:
        specs, tmp = _hypervisor_snapshot(root, hv, vm_id, rec, snap_id, memory_file, crash_at)
        cfg = snapshot_config(snap_id, rec, hv)
        cfg.update(name=name, description=description)
        _localfile_create(root, cfg, specs, tmp, created_at, crash_at)
    except Crash:
        pass
    return snap_id


def _hypervisor_snapshot(
    root: str,
    hv: Hypervisor,
    vm_id: str,
    rec: dict[str, Any],
    snap_id: str,
    memory_file: str,
    crash_at: str | None,
) -> tuple[list[FileSpec], str]:
    """CloudHypervisor.Snapshot / Firecracker.Snapshot up to the stream:
    the files to stream and the temp dir the stream removes once read."""
    run = rec["run_dir"]
    if not os.path.isdir(run):
        raise SimError(f"snapshot VM {vm_id}: create temp dir: {run} is missing")
    tmp = mkdir_temp(run, "snapshot-")
    if hv is FC:  # withSourceWritableDisksLocked: one lock file per writable disk, never removed
        for sc in sorted(
            (s for s in rec["storage_configs"] or [] if s["role"] in ("cow", "data")), key=lambda s: s["path"]
        ):
            os.makedirs(os.path.dirname(sc["path"]), 0o700, exist_ok=True)
            os.close(os.open(sc["path"] + ".clone.lock", os.O_CREAT | os.O_RDONLY, 0o600))
    specs = snapshot_specs(rec, memory_file)
    for spec in specs:
        spec.write(tmp)
    _check(crash_at, "snapshot")
    try:
        record_snapshot(root, hv, vm_id, snap_id)
    except SimError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _check(crash_at, "recorded")
    # TarDirStreamWithRemove: the stream reads the temp dir and removes it once read.
    return [FileSpec.read(os.path.join(tmp, s.name)) for s in specs], tmp


def _localfile_create(
    root: str,
    cfg: dict[str, Any],
    specs: list[FileSpec],
    tmp: str,
    created_at: str | None,
    crash_at: str | None,
) -> None:
    """localfile.Create (localfile.go:81-138)."""
    snap_id, name = cfg["id"], cfg["name"]
    data = layout.data_dir(root, snap_id)
    store = snapshot_store(root)
    with store.update() as idx:
        if name and name in idx["names"]:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SimError(f"save snapshot: snapshot name {name!r} already in use by {idx['names'][name]}")
        idx["snapshots"][snap_id] = {
            **cfg,
            "created_at": gojson.normalize_time(created_at) if created_at else gojson.go_time(),
            "pending": True,
            "data_dir": data,
        }
        if name:
            idx["names"][name] = snap_id
    _check(crash_at, "pending")
    os.makedirs(data, 0o750, exist_ok=True)
    _check(crash_at, "mkdir")
    _extract(data, specs, crash_at)
    shutil.rmtree(tmp, ignore_errors=True)
    _check(crash_at, "extract")
    with store.update() as idx:
        rec = idx["snapshots"].get(snap_id)
        if rec is None:
            raise SimError(f"finalize snapshot: snapshot {snap_id!r} disappeared from index")
        rec["pending"] = False


def resolve(root: str, ref: str) -> str:
    """SnapshotIndex.Resolve under the lock."""
    with snapshot_store(root).with_() as idx:
        sid = resolve_ref(idx["snapshots"], idx["names"], ref)
    if sid is None:
        raise SimError(f"resolve {ref!r}: snapshot not found")
    return sid


def delete(root: str, ref: str, crash_at: str | None = None) -> str:
    """`cocoon snapshot rm REF`; returns the ID."""
    ensure_dirs(*layout.backend_dirs(root, snapshot=True))
    sid = resolve(root, ref)
    data = layout.data_dir(root, sid)
    if crash_at == "mid-rmdir" and os.path.isdir(data):
        names = sorted(os.listdir(data))
        for n in names[: max(1, len(names) // 2)]:
            os.remove(os.path.join(data, n))
        return sid
    shutil.rmtree(data, ignore_errors=True)
    if os.path.lexists(data):
        os.remove(data)  # RemoveAll of a symlink or a file removes it
    if crash_at == "rmdir":
        return sid
    with snapshot_store(root).update() as idx:
        rec = idx["snapshots"].get(sid)
        if rec is not None:
            if rec["name"]:
                idx["names"].pop(rec["name"], None)
            del idx["snapshots"][sid]
    return sid


# ------------------------------------------------------------ export/import
def export(root: str, ref: str) -> list[FileSpec]:
    """`cocoon snapshot export` (export.go:30-95): snapshot.json (the
    SnapshotExport envelope, indented) then the data dir's regular files."""
    with snapshot_store(root).with_() as idx:
        sid = resolve_ref(idx["snapshots"], idx["names"], ref)
        rec = idx["snapshots"].get(sid) if sid else None
        if rec is None or rec["pending"]:
            raise SimError(f"export: snapshot {ref!r} not found")
        cfg = {k: rec[k] for k in _CONFIG_FIELDS}
        data = rec["data_dir"]
    envelope = schema.encode(schema.SNAPSHOT_EXPORT.type, {"config": cfg, "version": 1})
    specs = [FileSpec.of(ENVELOPE, gojson.marshal_indent(envelope) + b"\n")]
    with os.scandir(data) as it:
        for entry in sorted(it, key=lambda e: e.name):
            if entry.is_file(follow_symlinks=False):
                specs.append(FileSpec.read(entry.path))
    return specs


def foreign_archive(
    root: str, hypervisor: str = CH.name, blobs: Sequence[str] = (), rng: random.Random | None = None
) -> list[FileSpec]:
    """An export made on another host, of a snapshot of a VM this host has
    never seen."""
    hv = layout.hypervisor(hypervisor)
    rec = stand_in_vm(root, hv, list(blobs), rng)
    cfg = snapshot_config(new_id(rng), rec, hv)
    cfg.update(name="export-" + cfg["id"][:8].lower(), description="")
    envelope = schema.encode(schema.SNAPSHOT_EXPORT.type, {"config": cfg, "version": 1})
    return [FileSpec.of(ENVELOPE, gojson.marshal_indent(envelope) + b"\n"), *snapshot_specs(rec)]


def import_snapshot(
    root: str,
    source: str | None = None,
    name: str = "",
    description: str = "",
    *,
    hypervisor: str = CH.name,
    blobs: Sequence[str] = (),
    archive: list[FileSpec] | None = None,
    crash_at: str | None = None,
    rng: random.Random | None = None,
) -> str:
    """`cocoon snapshot import [--name N]` of an export of `source` (a
    snapshot of this root), or of `archive`, or of a foreign snapshot
    (`hypervisor`, `blobs`); returns the new ID."""
    ensure_dirs(*layout.backend_dirs(root, snapshot=True))
    if archive is None:
        archive = export(root, source) if source else foreign_archive(root, hypervisor, blobs, rng)
    sid = new_id(rng)
    data = layout.data_dir(root, sid)
    try:
        os.makedirs(data, 0o750, exist_ok=True)
        _check(crash_at, "mkdir")
        _extract(data, archive, crash_at)
        _check(crash_at, "extract")
        try:
            cfg = _read_and_remove_envelope(data)
        except SimError:
            shutil.rmtree(data, ignore_errors=True)
            raise
        _check(crash_at, "envelope")
    except Crash:
        return sid
    cfg["id"] = sid
    if name:
        cfg["name"] = name
    if description:
        cfg["description"] = description
    with snapshot_store(root).update() as idx:
        if cfg["name"] and cfg["name"] in idx["names"]:
            shutil.rmtree(data, ignore_errors=True)
            raise SimError(
                f"import: snapshot name {cfg['name']!r} already in use by {idx['names'][cfg['name']]}"
            )
        idx["snapshots"][sid] = {**cfg, "created_at": gojson.go_time(), "data_dir": data}
        if cfg["name"]:
            idx["names"][cfg["name"]] = sid
    return sid


def _read_and_remove_envelope(data: str) -> dict[str, Any]:
    """readAndRemoveSnapshotJSON (import.go:110-133)."""
    path = os.path.join(data, ENVELOPE)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise SimError(f"invalid snapshot archive: {ENVELOPE} not found") from None
    try:
        envelope = schema.decode_value(schema.SNAPSHOT_EXPORT.type, raw, ENVELOPE)
    except schema.GoDecodeError as exc:
        raise SimError(str(exc)) from None
    if envelope["version"] != 1:
        raise SimError(f"unsupported snapshot archive version {envelope['version']}")
    os.remove(path)
    return dict(envelope["config"])


def record(
    sid: str,
    name: str,
    blobs: Sequence[str] = (),
    *,
    pending: bool = False,
    ddir: str = "",
    created_at: str | None = None,
    description: str = "",
    image: str = "",
    image_type: str = "",
    cpu: int = 2,
    memory: int = 1 << 30,
    storage: int = 10 << 30,
    nics: int = 1,
    hypervisor: str = CH.name,
    **config: Any,
) -> dict[str, Any]:
    """A snapshot record exactly as cocoon writes it (snapshot.SnapshotRecord
    marshalled: field order, omitempty), for DBs edited by hand. `config`
    takes the other types.Config fields (queue_size, network, ...)."""
    value = {
        **config,
        "cpu": cpu,
        "memory": memory,
        "storage": storage,
        "image": image,
        "image_type": image_type or ("cloudimg" if image else ""),
        "id": sid,
        "name": name,
        "description": description,
        "image_blob_ids": {h: {} for h in blobs},
        "hypervisor": hypervisor,
        "nics": nics,
        "created_at": gojson.normalize_time(created_at) if created_at else gojson.go_time(),
        "pending": pending,
        "data_dir": ddir,
    }
    encoded: dict[str, Any] = schema.encode(schema.SNAPSHOT_RECORD.type, value)
    return encoded
