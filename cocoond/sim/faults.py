"""Faults: one inconsistency each, made the way it happens on a host (a
crash at a step of a cocoon command, a person's `rm`, a hand edit, a tool
that writes the DB itself), and the finding cocoond should report for it.

`inject(root, FAULT)` returns what cocoond should report, as CONTRACT.md
section 3 names it: `kind` (None where cocoond must report nothing about
the subject), `subject` (snapshot ID, blob hex, name, or path under the
root), and `snapshot_id` / `path` where they apply.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cocoond.sim import layout, snapshots
from cocoond.sim.datadir import write_snapshot_files
from cocoond.sim.epoch import EPOCH_TMP, epoch_import
from cocoond.sim.fsops import SimError, atomic_write_json, backdate, ensure_dirs, flock, new_hex, new_id
from cocoond.sim.gojson import go_time
from cocoond.sim.images import import_image, import_oci, pull_image, pull_oci, rmi
from cocoond.sim.layout import CH, CLOUDIMG, FC, OCI
from cocoond.sim.stores import image_store, load_raw, load_snapshots, snapshot_store, vm_store
from cocoond.sim.vms import DataDisk, create_vm

#: How old a leftover is made: older than cocoond's default
#: temp_stale_seconds / pending_stale_seconds (1 h) and cocoon gc's 1 h.
OLD = 2 * 3600
Expected = dict[str, Any]


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str | None
    how: str
    make: Callable[[str], Expected]


def _rel(root: str, path: str) -> str:
    return os.path.relpath(path, root)


def _expect(kind: str | None, subject: str, **extra: Any) -> Expected:
    return {"kind": kind, "subject": subject, **{k: v for k, v in extra.items() if v is not None}}


def _edit_snapshots(root: str, change: Callable[[dict[str, Any]], None]) -> None:
    """A tool that edits snapshots.json by hand, under cocoon's lock."""
    ensure_dirs(*layout.backend_dirs(root, snapshot=True))
    with flock(layout.snapshot_lock(root)):
        db = load_snapshots(root)
        change(db)
        atomic_write_json(layout.snapshot_db(root), db)


def _snapshot(root: str, **kw: Any) -> str:
    return snapshots.create(root, **kw)


def _elsewhere(root: str, name: str) -> str:
    """A place under the root but outside cocoon's tree (another disk, a
    backup area): the simulator writes only under its root."""
    d = os.path.join(root, "elsewhere")
    os.makedirs(d, 0o755, exist_ok=True)
    return os.path.join(d, name)


# ---------------------------------------------------------------- the faults
def _age(path: str, seconds: float = OLD) -> None:
    """Make a dir (its entries too) or a file look written `seconds` ago:
    a fault is a state that stays, not a write still in flight."""
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            backdate(os.path.join(path, name), seconds)
    backdate(path, seconds)


def orphan_dir(root: str) -> Expected:
    # An import that died after extracting, an hour ago.
    sid = snapshots.import_snapshot(root, crash_at="envelope")
    d = layout.data_dir(root, sid)
    _age(d, 3600)
    return _expect("orphan_data_dir", sid, snapshot_id=sid, path=d)


def missing_dir(root: str) -> Expected:
    sid = _snapshot(root)
    shutil.rmtree(layout.data_dir(root, sid))  # a person's rm -rf
    return _expect("missing_data_dir", sid, snapshot_id=sid, path=layout.data_dir(root, sid))


def missing_blob(root: str) -> Expected:
    url = f"https://images.example/{new_id().lower()}.img"
    hex_ = pull_image(root, url=url)
    sid = _snapshot(root, image=url)
    os.remove(CLOUDIMG.blob(root, hex_))  # removed by hand
    return _expect("missing_blob", hex_, snapshot_id=sid)


def dangling_name(root: str) -> Expected:
    name = "ghost-" + new_hex()[:6]
    _edit_snapshots(root, lambda db: db["names"].__setitem__(name, new_id()))
    return _expect("dangling_name", name)


def stale_pending(root: str) -> Expected:
    sid = _snapshot(root, crash_at="extract", created_at=go_time(time.time() - OLD))
    return _expect("stale_pending", sid, snapshot_id=sid)


def fresh_pending(root: str) -> Expected:
    sid = _snapshot(root, crash_at="pending")
    return _expect("pending", sid, snapshot_id=sid)


def unreferenced_blob(root: str) -> Expected:
    hex_ = pull_image(root)
    rmi(root, hex_)
    return _expect("unreferenced_blob", hex_)


