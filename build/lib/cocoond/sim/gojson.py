"""Go's encoding/json and time.Time, as cocoon's writers produce them.

Written from Go 1.25 (cocoon's go.mod) and cocoon's use of it:
- `json.Marshal`: compact, map keys sorted (byte order of their UTF-8, which
  is code point order), `<`, `>`, `&` escaped as \\u003c \\u003e \\u0026,
  U+2028 and U+2029 escaped, control characters as \\n \\r \\t \\b \\f or
  \\u00XX; `utils.AtomicWriteJSON` adds one newline (utils/atomic.go:51-58).
- `json.MarshalIndent(v, "", "  ")` for the export envelope
  (snapshot/localfile/export.go:37).
- `time.Time.MarshalJSON`: RFC 3339 with nanoseconds, trailing zeros of the
  fraction dropped, the time's own zone offset ("Z" when it is zero);
  `time.Now()` is in the process's local zone.

The callers build values whose dicts are already in Go's field order (see
schema.py); this module only turns them into bytes.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from typing import Any

_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _escape_like_go(text: str) -> str:
    # json.dumps(ensure_ascii=False) already writes \n \r \t \b \f and \u00XX
    # (lower-case hex) for the other control characters, as Go 1.22+ does.
    return text.translate(_HTML) if any(c in text for c in "<>&\u2028\u2029") else text


def marshal(value: Any) -> bytes:
    """`json.Marshal(value)`: compact JSON. Dicts are written in their own
    order: structs are built in field order, maps sorted by schema.encode."""
    return _escape_like_go(json.dumps(value, ensure_ascii=False, separators=(",", ":"))).encode()


def marshal_indent(value: Any) -> bytes:
    """`json.MarshalIndent(value, "", "  ")`."""
    return _escape_like_go(json.dumps(value, ensure_ascii=False, indent=2)).encode()


# ------------------------------------------------------------------- time
ZERO_TIME = "0001-01-01T00:00:00Z"
_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1)
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:(Z)|([+-])(\d\d):(\d\d))", re.ASCII
)


class TimeError(ValueError):
    """Text Go's time.Time.UnmarshalJSON rejects."""


def format_time(unix_ns: int, offset: int) -> str:
    """RFC3339Nano of the instant `unix_ns` in a zone `offset` seconds east of UTC."""
    secs, frac = divmod(unix_ns, _NS)
    t = _EPOCH + timedelta(seconds=secs + offset)
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    if offset == 0:
        return text + "Z"
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def local_offset(unix_seconds: float) -> int:
    """The local zone's UTC offset (seconds) at that instant."""
    return time.localtime(unix_seconds).tm_gmtoff


def now_ns() -> int:
    return time.time_ns()


def go_time(when: datetime | float | None = None) -> str:
    """`time.Now()` (or the given instant) as cocoon's DBs hold it: in the
    local zone, as Go's time.Now() is. A datetime is taken as an instant."""
    if when is None:
        ns = now_ns()
    elif isinstance(when, datetime):
        ns = int(when.timestamp()) * _NS + when.microsecond * 1000
    else:
        ns = int(when * _NS)
    return format_time(ns, local_offset(ns // _NS))


def parse_time(text: str) -> tuple[int, int]:
    """RFC 3339 as Go's strict parser reads it -> (unix ns, offset seconds)."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise TimeError(f"parsing time {json.dumps(text)} as RFC 3339: bad syntax")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        base = datetime(year, month, day, hour, minute, 0)
    except ValueError:
        raise TimeError(f"parsing time {json.dumps(text)}: day or month out of range") from None
    if hour > 23 or minute > 59 or second > 59:
        raise TimeError(f"parsing time {json.dumps(text)}: hour, minute or second out of range")
    offset = 0
    if m.group(8) is None:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise TimeError(f"parsing time {json.dumps(text)}: time zone offset out of range")
        offset = (oh * 3600 + om * 60) * (1 if m.group(9) == "+" else -1)
    days = (base - _EPOCH).days
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
    frac = (m.group(7) or "")[:9].ljust(9, "0")
    return seconds * _NS + int(frac), offset


def normalize_time(text: str) -> str:
    """A time read and written back by Go: same instant and offset, fraction
    trimmed, a zero offset as "Z"."""
    return format_time(*parse_time(text))


def time_ns(text: str) -> int:
    """The instant of an RFC 3339 text, in unix nanoseconds."""
    return parse_time(text)[0]
