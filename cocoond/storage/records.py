"""Cocoon's snapshot DB as Python objects, decoded and encoded the way Go's
encoding/json does it, so that what we write back is what cocoon (and every
other tool on the host) expects to read.

Three things the Go seed loses and we must not: keys we do not know (cocoon
adds fields over time), the exact `created_at` text (Go keeps nanoseconds,
Python microseconds), and the order of a record's keys (diffs of the DB stay
readable). Unknown keys and the original key order ride along on each record.

Reading is cocoon's own: json.Unmarshal into snapshot.SnapshotIndex
(goschema, godecode). Every typed field is checked, including those beyond
the seed's 12 (hypervisor, queue_size, image_digest, ...), which ride along
in `extra` unchanged. A key that sets a field only case-insensitively
("Pending") is read as Go reads it and written back under the field's own
key ("pending", where the first spelling stood): Go writes that key when it
rewrites the DB, and a stale "Pending" left beside a cleared `pending` would
still read as pending.
"""

from __future__ import annotations

import gc
import itertools
import json
import operator
import os
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from cocoond.errors import DBError
from cocoond.storage import gofast, goschema
from cocoond.storage.dbspans import HEAD, MAX_TAIL, MID, Bail, Spans, chunk_entries, names_starts
from cocoond.storage.godecode import ZERO, Decoder, GoDecodeError
from cocoond.storage.gojson import dumps_go, loads_exact, text_go
from cocoond.storage.goschema import INT_MAX, INT_MIN
from cocoond.storage.gotime import GO_ZERO_TIME, format_rfc3339, parse_rfc3339, zero_time
from cocoond.storage.jsonwalk import JSONWalkError, scan_exact, scan_value, skip_ws, walk_object
from cocoond.storage.memory import bound, own

# The seed's struct fields, in cocoon's order (its record type embeds the VM
# config first). New records are written in this order.
_FIELD_ORDER = (
    "cpu",
    "memory",
    "storage",
    "image",
    "id",
    "name",
    "description",
    "image_blob_ids",
    "nics",
    "created_at",
    "pending",
    "data_dir",
)
_KNOWN = frozenset(_FIELD_ORDER)

# Key orders repeat across 100k records: one shared tuple per distinct order
# (a pointer per record) and, with it, which of its keys are unknown.
# Bounded (memory.bound) like _HEXES: the daemon sees DBs come and go.
_ORDERS: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
# Key orders repeat: one compiled fast-path check per order (_compile_check;
# None: that order always takes the slow path). A DB of odd records must not
# grow these without bound.
_CHECKS: dict[tuple[str, ...], _Check | None] = {}
_MAX_CHECKS = 4096
R = TypeVar("R")
_Check = Callable[[str, int, int, dict[str, Any]], "RecordFields | None"]
# Blob hexes repeat too (a few images, many snapshots): one string each.
# Filled with setdefault in the hot loops and bounded between batches (at
# each load, each chunk of the fast route, each absorbed record): at most
# MEMO_CAP plus one batch's hexes, however many blobs came and went.
_HEXES: dict[str, str] = {}


