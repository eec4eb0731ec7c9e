"""How cocoon turns a REF into one record, as pure functions, so that
`cocoond show REF` looks at what `cocoon snapshot|image|vm ... REF` would.

- snapshots and VMs: utils.ResolveRef (utils/resolve.go:10-31): a non-nil
  record with that exact ID, else a name whose record exists, else the one
  ID with that prefix (at least 3 characters; two or more is an error);
- images: images.LookupRefs (images/index.go:59-95) through Ops.Inspect
  (images/op.go:22-32): the exact ref key (OCI's "normalized" reference is
  the ref as given: parse_oci_reference), else
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
    kind: str,
    backend: str,
    ids: Collection[str],
    names: Mapping[str, str],
    ref: str,
    null_ids: Collection[str] = (),
) -> list[Match]:
    """utils.ResolveRef over non-nil records `ids`: one Match, none, or (an
    ambiguous prefix) every candidate. The prefix step walks every key,
    null records' too (`for id := range items`, utils/resolve.go:19): a
    prefix that also matches a null record is ambiguous to cocoon, and one
    that matches only a null record resolves to it and then "not found"
    (localfile.go:163-166), so it is no match here."""
    if ref in ids:
        return [Match(kind, backend, ref, "id")]
    named = names.get(ref)
    if named is not None and named in ids:
        return [Match(kind, backend, named, "name")]
    if len(ref) >= MIN_ID_PREFIX:
        # Filter, then sort: 100k IDs are many to sort for the few that match.
        live = [Match(kind, backend, i, "id prefix") for i in sorted(i for i in ids if i.startswith(ref))]
        null = [
            Match(kind, backend, i, "id prefix of a null record")
            for i in sorted(i for i in null_ids if i.startswith(ref))
        ]
        return live + null if len(live) + len(null) > 1 else live
    return []


#: go-containerregistry v0.21.0 (cocoon's go.mod), pkg/name: the characters
#: a tag and a repository may hold (tag.go:24, repository.go:24) and their
#: lengths (tag.go:71, repository.go:75: 2..255 in v0.21.0, 1.. later).
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_REPO_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-./")
_HEX = frozenset("0123456789abcdef")
#: What Go's url.Parse takes in a host besides letters, digits and non-ASCII
#: (net/url shouldEscape, encodeHost mode).
_HOST_CHARS = frozenset("-_.~!$&'()*+,;=:[]<>\"")


def parse_oci_reference(ref: str) -> str | None:
    """name.ParseReference(ref).String() with cocoon's options (none: weak
    validation, default registry and tag; images/oci/image.go:37,55,
    fetch.go:21), or None where it returns an error. String() is the
    reference *as given* (tag.go:63-65, digest.go:63-65 keep `original`):
    `busybox` stays `busybox`, it does not become
    `index.docker.io/library/busybox:latest`. So in Lookup and LookupRefs
    (images/index.go:64-70) the "normalizer" finds only the exact key the
    first step already tried: a valid ref names an entry by its key as typed
    at pull time, and an invalid one is merely not a ref."""
    if _new_tag(ref):
        return ref
    if _new_digest(ref):
        return ref
    return None


def _new_tag(name: str) -> bool:
    """pkg/name/tag.go:72-111 (NewTag, weak)."""
    base, tag = name, ""
    parts = name.split(":")
    if len(parts) > 1 and "/" not in parts[-1]:
        base, tag = ":".join(parts[:-1]), parts[-1]
        if tag == "":
            return False
    if tag and not (1 <= len(tag) <= 128 and set(tag) <= _TAG_CHARS):
        return False
    return _new_repository(base)


def _new_digest(name: str) -> bool:
    """pkg/name/digest.go:90-121 (NewDigest): one '@', a sha256 digest of 64
    lowercase hex digits, and a repository before it (with or without a tag)."""
    parts = name.split("@")
    if len(parts) != 2:
        return False
    base, dig = parts
    hex_ = dig.removeprefix("sha256:")
    if hex_ == dig or len(hex_) != 64 or not set(hex_) <= _HEX:
        return False
    return _new_tag(base) or _new_repository(base)


def _new_repository(name: str) -> bool:
    """pkg/name/repository.go:79-103 (NewRepository, v0.21.0): the part
    before the first '/' is a registry when it has a '.' or ':'."""
    if not name:
        return False
    registry, repo = "", name
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first):
        registry, repo = first, rest
    if not (2 <= len(repo) <= 255 and set(repo) <= _REPO_CHARS):
        return False
    return _valid_registry(registry)


def _valid_registry(name: str) -> bool:
    """pkg/name/registry.go:100-105 (checkRegistry): url.Parse("//" + name)
    must succeed with Host == name: no '/', '?', '#', '@', '%', control
    characters or other characters a host may not hold, and a port of
    digits only."""
    if any(c in "/?#@%" or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return False
    if any(ord(c) < 0x80 and not (c.isalnum() or c in _HOST_CHARS) for c in name):
        return False
    host = name
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            return False
        port = host[end + 1 :]
        if port and not port.startswith(":"):
            return False
    else:
        colon = host.rfind(":")
        port = host[colon:] if colon >= 0 else ""
    return not port or all("0" <= c <= "9" for c in port[1:])


def lookup_image(backend: str, entry_ids: Mapping[str, str], ref: str) -> list[Match]:
    """images.LookupRefs over one backend's non-nil entries (ref key -> its
    ID digest)."""
    if ref in entry_ids:
        return [Match("image", backend, ref, "ref")]
    if backend == "oci":
        norm = parse_oci_reference(ref)
        if norm is not None and norm in entry_ids:  # never: String() is `ref` itself (see above)
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
