"""The Prometheus textfile in process: what `render` says for a view, how
`MetricsFile` writes (whole files by rename, readable by node_exporter, a
failure logged once), the config key, and the alert rules' own tests."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cocoond import __version__
from cocoond.config import load_config
from cocoond.core.findings import Finding
from cocoond.daemon.metrics import HostView, MetricsFile, render
from cocoond.errors import ConfigError
from tests.promtool import RULE_TESTS, RULES, run_promtool, samples, value


def view(*open_findings: Finding, last_full_scan: float | None = 1_764_318_000.25) -> HostView:
    return HostView(
        open=list(open_findings),
        snapshots=7,
        pending=2,
        blobs=3,
        last_full_scan=last_full_scan,
        full_rescan_seconds=300.0,
    )


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))


def test_render_counts_findings_and_sums_what_gc_would_free() -> None:
    found = samples(
        render(
            view(
                Finding("missing_blob", "aa", "m"),
                Finding("missing_blob", "bb", "m"),
                Finding("orphan_data_dir", "o1", "m", bytes=1000),
                Finding("orphan_data_dir", "snapshot/localfile", "m", bytes=5000),  # a burst summary
                Finding("unreferenced_blob", "cc", "m", bytes=300),
                Finding("unreferenced_blob", "dd", "m", bytes=20),
            ),
            index_load_seconds=0.25,
        ).decode()
    )
    assert value(found, "cocoond_findings_open", kind="missing_blob", severity="error") == 2
    assert value(found, "cocoond_findings_open", kind="orphan_data_dir", severity="warning") == 2
    assert value(found, "cocoond_findings_open", kind="unreferenced_blob", severity="info") == 2
    # Every kind has its series, 0 when nothing is open (an alert can test it).
    assert value(found, "cocoond_findings_open", kind="dangling_name", severity="error") == 0
    assert value(found, "cocoond_reclaimable_bytes", kind="orphan_data_dir") == 6000
    assert value(found, "cocoond_reclaimable_bytes", kind="unreferenced_blob") == 320
    assert value(found, "cocoond_reclaimable_bytes_exact", kind="orphan_data_dir") == 1
    assert value(found, "cocoond_snapshots") == 7
    assert value(found, "cocoond_pending_snapshots") == 2
    assert value(found, "cocoond_blobs") == 3
    assert value(found, "cocoond_last_full_scan_timestamp_seconds") == 1_764_318_000.25
    assert value(found, "cocoond_index_load_seconds") == 0.25
    assert value(found, "cocoond_full_rescan_interval_seconds") == 300
    assert value(found, "cocoond_build_info", version=__version__) == 1


def test_an_unsized_or_cut_orphan_makes_the_sum_a_lower_bound() -> None:
    for orphan in (
        Finding("orphan_data_dir", "o1", "m"),  # its walk not done yet
        Finding("orphan_data_dir", "o1", "m", bytes=10, bytes_partial=True),  # cut
    ):
        found = samples(render(view(orphan, Finding("orphan_data_dir", "o2", "m", bytes=5))).decode())
        assert value(found, "cocoond_reclaimable_bytes", kind="orphan_data_dir") == (orphan.bytes or 0) + 5
        assert value(found, "cocoond_reclaimable_bytes_exact", kind="orphan_data_dir") == 0
        assert value(found, "cocoond_reclaimable_bytes_exact", kind="unreferenced_blob") == 1


def test_unknown_times_are_left_out_not_zero() -> None:
    found = samples(render(view(last_full_scan=None)).decode())
    names = {name for name, _ in found}
    assert "cocoond_last_full_scan_timestamp_seconds" not in names
    assert "cocoond_index_load_seconds" not in names


def test_writes_replace_the_file_whole(tmp_path: Path) -> None:
    """Each write is a new file renamed over the old: a reader holding the
    old one keeps a complete old file, never one being rewritten."""
    path = tmp_path / "cocoond.prom"
    metrics = MetricsFile(str(path))
    log = Log()
    metrics.flush(log, lambda: view(Finding("missing_blob", "aa", "m")))
    with open(path, "rb") as before:
        old = before.read()
        inode = os.fstat(before.fileno()).st_ino
        metrics.changed()
        metrics.flush(log, lambda: view())
        before.seek(0)
        assert before.read() == old  # the old inode was not written to
    assert os.stat(path).st_ino != inode
    now = samples(path.read_text())
    assert value(now, "cocoond_findings_open", kind="missing_blob", severity="error") == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # node_exporter runs as another user
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cocoond.prom"]  # no temp file left
    assert log.lines == []


def test_writes_only_when_something_changed(tmp_path: Path) -> None:
    path = tmp_path / "cocoond.prom"
    metrics = MetricsFile(str(path))
    calls: list[int] = []

    def counted() -> HostView:
        calls.append(1)
        return view()

    metrics.flush(Log(), counted)  # the first turn writes
    metrics.flush(Log(), counted)
    assert len(calls) == 1
    metrics.changed()
    metrics.flush(Log(), counted)
    assert len(calls) == 2
    off = MetricsFile("")
    off.changed()
    off.flush(Log(), counted)
    assert len(calls) == 2


def test_a_failed_write_is_logged_once_and_retried_on_the_next_change(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "cocoond.prom"
    metrics = MetricsFile(str(path))
    log = Log()
    for _ in range(3):
        metrics.changed()
        metrics.flush(log, view)
    assert [(level, event) for level, event, _ in log.lines] == [("warning", "metrics.write_failed")]
    assert log.lines[0][2]["path"] == str(path)
    path.parent.mkdir()
    metrics.changed()
    metrics.flush(log, view)
    assert path.exists()
    os.rename(path.parent, tmp_path / "gone")
    metrics.changed()
    metrics.flush(log, view)
    assert len(log.lines) == 2  # failing again after a success is news again


def test_reconfigure_removes_the_file_it_wrote(tmp_path: Path) -> None:
    old, new = tmp_path / "old.prom", tmp_path / "new.prom"
    metrics = MetricsFile(str(old))
    metrics.flush(Log(), view)
    metrics.reconfigure(str(new))
    metrics.flush(Log(), view)
    assert not old.exists() and new.exists()
    metrics.reconfigure("")
    metrics.flush(Log(), view)
    assert not new.exists()


def test_promtool_accepts_the_textfile() -> None:
    rendered = render(
        view(Finding("orphan_data_dir", "o1", "m", bytes=10), Finding("stale_temp", 't"\n\\', "m")),
        index_load_seconds=1.5,
    )
    done = run_promtool("check", "metrics", stdin=rendered)
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done


def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    checked = run_promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout, checked.stdout
    tested = run_promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


# ------------------------------------------------------------------- config
def test_config_metrics_textfile(tmp_path: Path) -> None:
    def load(text: str) -> Any:
        path = tmp_path / "c.toml"
        path.write_text(text)
        return load_config(path, environ={})

    assert load("").metrics.textfile == ""
    assert load('[metrics]\ntextfile = ""\n').metrics.textfile == ""
    good = "/var/lib/prometheus/node-exporter/cocoond.prom"
    assert load(f'[metrics]\ntextfile = "{good}"\n').metrics.textfile == good
    for bad, why in (
        ('"relative/cocoond.prom"', "absolute path ending in .prom"),
        ('"/var/lib/node_exporter/cocoond.txt"', "absolute path ending in .prom"),
        ("1", "expected a string"),
    ):
        with pytest.raises(ConfigError) as err:
            load(f"[metrics]\ntextfile = {bad}\n")
        message = str(err.value)
        assert "metrics.textfile" in message and why in message and "\n" not in message, message
    with pytest.raises(ConfigError, match=r"unknown key 'metrics.text_file'"):
        load('[metrics]\ntext_file = "/x.prom"\n')


def test_the_unit_may_write_the_example_textfile_directory_and_nothing_else() -> None:
    """One ReadWritePaths=, optional ("-"), naming the directory the example
    config's textfile path is in, so the documented pair works together."""
    repo = Path(__file__).resolve().parents[1]
    unit = (repo / "systemd" / "cocoond.service").read_text().splitlines()
    writable = [line.partition("=")[2] for line in unit if line.startswith("ReadWritePaths=")]
    assert writable == ["-/var/lib/prometheus/node-exporter"]
    example = (repo / "config.example.toml").read_text()
    assert '"/var/lib/prometheus/node-exporter/cocoond.prom"' in example
