"""`cocoond run` on DBs only Go's decoding rules judge right: nesting past
Go's limit (issue 10 item 1: it used to crash on every restart), a field
of the wrong type (issue 9 item 10), and their repair."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemons, daemons_for, lifecycle_errors, opened, resolved

DB = "snapshot/db/snapshots.json"


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def write_db(root: Path, text: str) -> None:
    """As cocoon writes it: a temp file renamed over the DB."""
    tmp = root / "snapshot/db/.tmp-test"
    tmp.write_text(text)
    os.replace(tmp, root / DB)


def nest(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ('{"snapshots":{},"x":' + nest(10_000) + "}", "exceeded max depth 10000"),
        (
            '{"snapshots":{"A":{"id":"A","hypervisor":5}},"names":{}}',
            "json: cannot unmarshal number into Go struct field "
            "SnapshotRecord.snapshots.Snapshot.SnapshotConfig.hypervisor of type string",
        ),
    ],
)
def test_daemon_reports_what_go_cannot_read_and_recovers(
    daemons: Daemons, root: Path, bad: str, says: str
) -> None:
    (root / "snapshot/db").mkdir(parents=True)
    (root / "snapshot/localfile").mkdir(parents=True)
    write_db(root, bad)
    daemon = daemons.start(root)
    daemon.wait_ready()
    finding = daemon.wait_for(opened("db_unreadable", DB))
    assert says in finding["message"], finding

    mark = daemon.mark()
    # The same nesting one level shallower is Go's limit exactly: it reads.
    write_db(root, '{"snapshots":{},"x":' + nest(9_999) + "}")
    daemon.wait_for(resolved("db_unreadable", DB), since=mark)
    daemon.wait_event("index.loaded", since=mark, snapshots=0)
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.stderr
    assert lifecycle_errors(daemon.lines) == []
