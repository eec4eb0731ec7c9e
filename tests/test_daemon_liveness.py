"""The daemon stays alive inside its unit while a step costs what the tree
holds (daemon/offload.py): WATCHDOG=1 keeps its cadence and SIGTERM is
honoured within a second during a full reload of snapshots.json and during
the walk of a record-less dir with many entries.

Sizes CI can afford: a 100k-record DB (a full reload of ~1-2 s here) and a
dir whose walk a prelude slows to ~1 s (standing in for a dir of a million
entries). WATCHDOG_USEC=200000: a ping is due every 0.1 s; before the
step ran off the loop, the gap was the step's whole duration."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cocoond.daemon.offload import THREAD_NAME
from tests.daemon_harness import DaemonProcess, Daemons, Datagram, daemons_for, opened, with_prelude

#: Longest gap between two WATCHDOG=1 accepted (the unit would allow
#: WATCHDOG_USEC = 0.2 s; a loaded 2-core CI machine gets some slack).
MAX_GAP = 0.4
#: SIGTERM to exit, at any moment.
MAX_STOP = 1.0
RECORDS = 100_000
WATCHDOG = {"WATCHDOG_USEC": "200000"}


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def big_db(root: Path) -> str:
    """RECORDS committed records, names consistent; MARKER in each
    description."""
    ids = [f"S{i:07d}" for i in range(RECORDS)]
    doc = {
        "snapshots": {
            sid: {
                "id": sid,
                "name": f"n{sid}",
                "description": "MARKER",
                "created_at": "2026-11-01T00:00:00.123456789Z",
                "data_dir": str(root / "snapshot" / "localfile" / sid),
            }
            for sid in ids
        },
        "names": {f"n{sid}": sid for sid in ids},
    }
    return json.dumps(doc, separators=(",", ":"))


def write_db(root: Path, text: str, marker: str, *, foreign: bool = False) -> None:
    """Atomically, as cocoon writes. `foreign`: one space where Go writes
    none, so that nothing can be absorbed: the whole file is decoded."""
    db = root / "snapshot" / "db"
    db.mkdir(parents=True, exist_ok=True)
    text = text.replace("MARKER", marker)
    if foreign:
        text = "{ " + text[1:]
    tmp = db / ".tmp-test"
    tmp.write_text(text)
    os.replace(tmp, db / "snapshots.json")


def pings(daemon: DaemonProcess, since: float) -> list[Datagram]:
    return [d for d in daemon.notify_messages() if d.fields.get("WATCHDOG") == "1" and d.arrived >= since]


def max_gap(beats: list[Datagram], start: float, end: float) -> float:
    times = [start, *(d.arrived for d in beats if start <= d.arrived <= end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def worker_cpu(pid: int) -> int:
    """CPU ns of the daemon's step thread (offload.THREAD_NAME), 0 before it exists."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() == THREAD_NAME:
                return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except OSError:
            continue
    return 0


def wait_until(daemon: DaemonProcess, ready: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not ready():
        assert time.monotonic() < end, f"{what}: not seen\n" + daemon.describe()
        assert daemon.proc.poll() is None, daemon.describe()
        time.sleep(0.005)


@pytest.mark.timeout(300)  # three whole loads of 100k records: slow on a loaded 2-core machine
def test_watchdog_and_stop_during_a_full_reload(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    # A symlink loop: snapshot/localfile cannot be listed (one dir_unreadable),
    # so the records' data dirs are not judged and no finding floods the log.
    (root / "snapshot" / "localfile").rmdir()
    (root / "snapshot" / "localfile").symlink_to("localfile")
    text = big_db(root)
    write_db(root, text, "first")
    # index.loaded is at debug when a reload leaves the counts as they were.
    daemon = daemons.start(root, overrides={"log": {"level": "debug"}}, env=WATCHDOG)
    daemon.wait_ready(timeout=120)
    daemon.wait_event("index.loaded", snapshots=RECORDS)

    # A foreign rewrite: nothing to absorb, the whole file is decoded.
    mark = daemon.mark()
    write_db(root, text, "second", foreign=True)
    written = time.monotonic()
    loaded = daemon.wait_event("index.loaded", since=mark, timeout=120)
    assert loaded["duration_ms"] > 1.5 * MAX_GAP * 1000, loaded  # long enough to tell
    gap = max_gap(pings(daemon, written), written, loaded.arrived)
    assert gap < MAX_GAP, (gap, loaded["duration_ms"])

    # SIGTERM in the middle of the next one (its worker well into it).
    before = worker_cpu(daemon.proc.pid)
    mark = daemon.mark()
    write_db(root, text, "third", foreign=True)
    wait_until(daemon, lambda: worker_cpu(daemon.proc.pid) - before > 200e6, "the reload under way")
    rc, took = daemon.stop(signal.SIGTERM)
    assert rc == 0, daemon.describe()
    assert took < MAX_STOP, took
    assert daemon.events("index.loaded", since=mark) == []  # it was stopped mid-reload
    assert daemon.events("daemon.stopping", since=mark), daemon.describe()


#: Every scandir of a dir named SLOW* (the orphan's walk) takes ~1 s, as
#: one of a million entries does: slow storage, standing in. It appends a
#: line to $WALK_LOG as each such walk starts.
SLOW_WALK = """
import os, time
_scandir = os.scandir
def _started(path):
    with open(os.environ['WALK_LOG'], 'a') as f:
        f.write(os.fspath(path) + '\\n')
class _Slow:
    def __init__(self, it): self.it = it
    def __enter__(self): return self
    def __exit__(self, *a): self.it.close()
    def __iter__(self):
        for e in self.it:
            time.sleep(0.2)
            yield e
    def close(self): self.it.close()
def _maybe_slow(path='.'):
    it = _scandir(path)
    if not os.path.basename(os.fspath(path)).startswith('SLOW'):
        return it
    _started(path)
    return _Slow(it)
os.scandir = _maybe_slow
"""


def test_watchdog_and_stop_during_a_long_walk(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    walks = root.parent / "walks.log"
    daemon = daemons.start(root, env={**WATCHDOG, "WALK_LOG": str(walks)}, launch=with_prelude(SLOW_WALK))
    daemon.wait_ready()
    orphan = root / "snapshot" / "localfile" / "SLOW1"
    orphan.mkdir()
    for i in range(5):
        (orphan / f"f{i}").write_text("x")
    made = time.monotonic()
    found = daemon.wait_for(opened("orphan_data_dir", "SLOW1"), timeout=60)
    # Two walks at least (when the dir appeared, when it had settled): ~2 s.
    assert found.arrived - made > 1.5, found.arrived - made
    gap = max_gap(pings(daemon, made), made, found.arrived)
    assert gap < MAX_GAP, gap

    second = root / "snapshot" / "localfile" / "SLOW2"
    second.mkdir()
    for i in range(5):
        (second / f"f{i}").write_text("x")
    wait_until(daemon, lambda: walks.exists() and "SLOW2" in walks.read_text(), "a walk of SLOW2")
    rc, took = daemon.stop(signal.SIGTERM)
    assert rc == 0, daemon.describe()
    assert took < MAX_STOP, took
