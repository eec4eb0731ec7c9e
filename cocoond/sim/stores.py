"""Cocoon's DBs as typed stores, and raw access for hand edits.

The typed stores read and write a DB as cocoon does (schema.py). The raw
helpers (`load_snapshots`, `load_images`) return the file's JSON as it is,
for tests and faults that edit a DB by hand the way a person or another
tool would; they write it back with fsops.atomic_write_json.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cocoond.sim import layout, schema
from cocoond.sim.fsops import Store
from cocoond.sim.layout import Hypervisor, ImageBackend


def snapshot_store(root: str) -> Store:
    return Store(layout.snapshot_db(root), layout.snapshot_lock(root), schema.SNAPSHOT_INDEX)


def image_store(root: str, backend: ImageBackend) -> Store:
    top = schema.OCI_INDEX if backend is layout.OCI else schema.CLOUDIMG_INDEX
    return Store(backend.db(root), backend.lock(root), top)


def vm_store(root: str, hv: Hypervisor) -> Store:
    return Store(layout.vm_db(root, hv), layout.vm_lock(root, hv), schema.VM_INDEX)


def cni_store(root: str) -> Store:
    return Store(layout.cni_db(root), layout.cni_lock(root), schema.CNI_INDEX)


def load_raw(path: str, top: tuple[str, ...]) -> dict[str, Any]:
    """A DB's JSON as it is on disk (top-level maps made non-null)."""
    try:
        with open(path, "rb") as fh:
            obj = json.loads(fh.read())
    except FileNotFoundError:
        obj = {}
    if obj is None:
        obj = {}
    for key in top:
        if obj.get(key) is None:
            obj[key] = {}
    return obj  # type: ignore[no-any-return]


def load_snapshots(root: str) -> dict[str, Any]:
    return load_raw(layout.snapshot_db(root), ("snapshots", "names"))


def load_images(root: str, backend: ImageBackend = layout.CLOUDIMG) -> dict[str, Any]:
    return load_raw(backend.db(root), ("images",))


def load_vms(root: str, hv: Hypervisor) -> dict[str, Any]:
    return load_raw(layout.vm_db(root, hv), ("vms", "names"))


def exists(path: str) -> bool:
    return os.path.lexists(path)
