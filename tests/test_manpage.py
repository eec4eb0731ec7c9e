"""cocoond(8) is made from the parser behind --help: it renders without a
single groff warning, and says everything --help says, item for item."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cocoond.cli.main import build_parser
from cocoond.cli.manpage import commands, escape, main, render

DATE = "2026-01-02"


def groff() -> str:
    """groff, or a skip; CI (.ci/run installs groff) must not skip."""
    found = shutil.which("groff")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("groff is missing in CI: .ci/run should have installed it")
        pytest.skip("groff not installed (.ci/run installs it)")
    return found


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def page() -> str:
    return render(date=DATE)


@pytest.fixture(scope="module")
def rendered(page: str) -> str:
    """The page as plain text, one paragraph per line (no wrapping, no
    hyphenation, no overstrike), whitespace folded."""
    done = subprocess.run(
        [groff(), "-man", "-Tascii", "-rLL=5000n", "-ww"],
        input=page,
        capture_output=True,
        text=True,
        check=True,
    )
    return words(re.sub(r".\x08", "", done.stdout))


def test_renders_without_warnings(page: str) -> None:
    done = subprocess.run(
        [groff(), "-man", "-ww", "-z"], input=page, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_man_warnings_clean(page: str, tmp_path: Path) -> None:
    man = shutil.which("man")
    if man is None:
        pytest.skip("man not installed")
    path = tmp_path / "cocoond.8"
    path.write_text(page)
    done = subprocess.run(
        [man, "--warnings", "-l", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "EXIT STATUS" in done.stdout


def test_every_help_item_is_in_the_page_and_in_the_help(rendered: str) -> None:
    parser = build_parser()
    leaves = list(commands(parser))
    assert [name for name, _ in leaves] == [
        "cocoond run",
        "cocoond check",
        "cocoond config check",
        "cocoond config show",
    ]
    for name, sub in [("cocoond", parser), *leaves]:
        help_text = words(sub.format_help())
        assert sub.sections, name
        for section in sub.sections:
            for term, text in section.items:
                assert words(term) in help_text and words(text) in help_text, (name, term)
                assert words(term) in rendered and words(text) in rendered, (name, term)
        for action in sub._actions:
            if action.option_strings:
                assert words(str(action.help)) in rendered, (name, action.option_strings)
        assert words(sub.format_usage().removeprefix("usage: ")) in rendered
        if sub.description:
            assert words(sub.description) in rendered


def test_page_names_version_and_sections(page: str, rendered: str) -> None:
    from cocoond import __version__

    assert f'.TH COCOOND 8 "{DATE}" "cocoond {__version__}"' in page
    for title in (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "EXIT STATUS",
        "SIGNALS",
        "FILES",
        "EXAMPLES",
    ):
        assert f"\n.SH {title}\n" in page
    assert "SIGHUP" in rendered and "/etc/cocoond/config.toml" in rendered


def test_escape() -> None:
    assert escape("--config") == "\\-\\-config"
    assert escape(".hidden") == "\\&.hidden"
    assert escape("a\\b") == "a\\eb"
    assert escape("two\n  lines") == "two lines"


def test_source_date_epoch_makes_the_page_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01
    assert '.TH COCOOND 8 "2026-01-01"' in render()
    assert render() == render()


def test_module_writes_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    out = tmp_path / "cocoond.8"
    assert main(["-o", str(out)]) == 0
    assert out.read_text() == render()
    done = subprocess.run(
        [sys.executable, "-m", "cocoond.cli.manpage"], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == render()


def test_environment_and_files_list_each_term_once(page: str) -> None:
    """Several commands share a variable or a file: the page names it once."""
    for title in ("ENVIRONMENT", "FILES"):
        body = page.split(f"\n.SH {title}\n", 1)[1].split("\n.SH ", 1)[0]
        terms = re.findall(r"^\.TP\n\.B (.+)$", body, re.MULTILINE)
        assert terms and len(terms) == len(set(terms)), (title, terms)
    env = page.split("\n.SH ENVIRONMENT\n", 1)[1].split("\n.SH ", 1)[0]
    assert env.count(".B STATE_DIRECTORY") == 1 and "/var/lib/cocoond" in env


def test_output_section_gives_the_plugin_status_line(rendered: str) -> None:
    assert "OUTPUT cocoond check first line a monitoring plugin's status line" in rendered
    assert "COCOOND OK|WARNING|CRITICAL|UNKNOWN - summary | perfdata" in rendered
