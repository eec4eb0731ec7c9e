"""`cocoond run` with `[metrics] textfile`: the file follows findings as
they open and resolve, is rewritten at each heartbeat, and says what the
index holds. Waits poll the file with a deadline (the write follows the
log line within MIN_INTERVAL)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cocoond import __version__
from tests.conftest import CONTRACT_SEVERITY
from tests.daemon_harness import WAIT, Daemons, daemons_for, opened, resolved

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def read(path: Path) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def open_count(samples: Samples, kind: str) -> float | None:
    severity = CONTRACT_SEVERITY[kind]
    return samples.get(("cocoond_findings_open", (("kind", kind), ("severity", severity))))


def counts(**expected: int) -> Callable[[Samples], bool]:
    """A check that each kind has the open count given."""
    return lambda samples: all(open_count(samples, kind) == n for kind, n in expected.items())


def wait_file(path: Path, check: Callable[[Samples], bool], what: str) -> Samples:
    deadline = time.monotonic() + WAIT
    last: Samples = {}
    while time.monotonic() < deadline:
        if path.exists():
            last = read(path)
            if check(last):
                return last
        time.sleep(0.05)
    raise AssertionError(
        f"{path} never showed {what}; last:\n" + "\n".join(f"{k} {v}" for k, v in last.items())
    )


def test_textfile_follows_open_resolve_and_heartbeat(
    daemons: Daemons, root: Path, sim: ModuleType, tmp_path: Path
) -> None:
    sim.init(str(root))
    for i in range(3):
        sim.create(str(root), name=f"keep-{i}")
    missing = sim.inject(str(root), "missing-dir")
    collector = tmp_path / "textfile_collector"
    collector.mkdir()
    prom = collector / "cocoond.prom"
    started = time.time()
    daemon = daemons.start(
        root, overrides={"metrics": {"textfile": str(prom)}, "watch": {"full_rescan_seconds": 600}}
    )
    daemon.wait_ready()
    daemon.wait_for(opened("missing_data_dir"))
    got = wait_file(prom, counts(missing_data_dir=1), "missing_data_dir open")
    assert got[("cocoond_snapshots", ())] == 4
    assert got[("cocoond_pending_snapshots", ())] == 0
    assert got[("cocoond_blobs", ())] == 0
    assert started <= got[("cocoond_last_full_scan_timestamp_seconds", ())] <= time.time()
    assert 0 < got[("cocoond_index_load_seconds", ())] < WAIT
    assert got[("cocoond_full_rescan_interval_seconds", ())] == 600
    assert got[("cocoond_build_info", (("version", __version__),))] == 1
    assert prom.stat().st_mode & 0o777 == 0o644
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], stdin=prom.open("rb"), capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr

    # An orphan and an unreferenced blob: both counted, and what gc would free.
    orphan = sim.inject(str(root), "orphan-dir")
    blob = sim.inject(str(root), "unreferenced-blob")
    daemon.wait_for(opened("orphan_data_dir", orphan["subject"]))
    daemon.wait_for(opened("unreferenced_blob", blob["subject"]))
    got = wait_file(prom, counts(orphan_data_dir=1, unreferenced_blob=1), "the orphan and the blob open")
    orphan_line = daemon.events("finding.opened", kind="orphan_data_dir")[0]
    assert got[("cocoond_reclaimable_bytes", (("kind", "orphan_data_dir"),))] == orphan_line["bytes"] > 0
    blob_line = daemon.events("finding.opened", kind="unreferenced_blob")[0]
    assert got[("cocoond_reclaimable_bytes", (("kind", "unreferenced_blob"),))] == blob_line["bytes"] > 0

    # Resolved: back to 0 (the series stays, so a rule sees 0, not absence).
    shutil.rmtree(sim.data_dir(str(root), orphan["subject"]))
    sim.write_snapshot_files(sim.data_dir(str(root), missing["subject"]))
    daemon.wait_for(resolved("missing_data_dir"))
    daemon.wait_for(resolved("orphan_data_dir"))
    got = wait_file(prom, counts(missing_data_dir=0, orphan_data_dir=0), "both resolved")
    assert got[("cocoond_reclaimable_bytes", (("kind", "orphan_data_dir"),))] == 0
    assert open_count(got, "unreferenced_blob") == 1
    assert daemon.stop()[0] == 0


def test_textfile_is_rewritten_at_each_heartbeat(
    daemons: Daemons, root: Path, sim: ModuleType, tmp_path: Path
) -> None:
    sim.init(str(root))
    sim.create(str(root), name="quiet")
    prom = tmp_path / "cocoond.prom"
    daemon = daemons.start(
        root, overrides={"metrics": {"textfile": str(prom)}, "alerts": {"heartbeat_seconds": 1.5}}
    )
    daemon.wait_ready()
    wait_file(prom, lambda s: s.get(("cocoond_heartbeat_interval_seconds", ())) == 1.5, "the first write")
    # Nothing changes in the tree; each heartbeat still replaces the file (a
    # new inode per atomic write), so node_exporter's mtime says it is alive.
    inodes = {prom.stat().st_ino}
    for _ in range(2):
        mark = daemon.mark()
        daemon.wait_event("daemon.heartbeat", since=mark)
        deadline = time.monotonic() + WAIT
        while prom.stat().st_ino in inodes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert prom.stat().st_ino not in inodes, "not rewritten after a heartbeat"
        inodes.add(prom.stat().st_ino)
    assert daemon.stop()[0] == 0


def test_a_missing_directory_is_logged_once_and_does_not_stop_the_daemon(
    daemons: Daemons, root: Path, sim: ModuleType, tmp_path: Path
) -> None:
    sim.init(str(root))
    prom = tmp_path / "not-yet" / "cocoond.prom"
    daemon = daemons.start(
        root, overrides={"metrics": {"textfile": str(prom)}, "alerts": {"heartbeat_seconds": 0.5}}
    )
    daemon.wait_ready()
    failed = daemon.wait_event("metrics.write_failed")
    assert failed["level"] == "warning" and failed["path"] == str(prom)
    mark = daemon.mark()
    daemon.wait_event("daemon.heartbeat", since=mark)
    daemon.wait_event("daemon.heartbeat", since=daemon.mark())
    assert len(daemon.events("metrics.write_failed")) == 1
    prom.parent.mkdir()  # node_exporter installed: the next heartbeat writes it
    wait_file(prom, lambda s: ("cocoond_snapshots", ()) in s, "the file, once its directory exists")
    assert daemon.stop()[0] == 0
