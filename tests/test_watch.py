"""What an inotify path means to the index, and how watcher trouble becomes a
rescan (watchdog reports a kernel queue overflow only through logging)."""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from typing import Any

import pytest

from cocoond.daemon.watch import Change, Watcher, classify

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
