"""cocoond's port of name.ParseReference(ref).String() (go-containerregistry
v0.21.0, the version in cocoon's go.mod; cocoon calls it without options:
images/oci/image.go:37,55, fetch.go:21) against the library's own source and
test tables (pkg/name/*_test.go at v0.21.0). String() returns the input
(tag.go:63-65, digest.go:63-65), so OCI lookups by a short name find only
an entry keyed by that very string."""

from __future__ import annotations

import pytest

from cocoond.core.resolve import lookup_image, parse_oci_reference

HEX = "a" * 64


@pytest.mark.parametrize(
    "ref",
    [
        "busybox",  # docker.io/library defaulting happens in Name(), not String() (repository.go:31-36)
        "ubuntu:24.04",  # a tag is kept as given, no ":latest" added (tag.go:96-103 sets it for Name())
        "docker.io/library/ubuntu",  # not rewritten to index.docker.io in String() (registry.go:110-114)
        "index.docker.io/library/busybox:latest",
        "gcr.io/project-id/image:w1th-alpha_num3ric.PLUScaps",  # tag_test.go:28: uppercase in a tag
        "domain.with.port:9001/image:latest",  # tag_test.go:29: a registry port
        "localhost:5000/app",
        "[::1]:5000/app:v1",
        "namespace/pathcomponent/image",  # tag_test.go:33
        f"busybox@sha256:{HEX}",  # NewDigest (digest.go:90-121)
        f"ghcr.io/acme/app:v1@sha256:{HEX}",  # a tag and a digest parse as a Digest
        "registry.example/" + "a" * 255,
    ],
)
def test_valid_references_stay_as_given(ref: str) -> None:
    assert parse_oci_reference(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",  # repository.go:80: a repository name must be specified
        "Busybox",  # repository chars are lowercase (repository.go:24)
        "gcr.io/Project/image",
        "a",  # v0.21.0: a repository of at least 2 characters (repository.go:75)
        "library/ubuntu:",  # tag_test.go:43: a colon needs a tag
        "gcr.io/project-id/bad_chars:c@n'tuse",  # tag_test.go:40
        "gcr.io/project-id/wrong-length:white space",  # tag_test.go:41
        "gcr.io/p/too-long:" + "t" * 129,  # tags are 1..128 (tag.go:71)
        "gcr.io/project-id/unknown-alg@unknown:abc123",  # digest_test.go:51
        "gcr.io/project-id/wrong-length@sha256:d34db33fd34db33f",  # digest_test.go:52
        f"repo@sha256:{'A' * 64}",  # go-digest: lowercase hex only
        f"repo@sha256:{HEX}@sha256:{HEX}",  # digest_test.go:57
        f"library/nginx:@sha256:{HEX}",  # digest_test.go:58
        "host:port/app",  # url.Parse: the port must be digits (registry.go:100-105)
        "re gistry.io/app",
        "white space",  # repository_test.go:39
    ],
)
def test_invalid_references(ref: str) -> None:
    assert parse_oci_reference(ref) is None


def test_lookup_by_a_short_name_finds_only_its_own_key() -> None:
    """images.LookupRefs (images/index.go:59-95): exact key, then the
    parsed ref's String() (the same string), then digests."""
    entries = {
        "index.docker.io/library/busybox:latest": "sha256:" + HEX,
        "busybox:1.36": "sha256:" + "b" * 64,
    }
    assert lookup_image("oci", entries, "busybox") == []
    assert [m.id for m in lookup_image("oci", entries, "busybox:1.36")] == ["busybox:1.36"]
    assert [(m.id, m.how) for m in lookup_image("oci", entries, "b" * 12)] == [
        ("busybox:1.36", "digest prefix")
    ]
