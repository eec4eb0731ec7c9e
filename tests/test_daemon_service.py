"""`cocoond run` as a systemd service: sd_notify readiness and watchdog on a
test NOTIFY_SOCKET, signals, reloads, exit codes and the log line format."""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from tests.daemon_harness import FAST_CONFIG, Daemons, Datagram, daemons_for, merge, opened, resolved

EX_CONFIG = 78


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


# ---------------------------------------------------------------- sd_notify
def test_ready_after_index_loaded_then_watchdog_then_stopping(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    sim.init(str(root))
    sim.create(str(root))
    daemon = daemons.start(root, env={"WATCHDOG_USEC": "400000"})
    ready = daemon.wait_ready()
    assert ready.fields.get("STATUS"), ready
    assert str(root) in ready.fields["STATUS"], ready
    loaded = daemon.wait_event("index.loaded", snapshots=1)
    # The daemon had written index.loaded to stdout before it sent READY=1.
    assert loaded.index < ready.lines_before, (loaded.raw, ready)
    started = daemon.events("daemon.started")[0]
    assert started.index < loaded.index
    assert started["root"] == str(root), started
    assert started["pid"] == daemon.proc.pid, started
    assert isinstance(started["version"], str) and started["version"], started
    assert (loaded["names"], loaded["blobs"]) == (1, 0), loaded
    assert isinstance(loaded["duration_ms"], int | float), loaded

    # WATCHDOG_USEC=400000: a keep-alive every 0.1 s (a quarter of the timeout), at least every 0.2 s.
    def keepalive_after_ready(d: Datagram) -> bool:
        return d.fields.get("WATCHDOG") == "1" and d.arrived >= ready.arrived

    pings = daemon.wait_notify(keepalive_after_ready, count=3, what="WATCHDOG=1 after READY")
    assert pings[2].arrived - pings[0].arrived < 2.0, [p.arrived for p in pings]
    more = daemon.wait_notify(keepalive_after_ready, count=8, what="WATCHDOG=1 keeps coming")
    gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(more)]
    assert max(gaps) < 2.0, gaps

    rc, _ = daemon.stop(signal.SIGTERM)
    assert rc == 0, daemon.describe()
    after = [d.fields for d in daemon.notify_messages() if d.arrived >= more[-1].arrived]
    assert {"STOPPING": "1"} in after, after
    stopping = daemon.wait_event("daemon.stopping")
    last = daemon.notify_messages()[-1]
    assert last.fields == {"STOPPING": "1"}, daemon.notify_messages()[-3:]
    assert stopping.index < last.lines_before


