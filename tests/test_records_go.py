"""snapshots.json read as cocoon's json.Unmarshal into snapshot.SnapshotIndex
reads it: every typed field, Go's ranges, case-insensitive keys, duplicates,
depth up to 10,000; what Go rejects is a DBError with Go's error (issue 9
items 4 and 10, issue 10 item 1)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoond import DBError, Paths, SnapshotDB, SnapshotRecord
from cocoond.storage import goschema as g
from cocoond.storage.godecode import Decoder, GoDecodeError
from cocoond.storage.gojson import loads_exact
from cocoond.storage.gotime import zero_time
from cocoond.storage.jsonwalk import MAX_DEPTH
from cocoond.storage.records import RecordFields, _fast_fields, decode_records, decode_snapshot_db

SID = "QWERTYUIOPASDFGHJKLZXCVBNM"
HEX = "a" * 64
CREATED = "2026-03-04T05:06:07.123456789Z"


def doc(*record_members: str, sid: str = SID, names: str = "{}") -> str:
    return '{"snapshots":{"' + sid + '":{' + ",".join(record_members) + '}},"names":' + names + "}"


def fields_of(text: str) -> dict[str, RecordFields]:
    return decode_records(text.encode(), "db.json", lambda _sid, fields, _raw: fields).records


def failure(text: str) -> str:
    with pytest.raises(DBError) as info:
        fields_of(text)
    with pytest.raises(DBError) as api:
        decode_snapshot_db(text.encode(), "db.json")
    assert str(api.value) == str(info.value)
    assert str(info.value).startswith("db.json: ")
    return str(info.value).removeprefix("db.json: ")


# ------------------------------------------------------------ typed fields
def test_a_number_where_go_wants_a_string_is_unreadable() -> None:
    """Issue 9 item 10: `"hypervisor": 5` fails every cocoon command."""
    assert failure(doc('"id":"' + SID + '"', '"hypervisor":5')) == (
        "json: cannot unmarshal number into Go struct field "
        "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.hypervisor of type string "
        f'(at snapshots["{SID}"].hypervisor)'
    )


@pytest.mark.parametrize(
    ("member", "field", "go_type"),
    [
        ('"queue_size":"256"', "Snapshot.SnapshotConfig.Config.queue_size", "int"),
        ('"disk_queue_size":1.5', "Snapshot.SnapshotConfig.Config.disk_queue_size", "int"),
        ('"image_digest":["sha256:a"]', "Snapshot.SnapshotConfig.Config.image_digest", "string"),
        ('"image_type":true', "Snapshot.SnapshotConfig.Config.image_type", "string"),
        ('"network":{"name":"x"}', "Snapshot.SnapshotConfig.Config.network", "string"),
        ('"no_direct_io":"false"', "Snapshot.SnapshotConfig.Config.no_direct_io", "bool"),
        ('"windows":0', "Snapshot.SnapshotConfig.Config.windows", "bool"),
        ('"memory":9223372036854775808', "Snapshot.SnapshotConfig.Config.memory", "int64"),
        ('"cpu":1e0', "Snapshot.SnapshotConfig.Config.cpu", "int"),
        ('"nics":2.0', "Snapshot.SnapshotConfig.nics", "int"),
        ('"pending":"true"', "pending", "bool"),
    ],
)
def test_every_typed_field_is_checked(member: str, field: str, go_type: str) -> None:
    message = failure(doc(member))
    assert message.startswith("json: cannot unmarshal ")
    assert f" into Go struct field SnapshotRecord.snapshots.{field} of type {go_type} (at " in message


def test_int64_bounds_are_inclusive() -> None:
    (f,) = fields_of(doc(f'"memory":{2**63 - 1}', f'"storage":{-(2**63)}', '"queue_size":-1')).values()
    assert (f[6], f[7]) == (2**63 - 1, -(2**63))


def test_fields_include_hypervisor() -> None:
    (f,) = fields_of(doc('"hypervisor":"firecracker"', f'"created_at":"{CREATED}"')).values()
    assert f[13] == "firecracker"
    assert f[12] == CREATED
    (f,) = fields_of(doc()).values()
    assert f[13] == "" and f[11] == zero_time() and f[12] is None


# ------------------------------------------------------- case-insensitive
def test_pending_in_another_case_is_pending() -> None:
    """Issue 9 item 4: Go's decoder matches keys case-insensitively."""
    (f,) = fields_of(
        doc('"id":"' + SID + '"', '"Pending":true', '"DATA_DIR":"/x"', '"Hypervisor":"firecracker"')
    ).values()
    assert f[9] is True
    assert f[4] == "/x"
    assert f[13] == "firecracker"
    assert fields_of(doc('"\u017fTORAGE":7'))[SID][7] == 7  # long s folds to s


