"""The daemon runs for months while snapshots, blobs and data dirs come and
go: every memo that shares equal values (records' hexes and key orders,
scan's dir contents and base files, the index's blob sets) stays bounded
after many distinct inputs, and still shares what is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoond import scan
from cocoond.core.reconcile import Reconciler
from cocoond.storage import memory, records
from cocoond.storage.snapshotdir import BaseFile

CAP = 50
T0 = "2026-01-01T00:00:00Z"


@pytest.fixture(autouse=True)
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "MEMO_CAP", CAP)


def _db(n: int, round_: int, unknown: bool = False) -> bytes:
    """A DB cocoon could write (Go's bytes: the fast route) of `n` records,
    each naming blobs never seen before."""
    snaps = {}
    for i in range(n):
        sid = f"S{round_:04d}{i:04d}"
        rec: dict[str, object] = {"id": sid, "name": "", "image_blob_ids": {f"{round_:032x}{i:032x}": {}}}
        if unknown:
            rec[f"x{round_}_{i}"] = 1  # a key order never seen before (the API's records)
        rec["created_at"] = T0
        snaps[sid] = rec
    return json.dumps({"snapshots": snaps, "names": {}}, separators=(",", ":")).encode()


def test_interned_is_bounded_and_shares() -> None:
    memo: dict[str, str] = {}
    for i in range(10 * CAP):
        assert len(memo) <= CAP
        value = f"v{i}"
        assert memory.interned(memo, value) is value
        assert len(memo) <= CAP
    again = "".join(["v", str(10 * CAP - 1)])
    assert memory.interned(memo, again) is not again  # the one kept is shared


@pytest.mark.parametrize("route", ["fast", "walk", "walk-with-spans"])
def test_record_hexes_stay_bounded(route: str) -> None:
    records._HEXES.clear()
    for round_ in range(40):
        data = _db(20, round_)
        if route == "fast":
            records.decode_records(data, "db", lambda s, f, r: f)
        elif route == "walk":
            records.decode_records(data.decode(), "db", lambda s, f, r: f)  # text: the exact walk
        else:
            records.decode_records(data, "db", lambda s, f, r: f, spans=True)
        assert len(records._HEXES) <= CAP + 20  # the cap, plus one load's own
    assert len(records._HEXES) > 0  # still sharing


def test_record_key_orders_stay_bounded() -> None:
    records._ORDERS.clear()
    for round_ in range(40):
        records.decode_snapshot_db(_db(5, round_, unknown=True), "db")
        assert len(records._ORDERS) <= CAP


def test_index_blob_sets_stay_bounded(tmp_path: Path) -> None:
    index = Reconciler(str(tmp_path), pending_stale_seconds=0, temp_stale_seconds=0)
    for round_ in range(20):
        db = index.decode_db(_db(20, round_), str(tmp_path / "db"))
        assert not isinstance(db, Exception) and db is not None
        assert len(index._facts_cache) <= CAP


def test_scan_memos_stay_bounded() -> None:
    for i in range(10 * CAP):
        base: tuple[BaseFile, ...] = ((f"/b/{i}", "layer"),)
        assert scan._interned(base) == base
        assert len(scan._BASES) <= CAP
        assert scan._unreadable(f"why {i}").unreadable == f"why {i}"
        assert len(scan._CONTENTS) <= CAP
