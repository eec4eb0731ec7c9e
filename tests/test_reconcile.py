"""The pure reconcile core, case by case: what the contract's finding table
says, on listings built by hand (no filesystem)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cocoond.core.facts import (
    CH_CONFIG,
    CH_STATE,
    FC_COW,
    FC_MEM,
    FC_VMSTATE,
    MEMORY_RANGE,
    SIDECAR,
    BlobFile,
    DirContents,
    DirState,
    Listing,
    TempEntry,
)
from cocoond.core.findings import Finding, Key
from cocoond.core.lifecycle import Lifecycle
from cocoond.core.reconcile import Reconciler
from cocoond.errors import DBError
from cocoond.storage.records import SnapshotDB, SnapshotRecord

NOW = 2_000_000.0
ROOT = "/r"
STALE = 3600.0


#: What restore finds in a complete Cloud Hypervisor / Firecracker data dir.
CH_OK = DirContents(frozenset({SIDECAR, CH_CONFIG, CH_STATE, MEMORY_RANGE}), roles=("cow",))
FC_OK = DirContents(frozenset({SIDECAR, FC_VMSTATE, FC_MEM, FC_COW}), roles=("cow",))


def index(root: str = ROOT, **kw: object) -> Reconciler:
    return Reconciler(root, pending_stale_seconds=STALE, temp_stale_seconds=STALE, **kw)  # type: ignore[arg-type]


def rec(
    sid: str, name: str = "", blobs: tuple[str, ...] = (), hypervisor: str = "", **kw: object
) -> SnapshotRecord:
    """A record as cocoon writes it: data_dir is its canonical dir unless
    given, cpu, memory and storage its VM's (which VMConfig.Validate passed)."""
    kw.setdefault("data_dir", f"{ROOT}/snapshot/localfile/{sid}")
    for key, value in (("cpu", 2), ("memory", 1 << 30), ("storage", 10 << 30)):
        kw.setdefault(key, value)
    extra = {"hypervisor": hypervisor} if hypervisor else {}
    return SnapshotRecord(id=sid, name=name, image_blob_ids=set(blobs), extra=extra, **kw)  # type: ignore[arg-type]


def d(kind: str = "dir", contents: DirContents | None = CH_OK, last_write: float | None = None) -> DirState:
    """A localfile/ entry: a complete CH data dir unless told otherwise."""
    return DirState(kind, 1, contents, last_write)  # type: ignore[arg-type]


def dirs(*names: str) -> dict[str, DirState]:
    return {name: d() for name in names}


def db(
    *records: SnapshotRecord, names: dict[str, str] | None = None, nulls: tuple[str, ...] = ()
) -> SnapshotDB:
    snaps = {r.id: r for r in records}
    if names is None:
        names = {r.name: r.id for r in records if r.name}
    return SnapshotDB(snapshots=snaps, names=names, null_ids=set(nulls))


def qcow(hex_: str, size: int = 4096, regular: bool = True) -> BlobFile:
    return BlobFile(
        f"cloudimg/blobs/{hex_}.qcow2",
        hex_,
        regular and size > 0,
        empty=regular and not size,
        disk_bytes=size,
    )


def erofs(hex_: str, size: int = 4096) -> BlobFile:
    return BlobFile(f"oci/blobs/{hex_}.erofs", hex_, size > 0, empty=not size, disk_bytes=size)


def found(r: Reconciler, now: float = NOW) -> dict[Key, Finding]:
    r.evaluate(now)
    return {f.key: f for f in r.findings()}


def fresh(listing: Listing, root: str = ROOT) -> Reconciler:
    r = index(root)
    r.apply_listing(listing)
    return r


def test_healthy_tree_has_no_findings() -> None:
    listing = Listing(
        snapshot_db=db(rec("A", "a", ("h1",), data_dir=f"{ROOT}/snapshot/localfile/A")),
        ref_dbs={"cloudimg/db/images.json": frozenset({"h1"})},
        data_dirs=dirs("A"),
        blobs={"cloudimg/blobs/h1.qcow2": qcow("h1")},
    )
    r = fresh(listing)
    assert found(r) == {}
    assert (r.snapshot_count, r.blob_count) == (1, 1)


