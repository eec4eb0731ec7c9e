"""What an inotify path means to the index, and how watcher trouble becomes a
rescan (watchdog reports a kernel queue overflow only through logging)."""

from __future__ import annotations

import logging
import os
import queue
from pathlib import Path
from typing import Any

import pytest

from cocoond.daemon.watch import WATCH_RETRY_MAX, Change, Watcher, classify

ROOT = "/data01/cocoon"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{ROOT}/snapshot/db/snapshots.json", Change("db", "snapshot/db/snapshots.json")),
        (f"{ROOT}/snapshot/db/.tmp-abc", Change("temp", "snapshot/db/.tmp-abc")),
        (f"{ROOT}/snapshot/db/snapshots.lock", None),
        # The seed writer's fixed temp name: a leftover when it dies before the rename.
        (f"{ROOT}/snapshot/db/snapshots.json.tmp", Change("temp", "snapshot/db/snapshots.json.tmp")),
        (f"{ROOT}/snapshot/localfile/ABC", Change("data_dir", "ABC")),
        (f"{ROOT}/snapshot/localfile/ABC/memory-range-0", None),  # inside a data dir: not watched
        (f"{ROOT}/cloudimg/blobs/ab.qcow2", Change("blob", "cloudimg/blobs/ab.qcow2")),
        (f"{ROOT}/oci/blobs/ab.erofs", Change("blob", "oci/blobs/ab.erofs")),
        (f"{ROOT}/cloudimg/temp/.tmp-ab.qcow2", Change("temp", "cloudimg/temp/.tmp-ab.qcow2")),
        # gc removes any old entry of cloudimg/temp but the convert lock.
        (f"{ROOT}/cloudimg/temp/other", Change("temp", "cloudimg/temp/other")),
        (f"{ROOT}/cloudimg/temp/pull-123.img", Change("temp", "cloudimg/temp/pull-123.img")),
        (f"{ROOT}/cloudimg/temp/.tmp-ab.qcow2.lock", None),
        (f"{ROOT}/oci/temp/pull-123", Change("temp", "oci/temp/pull-123")),
        (f"{ROOT}/oci/db/images.json", Change("ref_db", "oci/db/images.json")),
        (f"{ROOT}/oci/db/.tmp-77", Change("temp", "oci/db/.tmp-77")),
        (f"{ROOT}/firecracker/db/.tmp-77", Change("temp", "firecracker/db/.tmp-77")),
        (f"{ROOT}/oci/boot/ab", Change("boot", "ab")),
        (f"{ROOT}/oci/boot/ab/vmlinuz", None),
        (f"{ROOT}/cloudimg/db/images.json", Change("ref_db", "cloudimg/db/images.json")),
        (f"{ROOT}/cloudimg/db/images.lock", None),
        (f"{ROOT}/firecracker/db/vms.json", Change("ref_db", "firecracker/db/vms.json")),
        (f"{ROOT}/cloudhypervisor/db/vms.json", Change("ref_db", "cloudhypervisor/db/vms.json")),
        (ROOT, Change("structure", ".")),
        (f"{ROOT}/snapshot", Change("structure", "snapshot")),
        (f"{ROOT}/snapshot/localfile", Change("structure", "snapshot/localfile")),
        (f"{ROOT}/firmware", None),
        ("/data01", Change("structure", "..")),  # an ancestor, while the root does not exist
        ("/data01/other", None),
    ],
)
def test_classify(path: str, expected: Change | None) -> None:
    assert classify(ROOT, path) == expected


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Inotify queue overflowed; filesystem events were lost", "overflow"),
        ("Unable to rebuild recursive inotify watches below '/x'", "watch_error"),
    ],
)
def test_watcher_trouble_asks_for_a_rescan(tmp_path: Path, message: str, reason: str) -> None:
    out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    watcher = Watcher(str(tmp_path), out)
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning(message)
        assert out.get(timeout=1) == ("rescan", reason)
        logging.getLogger("watchdog.observers.inotify_c").info("routine")
        assert out.empty()
    finally:
        watcher.close()
    logging.getLogger("watchdog.observers.inotify_c").warning(message)
    assert out.empty()  # closed: no longer listening


def test_arm_watches_existing_dirs_or_the_nearest_ancestor(tmp_path: Path) -> None:
    out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    root = tmp_path / "a" / "cocoon"
    watcher = Watcher(str(root), out)
    try:
        assert watcher.arm() == [str(tmp_path)]  # nothing of the root exists yet
        (root / "snapshot" / "localfile").mkdir(parents=True)
        watched = watcher.arm()
        assert str(root) in watched and str(root / "snapshot" / "localfile") in watched
        assert str(root / "cloudimg" / "blobs") not in watched
    finally:
        watcher.close()


