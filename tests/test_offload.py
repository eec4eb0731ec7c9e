"""daemon/offload.py: a step runs on the worker thread while the caller
beats between slices, and a stop makes the caller give up waiting."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from cocoond.daemon.offload import THREAD_NAME, Abandoned, Offloader


def test_step_runs_on_the_worker_and_its_value_or_error_comes_back() -> None:
    off = Offloader(beat=lambda: None, stopping=lambda: False)
    assert off.run(lambda: threading.current_thread().name) == THREAD_NAME

    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        off.run(boom)
    assert off.run(lambda: 42) == 42  # the worker survives an error


def test_caller_beats_while_the_step_runs_and_gives_up_on_stop() -> None:
    release = threading.Event()
    beats: list[int] = []
    stop = threading.Event()

    def beat() -> None:
        beats.append(1)
        if len(beats) == 3:
            stop.set()

    off = Offloader(beat=beat, stopping=stop.is_set)
    spins: list[int] = []

    def busy() -> None:
        while not release.is_set():
            spins.append(1)

    with pytest.raises(Abandoned):
        off.run(busy)
    assert len(beats) == 3
    # The abandoned step is interrupted: it stops spinning without being released.
    deadline = time.monotonic() + 10
    while True:
        before = len(spins)
        time.sleep(0.05)
        if len(spins) == before or time.monotonic() > deadline:
            break
    assert len(spins) == before
    release.set()
    with pytest.raises(Abandoned):  # stopped: nothing more runs
        off.run(lambda: 1)


def test_a_step_inside_a_step_runs_in_place() -> None:
    off = Offloader(beat=lambda: None, stopping=lambda: False)
    assert off.run(lambda: off.run(lambda: threading.current_thread().name)) == THREAD_NAME


def test_no_collection_during_a_step_and_its_objects_frozen_after() -> None:
    """A full collection is one C call over every container (about a
    second at 1M snapshots, the GIL held: no ping, no SIGTERM seen). A step
    runs with the collector off, and what it left alive (an index) is kept
    out of later collections."""
    off = Offloader(beat=lambda: None, stopping=lambda: False)
    gc.unfreeze()
    try:
        assert gc.isenabled()
        kept: list[tuple[int, list[int]]] = []
        assert off.run(lambda: gc.isenabled()) is False
        assert gc.isenabled()
        off.run(lambda: kept.extend((i, []) for i in range(100_000)))
        assert gc.isenabled()
        assert gc.get_freeze_count() >= 200_000  # the tuples and lists
        assert gc.get_count()[0] < 1000  # nothing of it left for the next collection
    finally:
        gc.unfreeze()