def test_no_db_file_yet_means_an_empty_db() -> None:
    """A fresh host has no snapshots.json: every data dir is an orphan
    (cocoon treats the missing file as an empty DB and gc deletes them)."""
    r = fresh(Listing(snapshot_db=None, data_dirs=dirs("A"), blobs={"x": qcow("h1")}))
    assert set(found(r)) == {("orphan_data_dir", "A"), ("unreferenced_blob", "h1")}


def test_unreadable_db_from_the_start_opens_one_finding_not_a_flood() -> None:
    err = DBError("/r/snapshot/db/snapshots.json", "not valid JSON")
    r = fresh(Listing(snapshot_db=err, data_dirs=dirs("A", "B"), blobs={"x": qcow("h1")}))
    assert set(found(r)) == {("db_unreadable", "snapshot/db/snapshots.json"), ("gc_blocked", "gc")}
    # The DB comes back: now the orphans are real.
    r.set_snapshot_db(db(rec("A", "a")))
    assert set(found(r)) == {("orphan_data_dir", "B"), ("unreferenced_blob", "h1")}


def test_db_going_bad_keeps_the_last_good_index() -> None:
    r = fresh(Listing(snapshot_db=db(rec("A", "a")), data_dirs=dirs("A")))
    assert found(r) == {}
    r.set_snapshot_db(DBError("/r/snapshot/db/snapshots.json", "truncated"))
    assert set(found(r)) == {("db_unreadable", "snapshot/db/snapshots.json"), ("gc_blocked", "gc")}
    assert r.snapshot_count == 1


@pytest.mark.parametrize("relpath", ["cloudimg/db/images.json", "firecracker/db/vms.json"])
def test_unreadable_ref_db_stops_unreferenced_blobs_and_keeps_its_pins(relpath: str) -> None:
    r = fresh(
        Listing(
            snapshot_db=db(),
            ref_dbs={relpath: frozenset({"h2"})},
            blobs={f"cloudimg/blobs/{h}.qcow2": qcow(h) for h in ("h1", "h2")},
        )
    )
    assert set(found(r)) == {("unreferenced_blob", "h1")}
    before = found(r)[("unreferenced_blob", "h1")]
    r.set_ref_db(relpath, DBError(f"/r/{relpath}", "bad"))
    # Unknown is not fixed (issue 18): h1 stays open, nothing new is called
    # unreferenced, and a blob that goes away is gone. gc aborts on the
    # unreadable DB meanwhile (gc_blocked), and h1's message says so.
    assert set(found(r)) == {("db_unreadable", relpath), ("unreferenced_blob", "h1"), ("gc_blocked", "gc")}
    kept = found(r)[("unreferenced_blob", "h1")]
    assert (kept.path, kept.bytes) == (before.path, before.bytes)
    assert "deletes nothing" in kept.message
    r.set_blob("cloudimg/blobs/h3.qcow2", qcow("h3"))
    assert set(found(r)) == {("db_unreadable", relpath), ("unreferenced_blob", "h1"), ("gc_blocked", "gc")}
    r.set_blob("cloudimg/blobs/h1.qcow2", None)
    assert set(found(r)) == {("db_unreadable", relpath), ("gc_blocked", "gc")}
    r.set_blob("cloudimg/blobs/h1.qcow2", qcow("h1"))
    r.set_ref_db(relpath, frozenset({"h2"}))
    assert set(found(r)) == {("unreferenced_blob", "h1"), ("unreferenced_blob", "h3")}
    # Deleting the file (not a DBError) drops its pins: h2 is free now.
    r.set_ref_db(relpath, None)
    assert set(found(r)) == {("unreferenced_blob", h) for h in ("h1", "h2", "h3")}


