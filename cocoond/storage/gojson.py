"""The two places where Python's defaults differ from Go's encoding/json in
ways other tools on the host can see: time.Time text and string escaping."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cocoond.errors import DBError

#: Go's zero time.Time, which encoding/json writes for an unset created_at.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_GO_ZERO_DT = datetime(1, 1, 1, tzinfo=UTC)

# Go escapes these inside strings (HTML safety, JS line separators). They can
# only occur inside JSON strings, so replacing them in the encoded text is safe.
_GO_ESCAPES = (
    ("&", "\\u0026"),
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def parse_rfc3339(text: str) -> datetime:
    """Parse Go's RFC 3339 (up to 9 fractional digits, 'Z' or +hh:mm).

    Python keeps microseconds only, which is why callers also keep the text.
    Raises ValueError for what Go's strict RFC 3339 parser rejects and
    Python's fromisoformat would accept (+0800, +08, ",5", " Z", ...): a DB
    cocoon cannot load must not look valid to us. Plain string checks, not a
    regex: this runs for every record of every DB load."""
    n = len(text)
    if text.endswith("Z"):
        zone = n - 1
    elif n >= 25 and text[-6] in "+-" and text[-3] == ":":
        zone = n - 6
    else:
        zone = -1
    if (
        n < 20
        or zone < 19
        or text[4] != "-"
        or text[7] != "-"
        or text[10] != "T"
        or text[13] != ":"
        or text[16] != ":"
        or (zone > 19 and (text[19] != "." or zone == 20 or not text[20:zone].isdigit()))
    ):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"RFC 3339 time without a UTC offset: {text!r}")
    return dt


def format_rfc3339(dt: datetime) -> str:
    """Go's RFC3339Nano: trailing fractional zeros trimmed, 'Z' for UTC."""
    if dt.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    if dt == _GO_ZERO_DT:
        return GO_ZERO_TIME
    # Not strftime: glibc's %Y does not pad years before 1000, Go does.
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if dt.microsecond:
        text += "." + f"{dt.microsecond:06d}".rstrip("0")
    offset = dt.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return text + "Z"
    sign = "+" if minutes > 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


def zero_time() -> datetime:
    return _GO_ZERO_DT


def dumps_go(obj: Any) -> bytes:
    """Compact JSON plus newline, as cocoon's AtomicWriteJSON writes it."""
    text = _go_escape(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (read from a "\\ud800" escape) has no UTF-8 form;
        # the ASCII encoding keeps it as an escape instead of losing it.
        return _go_escape(json.dumps(obj, separators=(",", ":"))).encode("ascii") + b"\n"


def _go_escape(text: str) -> str:
    for raw, escaped in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def text_go(data: bytes) -> str:
    """Bytes as Go's decoder reads them: UTF-8 only (no BOM, no UTF-16
    guessing as json.loads does), invalid sequences read as U+FFFD."""
    return data.decode("utf-8", "replace")


def loads_go(data: bytes | str, path: str) -> Any:
    """JSON as Go's decoder takes it (see text_go). Errors become a DBError
    naming `path`."""
    try:
        return json.loads(text_go(data) if isinstance(data, bytes) else data)
    except (ValueError, RecursionError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DBError(path, f"not valid JSON ({text[:200]})") from None
