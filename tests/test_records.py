"""The snapshot DB as Go writes it: what read -> write keeps (unknown keys,
exact created_at text, key order), omitempty, Go sets, Go string escaping,
and every corrupt-file shape raising DBError naming the file."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import cocoond
from cocoond import DBError, Paths, SnapshotDB, SnapshotRecord
from cocoond.storage.records import GO_ZERO_TIME, decode_snapshot_db

SID = "QWERTYUIOPASDFGHJKLZXCVBNM"
SID2 = "MNBVCXZLKJHGFDSAPOIUYTREWQ"
HEX_A = "a" * 64
HEX_B = "b" * 64
HEX_F = "f" * 64
NANO_TEXT = "2026-03-04T05:06:07.123456789+08:00"

# Go's time.RFC3339Nano as encoding/json writes it: 4-digit year, trailing
# fractional zeros trimmed, "Z" for a zero offset.
GO_RFC3339NANO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?(Z|[+-]\d\d:\d\d)")


def full_record(sid: str = SID) -> dict[str, Any]:
    """A record with every seed field set and unknown keys between them, in
    cocoon's key order (the VM config first)."""
    return {
        "cpu": 2,
        "memory": 1 << 30,
        "storage": 10 << 30,
        "image": "ubuntu:24.04",
        "image_type": "cloudimg",
        "image_digest": "sha256:" + HEX_F,
        "id": sid,
        "name": "web-1",
        "description": "before the upgrade",
        "image_blob_ids": {HEX_A: {}, HEX_B: {}},
        "hypervisor": "cloud-hypervisor",
        "nics": 1,
        "queue_size": 256,
        "network": "cni-default",
        "nic_tuning": {"mac": "52:54:00:12:34:56", "queues": [1, 2, 3], "vhost": None, "rate": 1.5},
        "created_at": NANO_TEXT,
        "pending": True,
        "data_dir": "/data01/cocoon/snapshot/localfile/" + sid,
        "labels": [],
        "zero": 0,
        "off": False,
    }


def original_db() -> dict[str, Any]:
    return {
        "version": 2,
        "snapshots": {SID: full_record()},
        "names": {"web-1": SID},
        "meta": {"writer": "cocoon", "nested": [1, {"deep": None}], "big": 2**64 + 1},
    }


def write_raw(paths: Paths, data: bytes) -> Path:
    db_file = paths.snapshot_db_file()
    db_file.parent.mkdir(parents=True, exist_ok=True)
    db_file.write_bytes(data)
    return db_file


@pytest.fixture
def paths(root: Path, sim: ModuleType) -> Paths:
    sim.init(str(root))
    return Paths(root)


def roundtrip(paths: Paths) -> dict[str, Any]:
    paths.write_snapshot_db(paths.read_snapshot_db())
    out: dict[str, Any] = json.loads(paths.snapshot_db_file().read_bytes())
    return out


# ------------------------------------------------------------ 1. round trip
def test_roundtrip_keeps_unknown_keys_nanoseconds_and_order(paths: Paths) -> None:
    original = original_db()
    write_raw(paths, json.dumps(original, indent=1).encode())

    after = roundtrip(paths)

    assert after == original
    rec = after["snapshots"][SID]
    assert rec["created_at"] == NANO_TEXT
    assert list(rec) == list(full_record())
    assert list(after) == ["version", "snapshots", "names", "meta"]
    assert after["meta"]["big"] == 2**64 + 1


def test_read_exposes_seed_fields_and_unknown_keys(paths: Paths) -> None:
    write_raw(paths, json.dumps(original_db()).encode())
    db = paths.read_snapshot_db()

    assert isinstance(db, SnapshotDB)
    assert set(db.snapshots) == {SID}
    assert db.names == {"web-1": SID}
    rec = db.snapshots[SID]
    assert isinstance(rec, SnapshotRecord)
    assert (rec.id, rec.name, rec.description, rec.image) == (
        SID,
        "web-1",
        "before the upgrade",
        "ubuntu:24.04",
    )
    assert (rec.cpu, rec.memory, rec.storage, rec.nics) == (2, 1 << 30, 10 << 30, 1)
    assert rec.pending is True
    assert rec.data_dir == "/data01/cocoon/snapshot/localfile/" + SID
    assert rec.image_blob_ids == {HEX_A, HEX_B}
    assert rec.created_at == datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone(timedelta(hours=8)))
    assert rec.created_at.utcoffset() == timedelta(hours=8)
    assert rec.extra["hypervisor"] == "cloud-hypervisor"
    assert rec.extra["queue_size"] == 256
    assert rec.extra["network"] == "cni-default"
    assert rec.extra["nic_tuning"]["queues"] == [1, 2, 3]
    assert db.extra == {"version": 2, "meta": original_db()["meta"]}