def test_pending_goes_stale_after_the_threshold() -> None:
    created = NOW - 100
    r = fresh(
        Listing(snapshot_db=db(rec("A", "a", pending=True, created_at=datetime.fromtimestamp(created, UTC))))
    )
    f = found(r, now=NOW)
    assert set(f) == {("pending", "A")}
    assert f[("pending", "A")].age_seconds == pytest.approx(100)
    assert r.next_transition(NOW) == pytest.approx(created + STALE)
    f = found(r, now=created + STALE + 1)
    assert set(f) == {("stale_pending", "A")}
    assert f[("stale_pending", "A")].age_seconds == pytest.approx(STALE + 1)


def test_temp_files_age_into_stale_temp() -> None:
    r = fresh(Listing(snapshot_db=db(), temps={"cloudimg/temp/.tmp-x": TempEntry(NOW - 10, True)}))
    assert found(r) == {}
    r.set_temp("snapshot/db/.tmp-y", TempEntry(NOW - STALE - 5, False))
    f = found(r)
    assert set(f) == {("stale_temp", "snapshot/db/.tmp-y")}
    assert f[("stale_temp", "snapshot/db/.tmp-y")].age_seconds == pytest.approx(STALE + 5)
    r.set_temp("snapshot/db/.tmp-y", None)
    assert found(r) == {}


def test_blob_usability() -> None:
    r = fresh(Listing(snapshot_db=db(rec("A", "a", ("h1", "h2", "h3", "h4"))), data_dirs=dirs("A")))
    r.set_blob("cloudimg/blobs/h1.qcow2", qcow("h1", size=0))  # empty
    r.set_blob("cloudimg/blobs/h2.qcow2", qcow("h2", regular=False))  # a dangling symlink, a device
    r.set_blob("oci/blobs/h3.erofs", erofs("h3"))  # OCI blobs count
    r.set_blob("cloudimg/blobs/h4.qcow2", qcow("h4", size=0))
    r.set_blob("oci/blobs/h4.erofs", erofs("h4"))  # one usable file is enough
    f = found(r)
    assert set(f) == {("missing_blob", "h1"), ("missing_blob", "h2")}
    assert f[("missing_blob", "h1")].path == f"{ROOT}/cloudimg/blobs/h1.qcow2"
    assert f[("missing_blob", "h1")].snapshot_id == "A"


def test_null_record_is_a_name_mismatch_and_its_dir_an_orphan_gc_deletes() -> None:
    """cocoon skips null records (snapshot/localfile/gc.go:45-47), so gc
    counts the dir as unreferenced and deletes it."""
    r = fresh(Listing(snapshot_db=db(rec("A", "a"), nulls=("N",)), data_dirs=dirs("A", "N")))
    f = found(r)
    assert set(f) == {("name_mismatch", "N"), ("orphan_data_dir", "N")}
    assert "null" in f[("orphan_data_dir", "N")].message
    assert "`cocoon gc` deletes it" in f[("orphan_data_dir", "N")].message


@pytest.mark.parametrize(
    "data_dir",
    [
        f"{ROOT}/snapshot/localfile/A",
        f"{ROOT}/snapshot/localfile/A/",
        f"{ROOT}//snapshot/./localfile/A",
        "/real/root/snapshot/localfile/A",  # the root's realpath
    ],
)
def test_data_dir_spellings_of_our_own_dir_are_fine(data_dir: str) -> None:
    r = index(root_aliases=("/real/root",))
    r.apply_listing(Listing(snapshot_db=db(rec("A", "a", data_dir=data_dir)), data_dirs=dirs("A")))
    assert found(r) == {}


@pytest.mark.parametrize(
    "data_dir", ["/elsewhere/snapshot/localfile/A", f"{ROOT}/snapshot/localfile/B", f"{ROOT}/snapshot/A"]
)
def test_data_dir_elsewhere_is_a_mismatch(data_dir: str) -> None:
    r = fresh(
        Listing(
            snapshot_db=db(rec("A", "a", data_dir=data_dir)),
            data_dirs=dirs("A"),
            recorded_dirs={data_dir: True},
        )
    )
    f = found(r)
    assert set(f) == {("data_dir_mismatch", "A")}
    assert f[("data_dir_mismatch", "A")].path == data_dir


