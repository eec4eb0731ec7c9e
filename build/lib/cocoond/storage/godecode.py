"""json.Unmarshal into a Go type (goschema), over a parsed JSON value.

What Go does (encoding/json decode.go, Go 1.25), and so what this does:
- Members are decoded in document order, every occurrence of a duplicate
  key included (give objects as jsonwalk.JObject to keep them; a dict is
  read as its items). A later occurrence decodes into what an earlier one
  left: a struct or map is added to, a scalar replaced, a slice element
  decoded into the element already at its index.
- A struct field is matched by exact key, else case-insensitively
  (goschema.fold_name); unknown keys are skipped without a look inside.
- null leaves a value as it is, except that it sets a pointer, map or
  slice to nil (a null map entry stays in the map, as nil).
- A value of the wrong JSON type (or a number that is not an int64) is
  skipped and the error saved; decoding goes on and Unmarshal returns the
  first saved error at the end. time.Time's own errors (a json.Unmarshaler)
  stop the decode at once and are returned instead.

Values come back as Python values: str, int, bool, (datetime, text) for a
time.Time, dict of set fields for a struct, dict for a map, list for a
slice, None for a nil pointer, map or slice, ZERO for a zero value that was
never assigned."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from cocoond.storage.goschema import INT_MAX, INT_MIN, GoType, Kind, Struct
from cocoond.storage.gotime import GO_ZERO_TIME, GoTimeError, check_json_time, zero_time
from cocoond.storage.jsonwalk import EscStr, JObject, int_text


class _Zero:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ZERO"


#: A Go zero value that was never assigned.
ZERO: Final = _Zero()

GoTime = tuple[datetime, str]


class GoDecodeError(ValueError):
    """What json.Unmarshal returns for a DB, as Go words it (`message`), and
    where in the document (`where`, a path a person can follow: cocoon's
    own error does not say which record)."""

    def __init__(self, message: str, where: str, *, hard: bool = False) -> None:
        self.message = message
        self.where = where
        self.hard = hard
        super().__init__(f"{message} (at {where})" if where else message)


def describe(value: Any) -> str:
    """The word Go's UnmarshalTypeError uses for a JSON value."""
    if value is True or value is False:
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list) and not isinstance(value, JObject):
        return "array"
    return "object"


def items(value: Any) -> Iterable[tuple[str, Any]] | None:
    """An object's members in document order; None if not an object."""
    if type(value) is JObject:
        return value
    if type(value) is dict:
        return value.items()
    return None


