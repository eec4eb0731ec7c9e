"""cocoond.scan: the disk side. Sizes by allocated blocks, which names count
as blobs and temp files, what a data dir is, and that the single-entry
readers the daemon uses agree with the full pass."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond.core.facts import (
    CH_CONFIG,
    CH_STATE,
    MEMORY_RANGE,
    SIDECAR,
    DirState,
    IndexedDB,
    Listing,
    RecFacts,
    RefFacts,
)
from cocoond.core.reconcile import Reconciler
from cocoond.errors import DBError
from cocoond.scan import (
    REF_DBS,
    Lister,
    blob_relpath_ok,
    fulfil,
    inspect_data_dir,
    list_blobs,
    list_data_dirs,
    list_temps,
    read_contents,
    read_ref_db,
    read_snapshot_db,
    root_aliases,
    scan,
    stat_blob,
    stat_temp,
)
from cocoond.storage.dbfile import read_db_bytes
from cocoond.storage.paths import Paths

MB = 1 << 20


def blocks(path: Path) -> int:
    return os.lstat(path).st_blocks * 512


# ------------------------------------------------------------------- blobs
def test_list_blobs_takes_what_cocoons_gc_takes(tmp_path: Path) -> None:
    """gc's ScanFileStems: every non-directory entry with the dir's suffix,
    dotfiles included (images/cloudimg/gc.go:17, utils/file.go:35-44)."""
    root = tmp_path
    (root / "cloudimg" / "blobs").mkdir(parents=True)
    (root / "oci" / "blobs").mkdir(parents=True)
    wanted = {
        "cloudimg/blobs/aa11.qcow2": b"q" * 100,
        "oci/blobs/bb22.erofs": b"e" * 50,
        "cloudimg/blobs/.tmp-cc33.qcow2": b"t",
        "cloudimg/blobs/.qcow2": b"s",  # stem "": gc takes it too
    }
    ignored = [
        "cloudimg/blobs/dd44.qcow2.tmp",
        "cloudimg/blobs/ee55.raw",
        "cloudimg/blobs/ff66.erofs",  # the other dir's suffix
        "cloudimg/blobs/images.lock",
        "oci/blobs/aa11.qcow2",
    ]
    for relpath, body in wanted.items():
        (root / relpath).write_bytes(body)
    for relpath in ignored:
        (root / relpath).write_bytes(b"x")
        assert not blob_relpath_ok(relpath)
    got = list_blobs(Lister(str(root)))
    assert set(got) == set(wanted)
    for relpath in wanted:
        assert blob_relpath_ok(relpath)
        blob = got[relpath]
        assert blob == stat_blob(str(root), relpath)
        assert blob.hex == Path(relpath).name.rsplit(".", 1)[0]  # `.qcow2`: ""
        assert (blob.usable, blob.gc_sees, blob.symlink, blob.empty) == (True, True, False, False)
        assert blob.disk_bytes == blocks(root / relpath)


def test_list_blobs_without_blob_dirs(tmp_path: Path) -> None:
    assert list_blobs(Lister(str(tmp_path))) == {}
    assert list_blobs(Lister(str(tmp_path / "no-root"))) == {}


def test_stat_blob_follows_symlinks_as_os_stat_does(tmp_path: Path) -> None:
    """cocoon's ValidFile is os.Stat: a symlink to a good file boots; gc
    lists (and would delete) the link itself."""
    (tmp_path / "cloudimg" / "blobs").mkdir(parents=True)
    target = tmp_path / "real.qcow2"
    target.write_bytes(b"x" * 4096)
    blobs = tmp_path / "cloudimg" / "blobs"
    (blobs / "ab.qcow2").symlink_to(target)
    (blobs / "cd.qcow2").symlink_to(tmp_path / "dangling")
    (blobs / "ef.qcow2").mkdir()
    (blobs / "00.qcow2").write_bytes(b"")
    got = list_blobs(Lister(str(tmp_path)))
    link = got["cloudimg/blobs/ab.qcow2"]
    assert (link.usable, link.symlink, link.gc_sees) == (True, True, True)
    dangling = got["cloudimg/blobs/cd.qcow2"]
    assert (dangling.usable, dangling.symlink, dangling.gc_sees) == (False, True, True)
    a_dir = got["cloudimg/blobs/ef.qcow2"]
    assert (a_dir.usable, a_dir.gc_sees, a_dir.disk_bytes) == (False, False, 0)
    empty = got["cloudimg/blobs/00.qcow2"]
    assert (empty.usable, empty.empty) == (False, True)
    assert stat_blob(str(tmp_path), "cloudimg/blobs/gone.qcow2") is None


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


def facts(pending: bool = False) -> RecFacts:
    return RecFacts("n", pending, 0.0, frozenset(), None, None, "")


def test_inspect_data_dir_kinds(tmp_path: Path) -> None:
    make_localfile(tmp_path)
    root = str(tmp_path)
    kinds = {n: inspect_data_dir(root, n, contents=False, activity=False) for n in ("DIR", "LINK_TO_DIR")}
    assert {n: s.kind for n, s in kinds.items() if s} == {"DIR": "dir", "LINK_TO_DIR": "link"}
    for name in ("FILE", "LINK_TO_FILE", "DANGLING"):
        state = inspect_data_dir(root, name, contents=True, activity=True)
        assert state is not None and state.kind == "other"
    assert inspect_data_dir(root, "ABSENT", contents=True, activity=True) is None


@pytest.mark.parametrize("name", ["DIR", "FILE", "LINK_TO_DIR", "LINK_TO_FILE", "DANGLING", "ABSENT"])
@pytest.mark.parametrize("record", [None, facts(), facts(pending=True)])
def test_single_entry_read_agrees_with_the_full_listing(
    tmp_path: Path, name: str, record: RecFacts | None
) -> None:
    """The daemon refreshes one entry with inspect_data_dir and the
    safety-net rescan uses list_data_dirs: for the same entry they must say
    the same, or the finding flips between an event and the next rescan."""
    make_localfile(tmp_path)
    records = {name: record} if record else {}
    listed = list_data_dirs(Lister(str(tmp_path)), records).get(name)
    single = inspect_data_dir(
        str(tmp_path),
        name,
        contents=record is not None and not record.pending,
        activity=record is None,
    )
    assert single == listed


def test_list_data_dirs_inspects_by_record(tmp_path: Path) -> None:
    lf = make_localfile(tmp_path)
    for name in ("COMMITTED", "PENDING", "ORPHAN"):
        (lf / name).mkdir()
        (lf / name / "state.json").write_bytes(b"{}")
    os.utime(lf / "ORPHAN" / "state.json", (5000.0, 5000.0))
    os.utime(lf / "ORPHAN", (4000.0, 4000.0))
    got = list_data_dirs(Lister(str(tmp_path)), {"COMMITTED": facts(), "PENDING": facts(pending=True)})
    committed = got["COMMITTED"].contents
    assert committed is not None and committed.present == {CH_STATE}
    assert got["COMMITTED"].last_write is None
    assert got["PENDING"].contents is None and got["PENDING"].last_write is None
    assert got["ORPHAN"].contents is None and got["ORPHAN"].last_write == pytest.approx(5000.0)


def test_list_data_dirs_reuses_contents_of_unchanged_dirs(tmp_path: Path) -> None:
    lf = make_localfile(tmp_path)
    records = {"DIR": facts()}
    first = list_data_dirs(Lister(str(tmp_path)), records)
    assert first["DIR"].contents is not None and first["DIR"].contents.present == frozenset()
    (lf / "DIR" / "state.json").write_bytes(b"{}")  # moves the dir's mtime
    second = list_data_dirs(Lister(str(tmp_path)), records, first)
    assert second["DIR"].contents is not None and second["DIR"].contents.present == {CH_STATE}
    fake = DirState("dir", second["DIR"].mtime_ns, first["DIR"].contents, None)
    third = list_data_dirs(Lister(str(tmp_path)), records, {"DIR": fake})
    assert third["DIR"] is fake  # same mtime: not read again


def write_ch_dir(d: Path, *, memory: str = "memory-ranges") -> None:
    d.mkdir(parents=True)
    disks = [
        {"path": "/r/cloudimg/blobs/ab.qcow2", "ro": True, "serial": "cocoon-base", "role": "layer"},
        {
            "path": "/r/run/cloudhypervisor/VM/overlay.qcow2",
            "ro": False,
            "serial": "cocoon-cow",
            "role": "cow",
        },
    ]
    (d / "cocoon.json").write_text(json.dumps({"storage_configs": disks}))
    (d / "config.json").write_text(
        json.dumps({"disks": [{"path": x["path"], "readonly": x["ro"]} for x in disks]})
    )
    (d / "state.json").write_text("{}")
    (d / memory).write_bytes(b"")
    (d / "overlay.qcow2").write_bytes(b"")


@pytest.mark.parametrize("memory", ["memory-ranges", "memory-range-0"])
def test_read_contents_of_a_complete_ch_dir(tmp_path: Path, memory: str) -> None:
    write_ch_dir(tmp_path / "s", memory=memory)
    got = read_contents(str(tmp_path / "s"))
    assert got is not None
    assert got.present == {SIDECAR, CH_CONFIG, CH_STATE, MEMORY_RANGE}
    assert (got.sidecar_problem, got.missing_disks, got.config_problem) == (None, (), None)


def test_read_contents_finds_what_restore_would_miss(tmp_path: Path) -> None:
    d = tmp_path / "s"
    write_ch_dir(d)
    (d / "overlay.qcow2").unlink()
    (d / "state.json").unlink()
    (d / "state.json").symlink_to(tmp_path / "nowhere")  # os.Stat fails: missing
    got = read_contents(str(d))
    assert got is not None
    assert CH_STATE not in got.present and got.missing_disks == ("overlay.qcow2",)
    (d / "config.json").write_text(json.dumps({"disks": [{"path": "/other"}]}))
    got = read_contents(str(d))
    assert got is not None and got.config_problem is not None and "2 disks" in got.config_problem
    (d / "cocoon.json").write_text("{")
    got = read_contents(str(d))
    assert (
        got is not None
        and got.sidecar_problem is not None
        and got.sidecar_problem.startswith("not valid JSON")
    )
    os.remove(d / "cocoon.json")
    os.mkfifo(d / "cocoon.json")  # must not hang
    got = read_contents(str(d))
    assert got is not None and got.sidecar_problem == "not a regular file"


def test_dirs_with_the_same_sidecar_are_each_judged_by_their_own_entries(tmp_path: Path) -> None:
    """Snapshots of one VM share their sidecar and config.json byte for
    byte; what is judged once per document must not carry one dir's
    missing disk or broken config over to another."""
    for name in ("a", "b", "c"):
        write_ch_dir(tmp_path / name)
    (tmp_path / "b" / "overlay.qcow2").unlink()
    (tmp_path / "c" / "config.json").write_text(json.dumps({"disks": []}))
    a, b, c, again = (read_contents(str(tmp_path / n)) for n in ("a", "b", "c", "a"))
    assert a is not None and b is not None and c is not None
    assert (a.missing_disks, a.config_problem) == ((), None)
    assert (b.missing_disks, b.config_problem) == (("overlay.qcow2",), None)
    assert c.missing_disks == () and c.config_problem is not None and "0 here" in c.config_problem
    assert again == a


def test_read_contents_of_an_unreadable_dir_is_unknown(tmp_path: Path) -> None:
    assert read_contents(str(tmp_path / "absent")) is None


# ------------------------------------------------------------------- temps
def test_list_temps_takes_what_cocoon_leaves(tmp_path: Path) -> None:
    for d in ("snapshot/db", "cloudimg/temp", "cloudimg/db", "oci/temp", "oci/db", "firecracker/db"):
        (tmp_path / d).mkdir(parents=True)
    gc_removes = ["cloudimg/temp/.tmp-ff.qcow2", "cloudimg/temp/pull-123.img", "cloudimg/temp/import-9.img"]
    by_hand = [
        "snapshot/db/.tmp-0011",
        "snapshot/db/snapshots.json.tmp",
        "oci/db/.tmp-5",
        "firecracker/db/.tmp-7",
    ]
    ignored = [
        "snapshot/db/snapshots.json",
        "snapshot/db/snapshots.lock",
        "cloudimg/temp/.tmp-ff.qcow2.lock",  # the convert lock: kept forever
        "oci/temp/pull-file",  # OCI gc removes dirs only
        "oci/db/images.json",
    ]
    for relpath in gc_removes + by_hand + ignored:
        (tmp_path / relpath).write_bytes(b"x")
    (tmp_path / "oci/temp/pull-77").mkdir()
    (tmp_path / "snapshot/db/.tmp-dir").mkdir()
    os.utime(tmp_path / by_hand[0], (1000.5, 1000.5))
    got = list_temps(Lister(str(tmp_path)))
    assert set(got) == {*gc_removes, *by_hand, "oci/temp/pull-77"}
    assert got[by_hand[0]].mtime == pytest.approx(1000.5)
    for relpath, entry in got.items():
        assert entry.gc_removes == (relpath.startswith(("cloudimg/temp", "oci/temp")))
        assert entry == stat_temp(str(tmp_path), relpath)
    assert stat_temp(str(tmp_path), "snapshot/db/.tmp-gone") is None


# ---------------------------------------------------------------- the DBs
def test_read_db_bytes(tmp_path: Path) -> None:
    assert read_db_bytes(str(tmp_path / "absent.json")) is None
    (tmp_path / "db.json").write_bytes(b"{}")
    assert read_db_bytes(str(tmp_path / "db.json")) == b"{}"
    with pytest.raises(DBError) as err:
        read_db_bytes(str(tmp_path))
    assert err.value.path == str(tmp_path)


def new_index(root: Path) -> Reconciler:
    return Reconciler(str(root), pending_stale_seconds=3600, temp_stale_seconds=3600)


def test_read_snapshot_db(sim: ModuleType, root: Path) -> None:
    paths = Paths(str(root))
    sim.init(str(root))
    assert read_snapshot_db(paths, new_index(root)) is None  # no DB file yet
    sid = sim.create(str(root), name="web")
    db = read_snapshot_db(paths, new_index(root))
    assert isinstance(db, IndexedDB)
    assert set(db.records) == {sid} and db.names == {"web": sid}
    size = os.path.getsize(paths.snapshot_db_file())
    too_big = read_snapshot_db(paths, new_index(root), max_bytes=size - 1)
    assert isinstance(too_big, DBError) and "max_db_bytes" in str(too_big)
    sim.inject(str(root), "corrupt-db")
    err = read_snapshot_db(paths, new_index(root))
    assert isinstance(err, DBError) and err.path == str(root / "snapshot/db/snapshots.json")


def test_read_ref_db(sim: ModuleType, root: Path) -> None:
    hex_ = sim.pull_image(str(root))
    assert read_ref_db(str(root), "cloudimg/db/images.json") == frozenset({hex_})
    assert read_ref_db(str(root), "firecracker/db/vms.json") is None
    (root / "cloudhypervisor/db").mkdir(parents=True)
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
        "cni/db/networks.json",  # cocoon gc loads it too (network/cni/gc.go:29)
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
    listing = scan(Paths(str(root)), index=new_index(root))
    assert {n: s.kind for n, s in listing.data_dirs.items()} == {sid: "dir", orphan: "dir"}
    assert set(listing.blobs) == {f"cloudimg/blobs/{pinned}.qcow2", f"cloudimg/blobs/{loose}.qcow2"}
    assert set(listing.ref_dbs) == {"cloudimg/db/images.json", "cloudhypervisor/db/vms.json"}
    assert listing.ref_dbs["cloudimg/db/images.json"] == frozenset({pinned})
    vms = listing.ref_dbs["cloudhypervisor/db/vms.json"]
    assert isinstance(vms, RefFacts)
    assert (vms.refs, vms.ids, vms.creating) == (frozenset({vm_hex}), frozenset({"v"}), {})
    assert [(c.vm_id, c.blobs) for c in vms.claims] == [("v", frozenset({vm_hex}))]
    db = listing.snapshot_db
    assert isinstance(db, IndexedDB) and set(db.records) == {sid}
    assert listing.temps == {}
    assert listing.unreadable == {}


def test_root_aliases(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert root_aliases(str(real), ()) == ()
    assert root_aliases(str(link), ()) == (str(real),)
    # cocoon may live at the symlinked spelling while cocoond is given the real one
    assert root_aliases(str(real), (str(link), str(tmp_path / "elsewhere"), "")) == (str(link),)


def test_a_db_just_read_gets_what_it_names_looked_at(tmp_path: Path) -> None:
    """Issue 10 item 3: a DB read now may name a blob whose rename event is
    still queued; the daemon stats what the DB names at once (`fulfil`), so
    no missing_blob opens from a state that never existed on disk."""
    root = tmp_path
    (root / "cloudimg" / "blobs").mkdir(parents=True)
    index = new_index(root)
    index.apply_listing(scan(Paths(str(root)), index=index))
    index.take_wants()
    hex_ = "ab" * 32
    (root / "cloudimg" / "blobs" / f"{hex_}.qcow2").write_bytes(b"QFI\xfb" + b"\0" * 60)
    index.set_ref_db("cloudimg/db/images.json", frozenset({hex_}))  # its event came first
    wants = index.take_wants()
    assert wants.hexes == {hex_}
    fulfil(str(root), index, wants)
    index.evaluate(0.0)
    assert index.findings() == []
    # Without the look, the index would have called it missing:
    blind = new_index(root)
    blind.apply_listing(Listing(snapshot_db=None))
    blind.set_ref_db("cloudimg/db/images.json", frozenset({hex_}))
    blind.evaluate(0.0)
    assert [f.kind for f in blind.findings()] == ["missing_blob"]


@pytest.mark.parametrize(
    ("error", "unreadable"),
    [(PermissionError(13, "Permission denied"), True), (FileNotFoundError(2, "gone"), False)],
)
def test_a_dir_listed_but_not_searchable_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, unreadable: bool
) -> None:
    """r without x lists names but stats nothing: unreadable, never a list of
    broken entries. An entry removed between the listing and the probe (a
    cocoon delete) leaves the listing as it is."""
    (tmp_path / "snapshot" / "localfile" / "A").mkdir(parents=True)
    (tmp_path / "snapshot" / "localfile" / "B").mkdir()
    real_lstat = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if os.path.dirname(os.fspath(path)) == str(tmp_path / "snapshot" / "localfile"):
            raise error
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    lister = Lister(str(tmp_path))
    names = [e.name for e in lister.entries("snapshot/localfile")]
    if unreadable:
        assert names == [] and lister.unreadable == {"snapshot/localfile": "Permission denied"}
    else:
        assert sorted(names) == ["A", "B"] and lister.unreadable == {}


def test_sidecars_decode_as_go_decodes_them(tmp_path: Path) -> None:
    """Keys in another case match (Go folds), types Go rejects are problems
    named as Go names them, deep nesting up to Go's limit is read."""
    d = tmp_path / "s"
    write_ch_dir(d)
    disks = json.loads((d / "cocoon.json").read_text())["storage_configs"]
    folded = [{k.upper(): v for k, v in disk.items()} for disk in disks]
    (d / "cocoon.json").write_text(json.dumps({"Storage_Configs": folded, "x": [[[[[[1]]]]]] * 1}))
    got = read_contents(str(d))
    assert got is not None and (got.sidecar_problem, got.missing_disks, got.config_problem) == (
        None,
        (),
        None,
    )
    deep = "[" * 5000 + "]" * 5000
    (d / "cocoon.json").write_text(f'{{"storage_configs": {json.dumps(disks)}, "unknown": {deep}}}')
    got = read_contents(str(d))
    assert got is not None and got.sidecar_problem is None
    disks[1]["ro"] = "no"
    (d / "cocoon.json").write_text(json.dumps({"storage_configs": disks}))
    got = read_contents(str(d))
    assert got is not None and got.sidecar_problem is not None
    assert (
        "cannot unmarshal string into Go struct field" in got.sidecar_problem
        and "of type bool" in got.sidecar_problem
    )
