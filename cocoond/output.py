"""Text that leaves cocoond (terminal, stdout, journald) carries strings from
cocoon's DB and file names, which may hold any character."""

from __future__ import annotations

import json
import unicodedata


def printable(text: str) -> str:
    """Escape control and format characters (ESC, newline, bidi overrides):
    names come from the DB and must not drive an operator's terminal or
    split a log line."""
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
