"""Big trees and busy hosts.

`populate` builds a large, fully consistent tree in one go for benchmarks:
images of both kinds, VMs of both hypervisors, and snapshots of them with
complete data dirs, each DB written once (under its lock, atomically), as
if the commands had run one by one. Files are what the single commands
write (the same builders); big ones (memory, disks) are sparse.

`churn` runs legitimate commands at random: snapshot save / rm / import of
both hypervisors, cloud image and OCI pulls, image rm, VM create / rm, gc.
While it runs cocoond may see pending records and temp files in flight;
once it stops, the tree is consistent (nothing above info).
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable
from typing import Any

from cocoond.sim import content, gojson, layout, snapshots
from cocoond.sim.datadir import MEMORY_FILE, snapshot_specs
from cocoond.sim.fsops import SimError, flock, new_id
from cocoond.sim.gc import GCAborted, gc
from cocoond.sim.images import cloudimg_entry, layout_init, oci_entry, pull_image, pull_oci, rmi
from cocoond.sim.layout import CH, CLOUDIMG, FC, OCI, Hypervisor, ImageBackend
from cocoond.sim.schema import GoDecodeError
from cocoond.sim.snapshots import snapshot_config
from cocoond.sim.stores import image_store, snapshot_store, vm_store
from cocoond.sim.vms import (
    DataDisk,
    build_vm,
    create_vm,
    image_storage,
    mark_started,
    rm_vm,
    vm_config,
)

SNAPSHOTS_PER_VM = 25


def _populate_images(root: str, count: int, seed: int, now: str) -> list[tuple[ImageBackend, dict[str, Any]]]:
    """`count` images, alternately cloud images and OCI images (two layers,
    the first a base layer every OCI image shares), written as pulls leave
    them. Returns (backend, entry) pairs."""
    cloud: dict[str, Any] = {}
    oci: dict[str, Any] = {}
    base = hashlib.sha256(f"{seed}-oci-base".encode()).hexdigest()
    for i in range(count):
        tag = f"{seed}-{i}".encode()
        if i % 2 == 0:
            body = content.qcow2(10 << 30, 3, tag=tag)
            hex_ = hashlib.sha256(body).hexdigest()
            blob = CLOUDIMG.blob(root, hex_)
            content.FileSpec.of(os.path.basename(blob), body).write(CLOUDIMG.blobs(root))
            os.chmod(blob, 0o444)
            ref = f"https://images.example/img-{i}.qcow2"
            cloud[ref] = cloudimg_entry(ref, hex_, len(body), now)
            continue
        top = hashlib.sha256(tag + b"-top").hexdigest()
        size = 0
        for hex_ in (base, top):
            if not os.path.exists(OCI.blob(root, hex_)):
                content.FileSpec.sparse(hex_ + ".erofs", 16384, content.erofs(hex_.encode())).write(
                    OCI.blobs(root)
                )
            size += 16384
        boot = layout.oci_boot_dir(root, top)
        os.makedirs(boot, 0o750, exist_ok=True)
        content.FileSpec.of("vmlinuz", content.bzimage(tag)).write(boot)
        content.FileSpec.of("initrd.img", content.initrd(tag)).write(boot)
        size += os.path.getsize(os.path.join(boot, "vmlinuz")) + os.path.getsize(
            os.path.join(boot, "initrd.img")
        )
        ref = f"registry.example/app-{i}:latest"
        manifest = "sha256:" + hashlib.sha256(tag + b"-manifest").hexdigest()
        oci[ref] = oci_entry(ref, manifest, [base, top], top, top, size, now)
    for backend, images in ((CLOUDIMG, cloud), (OCI, oci)):
        store = image_store(root, backend)
        with flock(store.lock):
            store.write_raw({"images": images})
    return [(CLOUDIMG, e) for e in cloud.values()] + [(OCI, e) for e in oci.values()]


def populate(
    root: str,
    snapshots: int,
    images: int,
    seed: int = 1,
    vms: int | None = None,
    memory_file: str = MEMORY_FILE,
) -> dict[str, int]:
    """A consistent tree of `snapshots` snapshots over `images` images and
    `vms` VMs (default: one per 25 snapshots), deterministic for a seed."""
    rng = random.Random(seed)
    layout_init(root)
    now = gojson.go_time()
    made = _populate_images(root, images, seed, now)
    n_vms = vms if vms is not None else -(-snapshots // SNAPSHOTS_PER_VM)
    n_vms = max(n_vms, 1 if snapshots else 0)
    vm_index: dict[Hypervisor, dict[str, Any]] = {hv: {"vms": {}, "names": {}} for hv in layout.HYPERVISORS}
    recs = []
    for i in range(n_vms):
        backend, entry = made[i % len(made)] if made else (CLOUDIMG, None)
        hv = FC if backend is OCI and rng.random() < 0.5 else CH
        vm_id = new_id(rng)
        if entry is not None:
            storage, boot, digest, kind = image_storage(root, backend, entry)
            image = entry["ref"]
        else:
            storage, boot, digest, kind, image = [], {"firmware_path": layout.firmware_path(root)}, "", "", ""
        config = vm_config(f"vm-{i:05d}", image, digest, kind, cpu=1 + i % 4, memory=(1 + i % 4) << 30)
        disks = [DataDisk("data", 64 << 20)] if i % 3 == 0 else []
        rec = build_vm(root, hv, vm_id, config, storage, boot, disks, 1 + i % 2, rng)
        mark_started(rec)
        rec["snapshot_ids"] = {}
        vm_index[hv]["vms"][vm_id] = rec
        vm_index[hv]["names"][config["name"]] = vm_id
        recs.append((hv, rec, snapshot_specs(rec, memory_file)))
    db: dict[str, Any] = {"snapshots": {}, "names": {}}
    base_ns = gojson.now_ns() - snapshots * 1_000_000_000
    offset = gojson.local_offset(time.time())
    for i in range(snapshots):
        hv, rec, specs = recs[i % len(recs)]
        sid = new_id(rng)
        data = layout.data_dir(root, sid)
        os.mkdir(data, 0o750)
        content.write_specs(data, specs)
        cfg = snapshot_config(sid, rec, hv)
        cfg.update(name=f"snap-{i:07d}", description=f"bench {i}")
        created = gojson.format_time(base_ns + i * 1_000_000_000, offset)
        db["snapshots"][sid] = {**cfg, "created_at": created, "data_dir": data}
        db["names"][cfg["name"]] = sid
        rec["snapshot_ids"][sid] = {}
    for hv, index in vm_index.items():
        store = vm_store(root, hv)
        with flock(store.lock):
            store.write_raw(index)
    store = snapshot_store(root)
    with flock(store.lock):
        store.write_raw(db)
    return {"snapshots": snapshots, "images": images, "vms": n_vms}


# -------------------------------------------------------------------- churn
def churn(root: str, seconds: float, seed: int = 1, pause: float = 0.01) -> dict[str, int]:
    """Legitimate commands at random for `seconds` (at least one snapshot
    save); returns how many of each ran ("failed": commands cocoon refused
    because of a fault made meanwhile). Like a tenant, churn works on what
    it made itself (its images, VMs and snapshots, made first), so faults
    injected meanwhile stay as they were made; gc, like cocoon's, looks at
    everything. The seed picks the commands; IDs are random as cocoon's are
    (crypto/rand), so they never repeat those of a tree populated with the
    same seed."""
    rng = random.Random(seed)
    layout_init(root)
    counts: dict[str, int] = {}
    mine: dict[str, set[str]] = {
        "cloudimg": set(),
        "oci": set(),
        CH.name: set(),
        FC.name: set(),
        "snap": set(),
    }

    def count(op: str) -> None:
        counts[op] = counts.get(op, 0) + 1

    def pick(*kinds: str) -> str | None:
        pool = sorted(x for k in kinds for x in mine[k])
        return rng.choice(pool) if pool else None

    def pull() -> None:
        url = f"https://images.example/churn-{rng.getrandbits(40):010x}.img"
        pull_image(root, url=url)
        mine["cloudimg"].add(url)
        count("pull")

    def pull_oci_image() -> None:
        ref = f"registry.example/churn-{rng.getrandbits(40):010x}"
        mine["oci"].add(pull_oci(root, ref, layers=2, seed=f"churn-{seed}")["ref"])
        count("pull-oci")

    def vm_create(hv: Hypervisor | None = None) -> None:
        hv = hv or (FC if rng.random() < 0.4 else CH)
        image = pick("oci") if hv is FC else pick("oci", "cloudimg")
        if image is not None:
            mine[hv.name].add(create_vm(root, hypervisor=hv, image=image))
            count("vm-create")

    def save() -> None:
        vm = pick(CH.name, FC.name)
        if vm is not None:
            mine["snap"].add(snapshots.create(root, vm=vm))
            count("create")

    def delete() -> None:
        sid = pick("snap")
        if sid is not None:
            mine["snap"].discard(snapshots.delete(root, sid))
            count("delete")

    def import_() -> None:
        sid = pick("snap")
        if sid is not None:
            name = f"imported-{rng.getrandbits(40):010x}"
            mine["snap"].add(snapshots.import_snapshot(root, source=sid, name=name))
            count("import")

    def image_rm() -> None:
        kind = rng.choice(["cloudimg", "oci"])
        if len(mine[kind]) > 1:
            ref = pick(kind)
            assert ref is not None
            rmi(root, ref)
            mine[kind].discard(ref)
            count("rmi")

    def vm_rm() -> None:
        hv = rng.choice([CH, FC])
        if len(mine[hv.name]) > 1:
            vm = pick(hv.name)
            assert vm is not None
            rm_vm(root, vm)
            mine[hv.name].discard(vm)
            count("vm-rm")

    def run_gc() -> None:
        try:
            gc(root)
        except GCAborted:
            count("gc-aborted")
        count("gc")

    for setup in (pull, pull_oci_image, lambda: vm_create(CH), lambda: vm_create(FC)):
        setup()
    ops: list[Callable[[], object]] = [
        save,
        save,
        save,
        delete,
        delete,
        import_,
        pull,
        pull_oci_image,
        image_rm,
        vm_create,
        vm_rm,
        run_gc,
    ]
    end = time.monotonic() + seconds
    op: Callable[[], object] = save
    while True:
        try:
            op()
        except (SimError, GoDecodeError):
            # What cocoon refuses on a broken tree (a fault injected meanwhile:
            # an image whose blob is gone, an unreadable DB) fails that command only.
            count("failed")
        if time.monotonic() >= end:
            break
        time.sleep(pause)
        op = rng.choice(ops)
    return counts
