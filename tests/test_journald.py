"""cocoond/daemon/journald.py and the journal side of logsetup.py, in
process, against tests/journal_listener.py: the wire format, the memfd
path for entries too large for a datagram, detection of the journal
stream, and the fallback to stdout."""

from __future__ import annotations

import datetime
import io
import json
import os
import struct
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from cocoond.daemon.journald import JournalSocket, encode_entry, stdout_is_journal
from cocoond.daemon.logsetup import JournalSink, configure
from tests.journal_listener import JournalListener, parse_entries


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[JournalListener]:
    with JournalListener(tmp_path / "journal.sock") as journal:
        yield journal


# ------------------------------------------------------------- wire format
def test_plain_fields_are_key_equals_value_lines() -> None:
    assert encode_entry([("MESSAGE", "hi there"), ("PRIORITY", 3)]) == b"MESSAGE=hi there\nPRIORITY=3\n"


def test_a_value_with_a_newline_uses_the_binary_safe_form() -> None:
    # The protocol document's own example: FOO with value BAR\n... (length 4).
    assert encode_entry([("FOO", "BA\nR")]) == b"FOO\n" + struct.pack("<Q", 4) + b"BA\nR\n"
    errors: list[str] = []
    [entry] = parse_entries(encode_entry([("A", "x"), ("B", "1\n2\n"), ("C", b"\x00\n\xff")]), errors)
    assert errors == []
    assert entry.fields == {"A": [b"x"], "B": [b"1\n2\n"], "C": [b"\x00\n\xff"]}
    assert entry.binary == {"B", "C"}


def test_values_are_utf8_and_a_lone_surrogate_is_escaped_not_fatal() -> None:
    assert encode_entry([("S", "\u2603")]) == "S=\u2603\n".encode()
    assert encode_entry([("S", "a\udc80b")]) == b"S=a\\udc80b\n"


@pytest.mark.parametrize("name", ["", "message", "_PID", "1ST", "A" * 65, "FO=O", "FO O", "FO\nO", "FÖO"])
def test_field_names_journald_would_drop_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a journal field name"):
        encode_entry([(name, "x")])


def test_longest_field_name_is_accepted() -> None:
    assert encode_entry([("A" * 64, "x")]) == b"A" * 64 + b"=x\n"


