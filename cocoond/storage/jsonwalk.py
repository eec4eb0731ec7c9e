"""Walking a big JSON object one member at a time.

json.loads of a 100k-record snapshots.json builds the whole tree first:
about 250 MB for a 45 MB file, which the daemon would then hold as its peak
(and, through fragmentation, much of it for good). Walking the top-level
objects member by member with the json module's own C scanner costs the
same time, and each record's dict is gone before the next is read."""

from __future__ import annotations

import json
from _json import scanstring  # the C string scanner json.loads uses (CPython)
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any

_WS = " \t\n\r"
# The scanner json.loads runs, with the default decoder's settings (strict
# strings, Python floats and ints): typeshed types its context loosely.
_scan_once = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


class JSONWalkError(ValueError):
    """Not valid JSON; the message says where, as json's own errors do."""


def skip_ws(text: str, idx: int) -> int:
    n = len(text)
    while idx < n and text[idx] in _WS:
        idx += 1
    return idx


def scan_value(text: str, idx: int) -> tuple[Any, int]:
    """The JSON value starting at text[idx], and the index after it."""
    try:
        value, end = _scan_once(text, idx)
    except StopIteration:
        raise JSONWalkError(f"expected a value at char {idx}") from None
    except json.JSONDecodeError as exc:
        raise JSONWalkError(f"{exc.msg} at char {exc.pos}") from None
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
        if not text.startswith('"', idx):
            raise JSONWalkError(f"expected a key at char {idx}")
        try:
            key, idx = scanstring(text, idx + 1, True)
        except json.JSONDecodeError as exc:
            raise JSONWalkError(f"{exc.msg} at char {exc.pos}") from None
        idx = skip_ws(text, idx)
        if not text.startswith(":", idx):
            raise JSONWalkError(f"expected ':' at char {idx}")
        idx = skip_ws(text, on_member(key, skip_ws(text, idx + 1)))
        if text.startswith(",", idx):
            idx = skip_ws(text, idx + 1)
        elif text.startswith("}", idx):
            return idx + 1
        else:
            raise JSONWalkError(f"expected ',' or '}}' at char {idx}")
