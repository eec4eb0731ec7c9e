"""`cocoond run` on the host hand-built from cocoon's write paths
(tests/test_cocoon_host.py) reaches check's verdict after settle: silent on
the healthy host, Firecracker's trusted paths judged against the config's
one run_dir (not the daemon's environment), and a lock file gc cannot take
found at the next rescan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemons, daemons_for, opened
from tests.test_cocoon_host import SNAP_FC, SNAP_IMPORTED, healthy
from tests.test_fault_campaign import CAMPAIGN, agree


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def test_run_on_the_hand_built_host(daemons: Daemons, tmp_path: Path) -> None:
    host = healthy(tmp_path / "host")
    daemon = daemons.start(
        host.root,
        CAMPAIGN,
        overrides={"run_dir": str(host.run), "log_dir": str(host.log), "watch": {"full_rescan_seconds": 1}},
        env={"COCOON_RUN_DIR": "/nonexistent/elsewhere", "COCOON_LOG_DIR": "/nonexistent/elsewhere"},
    )
    daemon.wait_ready()
    assert agree(daemon, host.root, "healthy") == {}
    (host.root / "snapshot/db/snapshots.lock").unlink()
    (host.root / "snapshot/db/snapshots.lock").mkdir()
    blocked = daemon.wait_for(opened("gc_blocked", "gc"), what="gc_blocked")
    assert "snapshots.lock" in blocked["message"], blocked
    agree(daemon, host.root, "lock dir")
    assert daemon.stop()[0] == 0


def test_run_trusts_the_configs_run_dir_only(daemons: Daemons, tmp_path: Path) -> None:
    host = healthy(tmp_path / "host")
    daemon = daemons.start(
        host.root,
        CAMPAIGN,
        overrides={"run_dir": "/var/lib/cocoon/run", "log_dir": str(host.log)},
        env={"COCOON_RUN_DIR": str(host.run)},
    )
    daemon.wait_ready()
    found = agree(daemon, host.root, "untrusted")
    assert found == {
        ("incomplete_data_dir", SNAP_FC): "error",
        ("incomplete_data_dir", SNAP_IMPORTED): "error",
    }
    assert daemon.stop()[0] == 0


def test_run_judges_a_foreign_data_dir(daemons: Daemons, tmp_path: Path) -> None:
    """A record moved to a dir elsewhere (restore reads it: localfile.go:227)."""
    import json
    import shutil

    from tests.test_cocoon_host import SNAP_CH_OCI, go_json, write

    host = healthy(tmp_path / "host")
    daemon = daemons.start(
        host.root, CAMPAIGN, overrides={"run_dir": str(host.run), "log_dir": str(host.log)}
    )
    daemon.wait_ready()
    moved = tmp_path / "moved" / SNAP_CH_OCI
    shutil.copytree(host.root / "snapshot/localfile" / SNAP_CH_OCI, moved)
    (moved / "state.json").unlink()
    snaps = json.loads((host.root / "snapshot/db/snapshots.json").read_text())
    snaps["snapshots"][SNAP_CH_OCI]["data_dir"] = str(moved)
    write(host.root / "snapshot/db/snapshots.json", go_json(snaps) + "\n")
    daemon.wait_for(opened("incomplete_data_dir", SNAP_CH_OCI), what="incomplete_data_dir")
    assert agree(daemon, host.root, "moved") == {
        ("data_dir_mismatch", SNAP_CH_OCI): "warning",
        ("incomplete_data_dir", SNAP_CH_OCI): "error",
    }
    assert daemon.stop()[0] == 0
