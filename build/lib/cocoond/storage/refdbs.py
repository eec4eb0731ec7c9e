"""The other DBs that can pin a blob: cocoon's two image indexes and the VM
DBs. Each is decoded whole as cocoon decodes it (json.Unmarshal into its Go
type: godecode, goschema) and yields the blob hexes it references; a DB Go
cannot decode is a DBError with Go's error, because guessing would let us
call a pinned blob unreferenced while every cocoon command fails on it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from cocoond.errors import DBError
from cocoond.storage import goschema
from cocoond.storage.goplain import unmarshal

#: Where the image indexes live under the root; VM DBs are `<backend>/db/vms.json`.
IMAGE_DB = "cloudimg/db/images.json"
#: The OCI image DB: each image's layers[].digest pins oci/blobs/<hex>.erofs.
OCI_IMAGE_DB = "oci/db/images.json"

RefDecoder = Callable[[bytes, str], frozenset[str]]


def _entries(top: dict[str, Any], table: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """(key, entry) for each non-nil entry: cocoon skips nil ones."""
    for key, entry in (top.get(table) or {}).items():
        if isinstance(entry, dict):
            yield key, entry


def _hex(path: str, where: str, digest: str, consequence: str) -> str:
    """images.Digest.Hex(): go-digest's Digest.Encoded(), what follows the
    first ':'. Encoded panics when there is none (go-digest v1.0.0
    digest.go sepIndex: panic("no ':' separator in digest ...")), an empty
    digest included, so a DB holding one crashes cocoon: unreadable."""
    sep = digest.find(":")
    if sep < 0:
        raise DBError(
            path,
            f"{where} is {json.dumps(digest, ensure_ascii=False)}, not an algorithm:hex digest; "
            f"cocoon panics on it (go-digest Digest.Encoded: no ':' separator) {consequence}",
        )
    return digest[sep + 1 :]


def decode_image_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by cloudimg's `images[*].content_sum` ("sha256:<hex>"):
    what images.ReferencedDigests gives cocoon's gc (images/index.go:42,
    cloudimg/image.go:52)."""
    top = unmarshal(data, path, goschema.CLOUDIMG_INDEX)
    return frozenset(
        _hex(path, f"{_at(ref)}.content_sum", entry.get("content_sum", ""), "in gc and in VM creation")
        for ref, entry in _entries(top, "images")
    )


def decode_oci_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by OCI's `images[*].layers[*].digest`, what cocoon's gc
    keeps (images/oci/image.go:73 DigestHexes). kernel_layer and
    initrd_layer are checked too: creating a VM from the image takes their
    Hex() (images/oci/oci.go:136)."""
    top = unmarshal(data, path, goschema.OCI_INDEX)
    refs: set[str] = set()
    for ref, entry in _entries(top, "images"):
        for i, layer in enumerate(entry.get("layers") or ()):
            refs.add(_hex(path, f"{_at(ref)}.layers[{i}].digest", layer.get("digest", ""), "in gc"))
        for name in ("kernel_layer", "initrd_layer"):
            _hex(path, f"{_at(ref)}.{name}", entry.get(name, ""), "when a VM is created from this image")
    return frozenset(refs)


def decode_vm_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by `vms[*].image_blob_ids` (a Go set)."""
    top = unmarshal(data, path, goschema.VM_INDEX)
    refs: set[str] = set()
    for _, vm in _entries(top, "vms"):
        refs.update(vm.get("image_blob_ids") or ())
    return frozenset(refs)


def _at(ref: str) -> str:
    return f"images[{json.dumps(ref, ensure_ascii=False)}]"


def decoder_for(relpath: str) -> RefDecoder:
    """The decoder for a ref DB given its path under the root."""
    if relpath == IMAGE_DB:
        return decode_image_refs
    if relpath == OCI_IMAGE_DB:
        return decode_oci_refs
    return decode_vm_refs


def vm_db_relpaths(backends: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.join(b, "db", "vms.json") for b in backends)
