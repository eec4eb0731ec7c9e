"""`cocoond run` end to end: findings open and resolve through real inotify
events in a real subprocess, on trees the simulator (cocoond.sim) breaks and repairs the way
cocoon (or a person) would."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import CONTRACT_SEVERITY
from tests.daemon_harness import (
    DaemonProcess,
    Daemons,
    LogLine,
    above_info,
    daemons_for,
    lifecycle_errors,
    opened,
    resolved,
)

DB_SUBJECT = "snapshot/db/snapshots.json"


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with daemons_for(tmp_path) as pool:
        yield pool


def started(daemons: Daemons, root: Path, **overrides: Any) -> DaemonProcess:
    daemon = daemons.start(root, overrides=overrides)
    daemon.wait_ready()
    return daemon


# ------------------------------------------------------------------ repairs
Repair = Callable[[ModuleType, str, dict[str, Any], dict[str, Any]], None]


def finish_create(sim: ModuleType, root: str, sid: str) -> None:
    """The rest of localfile.Create: data written, then pending dropped under the lock."""
    sim.write_snapshot_files(sim.data_dir(root, sid))
    with sim.flock(sim.snapshot_lock(root)):
        idx = sim.load_snapshots(root)
        idx["snapshots"][sid].pop("pending", None)
        sim.atomic_write_json(sim.snapshot_db(root), idx)


def drop_name(sim: ModuleType, root: str, name: str) -> None:
    with sim.flock(sim.snapshot_lock(root)):
        idx = sim.load_snapshots(root)
        del idx["names"][name]
        sim.atomic_write_json(sim.snapshot_db(root), idx)


def restore_blob(sim: ModuleType, root: str, hex_: str) -> None:
    with open(sim.blob_path(root, hex_), "wb") as f:
        f.write(b"QFI\xfb" + b"\0" * 4092)


def restore_db(sim: ModuleType, root: str, good: dict[str, Any]) -> None:
    with sim.flock(sim.snapshot_lock(root)):
        sim.atomic_write_json(sim.snapshot_db(root), good)


#: What a fault breaks besides its own finding: the image and the VM of a
#: blob removed cannot use it either.
BESIDE = {"missing-blob": ("image_unusable", "vm_base_missing")}

REPAIRS: dict[str, Repair] = {
    "orphan-dir": lambda sim, root, f, db: shutil.rmtree(sim.data_dir(root, f["subject"])),
    "missing-dir": lambda sim, root, f, db: sim.write_snapshot_files(sim.data_dir(root, f["subject"])),
    "missing-blob": lambda sim, root, f, db: restore_blob(sim, root, f["subject"]),
    "dangling-name": lambda sim, root, f, db: drop_name(sim, root, f["subject"]),
    "stale-pending": lambda sim, root, f, db: finish_create(sim, root, f["subject"]),
    "fresh-pending": lambda sim, root, f, db: finish_create(sim, root, f["subject"]),
    "unreferenced-blob": lambda sim, root, f, db: sim.gc(root),
    "corrupt-db": lambda sim, root, f, db: restore_db(sim, root, db),
}


@pytest.mark.parametrize("fault", sorted(REPAIRS))
def test_fault_opens_and_repair_resolves(daemons: Daemons, sim: ModuleType, root: Path, fault: str) -> None:
    """Each fault opens its finding (kind, subject, contract severity as the
    line's level) once it has settled, and the repair resolves it."""
    sim.init(str(root))
    sim.create(str(root), name="healthy")
    daemon = started(daemons, root)
    daemon.wait_event("index.loaded", snapshots=1)
    good_db = sim.load_snapshots(str(root))

    expected = sim.inject(str(root), fault)
    kind, subject = expected["kind"], expected["subject"]
    severity = CONTRACT_SEVERITY[kind]
    line = daemon.wait_for(opened(kind, subject), what=f"{kind} {subject} opened")
    assert line["level"] == severity, line
    assert line["severity"] == severity, line
    assert isinstance(line.get("message"), str) and line["message"], line
    if "snapshot_id" in expected:
        assert line["snapshot_id"] == expected["snapshot_id"], line
    if kind == "stale_pending":
        assert line["age_seconds"] > 3600, line

    REPAIRS[fault](sim, str(root), expected, good_db)
    done = daemon.wait_for(resolved(kind, subject), since=line.index, what=f"{kind} {subject} resolved")
    assert done["level"] == "info", done
    assert isinstance(done["open_seconds"], int | float), done
    assert 0 <= done["open_seconds"] <= done.arrived - line.arrived + 0.5, (line, done)

    # Only the injected condition was reported: the steps cocoon's writers
    # pass through on the way (pending records, temp files) opened nothing.
    others = [
        x
        for x in daemon.events("finding.opened")
        if (x["kind"], x["subject"]) != (kind, subject)
        and above_info(x)
        # a DB gc loads that Go cannot decode also stops gc: gc_blocked
        and not (kind == "db_unreadable" and x["kind"] == "gc_blocked")
        and x["kind"] not in BESIDE.get(fault, ())
    ]
    assert others == [], others
    assert daemon.stop()[0] == 0
    assert lifecycle_errors(daemon.lines) == []


def test_corrupt_db_keeps_last_good_index_until_repaired(
    daemons: Daemons, sim: ModuleType, root: Path
) -> None:
    """While snapshots.json is unreadable only db_unreadable is open (no flood
    of orphan dirs from an index that forgot every record); the rewrite
    resolves it and reloads the index."""
    sim.init(str(root))
    for i in range(5):
        sim.create(str(root), name=f"keep-{i}")
    daemon = started(daemons, root, alerts={"heartbeat_seconds": 0.3, "reminder_seconds": 0})
    daemon.wait_event("index.loaded", snapshots=5)
    good_db = sim.load_snapshots(str(root))

    sim.inject(str(root), "corrupt-db")
    bad = daemon.wait_for(opened("db_unreadable", DB_SUBJECT))
    assert bad["level"] == "error", bad
    assert bad["severity"] == "error", bad

    # The data dirs of the last good index must not turn orphan (nor its
    # records missing). Watch well past the settle window: up to a
    # heartbeat >= 1 s after the opening.
    beat = daemon.wait_for(
        lambda x: x.matches("daemon.heartbeat") and x.arrived > bad.arrived + 1.0,
        since=bad.index,
        what="a heartbeat 1 s after db_unreadable opened",
    )
    assert beat["open"] == {"info": 0, "warning": 1, "error": 1}, beat  # db_unreadable, gc_blocked
    assert beat["snapshots"] == 5, beat
    floods = [x for x in daemon.events("finding.opened") if x["kind"] not in ("db_unreadable", "gc_blocked")]
    assert floods == [], floods

    repair_mark = daemon.mark()
    restore_db(sim, str(root), good_db)
    done = daemon.wait_for(resolved("db_unreadable", DB_SUBJECT), since=repair_mark)
    assert done["open_seconds"] >= 1.0, done
    daemon.wait_event("index.loaded", since=repair_mark, snapshots=5)
    beat = daemon.wait_for(
        lambda x: x.matches("daemon.heartbeat") and x.arrived > done.arrived + 1.0,
        since=done.index,
        what="a heartbeat 1 s after the repair",
    )
    assert beat["open"] == {"info": 0, "warning": 0, "error": 0}, beat
    assert [
        x for x in daemon.events("finding.opened") if x["kind"] not in ("db_unreadable", "gc_blocked")
    ] == []
    assert lifecycle_errors(daemon.lines) == []


def test_pending_goes_stale_by_time_alone(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    """A create that crashed after extracting: `pending` (info) opens, and
    once the record is older than pending_stale_seconds, `stale_pending`
    (warning) opens and `pending` resolves, with no file event in between."""
    sim.init(str(root))
    daemon = started(daemons, root, thresholds={"pending_stale_seconds": 2})
    daemon.wait_event("index.loaded")
    sid = sim.create(str(root), crash_at="extract")

    pending = daemon.wait_for(opened("pending", sid))
    assert pending["level"] == "info", pending
    assert pending["age_seconds"] < 2, pending
    stale = daemon.wait_for(opened("stale_pending", sid), since=pending.index)
    assert stale["level"] == "warning", stale
    assert stale["severity"] == "warning", stale
    assert stale["age_seconds"] >= 2, stale
    gone = daemon.wait_for(resolved("pending", sid), since=pending.index)
    assert gone["open_seconds"] > 0, gone
    # Time alone did it: nothing under the root changed after the create.
    assert daemon.events("index.loaded", since=pending.index) == []
    assert lifecycle_errors(daemon.lines) == []


def test_reminders_and_heartbeats(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    daemon = started(daemons, root, alerts={"heartbeat_seconds": 0.5, "reminder_seconds": 1})
    daemon.wait_event("index.loaded")
    fault = sim.inject(str(root), "missing-dir")
    sid = fault["subject"]
    first = daemon.wait_for(opened("missing_data_dir", sid))
    assert first["level"] == "error", first

    def reminder(line: LogLine) -> bool:
        return line.matches("finding.reminder", kind="missing_data_dir", subject=sid)

    reminders = daemon.wait_count(reminder, 2, since=first.index, what="reminders")
    for line in reminders:
        assert line["level"] == "error", line
        assert line["severity"] == "error", line
        assert line["snapshot_id"] == sid, line
        assert isinstance(line["message"], str), line
    seconds = [line["open_seconds"] for line in reminders]
    assert seconds == sorted(seconds) and seconds[0] < seconds[1], seconds
    assert seconds[0] >= 0.9, seconds

    beat = daemon.wait_for(
        lambda x: x.matches("daemon.heartbeat"), since=first.index, what="heartbeat after the opening"
    )
    assert beat["level"] == "info", beat
    assert beat["open"] == {"info": 0, "warning": 0, "error": 1}, beat
    assert beat["snapshots"] == 1, beat
    assert beat["blobs"] == 0, beat
    beats = daemon.events("daemon.heartbeat")
    assert len(beats) >= 2, beats


def test_heartbeat_counts_blobs_and_clears(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    sim.init(str(root))
    hex_ = sim.pull_image(str(root))
    sim.create(str(root), blobs=[hex_])
    daemon = started(daemons, root, alerts={"heartbeat_seconds": 0.3})
    beat = daemon.wait_event("daemon.heartbeat")
    assert (beat["snapshots"], beat["blobs"]) == (1, 1), beat
    assert beat["open"] == {"info": 0, "warning": 0, "error": 0}, beat

    os.remove(sim.blob_path(str(root), hex_))
    missing = daemon.wait_for(opened("missing_blob", hex_))
    image = daemon.wait_for(opened("image_unusable"), since=beat.index)  # the image's blob
    vm = daemon.wait_for(opened("vm_base_missing"), since=beat.index)  # the VM's base image
    beat = daemon.wait_event("daemon.heartbeat", since=max(missing.index, image.index, vm.index))
    assert beat["open"] == {"info": 0, "warning": 0, "error": 3}, beat
    assert beat["blobs"] == 0, beat
    restore_blob(sim, str(root), hex_)
    done = daemon.wait_for(resolved("missing_blob", hex_), since=missing.index)
    beat = daemon.wait_event("daemon.heartbeat", since=done.index)
    assert beat["open"] == {"info": 0, "warning": 0, "error": 0}, beat
    assert beat["blobs"] == 1, beat


def test_finding_lines_are_json_with_contract_fields(daemons: Daemons, sim: ModuleType, root: Path) -> None:
    """finding.opened carries the finding's fields; sizes of orphan dirs are measured."""
    sim.init(str(root))
    daemon = started(daemons, root)
    fault = sim.inject(str(root), "orphan-dir")
    line = daemon.wait_for(opened("orphan_data_dir", fault["subject"]))
    assert line["snapshot_id"] == fault["subject"], line
    assert line["path"] == os.path.join(str(root), "snapshot", "localfile", fault["subject"]), line
    assert isinstance(line["bytes"], int) and line["bytes"] > 0, line
    json.dumps(line)  # round-trips