def _truncate(path: str) -> None:
    with open(path, "rb") as fh:
        body = fh.read()
    with open(path, "wb") as fh:
        fh.write(body[: max(1, len(body) // 2)])


def corrupt_db(root: str) -> Expected:
    path = layout.snapshot_db(root)
    if not os.path.exists(path):
        _snapshot(root)
    _truncate(path)
    return _expect("db_unreadable", "snapshot/db/snapshots.json", path=path)


def corrupt_oci_db(root: str) -> Expected:
    pull_oci(root, "registry.example/corrupt-" + new_hex()[:8])
    _truncate(OCI.db(root))
    return _expect("db_unreadable", "oci/db/images.json", path=OCI.db(root))


def _ch_snapshot(root: str) -> str:
    """A Cloud Hypervisor snapshot of a cloud-image VM with a data disk."""
    url = f"https://images.example/{new_id().lower()}.img"
    pull_image(root, url=url)
    vm = create_vm(root, hypervisor=CH, image=url, data_disks=[DataDisk("data1", 16 << 20)])
    return _snapshot(root, vm=vm)


def _fc_snapshot(root: str) -> str:
    """A Firecracker snapshot of an OCI VM with a data disk."""
    ref = pull_oci(root, "registry.example/fc-" + new_hex()[:8])["ref"]
    vm = create_vm(root, hypervisor=FC, image=ref, data_disks=[DataDisk("data1", 16 << 20)])
    return _snapshot(root, vm=vm)


def _remove_part(make: Callable[[str], str], part: str) -> Callable[[str], Expected]:
    def fault(root: str) -> Expected:
        sid = make(root)
        d = layout.data_dir(root, sid)
        names = sorted(os.listdir(d))
        if part == "memory":
            gone = [n for n in names if n.startswith("memory-range")]
        elif part == "data-disk":
            gone = [n for n in names if n.startswith("data-") and n.endswith(".raw")]
        else:
            gone = [part]
        for n in gone:
            os.remove(os.path.join(d, n))
        return _expect("incomplete_data_dir", sid, snapshot_id=sid, path=d)

    return fault


def ch_disk_mismatch(root: str) -> Expected:
    sid = _ch_snapshot(root)
    d = layout.data_dir(root, sid)
    path = os.path.join(d, "config.json")
    with open(path, "rb") as fh:
        cfg = json.loads(fh.read())
    cfg["disks"] = list(reversed(cfg["disks"]))  # a hand edit that reordered the disks
    with open(path, "w") as fh:
        json.dump(cfg, fh)
    return _expect("incomplete_data_dir", sid, snapshot_id=sid, path=d)


def half_deleted(root: str) -> Expected:
    sid = _snapshot(root)
    snapshots.delete(root, sid, crash_at="mid-rmdir")
    return _expect("incomplete_data_dir", sid, snapshot_id=sid, path=layout.data_dir(root, sid))


def null_record_with_dir(root: str) -> Expected:
    sid = _snapshot(root)

    def nullify(db: dict[str, Any]) -> None:
        rec = db["snapshots"][sid]
        db["names"].pop(rec.get("name"), None)
        db["snapshots"][sid] = None

    _edit_snapshots(root, nullify)
    _age(layout.data_dir(root, sid))
    return _expect("orphan_data_dir", sid, snapshot_id=sid, path=layout.data_dir(root, sid))


def _symlink_blob(root: str, dangling: bool) -> Expected:
    hex_ = pull_image(root)
    blob = CLOUDIMG.blob(root, hex_)
    target = _elsewhere(root, hex_ + ".qcow2")
    shutil.move(blob, target)
    os.symlink(target, blob)
    if dangling:
        os.remove(target)
        return _expect("missing_blob", hex_)
    return _expect(None, hex_)


def symlink_dir_in_localfile(root: str) -> Expected:
    # A snapshot's data dir moved to another disk, a symlink left in its
    # place: restore follows it, gc never sees it (utils.ScanSubdirs).
    sid = _snapshot(root)
    d = layout.data_dir(root, sid)
    target = _elsewhere(root, sid)
    shutil.move(d, target)
    os.symlink(target, d)
    return _expect(None, sid, snapshot_id=sid)


def orphan_symlink_dir(root: str) -> Expected:
    sid = new_id()
    target = _elsewhere(root, sid)
    write_snapshot_files(target)
    _age(target)
    os.symlink(target, layout.data_dir(root, sid))
    _age(layout.data_dir(root, sid))
    return _expect("orphan_data_dir", sid, snapshot_id=sid, path=layout.data_dir(root, sid))


def missing_oci_layer(root: str) -> Expected:
    info = pull_oci(root, "registry.example/layers-" + new_hex()[:8], layers=3)
    hex_ = info["layers"][0]
    os.remove(OCI.blob(root, hex_))
    return _expect("missing_blob", hex_)


def _set_field(path: str, table: str, key: str, field: str, value: Any, top: tuple[str, ...]) -> None:
    raw = load_raw(path, top)
    raw[table][key][field] = value
    with flock(path.replace(".json", ".lock")):
        atomic_write_json(path, raw)


def undecodable_snapshot_field(root: str) -> Expected:
    sid = _snapshot(root)
    _set_field(layout.snapshot_db(root), "snapshots", sid, "hypervisor", 5, ("snapshots", "names"))
    return _expect("db_unreadable", "snapshot/db/snapshots.json", path=layout.snapshot_db(root))


def undecodable_vm_field(root: str) -> Expected:
    vm = create_vm(root, hypervisor=CH)
    _set_field(layout.vm_db(root, CH), "vms", vm, "first_booted", "yes", ("vms", "names"))
    return _expect("db_unreadable", "cloudhypervisor/db/vms.json", path=layout.vm_db(root, CH))


def stale_creating_vm(root: str) -> Expected:
    """`cocoon vm run` that died 25 h ago after making its dirs: the record
    stays `creating` (hypervisor/backend.go:180-201), gc drops it."""
    vm = create_vm(root, hypervisor=CH, crash_at="disks")
    _set_field(
        layout.vm_db(root, CH), "vms", vm, "updated_at", go_time(time.time() - 25 * 3600), ("vms", "names")
    )
    return _expect("stale_creating_vm", vm, path=layout.vm_run_dir(root, CH, vm))


def orphan_vm_run_dir(root: str) -> Expected:
    """A VM record removed by hand (its log dir cleaned too): the run dir
    is left, and gc deletes it (hypervisor/gc.go:56-73)."""
    vm = create_vm(root, hypervisor=FC, image=pull_oci(root, "registry.example/vm-" + new_hex()[:8])["ref"])
    shutil.rmtree(layout.vm_log_dir(root, FC, vm))
    path = layout.vm_db(root, FC)
    raw = load_raw(path, ("vms", "names"))
    name = raw["vms"][vm]["config"]["name"]
    del raw["vms"][vm]
    raw["names"].pop(name, None)
    with flock(layout.vm_lock(root, FC)):
        atomic_write_json(path, raw)
    run = layout.vm_run_dir(root, FC, vm)
    return _expect("orphan_vm_dir", run, path=run)


def corrupt_cni_db(root: str) -> Expected:
    """cni/db/networks.json truncated: cocoon gc loads it (network/cni/gc.go:29)."""
    path = layout.cni_db(root)
    ensure_dirs(os.path.dirname(path))
    with flock(layout.cni_lock(root)):
        atomic_write_json(path, {"networks": {"n1": {"id": "n1", "type": "cocoon", "vm_id": new_id()}}})
    _truncate(path)
    return _expect("db_unreadable", "cni/db/networks.json", path=path)


def undecodable_image_field(root: str) -> Expected:
    url = f"https://images.example/{new_id().lower()}.img"
    pull_image(root, url=url)
    _set_field(CLOUDIMG.db(root), "images", url, "size", "big", ("images",))
    return _expect("db_unreadable", "cloudimg/db/images.json", path=CLOUDIMG.db(root))


def case_variant_key(root: str) -> Expected:
    # A tool wrote "Pending": Go's decoder matches it to `pending` anyway.
    sid = _snapshot(root, crash_at="pending")

    def respell(db: dict[str, Any]) -> None:
        rec = db["snapshots"][sid]
        rec.pop("pending", None)
        rec["Pending"] = True

    _edit_snapshots(root, respell)
    return _expect("pending", sid, snapshot_id=sid)


def recorded_data_dir_elsewhere(root: str) -> Expected:
    # The DB (and the dir) copied in from another root.
    sid = _snapshot(root)
    target = _elsewhere(root, sid)
    shutil.move(layout.data_dir(root, sid), target)
    _edit_snapshots(root, lambda db: db["snapshots"][sid].__setitem__("data_dir", target))
    return _expect("data_dir_mismatch", sid, snapshot_id=sid, path=target)


def _newest(directory: str, prefix: str, before: set[str]) -> str:
    new = [n for n in os.listdir(directory) if n.startswith(prefix) and n not in before]
    if len(new) != 1:
        raise SimError(f"expected one new {prefix}* in {directory}, found {new}")
    return os.path.join(directory, new[0])


def _stale(
    root: str, directory: str, prefix: str, make: Callable[[], object], kind: str | None = "stale_temp"
) -> Expected:
    os.makedirs(directory, exist_ok=True)
    before = set(os.listdir(directory))
    make()
    path = _newest(directory, prefix, before)
    backdate(path, OLD)
    return _expect(kind, _rel(root, path), path=path)


def _db_tmp(module: str) -> Callable[[str], Expected]:
    def fault(root: str) -> Expected:
        store = {
            "snapshot": snapshot_store(root),
            "cloudimg": image_store(root, CLOUDIMG),
            "oci": image_store(root, OCI),
            "cloudhypervisor": vm_store(root, CH),
            "firecracker": vm_store(root, FC),
        }[module]
        directory = os.path.dirname(store.path)
        os.makedirs(directory, 0o750, exist_ok=True)
        # AtomicWriteFile's temp file, left by a crash before the rename.
        return _stale(root, directory, ".tmp-", lambda: store.write_raw(store.read_raw(), crash=True))

    return fault


def stale_pull_img(root: str) -> Expected:
    return _stale(root, CLOUDIMG.temp(root), "pull-", lambda: pull_image(root, crash_at="download"))


def stale_import_img(root: str) -> Expected:
    return _stale(
        root, CLOUDIMG.temp(root), "import-", lambda: import_image(root, "imp", crash_at="download")
    )


def stale_tmp_blob(root: str) -> Expected:
    return _stale(root, CLOUDIMG.temp(root), ".tmp-", lambda: pull_image(root, crash_at="tmp-blob"))


def convert_lock(root: str) -> Expected:
    # The convert lock of a raw image's pull: kept forever, never a leftover.
    return _stale(root, CLOUDIMG.temp(root), ".tmp-", lambda: pull_image(root, fmt="raw"), kind=None)


def stale_oci_pull_dir(root: str) -> Expected:
    ref = "registry.example/crash-" + new_hex()[:8]
    return _stale(root, OCI.temp(root), "pull-", lambda: pull_oci(root, ref, crash_at="workdir"))


def stale_oci_import_dir(root: str) -> Expected:
    return _stale(root, OCI.temp(root), "import-", lambda: import_oci(root, "imp", crash_at="workdir"))


def stale_epoch_tmp(root: str) -> Expected:
    # The registry died after writing its temp DB (its data dir stays too).
    directory = os.path.dirname(layout.snapshot_db(root))
    return _stale(root, directory, EPOCH_TMP, lambda: epoch_import(root, crash_at="tmp"))


# ------------------------------------------------- restore and clone (issue 16)
def _edit_json(path: str, change: Callable[[dict[str, Any]], None]) -> None:
    """A hand edit of a data dir's JSON file, saved as editors save (a new
    file renamed over the old; cocoon.json stays 0600)."""
    with open(path, "rb") as fh:
        doc = json.loads(fh.read())
    change(doc)
    tmp = path + ".edit"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)


def _replace_with_symlink(make: Callable[[str], str], name: str) -> Callable[[str], Expected]:
    """A file of a data dir moved to another disk, a symlink left in its
    place: the preflight's os.Stat follows it, the copy step skips it
    (hypervisor/utils.go:365)."""

    def fault(root: str) -> Expected:
        sid = make(root)
        d = layout.data_dir(root, sid)
        target = _elsewhere(root, f"{sid}-{name}")
        shutil.move(os.path.join(d, name), target)
        os.symlink(target, os.path.join(d, name))
        return _expect("incomplete_data_dir", sid, snapshot_id=sid, path=d)

    return fault


def memory_as_dir(root: str) -> Expected:
    """CH's memory file turned into a directory of that name (an unpack
    gone wrong): the name passes hasMemoryRangeFile, the copy skips it."""
    sid = _ch_snapshot(root)
    d = layout.data_dir(root, sid)
    name = next(n for n in sorted(os.listdir(d)) if n.startswith("memory-range"))
    os.remove(os.path.join(d, name))
    os.mkdir(os.path.join(d, name))
    return _expect("incomplete_data_dir", sid, snapshot_id=sid, path=d)


def config_undecodable(root: str) -> Expected:
    """config.json with `"boot_vcpus": "2"`: chCPUs.BootVCPUs is an int, and
    parseCHConfig decodes the whole chVMConfig (cloudhypervisor/clone.go:223-233)."""
    sid = _ch_snapshot(root)
    d = layout.data_dir(root, sid)
    _edit_json(os.path.join(d, "config.json"), lambda cfg: cfg["cpus"].__setitem__("boot_vcpus", "2"))
    return _expect("incomplete_data_dir", sid, snapshot_id=sid, path=d)


def fc_sidecar_cpu_string(root: str) -> Expected:
    """FC's cocoon.json with `"cpu": "2"`: CH's snapshotMeta has no cpu, but
    Firecracker's own does (firecracker/snapshot.go:28-33)."""
    sid = _fc_snapshot(root)
    d = layout.data_dir(root, sid)
    _edit_json(os.path.join(d, "cocoon.json"), lambda meta: meta.__setitem__("cpu", "2"))
    return _expect("incomplete_data_dir", sid, snapshot_id=sid, path=d)


def _other_root(root: str) -> str:
    """Another host's root: a path beside ours, only named (never written)."""
    return os.path.join(os.path.dirname(os.path.abspath(root)), "other-host-root")


def _rebase(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str) and value.startswith(old + "/"):
        return new + value[len(old) :]
    if isinstance(value, dict):
        return {k: _rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, old, new) for v in value]
    return value


def imported_fc_other_root(root: str) -> Expected:
    """A Firecracker snapshot imported from a host whose root differs: its
    sidecar's absolute paths fail FC's trusted-path check, in restore's
    preflight and in clone (firecracker/snapshot.go:156-168)."""
    sid = _fc_snapshot(root)
    d = layout.data_dir(root, sid)
    other = _other_root(root)
    _edit_json(os.path.join(d, "cocoon.json"), lambda meta: meta.update(_rebase(meta, root, other)))
    return _expect("incomplete_data_dir", sid, snapshot_id=sid, path=d)


def ch_no_cow(root: str) -> Expected:
    """A CH snapshot without a COW disk (sidecar and config.json agree):
    restore's checks pass, clone's updateCOWPath fails
    (cloudhypervisor/clone.go:298-309)."""
    sid = _ch_snapshot(root)
    d = layout.data_dir(root, sid)
    cow = ""

    def drop_meta(meta: dict[str, Any]) -> None:
        nonlocal cow
        cow = next(sc["path"] for sc in meta["storage_configs"] if sc["role"] == "cow")
        meta["storage_configs"] = [sc for sc in meta["storage_configs"] if sc["role"] != "cow"]

    _edit_json(os.path.join(d, "cocoon.json"), drop_meta)
    _edit_json(
        os.path.join(d, "config.json"),
        lambda cfg: cfg.__setitem__("disks", [x for x in cfg["disks"] if x["path"] != cow]),
    )
    os.remove(os.path.join(d, os.path.basename(cow)))
    return _expect("clone_blocked", sid, snapshot_id=sid, path=d)


def imported_ch_other_root(root: str) -> Expected:
    """A CH snapshot of a cloud-image VM imported from a host whose root
    differs: config.json's payload names that host's firmware, which
    clone's VerifyBaseFiles does not find here (cloudhypervisor/clone.go:59,71)."""
    sid = _ch_snapshot(root)
    d = layout.data_dir(root, sid)
    other = _other_root(root)

    def rebase_payload(cfg: dict[str, Any]) -> None:
        cfg["payload"] = _rebase(cfg["payload"], root, other)

    _edit_json(os.path.join(d, "config.json"), rebase_payload)
    return _expect("clone_blocked", sid, snapshot_id=sid, path=d)


def fc_kernel_gone(root: str) -> Expected:
    """An FC snapshot whose sidecar names a kernel (under the root, so
    trusted) that is not there: clone opens it (EnsureVmlinux) and fails."""
    sid = _fc_snapshot(root)
    d = layout.data_dir(root, sid)
    kernel = layout.kernel_path(root, new_hex())
    _edit_json(
        os.path.join(d, "cocoon.json"), lambda meta: meta["boot_config"].__setitem__("kernel_path", kernel)
    )
    return _expect("clone_blocked", sid, snapshot_id=sid, path=d)


def oci_boot_files_gone(root: str) -> Expected:
    """An OCI image whose kernel was removed from oci/boot/<hex>/ by hand:
    `cocoon vm run` of it fails (images/oci/oci.go:136-140)."""
    info = pull_oci(root, "registry.example/boot-" + new_hex()[:8])
    os.remove(layout.kernel_path(root, info["layers"][-1]))
    return _expect("image_unusable", info["ref"])


def empty_kernel_layer(root: str) -> Expected:
    """`"kernel_layer": ""` in one OCI entry: Go decodes it, gc never takes
    its Hex(); creating a VM from that image panics (oci.go:136)."""
    ref = pull_oci(root, "registry.example/nokernel-" + new_hex()[:8])["ref"]
    _set_field(OCI.db(root), "images", ref, "kernel_layer", "", ("images",))
    return _expect("image_unusable", ref)


def vm_kernel_gone(root: str) -> Expected:
    """A Firecracker VM whose vmlinux (extracted next to the image's
    vmlinuz at create, firecracker/create.go:86-91) was removed: the image
    still works, the VM cannot be started or restored."""
    ref = pull_oci(root, "registry.example/vmk-" + new_hex()[:8])["ref"]
    vm = create_vm(root, hypervisor=FC, image=ref)
    rec = load_raw(layout.vm_db(root, FC), ("vms", "names"))["vms"][vm]
    os.remove(rec["boot_config"]["kernel_path"])
    return _expect("vm_base_missing", vm)


def vm_lists_deleted_snapshot(root: str) -> Expected:
    """`cocoon snapshot rm` leaves the VM's snapshot_ids as they are."""
    vm = create_vm(root, hypervisor=CH)
    sid = _snapshot(root, vm=vm)
    snapshots.delete(root, sid)
    return _expect("vm_snapshot_gone", vm, snapshot_id=sid)


def vm_disks_edited(root: str) -> Expected:
    """A CH VM record whose data disk entry was removed by hand after its
    snapshot: restore's ValidateRoleSequence refuses the snapshot on it
    (hypervisor/utils.go:298-313); clone does not care."""
    sid = _ch_snapshot(root)
    db = layout.vm_db(root, CH)
    raw = load_raw(db, ("vms", "names"))
    vm = next(v for v in raw["vms"].values() if sid in (v.get("snapshot_ids") or {}))
    vm["storage_configs"] = [sc for sc in vm["storage_configs"] if sc["role"] != "data"]
    with flock(layout.vm_lock(root, CH)):
        atomic_write_json(db, raw)
    return _expect("restore_blocked", sid, snapshot_id=sid, path=layout.data_dir(root, sid))


def snapshot_memory_below_minimum(root: str) -> Expected:
    """A CH snapshot record whose memory was edited to 256 MiB by hand:
    clone inherits it and VMConfig.Validate refuses it (cmd/core/helpers.go:
    374-398, types/vm.go:80-82); restore keeps the VM's own memory."""
    sid = _ch_snapshot(root)
    _edit_snapshots(root, lambda db: db["snapshots"][sid].update(memory=256 << 20))
    return _expect("clone_blocked", sid, snapshot_id=sid, path=layout.data_dir(root, sid))


def vm_cpu_below_snapshot(root: str) -> Expected:
    """A CH VM record whose cpu was lowered by hand after its snapshot:
    restore keeps the VM's cpu and refuses less than the snapshot's
    (cmd/core/helpers.go:592-594)."""
    sid = _ch_snapshot(root)
    db = layout.vm_db(root, CH)
    raw = load_raw(db, ("vms", "names"))
    vm = next(v for v in raw["vms"].values() if sid in (v.get("snapshot_ids") or {}))
    vm["config"]["cpu"] -= 1
    with flock(layout.vm_lock(root, CH)):
        atomic_write_json(db, raw)
    return _expect("restore_blocked", sid, snapshot_id=sid, path=layout.data_dir(root, sid))


_CH_PARTS = {
    "sidecar": "cocoon.json",
    "config": "config.json",
    "state": "state.json",
    "memory": "memory",
    "cow": "overlay.qcow2",
    "cidata": "cidata.img",
    "data-disk": "data-disk",
}
_FC_PARTS = {
    "sidecar": "cocoon.json",
    "vmstate": "vmstate",
    "mem": "mem",
    "cow": "cow.raw",
    "data-disk": "data-disk",
}

FAULTS: dict[str, Fault] = {}


def _add(name: str, kind: str | None, how: str, make: Callable[[str], Expected]) -> None:
    FAULTS[name] = Fault(name, kind, how, make)


_add("orphan-dir", "orphan_data_dir", "an import that died after extracting, an hour ago", orphan_dir)
_add("missing-dir", "missing_data_dir", "a committed snapshot's dir removed by hand", missing_dir)
_add(
    "missing-blob",
    "missing_blob",
    "the cloud image blob of a VM and its snapshot removed by hand",
    missing_blob,
)
_add("dangling-name", "dangling_name", "a names entry for an ID with no record (hand edit)", dangling_name)
_add("stale-pending", "stale_pending", "a save that died after extracting, 2 h ago", stale_pending)
_add("fresh-pending", "pending", "a save that died right after its pending record", fresh_pending)
_add("unreferenced-blob", "unreferenced_blob", "`image rm` of a pulled image, before gc", unreferenced_blob)
_add("corrupt-db", "db_unreadable", "snapshots.json truncated", corrupt_db)
for _part, _file in _CH_PARTS.items():
    _add(
        f"incomplete-ch-{_part}",
        "incomplete_data_dir",
        f"CH snapshot dir without its {_file}",
        _remove_part(_ch_snapshot, _file),
    )
_add(
    "incomplete-ch-disk-mismatch",
    "incomplete_data_dir",
    "CH config.json disks reordered against cocoon.json",
    ch_disk_mismatch,
)
for _part, _file in _FC_PARTS.items():
    _add(
        f"incomplete-fc-{_part}",
        "incomplete_data_dir",
        f"FC snapshot dir without its {_file}",
        _remove_part(_fc_snapshot, _file),
    )
_add(
    "half-deleted",
    "incomplete_data_dir",
    "`snapshot rm` that died halfway through removing the dir",
    half_deleted,
)
_add(
    "null-record-with-dir",
    "orphan_data_dir",
    "a record set to null by hand, its dir kept (gc deletes it)",
    null_record_with_dir,
)
_add(
    "symlinked-blob",
    None,
    "a blob moved elsewhere with a symlink in its place (os.Stat follows it)",
    lambda r: _symlink_blob(r, False),
)
_add(
    "dangling-symlinked-blob",
    "missing_blob",
    "a blob symlink whose target is gone",
    lambda r: _symlink_blob(r, True),
)
_add(
    "symlink-dir-in-localfile",
    None,
    "a snapshot's dir moved elsewhere, a symlink left (gc never sees it)",
    symlink_dir_in_localfile,
)
_add(
    "orphan-symlink-dir",
    "orphan_data_dir",
    "a symlink in localfile/ to a dir with no record (gc never removes it)",
    orphan_symlink_dir,
)
_add("missing-oci-layer", "missing_blob", "an OCI layer's erofs removed by hand", missing_oci_layer)
_add("corrupt-oci-db", "db_unreadable", "oci/db/images.json truncated", corrupt_oci_db)
_add(
    "undecodable-snapshot-field",
    "db_unreadable",
    '"hypervisor": 5 in a snapshot record',
    undecodable_snapshot_field,
)
_add("undecodable-vm-field", "db_unreadable", '"first_booted": "yes" in a VM record', undecodable_vm_field)
_add(
    "stale-creating-vm",
    "stale_creating_vm",
    "a VM create that died 25 h ago (record `creating`)",
    stale_creating_vm,
)
_add("orphan-vm-run-dir", "orphan_vm_dir", "a VM record removed by hand, its run dir left", orphan_vm_run_dir)
_add("corrupt-cni-db", "db_unreadable", "cni/db/networks.json truncated (gc aborts)", corrupt_cni_db)
_add(
    "undecodable-image-field",
    "db_unreadable",
    '"size": "big" in a cloud image entry',
    undecodable_image_field,
)
_add(
    "case-variant-key", "pending", '"Pending": true on a record whose dir is not there yet', case_variant_key
)
_add(
    "recorded-data-dir-elsewhere",
    "data_dir_mismatch",
    "record's data_dir points outside localfile/, the dir there",
    recorded_data_dir_elsewhere,
)
_add(
    "stale-pull-img",
    "stale_temp",
    "a cloud image download that died (cloudimg/temp/pull-*.img)",
    stale_pull_img,
)
_add(
    "stale-import-img",
    "stale_temp",
    "a cloud image import that died (cloudimg/temp/import-*.img)",
    stale_import_img,
)
_add(
    "stale-tmp-blob",
    "stale_temp",
    "a pull that died before its commit (cloudimg/temp/.tmp-<hex>.qcow2)",
    stale_tmp_blob,
)
for _module in ("snapshot", "cloudimg", "oci", "cloudhypervisor", "firecracker"):
    _add(
        f"stale-db-tmp-{_module}",
        "stale_temp",
        f"AtomicWriteJSON's .tmp-* left in {_module}/db",
        _db_tmp(_module),
    )
_add("stale-oci-pull-dir", "stale_temp", "an OCI pull that died (oci/temp/pull-*/)", stale_oci_pull_dir)
_add(
    "stale-oci-import-dir", "stale_temp", "an OCI import that died (oci/temp/import-*/)", stale_oci_import_dir
)
_add("stale-epoch-tmp", "stale_temp", "the registry's snapshots.json.tmp left by a crash", stale_epoch_tmp)
_add("convert-lock", None, "a raw image's convert lock .tmp-<hex>.qcow2.lock (kept by design)", convert_lock)
_add(
    "vm-disks-edited",
    "restore_blocked",
    "a VM's data disk removed from its record by hand after its snapshot",
    vm_disks_edited,
)
_add("oci-boot-files-gone", "image_unusable", "an OCI image's vmlinuz removed by hand", oci_boot_files_gone)
_add("empty-kernel-layer", "image_unusable", '"kernel_layer": "" in one OCI image entry', empty_kernel_layer)
_add("vm-kernel-gone", "vm_base_missing", "a Firecracker VM's extracted vmlinux removed", vm_kernel_gone)
_add(
    "vm-lists-deleted-snapshot",
    "vm_snapshot_gone",
    "`snapshot rm` of a VM's snapshot (the VM keeps listing it)",
    vm_lists_deleted_snapshot,
)
_add(
    "copy-skips-symlink-ch-state",
    "incomplete_data_dir",
    "CH state.json moved elsewhere, a symlink left (the copy step skips non-regular files)",
    _replace_with_symlink(_ch_snapshot, "state.json"),
)
_add(
    "copy-skips-symlink-fc-mem",
    "incomplete_data_dir",
    "FC mem moved elsewhere, a symlink left (the copy step skips non-regular files)",
    _replace_with_symlink(_fc_snapshot, "mem"),
)
_add(
    "copy-skips-dir-memory", "incomplete_data_dir", "CH memory-range* file that is a directory", memory_as_dir
)
_add("config-undecodable", "incomplete_data_dir", 'CH config.json with "boot_vcpus": "2"', config_undecodable)
_add(
    "fc-sidecar-cpu-string",
    "incomplete_data_dir",
    'FC cocoon.json with "cpu": "2" (FC\'s own snapshotMeta)',
    fc_sidecar_cpu_string,
)
_add(
    "imported-fc-other-root",
    "incomplete_data_dir",
    "FC snapshot imported from a host with another root (trusted-path check)",
    imported_fc_other_root,
)
_add("ch-no-cow", "clone_blocked", "CH snapshot whose sidecar and config.json name no COW disk", ch_no_cow)
_add(
    "imported-ch-other-root",
    "clone_blocked",
    "CH cloud-image snapshot imported from another root: its firmware path is not here",
    imported_ch_other_root,
)
_add(
    "fc-kernel-gone", "clone_blocked", "FC snapshot whose sidecar names a kernel that is gone", fc_kernel_gone
)


_add(
    "snapshot-memory-below-minimum",
    "clone_blocked",
    "a snapshot record's memory edited to 256 MiB (clone validates it as a new VM's)",
    snapshot_memory_below_minimum,
)
_add(
    "vm-cpu-below-snapshot",
    "restore_blocked",
    "a VM's cpu lowered by hand below its snapshot's (restore refuses less)",
    vm_cpu_below_snapshot,
)


def _odd_oci_blob(name: str) -> Callable[[str], Expected]:
    """A stray file in oci/blobs whose stem ("", ".", "..") turns gc's
    RemoveAll(oci/boot/<stem>) into oci/boot or oci/ (images/oci/gc.go:21):
    a copy or a `touch` gone wrong."""

    def make(root: str) -> Expected:
        path = os.path.join(root, "oci", "blobs", name)
        ensure_dirs(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(b"stray")
        return _expect("gc_destroys", _rel(root, path), path=path)

    return make


def _pending_named_dotdot(root: str) -> Expected:
    """A pending record keyed ".." (a tool that wrote snapshots.json by
    hand), two days old: gc's RemoveAll(localfile/..) is all of snapshot/
    (snapshot/localfile/gc.go:52,75)."""
    created = go_time(time.time() - 48 * 3600)
    record = {"id": "..", "name": "", "pending": True, "created_at": created}
    _edit_snapshots(root, lambda db: db["snapshots"].update({"..": record}))
    return _expect("gc_destroys", "..", snapshot_id="..", path=os.path.join(root, "snapshot"))


_add(
    "gc-destroys-snapshot", "gc_destroys", 'a pending record keyed ".." over 24 h old', _pending_named_dotdot
)
_add(
    "gc-destroys-oci-boot",
    "gc_destroys",
    "a stray oci/blobs/..erofs (gc removes oci/boot)",
    _odd_oci_blob("..erofs"),
)
_add(
    "gc-destroys-oci",
    "gc_destroys",
    "a stray oci/blobs/...erofs (gc removes oci/)",
    _odd_oci_blob("...erofs"),
)


def inject(root: str, fault: str) -> Expected:
    """Make `fault` in the tree at `root`; returns the finding to expect."""
    try:
        f = FAULTS[fault]
    except KeyError:
        raise SimError(f"unknown fault {fault!r}; `inject --list` lists them") from None
    return {"fault": fault, **f.make(root)}
