"""How cocoon turns a REF into one record, as pure functions, so that
`cocoond show REF` looks at what `cocoon snapshot|image|vm ... REF` would.

- snapshots and VMs: utils.ResolveRef (utils/resolve.go:10-31): a non-nil
  record with that exact ID, else a name whose record exists, else the one
  ID with that prefix (at least 3 characters; two or more is an error);
- images: images.LookupRefs (images/index.go:59-95) through Ops.Inspect
  (images/op.go:22-32): the exact ref key, OCI's normalized reference, else
  every entry whose ID digest (cloudimg content_sum, OCI manifest_digest)
  is REF, its hex, or starts with at least 12 hex digits of REF;
- a REF that more than one backend resolves is ambiguous
  (cmd/core/helpers.go:274-297, 510-535).

cocoon itself, given an ambiguous digest prefix inside one image backend,
takes the first of Go's randomly ordered map: cocoond lists them instead.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

#: utils/resolve.go:17: shortest ID prefix.
MIN_ID_PREFIX = 3
#: images/index.go:17: shortest digest prefix (hex digits).
MIN_HEX_PREFIX = 12


@dataclass(frozen=True, slots=True)
class Match:
    """One record REF resolves to, and by which rule."""

    kind: str  # "snapshot", "image", "vm"
    backend: str  # "snapshot", "cloudimg"/"oci", "cloud-hypervisor"/"firecracker"
    id: str
    how: str  # "id", "name", "id prefix", "ref", "normalized ref", "digest", "digest prefix"


def resolve_ref(
    kind: str, backend: str, ids: Collection[str], names: Mapping[str, str], ref: str
) -> list[Match]:
    """utils.ResolveRef over non-nil records `ids`: one Match, none, or (an
    ambiguous prefix) every candidate."""
    if ref in ids:
        return [Match(kind, backend, ref, "id")]
    named = names.get(ref)
    if named is not None and named in ids:
        return [Match(kind, backend, named, "name")]
    if len(ref) >= MIN_ID_PREFIX:
        return [Match(kind, backend, i, "id prefix") for i in sorted(ids) if i.startswith(ref)]
    return []


def normalize_oci_ref(ref: str) -> str:
    """name.ParseReference(ref).String() for the usual forms (as the simulator
    reads it): a Docker Hub image gets index.docker.io/ (and library/), a
    missing tag :latest."""
    first, slash, _rest = ref.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        ref = "index.docker.io/" + (ref if slash else "library/" + ref)
    if "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
        ref += ":latest"
    return ref


def lookup_image(backend: str, entry_ids: Mapping[str, str], ref: str) -> list[Match]:
    """images.LookupRefs over one backend's non-nil entries (ref key -> its
    ID digest)."""
    if ref in entry_ids:
        return [Match("image", backend, ref, "ref")]
    if backend == "oci":
        norm = normalize_oci_ref(ref)
        if norm in entry_ids:
            return [Match("image", backend, norm, "normalized ref")]
    want = ref.removeprefix("sha256:")
    out = []
    for key in sorted(entry_ids):
        digest = entry_ids[key]
        hex_ = digest.removeprefix("sha256:")
        if digest == ref or hex_ == ref:
            out.append(Match("image", backend, key, "digest"))
        elif len(want) >= MIN_HEX_PREFIX and hex_.startswith(want):
            out.append(Match("image", backend, key, "digest prefix"))
    return out
