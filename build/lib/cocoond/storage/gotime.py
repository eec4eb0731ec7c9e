"""Go's time.Time as encoding/json reads and writes it.

Reading: `Time.UnmarshalJSON` (Go 1.25, time/time.go) takes the raw JSON
token, which must be a string without escapes (it does not unescape), and
parses its inside with `parseStrictRFC3339` (time/format_rfc3339.go). That
function's strict checks are disabled in Go (`case true: return t, nil`,
go.dev/issue/54580), so what it accepts is exactly what
`time.Parse(time.RFC3339, s)` accepts (time/format.go `parse`): a one-digit
hour, a ',' before the fraction, a "+24:00" or "+00:60" offset included. This
module reproduces that grammar and Go's error texts.

Python keeps microseconds and years 1..9999 only, which is why callers also
keep the text: an instant Python cannot hold (year 0, an offset of 24 h)
reads as the nearest instant it can, and the text is what is written back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

#: Go's zero time.Time, which encoding/json writes for an unset created_at.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_GO_ZERO_DT = datetime(1, 1, 1, tzinfo=UTC)
_MAX_DT = datetime.max.replace(tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAYOUT = "2006-01-02T15:04:05Z07:00"
# time.Parse's walk over the RFC 3339 layout: (literal prefix, element).
_CHUNKS = (("", "2006"), ("-", "01"), ("-", "02"), ("T", "15"), (":", "04"), (":", "05"), ("", "Z07:00"))
_DIGITS = frozenset("0123456789")
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
#: Go's error for a JSON value that is not a string (time.Time.UnmarshalJSON).
NOT_A_STRING = "Time.UnmarshalJSON: input is not a JSON string"


class GoTimeError(ValueError):
    """A time text Go rejects; str() is Go's own error message."""


def parse_rfc3339(text: str) -> datetime:
    """The instant Go reads from `text` (the inside of the JSON string), as
    an aware datetime; GoTimeError (a ValueError) with Go's message where Go
    refuses it. The common shape takes a fast path: this runs for every
    record of every DB load."""
    n = len(text)
    if text.endswith("Z"):
        zone = n - 1
    elif n >= 25 and text[-6] in "+-" and text[-3] == ":" and text[-5:-3] < "24" and text[-2:] < "60":
        zone = n - 6  # fromisoformat would take "+00:61" (Go's fast path would not)
    else:
        zone = -1
    if (
        n >= 20
        and zone >= 19
        and text[4] == "-"
        and text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and text[11:13] < "24"
        # isdigit() passes other scripts' digits, which fromisoformat refuses.
        and (zone == 19 or (text[19] == "." and zone > 20 and text[20:zone].isdigit()))
    ):
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            pass  # year 0, or a digit Python reads and Go does not: Go's rules decide
        else:
            if dt.tzinfo is not None:
                return dt
    return _go_parse(text)


def check_json_time(raw: str) -> datetime:
    """What Time.UnmarshalJSON makes of a raw JSON token (quotes included):
    the instant, or GoTimeError with Go's message. `raw` is the token as it
    stands in the file: an escape anywhere fails, as in Go."""
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        raise GoTimeError(NOT_A_STRING)
    return parse_rfc3339(raw[1:-1])


