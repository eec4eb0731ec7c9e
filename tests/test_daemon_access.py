"""The daemon is not blind after a permission fix (issue 10 item 5): a watch
the kernel refuses is logged once (`watch.failed`), retried on a backoff
timer, and a chmod of a watched directory re-arms the watches and rescans,
so with `full_rescan_seconds = 0` a fixed directory is watched again and a
new orphan in it is seen.

The daemon runs without the power to bypass file modes
(tests/unprivileged.py), so a mode-0 directory is as closed to it as to
any user."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.daemon_harness import (
    DaemonProcess,
    Daemons,
    LogLine,
    daemons_for,
    lifecycle_errors,
    opened,
    resolved,
)
from tests.unprivileged import require_unprivileged, unprivileged


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    require_unprivileged()
    with daemons_for(tmp_path) as pool:
        yield pool


def start(daemons: Daemons, root: Path) -> DaemonProcess:
    """FAST_CONFIG: no periodic rescan, so only events and retries can see a fix."""
    daemon = daemons.start(root, launch=unprivileged)
    daemon.wait_ready()
    return daemon


def sees_a_new_orphan(daemon: DaemonProcess, root: Path, name: str) -> None:
    since = daemon.mark()
    orphan = root / "snapshot" / "localfile" / name
    orphan.mkdir()
    (orphan / "memory-range-0").write_bytes(b"x" * 4096)
    daemon.wait_for(opened("orphan_data_dir", name), since=since)


def failures(daemon: DaemonProcess, directory: Path) -> list[LogLine]:
    return daemon.events("watch.failed", dir=str(directory))


def assert_told_once_and_never_spun(daemon: DaemonProcess, directory: Path) -> None:
    """One watch.failed however many retries, and no rescan loop (a failed
    watch used to queue a rescan that re-armed, failed and queued again)."""
    assert len(failures(daemon, directory)) == 1, daemon.describe()
    assert [line for line in daemon.events("watch.rescan") if "watch_error" in str(line.get("reason"))] == []
    assert lifecycle_errors(daemon.lines) == []


def test_started_while_localfile_is_unreadable_then_fixed(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    sim.create(str(root), name="healthy")
    localfile = root / "snapshot" / "localfile"
    os.chmod(localfile, 0o000)
    daemon = start(daemons, root)
    failed = daemon.wait_event("watch.failed", dir=str(localfile))
    assert failed["level"] == "warning" and failed["error"] == "Permission denied"
    since = daemon.mark()
    os.chmod(localfile, 0o750)  # seen on snapshot/'s watch as an attribute change
    daemon.wait_event("watch.restored", dir=str(localfile), since=since)
    daemon.wait_event("watch.rescan", reason="attributes_changed", since=since)
    sees_a_new_orphan(daemon, root, "NEWORPHAN")
    # Unreadable is unknown, never missing: the healthy snapshot was never reported.
    assert daemon.events("finding.opened", kind="missing_data_dir") == []
    assert_told_once_and_never_spun(daemon, localfile)


def test_started_while_the_root_is_unreadable_the_retry_sees_the_fix(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    """Nothing watches the root's parent, so no event tells of this chmod:
    the retry timer must."""
    sim.create(str(root), name="healthy")
    os.chmod(root, 0o000)
    daemon = start(daemons, root)
    daemon.wait_event("watch.failed", dir=str(root))
    # A root it cannot read is unseen (issue 18): one error saying why.
    unseen = daemon.wait_for(opened("root_unseen", str(root)))
    assert "cannot read it (Permission denied)" in unseen["message"], unseen
    since = daemon.mark()
    os.chmod(root, 0o750)
    daemon.wait_event("watch.restored", dir=str(root), since=since)
    daemon.wait_for(resolved("root_unseen", str(root)), since=since)
    daemon.wait_event("watch.rescan", reason="watch_restored", since=since)
    sees_a_new_orphan(daemon, root, "NEWORPHAN")
    assert_told_once_and_never_spun(daemon, root)


def test_a_watched_dir_made_unreadable_and_readable_again(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    sim.create(str(root), name="healthy")
    localfile = root / "snapshot" / "localfile"
    daemon = start(daemons, root)
    sees_a_new_orphan(daemon, root, "FIRST")
    since = daemon.mark()
    os.chmod(localfile, 0o000)  # its own watch and its parent's report the chmod
    daemon.wait_event("watch.rescan", reason="attributes_changed", since=since)
    daemon.wait_event("watch.failed", dir=str(localfile), since=since)
    since = daemon.mark()
    os.chmod(localfile, 0o750)
    daemon.wait_event("watch.restored", dir=str(localfile), since=since)
    sees_a_new_orphan(daemon, root, "SECOND")
    assert daemon.events("finding.opened", kind="missing_data_dir") == []
    assert_told_once_and_never_spun(daemon, localfile)


def test_data_dirs_it_may_not_read_are_one_warning_until_fixed(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    """cocoon writes data dirs 0750 as root: a daemon without the power to
    read them cannot tell whether they would restore. It says so once for
    all of them (never `incomplete_data_dir`), and looks again after a chmod."""
    closed = [sim.create(str(root), name=f"closed-{i}") for i in range(2)]
    sim.create(str(root), name="open")
    for sid in closed:
        os.chmod(sim.data_dir(str(root), sid), 0o000)
    daemon = start(daemons, root)
    line = daemon.wait_for(opened("dir_unreadable", "snapshot/localfile/*"))
    assert line["level"] == "warning" and "cannot read 2 data dirs" in str(line["message"]), line
    since = daemon.mark()
    for sid in closed:
        os.chmod(sim.data_dir(str(root), sid), 0o750)
    daemon.wait_event("finding.resolved", kind="dir_unreadable", subject="snapshot/localfile/*", since=since)
    assert daemon.events("finding.opened", kind="incomplete_data_dir") == []
    assert daemon.events("finding.opened", kind="missing_data_dir") == []
    assert lifecycle_errors(daemon.lines) == []
