"""Open findings survive a restart (issue 12): a daemon killed with SIGKILL
and started again announces only what changed while it was down. Still open
-> finding.reminder with the original opened_at; gone -> finding.resolved;
new -> finding.opened. Nothing it had open is opened a second time."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest

from cocoond.daemon.state import STATE_FILE
from tests.daemon_harness import WAIT, Daemons, daemons_for, lifecycle_errors, opened, resolved


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def saved_subjects(path: Path) -> set[str]:
    try:
        return {entry["subject"] for entry in json.loads(path.read_bytes())["open"]}
    except (FileNotFoundError, ValueError):
        return set()


def wait_saved(path: Path, subjects: set[str]) -> None:
    """Poll (with a deadline) until the state file holds exactly `subjects`."""
    deadline = time.monotonic() + WAIT
    while saved_subjects(path) != subjects:
        assert time.monotonic() < deadline, f"{path} holds {saved_subjects(path)}, want {subjects}"
        time.sleep(0.02)


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_restart_after_kill_9_announces_only_what_changed(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    sim.init(str(root))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    env = {"STATE_DIRECTORY": str(state)}
    kept = sim.inject(str(root), "missing-dir")
    info = sim.inject(str(root), "unreferenced-blob")
    fixed = sim.inject(str(root), "orphan-dir")
    # A data dir whose contents fail restore's preflight: the daemon reads
    # contents a slice at a time after READY, so it is known late in every run.
    sid = sim.create(str(root))
    (root / "snapshot" / "localfile" / sid / "state.json").unlink()
    incomplete = {"kind": "incomplete_data_dir", "subject": sid}
    still_open = (kept, info, incomplete)
    first = daemons.start(root, env=env)
    first.wait_ready()
    opened_first = {
        f["subject"]: first.wait_for(opened(f["kind"], f["subject"])) for f in (*still_open, fixed)
    }
    wait_saved(state / STATE_FILE, set(opened_first))
    first.proc.kill()  # SIGKILL: no chance to save anything more
    first.wait_exit()

    # While it is down: one finding goes away, a new one appears.
    shutil.rmtree(root / "snapshot" / "localfile" / fixed["subject"])
    new = sim.inject(str(root), "dangling-name")

    second = daemons.start(root, env=env)
    second.wait_ready()
    restored = second.wait_event("state.restored")
    assert restored["open"] == 4 and restored["path"] == str(state / STATE_FILE), restored
    for f in still_open:
        line = second.wait_event("finding.reminder", kind=f["kind"], subject=f["subject"])
        assert line["level"] == line["severity"] == opened_first[f["subject"]]["level"], line
        # The original opening time, not this run's start.
        original = stamp(opened_first[f["subject"]]["timestamp"])
        assert abs(stamp(line["opened_at"]) - original) < 0.5, (line, original)
        assert line["open_seconds"] >= stamp(line["timestamp"]) - original - 0.5, line
    gone = second.wait_for(resolved(fixed["kind"], fixed["subject"]))
    since = stamp(gone["timestamp"]) - stamp(opened_first[fixed["subject"]]["timestamp"])
    assert gone["open_seconds"] >= since - 0.5, gone
    second.wait_for(opened(new["kind"], new["subject"]))
    wait_saved(state / STATE_FILE, {f["subject"] for f in (*still_open, new)})
    # Every reminder of this run (a finding reminded twice included) is for
    # a finding that stayed open, and carries that finding's first opening.
    reminders = second.events("finding.reminder")
    assert {r["subject"] for r in reminders} == {f["subject"] for f in still_open}, reminders
    for r in reminders:
        original = stamp(opened_first[r["subject"]]["timestamp"])
        assert abs(stamp(r["opened_at"]) - original) < 0.5, (r, original)
        assert r["kind"] == opened_first[r["subject"]]["kind"], r
    for f in still_open:
        assert second.events("finding.opened", subject=f["subject"]) == [], second.describe()
        assert second.events("finding.resolved", subject=f["subject"]) == [], second.describe()
    # Across both runs, each finding opened once, resolved at most once.
    assert lifecycle_errors(first.lines + second.lines) == []
    assert second.stop()[0] == 0


def test_corrupt_state_file_starts_fresh(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    sim.init(str(root))
    fault = sim.inject(str(root), "missing-dir")
    (tmp_path / STATE_FILE).write_text('{"format": 1, "root": ')
    daemon = daemons.start(root, env={"STATE_DIRECTORY": str(tmp_path)})
    daemon.wait_ready()
    fresh = daemon.wait_event("state.fresh")
    assert fresh["level"] == "warning" and "not JSON" in fresh["reason"], fresh
    daemon.wait_for(opened(fault["kind"], fault["subject"]))
    wait_saved(tmp_path / STATE_FILE, {fault["subject"]})  # and the file is good again


def test_without_a_state_directory_it_says_so_once(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    daemon = daemons.start(root)  # conftest unsets STATE_DIRECTORY
    daemon.wait_ready()
    fault = sim.inject(str(root), "orphan-dir")
    daemon.wait_for(opened(fault["kind"], fault["subject"]))
    assert [line["event"] for line in daemon.lines if str(line.get("event", "")).startswith("state.")] == [
        "state.off"
    ]


def test_a_stop_writes_what_changed_since_the_last_write(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    """Writes are at least a second apart; a finding opened within that gap
    is still in the file once SIGTERM has stopped the daemon."""
    sim.init(str(root))
    daemon = daemons.start(root, env={"STATE_DIRECTORY": str(tmp_path)})
    daemon.wait_ready()
    first = sim.inject(str(root), "missing-dir")
    daemon.wait_for(opened(first["kind"], first["subject"]))
    second = sim.inject(str(root), "dangling-name")
    daemon.wait_for(opened(second["kind"], second["subject"]))
    assert daemon.stop()[0] == 0
    assert saved_subjects(tmp_path / STATE_FILE) == {first["subject"], second["subject"]}


def saved_stamps(path: Path) -> dict[str, str]:
    return {entry["subject"]: entry["opened_at"] for entry in json.loads(path.read_bytes())["open"]}


def test_opened_at_is_the_stored_string_across_many_restarts(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    """Issue 18 point 3: a reminder repeats the saved `opened_at` verbatim
    (not recomputed from open_seconds, which drifted by microseconds per
    restart), and the state file keeps it verbatim too. Point 4: the
    resolution names the finding as it opened (severity, snapshot_id, name)."""
    sim.init(str(root))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    env = {"STATE_DIRECTORY": str(state)}
    fault = sim.inject(str(root), "missing-dir")
    first = daemons.start(root, env=env)
    first.wait_ready()
    opening = first.wait_for(opened(fault["kind"], fault["subject"]))
    wait_saved(state / STATE_FILE, {fault["subject"]})
    assert first.stop()[0] == 0
    original = saved_stamps(state / STATE_FILE)[fault["subject"]]
    assert abs(stamp(original) - stamp(opening["timestamp"])) < 0.5
    runs = [first]
    for n in range(1, 5):
        run = daemons.start(root, env=env)
        run.wait_ready()
        reminder = run.wait_event("finding.reminder", kind=fault["kind"], subject=fault["subject"])
        assert reminder["opened_at"] == original, (n, reminder, original)
        assert reminder["open_seconds"] >= 0
        assert run.stop()[0] == 0
        assert saved_stamps(state / STATE_FILE)[fault["subject"]] == original, n
        runs.append(run)
    # Fixed while down: the next run's resolution says what it was about.
    shutil.rmtree(root / "snapshot")
    sim.init(str(root))
    last = daemons.start(root, env=env)
    last.wait_ready()
    gone = last.wait_for(resolved(fault["kind"], fault["subject"]))
    for key in ("severity", "snapshot_id", "name"):
        assert gone.get(key) == opening.get(key) and key in opening, (key, gone, opening)
    assert gone["level"] == "info"
    assert lifecycle_errors([line for run in (*runs, last) for line in run.lines]) == []


def test_a_restart_with_many_open_findings_logs_one_summary_per_kind(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    """Issue 18: 20k reminders at once overran journald's rate limit. Beyond
    the threshold, one `finding.reminders` line for the kind; below it, one
    reminder each, as before."""
    sim.init(str(root))
    state = tmp_path / "state"
    env = {"STATE_DIRECTORY": str(state)}
    missing = []
    for i in range(7):
        sid = sim.create(str(root), name=f"gone{i}")
        shutil.rmtree(sim.data_dir(str(root), sid))
        missing.append(sid)
    single = sim.inject(str(root), "dangling-name")
    overrides = {"alerts": {"orphan_burst_threshold": 5}}
    first = daemons.start(root, env=env, overrides=overrides)
    first.wait_ready()
    for sid in missing:
        first.wait_for(opened("missing_data_dir", sid))
    first.wait_for(opened(single["kind"], single["subject"]))
    assert first.stop()[0] == 0
    stamps = saved_stamps(state / STATE_FILE)

    second = daemons.start(root, env=env, overrides=overrides)
    second.wait_ready()
    (summary,) = [second.wait_event("finding.reminders", kind="missing_data_dir")]
    assert summary["level"] == summary["severity"] == "error", summary
    assert summary["count"] == 7 and summary["examples"] == sorted(missing)[:3], summary
    assert summary["oldest_opened_at"] == min(stamps[sid] for sid in missing), summary
    second.wait_event("finding.reminder", kind=single["kind"], subject=single["subject"])
    assert second.events("finding.reminder", kind="missing_data_dir") == []
    assert second.events("finding.opened") == [] and second.events("finding.resolved") == []