def test_go_compact_file_is_rewritten_byte_identical(paths: Paths) -> None:
    # What cocoon itself writes: compact, maps sorted, a trailing newline.
    obj: dict[str, Any] = {
        "snapshots": {SID2: full_record(SID2), SID: full_record(SID)},
        "names": {"a": SID, "b": SID2},
    }
    obj["snapshots"] = dict(sorted(obj["snapshots"].items()))
    obj["snapshots"][SID2]["name"] = "b"
    obj["snapshots"][SID]["name"] = "a"
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    db_file = write_raw(paths, data)

    paths.write_snapshot_db(paths.read_snapshot_db())

    assert db_file.read_bytes() == data


@pytest.mark.parametrize(
    ("new", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC), "2026-01-02T03:04:05.6Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 123450, tzinfo=UTC), "2026-01-02T03:04:05.12345Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC), "2026-01-02T03:04:05.000001Z"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(0))), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=8))), "2026-01-02T03:04:05+08:00"),
        (
            datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
            "2026-01-02T03:04:05.25-05:30",
        ),
    ],
)
def test_assigned_created_at_is_written_rfc3339nano(paths: Paths, new: datetime, text: str) -> None:
    write_raw(paths, json.dumps(original_db()).encode())
    db = paths.read_snapshot_db()
    db.snapshots[SID].created_at = new
    paths.write_snapshot_db(db)

    rec = json.loads(paths.snapshot_db_file().read_bytes())["snapshots"][SID]
    assert rec["created_at"] == text
    assert GO_RFC3339NANO.fullmatch(text)
    # Only created_at changed; the key order did not.
    assert list(rec) == list(full_record())
    assert {k: v for k, v in rec.items() if k != "created_at"} == {
        k: v for k, v in full_record().items() if k != "created_at"
    }
    assert paths.read_snapshot_db().snapshots[SID].created_at == new


def test_same_instant_keeps_the_nanosecond_text(paths: Paths) -> None:
    write_raw(paths, json.dumps(original_db()).encode())
    db = paths.read_snapshot_db()
    rec = db.snapshots[SID]
    rec.created_at = datetime.fromisoformat("2026-03-04T05:06:07.123456+08:00")
    paths.write_snapshot_db(db)
    assert json.loads(paths.snapshot_db_file().read_bytes())["snapshots"][SID]["created_at"] == NANO_TEXT


@pytest.mark.parametrize(
    ("new", "text"),
    [
        (datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC), "0999-12-31T23:59:59Z"),
        (datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC), "0001-01-01T00:00:01Z"),
    ],
)
def test_assigned_created_at_before_year_1000_is_zero_padded(paths: Paths, new: datetime, text: str) -> None:
    # Go's RFC 3339 year is always 4 digits; a 3-digit year is not RFC 3339 and
    # makes the DB unreadable for cocoon and for us.
    db = SnapshotDB(snapshots={SID: SnapshotRecord(SID, name="old", created_at=new)}, names={"old": SID})
    paths.write_snapshot_db(db)
    rec = json.loads(paths.snapshot_db_file().read_bytes())["snapshots"][SID]
    assert rec["created_at"] == text
    assert paths.read_snapshot_db().snapshots[SID].created_at == new


def test_naive_created_at_is_refused_and_nothing_written(paths: Paths) -> None:
    db_file = write_raw(paths, json.dumps(original_db()).encode())
    before = db_file.read_bytes()
    db = paths.read_snapshot_db()
    db.snapshots[SID].created_at = datetime(2026, 1, 2, 3, 4, 5)
    with pytest.raises(ValueError):
        paths.write_snapshot_db(db)
    assert db_file.read_bytes() == before