def test_evaluate_hands_over_each_change_once() -> None:
    r = fresh(Listing(snapshot_db=db(rec("A", "a")), data_dirs=dirs("A")))
    r.evaluate(NOW)
    r.set_data_dir("B", d())
    assert r.evaluate(NOW) == {("orphan_data_dir", "B")}
    assert r.evaluate(NOW) == set()
    r.set_data_dir("B", None)
    assert r.evaluate(NOW) == {("orphan_data_dir", "B")}
    assert r.current(("orphan_data_dir", "B")) is None


# ----------------------------------------------------------------------------
# Incremental vs full pass: the cases the property test (test_reconcile_property)
# found, written out so each one names its bug.


def test_renaming_the_snapshot_named_in_missing_blob_updates_the_finding() -> None:
    """missing_blob carries the name of its example snapshot; a DB reload that
    renames that snapshot (same blobs) must not leave the old name behind."""
    before = db(rec("A", "old", ("h1",)))
    after = db(rec("A", "new", ("h1",)))
    r = fresh(Listing(snapshot_db=before, data_dirs=dirs("A")))
    assert found(r)[("missing_blob", "h1")].name == "old"
    r.set_snapshot_db(after)
    want = found(fresh(Listing(snapshot_db=after, data_dirs=dirs("A"))))
    assert want[("missing_blob", "h1")].name == "new"
    assert found(r) == want


def test_missing_blob_with_two_empty_files_does_not_depend_on_arrival_order() -> None:
    """Both cloudimg/blobs/H.qcow2 and oci/blobs/H.erofs empty: the finding
    must be the same whichever file the index heard about first (check's
    output would otherwise change from run to run with set iteration order)."""
    base = Listing(snapshot_db=db(rec("A", "a", ("h1",))), data_dirs=dirs("A"))
    one, two = qcow("h1", size=0), erofs("h1", size=0)
    results = []
    for order in ((one, two), (two, one)):
        r = fresh(base)
        for blob in order:
            r.set_blob(blob.relpath, blob)
        results.append(found(r))
    assert results[0] == results[1]


def test_a_name_equal_to_an_id_does_not_hide_that_records_mismatch() -> None:
    """names{"AAA": "BBB"} (BBB is named "foo") is a names-side mismatch with
    subject "AAA"; record AAA whose own `id` is wrong is a record-side one
    with subject "AAA" too. A key opens one finding, so both problems are
    merged into it: neither may swallow the other, and when the names entry
    is fixed the record's problem must stay reported."""

    def both(names: dict[str, str]) -> SnapshotDB:
        return db(rec("OTHER", "x"), rec("BBB", "foo"), names=names)

    bad_record_and_name = both({"x": "AAA", "foo": "BBB", "AAA": "BBB"})
    bad_record_and_name.snapshots["AAA"] = bad_record_and_name.snapshots.pop("OTHER")
    only_bad_record = both({"x": "AAA", "foo": "BBB"})
    only_bad_record.snapshots["AAA"] = only_bad_record.snapshots.pop("OTHER")
    both_dirs = dirs("AAA", "BBB")

    r = fresh(Listing(snapshot_db=bad_record_and_name, data_dirs=both_dirs))
    merged = found(r)[("name_mismatch", "AAA")]
    assert "says id 'OTHER'" in merged.message, merged  # record AAA's own problem
    assert "name 'AAA' points at 'BBB'" in merged.message, merged  # the names entry's

    r.set_snapshot_db(only_bad_record)
    want = found(fresh(Listing(snapshot_db=only_bad_record, data_dirs=both_dirs)))
    assert ("name_mismatch", "AAA") in want
    assert found(r) == want


# ----------------------------------------------------------------------------
# Restore preflight (issue 9 item 7): incomplete_data_dir by the record's hypervisor.


