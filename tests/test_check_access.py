"""`cocoond check` run by a user who may not read part of cocoon's tree
(issue 10 item 4): exit 3 and one line on stderr naming what it could not
read, never a traceback and never a finding made of its own blindness. And
cocoon's lock file, unreadable or not, is none of check's business (item 9).

Each case runs the real command without the power to bypass file modes
(tests/unprivileged.py) against a tree whose modes deny it one thing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.unprivileged import require_unprivileged, unprivileged

NO_ACCESS, NO_LISTING, NO_SEARCH = 0o000, 0o300, 0o600


def run_check(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        unprivileged([sys.executable, "-m", "cocoond", "check", "--root", str(root), *extra]),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(sim: ModuleType, root: Path) -> dict[str, str]:
    """A healthy tree with every kind of thing check reads: a snapshot (and
    its files), a cloudimg blob, an OCI blob and boot dir, every DB."""
    require_unprivileged()
    hex_ = sim.pull_image(str(root))
    sid = sim.create(str(root), name="a", blobs=[hex_])
    oci_hex = "b" * 64
    (root / "oci" / "blobs" / f"{oci_hex}.erofs").write_bytes(b"\xe2\xe1\xf5\xe0" + b"\0" * 4092)
    (root / "oci" / "boot" / oci_hex).mkdir()
    # OCI.Config needs the kernel and initrd of the layer the entry names (oci.go:136-143).
    (root / "oci" / "boot" / oci_hex / "vmlinuz").write_bytes(b"MZ kernel")
    (root / "oci" / "boot" / oci_hex / "initrd.img").write_bytes(b"070701 initrd")
    (root / "oci" / "db" / "images.json").write_text(
        json.dumps(
            {
                "images": {
                    "r": {
                        "ref": "r",
                        "layers": [{"digest": f"sha256:{oci_hex}"}],
                        # cocoon writes both; without them creating a VM from r panics (db_unreadable)
                        "kernel_layer": f"sha256:{oci_hex}",
                        "initrd_layer": f"sha256:{oci_hex}",
                    }
                }
            }
        )
    )
    (root / "cloudhypervisor" / "db" / "vms.json").write_text('{"vms": {}, "names": {}}')
    return {"sid": sid}


@pytest.mark.parametrize(
    ("relpath", "mode"),
    [
        ("", NO_ACCESS),
        ("", NO_SEARCH),
        ("snapshot", NO_ACCESS),
        ("snapshot/db", NO_SEARCH),  # the case: Path.exists() on the lock raised
        ("snapshot/db", NO_ACCESS),
        ("snapshot/db", NO_LISTING),
        ("snapshot/db/snapshots.json", NO_ACCESS),
        ("snapshot/localfile", NO_ACCESS),
        ("snapshot/localfile", NO_LISTING),
        ("snapshot/localfile", NO_SEARCH),
        ("snapshot/localfile/{sid}", NO_ACCESS),
        ("snapshot/localfile/{sid}", NO_SEARCH),
        ("snapshot/localfile/{sid}/cocoon.json", NO_ACCESS),
        ("cloudimg/blobs", NO_ACCESS),
        ("cloudimg/blobs", NO_SEARCH),
        ("cloudimg/db/images.json", NO_ACCESS),
        ("cloudimg/temp", NO_LISTING),
        ("oci/blobs", NO_SEARCH),
        ("oci/boot", NO_ACCESS),
        ("oci/db/images.json", NO_ACCESS),
        ("cloudhypervisor/db", NO_SEARCH),
        ("cloudhypervisor/db/vms.json", NO_ACCESS),
    ],
)
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "human"])
def test_what_check_may_not_read_is_exit_3_and_one_line(
    tree: dict[str, str], root: Path, relpath: str, mode: int, as_json: bool
) -> None:
    target = root / relpath.format(**tree)
    saved = os.lstat(target).st_mode
    os.chmod(target, mode)
    try:
        done = run_check(root, *(["--json"] if as_json else []))
    finally:
        os.chmod(target, saved)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    if as_json:  # stdout is JSON or nothing; the reason is one line on stderr
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("cocoond check: "), done.stderr
    else:  # a monitoring plugin's UNKNOWN line, on stdout
        assert done.stderr == ""
        lines = done.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("COCOOND UNKNOWN - "), done.stdout
    # It names what it could not read: the denied path, or one inside it
    # (cocoon.json's data dir for the file itself).
    named = target.parent if target.name == "cocoon.json" else target
    assert str(named) in lines[0], lines[0]


def test_the_same_user_checks_the_healthy_tree(tree: dict[str, str], root: Path) -> None:
    """The control for the cases above: nothing denied, a clean bill."""
    done = run_check(root, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["findings"] == [] and result["snapshots"] == 1 and result["blobs"] == 2


@pytest.mark.parametrize("mode", [NO_ACCESS, 0o600])
def test_an_unreadable_lock_file_changes_nothing(tree: dict[str, str], root: Path, mode: int) -> None:
    """Item 9: cocoon's lock (0600, or 0) is not opened at all, so it is
    neither "busy" nor an error: the result is the one without it."""
    lock = root / "snapshot" / "db" / "snapshots.lock"
    assert lock.exists()
    os.chmod(lock, mode)
    done = run_check(root, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["findings"] == [] and result["consistent"] is True and "lock" not in result
    human = run_check(root)
    # The status line only: no note about a busy lock.
    assert human.returncode == 0 and len(human.stdout.splitlines()) == 1, human.stdout


def test_an_unreadable_config_is_exit_3_and_one_line(
    tree: dict[str, str], root: Path, tmp_path: Path
) -> None:
    config = tmp_path / "cocoond.toml"
    config.write_text(f"root_dir = {json.dumps(str(root))}\n")
    os.chmod(config, NO_ACCESS)
    done = subprocess.run(
        unprivileged([sys.executable, "-m", "cocoond", "check", "--config", str(config)]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3 and done.stderr == ""
    assert len(done.stdout.splitlines()) == 1 and str(config) in done.stdout, done.stdout
    assert done.stdout.startswith("COCOOND UNKNOWN - ")