def test_no_watchdog_pings_without_watchdog_usec(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    daemon = daemons.start(root, overrides={"alerts": {"heartbeat_seconds": 0.2}})
    ready = daemon.wait_ready()
    daemon.wait_for(
        lambda x: x.matches("daemon.heartbeat") and x.arrived > ready.arrived + 1.0,
        what="a heartbeat 1 s after READY",
    )
    assert [d for d in daemon.notify_messages() if "WATCHDOG" in d.fields] == []


# ------------------------------------------------------------------ signals
def test_unreachable_notify_socket_is_logged_not_fatal(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    sim.init(str(root))
    missing = tmp_path / "no-such-dir" / "notify"
    daemon = daemons.start(root, notify=False, env={"NOTIFY_SOCKET": str(missing)})
    line = daemon.wait_event("daemon.notify_failed")
    assert line["level"] == "warning" and str(missing) in line["error"], line
    fault = sim.inject(str(root), "orphan-dir")  # still watching
    daemon.wait_for(opened("orphan_data_dir", fault["subject"]), since=line.index)
    assert daemon.stop()[0] == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_zero_quickly(daemons: Daemons, sim: ModuleType, root: Path, signum: int) -> None:
    sim.init(str(root))
    daemon = daemons.start(root)
    daemon.wait_ready()
    rc, took = daemon.stop(signum)
    assert rc == 0, daemon.describe()
    assert took < 2.0, f"took {took:.2f}s to exit"
    line = daemon.wait_event("daemon.stopping")
    assert line["signal"] == signal.Signals(signum).name, line
    assert line["level"] == "info", line
    assert daemon.stderr == "", daemon.stderr


def test_sighup_applies_new_config(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    """Heartbeats off at start; SIGHUP with heartbeat_seconds = 0.3 turns them on."""
    sim.init(str(root))
    daemon = daemons.start(root)
    daemon.wait_ready()
    daemon.write_config(merge(FAST_CONFIG, {"alerts": {"heartbeat_seconds": 0.3}}))
    daemon.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config.reloaded")
    assert reloaded["level"] == "info", reloaded
    beats = daemon.wait_count(lambda x: x.matches("daemon.heartbeat"), 2, since=reloaded.index, what="beats")
    assert beats[0]["open"] == {"info": 0, "warning": 0, "error": 0}, beats
    assert daemon.events("daemon.heartbeat", since=0)[0].index > reloaded.index
    # systemd is told about the reload (Type=notify-reload) and that it ended.
    fields = [d.fields for d in daemon.notify_messages()]
    reloading = next(i for i, f in enumerate(fields) if f.get("RELOADING") == "1")
    assert "MONOTONIC_USEC" in fields[reloading], fields
    assert any(f.get("READY") == "1" for f in fields[reloading + 1 :]), fields
    assert daemon.proc.poll() is None


@pytest.mark.parametrize(
    ("table", "key", "event", "fields"),
    [
        ("alerts", "heartbeat_seconds", "daemon.heartbeat", {}),
        ("watch", "full_rescan_seconds", "watch.rescan", {"reason": "timer"}),
    ],
)
def test_sighup_shortens_a_long_timer(
    daemons: Daemons, sim: ModuleType, root: Path, table: str, key: str, event: str, fields: dict[str, str]
) -> None:
    """An hourly timer lowered to 0.3 s by SIGHUP fires within seconds, not
    after the hour that was scheduled under the old setting."""
    sim.init(str(root))
    config = merge(FAST_CONFIG, {table: {key: 3600}})
    daemon = daemons.start(root, config)
    daemon.wait_ready()
    daemon.write_config(merge(config, {table: {key: 0.3}}))
    daemon.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config.reloaded")
    daemon.wait_count(
        lambda x: x.matches(event, **fields), 2, timeout=8, since=reloaded.index, what=f"{event} every 0.3 s"
    )


def test_sighup_enabling_reminders_covers_open_findings(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    """reminder_seconds 0 -> 0.5 on SIGHUP: a finding that was already open
    gets reminded too (it is the one an operator wants to hear about)."""
    sim.init(str(root))
    daemon = daemons.start(root)  # reminder_seconds = 0: off
    daemon.wait_ready()
    fault = sim.inject(str(root), "missing-dir")
    first = daemon.wait_for(opened("missing_data_dir", fault["subject"]))
    daemon.write_config(merge(FAST_CONFIG, {"alerts": {"reminder_seconds": 0.5}}))
    daemon.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config.reloaded", since=first.index)
    reminders = daemon.wait_count(
        lambda x: x.matches("finding.reminder", kind="missing_data_dir", subject=fault["subject"]),
        2,
        timeout=8,
        since=reloaded.index,
        what="reminders of the finding opened before the reload",
    )
    assert reminders[0]["level"] == "error", reminders


def test_sighup_moves_to_a_new_root_dir(daemons: Daemons, sim: ModuleType, tmp_path: Path) -> None:
    """root_dir changed in the file (no --root): the old tree's findings
    resolve, the new tree is watched."""
    old, new = tmp_path / "old", tmp_path / "new"
    sim.init(str(old))
    sim.init(str(new))
    config = merge(FAST_CONFIG, {"root_dir": str(old)})
    daemon = daemons.start(old, config, pass_root=False)
    daemon.wait_ready()
    assert daemon.wait_event("daemon.started")["root"] == str(old)
    gone = sim.inject(str(old), "orphan-dir")
    first = daemon.wait_for(opened("orphan_data_dir", gone["subject"]))

    daemon.write_config(merge(config, {"root_dir": str(new)}))
    daemon.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config.reloaded", since=first.index)
    assert reloaded["root"] == str(new), reloaded
    daemon.wait_for(resolved("orphan_data_dir", gone["subject"]), since=first.index)
    fault = sim.inject(str(new), "missing-dir")
    daemon.wait_for(opened("missing_data_dir", fault["subject"]), since=reloaded.index)
    # The old tree is no longer watched: a fault there opens nothing, even
    # after two later faults in the new tree (two settle windows) have opened.
    ignored = sim.inject(str(old), "dangling-name")
    for fault_name in ("dangling-name", "orphan-dir"):
        fault = sim.inject(str(new), fault_name)
        daemon.wait_for(opened(fault["kind"], fault["subject"]), since=reloaded.index)
    assert daemon.events("finding.opened", subject=ignored["subject"]) == []


def test_sighup_raising_log_level_silences_info(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    """log.level = "warning" on SIGHUP: heartbeats (info) stop, errors still appear."""
    sim.init(str(root))
    config = merge(FAST_CONFIG, {"alerts": {"heartbeat_seconds": 0.2, "reminder_seconds": 0.5}})
    daemon = daemons.start(root, config)
    daemon.wait_ready()
    daemon.wait_event("daemon.heartbeat")
    daemon.write_config(merge(config, {"log": {"level": "warning"}}))
    daemon.send_signal(signal.SIGHUP)
    # config.reloaded is info, so it is filtered by the new level itself; the
    # READY=1 that ends the reload is the positive signal.
    reloading = daemon.wait_notify(lambda d: d.fields.get("RELOADING") == "1", what="RELOADING=1")[0]
    daemon.wait_notify(
        lambda d: d.fields.get("READY") == "1" and d.arrived >= reloading.arrived,
        what="READY=1 after the reload",
    )
    fault = sim.inject(str(root), "missing-dir")
    first = daemon.wait_for(opened("missing_data_dir", fault["subject"]))
    reminders = daemon.wait_count(
        lambda x: x.matches("finding.reminder", subject=fault["subject"]),
        2,
        since=first.index,
        what="reminders",
    )
    # Over more than a second of reminders, at 5 heartbeats a second: none.
    assert reminders[-1].arrived - first.arrived > 0.9
    assert daemon.events("daemon.heartbeat", since=first.index) == []
    assert all(x.get("level") in ("warning", "error") for x in daemon.lines[first.index :])


def test_sighup_with_bad_config_keeps_running(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    daemon = daemons.start(root)
    daemon.wait_ready()
    daemon.write_config("[watch]\nsettle_seconds = -1\n")
    daemon.send_signal(signal.SIGHUP)
    failed = daemon.wait_event("config.reload_failed")
    assert failed["level"] == "error", failed
    text = json.dumps(failed)
    assert "watch.settle_seconds" in text, failed
    assert str(daemon.config_path) in text, failed
    # Still watching, with the old settings.
    fault = sim.inject(str(root), "orphan-dir")
    daemon.wait_for(opened("orphan_data_dir", fault["subject"]), since=failed.index)
    assert daemon.proc.poll() is None
    assert daemon.stop()[0] == 0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[alerts]\nheartbeat_secs = 5\n", "alerts.heartbeat_secs"),
        ("[watch]\nsettle_seconds = -2\n", "watch.settle_seconds"),
        ('[log]\nformat = "xml"\n', "log.format"),
    ],
)
def test_bad_config_at_start_exits_78(daemons: Daemons, root: Path, text: str, key: str) -> None:
    daemon = daemons.start(root, text)
    rc = daemon.wait_exit()
    assert rc == EX_CONFIG, daemon.describe()
    lines = daemon.stderr.strip().splitlines()
    assert len(lines) == 1, daemon.stderr
    assert str(daemon.config_path) in lines[0], lines
    assert key in lines[0], lines
    assert daemon.lines == [], "nothing is logged before the config is good"
    assert daemon.notify_messages() == []


# --------------------------------------------------------------- log format
def test_every_line_is_json_with_utc_timestamp(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    sim.inject(str(root), "missing-dir")
    daemon = daemons.start(root, overrides={"alerts": {"heartbeat_seconds": 0.2, "reminder_seconds": 0.3}})
    daemon.wait_ready()
    sim.inject(str(root), "orphan-dir")
    daemon.wait_event("finding.reminder", kind="missing_data_dir")
    daemon.wait_event("finding.opened", kind="orphan_data_dir")
    daemon.wait_event("daemon.heartbeat")
    daemon.stop()
    lines = daemon.lines
    assert len(lines) >= 6
    for line in lines:
        assert line.is_json, line.raw
        assert isinstance(line["event"], str) and line["event"], line.raw
        assert line["level"] in ("debug", "info", "warning", "error"), line.raw
        stamp = line["timestamp"]
        assert isinstance(stamp, str) and stamp.endswith(("Z", "+00:00")), line.raw
        parsed = datetime.fromisoformat(stamp)
        assert parsed.utcoffset() == timedelta(0), line.raw
        assert "T" in stamp, line.raw


def test_console_format_is_for_people(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    daemon = daemons.start(root, overrides={"log": {"format": "console"}})
    daemon.wait_ready()
    fault = sim.inject(str(root), "orphan-dir")
    line = daemon.wait_for(
        lambda x: "finding.opened" in x.raw and fault["subject"] in x.raw, what="the finding, as text"
    )
    assert "orphan_data_dir" in line.raw
    daemon.stop()
    assert daemon.lines
    for x in daemon.lines:
        assert not x.is_json, x.raw
        assert not x.raw.lstrip().startswith("{"), x.raw
    assert any("daemon.started" in x.raw for x in daemon.lines)
