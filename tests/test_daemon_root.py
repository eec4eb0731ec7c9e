"""`cocoond run` and its root: one that appears after the start, one removed
and recreated under it, and the promise that it only ever reads."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import FAULTS, file_content
from tests.daemon_harness import WAIT, Daemons, daemons_for, opened, resolved


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def test_root_created_after_start(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    assert not root.exists() and root.parent.is_dir()
    daemon = daemons.start(root)
    ready = daemon.wait_ready()
    assert ready.fields.get("STATUS"), ready
    assert daemon.proc.poll() is None

    sim.init(str(root))
    fault = sim.inject(str(root), "orphan-dir")
    line = daemon.wait_for(opened("orphan_data_dir", fault["subject"]))
    assert line["path"] == os.path.join(str(root), "snapshot", "localfile", fault["subject"]), line

    # The watches follow the new tree: a later event, not only the rescan, is seen.
    second = sim.inject(str(root), "missing-dir")
    daemon.wait_for(opened("missing_data_dir", second["subject"]), since=line.index)


def test_root_removed_and_recreated(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    daemon = daemons.start(root)
    daemon.wait_ready()
    first = sim.inject(str(root), "orphan-dir")
    opened_first = daemon.wait_for(opened("orphan_data_dir", first["subject"]))

    shutil.rmtree(root)
    # Unseen, not empty: one error, and what was open stays open (unknown).
    unseen = daemon.wait_for(opened("root_unseen", str(root)), since=opened_first.index)
    assert "does not exist" in unseen["message"], unseen
    sim.init(str(root))
    second = sim.inject(str(root), "orphan-dir")
    line = daemon.wait_for(opened("orphan_data_dir", second["subject"]), since=opened_first.index)
    # Back: the old orphan is gone from the new tree, so it resolves now.
    back = daemon.wait_for(resolved("root_unseen", str(root)), since=unseen.index)
    gone = daemon.wait_for(resolved("orphan_data_dir", first["subject"]), since=unseen.index)
    assert gone.index > back.index, "resolved while the root could not be seen"

    # And events in the recreated tree keep arriving.
    third = sim.inject(str(root), "dangling-name")
    daemon.wait_for(opened("dangling_name", third["subject"]), since=line.index)
    assert daemon.proc.poll() is None
    assert daemon.stop()[0] == 0


def test_root_removed_and_recreated_at_once(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    """rmtree and init back to back (a restore from backup): the daemon must
    end up watching the new tree, whichever state it saw in between."""
    sim.init(str(root))
    daemon = daemons.start(root)
    daemon.wait_ready()
    for _ in range(3):
        shutil.rmtree(root)
        sim.init(str(root))
    mark = daemon.mark()
    fault = sim.inject(str(root), "orphan-dir")
    daemon.wait_for(opened("orphan_data_dir", fault["subject"]), since=mark)
    fault = sim.inject(str(root), "missing-dir")
    daemon.wait_for(opened("missing_data_dir", fault["subject"]), since=mark)


def tree_state(root: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """Every path under (and including) root: mode, size, mtime_ns and the
    bytes of regular files (a symlink's target)."""
    state: dict[str, tuple[int, int, int, bytes | None]] = {}
    for current, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = os.path.normpath(os.path.join(current, name))
            st = os.lstat(path)
            body: bytes | None = None
            if stat.S_ISREG(st.st_mode):
                body = file_content(path)
            elif stat.S_ISLNK(st.st_mode):
                body = os.fsencode(os.readlink(path))
            state[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, body)
    return state


def test_tree_is_byte_identical_after_a_run(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    sim.create(str(root), name="fine")
    hex_ = sim.pull_image(str(root))
    sim.create(str(root), blobs=[hex_])
    for fault in FAULTS:
        if fault != "corrupt-db":
            sim.inject(str(root), fault)
    stray = root / "cloudimg" / "temp" / ".tmp-deadbeef.qcow2"
    stray.write_bytes(b"partial")
    os.utime(stray, (1, 1))  # a download that died long ago: stale_temp
    # Cocoon creates its lock files on first use; the daemon must not.
    os.remove(sim.snapshot_lock(str(root)))
    os.remove(sim.cloudimg_lock(str(root)))
    before = tree_state(root)

    daemon = daemons.start(root, overrides={"watch": {"full_rescan_seconds": 0.5}})
    daemon.wait_ready()
    daemon.wait_event("finding.opened", kind="orphan_data_dir")
    daemon.wait_event("finding.opened", kind="stale_temp")
    daemon.wait_event("watch.rescan", reason="timer")
    rc, _ = daemon.stop()
    assert rc == 0

    after = tree_state(root)
    assert not os.path.exists(sim.snapshot_lock(str(root)))
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == set(), {k: (before.get(k), after.get(k)) for k in sorted(changed)}


def test_root_swapped_for_an_empty_dir_metrics_and_status(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    """The tree moved away and an empty dir in its place (what an unmount
    leaves): one root_unseen error, cocoond_root_ok 0, the last-scan time
    frozen, STATUS says so, and the open finding neither resolves nor opens
    again when the tree comes back."""
    from tests.test_daemon_metrics import read, wait_file

    sim.populate(str(root), snapshots=5, images=1)
    prom = tmp_path / "prom" / "cocoond.prom"
    prom.parent.mkdir()
    daemon = daemons.start(
        root,
        overrides={
            "metrics": {"textfile": str(prom)},
            "watch": {"full_rescan_seconds": 0.3},
            "alerts": {"heartbeat_seconds": 0.3},
        },
        env={"STATE_DIRECTORY": str(tmp_path / "state")},
    )
    daemon.wait_ready()
    fault = sim.inject(str(root), "missing-dir")
    first = daemon.wait_for(opened("missing_data_dir", fault["subject"]))
    wait_file(prom, lambda s: s.get(("cocoond_root_ok", ())) == 1, "root_ok 1")

    away = tmp_path / "away"
    root.rename(away)
    root.mkdir()
    unseen = daemon.wait_for(opened("root_unseen", str(root)), since=first.index)
    assert "is empty" in unseen["message"] and "6 snapshots" in unseen["message"], unseen["message"]
    frozen = wait_file(prom, lambda s: s.get(("cocoond_root_ok", ())) == 0, "root_ok 0")
    scanned = frozen[("cocoond_last_full_scan_timestamp_seconds", ())]
    daemon.wait_notify(lambda d: "CANNOT SEE" in d.fields.get("STATUS", ""))
    mark = daemon.mark()
    # Rescans keep running (every 0.3 s) but read nothing; the heartbeats
    # rewrite the file: the last full scan's time stays where it was.
    written = prom.stat().st_mtime_ns
    daemon.wait_count(lambda line: line.matches("watch.rescan", reason="timer"), 3, since=mark)
    daemon.wait_count(lambda line: line.matches("daemon.heartbeat"), 3, since=mark)
    deadline = time.monotonic() + WAIT
    while prom.stat().st_mtime_ns == written and time.monotonic() < deadline:
        time.sleep(0.05)
    assert prom.stat().st_mtime_ns != written, "the file was not rewritten"
    assert read(prom)[("cocoond_last_full_scan_timestamp_seconds", ())] == scanned

    root.rmdir()
    away.rename(root)
    daemon.wait_for(resolved("root_unseen", str(root)), since=mark)
    wait_file(prom, lambda s: s.get(("cocoond_root_ok", ())) == 1, "root_ok 1 again")
    later = daemon.mark()
    second = sim.inject(str(root), "orphan-dir")
    daemon.wait_for(opened("orphan_data_dir", second["subject"]), since=later)
    assert not daemon.events("finding.resolved", kind="missing_data_dir")
    assert len(daemon.events("finding.opened", kind="missing_data_dir")) == 1


def test_restart_while_the_root_is_missing(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    """Stopped with findings open, started again while the root is gone:
    root_unseen, the saved findings kept (none resolved, still in the state
    file), and once the root is back they carry on without a second
    `opened`."""
    sim.populate(str(root), snapshots=5, images=1)
    state = tmp_path / "state"
    env = {"STATE_DIRECTORY": str(state)}
    first = daemons.start(root, env=env)
    first.wait_ready()
    fault = sim.inject(str(root), "missing-dir")
    was = first.wait_for(opened("missing_data_dir", fault["subject"]))
    assert first.stop()[0] == 0
    away = tmp_path / "away"
    root.rename(away)

    second = daemons.start(root, env=env)
    second.wait_ready()
    unseen = second.wait_for(opened("root_unseen", str(root)))
    assert "does not exist" in unseen["message"] and "6 snapshots" in unseen["message"], unseen["message"]
    assert second.stop()[0] == 0
    saved = json.loads((state / "findings.json").read_text())
    assert {(e["kind"], e["subject"]) for e in saved["open"]} == {
        ("missing_data_dir", fault["subject"]),
        ("root_unseen", str(root)),
    }
    assert not second.events("finding.resolved")

    third = daemons.start(root, env=env)
    third.wait_ready()
    third.wait_event("finding.reminder", kind="root_unseen")
    mark = third.mark()
    away.rename(root)
    third.wait_for(resolved("root_unseen", str(root)), since=mark)
    reminder = third.wait_event("finding.reminder", kind="missing_data_dir")
    # Its original opening, not the root's return (to within the log line's own delay).
    opened_at = datetime.fromisoformat(reminder["opened_at"])
    assert abs((opened_at - datetime.fromisoformat(was["timestamp"])).total_seconds()) < 1.0, reminder
    assert not third.events("finding.opened") and not third.events(
        "finding.resolved", kind="missing_data_dir"
    )
