"""Property: any DB cocoon could hold survives decode -> encode -> decode ->
encode byte-identically, and the first encode keeps everything it was given."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoond import SnapshotDB, SnapshotRecord
from cocoond.storage import goschema
from cocoond.storage.records import decode_snapshot_db

RECORD = goschema.fields_of(goschema.SNAPSHOT_RECORD)
INDEX = goschema.fields_of(goschema.SNAPSHOT_INDEX)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
NONZERO_INT64 = INT64.filter(bool)

# Any unicode (lone surrogates too, as a "\ud800" escape in a file reads), plus
# the characters Go escapes and JSON's own escapes, drawn often.
CHARS = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),
    st.sampled_from('<>&\u2028\u2029"\\/\x00\x1f\n\t\x7f\ufffd'),
)
TEXT = st.text(alphabet=CHARS, max_size=12)
NONEMPTY_TEXT = st.text(alphabet=CHARS, min_size=1, max_size=12)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    JSON_LEAF,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(TEXT, children, max_size=3)),
    max_leaves=8,
)
# Keys no field of cocoon's record takes, in any case (Go matches keys
# case-insensitively).
UNKNOWN_KEYS = st.dictionaries(TEXT.filter(lambda k: RECORD.lookup(k) is None), JSON_VALUES, max_size=4)
HEXES = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@st.composite
def rfc3339_texts(draw: st.DrawFn) -> str:
    """created_at as Go writes it: any date, 0-9 fractional digits (trailing
    zeros kept too: another writer may not trim), Z or any +-hh:mm."""
    dt = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    digits = draw(st.integers(min_value=0, max_value=9))
    if digits:
        text += "." + draw(st.text(alphabet="0123456789", min_size=digits, max_size=digits))
    if draw(st.booleans()):
        return text + "Z"
    sign = draw(st.sampled_from("+-"))
    return text + f"{sign}{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"


@st.composite
def json_records(draw: st.DrawFn, sid: str) -> dict[str, Any]:
    """A record as a JSON object: id, name, created_at always; the omitempty
    fields only when non-zero (so nothing is dropped); unknown keys; any order."""
    rec: dict[str, Any] = {
        "id": draw(st.one_of(st.just(sid), TEXT)),
        "name": draw(TEXT),
        "created_at": draw(rfc3339_texts()),
    }
    optional = {
        "description": NONEMPTY_TEXT,
        "image": NONEMPTY_TEXT,
        "data_dir": NONEMPTY_TEXT,
        "cpu": NONZERO_INT64,
        "memory": NONZERO_INT64,
        "storage": NONZERO_INT64,
        "nics": NONZERO_INT64,
        "pending": st.just(True),
        "image_blob_ids": st.lists(st.one_of(HEXES, NONEMPTY_TEXT), min_size=1, max_size=4).map(
            lambda hs: {h: {} for h in sorted(hs)}
        ),
        # Typed fields beyond the seed's: kept as they are, as extras.
        "hypervisor": st.sampled_from(["cloud-hypervisor", "firecracker"]),
        "image_type": st.sampled_from(["oci", "cloudimg"]),
        "image_digest": HEXES.map(lambda h: "sha256:" + h),
        "network": TEXT,
        "queue_size": INT64,
        "disk_queue_size": INT64,
        "no_direct_io": st.booleans(),
        "windows": st.booleans(),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            rec[key] = draw(strategy)
    rec.update(draw(UNKNOWN_KEYS))
    order = draw(st.permutations(list(rec)))
    return {k: rec[k] for k in order}


@st.composite
def json_dbs(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(TEXT, max_size=4, unique=True))
    snapshots: dict[str, Any] = {}
    for sid in ids:
        snapshots[sid] = None if draw(st.integers(0, 5)) == 0 else draw(json_records(sid))
    top: dict[str, Any] = {
        "snapshots": snapshots,
        "names": draw(st.dictionaries(TEXT, TEXT, max_size=4)),
    }
    top.update(draw(st.dictionaries(TEXT.filter(lambda k: INDEX.lookup(k) is None), JSON_VALUES, max_size=3)))
    order = draw(st.permutations(list(top)))
    return {k: top[k] for k in order}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_dbs(), st.booleans())
def test_json_db_survives_encode_decode_encode(obj: dict[str, Any], ascii_input: bool) -> None:
    # The input as cocoon writes it (raw UTF-8) or as the epoch registry did
    # (indented, \u escapes); a lone surrogate only exists as an escape.
    try:
        raw = json.dumps(obj, ensure_ascii=ascii_input, indent=2 if ascii_input else None).encode()
    except UnicodeEncodeError:
        raw = json.dumps(obj).encode()
    db1 = decode_snapshot_db(raw, "p")
    e1 = db1.encode()
    e2 = decode_snapshot_db(e1, "p").encode()
    assert e1 == e2

    out = json.loads(e1)
    assert out == obj
    assert list(out) == list(obj)
    assert list(out["snapshots"]) == sorted(obj["snapshots"])
    assert list(out["names"]) == sorted(obj["names"])
    for sid, rec in obj["snapshots"].items():
        if rec is None:
            assert sid in db1.null_ids
        else:
            assert list(out["snapshots"][sid]) == list(rec)
            assert out["snapshots"][sid]["created_at"] == rec["created_at"]


OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda m: timezone(timedelta(minutes=m))
)


@st.composite
def py_records(draw: st.DrawFn, sid: str) -> SnapshotRecord:
    # Years from 1000: earlier years are test_records' year-padding test.
    created = draw(
        st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30), timezones=OFFSETS)
    )
    return SnapshotRecord(
        sid,
        name=draw(TEXT),
        description=draw(TEXT),
        image=draw(TEXT),
        image_blob_ids=draw(st.sets(st.one_of(HEXES, TEXT), max_size=4)),
        cpu=draw(INT64),
        memory=draw(INT64),
        storage=draw(INT64),
        nics=draw(INT64),
        created_at=created,
        pending=draw(st.booleans()),
        data_dir=draw(TEXT),
        extra=draw(UNKNOWN_KEYS),
    )


@st.composite
def py_dbs(draw: st.DrawFn) -> SnapshotDB:
    ids = draw(st.lists(TEXT, max_size=4, unique=True))
    return SnapshotDB(
        snapshots={sid: draw(py_records(sid)) for sid in ids},
        names=draw(st.dictionaries(TEXT, TEXT, max_size=4)),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(py_dbs())
def test_python_db_survives_encode_decode_encode(db: SnapshotDB) -> None:
    e1 = db.encode()
    db2 = decode_snapshot_db(e1, "p")
    assert db2.encode() == e1
    assert db2.names == db.names
    assert db2.snapshots == db.snapshots  # every seed field, created_at as an instant
    for sid, rec in db.snapshots.items():
        assert db2.snapshots[sid].extra == rec.extra
        assert db2.snapshots[sid].created_at.utcoffset() == rec.created_at.utcoffset()
