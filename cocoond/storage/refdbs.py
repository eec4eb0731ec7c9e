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

from cocoond.core.facts import ClaimRefs, CreatingVM, ImageClaim, RefFacts, VMClaim
from cocoond.errors import DBError
from cocoond.storage import goschema
from cocoond.storage.goplain import unmarshal
from cocoond.storage.gotime import GoTimeError, parse_rfc3339
from cocoond.storage.memory import interned

#: Where the image indexes live under the root; VM DBs are `<backend>/db/vms.json`.
IMAGE_DB = "cloudimg/db/images.json"
#: The OCI image DB: each image's layers[].digest pins oci/blobs/<hex>.erofs.
OCI_IMAGE_DB = "oci/db/images.json"

#: The CNI provider's DB: `cocoon gc` loads it too (network/cni/gc.go:29),
#: so one Go cannot decode aborts gc; it pins no blob.
CNI_DB = "cni/db/networks.json"
#: VM state a record has until its create finished (types/vm.go).
VM_CREATING = "creating"


RefDecoder = Callable[[bytes, str], "frozenset[str] | RefFacts"]


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
    return image_refs(unmarshal(data, path, goschema.CLOUDIMG_INDEX), path)


def image_refs(top: dict[str, Any], path: str) -> ClaimRefs:
    """decode_image_refs of an already decoded DB."""
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
    return oci_refs(unmarshal(data, path, goschema.OCI_INDEX), path)


def oci_refs(top: dict[str, Any], path: str) -> ClaimRefs:
    """decode_oci_refs of an already decoded DB."""
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
    """Hexes named by `vms[*].image_blob_ids` (a Go set)."""
    return decode_vm_facts(data, path).refs


def decode_vm_facts(data: bytes, path: str) -> RefFacts:
    """Hexes named by `vms[*].image_blob_ids` (a Go set), the IDs of the
    records, those still `creating` (what hypervisor/gc.go:36-51 reads), and
    what each VM names: its snapshots, and the files its hypervisor opens
    when cocoon (re)launches it (`vm start`, `vm restore`): layer disks and
    boot files (hypervisor/db.go:14-27, types/vm.go:40-68), and its image
    blobs."""
    return vm_facts(unmarshal(data, path, goschema.VM_INDEX))


def vm_facts(top: dict[str, Any]) -> RefFacts:
    """decode_vm_facts of an already decoded DB."""
    refs: set[str] = set()
    ids: set[str] = set()
    creating: dict[str, CreatingVM] = {}
    claims: list[VMClaim] = []
    for vm_id, vm in _entries(top, "vms"):
        ids.add(vm_id)
        blob_ids = vm.get("image_blob_ids") or {}
        refs.update(blob_ids)
        config = vm.get("config") or {}
        if vm.get("state") == VM_CREATING:
            creating[vm_id] = CreatingVM(
                config.get("name") or "",
                _epoch(vm.get("updated_at")),
                vm.get("run_dir") or "",
                vm.get("log_dir") or "",
            )
        storage = vm.get("storage_configs") or ()
        base = [
            ("base layer", sc.get("path") or "")
            for sc in storage
            if sc is not None and sc.get("role") == "layer" and sc.get("path")
        ]
        boot = vm.get("boot_config") or {}
        base += [(what, boot.get(f"{what}_path") or "") for what in ("kernel", "initrd", "firmware")]
        claims.append(
            VMClaim(
                vm_id,
                config.get("name") or "",
                vm.get("state") or "",
                frozenset(vm.get("snapshot_ids") or ()),
                tuple((what, p) for what, p in base if p),
                frozenset(blob_ids),
                tuple((sc or {}).get("role") or "" for sc in storage),
                len(vm.get("network_configs") or ()),
                _machine((config.get("cpu") or 0, config.get("memory") or 0, config.get("storage") or 0)),
            )
        )
    return RefFacts(frozenset(refs), frozenset(ids), creating, tuple(claims))


#: VMs share a few (cpu, memory, storage): one tuple each.
_MACHINES: dict[tuple[int, int, int], tuple[int, int, int]] = {}


def _machine(values: tuple[int, int, int]) -> tuple[int, int, int]:
    return interned(_MACHINES, values, 4096)


def decode_cni_refs(data: bytes, path: str) -> RefFacts:
    """cni/db/networks.json: the VM IDs its records belong to (cni/gc.go:29-35)."""
    return cni_facts(unmarshal(data, path, goschema.CNI_INDEX))


def cni_facts(top: dict[str, Any]) -> RefFacts:
    """decode_cni_refs of an already decoded DB."""
    return RefFacts(frozenset(), frozenset(rec.get("vm_id") or "" for _, rec in _entries(top, "networks")))


def decode_with_top(relpath: str, data: bytes, path: str) -> tuple[frozenset[str] | RefFacts, dict[str, Any]]:
    """The ref DB's facts (as decoder_for's) and the decoded document, from
    one decode: for a reader that also shows the records."""
    if relpath == IMAGE_DB:
        top = unmarshal(data, path, goschema.CLOUDIMG_INDEX)
        return image_refs(top, path), top
    if relpath == OCI_IMAGE_DB:
        top = unmarshal(data, path, goschema.OCI_INDEX)
        return oci_refs(top, path), top
    if relpath == CNI_DB:
        top = unmarshal(data, path, goschema.CNI_INDEX)
        return cni_facts(top), top
    top = unmarshal(data, path, goschema.VM_INDEX)
    return vm_facts(top), top


def _epoch(value: Any) -> float:
    """A decoded time.Time as epoch seconds; Go's zero time (or none) is
    before any cutoff. The quick decode (goplain) gives its text, Go's
    decoder (godecode: a DB with, say, a case-folded key) (datetime, text):
    both are the same instant (before, the second read as -inf, so one
    folded key anywhere made every creating VM look 24 h old)."""
    if type(value) is tuple:
        try:
            return float(value[0].timestamp())
        except (OverflowError, ValueError, OSError):
            return float("-inf")
    if not isinstance(value, str) or not value:
        return float("-inf")
    try:
        return parse_rfc3339(value).timestamp()
    except (GoTimeError, ValueError, OverflowError):
        return float("-inf")


def _at(ref: str) -> str:
    return f"images[{json.dumps(ref, ensure_ascii=False)}]"


def decoder_for(relpath: str) -> RefDecoder:
    """The decoder for a ref DB given its path under the root."""
    if relpath == IMAGE_DB:
        return decode_image_refs
    if relpath == OCI_IMAGE_DB:
        return decode_oci_refs
    if relpath == CNI_DB:
        return decode_cni_refs
    return decode_vm_facts


def vm_db_relpaths(backends: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.join(b, "db", "vms.json") for b in backends)