# ---------------------------------------------------------- the stream check
def test_stdout_is_journal_compares_dev_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "stream"
    path.write_bytes(b"")
    other = tmp_path / "other"
    other.write_bytes(b"")
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        ost = os.stat(other)
        assert stdout_is_journal(fh.fileno(), {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stdout_is_journal(fh.fileno(), {"JOURNAL_STREAM": f"{ost.st_dev}:{ost.st_ino}"})
        for bad in (
            "",
            f"{st.st_dev}",
            f"{st.st_dev}:",
            f":{st.st_ino}",
            f"{st.st_dev}:{st.st_ino}:0",
            "a:b",
        ):
            assert not stdout_is_journal(fh.fileno(), {"JOURNAL_STREAM": bad}), bad
        assert not stdout_is_journal(fh.fileno(), {})
    assert not stdout_is_journal(-1, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})


# ------------------------------------------------------------------ sending
def test_an_entry_is_one_datagram(listener: JournalListener) -> None:
    sock = JournalSocket(str(listener.path))
    sock.send([("MESSAGE", "one"), ("PRIORITY", 6), ("MULTI", "a\nb")])
    entry = listener.wait_for(lambda e: e.message == "one")
    assert entry.get("MULTI") == "a\nb" and not entry.via_memfd
    sock.close()
    assert listener.errors == []


def test_an_entry_too_big_for_a_datagram_goes_whole_in_a_sealed_memfd(listener: JournalListener) -> None:
    # The smallest send buffer the kernel allows (a few KiB): 200 KiB cannot
    # fit, so the entry must travel in a memfd, sealed, never split.
    sock = JournalSocket(str(listener.path), sndbuf=1)
    big = "x" * 200_000
    sock.send([("MESSAGE", big), ("PRIORITY", 3), ("COCOOND_SUBJECT", "line\nbreak")])
    entry = listener.wait_for(lambda e: e.get("PRIORITY") == "3")
    assert entry.via_memfd
    assert entry.message == big and entry.get("COCOOND_SUBJECT") == "line\nbreak"
    assert len(listener.entries) == 1
    assert listener.errors == []  # the listener checks the seals journald needs
    sock.send([("MESSAGE", "small")])
    assert not listener.wait_for(lambda e: e.message == "small").via_memfd
    sock.close()


def test_no_journal_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        JournalSocket(str(tmp_path / "absent.sock")).send([("MESSAGE", "x")])


# ------------------------------------------------------- logsetup's journal
def test_each_level_gets_its_priority_and_the_line_is_the_message(listener: JournalListener) -> None:
    sink = JournalSink(JournalSocket(str(listener.path)), io.StringIO())
    log = configure("json", "debug", journal=sink)
    log.debug("d.event")
    log.info("i.event", kind="pending", subject="S1")
    log.warning("w.event", severity="warning", kind="orphan_data_dir", subject="S2", snapshot_id="S2")
    log.error("e.event", severity="error", kind="missing_blob", subject="abc", snapshot_id=None)
    entries = listener.wait_count(lambda e: True, 4)
    assert [e.get("PRIORITY") for e in entries] == ["7", "6", "4", "3"]
    objs = [json.loads(e.message) for e in entries]
    assert [o["event"] for o in objs] == ["d.event", "i.event", "w.event", "e.event"]
    assert [o["level"] for o in objs] == ["debug", "info", "warning", "error"]
    assert entries[0].get("COCOOND_KIND") is None and entries[0].get("COCOOND_EVENT") == "d.event"
    assert entries[1].get("COCOOND_KIND") == "pending" and entries[1].get("COCOOND_SEVERITY") is None
    assert entries[2].get("COCOOND_SNAPSHOT_ID") == "S2" and entries[2].get("COCOOND_SEVERITY") == "warning"
    assert entries[3].get("COCOOND_SNAPSHOT_ID") is None  # None is "does not apply"
    assert sink.fallback.getvalue() == ""  # type: ignore[attr-defined]


def test_a_filtered_level_sends_nothing(listener: JournalListener) -> None:
    log = configure("json", "warning", journal=JournalSink(JournalSocket(str(listener.path)), io.StringIO()))
    log.info("quiet")
    log.warning("loud")
    assert listener.wait_for(lambda e: True).get("COCOOND_EVENT") == "loud"
    assert len(listener.entries) == 1


def test_console_format_is_sent_too(listener: JournalListener) -> None:
    log = configure("console", "info", journal=JournalSink(JournalSocket(str(listener.path)), io.StringIO()))
    log.error("finding.opened", kind="missing_blob", subject="abc")
    entry = listener.wait_for(lambda e: True)
    assert entry.get("PRIORITY") == "3" and entry.get("COCOOND_KIND") == "missing_blob"
    assert "finding.opened" in entry.message and "kind=missing_blob" in entry.message


def test_unreachable_journal_prints_lines_and_says_so_once_then_restores(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    out = io.StringIO()
    log = configure("json", "info", journal=JournalSink(JournalSocket(str(path)), out))
    log.info("first", n=1)
    log.error("second", n=2)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["log.journal_unreachable", "first", "second"]
    assert lines[0]["level"] == "warning" and lines[0]["socket"] == str(path) and lines[0]["error"]
    assert set(lines[0]) == {"socket", "error", "event", "level", "timestamp"}

    with JournalListener(path) as journal:
        log.warning("third")
        entries = journal.wait_count(lambda e: True, 2)
        assert [e.get("COCOOND_EVENT") for e in entries] == ["third", "log.journal_restored"]
        assert [e.get("PRIORITY") for e in entries] == ["4", "6"]
        assert len(out.getvalue().splitlines()) == 3
        assert journal.errors == []
    log.info("fourth")  # gone again: said again, once
    log.info("fifth")
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()[3:]]
    assert events == ["log.journal_unreachable", "fourth", "fifth"]


def test_a_stream_keeps_todays_stdout_lines() -> None:
    out = io.StringIO()
    log = configure("json", "info", stream=out)
    log.warning("plain", kind="k")
    [line] = out.getvalue().splitlines()
    assert json.loads(line)["event"] == "plain" and out.getvalue().endswith("}\n")


# ------------------------------------------- byte for byte, in one process
FROZEN = datetime.datetime(2026, 11, 28, 8, 30, 0, 123456, tzinfo=datetime.UTC)


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """structlog's TimeStamper reads datetime.datetime.now: frozen, so the
    same events render the same lines in two configurations."""

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return FROZEN

    monkeypatch.setattr(
        structlog.processors, "datetime", types.SimpleNamespace(datetime=Frozen, timezone=datetime.timezone)
    )


def _events(log: Any, odd: str) -> None:
    """The shapes the daemon writes, with strings a DB can hold."""
    log.info("daemon.started", root="/data01/cocoon", version="0.2.0", pid=42)
    log.error("finding.opened", severity="error", kind="missing_data_dir", subject="S1", name='vm-ä"\n')
    log.warning("finding.opened", severity="warning", kind="orphan_data_dir", subject=odd, bytes=4096)
    log.info("daemon.heartbeat", open={"info": 0, "warning": 1, "error": 0}, snapshots=3, blobs=2)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("crash")  # console: a traceback, many lines


@pytest.mark.usefixtures("frozen_time")
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_message_is_the_stdout_text_byte_for_byte(listener: JournalListener, fmt: str) -> None:
    """The same events to plain stdout and to the journal: each MESSAGE is
    what stdout got for that event, exactly (timestamps included), and a
    console traceback, several stdout lines, is one entry whose newlines
    travel in the binary-safe form."""
    # The console renderer writes a lone surrogate raw, which a UTF-8
    # stream cannot encode; JSON escapes it.
    odd = "dead\udcff" if fmt == "json" else "dead"
    plain = io.StringIO()
    _events(configure(fmt, "info", stream=plain), odd)
    sink = JournalSink(JournalSocket(str(listener.path)), io.StringIO())
    _events(configure(fmt, "info", journal=sink), odd)
    entries = listener.wait_count(lambda e: True, 5)
    assert listener.errors == []
    assert "".join(e.message + "\n" for e in entries) == plain.getvalue()
    assert ["MESSAGE" in e.binary for e in entries] == [False] * 4 + [fmt == "console"]


def test_console_lines_survive_a_lone_surrogate() -> None:
    import io

    from cocoond.daemon.logsetup import configure

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, as a terminal's stdout
    log = configure("console", "info", stream=out)
    log.info("finding.opened", name="bad\udcffname")
    out.flush()
    assert "bad\\udcffname" in out.buffer.getvalue().decode()


def test_console_lines_escape_control_and_bidi_characters() -> None:
    """Issue 18: a dir named with ESC/BEL/bidi sequences must not drive the
    operator's terminal through `[log] format = "console"`."""
    out = io.StringIO()
    log = configure("console", "info", stream=out)
    log.warning(
        "finding.opened", subject="\x1b[31mred", snapshot_id="bell\x07", path="/r/bidi\u202eevil", name="ok"
    )
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert all(ch.isprintable() for ch in text[:-1]), repr(text)
    for escaped in ("\\x1b[31mred", "bell\\x07", "bidi\\u202eevil", "name=ok"):
        assert escaped in text, (escaped, text)


def test_resolved_lines_carry_the_identifying_journal_fields(listener: JournalListener) -> None:
    log = configure("json", "info", journal=JournalSink(JournalSocket(str(listener.path)), io.StringIO()))
    log.info(
        "finding.resolved",
        kind="missing_data_dir",
        subject="SID",
        severity="error",
        snapshot_id="SID",
        name="web",
        path="/r/snapshot/localfile/SID",
    )
    entry = listener.wait_for(lambda e: e.get("COCOOND_EVENT") == "finding.resolved")
    assert entry.get("PRIORITY") == "6"
    assert entry.get("COCOOND_SEVERITY") == "error"
    assert entry.get("COCOOND_SNAPSHOT_ID") == "SID"
    assert entry.get("COCOOND_NAME") == "web"
    assert entry.get("COCOOND_PATH") == "/r/snapshot/localfile/SID"
