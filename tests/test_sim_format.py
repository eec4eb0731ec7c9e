"""The simulator's Go building blocks: encoding/json as cocoon's writers use
it, json.Unmarshal's rules as its readers apply them, Go's temp names,
gofrs/flock and utils.AtomicWriteJSON."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cocoond.sim import fsops, gojson, schema
from cocoond.sim.schema import GoDecodeError


# ------------------------------------------------------------ encoding/json
def test_marshal_is_compact_with_gos_escapes() -> None:
    value = {"b": "<a href='x'>&</a>", "a": "\u2028\u2029\n\t\x01\b\f\x7f", "c": [1, None, True]}
    out = gojson.marshal(value)
    assert out == (
        b'{"b":"\\u003ca href=\'x\'\\u003e\\u0026\\u003c/a\\u003e",'
        b'"a":"\\u2028\\u2029\\n\\t\\u0001\\b\\f\x7f","c":[1,null,true]}'
    )
    assert json.loads(out) == value


def test_marshal_indent_is_go_marshal_indent() -> None:
    out = gojson.marshal_indent({"config": {"name": "a&b", "image_blob_ids": {}}, "version": 1})
    assert (
        out
        == b'{\n  "config": {\n    "name": "a\\u0026b",\n    "image_blob_ids": {}\n  },\n  "version": 1\n}'
    )


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("2026-03-02T10:15:04.123456789Z", "2026-03-02T10:15:04.123456789Z"),
        ("2026-03-02T10:15:04.120000000Z", "2026-03-02T10:15:04.12Z"),  # trailing zeros dropped
        ("2026-03-02T10:15:04.000Z", "2026-03-02T10:15:04Z"),
        ("2026-03-02T18:15:04.5+08:00", "2026-03-02T18:15:04.5+08:00"),  # the offset is kept
        ("2026-03-02T10:15:04+00:00", "2026-03-02T10:15:04Z"),  # a zero offset is Z
        ("2024-02-29T23:59:59-05:30", "2024-02-29T23:59:59-05:30"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),  # Go's zero time
    ],
)
def test_time_as_go_reads_and_writes_it(text: str, back: str) -> None:
    assert gojson.normalize_time(text) == back


@pytest.mark.parametrize(
    "bad",
    ["2026-03-02 10:15:04Z", "2026-02-30T10:15:04Z", "2026-03-02T24:00:00Z", "2026-03-02T10:15:04", "x"],
)
def test_time_go_rejects(bad: str) -> None:
    with pytest.raises(gojson.TimeError):
        gojson.parse_time(bad)


def test_now_is_in_the_local_zone_as_time_now(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    assert gojson.go_time().endswith("Z")  # the test machine runs in UTC
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        text = gojson.go_time()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?\+08:00", text), text
        assert abs(gojson.time_ns(text) / 1e9 - time.time()) < 5
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# -------------------------------------------------------------- structs
def test_snapshot_record_field_order_and_omitempty() -> None:
    out = schema.encode(
        schema.SNAPSHOT_RECORD.type,
        {"name": "", "created_at": "2026-03-02T10:15:04Z", "cpu": 1, "image_blob_ids": {}, "windows": False},
    )
    # id is omitempty (types/snapshot.go:10), name is not; nothing else set
    assert list(out) == ["cpu", "name", "created_at"]
    full = schema.encode(schema.SNAPSHOT_RECORD.type, {f.json: f.json for f in schema.SNAPSHOT_RECORD.fields})
    assert list(full) == [
        "cpu", "memory", "storage", "queue_size", "disk_queue_size", "image", "image_digest", "image_type",
        "network", "no_direct_io", "windows", "id", "name", "description", "image_blob_ids", "hypervisor",
        "nics", "created_at", "pending", "data_dir",
    ]  # fmt: skip


def test_maps_sorted_sets_as_empty_objects_nil_as_null() -> None:
    out = schema.encode(
        schema.VM_RECORD.type,
        {"image_blob_ids": {"b": {}, "a": {}}, "snapshot_ids": {}, "storage_configs": None, "config": {}},
    )
    assert list(out["image_blob_ids"]) == ["a", "b"] and out["image_blob_ids"]["a"] == {}
    assert "snapshot_ids" not in out and "storage_configs" not in out  # omitempty
    sidecar = schema.encode(schema.FC_SNAPSHOT_META.type, {})
    assert sidecar == {"storage_configs": None}  # a nil slice without omitempty is null
    assert out["config"] == {"name": ""} and out["pid"] == 0 and out["first_booted"] is False
    assert out["created_at"] == gojson.ZERO_TIME


def test_decode_follows_json_unmarshal() -> None:
    data = (
        b'{"snapshots":{"A":{"id":"A","Pending":true,"unknown":1,"NAME":"x","created_at":"2026-03-02T10:15:04.10Z"},'
        b'"B":null},"names":{"x":"A"},"extra":[]}'
    )
    idx = schema.decode(schema.SNAPSHOT_INDEX, data, "snapshots.json")
    rec = idx["snapshots"]["A"]
    assert rec["pending"] is True and rec["name"] == "x"  # keys matched case-insensitively
    assert "unknown" not in rec and "extra" not in idx  # unknown keys dropped
    assert rec["created_at"] == "2026-03-02T10:15:04.1Z"
    assert idx["snapshots"]["B"] is None  # a null record stays null
    assert schema.decode(schema.SNAPSHOT_INDEX, b"null", "x") == {"snapshots": None, "names": None}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            b'{"snapshots":{"A":{"hypervisor":5}}}',
            "into Go struct field SnapshotRecord.hypervisor of type string",
        ),
        (b'{"snapshots":{"A":{"cpu":1.5}}}', "number 1.5"),
        (b'{"snapshots":{"A":{"memory":9223372036854775808}}}', "int64"),
        (b'{"snapshots":{"A":{"pending":"yes"}}}', "of type bool"),
        (b'{"snapshots":{"A":{"image_blob_ids":{"h":1}}}}', "struct {}"),
        (b'{"snapshots":{"A":{"created_at":"yesterday"}}}', "RFC 3339"),
        (b'{"snapshots":[]}', "array into Go struct field"),
        (b'{"snapshots":{"A":{"cpu":NaN}}}', "invalid"),
        (b'{"snapshots":', "invalid JSON"),
        (b"\xef\xbb\xbf{}", "invalid JSON"),
    ],
)
def test_decode_fails_where_go_fails(body: bytes, why: str) -> None:
    with pytest.raises(GoDecodeError, match=re.escape(why)):
        schema.decode(schema.SNAPSHOT_INDEX, body, "snapshots.json")


def test_decode_replaces_lone_surrogates_as_go_does() -> None:
    idx = schema.decode(schema.SNAPSHOT_INDEX, b'{"names":{"a":"x\\ud800y"}}', "x")
    assert idx["names"]["a"] == "x\ufffdy"


def test_decoded_record_writes_back_as_cocoon_would() -> None:
    """Read -> write through the schema normalizes as Go does: folded keys
    get their tag's spelling, unknown keys go, the order is the struct's."""
    raw = (
        b'{"snapshots":{"A":{"Name":"a","zzz":1,"id":"A","cpu":2,'
        b'"created_at":"2026-03-02T10:15:04Z"}},"names":{}}'
    )
    idx = schema.decode(schema.SNAPSHOT_INDEX, raw, "x")
    out = gojson.marshal(schema.encode(schema.SNAPSHOT_INDEX.type, idx))
    assert out == (
        b'{"snapshots":{"A":{"cpu":2,"id":"A","name":"a","created_at":"2026-03-02T10:15:04Z"}},"names":{}}'
    )


# ----------------------------------------------------------- temp names
@pytest.mark.parametrize(
    ("pattern", "regex"),
    [
        (".tmp-*", r"\.tmp-\d{1,10}"),
        ("pull-*.img", r"pull-\d{1,10}\.img"),
        ("import-*.img", r"import-\d{1,10}\.img"),
        ("pull-*", r"pull-\d{1,10}"),
        ("snapshot-", r"snapshot-\d{1,10}"),  # no *: the number goes at the end
    ],
)
def test_temp_names_are_gos(pattern: str, regex: str) -> None:
    names = {fsops.temp_name(pattern) for _ in range(200)}
    assert all(re.fullmatch(regex, n) for n in names), names
    numbers = [int(re.sub(r"\D", "", n)) for n in names]
    assert all(0 <= n < 2**32 for n in numbers)  # a uint32, not zero-padded
    assert len(names) > 190


def test_create_and_mkdir_temp_modes(tmp_path: Path) -> None:
    fd, path = fsops.create_temp(str(tmp_path), ".tmp-*")
    os.close(fd)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    d = fsops.mkdir_temp(str(tmp_path), "pull-*")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


# ---------------------------------------------------------------- locks
HOLD = """
import sys, time
from cocoond.sim import flock
with flock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(30)
"""


def test_flock_is_gofrs_flock(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with fsops.flock(str(lock)) as held:
        assert held
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert lock.exists()  # never removed
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with fsops.flock(str(lock), blocking=False) as got:
            assert got is False  # TryLock: busy
    finally:
        proc.kill()
        proc.wait()
    with fsops.flock(str(lock), blocking=False) as got:
        assert got is True


def test_atomic_write_json_is_utils_atomic_write_json(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    fsops.atomic_write_json(str(path), {"b": 1, "a": "<"})
    assert path.read_bytes() == b'{"b":1,"a":"\\u003c"}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["db.json"]
    tmp = fsops.atomic_write_file(str(path), b"new", 0o644, crash=True)
    assert re.fullmatch(r"\.tmp-\d+", os.path.basename(tmp))
    assert path.read_bytes() == b'{"b":1,"a":"\\u003c"}\n'  # the crash left the old file and the temp one
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o600


def test_store_reads_a_missing_db_as_empty_and_refuses_what_go_refuses(tmp_path: Path) -> None:
    store = fsops.Store(str(tmp_path / "s.json"), str(tmp_path / "s.lock"), schema.SNAPSHOT_INDEX)
    assert store.read_raw() == {"snapshots": {}, "names": {}}
    with store.update() as idx:
        idx["names"]["a"] = "A"
    assert (tmp_path / "s.json").read_bytes() == b'{"snapshots":{},"names":{"a":"A"}}\n'
    with pytest.raises(RuntimeError), store.update() as idx:
        idx["names"]["b"] = "B"
        raise RuntimeError("fn failed")
    assert json.loads((tmp_path / "s.json").read_bytes())["names"] == {"a": "A"}  # nothing written
    (tmp_path / "s.json").write_text('{"snapshots":{"A":{"nics":"1"}}}')
    with pytest.raises(GoDecodeError, match=r"s\.json"):
        store.read_raw()
