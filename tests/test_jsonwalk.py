"""The streaming decoder must accept exactly what json.loads accepts and read
it the same way: it replaced json.loads for snapshots.json to halve the
memory peak of a load, not to change what counts as a valid DB."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoond.errors import DBError
from cocoond.storage.jsonwalk import JSONWalkError, scan_value, walk_object
from cocoond.storage.records import decode_records

RECORD = {"id": "A", "name": "a", "created_at": "2026-01-01T00:00:00Z"}


def raw(key: str, _fields: object, obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def reference(text: str) -> tuple[dict[str, Any], set[str], dict[str, str], dict[str, Any]]:
    """What the whole-document decode makes of a valid DB text."""
    top = json.loads(text)
    snaps = top.get("snapshots") or {}
    return (
        {k: v for k, v in snaps.items() if v is not None},
        {k for k, v in snaps.items() if v is None},
        top.get("names") or {},
        {k: v for k, v in top.items() if k not in ("snapshots", "names")},
    )


def walked(text: str) -> tuple[dict[str, Any], set[str], dict[str, str], dict[str, Any]]:
    d = decode_records(text.encode(), "db.json", raw)
    return d.records, d.null_ids, d.names, d.extra


@pytest.mark.parametrize(
    "text",
    [
        '{"snapshots":{"A":' + json.dumps(RECORD) + '},"names":{"a":"A"}}',
        json.dumps({"snapshots": {"A": RECORD}, "names": {"a": "A"}}, indent=2),
        ' \n\t{ "names" : { } , "snapshots" : { "A" : null } , "x" : [1, {"y": null}] }\r\n',
        '{"snapshots":{"A":null,"A":' + json.dumps(RECORD) + "}}",  # duplicate key: the last wins
        '{"snapshots":{"A":' + json.dumps(RECORD) + ',"A":null}}',
        '{"snapshots":null,"names":null}',
        "{}",
        '{"snapshots":{"\\u0041":' + json.dumps(RECORD) + "}}",  # escaped key
    ],
)
def test_reads_valid_documents_as_json_loads_does(text: str) -> None:
    assert walked(text) == reference(text)


def test_a_repeated_map_adds_to_the_first_as_go_does() -> None:
    """Go decodes a second "snapshots" (or "names") into the map the first
    one made: entries are added, not replaced wholesale (decode.go object
    reuses a non-nil map); null empties it."""
    rec = json.dumps(RECORD)
    text = '{"snapshots":{"A":' + rec + '},"names":{"a":"A"},"snapshots":{"B":' + rec + '},"names":{"b":"B"}}'
    records, null_ids, names, _ = walked(text)
    assert set(records) == {"A", "B"}
    assert names == {"a": "A", "b": "B"}
    text = '{"snapshots":{"A":' + rec + ',"C":null},"snapshots":null,"snapshots":{"B":' + rec + "}}"
    records, null_ids, _, _ = walked(text)
    assert set(records) == {"B"}
    assert null_ids == set()


@pytest.mark.parametrize(
    "text",
    [
        '{"snapshots":{"A":' + json.dumps(RECORD) + ",}}",  # trailing comma
        '{"snapshots":{,}}',
        '{"snapshots":{"A" ' + json.dumps(RECORD) + "}}",  # no colon
        '{"snapshots":{"A":}}',
        '{"snapshots":{A:1}}',
        '{"snapshots":{}} extra',
        '{"snapshots":{}',
        '{"snapshots":{"A":{"id":"A"}',
        '{"snapshots":{"A\x01":null}}',  # control character in a key (strict)
        '{"names":{"a":"A"},}',
        "",
        "   ",
    ],
)
def test_rejects_what_json_loads_rejects(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(DBError, match=r"db\.json"):
        walked(text)


def test_walk_object_reports_where_it_stopped() -> None:
    text = '{"a":1 "b":2}'
    with pytest.raises(JSONWalkError, match=r"expected ',' or '}' at char 7"):
        walk_object(text, 0, lambda _key, idx: scan_value(text, idx)[1])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
records = st.one_of(
    st.none(),
    st.fixed_dictionaries({"id": st.text(max_size=4), "name": st.text(max_size=4)}).map(
        lambda r: {**r, "created_at": "2026-01-01T00:00:00.5+08:00"}
    ),
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "snapshots": st.none() | st.dictionaries(st.text(max_size=4), records, max_size=5),
        "names": st.none() | st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=5),
        "other": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(documents, st.sampled_from([None, 0, 2]), st.integers(min_value=0, max_value=400))
def test_any_document_and_any_damage(doc: dict[str, Any], indent: int | None, cut: int) -> None:
    """Valid documents in any layout read the same; the same documents cut
    short at any point fail in both decoders or in neither."""
    text = json.dumps(doc, indent=indent, ensure_ascii=False)
    assert walked(text) == reference(text)
    damaged = text[: cut % (len(text) + 1)]
    try:
        expected: Any = reference(damaged)
    except (json.JSONDecodeError, AttributeError):  # AttributeError: a damaged top that is not an object
        expected = None
    if expected is None:
        with pytest.raises(DBError):
            walked(damaged)
    else:
        assert walked(damaged) == expected
