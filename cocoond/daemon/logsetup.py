"""Log lines as the contract fixes them: one JSON object per line on stdout
with `timestamp` (RFC 3339, UTC), `level` and `event`, which journald keeps
and alert rules match; or readable console lines for a person."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from cocoond.output import json_line

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _dumps(obj: Any, **kw: Any) -> str:
    # Names from the DB may hold any character; keep them readable (UTF-8)
    # rather than \u-escaped, json still escapes control characters.
    return json_line(obj)[:-1]


def configure(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> Any:
    """Configure structlog for the daemon and return its logger. Called
    again on SIGHUP with the new settings."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger()
