"""Work whose cost grows with the tree, run off the loop's thread while the
loop's thread keeps the watchdog fed and watches for a stop.

A first load of a 1M-record snapshots.json takes ~25 s of CPU and the
listing of 1M data dirs more; a record-less dir of 1M files takes ~9 s to
walk for its last write. systemd kills a unit whose WATCHDOG=1 is later
than WatchdogSec= and SIGKILLs one that has not stopped TimeoutStopSec=
after SIGTERM. So such a step runs in a worker thread, and the loop's
thread waits for it in slices of SLICE seconds: between slices it sends
WATCHDOG=1 when due and, once a stop was asked for, gives up waiting
(`Abandoned`): the daemon then says goodbye and exits; the worker, a daemon
thread, dies with the process.

What makes this safe without locks: while a step runs, the loop's thread
does nothing but wait, ping and look at one flag; the step touches only the
index and the disk (never the lifecycle, the state file or the log, which
the loop's thread uses to shut down). Python's GIL is handed over every
sys.getswitchinterval() (5 ms), so the waiting thread gets to run however
busy the worker is."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How often the waiting thread looks at the watchdog and the stop flag.
SLICE = 0.1


class Abandoned(Exception):
    """A stop was asked for while a step ran: it was left to die with the process."""


class Offloader:
    """Runs steps in a worker thread; `beat()` between slices; stops
    waiting once `stopping()` says so."""

    def __init__(self, beat: Callable[[], None], stopping: Callable[[], bool]) -> None:
        self.beat = beat
        self.stopping = stopping
        #: Seconds the longest step took (for the log, the bench).
        self.longest = 0.0

    def run(self, step: Callable[[], T]) -> T:
        if threading.current_thread() is not threading.main_thread():
            return step()  # already in a worker (a walk inside a load)
        if self.stopping():
            raise Abandoned
        box: dict[str, object] = {}

        def work() -> None:
            try:
                box["value"] = step()
            except BaseException as exc:  # handed to the waiting thread as is
                box["error"] = exc

        started = time.monotonic()
        worker = threading.Thread(target=work, name="cocoond-step", daemon=True)
        worker.start()
        while True:
            worker.join(SLICE)
            if not worker.is_alive():
                break
            self.beat()
            if self.stopping():
                raise Abandoned
        self.longest = max(self.longest, time.monotonic() - started)
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]
