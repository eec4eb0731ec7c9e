"""gotime: what Go 1.25's time.Time.UnmarshalJSON accepts and how it words a
refusal. Its strict RFC 3339 checks are disabled (`case true: return t,
nil` in time/format_rfc3339.go), so the grammar is time.Parse's with the
RFC 3339 layout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoond.storage import gotime
from cocoond.storage.gotime import GoTimeError, check_json_time, format_rfc3339, parse_rfc3339

ACCEPTS = {
    "2026-03-04T05:06:07Z": datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    "2026-03-04T05:06:07.123456789+08:00": datetime(
        2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone(timedelta(hours=8))
    ),
    # time.Parse takes these; parseRFC3339 alone would not.
    "2026-03-04T05:06:07,5Z": datetime(2026, 3, 4, 5, 6, 7, 500000, tzinfo=UTC),
    "2026-03-04T5:06:07Z": datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    "2026-03-04T05:06:07+24:00": datetime(2026, 3, 3, 5, 6, 7, tzinfo=UTC),  # Python keeps it in UTC
    "2026-03-04T05:06:07+00:60": datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=1))),
    "2024-02-29T23:59:59.9999999999-23:59": datetime(
        2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(-timedelta(hours=23, minutes=59))
    ),
    # Go's years run from 0; Python's from 1: the nearest instant it has.
    "0000-01-01T00:00:00Z": datetime(1, 1, 1, tzinfo=UTC),
    "0000-12-31T23:00:00-02:00": datetime(1, 1, 1, 1, tzinfo=UTC),
    "9999-12-31T23:59:59-01:00": datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=1))),
}


@pytest.mark.parametrize("text", sorted(ACCEPTS))
def test_go_accepts(text: str) -> None:
    got = parse_rfc3339(text)
    assert got == ACCEPTS[text]
    assert got.utcoffset() == ACCEPTS[text].utcoffset()
    assert check_json_time(f'"{text}"') == got


LAYOUT = '"2006-01-02T15:04:05Z07:00"'
# (text, what Go cannot parse, as which layout element): Go's message then
# reads `parsing time "<text>" as <LAYOUT>: cannot parse "<what>" as "<elem>"`.
CANNOT = [
    ("yesterday", "yesterday", "2006"),
    ("", "", "2006"),
    ("2026-03-04", "", "T"),
    ("2026-03-04 05:06:07Z", " 05:06:07Z", "T"),
    ("2026-03-04t05:06:07Z", "t05:06:07Z", "T"),
    ("2026-3-04T05:06:07Z", "3-04T05:06:07Z", "01"),
    ("2026-03-04T05:06:07", "", "Z07:00"),
    ("2026-03-04T05:06:07z", "z", "Z07:00"),
    ("2026-03-04T05:06:07+0800", "+0800", "Z07:00"),
    ("2026-03-04T05:06:07.Z", ".Z", "Z07:00"),
    ("2026-03-04T05:06:07*08:00", "*08:00", "Z07:00"),
]
FULLWIDTH_2026 = "\uff12\uff10\uff12\uff16"
AS_BYTES = "\\xef\\xbc\\x92\\xef\\xbc\\x90\\xef\\xbc\\x92\\xef\\xbc\\x96"
REJECTS = {
    **{t: f'parsing time "{t}" as {LAYOUT}: cannot parse "{what}" as "{elem}"' for t, what, elem in CANNOT},
    "2026-03-04T05:06:07.5+08:00:30": 'parsing time "2026-03-04T05:06:07.5+08:00:30": extra text: ":30"',
    **{
        t: f'parsing time "{t}": {what} out of range'
        for t, what in [
            ("2026-13-04T05:06:07Z", "month"),
            ("2026-02-29T05:06:07Z", "day"),
            ("2026-03-04T24:06:07Z", "hour"),
            ("2026-03-04T05:60:07Z", "minute"),
            ("2026-03-04T05:06:60Z", "second"),
            ("2026-03-04T05:06:07+25:00", "time zone offset hour"),
            ("2026-03-04T05:06:07+00:61", "time zone offset minute"),
        ]
    },
    # time.quote shows non-ASCII bytes as \xNN: Go reads digits as ASCII only.
    FULLWIDTH_2026 + "-03-04T05:06:07Z": (
        f'parsing time "{AS_BYTES}-03-04T05:06:07Z" as {LAYOUT}: '
        f'cannot parse "{AS_BYTES}-03-04T05:06:07Z" as "2006"'
    ),
    "2026-03-04T05:06:07.\u0663Z": (
        f'parsing time "2026-03-04T05:06:07.\\xd9\\xa3Z" as {LAYOUT}: cannot parse ".\\xd9\\xa3Z" as "Z07:00"'
    ),
    '2026"': f'parsing time "2026\\"" as {LAYOUT}: cannot parse "\\"" as "-"',
}


@pytest.mark.parametrize("text", sorted(REJECTS))
def test_go_rejects_with_its_own_words(text: str) -> None:
    with pytest.raises(GoTimeError) as info:
        parse_rfc3339(text)
    assert str(info.value) == REJECTS[text]


@pytest.mark.parametrize("raw", ["5", "true", "{}", "[]", '"', "", '"2026-01-01T00:00:00Z'])
def test_a_token_that_is_not_a_string(raw: str) -> None:
    with pytest.raises(GoTimeError, match=r"^Time\.UnmarshalJSON: input is not a JSON string$"):
        check_json_time(raw)


def test_an_escaped_token_fails_as_in_go() -> None:
    with pytest.raises(GoTimeError, match=r'cannot parse "\\\\u005a" as "Z07:00"'):
        check_json_time('"2026-03-04T05:06:07\\u005a"')


OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda m: timezone(timedelta(minutes=m))
)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS))
def test_the_fast_path_and_go_s_grammar_agree(dt: datetime) -> None:
    """What Go writes (RFC3339Nano) reads back as the same instant and
    offset, through the fast path and through the step-by-step parser."""
    text = format_rfc3339(dt)
    fast = parse_rfc3339(text)
    slow = gotime._go_parse(text)
    assert fast == slow == dt
    assert fast.utcoffset() == slow.utcoffset() == dt.utcoffset()


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet="0123456789-T:.,Z+ z", max_size=32)
    | st.from_regex(r"\d{4}-\d\d-\d\dT\d{1,2}:\d\d:\d\d([.,]\d{0,12})?(Z|[+-]\d\d:\d\d)?", fullmatch=True)
)
def test_any_text_parses_or_is_refused_with_go_s_words(text: str) -> None:
    try:
        got = parse_rfc3339(text)
    except GoTimeError as exc:
        assert str(exc).startswith(f"parsing time {gotime._quote(text)}")
    else:
        assert got.tzinfo is not None
        assert gotime._go_parse(text) == got