def test_key_order_kept_when_fields_change(paths: Paths) -> None:
    write_raw(paths, json.dumps(original_db()).encode())
    db = paths.read_snapshot_db()
    rec = db.snapshots[SID]
    rec.pending = False  # cocoon's finalize: "pending" dropped
    rec.description = "after"
    rec.extra["queue_size"] = 512
    paths.write_snapshot_db(db)

    out = json.loads(paths.snapshot_db_file().read_bytes())["snapshots"][SID]
    expected_order = [k for k in full_record() if k != "pending"]
    assert list(out) == expected_order
    assert out["description"] == "after"
    assert out["queue_size"] == 512
    assert "pending" not in out


def test_new_record_is_written_in_cocoon_field_order() -> None:
    rec = SnapshotRecord(
        SID,
        name="n",
        description="d",
        image="img",
        image_blob_ids={HEX_A},
        cpu=1,
        memory=2,
        storage=3,
        nics=4,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        pending=True,
        data_dir="/d",
    )
    out = rec.to_json()
    assert list(out) == [
        "cpu",
        "memory",
        "storage",
        "image",
        "id",
        "name",
        "description",
        "image_blob_ids",
        "nics",
        "created_at",
        "pending",
        "data_dir",
    ]
    assert out["created_at"] == "2026-01-01T00:00:00Z"


# ----------------------------------------------------------- 2. omitempty
OMITEMPTY = {
    "description": ("", "text"),
    "image": ("", "ubuntu"),
    "image_blob_ids": ({}, {HEX_A: {}}),
    "cpu": (0, 4),
    "memory": (0, 1 << 30),
    "storage": (0, 1 << 34),
    "nics": (0, 2),
    "pending": (False, True),
    "data_dir": ("", "/data01/cocoon/snapshot/localfile/" + SID),
}


@pytest.mark.parametrize("key", sorted(OMITEMPTY))
def test_omitempty_field_omitted_when_zero_and_written_when_set(paths: Paths, key: str) -> None:
    zero, value = OMITEMPTY[key]
    base = {"id": SID, "name": "n", "created_at": "2026-01-01T00:00:00Z"}
    write_raw(paths, json.dumps({"snapshots": {SID: {**base, key: zero}}, "names": {"n": SID}}).encode())
    out = roundtrip(paths)["snapshots"][SID]
    assert out == base

    write_raw(paths, json.dumps({"snapshots": {SID: {**base, key: value}}, "names": {"n": SID}}).encode())
    out = roundtrip(paths)["snapshots"][SID]
    assert out == {**base, key: value}


@pytest.mark.parametrize("key", sorted(OMITEMPTY))
def test_omitempty_null_reads_as_zero_and_is_omitted(paths: Paths, key: str) -> None:
    # Go leaves the zero value for a JSON null.
    base = {"id": SID, "name": "n", "created_at": "2026-01-01T00:00:00Z"}
    write_raw(paths, json.dumps({"snapshots": {SID: {**base, key: None}}, "names": {}}).encode())
    rec = paths.read_snapshot_db().snapshots[SID]
    assert getattr(rec, key) == (set() if key == "image_blob_ids" else OMITEMPTY[key][0])
    assert roundtrip(paths)["snapshots"][SID] == base


def test_zero_record_writes_id_name_and_go_zero_time() -> None:
    assert SnapshotRecord("X").to_json() == {"id": "X", "name": "", "created_at": "0001-01-01T00:00:00Z"}
    assert GO_ZERO_TIME == "0001-01-01T00:00:00Z"


def test_record_without_created_at_name_id_writes_them(paths: Paths) -> None:
    write_raw(paths, b'{"snapshots":{"K":{"cpu":1}},"names":{}}')
    db = paths.read_snapshot_db()
    assert db.snapshots["K"].created_at == datetime(1, 1, 1, tzinfo=UTC)
    out = roundtrip(paths)["snapshots"]["K"]
    assert out == {"cpu": 1, "id": "", "name": "", "created_at": "0001-01-01T00:00:00Z"}


