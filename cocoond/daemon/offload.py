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
thread, is interrupted at its next bytecode and dies with the process.

What makes this safe without locks: while a step runs, the loop's thread
does nothing but wait, ping and look at one flag; the step touches only the
index and the disk (never the lifecycle, the state file or the log, which
the loop's thread uses to shut down). Python's GIL is handed over every
sys.getswitchinterval() (5 ms), so the waiting thread gets to run however
busy the worker is."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from cocoond.daemon.watch import signals_blocked

T = TypeVar("T")

#: How often the waiting thread looks at the watchdog and the stop flag.
SLICE = 0.1


class Abandoned(Exception):
    """A stop was asked for while a step ran: it was left to die with the process."""


class Offloader:
    """Runs steps on one worker thread (named `cocoond-step` for ps/top);
    `beat()` between slices; stops waiting once `stopping()` says so."""

    def __init__(self, beat: Callable[[], None], stopping: Callable[[], bool]) -> None:
        self.beat = beat
        self.stopping = stopping
        self._todo: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def run(self, step: Callable[[], T]) -> T:
        if threading.current_thread() is not threading.main_thread():
            return step()  # already in a worker (a walk inside a load)
        if self.stopping():
            raise Abandoned
        if self._worker is None:
            self._worker = threading.Thread(target=_work, args=(self._todo,), name=THREAD_NAME, daemon=True)
            with signals_blocked():  # SIGTERM must reach the waiting main thread
                self._worker.start()
        job = _Job(step)
        with _no_collection():
            self._todo.put(job)
            while not job.done.wait(SLICE):
                self.beat()
                if self.stopping():
                    _interrupt(self._worker)
                    raise Abandoned
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic collection while a step runs, and what it built (a 1M-record
    index: millions of tuples and dicts) kept out of every later one
    (gc.freeze). A full collection walks every container the process holds
    in one C call that keeps the GIL: at 1M snapshots about a second, during
    which neither the waiting thread nor the loop can ping or see a SIGTERM.
    The index holds no reference cycles, so nothing frozen here is garbage
    the collector would have found; the objects are still freed by their
    reference counts when a reload replaces them."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        freeze_heap()
        if collecting:
            gc.enable()


def freeze_heap() -> None:
    """Move every object alive now out of the cyclic collector's sight
    (gc.freeze, O(1)). The daemon's long-lived state (1M records, dirs,
    claims at 1M snapshots) holds no reference cycles, and a collection
    that walks it holds the GIL for about a second: the loop's thread could
    neither ping nor see a SIGTERM, and exiting took as long (the
    interpreter's last collection). The collector keeps working on what is
    made afterwards; what it gives up is cyclic garbage formed from objects
    alive at a freeze (none of the index's). Called after every step, every
    slice of data-dir reading, and before exit."""
    gc.freeze()


#: The worker's name, also as the OS sees it (/proc/PID/task/TID/comm).
THREAD_NAME = "cocoond-step"


class _Job:
    __slots__ = ("done", "error", "step", "value")

    def __init__(self, step: Callable[[], object]) -> None:
        self.step = step
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None


def _work(todo: queue.SimpleQueue[_Job]) -> None:
    _name_os_thread(THREAD_NAME)
    while True:
        # An interruption that lands outside a step (it had just finished)
        # must not end the thread: that would be reported as a crash.
        with contextlib.suppress(_Interrupted):
            job = todo.get()
            try:
                job.value = job.step()
            except BaseException as exc:  # handed to the waiting thread as is
                job.error = exc
            job.done.set()


class _Interrupted(BaseException):
    """Raised in the worker when its step is abandoned."""


def _interrupt(worker: threading.Thread) -> None:
    """Stop the abandoned step at its next bytecode (PyThreadState_SetAsyncExc),
    so that it stops taking half of the GIL from the shutdown (at 1M
    snapshots that made SIGTERM take 1.9 s instead of under 1 s). The
    index it was changing is left as it is: the daemon is exiting."""
    if worker.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(worker.ident), ctypes.py_object(_Interrupted)
        )


def _name_os_thread(name: str) -> None:
    """prctl(PR_SET_NAME): the name top, ps -L and /proc show."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)
