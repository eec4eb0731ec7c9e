"""A real inotify queue overflow: the kernel drops events, watchdog only logs
it, and the daemon must rescan and find what the lost events would have
told it. The queue is made tiny for the daemon's inotify instance only
(max_queued_events is read when an instance is created, then restored)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.daemon_harness import Daemons, daemons_for, opened

SYSCTL = Path("/proc/sys/fs/inotify/max_queued_events")
DIRS = 3000


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


@pytest.fixture
def tiny_inotify_queue() -> Iterator[None]:
    if not os.access(SYSCTL, os.W_OK):
        pytest.skip(f"{SYSCTL} is not writable here (needs root outside a read-only /proc/sys)")
    saved = SYSCTL.read_text()
    try:
        SYSCTL.write_text("16\n")
    except OSError as exc:
        pytest.skip(f"cannot set {SYSCTL}: {exc}")
    try:
        yield
    finally:
        SYSCTL.write_text(saved)


def test_overflow_triggers_a_rescan_that_finds_what_was_lost(
    daemons: Daemons, sim: ModuleType, root: Path, tiny_inotify_queue: None
) -> None:
    sim.init(str(root))
    daemon = daemons.start(root)  # the timer rescan is off: only the overflow can find the lost ones
    daemon.wait_ready()
    SYSCTL.write_text("16384\n")  # only the daemon's instances needed the tiny queue

    localfile = root / "snapshot" / "localfile"
    names = [f"ORPHAN{i:05d}" for i in range(DIRS)]
    for name in names:
        os.mkdir(localfile / name)

    rescan = daemon.wait_event("watch.rescan", reason="overflow")
    assert rescan["level"] == "warning", rescan
    # Every orphan opens, including those whose events the kernel dropped.
    lines = daemon.wait_count(opened("orphan_data_dir"), DIRS)
    assert {line["subject"] for line in lines} == set(names)