def contents(*present: str, **kw: object) -> DirContents:
    return DirContents(frozenset(present), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hypervisor", "have", "missing_words"),
    [
        ("cloud-hypervisor", contents(SIDECAR, CH_CONFIG, MEMORY_RANGE), ["state.json is missing"]),
        ("cloud-hypervisor", contents(SIDECAR, CH_CONFIG, CH_STATE), ["no memory-range* file"]),
        ("cloud-hypervisor", contents(CH_CONFIG, CH_STATE, MEMORY_RANGE), ["cocoon.json is missing"]),
        ("cloud-hypervisor", FC_OK, ["config.json is missing", "state.json is missing", "memory-range"]),
        ("firecracker", contents(SIDECAR, FC_VMSTATE), ["mem is missing"]),
        ("firecracker", CH_OK, ["vmstate is missing", "mem is missing"]),
        # Any other value picks Cloud Hypervisor (cmd/vm/run.go:93-94).
        ("qemu", FC_OK, ["config.json is missing"]),
        (
            "firecracker",
            contents(SIDECAR, FC_VMSTATE, FC_MEM, missing_disks=("cow.raw", "data-db.raw")),
            ["cow.raw (named in cocoon.json) is missing", "data-db.raw (named in cocoon.json) is missing"],
        ),
        (
            "cloud-hypervisor",
            contents(SIDECAR, CH_CONFIG, CH_STATE, MEMORY_RANGE, sidecar_problem="not valid JSON"),
            ["cocoon.json: not valid JSON"],
        ),
        (
            "cloud-hypervisor",
            contents(
                SIDECAR, CH_CONFIG, CH_STATE, MEMORY_RANGE, config_problem="2 disks in cocoon.json vs 1 here"
            ),
            ["config.json: 2 disks in cocoon.json vs 1 here"],
        ),
        # No hypervisor recorded: the host's default backend restores it, so
        # only a dir that fits neither layout fails.
        ("", contents(SIDECAR, CH_CONFIG), ["state.json is missing"]),
    ],
)
def test_incomplete_data_dir_follows_the_restore_preflight(
    hypervisor: str, have: DirContents, missing_words: list[str]
) -> None:
    r = fresh(
        Listing(snapshot_db=db(rec("A", "a", hypervisor=hypervisor)), data_dirs={"A": d(contents=have)})
    )
    f = found(r)
    assert set(f) == {("incomplete_data_dir", "A")}
    finding = f[("incomplete_data_dir", "A")]
    assert finding.severity == "error"
    assert finding.path == f"{ROOT}/snapshot/localfile/A"
    for words in missing_words:
        assert words in finding.message, finding.message


@pytest.mark.parametrize(("hypervisor", "have"), [("", CH_OK), ("", FC_OK), ("firecracker", FC_OK)])
def test_complete_layouts_pass(hypervisor: str, have: DirContents) -> None:
    r = fresh(
        Listing(snapshot_db=db(rec("A", "a", hypervisor=hypervisor)), data_dirs={"A": d(contents=have)})
    )
    assert found(r) == {}


def test_pending_records_and_uninspected_dirs_are_not_judged() -> None:
    empty = contents()
    r = fresh(
        Listing(
            snapshot_db=db(rec("P", pending=True), rec("U")),
            data_dirs={"P": d(contents=empty), "U": d(contents=None)},
        )
    )
    assert {k[0] for k in found(r)} == {"stale_pending"}  # created_at is Go's zero time
    # The record is committed: the shell is asked for a fresh look, then judged.
    r.set_snapshot_db(db(rec("P"), rec("U")))
    assert "P" in r.take_wants().contents
    r.set_data_dir("P", d(contents=empty))
    assert set(found(r)) == {("incomplete_data_dir", "P")}


# ----------------------------------------------------------------------------
# The data dir restore reads (issue 9 item 8) and what gc sees (items 5, 11).