@dataclass(slots=True, eq=True)
class SnapshotRecord:
    """One snapshot as cocoon stores it. `created_at` is an aware datetime;
    `created_at_text` is what the DB said, written back unless `created_at`
    is assigned a different instant."""

    id: str
    name: str = ""
    description: str = ""
    image: str = ""
    image_blob_ids: set[str] = field(default_factory=set)
    cpu: int = 0
    memory: int = 0
    storage: int = 0
    nics: int = 0
    created_at: datetime = field(default_factory=zero_time)
    pending: bool = False
    data_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    created_at_text: str | None = field(default=None, compare=False, repr=False)
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The record as Go writes it: omitempty fields dropped when zero, the
        original key order kept, unknown keys kept where they were."""
        text = self.created_at_text
        if text is None or _instant(text) != self.created_at:
            text = format_rfc3339(self.created_at)
        known: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "created_at": text,
        }
        if self.description:
            known["description"] = self.description
        if self.image:
            known["image"] = self.image
        if self.image_blob_ids:
            known["image_blob_ids"] = {h: {} for h in sorted(self.image_blob_ids)}
        if self.cpu:
            known["cpu"] = self.cpu
        if self.memory:
            known["memory"] = self.memory
        if self.storage:
            known["storage"] = self.storage
        if self.nics:
            known["nics"] = self.nics
        if self.pending:
            known["pending"] = True
        if self.data_dir:
            known["data_dir"] = self.data_dir
        out: dict[str, Any] = {}
        for key in self.key_order:
            if key in known:
                out[key] = known.pop(key)
            elif key in self.extra:
                out[key] = self.extra[key]
        for key in _FIELD_ORDER:
            if key in known:
                out[key] = known[key]
        for key, value in self.extra.items():
            if key not in out:
                out[key] = value
        return out


def _instant(text: str) -> datetime | None:
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


@dataclass(slots=True)
class SnapshotDB:
    """`{"snapshots": {ID: record}, "names": {name: ID}}` plus whatever else
    the file held. `null_ids` are keys whose record is JSON null: Go decodes
    them to a nil pointer and cocoon skips them, so do we, but we write them
    back as they were."""

    snapshots: dict[str, SnapshotRecord] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    null_ids: set[str] = field(default_factory=set)
    extra: dict[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = ("snapshots", "names")

    def to_json(self) -> dict[str, Any]:
        """Go marshals maps with sorted keys; we do the same so our output
        diffs cleanly against cocoon's."""
        snaps: dict[str, Any] = {sid: None for sid in self.null_ids}
        for sid, rec in self.snapshots.items():
            snaps[sid] = rec.to_json()
        known: dict[str, Any] = {
            "snapshots": {sid: snaps[sid] for sid in sorted(snaps)},
            "names": {name: self.names[name] for name in sorted(self.names)},
        }
        out: dict[str, Any] = {}
        for key in (*self.key_order, "snapshots", "names"):
            if key in known:
                out[key] = known.pop(key)
            elif key in self.extra:
                out[key] = self.extra[key]
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def encode(self) -> bytes:
        return dumps_go(self.to_json())


#: A record's fields after Go's decoding rules, in this order: id, name,
#: description, image, data_dir, cpu, memory, storage, nics, pending,
#: image_blob_ids, created_at, created_at text (None when absent),
#: hypervisor ("cloud-hypervisor", "firecracker", or "" when unset: which
#: restore preflight the record's data dir must pass).
RecordFields = tuple[str, str, str, str, str, int, int, int, int, bool, set[str], datetime, str | None, str]

_RECORD = goschema.fields_of(goschema.SNAPSHOT_RECORD)
_INDEX = goschema.fields_of(goschema.SNAPSHOT_INDEX)
#: Where Go stands when it decodes a record: inside SnapshotIndex.snapshots.
_RECORD_TYPE = goschema.ptr(goschema.SNAPSHOT_RECORD)
#: The JSON type (as json.loads makes it) each kind of record field needs.
_JSON_TYPES = {
    goschema.Kind.STRING: str,
    goschema.Kind.BOOL: bool,
    goschema.Kind.INT: int,
    goschema.Kind.TIME: str,
    goschema.Kind.MAP: dict,
}
#: RecordFields' sources, in order, and Go's zero value for each absent one
#: (as Python source). created_at and image_blob_ids go through _tail.
_OUTPUT = (
    ("id", '""'),
    ("name", '""'),
    ("description", '""'),
    ("image", '""'),
    ("data_dir", '""'),
    ("cpu", "0"),
    ("memory", "0"),
    ("storage", "0"),
    ("nics", "0"),
    ("pending", "False"),
)
_CHECK_TEMPLATE = """
def check(text, start, end, obj):
    {unpack}, = obj.values()
    if not ({tests}):
        return None
    tail = _tail(text, start, end, {quotes}, {blobs}, {created})
    if tail is None:
        return None
    return ({head}, *tail, {hypervisor})
"""


