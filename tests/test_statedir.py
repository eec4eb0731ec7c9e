"""cocoond/daemon/statedir.py and proclocks.py against real files, FIFOs
and flocks held by another process (issue 18 point 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cocoond.core.findings import Finding
from cocoond.core.lifecycle import Lifecycle
from cocoond.daemon import statedir
from cocoond.daemon.proclocks import holders
from cocoond.daemon.state import STATE_FILE, StateError, StateKeeper, load

HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDONLY, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = []

    def __getattr__(self, level: str) -> object:
        return lambda event, **fields: self.lines.append((level, event, fields))

    def events(self, name: str) -> list[dict[str, object]]:
        return [fields for _, event, fields in self.lines if event == name]


def hold_in_another_process(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_holders_names_the_process_holding_a_flock(tmp_path: Path) -> None:
    lock = tmp_path / "snapshots.lock"
    assert holders(str(lock)) == []  # absent
    lock.touch()
    assert holders(str(lock)) == []
    proc = hold_in_another_process(lock)
    try:
        assert holders(str(lock)) == [proc.pid]
        assert holders(str(tmp_path / "other")) == []
    finally:
        proc.communicate("")
    assert holders(str(lock)) == []


def test_holders_skips_waiters_and_other_inodes(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.touch()
    ino = os.stat(lock).st_ino
    fake = tmp_path / "locks"
    fake.write_text(
        f"1: FLOCK  ADVISORY  WRITE 11 fd:01:{ino} 0 EOF\n"
        f"1: -> FLOCK  ADVISORY  WRITE 12 fd:01:{ino} 0 EOF\n"
        f"2: POSIX  ADVISORY  WRITE 13 fd:01:{ino}9 0 EOF\n"
    )
    assert holders(str(lock), str(fake)) == [11]
    assert holders(str(lock), str(tmp_path / "no-proc")) is None


def test_a_second_daemon_cannot_take_the_state_dir(tmp_path: Path) -> None:
    fd = statedir.lock(str(tmp_path / "state"))
    try:
        with pytest.raises(statedir.StateDirBusy, match=f"in use by PID {os.getpid()}"):
            statedir.lock(str(tmp_path / "state"))
    finally:
        os.close(fd)
    os.close(statedir.lock(str(tmp_path / "state")))  # free again


def test_leftover_temp_files_go_and_nothing_else(tmp_path: Path) -> None:
    for name in (".tmp-0123456789", ".tmp-abcdefabcd", STATE_FILE, ".tmp-short", "lock"):
        (tmp_path / name).write_text("x")
    (tmp_path / ".tmp-ffffffffff").mkdir()
    assert statedir.remove_leftovers(str(tmp_path)) == [".tmp-0123456789", ".tmp-abcdefabcd"]
    assert sorted(os.listdir(tmp_path)) == [".tmp-ffffffffff", ".tmp-short", STATE_FILE, "lock"]


def test_the_state_file_is_read_with_care(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    os.mkfifo(path)
    started = time.monotonic()
    with pytest.raises(StateError, match=r"not a regular file \(a FIFO\)"):
        load(str(path))
    assert time.monotonic() - started < 5, "a FIFO must not block the start"
    path.unlink()
    path.symlink_to("/dev/zero")
    with pytest.raises(StateError, match="character device"):
        load(str(path))
    path.unlink()
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(StateError, match="nested too deeply"):
        load(str(path))
    path.write_bytes(b" " * 101)
    with pytest.raises(statedir.Unreadable, match="101 bytes, more than the 100"):
        statedir.read_state(str(path), limit=100)


def test_a_failed_write_is_retried_with_backoff_and_at_stop(tmp_path: Path) -> None:
    keeper = StateKeeper(str(tmp_path))
    life = Lifecycle(0.0, 0.0)
    life.observe(0.0, [(("missing_data_dir", "A"), Finding("missing_data_dir", "A", "gone"))])
    life.tick(0.0, -100.0)
    log = Log()
    (tmp_path / STATE_FILE).mkdir()  # rename over a directory fails
    keeper.changed()
    keeper.flush(log, life, "/r", 10.0, 1000.0)
    assert [f["error"] for f in log.events("state.save_failed")] == ["Is a directory"]
    assert keeper.due() == 12.0  # 2 s backoff, still to be written (then 4 s)
    keeper.flush(log, life, "/r", 12.0, 1002.0)
    assert keeper.due() == 16.0 and len(log.events("state.save_failed")) == 1  # said once
    (tmp_path / STATE_FILE).rmdir()
    keeper.flush(log, life, "/r", 12.5, 1002.5, force=True)  # the stop's write
    assert log.events("state.saved") == [{"path": str(tmp_path / STATE_FILE), "after_failures": 2}]
    assert [e["subject"] for e in json.loads((tmp_path / STATE_FILE).read_text())["open"]] == ["A"]
    assert keeper.due() is None
