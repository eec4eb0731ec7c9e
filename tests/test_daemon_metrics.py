"""`cocoond run` keeps its Prometheus textfile current: after a finding
opens or resolves, at each heartbeat, and always whole (a reader racing the
writes never sees part of a file). promtool accepts what it writes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest

from cocoond import __version__
from tests.daemon_harness import WAIT, DaemonProcess, Daemons, daemons_for, opened, resolved
from tests.promtool import Samples, run_promtool, samples, value

T = TypeVar("T")
#: Between two looks at the file while polling it (the wait itself has a deadline).
POLL = 0.02


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


@pytest.fixture
def prom(tmp_path: Path) -> Path:
    directory = tmp_path / "textfile_collector"
    directory.mkdir()
    return directory / "cocoond.prom"


def poll(find: Callable[[], T | None], what: str, daemon: DaemonProcess, timeout: float = WAIT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{daemon.describe()}")
        time.sleep(POLL)


def read(prom: Path) -> Samples | None:
    try:
        return samples(prom.read_text())
    except FileNotFoundError:
        return None


def metrics_where(prom: Path, daemon: DaemonProcess, what: str, check: Callable[[Samples], bool]) -> Samples:
    return poll(lambda: found if (found := read(prom)) is not None and check(found) else None, what, daemon)


def identity(st: os.stat_result) -> tuple[int, int]:
    """Which file a path names now: a freed inode number is soon reused by
    the next temp file, so the number alone repeats; with mtime it does not."""
    return (st.st_ino, st.st_mtime_ns)


def open_count(found: Samples, kind: str, severity: str) -> float | None:
    return value(found, "cocoond_findings_open", kind=kind, severity=severity)


def test_textfile_follows_findings_heartbeats_and_sizes(
    daemons: Daemons, sim: ModuleType, root: Path, prom: Path
) -> None:
    sim.init(str(root))
    sim.create(str(root), name="healthy")
    before = time.time()
    daemon = daemons.start(
        root, overrides={"metrics": {"textfile": str(prom)}, "alerts": {"heartbeat_seconds": 0.5}}
    )
    daemon.wait_ready()
    loaded = daemon.wait_event("index.loaded", snapshots=1)
    first = metrics_where(prom, daemon, "the first write", lambda m: value(m, "cocoond_snapshots") == 1)
    assert value(first, "cocoond_build_info", version=__version__) == 1
    assert value(first, "cocoond_blobs") == 0
    scanned = value(first, "cocoond_last_full_scan_timestamp_seconds")
    assert scanned is not None and before <= scanned <= time.time()
    load = value(first, "cocoond_index_load_seconds")
    assert load is not None and abs(load * 1000 - loaded["duration_ms"]) < 0.1
    assert sum(v for (name, _), v in first.items() if name == "cocoond_findings_open") == 0

    # Heartbeats alone rewrite it (nothing else happens in this quiet tree).
    written = identity(os.stat(prom))
    mark = daemon.mark()
    daemon.wait_count(lambda x: x.matches("daemon.heartbeat"), 2, since=mark, what="heartbeats")
    poll(lambda: True if identity(os.stat(prom)) != written else None, "a rewrite at a heartbeat", daemon)

    # An error finding opens, then resolves.
    fault = sim.inject(str(root), "missing-dir")
    daemon.wait_for(opened("missing_data_dir", fault["subject"]))
    metrics_where(prom, daemon, "it open", lambda m: open_count(m, "missing_data_dir", "error") == 1)
    sim.write_snapshot_files(sim.data_dir(str(root), fault["subject"]))
    daemon.wait_for(resolved("missing_data_dir", fault["subject"]))
    metrics_where(prom, daemon, "it resolved", lambda m: open_count(m, "missing_data_dir", "error") == 0)

    # What gc would free: the bytes the findings report, once known.
    blob = daemon.wait_for(opened("unreferenced_blob", sim.inject(str(root), "unreferenced-blob")["subject"]))
    orphan = daemon.wait_for(opened("orphan_data_dir", sim.inject(str(root), "orphan-dir")["subject"]))
    assert blob["bytes"] > 0 and orphan["bytes"] > 0
    sized = metrics_where(
        prom,
        daemon,
        "reclaimable bytes",
        lambda m: value(m, "cocoond_reclaimable_bytes", kind="orphan_data_dir") == orphan["bytes"],
    )
    assert value(sized, "cocoond_reclaimable_bytes", kind="unreferenced_blob") == blob["bytes"]
    assert value(sized, "cocoond_reclaimable_bytes_exact", kind="orphan_data_dir") == 1
    assert open_count(sized, "orphan_data_dir", "warning") == 1
    assert open_count(sized, "unreferenced_blob", "info") == 1
    assert value(sized, "cocoond_blobs") == 1

    pending = sim.inject(str(root), "fresh-pending")
    daemon.wait_for(opened("pending", pending["subject"]))
    metrics_where(prom, daemon, "a pending record", lambda m: value(m, "cocoond_pending_snapshots") == 1)

    checked = run_promtool("check", "metrics", stdin=prom.read_bytes())
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), checked
    assert daemon.stop()[0] == 0
    # No temp file is left behind (one may exist while a write is under way).
    assert sorted(p.name for p in prom.parent.iterdir()) == ["cocoond.prom"]


def test_a_reader_never_sees_a_partial_file(
    daemons: Daemons, sim: ModuleType, root: Path, prom: Path
) -> None:
    """A heartbeat every 0.1 s rewrites the file; a reader reading it as
    fast as it can must always get a whole one (every family, down to the
    last line), across many rewrites."""
    sim.init(str(root))
    for i in range(3):
        sim.create(str(root), name=f"vm-{i}")
    daemon = daemons.start(
        root, overrides={"metrics": {"textfile": str(prom)}, "alerts": {"heartbeat_seconds": 0.1}}
    )
    daemon.wait_ready()
    whole = metrics_where(prom, daemon, "the first write", lambda m: value(m, "cocoond_snapshots") == 3)
    seen: list[tuple[int, int]] = []  # each file read, when it differs from the one before
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                with open(prom, "rb") as f:
                    now = identity(os.fstat(f.fileno()))
                    if not seen or seen[-1] != now:
                        seen.append(now)
                    text = f.read().decode()
            except FileNotFoundError:
                bad.append("the file was missing for a moment")
                continue
            try:
                found = samples(text)
            except ValueError as exc:
                bad.append(f"unparsable: {exc}: {text[-200:]!r}")
                continue
            if found.keys() != whole.keys():
                bad.append(f"other series: {sorted(set(whole) ^ set(found))[:3]}")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        poll(lambda: True if len(seen) >= 30 or bad else None, "30 rewrites", daemon)
    finally:
        stop.set()
        thread.join(10)
    assert bad == []
    assert daemon.stop()[0] == 0
