"""The reconcile core: what cocoon's DBs say against what is on disk.

No I/O here. The scanner (scan.py) turns the disk into a `Listing` and into
single-entry updates; this module keeps the index and decides which rule
(rules.py) to run when something changes. The same index serves `check`
(one `apply_listing`, then `findings`) and the daemon (one `apply_listing`
at start and on every safety-net rescan, then one `set_*` call per changed
entry). An entry update costs O(1); only a new snapshot DB costs O(records),
because it has to be parsed anyway.

Time enters only through `now` (wall-clock seconds), for pending and temp
ages and for how long a record-less dir has been quiet, so every result is
a function of the inputs.

While snapshots.json is unreadable, nothing that depends on it is
re-evaluated: cocoon's gc aborts in that state too, and the last good index
is older than the disk it would be compared with. What changes meanwhile is
recorded and evaluated afresh once the DB reads again.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cocoond.core import findings as fk
from cocoond.core import gcmodel, rules
from cocoond.core.facts import (
    MISSING,
    BlobFile,
    DirContents,
    DirState,
    ImageClaim,
    IndexedDB,
    Listing,
    RecFacts,
    RefFacts,
    TempEntry,
    VMClaim,
)
from cocoond.core.findings import Finding, Key
from cocoond.core.gcmodel import Blocker, GCView, VMDirs
from cocoond.core.rules import LOCALFILE, SNAPSHOT_DB
from cocoond.errors import DBError
from cocoond.storage.dbspans import DBDelta, Spans
from cocoond.storage.memory import bound, own
from cocoond.storage.records import (
    NO_RAW,
    RecordFields,
    SnapshotDB,
    SnapshotRecord,
    decode_records,
    no_gc,
    record_decoder,
)
from cocoond.storage.refdbs import CNI_DB

#: Blob dirs under the root: their listings decide whether a blob is there.
BLOB_DIRS: tuple[str, ...] = ("cloudimg/blobs", "oci/blobs")
#: Kinds whose truth depends on snapshots.json: frozen while it is unreadable.
DB_DEPENDENT: frozenset[str] = frozenset(fk.KINDS) - {
    fk.DB_UNREADABLE,
    fk.STALE_TEMP,
    fk.DIR_UNREADABLE,
    fk.ROOT_UNSEEN,
    fk.GC_BLOCKED,
    fk.STALE_CREATING_VM,
    fk.ORPHAN_VM_DIR,
    fk.IMAGE_UNUSABLE,
    fk.VM_BASE_MISSING,
}

__all__ = ["BLOB_DIRS", "DB_DEPENDENT", "LOCALFILE", "SNAPSHOT_DB", "Reconciler", "Wants"]


@dataclass(slots=True)
class Wants:
    """What the index cannot know without another look at the disk, after
    a DB load: the shell inspects these and feeds the answers back."""

    #: Data dirs of committed records whose contents must be (re)inspected.
    contents: set[str] = field(default_factory=set)
    #: Record-less data dirs whose last write time is unknown.
    activity: set[str] = field(default_factory=set)
    #: Foreign recorded data_dir paths to stat.
    recorded: set[str] = field(default_factory=set)
    #: Blob hexes that just became referenced: stat their files now, so a
    #: finding never opens from a listing older than the DB that names them.
    hexes: set[str] = field(default_factory=set)
    #: Base files (layers, kernel, initrd, firmware) a data dir names that
    #: have not been stat'ed yet.
    base: set[str] = field(default_factory=set)
    #: Not a want but news: dirs a DB load left without a record (the daemon
    #: reports many of them, from one DB change, as one finding).
    orphaned: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.contents or self.activity or self.recorded or self.hexes or self.base)


def _bare(error: DBError) -> DBError:
    """The error without what raised it: its traceback's frames hold the
    decode's locals (the DB's whole text, the records decoded so far: 380 MB
    at 1M snapshots) for as long as the index keeps the error."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def _fresh(state: DirState) -> DirState:
    """A copy of `state` in new memory (see Reconciler.compact)."""
    return DirState(
        state.kind,
        state.mtime_ns + 0,  # a new int: the old one sits in the old arenas
        state.contents,
        None if state.last_write is None else state.last_write + 0.0,
    )


