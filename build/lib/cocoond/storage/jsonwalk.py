"""Walking JSON text the way Go's encoding/json reads it.

json.loads of a 100k-record snapshots.json builds the whole tree first:
about 250 MB for a 45 MB file, which the daemon would then hold as its peak
(and, through fragmentation, much of it for good). Walking the top-level
objects member by member with the json module's own C scanner costs the
same time, and each record's dict is gone before the next is read.

The C scanner differs from Go's decoder in ways a DB can show, so it is
only the fast path; `scan_exact`, an iterative parser, is the judge:
- depth: the C scanner recurses and raises RecursionError at about 1,000
  levels (Python's recursion limit, and a fixed C limit on 3.12+); Go reads
  up to 10,000 (encoding/json scanner.go maxNestingDepth) and fails beyond;
- NaN, Infinity, -Infinity: json accepts them, Go's grammar does not;
- integers longer than Python's int-to-str limit (4300 digits): json fails,
  Go reads them (an untyped key's value is only syntax-checked);
- duplicate keys and escapes: a dict keeps only the last value of a key,
  and nothing says a string had escapes, which Go's time.Time cares about
  (it parses the raw token). `scan_exact(..., pairs=True)` keeps both."""

from __future__ import annotations

import json
import re
from _json import scanstring  # the C string scanner json.loads uses (CPython)
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any

#: encoding/json's limit on nested arrays and objects (scanner.go).
MAX_DEPTH = 10_000

_WS = " \t\n\r"
_WS_CHARS = frozenset(_WS)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
#: Digits Python converts between int and str without a limit error.
_INT_DIGITS = 4000


class JSONWalkError(ValueError):
    """Not valid JSON; the message says where, as json's own errors do."""


def _reject_constant(name: str) -> Any:
    # The C scanner has no position here; scan_value retries exactly.
    raise ValueError(name)


# The scanner json.loads runs, with the default decoder's settings (strict
# strings, Python floats and ints) but Go's grammar for NaN and Infinity:
# typeshed types its context loosely.
_scan_once = make_scanner(json.JSONDecoder(parse_constant=_reject_constant))  # type: ignore[arg-type]


class JObject(list[tuple[str, Any]]):
    """A JSON object as its members in document order, duplicates kept:
    what Go's decoder walks (each occurrence of a key is decoded in turn)."""

    __slots__ = ()


class EscStr(str):
    """A JSON string whose token had escapes; `raw` is the token, quotes
    included, as time.Time.UnmarshalJSON would see it."""

    raw: str


class RawNumber(float):
    """A JSON number that is not an integer Python holds exactly as written
    (a fraction, an exponent): `raw` is its text, which Go's errors quote."""

    raw: str


def skip_ws(text: str, idx: int) -> int:
    n = len(text)
    while idx < n and text[idx] in _WS:
        idx += 1
    return idx


def scan_value(text: str, idx: int, depth: int = 0) -> tuple[Any, int]:
    """The JSON value starting at text[idx], and the index after it; `depth`
    is how many arrays and objects enclose it (for Go's depth limit).
    Objects are dicts (the last duplicate wins), as json.loads makes them."""
    try:
        value, end = _scan_once(text, idx)
    except StopIteration:
        raise JSONWalkError(f"Expecting value at char {idx}") from None
    except json.JSONDecodeError as exc:
        raise JSONWalkError(f"{exc.msg} at char {exc.pos}") from None
    except (RecursionError, ValueError):
        # Deeper than the C scanner goes, NaN, or a very long integer.
        return scan_exact(text, idx, depth, pairs=False)
    return value, end


def walk_object(text: str, idx: int, on_member: Callable[[str, int], int]) -> int:
    """Walk the object at text[idx] ('{'): for each member, call
    `on_member(key, index of its value)`, which must consume the value and
    return the index after it. Returns the index after the object."""
    if not text.startswith("{", idx):
        raise JSONWalkError(f"expected an object at char {idx}")
    idx = skip_ws(text, idx + 1)
    if text.startswith("}", idx):
        return idx + 1
    while True:
        key, idx = _key(text, idx)
        idx = on_member(key, idx)
        if text[idx : idx + 1] in _WS_CHARS:
            idx = skip_ws(text, idx)
        if text.startswith(",", idx):
            idx += 1
            if text[idx : idx + 1] in _WS_CHARS:
                idx = skip_ws(text, idx)
        elif text.startswith("}", idx):
            return idx + 1
        else:
            raise JSONWalkError(f"expected ',' or '}}' at char {idx}")


