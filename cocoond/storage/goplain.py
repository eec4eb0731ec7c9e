"""The quick routes to json.Unmarshal's result for documents written the way
Go writes them: first gofast (msgspec, for documents that prove they are
canonical), then plain json.loads, then one pass that checks every value
against the Go type. Anything the pass cannot vouch for sends the document
to the exact decoder (godecode), which also gives Go's error text.

Why: cocoon's VM DBs hold a few KB per VM; decoded exactly, 4,000 VMs took
1.3 s of a 7.6 s `check` at 100k snapshots; this route takes about 0.4 s.

What the pass refuses (and why json.loads alone would be wrong there):
- any backslash in the document: json.loads undoes escapes, but a time.Time
  with an escape fails in Go and a lone surrogate becomes U+FFFD;
- a key repeated in one object: json.loads keeps the last, Go decodes both
  (a second map-typed field adds to the first);
- a key that matches a field only case-insensitively (Go's folded match);
- null inside a list or map where Go would store a zero value, a number
  that is not an int64 for an int, NaN/Infinity, a wrong type, a time Go
  cannot parse, nesting deeper than Python's parser goes."""

from __future__ import annotations

import json
from typing import Any

from cocoond.errors import DBError
from cocoond.storage.godecode import Decoder, GoDecodeError
from cocoond.storage.gofast import unmarshal_fast
from cocoond.storage.gojson import loads_exact, text_go
from cocoond.storage.goschema import INT_MAX, INT_MIN, GoType, Kind, fold_name
from cocoond.storage.gotime import GoTimeError, check_json_time


class _NotPlain(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _NotPlain
    return obj


def _constant(name: str) -> Any:
    raise _NotPlain


def unmarshal(data: bytes, path: str, t: GoType, *, lenient: bool = False) -> dict[str, Any]:
    """`data` as cocoon's json.Unmarshal into `t` leaves it (for a struct, a
    dict of its set fields): by the quickest route that can vouch for the
    document (gofast, then json.loads and a type pass), else by the exact
    decoder; DBError naming `path` with Go's error when Go would fail.
    `lenient`: the document usually holds fields `t` does not name (see
    gofast.unmarshal_fast)."""
    fast = unmarshal_fast(data, t, lenient=lenient)
    if fast is not None:
        return fast
    text = text_go(data)
    plain = unmarshal_plain(text, t)
    if isinstance(plain, dict):
        return plain
    try:
        top = Decoder().unmarshal(loads_exact(text, path), t)
    except GoDecodeError as exc:
        raise DBError(path, str(exc)) from None
    return top if isinstance(top, dict) else {}


def unmarshal_plain(text: str, t: GoType) -> Any | None:
    """The document decoded into `t` as plain Python values (for a struct,
    a dict keyed by JSON field name; unknown keys may stay), or None when
    only the exact decoder may judge it."""
    if "\\" in text:
        return None
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except (_NotPlain, ValueError, RecursionError):
        return None
    return value if _plain(value, t) else None


def _plain(value: Any, t: GoType) -> bool:
    kind = t.kind
    if value is None:
        return kind in (Kind.PTR, Kind.MAP, Kind.SLICE)
    if kind is Kind.STRING:
        return type(value) is str
    if kind is Kind.BOOL:
        return type(value) is bool
    if kind is Kind.INT:
        return type(value) is int and INT_MIN <= value <= INT_MAX
    if kind is Kind.TIME:
        if type(value) is not str:
            return False
        try:
            check_json_time(f'"{value}"')
        except GoTimeError:
            return False
        return True
    if kind is Kind.PTR:
        assert t.elem is not None
        return _plain(value, t.elem)
    if kind is Kind.SLICE:
        assert t.elem is not None
        elem = t.elem
        return type(value) is list and all(_plain(v, elem) for v in value)
    if kind is Kind.MAP:
        assert t.elem is not None
        elem = t.elem
        if type(value) is not dict:
            return False
        if (
            elem.kind is Kind.STRUCT
            and elem.struct is not None
            and not elem.struct.exact
            and not elem.struct.folded
        ):
            # A Go set (map[string]struct{}): any object is an empty struct.
            # The VM DBs' snapshot_ids hold one per snapshot: 100k calls saved.
            return all(type(v) is dict for v in value.values())
        return all(_plain(v, elem) for v in value.values())
    assert kind is Kind.STRUCT and t.struct is not None
    if type(value) is not dict:
        return False
    exact, folded = t.struct.exact, t.struct.folded
    nulls = None
    for key, member in value.items():
        fld = exact.get(key)
        if fld is None:
            if fold_name(key) in folded:
                return False
        elif member is None and fld.type.kind in _SCALARS:
            # Go leaves the field as it was (json: "null" is a no-op for a
            # non-pointer scalar, time.Time included); the exact decoder omits
            # it, and so does this route (Cloud Hypervisor's config.json
            # writes `"kernel": null` and the like).
            nulls = [*(nulls or ()), key]
        elif not _plain(member, fld.type):
            return False
    for key in nulls or ():
        del value[key]
    return True


_SCALARS = frozenset({Kind.STRING, Kind.BOOL, Kind.INT, Kind.TIME})
