"""`cocoond check` only reads: nothing under the root changes (bytes,
mtimes, the set of paths), the lock file is never created, and cocoon's lock
held by another process delays check only briefly."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond.cli import check as check_module
from tests.conftest import FAULTS, SIM
from tests.test_check import check, check_human, keys


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under the root (the root too): type, size, mtime_ns and the
    bytes of files, the target of links."""
    state: dict[str, tuple[Any, ...]] = {}

    def note(path: str) -> None:
        st = os.lstat(path)
        if os.path.islink(path):
            extra: Any = os.readlink(path)
        elif os.path.isfile(path):
            with open(path, "rb") as f:
                extra = f.read()
        else:
            extra = None
        state[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, extra)

    note(str(root))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            note(os.path.join(dirpath, name))
    return state


def every_fault_tree(sim: ModuleType, root: Path) -> set[tuple[str, str]]:
    """One tree with each fault the simulator can inject, plus temp files and
    a hand-edited mismatch; returns the (kind, subject) keys it promises."""
    expected = set()
    sim.create(str(root), name="healthy")
    for fault in FAULTS:
        if fault != "corrupt-db":
            got = sim.inject(str(root), fault)
            expected.add((got["kind"], got["subject"]))
    old = time.time() - 7200
    for relpath in ("snapshot/db/.tmp-deadbeef01", "cloudimg/temp/.tmp-cafe.qcow2"):
        (root / relpath).write_bytes(b"partial")
        os.utime(root / relpath, (old, old))
        expected.add(("stale_temp", relpath))
    (root / "firecracker" / "db").mkdir(parents=True)
    (root / "firecracker" / "db" / "vms.json").write_text('{"vms": {"v": {"image_blob_ids": null}}}')
    return expected


def test_check_changes_nothing(sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = every_fault_tree(sim, root)
    before = tree_state(root)
    rc, result = check(root, capsys)
    assert rc == 2 and keys(result) == expected
    rc, _ = check_human(root, capsys)
    assert rc == 2
    assert tree_state(root) == before

    # And with the DB unreadable (the fail-closed paths), as a real process too.
    got = sim.inject(str(root), "corrupt-db")
    before = tree_state(root)
    rc, result = check(root, capsys)
    assert (got["kind"], got["subject"]) in keys(result)
    check_human(root, capsys)
    subprocess.run(
        [sys.executable, "-m", "cocoond", "check", "--root", str(root), "--json"],
        capture_output=True,
        timeout=60,
    )
    assert tree_state(root) == before


def test_check_does_not_create_the_lock_file(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = sim.inject(str(root), "orphan-dir")  # no cocoon command has taken the lock yet
    lock = root / "snapshot" / "db" / "snapshots.lock"
    assert not lock.exists()
    before = tree_state(root)
    rc, result = check(root, capsys)
    assert keys(result) == {(got["kind"], got["subject"])} and rc == 1
    assert result["lock"] == "absent"
    check_human(root, capsys)
    assert not lock.exists()
    assert tree_state(root) == before


def test_check_on_a_fresh_host_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    rc, result = check(root, capsys)
    assert rc == 0 and result["findings"] == []
    assert list(root.iterdir()) == []


# ------------------------------------------------------------------- lock
def _lock_is_held_elsewhere(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@pytest.fixture
def held_lock(root: Path) -> Any:
    """`cocoonsim hold-lock` in another process, returned once it holds the lock."""
    proc = subprocess.Popen(
        [sys.executable, str(SIM), str(root), "hold-lock", "--seconds", "30"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lock = root / "snapshot" / "db" / "snapshots.lock"
    try:
        deadline = time.monotonic() + 20
        while not _lock_is_held_elsewhere(lock):
            assert proc.poll() is None, "hold-lock exited early"
            assert time.monotonic() < deadline, "hold-lock never took the lock"
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_busy_lock_delays_check_briefly_then_reads_without_it(
    sim: ModuleType,
    root: Path,
    held_lock: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(check_module, "LOCK_WAIT_SECONDS", 0.2)
    got = sim.inject(str(root), "orphan-dir")  # writes no DB: does not need the lock
    started = time.monotonic()
    rc, result = check(root, capsys)
    elapsed = time.monotonic() - started
    assert result["lock"] == "busy"
    assert keys(result) == {(got["kind"], got["subject"])} and rc == 1
    assert 0.2 <= elapsed < 10
    rc, out = check_human(root, capsys)
    assert rc == 1
    lines = out.splitlines()
    # The status line, one line saying the lock was busy, the header, one row.
    assert len(lines) == 4 and "lock" in lines[1].lower()
    assert held_lock.poll() is None  # it was held throughout


def test_free_lock_is_held_during_the_read(
    sim: ModuleType, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = sim.go_time(datetime.now(UTC) - timedelta(hours=3))
    sid = sim.create(str(root), crash_at="extract", created_at=old)  # the lock file exists now
    rc, result = check(root, capsys)
    assert result["lock"] == "held"
    assert keys(result) == {("stale_pending", sid)} and rc == 1
    rc, out = check_human(root, capsys)
    assert len(out.splitlines()) == 3  # no note about the lock


def test_lock_wait_is_bounded_by_the_default(
    sim: ModuleType, root: Path, held_lock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the monkeypatch: check waits LOCK_WAIT_SECONDS, no longer."""
    started = time.monotonic()
    rc, result = check(root, capsys)
    elapsed = time.monotonic() - started
    assert result["lock"] == "busy" and rc == 0
    assert check_module.LOCK_WAIT_SECONDS <= elapsed < check_module.LOCK_WAIT_SECONDS + 5