class Reconciler:
    """The index. `set_*` methods update it; `evaluate(now)` returns the keys
    whose finding appeared, disappeared or changed since the last call;
    `current(key)` and `findings()` read it."""

    def __init__(
        self,
        root: str,
        *,
        pending_stale_seconds: float,
        temp_stale_seconds: float,
        orphan_quiet_seconds: float = 0.0,
        root_aliases: Iterable[str] = (),
    ) -> None:
        self.root = os.path.abspath(root)
        self.pending_stale_seconds = pending_stale_seconds
        self.temp_stale_seconds = temp_stale_seconds
        #: A record-less dir is an orphan only once nothing in it was written
        #: for this long: `cocoon snapshot import` fills the dir before it
        #: writes the record (snapshot/localfile/import.go:34-87).
        self.orphan_quiet_seconds = orphan_quiet_seconds
        # Spellings of our localfile dir that a record's data_dir may use (the
        # shell passes the root's realpath: the pure core cannot resolve links).
        self._localfile_dirs = {
            os.path.normpath(os.path.join(os.path.abspath(r), LOCALFILE)) for r in (self.root, *root_aliases)
        }
        self._localfile_prefix = os.path.join(self.root, LOCALFILE) + "/"
        self.db_known = False  # a good snapshot DB has been seen (or there is none)
        self.db_error: DBError | None = None
        self._db_unwatched = False  # see db_unwatched
        #: Unreferenced blobs (and their gc_destroys) that only an unreadable
        #: image/VM DB kept closed when snapshots.json froze: opened once
        #: every such DB reads again while it is still frozen (_on_freeze).
        self._held_unref: dict[Key, Finding] = {}
        self.records: dict[str, RecFacts] = {}
        self.null_ids: frozenset[str] = frozenset()
        # `names` is kept (its strings shared with the records' keys where
        # they are IDs): a rewrite's name findings are re-judged from it.
        self.names: dict[str, str] = {}
        self.name_count = 0
        #: Where snapshots.json's entries sat when last loaded (dbspans).
        self.db_spans: Spans | None = None
        #: Keep what the next rewrite needs to be read as a change (the
        #: daemon); a one-shot reader (`check`) decodes each DB whole,
        #: which costs less CPU once.
        self.absorb_rewrites = False
        self.record_decoder = record_decoder(self._facts_from_json)
        self.dirs: dict[str, DirState] = {}
        #: Directories listed at least once: until then, what is in them is
        #: unknown (no "missing" from a directory never read).
        self._listed: set[str] = set()
        self.recorded_dirs: dict[str, bool] = {}
        #: What restore would find in a record's foreign data_dir (it reads
        #: the recorded one: snapshot/localfile/localfile.go:227,233).
        self.recorded_contents: dict[str, DirContents] = {}
        self._recorded_users: dict[str, set[str]] = {}
        #: Files data dirs, images and VMs name by absolute path -> MISSING,
        #: PRESENT or VALID (facts.py).
        self.base_files: dict[str, int] = {}
        #: What each image/VM DB's entries need (last good read).
        self.claims: dict[str, tuple[ImageClaim | VMClaim, ...]] = {}
        self._claim_keys: dict[str, set[Key]] = {}
        #: snapshot ID -> (VM DB, the VM listing it): restore's VM.
        self._owner: dict[str, tuple[str, VMClaim]] = {}
        #: base_files that are MISSING (so a path coming back re-judges its dirs).
        self._was_missing: set[str] = set()
        #: Image/VM DBs whose claims need judging again, and whether the
        #: snapshot -> VM map does: done once, when findings or wants are
        #: next read (a 4,000-VM DB is not re-judged per blob event).
        self._stale_claims: set[str] = set()
        self._owners_stale = False
        self.blob_files: dict[str, dict[str, BlobFile]] = {}
        self.boot_dirs: dict[str, int] = {}
        self.ref_sets: dict[str, frozenset[str]] = {}  # last good refs of each image/VM DB
        self.ref_errors: dict[str, DBError] = {}
        #: VM and CNI DBs' facts for gc (IDs, records stuck in `creating`).
        self.ref_facts: dict[str, RefFacts] = {}
        #: cocoon's VM run and log dirs, (module, "run"|"log") -> listing;
        #: absent key: not configured (see `set_vm_dirs`).
        self.vm_dirs: dict[tuple[str, str], VMDirs] = {}
        #: Why `cocoon gc` would abort now (None: it would run).
        self.gc_blocker: Blocker | None = None
        self.snap_refs: dict[str, frozenset[str]] = {}
        self.other_refs: dict[str, int] = {}
        self.temps: dict[str, TempEntry] = {}
        self.unreadable: dict[str, str] = {}
        self.not_dirs: frozenset[str] = frozenset()
        self.lock_problems: dict[str, str] = {}
        self._pending: dict[str, float] = {}
        self._orphan_due: dict[str, float] = {}
        #: Committed snapshots whose data dir cocoond may not read -> why.
        self._unread: dict[str, str] = {}
        self._orphan_heap: list[tuple[float, str]] = []
        self._now = float("-inf")
        self._facts_cache: dict[frozenset[str], frozenset[str]] = {}
        #: Records share a few (cpu, memory, storage): one tuple each.
        self._machines: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        self._static: dict[Key, Finding] = {}
        self._timed: dict[Key, Finding] = {}
        self._dirty: set[Key] = set()
        self._deferred_dirs: set[str] = set()
        self._deferred_hexes: set[str] = set()
        self._blobs_trusted = True
        self._name_keys: set[Key] = set()
        self._wants = Wants()
        #: Verdict memos of _dir_clean and _restore_clean (see there);
        #: emptied whenever base_files or the VM claims change.
        self._clean_dirs: dict[tuple[str, int, tuple[int, int, int]], tuple[DirContents, bool]] = {}
        self._clean_restores: dict[
            tuple[int, int, int, tuple[int, int, int]], tuple[DirContents, VMClaim, bool]
        ] = {}

    # ------------------------------------------------------------------ reads
    @property
    def snapshot_count(self) -> int:
        return len(self.records)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def blob_count(self) -> int:
        return sum(len(files) for files in self.blob_files.values())

    @property
    def db_unwatched(self) -> bool:
        """The shell cannot see snapshots.json change (its dir's inotify
        watch failed): judged like an unreadable DB, nothing that depends
        on it opens or resolves until the watch works and it is re-read."""
        return self._db_unwatched

    @db_unwatched.setter
    def db_unwatched(self, unwatched: bool) -> None:
        was_frozen = self.frozen
        self._db_unwatched = unwatched
        self._on_freeze(was_frozen)

    @property
    def frozen(self) -> bool:
        """snapshots.json is unreadable after a good load: DB-dependent
        findings stay as they were."""
        return (self.db_error is not None or self.db_unwatched) and self.db_known

    def current(self, key: Key) -> Finding | None:
        return self._static.get(key) or self._timed.get(key)

    def findings(self) -> list[Finding]:
        """All current findings (as of the last `evaluate`), worst first."""
        return sorted([*self._static.values(), *self._timed.values()], key=fk.sort_key)

    def evaluate(self, now: float) -> set[Key]:
        """Bring the time-dependent findings up to `now` and hand over every
        key that changed since the last call."""
        self._now = now
        self._flush_claims()
        self._promote_orphans(now)
        self._eval_timed(now)
        dirty, self._dirty = self._dirty, set()
        return dirty

    def next_transition(self, now: float) -> float | None:
        """Wall-clock time at which a finding changes by time alone (a
        pending record going stale, a temp file aging, a record-less dir
        falling quiet), or None."""
        times = [due for due, _ in self._orphan_heap[:1] if due > now]
        if not self.frozen:
            times += [
                created + self.pending_stale_seconds
                for created in self._pending.values()
                if created + self.pending_stale_seconds > now
            ]
        times += [
            e.mtime + self.temp_stale_seconds
            for e in self.temps.values()
            if e.mtime + self.temp_stale_seconds > now
        ]
        times += [
            vm.updated + gcmodel.CREATING_GRACE
            for facts in self.ref_facts.values()
            for vm in facts.creating.values()
            if vm.updated + gcmodel.CREATING_GRACE > now
        ]
        return min(times, default=None)

    def orphan_possible(self, key: Key) -> bool:
        """Is this (orphan) key a finding, or a dir still waiting to be quiet?"""
        return key[1] in self._orphan_due

    def compact(self) -> None:
        """Copy the per-snapshot dir facts into fresh objects. Made one at a
        time among a scan's short-lived objects, each pins a mostly empty
        memory arena; copied together once those are freed they pack
        densely, and the shell can hand the emptied arenas back to the OS
        (40 MB at 100k snapshots). Same facts, so nothing is re-evaluated.
        A dir's name is its record's key where it has one (the same string,
        not a copy: 85 bytes a snapshot); the orphans' names are copied."""
        dirs, records = self.dirs, self.records
        compact: dict[str, DirState] = {}
        for sid in records:
            if (state := dirs.get(sid)) is not None:
                compact[sid] = _fresh(state)
        if len(compact) != len(dirs):
            for name, state in dirs.items():
                if name not in compact:
                    compact[own(name)] = _fresh(state)
        self.dirs = compact

    def take_wants(self) -> Wants:
        """What the last DB loads left unknown (see `Wants`); handed over once."""
        self._flush_claims()
        wants, self._wants = self._wants, Wants()
        return wants

    def gc_view(self, now: float) -> GCView:
        """What `cocoon gc` would read, as the index holds it: the input of
        gcmodel.plan for `gc-plan`, `show` and the daemon's metrics."""
        errors = dict(self.ref_errors)
        if self.db_error is not None:
            errors[SNAPSHOT_DB] = self.db_error
        return GCView(
            root=self.root,
            now=now,
            db_errors=errors,
            image_refs={r: refs for r, refs in self.ref_sets.items() if r.endswith("/images.json")},
            ref_facts=self.ref_facts,
            snapshots=self.records,
            data_dirs=self.dirs,
            blobs=[bf for files in self.blob_files.values() for bf in files.values()],
            boot_dirs=list(self.boot_dirs),
            temps=self.temps,
            unreadable=self.unreadable,
            vm_dirs=self.vm_dirs,
            not_dirs=self.not_dirs,
            lock_problems=self.lock_problems,
            snapshot_blobs=self.snap_refs.keys(),
            pending=self._pending,
        )

    # ----------------------------------------------------------------- inputs
    def set_vm_dirs(self, module: str, kind: str, dirs: VMDirs | None) -> None:
        """cocoon's run or log dir of a VM module (`kind` "run" or "log"),
        listed by the shell; None: not configured."""
        if dirs is None:
            self.vm_dirs.pop((module, kind), None)
        else:
            self.vm_dirs[(module, kind)] = dirs
        self._eval_gc()

    def apply_listing(self, listing: Listing) -> None:
        """A full pass: replace everything, marking only what changed. A
        directory the listing could not read keeps what the index knew of it:
        unknown is not the same as empty."""
        self._set_unreadable_all(listing.unreadable)
        flipped = {p for p, found in listing.base_files.items() if self.base_files.get(p) != found}
        self.base_files.update(listing.base_files)
        if flipped:
            self._forget_clean()
        newly_listed = {d for d in (LOCALFILE, *BLOB_DIRS) if d not in listing.unreadable} - self._listed
        self._listed |= newly_listed
        if LOCALFILE not in listing.unreadable:
            changed_dirs = (
                {
                    name
                    for name in self.dirs.keys() | listing.data_dirs.keys()
                    if self.dirs.get(name) != listing.data_dirs.get(name)
                }
                if self.dirs
                else set(listing.data_dirs)  # the first listing: every entry is news
            )
            first_listing = LOCALFILE in newly_listed
            self.dirs = dict(listing.data_dirs)
            if first_listing:
                changed_dirs |= set(self.records) | self.null_ids
        else:
            changed_dirs = set()
        if newly_listed & set(BLOB_DIRS):
            self._stale_claims.update(self.claims)
            for hex_ in list(self.snap_refs) + list(self.other_refs):
                self._eval_hex(hex_)
        for path in set(self.recorded_dirs) | set(listing.recorded_dirs):
            contents = listing.recorded_contents.get(path)
            if self.recorded_dirs.get(path) != listing.recorded_dirs.get(path) or (
                self.recorded_contents.get(path) != contents
            ):
                self.set_recorded_dir(path, listing.recorded_dirs.get(path), contents)
        first_db = not self.db_known
        if not listing.keep_db:
            self.set_snapshot_db(listing.snapshot_db)
        if listing.keep_db or not first_db or not self.db_known:  # a first good DB load looked at every dir
            for name in changed_dirs:
                self._want_dir(name, self.records.get(name), first=True)
            for name in changed_dirs:
                self._eval_dir(name)
        for relpath in set(self.ref_sets) | set(self.ref_errors) | set(listing.ref_dbs):
            self.set_ref_db(relpath, listing.ref_dbs.get(relpath))
        known = {
            bf.relpath: bf
            for files in self.blob_files.values()
            for bf in files.values()
            if _blob_dir(bf.relpath) not in listing.unreadable
        }
        for relpath in set(known) | {r for r in listing.blobs if _blob_dir(r) not in listing.unreadable}:
            new = listing.blobs.get(relpath)
            if known.get(relpath) != new:
                self.set_blob(relpath, new)
        if "oci/boot" not in listing.unreadable:
            for hex_ in set(self.boot_dirs) | set(listing.boot_dirs):
                if self.boot_dirs.get(hex_) != listing.boot_dirs.get(hex_):
                    self.set_boot_dir(hex_, listing.boot_dirs.get(hex_))
        kept = {r: e for r, e in self.temps.items() if os.path.dirname(r) in listing.unreadable}
        self.temps = {**listing.temps, **kept}
        self.not_dirs = listing.not_dirs
        self.lock_problems = listing.lock_problems
        for (module, kind), dirs in listing.vm_dirs.items():
            self.set_vm_dirs(module, kind, dirs)
        if flipped:
            self._eval_base_users(flipped)
        self._eval_gc()

    def decode_db(self, data: bytes | str | None, path: str) -> IndexedDB | DBError | None:
        """snapshots.json (bytes, or text already decoded by gojson.text_go)
        straight to this index's facts (None: no file). Pure; skips the
        SnapshotRecord objects the API would build, which halves the cost of
        a 100k-record load and its memory peak."""
        if data is None:
            return None
        try:
            decoded = decode_records(
                data, path, self._facts_from_json, copy_keys=True, spans=self.absorb_rewrites, raw=False
            )
        except DBError as exc:
            return exc
        return IndexedDB(decoded.records, frozenset(decoded.null_ids), decoded.names, decoded.spans)

    def has_snapshot_key(self, sid: str) -> bool:
        """Is `sid` a key of the loaded snapshots map (null records too)?"""
        return sid in self.records or sid in self.null_ids

    def decode_db_keeping(
        self, data: bytes | str, path: str, keep: Callable[[str, str], bool]
    ) -> tuple[IndexedDB | DBError, dict[str, dict[str, Any]]]:
        """`decode_db`, also handing back the raw record (as the file has
        it) of each ID for which `keep(id, name)` holds: `show` prints the
        record it resolved to without a second parse of the DB."""
        kept: dict[str, dict[str, Any]] = {}

        def make(sid: str, fields: RecordFields, raw: dict[str, Any]) -> RecFacts:
            if raw is not NO_RAW and keep(sid, fields[1]):  # NO_RAW: keep said no already
                kept[sid] = raw
            return self._facts_from_json(sid, fields, raw)

        try:
            decoded = decode_records(data, path, make, copy_keys=False, raw=keep)
        except DBError as exc:
            return exc, kept
        return IndexedDB(decoded.records, frozenset(decoded.null_ids), decoded.names), kept

    def set_snapshot_db(self, db: SnapshotDB | IndexedDB | DBDelta[RecFacts] | DBError | None) -> None:
        """A new snapshots.json (None: the file does not exist), as the API's
        SnapshotDB, as `decode_db` made it, or as what changed since the DB
        loaded last (dbspans.absorb). A DBError keeps the last good index
        and freezes what depends on it, so an unreadable DB opens one
        finding instead of a flood of missing and orphan ones."""
        key: Key = (fk.DB_UNREADABLE, SNAPSHOT_DB)
        if isinstance(db, DBError):
            was_frozen = self.frozen
            self.db_error = db = _bare(db)
            self._on_freeze(was_frozen)
            self._put(key, rules.db_unreadable(SNAPSHOT_DB, db))
            self._set_blob_trust()
            self._eval_gc()
            return
        if isinstance(db, DBDelta):
            assert self.db_known and self.db_error is None, "a delta applies to the DB it was read against"
            self._put(key, None)
            with no_gc():
                self._load_delta(db)
            return
        self.db_error = None
        self._put(key, None)
        with no_gc():
            if db is None:
                db = IndexedDB({}, frozenset(), {})
            elif isinstance(db, SnapshotDB):
                db = IndexedDB(
                    {own(sid): self._facts_from_record(sid, rec) for sid, rec in db.snapshots.items()},
                    frozenset(db.null_ids),
                    dict(db.names),
                )
            self._load_db(db)
        self._set_blob_trust()
        self._eval_gc()

    def set_ref_db(self, relpath: str, refs: frozenset[str] | RefFacts | DBError | None) -> None:
        """An image, VM or CNI DB (None: the file does not exist, which pins
        nothing). An unreadable one keeps pinning what it pinned when last
        read, and stops every blob from being called unreferenced."""
        key: Key = (fk.DB_UNREADABLE, relpath)
        if isinstance(refs, DBError):
            self.ref_errors[relpath] = refs = _bare(refs)
            self._put(key, rules.db_unreadable(relpath, refs))
            self._set_blob_trust()
            self._eval_gc()
            return
        self.ref_errors.pop(relpath, None)
        self._put(key, None)
        claims = getattr(refs, "claims", None)
        self._clean_restores.clear()  # holds the old claims
        if claims is not None:
            self.claims[relpath] = claims
        else:
            self.claims.pop(relpath, None)
        self._stale_claims.add(relpath)
        self._owners_stale = True
        if isinstance(refs, RefFacts):
            self.ref_facts[relpath] = refs
            refs = refs.refs
        else:
            self.ref_facts.pop(relpath, None)
        self._eval_gc()
        old = self.ref_sets.get(relpath, frozenset())
        new = refs or frozenset()
        if refs is None:
            self.ref_sets.pop(relpath, None)
        else:
            self.ref_sets[relpath] = refs
        for hex_ in old - new:
            self.other_refs[hex_] -= 1
            if not self.other_refs[hex_]:
                del self.other_refs[hex_]
        for hex_ in new - old:
            if hex_ not in self.other_refs and hex_ not in self.snap_refs:
                self._wants.hexes.add(hex_)
            self.other_refs[hex_] = self.other_refs.get(hex_, 0) + 1
        for hex_ in old ^ new:
            self._eval_hex(hex_)
        self._set_blob_trust()

    def set_data_dir(self, name: str, state: DirState | None) -> None:
        """An entry of snapshot/localfile/ appeared, changed or went away (None)."""
        if state is None:
            self.dirs.pop(name, None)
        else:
            self.dirs[name] = state
        self._eval_dir(name)

    def set_recorded_dir(self, path: str, is_dir: bool | None, contents: DirContents | None = None) -> None:
        """A record's foreign data_dir, stat'ed (None: forget it), and what
        restore would find in it (None: not read)."""
        if is_dir is None:
            self.recorded_dirs.pop(path, None)
        else:
            self.recorded_dirs[path] = is_dir
        if contents is None or not is_dir:
            self.recorded_contents.pop(path, None)
        else:
            self.recorded_contents[path] = contents
        for sid in self._recorded_users.get(path, ()):
            self._eval_dir(sid)

    def set_base_files(self, found: Mapping[str, int]) -> None:
        """Files data dirs, images and VMs name, stat'ed (facts.MISSING,
        PRESENT, VALID): one re-judging pass for the whole batch."""
        flipped = {p for p, state in found.items() if self.base_files.get(p) != state}
        self.base_files.update(found)
        if flipped:
            self._forget_clean()
            self._eval_base_users(flipped)

    def _eval_base_users(self, paths: set[str]) -> None:
        """Re-judge what names any of `paths`: rare (an image removed or
        pulled again), so a pass over the dirs beats a reverse map the
        daemon would hold for 100k snapshots. Clone only cares whether a
        file is missing: a path first seen present changes no dir."""
        missing = {p for p in paths if self.base_files.get(p) == MISSING} | (paths & self._was_missing)
        self._was_missing = (self._was_missing - paths) | {
            p for p in paths if self.base_files.get(p) == MISSING
        }
        if missing:
            for sid, state in self.dirs.items():
                c = state.contents
                if c is not None and any(p in missing for _, p in (*c.ch_base, *c.fc_base)):
                    self._eval_dir(sid)
            for sid, (_, vm) in self._owner.items():
                if any(p in missing for _, p in vm.base):
                    self._eval_restore(sid)
        self._stale_claims.update(self.claims)

    def set_blob(self, relpath: str, blob: BlobFile | None) -> None:
        """An entry of a blob dir changed; `relpath` names it under the root."""
        hex_ = blob.hex if blob is not None else _hex_of(relpath)
        files = self.blob_files.setdefault(hex_, {})
        changed = files.get(relpath) != blob
        if blob is None:
            files.pop(relpath, None)
        else:
            files[relpath] = blob
        if not files:
            del self.blob_files[hex_]
        self._eval_hex(hex_)
        if changed:
            # VMs' claims read blobs only through _blob_lost: the same entry
            # again (a fresh stat of a blob a DB load just named) changes none
            # of them, and re-judging 4,000 VMs per blob is 0.1 s at 100k.
            self._stale_claims.update(self.claims)

    def set_boot_dir(self, hex_: str, disk_bytes: int | None) -> None:
        """An OCI boot dir oci/boot/<hex>/ (gc deletes it with its blob)."""
        if disk_bytes is None:
            self.boot_dirs.pop(hex_, None)
        else:
            self.boot_dirs[hex_] = disk_bytes
        self._eval_hex(hex_)

    def set_temp(self, relpath: str, entry: TempEntry | None) -> None:
        if entry is None:
            self.temps.pop(relpath, None)
        else:
            self.temps[relpath] = entry

    def set_unreadable(self, relpath: str, why: str | None) -> None:
        """A directory under the root that could not be listed (None: it can
        be again). What depends on it keeps its last known state."""
        if why is None:
            self.unreadable.pop(relpath, None)
        else:
            self.unreadable[relpath] = why
        path = os.path.join(self.root, relpath)
        self._put((fk.DIR_UNREADABLE, relpath), rules.dir_unreadable(relpath, why, path) if why else None)
        self._eval_gc()

    # -------------------------------------------------------------- internals
    def _eval_gc(self) -> None:
        """gc_blocked, and every message that says gc deletes something when
        whether gc runs at all changed."""
        stop, _unknown = gcmodel.blocker(self.gc_view(self._now))
        self._put((fk.GC_BLOCKED, "gc"), None if stop is None else rules.gc_blocked(stop, self.root))
        if stop == self.gc_blocker:
            return
        self.gc_blocker = stop
        for kind, subject in [k for k in self._static if k[0] in (fk.ORPHAN_DATA_DIR, fk.UNREFERENCED_BLOB)]:
            if kind == fk.ORPHAN_DATA_DIR:
                self._promote(subject)
            else:
                self._eval_hex(subject)  # gc_destroys too
        # Timed findings (stale_pending, stale_temp, the VM ones) are rebuilt
        # with the new message at the next `evaluate`.

    def _set_unreadable_all(self, unreadable: Mapping[str, str]) -> None:
        for relpath in set(self.unreadable) - set(unreadable):
            self.set_unreadable(relpath, None)
        for relpath, why in unreadable.items():
            if self.unreadable.get(relpath) != why:
                self.set_unreadable(relpath, why)

    def _put(self, key: Key, finding: Finding | None) -> None:
        old = self._static.get(key)
        if finding is None:
            if old is not None:
                del self._static[key]
                self._dirty.add(key)
        elif old != finding:
            self._static[key] = finding
            self._dirty.add(key)

    def _load_db(self, db: IndexedDB) -> None:
        old_records, old_nulls = self.records, self.null_ids
        self.records = db.records
        self.null_ids = db.null_ids
        self.names = db.names
        self.db_spans = db.spans
        first = not self.db_known
        self.db_known = True
        self._pending = {sid: f.created for sid, f in self.records.items() if f.pending}
        # Dir and record findings: only records that changed (or, the first
        # time, every dir) need a look, plus whatever changed while the DB
        # was unreadable. Name findings depend on `names` too, which can
        # change without any record changing: one pass over both.
        if first:
            touched: set[str] = set(self.records) | set(self.dirs) | set(self.null_ids)
        else:
            # Without a union of both key sets (1M strings at 1M records):
            # a record held over (`_facts` hands back the held one) is the
            # same object, the common case of a whole reload.
            new = self.records
            touched = {sid for sid, f in new.items() if (o := old_records.get(sid)) is not f and o != f}
            touched.update(sid for sid in old_records if sid not in new)
            touched |= old_nulls ^ self.null_ids
        touched |= self._deferred_dirs
        self._deferred_dirs = set()
        self._index_recorded(touched, old_records)
        for sid in self._needs_look(touched) if first else touched:
            self._want_dir(sid, old_records.get(sid), first)
            self._eval_dir(sid)
            if sid in self._orphan_due:
                self._wants.orphaned.add(sid)
            self._eval_record(sid)
        self._eval_names()
        if first:
            self._rebuild_snap_refs(touched, old_records)
        else:  # the same map from the touched records only (no 1M-entry rebuild)
            self._update_snap_refs(touched, old_records)
        self._stale_claims.update(self.claims)
        self.name_count = len(self.names)

    #: The per-snapshot findings a first load's fast pass must see closed.
    _SNAPSHOT_KINDS = frozenset(
        {
            fk.MISSING_DATA_DIR,
            fk.INCOMPLETE_DATA_DIR,
            fk.CLONE_BLOCKED,
            fk.RESTORE_BLOCKED,
            fk.DATA_DIR_MISMATCH,
            fk.ORPHAN_DATA_DIR,
        }
    )

    def _needs_look(self, sids: Iterable[str]) -> list[str]:
        """A first DB load's `sids` less those for which its four steps
        (_want_dir, _eval_dir, the orphan note, _eval_record) would do
        nothing but ask for the dir's contents: a pending, healthy (see
        _healthy) or not yet inspected record with its own plain dir, no
        orphan wait, and no finding open about it (the last asked for here,
        as _want_dir would). One tight pass instead of four calls each:
        0.2 s at 100k snapshots."""
        if self.frozen:
            return list(sids)
        records, dirs, due, unread, owners = (
            self.records,
            self.dirs,
            self._orphan_due,
            self._unread,
            self._owner,
        )
        clean = self._clean_dirs
        static = self._static
        wants = self._wants.contents
        opened = not self._SNAPSHOT_KINDS.isdisjoint(k[0] for k in static)
        out: list[str] = []
        for sid in sids:
            rec = records.get(sid)
            state = dirs.get(sid)
            if (
                rec is None
                or state is None
                or rec.recorded is not None
                or state.kind != "dir"
                or sid in due
                or sid in unread
                or (opened and any((kind, sid) in static for kind in self._SNAPSHOT_KINDS))
            ):
                out.append(sid)
            elif not rec.pending:
                c = state.contents
                if c is None:
                    wants.add(sid)  # to be inspected (_want_dir), and nothing else to do
                    continue
                hit = clean.get((rec.hypervisor, id(c), rec.machine))
                if hit is not None and hit[0] is c and hit[1] and sid not in owners:
                    continue
                if not self._healthy(sid, rec, state):
                    out.append(sid)
        return out

    def _load_delta(self, delta: DBDelta[RecFacts]) -> None:
        """A rewrite as what it changed: the same index `_load_db` makes
        from the whole new DB, at the cost of the entries re-read."""
        records, names = self.records, self.names
        nulls = set(self.null_ids) if self.null_ids or None in delta.added.values() else None
        old: dict[str, RecFacts | None] = {}
        for sid in delta.removed:
            old[sid] = records.pop(sid, None)
            if nulls is not None:
                nulls.discard(sid)
        for sid, facts in delta.added.items():
            old.setdefault(sid, None)
            if facts is None:
                assert nulls is not None
                nulls.add(sid)
            else:
                records[sid] = facts
        touched = {sid for sid, facts in old.items() if facts != records.get(sid)}
        if nulls is not None:
            new_nulls = frozenset(nulls)
            touched |= self.null_ids ^ new_nulls
            self.null_ids = new_nulls
        old_names: dict[str, str | None] = {}
        for name in delta.names_removed:
            old_names[name] = names.pop(name, None)
        for name, sid in delta.names_added.items():
            old_names.setdefault(name, None)
            names[name] = sid
        self.db_spans = delta.spans
        for sid in touched:
            rec = records.get(sid)
            if rec is not None and rec.pending:
                self._pending[sid] = rec.created
            else:
                self._pending.pop(sid, None)
        touched |= self._deferred_dirs
        self._deferred_dirs = set()
        self._index_recorded(touched, old)
        for sid in touched:
            self._want_dir(sid, old.get(sid), False)
            self._eval_dir(sid)
            if sid in self._orphan_due:
                self._wants.orphaned.add(sid)
            self._eval_record(sid)
        # Name findings whose inputs changed: see _eval_names_of.
        subjects = {k[1] for k in self._name_keys}
        for sid in touched:
            subjects.add(sid)
            for facts in (old.get(sid), records.get(sid)):
                if facts is not None and facts.name:
                    subjects.add(facts.name)
        for name, was in old_names.items():
            now = names.get(name)
            if was != now:
                subjects.add(name)
                subjects.update(s for s in (was, now) if s is not None)
        self._eval_names_of(subjects)
        self._update_snap_refs(touched, old)
        self.name_count = len(names)

    def _want_dir(self, sid: str, old: RecFacts | None, first: bool) -> None:
        """Ask the shell for a fresh look at a dir whose record changed:
        contents seen while the record was pending (or absent: an import)
        may be from before the dir was filled."""
        rec = self.records.get(sid)
        state = self.dirs.get(sid)
        if state is None or state.kind == "other":
            return
        if rec is None:
            if state.last_write is None:
                self._wants.activity.add(sid)
        elif not rec.pending and rec.recorded is None:
            stale = not first and (old is None or old.pending)
            if state.contents is None or stale:
                self._wants.contents.add(sid)

    def _index_recorded(self, touched: set[str], old_records: Mapping[str, RecFacts | None]) -> None:
        """Which records read which foreign data_dir, for `set_recorded_dir`."""
        dropped = set()
        for sid in touched:
            old, new = old_records.get(sid), self.records.get(sid)
            if old is not None and old.recorded:
                self._recorded_users.get(old.recorded, set()).discard(sid)
                dropped.add(old.recorded)
            if new is not None and new.recorded:
                self._recorded_users.setdefault(new.recorded, set()).add(sid)
                self._wants.recorded.add(new.recorded)  # what is known of it may be old
        for path in dropped:
            if not self._recorded_users.get(path):
                self._recorded_users.pop(path, None)

    def _facts_from_record(self, sid: str, rec: SnapshotRecord) -> RecFacts:
        hypervisor = rec.extra.get("hypervisor")
        return self._facts(
            sid,
            rec.id,
            rec.name,
            rec.data_dir,
            rec.pending,
            rec.image_blob_ids,
            rec.created_at,
            hypervisor if isinstance(hypervisor, str) else "",
            rec.nics,
            (rec.cpu, rec.memory, rec.storage),
        )

    def record_facts(self, sid: str, fields: RecordFields) -> RecFacts:
        """One record's facts, as decode_db makes them: for `show`, which
        makes only those of the few records it reads."""
        return self._facts_from_json(sid, fields, NO_RAW)

    def _facts_from_json(self, sid: str, fields: RecordFields, _raw: dict[str, Any]) -> RecFacts:
        rid, name, _, _, ddir, cpu, memory, storage, nics, pending, blobs, created_at, _, hypervisor = fields
        return self._facts(
            sid, rid, name, ddir, pending, blobs, created_at, hypervisor, nics, (cpu, memory, storage)
        )

    def _facts(
        self,
        sid: str,
        rid: str,
        name: str,
        ddir: str,
        pending: bool,
        blob_ids: set[str],
        created_at: datetime,
        hypervisor: str,
        nics: int = 0,
        machine: tuple[int, int, int] = (0, 0, 0),
    ) -> RecFacts:
        """The facts the findings need. Strings kept are copied (`own`) so
        the index does not pin the parse's memory."""
        blobs = frozenset(blob_ids)
        kept = self._facts_cache.get(blobs)
        if kept is None:
            bound(self._facts_cache)  # lives as long as the daemon: bounded
            self._facts_cache[blobs] = blobs
        else:
            blobs = kept
        recorded: str | None = None
        if ddir != self._localfile_prefix + sid:
            norm = os.path.normpath(ddir) if ddir else ""
            if not ddir:
                recorded = ""
            elif os.path.dirname(norm) not in self._localfile_dirs or os.path.basename(norm) != sid:
                recorded = own(ddir)
        facts = RecFacts(
            own(name),
            pending,
            created_at.timestamp() if pending else 0.0,
            blobs,
            rid if rid != sid else None,
            recorded,
            _HYPERVISORS.get(hypervisor) or own(hypervisor),
            nics,
            self._machines.setdefault(machine, machine),
        )
        # A whole reload decodes every record again while the old index is
        # still held: a record equal to the one held is the held one, not
        # a second copy (about 200 bytes a record at the reload's peak).
        held = self.records.get(sid)
        return held if held == facts else facts

    def _eval_dir(self, sid: str) -> None:
        """orphan_data_dir, missing_data_dir, incomplete_data_dir for one ID: O(1)."""
        if self.frozen:
            self._deferred_dirs.add(sid)
            return
        rec = self.records.get(sid)
        state = self.dirs.get(sid)
        static = self._static
        if (
            rec is not None
            and state is not None
            and state.kind == "dir"
            and rec.recorded is None
            and sid not in self._orphan_due
            and sid not in self._unread
            and (fk.MISSING_DATA_DIR, sid) not in static
            and (fk.INCOMPLETE_DATA_DIR, sid) not in static
            and (fk.CLONE_BLOCKED, sid) not in static
            and (fk.RESTORE_BLOCKED, sid) not in static
            and (rec.pending or state.contents is None or self._healthy(sid, rec, state))
        ):
            # Pending, not inspected yet, or healthy: the common case, in
            # which the full pass below would put nothing and ask for nothing.
            return
        known = self.db_known and LOCALFILE in self._listed
        # Orphans wait until the dir has been quiet (an import still writing).
        due = None
        if known and rec is None and state is not None and state.kind != "other":
            due = (state.last_write or 0.0) + self.orphan_quiet_seconds
        self._set_orphan_due(sid, due)
        missing = incomplete = blocked = None
        if rec is not None and not rec.pending and (known or rec.recorded is not None):
            recorded_is_dir = self.recorded_dirs.get(rec.recorded) if rec.recorded else None
            missing = rules.missing_data_dir(sid, rec, state, recorded_is_dir, self.root)
            if missing is None and known:
                read = self._read_dir(sid, rec, state)
                incomplete = rules.incomplete_data_dir(sid, rec, read, self.root)
                if incomplete is None:
                    self._want_base(read)
                    blocked = rules.clone_blocked(sid, rec, read, self.base_files, self.root)
        self._put((fk.MISSING_DATA_DIR, sid), missing)
        self._put((fk.INCOMPLETE_DATA_DIR, sid), incomplete)
        self._put((fk.CLONE_BLOCKED, sid), blocked)
        self._eval_restore(sid)
        unread = None
        if rec is not None and not rec.pending and rec.recorded is None and state is not None:
            unread = state.contents.unreadable if state.contents is not None else None
        self._set_unread(sid, unread)

    def _read_dir(self, sid: str, rec: RecFacts, state: DirState | None) -> DirState | None:
        """The data dir restore and clone read: the canonical one, or the
        record's foreign data_dir (snapshot/localfile/localfile.go:63-73,227)."""
        if rec.recorded is None:
            return state
        contents = self.recorded_contents.get(rec.recorded) if rec.recorded else None
        return DirState("dir", 0, contents) if contents is not None else None

    def _eval_restore(self, sid: str) -> None:
        """restore_blocked for one snapshot: its disks against its VM's, once
        restore's own checks on the dir passed."""
        if self.frozen:
            self._deferred_dirs.add(sid)
            return
        owner = self._owner.get(sid)
        key: Key = (fk.RESTORE_BLOCKED, sid)
        if owner is None:
            if key in self._static:
                self._put(key, None)
            return
        rec, state, static = self.records.get(sid), self.dirs.get(sid), self._static
        finding = None
        if (
            rec is not None
            and not rec.pending
            and LOCALFILE in self._listed
            and (fk.MISSING_DATA_DIR, sid) not in static
            and (fk.INCOMPLETE_DATA_DIR, sid) not in static
        ):
            if key not in static and self._restore_clean(sid, rec, state, owner):
                return
            read = self._read_dir(sid, rec, state)
            finding = rules.restore_blocked(sid, rec, read, owner[0], owner[1], self.base_files, self.root)
        self._put(key, finding)

    # A host has few distinct data dirs (snapshots of one VM share one
    # DirContents: scan interns them) and few VMs, so whether a committed
    # snapshot is healthy is worked out once per (hypervisor, DirContents,
    # recorded cpu/memory/storage) and per (DirContents, VM, NIC count,
    # cpu/memory/storage), by the rules themselves on the first such
    # snapshot: their verdict reads nothing else of the snapshot (its ID
    # and name only word a finding; a rule that comes to read another
    # record field must add it to these keys). At 100k snapshots that is
    # ~0.5 s of check. The memos hold their keys' objects, so an id stays
    # theirs.
    _CLEAN_MEMO = 4096

    def _healthy(self, sid: str, rec: RecFacts, state: DirState) -> bool:
        """For a committed record whose own dir was inspected: would
        _eval_dir's full pass put no finding and want nothing for it?"""
        if not self._dir_clean(sid, rec, state):
            return False
        owner = self._owner.get(sid)
        return owner is None or self._restore_clean(sid, rec, state, owner)

    def _dir_clean(self, sid: str, rec: RecFacts, state: DirState) -> bool:
        """Readable, no incomplete_data_dir, no clone_blocked, and every
        base file named already stat'ed (_want_base would add none)."""
        c = state.contents
        assert c is not None
        key = (rec.hypervisor, id(c), rec.machine)
        hit = self._clean_dirs.get(key)
        if hit is not None and hit[0] is c:
            return hit[1]
        known = self.base_files
        clean = (
            c.unreadable is None
            and rules.incomplete_data_dir(sid, rec, state, self.root) is None
            and all(p in known for _, p in (*c.ch_base, *c.fc_base))
            and rules.clone_blocked(sid, rec, state, known, self.root) is None
        )
        if len(self._clean_dirs) >= self._CLEAN_MEMO:
            self._clean_dirs.clear()
        self._clean_dirs[key] = (c, clean)
        return clean

    def _restore_clean(
        self, sid: str, rec: RecFacts, state: DirState | None, owner: tuple[str, VMClaim]
    ) -> bool:
        """Would rules.restore_blocked say nothing of this snapshot of a
        committed record with its own, readable dir, onto this VM? Besides
        the dir and the VM it reads the snapshot's NIC count and recorded
        cpu/memory/storage: in the key."""
        c = state.contents if state is not None else None
        if rec.recorded is not None or c is None or c.unreadable is not None:
            return False  # a foreign dir, or none read: the rule itself answers
        vm = owner[1]
        key = (id(c), id(vm), rec.nics, rec.machine)
        hit = self._clean_restores.get(key)
        if hit is not None and hit[0] is c and hit[1] is vm:
            return hit[2]
        clean = rules.restore_blocked(sid, rec, state, owner[0], vm, self.base_files, self.root) is None
        if len(self._clean_restores) >= self._CLEAN_MEMO:
            self._clean_restores.clear()
        self._clean_restores[key] = (c, vm, clean)
        return clean

    def _forget_clean(self) -> None:
        """Base files or VM claims changed: every memoised verdict may."""
        self._clean_dirs.clear()
        self._clean_restores.clear()

    def _want_base(self, state: DirState | None) -> None:
        """Ask the shell to stat the base files a dir names that it has not."""
        c = state.contents if state is not None else None
        if c is not None:
            known = self.base_files
            self._wants.base.update(p for _, p in (*c.ch_base, *c.fc_base) if p not in known)

    def _eval_claims(self, relpath: str) -> None:
        """image_unusable, vm_snapshot_gone, vm_base_missing for one image or
        VM DB: O(its entries). vm_snapshot_gone waits for a good snapshot DB
        (and keeps its findings while that is unreadable)."""
        claims = self.claims.get(relpath, ())
        judge_snapshots = self.db_known and not self.frozen
        want: dict[Key, Finding] = {}
        for claim in claims:
            files = claim.files if isinstance(claim, ImageClaim) else claim.base
            self._wants.base.update(p for _, p in files if p not in self.base_files)
            if isinstance(claim, ImageClaim):
                found = [rules.image_unusable(relpath, claim, self.base_files)]
            else:
                lost = [h for h in claim.blobs if self._blob_lost(h)]
                found = [rules.vm_base_missing(relpath, claim, self.base_files, lost)]
                if judge_snapshots:
                    found.append(rules.vm_snapshot_gone(relpath, claim, self.records.keys()))
            want.update((f.key, f) for f in found if f is not None)
        old = self._claim_keys.get(relpath, set())
        for key in old - want.keys():
            if key[0] != fk.VM_SNAPSHOT_GONE or judge_snapshots:
                self._put(key, None)
            else:
                want[key] = self._static[key]
        for key, finding in want.items():
            self._put(key, finding)
        if want:
            self._claim_keys[relpath] = set(want)
        else:
            self._claim_keys.pop(relpath, None)

    def _flush_claims(self) -> None:
        if self._owners_stale:
            self._owners_stale = False
            self._index_owners()
        stale, self._stale_claims = self._stale_claims, set()
        for relpath in stale:
            self._eval_claims(relpath)

    def _index_owners(self) -> None:
        """Which VM each snapshot belongs to; re-judge the snapshots whose
        VM (or its disks) changed."""
        vms = [
            (relpath, claim)
            for relpath, claims in self.claims.items()
            for claim in claims
            if isinstance(claim, VMClaim)
        ]
        owners: dict[str, tuple[str, VMClaim]] = {}
        # One (relpath, claim) tuple per VM, shared by its snapshots (72 B
        # each at 1M); reversed: the first VM listing a snapshot wins.
        for entry in reversed(vms):
            owners.update(dict.fromkeys(entry[1].snapshot_ids, entry))
        old, self._owner = self._owner, owners
        records, dirs, static, memo = self.records, self.dirs, self._static, self._clean_restores
        skip = not self.frozen
        restore_blocked = fk.RESTORE_BLOCKED
        opened = any(key[0] == restore_blocked for key in static)
        # A first mapping runs VM by VM, and a VM's snapshots mostly share
        # one DirState (scan's one-shot pass): the verdict of the last
        # (state, VM, NIC count, cpu/memory/storage) is reused without a lookup.
        last: tuple[DirState | None, tuple[str, VMClaim] | None, RecFacts | None] = (None, None, None)
        changed = ((sid, owners.get(sid)) for sid in old.keys() | owners.keys()) if old else owners.items()
        for sid, owner in changed:
            if old and old.get(sid) == owner:
                continue
            rec = records.get(sid)
            if rec is None:
                continue
            if (
                skip
                and owner is not None
                and rec.recorded is None
                and not (opened and (restore_blocked, sid) in static)
            ):
                # A (dir, VM) pair restore_blocked found nothing on (see
                # _restore_clean): nothing to put, as _eval_restore would.
                state = dirs.get(sid)
                if state is None or state.contents is None:
                    continue  # restore_blocked says nothing of a dir not inspected
                if (
                    state is last[0]
                    and owner is last[1]
                    and last[2] is not None
                    and (rec.nics, rec.machine) == (last[2].nics, last[2].machine)
                ):
                    continue
                c = state.contents
                hit = memo.get((id(c), id(owner[1]), rec.nics, rec.machine))
                if hit is not None and hit[2] and hit[0] is c and hit[1] is owner[1]:
                    last = (state, owner, rec)
                    continue
            self._eval_restore(sid)

    def _blob_lost(self, hex_: str) -> bool:
        """No usable file for this hex in either blob dir (both listed)."""
        if not self._listed.issuperset(BLOB_DIRS):
            return False
        return not any(f.usable for f in self.blob_files.get(hex_, {}).values())

    def _set_unread(self, sid: str, why: str | None) -> None:
        if why is None:
            if self._unread.pop(sid, None) is None:
                return
        elif self._unread.get(sid) == why:
            return
        else:
            self._unread[sid] = why
        example = next(iter(self._unread), None)
        self._put(
            (fk.DIR_UNREADABLE, rules.DATA_DIRS),
            None
            if example is None
            else rules.data_dirs_unreadable(len(self._unread), example, self._unread[example], self.root),
        )

    def _set_orphan_due(self, sid: str, due: float | None) -> None:
        """Record when a record-less dir falls quiet; `evaluate(now)` turns
        it into a finding then (all at the same `now`, so that orphans a DB
        change made appear together)."""
        key: Key = (fk.ORPHAN_DATA_DIR, sid)
        if due is None:
            self._orphan_due.pop(sid, None)
            self._put(key, None)
            return
        old = self._orphan_due.get(sid)
        self._orphan_due[sid] = due
        if old == due:
            if key in self._static:
                self._promote(sid)  # still quiet: (re)state it, its message may have changed
            return
        self._put(key, None)  # new, or written again: not quiet yet
        heapq.heappush(self._orphan_heap, (due, sid))

    def _promote_orphans(self, now: float) -> None:
        heap = self._orphan_heap
        while heap and heap[0][0] <= now and not self.frozen:
            due, sid = heapq.heappop(heap)
            if self._orphan_due.get(sid) == due:
                self._promote(sid)

    def _promote(self, sid: str) -> None:
        state = self.dirs.get(sid)
        finding = None
        if state is not None and sid not in self.records:
            finding = rules.orphan_data_dir(sid, state, sid in self.null_ids, self.root, self.gc_blocker)
        self._put((fk.ORPHAN_DATA_DIR, sid), finding)

    def _eval_record(self, sid: str) -> None:
        """data_dir_mismatch for one record."""
        rec = self.records.get(sid)
        key: Key = (fk.DATA_DIR_MISMATCH, sid)
        if rec is None or not rec.recorded:
            if key in self._static:
                self._put(key, None)
            return
        self._put(key, rules.data_dir_mismatch(sid, rec, self.root))

    def _eval_names(self) -> None:
        want = rules.name_findings(self.records, self.null_ids, self.names)
        for key in self._name_keys - want.keys():
            self._put(key, None)
        for key, finding in want.items():
            self._put(key, finding)
        self._name_keys = set(want)

    def _eval_names_of(self, subjects: set[str]) -> None:
        """The name findings of `subjects` only, exactly as _eval_names
        judges them. A subject's finding reads its record (or null), the
        names entry of that record's name, its own names entry and the
        record that entry points at: those, and nothing else, are handed to
        rules.name_findings. A subject whose finding may change after a
        rewrite is a touched ID, an old or new name of one, a changed name,
        an ID such a name pointed or points at, or one that has a finding
        now (any other subject's inputs were consistent and untouched)."""
        records, names, nulls = self.records, self.names, self.null_ids
        sub_records: dict[str, RecFacts] = {}
        sub_names: dict[str, str] = {}
        for s in subjects:
            rec = records.get(s)
            if rec is not None:
                sub_records[s] = rec
                if rec.name and rec.name in names:
                    sub_names[rec.name] = names[rec.name]
            if s in names:
                target = sub_names[s] = names[s]
                if target in records:
                    sub_records[target] = records[target]
        want = {
            key: finding
            for key, finding in rules.name_findings(sub_records, subjects & nulls, sub_names).items()
            if key[1] in subjects
        }
        for key in [k for k in self._name_keys if k[1] in subjects and k not in want]:
            self._put(key, None)
            self._name_keys.discard(key)
        for key, finding in want.items():
            self._put(key, finding)
            self._name_keys.add(key)

    def _update_snap_refs(self, touched: Iterable[str], old_records: Mapping[str, RecFacts | None]) -> None:
        """_rebuild_snap_refs for the touched records only: the same map,
        the same hexes looked at again."""
        adds: dict[str, set[str]] = {}
        drops: dict[str, set[str]] = {}
        hexes: set[str] = set()
        for sid in touched:
            before, after = old_records.get(sid), self.records.get(sid)
            b = before.blobs if before is not None else frozenset()
            a = after.blobs if after is not None else frozenset()
            hexes |= a | b
            for hex_ in b - a:
                drops.setdefault(hex_, set()).add(sid)
            for hex_ in a - b:
                adds.setdefault(hex_, set()).add(sid)
        refs = self.snap_refs
        for hex_ in adds.keys() | drops.keys():
            users = (refs.get(hex_, frozenset()) - drops.get(hex_, set())) | adds.get(hex_, set())
            if not users:
                refs.pop(hex_, None)
            else:
                if hex_ not in refs and hex_ not in self.other_refs:
                    self._wants.hexes.add(hex_)
                refs[hex_] = frozenset(users)
        hexes |= self._deferred_hexes
        self._deferred_hexes = set()
        for hex_ in hexes:
            self._eval_hex(hex_)

    def _rebuild_snap_refs(self, touched: Iterable[str], old_records: Mapping[str, RecFacts]) -> None:
        """Blob references from snapshots; a hex needs a new look when its
        set of users changed, or when one of its users did (a missing_blob
        names a user)."""
        # Records share their blob sets (interned by _facts): grouped by
        # set first, each hex's users come in one update per set.
        by_blobs: dict[frozenset[str], list[str]] = {}
        for sid, facts in self.records.items():
            if facts.blobs:
                by_blobs.setdefault(facts.blobs, []).append(sid)
        refs: dict[str, set[str]] = {}
        for blobs, sids in by_blobs.items():
            for hex_ in blobs:
                refs.setdefault(hex_, set()).update(sids)
        new = {h: frozenset(s) for h, s in refs.items()}
        old, self.snap_refs = self.snap_refs, new
        hexes = {h for h in old.keys() | new.keys() if old.get(h) != new.get(h)}
        self._wants.hexes |= {h for h in new.keys() - old.keys() if h not in self.other_refs}
        # Every hex a record names now is in `hexes` already when none was
        # referenced before (a first load): only the old records' remain.
        users = (old_records, self.records) if old else (old_records,)
        for sid in touched if old_records or old else ():
            for known in users:
                user = known.get(sid)
                if user is not None:
                    hexes.update(user.blobs)
        hexes |= self._deferred_hexes
        self._deferred_hexes = set()
        for hex_ in hexes:
            self._eval_hex(hex_)

    def _set_blob_trust(self) -> None:
        """Fail closed, as cocoon's gc does: while any DB that can pin a blob
        is unreadable, no blob is called unreferenced."""
        # The CNI DB pins no blob: gc aborts on it (gc_blocked), but what is
        # unreferenced stays known.
        refs_readable = not (self.ref_errors.keys() - {CNI_DB})
        trusted = self.db_known and self.db_error is None and refs_readable
        if self._held_unref and (refs_readable or not self.frozen):
            held, self._held_unref = self._held_unref, {}
            if self.frozen:
                for key, finding in held.items():
                    self._put(key, finding)
        if trusted != self._blobs_trusted:
            self._blobs_trusted = trusted
            for hex_ in set(self.blob_files) | set(self.boot_dirs):
                self._eval_hex(hex_)

    def _on_freeze(self, was_frozen: bool) -> None:
        """snapshots.json just froze (unreadable, or unwatched): what depends
        on it stays as a full pass of the disk then, with the last good DBs,
        would say. An unreferenced blob only an unreadable image/VM DB kept
        closed (issue 18: none new meanwhile) is such a finding: held, and
        opened once those DBs read again (_set_blob_trust)."""
        if was_frozen or not self.frozen:
            return
        self._held_unref = {}
        if not (self.ref_errors.keys() - {CNI_DB}):
            return  # every unreferenced blob is open already
        for hex_ in set(self.blob_files) | set(self.boot_dirs):
            key: Key = (fk.UNREFERENCED_BLOB, hex_)
            if key in self._static or self.snap_refs.get(hex_) or self.other_refs.get(hex_, 0):
                continue
            files = self.blob_files.get(hex_, {})
            unref = rules.unreferenced_blob(hex_, files, self.boot_dirs.get(hex_), self.root, self.gc_blocker)
            if unref is None:
                continue
            self._held_unref[key] = unref
            wide = gcmodel.oci_boot_destroys(self.root, hex_)
            relpath = f"oci/blobs/{hex_}.erofs"
            blob = files.get(relpath)
            if wide is not None and blob is not None and blob.gc_sees:
                self._held_unref[(fk.GC_DESTROYS, relpath)] = rules.gc_destroys_oci(
                    relpath, wide, self.root, self.gc_blocker
                )

    def _eval_hex(self, hex_: str) -> None:
        """missing_blob and unreferenced_blob for one hex: O(1)."""
        if self.frozen:
            self._deferred_hexes.add(hex_)
            return
        sids = self.snap_refs.get(hex_, frozenset())
        others = self.other_refs.get(hex_, 0)
        files = self.blob_files.get(hex_, {})
        missing = None
        if self._listed.issuperset(BLOB_DIRS) or any(f.usable for f in files.values()):
            # The first user's record words a finding, which a usable file
            # rules out: no min() over thousands of users per blob then.
            first = min(sids) if sids and not any(f.usable for f in files.values()) else None
            missing = rules.missing_blob(
                hex_, sids, others, files, self.records.get(first) if first else None, self.root
            )
        self._put((fk.MISSING_BLOB, hex_), missing)
        unref = None
        key: Key = (fk.UNREFERENCED_BLOB, hex_)
        if not sids and not others and self._blobs_trusted:
            unref = rules.unreferenced_blob(hex_, files, self.boot_dirs.get(hex_), self.root, self.gc_blocker)
        elif not sids and not others and key in self._static:
            # A DB that could pin it is unreadable: whether it is still
            # unreferenced is unknown, not fixed. What was open stays open
            # (and is not opened a second time once the DB reads again);
            # nothing new is called unreferenced meanwhile.
            unref = rules.unreferenced_blob(hex_, files, self.boot_dirs.get(hex_), self.root, self.gc_blocker)
        self._put(key, unref)
        self._eval_destroys(hex_, unref is not None)

    def _eval_destroys(self, hex_: str, unreferenced: bool) -> None:
        """gc_destroys for an OCI blob stem gc turns into oci/boot or oci/
        (gcmodel.oci_boot_destroys): only such stems ever hold one."""
        wide = gcmodel.oci_boot_destroys(self.root, hex_)
        if wide is None:
            return
        relpath = f"oci/blobs/{hex_}.erofs"
        blob = self.blob_files.get(hex_, {}).get(relpath)
        seen = unreferenced and blob is not None and blob.gc_sees
        finding = rules.gc_destroys_oci(relpath, wide, self.root, self.gc_blocker) if seen else None
        self._put((fk.GC_DESTROYS, relpath), finding)

    def _eval_timed(self, now: float) -> None:
        """pending/stale_pending and stale_temp: O(pending + temp files)."""
        timed: dict[Key, Finding] = {}
        gc = self.gc_blocker
        if self.frozen:
            # As they were, but saying that gc deletes nothing now.
            for k, f in self._timed.items():
                if k[0] in DB_DEPENDENT:
                    if k[0] == fk.STALE_PENDING and k[1] in self.records:
                        age = f.age_seconds or 0.0
                        f = rules.pending(k[1], self.records[k[1]], age, self.pending_stale_seconds, gc)
                    timed[k] = f
        else:
            for sid, created in self._pending.items():
                finding = rules.pending(
                    sid, self.records[sid], max(0.0, now - created), self.pending_stale_seconds, gc
                )
                timed[finding.key] = finding
                wide = (
                    gcmodel.snapshot_destroys(self.root, sid)
                    if created < now - gcmodel.PENDING_GRACE
                    else None
                )
                if wide is not None:
                    timed[(fk.GC_DESTROYS, sid)] = rules.gc_destroys_snapshot(sid, wide, self.root, gc)
        sweeping = self._sweeping(now) if any(e.gc_removes for e in self.temps.values()) else {}
        for relpath, entry in self.temps.items():
            temp = rules.stale_temp(
                relpath,
                entry,
                max(0.0, now - entry.mtime),
                self.temp_stale_seconds,
                self.root,
                gc,
                sweeping.get(relpath.split("/", 1)[0]),
            )
            if temp is not None:
                timed[temp.key] = temp
        for finding in self._vm_findings(now):
            timed[finding.key] = finding
        old = self._timed
        self._dirty.update(k for k in old.keys() | timed.keys() if old.get(k) != timed.get(k))
        self._timed = timed

    def _sweeping(self, now: float) -> dict[str, bool | None]:
        """Per image module: does the next gc delete one of its blobs (and so
        sweep its temp dir)? Unknown (None) while blobs cannot be judged."""
        if not self._blobs_trusted:
            return {}
        view = self.gc_view(now)
        used = gcmodel.used_blobs(view)
        return {
            module: any(i.what != "temp" for i in gcmodel.image_targets(module, view, used))
            for module in gcmodel.IMAGE_MODULES
        }

    def _vm_findings(self, now: float) -> list[Finding]:
        """stale_creating_vm and orphan_vm_dir, from the same predicates as
        gc-plan (gcmodel): O(VM records creating + VM dirs). Nothing is said
        of a VM DB that cannot be read."""
        out: list[Finding] = []
        for module, backend in gcmodel.VM_MODULES.items():
            relpath = f"{backend}/db/vms.json"
            if relpath in self.ref_errors:
                continue
            facts = self.ref_facts.get(relpath, RefFacts(frozenset()))
            for vm_id, vm in facts.creating.items():
                if gcmodel.creating_dropped(vm.updated, now):
                    out.append(rules.stale_creating_vm(module, vm_id, vm, now - vm.updated, self.gc_blocker))
            for kind in ("run", "log"):
                dirs = self.vm_dirs.get((module, kind))
                if dirs is None or not dirs.subdirs:
                    continue
                for vm_id in sorted(dirs.subdirs - facts.ids - gcmodel.RESERVED_VM_DIRS):
                    path = os.path.join(dirs.path, vm_id)
                    out.append(rules.orphan_vm_dir(module, vm_id, path, kind, self.gc_blocker))
        return out


#: Interned hypervisor names (100k records share two strings).
_HYPERVISORS = {h: h for h in (rules.CLOUD_HYPERVISOR, rules.FIRECRACKER, "")}


def _hex_of(relpath: str) -> str:
    return os.path.basename(relpath).rsplit(".", 1)[0]


def _blob_dir(relpath: str) -> str:
    return relpath.rpartition("/")[0]