def test_recorded_data_dir_elsewhere_is_stat_and_missing_there_is_an_error() -> None:
    other = "/elsewhere/snapshot/localfile/A"
    r = fresh(
        Listing(snapshot_db=db(rec("A", "a", data_dir=other)), data_dirs={}, recorded_dirs={other: False})
    )
    f = found(r)
    assert set(f) == {("data_dir_mismatch", "A"), ("missing_data_dir", "A")}
    assert f[("missing_data_dir", "A")].path == other
    r.set_recorded_dir(other, True)  # restore reads it: the canonical dir does not matter
    assert set(found(r)) == {("data_dir_mismatch", "A")}


def test_a_record_without_data_dir_cannot_be_restored() -> None:
    r = fresh(Listing(snapshot_db=db(rec("A", "a", data_dir="")), data_dirs=dirs("A")))
    f = found(r)
    assert set(f) == {("missing_data_dir", "A")}
    assert "records no data_dir" in f[("missing_data_dir", "A")].message


def test_symlinks_and_files_in_localfile() -> None:
    r = fresh(
        Listing(
            snapshot_db=db(rec("L", "l"), rec("F", "f")),
            data_dirs={"L": d("link"), "F": d("other", None), "X": d("link", None), "Y": d("other", None)},
        )
    )
    f = found(r)
    # A record's dir behind a symlink restores fine; a file is not a dir; a
    # record-less symlink is never seen by gc; a stray file is nobody's business.
    assert set(f) == {("missing_data_dir", "F"), ("orphan_data_dir", "X")}
    assert "not a directory" in f[("missing_data_dir", "F")].message
    assert "never sees symlinks" in f[("orphan_data_dir", "X")].message
    assert "deletes" not in f[("orphan_data_dir", "X")].message


def test_an_orphan_waits_until_its_dir_is_quiet() -> None:
    """`cocoon snapshot import` fills the dir before it writes the record."""
    r = index(orphan_quiet_seconds=2.0)
    r.apply_listing(Listing(snapshot_db=db(), data_dirs={"I": d(contents=None, last_write=NOW - 1)}))
    assert found(r, NOW) == {}
    assert r.next_transition(NOW) == pytest.approx(NOW + 1)
    assert set(found(r, NOW + 1.5)) == {("orphan_data_dir", "I")}
    # Written again: not quiet any more; the record arrives: never an orphan.
    r.set_data_dir("I", d(contents=None, last_write=NOW + 2))
    assert found(r, NOW + 2.5) == {}
    r.set_snapshot_db(db(rec("I", "imported")))
    assert found(r, NOW + 10) == {}


def test_an_orphan_opens_one_settle_after_its_last_write_not_two() -> None:
    """The index holds an orphan until its dir is quiet; the daemon's
    lifecycle must not add a settle of its own on top (it did: orphans
    opened 2x settle after the write)."""
    settle = 2.0
    r = index(orphan_quiet_seconds=settle)
    life = Lifecycle(settle, 0, presettled=frozenset({"orphan_data_dir"}))
    r.apply_listing(Listing(snapshot_db=db(), data_dirs={"I": d(contents=None, last_write=NOW)}))
    assert r.evaluate(NOW) == set()
    due = r.next_transition(NOW)
    assert due == pytest.approx(NOW + settle)
    assert due is not None
    changed = r.evaluate(due)
    # The shell's clock is monotonic; the write was quiet until `due` (wall).
    life.observe(50.0, [(key, r.current(key)) for key in changed])
    assert [type(e).__name__ for e in life.tick(50.0, quiet_since=50.0 - settle)] == ["Opened"]


# ----------------------------------------------------------------------------
# Blobs: symlinks, OCI layers and boot dirs (issue 9 items 1, 2, 9).