def test_later_occurrence_wins_whatever_its_case() -> None:
    (f,) = fields_of(doc('"pending":true', '"PENDING":false', '"Cpu":1', '"cpu":2')).values()
    assert (f[9], f[5]) == (False, 2)
    (f,) = fields_of(doc('"image_blob_ids":{"' + HEX + '":{}}', '"Image_Blob_IDs":{"b":null}')).values()
    assert f[10] == {HEX, "b"}  # Go adds to the map the first occurrence made


def test_folded_keys_are_written_back_as_go_writes_them(tmp_path: Path) -> None:
    """The API keeps the record lossless, with one change: a key only a
    case-insensitive match made a field becomes that field's own key (once,
    where its first spelling stood), as cocoon's own rewrite would write it."""
    text = doc(
        '"cpu":2',
        '"Pending":true',
        '"id":"' + SID + '"',
        '"HYPERVISOR":"firecracker"',
        '"hypervisor":"cloud-hypervisor"',
        '"Vendor":{"x":1}',
        f'"created_at":"{CREATED}"',
    )
    db = decode_snapshot_db(text.encode(), "db.json")
    rec = db.snapshots[SID]
    assert rec.pending is True
    assert rec.extra == {"hypervisor": "cloud-hypervisor", "Vendor": {"x": 1}}
    out = json.loads(db.encode())["snapshots"][SID]
    assert list(out) == ["cpu", "pending", "id", "hypervisor", "Vendor", "created_at", "name"]
    assert out["pending"] is True
    rec.pending = False
    out = json.loads(db.encode())["snapshots"][SID]
    assert "pending" not in out and "Pending" not in out  # nothing left for Go to read as pending


def test_typed_fields_beyond_the_seed_round_trip(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    members = {
        "queue_size": 256,
        "disk_queue_size": 128,
        "image_digest": "sha256:" + HEX,
        "image_type": "oci",
        "network": "cni0",
        "no_direct_io": True,
        "windows": False,
        "hypervisor": "firecracker",
        "nics": 0,
        "image": None,
    }
    text = doc('"id":"' + SID + '"', *(f'"{k}":{json.dumps(v)}' for k, v in members.items()))
    paths.snapshot_db_file().parent.mkdir(parents=True)
    paths.snapshot_db_file().write_text(text)
    db = paths.read_snapshot_db()
    assert {k: db.snapshots[SID].extra.get(k) for k in members if k not in ("nics", "image")} == {
        k: v for k, v in members.items() if k not in ("nics", "image")
    }
    paths.write_snapshot_db(db)
    out = json.loads(paths.snapshot_db_file().read_text())["snapshots"][SID]
    assert out == {
        "id": SID,
        **{k: v for k, v in members.items() if k not in ("nics", "image")},
        "name": "",
    } | {"created_at": "0001-01-01T00:00:00Z"}


# ------------------------------------------------------------ Go's order
def test_a_syntax_error_anywhere_wins_over_a_type_error() -> None:
    assert failure(doc('"cpu":"x"')[:-1] + ',"x":}').startswith("not valid JSON (")


def test_time_error_stops_go_and_wins_over_an_earlier_type_error() -> None:
    text = '{"snapshots":{"A":{"cpu":"x"},"B":{"created_at":"yesterday"},"C":{"pending":1}}}'
    assert failure(text) == (
        'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006" '
        '(at snapshots["B"].created_at)'
    )


def test_the_first_type_error_is_reported() -> None:
    text = '{"snapshots":{"A":{"cpu":2},"B":{"cpu":"x"},"C":{"pending":1}},"names":{"a":1}}'
    assert failure(text).endswith('(at snapshots["B"].cpu)')


def test_an_error_in_a_shadowed_duplicate_counts() -> None:
    assert failure(doc('"cpu":"x"', '"cpu":2')).endswith(f'(at snapshots["{SID}"].cpu)')
    assert failure(doc('"image_blob_ids":{"h":5,"h":{}}')).endswith(
        f'(at snapshots["{SID}"].image_blob_ids["h"])'
    )
    assert "names" in failure('{"names":{"a":5,"a":"A"}}')


def test_created_at_token_with_an_escape_is_unreadable() -> None:
    """time.Time.UnmarshalJSON parses the raw token, without unescaping."""
    message = failure(doc('"created_at":"2026-03-04T05:06:07\\u005a"'))
    assert message.startswith('parsing time "2026-03-04T05:06:07\\\\u005a"')
    # Escapes elsewhere in the record are fine.
    (f,) = fields_of(doc('"name":"a\\"b\\u0026c"', f'"created_at":"{CREATED}"')).values()
    assert f[1] == 'a"b&c'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "json: cannot unmarshal array into Go value of type snapshot.SnapshotIndex"),
        ('{"snapshots":5}', "json: cannot unmarshal number into Go struct field SnapshotIndex.snapshots"),
        (
            '{"Snapshots":{"A":[]}}',
            "json: cannot unmarshal array into Go struct field SnapshotIndex.snapshots",
        ),
        (
            '{"NAMES":{"a":true}}',
            "json: cannot unmarshal bool into Go struct field SnapshotIndex.names of type string",
        ),
    ],
)
def test_index_level_errors(text: str, message: str) -> None:
    assert failure(text).startswith(message)


