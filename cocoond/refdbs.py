"""The other DBs that can pin a blob: cocoon's image index and the VM DBs.
We only need the blob hexes they name; anything that is not the expected
shape is an error, because guessing would let us call a pinned blob
unreferenced."""

from __future__ import annotations

import os
from typing import Any

from cocoond.errors import DBError
from cocoond.gojson import loads_go

#: Path of the image DB under the root; VM DBs are `<backend>/db/vms.json`.
IMAGE_DB = "cloudimg/db/images.json"


def _load_object(data: bytes, path: str) -> dict[str, Any]:
    top = loads_go(data, path)
    if top is None:
        return {}
    if type(top) is not dict:
        raise DBError(path, "expected a JSON object at the top")
    return top


def _table(top: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    table = top.get(key)
    if table is None:
        return {}
    if type(table) is not dict:
        raise DBError(path, f'"{key}": expected an object')
    return table


def decode_image_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by `images[*].content_sum` ("sha256:<hex>")."""
    refs: set[str] = set()
    for ref, entry in _table(_load_object(data, path), "images", path).items():
        if entry is None:
            continue
        if type(entry) is not dict:
            raise DBError(path, f"images[{ref!r}]: expected an object")
        digest = entry.get("content_sum")
        if digest is None or digest == "":
            continue
        if type(digest) is not str:
            raise DBError(path, f"images[{ref!r}].content_sum: expected a string")
        refs.add(digest.rpartition(":")[2])
    return frozenset(refs)


def decode_vm_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by `vms[*].image_blob_ids` (a Go set)."""
    refs: set[str] = set()
    for vid, vm in _table(_load_object(data, path), "vms", path).items():
        if vm is None:
            continue
        if type(vm) is not dict:
            raise DBError(path, f"vms[{vid!r}]: expected an object")
        blobs = vm.get("image_blob_ids")
        if blobs is None:
            continue
        if type(blobs) is not dict:
            raise DBError(path, f"vms[{vid!r}].image_blob_ids: expected an object")
        refs.update(blobs)
    return frozenset(refs)


def decoder_for(relpath: str) -> Any:
    """The decoder for a ref DB given its path under the root."""
    return decode_image_refs if relpath == IMAGE_DB else decode_vm_refs


def vm_db_relpaths(backends: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.join(b, "db", "vms.json") for b in backends)
