"""Helpers for tests of the Prometheus side: promtool (Debian's `prometheus`
package; .ci/run installs it) and a parser of the textfile."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "prometheus" / "cocoond.rules.yml"
RULE_TESTS = REPO / "prometheus" / "cocoond.rules.test.yml"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def promtool() -> str:
    """promtool's path. Skips where it is missing, except in CI, where a
    missing promtool means .ci/run failed to install it: a failure."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: .ci/run should have installed it")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return path


def run_promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO),
    )


def samples(text: str) -> Samples:
    """(name, labels) -> value of every sample in a textfile."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))
