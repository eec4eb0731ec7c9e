"""What the READMEs tell an operator to type works on a host as it comes
(issue 19): a command that needs jq says so, and each jq one has a
jq-free way beside it (journald matches cocoond's fields itself; the real
journalctl is exercised in test_daemon_journald_real.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "systemd" / "README.md"]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_jq_command_says_jq_is_needed(doc: Path) -> None:
    for block in shell_blocks(doc.read_text(encoding="utf-8")):
        commands = re.sub(r"\\\n\s*", " ", block).splitlines()
        for command in commands:
            if re.search(r"(^|\|)\s*jq\b", command):
                assert re.search(r"#.*(needs jq|install jq)", command), f"{doc.name}: {command}"


def test_the_jq_free_commands_are_there() -> None:
    for doc in DOCS:
        assert "-p warning -o cat -f COCOOND_EVENT=finding.opened" in doc.read_text(encoding="utf-8"), doc
