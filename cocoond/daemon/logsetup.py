"""Log lines as the contract fixes them: one JSON object per line with
`timestamp` (RFC 3339, UTC), `level` and `event`, which alert rules match;
or readable console lines for a person.

Where they go: stdout, unless stdout is the journal (systemd's
$JOURNAL_STREAM names it). Then each line is sent as one journal entry over
journald's native protocol instead (cocoond/daemon/journald.py), with the
line as `MESSAGE` (the very string stdout would have had, rendered once),
`PRIORITY` from its level and `COCOOND_*` fields to filter on, so
`journalctl -p warning` and syslog forwarding see an error as an error.
If journald cannot be reached, lines go to stdout as before and the switch
is said once (`log.journal_unreachable`), and again when it ends
(`log.journal_restored`).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import structlog

from cocoond.daemon.journald import SOCKET_ENV, SOCKET_PATH, JournalSocket, stdout_is_journal
from cocoond.output import escape_controls, json_line

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

#: syslog(3) priority of each level, as journald and syslog read `PRIORITY`.
PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
#: LOG_DAEMON: the facility the stream transport gave these lines before
#: (the unit's default SyslogFacility=), so syslog forwarding keeps it.
SYSLOG_FACILITY = 3
IDENTIFIER = "cocoond"
#: Event fields repeated as journal fields, where an event has them.
JOURNAL_FIELDS = {
    "event": "COCOOND_EVENT",
    "kind": "COCOOND_KIND",
    "severity": "COCOOND_SEVERITY",
    "subject": "COCOOND_SUBJECT",
    "snapshot_id": "COCOOND_SNAPSHOT_ID",
    "name": "COCOOND_NAME",
    "path": "COCOOND_PATH",
}

Fields = list[tuple[str, str | bytes | int]]


def _dumps(obj: Any, **kw: Any) -> str:
    # Names from the DB may hold any character; keep them readable (UTF-8)
    # rather than \u-escaped, json still escapes control characters.
    return json_line(obj)[:-1]


def journal_fields(event_dict: dict[str, Any]) -> Fields:
    """Every field of an entry but MESSAGE. Read before rendering: the
    console renderer takes keys out of the dict."""
    level = str(event_dict.get("level", "info"))
    fields: Fields = [
        ("PRIORITY", PRIORITY.get(level, PRIORITY["info"])),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
        ("SYSLOG_FACILITY", SYSLOG_FACILITY),
    ]
    for key, name in JOURNAL_FIELDS.items():
        value = event_dict.get(key)
        if value is not None:
            fields.append((name, str(value)))
    return fields


class _ForJournal:
    """The last processor under the journal: renders the line as stdout
    would get it and hands the logger both it and the entry's fields
    (structlog passes a returned `(args, kwargs)` to the logger method)."""

    def __init__(self, renderer: Callable[..., str]) -> None:
        self._renderer = renderer

    def __call__(
        self, logger: Any, method: str, event_dict: dict[str, Any]
    ) -> tuple[tuple[str], dict[str, Any]]:
        fields = journal_fields(event_dict)
        return (self._renderer(logger, method, event_dict),), {"fields": fields}


#: Renders one of the sink's own lines: (level, event, **fields) -> (line, fields).
Notice = Callable[..., tuple[str, Fields]]


class JournalSink:
    """Where lines go when stdout is the journal: journald's native socket,
    or `fallback` (stdout, still the journal's stream) for any line that
    cannot be sent. One per process, kept across reloads."""

    def __init__(self, journal: JournalSocket, fallback: TextIO) -> None:
        self.journal = journal
        self.fallback = fallback
        self._failing = False
        self._error = ""
        self._lock = threading.Lock()

    def write(self, line: str, fields: Fields, notice: Notice) -> None:
        """Send one line, or print it. `notice` renders the sink's own line
        about a switch between the two, shaped as every other line."""
        with self._lock:
            if self._send(line, fields):
                if self._failing:
                    self._failing = False
                    restored = notice("info", "log.journal_restored", socket=self.journal.path)
                    if not self._send(*restored):
                        self._print(restored[0])
                return
            if not self._failing:
                self._failing = True
                warning, _ = notice(
                    "warning", "log.journal_unreachable", socket=self.journal.path, error=self._error
                )
                self._print(warning)
            self._print(line)

    def _send(self, line: str, fields: Fields) -> bool:
        try:
            self.journal.send([("MESSAGE", line), *fields])
        except OSError as exc:
            self._error = str(exc)
            return False
        return True

    def _print(self, line: str) -> None:
        self.fallback.write(line + "\n")
        self.fallback.flush()


class _JournalLogger:
    """The structlog logger under the journal: every level method takes the
    rendered line and the entry's fields from `_ForJournal`."""

    def __init__(self, sink: JournalSink, notice: Notice) -> None:
        self._sink = sink
        self._notice = notice

    def msg(self, line: str, *, fields: Fields) -> None:
        self._sink.write(line, fields, self._notice)

    debug = info = warning = warn = error = critical = fatal = exception = log = msg


@functools.cache
def journal_sink() -> JournalSink | None:
    """The process's sink when stdout is the journal, else None. Decided
    once: a reload reconfigures the lines, not where they go."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no stdout, or one that is no file (a test's capture)
        return None
    if not stdout_is_journal(fd):
        return None
    return JournalSink(JournalSocket(os.environ.get(SOCKET_ENV) or SOCKET_PATH), sys.stdout)


def _console_renderer() -> Any:
    """structlog's console lines, control characters escaped, with what has no UTF-8 form (a lone
    surrogate from a DB's `\\udcXX` escape) escaped: printed as is, it
    would raise in the middle of a write and stop the daemon."""
    console = structlog.dev.ConsoleRenderer(colors=False)

    def render(logger: Any, name: str, event_dict: Any) -> str:
        # Names from the tree (subject, snapshot_id, path...) may hold ESC,
        # BEL or bidi controls: escaped, as `check` and the message do, so
        # a hostile dir name cannot drive the operator's terminal.
        for key, value in event_dict.items():
            if isinstance(value, str) and not value.isprintable():
                event_dict[key] = escape_controls(value)
        text: str = console(logger, name, event_dict)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")

    return render


def configure(
    fmt: str = "json",
    level: str = "info",
    stream: TextIO | None = None,
    journal: JournalSink | None = None,
) -> Any:
    """Configure structlog for the daemon and return its logger. Called
    again on SIGHUP with the new settings. Lines go to `journal` when given;
    else to `stream` when given; else to the journal when stdout is it, or
    to stdout."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps) if fmt == "json" else _console_renderer()
    )
    head: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    if journal is None and stream is None:
        journal = journal_sink()
    if journal is None:
        tail: Any = renderer
        factory: Any = structlog.PrintLoggerFactory(file=stream or sys.stdout)
    else:
        tail = _ForJournal(renderer)

        def notice(level: str, event: str, **fields: Any) -> tuple[str, Fields]:
            event_dict: Any = {**fields, "event": event}
            for processor in head:
                event_dict = processor(None, level, event_dict)
            (line,), kwargs = tail(None, level, event_dict)
            return line, kwargs["fields"]

        logger = _JournalLogger(journal, notice)
        factory = lambda *_args: logger  # noqa: E731
    structlog.configure(
        processors=[*head, tail],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger()
