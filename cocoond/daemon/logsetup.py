"""Log lines as the contract fixes them: one JSON object per line on stdout
with `timestamp` (RFC 3339, UTC), `level` and `event`, which journald keeps
and alert rules match; or readable console lines for a person.

Under systemd, when stdout is the journal stream, each line goes to
journald's native socket instead (daemon/journald.py): the same line as
MESSAGE, rendered once, with the priority of its level and fields to filter
on. Anywhere else stdout gets exactly what it always did."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

from cocoond.daemon.journald import (
    Field,
    JournalSender,
    entry,
    entry_fields,
    socket_address,
    stdout_is_journal,
)
from cocoond.output import json_line

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

#: The journal logger of the current configuration, closed when replaced.
_current: JournalLogger | None = None


def _dumps(obj: Any, **kw: Any) -> str:
    # Names from the DB may hold any character; keep them readable (UTF-8)
    # rather than \u-escaped, json still escapes control characters.
    return json_line(obj)[:-1]


class JournalLogger:
    """structlog's logger when stdout is the journal. The last processor
    hands over the rendered line and the event's journal fields; the line is
    sent as MESSAGE. If journald cannot be reached, lines go to `stream` as
    they would without it, for as long as this configuration lasts (a
    reload tries again), and a `log.journal_unavailable` line says why, once."""

    def __init__(self, sender: JournalSender, stream: TextIO) -> None:
        self.sender: JournalSender | None = sender
        self.stream = stream
        self._lock = threading.RLock()
        self._unreachable = sender.reachable()

    def msg(self, line: str, fields: list[Field] | None = None) -> None:
        with self._lock:
            if self._unreachable is not None:
                why, self._unreachable = self._unreachable, None
                self._fall_back(why)
            if self.sender is not None:
                try:
                    self.sender.send(entry(line, fields or []))
                    return
                except OSError as exc:
                    self._fall_back(f"{os.fsdecode(self.sender.address)}: {exc.strerror or exc}")
            # As structlog's PrintLogger writes.
            print(line, file=self.stream if self.stream is not sys.stdout else None, flush=True)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    def _fall_back(self, why: str) -> None:
        if self.sender is not None:
            self.sender.close()
            self.sender = None
        # Through the whole chain, so the notice is a line like any other
        # (it arrives back here and, the sender gone, goes to the stream).
        structlog.get_logger().warning("log.journal_unavailable", error=why, fallback="stdout")

    def close(self) -> None:
        with self._lock:
            if self.sender is not None:
                self.sender.close()
                self.sender = None


class _WithJournalFields:
    """The last processor under the journal: the renderer's line, and the
    fields of the event it came from (taken first: the console renderer
    consumes the event dict)."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: Any) -> tuple[tuple[str], dict[str, Any]]:
        fields = entry_fields(str(event_dict.get("level", method)), event_dict)
        return (self.renderer(logger, method, event_dict),), {"fields": fields}


def _journal(stream: TextIO, environ: Mapping[str, str]) -> JournalLogger | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # a StringIO: not the journal
    if not stdout_is_journal(environ, fd):
        return None
    try:
        sender = JournalSender(socket_address(environ))
    except OSError:
        return None
    return JournalLogger(sender, stream)


def configure(
    fmt: str = "json",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """Configure structlog for the daemon and return its logger. Called
    again on SIGHUP with the new settings."""
    global _current
    out = stream or sys.stdout
    if _current is not None:
        _current.close()
    _current = journal = _journal(out, os.environ if environ is None else environ)
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            renderer if journal is None else _WithJournalFields(renderer),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=(
            structlog.PrintLoggerFactory(file=out) if journal is None else lambda *_args: journal
        ),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger()
