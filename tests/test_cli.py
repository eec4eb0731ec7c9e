"""The command line as an operator meets it (issue 12): usage errors that do
not look like results, the default config read by every command, `config
check` / `config show`, help that names exit codes, files and an example,
and config paths that are not regular files (issue 10)."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond import __version__
from cocoond.cli.main import build_parser, main
from cocoond.config import KEYS
from tests.daemon_harness import FAST_CONFIG, Daemons, daemons_for, merge, render_toml

EX_USAGE, EX_CONFIG, UNKNOWN = 64, 78, 3
#: A command that should answer at once; a hang fails the test instead of hanging it.
DEADLINE = 30


def cocoond(
    *args: str, env: dict[str, str] | None = None, limit_memory: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m cocoond ARGS` as a separate process, as an operator runs it."""

    def cap_memory() -> None:  # 1 GiB of address space: an unbounded read fails fast
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-m", "cocoond", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        preexec_fn=cap_memory if limit_memory else None,
    )


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


# ------------------------------------------------------------- usage errors
@pytest.mark.parametrize(
    ("argv", "code"),
    [
        ([], EX_USAGE),
        (["bogus"], EX_USAGE),
        (["--bogus"], EX_USAGE),
        (["check", "--bogus"], UNKNOWN),
        (["check", "--json", "extra"], UNKNOWN),
        (["check", "--config"], UNKNOWN),
        (["check", "--config", "a.toml", "--no-config"], UNKNOWN),
        (["run", "--bogus"], EX_USAGE),
        (["run", "--root"], EX_USAGE),
        (["run", "--config", "a.toml", "--no-config"], EX_USAGE),
        (["config"], EX_USAGE),
        (["config", "bogus"], EX_USAGE),
        (["config", "check", "--bogus"], EX_USAGE),
        (["config", "show", "--json"], EX_USAGE),
    ],
)
def test_usage_error_exit_codes(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == code
    out, err = capsys.readouterr()
    # check is a monitoring plugin: its UNKNOWN status line is on stdout.
    assert out == (
        ""
        if code != UNKNOWN
        else f"COCOOND UNKNOWN - usage error: {err.splitlines()[-1].partition('error: ')[2]}\n"
    )
    assert err.startswith("usage: cocoond"), err
    assert "error:" in err.splitlines()[-1], err


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["run", "--help"], ["check", "-h"], ["config", "--help"], ["config", "show", "--help"]],
)
def test_help_exits_zero_on_stdout(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: cocoond") and err == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"cocoond {__version__}\n"
    assert __version__ == "0.5.0"


@pytest.mark.parametrize(
    ("argv", "code"), [([], EX_USAGE), (["check", "--bogus"], UNKNOWN), (["run", "-x"], EX_USAGE)]
)
def test_usage_error_exit_status_of_the_process(argv: list[str], code: int) -> None:
    done = cocoond(*argv)
    assert done.returncode == code, done
    # check is a monitoring plugin: one UNKNOWN status line on stdout.
    assert done.stdout == (
        "" if code != UNKNOWN else "COCOOND UNKNOWN - usage error: unrecognized arguments: --bogus\n"
    )


# ---------------------------------------------------------- default config
def test_check_reads_the_default_config(
    sim: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host whose root is not the default gets the same answer from
    `check` as from the daemon: both read the installed config."""
    tree, other = tmp_path / "tree", tmp_path / "other"
    sim.init(str(tree))
    orphan = sim.inject(str(tree), "orphan-dir")["subject"]
    sim.init(str(other))
    default = tmp_path / "config.toml"
    default.write_text(f"root_dir = {json.dumps(str(tree))}\n")
    monkeypatch.setenv("COCOOND_CONFIG", str(default))
    monkeypatch.setenv("COCOON_ROOT_DIR", str(other))

    def check(*args: str) -> tuple[int, dict[str, Any]]:
        capsys.readouterr()
        rc = main(["check", "--json", *args])
        return rc, json.loads(capsys.readouterr().out)

    rc, result = check()
    assert (rc, result["root"]) == (1, str(tree))
    assert [f["subject"] for f in result["findings"]] == [orphan]
    # --no-config skips it (the environment decides again) ...
    assert check("--no-config") == (0, check("--root", str(other))[1])
    assert check("--no-config")[1]["root"] == str(other)
    # ... and --config names another file.
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(f"root_dir = {json.dumps(str(other))}\n")
    assert check("--config", str(elsewhere))[1]["root"] == str(other)
    # A bad default config is as bad as a named one: UNKNOWN, naming it.
    default.write_text("[watch]\nsettle_secs = 1\n")
    capsys.readouterr()
    assert main(["check"]) == UNKNOWN
    out = capsys.readouterr().out
    assert out.startswith("COCOOND UNKNOWN - ") and str(default) in out and "watch.settle_secs" in out


def test_check_without_default_config_file_uses_defaults(
    sim: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    sim.init(str(tree))
    monkeypatch.setenv("COCOON_ROOT_DIR", str(tree))  # COCOOND_CONFIG names no file (conftest)
    assert main(["check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["root"] == str(tree)


def test_run_reads_the_default_config_and_rereads_it_on_sighup(
    daemons: Daemons, sim: ModuleType, root: Path, tmp_path: Path
) -> None:
    """No --config: `run` reads $COCOOND_CONFIG (standing in for
    /etc/cocoond/config.toml). Removed and written anew, it is read again on
    SIGHUP, the same choice a fresh start would make."""
    sim.init(str(root))
    default = tmp_path / "daemon0.toml"  # the harness writes the config there
    config = merge(FAST_CONFIG, {"root_dir": str(root)})
    daemon = daemons.start(
        root, config, env={"COCOOND_CONFIG": str(default)}, pass_config=False, pass_root=False
    )
    daemon.wait_ready()
    assert "--config" not in daemon.argv
    assert daemon.wait_event("daemon.started")["root"] == str(root)
    default.unlink()
    daemon.send_signal(signal.SIGHUP)
    first = daemon.wait_event("config.reloaded")
    assert first.get("config") is None, first  # no file now: built-in defaults
    daemon.write_config(merge(config, {"alerts": {"heartbeat_seconds": 0.2}}))
    daemon.send_signal(signal.SIGHUP)
    second = daemon.wait_event("config.reloaded", since=first.index + 1)
    assert second["config"] == str(default), second
    daemon.wait_event("daemon.heartbeat", since=second.index)
    assert daemon.stop()[0] == 0


def test_run_bad_default_config_exits_78(daemons: Daemons, root: Path, tmp_path: Path) -> None:
    daemon = daemons.start(
        root,
        "[alerts]\nheartbeat_seconds = 1e-300\n",
        env={"COCOOND_CONFIG": str(tmp_path / "daemon0.toml")},
        pass_config=False,
    )
    assert daemon.wait_exit() == EX_CONFIG
    assert "alerts.heartbeat_seconds: must be 0 or at least 0.1 seconds" in daemon.stderr


# ------------------------------------------------------- config check/show
def test_config_check_ok_and_bad(tmp_path: Path, sim: ModuleType) -> None:
    sim.init(str(tmp_path / "cocoon"))
    good = tmp_path / "good.toml"
    good.write_text(f"root_dir = '{tmp_path / 'cocoon'}'\n[watch]\nsettle_seconds = 5\n")
    done = cocoond("config", "check", "--config", str(good))
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{good}: ok\n", "")
    bad = tmp_path / "bad.toml"
    bad.write_text("[watch]\nsettle_seconds = 'soon'\n")
    done = cocoond("config", "check", "--config", str(bad))
    assert done.returncode == EX_CONFIG
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"cocoond config check: {bad}: watch.settle_seconds: expected a number")
    missing = cocoond("config", "check", "--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == EX_CONFIG and "no such config file" in missing.stderr


@pytest.mark.parametrize("what", ["missing", "empty", "a file"])
def test_config_check_tests_the_root(tmp_path: Path, what: str) -> None:
    """A root_dir that is not a cocoon root cocoond can see: a warning line
    naming it and exit 0; with --strict, exit 78 (issue 18)."""
    root = tmp_path / "cocoon"
    if what == "empty":
        root.mkdir()
    elif what == "a file":
        root.write_text("")
    config = tmp_path / "config.toml"
    config.write_text(f"root_dir = '{root}'\n")
    done = cocoond("config", "check", "--config", str(config))
    assert (done.returncode, done.stdout) == (0, f"{config}: ok\n")
    warning = f"cocoond config check: warning: root_dir {root} is not a cocoon root"
    assert done.stderr.startswith(warning), done
    assert done.stderr.count("\n") == 1
    strict = cocoond("config", "check", "--strict", "--config", str(config))
    assert (strict.returncode, strict.stdout) == (EX_CONFIG, "")
    assert strict.stderr.startswith(f"cocoond config check: error: root_dir {root} "), strict
    (root.unlink() if root.is_file() else None)
    (root / "snapshot" / "db").mkdir(parents=True)
    fine = cocoond("config", "check", "--strict", "--config", str(config))
    assert (fine.returncode, fine.stderr) == (0, "")


def test_config_check_reads_the_default_config(tmp_path: Path) -> None:
    default = tmp_path / "config.toml"
    env = {"COCOOND_CONFIG": str(default)}
    assert cocoond("config", "check", env=env).stdout == "no config file: built-in defaults: ok\n"
    default.write_text("[log]\nlevel = 'loud'\n")
    done = cocoond("config", "check", env=env)
    assert done.returncode == EX_CONFIG and "log.level" in done.stderr
    assert cocoond("config", "check", "--no-config", env=env).returncode == 0


def test_config_show_every_key_with_its_source(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[watch]\nsettle_seconds = 4\n[log]\nformat = "console"\n')
    env = {
        "COCOON_ROOT_DIR": "/from/env",
        "STATE_DIRECTORY": "/var/lib/cocoond",
        "COCOOND_CONFIG": str(config),
    }
    done = cocoond("config", "show", env=env)
    assert done.returncode == 0, done
    header, *lines = done.stdout.splitlines()
    assert header == f"# cocoond {__version__}: the effective config ({config})"
    shown = {line.split(" = ")[0]: line for line in lines}
    assert list(shown) == list(KEYS)
    assert shown["root_dir"].startswith('root_dir = "/from/env"') and shown["root_dir"].endswith(
        "# COCOON_ROOT_DIR"
    )
    assert shown["state_dir"].endswith("# STATE_DIRECTORY")
    assert shown["watch.settle_seconds"].startswith("watch.settle_seconds = 4.0 ")
    assert shown["watch.settle_seconds"].endswith(f"# {config}")
    assert shown["log.format"].endswith(f"# {config}")
    assert shown["watch.debounce_seconds"].endswith("# default")
    with_root = cocoond("config", "show", "--root", "/from/cli", env=env).stdout
    assert 'root_dir = "/from/cli"' in with_root and "# --root" in with_root
    bad = cocoond("config", "show", "--config", str(tmp_path / "nope.toml"))
    assert bad.returncode == EX_CONFIG and bad.stdout == ""


# ---------------------------------------------------------------- --help
def _help(*argv: str) -> str:
    parser = build_parser()
    for name in argv:
        parser = parser.commands[name]
    return parser.format_help()


@pytest.mark.parametrize(
    ("argv", "codes"),
    [
        (("run",), ["0", "64", "78", "70", "75"]),
        (("check",), ["0", "1", "2", "3"]),
        (("config", "check"), ["0", "64", "78"]),
        (("config", "show"), ["0", "64", "78"]),
    ],
)
def test_each_command_help_names_codes_defaults_and_an_example(
    argv: tuple[str, ...], codes: list[str]
) -> None:
    text = _help(*argv)
    exit_block = text.split("exit status:\n", 1)[1].split("\n\n", 1)[0]
    listed = [line.split()[0] for line in exit_block.splitlines() if line[:3].strip()]
    assert [c for c in listed if c.isdigit()] == codes, exit_block
    assert "/etc/cocoond/config.toml" in text
    assert "/data01/cocoon" in text
    assert "COCOON_ROOT_DIR" in text and "COCOOND_CONFIG" in text
    example = text.split("example:\n", 1)[1]
    assert f"  cocoond {' '.join(argv)} " in example


def test_run_help_names_the_signals() -> None:
    signals = _help("run").split("signals:\n", 1)[1].split("\n\n", 1)[0]
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        assert name in signals
    assert "reload" in signals


def test_help_lines_fit_a_terminal() -> None:
    for argv in ((), ("run",), ("check",), ("config",), ("config", "check"), ("config", "show")):
        for line in _help(*argv).splitlines():
            assert len(line) <= 80, line


# ------------------------------------------ what a config file may be (issue 10)
def test_fifo_config_does_not_hang(tmp_path: Path) -> None:
    """Opening a FIFO blocks until a writer comes: before, `check` and `run`
    hung forever (here: until the deadline, a failure)."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    for argv, code in ((["check"], UNKNOWN), (["run"], EX_CONFIG), (["config", "check"], EX_CONFIG)):
        done = cocoond(*argv, "--config", str(fifo), "--root", str(tmp_path))
        assert done.returncode == code, done
        said = done.stdout if argv == ["check"] else done.stderr  # check: the UNKNOWN status line
        assert f"{fifo}: is a FIFO, not a config file" in said


def test_config_symlinked_to_dev_zero_is_not_read(tmp_path: Path) -> None:
    """Before, this read without limit (3.9 GB RSS in 10 s); with 1 GiB of
    address space it died of MemoryError instead of naming the problem."""
    link = tmp_path / "config.toml"
    link.symlink_to("/dev/zero")
    done = cocoond("check", "--config", str(link), "--root", str(tmp_path), limit_memory=True)
    assert done.returncode == UNKNOWN, done
    assert "is a character device, not a config file" in done.stdout
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("COCOOND UNKNOWN - ")


def test_interval_that_cannot_be_meant_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(render_toml({"watch": {"debounce_seconds": 1e-300}}))
    done = cocoond("check", "--config", str(config), "--root", str(tmp_path))
    assert done.returncode == UNKNOWN, done
    assert "watch.debounce_seconds: must be 0 or at least 0.01 seconds, got 1e-300" in done.stdout


def test_changelog_describes_this_version() -> None:
    """Keep a Changelog: an Unreleased section on top, then the version that
    `cocoond --version` reports, with a date."""
    text = (Path(__file__).resolve().parents[1] / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    assert headings[1][0] == __version__ and headings[1][1], headings[:2]
    section = text.split(f"## [{__version__}]", 1)[1].split("\n## [", 1)[0]
    assert "### Added" in section or "### Changed" in section or "### Fixed" in section


def test_config_show_by_hand_names_the_units_state_dir(tmp_path: Path) -> None:
    """Outside the unit STATE_DIRECTORY is unset: `config show` still says
    where the daemon under the unit keeps its findings (the unit's
    StateDirectory=), while the value stays the one in effect here, so the
    output still loads to the same config."""
    from cocoond.config import UNIT_STATE_DIR

    unit = (Path(__file__).resolve().parents[1] / "systemd" / "cocoond.service").read_text()
    assert "\nStateDirectory=cocoond\n" in unit and UNIT_STATE_DIR == "/var/lib/cocoond"
    done = cocoond("config", "show", "--no-config")
    assert done.returncode == 0, done
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("state_dir = ")]
    assert line.startswith('state_dir = ""')
    assert line.endswith(
        "# default: not kept here; under the unit, /var/lib/cocoond (its StateDirectory=, "
        "as $STATE_DIRECTORY)"
    )
    under_unit = cocoond("config", "show", "--no-config", env={"STATE_DIRECTORY": "/var/lib/cocoond"})
    assert 'state_dir = "/var/lib/cocoond"' in under_unit.stdout and "# STATE_DIRECTORY" in under_unit.stdout