def test_go_zero_time_in_a_file_survives(paths: Paths) -> None:
    write_raw(
        paths, b'{"snapshots":{"K":{"id":"K","name":"","created_at":"0001-01-01T00:00:00Z"}},"names":{}}'
    )
    assert roundtrip(paths)["snapshots"]["K"]["created_at"] == "0001-01-01T00:00:00Z"


# -------------------------------------------------------------- 3. Go sets
def test_image_blob_ids_is_a_set_written_as_sorted_go_set(paths: Paths) -> None:
    hexes = [HEX_F, HEX_A, "0" * 64, HEX_B]
    rec = {"id": SID, "name": "n", "image_blob_ids": {h: {} for h in hexes}, "created_at": NANO_TEXT}
    write_raw(paths, json.dumps({"snapshots": {SID: rec}, "names": {}}).encode())

    got = paths.read_snapshot_db().snapshots[SID].image_blob_ids
    assert isinstance(got, set)
    assert got == set(hexes)
    assert all(type(h) is str for h in got)

    paths.write_snapshot_db(paths.read_snapshot_db())
    raw = paths.snapshot_db_file().read_bytes()
    out = json.loads(raw)["snapshots"][SID]["image_blob_ids"]
    assert out == {h: {} for h in hexes}
    assert list(out) == sorted(hexes)
    expected = "{" + ",".join(f'"{h}":{{}}' for h in sorted(hexes)) + "}"
    assert b'"image_blob_ids":' + expected.encode() in raw


def test_assigned_blob_set_written_sorted(paths: Paths) -> None:
    db = SnapshotDB(snapshots={SID: SnapshotRecord(SID, name="n", image_blob_ids={HEX_F, HEX_B})})
    paths.write_snapshot_db(db)
    out = json.loads(paths.snapshot_db_file().read_bytes())["snapshots"][SID]["image_blob_ids"]
    assert list(out.items()) == [(HEX_B, {}), (HEX_F, {})]


def test_null_maps_read_as_empty(paths: Paths) -> None:
    write_raw(
        paths,
        b'{"snapshots":{"K":{"id":"K","name":"","image_blob_ids":null,'
        b'"created_at":"2026-01-01T00:00:00Z"}},"names":null}',
    )
    db = paths.read_snapshot_db()
    assert db.names == {}
    assert db.snapshots["K"].image_blob_ids == set()

    write_raw(paths, b'{"snapshots":null,"names":null}')
    db = paths.read_snapshot_db()
    assert db.snapshots == {}
    assert db.names == {}
    assert db.null_ids == set()


def test_blob_member_null_is_accepted(paths: Paths) -> None:
    # Go decodes null into struct{} without complaint.
    write_raw(paths, json.dumps({"snapshots": {SID: {"id": SID, "image_blob_ids": {HEX_A: None}}}}).encode())
    assert paths.read_snapshot_db().snapshots[SID].image_blob_ids == {HEX_A}


def test_missing_maps_read_as_empty_and_are_written(paths: Paths) -> None:
    write_raw(paths, b"{}")
    db = paths.read_snapshot_db()
    assert (db.snapshots, db.names) == ({}, {})
    assert roundtrip(paths) == {"snapshots": {}, "names": {}}


# ------------------------------------------------------ 4. corrupt files
GOOD_REC = {"id": SID, "name": "n", "created_at": "2026-01-01T00:00:00Z"}


def _db(rec: Any) -> bytes:
    return json.dumps({"snapshots": {SID: rec}, "names": {"n": SID}}).encode()


