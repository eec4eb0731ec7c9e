"""`cocoond check` as a monitoring plugin (issue 19), read the way Icinga and
Nagios read a plugin: the exit code is the state, the first stdout line is
`SERVICE STATUS - summary | perfdata`, and the perfdata follows the
monitoring-plugins development guidelines' grammar. Every way check can fail
to check (usage, config, root, a bug, --timeout) is UNKNOWN with exit 3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cocoond.cli import check as check_module
from cocoond.cli.main import main

#: What an agent makes of an exit code (anything else is UNKNOWN too).
STATE_OF_EXIT = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
#: The first line: service, status word, text, then optional perfdata after '|'.
STATUS_LINE = re.compile(r"^COCOOND (OK|WARNING|CRITICAL|UNKNOWN) - ([^|\n]+?)(?: \| ([^|\n]*))?$")
#: The guidelines' perfdata grammar, `'label'=value[UOM];[warn];[crit];[min];[max]`:
#: a label quoted (a quote doubled inside) or bare without space, '=' or quote;
#: a value; a unit of measure of the guidelines' list; thresholds as ranges
#: (`[@]start:end`, `~` for minus infinity); min and max as numbers.
_NUM = r"-?\d+(?:\.\d+)?"
_RANGE = rf"@?(?:(?:~|{_NUM})?:)?(?:{_NUM})?"
PERFDATA = re.compile(
    rf"^(?P<label>'(?:[^'=]|'')+'|[^'= ]+)=(?P<value>{_NUM}|U)(?P<uom>us|ms|s|%|B|KB|MB|GB|TB|c)?"
    rf"(?:;(?P<warn>{_RANGE})(?:;(?P<crit>{_RANGE})(?:;(?P<min>{_NUM})?(?:;(?P<max>{_NUM})?)?)?)?)?$"
)


def parse(stdout: str, code: int) -> tuple[str, str, dict[str, re.Match[str]]]:
    """(status word, text, perfdata by label) as an agent takes them; fails
    the test where an agent would show garbage."""
    assert code in STATE_OF_EXIT, f"exit {code}: an agent shows UNKNOWN with 'out of bounds'"
    first = stdout.splitlines()[0] if stdout else ""
    m = STATUS_LINE.match(first)
    assert m, f"not a plugin status line: {first!r}"
    word, text, perf = m.groups()
    assert word == STATE_OF_EXIT[code], (word, code)
    items: dict[str, re.Match[str]] = {}
    for item in (perf or "").split():
        pm = PERFDATA.match(item)
        assert pm, f"perfdata item outside the guidelines' grammar: {item!r}"
        items[pm["label"].strip("'")] = pm
    return word, text, items


def cocoond(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cocoond", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=os.environ.copy(),
    )


@pytest.mark.parametrize(
    ("faults", "word"),
    [
        ((), "OK"),
        (("unreferenced-blob",), "OK"),
        (("orphan-dir",), "WARNING"),
        (("orphan-dir", "dangling-name"), "CRITICAL"),
    ],
)
def test_status_line_and_perfdata_as_an_agent_reads_them(
    faults: tuple[str, ...], word: str, sim: ModuleType, root: Path
) -> None:
    sim.create(str(root))
    for fault in faults:
        sim.inject(str(root), fault)
    human = cocoond("check", "--root", str(root))
    got_word, text, perf = parse(human.stdout, human.returncode)
    assert got_word == word
    as_json = cocoond("check", "--root", str(root), "--json")
    assert as_json.returncode == human.returncode
    result = json.loads(as_json.stdout)
    counts = {
        sev: sum(f["severity"] == sev for f in result["findings"]) for sev in ("error", "warning", "info")
    }
    assert set(perf) == {"errors", "warnings", "infos", "snapshots", "blobs", "seconds"}
    expected = {
        "errors": counts["error"],
        "warnings": counts["warning"],
        "infos": counts["info"],
        "snapshots": result["snapshots"],
        "blobs": result["blobs"],
    }
    assert {label: int(perf[label]["value"]) for label in expected} == expected
    assert perf["seconds"]["uom"] == "s" and 0 < float(perf["seconds"]["value"]) < 60
    assert all(perf[label]["uom"] is None and perf[label]["min"] == "0" for label in expected)
    # The thresholds are the exit code's rule: any error critical, any warning a warning.
    assert perf["errors"]["crit"] == "0" and perf["warnings"]["warn"] == "0"
    assert f"{counts['error']} errors, {counts['warning']} warnings" in text
    # The rest is the table, as before: one row per finding after the header.
    lines = human.stdout.splitlines()
    assert len(lines) == (1 + 1 + len(result["findings"]) if result["findings"] else 1)


def test_a_pipe_in_the_root_does_not_start_the_perfdata(sim: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "a|b=1"
    sim.create(str(root))
    done = cocoond("check", "--root", str(root))
    word, text, perf = parse(done.stdout, done.returncode)
    assert word == "OK" and "a\\x7cb=1" in text and set(perf) >= {"errors", "seconds"}


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--bogus"],
        ["check", "--timeout", "0"],
        ["check", "-t", "soon"],
        ["check", "--config", "a.toml", "--no-config"],
    ],
)
def test_usage_error_is_unknown_on_stdout(argv: list[str]) -> None:
    done = cocoond(*argv)
    word, text, perf = parse(done.stdout, done.returncode)
    assert word == "UNKNOWN" and text.startswith("usage error: ") and perf == {}
    assert "usage:" in done.stderr


def test_missing_root_is_unknown_naming_where_the_root_came_from(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    config = tmp_path / "cocoond.toml"
    config.write_text(f'root_dir = "{absent}"\n')
    done = cocoond("check", "--config", str(config))
    word, text, _ = parse(done.stdout, done.returncode)
    assert word == "UNKNOWN" and text == f"{absent}: no such directory (root_dir in {config})"
    assert done.stderr == ""
    by_flag = cocoond("check", "--root", str(absent))
    assert parse(by_flag.stdout, by_flag.returncode)[1] == f"{absent}: no such directory (from --root)"
    # --json is unchanged: stdout stays empty, the reason is one line on stderr.
    as_json = cocoond("check", "--root", str(absent), "--json")
    assert as_json.returncode == 3 and as_json.stdout == ""
    assert as_json.stderr.startswith("cocoond check: ") and str(absent) in as_json.stderr


def test_bad_config_is_unknown(tmp_path: Path, sim: ModuleType, root: Path) -> None:
    sim.create(str(root))
    config = tmp_path / "cocoond.toml"
    config.write_text("[thresholds]\npending_stale_secs = 10\n")
    done = cocoond("check", "--root", str(root), "--config", str(config))
    word, text, _ = parse(done.stdout, done.returncode)
    assert word == "UNKNOWN" and str(config) in text and "thresholds.pending_stale_secs" in text


def test_internal_error_is_unknown_not_exit_1(
    sim: ModuleType, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug in check (here: the reconcile raising) is UNKNOWN, exit 3, the
    traceback on stderr for the bug report."""
    sim.create(str(root))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr("cocoond.cli.main.run_check", broken)
    capsys.readouterr()
    code = main(["check", "--root", str(root)])
    out, err = capsys.readouterr()
    word, text, _ = parse(out, code)
    assert word == "UNKNOWN" and text == "internal error: KeyError: 'boom'"
    assert "Traceback" in err and "KeyError" in err
    assert main(["check", "--root", str(root), "--json"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and "internal error: KeyError" in err


def test_timeout_gives_up_with_unknown(sim: ModuleType, root: Path) -> None:
    """A check that cannot finish in time: 300 snapshots take far longer
    than a millisecond to reconcile, so the timer always wins."""
    sim.populate(str(root), snapshots=300, images=5)
    done = cocoond("check", "--root", str(root), "-t", "0.001")
    word, text, _ = parse(done.stdout, done.returncode)
    assert word == "UNKNOWN" and text == "timed out after 0.001s (--timeout)"
    assert len(done.stdout.splitlines()) == 1
    # A generous limit changes nothing.
    ok = cocoond("check", "--root", str(root), "--timeout", "50")
    assert parse(ok.stdout, ok.returncode)[0] == "OK"
    assert check_module.STATUS_WORDS[ok.returncode] == "OK"
