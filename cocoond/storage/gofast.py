"""json.Unmarshal's result at C speed (msgspec), for documents that prove
they are canonical; anything else goes to the exact decoders (goplain,
godecode, records' walk), which also word Go's errors.

msgspec decodes JSON into typed Structs in C, about twice as fast as
json.loads into dicts (snapshots.json at 100k records: 0.17 s vs 0.38-0.53 s
here), and checks every type on the way. But it is not Go's decoder: it
keeps the last of duplicate keys where Go decodes both (a second struct,
map or slice-of-struct occurrence adds to the first), it matches keys
exactly where Go also matches them case-insensitively, it skips what Go
rejects in a time.Time (an escape in the token), and so on. Rather than
reason about every such gap, the route PROVES the document has none:

    decode(data) = v   and   encode(v) == data (JSON white space around it
    aside)  =>  json.Unmarshal(data) gives v.

Why: encode(v) writes each object's members once each, under their exact
names, strings escaped only as msgspec escapes them (\\" \\\\ \\b \\f \\n
\\r \\t \\u00XX) and integers in plain decimal. A document equal to it has
no duplicate key, no case-folded key, no other escape (so no surrogate, no
escaped character in a time.Time token), no number text Go could read
differently, no BOM, no invalid UTF-8, nothing after the value. On such a
document Go and msgspec read the same tree; what is left is that msgspec's
types accept exactly the values Go's types accept there, which the Structs
generated below from goschema see to:

- int: ints in int64's range only (msgspec alone takes any size, and never
  a float or an exponent: Go does not either);
- string, bool: those JSON types only; a pointer, map or slice: also null
  (Go's nil); a struct: an object of its fields only (forbid_unknown_fields:
  an unknown or case-folded key makes the decode fail, so the document
  falls back), a Go set (map[string]struct{}) an object of `{}`s;
- time.Time: a string, then checked here by gotime's copy of Go's parser on
  the token as it stands (`"` + text + `"`: canonical, so unescaped);
- a field Go would leave untouched by `null` (a non-pointer scalar) makes
  the decode fail (falls back), except in lenient documents (below).

Fields absent from the document stay msgspec.UNSET and are not encoded, so
the round trip needs no knowledge of Go's omitempty; the output is a dict
of the set fields, as goplain gives (times as their text).

Lenient documents (Cloud Hypervisor's config.json, which carries many
fields cocoon's struct does not name, and nulls): decoded untyped first,
re-encoded and compared (the same proof of canonical form), then converted
into the Structs with unknown fields allowed (msgspec skips them unread, as
Go does). Go would also match a key case-insensitively, so each key of the
document is checked: every field name is lower-case ASCII, so a key that is
not a field but whose lower case is (or that holds one of the two non-ASCII
runes Go folds to ASCII letters) sends the document to the exact decoder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from cocoond.storage.goschema import INT_MAX, INT_MIN, GoType, Kind, Struct
from cocoond.storage.gotime import parse_rfc3339

#: Go's int and int64.
GoInt = Annotated[int, Meta(ge=INT_MIN, le=INT_MAX)]
#: JSON's white space (bytes.strip() would also take \v and \f, which Go refuses).
WS = b" \t\r\n"
WS_BYTES = (b" ", b"\t", b"\r", b"\n")
encode = msgspec.json.encode
#: The two runes Go folds to ASCII letters (goschema.fold_name), UTF-8.
_FOLDING = (b"\xc5\xbf", b"\xe2\x84\xaa")


class NotCanonical(Exception):
    """The document is not one the fast route can vouch for."""


def canonical(data: bytes, typ: Any, decoder: msgspec.json.Decoder[Any] | None = None) -> Any:
    """`data` decoded into msgspec type `typ`, proved to read the same in Go
    (see the module's docstring), or NotCanonical."""
    try:
        value = (decoder or _decoder(typ)).decode(data)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        # ValueError: msgspec before 0.19 raises UnicodeDecodeError for
        # invalid UTF-8 in an unknown key.
        raise NotCanonical from None
    same_as_input(data, encode(value))
    return value


def same_as_input(data: bytes, encoded: bytes) -> None:
    """NotCanonical unless `data` is `encoded` with JSON white space around
    it (a compare, not a copy: startswith is memcmp at an offset)."""
    start = 0
    if data[:1] in WS_BYTES:
        start = len(data) - len(data.lstrip(WS))
    if not data.startswith(encoded, start) or data[start + len(encoded) :].strip(WS):
        raise NotCanonical


@cache
def _decoder(typ: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(typ)


# ------------------------------------------------------------ the types
#: Whether struct fields default to UNSET (the plain, generic route) or to
#: Go's zero value, omitted when zero only where Go has omitempty ("go":
#: records.py's route, whose per-record code then reads plain attributes).
_PLAIN, _GO = "plain", "go"


def struct_type(t: GoType, style: str = _PLAIN, lenient: bool = False) -> Any:
    """The msgspec type that takes exactly what Go's `t` takes (see the
    module's docstring), generated from goschema; cached per type."""
    return _type(t, style, lenient)


@cache
def _type(t: GoType, style: str, lenient: bool) -> Any:
    kind = t.kind
    if kind is Kind.STRING or kind is Kind.TIME:
        return str
    if kind is Kind.BOOL:
        return bool
    if kind is Kind.INT:
        return GoInt
    assert t.elem is not None or t.struct is not None, t.name
    if kind is Kind.PTR:
        assert t.elem is not None
        return _type(t.elem, style, lenient) | None
    if kind is Kind.SLICE:
        assert t.elem is not None
        return list[_type(t.elem, style, lenient)] | None  # type: ignore[misc]
    if kind is Kind.MAP:
        assert t.elem is not None
        return dict[str, _type(t.elem, style, lenient)] | None  # type: ignore[misc]
    assert t.struct is not None
    return _struct(t.struct, style, lenient)


_SCALARS = frozenset({Kind.STRING, Kind.BOOL, Kind.INT, Kind.TIME})
_ZEROS = {Kind.STRING: "", Kind.TIME: "", Kind.BOOL: False, Kind.INT: 0}


def _struct(st: Struct, style: str, lenient: bool) -> type[msgspec.Struct]:
    fields: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for i, fld in enumerate(st.fields):
        assert fld.name.isascii() and fld.name == fld.name.lower(), (st.name, fld.name)
        typ = _type(fld.type, style, lenient)
        scalar = fld.type.kind in _SCALARS
        py = f"f{i}"  # a JSON name need not be a Python identifier
        rename[py] = fld.name
        if style == _GO:
            # Go writes a field unless omitempty and zero: required, or a
            # default that encode leaves out (omit_defaults) as Go does.
            if not fld.omitempty:
                fields.append((py, typ, msgspec.NODEFAULT))
            else:
                fields.append((py, typ, _ZEROS.get(fld.type.kind)))
        else:
            if scalar and lenient:
                typ = typ | None  # Go: null leaves it as it was (dropped below)
            fields.append((py, typ | UnsetType, UNSET))
    return msgspec.defstruct(
        "Go_" + re.sub(r"\W", "_", st.name),
        fields,
        rename=rename,
        kw_only=True,
        forbid_unknown_fields=not lenient,
        omit_defaults=style == _GO,
        # Decoded JSON holds no cycle: not tracked by the cyclic collector
        # (faster to make, 16 bytes smaller each).
        gc=False,
    )


# ----------------------------------------------------- the plain route
def unmarshal_fast(data: bytes, t: GoType, *, lenient: bool = False) -> dict[str, Any] | None:
    """What goplain.unmarshal_plain gives for `t` (a dict of the set fields,
    times as their text), when the fast route can vouch for the document;
    else None. `lenient`: the document may carry fields `t` does not name
    and nulls in scalar fields (CH's config.json)."""
    assert t.kind is Kind.STRUCT and t.struct is not None
    typ = struct_type(t, _PLAIN, lenient)
    try:
        if lenient:
            if any(rune in data for rune in _FOLDING):
                return None
            untyped = canonical(data, Any)
            if not _keys_exact(untyped, t):
                return None
            try:
                value = msgspec.convert(untyped, typ)
            except (msgspec.MsgspecError, ValueError):
                return None
        else:
            value = canonical(data, typ)
    except NotCanonical:
        return None
    out: dict[str, Any] = msgspec.to_builtins(value)
    checks = _checker(t, lenient)
    if checks is not None and not checks(out):
        return None
    return out


def _keys_exact(value: Any, t: GoType) -> bool:
    """No key of a decoded document matches a field of `t`'s schema only
    case-insensitively (every field name is lower-case ASCII, and the two
    non-ASCII runes Go folds were refused before). Iterative: a document
    may nest deeper than Python recurses."""
    names = _names(t)
    todo = [value]
    while todo:
        item = todo.pop()
        if type(item) is dict:
            for key in item:
                if key not in names and key.lower() in names:
                    return False
            todo.extend(item.values())
        elif type(item) is list:
            todo.extend(item)
    return True


@cache
def _names(t: GoType) -> frozenset[str]:
    """Every field name of `t`'s structs (lower-case: see _struct)."""
    return frozenset(fld.name for st in _structs(t) for fld in st.fields)


def _structs(t: GoType, seen: set[int] | None = None) -> list[Struct]:
    seen = set() if seen is None else seen
    if id(t) in seen:
        return []
    seen.add(id(t))
    out: list[Struct] = []
    if t.struct is not None:
        out.append(t.struct)
        for fld in t.struct.fields:
            out += _structs(fld.type, seen)
    if t.elem is not None:
        out += _structs(t.elem, seen)
    return out


# A check of a decoded value: the times Go must parse (and, in lenient
# documents, the nulls Go ignores, dropped). Generated per type, visiting
# only what can hold a time.Time or a null scalar: None when nothing does.
_Check = Callable[[Any], bool]


@cache
def _checker(t: GoType, lenient: bool) -> _Check | None:
    kind = t.kind
    if kind is Kind.TIME:
        return time_ok
    if kind in _SCALARS:
        return None
    if kind in (Kind.PTR, Kind.SLICE, Kind.MAP):
        assert t.elem is not None
        elem = _checker(t.elem, lenient)
        if elem is None:
            return None
        check: _Check = elem
        if kind is Kind.PTR:
            return lambda v: v is None or check(v)
        if kind is Kind.SLICE:
            return lambda v: v is None or all(check(x) for x in v)
        return lambda v: v is None or all(check(x) for x in v.values())
    assert t.struct is not None
    parts: list[tuple[str, _Check | None, bool]] = []
    for fld in t.struct.fields:
        inner = _checker(fld.type, lenient)
        scalar = lenient and fld.type.kind in _SCALARS
        if inner is not None or scalar:
            parts.append((fld.name, inner, scalar))
    if not parts:
        return None
    return lambda v: _check_struct(v, parts)


def _check_struct(value: dict[str, Any], parts: list[tuple[str, _Check | None, bool]]) -> bool:
    for name, inner, scalar in parts:
        member = value.get(name, UNSET)
        if member is UNSET:
            continue
        if member is None and scalar:
            del value[name]  # Go's null on a non-pointer: a no-op (lenient only)
        elif inner is not None and not inner(member):
            return False
    return True


def time_ok(text: Any) -> bool:
    return parse_time(text) is not None


def parse_time(text: str) -> datetime | None:
    """time.Time.UnmarshalJSON on a canonical token (`"` + text + `"`: no
    escape in it); None where Go fails."""
    if _COMMON_TIME.fullmatch(text):
        # gotime.parse_rfc3339's fast path takes each such text to this
        # very fromisoformat (its checks all hold); a date that does not
        # exist (or year 0) raises and takes the whole path.
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    if '"' in text or "\\" in text or not text.isprintable():
        return None  # escaped in the document: Go's parser sees the escape
    try:
        return parse_rfc3339(text)  # what check_json_time does with the token
    except ValueError:
        return None


#: The shape Go writes a time.Time in (RFC 3339, up to nine fraction digits,
#: Z or an offset), checked in C: one regex match and fromisoformat instead
#: of parse_rfc3339's Python checks, a tenth of a 100k-record load.
_COMMON_TIME = re.compile(
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-[0-3][0-9]T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)


__all__ = [
    "GoInt",
    "NotCanonical",
    "canonical",
    "parse_time",
    "same_as_input",
    "struct_type",
    "time_ok",
    "unmarshal_fast",
]
