"""Shared fixtures. Trees are made with ../shared/cocoonsim.py, which does to a
directory exactly what cocoon does; it is imported from there, never copied."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SIM = SHARED / "cocoonsim.py"
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

import cocoonsim  # noqa: E402


def run_sim(root: Path, *args: str) -> str:
    """cocoonsim as a separate process (as cocoon is); returns its stdout."""
    done = subprocess.run(
        [sys.executable, str(SIM), str(root), *args], check=True, capture_output=True, text=True, timeout=120
    )
    return done.stdout


@pytest.fixture
def sim() -> ModuleType:
    return cocoonsim


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A cocoon root path (not created: tests decide whether it exists)."""
    return tmp_path / "cocoon"
