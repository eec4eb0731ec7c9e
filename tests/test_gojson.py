"""gojson: bytes as Go's decoder reads them, whole documents without
RecursionError, and output Go writes (deep and long-integer values too)."""

from __future__ import annotations

import json
from json.encoder import encode_basestring

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoond.errors import DBError
from cocoond.storage.gojson import _dumps_iterative, dumps_go, loads_exact, loads_go, text_go
from cocoond.storage.jsonwalk import MAX_DEPTH, JObject, parse_int


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"ok", "ok"),
        (b"\xff", "\ufffd"),
        (b"a\xe2\x82b", "a\ufffd\ufffdb"),  # truncated 3-byte sequence: one per byte, as Go
        (b"\xed\xa0\x80", "\ufffd" * 3),  # an encoded surrogate
        (b"\xc0\x80", "\ufffd" * 2),  # overlong
        (b"\xf0\x9f\x98", "\ufffd" * 3),  # cut at the end
        ("é😀".encode(), "é😀"),
    ],
)
def test_invalid_utf8_is_one_replacement_character_per_byte(data: bytes, text: str) -> None:
    assert text_go(data) == text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_text_go_never_fails_and_keeps_valid_utf8(data: bytes) -> None:
    text = text_go(data)
    try:
        assert text == data.decode("utf-8")
    except UnicodeDecodeError:
        assert "\ufffd" in text


def nested(n: int) -> str:
    return '{"a":' * (n - 1) + "[]" + "}" * (n - 1)


def test_loads_go_reads_to_go_s_depth_and_no_further() -> None:
    value = loads_go(nested(MAX_DEPTH).encode(), "db.json")
    for _ in range(MAX_DEPTH - 1):
        value = value["a"]
    assert value == []
    with pytest.raises(
        DBError, match=r"^db\.json: not valid JSON \(invalid character '\[' exceeded max depth"
    ):
        loads_go(nested(MAX_DEPTH + 1), "db.json")
    with pytest.raises(DBError, match="exceeded max depth"):
        loads_exact("[" * 200_000, "db.json")


@pytest.mark.parametrize("text", ["NaN", '{"a":Infinity}', "[-Infinity]", "", "{", "[1] 2", "\ufeff{}"])
def test_loads_refuse_what_go_refuses(text: str) -> None:
    for loads in (loads_go, loads_exact):
        with pytest.raises(DBError, match=r"^db\.json: not valid JSON"):
            loads(text, "db.json")


def test_loads_exact_keeps_what_go_looks_at() -> None:
    doc = loads_exact(b'{"a":1,"A":2,"a":3}', "db.json")
    assert isinstance(doc, JObject) and doc == [("a", 1), ("A", 2), ("a", 3)]
    assert loads_go(b'{"a":1,"A":2,"a":3}', "db.json") == {"a": 3, "A": 2}


def test_dumps_go_writes_deep_and_long_values() -> None:
    value = loads_go(nested(MAX_DEPTH), "p")
    assert dumps_go(value) == nested(MAX_DEPTH).encode() + b"\n"
    big = parse_int("7" * 5000)
    assert dumps_go({"n": [big, -big], "s": "<&>"}) == (
        b'{"n":[' + b"7" * 5000 + b",-" + b"7" * 5000 + b'],"s":"\\u003c\\u0026\\u003e"}\n'
    )
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        dumps_go(loop)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_the_iterative_writer_writes_what_json_writes(value: object) -> None:
    assert _dumps_iterative(value, encode_basestring) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=False
    )