# ------------------------------------------------------ attribute changes
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (ROOT, Change("rearm", ".")),
        (f"{ROOT}/snapshot", Change("rearm", "snapshot")),
        (f"{ROOT}/snapshot/localfile", Change("rearm", "snapshot/localfile")),
        (f"{ROOT}/cloudimg/blobs", Change("rearm", "cloudimg/blobs")),
        (f"{ROOT}/snapshot/db", Change("rearm", "snapshot/db")),
        ("/data01", Change("rearm", "..")),  # on the way to a root that is not there yet
        (f"{ROOT}/snapshot/localfile/ABC", Change("data_dir", "ABC")),  # re-inspected, no re-arm
        (f"{ROOT}/firmware", None),
    ],
)
def test_an_attribute_change_of_a_watched_dir_rearms(path: str, expected: Change | None) -> None:
    assert classify(ROOT, path, attrib=True) == expected


def drain(out: queue.SimpleQueue[tuple[str, Any]], until: tuple[str, Any]) -> list[tuple[str, Any]]:
    """Items up to and including `until` (inotify delivers in order)."""
    seen = []
    while True:
        item = out.get(timeout=10)
        seen.append(item)
        if item == until:
            return seen


def test_a_chmod_of_a_watched_dir_arrives_as_attrib(tmp_path: Path) -> None:
    """What watchdog delivers for a chmod: a DirAttribEvent for the dir from
    its own watch and its parent's; for a data dir, from localfile's."""
    localfile = tmp_path / "snapshot" / "localfile"
    (localfile / "ABC").mkdir(parents=True)
    out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    watcher = Watcher(str(tmp_path), out)
    try:
        watcher.arm()
        os.chmod(localfile, 0o700)
        os.chmod(localfile / "ABC", 0o700)
        (localfile / "marker").mkdir()
        seen = drain(out, ("fs", str(localfile / "marker")))
    finally:
        watcher.close()
    assert ("attrib", str(localfile)) in seen
    assert ("attrib", str(localfile / "ABC")) in seen
    assert ("fs", str(localfile)) not in seen  # a chmod is not mistaken for anything else


# ---------------------------------------------------- failed watches
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refuse(monkeypatch: pytest.MonkeyPatch, refused: set[str]) -> None:
    """Opening these dirs fails as for a user without read permission."""
    real_open = os.open

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) in refused and os.path.lexists(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


def test_a_watch_the_kernel_refuses_is_reported_once_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    localfile = tmp_path / "snapshot" / "localfile"
    localfile.mkdir(parents=True)
    refused = {str(localfile)}
    refuse(monkeypatch, refused)
    clock = Clock()
    out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    watcher = Watcher(str(tmp_path), out, clock)
    try:
        watched = watcher.arm()
        assert str(localfile) not in watched and str(tmp_path / "snapshot") in watched
        assert watcher.news() == ({str(localfile): "Permission denied"}, [])
        assert out.empty()  # no rescan request: the daemon retries on a timer instead
        # Backing off: 1, 2, 4, ... up to WATCH_RETRY_MAX seconds apart; said only once.
        delays = []
        for _ in range(9):
            assert watcher.retry_at is not None
            delays.append(watcher.retry_at - clock.now)
            clock.now = watcher.retry_at
            assert watcher.retry() == []
            assert watcher.news() == ({}, [])
        assert delays[:4] == [1.0, 2.0, 4.0, 8.0] and max(delays) == WATCH_RETRY_MAX == delays[-1]
        refused.clear()  # the permission is fixed
        assert watcher.retry() == [str(localfile)]
        assert watcher.news() == ({}, [str(localfile)])
        assert watcher.retry_at is None and watcher.failed == {}
        # And the new watch works.
        (localfile / "NEW").mkdir()
        assert ("fs", str(localfile / "NEW")) in drain(out, ("fs", str(localfile / "NEW")))
    finally:
        watcher.close()


def test_a_dir_that_goes_away_while_refused_is_dropped_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = tmp_path / "cloudimg" / "blobs"
    blobs.mkdir(parents=True)
    refuse(monkeypatch, {str(blobs)})
    watcher = Watcher(str(tmp_path), queue.SimpleQueue(), Clock())
    try:
        watcher.arm()
        assert set(watcher.news()[0]) == {str(blobs)}
        blobs.rmdir()
        assert watcher.retry() == [] and watcher.failed == {} and watcher.retry_at is None
        assert watcher.news() == ({}, [])  # not "restored": it is gone
    finally:
        watcher.close()


def test_a_closed_parent_is_told_alone_and_a_child_that_stays_closed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = tmp_path / "snapshot"
    (snapshot / "db").mkdir(parents=True)
    (snapshot / "localfile").mkdir()
    refused = {str(snapshot), str(snapshot / "db"), str(snapshot / "localfile")}
    refuse(monkeypatch, refused)
    watcher = Watcher(str(tmp_path), queue.SimpleQueue(), Clock())
    try:
        watcher.arm()
        assert set(watcher.failed) == refused
        assert watcher.news() == ({str(snapshot): "Permission denied"}, [])
        refused.difference_update({str(snapshot), str(snapshot / "db")})  # localfile stays closed
        assert sorted(watcher.retry()) == [str(snapshot), str(snapshot / "db")]
        assert watcher.news() == ({str(snapshot / "localfile"): "Permission denied"}, [str(snapshot)])
    finally:
        watcher.close()
