"""cocoond/daemon/metrics.py in process: what the textfile says, when it is
written, that a reader never sees part of it, and the `[metrics]` config
key. The daemon's own file is tested end to end in test_daemon_metrics.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cocoond import __version__
from cocoond.config import load_config
from cocoond.core.findings import Finding
from cocoond.daemon.metrics import MIN_INTERVAL, MetricsFile, Readings, render
from cocoond.errors import ConfigError
from tests.conftest import CONTRACT_SEVERITY

README = Path(__file__).resolve().parents[1] / "README.md"


def readings(findings: list[Finding] | None = None, **kw: Any) -> Readings:
    values: dict[str, Any] = {
        "open_findings": findings or [],
        "snapshots": 12,
        "pending_snapshots": 2,
        "blobs": 5,
        "last_full_scan": 1_764_316_873.5,
        "index_load_seconds": 0.25,
        "full_rescan_interval": 300.0,
        "heartbeat_interval": 60.0,
    }
    values.update(kw)
    return Readings(**values)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


class Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))

    def info(self, event: str, **fields: Any) -> None:
        pass


FINDINGS = [
    Finding("orphan_data_dir", "A", "m", bytes=1000),
    Finding("orphan_data_dir", "B", "m"),  # size not known yet: counts nothing
    Finding("orphan_data_dir", "snapshot/localfile", "m", bytes=5000),  # a burst summary
    Finding("unreferenced_blob", "ab" * 32, "m", bytes=300),
    Finding("missing_blob", "cd" * 32, "m", snapshot_id="S"),
    Finding("missing_blob", "ef" * 32, "m", snapshot_id="S"),
    Finding("missing_data_dir", "S", "m", bytes=77),  # bytes, but nothing gc frees
]


# ------------------------------------------------------------------ content
def test_every_metric_the_issue_asks_for() -> None:
    got = samples(render(readings(FINDINGS)).decode())
    assert got[("cocoond_findings_open", (("kind", "orphan_data_dir"), ("severity", "warning")))] == 3
    assert got[("cocoond_findings_open", (("kind", "missing_blob"), ("severity", "error")))] == 2
    assert got[("cocoond_findings_open", (("kind", "unreferenced_blob"), ("severity", "info")))] == 1
    assert got[("cocoond_reclaimable_bytes", (("kind", "orphan_data_dir"),))] == 6000
    assert got[("cocoond_reclaimable_bytes", (("kind", "unreferenced_blob"),))] == 300
    assert got[("cocoond_snapshots", ())] == 12
    assert got[("cocoond_pending_snapshots", ())] == 2
    assert got[("cocoond_blobs", ())] == 5
    assert got[("cocoond_last_full_scan_timestamp_seconds", ())] == 1_764_316_873.5
    assert got[("cocoond_index_load_seconds", ())] == 0.25
    assert got[("cocoond_full_rescan_interval_seconds", ())] == 300
    assert got[("cocoond_heartbeat_interval_seconds", ())] == 60
    assert got[("cocoond_build_info", (("version", __version__),))] == 1


def documented_severities() -> dict[str, str]:
    """Every kind and its severity, not from the code's table: the
    contract's kinds as written out in conftest (contract section 3), and
    the kinds later issues added from the README's findings table, where
    the contract says they are listed (`| `a` / `b` | info / warning |`)."""
    out = dict(CONTRACT_SEVERITY)
    for line in README.read_text(encoding="utf-8").splitlines():
        m = re.match(
            r"^\| (`[a-z_]+`(?: / `[a-z_]+`)*) \| ((?:info|warning|error)(?: / (?:info|warning|error))*) \|",
            line,
        )
        if m:
            kinds = re.findall(r"`([a-z_]+)`", m[1])
            severities = m[2].split(" / ")
            assert len(kinds) == len(severities), line
            for kind, severity in zip(kinds, severities, strict=True):
                assert out.setdefault(kind, severity) == severity, f"README and contract disagree on {kind}"
    return out


def test_every_kind_is_exported_with_its_severity_zero_or_not() -> None:
    got = samples(render(readings()).decode())
    open_series = {labels for name, labels in got if name == "cocoond_findings_open"}
    expected = documented_severities()
    assert set(CONTRACT_SEVERITY) <= set(expected)
    assert open_series == {(("kind", k), ("severity", s)) for k, s in expected.items()}
    assert all(
        v == 0
        for (name, _), v in got.items()
        if name in ("cocoond_findings_open", "cocoond_reclaimable_bytes")
    )


def test_times_not_known_yet_are_left_out_not_zero() -> None:
    got = samples(render(readings(last_full_scan=None, index_load_seconds=None)).decode())
    names = {name for name, _ in got}
    assert "cocoond_last_full_scan_timestamp_seconds" not in names
    assert "cocoond_index_load_seconds" not in names
    assert "cocoond_snapshots" in names


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (.ci/run installs it)")
def test_promtool_accepts_the_text() -> None:
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=render(readings(FINDINGS)), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------ writing
def test_written_world_readable_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "cocoond.prom"
    old = os.umask(0o077)
    try:
        MetricsFile(str(path)).flush(Log(), 0.0, lambda: readings(FINDINGS))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    assert path.read_bytes() == render(readings(FINDINGS))
    assert os.listdir(tmp_path) == ["cocoond.prom"]  # no temp file left


def test_written_once_per_change_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "cocoond.prom"
    metrics = MetricsFile(str(path))
    calls: list[int] = []

    def take() -> Readings:
        calls.append(1)
        return readings(snapshots=len(calls))

    assert metrics.due() == float("-inf")  # the first write is due at once
    metrics.flush(Log(), 100.0, take)
    assert len(calls) == 1 and metrics.due() is None
    metrics.flush(Log(), 200.0, take)  # nothing changed: nothing written
    assert len(calls) == 1
    metrics.changed()
    metrics.flush(Log(), 200.0, take)
    metrics.changed()
    assert metrics.due() == 200.0 + MIN_INTERVAL
    metrics.flush(Log(), 200.0 + MIN_INTERVAL / 2, take)  # too soon: waits
    assert len(calls) == 2
    metrics.flush(Log(), 200.0 + MIN_INTERVAL, take)
    assert len(calls) == 3
    assert samples(path.read_text())[("cocoond_snapshots", ())] == 3


def test_off_when_no_path(tmp_path: Path) -> None:
    metrics = MetricsFile(None)
    metrics.changed()
    assert metrics.due() is None
    metrics.flush(Log(), 0.0, lambda: pytest.fail("nothing should be read"))
    assert MetricsFile("").path is None


def test_a_failed_write_is_said_once_until_a_write_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "cocoond.prom"
    metrics, log = MetricsFile(str(path)), Log()
    for now in range(5):
        metrics.changed()
        metrics.flush(log, float(now * 10), readings)
    assert [event for event, _ in log.warnings] == ["metrics.write_failed"]
    assert log.warnings[0][1]["path"] == str(path)
    path.parent.mkdir()
    metrics.changed()
    metrics.flush(log, 100.0, readings)
    assert path.exists()
    shutil.rmtree(path.parent)  # after a good write, the same problem is news again
    metrics.changed()
    metrics.flush(log, 200.0, readings)
    assert len(log.warnings) == 2


def test_move_writes_the_new_file_and_leaves_the_old(tmp_path: Path) -> None:
    old, new = tmp_path / "a.prom", tmp_path / "b.prom"
    metrics = MetricsFile(str(old))
    metrics.flush(Log(), 0.0, readings)
    metrics.move(str(new))
    metrics.flush(Log(), 10.0, readings)
    assert old.exists() and new.exists()
    metrics.move("")
    assert metrics.due() is None


def test_a_reader_never_sees_part_of_the_file(tmp_path: Path) -> None:
    """Rewrites alternate between a short and a long text while a reader
    reads as fast as it can: every read is one of the two, whole. (A
    truncate-and-write in place shows empty or cut files within a few
    hundred rounds.)"""
    path = tmp_path / "cocoond.prom"
    short = readings()
    long = readings([Finding("orphan_data_dir", f"S{i:05}", "m", bytes=i) for i in range(2000)])
    whole = {render(short), render(long)}
    metrics = MetricsFile(str(path))
    metrics.flush(Log(), 0.0, lambda: short)
    done = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not done.is_set():
            seen.append(path.read_bytes())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 400):
            metrics.changed()
            metrics.flush(Log(), i * MIN_INTERVAL, (lambda: long) if i % 2 else (lambda: short))
    finally:
        done.set()
        thread.join()
    assert len(seen) > 100
    assert set(seen) <= whole


# ------------------------------------------------------------------- config
def test_textfile_key(tmp_path: Path) -> None:
    def load(literal: str) -> str:
        path = tmp_path / "c.toml"
        path.write_text(f"[metrics]\ntextfile = {literal}\n")
        return load_config(path, environ={}).metrics.textfile

    assert load_config(None, environ={}).metrics.textfile == ""
    assert load('""') == ""
    assert load('"/var/lib/node_exporter/textfile_collector/cocoond.prom"').endswith("/cocoond.prom")
    for literal, message in (
        ("1", "expected a string"),
        ('"cocoond.prom"', "absolute path ending in .prom"),
        ('"/var/lib/node_exporter/cocoond.txt"', "absolute path ending in .prom"),
        ('"/var/lib/node_exporter/"', "absolute path ending in .prom"),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            load(literal)
        assert str(info.value).startswith(f"{tmp_path / 'c.toml'}: metrics.textfile: ")
        assert "\n" not in str(info.value)


def test_the_unit_opens_exactly_the_example_directory() -> None:
    """One ReadWritePaths=, '-' prefixed (a host without node_exporter still
    starts), and it is the directory config.example.toml suggests."""
    repo = Path(__file__).resolve().parents[1]
    unit = (repo / "systemd" / "cocoond.service").read_text()
    paths = [line.partition("=")[2] for line in unit.splitlines() if line.startswith("ReadWritePaths=")]
    assert paths == ["-/var/lib/prometheus/node-exporter"]
    example = (repo / "config.example.toml").read_text()
    assert '"/var/lib/prometheus/node-exporter/cocoond.prom"' in example


def test_a_directory_made_later_gets_the_file_without_a_change_or_restart(tmp_path: Path) -> None:
    """Issue 18 point 6: node_exporter installed after the daemon started.
    A failed write stays due (2, 4, 8 ... s apart), so the file appears once
    the directory does, even with no heartbeat and nothing changing."""
    path = tmp_path / "node-exporter" / "cocoond.prom"
    metrics, log = MetricsFile(str(path)), Log()
    metrics.flush(log, 0.0, readings)
    assert log.warnings[0][1]["hint"].startswith("the directory does not exist")
    assert metrics.due() == 2.0
    metrics.flush(log, 2.0, readings)
    assert metrics.due() == 6.0 and len(log.warnings) == 1
    path.parent.mkdir()
    metrics.flush(log, 6.0, readings)  # no changed() in between
    assert path.exists() and metrics.due() is None
