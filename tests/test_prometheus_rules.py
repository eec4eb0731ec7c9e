"""prometheus/: the alert rules name only metrics cocoond writes, and pass
promtool's own checks and unit tests (when promtool is installed: .ci/run
installs it and runs the same commands)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cocoond.core.findings import Finding
from cocoond.daemon.metrics import Readings, render

PROMETHEUS = Path(__file__).resolve().parents[1] / "prometheus"
RULES = PROMETHEUS / "cocoond.rules.yml"
TESTS = PROMETHEUS / "cocoond.rules.test.yml"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def test_rules_use_only_metrics_cocoond_writes() -> None:
    written = render(Readings([Finding("missing_blob", "ab", "m")], 1, 0, 1, 1.0, 0.1, 300.0, 300.0)).decode()
    exported = set(re.findall(r"^(cocoond_\w+?)(?:\{| )", written, re.M))
    used = set(re.findall(r"\bcocoond_\w+", RULES.read_text()))
    assert used, "no cocoond metric in the rules?"
    assert used <= exported, used - exported
    assert {"CocoondErrorFindings", "CocoondStale", "CocoondMetricsMissing", "CocoondRootUnseen"} <= set(
        re.findall(r"alert: (\w+)", RULES.read_text())
    )


@needs_promtool
@pytest.mark.parametrize(("command", "path"), [("check", RULES), ("test", TESTS)])
def test_promtool_rules(command: str, path: Path) -> None:
    done = subprocess.run(
        ["promtool", command, "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