def _go_parse(value: str) -> datetime:
    """time.Parse(time.RFC3339, value), step by step as time/format.go does
    it, with its error texts."""
    v = value
    year = month = day = hour = minute = sec = nsec = offset = 0
    for prefix, std in _CHUNKS:
        if not v.startswith(prefix):
            raise _cannot(value, v, prefix)
        v = v[len(prefix) :]
        hold = v
        bad = False
        out_of_range = ""
        if std == "2006":
            bad = len(v) < 4 or not _DIGITS.issuperset(v[:4])
            if not bad:
                year, v = int(v[:4]), v[4:]
        elif std == "01":
            month, v, bad = _getnum(v, True)
            if not bad and not 1 <= month <= 12:
                out_of_range = "month"
        elif std == "02":
            day, v, bad = _getnum(v, True)
        elif std == "15":
            hour, v, bad = _getnum(v, False)
            if hour >= 24:
                out_of_range = "hour"
        elif std == "04":
            minute, v, bad = _getnum(v, True)
            if minute >= 60:
                out_of_range = "minute"
        elif std == "05":
            sec, v, bad = _getnum(v, True)
            if not bad and sec >= 60:
                out_of_range = "second"
            elif not bad and len(v) >= 2 and v[0] in ".," and v[1] in _DIGITS:
                end = 2
                while end < len(v) and v[end] in _DIGITS:
                    end += 1
                nsec = int(v[1 : min(end, 10)].ljust(9, "0"))
                v = v[end:]
        else:  # "Z07:00"
            v, offset, bad, out_of_range = _zone(v)
        if out_of_range:
            raise GoTimeError(f"parsing time {_quote(value)}: {out_of_range} out of range")
        if bad:
            raise _cannot(value, hold, std)
    if v:
        raise GoTimeError(f"parsing time {_quote(value)}: extra text: {_quote(v)}")
    if not 1 <= day <= _days_in(month, year):
        raise GoTimeError(f"parsing time {_quote(value)}: day out of range")
    return _instant(year, month, day, hour * 3600 + minute * 60 + sec, nsec // 1000, offset)


def _zone(v: str) -> tuple[str, int, bool, str]:
    """The "Z07:00" element: (rest, offset seconds, failed, out-of-range
    name). Go's range test uses > here, so "+24:00" and "+00:60" parse."""
    if v.startswith("Z"):
        return v[1:], 0, False, ""
    if len(v) < 6 or v[3] != ":":
        return v, 0, True, ""
    sign, rest = v[0], v[6:]
    hr, _, bad = _getnum(v[1:3], True)
    mins = 0
    if not bad:
        mins, _, bad = _getnum(v[4:6], True)
    out_of_range = ""
    if hr > 24:
        out_of_range = "time zone offset hour"
    if mins > 60:
        out_of_range = "time zone offset minute"
    bad = bad or sign not in "+-"
    return rest, (hr * 60 + mins) * 60 * (-1 if sign == "-" else 1), bad, out_of_range


def _instant(year: int, month: int, day: int, secs: int, micro: int, offset: int) -> datetime:
    """The aware datetime nearest to Go's instant: at Go's own offset where
    Python can keep it, else in UTC; instants outside Python's years 1..9999
    clamp to its ends (callers keep the text, which is exact)."""
    days = _days_from_civil(year, month, day)
    try:
        utc = _EPOCH + timedelta(days=days, seconds=secs - offset, microseconds=micro)
    except OverflowError:
        return _GO_ZERO_DT if year < 5000 else _MAX_DT
    try:
        return utc.astimezone(timezone(timedelta(seconds=offset))) if offset else utc
    except (ValueError, OverflowError):  # |offset| >= 24 h, or past Python's ends there
        return utc


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 in the proleptic Gregorian calendar Go uses
    (year 0 included), by H. Hinnant's civil-from-days inverse."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _getnum(s: str, fixed: bool) -> tuple[int, str, bool]:
    """time.getnum: one or two leading digits (two when `fixed`), the rest,
    and whether it failed."""
    if not s or s[0] not in _DIGITS:
        return 0, s, True
    if len(s) < 2 or s[1] not in _DIGITS:
        if fixed:
            return 0, s, True
        return int(s[0]), s[1:], False
    return int(s[:2]), s[2:], False


def _days_in(month: int, year: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS[month - 1]


def _cannot(value: str, elem: str, layout_elem: str) -> GoTimeError:
    where = f"{_quote(value)} as {_quote(_LAYOUT)}"
    return GoTimeError(f"parsing time {where}: cannot parse {_quote(elem)} as {_quote(layout_elem)}")


def _quote(s: str) -> str:
    """time.quote: '"' and '\\' escaped, other non-printable or non-ASCII
    bytes as \\xNN (of their UTF-8 form)."""
    out = ['"']
    for ch in s:
        if ch < " " or ch >= "\x80":
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        elif ch in '"\\':
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


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
