"""The daemon's gc plan (cocoond/core/gcmodel.py), its bytes measured off
the event loop: the loop makes the plan from its index (no I/O), one worker
thread walks its paths (`cocoond.cli.gcplan.measure`, bounded) and posts
`("gc_plan", GCTotals)` on the loop's queue. One job at a time; a request
while one runs is done once it ends, with the newest plan. Like the orphan
sizer, the worker is a daemon thread that a stop never waits for."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

from cocoond.cli.gcplan import measure
from cocoond.core import gcmodel
from cocoond.core.gcmodel import Plan
from cocoond.daemon.watch import signals_blocked

#: Longest one plan's walks take together (a cut walk is a lower bound).
PLAN_BUDGET_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class GCTotals:
    """What the metrics say of the plan."""

    #: Bytes per gc module (every module, 0 included).
    module_bytes: dict[str, int]
    #: A walk was cut: the bytes are a lower bound.
    partial: bool


class GCSizer:
    def __init__(self, out: queue.SimpleQueue[tuple[str, Any]]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._next: tuple[str, Plan] | None = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self, root: str, plan: Plan) -> None:
        """Measure `plan`; the answer arrives on the loop's queue."""
        if self._closed.is_set():
            return
        with self._lock:
            self._next = (root, plan)
        if self._thread is None:
            with signals_blocked():
                self._thread = threading.Thread(target=self._work, name="cocoond-gcplan", daemon=True)
                self._thread.start()
        self._wake.set()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()

    def _work(self) -> None:
        while not self._closed.is_set():
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                job, self._next = self._next, None
            if job is None or self._closed.is_set():
                continue
            sized = measure(*job, budget_seconds=PLAN_BUDGET_SECONDS)
            totals = GCTotals(sized.module_bytes(), sized.partial)
            if not self._closed.is_set():
                self._out.put(("gc_plan", totals))


def empty_totals() -> GCTotals:
    return GCTotals({m.name: 0 for m in gcmodel.MODULES}, False)
