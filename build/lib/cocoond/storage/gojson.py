"""JSON text as Go's encoding/json reads and writes it: UTF-8 only, Go's
grammar and depth limit, Go's string escaping on output."""

from __future__ import annotations

import codecs
import json
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

from cocoond.errors import DBError
from cocoond.storage.gotime import GO_ZERO_TIME, format_rfc3339, parse_rfc3339, zero_time
from cocoond.storage.jsonwalk import JSONWalkError, int_text, scan_exact, scan_value, skip_ws

# Go escapes these inside strings (HTML safety, JS line separators). They can
# only occur inside JSON strings, so replacing them in the encoded text is safe.
_GO_ESCAPES = (
    ("&", "\\u0026"),
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _one_fffd_per_byte(exc: UnicodeError) -> tuple[str, int]:
    """Go decodes invalid UTF-8 one byte at a time (utf8.DecodeRune returns
    RuneError, 1), so each bad byte is one U+FFFD; Python's "replace" makes
    one U+FFFD of a truncated multi-byte sequence."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "\ufffd" * (exc.end - exc.start), exc.end


codecs.register_error("cocoond-go-utf8", _one_fffd_per_byte)


def text_go(data: bytes) -> str:
    """Bytes as Go's decoder reads them: UTF-8 only (no BOM, no UTF-16
    guessing as json.loads does), each invalid byte read as U+FFFD."""
    return data.decode("utf-8", "cocoond-go-utf8")


def loads_go(data: bytes | str, path: str) -> Any:
    """The JSON document in `data` as json.loads makes it (dicts, the last
    duplicate key winning), read with Go's grammar and depth limit and
    without RecursionError. Errors become a DBError naming `path`."""
    text = text_go(data) if isinstance(data, bytes) else data
    try:
        return _whole(text, scan_value(text, skip_ws(text, 0)))
    except JSONWalkError as exc:
        raise DBError(path, f"not valid JSON ({exc})") from None


def loads_exact(data: bytes | str, path: str) -> Any:
    """The JSON document in `data` with everything Go's decoder looks at
    kept (jsonwalk.scan_exact with pairs: duplicate keys, escapes, number
    texts). DBError naming `path` when it is not valid JSON."""
    text = text_go(data) if isinstance(data, bytes) else data
    try:
        return _whole(text, scan_exact(text, skip_ws(text, 0)))
    except JSONWalkError as exc:
        raise DBError(path, f"not valid JSON ({exc})") from None


def _whole(text: str, scanned: tuple[Any, int]) -> Any:
    value, end = scanned
    end = skip_ws(text, end)
    if end != len(text):
        raise JSONWalkError(f"Extra data at char {end}")
    return value


def dumps_go(obj: Any) -> bytes:
    """Compact JSON plus newline, as cocoon's AtomicWriteJSON writes it."""
    text = _go_escape(_dumps(obj, ascii_only=False))
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (read from a "\\ud800" escape) has no UTF-8 form;
        # the ASCII encoding keeps it as an escape instead of losing it.
        return _go_escape(_dumps(obj, ascii_only=True)).encode("ascii") + b"\n"


def _dumps(obj: Any, *, ascii_only: bool) -> str:
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only)
    except (RecursionError, ValueError):
        # Nested deeper than json's recursive encoder goes (a DB may hold
        # up to Go's 10,000 levels), or an integer too long for str().
        return _dumps_iterative(obj, encode_basestring_ascii if ascii_only else encode_basestring)


def _dumps_iterative(obj: Any, encode_str: Any) -> str:
    """json.dumps(obj, separators=(",", ":")) without recursion."""
    out: list[str] = []
    stack: list[list[Any]] = []  # [iterator, is an object, closer, items so far]
    open_ids: list[int] = []
    value = obj
    while True:
        if isinstance(value, dict | list | tuple):
            if id(value) in open_ids:
                raise ValueError("Circular reference detected")
            is_obj = isinstance(value, dict)
            out.append("{" if is_obj else "[")
            members = iter(value.items()) if isinstance(value, dict) else iter(value)
            stack.append([members, is_obj, "}" if is_obj else "]", 0])
            open_ids.append(id(value))
        else:
            out.append(_scalar(value, encode_str))
        while stack:
            frame = stack[-1]
            item: Any = next(frame[0], _END)
            if item is _END:
                out.append(frame[2])
                stack.pop()
                open_ids.pop()
                continue
            if frame[3]:
                out.append(",")
            frame[3] += 1
            if frame[1]:
                key, value = item
                out.append(encode_str(key) + ":")
            else:
                value = item
            break
        else:
            return "".join(out)


_END = object()


def _scalar(value: Any, encode_str: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return str(encode_str(value))
    if isinstance(value, int):
        return int_text(value)
    if isinstance(value, float):
        return json.dumps(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _go_escape(text: str) -> str:
    for raw, escaped in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    return text


# Go's time.Time text lives in gotime; these names stay importable from here.
__all__ = [
    "GO_ZERO_TIME",
    "dumps_go",
    "format_rfc3339",
    "loads_exact",
    "loads_go",
    "parse_rfc3339",
    "text_go",
    "zero_time",
]
