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

from cocoond.core.facts import ClaimRefs, ImageClaim, VMClaim
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


def _root_of(path: str) -> str:
    """The root a DB at <root>/<module>/db/<file>.json belongs to."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path)))) if path else ""


def decode_image_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by cloudimg's `images[*].content_sum` ("sha256:<hex>"):
    what images.ReferencedDigests gives cocoon's gc (images/index.go:42,
    cloudimg/image.go:52). Each image needs its blob and the host's
    firmware to create a VM (cloudimg/cloudimg.go:110-125)."""
    top = unmarshal(data, path, goschema.CLOUDIMG_INDEX)
    root = _root_of(path)
    firmware = os.path.join(root, "firmware", "CLOUDHV.fd")  # cloudimg/config.go:28-30
    refs: set[str] = set()
    claims: list[ImageClaim] = []
    for ref, entry in _entries(top, "images"):
        hex_ = _hex(path, f"{_at(ref)}.content_sum", entry.get("content_sum", ""), "in gc and in VM creation")
        refs.add(hex_)
        blob = os.path.join(root, "cloudimg", "blobs", f"{hex_}.qcow2")
        claims.append(ImageClaim(ref, None, (("blob", blob), ("firmware", firmware))))
    return ClaimRefs(refs, tuple(claims))


def decode_oci_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by OCI's `images[*].layers[*].digest`, what cocoon's gc
    keeps (images/oci/image.go:73 DigestHexes). kernel_layer and
    initrd_layer matter only when a VM is created from the image
    (images/oci/oci.go:136-143): one Go cannot take the Hex() of (no ':')
    makes that image unusable, not the DB: gc and every other image work."""
    top = unmarshal(data, path, goschema.OCI_INDEX)
    root = _root_of(path)
    refs: set[str] = set()
    claims: list[ImageClaim] = []
    for ref, entry in _entries(top, "images"):
        files: list[tuple[str, str]] = []
        for i, layer in enumerate(entry.get("layers") or ()):
            hex_ = _hex(path, f"{_at(ref)}.layers[{i}].digest", layer.get("digest", ""), "in gc")
            refs.add(hex_)
            files.append((f"layer {i} blob", os.path.join(root, "oci", "blobs", f"{hex_}.erofs")))
        problem = None
        for name, file in (("kernel_layer", "vmlinuz"), ("initrd_layer", "initrd.img")):
            digest = entry.get(name, "")
            sep = digest.find(":")
            if sep < 0:
                problem = problem or (
                    f"its {name} is {json.dumps(digest, ensure_ascii=False)}, not an algorithm:hex digest, "
                    "and cocoon panics on it (go-digest Digest.Encoded: no ':' separator)"
                )
                continue
            what = "kernel" if file == "vmlinuz" else "initrd"
            files.append((what, os.path.join(root, "oci", "boot", digest[sep + 1 :], file)))
        claims.append(ImageClaim(ref, problem, tuple(files)))
    return ClaimRefs(refs, tuple(claims))


def decode_vm_refs(data: bytes, path: str) -> frozenset[str]:
    """Hexes named by `vms[*].image_blob_ids` (a Go set), and what each VM
    names: its snapshots, and the files its hypervisor opens when cocoon
    (re)launches it (`vm start`, `vm restore`): layer disks and boot files
    (hypervisor/db.go:14-27, types/vm.go:40-68), and its image blobs."""
    top = unmarshal(data, path, goschema.VM_INDEX)
    refs: set[str] = set()
    claims: list[VMClaim] = []
    for key, vm in _entries(top, "vms"):
        blob_ids = vm.get("image_blob_ids") or {}
        refs.update(blob_ids)
        base = [
            ("base layer", sc.get("path") or "")
            for sc in vm.get("storage_configs") or ()
            if sc is not None and sc.get("role") == "layer" and sc.get("path")
        ]
        boot = vm.get("boot_config") or {}
        base += [(what, boot.get(f"{what}_path") or "") for what in ("kernel", "initrd", "firmware")]
        claims.append(
            VMClaim(
                key,
                (vm.get("config") or {}).get("name") or "",
                vm.get("state") or "",
                frozenset(vm.get("snapshot_ids") or ()),
                tuple((what, p) for what, p in base if p),
                frozenset(blob_ids),
                tuple((sc or {}).get("role") or "" for sc in vm.get("storage_configs") or ()),
            )
        )
    return ClaimRefs(refs, tuple(claims))


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
