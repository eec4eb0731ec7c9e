"""daemon/sizer.py: orphan sizes measured on a worker thread and posted back
to the loop's queue; the bookkeeping that holds a finding.opened for its
size, at most SIZE_WAIT_SECONDS, and keeps sizes for reminders."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

from cocoond.core import findings as fk
from cocoond.core.findings import Finding
from cocoond.daemon.sizer import SIZE_WAIT_SECONDS, Sizer
from cocoond.sizes import DiskUsage


def orphan(path: Path) -> Finding:
    return Finding(fk.ORPHAN_DATA_DIR, path.name, "m", snapshot_id=path.name, path=str(path))


def dirs(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "mem").write_bytes(b"x" * 8192)
        out.append(tmp_path / name)
    return out


def test_a_held_finding_opens_with_the_size_the_worker_measured(tmp_path: Path) -> None:
    out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    sizer = Sizer(out)
    try:
        (a,) = dirs(tmp_path, "A")
        finding = orphan(a)
        sizer.hold(finding, 0.0, (str(a),))
        assert sizer.next_deadline() == SIZE_WAIT_SECONDS
        kind, answer = out.get(timeout=30)
        assert kind == "size" and answer[:2] == (finding.key, (str(a),))
        opened = sizer.arrived(*answer)
        assert opened is not None and opened.bytes == answer[2].bytes >= 8192 and not opened.bytes_partial
        assert sizer.next_deadline() is None and sizer.drain() == []
        # Kept for reminders while its dirs are the same.
        assert sizer.with_size(finding, (str(a),)).bytes == opened.bytes
        assert sizer.with_size(finding, (str(a), "/other")).bytes is None
        sizer.forget(finding.key)
        assert sizer.with_size(finding, (str(a),)).bytes is None
    finally:
        sizer.close()


def test_a_burst_is_one_job_over_all_its_dirs(tmp_path: Path) -> None:
    out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    sizer = Sizer(out)
    try:
        paths = tuple(str(p) for p in dirs(tmp_path, "A", "B", "C"))
        summary = Finding(fk.ORPHAN_DATA_DIR, "snapshot/localfile", "m", path=str(tmp_path))
        sizer.hold(summary, 0.0, paths)
        _kind, answer = out.get(timeout=30)
        opened = sizer.arrived(*answer)
        assert opened is not None and (opened.bytes or 0) >= 3 * 8192
    finally:
        sizer.close()


def test_a_late_or_stray_answer_opens_nothing(tmp_path: Path) -> None:
    sizer = Sizer(queue.SimpleQueue())
    finding = orphan(tmp_path / "A")
    sizer.hold(finding, 0.0, (str(tmp_path / "A"),))
    # An answer for other dirs under the same key (another root) is not its size.
    assert sizer.arrived(finding.key, ("/elsewhere/A",), DiskUsage(1)) is None
    assert sizer.expired(SIZE_WAIT_SECONDS - 0.1) == []
    assert sizer.expired(SIZE_WAIT_SECONDS) == [finding]  # opened unsized by the loop
    assert sizer.arrived(finding.key, (str(tmp_path / "A"),), DiskUsage(4096)) is None
    assert sizer.with_size(finding, (str(tmp_path / "A"),)).bytes == 4096  # for its reminders
    sizer.hold(finding, 0.0, (str(tmp_path / "A"),))
    assert sizer.release(finding.key) == finding and sizer.release(finding.key) is None
    sizer.close()
    sizer.hold(finding, 0.0, (str(tmp_path / "A"),))  # after close: held, never walked
    assert sizer.drain() == [finding]
