"""An unexpected exception is a crash, said once at error, then an exit.

Without this, a bug in the loop ends the process with Python's traceback
on stderr: many lines, each a separate journal entry at the unit's default
priority (info), none of them JSON, and an exit status of 1 that looks
like any other failure. Instead: one structured `daemon.crashed` event at
error (priority 3 in the journal) with the exception and its traceback as
fields, then exit EX_SOFTWARE, which `Restart=on-failure` restarts (the
unit's RestartPreventExitStatus= names only 78 and 64).

A thread's uncaught exception (watchdog's emitter, the sizer) would
otherwise end that thread alone and leave the daemon running blind: it is
handed to the main loop, which raises it, so it is a crash too.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from cocoond.daemon.journald import stderr_prefix

#: sysexits.h EX_SOFTWARE: an internal error.
EX_SOFTWARE = 70
#: Longest traceback kept in the field (a log line stays far below
#: journald's 48 KiB line limit); the innermost frames are kept.
TRACEBACK_LIMIT = 12_000


class ThreadCrashed(RuntimeError):
    """A worker thread died of an exception: the daemon cannot go on."""


def describe(exc: BaseException) -> dict[str, str]:
    text = "".join(traceback.format_exception(exc))
    if len(text) > TRACEBACK_LIMIT:
        text = "...\n" + text[-TRACEBACK_LIMIT:]
    return {"error": f"{type(exc).__name__}: {exc}", "traceback": text}


def report(log: Any, exc: BaseException) -> int:
    """Log `daemon.crashed` and return the exit status. If logging itself
    fails, one line on stderr at crit instead: something must be heard."""
    fields = describe(exc)
    try:
        log.error("daemon.crashed", **fields)
    except Exception:  # the last word must get out somehow
        sys.stderr.write(f"{stderr_prefix(2)}cocoond: crashed: {fields['error']}\n")
        sys.stderr.flush()
    return EX_SOFTWARE


def report_threads(deliver: Callable[[BaseException], None]) -> Callable[[], None]:
    """Until the returned function is called, an exception that ends any
    thread is given to `deliver` (the main loop's queue), not only printed."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        error = ThreadCrashed(f"thread {name}: {args.exc_type.__name__}: {args.exc_value}")
        if args.exc_value is not None:
            error.__cause__ = args.exc_value
        deliver(error)

    threading.excepthook = hook

    def unhook() -> None:
        threading.excepthook = previous

    return unhook
