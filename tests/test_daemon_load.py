"""`cocoond run` under cocoon's real write patterns, with the default settle
(2 s): a churn of legitimate operations and a bulk import of 5,000 snapshots
open nothing above info."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import run_sim
from tests.daemon_harness import (
    DaemonProcess,
    Daemons,
    LogLine,
    above_info,
    daemons_for,
    lifecycle_errors,
    opened,
)

DEFAULT_SETTLE = 2.0
#: The contract's defaults for [watch], except no periodic rescan during the test.
DEFAULT_WATCH = {"full_rescan_seconds": 0}


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def sentinel(daemon: DaemonProcess, sim: ModuleType, root: Path) -> tuple[LogLine, LogLine]:
    """Inject an orphan dir after the activity under test and wait for its
    finding plus more than a settle window: whatever the activity left
    behind that would open has opened by then, so the log before the
    bound is final. Returns (the sentinel's finding.opened, the bound)."""
    fault = sim.inject(str(root), "orphan-dir")
    line = daemon.wait_for(opened("orphan_data_dir", fault["subject"]), what="the sentinel's finding")
    # A heartbeat arriving a settle window later bounds the observation.
    bound = daemon.wait_for(
        lambda x: x.matches("daemon.heartbeat") and x.arrived > line.arrived + DEFAULT_SETTLE + 0.2,
        since=line.index,
        what="a heartbeat one settle window after the sentinel",
    )
    return line, bound


def test_churn_opens_nothing_above_info(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    daemon = daemons.start(
        root, {"watch": DEFAULT_WATCH, "alerts": {"heartbeat_seconds": 0.5, "reminder_seconds": 0}}
    )
    daemon.wait_ready()
    daemon.wait_event("index.loaded")

    counts = run_sim(root, "churn", "--seconds", "10")
    assert '"create"' in counts, counts
    mark, bound = sentinel(daemon, sim, root)

    before = daemon.lines[: bound.index]
    loud = [x for x in before if above_info(x) and x is not mark]
    assert loud == [], "\n".join(x.raw for x in loud)

    # Every pending that opened during the churn was resolved once its create finished.
    pending = {x["subject"] for x in before if x.matches("finding.opened", kind="pending")}
    done = {x["subject"] for x in before if x.matches("finding.resolved", kind="pending")}
    assert pending <= done, pending - done
    assert lifecycle_errors(daemon.lines) == []
    assert daemon.stop()[0] == 0


def test_bulk_import_of_5000_snapshots_opens_no_orphans(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    """populate writes 5,000 data dirs, then the DB once: every dir is an
    orphan until that last write, which the settle (extended while the
    burst lasts) must absorb."""
    sim.init(str(root))
    daemon = daemons.start(
        root, {"watch": DEFAULT_WATCH, "alerts": {"heartbeat_seconds": 0.5, "reminder_seconds": 0}}
    )
    daemon.wait_ready()
    start = daemon.wait_event("index.loaded")

    run_sim(root, "populate", "--snapshots", "5000", "--images", "5")
    loaded = daemon.wait_for(
        lambda x: x.matches("index.loaded") and x.get("snapshots", 0) >= 5000,
        since=start.index + 1,
        timeout=60,
        what="index.loaded with the 5,000 snapshots",
    )
    assert loaded["names"] == 5000, loaded
    assert loaded["blobs"] == 3 + 1 + 2, (
        loaded
    )  # 3 cloud images; 2 OCI images of a shared base layer and their own
    mark, bound = sentinel(daemon, sim, root)

    before = daemon.lines[: bound.index]
    flood = [
        x
        for x in before
        if x.get("event") == "finding.opened"
        and x["kind"] in ("orphan_data_dir", "missing_data_dir")
        and x is not mark
    ]
    assert flood == [], f"{len(flood)} dir findings, e.g.\n" + "\n".join(x.raw for x in flood[:5])
    assert [x for x in before if above_info(x) and x is not mark] == []
    assert lifecycle_errors(daemon.lines) == []
    assert daemon.stop()[0] == 0
