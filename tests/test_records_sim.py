"""Every tree the simulator (cocoond.sim) produces (cocoon's own sequences, crashes between
their steps, gc, the registry's unlocked indented rewrite, a large populated
tree) reads as what the file says and survives write -> read losslessly."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond import Paths, SnapshotDB
from tests.conftest import KNOWN_FIELDS, run_sim

_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|([+-])(\d\d):(\d\d))")


def expected_instant(text: str) -> datetime:
    """RFC 3339 -> datetime by hand (fraction cut to microseconds)."""
    m = _TIME.fullmatch(text)
    assert m, text
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    if m.group(8) == "Z":
        tz = UTC
    else:
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        tz = timezone(offset if m.group(9) == "+" else -offset)
    return datetime(y, mo, d, h, mi, s, micro, tzinfo=tz)


def assert_matches_file(paths: Paths) -> tuple[dict[str, Any], SnapshotDB]:
    raw = json.loads(paths.snapshot_db_file().read_bytes())
    db = paths.read_snapshot_db()
    snaps = raw.get("snapshots") or {}
    assert set(db.snapshots) == {sid for sid, rec in snaps.items() if rec is not None}
    assert db.null_ids == {sid for sid, rec in snaps.items() if rec is None}
    assert db.names == (raw.get("names") or {})
    for sid, rec in db.snapshots.items():
        j = snaps[sid]
        assert rec.id == j["id"]
        assert rec.name == j.get("name", "")
        assert rec.pending is bool(j.get("pending", False))
        assert rec.image_blob_ids == set(j.get("image_blob_ids") or {})
        assert rec.data_dir == j.get("data_dir", "")
        assert rec.description == j.get("description", "")
        assert rec.image == j.get("image", "")
        assert (rec.cpu, rec.memory, rec.storage, rec.nics) == tuple(
            j.get(k, 0) for k in ("cpu", "memory", "storage", "nics")
        )
        assert rec.created_at == expected_instant(j["created_at"])
        assert rec.extra == {k: v for k, v in j.items() if k not in KNOWN_FIELDS}
    return raw, db


def assert_lossless(paths: Paths) -> SnapshotDB:
    before, db = assert_matches_file(paths)
    paths.write_snapshot_db(db)
    after, db2 = assert_matches_file(paths)
    assert after == before
    for sid, rec in before["snapshots"].items():
        if rec is not None:
            assert list(after["snapshots"][sid]) == list(rec)
            assert after["snapshots"][sid]["created_at"] == rec["created_at"]
    assert not [n for n in os.listdir(paths.snapshot_db_dir()) if n.startswith(".tmp-")]
    # and what we wrote is what cocoon writes: compact, one trailing newline
    data = paths.snapshot_db_file().read_bytes()
    assert data.endswith(b"}\n")
    assert b"\n" not in data[:-1]
    return db2


Scenario = Callable[[Path, ModuleType], Callable[[SnapshotDB], None]]


def sc_create(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    hex_ = run_sim(root, "pull-image").strip()
    sid = run_sim(root, "create", "--name", "a", "--blob", hex_).strip()
    other = run_sim(root, "create").strip()

    def check(db: SnapshotDB) -> None:
        rec = db.snapshots[sid]
        assert (rec.name, rec.pending, rec.image_blob_ids) == ("a", False, {hex_})
        assert rec.extra["hypervisor"] == "cloud-hypervisor"
        assert rec.created_at.utcoffset() == timedelta(0)
        assert db.names == {"a": sid, "snap-" + other[:8].lower(): other}

    return check


def sc_create_crash_pending(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    sid = run_sim(root, "create", "--name", "p", "--crash-at", "pending").strip()

    def check(db: SnapshotDB) -> None:
        assert db.snapshots[sid].pending is True
        assert not Path(db.snapshots[sid].data_dir).exists()

    return check


def sc_create_crash_extract(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    sid = run_sim(root, "create", "--name", "e", "--crash-at", "extract").strip()

    def check(db: SnapshotDB) -> None:
        assert db.snapshots[sid].pending is True
        assert Path(db.snapshots[sid].data_dir, "config.json").is_file()

    return check


def sc_delete(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    gone = sim.create(str(root), name="gone")
    kept = sim.create(str(root), name="kept")
    assert run_sim(root, "delete", "gone").strip() == gone

    def check(db: SnapshotDB) -> None:
        assert set(db.snapshots) == {kept}
        assert db.names == {"kept": kept}

    return check


def sc_delete_crash_rmdir(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    sid = sim.create(str(root), name="half")
    run_sim(root, "delete", sid, "--crash-at", "rmdir")

    def check(db: SnapshotDB) -> None:
        assert db.names == {"half": sid}
        assert not Path(db.snapshots[sid].data_dir).exists()

    return check


def sc_gc(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    r = str(root)
    hex_ = sim.pull_image(r)
    keep = sim.create(r, name="keep", blobs=[hex_])
    old = sim.go_time(datetime.now(UTC) - timedelta(hours=25))
    stale = sim.create(r, name="stale", crash_at="extract", created_at=old)
    sim.inject(r, "orphan-dir")
    sim.inject(r, "unreferenced-blob")
    removed = json.loads(run_sim(root, "gc"))
    assert stale in removed["records"]

    def check(db: SnapshotDB) -> None:
        assert set(db.snapshots) == {keep}
        assert db.names == {"keep": keep}

    return check


def sc_epoch_import(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    first = sim.create(str(root), name="native")
    hex_ = sim.pull_image(str(root))
    pulled = run_sim(root, "epoch-import", "--name", "pulled", "--blob", hex_).strip()
    raw = Path(sim.snapshot_db(str(root))).read_bytes()
    assert b'\n  "snapshots": {\n' in raw  # indented, as the registry wrote it
    assert not Path(sim.snapshot_db(str(root)) + ".tmp").exists()

    def check(db: SnapshotDB) -> None:
        assert db.names == {"native": first, "pulled": pulled}
        assert db.snapshots[pulled].image_blob_ids == {hex_}
        assert db.snapshots[pulled].pending is False

    return check


def sc_populate(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    assert json.loads(run_sim(root, "populate", "--snapshots", "300", "--images", "7", "--seed", "3")) == {
        "snapshots": 300,
        "images": 7,
        "vms": 12,
    }

    def check(db: SnapshotDB) -> None:
        assert len(db.snapshots) == 300
        assert len(db.names) == 300
        assert all(db.snapshots[sid].name == name for name, sid in db.names.items())
        # 4 cloud images (one blob each) and 3 OCI images (a shared base layer and their own)
        assert len({h for rec in db.snapshots.values() for h in rec.image_blob_ids}) <= 4 + 1 + 3
        by_kind = {rec.extra["image_type"]: len(rec.image_blob_ids) for rec in db.snapshots.values()}
        assert by_kind == {"cloudimg": 1, "oci": 2}
        assert {rec.extra["hypervisor"] for rec in db.snapshots.values()} == {
            "cloud-hypervisor",
            "firecracker",
        }

    return check


def sc_faults(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    r = str(root)
    faults = {
        f: sim.inject(r, f)
        for f in (
            "dangling-name",
            "missing-blob",
            "stale-pending",
            "fresh-pending",
            "missing-dir",
            "orphan-dir",
        )
    }

    def check(db: SnapshotDB) -> None:
        assert faults["dangling-name"]["subject"] in db.names
        assert db.names[faults["dangling-name"]["subject"]] not in db.snapshots
        blob = faults["missing-blob"]
        assert blob["subject"] in db.snapshots[blob["snapshot_id"]].image_blob_ids
        assert db.snapshots[faults["stale-pending"]["subject"]].pending is True
        assert db.snapshots[faults["fresh-pending"]["subject"]].pending is True
        assert faults["missing-dir"]["subject"] in db.snapshots
        assert faults["orphan-dir"]["subject"] not in db.snapshots

    return check


def sc_churn(root: Path, sim: ModuleType) -> Callable[[SnapshotDB], None]:
    counts = json.loads(run_sim(root, "churn", "--seconds", "0.4", "--pause", "0", "--seed", "7"))
    assert counts.get("create", 0) >= 1

    def check(db: SnapshotDB) -> None:
        assert all(db.snapshots[sid].name == name for name, sid in db.names.items())

    return check


SCENARIOS: dict[str, Scenario] = {
    "create": sc_create,
    "create-crash-pending": sc_create_crash_pending,
    "create-crash-extract": sc_create_crash_extract,
    "delete": sc_delete,
    "delete-crash-rmdir": sc_delete_crash_rmdir,
    "gc": sc_gc,
    "epoch-import": sc_epoch_import,
    "populate-300": sc_populate,
    "faults": sc_faults,
    "churn": sc_churn,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_sim_tree_reads_as_the_file_says_and_round_trips(root: Path, sim: ModuleType, name: str) -> None:
    check = SCENARIOS[name](root, sim)
    paths = Paths(root)
    _, db = assert_matches_file(paths)
    check(db)
    db2 = assert_lossless(paths)
    check(db2)
    # cocoon goes on working on what we wrote
    after = sim.create(str(root), name="after-" + name)
    assert Paths(root).read_snapshot_db().names["after-" + name] == after
    run_sim(root, "delete", after)
    assert "after-" + name not in Paths(root).read_snapshot_db().names


def test_epoch_import_after_our_write_and_back(root: Path, sim: ModuleType) -> None:
    # Our compact write, then the registry's indented unlocked rewrite, then ours.
    sim.create(str(root), name="a")
    paths = Paths(root)
    assert_lossless(paths)
    sid = sim.epoch_import(str(root), name="b")
    db = assert_lossless(paths)
    assert db.names["b"] == sid


def test_expected_instant_helper() -> None:
    assert expected_instant("2026-03-04T05:06:07.123456789+08:00") == datetime(
        2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone(timedelta(hours=8))
    )
    assert expected_instant("2026-03-04T05:06:07-05:30").utcoffset() == -timedelta(hours=5, minutes=30)
