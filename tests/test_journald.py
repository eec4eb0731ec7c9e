"""journald's native protocol in process: the encoding, the detection of the
journal stream, and the logger that sends each event as one entry whose
MESSAGE is byte for byte the stdout line it replaces."""

from __future__ import annotations

import datetime as real_datetime
import json
import os
import socket
import struct
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from cocoond.daemon import journald, logsetup
from cocoond.daemon.logsetup import configure
from tests.journal_listener import Entry, JournalListener, parse

FROZEN = real_datetime.datetime(2026, 11, 28, 8, 30, 0, 123456, tzinfo=real_datetime.UTC)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[JournalListener]:
    lis = JournalListener(tmp_path)
    try:
        yield lis
    finally:
        lis.close()


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    if logsetup._current is not None:
        logsetup._current.close()
        logsetup._current = None
    structlog.reset_defaults()


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """structlog's TimeStamper reads datetime.datetime.now: frozen, so two
    runs of the same events render the same lines."""

    class Frozen(real_datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return FROZEN

    fake = types.SimpleNamespace(datetime=Frozen, timezone=real_datetime.timezone)
    monkeypatch.setattr(structlog.processors, "datetime", fake)


def journal_env(stream: Any, address: str) -> dict[str, str]:
    st = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", journald.SOCKET_ENV: address}


def stdout_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def emit_all(log: Any, odd: str = "dead\udcff") -> None:
    """Events of every level and shape the daemon writes, with strings a DB
    can hold: non-ASCII, a lone surrogate (`odd`), a newline, a quote."""
    log.info("daemon.started", root="/data01/cocoon", version="0.2.0", pid=42)
    log.error(
        "finding.opened",
        severity="error",
        kind="missing_data_dir",
        subject="0123456789abcdef",
        snapshot_id="0123456789abcdef",
        name='vm-ä"\n',
        message="snapshot 'vm' has no data dir",
    )
    log.warning("finding.opened", severity="warning", kind="orphan_data_dir", subject=odd, bytes=4096)
    log.info("finding.resolved", kind="missing_data_dir", subject="0123456789abcdef", open_seconds=1.5)
    log.debug("debug.only", detail="x")
    log.info("daemon.heartbeat", open={"info": 0, "warning": 1, "error": 0}, snapshots=3, blobs=2)


# ----------------------------------------------------------------- encoding
def test_encode_uses_the_two_forms_of_the_spec() -> None:
    # The spec's own examples: FOO=BAR as text, and a value with a newline
    # as name, newline, little-endian u64 length, value, newline.
    assert journald.encode([("FOO", "BAR")]) == b"FOO=BAR\n"
    assert journald.encode([("BINARY_BLOB", b"xx\nx")]) == (
        b"BINARY_BLOB\n\x04\x00\x00\x00\x00\x00\x00\x00xx\nx\n"
    )
    fields, binary = parse(journald.encode([("A", "1"), ("B", "two\nlines"), ("C", "")]))
    assert fields == [("A", b"1"), ("B", b"two\nlines"), ("C", b"")]
    assert binary == {"B"}


def test_entry_fields_priority_and_cocoond_fields() -> None:
    fields = dict(
        journald.entry_fields(
            "error",
            {"event": "finding.opened", "kind": "missing_blob", "severity": "error", "subject": "ab" * 32},
        )
    )
    assert fields["PRIORITY"] == "3"
    assert fields["SYSLOG_IDENTIFIER"] == "cocoond"
    assert fields["SYSLOG_FACILITY"] == "3"
    assert fields["COCOOND_EVENT"] == "finding.opened"
    assert fields["COCOOND_KIND"] == "missing_blob"
    assert fields["COCOOND_SEVERITY"] == "error"
    assert fields["COCOOND_SUBJECT"] == "ab" * 32
    assert "COCOOND_SNAPSHOT_ID" not in fields  # only where it applies
    levels = {level: dict(journald.entry_fields(level, {}))["PRIORITY"] for level in journald.PRIORITY}
    assert levels == {"critical": "2", "error": "3", "warning": "4", "info": "6", "debug": "7"}


# ---------------------------------------------------------------- detection
def test_stdout_is_journal_compares_device_and_inode(tmp_path: Path) -> None:
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert journald.stdout_is_journal(env, a.fileno())
        # Inherited by a process whose stdout was redirected elsewhere.
        assert not journald.stdout_is_journal(env, b.fileno())
        for bad in ("", "garbage", f"{st.st_dev}", f"{st.st_dev}:", f"x:{st.st_ino}"):
            assert not journald.stdout_is_journal({"JOURNAL_STREAM": bad}, a.fileno()), bad
        assert not journald.stdout_is_journal({}, a.fileno())


def test_socket_address_default_path_and_abstract() -> None:
    assert journald.socket_address({}) == b"/run/systemd/journal/socket"
    assert journald.socket_address({journald.SOCKET_ENV: "/tmp/j.sock"}) == b"/tmp/j.sock"
    assert journald.socket_address({journald.SOCKET_ENV: "@cocoond-j"}) == b"\0cocoond-j"


# --------------------------------------------------------------- the logger
@pytest.mark.usefixtures("frozen_time")
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_message_is_the_stdout_line_byte_for_byte(
    tmp_path: Path, listener: JournalListener, fmt: str
) -> None:
    """The same events, once to plain stdout (no journal) and once to the
    journal: each MESSAGE is the stdout line without its newline, exactly;
    and under the journal nothing at all reaches stdout."""
    # The console renderer writes a lone surrogate raw, which stdout cannot
    # encode (with or without the journal): JSON escapes it.
    odd = "dead\udcff" if fmt == "json" else "dead\\udcff"
    plain = tmp_path / "plain.out"
    with open(plain, "w") as out:
        emit_all(configure(fmt, "info", out, environ={}), odd)
    expected = stdout_lines(plain)
    assert len(expected) == 5  # debug is filtered at level info

    under = tmp_path / "journal.out"
    with open(under, "w") as out:
        emit_all(configure(fmt, "info", out, environ=journal_env(out, listener.address)), odd)
    entries = listener.wait(lambda e: True, count=5)
    assert listener.errors == []
    assert under.read_bytes() == b""
    assert [e.message + b"\n" for e in entries] == expected
    assert all("MESSAGE" not in e.binary_keys for e in entries)  # JSON escapes newlines


@pytest.mark.usefixtures("frozen_time")
def test_a_multi_line_event_is_one_entry_in_the_binary_form(
    tmp_path: Path, listener: JournalListener
) -> None:
    """A console line with a traceback is several stdout lines; in the
    journal it is one entry, its newlines kept by the binary-safe form."""

    def crash(log: Any) -> None:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            log.exception("crash")

    plain = tmp_path / "plain.out"
    with open(plain, "w") as out:
        crash(configure("console", "info", out, environ={}))
    with open(tmp_path / "journal.out", "w") as out:
        crash(configure("console", "info", out, environ=journal_env(out, listener.address)))
    (entry,) = listener.wait(lambda e: True)
    assert len(stdout_lines(plain)) > 3
    assert entry.message + b"\n" == plain.read_bytes()
    assert "MESSAGE" in entry.binary_keys
    assert entry.get("PRIORITY") == "3"


@pytest.mark.usefixtures("frozen_time")
def test_priority_and_fields_of_each_event(tmp_path: Path, listener: JournalListener) -> None:
    with open(tmp_path / "out", "w") as out:
        emit_all(configure("json", "debug", out, environ=journal_env(out, listener.address)))
    entries = listener.wait(lambda e: True, count=6)
    by_event = {e.get("COCOOND_EVENT"): e for e in entries if e.get("COCOOND_EVENT") != "finding.opened"}
    opened = [e for e in entries if e.get("COCOOND_EVENT") == "finding.opened"]
    for entry in entries:
        line = json.loads(entry.message)
        assert (
            entry.get("PRIORITY") == {"error": "3", "warning": "4", "info": "6", "debug": "7"}[line["level"]]
        )
        assert entry.get("SYSLOG_IDENTIFIER") == "cocoond"
        assert entry.get("COCOOND_EVENT") == line["event"]
        assert not entry.memfd
    error, warning = opened
    assert error.get("COCOOND_KIND") == "missing_data_dir"
    assert error.get("COCOOND_SEVERITY") == "error"
    assert error.get("COCOOND_SUBJECT") == "0123456789abcdef"
    assert error.get("COCOOND_SNAPSHOT_ID") == "0123456789abcdef"
    assert warning.get("PRIORITY") == "4"
    assert warning.get("COCOOND_KIND") == "orphan_data_dir"
    assert warning.get("COCOOND_SNAPSHOT_ID") is None
    # A lone surrogate has no UTF-8 form: the field says so with an escape.
    assert warning.get("COCOOND_SUBJECT") == "dead\\udcff"
    assert by_event["debug.only"].get("PRIORITY") == "7"
    assert by_event["finding.resolved"].get("COCOOND_KIND") == "missing_data_dir"
    assert by_event["finding.resolved"].get("COCOOND_SEVERITY") is None
    assert by_event["daemon.heartbeat"].get("COCOOND_KIND") is None


def test_an_entry_too_large_for_a_datagram_goes_whole_in_a_sealed_memfd(
    tmp_path: Path, listener: JournalListener
) -> None:
    with open(tmp_path / "out", "w") as out:
        log = configure("json", "info", out, environ=journal_env(out, listener.address))
        # Past the largest datagram this socket can send (its send buffer).
        assert logsetup._current is not None and logsetup._current.sender is not None
        sndbuf = logsetup._current.sender.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        big = "é" * (sndbuf // 2 + (1 << 20))
        log.warning("big.event", blob=big)
        log.info("small.event")
    big_entry, small_entry = listener.wait(lambda e: True, count=2)
    assert big_entry.memfd and not small_entry.memfd
    assert json.loads(big_entry.message)["blob"] == big
    assert big_entry.get("PRIORITY") == "4"
    assert (tmp_path / "out").read_bytes() == b""


def test_an_entry_larger_than_a_stream_line_still_fits_a_datagram(
    tmp_path: Path, listener: JournalListener
) -> None:
    """100 KiB: over journald's 48 KiB stream line limit (which would split
    it), under the datagram limit: one datagram, one entry."""
    with open(tmp_path / "out", "w") as out:
        configure("json", "info", out, environ=journal_env(out, listener.address)).info(
            "wide", x="y" * 100_000
        )
    (entry,) = listener.wait(lambda e: True)
    assert not entry.memfd
    assert json.loads(entry.message)["x"] == "y" * 100_000


def test_journal_unreachable_falls_back_to_stdout_and_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "out"
    with open(path, "w") as out:
        log = configure("json", "info", out, environ=journal_env(out, str(tmp_path / "no-such.socket")))
        log.error("first", n=1)
        log.info("second", n=2)
    lines = [json.loads(x) for x in stdout_lines(path)]
    assert [x["event"] for x in lines] == ["log.journal_unavailable", "first", "second"]
    assert lines[0]["level"] == "warning"
    assert "no-such.socket" in lines[0]["error"]


def test_journal_going_away_falls_back_once(tmp_path: Path) -> None:
    lis = JournalListener(tmp_path, name="brief")
    path = tmp_path / "out"
    try:
        with open(path, "w") as out:
            log = configure("json", "info", out, environ=journal_env(out, lis.address))
            log.info("while.up")
            lis.wait(lambda e: True)
            lis.close()  # the socket is gone: sends fail
            log.warning("after.1")
            log.warning("after.2")
    finally:
        lis.close()
    events = [json.loads(x)["event"] for x in stdout_lines(path)]
    assert events == ["log.journal_unavailable", "after.1", "after.2"]


def test_not_the_journal_stays_plain_stdout(tmp_path: Path, listener: JournalListener) -> None:
    """JOURNAL_STREAM naming another stream (inherited, redirected): stdout."""
    path = tmp_path / "out"
    with open(tmp_path / "other", "w") as other, open(path, "w") as out:
        configure("json", "info", out, environ=journal_env(other, listener.address)).info("plain")
    assert json.loads(path.read_bytes())["event"] == "plain"
    assert listener.snapshot() == []


def test_reconfigure_closes_the_previous_socket(tmp_path: Path, listener: JournalListener) -> None:
    with open(tmp_path / "out", "w") as out:
        env = journal_env(out, listener.address)
        configure("json", "info", out, environ=env).info("one")
        first = logsetup._current
        assert first is not None and first.sender is not None
        sock: socket.socket = first.sender.sock
        configure("json", "info", out, environ=env).info("two")
        assert sock.fileno() == -1
    got: list[Entry] = listener.wait(lambda e: True, count=2)
    assert [json.loads(e.message)["event"] for e in got] == ["one", "two"]


def test_memfd_length_prefix_is_little_endian() -> None:
    payload = journald.encode([("K", "a\nb")])
    assert payload[2:10] == struct.pack("<Q", 3)
