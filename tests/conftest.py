"""Shared fixtures. Trees are made with the project's simulator, cocoond.sim,
which does to a directory what cocoon does (written from cocoon's Go source;
see cocoond/sim/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cocoond import sim as cocoond_sim

#: The simulator as a separate process, as cocoon is one.
SIM_CMD = (sys.executable, "-m", "cocoond.sim")

# Written out from contract section 3, not imported from cocoond, so a
# severity changed in the code without the contract fails the tests.
CONTRACT_SEVERITY = {
    "db_unreadable": "error",
    "pending": "info",
    "stale_pending": "warning",
    "orphan_data_dir": "warning",
    "missing_data_dir": "error",
    "incomplete_data_dir": "error",
    "data_dir_mismatch": "warning",
    "missing_blob": "error",
    "unreferenced_blob": "info",
    "dangling_name": "error",
    "name_mismatch": "warning",
    "stale_temp": "info",
    "dir_unreadable": "warning",
    # issue 16 (gc as a whole): in the README's findings table, not in the contract
    "gc_blocked": "warning",
    "stale_creating_vm": "warning",
    "orphan_vm_dir": "warning",
    "clone_blocked": "warning",
    "restore_blocked": "error",
    "image_unusable": "error",
    "vm_snapshot_gone": "info",
    "vm_base_missing": "error",
    "gc_destroys": "error",
}
#: The simulator's classic faults, each of which leaves exactly one finding
#: (tests/test_sim_faults.py runs all of `cocoond.sim.FAULTS`).
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


def file_content(path: str) -> bytes:
    """A file's bytes for before/after comparisons: its data regions (offset
    and bytes) and its length, so that a sparse 10 GiB disk of a snapshot
    costs what it holds, not what it spans."""
    parts = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(f.fileno(), offset, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(f.fileno(), start, os.SEEK_HOLE)
            parts.append(b"%d:" % start + os.pread(f.fileno(), end - start, start))
            offset = end
    return b"%d|" % size + b"|".join(parts)


def sim_argv(root: Path, *args: str) -> list[str]:
    """The simulator's command line, for a process of its own (as cocoon is)."""
    return [*SIM_CMD, str(root), *args]


def run_sim(root: Path, *args: str) -> str:
    """`python -m cocoond.sim ROOT ARGS` (a separate process, as cocoon is);
    returns its stdout."""
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
    unset. Subprocesses inherit both. cocoon's run and log dirs default to
    places that do not exist (a host's /var/lib/cocoon/run is not read); a
    test on a simulator tree points them at ROOT/run and ROOT/log."""
    monkeypatch.setenv("COCOOND_CONFIG", _no_default_config)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("COCOON_RUN_DIR", _no_default_config + ".run")
    monkeypatch.setenv("COCOON_LOG_DIR", _no_default_config + ".log")


@pytest.fixture
def sim() -> ModuleType:
    return cocoond_sim


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A cocoon root path (not created: tests decide whether it exists)."""
    return tmp_path / "cocoon"
