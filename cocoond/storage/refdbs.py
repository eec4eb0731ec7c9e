"""The other DBs that can pin a blob: cocoon's image index and the VM DBs.
We only need the blob hexes they name; anything that is not the expected
shape is an error, because guessing would let us call a pinned blob
unreferenced."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from cocoond.errors import DBError
from cocoond.storage.gojson import loads_go

#: Path of the image DB under the root; VM DBs are `<backend>/db/vms.json`.
IMAGE_DB = "cloudimg/db/images.json"
#: The OCI image DB: each image's layers[].digest pins oci/blobs/<hex>.erofs.
OCI_IMAGE_DB = "oci/db/images.json"


def _load_object(data: bytes, path: str) -> dict[str, Any]:
    top = loads_go(data, path)
    if top is None:
        return {}
    if type(top) is not dict:
        raise DBError(path, "expected a JSON object at the top")
    return top


def _fields(data: bytes, path: str, table: str, field: str, kind: type) -> Iterator[tuple[str, Any]]:
    """(entry key, value of `field`) for every entry of `top[table]` that
    has it; null maps, entries and fields are skipped as Go skips them."""
    top = _load_object(data, path)
    entries = top.get(table)
    if entries is None:
        return
    if type(entries) is not dict:
        raise DBError(path, f'"{table}": expected an object')
    for key, entry in entries.items():
        if entry is None:
            continue
        if type(entry) is not dict:
            raise DBError(path, f"{table}[{key!r}]: expected an object")
        value = entry.get(field)
        if value is None:
            continue
        if type(value) is not kind:
            label = "a string" if kind is str else "an array" if kind is list else "an object"
            raise DBError(path, f"{table}[{key!r}].{field}: expected {label}")
        yield key, value


def decode_image_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by `images[*].content_sum` ("sha256:<hex>")."""
    return frozenset(
        digest.rpartition(":")[2] for _, digest in _fields(data, path, "images", "content_sum", str) if digest
    )


def decode_vm_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by `vms[*].image_blob_ids` (a Go set)."""
    refs: set[str] = set()
    for _, blobs in _fields(data, path, "vms", "image_blob_ids", dict):
        refs.update(blobs)
    return frozenset(refs)


def decode_oci_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by `images[*].layers[*].digest` ("sha256:<hex>")."""
    refs: set[str] = set()
    for key, layers in _fields(data, path, "images", "layers", list):
        for i, layer in enumerate(layers):
            if layer is None:
                continue
            if type(layer) is not dict:
                raise DBError(path, f"images[{key!r}].layers[{i}]: expected an object")
            digest = layer.get("digest")
            if digest is None:
                continue
            if type(digest) is not str:
                raise DBError(path, f"images[{key!r}].layers[{i}].digest: expected a string")
            if digest:
                refs.add(digest.rpartition(":")[2])
    return frozenset(refs)


def decoder_for(relpath: str) -> Any:
    """The decoder for a ref DB given its path under the root."""
    return {IMAGE_DB: decode_image_refs, OCI_IMAGE_DB: decode_oci_refs}.get(relpath, decode_vm_refs)


def vm_db_relpaths(backends: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.join(b, "db", "vms.json") for b in backends)
