"""Failures are heard at their priority (issue 18 point 5): the line that
says why a start or a reload failed reaches the journal at err, and an
unexpected exception, in the loop or in any thread, is one structured
`daemon.crashed` event at error (traceback in a field) and a non-zero exit
that the unit restarts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cocoond.daemon.crash import EX_SOFTWARE
from cocoond.daemon.journald import SOCKET_ENV
from tests.daemon_harness import Daemons, daemons_for, with_prelude
from tests.journal_listener import JournalListener

#: The unit's RestartPreventExitStatus=: a crash must not be one of them.
NOT_RESTARTED = {78, 64}

LOOP_BUG = """
import cocoond.daemon.loop as loop
def _boom(self):
    raise RuntimeError("a bug in the loop")
loop.Daemon._process_burst = _boom
"""

THREAD_BUG = """
import threading
import cocoond.daemon.loop as loop
_arm = loop.Daemon._arm
def _arm_and_die(self):
    watched = _arm(self)
    threading.Thread(target=lambda: 1 / 0, name="worker").start()
    return watched
loop.Daemon._arm = _arm_and_die
"""


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def test_a_bug_in_the_loop_is_one_crashed_event_and_a_restartable_exit(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    sim.init(str(root))
    daemon = daemons.start(root, launch=with_prelude(LOOP_BUG))
    daemon.wait_ready()
    sim.create(str(root), name="wakes-the-loop")
    rc = daemon.wait_exit()
    assert rc == EX_SOFTWARE and rc not in NOT_RESTARTED
    (crashed,) = daemon.events("daemon.crashed")
    assert crashed["level"] == "error", crashed
    assert crashed["error"] == "RuntimeError: a bug in the loop"
    assert "_process_burst" in crashed["traceback"] and "Traceback" in crashed["traceback"]
    assert all(line.is_json for line in daemon.lines), daemon.describe()
    assert "Traceback" not in daemon.stderr, "the traceback is a field, not stray stderr lines"


def test_a_thread_that_dies_crashes_the_daemon_instead_of_leaving_it_blind(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    sim.init(str(root))
    daemon = daemons.start(root, launch=with_prelude(THREAD_BUG))
    assert daemon.wait_exit() == EX_SOFTWARE
    (crashed,) = daemon.events("daemon.crashed")
    assert "thread worker: ZeroDivisionError" in crashed["error"], crashed
    assert "ZeroDivisionError" in crashed["traceback"]


def test_a_crash_reaches_the_journal_at_err(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    sim.init(str(root))
    with JournalListener(tmp_path / "journal.sock") as listener:
        daemon = daemons.start(
            root, launch=with_prelude(LOOP_BUG), journal_stream=True, env={SOCKET_ENV: str(listener.path)}
        )
        daemon.wait_ready()
        sim.create(str(root), name="wakes-the-loop")
        assert daemon.wait_exit() == EX_SOFTWARE
        entry = listener.wait_for(lambda e: e.get("COCOOND_EVENT") == "daemon.crashed")
    assert entry.get("PRIORITY") == "3"
    assert "a bug in the loop" in json.loads(entry.message)["traceback"]


def run_on_journal_stream(args: list[str], tmp_path: Path, *, journal: bool = True) -> tuple[int, bytes]:
    """`cocoond ARGS` with stdout and stderr one stream socket, as systemd
    connects a unit's output to the journal (StandardError=inherit), and
    $JOURNAL_STREAM naming it (or not). Returns (exit code, all it wrote)."""
    ours, theirs = socket.socketpair()
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal:
        st = os.fstat(theirs.fileno())
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    with ours, theirs:
        proc = subprocess.run(
            [sys.executable, "-m", "cocoond", *args],
            stdout=theirs.fileno(),
            stderr=theirs.fileno(),
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        theirs.close()
        out = b""
        while chunk := ours.recv(65536):
            out += chunk
    return proc.returncode, out


@pytest.mark.parametrize("command", [["run"], ["config", "check"]])
def test_why_a_start_or_reload_failed_is_at_err_on_the_journal_stream(
    tmp_path: Path, command: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[watch]\nsettle_seconds = -1\n")
    rc, out = run_on_journal_stream([*command, "--config", str(bad)], tmp_path)
    assert rc == 78
    (line,) = out.decode().splitlines()
    assert line.startswith(f"<3>cocoond {' '.join(command)}: "), line
    assert "settle_seconds" in line
    # Not the journal (a terminal, a pipe): no prefix to confuse a person.
    rc, out = run_on_journal_stream([*command, "--config", str(bad)], tmp_path, journal=False)
    assert rc == 78 and out.decode().startswith(f"cocoond {' '.join(command)}: "), out
