"""Cocoon's snapshot DB as Python objects, decoded and encoded the way Go's
encoding/json does it, so that what we write back is what cocoon (and every
other tool on the host) expects to read.

Three things the Go seed loses and we must not: keys we do not know (cocoon
adds fields over time), the exact `created_at` text (Go keeps nanoseconds,
Python microseconds), and the order of a record's keys (diffs of the DB stay
readable). Unknown keys and the original key order ride along on each record.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from cocoond.errors import DBError
from cocoond.storage.gojson import (
    GO_ZERO_TIME,
    dumps_go,
    format_rfc3339,
    loads_go,
    parse_rfc3339,
    text_go,
    zero_time,
)
from cocoond.storage.jsonwalk import JSONWalkError, scan_value, skip_ws, walk_object
from cocoond.storage.memory import own

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
_STR_FIELDS = ("id", "name", "description", "image", "data_dir")
_INT_FIELDS = ("cpu", "memory", "storage", "nics")

# Key orders repeat across 100k records: one shared tuple per distinct order
# (a pointer per record) and, with it, which of its keys are unknown.
_SHAPES: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
R = TypeVar("R")
# Blob hexes repeat too (a few images, many snapshots).
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


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


#: A record's fields after Go's decoding rules, in this order: id, name,
#: description, image, data_dir, cpu, memory, storage, nics, pending,
#: image_blob_ids, created_at, created_at text (None when absent).
RecordFields = tuple[str, str, str, str, str, int, int, int, int, bool, set[str], datetime, str | None]


def check_record(
    path: str,
    key: str,
    obj: dict[str, Any],
    # Bound as locals: 24 global lookups per record were a fifth of the cost.
    _type: type[type] = type,
    _str: type[str] = str,
    _int: type[int] = int,
    _bool: type[bool] = bool,
    _dict: type[dict[str, Any]] = dict,
) -> RecordFields:
    """Decode one record with Go's rules: null leaves the zero value, any
    other wrong type fails the whole DB (json.Unmarshal does). Written for
    speed: a 100k-record DB passes through here on every rewrite."""
    get = obj.get
    sid, name, desc, image, ddir = get("id"), get("name"), get("description"), get("image"), get("data_dir")
    cpu, memory, storage, nics = get("cpu"), get("memory"), get("storage"), get("nics")
    pending, raw_blobs, text = get("pending"), get("image_blob_ids"), get("created_at")
    if not (
        (sid is None or _type(sid) is _str)
        and (name is None or _type(name) is _str)
        and (desc is None or _type(desc) is _str)
        and (image is None or _type(image) is _str)
        and (ddir is None or _type(ddir) is _str)
        and (cpu is None or _type(cpu) is _int)
        and (memory is None or _type(memory) is _int)
        and (storage is None or _type(storage) is _int)
        and (nics is None or _type(nics) is _int)
        and (pending is None or _type(pending) is _bool)
        and (raw_blobs is None or _type(raw_blobs) is _dict)
        and (text is None or _type(text) is _str)
    ):
        _raise_type_error(path, key, obj)
    blobs: set[str] = set()
    if raw_blobs:
        for hex_, member in raw_blobs.items():
            if member is not None and type(member) is not dict:
                raise DBError(
                    path,
                    f"snapshots[{key!r}].image_blob_ids[{hex_!r}]: expected {{}}, got {_type_name(member)}",
                )
            blobs.add(_HEXES.setdefault(hex_, hex_))
    if text is None:
        created_at = zero_time()
    else:
        try:
            created_at = parse_rfc3339(text)
        except ValueError:
            raise DBError(path, f"snapshots[{key!r}].created_at: not an RFC 3339 time: {text!r}") from None
    return (
        sid or "",
        name or "",
        desc or "",
        image or "",
        ddir or "",
        cpu or 0,
        memory or 0,
        storage or 0,
        nics or 0,
        pending is True,
        blobs,
        created_at,
        text,
    )


def _record(key: str, fields: RecordFields, obj: dict[str, Any]) -> SnapshotRecord:
    sid, name, desc, image, ddir, cpu, memory, storage, nics, pending, blobs, created_at, text = fields
    shape = _SHAPES.get(order := tuple(obj))
    if shape is None:
        shape = _SHAPES[order] = (order, tuple(k for k in order if k not in _KNOWN))
    order, unknown = shape
    extra = {k: obj[k] for k in unknown} if unknown else {}
    return SnapshotRecord(
        sid,
        name,
        desc,
        image,
        blobs,
        cpu,
        memory,
        storage,
        nics,
        created_at,
        pending,
        ddir,
        extra,
        text,
        order,
    )


_EXPECTED = {
    **{f: ("a string", str) for f in _STR_FIELDS},
    **{f: ("an integer", int) for f in _INT_FIELDS},
    "pending": ("a boolean", bool),
    "image_blob_ids": ("an object", dict),
    "created_at": ("an RFC 3339 string", str),
}


def _raise_type_error(path: str, key: str, obj: dict[str, Any]) -> None:
    for name, (label, typ) in _EXPECTED.items():
        value = obj.get(name)
        if value is not None and type(value) is not typ:
            raise DBError(path, f"snapshots[{key!r}].{name}: expected {label}, got {_type_name(value)}")


@dataclass(slots=True)
class DecodedDB(Generic[R]):
    """snapshots.json decoded, with each record made by the caller's
    function: SnapshotRecord for the API, something smaller for an index."""

    records: dict[str, R]
    null_ids: set[str]
    names: dict[str, str]
    extra: dict[str, Any]
    key_order: tuple[str, ...]


def decode_snapshot_db(data: bytes, path: str | os.PathLike[str]) -> SnapshotDB:
    """Bytes of snapshots.json -> SnapshotDB, or DBError naming `path`."""
    d = decode_records(data, path, _record)
    return SnapshotDB(d.records, d.names, d.null_ids, d.extra, d.key_order)


def decode_records(
    data: bytes | str,
    path: str | os.PathLike[str],
    make: Callable[[str, RecordFields, dict[str, Any]], R],
    *,
    copy_keys: bool = False,
) -> DecodedDB[R]:
    """Decode and validate snapshots.json; `make(key, fields, raw)` builds
    each (non-null) record. `copy_keys` for a long-lived index: see
    memory.own. Raises DBError naming `path`.

    Records are decoded one at a time (jsonwalk.py): with 100k of them this
    halves the memory peak of a load and costs no time. Same rules as
    json.loads (duplicate keys: the last wins) and as Go (UTF-8 only)."""
    where = os.fspath(path)
    text = text_go(data) if isinstance(data, bytes) else data
    start = skip_ws(text, 0)
    if not text.startswith("{", start):
        # Not an object: let the whole-document decoder say what it is.
        top = loads_go(text, where)
        if top is not None:
            raise DBError(where, f"expected a JSON object at the top, got {_type_name(top)}")
        return DecodedDB({}, set(), {}, {}, ())  # Go unmarshals a bare `null` into an empty DB
    records: dict[str, R] = {}
    null_ids: set[str] = set()
    names: dict[str, str] = {}
    extra: dict[str, Any] = {}
    order: dict[str, None] = {}

    def on_record(sid: str, idx: int) -> int:
        obj, end = scan_value(text, idx)
        if obj is None:
            records.pop(sid, None)
            null_ids.add(sid)
        elif type(obj) is dict:
            null_ids.discard(sid)
            records[own(sid) if copy_keys else sid] = make(sid, check_record(where, sid, obj), obj)
        else:
            raise DBError(where, f"snapshots[{sid!r}]: expected an object, got {_type_name(obj)}")
        return end

    def on_member(key: str, idx: int) -> int:
        order[key] = None
        if key == "snapshots":
            records.clear()
            null_ids.clear()
            if text.startswith("{", idx):
                return walk_object(text, idx, on_record)
        value, end = scan_value(text, idx)
        if key == "snapshots":
            if value is not None:
                raise DBError(where, f'"snapshots": expected an object, got {_type_name(value)}')
        elif key == "names":
            names.clear()
            names.update(_names(where, value))
        else:
            extra[key] = value
        return end

    with no_gc():
        try:
            end = skip_ws(text, walk_object(text, start, on_member))
            if end != len(text):
                raise JSONWalkError(f"extra data at char {end}")
        except JSONWalkError as exc:
            raise DBError(where, f"not valid JSON ({exc})") from None
        return DecodedDB(records, null_ids, names, extra, tuple(order))


def _names(where: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if type(raw) is not dict:
        raise DBError(where, f'"names": expected an object, got {_type_name(raw)}')
    names: dict[str, str] = {}
    for name, sid in raw.items():
        if sid is None:
            sid = ""
        elif type(sid) is not str:
            raise DBError(where, f"names[{name!r}]: expected a string, got {_type_name(sid)}")
        names[name] = sid
    return names


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


__all__ = ["GO_ZERO_TIME", "SnapshotDB", "SnapshotRecord", "decode_snapshot_db"]
