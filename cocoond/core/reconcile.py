"""The reconcile core: what cocoon's DBs say against what is on disk.

No I/O here. The scanner (scan.py) turns the disk into a `Listing` and into
single-entry updates; this module turns those into findings. The same index
serves `check` (one `apply_listing`, then `findings`) and the daemon (one
`apply_listing` at start and on every safety-net rescan, then one `set_*`
call per changed entry). A data dir, blob or temp-file update costs O(1);
only a new snapshot DB costs O(records), because it has to be parsed anyway.

Time enters only through `now` (wall-clock seconds), for the pending and
temp-file ages, so every result is a function of the inputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from cocoond.core import findings as fk
from cocoond.core.findings import Finding, Key
from cocoond.errors import DBError
from cocoond.storage.memory import own
from cocoond.storage.records import RecordFields, SnapshotDB, SnapshotRecord, decode_records, no_gc

SNAPSHOT_DB = "snapshot/db/snapshots.json"
LOCALFILE = "snapshot/localfile"
#: cocoon gc drops pending records older than this.
PENDING_GC_HOURS = 24


@dataclass(frozen=True, slots=True)
class BlobFile:
    """A file in a blob dir. `hex` is its name without the suffix."""

    relpath: str
    hex: str
    regular: bool
    size: int
    disk_bytes: int

    @property
    def usable(self) -> bool:
        """Cocoon boots from a regular, non-empty file only."""
        return self.regular and self.size > 0


@dataclass(slots=True)
class Listing:
    """Everything the reconciler needs from disk, taken in one pass."""

    snapshot_db: SnapshotDB | IndexedDB | DBError | None = None  # None: no DB file yet
    ref_dbs: dict[str, frozenset[str] | DBError] = field(default_factory=dict)  # existing files only
    data_dirs: dict[str, bool] = field(default_factory=dict)  # entry name -> is a directory
    blobs: dict[str, BlobFile] = field(default_factory=dict)  # relpath -> file
    temps: dict[str, float] = field(default_factory=dict)  # relpath -> mtime
    keep_db: bool = False  # the snapshot DB was not read: keep the index's


@dataclass(frozen=True, slots=True)
class IndexedDB:
    """snapshots.json as the index holds it."""

    records: dict[str, RecFacts]
    null_ids: frozenset[str]
    names: dict[str, str]


class RecFacts(NamedTuple):
    """The little the reconciler keeps of a record: the daemon holds 100k of
    these, so no more than the findings need."""

    name: str
    pending: bool
    created: float  # epoch seconds; only meaningful while pending
    blobs: frozenset[str]
    id_mismatch: str | None  # the record's own `id` when it differs from its key
    data_dir_mismatch: str | None  # the record's `data_dir` when it is not ours


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
        root_aliases: Iterable[str] = (),
    ) -> None:
        self.root = os.path.abspath(root)
        self.pending_stale_seconds = pending_stale_seconds
        self.temp_stale_seconds = temp_stale_seconds
        # Spellings of our localfile dir that a record's data_dir may use (the
        # shell passes the root's realpath: the pure core cannot resolve links).
        self._localfile_dirs = {
            os.path.normpath(os.path.join(os.path.abspath(r), LOCALFILE)) for r in (self.root, *root_aliases)
        }
        self._localfile_prefix = os.path.join(self.root, LOCALFILE) + "/"
        self.db_known = False  # a good snapshot DB has been seen (or there is none)
        self.db_error: DBError | None = None
        self.records: dict[str, RecFacts] = {}
        self.null_ids: frozenset[str] = frozenset()
        # `names` is needed only while a DB is loaded; the daemon holds 100k
        # records, so between loads only its size is kept.
        self.names: dict[str, str] = {}
        self.name_count = 0
        self.dirs: dict[str, bool] = {}
        self.blob_files: dict[str, dict[str, BlobFile]] = {}
        self.ref_sets: dict[str, frozenset[str]] = {}  # last good refs of each image/VM DB
        self.ref_errors: dict[str, DBError] = {}
        self.snap_refs: dict[str, frozenset[str]] = {}
        self.other_refs: dict[str, int] = {}
        self.temps: dict[str, float] = {}
        self._pending: dict[str, float] = {}
        self._facts_cache: dict[frozenset[str], frozenset[str]] = {}
        self._static: dict[Key, Finding] = {}
        self._timed: dict[Key, Finding] = {}
        self._dirty: set[Key] = set()
        self._blobs_trusted = True
        self._name_keys: set[Key] = set()

    # ------------------------------------------------------------------ reads
    @property
    def snapshot_count(self) -> int:
        return len(self.records)

    @property
    def blob_count(self) -> int:
        return sum(len(files) for files in self.blob_files.values())

    def current(self, key: Key) -> Finding | None:
        return self._static.get(key) or self._timed.get(key)

    def findings(self) -> list[Finding]:
        """All current findings (as of the last `evaluate`), worst first."""
        return sorted([*self._static.values(), *self._timed.values()], key=fk.sort_key)

    def evaluate(self, now: float) -> set[Key]:
        """Bring the time-dependent findings up to `now` and hand over every
        key that changed since the last call."""
        self._eval_timed(now)
        dirty, self._dirty = self._dirty, set()
        return dirty

    def next_transition(self, now: float) -> float | None:
        """Wall-clock time at which a finding changes by time alone (a
        pending record going stale, a temp file aging), or None."""
        times = [
            created + self.pending_stale_seconds
            for created in self._pending.values()
            if created + self.pending_stale_seconds > now
        ]
        times += [
            m + self.temp_stale_seconds for m in self.temps.values() if m + self.temp_stale_seconds > now
        ]
        return min(times, default=None)

    # ----------------------------------------------------------------- inputs
    def apply_listing(self, listing: Listing) -> None:
        """A full pass: replace everything, marking only what changed."""
        changed_dirs = {
            name
            for name in self.dirs.keys() | listing.data_dirs.keys()
            if self.dirs.get(name) != listing.data_dirs.get(name)
        }
        self.dirs = dict(listing.data_dirs)
        first = not self.db_known
        if not listing.keep_db:
            self.set_snapshot_db(listing.snapshot_db)
        if listing.keep_db or not first or not self.db_known:  # a first good DB load looked at every dir
            for name in changed_dirs:
                self._eval_dir(name)
        for relpath in set(self.ref_sets) | set(self.ref_errors) | set(listing.ref_dbs):
            self.set_ref_db(relpath, listing.ref_dbs.get(relpath))
        known = {bf.relpath: bf for files in self.blob_files.values() for bf in files.values()}
        for relpath in set(known) | set(listing.blobs):
            new = listing.blobs.get(relpath)
            if known.get(relpath) != new:
                self.set_blob(relpath, new)
        self.temps = dict(listing.temps)

    def decode_db(self, data: bytes | str | None, path: str) -> IndexedDB | DBError | None:
        """snapshots.json (bytes, or text already decoded by gojson.text_go)
        straight to this index's facts (None: no file). Pure; skips the
        SnapshotRecord objects the API would build, which halves the cost of
        a 100k-record load and its memory peak."""
        if data is None:
            return None
        try:
            decoded = decode_records(data, path, self._facts_from_json, copy_keys=True)
        except DBError as exc:
            return exc
        return IndexedDB(decoded.records, frozenset(decoded.null_ids), decoded.names)

    def set_snapshot_db(self, db: SnapshotDB | IndexedDB | DBError | None) -> None:
        """A new snapshots.json (None: the file does not exist), as the API's
        SnapshotDB or as `decode_db` made it. A DBError keeps the last good
        index, so an unreadable DB opens one finding instead of a flood of
        missing and orphan ones."""
        key: Key = (fk.DB_UNREADABLE, SNAPSHOT_DB)
        if isinstance(db, DBError):
            self.db_error = db
            self._put(key, _unreadable(SNAPSHOT_DB, db))
            self._set_blob_trust()
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
                    db.names,
                )
            self._load_db(db)
        self._set_blob_trust()

    def _load_db(self, db: IndexedDB) -> None:
        old_records, old_nulls = self.records, self.null_ids
        self.records = db.records
        self.null_ids = db.null_ids
        self.names = db.names
        first = not self.db_known
        self.db_known = True
        self._pending = {sid: f.created for sid, f in self.records.items() if f.pending}
        # Dir and record findings: only records that changed (or, the first
        # time, every dir) need a look. Name findings depend on `names` too,
        # which can change without any record changing: one pass over both.
        if first:
            touched: Iterable[str] = set(self.records) | set(self.dirs) | self.null_ids
        else:
            touched = {
                sid
                for sid in old_records.keys() | self.records.keys()
                if old_records.get(sid) != self.records.get(sid)
            }
            touched |= old_nulls ^ self.null_ids
        for sid in touched:
            self._eval_dir(sid)
            self._eval_record(sid)
        self._eval_names()
        self._rebuild_snap_refs(touched, old_records)
        self.name_count = len(self.names)
        self.names = {}

    def set_ref_db(self, relpath: str, refs: frozenset[str] | DBError | None) -> None:
        """An image or VM DB (None: the file does not exist, which pins
        nothing). An unreadable one keeps pinning what it pinned when last
        read, and stops every blob from being called unreferenced."""
        key: Key = (fk.DB_UNREADABLE, relpath)
        if isinstance(refs, DBError):
            self.ref_errors[relpath] = refs
            self._put(key, _unreadable(relpath, refs))
            self._set_blob_trust()
            return
        self.ref_errors.pop(relpath, None)
        self._put(key, None)
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
            self.other_refs[hex_] = self.other_refs.get(hex_, 0) + 1
        for hex_ in old ^ new:
            self._eval_hex(hex_)
        self._set_blob_trust()

    def set_data_dir(self, name: str, is_dir: bool | None) -> None:
        """An entry of snapshot/localfile/ appeared (is_dir says whether it is
        a directory) or went away (None)."""
        if is_dir is None:
            self.dirs.pop(name, None)
        else:
            self.dirs[name] = is_dir
        self._eval_dir(name)

    def set_blob(self, relpath: str, blob: BlobFile | None) -> None:
        """A file in a blob dir changed; `relpath` names it under the root."""
        hex_ = blob.hex if blob is not None else _hex_of(relpath)
        files = self.blob_files.setdefault(hex_, {})
        if blob is None:
            files.pop(relpath, None)
        else:
            files[relpath] = blob
        if not files:
            del self.blob_files[hex_]
        self._eval_hex(hex_)

    def set_temp(self, relpath: str, mtime: float | None) -> None:
        if mtime is None:
            self.temps.pop(relpath, None)
        else:
            self.temps[relpath] = mtime

    # -------------------------------------------------------------- internals
    def _put(self, key: Key, finding: Finding | None) -> None:
        old = self._static.get(key)
        if finding is None:
            if old is not None:
                del self._static[key]
                self._dirty.add(key)
        elif old != finding:
            self._static[key] = finding
            self._dirty.add(key)

    def _facts_from_record(self, sid: str, rec: SnapshotRecord) -> RecFacts:
        return self._facts(
            sid, rec.id, rec.name, rec.data_dir, rec.pending, rec.image_blob_ids, rec.created_at
        )

    def _facts_from_json(self, sid: str, fields: RecordFields, _raw: object) -> RecFacts:
        rid, name, _, _, ddir, _, _, _, _, pending, blobs, created_at, _, _ = fields
        return self._facts(sid, rid, name, ddir, pending, blobs, created_at)

    def _facts(
        self,
        sid: str,
        rid: str,
        name: str,
        ddir: str,
        pending: bool,
        blob_ids: set[str],
        created_at: datetime,
    ) -> RecFacts:
        """The facts the findings need. Strings kept are copied (`own`) so
        the index does not pin the parse's memory."""
        blobs = frozenset(blob_ids)
        blobs = self._facts_cache.setdefault(blobs, blobs)
        bad_ddir = None
        if ddir and ddir != self._localfile_prefix + sid:
            norm = os.path.normpath(ddir)
            if os.path.dirname(norm) not in self._localfile_dirs or os.path.basename(norm) != sid:
                bad_ddir = ddir
        return RecFacts(
            own(name),
            pending,
            created_at.timestamp() if pending else 0.0,
            blobs,
            rid if rid != sid else None,
            bad_ddir,
        )

    def _path(self, relpath: str) -> str:
        return os.path.join(self.root, relpath)

    def _eval_dir(self, sid: str) -> None:
        """orphan_data_dir and missing_data_dir for one ID: O(1)."""
        rec = self.records.get(sid)
        is_dir = self.dirs.get(sid)
        if (
            ((is_dir and rec is not None) or (not is_dir and rec is None))
            and (fk.ORPHAN_DATA_DIR, sid) not in self._static
            and (fk.MISSING_DATA_DIR, sid) not in self._static
        ):
            return  # a healthy snapshot, or nothing at all: the common case
        rel = f"{LOCALFILE}/{sid}"
        orphan = None
        if self.db_known and rec is None and is_dir and sid not in self.null_ids:
            orphan = Finding(
                fk.ORPHAN_DATA_DIR,
                sid,
                f"data dir {rel} has no record in {SNAPSHOT_DB}; `cocoon gc` deletes it "
                "(copy it away first if it is a snapshot someone still needs)",
                snapshot_id=sid,
                path=self._path(rel),
            )
        self._put((fk.ORPHAN_DATA_DIR, sid), orphan)
        missing = None
        if rec is not None and not rec.pending and not is_dir:
            what = "is not a directory" if is_dir is False else "is missing"
            missing = Finding(
                fk.MISSING_DATA_DIR,
                sid,
                f"snapshot {_q(rec.name) or sid} is committed but its data dir {rel} {what}; "
                "restoring it will fail: restore the dir from backup or `cocoon snapshot rm` it",
                snapshot_id=sid,
                name=rec.name or None,
                path=self._path(rel),
            )
        self._put((fk.MISSING_DATA_DIR, sid), missing)

    def _eval_record(self, sid: str) -> None:
        """data_dir_mismatch for one record."""
        rec = self.records.get(sid)
        bad = rec.data_dir_mismatch if rec is not None else None
        key: Key = (fk.DATA_DIR_MISMATCH, sid)
        if bad is None:
            if key in self._static:
                self._put(key, None)
            return
        assert rec is not None
        self._put(
            key,
            Finding(
                fk.DATA_DIR_MISMATCH,
                sid,
                f"snapshot {_q(rec.name) or sid} records data_dir {_q(bad)}, "
                f"not {LOCALFILE}/{sid} under {self.root}; cocoon reads the recorded path "
                "(was the DB copied from another host or root?)",
                snapshot_id=sid,
                name=rec.name or None,
                path=bad,
            ),
        )

    def _eval_names(self) -> None:
        """dangling_name and name_mismatch, both sides (a record whose name
        or id does not map back to its key; a names entry pointing at a
        record with another name): one pass per DB load. Both sides are
        merged per subject, since a name can equal an ID."""
        records, names = self.records, self.names
        problems: dict[str, list[str]] = {}
        about: dict[str, tuple[str | None, str | None]] = {}
        want: dict[Key, Finding] = {}
        for sid in self.null_ids:
            problems.setdefault(sid, []).append("its record is null (cocoon ignores it)")
            about[sid] = (sid, None)
        for sid, rec in records.items():
            if rec.id_mismatch is None and (not rec.name or names.get(rec.name) == sid):
                continue  # the common case, 100k times per DB load
            found = problems.setdefault(sid, [])
            about[sid] = (sid, rec.name or None)
            if rec.id_mismatch is not None:
                found.append(f"record {_q(sid)} says id {_q(rec.id_mismatch)}")
            if rec.name and names.get(rec.name) != sid:
                points_to = names.get(rec.name)
                found.append(
                    f"record {_q(sid)} is named {_q(rec.name)}, which is not in names"
                    if points_to is None
                    else f"record {_q(sid)} is named {_q(rec.name)}, but that name points at {_q(points_to)}"
                )
        for name, sid in names.items():
            named = records.get(sid)
            if named is None:
                want[(fk.DANGLING_NAME, name)] = Finding(
                    fk.DANGLING_NAME,
                    name,
                    f"name {_q(name)} points at {_q(sid) or '(empty)'}, which has no record; "
                    "`cocoon snapshot` commands using this name fail: remove the name from the DB",
                    snapshot_id=sid or None,
                    name=name,
                )
            elif named.name != name:
                problems.setdefault(name, []).append(
                    f"name {_q(name)} points at {_q(sid)}, whose record is named {_q(named.name)}"
                )
                about.setdefault(name, (sid, name))
        for subject, found in problems.items():
            snapshot_id, label = about[subject]
            want[(fk.NAME_MISMATCH, subject)] = Finding(
                fk.NAME_MISMATCH,
                subject,
                f"{'; '.join(found)}; lookups by name or ID may pick the wrong snapshot: fix the DB entry",
                snapshot_id=snapshot_id,
                name=label,
            )
        for key in self._name_keys - want.keys():
            self._put(key, None)
        for key, finding in want.items():
            self._put(key, finding)
        self._name_keys = set(want)

    def _rebuild_snap_refs(self, touched: Iterable[str], old_records: dict[str, RecFacts]) -> None:
        """Blob references from snapshots; a hex needs a new look when its
        set of users changed, or when one of its users did (a missing_blob
        names a user)."""
        refs: dict[str, set[str]] = {}
        for sid, facts in self.records.items():
            for hex_ in facts.blobs:
                refs.setdefault(hex_, set()).add(sid)
        new = {h: frozenset(s) for h, s in refs.items()}
        old, self.snap_refs = self.snap_refs, new
        hexes = {h for h in old.keys() | new.keys() if old.get(h) != new.get(h)}
        for sid in touched:
            for user in (old_records.get(sid), self.records.get(sid)):
                if user is not None:
                    hexes.update(user.blobs)
        for hex_ in hexes:
            self._eval_hex(hex_)

    def _set_blob_trust(self) -> None:
        """Fail closed, as cocoon's gc does: while any DB that can pin a blob
        is unreadable, no blob is called unreferenced."""
        trusted = self.db_known and self.db_error is None and not self.ref_errors
        if trusted != self._blobs_trusted:
            self._blobs_trusted = trusted
            for hex_ in list(self.blob_files):
                self._eval_hex(hex_)

    def _eval_hex(self, hex_: str) -> None:
        """missing_blob and unreferenced_blob for one hex: O(1)."""
        sids = self.snap_refs.get(hex_, frozenset())
        others = self.other_refs.get(hex_, 0)
        files = self.blob_files.get(hex_, {})
        missing = None
        if (sids or others) and not any(f.usable for f in files.values()):
            empty = sorted((f for f in files.values() if f.regular and f.size == 0), key=lambda f: f.relpath)
            why = f"{_q(empty[0].relpath)} is empty" if empty else "no usable blob file"
            users = []
            if sids:
                example = min(sids)
                users.append(f"{len(sids)} snapshot(s) (e.g. {example})")
            if others:
                users.append(f"{others} image/VM DB(s)")
            first = min(sids) if sids else None
            rec = self.records.get(first) if first else None
            missing = Finding(
                fk.MISSING_BLOB,
                hex_,
                f"blob {hex_[:12]} is referenced by {' and '.join(users)} but {why} "
                "(cloudimg/blobs/<hex>.qcow2 or oci/blobs/<hex>.erofs); VMs and restores using it "
                "fail: re-pull the image",
                snapshot_id=first,
                name=(rec.name or None) if rec else None,
                path=self._path(empty[0].relpath) if empty else None,
            )
        self._put((fk.MISSING_BLOB, hex_), missing)
        unref = None
        regular = [f for f in files.values() if f.regular]
        if regular and not sids and not others and self._blobs_trusted:
            first_file = min(regular, key=lambda f: f.relpath)
            unref = Finding(
                fk.UNREFERENCED_BLOB,
                hex_,
                f"blob {first_file.relpath} is referenced by no image, snapshot or VM; "
                "normal after `cocoon image rm`: the next `cocoon gc` deletes it",
                path=self._path(first_file.relpath),
                bytes=sum(f.disk_bytes for f in regular),
            )
        self._put((fk.UNREFERENCED_BLOB, hex_), unref)

    def _eval_timed(self, now: float) -> None:
        """pending/stale_pending and stale_temp: O(pending + temp files)."""
        timed: dict[Key, Finding] = {}
        stale_after = self.pending_stale_seconds
        for sid, created in self._pending.items():
            age = max(0.0, now - created)
            rec = self.records[sid]
            label = _q(rec.name) or sid
            if age > stale_after:
                finding = Finding(
                    fk.STALE_PENDING,
                    sid,
                    f"snapshot {label} has been pending for {format_age(age)} "
                    "(a create that crashed or hangs); "
                    f"`cocoon gc` drops pending records older than {PENDING_GC_HOURS} h",
                    snapshot_id=sid,
                    name=rec.name or None,
                    age_seconds=age,
                )
            else:
                finding = Finding(
                    fk.PENDING,
                    sid,
                    f"snapshot {label} is being created (pending for {format_age(age)})",
                    snapshot_id=sid,
                    name=rec.name or None,
                    age_seconds=age,
                )
            timed[finding.key] = finding
        for relpath, mtime in self.temps.items():
            age = max(0.0, now - mtime)
            if age > self.temp_stale_seconds:
                timed[(fk.STALE_TEMP, relpath)] = Finding(
                    fk.STALE_TEMP,
                    relpath,
                    f"temp file {relpath} is {format_age(age)} old, left by a write or download that died; "
                    "`cocoon gc` removes old ones in cloudimg/temp, others can be deleted by hand",
                    path=self._path(relpath),
                    age_seconds=age,
                )
        old = self._timed
        self._dirty.update(old.keys() ^ timed.keys())
        self._timed = timed


def _unreadable(relpath: str, error: DBError) -> Finding:
    return Finding(
        fk.DB_UNREADABLE,
        relpath,
        f"{relpath} is not a valid DB ({error.reason}); cocoon commands that read it fail: "
        "restore it from the last good copy",
        path=error.path,
    )


def _hex_of(relpath: str) -> str:
    return os.path.basename(relpath).rsplit(".", 1)[0]


def format_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _q(text: str) -> str:
    """Quote a DB string for a message; empty stays empty."""
    return repr(text) if text else ""
