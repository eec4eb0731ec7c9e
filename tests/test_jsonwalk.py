"""The streaming decoder must accept exactly what json.loads accepts and read
it the same way: it replaced json.loads for snapshots.json to halve the
memory peak of a load, not to change what counts as a valid DB."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoond.errors import DBError
from cocoond.storage.jsonwalk import (
    MAX_DEPTH,
    EscStr,
    JObject,
    JSONWalkError,
    RawNumber,
    int_text,
    scan_exact,
    scan_value,
    skip_ws,
    walk_object,
)
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


# ------------------------------------------------------------- scan_exact
@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([None, 0, 2]))
def test_scan_exact_reads_what_json_loads_reads(value: Any, indent: int | None) -> None:
    text = json.dumps(value, indent=indent)
    assert scan_exact(text, 0, pairs=False) == (json.loads(text), len(text))


REFUSED = object()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=' \t\n[]{}",:0123456789.eE+-truefalsnNaIiy\\u', max_size=30))
def test_scan_exact_refuses_what_json_loads_refuses(text: str) -> None:
    try:
        # NaN and Infinity: json takes them, Go's grammar does not.
        expected: Any = json.loads(text, parse_constant=lambda name: json.loads("x"))
    except ValueError:
        expected = REFUSED
    try:
        value, end = scan_exact(text, skip_ws(text, 0), pairs=False)
        got: Any = value if skip_ws(text, end) == len(text) else REFUSED
    except JSONWalkError:
        got = REFUSED
    assert got == expected


def test_pairs_keep_duplicates_escapes_and_number_texts() -> None:
    value, _ = scan_exact('{"a":1,"a":"x\\u0041","b":1.50,"c":-0,"d":1E+2}', 0)
    assert isinstance(value, JObject)
    assert value == [("a", 1), ("a", "xA"), ("b", 1.5), ("c", 0), ("d", 100.0)]
    assert isinstance(value[1][1], EscStr) and value[1][1].raw == '"x\\u0041"'
    assert isinstance(value[2][1], RawNumber) and value[2][1].raw == "1.50"
    assert value[4][1].raw == "1E+2"
    assert type(value[0][1]) is int and type(value[3][1]) is int
    empty, _ = scan_exact("{}", 0)
    assert isinstance(empty, JObject) and empty == []


@pytest.mark.parametrize(
    "text", ["NaN", "[Infinity]", '{"a":-Infinity}', "[1,]", "[01]", "[1.]", "[.5]", "nul"]
)
def test_go_grammar_refuses_what_json_takes_or_neither_takes(text: str) -> None:
    with pytest.raises(JSONWalkError):
        scan_exact(text, 0)
    with pytest.raises(JSONWalkError):
        scan_value(text, 0)


def test_integers_longer_than_python_converts_are_read() -> None:
    digits = "9" * 5000
    value, end = scan_value(f"[{digits}, -{digits}]", 0)
    assert end == 2 * 5000 + 5
    assert value[0] == -value[1] and int_text(value[0]) == digits


def depth(n: int, inner: str = "") -> str:
    return "[" * n + inner + "]" * n


@pytest.mark.parametrize("base", [0, 1, 2])
def test_depth_limit_is_go_s_exactly(base: int) -> None:
    """encoding/json accepts 10,000 nested arrays/objects and refuses one
    more (scanner.go maxNestingDepth), counted from the document's top."""
    ok = depth(MAX_DEPTH - base)
    value, end = scan_value(ok, 0, base)
    assert end == len(ok)
    for _ in range(MAX_DEPTH - base - 1):
        (value,) = value
    assert value == []
    with pytest.raises(JSONWalkError, match=r"exceeded max depth 10000 at char"):
        scan_value(depth(MAX_DEPTH - base + 1), 0, base)
    with pytest.raises(JSONWalkError, match=r"exceeded max depth"):
        scan_exact('{"a":' * (MAX_DEPTH + 1 - base) + "1" + "}" * (MAX_DEPTH + 1 - base), 0, base)


def test_deep_nesting_reads_in_a_thread_with_a_small_stack() -> None:
    """No recursion beyond the C scanner's own (bounded by the recursion
    limit): a deep document reads in a thread with a 512 KiB stack too."""
    results: list[Any] = []

    def read() -> None:
        try:
            results.append(scan_value(depth(MAX_DEPTH - 2, '{"k":[1]}'), 0)[1])
            scan_value(depth(MAX_DEPTH + 1), 0)
        except JSONWalkError as exc:
            results.append(str(exc))
        except BaseException as exc:  # a RecursionError would land here
            results.append(exc)

    old = threading.stack_size(512 * 1024)
    try:
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old)
    assert results[0] == 2 * (MAX_DEPTH - 2) + 9
    assert isinstance(results[1], str) and "exceeded max depth" in results[1]
