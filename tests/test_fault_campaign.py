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
    opened,
    resolved,
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
        assert theirs == {("db_unreadable", SNAPSHOT_DB): "error", ("gc_blocked", "gc"): "warning"}, (
            what,
            theirs,
        )
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
        assert check_open(root, daemon.config_path) == {
            ("db_unreadable", SNAPSHOT_DB): "error",
            ("gc_blocked", "gc"): "warning",
        }
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