class Decoder:
    """One json.Unmarshal: the error context Go keeps (the innermost struct
    and the field path, which map keys and slice indices do not extend) and
    the first saved error. Reusable across the members of one document, so
    a DB read record by record still reports the error Go would."""

    def __init__(self) -> None:
        self.saved: GoDecodeError | None = None
        self._struct: str | None = None
        self._stack: list[str] = []
        self._where: list[str] = []

    def unmarshal(self, value: Any, t: GoType) -> Any:
        """json.Unmarshal of a whole document: its value, or the error."""
        result = self.decode(value, t)
        if self.saved is not None:
            raise self.saved
        return result

    def decode_at(
        self,
        value: Any,
        t: GoType,
        struct: str,
        stack: tuple[str, ...],
        where: tuple[str, ...],
        current: Any = ZERO,
    ) -> Any:
        """Decode one member of a document as Go reaches it there: inside
        struct `struct`'s field path `stack`, at document path `where`."""
        saved = self._struct, self._stack, self._where
        self._struct, self._stack, self._where = struct, list(stack), list(where)
        try:
            return self.decode(value, t, current)
        finally:
            self._struct, self._stack, self._where = saved

    def decode(self, value: Any, t: GoType, current: Any = ZERO) -> Any:
        """`value` decoded into a Go value of type `t` that holds `current`."""
        kind = t.kind
        if value is None:
            return None if kind in (Kind.PTR, Kind.MAP, Kind.SLICE) else current
        if kind is Kind.PTR:
            assert t.elem is not None
            return self.decode(value, t.elem, ZERO if current is None else current)
        if kind is Kind.STRING:
            if isinstance(value, str):
                return str(value)
        elif kind is Kind.BOOL:
            if value is True or value is False:
                return value
        elif kind is Kind.INT:
            if type(value) is int:
                if INT_MIN <= value <= INT_MAX:
                    return value
                return self._mismatch(f"number {int_text(value)}", t, current)
            if isinstance(value, float):  # a fraction or an exponent: not ParseInt's
                return self._mismatch(f"number {getattr(value, 'raw', None) or repr(value)}", t, current)
        elif kind is Kind.TIME:
            return self._time(value)
        elif kind is Kind.STRUCT:
            members = items(value)
            if members is not None:
                assert t.struct is not None
                return self._struct_value(members, t.struct, current)
        elif kind is Kind.MAP:
            members = items(value)
            if members is not None:
                assert t.elem is not None
                return self._map(members, t.elem, current)
        elif kind is Kind.SLICE and isinstance(value, list) and not isinstance(value, JObject):
            assert t.elem is not None
            return self._slice(value, t.elem, current)
        return self._mismatch(describe(value), t, current)

    def _struct_value(self, members: Iterable[tuple[str, Any]], st: Struct, current: Any) -> dict[str, Any]:
        out: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
        outer = self._struct, len(self._stack)
        for key, value in members:
            fld = st.lookup(key)
            if fld is None:
                continue  # unknown: skipped unread, as Go skips it
            self._struct = st.short_name
            self._stack.extend(fld.via)
            self._stack.append(fld.name)
            self._where.append(f".{key}")
            try:
                got = self.decode(value, fld.type, out.get(fld.name, ZERO))
            finally:
                self._struct = outer[0]
                del self._stack[outer[1] :]
                self._where.pop()
            if got is ZERO:
                out.pop(fld.name, None)
            else:
                out[fld.name] = got
        return out

    def _map(self, members: Iterable[tuple[str, Any]], elem: GoType, current: Any) -> dict[str, Any]:
        # Go reuses a map already there: a duplicate key adds to it.
        out: dict[str, Any] = current if isinstance(current, dict) else {}
        for key, value in members:
            self._where.append(f"[{json.dumps(key, ensure_ascii=False)}]")
            try:
                out[key] = _materialized(self.decode(value, elem), elem)
            finally:
                self._where.pop()
        return out

    def _slice(self, values: list[Any], elem: GoType, current: Any) -> list[Any]:
        # Go decodes element i into the element already at index i, if any.
        old = current if isinstance(current, list) else []
        out = []
        for i, value in enumerate(values):
            self._where.append(f"[{i}]")
            try:
                out.append(_materialized(self.decode(value, elem, old[i] if i < len(old) else ZERO), elem))
            finally:
                self._where.pop()
        return out

    def _time(self, value: Any) -> GoTime:
        """time.Time.UnmarshalJSON on the raw token: an error stops the
        decode (decode.go returns what an Unmarshaler returns)."""
        # Not a string: whatever it is, Go's check fails on it.
        raw = "" if not isinstance(value, str) else value.raw if isinstance(value, EscStr) else f'"{value}"'
        try:
            return check_json_time(raw), raw[1:-1]
        except GoTimeError as exc:
            raise GoDecodeError(str(exc), self.where(), hard=True) from None

    def _mismatch(self, what: str, t: GoType, current: Any) -> Any:
        """An UnmarshalTypeError, saved if it is the first; the value is
        left as it was."""
        if self.saved is None:
            if self._struct is None and not self._stack:
                text = f"json: cannot unmarshal {what} into Go value of type {t.name}"
            else:
                text = (
                    f"json: cannot unmarshal {what} into Go struct field "
                    f"{self._struct}.{'.'.join(self._stack)} of type {t.name}"
                )
            self.saved = GoDecodeError(text, self.where())
        return current

    def where(self) -> str:
        return "".join(self._where).lstrip(".")


_ZEROS: dict[Kind, Any] = {
    Kind.STRING: "",
    Kind.BOOL: False,
    Kind.INT: 0,
    Kind.TIME: (zero_time(), GO_ZERO_TIME),
}


def _materialized(value: Any, t: GoType) -> Any:
    """A map entry's or slice element's value: there, a zero value exists
    (Go stores it), so ZERO becomes the zero of its type ({} for a struct,
    None for a pointer, map or slice)."""
    if value is not ZERO:
        return value
    if t.kind is Kind.STRUCT:
        return {}
    return _ZEROS.get(t.kind)
