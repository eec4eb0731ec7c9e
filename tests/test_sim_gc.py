"""`gc` is cocoon's orchestrator (gc/orchestrator.go) with the modules
`cocoon gc` registers: TryLock all or abort, read all or abort, collect only
where there is something to collect."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from cocoond import sim
from cocoond.sim import CH, CLOUDIMG, OCI, GCAborted
from tests.conftest import SIM_CMD

OLD = 2 * 3600


def age(path: str, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when), follow_symlinks=False)


@pytest.mark.parametrize("db", ["snapshot", "cloudimg", "oci", "cloudhypervisor", "firecracker"])
def test_gc_aborts_when_any_lock_is_busy(tmp_path: Path, db: str) -> None:
    root = str(tmp_path / "r")
    hex_ = sim.pull_image(root)
    sim.rmi(root, hex_)
    proc = subprocess.Popen(
        [*SIM_CMD, root, "hold-lock", "--db", db, "--seconds", "60"], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith(b"locked ")
        name = {"cloudhypervisor": "cloud-hypervisor"}.get(db, db)
        with pytest.raises(GCAborted, match=f"lock busy\\): {name}$"):
            sim.gc(root)
    finally:
        proc.kill()
        proc.wait()
    assert os.path.exists(CLOUDIMG.blob(root, hex_))  # nothing collected
    assert sim.gc(root)["blobs"] == [hex_]


def test_gc_aborts_on_a_db_go_cannot_decode(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    sim.pull_oci(root, "registry.example/a:1")
    orphan = sim.inject(root, "orphan-dir")["subject"]
    Path(OCI.db(root)).write_text('{"images": {"x": {"size": "big"}}}')
    with pytest.raises(GCAborted, match=r"gc aborted: snapshot oci: parse .*images\.json"):
        sim.gc(root)
    assert os.path.isdir(sim.data_dir(root, orphan))


def test_gc_snapshots(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    keep = sim.create(root, name="keep")
    stale = sim.create(
        root, name="stale", crash_at="extract", created_at=sim.go_time(time.time() - 25 * 3600)
    )
    young = sim.create(
        root, name="young", crash_at="extract", created_at=sim.go_time(time.time() - 23 * 3600)
    )
    null = sim.inject(root, "null-record-with-dir")["subject"]
    orphan = sim.inject(root, "orphan-dir")["subject"]
    moved = sim.inject(root, "symlink-dir-in-localfile")["subject"]
    lonely_link = sim.inject(root, "orphan-symlink-dir")["subject"]
    removed = sim.gc(root)
    assert removed["data_dirs"] == sorted([stale, null, orphan])
    assert removed["records"] == [stale]
    db = sim.load_snapshots(root)
    assert set(db["snapshots"]) == {keep, young, moved, null}  # the null record itself stays
    assert "stale" not in db["names"]
    for sid in (moved, lonely_link):  # ScanSubdirs never lists a symlink
        assert os.path.islink(sim.data_dir(root, sid))
    assert os.path.isdir(sim.data_dir(root, young))


def test_gc_rewrites_the_snapshot_db_whenever_it_collects(tmp_path: Path) -> None:
    """cleanStalePending is a WriteRaw: an orphan dir alone rewrites snapshots.json."""
    root = str(tmp_path / "r")
    sim.create(root, name="a")
    path = Path(sim.snapshot_db(root))
    os.utime(path, (1, 1))
    assert sim.gc(root)["data_dirs"] == []
    assert path.stat().st_mtime == 1  # nothing to collect: not written
    sim.inject(root, "orphan-dir")
    sim.gc(root)
    assert path.stat().st_mtime > 1


def test_gc_blobs_and_oci_boot_dirs(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    pinned = sim.pull_image(root, url="https://x/pinned.img")
    sim.create(root, image="https://x/pinned.img")
    sim.rmi(root, pinned)  # still pinned by the VM and the snapshot
    loose = sim.pull_image(root)
    sim.rmi(root, loose)
    info = sim.pull_oci(root, "registry.example/a:1")
    sim.rmi(root, info["ref"])
    link = sim.inject(root, "symlinked-blob")["subject"]
    sim.rmi(root, link)  # a symlink: ScanFileStems lists it, gc removes the link
    removed = sim.gc(root)
    assert removed["blobs"] == sorted([loose, link, *info["layers"]])
    assert removed["boot_dirs"] == [info["layers"][-1]]
    assert os.listdir(CLOUDIMG.blobs(root)) == [pinned + ".qcow2"]
    assert os.listdir(os.path.join(root, "oci/boot")) == []
    assert os.path.isfile(os.path.join(root, "elsewhere", link + ".qcow2"))  # the target stays


def test_gc_stale_temps_only_with_blobs_to_collect(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    sim.pull_image(root, fmt="raw")  # leaves its convert lock
    (lock,) = os.listdir(CLOUDIMG.temp(root))
    old_pull = sim.inject(root, "stale-pull-img")["path"]
    young_pull = sim.pull_image(root, crash_at="download")
    old_dir = sim.inject(root, "stale-oci-pull-dir")["path"]
    old_file_in_oci = os.path.join(OCI.temp(root), "stray")
    Path(old_file_in_oci).write_text("x")
    age(old_file_in_oci, OLD)
    age(os.path.join(CLOUDIMG.temp(root), lock), OLD)
    assert sim.gc(root)["temps"] == []  # no blob to collect: temps stay (gc/orchestrator.go:91-97)
    assert os.path.exists(old_pull) and os.path.exists(old_dir)
    loose = sim.pull_image(root)
    sim.rmi(root, loose)
    removed = sim.gc(root)
    assert removed["temps"] == [os.path.relpath(old_pull, root)]
    left = sorted(os.listdir(CLOUDIMG.temp(root)))
    assert lock in left and len(left) == 2 and young_pull  # the lock and the young download stay
    assert os.path.exists(old_dir)  # only the cloudimg module had blobs
    oci = sim.pull_oci(root, "registry.example/b:1")
    sim.rmi(root, oci["ref"])
    removed = sim.gc(root)
    assert removed["temps"] == [os.path.relpath(old_dir, root)]  # OCI: dirs only
    assert os.path.exists(old_file_in_oci)


def test_gc_vm_modules(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    live = sim.create_vm(root, name="live")
    stale = sim.create_vm(root, name="stale", crash_at="dirs")
    with sim.flock(sim.vm_lock(root, CH)):
        db = sim.load_vms(root, CH)
        db["vms"][stale]["updated_at"] = sim.go_time(time.time() - 25 * 3600)
        sim.atomic_write_json(sim.vm_db(root, CH), db)
    orphan = os.path.join(root, "run/cloudhypervisor/ORPHANORPHANORPHANORPHAN22")
    os.makedirs(orphan)
    removed = sim.gc(root)
    assert removed["vms"] == [stale]
    assert sorted(removed["vm_dirs"]) == sorted(
        [os.path.relpath(orphan, root), f"run/cloudhypervisor/{stale}", f"log/cloudhypervisor/{stale}"]
    )
    assert list(sim.load_vms(root, CH)["vms"]) == [live]
    assert os.path.isdir(os.path.join(root, "run/cloudhypervisor", live))


def test_gc_cli_abort_is_exit_1(tmp_path: Path) -> None:
    root = str(tmp_path / "r")
    sim.pull_oci(root, "registry.example/a:1")
    Path(OCI.db(root)).write_text("{")
    done = subprocess.run([*SIM_CMD, root, "gc"], capture_output=True, text=True)
    assert done.returncode == 1 and "gc aborted" in done.stderr and done.stdout == ""
    Path(OCI.db(root)).write_text("{}")
    assert json.loads(subprocess.run([*SIM_CMD, root, "gc"], capture_output=True, check=True).stdout)
