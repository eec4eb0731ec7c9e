"""`cocoond run` under a journal: stdout connected as systemd connects it
(a stream socket named by $JOURNAL_STREAM) and journald's native socket
played by tests/journal_listener.py. Each log event must arrive as one
entry with its level's PRIORITY and the COCOOND_* fields, its MESSAGE the
very line stdout gets outside systemd."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond.daemon.journald import SOCKET_ENV
from tests.daemon_harness import Daemons, daemons_for, opened
from tests.journal_listener import Entry, JournalListener

SYSLOG_PRIORITY = {"error": "3", "warning": "4", "info": "6", "debug": "7"}
#: Event field -> journal field, written out rather than imported.
FIELDS = {
    "event": "COCOOND_EVENT",
    "kind": "COCOOND_KIND",
    "severity": "COCOOND_SEVERITY",
    "subject": "COCOOND_SUBJECT",
    "snapshot_id": "COCOOND_SNAPSHOT_ID",
}
#: A name with a newline (binary-safe field form), a non-ASCII character and
#: a control character (escaped in JSON, raw in the journal field).
ODD_NAME = "web\n1 \u2603 \x1b[31m"
#: Values that differ between two runs of the same tree.
_VARYING = re.compile(r'"(timestamp|pid|duration_ms|age_seconds|open_seconds)": ("[^"]*"|[-+0-9.eE]+)')


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[JournalListener]:
    with JournalListener(tmp_path / "journal.sock") as journal:
        yield journal


def event(name: str, **fields: str) -> Any:
    def match(entry: Entry) -> bool:
        obj = json.loads(entry.message)
        return bool(obj.get("event") == name and all(obj.get(k) == v for k, v in fields.items()))

    return match


def broken_tree(sim: ModuleType, root: Path) -> int:
    """Findings of every severity, one with a snapshot_id and one whose
    subject holds a newline. Returns how many open."""
    sim.init(str(root))
    sim.create(str(root), name="healthy")
    for fault in ("missing-dir", "missing-blob", "orphan-dir", "unreferenced-blob"):
        sim.inject(str(root), fault)
    with sim.flock(sim.snapshot_lock(str(root))):
        db = sim.load_snapshots(str(root))
        db["names"][ODD_NAME] = sim.new_id()
        sim.atomic_write_json(sim.snapshot_db(str(root)), db)
    return 5


def masked(line: str) -> str:
    return _VARYING.sub(r'"\1": *', line)


def test_entries_carry_priority_and_fields_and_the_stdout_line(
    daemons: Daemons, listener: JournalListener, root: Path, sim: ModuleType
) -> None:
    count = broken_tree(sim, root)
    daemon = daemons.start(root, journal_stream=True, env={SOCKET_ENV: str(listener.path)})
    daemon.wait_ready()
    listener.wait_count(event("finding.opened"), count, what="finding.opened")
    assert daemon.stop()[0] == 0
    listener.wait_for(event("daemon.stopping"))

    assert listener.errors == []
    assert daemon.lines == [], "with the journal reachable, nothing goes to stdout"
    priorities = set()
    for entry in listener.entries:
        obj = json.loads(entry.message)
        assert entry.get("PRIORITY") == SYSLOG_PRIORITY[obj["level"]], entry.message
        priorities.add(entry.get("PRIORITY"))
        assert entry.get("SYSLOG_IDENTIFIER") == "cocoond"
        assert entry.get("SYSLOG_FACILITY") == "3"
        for key, name in FIELDS.items():
            expected = obj.get(key)
            assert entry.get(name) == (None if expected is None else str(expected)), (name, entry.message)
        assert all(len(values) == 1 for values in entry.fields.values()), entry.fields
        assert not entry.via_memfd  # small entries travel as datagrams
    assert {"3", "4", "6"} <= priorities

    odd = listener.wait_for(event("finding.opened", kind="dangling_name"))
    assert odd.get("COCOOND_SUBJECT") == ODD_NAME
    assert "COCOOND_SUBJECT" in odd.binary, "a value with a newline must use the binary-safe form"
    assert "MESSAGE" not in odd.binary, "the JSON line escapes the newline"
    assert listener.wait_for(event("finding.opened", kind="missing_blob")).get("COCOOND_SNAPSHOT_ID")

    # The same tree outside systemd: stdout gets the same lines, byte for
    # byte but for the values that differ between runs (times, pid).
    plain = daemons.start(root)
    plain.wait_ready()
    plain.wait_count(opened("dangling_name"), 1)
    plain.wait_count(lambda line: line.get("event") == "finding.opened", count)
    assert plain.stop()[0] == 0
    # Compared: the lines both runs must log the same way. Others depend on
    # timing (a rescan, a second index.loaded on a loaded machine) and may
    # come in one run and not the other.
    same = {"daemon.started", "finding.opened", "daemon.stopping"}

    def comparable(raw: str) -> bool:
        return json.loads(raw).get("event") in same

    from_stdout = Counter(masked(line.raw) for line in plain.lines if comparable(line.raw))
    from_journal = Counter(masked(e.message) for e in listener.entries if comparable(e.message))
    assert from_journal == from_stdout
    assert sum(from_stdout.values()) >= count + 2  # started, opened..., stopping


def test_unreachable_journal_falls_back_to_stdout_and_says_so_once(
    daemons: Daemons, root: Path, sim: ModuleType, tmp_path: Path
) -> None:
    sim.init(str(root))
    sim.create(str(root), name="healthy")
    sim.inject(str(root), "missing-dir")
    socket_path = tmp_path / "journal.sock"  # nothing listens there yet
    daemon = daemons.start(root, journal_stream=True, env={SOCKET_ENV: str(socket_path)})
    daemon.wait_ready()
    daemon.wait_for(opened("missing_data_dir"))
    notices = daemon.events("log.journal_unreachable")
    assert len(notices) == 1
    assert notices[0]["level"] == "warning" and notices[0]["socket"] == str(socket_path)
    assert notices[0].index == 0, "said before the first line it concerns"
    assert all(line.is_json for line in daemon.lines)
    assert {"daemon.started", "index.loaded", "finding.opened"} <= {line["event"] for line in daemon.lines}

    # journald comes (back): the next lines are entries again, and that is said once.
    with JournalListener(socket_path) as journal:
        mark = daemon.mark()
        found = sim.inject(str(root), "orphan-dir")
        restored = journal.wait_for(event("log.journal_restored"))
        assert restored.get("PRIORITY") == "6"
        entry = journal.wait_for(event("finding.opened", kind="orphan_data_dir"))
        assert entry.get("COCOOND_SUBJECT") == found["subject"] and entry.get("PRIORITY") == "4"
        assert daemon.stop()[0] == 0
        journal.wait_for(event("daemon.stopping"))
        assert daemon.lines[mark:] == []
        assert len(daemon.events("log.journal_unreachable")) == 1
        assert journal.errors == []


def test_redirected_stdout_is_not_the_journal(
    daemons: Daemons, listener: JournalListener, root: Path, sim: ModuleType
) -> None:
    """$JOURNAL_STREAM inherited by a process whose stdout was redirected
    (here, a pipe) names another file: lines stay on stdout."""
    sim.init(str(root))
    sim.inject(str(root), "missing-dir")
    other = os.stat(listener.path)
    env = {"JOURNAL_STREAM": f"{other.st_dev}:{other.st_ino}", SOCKET_ENV: str(listener.path)}
    daemon = daemons.start(root, env=env)
    daemon.wait_ready()
    daemon.wait_for(opened("missing_data_dir"))
    assert daemon.stop()[0] == 0
    assert listener.entries == []
    assert daemon.events("daemon.stopping")


def test_an_unseen_root_reaches_the_journal_at_err(
    daemons: Daemons, listener: JournalListener, tmp_path: Path
) -> None:
    """Issue 18: a root that is not there (unmounted, mistyped) is one entry
    at priority err naming the root, not a run of info lines."""
    root = tmp_path / "not-mounted"
    root.mkdir()
    daemon = daemons.start(root, journal_stream=True, env={SOCKET_ENV: str(listener.path)})
    daemon.wait_ready()
    entry = listener.wait_for(event("finding.opened", kind="root_unseen"))
    assert entry.get("PRIORITY") == "3"
    assert entry.get("COCOOND_SUBJECT") == str(root)
    assert "is empty" in json.loads(entry.message)["message"]
    assert daemon.stop()[0] == 0