def _compile_check(keys: tuple[str, ...]) -> _Check | None:
    """A function that takes a record with exactly these keys, in this
    order, through the fast path (None: such records always take the slow
    path, because a key sets a field only case-insensitively).

    Specialised per key order, as dataclasses and namedtuple generate their
    methods: unpacking obj.values() into locals and testing each against its
    field's type halves the cost of the per-record checks, which run 100k
    times per load. The source holds only names made here (v0, v1, ...),
    schema constants and type names, never a key or value from the DB. For
    keys ("cpu", "id", "x") it reads:

        v0, v1, v2, = obj.values()
        if not (type(v0) is int and -9223372036854775808 <= v0 <= 9223372036854775807
                and type(v1) is str):
            return None
        tail = _tail(text, start, end, 6 + 2 + 2 * (type(v2) is str), None, None)
        ...
        return (v1, "", "", "", "", v0, 0, 0, 0, False, *tail, "")
    """
    local: dict[str, str] = {}
    tests: list[str] = []
    quotes = [str(2 * len(keys))]  # each key's; strings' below
    for i, key in enumerate(keys):
        var = f"v{i}"
        fld = _RECORD.exact.get(key)
        if fld is None:
            # Unknown: Go skips it. (One holding strings fails the quote
            # count, as its strings are not counted: the slow path.)
            if _RECORD.folded.get(goschema.fold_name(key)) is not None:
                return None
            quotes.append(f"2 * (type({var}) is str)")
            continue
        typ = _JSON_TYPES.get(fld.type.kind)
        if typ is None:
            return None
        # A null is rare and legal: the slow path handles it.
        tests.append(f"type({var}) is {typ.__name__}")
        if typ is int:
            tests.append(f"{INT_MIN} <= {var} <= {INT_MAX}")
        if typ is str:
            quotes.append("2")
        local[fld.name] = var
    source = _CHECK_TEMPLATE.format(
        unpack=", ".join(f"v{i}" for i in range(len(keys))) if keys else "_",
        tests=" and ".join(tests) or "True",
        quotes=" + ".join(quotes),
        blobs=local.get("image_blob_ids", "None"),
        created=local.get("created_at", "None"),
        head=", ".join(local.get(name, zero) for name, zero in _OUTPUT),
        hypervisor=local.get("hypervisor", '""'),
    )
    if not keys:
        source = source.replace("    _, = obj.values()\n", "")
    namespace: dict[str, Any] = {"_tail": _tail}
    exec(compile(source, f"<record check {len(_CHECKS)}>", "exec"), namespace)
    check: _Check = namespace["check"]
    return check


def _tail(
    text: str, start: int, end: int, quotes: int, raw_blobs: dict[str, Any] | None, created: str | None
) -> tuple[set[str], datetime, str | None] | None:
    """The rest of a fast-path record: no duplicate key (the quote count),
    the blob set, created_at. None sends the record to the slow path.

    A dict loses duplicate keys, and Go decodes every occurrence (an error
    in a shadowed one counts). The record's text tells: each string token
    puts two unescaped '"' in it, a duplicate key adds tokens the dict does
    not hold and an escaped quote adds a '"', so the count equals twice
    the strings the dict holds exactly when neither is there. Escapes
    matter to Go's time.Time only (it parses the raw token), checked on
    created_at's token where the record has any."""
    if text.count('"', start, end) != quotes + (2 * len(raw_blobs) if raw_blobs else 0):
        return None
    blobs: set[str] = set()
    if raw_blobs:
        for hex_, member in raw_blobs.items():
            if member is not None and type(member) is not dict:
                return None
            blobs.add(_HEXES.setdefault(hex_, hex_))
    if created is None:
        return blobs, zero_time(), None
    if text.find("\\", start, end) != -1 and text.find(f'"created_at":"{created}"', start, end) == -1:
        return None
    try:
        return blobs, parse_rfc3339(created), created
    except ValueError:
        return None


def _fast_fields(text: str, start: int, end: int, obj: dict[str, Any]) -> RecordFields | None:
    """A record's fields when json.loads' dict is all Go sees (the hot
    path: 100k records per load), else None for the exact decoder."""
    keys = tuple(obj)
    try:
        check = _CHECKS[keys]
    except KeyError:
        if len(_CHECKS) >= _MAX_CHECKS:
            return None  # a DB of odd records: slow, but bounded in memory
        check = _CHECKS[keys] = _compile_check(keys)
    return None if check is None else check(text, start, end, obj)


def _exact_fields(rec: dict[str, Any]) -> RecordFields:
    """RecordFields of a record godecode decoded (a dict of set fields)."""
    g = rec.get
    blobs = g("image_blob_ids")
    created = g("created_at")
    return (
        g("id", ""),
        g("name", ""),
        g("description", ""),
        g("image", ""),
        g("data_dir", ""),
        g("cpu", 0),
        g("memory", 0),
        g("storage", 0),
        g("nics", 0),
        g("pending", False),
        set(blobs) if blobs else set(),
        created[0] if created else zero_time(),
        created[1] if created else None,
        g("hypervisor", ""),
    )


