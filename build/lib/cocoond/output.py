"""Text that leaves cocoond (terminal, stdout, journald) carries strings from
cocoon's DB and file names, which may hold any character and any length."""

from __future__ import annotations

import json
import unicodedata
from typing import Final

#: Longest DB-derived string written in a log field or a table cell. A 1 MiB
#: snapshot name must not make a 4 MB log line: journald splits lines at
#: 48 KiB, which turns JSON into two halves that are not JSON.
FIELD_LIMIT: Final = 1024
#: Longest DB string quoted inside a message.
QUOTE_LIMIT: Final = 256


def bounded(text: str, limit: int = FIELD_LIMIT) -> str:
    """`text`, or its first `limit` characters and a note of how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[cut {len(text) - limit} chars]"


def quoted(text: str) -> str:
    """A DB string quoted for a message (Python's repr: backslashes and
    unprintable characters escaped), bounded; empty stays empty."""
    return repr(bounded(text, QUOTE_LIMIT)) if text else ""


def printable(text: str) -> str:
    """A raw string (a name, a path) for a person: control and format
    characters (ESC, newline, bidi overrides) escaped, and the backslash
    itself, so that a name holding the text `\\u202e` cannot pass for an
    escaped bidi character."""
    return escape_controls(text.replace("\\", "\\\\")) if "\\" in text else escape_controls(text)


def escape_controls(text: str) -> str:
    """Control and format characters escaped, nothing else: for text that
    is already built for people (messages quote DB strings with repr), so
    it stays on one line and cannot drive a terminal."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or unicodedata.category(ch) == "Zs" else ch.encode("unicode_escape").decode()
        for ch in text
    )


def json_line(obj: object) -> str:
    """One JSON line, UTF-8 where it can be, escaped where it cannot: a DB
    string with a lone surrogate (valid JSON, no UTF-8 form) must not turn
    the output into half a line and a traceback."""
    text = json.dumps(obj, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, default=str)
    return text + "\n"
