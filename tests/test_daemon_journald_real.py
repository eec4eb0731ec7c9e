"""`cocoond run` against a real systemd-journald, where the machine has one
to start (root, systemd installed; .ci/run installs systemd for the unit
check). journald runs as an instance of its own journal namespace, so it
binds /run/systemd/journal.<namespace>/ and writes its own journal files,
and touches nothing of the host's journal. The daemon's stdout is
connected to that journald's stream socket the way systemd connects a
service's, and `journalctl` reads back what it stored: priorities, fields,
and that `-p warning` and `COCOOND_KIND=` select what the README says."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond.daemon.journald import SOCKET_ENV
from tests.daemon_harness import FAST_CONFIG, WAIT, render_toml

JOURNALD = next(
    (
        p
        for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
        if os.access(p, os.X_OK)
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    JOURNALD is None or shutil.which("journalctl") is None or os.geteuid() != 0,
    reason="needs root and systemd-journald (Debian: apt-get install systemd)",
)
PRIORITY = {"error": "3", "warning": "4", "info": "6", "debug": "7"}
ODD_NAME = "web\n2 \u2603"


@dataclass
class Journald:
    namespace: str
    run_dir: Path
    proc: subprocess.Popen[bytes]

    def entries(self, *match: str) -> list[dict[str, Any]]:
        """cocoond's entries as journalctl -o json gives them (a value that
        is not printable text comes as a list of byte values)."""
        done = subprocess.run(
            [
                "journalctl",
                f"--namespace={self.namespace}",
                "-o",
                "json",
                "--no-pager",
                "SYSLOG_IDENTIFIER=cocoond",
                *match,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        out = []
        for line in done.stdout.splitlines():
            entry = json.loads(line)
            out.append({k: bytes(v).decode() if isinstance(v, list) else v for k, v in entry.items()})
        return out

    def cat(self, *args: str) -> list[str]:
        done = subprocess.run(
            ["journalctl", f"--namespace={self.namespace}", "-o", "cat", "--no-pager", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def wait(self, event: str, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT
        while True:
            found = self.entries(f"COCOOND_EVENT={event}")
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} x {event} in the journal, wanted {count}"
                return found
            time.sleep(0.2)


@pytest.fixture
def journald() -> Iterator[Journald]:
    assert JOURNALD is not None
    namespace = "cocoondtest" + secrets.token_hex(4)
    run_dir = Path(f"/run/systemd/journal.{namespace}")
    proc = subprocess.Popen(
        [JOURNALD, namespace], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + WAIT
        while not ((run_dir / "socket").exists() and (run_dir / "stdout").exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                assert proc.stderr is not None
                pytest.skip(f"systemd-journald did not start here: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.05)
        yield Journald(namespace, run_dir, proc)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        machine_id = Path("/etc/machine-id").read_text().strip()
        for base in ("/var/log/journal", "/run/log/journal"):
            shutil.rmtree(f"{base}/{machine_id}.{namespace}", ignore_errors=True)


def stdout_stream(journald: Journald) -> socket.socket:
    """A stream to journald's stdout socket with the header systemd (or
    sd_journal_stream_fd) sends: identifier, unit, priority, level prefix,
    forward to syslog, kmsg, console."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(journald.run_dir / "stdout"))
    sock.sendall(b"cocoond\n\n6\n0\n0\n0\n0\n")
    sock.shutdown(socket.SHUT_RD)
    return sock


def test_real_journald_stores_priorities_and_fields(
    journald: Journald, root: Path, sim: ModuleType, tmp_path: Path
) -> None:
    sim.init(str(root))
    sim.create(str(root), name="healthy")
    for fault in ("missing-dir", "orphan-dir", "unreferenced-blob"):
        sim.inject(str(root), fault)
    with sim.flock(sim.snapshot_lock(str(root))):
        db = sim.load_snapshots(str(root))
        db["names"][ODD_NAME] = sim.new_id()
        sim.atomic_write_json(sim.snapshot_db(str(root)), db)
    config = tmp_path / "cocoond.toml"
    config.write_text(render_toml(FAST_CONFIG))
    stream = stdout_stream(journald)
    st = os.fstat(stream.fileno())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_", "JOURNAL_"))}
    env.update(
        {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", SOCKET_ENV: str(journald.run_dir / "socket")},
        PYTHONUNBUFFERED="1",
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "cocoond", "run", "--config", str(config), "--root", str(root)],
        stdin=subprocess.DEVNULL,
        stdout=stream.fileno(),
        stderr=subprocess.PIPE,
        env=env,
    )
    stream.close()
    try:
        journald.wait("finding.opened", 4)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(WAIT) == 0
        journald.wait("daemon.stopping")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        assert daemon.stderr is not None
        stderr = daemon.stderr.read().decode()
        daemon.stderr.close()
    assert stderr == ""

    entries = journald.entries()
    assert entries and all(e["_TRANSPORT"] == "journal" for e in entries), "a line went by stdout"
    for entry in entries:
        obj = json.loads(entry["MESSAGE"])
        assert entry["PRIORITY"] == PRIORITY[obj["level"]]
        assert entry["SYSLOG_FACILITY"] == "3"
        assert entry["COCOOND_EVENT"] == obj["event"]
        for key, field in (
            ("kind", "COCOOND_KIND"),
            ("severity", "COCOOND_SEVERITY"),
            ("subject", "COCOOND_SUBJECT"),
        ):
            assert entry.get(field) == obj.get(key), (field, entry["MESSAGE"])
    assert journald.entries("COCOOND_KIND=dangling_name")[0]["COCOOND_SUBJECT"] == ODD_NAME

    # What the README promises of journalctl.
    loud = [json.loads(line) for line in journald.cat("-p", "warning")]
    assert sorted(o["kind"] for o in loud if o["event"] == "finding.opened") == [
        "dangling_name",
        "missing_data_dir",
        "orphan_data_dir",
    ]
    assert all(o["level"] in ("warning", "error") for o in loud)
    # The READMEs' jq-free command for new warnings and errors: journald
    # matches the priority and the event field itself.
    opened = [json.loads(line) for line in journald.cat("-p", "warning", "COCOOND_EVENT=finding.opened")]
    assert sorted(o["kind"] for o in opened) == ["dangling_name", "missing_data_dir", "orphan_data_dir"]
    assert all(o["event"] == "finding.opened" for o in opened)
    missing = [json.loads(line) for line in journald.cat("COCOOND_KIND=missing_data_dir")]
    assert [(o["event"], o["kind"]) for o in missing] == [("finding.opened", "missing_data_dir")]
