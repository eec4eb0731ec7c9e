"""records.decode_lazily (what `show` reads snapshots.json with) against
decode_records: it vouches for exactly the documents the fast route vouches
for, and each record it decodes on demand is the record decode_records
makes; elsewhere `show` takes decode_records' exact walk."""

from __future__ import annotations

from typing import Any
from unittest import mock

import msgspec
from hypothesis import HealthCheck, given, settings

from cocoond.storage import records
from tests.test_gofast import _hand, snapshot_dbs


def _eager(doc: bytes) -> Any:
    return records._decode_fast(doc, lambda s, f, r: (f, r), False, True)


def _same(doc: bytes) -> None:
    eager = _eager(doc)
    lazy = records.decode_lazily(doc, "db")
    assert (lazy is None) is (eager is None)
    if lazy is None or eager is None:
        return
    assert lazy.null_ids == eager.null_ids
    assert lazy.names == eager.names
    assert list(lazy.ids()) == list(eager.records)
    for sid, (fields, raw) in eager.records.items():
        assert lazy.has(sid)
        assert lazy.fields(sid) == fields
        assert lazy.raw(sid) == raw
    for sid in lazy.null_ids:
        assert not lazy.has(sid)
    blobs = {sid: frozenset(f[10]) for sid, (f, _) in eager.records.items() if f[10]}
    assert dict(lazy.blobs()) == blobs


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot_dbs())
def test_lazy_and_eager_routes_agree(doc: bytes) -> None:
    _same(doc)
    with mock.patch.object(records, "_CHUNK", 1):
        _same(doc)


def test_hand_built_records_either_way() -> None:
    for doc in (
        _hand(),
        _hand({"image_blob_ids": {"ab": {}, "cd": {}}, "pending": True}),
        _hand().replace(b'"A":{', b'"0":null,"A":{'),
    ):
        assert records.decode_lazily(doc, "db") is not None
        _same(doc)
    # Go fails on a day that does not exist, in any record: no lazy answer.
    bad = _hand({"created_at": "2021-02-30T00:00:00Z"})
    assert records.decode_lazily(bad, "db") is None
    assert records.decode_lazily(_hand({"Cpu": 3}), "db") is None  # case-folded: the walk's


def test_a_record_is_decoded_again_only_when_asked_for() -> None:
    doc = _hand()
    lazy = records.decode_lazily(doc, "db")
    assert lazy is not None
    assert all(isinstance(raw, msgspec.Raw) for raw in lazy.raws.values())
