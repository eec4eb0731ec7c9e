"""cocoond.scan: the disk side. Sizes by allocated blocks, which names count
as blobs and temp files, what a data dir is, and that the single-entry
readers the daemon uses agree with the full pass."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import pytest

from cocoond.core.reconcile import BlobFile
from cocoond.errors import DBError
from cocoond.scan import (
    REF_DBS,
    blob_relpath_ok,
    disk_usage,
    list_blobs,
    list_data_dirs,
    list_temps,
    read_ref_db,
    read_snapshot_db,
    root_aliases,
    scan,
    stat_blob,
    stat_data_dir,
    stat_temp,
)
from cocoond.storage.dbfile import read_db_bytes
from cocoond.storage.paths import Paths
from cocoond.storage.records import SnapshotDB

MB = 1 << 20


def blocks(path: Path) -> int:
    return os.lstat(path).st_blocks * 512


# -------------------------------------------------------------- disk_usage
def test_disk_usage_counts_sparse_files_by_allocated_blocks(tmp_path: Path) -> None:
    d = tmp_path / "snap"
    d.mkdir()
    sparse = d / "memory-range-0"
    with open(sparse, "wb") as f:
        f.truncate(100 * MB)
    assert sparse.stat().st_size == 100 * MB
    used = disk_usage(str(d))
    assert used == blocks(d) + blocks(sparse)
    assert used < MB


def test_disk_usage_counts_written_data(tmp_path: Path) -> None:
    d = tmp_path / "snap"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "disk").write_bytes(os.urandom(MB))
    used = disk_usage(str(d))
    assert used == blocks(d) + blocks(d / "sub") + blocks(d / "sub" / "disk")
    assert used >= MB


def test_disk_usage_counts_hardlinks_once(tmp_path: Path) -> None:
    d = tmp_path / "snap"
    d.mkdir()
    (d / "a").write_bytes(os.urandom(MB))
    os.link(d / "a", d / "b")
    (d / "c").mkdir()
    os.link(d / "a", d / "c" / "a-again")
    assert disk_usage(str(d)) == blocks(d) + blocks(d / "c") + blocks(d / "a")


def test_disk_usage_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(2 * MB))
    d = tmp_path / "snap"
    d.mkdir()
    (d / "to-file").symlink_to(outside / "big")
    (d / "to-dir").symlink_to(outside)
    assert disk_usage(str(d)) == blocks(d) + blocks(d / "to-file") + blocks(d / "to-dir")
    assert disk_usage(str(d)) < MB


def test_disk_usage_of_a_vanished_path_is_zero(tmp_path: Path) -> None:
    assert disk_usage(str(tmp_path / "gone")) == 0


# ------------------------------------------------------------------- blobs
def test_list_blobs_takes_only_blob_names(tmp_path: Path) -> None:
    root = tmp_path
    (root / "cloudimg" / "blobs").mkdir(parents=True)
    (root / "oci" / "blobs").mkdir(parents=True)
    wanted = {"cloudimg/blobs/aa11.qcow2": b"q" * 100, "oci/blobs/bb22.erofs": b"e" * 50}
    ignored = [
        "cloudimg/blobs/.tmp-cc33.qcow2",
        "cloudimg/blobs/dd44.qcow2.tmp",
        "cloudimg/blobs/ee55.raw",
        "cloudimg/blobs/ff66.erofs",  # the other dir's suffix
        "cloudimg/blobs/.qcow2",
        "cloudimg/blobs/images.lock",
        "oci/blobs/aa11.qcow2",
        "oci/blobs/.tmp-1.erofs",
    ]
    for relpath, body in wanted.items():
        (root / relpath).write_bytes(body)
    for relpath in ignored:
        (root / relpath).write_bytes(b"x")
        assert not blob_relpath_ok(relpath)
    got = list_blobs(str(root))
    assert set(got) == set(wanted)
    for relpath, body in wanted.items():
        assert blob_relpath_ok(relpath)
        blob = got[relpath]
        assert blob == stat_blob(str(root), relpath)
        assert blob.hex == Path(relpath).stem
        assert (blob.regular, blob.size, blob.usable) == (True, len(body), True)
        assert blob.disk_bytes == blocks(root / relpath)


def test_list_blobs_without_blob_dirs(tmp_path: Path) -> None:
    assert list_blobs(str(tmp_path)) == {}
    assert list_blobs(str(tmp_path / "no-root")) == {}


def test_stat_blob_does_not_follow_symlinks(tmp_path: Path) -> None:
    (tmp_path / "cloudimg" / "blobs").mkdir(parents=True)
    target = tmp_path / "real.qcow2"
    target.write_bytes(b"x" * 4096)
    (tmp_path / "cloudimg" / "blobs" / "ab.qcow2").symlink_to(target)
    (tmp_path / "cloudimg" / "blobs" / "cd.qcow2").symlink_to(tmp_path / "dangling")
    (tmp_path / "cloudimg" / "blobs" / "ef.qcow2").mkdir()
    (tmp_path / "cloudimg" / "blobs" / "00.qcow2").write_bytes(b"")
    got = list_blobs(str(tmp_path))
    for hex_ in ("ab", "cd", "ef"):
        blob = got[f"cloudimg/blobs/{hex_}.qcow2"]
        assert not blob.regular and not blob.usable and blob.disk_bytes == 0
    empty = got["cloudimg/blobs/00.qcow2"]
    assert empty.regular and not empty.usable
    assert stat_blob(str(tmp_path), "cloudimg/blobs/gone.qcow2") is None


def test_blobfile_usable() -> None:
    assert BlobFile("r", "h", True, 1, 4096).usable
    assert not BlobFile("r", "h", True, 0, 0).usable
    assert not BlobFile("r", "h", False, 10, 0).usable


# --------------------------------------------------------------- data dirs
def make_localfile(root: Path) -> Path:
    lf = root / "snapshot" / "localfile"
    lf.mkdir(parents=True)
    (lf / "DIR").mkdir()
    (lf / "FILE").write_bytes(b"x")
    (root / "elsewhere").mkdir()
    (lf / "LINK_TO_DIR").symlink_to(root / "elsewhere")
    (lf / "LINK_TO_FILE").symlink_to(lf / "FILE")
    (lf / "DANGLING").symlink_to(root / "nothing-here")
    return lf


def test_stat_data_dir(tmp_path: Path) -> None:
    make_localfile(tmp_path)
    root = str(tmp_path)
    assert stat_data_dir(root, "DIR") is True
    assert stat_data_dir(root, "LINK_TO_DIR") is True  # followed, as cocoon's os.Stat does
    assert stat_data_dir(root, "FILE") is False
    assert stat_data_dir(root, "LINK_TO_FILE") is False
    assert stat_data_dir(root, "ABSENT") is None


def test_list_data_dirs(tmp_path: Path) -> None:
    make_localfile(tmp_path)
    got = list_data_dirs(str(tmp_path))
    assert set(got) == {"DIR", "FILE", "LINK_TO_DIR", "LINK_TO_FILE", "DANGLING"}
    assert got["DIR"] is True and got["LINK_TO_DIR"] is True
    assert got["FILE"] is False and got["LINK_TO_FILE"] is False
    assert list_data_dirs(str(tmp_path / "no-root")) == {}


@pytest.mark.parametrize("name", ["DIR", "FILE", "LINK_TO_DIR", "LINK_TO_FILE", "DANGLING", "ABSENT"])
def test_single_entry_read_agrees_with_the_full_listing(tmp_path: Path, name: str) -> None:
    """The daemon refreshes one entry with stat_data_dir and the safety-net
    rescan uses list_data_dirs: for the same entry they must say the same,
    or the finding flips (message "is missing" vs "is not a directory")
    between an event and the next rescan."""
    make_localfile(tmp_path)
    assert stat_data_dir(str(tmp_path), name) == list_data_dirs(str(tmp_path)).get(name)


# ------------------------------------------------------------------- temps
def test_list_temps(tmp_path: Path) -> None:
    for d in ("snapshot/db", "cloudimg/temp", "oci/temp"):
        (tmp_path / d).mkdir(parents=True)
    wanted = ["snapshot/db/.tmp-0011aabbcc", "cloudimg/temp/.tmp-ff.qcow2"]
    ignored = [
        "snapshot/db/snapshots.json",
        "snapshot/db/snapshots.json.tmp",
        "oci/temp/.tmp-x",
        "cloudimg/temp/a",
    ]
    for relpath in wanted + ignored:
        (tmp_path / relpath).write_bytes(b"x")
    os.utime(tmp_path / wanted[0], (1000.5, 1000.5))
    (tmp_path / "snapshot/db/.tmp-dir").mkdir()
    (tmp_path / "cloudimg/temp/.tmp-link").symlink_to(tmp_path / wanted[1])
    got = list_temps(str(tmp_path))
    assert set(got) == set(wanted)
    assert got[wanted[0]] == pytest.approx(1000.5)
    for relpath in wanted:
        assert got[relpath] == stat_temp(str(tmp_path), relpath) == os.lstat(tmp_path / relpath).st_mtime
    assert stat_temp(str(tmp_path), "snapshot/db/.tmp-gone") is None


# ---------------------------------------------------------------- the DBs
def test_read_db_bytes(tmp_path: Path) -> None:
    assert read_db_bytes(str(tmp_path / "absent.json")) is None
    (tmp_path / "db.json").write_bytes(b"{}")
    assert read_db_bytes(str(tmp_path / "db.json")) == b"{}"
    with pytest.raises(DBError) as err:
        read_db_bytes(str(tmp_path))
    assert err.value.path == str(tmp_path)


def test_read_snapshot_db(sim: ModuleType, root: Path) -> None:
    paths = Paths(str(root))
    sim.init(str(root))
    assert read_snapshot_db(paths) is None  # no DB file yet
    sid = sim.create(str(root), name="web")
    db = read_snapshot_db(paths)
    assert isinstance(db, SnapshotDB)
    assert set(db.snapshots) == {sid} and db.names == {"web": sid}
    sim.inject(str(root), "corrupt-db")
    err = read_snapshot_db(paths)
    assert isinstance(err, DBError) and err.path == str(root / "snapshot/db/snapshots.json")


def test_read_ref_db(sim: ModuleType, root: Path) -> None:
    hex_ = sim.pull_image(str(root))
    assert read_ref_db(str(root), "cloudimg/db/images.json") == frozenset({hex_})
    assert read_ref_db(str(root), "firecracker/db/vms.json") is None
    (root / "cloudhypervisor/db/vms.json").write_text("{")
    err = read_ref_db(str(root), "cloudhypervisor/db/vms.json")
    assert isinstance(err, DBError) and str(root / "cloudhypervisor/db/vms.json") in str(err)
    (root / "firecracker/db").mkdir(parents=True)
    (root / "firecracker/db/vms.json").mkdir()
    assert isinstance(read_ref_db(str(root), "firecracker/db/vms.json"), DBError)


def test_ref_dbs_are_the_contracts() -> None:
    assert set(REF_DBS) == {
        "cloudimg/db/images.json",
        "oci/db/images.json",
        "cloudhypervisor/db/vms.json",
        "firecracker/db/vms.json",
    }


# ------------------------------------------------------------------- scan
def test_scan_of_a_sim_tree(sim: ModuleType, root: Path) -> None:
    pinned = sim.pull_image(str(root))
    loose = sim.pull_image(str(root))
    sim.rmi(str(root), loose)
    sid = sim.create(str(root), blobs=[pinned])
    orphan = sim.inject(str(root), "orphan-dir")["subject"]
    vm_hex = sim.new_hex()
    (root / "cloudhypervisor/db/vms.json").write_text(
        json.dumps({"vms": {"v": {"image_blob_ids": {vm_hex: {}}}}})
    )
    listing = scan(Paths(str(root)))
    assert listing.data_dirs == {sid: True, orphan: True}
    assert set(listing.blobs) == {f"cloudimg/blobs/{pinned}.qcow2", f"cloudimg/blobs/{loose}.qcow2"}
    assert listing.ref_dbs == {
        "cloudimg/db/images.json": frozenset({pinned}),
        "cloudhypervisor/db/vms.json": frozenset({vm_hex}),
    }
    db = listing.snapshot_db
    assert isinstance(db, SnapshotDB) and set(db.snapshots) == {sid}
    assert listing.temps == {}


def test_root_aliases(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert root_aliases(str(real), ()) == ()
    assert root_aliases(str(link), ()) == (str(real),)
    # cocoon may live at the symlinked spelling while cocoond is given the real one
    assert root_aliases(str(real), (str(link), str(tmp_path / "elsewhere"), "")) == (str(link),)
