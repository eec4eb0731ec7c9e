"""Property: the daemon's incremental path (one `set_*` call per changed
entry) and a full pass (`apply_listing` of the whole resulting disk) reach
the same findings, for any sequence of changes.

The model is pure (no filesystem): a small "disk" of data dirs, blob files,
temp files, a snapshot DB and the image/VM DBs, drawn from tiny pools so
that ops collide (a name equal to an ID, a blob in both blob dirs, ...).

Two divergences are by design and the model accounts for them: while a DB
is unreadable, the incremental index keeps what that DB said when it was
last read (one db_unreadable instead of a flood), while a fresh full pass
has never seen it. So the oracle for every step is a fresh index given the
listing with each unreadable DB replaced by its last good content, then the
real listing (two full passes); when every DB is readable the oracle is
also a single full pass of the real listing. And while snapshots.json is
unreadable after a good read, every finding that depends on it stays as it
was when the DB went bad (the oracle for those: a full pass of the disk as
it was then).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cocoond.core import rules
from cocoond.core.facts import (
    CH_CONFIG,
    CH_STATE,
    FC_MEM,
    FC_VMSTATE,
    MEMORY_RANGE,
    SIDECAR,
    BlobFile,
    DirContents,
    DirState,
    Listing,
    RefFacts,
    TempEntry,
)
from cocoond.core.findings import Finding, Key
from cocoond.core.reconcile import DB_DEPENDENT, Reconciler
from cocoond.errors import DBError
from cocoond.storage.records import SnapshotDB, SnapshotRecord

NOW = 1_000_000.0
UNREFERENCED = "unreferenced_blob"
STALE = 3600.0
ROOT = "/r"
IDS = ("AAA", "BBB", "CCC")
DIR_NAMES = (*IDS, "ZZZ")
# "AAA" is also an ID: a name that looks like an ID must not confuse findings.
NAMES = ("n1", "n2", "AAA")
HEXES = ("h1", "h2", "h3")
REF_DBS = (
    "cloudimg/db/images.json",
    "oci/db/images.json",
    "cloudhypervisor/db/vms.json",
    "firecracker/db/vms.json",
)
TEMPS = ("snapshot/db/.tmp-1", "cloudimg/temp/.tmp-2.qcow2", "oci/temp/pull-3")
FOREIGN = "/elsewhere/snapshot/localfile"
QUIET = 2.0
CONTENTS = (
    DirContents(frozenset({SIDECAR, CH_CONFIG, CH_STATE, MEMORY_RANGE})),
    DirContents(frozenset({SIDECAR, FC_VMSTATE, FC_MEM})),
    DirContents(frozenset({SIDECAR, CH_CONFIG}), missing_disks=("cow.raw",)),
    None,
)
DIR_STATES = (
    *(DirState("dir", 1, c, lw) for c in CONTENTS for lw in (None, NOW - 100)),
    DirState("dir", 1, None, NOW),  # still being written
    DirState("link", 1, CONTENTS[0], None),
    DirState("other", 1, None, None),
)
BLOB_DIRS = (("cloudimg/blobs", ".qcow2"), ("oci/blobs", ".erofs"))
TIMED = {"pending", "stale_pending", "stale_temp"}
AGES = (10.0, 2 * STALE)  # fresh, stale


@dataclass(frozen=True)
class RecSpec:
    name: str
    blobs: frozenset[str]
    pending: bool
    age: float
    id_override: str | None
    data_dir: str  # "", "ours", "foreign", "other-id"
    hypervisor: str


def make_record(sid: str, spec: RecSpec) -> SnapshotRecord:
    data_dir = {
        "": "",
        "ours": f"{ROOT}/snapshot/localfile/{sid}",
        "foreign": f"{FOREIGN}/{sid}",
        "other-id": f"{ROOT}/snapshot/localfile/ZZZ",
    }[spec.data_dir]
    return SnapshotRecord(
        id=spec.id_override or sid,
        name=spec.name,
        image_blob_ids=set(spec.blobs),
        created_at=datetime.fromtimestamp(NOW - spec.age, UTC),
        pending=spec.pending,
        data_dir=data_dir,
        extra={"hypervisor": spec.hypervisor} if spec.hypervisor else {},
    )


NEVER = object()


@dataclass
class Model:
    """What is on disk, plus what the incremental index last read of each DB."""

    recs: dict[str, RecSpec | None] = field(default_factory=dict)  # None: a null record
    names: dict[str, str] = field(default_factory=dict)
    db_state: str = "absent"  # ok | error | absent
    refs: dict[str, frozenset[str] | str] = field(default_factory=dict)  # "error" for a bad DB
    dirs: dict[str, DirState] = field(default_factory=dict)
    recorded: dict[str, bool] = field(default_factory=dict)
    blobs: dict[str, BlobFile] = field(default_factory=dict)
    boot: dict[str, int] = field(default_factory=dict)
    temps: dict[str, TempEntry] = field(default_factory=dict)
    last_good_db: Any = NEVER  # (recs, names), "absent" or NEVER
    last_good_refs: dict[str, frozenset[str]] = field(default_factory=dict)
    #: The disk (with the last good DB) when snapshots.json went bad after a
    #: good read: what the index's DB-dependent findings stay frozen at.
    frozen_at: tuple[Listing, Listing] | None = None

    # -- what the disk holds, as the scanner would hand it over
    def snapshot_db(self) -> SnapshotDB | DBError | None:
        if self.db_state == "error":
            return DBError(f"{ROOT}/snapshot/db/snapshots.json", "not valid JSON (test)")
        if self.db_state == "absent":
            return None
        return build_db(self.recs, self.names)

    def ref_db(self, relpath: str) -> frozenset[str] | DBError | None:
        value = self.refs.get(relpath)
        if value == "error":
            return DBError(f"{ROOT}/{relpath}", "not valid JSON (test)")
        assert value is None or isinstance(value, frozenset)
        return value

    def listing(self) -> Listing:
        ref_dbs: dict[str, frozenset[str] | RefFacts | DBError] = {}
        for relpath in self.refs:
            value = self.ref_db(relpath)
            assert value is not None
            ref_dbs[relpath] = value
        return Listing(
            snapshot_db=self.snapshot_db(),
            ref_dbs=ref_dbs,
            data_dirs=dict(self.dirs),
            recorded_dirs=dict(self.recorded),
            blobs=dict(self.blobs),
            boot_dirs=dict(self.boot),
            temps=dict(self.temps),
        )

    def last_good_listing(self) -> Listing:
        """The listing with every unreadable DB replaced by what the index
        last read of it (nothing, if it never read it well)."""
        listing = self.listing()
        if self.db_state == "error" and self.last_good_db is not NEVER:
            listing.snapshot_db = (
                None if self.last_good_db == "absent" else build_db(*copy.deepcopy(self.last_good_db))
            )
        for relpath, value in list(listing.ref_dbs.items()):
            if isinstance(value, DBError):
                if relpath in self.last_good_refs:
                    listing.ref_dbs[relpath] = self.last_good_refs[relpath]
                else:
                    del listing.ref_dbs[relpath]
        return listing

    def refs_readable(self) -> bool:
        return "error" not in self.refs.values()

    def all_readable(self) -> bool:
        return self.db_state != "error" and "error" not in self.refs.values()

    def remember_good(self) -> None:
        """The index just read the DBs afresh (its first full pass)."""
        self.last_good_db = NEVER
        self.last_good_refs = {}
        self.frozen_at = None
        self._note_db()
        for relpath in REF_DBS:
            self._note_ref(relpath)

    def _note_db(self) -> None:
        if self.db_state == "error":
            if self.frozen_at is None and self.last_good_db is not NEVER:
                # The index as it was: the last good DB against the disk and
                # the image/VM DBs as they were then (two passes: see above).
                as_seen = self.listing()
                as_seen.snapshot_db = self.last_good_listing().snapshot_db
                self.frozen_at = (self.last_good_listing(), as_seen)
            return
        self.frozen_at = None
        if self.db_state == "ok":
            self.last_good_db = copy.deepcopy((self.recs, self.names))
        elif self.db_state == "absent":
            self.last_good_db = "absent"

    def _note_ref(self, relpath: str) -> None:
        value = self.refs.get(relpath)
        if value is None:
            self.last_good_refs.pop(relpath, None)
        elif value != "error":
            assert isinstance(value, frozenset)
            self.last_good_refs[relpath] = value

    # -- ops: change the model; with an index, feed it the matching update
    def apply(self, op: tuple[Any, ...], index: Reconciler | None) -> None:
        kind = op[0]
        if kind == "dir":
            _, name, state = op
            if state is None:
                self.dirs.pop(name, None)
            else:
                self.dirs[name] = state
            if index is not None:
                index.set_data_dir(name, state)
        elif kind == "recorded":
            _, sid, state = op
            path = f"{FOREIGN}/{sid}"
            if state is None:
                self.recorded.pop(path, None)
            else:
                self.recorded[path] = state
            if index is not None:
                index.set_recorded_dir(path, state)
        elif kind == "boot":
            _, hex_, size = op
            if size is None:
                self.boot.pop(hex_, None)
            else:
                self.boot[hex_] = size
            if index is not None:
                index.set_boot_dir(hex_, size)
        elif kind == "blob":
            _, hex_, where, state = op
            blob_dir, suffix = BLOB_DIRS[where]
            relpath = f"{blob_dir}/{hex_}{suffix}"
            blob = {
                "none": None,
                "ok": BlobFile(relpath, hex_, True, disk_bytes=4096),
                "empty": BlobFile(relpath, hex_, False, empty=True),
                "special": BlobFile(relpath, hex_, False, gc_sees=False),
                "link": BlobFile(relpath, hex_, True, symlink=True),
                "dangling": BlobFile(relpath, hex_, False, symlink=True),
            }[state]
            if blob is None:
                self.blobs.pop(relpath, None)
            else:
                self.blobs[relpath] = blob
            if index is not None:
                index.set_blob(relpath, blob)
        elif kind == "temp":
            _, relpath, age = op
            if age is None:
                self.temps.pop(relpath, None)
            else:
                self.temps[relpath] = TempEntry(NOW - age, not relpath.startswith("snapshot/"))
            if index is not None:
                index.set_temp(relpath, self.temps.get(relpath))
        elif kind == "ref":
            _, relpath, value = op
            if value is None:
                self.refs.pop(relpath, None)
            else:
                self.refs[relpath] = value
            self._note_ref(relpath)
            if index is not None:
                index.set_ref_db(relpath, self.ref_db(relpath))
        elif kind == "rescan":
            if index is not None:
                index.apply_listing(self.listing())
                self._note_db()
                for relpath in REF_DBS:
                    self._note_ref(relpath)
        else:
            self._apply_db_op(op)
            self._note_db()
            if index is not None:
                index.set_snapshot_db(self.snapshot_db())

    def _apply_db_op(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "db_error":
            self.db_state = "error"
            return
        if kind == "db_absent":
            self.db_state = "absent"
            self.recs, self.names = {}, {}  # a rewrite starts from an empty DB
            return
        self.db_state = "ok"
        if kind == "rec_put":
            self.recs[op[1]] = op[2]
        elif kind == "rec_del":
            self.recs.pop(op[1], None)
        elif kind == "rec_null":
            self.recs[op[1]] = None
        elif kind == "name_set":
            self.names[op[1]] = op[2]
        elif kind == "name_del":
            self.names.pop(op[1], None)
        elif kind == "db_rewrite":
            pass  # same content, a new file: nothing may change
        else:
            raise AssertionError(op)


def build_db(recs: dict[str, RecSpec | None], names: dict[str, str]) -> SnapshotDB:
    return SnapshotDB(
        snapshots={sid: make_record(sid, spec) for sid, spec in recs.items() if spec is not None},
        names=dict(names),
        null_ids={sid for sid, spec in recs.items() if spec is None},
    )


# ------------------------------------------------------------------ strategies
REC_SPECS = st.builds(
    RecSpec,
    name=st.sampled_from(("", *NAMES)),
    blobs=st.frozensets(st.sampled_from(HEXES), max_size=2),
    pending=st.booleans(),
    age=st.sampled_from(AGES),
    id_override=st.sampled_from((None, None, None, "XXX", "BBB")),
    data_dir=st.sampled_from(("", "ours", "ours", "ours", "foreign", "other-id")),
    hypervisor=st.sampled_from(("", "cloud-hypervisor", "firecracker")),
)
OPS = st.one_of(
    st.tuples(st.just("dir"), st.sampled_from(DIR_NAMES), st.sampled_from((*DIR_STATES, None))),
    st.tuples(st.just("recorded"), st.sampled_from(IDS), st.sampled_from((True, False, None))),
    st.tuples(st.just("boot"), st.sampled_from(HEXES), st.sampled_from((None, 100))),
    st.tuples(
        st.just("blob"),
        st.sampled_from(HEXES),
        st.sampled_from((0, 0, 1)),
        st.sampled_from(("none", "ok", "ok", "empty", "special", "link", "dangling")),
    ),
    st.tuples(st.just("temp"), st.sampled_from(TEMPS), st.sampled_from((None, *AGES))),
    st.tuples(
        st.just("ref"),
        st.sampled_from(REF_DBS),
        st.one_of(st.none(), st.just("error"), st.frozensets(st.sampled_from(HEXES), max_size=2)),
    ),
    st.tuples(st.just("rec_put"), st.sampled_from(IDS), REC_SPECS),
    st.tuples(st.just("rec_put"), st.sampled_from(IDS), REC_SPECS),
    st.tuples(st.just("rec_del"), st.sampled_from(IDS)),
    st.tuples(st.just("rec_null"), st.sampled_from(IDS)),
    st.tuples(st.just("name_set"), st.sampled_from(NAMES), st.sampled_from((*IDS, "GHOST", ""))),
    st.tuples(st.just("name_set"), st.sampled_from(NAMES), st.sampled_from(IDS)),
    st.tuples(st.just("name_del"), st.sampled_from(NAMES)),
    st.sampled_from((("db_error",), ("db_absent",), ("db_rewrite",), ("rescan",))),
)


def new_index() -> Reconciler:
    return Reconciler(ROOT, pending_stale_seconds=STALE, temp_stale_seconds=STALE, orphan_quiet_seconds=QUIET)


def findings_of(index: Reconciler) -> dict[Key, Finding]:
    found = index.findings()
    by_key = {f.key: f for f in found}
    assert len(by_key) == len(found), "two findings share a key"
    return by_key


def full_pass(*listings: Listing) -> Reconciler:
    index = new_index()
    for listing in listings:
        index.apply_listing(listing)
    index.evaluate(NOW)
    return index


def oracle(model: Model) -> dict[Key, Finding]:
    """What the incremental index must hold (see the module docstring)."""
    now_index = full_pass(model.last_good_listing(), model.listing())
    now = findings_of(now_index)
    if model.frozen_at is None:
        return now
    then = findings_of(full_pass(*model.frozen_at))
    # As they were, except that what promised a gc deletion now says gc
    # deletes nothing (snapshots.json is what stops it).
    note = rules.gc_note(now_index.gc_blocker)
    kept = {
        k: replace(f, message=f.message.split("; but `cocoon gc` currently")[0] + note)
        if _promises_gc(f)
        else f
        for k, f in then.items()
        if k[0] in DB_DEPENDENT
    }
    return kept | {k: f for k, f in now.items() if k[0] not in DB_DEPENDENT}


def _promises_gc(f: Finding) -> bool:
    return (
        f.kind == "orphan_data_dir" and "`cocoon gc` deletes it" in f.message
    ) or f.kind == "stale_pending"


def keep_unreferenced(
    model: Model, before: dict[Key, Finding], kept: set[Key] | None
) -> tuple[dict[Key, Finding], set[Key] | None]:
    """The oracle after a step, and the unreferenced blobs kept open. While
    an image or VM DB is unreadable (issue 18) the index keeps the
    unreferenced_blob findings open when it went bad, as long as the blob
    is there and nothing referenced it, and opens no new one: history the
    two full passes cannot know, so it is tracked here, step by step."""
    now = oracle(model)
    if model.refs_readable():
        return now, None
    if kept is None:
        kept = {k for k in before if k[0] == UNREFERENCED}
    kept &= {k for k in now if k[0] == UNREFERENCED}
    return {k: f for k, f in now.items() if k[0] != UNREFERENCED or k in kept}, kept


def assert_same(
    incremental: Reconciler, oracle: Reconciler | dict[Key, Finding], what: str, history: list[Any]
) -> None:
    got = findings_of(incremental)
    want = oracle if isinstance(oracle, dict) else findings_of(oracle)
    if got != want:
        missing = {k: want[k] for k in want.keys() - got.keys()}
        extra = {k: got[k] for k in got.keys() - want.keys()}
        differ = {k: (got[k], want[k]) for k in got.keys() & want.keys() if got[k] != want[k]}
        raise AssertionError(
            f"incremental != {what} after {history}:\n"
            f"  missing (only in {what}): {missing}\n  extra: {extra}\n"
            f"  differ (incremental, {what}): {differ}"
        )
    if isinstance(oracle, Reconciler):
        assert incremental.snapshot_count == oracle.snapshot_count
        assert incremental.blob_count == oracle.blob_count


COMMITTED = RecSpec("", frozenset(), False, AGES[0], None, "ours", "")  # cpu/memory/storage 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.lists(OPS, max_size=12), ops=st.lists(OPS, min_size=1, max_size=25))
# A committed record (cpu 0: below a new VM's minimum) whose dir was never
# read: no clone_blocked on either path until the dir is read.
@example(start=[], ops=[("dir", "AAA", DirState("dir", 1, None, None)), ("rec_put", "AAA", COMMITTED)])
# A blob held back while vms.json was unreadable, then snapshots.json froze,
# then vms.json reads again: the frozen view (a full pass then) opens it.
@example(
    start=[],
    ops=[
        ("ref", "cloudhypervisor/db/vms.json", "error"),
        ("boot", "h1", 100),
        ("db_error",),
        ("ref", "cloudhypervisor/db/vms.json", None),
    ],
)
def test_incremental_equals_full_pass(start: list[Any], ops: list[Any]) -> None:
    model = Model()
    for op in start:
        model.apply(op, None)
    index = new_index()
    index.apply_listing(model.listing())
    model.remember_good()
    index.evaluate(NOW)
    history: list[Any] = [("start", start)]
    expected = oracle(model)
    kept: set[Key] | None = None if model.refs_readable() else set()
    for op in ops:
        before = findings_of(index)
        model.apply(op, index)
        history.append(op)
        expected, kept = keep_unreferenced(model, expected, kept)
        dirty = index.evaluate(NOW)
        after = findings_of(index)
        # evaluate() hands over every key that appeared, disappeared or (for
        # the time-independent kinds) changed: the daemon logs from it.
        changed = {
            k
            for k in before.keys() | after.keys()
            if before.get(k) != after.get(k) and (k[0] not in TIMED or (k in before) != (k in after))
        }
        assert changed <= dirty, f"evaluate() missed {changed - dirty} after {history}"
        assert_same(index, expected, "the oracle", history)
        if model.all_readable():
            assert_same(index, full_pass(model.listing()), "a full pass", history)


@st.composite
def listings(draw: st.DrawFn, readable: bool = False) -> Listing:
    model = Model()
    for op in draw(st.lists(OPS, max_size=20)):
        model.apply(op, None)
    if readable:
        if model.db_state == "error":
            model.db_state = "ok"
        model.refs = {k: v for k, v in model.refs.items() if v != "error"}
    return model.listing()


@settings(max_examples=200, deadline=None)
@given(first=listings(), second=listings(readable=True))
def test_second_full_pass_equals_fresh_index(first: Listing, second: Listing) -> None:
    index = new_index()
    index.apply_listing(first)
    index.evaluate(NOW)
    index.apply_listing(second)
    index.evaluate(NOW)
    assert_same(index, full_pass(second), "a fresh full pass", [first, second])


@settings(max_examples=100, deadline=None)
@given(listing=listings())
def test_full_pass_is_idempotent(listing: Listing) -> None:
    """A safety-net rescan that finds nothing new changes nothing and
    reports no key as changed."""
    index = new_index()
    index.apply_listing(listing)
    index.evaluate(NOW)
    before = findings_of(index)
    index.apply_listing(listing)
    assert index.evaluate(NOW) == set()
    assert findings_of(index) == before


def test_clone_blocked_waits_for_the_dir_to_be_read() -> None:
    """Record values (cpu 0) alone open no clone_blocked: "restore would take
    it" is unknown until the dir is read, as for restore_blocked and
    incomplete_data_dir. Both paths agree, and it opens once the dir is read."""
    model = Model()
    index = new_index()
    index.apply_listing(model.listing())
    for op in [("dir", "AAA", DirState("dir", 1, None, None)), ("rec_put", "AAA", COMMITTED)]:
        model.apply(op, index)
    index.evaluate(NOW)
    assert ("clone_blocked", "AAA") not in findings_of(index)
    assert ("clone_blocked", "AAA") not in findings_of(full_pass(model.listing()))
    model.apply(("dir", "AAA", DirState("dir", 1, CONTENTS[0], None)), index)
    index.evaluate(NOW)
    blocked = findings_of(index)[("clone_blocked", "AAA")]
    assert "its cpu is 0 and clone fails `--cpu must be at least 1`" in blocked.message
    assert findings_of(full_pass(model.listing())) == findings_of(index)


def test_held_unreferenced_blob_opens_when_the_vm_db_reads_again() -> None:
    """Issue 18 keeps a blob that appears while vms.json is unreadable from
    being called unreferenced; snapshots.json then goes bad (frozen). Once
    vms.json reads again the index equals a full pass of the disk as it was
    when snapshots.json froze: the blob is unreferenced there."""
    model = Model()
    index = new_index()
    index.apply_listing(model.listing())
    model.remember_good()
    vms = "cloudhypervisor/db/vms.json"
    for op in [("ref", vms, "error"), ("boot", "h1", 100), ("db_error",)]:
        model.apply(op, index)
        index.evaluate(NOW)
        assert ("unreferenced_blob", "h1") not in findings_of(index)
    model.apply(("ref", vms, None), index)
    index.evaluate(NOW)
    assert ("unreferenced_blob", "h1") in findings_of(index)
    assert findings_of(index) == oracle(model)
    model.apply(("rec_put", "AAA", COMMITTED), index)  # snapshots.json readable again
    index.evaluate(NOW)
    assert findings_of(index) == findings_of(full_pass(model.listing()))
