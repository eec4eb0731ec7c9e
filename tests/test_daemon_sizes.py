"""The orphan size walk never holds up the daemon (issue 10 item 11): it runs
off the event loop, so events, the systemd watchdog ping and SIGTERM go on
while a walk is stuck on storage that stopped answering; `finding.opened`
waits for the size only so long; a walk cut by its bounds says so.

"Slow storage" is a stand-in the test puts in the daemon's interpreter
(tests/daemon_harness.py `with_prelude`): every lstat inside one orphan dir
blocks for an hour, as on a hung NFS mount. cocoond has no hook for it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.daemon_harness import (
    WAIT,
    DaemonProcess,
    Daemons,
    daemons_for,
    lifecycle_errors,
    opened,
    with_prelude,
)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def stuck_storage(inside: Path, mark: Path) -> str:
    """Prelude: lstat of anything inside `inside` marks `mark` and hangs."""
    return f"""
import os, time
_slow, _mark, _lstat = {str(inside) + "/"!r}, {str(mark)!r}, os.lstat
def _hanging_lstat(path, *args, **kwargs):
    if os.fspath(path).startswith(_slow):
        open(_mark, "w").close()
        time.sleep(3600)
    return _lstat(path, *args, **kwargs)
os.lstat = _hanging_lstat
"""


def wait_for_file(path: Path, daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert daemon.proc.poll() is None, daemon.describe()
        assert time.monotonic() < deadline, f"{path} never appeared\n{daemon.describe()}"
        time.sleep(0.01)  # polling, with a deadline


def make_orphan(root: Path, name: str, files: int = 3) -> Path:
    orphan = root / "snapshot" / "localfile" / name
    orphan.mkdir()
    for i in range(files):
        (orphan / f"memory-range-{i}").write_bytes(b"x" * 4096)
    return orphan


@pytest.fixture
def slow_disk(sim: ModuleType, root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A healthy tree; the orphan dir to be on hung storage, and the file
    that says its walk has begun."""
    sim.create(str(root), name="healthy")
    return root / "snapshot" / "localfile" / "ORPHANONSLOWDISK", tmp_path / "walk-started"


def test_sigterm_during_a_stuck_size_walk_exits_at_once(
    daemons: Daemons, sim: ModuleType, root: Path, slow_disk: tuple[Path, Path]
) -> None:
    stuck, mark = slow_disk
    daemon = daemons.start(
        root,
        overrides={"watch": {"settle_seconds": 0.2}},
        env={"WATCHDOG_USEC": "1000000"},
        launch=with_prelude(stuck_storage(stuck, mark)),
    )
    ready = daemon.wait_ready()
    make_orphan(root, stuck.name)
    wait_for_file(mark, daemon)  # the walk is in its first lstat inside, for an hour

    # The loop goes on: a new finding opens, the watchdog keeps being fed.
    since = daemon.mark()
    victim = sim.create(str(root), name="victim")
    (root / "snapshot" / "localfile" / victim / "state.json").unlink()
    daemon.wait_for(opened("incomplete_data_dir", victim), since=since)
    pings_after = time.monotonic()
    daemon.wait_notify(
        lambda d: d.fields.get("WATCHDOG") == "1" and d.arrived > pings_after,
        count=2,
        what="WATCHDOG=1 while the walk hangs",
    )
    assert ready.fields["READY"] == "1"

    rc, _took = daemon.stop()  # would never return if the stop waited for the walk
    assert rc == 0
    lines = daemon.lines
    # Its opened line was held for the size; at the stop it is written
    # without one, before daemon.stopping, so the log's story is whole.
    held = [line for line in lines if opened("orphan_data_dir", stuck.name)(line)]
    assert len(held) == 1 and "bytes" not in held[0], held
    stopping = next(line for line in lines if line.get("event") == "daemon.stopping")
    assert held[0].index < stopping.index
    assert lifecycle_errors(lines) == []


def test_opened_waits_for_the_size_only_so_long(
    daemons: Daemons, root: Path, slow_disk: tuple[Path, Path]
) -> None:
    stuck, mark = slow_disk
    prelude = (
        stuck_storage(stuck, mark)
        + "import cocoond.daemon.sizer\ncocoond.daemon.sizer.SIZE_WAIT_SECONDS = 1.0\n"
    )
    daemon = daemons.start(root, overrides={"watch": {"settle_seconds": 0.2}}, launch=with_prelude(prelude))
    daemon.wait_ready()
    make_orphan(root, stuck.name)
    line = daemon.wait_for(opened("orphan_data_dir", stuck.name))
    assert mark.exists()  # it did wait for a walk, which never came back
    assert "bytes" not in line and line["level"] == "warning", line  # size unknown
    rc, _ = daemon.stop()
    assert rc == 0 and lifecycle_errors(daemon.lines) == []


def test_a_walk_cut_by_its_bound_gives_a_lower_bound(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.create(str(root), name="healthy")
    prelude = "import cocoond.sizes\ncocoond.sizes.SIZE_MAX_ENTRIES = 20\n"
    daemon = daemons.start(root, overrides={"watch": {"settle_seconds": 0.2}}, launch=with_prelude(prelude))
    daemon.wait_ready()
    big = make_orphan(root, "BIGORPHAN", files=100)
    small = make_orphan(root, "SMALLORPHAN", files=3)
    total = os.lstat(big).st_blocks * 512 + sum(os.lstat(p).st_blocks * 512 for p in big.iterdir())
    cut = daemon.wait_for(opened("orphan_data_dir", big.name))
    assert cut["bytes_partial"] is True and 0 < cut["bytes"] < total, cut
    whole = daemon.wait_for(opened("orphan_data_dir", small.name))
    assert "bytes_partial" not in whole and whole["bytes"] > 0, whole
