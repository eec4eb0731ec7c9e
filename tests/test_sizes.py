"""cocoond.sizes: what a tree takes on disk (allocated blocks, each inode
once, links not followed), and the bounds that keep one walk from running
for ever: a cut walk says so, and its bytes are a lower bound."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from types import ModuleType

import pytest

from cocoond import sizes
from cocoond.core import findings as fk
from cocoond.core.findings import Finding
from cocoond.sizes import DiskUsage, disk_usage, sized, total_usage, with_sizes
from cocoond.storage.units import human_size

MB = 1 << 20


def blocks(path: Path) -> int:
    return os.lstat(path).st_blocks * 512


def wide_tree(path: Path, files: int) -> int:
    """A dir with `files` small files; returns their allocated bytes with the dir's."""
    path.mkdir()
    for i in range(files):
        (path / f"f{i}").write_bytes(b"x")
    return blocks(path) + sum(blocks(path / f"f{i}") for i in range(files))


# ------------------------------------------------------------------- sizes
def test_disk_usage_counts_sparse_files_by_allocated_blocks(tmp_path: Path) -> None:
    d = tmp_path / "snap"
    d.mkdir()
    sparse = d / "memory-range-0"
    with open(sparse, "wb") as f:
        f.truncate(100 * MB)
    assert sparse.stat().st_size == 100 * MB
    used = disk_usage(str(d))
    assert used == DiskUsage(blocks(d) + blocks(sparse), complete=True)
    assert used.bytes < MB


def test_disk_usage_counts_written_data(tmp_path: Path) -> None:
    d = tmp_path / "snap"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "disk").write_bytes(os.urandom(MB))
    used = disk_usage(str(d))
    assert used == DiskUsage(blocks(d) + blocks(d / "sub") + blocks(d / "sub" / "disk"))
    assert used.bytes >= MB


def test_disk_usage_counts_hardlinks_once(tmp_path: Path) -> None:
    d = tmp_path / "snap"
    d.mkdir()
    (d / "a").write_bytes(os.urandom(MB))
    os.link(d / "a", d / "b")
    (d / "c").mkdir()
    os.link(d / "a", d / "c" / "a-again")
    assert disk_usage(str(d)) == DiskUsage(blocks(d) + blocks(d / "c") + blocks(d / "a"))


def test_disk_usage_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(2 * MB))
    d = tmp_path / "snap"
    d.mkdir()
    (d / "to-file").symlink_to(outside / "big")
    (d / "to-dir").symlink_to(outside)
    assert disk_usage(str(d)) == DiskUsage(blocks(d) + blocks(d / "to-file") + blocks(d / "to-dir"))
    assert disk_usage(str(d)).bytes < MB


def test_disk_usage_of_a_vanished_path_is_zero(tmp_path: Path) -> None:
    assert disk_usage(str(tmp_path / "gone")) == DiskUsage(0, complete=True)


# ------------------------------------------------------------------ bounds
def test_a_walk_stops_after_max_entries_with_a_lower_bound(tmp_path: Path) -> None:
    total = wide_tree(tmp_path / "orphan", 50)
    assert disk_usage(str(tmp_path / "orphan"), max_entries=51) == DiskUsage(total, complete=True)
    cut = disk_usage(str(tmp_path / "orphan"), max_entries=10)
    assert cut.complete is False
    assert 0 < cut.bytes < total


def test_a_walk_stops_at_its_time_bound(tmp_path: Path) -> None:
    total = wide_tree(tmp_path / "orphan", 20)
    ticks = itertools.count()
    cut = disk_usage(str(tmp_path / "orphan"), max_seconds=5, clock=lambda: float(next(ticks)))
    assert cut.complete is False and 0 < cut.bytes < total


def test_a_walk_stops_when_cancelled(tmp_path: Path) -> None:
    wide_tree(tmp_path / "orphan", 20)
    assert disk_usage(str(tmp_path / "orphan"), cancelled=lambda: True) == DiskUsage(0, complete=False)


def test_a_subdir_it_cannot_list_makes_the_size_a_lower_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orphan" / "closed").mkdir(parents=True)
    (tmp_path / "orphan" / "closed" / "f").write_bytes(b"x" * 8192)
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if path.endswith("closed"):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    used = disk_usage(str(tmp_path / "orphan"))
    assert used == DiskUsage(blocks(tmp_path / "orphan") + blocks(tmp_path / "orphan" / "closed"), False)


# ---------------------------------------------------------------- findings
def orphan(path: Path) -> Finding:
    return Finding(fk.ORPHAN_DATA_DIR, path.name, "m", snapshot_id=path.name, path=str(path))


def test_a_cut_size_is_flagged_on_the_finding(tmp_path: Path) -> None:
    f = sized(orphan(tmp_path / "x"), DiskUsage(4096, complete=False))
    assert f.to_dict()["bytes"] == 4096 and f.to_dict()["bytes_partial"] is True
    whole = sized(orphan(tmp_path / "x"), DiskUsage(4096))
    assert whole.to_dict()["bytes"] == 4096 and "bytes_partial" not in whole.to_dict()


def test_check_sizes_share_one_time_budget(tmp_path: Path) -> None:
    """The first walk is cut when the budget runs out; an orphan reached
    after that gets no `bytes` at all (unknown, not a lower bound)."""
    first, second = tmp_path / "a", tmp_path / "b"
    total = wide_tree(first, 5)
    wide_tree(second, 5)
    other = Finding(fk.STALE_TEMP, "t", "m")
    ticks = itertools.count()  # every look at the clock takes a second
    got = with_sizes(
        [orphan(first), other, orphan(second)], budget_seconds=3, clock=lambda: float(next(ticks))
    )
    assert got[0].bytes_partial and 0 < (got[0].bytes or 0) < total
    assert got[1] is other
    assert got[2].bytes is None and not got[2].bytes_partial


def test_check_marks_a_cut_orphan_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sizes, "SIZE_MAX_ENTRIES", 3)
    total = wide_tree(tmp_path / "a", 10)
    (got,) = with_sizes([orphan(tmp_path / "a")])
    assert got.bytes_partial and 0 < (got.bytes or 0) < total


def test_check_reports_a_cut_orphan_size(
    sim: ModuleType, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_check import check, check_human, the, tree_blocks

    monkeypatch.setattr(sizes, "SIZE_MAX_ENTRIES", 2)
    got = sim.inject(str(root), "orphan-dir")
    rc, result = check(root, capsys)
    f = the(result, "orphan_data_dir", got["subject"])
    assert rc == 1 and f["bytes_partial"] is True and 0 < f["bytes"] < tree_blocks(f["path"])
    rc, out = check_human(root, capsys)
    assert f" >={human_size(f['bytes'])} " in out


def test_a_burst_total_is_all_walks_within_one_budget(tmp_path: Path) -> None:
    paths = []
    total = 0
    for name in "abc":
        total += wide_tree(tmp_path / name, 3)
        paths.append(str(tmp_path / name))
    assert total_usage(paths) == DiskUsage(total, complete=True)
    ticks = itertools.count()  # every look at the clock takes a second
    cut = total_usage(paths, budget_seconds=6, clock=lambda: float(next(ticks)))
    assert cut.complete is False and 0 < cut.bytes < total
