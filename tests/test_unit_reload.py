"""`systemctl reload cocoond` runs the unit's ExecReload= commands in order
and stops at the first that fails. The first is the config test, so a bad
config fails the reload (systemctl exits non-zero, "Reload failed") and the
daemon is never signalled. Here the commands are the unit's own lines, run
the way systemd runs them, against a real daemon."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.daemon_harness import FAST_CONFIG, DaemonProcess, Daemons, daemons_for, merge
from tests.test_systemd_unit import INSTALLED_EXEC, UNIT, parse_unit

INSTALLED_CONFIG = "/etc/cocoond/config.toml"


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def reload_commands() -> list[str]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]["ExecReload"]


def systemctl_reload(daemon: DaemonProcess) -> list[int]:
    """Each ExecReload= line with the installed paths pointed at this
    checkout and this daemon's config, $MAINPID at its pid; stops at the
    first non-zero exit, as systemd does. Returns the exit codes of what ran."""
    codes = []
    for line in reload_commands():
        argv = shlex.split(line.replace("$MAINPID", str(daemon.proc.pid)))
        if argv[0] == INSTALLED_EXEC:
            argv[:1] = [sys.executable, "-m", "cocoond"]
        argv = [str(daemon.config_path) if a == INSTALLED_CONFIG else a for a in argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        codes.append(done.returncode)
        if done.returncode != 0:
            break
    return codes


def test_reload_tests_the_config_before_signalling() -> None:
    commands = reload_commands()
    assert commands == [
        f"{INSTALLED_EXEC} config check --strict --config {INSTALLED_CONFIG}",
        "/bin/kill -HUP $MAINPID",
    ]
    start = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]["ExecStart"]
    # The config tested is the config the daemon runs with.
    assert start == [f"{INSTALLED_EXEC} run --config {INSTALLED_CONFIG}"]


def test_bad_config_fails_the_reload_and_the_daemon_keeps_running(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    sim.init(str(root))
    daemon = daemons.start(root, overrides={"root_dir": str(root)})
    daemon.wait_ready()
    daemon.write_config("[watch]\nsettle_seconds = -1\n")
    assert systemctl_reload(daemon) == [78]  # the reload fails; kill never runs
    # Fixed: the reload goes through, and the daemon had never seen the bad file.
    mark = daemon.mark()
    daemon.write_config(merge(FAST_CONFIG, {"root_dir": str(root), "alerts": {"heartbeat_seconds": 0.2}}))
    assert systemctl_reload(daemon) == [0, 0]
    daemon.wait_event("config.reloaded", since=mark)
    daemon.wait_event("daemon.heartbeat", since=mark)
    assert daemon.events("config.reload_failed") == []
    assert daemon.proc.poll() is None
    assert daemon.stop(signal.SIGTERM)[0] == 0


def test_a_mistyped_root_fails_the_reload(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    """Issue 18: `config check --strict` (the unit's first ExecReload) tests
    the root too; the daemon is not signalled and keeps its root."""
    sim.init(str(root))
    daemon = daemons.start(root, overrides={"root_dir": str(root)})
    daemon.wait_ready()
    typo = str(root) + "x"
    daemon.write_config(merge(FAST_CONFIG, {"root_dir": typo}))
    assert systemctl_reload(daemon) == [78]
    assert daemon.events("config.reloaded") == []
    empty = root.parent / "mountpoint"
    empty.mkdir()
    daemon.write_config(merge(FAST_CONFIG, {"root_dir": str(empty)}))
    assert systemctl_reload(daemon) == [78]
    assert daemon.proc.poll() is None and daemon.events("config.reloaded") == []