def _canonical(plain: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    """The record as the API keeps it: a key that sets a Go field only
    case-insensitively ("Pending") becomes the field's own key, once, where
    its first spelling stood, holding the value Go decoded (Go writes the
    canonical key when it rewrites the DB); other keys stay as they were."""
    out: dict[str, Any] = {}
    for key, value in plain.items():
        fld = _RECORD.lookup(key)
        if fld is None:
            out[key] = value
        elif fld.name not in out:
            out[fld.name] = _as_json(rec.get(fld.name))
    return out


def _as_json(value: Any) -> Any:
    if value is None or value is ZERO:
        return None
    if type(value) is tuple:  # a time.Time: its text
        return value[1]
    if type(value) is dict:
        return {k: _as_json(v) for k, v in value.items()}
    return value


#: Values a few images' worth of records repeat: kept once (at 100k records,
#: 1688 -> 1155 bytes per record with names). Bounded, as a DB of odd values
#: must not grow the table without end.
_SHARED_KEYS = frozenset({"image_digest", "image_type", "hypervisor", "network"})
_SHARED: dict[Any, Any] = {}
_MAX_SHARED = 65536


def _shared(value: Any) -> Any:
    if type(value) is not str and type(value) is not int:
        return value
    kept = _SHARED.get(value)
    if kept is not None:
        return kept
    if len(_SHARED) < _MAX_SHARED:
        _SHARED[value] = value
    return value


def _record(key: str, fields: RecordFields, obj: dict[str, Any]) -> SnapshotRecord:
    sid, name, desc, image, ddir, cpu, memory, storage, nics, pending, blobs, created_at, text, _ = fields
    shape = _ORDERS.get(order := tuple(obj))
    if shape is None:
        bound(_ORDERS)
        shape = _ORDERS[order] = (order, tuple(k for k in order if k not in _KNOWN))
    order, unknown = shape
    extra = {k: _shared(obj[k]) if k in _SHARED_KEYS else obj[k] for k in unknown} if unknown else {}
    return SnapshotRecord(
        key if sid == key else sid,  # the map's key and the record's id: one string
        name,
        desc,
        _shared(image),
        blobs,
        cpu,
        _shared(memory),
        _shared(storage),
        nics,
        created_at,
        pending,
        ddir,
        extra,
        text,
        order,
    )


@dataclass(slots=True)
class DecodedDB(Generic[R]):
    """snapshots.json decoded, with each record made by the caller's
    function: SnapshotRecord for the API, something smaller for an index."""

    records: dict[str, R]
    null_ids: set[str]
    names: dict[str, str]
    extra: dict[str, Any]
    key_order: tuple[str, ...]
    #: Where the entries sat, when the file is written as Go writes it and
    #: `spans` was asked for: what dbspans.absorb needs for the next write.
    spans: Spans | None = None


def decode_snapshot_db(data: bytes, path: str | os.PathLike[str]) -> SnapshotDB:
    """Bytes of snapshots.json -> SnapshotDB, or DBError naming `path`."""
    d = decode_records(data, path, _record)
    # A name's ID and the record's key: one string (75 bytes per record).
    ids = {sid: sid for sid in d.records}
    names = {name: ids.get(sid, sid) for name, sid in d.names.items()}
    return SnapshotDB(d.records, names, d.null_ids, d.extra, d.key_order)


def decode_records(
    data: bytes | str,
    path: str | os.PathLike[str],
    make: Callable[[str, RecordFields, dict[str, Any]], R],
    *,
    copy_keys: bool = False,
    spans: bool = False,
    raw: bool | Callable[[str, str], bool] = True,
) -> DecodedDB[R]:
    """Decode and validate snapshots.json as cocoon's json.Unmarshal into
    snapshot.SnapshotIndex does; `make(key, fields, raw)` builds each
    (non-null) record (`raw`: the record as a dict, keys as in the file
    except that case-insensitive matches of Go fields carry the field's
    own key). `copy_keys` for a long-lived index: see memory.own. Raises
    DBError naming `path` with Go's error (and where it is).

    Records are decoded one at a time (jsonwalk.py): with 100k of them this
    halves the memory peak of a load and costs no time.

    `raw`: whether `make` needs the raw record (a predicate on (key, name):
    for those records only); where it does not, the fast route hands it
    NO_RAW instead of building one (a tenth of its cost at 100k)."""
    where = os.fspath(path)
    bound(_HEXES)
    if isinstance(data, bytes) and not spans:
        fast = _decode_fast(data, make, copy_keys, raw)
        if fast is not None:
            return fast
    text = text_go(data) if isinstance(data, bytes) else data
    start = skip_ws(text, 0)
    if not text.startswith("{", start):
        # Not an object: the whole-document decoder says what it is (Go
        # unmarshals a bare `null` into an empty DB).
        try:
            Decoder().unmarshal(loads_exact(text, where), goschema.SNAPSHOT_INDEX)
        except GoDecodeError as exc:
            raise DBError(where, str(exc)) from None
        return DecodedDB({}, set(), {}, {}, ())
    records: dict[str, R] = {}
    null_ids: set[str] = set()
    names: dict[str, str] = {}
    extra: dict[str, Any] = {}
    order: dict[str, None] = {}
    dec = Decoder()
    # Go's decode goes on past a type error (the first is returned at the
    # end) and stops at time.Time's own errors; the walk goes on either way,
    # since a syntax error anywhere is what Go reports first.
    stopped: list[GoDecodeError] = []
    # For spans: each entry's key as kept and where its value ends; where
    # the maps' values start and end.
    keys: list[str] = []
    ends: list[int] = []
    at: dict[str, tuple[int, int]] = {}

    def on_record(sid: str, idx: int) -> int:
        obj, end = scan_value(text, idx, 2)
        if spans:
            ends.append(end)
            keys.append(own(sid) if copy_keys and obj is not None else sid)
        if stopped:
            return end  # Go has stopped decoding; only the syntax is left
        if obj is None:
            records.pop(sid, None)
            null_ids.add(sid)
            return end
        null_ids.discard(sid)
        fields = _fast_fields(text, idx, end, obj) if type(obj) is dict else None
        if fields is None:
            try:
                fields, obj = _slow_fields(text, idx, end, sid, obj, dec)
            except GoDecodeError as exc:
                stopped.append(exc)
                return end
        if dec.saved is None:
            records[keys[-1] if spans else own(sid) if copy_keys else sid] = make(sid, fields, obj)
        return end

    def on_member(key: str, idx: int) -> int:
        # "snapshots" and "names" in any case, as Go matches them. A second
        # occurrence adds to what the first left, as Go adds to a map it
        # already made; null empties them.
        fld = _INDEX.lookup(key)
        name = key if fld is None else fld.name
        order[name] = None
        if name == "snapshots" and text.startswith("{", idx):
            at.setdefault(key, (idx, end := walk_object(text, idx, on_record)))
            return end
        value, end = scan_value(text, idx, 1)
        at.setdefault(key, (idx, end))
        if fld is None:
            extra[key] = value
        elif value is None:
            if name == "snapshots":
                records.clear()
                null_ids.clear()
            else:
                names.clear()
        elif (
            name == "names"
            and type(value) is dict
            and set(map(type, value.values())) <= {str}
            and text.count('"', idx, end) == 4 * len(value)  # no duplicates: see _tail
        ):
            names.update(value)
        elif not stopped:
            exact, _ = scan_exact(text, idx, 1)
            current = names if name == "names" else ZERO
            dec.decode_at(exact, fld.type, "SnapshotIndex", (name,), (name,), current)
        return end

    with no_gc():
        try:
            end = skip_ws(text, walk_object(text, start, on_member))
            if end != len(text):
                raise JSONWalkError(f"Extra data at char {end}")
        except JSONWalkError as exc:
            # Go checks the syntax of the whole document first.
            raise DBError(where, f"not valid JSON ({exc})") from None
        error = stopped[0] if stopped else dec.saved
        if error is not None:
            raise DBError(where, str(error))
        if copy_keys and names:
            ids = {sid: sid for sid in records}
            names = {own(name): ids.get(sid) or own(sid) for name, sid in names.items()}
        found = None
        if spans and not extra and tuple(order) == ("snapshots", "names"):
            found = _spans(text, at, keys, ends, len(records) + len(null_ids), names)
        return DecodedDB(records, null_ids, names, extra, tuple(order), found)


#: The snapshot DB's msgspec types (gofast): a record's fields default to
#: Go's zero and are left out when zero only where Go has omitempty, so the
#: re-encoding of a DB cocoon wrote is its bytes. The top level keeps each
#: record as msgspec.Raw (a view of the input, no copy), decoded in chunks.
_FAST_RECORD = gofast.struct_type(goschema.ptr(goschema.SNAPSHOT_RECORD), "go")
_RECORD_DECODER = msgspec.json.Decoder(_FAST_RECORD)
assert [fld.name for fld in _INDEX.fields] == ["snapshots", "names"]


class _FastTop(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """snapshot.SnapshotIndex, records left undecoded (both fields lack
    omitempty: required, as Go always writes them)."""

    snapshots: dict[str, msgspec.Raw] | None
    names: dict[str, str] | None


_TOP_DECODER = msgspec.json.Decoder(_FastTop)
_AT = {fld.name: i for i, fld in enumerate(_RECORD.fields)}
#: Which of a record's fields (msgspec.structs.astuple order) make RecordFields.
_PICK = operator.itemgetter(
    *(
        _AT[name]
        for name in (
            "id",
            "name",
            "description",
            "image",
            "data_dir",
            "cpu",
            "memory",
            "storage",
            "nics",
            "pending",
        )
    ),
)
_BLOBS, _CREATED, _HYPERVISOR = _AT["image_blob_ids"], _AT["created_at"], _AT["hypervisor"]
#: What `make` gets for a record whose raw form the caller said it does not
#: need (decode_records' `raw`): one shared empty dict, never to be changed.
NO_RAW: dict[str, Any] = {}
#: Records decoded and proved per chunk: the Structs of one chunk are alive
#: at a time (a whole-DB decode held 100 MB of them at 100k, and its
#: re-encoding as much again).
_CHUNK = 4096


def _decode_fast(
    data: bytes,
    make: Callable[[str, RecordFields, dict[str, Any]], R],
    copy_keys: bool,
    raw: bool | Callable[[str, str], bool],
) -> DecodedDB[R] | None:
    """decode_records by gofast's route: msgspec decodes the DB and the
    round trip proves Go reads the same (gofast's docstring); None when it
    cannot (any doubt: the walk decides, and words errors).

    The proof, piecewise (_prove): the document must be exactly
    `{"snapshots":` S `,"names":` N `}` (white space around it), S `null` or
    `{` + the re-encoding of each chunk of records, joined by `,` + `}`, N
    the re-encoding of the names: the bytes gofast.canonical would compare,
    compared a chunk at a time. At 100k records this costs about 0.4x the
    CPU of json.loads, and its memory peak is the records made, not a
    decoded tree and its re-encoding beside the bytes."""
    records: dict[str, R] = {}
    null_ids: set[str] = set()
    astuple = msgspec.structs.astuple
    to_builtins = msgspec.to_builtins
    hexes = _HEXES

    def take(decoded: dict[str, Any]) -> bool:
        bound(hexes)
        for sid, rec in decoded.items():
            if rec is None:
                null_ids.add(sid)
                continue
            values = astuple(rec)
            created = values[_CREATED]
            at = gofast.parse_time(created)
            if at is None:
                return False  # Go's error: the walk words it
            raw_blobs = values[_BLOBS]
            blobs = {hexes.setdefault(h, h) for h in raw_blobs} if raw_blobs else set()
            fields = (*_PICK(values), blobs, at, created, values[_HYPERVISOR])
            key = own(sid) if copy_keys else sid
            keep = raw if isinstance(raw, bool) else raw(sid, fields[1])
            records[key] = make(sid, fields, to_builtins(rec) if keep else NO_RAW)
        return True

    with no_gc():
        top = _prove(data, take)
        if top is None:
            return None
        names = top.names or {}
        if copy_keys and names:
            ids = {sid: sid for sid in records}
            names = {own(name): ids.get(sid) or own(sid) for name, sid in names.items()}
        return DecodedDB(records, null_ids, names, {}, ("snapshots", "names"))


def _prove(data: bytes, take: Callable[[dict[str, Any]], bool]) -> _FastTop | None:
    """The DB's top level when the round trip proves Go reads `data` as
    msgspec does (see _decode_fast), each chunk of decoded records (ID ->
    Struct, or None for a null record) handed to `take` on the way (False:
    Go would fail, or the caller cannot vouch: None); else None."""
    try:
        top = _TOP_DECODER.decode(data)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    pos = len(data) - len(data.lstrip(gofast.WS)) if data[:1] in gofast.WS_BYTES else 0
    pos = _expect(data, pos, b'{"snapshots":')
    encode = gofast.encode
    decode_record = _RECORD_DECODER.decode
    snapshots = top.snapshots
    if snapshots is None:
        pos = _expect(data, pos, b"null")
    else:
        pos = _expect(data, pos, b"{")
        entries = iter(snapshots.items())
        comma = b""
        while chunk := list(itertools.islice(entries, _CHUNK)):
            try:
                decoded = {sid: decode_record(doc) for sid, doc in chunk}
            except (msgspec.MsgspecError, ValueError, RecursionError):
                return None
            pos = _expect(data, pos, comma)
            comma = b","
            body = memoryview(encode(decoded))[1:-1]
            if pos < 0 or not data.startswith(body, pos):
                return None
            pos += len(body)
            if not take(decoded):
                return None
            del decoded, chunk
        pos = _expect(data, pos, b"}")
    pos = _expect(data, pos, b',"names":')
    pos = _expect(data, pos, encode(top.names))
    pos = _expect(data, pos, b"}")
    if pos < 0 or data[pos:].strip(gofast.WS):
        return None
    return top


#: A decoded record's created_at (gofast names Struct fields f0, f1, ...).
_CREATED_AT = operator.attrgetter(f"f{_CREATED}")
assert msgspec.structs.fields(typing.get_args(_FAST_RECORD)[0])[_CREATED].encode_name == "created_at"


@dataclass(slots=True)
class LazyDB:
    """snapshots.json proved to read in Go as msgspec reads it (every record
    decoded, type-checked and its created_at parsed, as Go does), each
    record kept undecoded (a msgspec.Raw: a view of the bytes) and decoded
    again when asked for. For a reader of one record out of 100k (`show`):
    building every record's facts was a third of its CPU."""

    #: Every key of `snapshots`, null records included.
    raws: dict[str, msgspec.Raw]
    null_ids: set[str]
    names: dict[str, str]

    def ids(self) -> Iterator[str]:
        """The IDs of the records (null ones aside), in the file's order."""
        nulls = self.null_ids
        return (sid for sid in self.raws if sid not in nulls) if nulls else iter(self.raws)

    def has(self, sid: str) -> bool:
        return sid in self.raws and sid not in self.null_ids

    def fields(self, sid: str) -> RecordFields:
        """What decode_records hands `make` for this record (KeyError: no
        such record, or a null one)."""
        if sid in self.null_ids:
            raise KeyError(sid)
        values = msgspec.structs.astuple(_RECORD_DECODER.decode(self.raws[sid]))
        created = values[_CREATED]
        at = gofast.parse_time(created)
        assert at is not None, "proved when the DB was read"
        raw_blobs = values[_BLOBS]
        blobs = {_HEXES.setdefault(h, h) for h in raw_blobs} if raw_blobs else set()
        return (*_PICK(values), blobs, at, created, values[_HYPERVISOR])

    def raw(self, sid: str) -> dict[str, Any]:
        """The record as decode_records' `raw` gives it."""
        out: dict[str, Any] = msgspec.to_builtins(_RECORD_DECODER.decode(self.raws[sid]))
        return out

    def blobs(self) -> Iterator[tuple[str, frozenset[str]]]:
        """(ID, its image_blob_ids) of every record with any: what gc keeps
        for it. Read with a decoder of that one field (the rest skipped
        unread: the DB was proved as a whole already)."""
        nulls = self.null_ids
        decode = _BLOBS_DECODER.decode
        for sid, doc in self.raws.items():
            rec = decode(doc) if sid not in nulls else None
            if rec is not None and rec.image_blob_ids:
                yield sid, frozenset(rec.image_blob_ids)


class _BlobsOnly(msgspec.Struct, gc=False):
    image_blob_ids: dict[str, Any] | None = None


_BLOBS_DECODER = msgspec.json.Decoder(_BlobsOnly | None)


def decode_lazily(data: bytes, path: str | os.PathLike[str]) -> LazyDB | None:
    """snapshots.json as a LazyDB when gofast's route can vouch for it (the
    same proof as decode_records'); None: decode it with decode_records,
    which also words Go's errors."""
    null_ids: set[str] = set()
    created_at = _CREATED_AT
    parse_time = gofast.parse_time

    def take(decoded: dict[str, Any]) -> bool:
        for sid, rec in decoded.items():
            if rec is None:
                null_ids.add(sid)
            elif parse_time(created_at(rec)) is None:
                return False  # Go's error: the walk words it
        return True

    with no_gc():
        top = _prove(data, take)
    if top is None:
        return None
    return LazyDB(top.snapshots or {}, null_ids, top.names or {})


def _expect(data: bytes, pos: int, text: bytes) -> int:
    """Where `text` ends if `data` holds it at `pos`, else -1 (and -1 stays)."""
    return pos + len(text) if pos >= 0 and data.startswith(text, pos) else -1


def _spans(
    text: str,
    at: dict[str, tuple[int, int]],
    keys: list[str],
    ends: list[int],
    count: int,
    names: dict[str, str],
) -> Spans | None:
    """Where the entries of a DB written as Go writes it sat (None: it is
    not, or a key repeats): see dbspans."""
    snap, named = at.get("snapshots"), at.get("names")
    if snap is None or named is None or snap[0] != len(HEAD) - 1 or not text.startswith(HEAD):
        return None
    if len(keys) != count or text[snap[1] - 1 : named[0] + 1] != MID:
        return None
    starts = [len(HEAD)]
    for end in ends[:-1]:
        if text[end] != "," or text[end + 1] != '"':
            return None
        starts.append(end + 1)
    if ends and ends[-1] != snap[1] - 1:
        return None
    name_starts = names_starts(text, named[0], named[1], names)
    # Only '}' and white space may follow: anything else (a second "names")
    # would act on what the maps hold.
    tail = text[named[1] :].encode("utf-8")
    if name_starts is None or len(tail) > MAX_TAIL or tail.strip(b" \t\r\n") != b"}":
        return None
    return Spans(
        chunk_entries(text, starts[: len(ends)], snap[1] - 1, keys),
        chunk_entries(text, name_starts, named[1] - 1, list(names)),
        tail,
    )


def record_decoder(
    make: Callable[[str, RecordFields, dict[str, Any]], R],
) -> Callable[[str, str, int, int, Decoder], tuple[R | None, int]]:
    """One snapshots entry decoded as `decode_records` decodes it, for
    dbspans.absorb: the record (None for a JSON null) and where its value
    ends. Any error raises dbspans.Bail: the full decode words errors."""

    def decode(text: str, sid: str, _start: int, idx: int, dec: Decoder) -> tuple[R | None, int]:
        bound(_HEXES)
        obj, end = scan_value(text, idx, 2)
        if end >= len(text):
            raise JSONWalkError("past the window")
        if obj is None:
            return None, end
        fields = _fast_fields(text, idx, end, obj) if type(obj) is dict else None
        if fields is None:
            try:
                fields, obj = _slow_fields(text, idx, end, sid, obj, dec)
            except GoDecodeError:
                raise Bail from None
            if dec.saved is not None:
                raise Bail
        return make(sid, fields, obj), end

    return decode


def _slow_fields(
    text: str, idx: int, end: int, sid: str, plain: Any, dec: Decoder
) -> tuple[RecordFields, dict[str, Any]]:
    """A record through godecode: its fields and the dict `make` gets (see
    _canonical). An error Go saves is left in `dec`; one that stops Go's
    decode (time.Time's) is raised.

    godecode reads json.loads' dict where that is all Go sees (no duplicate
    key, no escape: see _tail), as for a record with a key in another case,
    and the exact parse (jsonwalk.scan_exact) otherwise, or to word an error
    (a number's own text)."""
    where = ("snapshots", f"[{json.dumps(sid, ensure_ascii=False)}]")
    if (
        type(plain) is dict
        and text.find("\\", idx, end) == -1
        and text.count('"', idx, end) == 2 * _strings(plain)
    ):
        trial = Decoder()
        try:
            rec = trial.decode_at(plain, _RECORD_TYPE, "SnapshotIndex", ("snapshots",), where)
        except GoDecodeError:
            pass
        else:
            if trial.saved is None:
                return _exact_fields(rec), _canonical(plain, rec)
    exact, _ = scan_exact(text, idx, 2)
    rec = dec.decode_at(exact, _RECORD_TYPE, "SnapshotIndex", ("snapshots",), where)
    if type(plain) is not dict:
        return _exact_fields({}), {}  # an error is saved: the DB fails
    return _exact_fields(rec), _canonical(plain, rec)


def _strings(value: Any) -> int:
    """How many strings (keys included) a parsed JSON value holds; without
    recursion, as a value may be nested 10,000 deep."""
    count = 0
    todo = [value]
    while todo:
        v = todo.pop()
        if type(v) is str:
            count += 1
        elif type(v) is dict:
            count += len(v)
            todo.extend(v.values())
        elif type(v) is list:
            todo.extend(v)
    return count


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic collector around bulk building of acyclic objects
    (a decoded DB, the index built from it): with 100k records it would run
    dozens of times and find nothing, doubling the time."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


__all__ = ["GO_ZERO_TIME", "LazyDB", "SnapshotDB", "SnapshotRecord", "decode_lazily", "decode_snapshot_db"]