def test_top_level_keys_match_in_any_case() -> None:
    db = decode_snapshot_db((b'{"SNAPSHOTS":{"A":{"id":"A"}},"Names":{"a":"A"}}'), "db.json")
    assert set(db.snapshots) == {"A"} and db.names == {"a": "A"}
    assert list(json.loads(db.encode())) == ["snapshots", "names"]


# ---------------------------------------------------------------- depth
def nest(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("where", "levels_to_10000"),
    [
        # The document is level 1, "snapshots" 2, a record 3.
        ("record", 3),
        ("top", 1),
        ("names", 2),
    ],
)
def test_deep_nesting_reads_up_to_go_s_limit(where: str, levels_to_10000: int) -> None:
    """Issue 10 item 1: ~1,000+ levels raised RecursionError; Go reads 10,000."""

    def text(levels: int) -> str:
        deep = nest(levels - levels_to_10000)
        if where == "record":
            return doc('"x":' + deep, '"cpu":1')
        if where == "top":
            return '{"x":' + deep + "," + doc('"cpu":1')[1:]
        return doc('"cpu":1', names='{"a":' + deep + "}")

    if where == "names":  # a names entry must be a string: Go's type error, after the syntax check
        assert failure(text(MAX_DEPTH)).startswith("json: cannot unmarshal array into Go struct field")
    else:
        assert fields_of(text(MAX_DEPTH))[SID][5] == 1
        assert decode_snapshot_db(text(MAX_DEPTH).encode(), "db.json").snapshots[SID].cpu == 1
    assert failure(text(MAX_DEPTH + 1)).startswith(
        "not valid JSON (invalid character '[' exceeded max depth 10000"
    )


