"""cocoond.storage.goplain, the quick route for DBs as Go writes them, must
give the exact decoder's answer or step aside: the blobs a ref DB pins (or
its error) are the same either way."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoond.errors import DBError
from cocoond.storage import goplain
from cocoond.storage import goschema as g
from cocoond.storage.godecode import Decoder
from cocoond.storage.goplain import unmarshal_plain
from cocoond.storage.refdbs import decode_image_refs, decode_oci_refs, decode_vm_refs

VM_PATH = "/data01/cocoon/cloudhypervisor/db/vms.json"
H1, H2 = "a" * 64, "b" * 64
TIME = "2026-11-28T07:00:00.123456789Z"


def vm(**extra: Any) -> dict[str, Any]:
    """A VM record with the fields cocoon writes (hypervisor/db.go:14)."""
    return {
        "id": "V1",
        "hypervisor": "cloud-hypervisor",
        "state": "running",
        "config": {"cpu": 2, "memory": 1 << 30, "storage": 10 << 30, "image": "img", "name": "vm-1"},
        "pid": 4242,
        "network_configs": [{"tap": "tap0", "mac": "02:00:00:00:00:01", "num_queues": 2, "queue_size": 512}],
        "storage_configs": [{"path": "/r/overlay.qcow2", "ro": False, "serial": "", "role": "cow"}],
        "first_booted": True,
        "snapshot_ids": {"S1": {}},
        "created_at": TIME,
        "updated_at": TIME,
        "started_at": TIME,
        "image_blob_ids": {H1: {}},
        "run_dir": "/r",
        "log_dir": "/l",
        **extra,
    }


def both(decode: Callable[[bytes, str], frozenset[str]], data: bytes) -> tuple[object, object]:
    """(the answer with the quick route, the answer of the exact decoder alone)."""

    def answer() -> object:
        try:
            return decode(data, VM_PATH)
        except DBError as exc:
            return ("error", str(exc))

    quick = answer()
    with patch.object(goplain, "unmarshal_plain", lambda text, t: None):
        exact = answer()
    return quick, exact


def test_a_db_as_go_writes_it_takes_the_quick_route() -> None:
    text = json.dumps({"vms": {"V1": vm(), "V2": None}, "names": {"vm-1": "V1"}}, separators=(",", ":"))
    assert isinstance(unmarshal_plain(text, g.VM_INDEX), dict)
    quick, exact = both(decode_vm_refs, text.encode())
    assert quick == exact == frozenset({H1})


def test_null_for_a_scalar_field_takes_the_quick_route_as_go_leaves_it() -> None:
    """json: null into a non-pointer scalar is a no-op (Cloud Hypervisor's
    config.json is full of them): the quick route omits the key, as the
    exact decoder does."""
    text = f'{{"vms":{{"V1":{{"pid":null,"created_at":null,"image_blob_ids":{{"{H1}":{{}}}}}}}}}}'
    plain = unmarshal_plain(text, g.VM_INDEX)
    assert isinstance(plain, dict) and "pid" not in plain["vms"]["V1"]
    assert plain == Decoder().unmarshal(json.loads(text), g.VM_INDEX)
    quick, exact = both(decode_vm_refs, text.encode())
    assert quick == exact == frozenset({H1})


@pytest.mark.parametrize(
    ("text", "refs"),
    [
        # A map-typed field twice: Go adds the second to the first.
        (
            f'{{"vms":{{"V1":{{"image_blob_ids":{{"{H1}":{{}}}},"image_blob_ids":{{"{H2}":{{}}}}}}}}}}',
            {H1, H2},
        ),
        # A key matching only case-insensitively sets the field in Go.
        (f'{{"vms":{{"V1":{{"Image_Blob_IDs":{{"{H1}":{{}}}}}}}}}}', {H1}),
        (f'{{"VMS":{{"V1":{{"image_blob_ids":{{"{H1}":{{}}}}}}}}}}', {H1}),
        # An escape: json.loads would undo it, Go keeps its own rules.
        (f'{{"vms":{{"V1":{{"image_blob_ids":{{"\\u0061{H1[1:]}":{{}}}}}}}}}}', {H1}),
        # null where Go stores a zero value (a map's element).
        (f'{{"vms":{{"V1":{{"image_blob_ids":{{"{H1}":null}}}}}}}}', {H1}),
    ],
)
def test_what_only_the_exact_decoder_may_judge(text: str, refs: set[str]) -> None:
    assert unmarshal_plain(text, g.VM_INDEX) is None
    quick, exact = both(decode_vm_refs, text.encode())
    assert quick == exact == frozenset(refs)


@pytest.mark.parametrize(
    "record",
    [
        '{"pid":1.5}',
        '{"pid":9223372036854775808}',
        '{"pid":NaN}',
        '{"first_booted":"yes"}',
        '{"created_at":"2026-13-01T00:00:00Z"}',
        '{"created_at":5}',
        '{"snapshot_ids":[]}',
    ],
)
def test_what_go_rejects_is_rejected_with_go_s_error(record: str) -> None:
    text = '{"vms":{"V1":' + record + "}}"
    assert unmarshal_plain(text, g.VM_INDEX) is None
    quick, exact = both(decode_vm_refs, text.encode())
    assert quick == exact
    assert isinstance(quick, tuple) and quick[0] == "error"


def test_a_byte_order_mark_and_deep_nesting_step_aside() -> None:
    assert unmarshal_plain("\ufeff{}", g.VM_INDEX) is None
    deep = '{"vms":{"V1":{"unknown":' + "[" * 5000 + "]" * 5000 + "}}}"
    assert unmarshal_plain(deep, g.VM_INDEX) is None
    quick, exact = both(decode_vm_refs, deep.encode())
    assert quick == exact == frozenset()


VM_KEYS = [f.name for f in g.fields_of(g.VM_RECORD).fields]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
    max_leaves=6,
)
KEYS = st.sampled_from(VM_KEYS) | st.sampled_from([k.upper() for k in VM_KEYS]) | st.text(max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(KEYS, JSON | st.just({H1: {}}) | st.just(TIME), max_size=6),
    st.booleans(),
)
def test_any_vm_record_gets_the_exact_decoder_s_answer(fields: dict[str, Any], ascii_only: bool) -> None:
    text = json.dumps({"vms": {"V1": vm(**fields)}}, ensure_ascii=ascii_only)
    quick, exact = both(decode_vm_refs, text.encode("utf-8", "surrogatepass"))
    assert quick == exact


@pytest.mark.parametrize(
    ("decode", "db"),
    [
        (decode_image_refs, {"images": {"r": {"ref": "r", "content_sum": f"sha256:{H1}", "size": 1}}}),
        (decode_oci_refs, {"images": {"r": {"layers": [{"digest": f"sha256:{d}"} for d in (H1, H2)]}}}),
        (decode_oci_refs, {"images": {"r": {"layers": [None]}}}),
        (decode_oci_refs, {"images": {"r": {"layers": [{"digest": ""}]}}}),
    ],
)
def test_image_dbs_get_the_same_answer_either_way(
    decode: Callable[[bytes, str], frozenset[str]], db: dict[str, Any]
) -> None:
    quick, exact = both(decode, json.dumps(db).encode())
    assert quick == exact
