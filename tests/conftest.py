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

# Written out from contract section 3, not imported from cocoond, so a
# severity changed in the code without the contract fails the tests.
CONTRACT_SEVERITY = {
    "db_unreadable": "error",
    "pending": "info",
    "stale_pending": "warning",
    "orphan_data_dir": "warning",
    "missing_data_dir": "error",
    "data_dir_mismatch": "warning",
    "missing_blob": "error",
    "unreferenced_blob": "info",
    "dangling_name": "error",
    "name_mismatch": "warning",
    "stale_temp": "info",
}
#: Every fault `cocoonsim.py inject` knows.
FAULTS = [
    "orphan-dir",
    "missing-dir",
    "missing-blob",
    "dangling-name",
    "stale-pending",
    "fresh-pending",
    "unreferenced-blob",
    "corrupt-db",
]
#: The seed's record fields (contract section 1); everything else is unknown.
KNOWN_FIELDS = frozenset(
    {"id", "name", "description", "image", "image_blob_ids", "cpu", "memory", "storage", "nics"}
    | {"created_at", "pending", "data_dir"}
)


def sim_argv(root: Path, *args: str) -> list[str]:
    """The simulator's command line, for a process of its own (as cocoon is)."""
    return [sys.executable, str(SIM), str(root), *args]


def run_sim(root: Path, *args: str) -> str:
    """cocoonsim as a separate process (as cocoon is); returns its stdout."""
    done = subprocess.run(sim_argv(root, *args), check=True, capture_output=True, text=True, timeout=120)
    return done.stdout


@pytest.fixture(scope="session")
def _no_default_config(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("no-default-config") / "absent.toml")


@pytest.fixture(autouse=True)
def _isolated_from_host(monkeypatch: pytest.MonkeyPatch, _no_default_config: str) -> None:
    """No test reads the host's /etc/cocoond/config.toml or writes into a
    systemd state directory: COCOOND_CONFIG names a file that does not exist
    (a test that wants a default config sets its own), and STATE_DIRECTORY is
    unset. Subprocesses inherit both."""
    monkeypatch.setenv("COCOOND_CONFIG", _no_default_config)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


@pytest.fixture
def sim() -> ModuleType:
    return cocoonsim


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A cocoon root path (not created: tests decide whether it exists)."""
    return tmp_path / "cocoon"