CORRUPT: dict[str, bytes] = {
    "truncated": _db(GOOD_REC)[:-7],
    "half": json.dumps({"snapshots": {SID: full_record()}, "names": {}}).encode()[:100],
    "empty": b"",
    "whitespace": b" \n",
    "top-list": b"[]",
    "top-list-of-db": b'[{"snapshots":{},"names":{}}]',
    "top-string": b'"snapshots"',
    "top-number": b"5",
    "snapshots-number": b'{"snapshots":5,"names":{}}',
    "snapshots-list": b'{"snapshots":[],"names":{}}',
    "names-list": b'{"snapshots":{},"names":["a","b"]}',
    "names-string": b'{"snapshots":{},"names":"a"}',
    "names-value-number": b'{"snapshots":{},"names":{"a":5}}',
    "record-number": _db(5),
    "record-string": _db("rec"),
    "record-list": _db([GOOD_REC]),
    "record-true": _db(True),
    "cpu-string": _db({**GOOD_REC, "cpu": "two"}),
    "cpu-float": _db({**GOOD_REC, "cpu": 2.5}),
    "cpu-bool": _db({**GOOD_REC, "cpu": True}),
    "memory-string": _db({**GOOD_REC, "memory": "1G"}),
    "nics-list": _db({**GOOD_REC, "nics": [1]}),
    "created_at-yesterday": _db({**GOOD_REC, "created_at": "yesterday"}),
    "created_at-number": _db({**GOOD_REC, "created_at": 1700000000}),
    "created_at-no-zone": _db({**GOOD_REC, "created_at": "2026-03-04T05:06:07"}),
    "created_at-date-only": _db({**GOOD_REC, "created_at": "2026-03-04"}),
    "created_at-space": _db({**GOOD_REC, "created_at": "2026-03-04 05:06:07Z"}),
    "pending-yes": _db({**GOOD_REC, "pending": "yes"}),
    "pending-one": _db({**GOOD_REC, "pending": 1}),
    "id-number": _db({**GOOD_REC, "id": 7}),
    "name-object": _db({**GOOD_REC, "name": {}}),
    "description-list": _db({**GOOD_REC, "description": ["x"]}),
    "image-number": _db({**GOOD_REC, "image": 1}),
    "data_dir-bool": _db({**GOOD_REC, "data_dir": False}),
    "blobs-list": _db({**GOOD_REC, "image_blob_ids": [HEX_A]}),
    "blobs-string": _db({**GOOD_REC, "image_blob_ids": HEX_A}),
    "blob-member-number": _db({**GOOD_REC, "image_blob_ids": {HEX_A: 5}}),
    "blob-member-true": _db({**GOOD_REC, "image_blob_ids": {HEX_A: True}}),
    "binary-ff-fe": b"\xff\xfe\x00\x01garbage\x80\x81",
    "binary-random": bytes(range(256)) * 4,
    "urandom": b"\x80" + os.urandom(256),
    "nul-bytes": b"\x00" * 64,
    "deep-nesting": b"[" * 200_000,
    "trailing-garbage": _db(GOOD_REC) + b"}",
    "two-documents": _db(GOOD_REC) + _db(GOOD_REC),
    # Go's decoder reads UTF-8 only: a BOM or UTF-16 is "invalid character".
    "utf8-bom": b"\xef\xbb\xbf" + _db(GOOD_REC),
    "utf16": _db(GOOD_REC).decode().encode("utf-16-le"),
}


@pytest.mark.parametrize("shape", sorted(CORRUPT))
def test_corrupt_db_raises_dberror_naming_the_file(paths: Paths, shape: str) -> None:
    db_file = write_raw(paths, CORRUPT[shape])
    with pytest.raises(DBError) as info:
        paths.read_snapshot_db()
    assert str(db_file) in str(info.value)
    assert info.value.path == str(db_file)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, cocoond.DBError)
    assert cocoond.snapshot_exists(paths, "n") is False


# created_at texts Go's time.Time.UnmarshalJSON (time.Parse with the RFC 3339
# layout) rejects, so cocoon cannot load a DB holding one: it is not a valid DB.
GO_REJECTS = [
    "2026-03-04T05:06:07+0800",  # offset without colon
    "2026-03-04T05:06:07+08",  # offset without minutes
    "2026-03-04T05:06:07.Z",  # a dot without digits
    "2026-03-04T05:06:07.5+08:00:30",  # offset with seconds
    "2026-03-04T05:06:07 Z",  # space before the zone
]


@pytest.mark.parametrize("text", GO_REJECTS)
def test_created_at_go_rejects_is_dberror(paths: Paths, text: str) -> None:
    db_file = write_raw(paths, _db({**GOOD_REC, "created_at": text}))
    with pytest.raises(DBError) as info:
        paths.read_snapshot_db()
    assert str(db_file) in str(info.value)


