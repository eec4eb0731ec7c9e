"""`cocoond run` end to end on the rules that need the daemon's own care:
a snapshot import still being written is not an orphan, a restore preflight
failure is seen when a create commits, an unreadable snapshots.json freezes
what depends on it, and `index.loaded` is logged only when something
changed."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, Daemons, LogLine, daemons_for, opened, resolved

SETTLE = 0.3


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def started(daemons: Daemons, root: Path, **overrides: Any) -> DaemonProcess:
    config: dict[str, Any] = {
        "watch": {"settle_seconds": SETTLE, "debounce_seconds": 0.05},
        "alerts": {"heartbeat_seconds": 0.5},
    }
    for table, values in overrides.items():
        config.setdefault(table, {}).update(values)
    daemon = daemons.start(root, overrides=config)
    daemon.wait_ready()
    return daemon


def old_temp(root: Path, name: str) -> str:
    """A temp file an interrupted write left an hour ago: its stale_temp
    finding does not depend on snapshots.json, so it serves as a marker
    that the daemon has processed everything written before it."""
    relpath = f"cloudimg/temp/pull-{name}.img"
    path = root / relpath
    path.write_bytes(b"x")
    long_ago = time.time() - 7200
    os.utime(path, (long_ago, long_ago))
    return relpath


def marker(daemon: DaemonProcess, root: Path, name: str) -> LogLine:
    """Wait until a fresh marker finding opened, plus a settle window, so
    whatever was going to open from earlier work has opened."""
    line = daemon.wait_for(opened("stale_temp", old_temp(root, name)), what=f"marker {name}")
    # A heartbeat arriving a few settle windows later bounds the observation.
    return daemon.wait_for(
        lambda x: x.matches("daemon.heartbeat") and x.arrived > line.arrived + 3 * SETTLE,
        since=line.index,
        what="a heartbeat after the marker",
    )


def opened_since(daemon: DaemonProcess, since: int, kinds: set[str]) -> list[LogLine]:
    return [x for x in daemon.lines[since:] if x.get("event") == "finding.opened" and x.get("kind") in kinds]


def test_an_import_still_writing_is_not_an_orphan(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    """`cocoon snapshot import` fills the dir before it writes the record,
    for as long as the archive takes: no orphan may open meanwhile, however
    much longer than settle (and its burst cap) that is."""
    sim.init(str(root))
    settle = 0.6  # a writer stalled this long on a loaded machine would look finished
    daemon = started(daemons, root, watch={"settle_seconds": settle})
    start = len(daemon.lines)
    sid = sim.new_id()
    data = root / "snapshot" / "localfile" / sid
    data.mkdir(mode=0o750)
    memory = data / "memory-ranges"
    until = time.monotonic() + 11 * settle  # past the 10x settle burst cap
    with open(memory, "wb") as f:
        while time.monotonic() < until:  # the import's writer, at its own pace
            f.write(b"\0" * 4096)
            f.flush()
            os.utime(memory)  # keep the entry's mtime moving on a coarse clock
            time.sleep(0.05)
    sim.write_snapshot_files(str(data))
    with sim.flock(sim.snapshot_lock(str(root))):
        idx = sim.load_snapshots(str(root))
        idx["snapshots"][sid] = sim.record(sid, "imported", ddir=str(data))
        idx["names"]["imported"] = sid
        sim.atomic_write_json(sim.snapshot_db(str(root)), idx)
    marker(daemon, root, "import")
    assert opened_since(daemon, start, {"orphan_data_dir", "missing_data_dir", "incomplete_data_dir"}) == []


def test_a_dir_left_behind_still_becomes_an_orphan(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    daemon = started(daemons, root)
    sid = sim.new_id()
    sim.write_snapshot_files(str(root / "snapshot" / "localfile" / sid))
    daemon.wait_for(opened("orphan_data_dir", sid), what="the orphan, once quiet")


def test_a_commit_with_an_incomplete_dir_opens_incomplete_data_dir(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    sim.init(str(root))
    daemon = started(daemons, root, watch={"full_rescan_seconds": 1.0})
    sid = sim.create(str(root), name="half", crash_at="pending")
    data = Path(sim.data_dir(str(root), sid))
    sim.write_snapshot_files(str(data))
    (data / "state.json").unlink()  # the extract died half-way...
    with sim.flock(sim.snapshot_lock(str(root))):  # ...and someone committed it anyway
        idx = sim.load_snapshots(str(root))
        idx["snapshots"][sid].pop("pending")
        sim.atomic_write_json(sim.snapshot_db(str(root)), idx)
    line = daemon.wait_for(opened("incomplete_data_dir", sid), what="incomplete_data_dir")
    assert "state.json is missing" in line["message"]
    # Repaired inside the dir (no event reaches a non-recursive watch): the
    # safety-net rescan sees it.
    (data / "state.json").write_text("{}")
    daemon.wait_for(resolved("incomplete_data_dir", sid), timeout=10, what="resolved at the rescan")


def test_while_the_db_is_unreadable_nothing_else_opens(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    keep = sim.create(str(root), name="keep")
    gone = sim.create(str(root), name="gone")
    good = (root / "snapshot/db/snapshots.json").read_bytes()
    daemon = started(daemons, root)
    start = len(daemon.lines)
    sim.inject(str(root), "corrupt-db")
    daemon.wait_for(opened("db_unreadable", "snapshot/db/snapshots.json"), what="db_unreadable")
    # Work goes on meanwhile: a delete removes its dir, a create makes one.
    shutil.rmtree(sim.data_dir(str(root), gone))
    new = sim.new_id()
    sim.write_snapshot_files(sim.data_dir(str(root), new))
    marker(daemon, root, "frozen")
    dependent = {
        "orphan_data_dir",
        "missing_data_dir",
        "incomplete_data_dir",
        "missing_blob",
        "name_mismatch",
    }
    assert opened_since(daemon, start, dependent) == []
    # The DB reads again, with the delete and the create done: judged afresh.
    db = json.loads(good)
    del db["snapshots"][gone]
    del db["names"]["gone"]
    db["snapshots"][new] = sim.record(new, "new", ddir=sim.data_dir(str(root), new))
    db["names"]["new"] = new
    sim.atomic_write_json(sim.snapshot_db(str(root)), db)
    daemon.wait_for(resolved("db_unreadable", "snapshot/db/snapshots.json"), what="db readable again")
    marker(daemon, root, "thawed")
    assert opened_since(daemon, start, dependent) == []
    assert keep in json.loads((root / "snapshot/db/snapshots.json").read_bytes())["snapshots"]


def test_index_loaded_only_when_the_db_changed(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))  # no snapshots.json: an empty DB, and it stays absent
    daemon = started(daemons, root, watch={"full_rescan_seconds": 1.0})
    first = daemon.wait_event("index.loaded")
    rescans = daemon.wait_for(
        lambda x: (
            x.matches("watch.rescan", reason="timer")
            and sum(y.matches("watch.rescan", reason="timer") for y in daemon.lines[: x.index + 1]) >= 5
        ),
        what="five timer rescans",
    )
    loaded = [x for x in daemon.lines[: rescans.index] if x.matches("index.loaded")]
    assert loaded == [first]
    sim.create(str(root), name="now-there-is-one")
    daemon.wait_for(
        lambda x: x.matches("index.loaded") and x.get("snapshots") == 1, what="the new DB loaded once"
    )


def test_a_symlinked_root_and_localfile_are_watched_through_the_link(
    daemons: Daemons, sim: ModuleType, tmp_path: Path
) -> None:
    """/data01/cocoon is often a symlink to a bigger disk, and so may be
    snapshot/localfile: inotify on the link itself reports nothing."""
    real_root = tmp_path / "disk1" / "cocoon"
    sim.init(str(real_root))
    real_localfile = tmp_path / "disk2" / "localfile"
    real_localfile.parent.mkdir()
    (real_root / "snapshot" / "localfile").rename(real_localfile)
    (real_root / "snapshot" / "localfile").symlink_to(real_localfile)
    root = tmp_path / "cocoon"
    root.symlink_to(real_root)
    daemon = started(daemons, root)
    sid = sim.create(str(root), name="seen")
    gone = sim.new_id()
    sim.write_snapshot_files(str(real_localfile / gone))
    daemon.wait_for(opened("orphan_data_dir", gone), what="an orphan made behind both links")
    shutil.rmtree(real_localfile / sid)
    daemon.wait_for(opened("missing_data_dir", sid), what="a dir removed behind both links")


def test_a_db_rewritten_as_null_opens_one_orphan_summary(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    """Issue 10 item 13: every dir becomes an orphan in one change; the
    daemon opens one finding with the count and total bytes."""
    sids = [sim.create(str(root), name=f"s{i}") for i in range(8)]
    good = (root / "snapshot/db/snapshots.json").read_bytes()
    daemon = started(daemons, root, alerts={"orphan_burst_threshold": 5})
    start = len(daemon.lines)
    (root / "snapshot/db/snapshots.json").write_text("null\n")
    line = daemon.wait_for(opened("orphan_data_dir", "snapshot/localfile"), what="the summary")
    assert line["message"].startswith("8 data dirs")
    assert line["bytes"] >= sum(os.lstat(sim.data_dir(str(root), s)).st_blocks * 512 for s in sids)
    marker(daemon, root, "null")
    singles = [
        x for x in opened_since(daemon, start, {"orphan_data_dir"}) if x["subject"] != "snapshot/localfile"
    ]
    assert singles == []
    (root / "snapshot/db/snapshots.json").write_bytes(good)
    daemon.wait_for(resolved("orphan_data_dir", "snapshot/localfile"), what="the summary resolved")


def test_index_loaded_at_info_only_when_its_counts_change(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    """Issue 18: a DB rewritten with the same records (cocoon rewrites it on
    every command) is loaded again, but logged at debug: ~330 info lines a
    minute under churn buried the findings."""
    sim.init(str(root))
    sim.create(str(root), name="one")
    daemon = started(daemons, root, log={"level": "debug"})
    first = daemon.wait_event("index.loaded", snapshots=1)
    assert first["level"] == "info"
    db = root / "snapshot/db/snapshots.json"
    body = db.read_bytes()
    for i in range(3):
        mark = daemon.mark()
        tmp = db.with_name(f"rewrite{i}.tmp")
        tmp.write_bytes(body)
        tmp.rename(db)  # another file, same records: re-parsed
        again = daemon.wait_event("index.loaded", since=mark)
        assert again["level"] == "debug" and again["snapshots"] == 1, again
    sim.create(str(root), name="two")
    second = daemon.wait_for(
        lambda x: x.matches("index.loaded") and x.get("snapshots") == 2, what="the new count"
    )
    assert second["level"] == "info"