def _key(text: str, idx: int) -> tuple[str, int]:
    """An object key at text[idx] and its ':': (key, index of the value).
    skip_ws only where there is white space: Go writes none, and this runs
    once per record."""
    if not text.startswith('"', idx):
        raise JSONWalkError(f"expected a key at char {idx}")
    try:
        key, idx = scanstring(text, idx + 1, True)
    except json.JSONDecodeError as exc:
        raise JSONWalkError(f"{exc.msg} at char {exc.pos}") from None
    if not text.startswith(":", idx):
        idx = skip_ws(text, idx)
        if not text.startswith(":", idx):
            raise JSONWalkError(f"expected ':' at char {idx}")
    idx += 1
    if text[idx : idx + 1] in _WS_CHARS:
        idx = skip_ws(text, idx)
    return key, idx


def scan_exact(text: str, idx: int, depth: int = 0, *, pairs: bool = True) -> tuple[Any, int]:
    """The value at text[idx] and the index after it, read without
    recursion, Go's grammar and depth limit enforced (`depth`: containers
    already open around it). With `pairs`, objects are JObjects, strings
    with escapes EscStrs and non-integers RawNumbers (what godecode needs);
    without, the values json.loads would make."""
    stack: list[tuple[list[Any], str | None]] = []  # (items, key: None in an array)
    i = idx
    while True:
        # A value starts at i.
        ch = text[i : i + 1]
        if ch == "{" or ch == "[":
            if depth + len(stack) >= MAX_DEPTH:
                raise JSONWalkError(f"invalid character {ch!r} exceeded max depth {MAX_DEPTH} at char {i}")
            i = skip_ws(text, i + 1)
            if ch == "{" and not text.startswith("}", i):
                first_key, i = _key(text, i)
                stack.append(([], first_key))
                continue
            if ch == "[" and not text.startswith("]", i):
                stack.append(([], None))
                continue
            value: Any = (JObject() if pairs else {}) if ch == "{" else []
            i += 1
        elif ch == '"':
            value, end = _string(text, i)
            if pairs and text.find("\\", i, end) != -1:
                esc = EscStr(value)
                esc.raw = text[i:end]
                value = esc
            i = end
        elif (m := _NUMBER.match(text, i)) is not None:
            value = _number(m, pairs)
            i = m.end()
        elif text.startswith("true", i):
            value, i = True, i + 4
        elif text.startswith("false", i):
            value, i = False, i + 5
        elif text.startswith("null", i):
            value, i = None, i + 4
        else:
            raise JSONWalkError(f"Expecting value at char {i}")
        # A value ended at i: add it to the innermost container, closing
        # as many containers as end here.
        while stack:
            items, key = stack[-1]
            items.append(value if key is None else (key, value))
            i = skip_ws(text, i)
            closer = "]" if key is None else "}"
            if text.startswith(",", i):
                i = skip_ws(text, i + 1)
                if key is not None:
                    next_key, i = _key(text, i)
                    stack[-1] = (items, next_key)
                break
            if not text.startswith(closer, i):
                raise JSONWalkError(f"Expecting ',' delimiter at char {i}")
            i += 1
            stack.pop()
            value = items if key is None else (JObject(items) if pairs else dict(items))
        else:
            return value, i


def _string(text: str, idx: int) -> tuple[str, int]:
    try:
        value, end = scanstring(text, idx + 1, True)
    except json.JSONDecodeError as exc:
        raise JSONWalkError(f"{exc.msg} at char {exc.pos}") from None
    return value, end


def _number(m: re.Match[str], pairs: bool) -> Any:
    raw = m.group(0)
    if m.group(1) is None and m.group(2) is None:
        return parse_int(raw)
    if not pairs:
        return float(raw)
    num = RawNumber(raw)
    num.raw = raw
    return num


def parse_int(raw: str) -> int:
    """int(raw) for any length (Python refuses more than 4300 digits)."""
    if len(raw) <= _INT_DIGITS:
        return int(raw)
    sign = -1 if raw.startswith("-") else 1
    digits = raw.lstrip("-")
    head, tail = digits[:-_INT_DIGITS], digits[-_INT_DIGITS:]
    value: int = sign * (parse_int(head) * 10**_INT_DIGITS + int(tail))
    return value


def int_text(value: int) -> str:
    """str(value) for any size (Python refuses more than 4300 digits)."""
    if -(10**_INT_DIGITS) < value < 10**_INT_DIGITS:
        return str(value)
    head, tail = divmod(abs(value), 10**_INT_DIGITS)
    return ("-" if value < 0 else "") + int_text(head) + f"{tail:0{_INT_DIGITS}d}"