def test_blob_symlinks_are_judged_as_cocoon_judges_them() -> None:
    good = BlobFile("cloudimg/blobs/h1.qcow2", "h1", usable=True, symlink=True)
    dangling = BlobFile("cloudimg/blobs/h2.qcow2", "h2", usable=False, symlink=True)
    unused = BlobFile("oci/blobs/h3.erofs", "h3", usable=True, symlink=True)
    r = fresh(
        Listing(
            snapshot_db=db(rec("A", "a", ("h1", "h2"))),
            data_dirs=dirs("A"),
            blobs={b.relpath: b for b in (good, dangling, unused)},
        )
    )
    f = found(r)
    assert set(f) == {("missing_blob", "h2"), ("unreferenced_blob", "h3")}
    assert "symlink" in f[("missing_blob", "h2")].message
    assert "deletes the link" in f[("unreferenced_blob", "h3")].message


def test_oci_boot_dirs_go_with_their_blob() -> None:
    r = fresh(
        Listing(
            snapshot_db=db(),
            blobs={"oci/blobs/h1.erofs": erofs("h1", 4096)},
            boot_dirs={"h1": 8192, "h2": 100},
            ref_dbs={"oci/db/images.json": frozenset()},
        )
    )
    f = found(r)
    assert set(f) == {("unreferenced_blob", "h1"), ("unreferenced_blob", "h2")}
    assert f[("unreferenced_blob", "h1")].bytes == 4096 + 8192
    assert "oci/boot/h2" in f[("unreferenced_blob", "h2")].message
    r.set_ref_db("oci/db/images.json", frozenset({"h1"}))
    assert set(found(r)) == {("unreferenced_blob", "h2")}


def test_temp_messages_say_what_cocoon_does() -> None:
    r = fresh(
        Listing(
            snapshot_db=db(),
            temps={
                "cloudimg/temp/pull-1.img": TempEntry(NOW - 2 * STALE, True),
                "oci/db/.tmp-5": TempEntry(NOW - 2 * STALE, False),
            },
        )
    )
    f = found(r)
    assert "only in a run that also deletes" in f[("stale_temp", "cloudimg/temp/pull-1.img")].message
    assert "delete it by hand" in f[("stale_temp", "oci/db/.tmp-5")].message


# ----------------------------------------------------------------------------
# Unreadable directories and DBs (issue 10 items 2 and 15).


def test_an_unlistable_localfile_at_start_is_unknown_not_missing() -> None:
    r = fresh(
        Listing(
            snapshot_db=db(*(rec(f"S{i}", f"s{i}") for i in range(20))),
            unreadable={"snapshot/localfile": "Permission denied"},
        )
    )
    f = found(r)
    assert set(f) == {("dir_unreadable", "snapshot/localfile")}
    assert "Permission denied" in f[("dir_unreadable", "snapshot/localfile")].message
    # Readable again: the truth, and the dir finding resolved.
    r.apply_listing(
        Listing(snapshot_db=db(*(rec(f"S{i}", f"s{i}") for i in range(19))), data_dirs=dirs("S0"))
    )
    assert set(found(r)) == {("missing_data_dir", f"S{i}") for i in range(1, 19)}


def test_an_unlistable_blob_dir_keeps_blobs_unknown() -> None:
    r = fresh(
        Listing(
            snapshot_db=db(rec("A", "a", ("h1",))),
            data_dirs=dirs("A"),
            unreadable={"cloudimg/blobs": "Permission denied"},
        )
    )
    assert set(found(r)) == {("dir_unreadable", "cloudimg/blobs")}
    r.apply_listing(Listing(snapshot_db=db(rec("A", "a", ("h1",))), data_dirs=dirs("A")))
    assert set(found(r)) == {("missing_blob", "h1")}


def test_later_unlistable_dir_keeps_what_was_known() -> None:
    listing = Listing(snapshot_db=db(rec("A", "a")), data_dirs={})
    r = fresh(listing)
    assert set(found(r)) == {("missing_data_dir", "A")}
    r.apply_listing(Listing(snapshot_db=db(rec("A", "a")), unreadable={"snapshot/localfile": "EACCES"}))
    assert set(found(r)) == {("missing_data_dir", "A"), ("dir_unreadable", "snapshot/localfile")}


