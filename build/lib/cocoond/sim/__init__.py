"""The project's own simulator of Cocoon's storage, written from cocoon's Go
source (cocoonstack/cocoon at 34c6c4a). It does to a directory what cocoon
does to its root: the same files, names, modes, JSON and lock, in the same
order, with a crash possible between any two steps, plus the faults that
happen on hosts. It writes only under the root it is given (the VMs' run
and log dirs go to ROOT/run and ROOT/log).

It is a test and demo tool, shipped with the package so the demo and the
benchmarks work from any install; the daemon never imports it, and it
imports nothing of cocoond outside this package (standard library only), so
a bug in cocoond's reading of a format cannot hide in a shared helper.

    python -m cocoond.sim ROOT COMMAND ...        (see cli.py, or --help)

Modules: gojson (Go's JSON and time), schema (cocoon's structs), layout
(paths), fsops (flock, atomic writes, temp names, stores), content (file
stand-ins), stores (the DBs), images (cloudimg, OCI), vms, datadir
(snapshot dirs per hypervisor), snapshots (save, rm, import), gc, epoch
(the registry's unlocked rewrite), faults, bulk (populate, churn), cli.
"""

from cocoond.sim.bulk import churn, populate
from cocoond.sim.content import FileSpec
from cocoond.sim.datadir import MEMORY_FILE, snapshot_specs, stand_in_vm, write_snapshot_files
from cocoond.sim.epoch import epoch_import
from cocoond.sim.faults import FAULTS, inject
from cocoond.sim.fsops import SimError, atomic_write_json, backdate, flock, new_hex, new_id
from cocoond.sim.gc import GCAborted, gc
from cocoond.sim.gojson import go_time, marshal
from cocoond.sim.images import import_image, import_oci, layout_init, pull_image, pull_oci, rmi
from cocoond.sim.layout import (
    CH,
    CLOUDIMG,
    FC,
    OCI,
    blob_path,
    cloudimg_db,
    cloudimg_lock,
    data_dir,
    snapshot_db,
    snapshot_lock,
    vm_db,
    vm_lock,
)
from cocoond.sim.snapshots import create, delete, export, import_snapshot, record
from cocoond.sim.stores import load_images, load_snapshots, load_vms
from cocoond.sim.vms import DataDisk, create_vm, rm_vm, start_vm

init = layout_init

__all__ = [
    "CH",
    "CLOUDIMG",
    "FAULTS",
    "FC",
    "MEMORY_FILE",
    "OCI",
    "DataDisk",
    "FileSpec",
    "GCAborted",
    "SimError",
    "atomic_write_json",
    "backdate",
    "blob_path",
    "churn",
    "cloudimg_db",
    "cloudimg_lock",
    "create",
    "create_vm",
    "data_dir",
    "delete",
    "epoch_import",
    "export",
    "flock",
    "gc",
    "go_time",
    "import_image",
    "import_oci",
    "import_snapshot",
    "init",
    "inject",
    "load_images",
    "load_snapshots",
    "load_vms",
    "marshal",
    "new_hex",
    "new_id",
    "populate",
    "pull_image",
    "pull_oci",
    "record",
    "rm_vm",
    "rmi",
    "snapshot_db",
    "snapshot_lock",
    "snapshot_specs",
    "stand_in_vm",
    "start_vm",
    "vm_db",
    "vm_lock",
    "write_snapshot_files",
]