GO_ACCEPTS = {
    "2026-03-04T05:06:07Z": datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    "2026-03-04T05:06:07-00:00": datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    "2026-03-04T05:06:07.5Z": datetime(2026, 3, 4, 5, 6, 7, 500000, tzinfo=UTC),
    # Go's strict RFC 3339 checks are disabled (time/format_rfc3339.go,
    # go.dev/issue/54580): what time.Parse(RFC3339) takes, Go reads.
    "2026-03-04T05:06:07,5Z": datetime(2026, 3, 4, 5, 6, 7, 500000, tzinfo=UTC),
    "2026-03-04T5:06:07Z": datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    "2026-03-04T05:06:07.000000001Z": datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    "2026-03-04T05:06:07.999999999-05:30": datetime(
        2026, 3, 4, 5, 6, 7, 999999, tzinfo=timezone(-timedelta(hours=5, minutes=30))
    ),
    "2026-03-04T05:06:07.1234567891+14:00": datetime(
        2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone(timedelta(hours=14))
    ),
    "0001-01-01T00:00:00Z": datetime(1, 1, 1, tzinfo=UTC),
    "9999-12-31T23:59:59.999999999Z": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
}


@pytest.mark.parametrize("text", sorted(GO_ACCEPTS))
def test_created_at_go_accepts_reads_and_round_trips(paths: Paths, text: str) -> None:
    write_raw(paths, _db({**GOOD_REC, "created_at": text}))
    rec = paths.read_snapshot_db().snapshots[SID]
    assert rec.created_at == GO_ACCEPTS[text]
    assert rec.created_at.utcoffset() == GO_ACCEPTS[text].utcoffset()
    assert roundtrip(paths)["snapshots"][SID]["created_at"] == text


def test_db_path_is_a_directory(paths: Paths) -> None:
    db_file = paths.snapshot_db_file()
    db_file.mkdir(parents=True)
    with pytest.raises(DBError) as info:
        paths.read_snapshot_db()
    assert str(db_file) in str(info.value)
    assert cocoond.snapshot_exists(paths, "n") is False


def test_sim_corrupt_db_fault(paths: Paths, sim: ModuleType, root: Path) -> None:
    sim.create(str(root), name="n")
    fault = sim.inject(str(root), "corrupt-db")
    assert fault["kind"] == "db_unreadable"
    with pytest.raises(DBError, match=re.escape(str(paths.snapshot_db_file()))):
        paths.read_snapshot_db()


def test_decode_names_the_given_path() -> None:
    with pytest.raises(DBError) as info:
        decode_snapshot_db(b"[]", "/some/where/snapshots.json")
    assert "/some/where/snapshots.json" in str(info.value)


def test_missing_file_reads_as_empty_db(paths: Paths, tmp_path: Path) -> None:
    assert not paths.snapshot_db_file().exists()
    db = paths.read_snapshot_db()
    assert (db.snapshots, db.names, db.null_ids) == ({}, {}, set())
    # Even without a root at all, and without creating anything.
    nowhere = tmp_path / "no-root"
    assert Paths(nowhere).read_snapshot_db().snapshots == {}
    assert not nowhere.exists()


def test_null_record_is_skipped_kept_and_written_back(paths: Paths) -> None:
    write_raw(
        paths,
        json.dumps({"snapshots": {"GONE": None, SID: GOOD_REC}, "names": {"n": SID, "g": "GONE"}}).encode(),
    )
    db = paths.read_snapshot_db()
    assert set(db.snapshots) == {SID}
    assert db.null_ids == {"GONE"}

    after = roundtrip(paths)
    assert "GONE" in after["snapshots"]
    assert after["snapshots"]["GONE"] is None
    assert after["snapshots"][SID] == GOOD_REC
    assert after["names"] == {"n": SID, "g": "GONE"}


def test_null_name_target_reads_as_empty_string(paths: Paths) -> None:
    write_raw(paths, b'{"snapshots":{},"names":{"n":null}}')
    assert paths.read_snapshot_db().names == {"n": ""}