def test_while_the_db_is_unreadable_nothing_that_depends_on_it_changes() -> None:
    """The kept index is older than the disk: changes meanwhile are recorded
    and judged once the DB reads again (as cocoon's gc aborts meanwhile)."""
    r = fresh(Listing(snapshot_db=db(rec("A", "a"), rec("B", "b")), data_dirs=dirs("A")))
    assert set(found(r)) == {("missing_data_dir", "B")}
    r.set_snapshot_db(DBError("/r/snapshot/db/snapshots.json", "truncated"))
    r.set_data_dir("A", None)  # churn meanwhile: a delete in flight...
    r.set_data_dir("C", d(last_write=NOW - 100))  # ...and a create
    r.set_data_dir("B", d())
    assert r.frozen
    assert set(found(r)) == {
        ("missing_data_dir", "B"),
        ("db_unreadable", "snapshot/db/snapshots.json"),
        ("gc_blocked", "gc"),
    }
    # Back: judged afresh against the new DB (A was deleted, C committed).
    r.set_snapshot_db(db(rec("B", "b"), rec("C", "c")))
    assert not r.frozen
    assert found(r) == {}


def test_a_db_cocoond_may_not_read_is_not_called_corrupt() -> None:
    import errno

    err = DBError("/r/snapshot/db/snapshots.json", "cannot read: Permission denied", errno=errno.EACCES)
    r = fresh(Listing(snapshot_db=err))
    message = found(r)[("db_unreadable", "snapshot/db/snapshots.json")].message
    assert "cocoond cannot read" in message and "restore it" not in message


def test_compact_copies_the_dir_facts_and_changes_no_finding() -> None:
    """The daemon compacts after each scan to give memory back; a copy that
    lost or altered a fact would silently change what is reported."""
    listing = Listing(
        snapshot_db=db(rec("A", "a"), rec("B", "b")),
        data_dirs={
            "A": d(),
            "B": DirState("dir", 1_700_000_000_123_456_789, DirContents(frozenset({SIDECAR}))),
            "O": d(contents=None, last_write=NOW - 100),
            "F": d("other"),
        },
    )
    r = fresh(listing)
    before, states = found(r), dict(r.dirs)
    assert set(before) == {("incomplete_data_dir", "B"), ("orphan_data_dir", "O")}
    r.compact()
    assert r.dirs == states
    assert all(r.dirs[n] is not states[n] for n in states)
    assert r.evaluate(NOW) == set() and found(r) == before
    r.set_data_dir("B", d())  # still a working index afterwards
    assert set(found(r)) == {("orphan_data_dir", "O")}


def test_data_dirs_it_may_not_read_are_one_finding_never_a_guess() -> None:
    closed = DirContents(frozenset(), unreadable="Permission denied")
    r = fresh(
        Listing(
            snapshot_db=db(rec("A", "a"), rec("B", "b"), rec("C", "c"), rec("P", "p", pending=True)),
            data_dirs={
                "A": d(contents=closed),
                "B": d(contents=closed),
                "C": d(),
                "P": d(contents=closed),  # pending: restore-ability is not asked yet
                "O": d(contents=closed, last_write=NOW - 100),  # no record: an orphan as ever
            },
        )
    )
    f = found(r)
    assert set(f) - {("stale_pending", "P")} == {
        ("dir_unreadable", "snapshot/localfile/*"),
        ("orphan_data_dir", "O"),
    }
    summary = f[("dir_unreadable", "snapshot/localfile/*")]
    assert summary.severity == "warning" and "cannot read 2 data dirs" in summary.message
    # The example is the first dir found unreadable (scan order, not sorted: O(1) per change).
    assert any(f"snapshot/localfile/{sid}: Permission denied" in summary.message for sid in "AB")
    r.set_data_dir("A", d())
    assert "cannot read 1 data dir of" in found(r)[("dir_unreadable", "snapshot/localfile/*")].message
    r.set_snapshot_db(db(rec("A", "a"), rec("C", "c"), rec("P", "p", pending=True)))  # B's record went
    assert set(found(r)) - {("stale_pending", "P")} == {("orphan_data_dir", "B"), ("orphan_data_dir", "O")}