def test_deep_db_is_written_back_as_it_was(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    text = doc('"id":"' + SID + '"', '"name":"n"', '"x":' + nest(MAX_DEPTH - 3), f'"created_at":"{CREATED}"')
    paths.snapshot_db_file().parent.mkdir(parents=True)
    paths.snapshot_db_file().write_text(text + "\n")
    paths.write_snapshot_db(paths.read_snapshot_db())
    assert paths.snapshot_db_file().read_text() == text + "\n"


def test_deep_nesting_reads_in_a_thread() -> None:
    results: list[object] = []
    text = doc('"x":' + nest(MAX_DEPTH - 3))

    def read() -> None:
        try:
            results.append(len(fields_of(text)))
            fields_of(doc('"x":' + nest(MAX_DEPTH - 2)))
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert results[0] == 1
    assert isinstance(results[1], DBError) and "exceeded max depth" in str(results[1])


@pytest.mark.parametrize(
    ("levels", "code", "kind"), [(MAX_DEPTH, 0, None), (5000, 0, None), (MAX_DEPTH + 1, 2, "db_unreadable")]
)
def test_check_reads_a_deep_db_without_a_traceback(
    tmp_path: Path, levels: int, code: int, kind: str | None
) -> None:
    """`cocoond check` on a deep DB: a finding and exit 2 beyond Go's limit,
    a normal check below it; never a traceback (exit 1, "warning")."""
    root = tmp_path / "cocoon"
    (root / "snapshot/db").mkdir(parents=True)
    (root / "snapshot/localfile").mkdir(parents=True)
    (root / "snapshot/db/snapshots.json").write_text('{"snapshots":{},"x":' + nest(levels - 1) + "}")
    done = subprocess.run(
        [sys.executable, "-m", "cocoond", "check", "--root", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr
    assert done.returncode == code, done.stderr
    findings = json.loads(done.stdout)["findings"]
    # a DB Go cannot decode also stops cocoon gc: gc_blocked names it
    assert [f["kind"] for f in findings] == ([kind, "gc_blocked"] if kind else [])
    if kind:
        assert "exceeded max depth" in findings[0]["message"]


# ------------------------------------------------------------ properties
VALUES = {
    "string": ['"s"', '"a\\"b"', '""', '"\\u0041"'],
    "int": ["0", "-1", "7", str(2**63 - 1), str(-(2**63)), str(2**63), "1.0", "1e2"],
    "bool": ["true", "false"],
    "time": [f'"{CREATED}"', '"2026-03-04T5:06:07,5+24:00"', '"x"', '"2026-01-01T00:00:00\\u005a"'],
    "set": ['{"' + HEX + '":{}}', '{"b":null,"c":{"k":1}}', "{}", '{"h":5}', "[]"],
    "other": ["null", "[1,{}]", '{"a":"b"}', "-0.5", '"\\ud800"'],
}
ANY_VALUE = [v for values in VALUES.values() for v in values]
KIND_VALUES = {
    g.Kind.STRING: "string",
    g.Kind.INT: "int",
    g.Kind.BOOL: "bool",
    g.Kind.TIME: "time",
    g.Kind.MAP: "set",
}
FIELDS = g.fields_of(g.SNAPSHOT_RECORD).fields
FEW = [
    g.fields_of(g.SNAPSHOT_RECORD).exact[k]
    for k in ("created_at", "cpu", "pending", "image_blob_ids", "queue_size", "disk_queue_size")
]


@st.composite
def raw_records(draw: st.DrawFn) -> str:
    """A record's text: fields in any case, duplicated, of the right type or
    not, unknown keys, white space; what a hand edit can make."""
    members = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 4)) == 0:
            key = draw(st.sampled_from(["x", "Kind", "labels", "\u212aey", "d\u00e9j\u00e0"]))
            value = draw(st.sampled_from(ANY_VALUE))
        else:
            fld = draw(st.sampled_from(FIELDS) | st.sampled_from(FEW))  # FEW: duplicates come often
            folded = [fld.name.upper(), fld.name.title(), fld.name.replace("s", "\u017f")]
            key = draw(st.sampled_from(folded)) if draw(st.integers(0, 3)) == 0 else fld.name
            pool = VALUES[KIND_VALUES[fld.type.kind]] if draw(st.integers(0, 5)) else ANY_VALUE
            value = draw(st.sampled_from(pool))
        sep = draw(st.sampled_from([":", ":", " : "]))
        members.append(json.dumps(key) + sep + value)
    return "{" + ",".join(members) + "}"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_records(), min_size=1, max_size=3))
