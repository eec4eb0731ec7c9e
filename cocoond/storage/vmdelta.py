"""A VM DB rewrite absorbed at the cost of what it changed (dbspans).

Every `cocoon snapshot save` adds the snapshot to its VM's `snapshot_ids`
(hypervisor/backend.go:437-440), so vms.json is rewritten as often as
snapshots.json: 8.5 MB at 100k snapshots, 0.27 s to decode whole. What the
index needs of it is the set of blob hexes its VMs pin. Kept per VM DB
file: its spans and each VM's hexes (a few distinct sets, shared); a
rewrite re-decodes the changed VMs only, each as a one-VM document through
the same decoder the whole file goes through (refdbs.decode_vm_refs).

The state is keyed by the file's path and checked against the new bytes
chunk by chunk, so it never needs to agree with anything else: a stale
one costs a re-decode of what differs, never a wrong answer. Why the
per-VM decode gives the whole file's answer: Go decodes each map entry
into a fresh record and saves the first error; an entry with any error,
a repeated key, or another document shape goes to the full decode."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from cocoond.errors import DBError
from cocoond.storage.dbspans import Bail, Spans, absorb, head_of, walk_spans
from cocoond.storage.godecode import Decoder
from cocoond.storage.gojson import text_go
from cocoond.storage.jsonwalk import JSONWalkError, scan_value
from cocoond.storage.refdbs import decode_vm_db, vm_refs

FIRST = "vms"
#: VM DB files remembered (two per root: Cloud Hypervisor, Firecracker).
MAX_FILES = 8


@dataclass(slots=True)
class _State:
    spans: Spans
    per_vm: dict[str, frozenset[str]]
    names: dict[str, str]
    counts: Counter[str]


_STATES: OrderedDict[str, _State] = OrderedDict()
_SETS: dict[frozenset[str], frozenset[str]] = {}


def _shared(hexes: frozenset[str]) -> frozenset[str]:
    if len(_SETS) > 4096:
        _SETS.clear()
    return _SETS.setdefault(hexes, hexes)


def absorbed(path: str, max_bytes: int | None) -> frozenset[str] | None:
    """The hexes the VM DB at `path` pins, from what its last decode left
    and the entries that changed; None when the full decode must run."""
    state = _STATES.pop(path, None)
    if state is None:
        return None
    delta = absorb(
        path,
        state.spans,
        _decode_vm,
        records=state.per_vm,
        names=state.names,
        copy_keys=False,
        max_bytes=max_bytes,
        first=FIRST,
    )
    if delta is None:
        return None
    for key in delta.removed:
        state.counts.subtract(state.per_vm.pop(key, frozenset()))
    for key, hexes in delta.added.items():
        state.per_vm[key] = hexes or frozenset()
        state.counts.update(hexes or ())
    for name in delta.names_removed:
        state.names.pop(name, None)
    state.names.update(delta.names_added)
    state.spans = delta.spans
    _remember(path, state)
    return frozenset(h for h, n in state.counts.items() if n > 0)


def decode(data: bytes, path: str) -> frozenset[str]:
    """The full decode (refdbs), its result remembered for the next write."""
    _STATES.pop(path, None)
    per_vm, names = decode_vm_db(data, path)
    per_vm = {k: _shared(v) for k, v in per_vm.items()}
    found = walk_spans(text_go(data), FIRST, len(per_vm), names)
    if found is not None:
        spans, _ = found
        counts: Counter[str] = Counter()
        for hexes in per_vm.values():
            counts.update(hexes)
        _remember(path, _State(spans, per_vm, dict(names), counts))
    return vm_refs(per_vm)


def forget(path: str) -> None:
    _STATES.pop(path, None)


def _remember(path: str, state: _State) -> None:
    _STATES[path] = state
    while len(_STATES) > MAX_FILES:
        _STATES.popitem(last=False)


def _decode_vm(text: str, key: str, start: int, idx: int, dec: Decoder) -> tuple[frozenset[str], int]:
    """One VM entry, decoded as a one-VM DB by the full decoder: its hexes."""
    _, end = scan_value(text, idx, 2)
    if end >= len(text):
        raise JSONWalkError("past the window")
    doc = head_of(FIRST) + text[start:end] + "}}"
    try:
        per_vm, _ = decode_vm_db(doc.encode("utf-8", "surrogatepass"), "")
    except (DBError, UnicodeError):
        raise Bail from None
    if len(per_vm) != 1:
        raise Bail
    return _shared(next(iter(per_vm.values()))), end
