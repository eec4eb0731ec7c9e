"""The root's judgement (cocoond/core/rootview.py) and one look at it
(cocoond/rootlook.py): what is a cocoon root, what is not, and why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cocoond.core.rootview import DB_DIRS, RootLook, RootMemo, judge
from cocoond.daemon.rootwatch import RootWatch, same_root
from cocoond.rootlook import look

MEMO = RootMemo("/data01/cocoon", dev=2049, ino=131073, snapshots=2417)


@pytest.mark.parametrize("db_dir", DB_DIRS)
def test_any_one_db_dir_makes_a_cocoon_root(tmp_path: Path, db_dir: str) -> None:
    # Each backend makes its own DB dir when it starts (EnsureDirs): one is enough.
    (tmp_path / db_dir).mkdir(parents=True)
    seen = look(str(tmp_path))
    assert seen.kind == "dir" and seen.db_dirs == 1
    assert judge(seen, None) is None and judge(seen, MEMO) is None


def test_what_is_not_a_cocoon_root_and_why(tmp_path: Path) -> None:
    missing = look(str(tmp_path / "nope"))
    assert missing.kind == "missing"
    assert "does not exist" in (judge(missing, None) or "")
    assert "last saw 2417 snapshots" in (judge(missing, MEMO) or "")
    (tmp_path / "file").write_text("")
    assert (
        judge(look(str(tmp_path / "file")), None) == "it is not a directory: is root_dir (or --root) right?"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    cause = judge(look(str(empty)), None) or ""
    assert cause.startswith("it is empty") and "mistyped" in cause
    (empty / "lost+found").mkdir()
    assert "none of cocoon's DB dirs" in (judge(look(str(empty)), None) or "")


def test_an_unmounted_mount_point_is_told_by_its_device() -> None:
    # The root now on its parent's device, where the memo saw another one.
    now = RootLook("/data01/cocoon", "dir", dev=64, ino=5, realpath="/data01/cocoon", parent_dev=64)
    cause = judge(now, MEMO) or ""
    assert "a directory of its parent's filesystem" in cause and "unmounted" in cause, cause
    assert "on device 2049" in cause


def test_unreadable_root(tmp_path: Path) -> None:
    seen = RootLook(str(tmp_path), "unreadable", error="Permission denied")
    assert judge(seen, None) == "cocoond cannot read it (Permission denied): check its mode and owner"


def test_memo_round_trip_and_bad_input() -> None:
    assert RootMemo.from_json(MEMO.to_json()) == MEMO
    bad: list[object] = [
        None,
        [],
        {"realpath": 1},
        {**MEMO.to_json(), "dev": True},
        {**MEMO.to_json(), "ino": "1"},
    ]
    for doc in bad:
        assert RootMemo.from_json(doc) is None


def test_same_root_by_any_name(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "snapshot" / "db").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(target)
    other = tmp_path / "other"
    other.mkdir()
    assert same_root(str(link), str(target)) and same_root(str(target), str(link) + "/")
    assert same_root(str(tmp_path / "x" / ".." / "target"), str(target))
    assert not same_root(str(other), str(target))
    # Unmounted now: the saved memo still names it.
    gone = tmp_path / "gone"
    memo = RootMemo(str(target), 1, 2, 3).to_json()
    assert same_root(str(gone), str(target), memo)
    assert not same_root(str(gone), str(target))


def test_rootwatch_sees_a_swap_and_keeps_its_memo(tmp_path: Path) -> None:
    root = tmp_path / "cocoon"
    (root / "snapshot" / "db").mkdir(parents=True)
    watch = RootWatch(str(root))
    watch.look()
    assert watch.cause is None and watch.moved() is None
    assert watch.seen(7) is True and watch.seen(8) is False  # a count alone is not worth a write
    os.rename(root, tmp_path / "away")
    (root / "snapshot" / "db").mkdir(parents=True)
    before, now = watch.moved() or (None, None)
    assert before is not None and now is not None and before[:2] != now[:2]
    os.rename(root, tmp_path / "second")
    watch.look()
    assert watch.cause is not None and "last saw 8 snapshots" in watch.cause