def test_the_fast_path_agrees_with_go_s_decoder(recs: list[str]) -> None:
    """Whatever a record holds, decode_records (with its fast path) gives
    what json.Unmarshal of the whole document gives: the same fields, or
    the same error."""
    text = '{"snapshots":{' + ",".join(f'"R{i}":{r}' for i, r in enumerate(recs)) + "}}"
    try:
        want: Any = Decoder().unmarshal(loads_exact(text, "db.json"), g.SNAPSHOT_INDEX)
    except GoDecodeError as exc:
        want = f"db.json: {exc}"
    try:
        got: Any = fields_of(text)
    except DBError as exc:
        got = str(exc)
    if isinstance(want, str):
        assert got == want
        return
    assert isinstance(got, dict)
    for sid, rec in want["snapshots"].items():
        created = rec.get("created_at")
        assert got[sid] == (
            rec.get("id", ""),
            rec.get("name", ""),
            rec.get("description", ""),
            rec.get("image", ""),
            rec.get("data_dir", ""),
            rec.get("cpu", 0),
            rec.get("memory", 0),
            rec.get("storage", 0),
            rec.get("nics", 0),
            rec.get("pending", False),
            set(rec.get("image_blob_ids") or ()),
            created[0] if created else zero_time(),
            created[1] if created else None,
            rec.get("hypervisor", ""),
        )


def test_records_round_trip_through_the_api_unchanged_when_go_would_read_them_unchanged() -> None:
    rec = SnapshotRecord(SID, name="n", pending=True, extra={"hypervisor": "firecracker", "queue_size": 64})
    db = SnapshotDB({SID: rec}, {"n": SID})
    again = decode_snapshot_db(db.encode(), "db.json")
    assert again.snapshots[SID] == rec
    assert again.snapshots[SID].extra == rec.extra


# ------------------------------------------------------ the fast path's reach
GO_WRITTEN = (
    '{"cpu":2,"memory":1073741824,"storage":10737418240,"queue_size":256,"image":"ubuntu:24.04",'
    '"image_digest":"sha256:' + HEX + '","image_type":"cloudimg","id":"' + SID + '","name":"web \\u0026 db",'
    '"description":"d","image_blob_ids":{"' + HEX + '":{}},"hypervisor":"cloud-hypervisor","nics":1,'
    '"created_at":"' + CREATED + '","pending":true,"data_dir":"/x","labels_v2":"unknown","zero":0}'
)


@pytest.mark.parametrize(
    ("record", "fast"),
    [
        (GO_WRITTEN, True),  # every typed field, an escape, unknown scalars: no need for the exact decoder
        ("{}", True),
        ('{"id":"a","x":[1,{}]}', True),  # an unknown value without strings: skipped by Go, counted right
        ('{"id":"a","x":["s"]}', False),  # one with strings: uncounted, so the exact decoder looks
        ('{"id":"a","id":"b"}', False),  # a duplicate
        ('{"Id":"a"}', False),  # a case-insensitive match
        ('{"id":null}', False),  # a null
        ('{"description":"a\\"b"}', False),  # an escaped quote
        ('{"cpu":9223372036854775808}', False),
        ('{"created_at":"2026-01-01T00:00:00\\u005a"}', False),
    ],
)
def test_which_records_take_the_fast_path(record: str, fast: bool) -> None:
    obj = json.loads(record)
    got = _fast_fields(record, 0, len(record), obj)
    assert (got is not None) == fast
    if fast:
        text = '{"snapshots":{"R":' + record + "}}"
        assert got == fields_of(text)["R"] == fields_of(text.replace('":', '" : '))["R"]  # slow path alike


def test_check_reads_pending_in_another_case_as_pending(tmp_path: Path) -> None:
    """Issue 9 item 4, end to end: a record Go reads as pending (its data
    dir not written yet) is `pending`, not `missing_data_dir`."""
    root = tmp_path / "cocoon"
    (root / "snapshot/db").mkdir(parents=True)
    (root / "snapshot/localfile").mkdir(parents=True)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = {"id": SID, "name": "n", "Pending": True, "created_at": now, "HYPERVISOR": "firecracker"}
    (root / "snapshot/db/snapshots.json").write_text(
        json.dumps({"snapshots": {SID: record}, "names": {"n": SID}})
    )
    done = subprocess.run(
        [sys.executable, "-m", "cocoond", "check", "--root", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(f["kind"], f["subject"]) for f in json.loads(done.stdout)["findings"]] == [("pending", SID)]
