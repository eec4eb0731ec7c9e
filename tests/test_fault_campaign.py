"""The fault campaign, kept as tests (issue 10): after each kind of trouble a
real `cocoond run` and a fresh `cocoond check` of the same tree must agree
on what is open, and the daemon must still be alive to say so.

Each case is bounded in time. The daemon's open set is replayed from its
log (`finding.opened` and `finding.reminder` open, `finding.resolved`
closes); `check --json` is run with the same thresholds and compared until
they agree or a deadline passes (a poll with a deadline, never a sleep)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import run_sim, sim_argv
from tests.daemon_harness import (
    DaemonProcess,
    Daemons,
    LogLine,
    daemons_for,
    lifecycle_errors,
    merge,
    opened,
    resolved,
    with_prelude,
)

SETTLE = 0.3
CAMPAIGN = {
    "watch": {"settle_seconds": SETTLE, "debounce_seconds": 0.05, "full_rescan_seconds": 5},
    "thresholds": {"pending_stale_seconds": 3600, "temp_stale_seconds": 3600},
    # check lists every orphan: the daemon must too, to be compared one to one.
    "alerts": {"heartbeat_seconds": 0.5, "reminder_seconds": 0, "orphan_burst_threshold": 0},
    "limits": {"max_db_bytes": 2 << 20},
}
AGREE_WITHIN = 60.0
SNAPSHOT_DB = "snapshot/db/snapshots.json"

Key = tuple[str, str]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def start(daemons: Daemons, root: Path, **env: str) -> DaemonProcess:
    daemon = daemons.start(root, CAMPAIGN, env=env or None)
    daemon.wait_ready()
    return daemon


def daemon_open(lines: list[LogLine]) -> dict[Key, str]:
    """(kind, subject) -> severity of what the log says is open now."""
    now: dict[Key, str] = {}
    for line in lines:
        event = line.get("event")
        if event not in ("finding.opened", "finding.reminder", "finding.resolved"):
            continue
        key = (str(line["kind"]), str(line["subject"]))
        if event == "finding.resolved":
            now.pop(key, None)
        else:
            now[key] = str(line.get("severity") or line["level"])
    return now


def check_open(root: Path, config: Path) -> dict[Key, str]:
    done = subprocess.run(
        [sys.executable, "-m", "cocoond", "check", "--config", str(config), "--root", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1, 2), done.stderr
    return {(f["kind"], f["subject"]): f["severity"] for f in json.loads(done.stdout)["findings"]}


def saved_open(state_file: Path) -> list[LogLine]:
    """What a killed run left in its state file, as the log lines a restart
    continues from (writes are spaced, so a kill -9 may lose the last
    second's changes: the state file, not the dead run's log, is what the
    next run knows)."""
    doc = json.loads(state_file.read_text())
    return [
        LogLine(json.dumps({"event": "finding.opened", **entry}), i, 0.0)
        for i, entry in enumerate(doc["open"])
    ]


def agree(
    daemon: DaemonProcess, root: Path, what: str, before: list[LogLine] | None = None
) -> dict[Key, str]:
    """Poll until the daemon's open findings equal a fresh check's, or fail
    with both sides' differences. `before`: what the daemon took over from
    a previous run (see `saved_open`)."""
    deadline = time.monotonic() + AGREE_WITHIN
    ours = theirs = {}
    while time.monotonic() < deadline:
        assert daemon.proc.poll() is None, f"the daemon died during {what}:\n{daemon.describe()}"
        theirs = check_open(root, daemon.config_path)
        lines = [*(before or []), *daemon.lines]
        ours = daemon_open(lines)
        if ours == theirs:
            assert lifecycle_errors(lines) == []
            return ours
        daemon.wait_event("daemon.heartbeat", since=daemon.mark())  # let it catch up
    raise AssertionError(
        f"after {what}: daemon and check disagree\n"
        f"  only the daemon: {sorted(set(ours.items()) - set(theirs.items()))}\n"
        f"  only check:      {sorted(set(theirs.items()) - set(ours.items()))}"
    )


def faults(sim: ModuleType, root: Path, names: list[str]) -> list[dict[str, Any]]:
    return [sim.inject(str(root), name) for name in names]


FAULTS = ["orphan-dir", "missing-dir", "missing-blob", "dangling-name", "stale-pending", "unreferenced-blob"]


def test_soak_under_churn(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.populate(str(root), snapshots=200, images=5)
    daemon = start(daemons, root)
    run_sim(root, "churn", "--seconds", "8", "--pause", "0.002")
    injected = faults(sim, root, FAULTS)
    found = agree(daemon, root, "churn and faults")
    for fault in injected:
        if fault.get("kind"):
            assert (fault["kind"], fault["subject"]) in found, fault


def test_kill_9_in_the_middle_of_work_then_restart(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    sim.populate(str(root), snapshots=200, images=5)
    state = tmp_path / "state"
    state.mkdir()
    first = start(daemons, root, STATE_DIRECTORY=str(state))
    churn = subprocess.Popen(sim_argv(root, "churn", "--seconds", "4"), stdout=subprocess.DEVNULL)
    faults(sim, root, FAULTS[:3])
    first.wait_for(opened("missing_data_dir"), what="a finding before the kill")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    assert churn.wait(timeout=60) == 0
    faults(sim, root, FAULTS[3:])
    carried = saved_open(state / "findings.json")
    assert carried, "the first run saved its open findings"
    second = start(daemons, root, STATE_DIRECTORY=str(state))
    agree(second, root, "a kill -9 and a restart", before=carried)


def test_sigstop_while_thousands_of_things_change(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    """Stopped, the daemon's inotify queue fills (and may overflow): when it
    runs again, events or the overflow rescan must bring it back to the truth."""
    sim.populate(str(root), snapshots=100, images=3)
    daemon = start(daemons, root)
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        localfile = root / "snapshot" / "localfile"
        long_ago = time.time() - 3600
        for i in range(2000):
            d = localfile / f"STRAY{i:05d}"
            d.mkdir()
            os.utime(d, (long_ago, long_ago))
        faults(sim, root, FAULTS)
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    found = agree(daemon, root, "SIGSTOP and 2,000 new dirs")
    assert sum(k[0] == "orphan_data_dir" for k in found) >= 2000


def test_root_removed_and_made_again(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.populate(str(root), snapshots=50, images=2)
    daemon = start(daemons, root)
    faults(sim, root, ["missing-dir"])
    agree(daemon, root, "a fault")
    shutil.rmtree(root)
    daemon.wait_event("watch.rescan", reason="root_missing", since=0)
    sim.populate(str(root), snapshots=30, images=2)
    faults(sim, root, ["orphan-dir", "dangling-name"])
    agree(daemon, root, "the root removed and made again")


# ------------------------------------------------------------ broken DBs
def _deep(depth: int) -> str:
    return '{"snapshots": {}, "names": {}, "x": ' + "[" * depth + "]" * depth + "}"


BROKEN: dict[str, bytes] = {
    "truncated": b'{"snapshots": {"A": {"id": "A", "name": "a"',
    "empty file": b"",
    "a BOM": b'\xef\xbb\xbf{"snapshots": {}, "names": {}}',
    "UTF-16": '{"snapshots": {}, "names": {}}'.encode("utf-16"),
    "NaN": b'{"snapshots": {"A": {"id": "A", "cpu": NaN}}, "names": {}}',
    "an array at the top": b"[]",
    "snapshots an array": b'{"snapshots": [], "names": {}}',
    "a record a string": b'{"snapshots": {"A": "A"}, "names": {}}',
    "hypervisor a number": b'{"snapshots": {"A": {"id": "A", "hypervisor": 5}}, "names": {}}',
    "cpu a fraction": b'{"snapshots": {"A": {"id": "A", "cpu": 1.5}}, "names": {}}',
    "cpu past int64": b'{"snapshots": {"A": {"id": "A", "cpu": 9223372036854775808}}, "names": {}}',
    "created_at not RFC 3339": b'{"snapshots": {"A": {"id": "A", "created_at": "yesterday"}}, "names": {}}',
    "names a list": b'{"snapshots": {}, "names": ["a"]}',
    "nesting past Go's 10,000": _deep(10_001).encode(),
    "trailing garbage": b'{"snapshots": {}, "names": {}} x',
    "over max_db_bytes": b'{"snapshots": {}, "names": {}, "pad": "' + b"x" * (3 << 20) + b'"}',
}
READABLE: dict[str, bytes] = {
    "null": b"null\n",
    "nesting Go still reads": _deep(9_000).encode(),
    "keys in another case": b'{"Snapshots": {}, "NAMES": {}}',
}


def test_every_broken_db_is_one_finding_and_the_daemon_lives(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    sim.populate(str(root), snapshots=20, images=2)
    good = (root / SNAPSHOT_DB).read_bytes()
    daemon = start(daemons, root)
    for what, body in BROKEN.items():
        since = daemon.mark()
        tmp = root / "snapshot" / "db" / "replace.tmp"
        tmp.write_bytes(body)
        tmp.rename(root / SNAPSHOT_DB)
        line = daemon.wait_for(opened("db_unreadable", SNAPSHOT_DB), since=since, what=what)
        assert "\n" not in line["message"]
        theirs = check_open(root, daemon.config_path)
        assert theirs == {("db_unreadable", SNAPSHOT_DB): "error"}, (what, theirs)
        since = daemon.mark()
        (root / SNAPSHOT_DB).write_bytes(good)
        daemon.wait_for(resolved("db_unreadable", SNAPSHOT_DB), since=since, what=f"{what}, repaired")
    for what, body in READABLE.items():
        (root / SNAPSHOT_DB).write_bytes(body)
        found = agree(daemon, root, what)
        assert ("db_unreadable", SNAPSHOT_DB) not in found, what
    (root / SNAPSHOT_DB).write_bytes(good)
    agree(daemon, root, "the good DB back")


def test_a_special_file_as_the_db(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.populate(str(root), snapshots=5, images=1)
    daemon = start(daemons, root)
    db = root / SNAPSHOT_DB
    for what, make in (("a FIFO", os.mkfifo), ("a directory", os.mkdir)):
        db.unlink()
        make(db)
        since = daemon.mark()
        daemon.wait_for(opened("db_unreadable", SNAPSHOT_DB), since=since, what=what)
        assert check_open(root, daemon.config_path) == {("db_unreadable", SNAPSHOT_DB): "error"}
        db.rmdir() if db.is_dir() else db.unlink()
        sim.create(str(root), name=f"after-{what[2:]}")
        daemon.wait_for(resolved("db_unreadable", SNAPSHOT_DB), since=since, what=f"{what} replaced")


# ------------------------------------------------------------ hostile names
HOSTILE = ["two\nlines", "\x1b[31mred", "bidi\u202eevil", "back\\u202eslash", "x" * (300 << 10)]


def test_hostile_names_keep_every_line_one_bounded_json_object(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    sim.init(str(root))
    daemon = start(daemons, root)
    for name in HOSTILE:
        sid = sim.create(str(root), name=name)
        shutil.rmtree(sim.data_dir(str(root), sid))
    found = agree(daemon, root, "hostile names")
    assert sum(k[0] == "missing_data_dir" for k in found) == len(HOSTILE)
    for line in daemon.lines:
        assert line.is_json, line.raw[:200]
        assert len(line.raw) < 16 << 10, f"a {len(line.raw)}-byte log line"
    human = subprocess.run(
        [sys.executable, "-m", "cocoond", "check", "--config", str(daemon.config_path), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert len(human) < 64 << 10
    assert all(ch.isprintable() for ch in human.replace("\n", "")), "a control character reached the table"
    assert "back\\\\u202eslash" in human  # a backslash is escaped, so it cannot pass for an escape


# ------------------------------------------------ the daemon's own state (issue 18)
def start_with_state(daemons: Daemons, root: Path, state: Path) -> DaemonProcess:
    daemon = daemons.start(root, CAMPAIGN, env={"STATE_DIRECTORY": str(state)})
    daemon.wait_ready()
    return daemon


def test_a_state_write_that_fails_is_retried(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    """EROFS/ENOSPC stand-in that root cannot override: the state file's
    name taken by a directory (the rename over it fails), then freed."""
    sim.populate(str(root), snapshots=20, images=2)
    state = tmp_path / "state"
    (state / "findings.json").mkdir(parents=True)
    daemon = start_with_state(daemons, root, state)
    assert "a directory" in daemon.wait_event("state.fresh")["reason"]
    faults(sim, root, ["missing-dir", "dangling-name"])
    found = agree(daemon, root, "a state dir that cannot be written")
    daemon.wait_event("state.save_failed")
    (state / "findings.json").rmdir()
    daemon.wait_event("state.saved")  # no change needed: the write stays due
    saved = {(e["kind"], e["subject"]) for e in json.loads((state / "findings.json").read_text())["open"]}
    assert saved == set(found)
    assert daemon.stop()[0] == 0


def test_leftovers_of_a_killed_write_are_removed_at_start(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    sim.populate(str(root), snapshots=20, images=2)
    state = tmp_path / "state"
    state.mkdir()
    (state / ".tmp-0a1b2c3d4e").write_text('{"format": 1, "ro')  # a write cut by kill -9
    daemon = start_with_state(daemons, root, state)
    assert daemon.wait_event("state.leftovers_removed")["files"] == [".tmp-0a1b2c3d4e"]
    assert not (state / ".tmp-0a1b2c3d4e").exists()
    faults(sim, root, ["orphan-dir"])
    agree(daemon, root, "leftovers removed")


@pytest.mark.parametrize("what", ["a FIFO", "a symlink to /dev/zero", "deep nesting"])
def test_a_hostile_state_file_starts_fresh(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path, what: str
) -> None:
    sim.populate(str(root), snapshots=20, images=2)
    state = tmp_path / "state"
    state.mkdir()
    path = state / "findings.json"
    if what == "a FIFO":
        os.mkfifo(path)
    elif what == "a symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_text("[" * 200_000 + "]" * 200_000)
    faults(sim, root, ["missing-dir"])
    daemon = start_with_state(daemons, root, state)  # READY: no hang, no crash
    fresh = daemon.wait_event("state.fresh")
    assert fresh["level"] == "warning" and "unusable state file" in fresh["reason"], fresh
    agree(daemon, root, what)
    assert daemon.stop()[0] == 0


def test_two_daemons_never_share_a_state_dir(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    sim.populate(str(root), snapshots=20, images=2)
    state = tmp_path / "state"
    first = start_with_state(daemons, root, state)
    faults(sim, root, ["missing-dir"])
    agree(first, root, "one daemon")
    second = daemons.start(root, CAMPAIGN, env={"STATE_DIRECTORY": str(state)})
    assert second.wait_exit() == 75
    (busy,) = second.events("state.dir_busy")
    assert busy["level"] == "error" and f"PID {first.proc.pid}" in busy["error"], busy
    faults(sim, root, ["dangling-name"])
    agree(first, root, "a second daemon refused")


# ------------------------------------------------ a cocoon command in flight
def test_snapshot_rm_under_cocoons_lock_opens_no_false_missing_dir(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    """cocoon's `snapshot rm` removes the dir, then rewrites the DB under
    snapshots.lock; a big DB makes that window longer than any settle. A
    real flock held by another process (the simulator's hold-lock) keeps
    the record-without-dir from being judged until the lock is free."""
    sim.populate(str(root), snapshots=20, images=2)
    config = {**CAMPAIGN, "log": {"level": "debug"}}
    daemon = daemons.start(root, config)
    daemon.wait_ready()
    sid = sim.create(str(root), name="being-removed")
    daemon.wait_event("index.loaded", snapshots=21)
    holder = subprocess.Popen(
        sim_argv(root, "hold-lock", "--seconds", "60"), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("locked ")
        shutil.rmtree(sim.data_dir(str(root), sid))  # rm's first step, outside the lock
        held = daemon.wait_event("finding.held", kind="missing_data_dir", subject=sid)
        assert held["pids"] == [holder.pid], held
        # Several settles later the lock is still held: still nothing opened.
        mark = daemon.mark()
        daemon.wait_event("daemon.heartbeat", since=mark)
        daemon.wait_event("daemon.heartbeat", since=daemon.mark())
        # rm's second step: the record goes (written as cocoon does, under
        # the lock the holder stands in for).
        db = json.loads((root / SNAPSHOT_DB).read_text())
        name = db["snapshots"].pop(sid)["name"]
        db["names"].pop(name, None)
        tmp = root / "snapshot" / "db" / ".tmp-rm"
        tmp.write_text(json.dumps(db))
        tmp.rename(root / SNAPSHOT_DB)
    finally:
        holder.kill()
        holder.wait()
    agree(daemon, root, "a snapshot rm under cocoon's lock")
    assert daemon.events("finding.opened", kind="missing_data_dir", subject=sid) == []


# ------------------------------------------------------------ clock steps
FAKE_CLOCK = """
import os, time
_real, _path = time.time, os.environ["COCOOND_TEST_CLOCK_FILE"]
def _fake():
    try:
        with open(_path) as fh:
            return _real() + float(fh.read() or 0)
    except (OSError, ValueError):
        return _real()
time.time = _fake
"""


def step_clock(daemon: DaemonProcess, clock: Path, seconds: float) -> None:
    """Move the daemon's wall clock (not the files' times), as NTP or a
    resume does, and wait until it has seen the step and looked again."""
    since = daemon.mark()
    tmp = clock.with_suffix(".new")
    tmp.write_text(repr(seconds))
    tmp.rename(clock)
    daemon.wait_event("clock.stepped", since=since)
    for _ in range(3):  # several settles of judging after the step
        daemon.wait_event("daemon.heartbeat", since=daemon.mark())
    daemon.wait_event("watch.rescan", reason="timer", since=daemon.mark())  # and a full scan


def start_with_clock(
    daemons: Daemons, root: Path, clock: Path, state: Path | None = None, **env: str
) -> DaemonProcess:
    clock.write_text("0")
    env["COCOOND_TEST_CLOCK_FILE"] = str(clock)
    if state is not None:
        env["STATE_DIRECTORY"] = str(state)
    daemon = daemons.start(root, CAMPAIGN, env=env, launch=with_prelude(FAKE_CLOCK))
    daemon.wait_ready()
    return daemon


def test_a_clock_step_forward_calls_nothing_stale_or_orphaned(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    sim.populate(str(root), snapshots=20, images=2)
    live = sim.inject(str(root), "fresh-pending")  # a save in progress
    importing = root / "snapshot" / "localfile" / "IMPORTINPROGRESS"
    importing.mkdir()
    stop = threading.Event()

    def write_import() -> None:  # an import still being written
        n = 0
        while not stop.is_set():
            (importing / f"layer{n % 3}").write_bytes(os.urandom(64))
            n += 1
            stop.wait(0.05)

    writer = threading.Thread(target=write_import)
    writer.start()
    try:
        daemon = start_with_clock(daemons, root, tmp_path / "clock")
        daemon.wait_for(opened("pending", live["subject"]))
        step_clock(daemon, tmp_path / "clock", 2 * 86400)
    finally:
        stop.set()
        writer.join()
    assert daemon.events("finding.opened", kind="orphan_data_dir", subject="IMPORTINPROGRESS") == []
    assert daemon.events("finding.opened", kind="stale_pending") == []
    assert daemon.events("finding.resolved", kind="pending") == []
    shutil.rmtree(importing)  # the import gave up and cleaned up
    agree(daemon, root, "a +2 day clock step")


def test_a_clock_step_back_resolves_nothing_and_opened_at_stays_a_fact(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    sim.populate(str(root), snapshots=20, images=2)
    orphan = sim.inject(str(root), "orphan-dir")
    state = tmp_path / "state"
    first = start_with_clock(daemons, root, tmp_path / "clock", state)
    first.wait_for(opened("orphan_data_dir", orphan["subject"]))
    assert first.stop()[0] == 0
    # Saved by a clock that was a day ahead (then corrected): in the future.
    doc = json.loads((state / "findings.json").read_text())
    future = "2099-01-01T00:00:00.000001Z"
    for entry in doc["open"]:
        entry["opened_at"] = future
    (state / "findings.json").write_text(json.dumps(doc))
    daemon = start_with_clock(daemons, root, tmp_path / "clock", state)
    reminder = daemon.wait_event("finding.reminder", kind="orphan_data_dir", subject=orphan["subject"])
    assert reminder["opened_at"] == future and reminder["open_seconds"] >= 0, reminder
    step_clock(daemon, tmp_path / "clock", -7200)  # past the orphan dir's 1 h age
    assert daemon.events("finding.resolved") == [], daemon.describe()
    found = agree(daemon, root, "a -2 h clock step", before=first.lines)
    assert ("orphan_data_dir", orphan["subject"]) in found


# ------------------------------------------------------------ floods and terminals
def test_a_restart_with_many_open_findings_is_one_line_per_kind(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    """Every data dir removed, then a restart: one
    `finding.reminders` line for the kind, not one reminder per record (the
    journald rate limit dropped unrelated entries)."""
    sim.populate(str(root), snapshots=40, images=2)
    state = tmp_path / "state"
    first = daemons.start(root, CAMPAIGN, env={"STATE_DIRECTORY": str(state)})
    first.wait_ready()
    for entry in (root / "snapshot" / "localfile").iterdir():
        shutil.rmtree(entry)
    found = agree(first, root, "an emptied snapshot/localfile")
    missing = sum(kind == "missing_data_dir" for kind, _ in found)
    assert missing >= 30
    assert first.stop()[0] == 0
    config = merge(CAMPAIGN, {"alerts": {"orphan_burst_threshold": 10}})
    second = daemons.start(root, config, env={"STATE_DIRECTORY": str(state)})
    second.wait_ready()
    summary = second.wait_event("finding.reminders", kind="missing_data_dir")
    assert summary["count"] == missing, summary
    assert second.events("finding.reminder", kind="missing_data_dir") == []
    agree(second, root, "a restart with many open", before=first.lines)


def test_console_lines_cannot_drive_the_terminal(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    config = {**CAMPAIGN, "log": {"format": "console"}}
    daemon = daemons.start(root, config)
    daemon.wait_ready()
    for name in HOSTILE[:4]:
        sid = sim.create(str(root), name=name)
        shutil.rmtree(sim.data_dir(str(root), sid))
    daemon.wait_for(
        lambda line: line.raw.count("missing_data_dir") > 0 and "bidi" in line.raw, what="the bidi one"
    )
    daemon.wait_for(lambda line: "finding.opened" in line.raw and "red" in line.raw, what="the ESC one")
    for line in daemon.lines:
        assert line.raw.isprintable(), repr(line.raw)