# ------------------------------------------------------- 10. Go escaping
def test_html_characters_are_escaped_as_go_does(paths: Paths) -> None:
    name = "a<b>&c\u2028d\u2029e"
    db = SnapshotDB(snapshots={SID: SnapshotRecord(SID, name=name, description="x & y")}, names={name: SID})
    paths.write_snapshot_db(db)
    raw = paths.snapshot_db_file().read_bytes()
    for ch in (b"<", b">", b"&", "\u2028".encode(), "\u2029".encode()):
        assert ch not in raw
    assert b"a\\u003cb\\u003e\\u0026c\\u2028d\\u2029e" in raw
    assert b"x \\u0026 y" in raw

    back = paths.read_snapshot_db()
    assert back.names == {name: SID}
    assert back.snapshots[SID].name == name
    assert back.snapshots[SID].description == "x & y"


def test_non_ascii_is_written_raw_utf8(paths: Paths) -> None:
    name = "snap-\u00e9\u4e2d\U0001f600"
    paths.write_snapshot_db(SnapshotDB(snapshots={SID: SnapshotRecord(SID, name=name)}, names={name: SID}))
    raw = paths.snapshot_db_file().read_bytes()
    assert name.encode() in raw
    assert b"\\u" not in raw
    assert paths.read_snapshot_db().names == {name: SID}


def test_escaped_input_reads_back_identical(paths: Paths) -> None:
    write_raw(paths, b'{"snapshots":{},"names":{"\\u003c\\u0026\\u003e":"X","\\"q\\\\":"Y","t\\tn\\n":"Z"}}')
    db = paths.read_snapshot_db()
    assert db.names == {"<&>": "X", '"q\\': "Y", "t\tn\n": "Z"}
    assert roundtrip(paths)["names"] == db.names


def test_lone_surrogate_survives_round_trip(paths: Paths) -> None:
    write_raw(paths, b'{"snapshots":{"K":{"id":"K","name":"\\ud800x"}},"names":{"\\udfffy":"K"}}')
    db = paths.read_snapshot_db()
    assert db.snapshots["K"].name == "\ud800x"
    assert db.names == {"\udfffy": "K"}

    after = roundtrip(paths)
    assert after["snapshots"]["K"]["name"] == "\ud800x"
    assert after["names"] == {"\udfffy": "K"}
    again = paths.read_snapshot_db()
    assert again.snapshots["K"].name == "\ud800x"


def test_lone_surrogate_does_not_turn_off_go_escaping(paths: Paths) -> None:
    # One odd name elsewhere in the DB must not change how "<&>" are written.
    write_raw(paths, b'{"snapshots":{},"names":{"\\ud800":"K","a<&>b":"L"}}')
    paths.write_snapshot_db(paths.read_snapshot_db())
    raw = paths.snapshot_db_file().read_bytes()
    assert b"a\\u003c\\u0026\\u003eb" in raw
    assert b"<" not in raw
    assert b"&" not in raw
    assert paths.read_snapshot_db().names == {"\ud800": "K", "a<&>b": "L"}


def test_encode_ends_with_one_newline_and_is_compact() -> None:
    data = SnapshotDB(snapshots={SID: SnapshotRecord(SID, name="n")}, names={"n": SID}).encode()
    assert data.endswith(b"}\n")
    assert not data.endswith(b"\n\n")
    assert b": " not in data
    assert b", " not in data
    assert data == (
        b'{"snapshots":{"' + SID.encode() + b'":{"id":"' + SID.encode() + b'","name":"n",'
        b'"created_at":"0001-01-01T00:00:00Z"}},"names":{"n":"' + SID.encode() + b'"}}\n'
    )


def test_maps_written_with_sorted_keys() -> None:
    db = SnapshotDB(
        snapshots={"Z1": SnapshotRecord("Z1"), "A1": SnapshotRecord("A1"), "M1": SnapshotRecord("M1")},
        names={"zeta": "Z1", "alpha": "A1", "mu": "M1"},
        null_ids={"B0"},
    )
    out = json.loads(db.encode())
    assert list(out["snapshots"]) == ["A1", "B0", "M1", "Z1"]
    assert list(out["names"]) == ["alpha", "mu", "zeta"]
