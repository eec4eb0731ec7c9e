"""The pure reconcile core, case by case: what the contract's finding table
says, on listings built by hand (no filesystem)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cocoond.core.findings import Finding, Key
from cocoond.core.reconcile import BlobFile, Listing, Reconciler
from cocoond.errors import DBError
from cocoond.storage.records import SnapshotDB, SnapshotRecord

NOW = 2_000_000.0
ROOT = "/r"
STALE = 3600.0


def index(root: str = ROOT, **kw: object) -> Reconciler:
    return Reconciler(root, pending_stale_seconds=STALE, temp_stale_seconds=STALE, **kw)  # type: ignore[arg-type]


def rec(sid: str, name: str = "", blobs: tuple[str, ...] = (), **kw: object) -> SnapshotRecord:
    return SnapshotRecord(id=sid, name=name, image_blob_ids=set(blobs), **kw)  # type: ignore[arg-type]


def db(
    *records: SnapshotRecord, names: dict[str, str] | None = None, nulls: tuple[str, ...] = ()
) -> SnapshotDB:
    snaps = {r.id: r for r in records}
    if names is None:
        names = {r.name: r.id for r in records if r.name}
    return SnapshotDB(snapshots=snaps, names=names, null_ids=set(nulls))


def qcow(hex_: str, size: int = 4096, regular: bool = True) -> BlobFile:
    return BlobFile(f"cloudimg/blobs/{hex_}.qcow2", hex_, regular, size, size)


def erofs(hex_: str, size: int = 4096) -> BlobFile:
    return BlobFile(f"oci/blobs/{hex_}.erofs", hex_, True, size, size)


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
        data_dirs={"A": True},
        blobs={"cloudimg/blobs/h1.qcow2": qcow("h1")},
    )
    r = fresh(listing)
    assert found(r) == {}
    assert (r.snapshot_count, r.blob_count) == (1, 1)


def test_no_db_file_yet_means_an_empty_db() -> None:
    """A fresh host has no snapshots.json: every data dir is an orphan
    (cocoon treats the missing file as an empty DB and gc deletes them)."""
    r = fresh(Listing(snapshot_db=None, data_dirs={"A": True}, blobs={"x": qcow("h1")}))
    assert set(found(r)) == {("orphan_data_dir", "A"), ("unreferenced_blob", "h1")}


def test_unreadable_db_from_the_start_opens_one_finding_not_a_flood() -> None:
    err = DBError("/r/snapshot/db/snapshots.json", "not valid JSON")
    r = fresh(Listing(snapshot_db=err, data_dirs={"A": True, "B": True}, blobs={"x": qcow("h1")}))
    assert set(found(r)) == {("db_unreadable", "snapshot/db/snapshots.json")}
    # The DB comes back: now the orphans are real.
    r.set_snapshot_db(db(rec("A", "a")))
    assert set(found(r)) == {("orphan_data_dir", "B"), ("unreferenced_blob", "h1")}


def test_db_going_bad_keeps_the_last_good_index() -> None:
    r = fresh(Listing(snapshot_db=db(rec("A", "a")), data_dirs={"A": True}))
    assert found(r) == {}
    r.set_snapshot_db(DBError("/r/snapshot/db/snapshots.json", "truncated"))
    assert set(found(r)) == {("db_unreadable", "snapshot/db/snapshots.json")}
    assert r.snapshot_count == 1


@pytest.mark.parametrize("relpath", ["cloudimg/db/images.json", "firecracker/db/vms.json"])
def test_unreadable_ref_db_stops_unreferenced_blobs_and_keeps_its_pins(relpath: str) -> None:
    r = fresh(
        Listing(
            snapshot_db=db(),
            ref_dbs={relpath: frozenset({"h2"})},
            blobs={"a": qcow("h1"), "b": qcow("h2")},
        )
    )
    assert set(found(r)) == {("unreferenced_blob", "h1")}
    r.set_ref_db(relpath, DBError(f"/r/{relpath}", "bad"))
    assert set(found(r)) == {("db_unreadable", relpath)}
    # Deleting the file (not a DBError) drops its pins: h2 is free now.
    r.set_ref_db(relpath, None)
    assert set(found(r)) == {("unreferenced_blob", "h1"), ("unreferenced_blob", "h2")}


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
    r = fresh(Listing(snapshot_db=db(), temps={"cloudimg/temp/.tmp-x": NOW - 10}))
    assert found(r) == {}
    r.set_temp("snapshot/db/.tmp-y", NOW - STALE - 5)
    f = found(r)
    assert set(f) == {("stale_temp", "snapshot/db/.tmp-y")}
    assert f[("stale_temp", "snapshot/db/.tmp-y")].age_seconds == pytest.approx(STALE + 5)
    r.set_temp("snapshot/db/.tmp-y", None)
    assert found(r) == {}


def test_blob_usability() -> None:
    r = fresh(Listing(snapshot_db=db(rec("A", "a", ("h1", "h2", "h3", "h4"))), data_dirs={"A": True}))
    r.set_blob("cloudimg/blobs/h1.qcow2", qcow("h1", size=0))  # empty
    r.set_blob("cloudimg/blobs/h2.qcow2", qcow("h2", regular=False))  # a symlink or a dir
    r.set_blob("oci/blobs/h3.erofs", erofs("h3"))  # OCI blobs count
    r.set_blob("cloudimg/blobs/h4.qcow2", qcow("h4", size=0))
    r.set_blob("oci/blobs/h4.erofs", erofs("h4"))  # one usable file is enough
    f = found(r)
    assert set(f) == {("missing_blob", "h1"), ("missing_blob", "h2")}
    assert f[("missing_blob", "h1")].path == f"{ROOT}/cloudimg/blobs/h1.qcow2"
    assert f[("missing_blob", "h1")].snapshot_id == "A"


def test_null_record_is_a_name_mismatch_and_its_dir_is_not_an_orphan() -> None:
    r = fresh(Listing(snapshot_db=db(rec("A", "a"), nulls=("N",)), data_dirs={"A": True, "N": True}))
    assert set(found(r)) == {("name_mismatch", "N")}


@pytest.mark.parametrize(
    "data_dir",
    [
        f"{ROOT}/snapshot/localfile/A",
        f"{ROOT}/snapshot/localfile/A/",
        f"{ROOT}//snapshot/./localfile/A",
        "/real/root/snapshot/localfile/A",  # the root's realpath
        "",
    ],
)
def test_data_dir_spellings_of_our_own_dir_are_fine(data_dir: str) -> None:
    r = index(root_aliases=("/real/root",))
    r.apply_listing(Listing(snapshot_db=db(rec("A", "a", data_dir=data_dir)), data_dirs={"A": True}))
    assert found(r) == {}


@pytest.mark.parametrize(
    "data_dir", ["/elsewhere/snapshot/localfile/A", f"{ROOT}/snapshot/localfile/B", f"{ROOT}/snapshot/A"]
)
def test_data_dir_elsewhere_is_a_mismatch(data_dir: str) -> None:
    r = fresh(Listing(snapshot_db=db(rec("A", "a", data_dir=data_dir)), data_dirs={"A": True}))
    f = found(r)
    assert set(f) == {("data_dir_mismatch", "A")}
    assert f[("data_dir_mismatch", "A")].path == data_dir


def test_evaluate_hands_over_each_change_once() -> None:
    r = fresh(Listing(snapshot_db=db(rec("A", "a")), data_dirs={"A": True}))
    r.evaluate(NOW)
    r.set_data_dir("B", True)
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
    r = fresh(Listing(snapshot_db=before, data_dirs={"A": True}))
    assert found(r)[("missing_blob", "h1")].name == "old"
    r.set_snapshot_db(after)
    want = found(fresh(Listing(snapshot_db=after, data_dirs={"A": True})))
    assert want[("missing_blob", "h1")].name == "new"
    assert found(r) == want


def test_missing_blob_with_two_empty_files_does_not_depend_on_arrival_order() -> None:
    """Both cloudimg/blobs/H.qcow2 and oci/blobs/H.erofs empty: the finding
    must be the same whichever file the index heard about first (check's
    output would otherwise change from run to run with set iteration order)."""
    base = Listing(snapshot_db=db(rec("A", "a", ("h1",))), data_dirs={"A": True})
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
    dirs = {"AAA": True, "BBB": True}

    r = fresh(Listing(snapshot_db=bad_record_and_name, data_dirs=dirs))
    merged = found(r)[("name_mismatch", "AAA")]
    assert "says id 'OTHER'" in merged.message, merged  # record AAA's own problem
    assert "name 'AAA' points at 'BBB'" in merged.message, merged  # the names entry's

    r.set_snapshot_db(only_bad_record)
    want = found(fresh(Listing(snapshot_db=only_bad_record, data_dirs=dirs)))
    assert ("name_mismatch", "AAA") in want
    assert found(r) == want
