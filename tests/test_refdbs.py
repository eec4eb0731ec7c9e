"""cocoond.storage.refdbs: the blob hexes image and VM DBs pin. Null maps are empty
(as Go decodes them); anything else of the wrong shape is a DBError naming
the file, because guessing would let a pinned blob be called unreferenced."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond.errors import DBError
from cocoond.storage.jsonwalk import MAX_DEPTH
from cocoond.storage.refdbs import (
    IMAGE_DB,
    OCI_IMAGE_DB,
    decode_cni_refs,
    decode_image_refs,
    decode_oci_refs,
    decode_vm_facts,
    decode_vm_refs,
    decoder_for,
    vm_db_relpaths,
)

PATH = "/data01/cocoon/cloudimg/db/images.json"
VM_PATH = "/data01/cocoon/cloudhypervisor/db/vms.json"
OCI_PATH = "/data01/cocoon/oci/db/images.json"
H1, H2, H3 = "a" * 64, "b" * 64, "c" * 64


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_image_refs_from_content_sum() -> None:
    db = {
        "images": {
            "https://x/a.img": {"ref": "https://x/a.img", "content_sum": f"sha256:{H1}", "size": 1},
            "https://x/b.img": {"content_sum": f"sha256:{H2}", "future_key": [1, 2]},
            "https://x/c.img": {"content_sum": f"sha256:{H1}"},
        },
        "other": 5,
    }
    assert decode_image_refs(enc(db), PATH) == frozenset({H1, H2})


@pytest.mark.parametrize("db", [{}, {"images": None}, {"images": {}}, {"images": {"r": None}}])
def test_image_db_with_nothing_pinned(db: Any) -> None:
    assert decode_image_refs(enc(db), PATH) == frozenset()
    assert decode_oci_refs(enc(db), OCI_PATH) == frozenset()


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        ({"ref": "r"}, '""'),
        ({"content_sum": None}, '""'),
        ({"content_sum": ""}, '""'),
        ({"content_sum": H1}, f'"{H1}"'),
    ],
)
def test_content_sum_without_a_colon_is_unreadable(entry: dict[str, Any], shown: str) -> None:
    """go-digest's Encoded() panics on a digest without ':' (an unset one
    too), and cocoon's gc takes every entry's Hex(): a DB cocoon crashes on."""
    with pytest.raises(DBError) as err:
        decode_image_refs(enc({"images": {"r": entry}}), PATH)
    assert str(err.value) == (
        f'{PATH}: images["r"].content_sum is {shown}, not an algorithm:hex digest; '
        "cocoon panics on it (go-digest Digest.Encoded: no ':' separator) in gc and in VM creation"
    )


def test_hex_is_what_follows_the_first_colon() -> None:
    db = {"images": {"r": {"content_sum": "sha256:ab:cd"}, "s": {"content_sum": "sha256:"}}}
    assert decode_image_refs(enc(db), PATH) == frozenset({"ab:cd", ""})


def oci_entry(*layers: str, kernel: str | None = None, initrd: str | None = None) -> dict[str, Any]:
    return {
        "ref": "docker.io/library/ubuntu:24.04",
        "manifest_digest": "sha256:" + "d" * 64,
        "layers": [{"digest": d} for d in layers],
        "kernel_layer": kernel if kernel is not None else layers[-1],
        "initrd_layer": initrd if initrd is not None else layers[-1],
        "size": 1,
        "created_at": "2026-01-01T00:00:00Z",
    }


def test_oci_refs_are_the_layer_digests() -> None:
    db = {
        "images": {"a": oci_entry(f"sha256:{H1}", f"sha256:{H2}"), "b": oci_entry(f"sha256:{H2}"), "c": None}
    }
    assert decode_oci_refs(enc(db), OCI_PATH) == frozenset({H1, H2})
    assert decoder_for(OCI_IMAGE_DB) is decode_oci_refs


@pytest.mark.parametrize(
    ("entry", "where", "consequence"),
    [
        (oci_entry(H1, kernel=f"sha256:{H1}"), "layers[0].digest", "in gc"),
        (
            {"layers": [{}], "kernel_layer": "sha256:k", "initrd_layer": "sha256:i"},
            "layers[0].digest",
            "in gc",
        ),
        (
            {"layers": [None], "kernel_layer": "sha256:k", "initrd_layer": "sha256:i"},
            "layers[0].digest",
            "in gc",
        ),
    ],
)
def test_oci_digest_without_a_colon_is_unreadable(
    entry: dict[str, Any], where: str, consequence: str
) -> None:
    with pytest.raises(DBError) as err:
        decode_oci_refs(enc({"images": {"r": entry}}), OCI_PATH)
    assert str(err.value).startswith(f'{OCI_PATH}: images["r"].{where} is ')
    assert str(err.value).endswith(f"(go-digest Digest.Encoded: no ':' separator) {consequence}")


@pytest.mark.parametrize(
    ("entry", "name"),
    [
        (oci_entry(f"sha256:{H1}", kernel=""), "kernel_layer"),
        (oci_entry(f"sha256:{H1}", initrd=H1), "initrd_layer"),
    ],
)
def test_a_boot_layer_digest_without_a_colon_poisons_only_its_image(entry: dict[str, Any], name: str) -> None:
    """gc never takes kernel_layer's Hex() (only DigestHexes, images/oci/
    image.go:73): the DB loads and the layers still pin; `cocoon vm run` of
    that one image panics (images/oci/oci.go:136-137)."""
    refs = decode_oci_refs(enc({"images": {"r": entry, "ok": oci_entry(f"sha256:{H2}")}}), OCI_PATH)
    assert refs == {H1, H2}
    claims = {c.ref: c for c in refs.claims}  # type: ignore[attr-defined]
    assert claims["ok"].problem is None
    assert f"its {name} is " in claims["r"].problem and "no ':' separator" in claims["r"].problem


@pytest.mark.parametrize(
    ("db", "message"),
    [
        (
            {"images": {"r": {"layers": [{"digest": 5}]}}},
            "json: cannot unmarshal number into Go struct field layerEntry.Index.images.layers.digest "
            'of type images.Digest (at images["r"].layers[0].digest)',
        ),
        (
            {"images": {"r": {"layers": {"digest": "sha256:a"}}}},
            "json: cannot unmarshal object into Go struct field imageEntry.Index.images.layers "
            'of type []oci.layerEntry (at images["r"].layers)',
        ),
        (
            {"images": {"r": {**oci_entry("sha256:a"), "size": 1.5}}},
            "json: cannot unmarshal number 1.5 into Go struct field imageEntry.Index.images.size "
            'of type int64 (at images["r"].size)',
        ),
        (
            {"images": {"r": {**oci_entry("sha256:a"), "created_at": "2026-01-01"}}},
            'parsing time "2026-01-01" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "T" '
            '(at images["r"].created_at)',
        ),
    ],
)
def test_oci_db_go_cannot_decode(db: Any, message: str) -> None:
    with pytest.raises(DBError) as err:
        decode_oci_refs(enc(db), OCI_PATH)
    assert str(err.value) == f"{OCI_PATH}: {message}"


@pytest.mark.parametrize("decode", [decode_image_refs, decode_vm_refs])
def test_bare_null_is_an_empty_db(decode: Any) -> None:
    """Go unmarshals `null` into the zero value without an error."""
    assert decode(b"null", PATH) == frozenset()
    assert decode(b"null\n", PATH) == frozenset()


def test_image_refs_from_a_sim_pull(sim: ModuleType, root: Path) -> None:
    hexes = {sim.pull_image(str(root)) for _ in range(3)}
    data = (root / IMAGE_DB).read_bytes()
    assert decode_image_refs(data, str(root / IMAGE_DB)) == frozenset(hexes)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff\xfe{}",
        b"[]",
        b'"images"',
        enc({"images": []}),
        enc({"images": "x"}),
        enc({"images": {"r": "sha256:" + H1}}),
        enc({"images": {"r": [1]}}),
        enc({"images": {"r": {"content_sum": 5}}}),
        enc({"images": {"r": {"content_sum": {"sha256": H1}}}}),
        b"[" * 100_000,
    ],
)
def test_bad_image_db_raises_naming_the_path(data: bytes) -> None:
    with pytest.raises(DBError) as err:
        decode_image_refs(data, PATH)
    assert err.value.path == PATH
    assert PATH in str(err.value)
    assert "\n" not in str(err.value)


def test_vm_refs() -> None:
    db = {
        "vms": {
            "v1": {"name": "web", "image_blob_ids": {H1: {}, H2: {}}},
            "v2": {"image_blob_ids": {H3: {}}},
            "v3": {"image_blob_ids": None},
            "v4": {"image_blob_ids": {}},
            "v5": None,
            "v6": {},
        },
        "names": {"web": "v1"},
    }
    assert decode_vm_refs(enc(db), VM_PATH) == frozenset({H1, H2, H3})


@pytest.mark.parametrize("db", [{}, {"vms": None}, {"vms": {}}, {"vms": None, "names": None}])
def test_vm_db_with_nothing_pinned(db: Any) -> None:
    assert decode_vm_refs(enc(db), VM_PATH) == frozenset()


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b"[]",
        enc({"vms": []}),
        enc({"vms": {"v": "x"}}),
        enc({"vms": {"v": {"image_blob_ids": [H1]}}}),
        enc({"vms": {"v": {"image_blob_ids": H1}}}),
    ],
)
def test_bad_vm_db_raises_naming_the_path(data: bytes) -> None:
    with pytest.raises(DBError) as err:
        decode_vm_refs(data, VM_PATH)
    assert err.value.path == VM_PATH
    assert VM_PATH in str(err.value)


@pytest.mark.parametrize(
    ("vm", "message"),
    [
        (
            {"first_booted": "yes"},
            "json: cannot unmarshal string into Go struct field VMRecord.vms.VM.first_booted of type bool",
        ),
        (
            {"pid": 1e3},
            "json: cannot unmarshal number 1000.0 into Go struct field VMRecord.vms.VM.pid of type int",
        ),
        (
            {"config": {"memory": "1G"}},
            "json: cannot unmarshal string into Go struct field "
            "VMConfig.vms.VM.config.Config.memory of type int64",
        ),
        (
            {"storage_configs": [{"direct_io": "no"}]},
            "json: cannot unmarshal string into Go struct field "
            "StorageConfig.vms.VM.storage_configs.direct_io of type bool",
        ),
        ({"updated_at": None, "started_at": 17}, "Time.UnmarshalJSON: input is not a JSON string"),
        (
            {"Image_Blob_IDs": [H1]},
            "json: cannot unmarshal array into Go struct field VMRecord.vms.image_blob_ids "
            "of type map[string]struct {}",
        ),
    ],
)
def test_vm_db_go_cannot_decode(vm: dict[str, Any], message: str) -> None:
    with pytest.raises(DBError) as err:
        decode_vm_refs(enc({"vms": {"v": vm}}), VM_PATH)
    assert str(err.value).startswith(f"{VM_PATH}: {message} (at vms")


def test_keys_match_case_insensitively() -> None:
    db = {"VMs": {"v": {"IMAGE_BLOB_IDS": {H1: {}}, "image_blob_ids": {H2: None}}}}
    assert decode_vm_refs(enc(db), VM_PATH) == frozenset({H1, H2})  # Go adds to the map it made
    db = {"Images": {"r": {"Content_Sum": f"sha256:{H3}"}}}
    assert decode_image_refs(enc(db), PATH) == frozenset({H3})


def test_deep_unknown_value_reads_to_go_s_depth() -> None:
    def doc(depth: int) -> bytes:
        # The document (1) > vms (2) > "v" (3) > "x" (4 ...): every level counts.
        inner = "[" * (depth - 3) + "]" * (depth - 3)
        return ('{"vms":{"v":{"x":' + inner + ',"image_blob_ids":{"' + H1 + '":{}}}}}').encode()

    assert decode_vm_refs(doc(MAX_DEPTH), VM_PATH) == frozenset({H1})
    with pytest.raises(DBError, match="exceeded max depth 10000"):
        decode_vm_refs(doc(MAX_DEPTH + 1), VM_PATH)


def test_syntax_errors_win_over_type_errors() -> None:
    with pytest.raises(DBError, match="not valid JSON"):
        decode_vm_refs(b'{"vms":{"v":{"pid":"x"}}} x', VM_PATH)


def test_decoder_for() -> None:
    assert decoder_for(IMAGE_DB) is decode_image_refs
    for relpath in vm_db_relpaths(("cloudhypervisor", "firecracker")):
        assert decoder_for(relpath) is decode_vm_facts
    assert decoder_for("cni/db/networks.json") is decode_cni_refs
    assert vm_db_relpaths(("cloudhypervisor", "firecracker")) == (
        "cloudhypervisor/db/vms.json",
        "firecracker/db/vms.json",
    )
