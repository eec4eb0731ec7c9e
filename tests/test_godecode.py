"""goschema + godecode: json.Unmarshal's rules (Go 1.25 encoding/json
decode.go) over cocoon's Go types, one rule per test, with Go's error texts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoond.storage import goschema as g
from cocoond.storage.godecode import ZERO, Decoder, GoDecodeError, describe
from cocoond.storage.gojson import loads_exact
from cocoond.storage.jsonwalk import MAX_DEPTH


def unmarshal(text: str, t: g.GoType = g.SNAPSHOT_INDEX) -> Any:
    return Decoder().unmarshal(loads_exact(text, "db.json"), t)


def error(text: str, t: g.GoType = g.SNAPSHOT_INDEX) -> GoDecodeError:
    with pytest.raises(GoDecodeError) as info:
        unmarshal(text, t)
    return info.value


def record(fields: str) -> Any:
    return unmarshal('{"snapshots":{"A":{' + fields + "}}}")["snapshots"]["A"]


# ------------------------------------------------------------------ schema
def test_snapshot_record_fields_are_promoted_from_the_embedded_structs() -> None:
    fields = {f.name: f for f in g.fields_of(g.SNAPSHOT_RECORD).fields}
    assert set(fields) == {
        *("cpu", "memory", "storage", "queue_size", "disk_queue_size", "image", "image_digest"),
        *("image_type", "network", "no_direct_io", "windows"),
        *("id", "name", "description", "image_blob_ids", "hypervisor", "nics"),
        *("created_at", "pending", "data_dir"),
    }
    # Go orders fields by index sequence and names the embedded structs on the way.
    assert [f.name for f in g.fields_of(g.SNAPSHOT_RECORD).fields][:2] == ["cpu", "memory"]
    assert fields["cpu"].via == ("Snapshot", "SnapshotConfig", "Config")
    assert fields["hypervisor"].via == ("Snapshot", "SnapshotConfig")
    assert fields["created_at"].via == ("Snapshot",)
    assert fields["pending"].via == ()


def test_vm_record_keeps_config_as_a_named_field_and_drops_dash_fields() -> None:
    vm = g.fields_of(g.VM_RECORD)
    assert {"id", "hypervisor", "state", "config", "first_booted", "boot_config", "image_blob_ids"} <= set(
        vm.exact
    )
    assert "cpu" not in vm.exact  # VM.Config is a named field, not embedded
    config = g.fields_of(g.VM_CONFIG)
    assert set(config.exact) == {*(f.name for f in g.fields_of(g.CONFIG).fields), "name"}
    assert not {"OnDemand", "User", "Password", "DataDisks", "-"} & set(config.exact)


def test_image_indexes_promote_images_from_the_generic_base() -> None:
    for index in (g.CLOUDIMG_INDEX, g.OCI_INDEX):
        (images,) = g.fields_of(index).fields
        assert (images.name, images.via) == ("images", ("Index",))


def test_dominance_shallower_wins_equal_depth_annihilates() -> None:
    inner = g.struct("p.Inner", "-", g.f("A", "a", g.STRING), g.f("B", "b", g.STRING))
    other = g.struct("p.Other", "-", g.f("B", "b", g.INT))
    outer = g.struct(
        "p.Outer",
        "-",
        g.embed("Inner", inner),
        g.embed("Other", other),
        g.f("A", "a", g.BOOL),
        g.f("C", "", g.INT),
    )
    fields = {f.name: f for f in g.fields_of(outer).fields}
    assert fields["a"].type is g.BOOL  # depth 0 beats the promoted one
    assert "b" not in fields  # two at depth 1, both tagged: Go drops the name
    assert fields["C"].tagged is False  # untagged: the Go name


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("pending", "pending"),
        ("Pending", "pending"),
        ("PENDING", "pending"),
        ("Data_Dir", "data_dir"),
        ("\u017ftorage", "storage"),  # LATIN SMALL LETTER LONG S folds to s
        ("\u212aind", None),  # KELVIN SIGN folds to k: no field "kind"
        ("image_blob_\u212a", None),
        ("created-at", None),
        ("createdat", None),
        ("pénding", None),
        ("", None),
    ],
)
def test_keys_match_exactly_else_case_insensitively(key: str, field: str | None) -> None:
    found = g.fields_of(g.SNAPSHOT_RECORD).lookup(key)
    assert (found.name if found else None) == field


def test_kelvin_sign_matches_k() -> None:
    st_ = g.fields_of(g.struct("p.K", "-", g.f("K", "kind", g.STRING)))
    assert st_.lookup("\u212aIND") is st_.exact["kind"]
    assert g.fold_name("\u212a\u017f") == g.fold_name("ks") == "KS"


# ------------------------------------------------------------------- types
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            '"hypervisor":5',
            "json: cannot unmarshal number into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.hypervisor of type string",
        ),
        (
            '"cpu":"2"',
            "json: cannot unmarshal string into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.Config.cpu of type int",
        ),
        (
            '"memory":1.0',
            "json: cannot unmarshal number 1.0 into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.Config.memory of type int64",
        ),
        (
            '"storage":1e3',
            "json: cannot unmarshal number 1e3 into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.Config.storage of type int64",
        ),
        (
            '"queue_size":9223372036854775808',
            "json: cannot unmarshal number 9223372036854775808 into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.Config.queue_size of type int",
        ),
        (
            '"disk_queue_size":-9223372036854775809',
            "json: cannot unmarshal number -9223372036854775809 into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.Config.disk_queue_size of type int",
        ),
        (
            '"pending":1',
            "json: cannot unmarshal number into Go struct field "
            "SnapshotRecord.snapshots.pending of type bool",
        ),
        (
            '"windows":"true"',
            "json: cannot unmarshal string into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.Config.windows of type bool",
        ),
        (
            '"image_blob_ids":["a"]',
            "json: cannot unmarshal array into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.image_blob_ids of type map[string]struct {}",
        ),
        (
            '"image_blob_ids":{"a":5}',
            "json: cannot unmarshal number into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.image_blob_ids of type struct {}",
        ),
        (
            '"data_dir":{}',
            "json: cannot unmarshal object into Go struct field "
            "SnapshotRecord.snapshots.data_dir of type string",
        ),
        (
            '"Network":true',
            "json: cannot unmarshal bool into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.Config.network of type string",
        ),
    ],
)
def test_type_errors_are_worded_as_go_words_them(fields: str, message: str) -> None:
    err = error('{"snapshots":{"A":{' + fields + "}}}")
    assert err.message == message
    assert not err.hard
    assert err.where.startswith('snapshots["A"].')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "json: cannot unmarshal array into Go value of type snapshot.SnapshotIndex"),
        ('"x"', "json: cannot unmarshal string into Go value of type snapshot.SnapshotIndex"),
        ("5", "json: cannot unmarshal number into Go value of type snapshot.SnapshotIndex"),
        (
            '{"snapshots":[]}',
            "json: cannot unmarshal array into Go struct field SnapshotIndex.snapshots "
            "of type map[string]*snapshot.SnapshotRecord",
        ),
        (
            '{"snapshots":{"A":true}}',
            "json: cannot unmarshal bool into Go struct field SnapshotIndex.snapshots "
            "of type snapshot.SnapshotRecord",
        ),
        (
            '{"names":{"a":1}}',
            "json: cannot unmarshal number into Go struct field SnapshotIndex.names of type string",
        ),
    ],
)
def test_errors_outside_a_record(text: str, message: str) -> None:
    assert error(text).message == message


def test_int64_range_is_exact() -> None:
    rec = record(f'"memory":{2**63 - 1},"storage":{-(2**63)},"cpu":-0')
    assert (rec["memory"], rec["storage"], rec["cpu"]) == (2**63 - 1, -(2**63), 0)


def test_time_errors_are_go_s_own_and_stop_the_decode() -> None:
    err = error('{"snapshots":{"A":{"cpu":"x","created_at":"yesterday"}}}')
    # The earlier type error was saved, but time.Time's error ends the decode
    # and is what Unmarshal returns (decode.go: Unmarshaler errors return at once).
    assert err.hard
    assert err.message == (
        'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'
    )
    assert err.where == 'snapshots["A"].created_at'
    assert error('{"snapshots":{"A":{"created_at":5}}}').message == (
        "Time.UnmarshalJSON: input is not a JSON string"
    )
    assert error('{"snapshots":{"A":{"created_at":{}}}}').hard


def test_time_token_is_read_raw_so_an_escape_fails() -> None:
    err = error('{"snapshots":{"A":{"created_at":"2026-01-01T00:00:00\\u005a"}}}')
    assert err.message.endswith('cannot parse "\\\\u005a" as "Z07:00"')


def test_first_saved_error_wins() -> None:
    err = error('{"snapshots":{"A":{"cpu":"x","name":5},"B":{"pending":1}}}')
    assert err.message.endswith("Config.cpu of type int")


def test_vm_and_image_errors_name_the_innermost_struct() -> None:
    assert error('{"vms":{"v":{"network_configs":[{"tap":5}]}}}', g.VM_INDEX).message == (
        "json: cannot unmarshal number into Go struct field "
        "NetworkConfig.vms.VM.network_configs.tap of type string"
    )
    assert error('{"vms":{"v":{"network_configs":[{"tap":5}]}}}', g.VM_INDEX).where == (
        'vms["v"].network_configs[0].tap'
    )
    assert error('{"vms":{"v":{"config":{"cpu":"x"}}}}', g.VM_INDEX).message == (
        "json: cannot unmarshal string into Go struct field VMConfig.vms.VM.config.Config.cpu of type int"
    )
    assert error('{"vms":{"v":{"state":1}}}', g.VM_INDEX).message.endswith("of type types.VMState")
    assert error('{"vms":{"v":{"boot_config":[]}}}', g.VM_INDEX).message.endswith("of type types.BootConfig")
    assert error('{"images":{"r":{"content_sum":5}}}', g.CLOUDIMG_INDEX).message == (
        "json: cannot unmarshal number into Go struct field imageEntry.Index.images.content_sum "
        "of type images.Digest"
    )
    assert error('{"images":{"r":{"layers":{}}}}', g.OCI_INDEX).message.endswith("of type []oci.layerEntry")
    assert error('{"vms":{"v":{"started_at":true}}}', g.VM_INDEX).hard


# ------------------------------------------------------------- semantics
def test_unknown_keys_are_skipped_unread() -> None:
    assert record('"future":{"cpu":"x"},"Kind":[[[]]],"cpu":2') == {"cpu": 2}


def test_dash_fields_are_never_set() -> None:
    vm = unmarshal('{"vms":{"v":{"config":{"User":"root","-":1,"name":"n"}}}}', g.VM_INDEX)
    assert vm["vms"]["v"]["config"] == {"name": "n"}


def test_null_keeps_a_value_but_empties_pointers_maps_and_slices() -> None:
    rec = record('"name":"a","name":null,"image_blob_ids":{"h":{}},"image_blob_ids":null')
    assert rec["name"] == "a"
    assert rec["image_blob_ids"] is None
    top = unmarshal('{"snapshots":{"A":null},"names":{"n":null}}')
    assert top["snapshots"] == {"A": None}  # a nil record stays in the map
    assert top["names"] == {"n": ""}


def test_later_duplicates_win_and_maps_and_structs_merge() -> None:
    rec = record(
        '"pending":true,"Pending":false,"image_blob_ids":{"a":{}},"IMAGE_BLOB_IDS":{"b":null},"cpu":1,"CPU":2'
    )
    assert rec["pending"] is False
    assert rec["image_blob_ids"] == {"a": {}, "b": {}}
    assert rec["cpu"] == 2
    vm = unmarshal(
        '{"vms":{"v":{"boot_config":{"cmdline":"c"},"boot_config":{"kernel_path":"k"}}}}', g.VM_INDEX
    )
    assert vm["vms"]["v"]["boot_config"] == {"cmdline": "c", "kernel_path": "k"}
    # A slice decodes into the elements an earlier occurrence left.
    oci = unmarshal('{"images":{"r":{"layers":[{"digest":"sha256:a"}],"layers":[{}]}}}', g.OCI_INDEX)
    assert oci["images"]["r"]["layers"] == [{"digest": "sha256:a"}]


def test_an_error_in_a_shadowed_duplicate_still_counts() -> None:
    assert error('{"snapshots":{"A":{"cpu":"x","cpu":2}}}').message.endswith("cpu of type int")


def test_top_level_null_is_an_empty_db() -> None:
    assert unmarshal("null") is ZERO


def test_time_value_and_text() -> None:
    dt, text = record('"created_at":"2026-03-04T05:06:07.123456789Z"')["created_at"]
    assert dt == datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    assert text == "2026-03-04T05:06:07.123456789Z"


def test_describe_uses_go_s_words() -> None:
    values: list[Any] = [True, 1, 1.5, "s", [], {}, loads_exact("{}", "p")]
    assert [describe(v) for v in values] == [
        *("bool", "number", "number", "string", "array", "object", "object")
    ]


def test_deep_unknown_value_is_skipped_without_recursion() -> None:
    deep = "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)
    assert record('"x":' + deep + ',"cpu":1') == {"cpu": 1}


# ------------------------------------------------------------- properties
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
    max_leaves=6,
)
FIELD_NAMES = [f.name for f in g.fields_of(g.SNAPSHOT_RECORD).fields]


_INT64 = range(-(1 << 63), 1 << 63)
#: Keys: the fields, spelt as they are or in another ASCII case (Go matches
#: those case-insensitively), and unknown ASCII names (Unicode folding has
#: its own test above).
KEYS = (
    st.sampled_from(FIELD_NAMES)
    | st.sampled_from(FIELD_NAMES).map(str.upper)
    | st.text("abcdefghijklmnopqrstuvwxyz_ABCXYZ", max_size=5)
)


def expected_record(rec: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Independently of godecode, what json.Unmarshal makes of one record
    whose values are plain JSON (decode.go's rules for the kinds a
    SnapshotRecord holds): the fields it sets, and the keys whose value
    does not fit their field's type (an error naming one of them)."""
    by_lower = {name.lower(): name for name in FIELD_NAMES}
    out: dict[str, Any] = {}
    bad: set[str] = set()
    for key, value in rec.items():  # in document order: a later duplicate wins
        name = key if key in FIELD_NAMES else by_lower.get(key.lower())
        if name is None:
            continue  # unknown keys are skipped
        kind = g.fields_of(g.SNAPSHOT_RECORD).exact[name].type.kind
        if value is None:  # null: leaves a value alone, empties a map
            if kind is g.Kind.MAP:
                out[name] = None
            continue
        if (
            (kind is g.Kind.STRING and isinstance(value, str))
            or (kind is g.Kind.BOOL and isinstance(value, bool))
            or (kind is g.Kind.INT and type(value) is int and value in _INT64)
        ):
            out[name] = value
        elif (
            kind is g.Kind.MAP
            and isinstance(value, dict)
            and all(v is None or isinstance(v, dict) for v in value.values())
        ):
            # map[string]struct{}: every element is {} (struct{} has no field
            # to set); a later map merges into an earlier one.
            out[name] = {**(out.get(name) or {}), **{k: {} for k in value}}
        else:  # a wrong type, a fraction or exponent for an int, an overflow, a bad time
            bad.add(key)  # an error names the key as the document spells it
    return out, bad


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSON, max_size=6))
def test_any_record_decodes_to_the_values_go_gives_or_fails_on_a_field_that_does_not_fit(
    rec: dict[str, Any],
) -> None:
    """The decoded record is exactly what Go's rules give (modelled above,
    value by value), or, when a value does not fit its field, an error
    naming such a field; unknown keys never matter."""
    want, bad = expected_record(rec)
    try:
        out = record(json.dumps(rec)[1:-1])
    except GoDecodeError as exc:
        assert exc.where.startswith('snapshots["A"].')
        key = exc.where.removeprefix('snapshots["A"].').split("[")[0]
        assert key in bad, (exc, bad)
        return
    assert not bad, f"decoded although {sorted(bad)} do not fit: {out}"
    assert out == want


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(FIELD_NAMES),
        st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1) | st.text(max_size=6),
        max_size=8,
    ),
    st.datetimes(timezones=st.just(UTC)),
)
def test_well_typed_records_round_trip_value_for_value(rec: dict[str, Any], when: datetime) -> None:
    """Values of the right type come back equal, created_at as Go's time."""
    typed = {
        name: value
        for name, value in rec.items()
        if value is None or expected_record({name: value})[1] == set()
    }
    text = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    out = record(json.dumps({**typed, "created_at": text})[1:-1])
    created, raw = out.pop("created_at")
    assert (created, raw) == (when, text)
    assert out == expected_record(typed)[0]
