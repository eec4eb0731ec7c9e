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
from cocoond.storage.refdbs import IMAGE_DB, decode_image_refs, decode_vm_refs, decoder_for, vm_db_relpaths

PATH = "/data01/cocoon/cloudimg/db/images.json"
VM_PATH = "/data01/cocoon/cloudhypervisor/db/vms.json"
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


@pytest.mark.parametrize(
    "db",
    [
        {},
        {"images": None},
        {"images": {}},
        {"images": {"r": None}},
        {"images": {"r": {"ref": "r"}}},
        {"images": {"r": {"content_sum": None}}},
        {"images": {"r": {"content_sum": ""}}},
    ],
)
def test_image_db_with_nothing_pinned(db: Any) -> None:
    assert decode_image_refs(enc(db), PATH) == frozenset()


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


def test_decoder_for() -> None:
    assert decoder_for(IMAGE_DB) is decode_image_refs
    for relpath in vm_db_relpaths(("cloudhypervisor", "firecracker")):
        assert decoder_for(relpath) is decode_vm_refs
    assert vm_db_relpaths(("cloudhypervisor", "firecracker")) == (
        "cloudhypervisor/db/vms.json",
        "firecracker/db/vms.json",
    )
