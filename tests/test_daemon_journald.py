"""`cocoond run` with its stdout connected to the journal, as systemd does
it: JOURNAL_STREAM names the device and inode of the daemon's stdout (a
pipe of the harness), and a listener speaking journald's native protocol
stands at the socket the daemon is pointed to. Every event must arrive
there as one entry with its priority and fields, none on stdout."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cocoond.daemon.journald import SOCKET_ENV
from cocoond.output import json_line
from tests.conftest import CONTRACT_SEVERITY
from tests.daemon_harness import Daemons, LogLine, daemons_for, lifecycle_errors
from tests.journal_listener import Entry, JournalListener

PRIORITY = {"error": "3", "warning": "4", "info": "6", "debug": "7"}


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[JournalListener]:
    listener = JournalListener(tmp_path)
    try:
        yield listener
    finally:
        listener.close()


def event_is(event: str, kind: str | None = None) -> Callable[[Entry], bool]:
    return lambda e: e.get("COCOOND_EVENT") == event and (kind is None or e.get("COCOOND_KIND") == kind)


def test_each_event_is_a_journal_entry_with_priority_and_fields(
    daemons: Daemons, journal: JournalListener, sim: ModuleType, root: Path
) -> None:
    sim.init(str(root))
    sim.create(str(root), name="healthy")
    missing = sim.inject(str(root), "missing-dir")  # error
    orphan = sim.inject(str(root), "orphan-dir")  # warning
    unreferenced = sim.inject(str(root), "unreferenced-blob")  # info
    daemon = daemons.start(
        root,
        overrides={"alerts": {"heartbeat_seconds": 0.5, "reminder_seconds": 0}},
        env={SOCKET_ENV: journal.address},
        journal_stream=True,
    )
    daemon.wait_ready()
    for fault in (missing, orphan, unreferenced):
        journal.wait(event_is("finding.opened", fault["kind"]))
    journal.wait(event_is("daemon.heartbeat"))

    sim.write_snapshot_files(sim.data_dir(str(root), missing["subject"]))
    journal.wait(event_is("finding.resolved", "missing_data_dir"))
    shutil.rmtree(sim.data_dir(str(root), orphan["subject"]))
    journal.wait(event_is("finding.resolved", "orphan_data_dir"))
    assert daemon.stop()[0] == 0
    entries = journal.wait(event_is("daemon.stopping"))
    entries = journal.snapshot()

    assert journal.errors == []
    # Nothing went to stdout: every line is in the journal instead.
    assert daemon.lines == [], daemon.describe()
    events = [check_entry(entry) for entry in entries]
    names = [line["event"] for line in events]
    assert names[0] == "daemon.started" and names[-1] == "daemon.stopping", names
    assert {"index.loaded", "daemon.heartbeat", "finding.opened", "finding.resolved"} <= set(names)
    assert lifecycle_errors(events) == []

    by_kind = {e.get("COCOOND_KIND"): e for e in entries if e.get("COCOOND_EVENT") == "finding.opened"}
    for fault in (missing, orphan, unreferenced):
        entry = by_kind[fault["kind"]]
        severity = CONTRACT_SEVERITY[fault["kind"]]
        assert entry.get("PRIORITY") == PRIORITY[severity], entry
        assert entry.get("COCOOND_SEVERITY") == severity
        assert entry.get("COCOOND_SUBJECT") == fault["subject"]
    assert by_kind["missing_data_dir"].get("COCOOND_SNAPSHOT_ID") == missing["subject"]
    # `journalctl -p warning` (PRIORITY <= 4) holds exactly the findings above info.
    loud = [json.loads(e.message) for e in entries if int(e.get("PRIORITY") or 9) <= 4]
    assert sorted(x["kind"] for x in loud) == ["missing_data_dir", "orphan_data_dir"], loud


def check_entry(entry: Entry) -> LogLine:
    """The fields every entry carries, agreeing with its MESSAGE; returns
    the MESSAGE as the harness's stdout line would have been parsed."""
    text = entry.message.decode("utf-8")
    line = LogLine(text, 0, 0.0)
    assert line.is_json, text
    # The stdout renderer's exact output for this event: one JSON line.
    assert json_line(dict(line))[:-1] == text
    assert entry.get("PRIORITY") == PRIORITY[line["level"]], text
    assert entry.get("SYSLOG_IDENTIFIER") == "cocoond"
    assert entry.get("COCOOND_EVENT") == line["event"]
    for field, name in (
        ("kind", "COCOOND_KIND"),
        ("severity", "COCOOND_SEVERITY"),
        ("subject", "COCOOND_SUBJECT"),
    ):
        assert entry.get(name) == (str(line[field]) if field in line else None), (name, text)
    return line


def test_unreachable_journal_socket_means_stdout_lines(
    daemons: Daemons, tmp_path: Path, sim: ModuleType, root: Path
) -> None:
    """No listener at the socket: the daemon says so once and carries on
    with plain stdout lines, which the journal stream still takes."""
    sim.init(str(root))
    sim.inject(str(root), "missing-dir")
    daemon = daemons.start(root, env={SOCKET_ENV: str(tmp_path / "absent.socket")}, journal_stream=True)
    daemon.wait_ready()
    daemon.wait_event("finding.opened", kind="missing_data_dir")
    assert daemon.stop()[0] == 0
    names = [line["event"] for line in daemon.lines]
    assert names[0] == "log.journal_unavailable", names
    assert names[1] == "daemon.started", names
    assert names.count("log.journal_unavailable") == 1
    assert names[-1] == "daemon.stopping"
