"""Where cocoon keeps things under its root, from its config types:
snapshot/localfile/config.go, images/baseconfig.go, images/cloudimg/config.go,
images/oci/config.go, hypervisor/baseconfig.go, hypervisor/*/config.go,
config/config.go. RunDir defaults to RootDir/run (cmd/root.go:60); cocoon's
LogDir default is /var/log/cocoon, which the simulator moves to RootDir/log
so that it writes only under the root it is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Hypervisor:
    name: str  # what records say: types.VM.Hypervisor, types.SnapshotConfig.Hypervisor
    dir: str  # the backend's directory (hypervisor.NewBaseConfig's name)
    pid_file: str


CH = Hypervisor("cloud-hypervisor", "cloudhypervisor", "ch.pid")
FC = Hypervisor("firecracker", "firecracker", "fc.pid")
HYPERVISORS = (CH, FC)  # cmd/core/helpers.go:40-43, also gc's order


def hypervisor(name: str) -> Hypervisor:
    for hv in HYPERVISORS:
        if name in (hv.name, hv.dir, "ch" if hv is CH else "fc"):
            return hv
    raise ValueError(f"unknown hypervisor {name!r} (cloud-hypervisor or firecracker)")


def p(root: str, *parts: str) -> str:
    return os.path.join(root, *parts)


# snapshot/localfile/config.go
def snapshot_db(root: str) -> str:
    return p(root, "snapshot", "db", "snapshots.json")


def snapshot_lock(root: str) -> str:
    return p(root, "snapshot", "db", "snapshots.lock")


def localfile_dir(root: str) -> str:
    return p(root, "snapshot", "localfile")


def data_dir(root: str, sid: str) -> str:
    return p(root, "snapshot", "localfile", sid)


# images/baseconfig.go with Subdir/BlobExt from images/{cloudimg,oci}/config.go
@dataclass(frozen=True)
class ImageBackend:
    type: str  # "cloudimg" or "oci" (the backend's typ, also its GC module name)
    blob_ext: str

    def db(self, root: str) -> str:
        return p(root, self.type, "db", "images.json")

    def lock(self, root: str) -> str:
        return p(root, self.type, "db", "images.lock")

    def temp(self, root: str) -> str:
        return p(root, self.type, "temp")

    def blobs(self, root: str) -> str:
        return p(root, self.type, "blobs")

    def blob(self, root: str, hex_: str) -> str:
        return p(root, self.type, "blobs", hex_ + self.blob_ext)


CLOUDIMG = ImageBackend("cloudimg", ".qcow2")
OCI = ImageBackend("oci", ".erofs")
IMAGE_BACKENDS = (OCI, CLOUDIMG)  # cmd/core/helpers.go:100, also gc's order


def cloudimg_db(root: str) -> str:
    return CLOUDIMG.db(root)


def cloudimg_lock(root: str) -> str:
    return CLOUDIMG.lock(root)


def blob_path(root: str, hex_: str) -> str:
    """A cloud image blob, cloudimg/blobs/<hex>.qcow2."""
    return CLOUDIMG.blob(root, hex_)


def tmp_blob_path(root: str, hex_: str) -> str:
    """images/cloudimg/config.go:33."""
    return p(CLOUDIMG.temp(root), ".tmp-" + hex_ + ".qcow2")


def firmware_path(root: str) -> str:
    """images/cloudimg/config.go:28."""
    return p(root, "firmware", "CLOUDHV.fd")


def oci_boot_base(root: str) -> str:
    return p(root, "oci", "boot")


def oci_boot_dir(root: str, hex_: str) -> str:
    return p(root, "oci", "boot", hex_)


def kernel_path(root: str, hex_: str) -> str:
    return p(root, "oci", "boot", hex_, "vmlinuz")


def initrd_path(root: str, hex_: str) -> str:
    return p(root, "oci", "boot", hex_, "initrd.img")


# hypervisor/baseconfig.go
def vm_db(root: str, hv: Hypervisor) -> str:
    return p(root, hv.dir, "db", "vms.json")


def vm_lock(root: str, hv: Hypervisor) -> str:
    return p(root, hv.dir, "db", "vms.lock")


def run_dir(root: str, hv: Hypervisor) -> str:
    return p(root, "run", hv.dir)


def log_dir(root: str, hv: Hypervisor) -> str:
    return p(root, "log", hv.dir)


def vm_run_dir(root: str, hv: Hypervisor, vm_id: str) -> str:
    return p(root, "run", hv.dir, vm_id)


def vm_log_dir(root: str, hv: Hypervisor, vm_id: str) -> str:
    return p(root, "log", hv.dir, vm_id)


# network/cni/config.go:30-33
def cni_db(root: str) -> str:
    return p(root, "cni", "db", "networks.json")


def cni_lock(root: str) -> str:
    return p(root, "cni", "db", "networks.lock")


def bridge_lock(root: str) -> str:
    """network/bridge/gc_linux.go:30: the bridge gc module's own lock."""
    return p(root, "bridge", "gc.lock")


#: Every DB: (its path under the root, its lock under the root).
def all_dbs() -> dict[str, tuple[str, str]]:
    dbs = {"snapshot": ("snapshot/db/snapshots.json", "snapshot/db/snapshots.lock")}
    for b in (CLOUDIMG, OCI):
        dbs[b.type] = (f"{b.type}/db/images.json", f"{b.type}/db/images.lock")
    for hv in HYPERVISORS:
        dbs[hv.dir] = (f"{hv.dir}/db/vms.json", f"{hv.dir}/db/vms.lock")
    return dbs


def backend_dirs(
    root: str,
    *,
    images: bool = False,
    hypervisors: tuple[Hypervisor, ...] = (),
    snapshot: bool = False,
    cni: bool = False,
) -> list[str]:
    """What the backends a command initialises create in their New() with
    utils.EnsureDirs (0750): images.BaseConfig.EnsureBaseDirs (+ OCI's boot
    dir), hypervisor.BaseConfig.EnsureDirs, localfile.Config.EnsureDirs,
    cni.Config.EnsureDirs."""
    dirs = []
    if images:
        for b in IMAGE_BACKENDS:
            dirs += [p(root, b.type, "db"), b.temp(root), b.blobs(root)]
        dirs.append(oci_boot_base(root))
    for hv in hypervisors:
        dirs += [p(root, hv.dir, "db"), run_dir(root, hv), log_dir(root, hv)]
    if snapshot:
        dirs += [p(root, "snapshot", "db"), localfile_dir(root)]
    if cni:
        dirs.append(p(root, "cni", "db"))
    return dirs


def all_backend_dirs(root: str) -> list[str]:
    """What `cocoon gc` initialises: every backend."""
    return backend_dirs(root, images=True, hypervisors=HYPERVISORS, snapshot=True, cni=True)
