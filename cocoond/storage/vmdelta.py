"""A VM DB rewrite absorbed at the cost of what it changed (dbspans).

Every `cocoon snapshot save` adds the snapshot to its VM's `snapshot_ids`
(hypervisor/backend.go:437-440), so vms.json is rewritten as often as
snapshots.json: 8.5 MB at 100k snapshots, 0.27 s to decode whole. What the
index needs of it is what gc reads (refdbs.RefFacts: the blob hexes its
VMs pin, their IDs, those still creating) and what each VM claims
(refdbs.vm_facts: its snapshots, base files, blobs, roles). Kept per VM DB
file: its spans, each VM's facts (hex sets shared) and, per chunk of
entries, its VMs' claims and creating entries in the file's order; a
rewrite re-decodes the changed VMs only, each as a one-VM document through
the same decoder the whole file goes through (refdbs.decode_vm_facts).

Order matters: the full decode lists claims (and creating VMs) in the
order the VMs appear in the file, and the index takes the first VM that
lists a snapshot as its owner (reconcile._index_owners). A chunk's bytes
(its SHA-256) fix its entries, so a kept chunk keeps its claims; new
chunks take theirs from the VMs just decoded; the result is the chunks'
claims in the new file's order, which is the full decode's order (no key
repeats on this route).

The state is keyed by the file's path and checked against the new bytes
chunk by chunk, so it never needs to agree with anything else: a stale
one costs a re-decode of what differs, never a wrong answer. Why the
per-VM decode gives the whole file's answer: Go decodes each map entry
into a fresh record and saves the first error; an entry with any error,
a repeated key, or another document shape goes to the full decode."""

from __future__ import annotations

import operator
from collections import Counter, OrderedDict
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

from cocoond.core.facts import CreatingVM, RefFacts, VMClaim
from cocoond.errors import DBError
from cocoond.storage import goschema
from cocoond.storage.dbspans import Bail, Chunk, Spans, absorb, head_of, walk_spans
from cocoond.storage.godecode import Decoder
from cocoond.storage.gojson import text_go
from cocoond.storage.goplain import unmarshal
from cocoond.storage.jsonwalk import JSONWalkError, scan_value
from cocoond.storage.memory import interned
from cocoond.storage.refdbs import decode_vm_facts, vm_facts

FIRST = "vms"
#: VM DB files remembered (two per root: Cloud Hypervisor, Firecracker).
MAX_FILES = 8
#: A VM DB up to this size is kept as bytes beside its spans: a rewrite
#: then tells kept chunks by comparing bytes, not by SHA-256 (a one-VM
#: rewrite at 100k snapshots, 5.4 MB: 5.3 -> ~2.5 ms; SHA-256 alone is
#: ~0.09x a json.loads of the file). Bigger files keep digests only.
KEEP_BYTES = 16 << 20
#: Bytes of VM entries per chunk: a VM is ~1.3 KB and re-decoding one
#: through the full decoder costs ~0.1 ms, so a one-VM rewrite re-decodes
#: ~3 VMs rather than dbspans' default ~12 (comparing kept chunks by bytes
#: makes their number cheap).
CHUNK_BYTES = 4096
#: What one VM entry gives (refdbs.vm_facts of a one-VM DB).
_NONE = RefFacts(frozenset())


class _Run(NamedTuple):
    """What one chunk of `vms` entries gives, in its entries' order."""

    claims: tuple[VMClaim, ...]
    creating: tuple[tuple[str, CreatingVM], ...]


@dataclass(slots=True)
class _State:
    spans: Spans
    per_vm: dict[str, RefFacts]
    names: dict[str, str]
    counts: Counter[str]  # hex -> VMs naming it
    ids: set[str]
    #: chunk digest -> its run (same bytes: same entries, same facts).
    runs: dict[bytes, _Run]
    #: The file's bytes when last read (files up to KEEP_BYTES), else None.
    data: bytes | None = None


_STATES: OrderedDict[str, _State] = OrderedDict()
_SETS: dict[frozenset[str], frozenset[str]] = {}


def _shared(hexes: frozenset[str]) -> frozenset[str]:
    return interned(_SETS, hexes, 4096)


def _add(state: _State, key: str, facts: RefFacts) -> None:
    state.per_vm[key] = facts
    state.counts.update(facts.refs)
    state.ids.update(facts.ids)


def _drop(state: _State, key: str) -> None:
    facts = state.per_vm.pop(key, _NONE)
    state.counts.subtract(facts.refs)
    state.ids.difference_update(facts.ids)


def _run(state: _State, chunk: Chunk) -> _Run:
    """A chunk's claims and creating VMs, from its entries' facts."""
    each = [state.per_vm[key] for key in chunk.keys]
    return _Run(
        tuple(chain.from_iterable(f.claims for f in each)),
        tuple(chain.from_iterable(f.creating.items() for f in each)),
    )


_DIGEST = operator.attrgetter("digest")
_CLAIMS = operator.attrgetter("claims")
_CREATING = operator.attrgetter("creating")


def _set_runs(state: _State) -> None:
    """Runs for the current spans: a kept chunk's from before, a new one's
    from its VMs (one dict entry per chunk: 16 KiB of entries each)."""
    runs = state.runs
    chunks = state.spans.snapshots
    for c in [c for c in chunks if c.digest not in runs]:
        runs[c.digest] = _run(state, c)
    if len(runs) > 2 * len(chunks) + 64:  # runs of chunks gone: keep what is current
        state.runs = {d: runs[d] for d in map(_DIGEST, chunks)}


def _facts(state: _State) -> RefFacts:
    """What the whole file gives, in its order: claims and creating VMs
    chained chunk by chunk (pointers only; no VM is looked at)."""
    refs = frozenset(h for h, n in state.counts.items() if n > 0)
    runs: list[_Run] = list(map(state.runs.__getitem__, map(_DIGEST, state.spans.snapshots)))
    claims = tuple(chain.from_iterable(map(_CLAIMS, runs)))
    creating = dict(chain.from_iterable(map(_CREATING, runs)))
    return RefFacts(refs, frozenset(state.ids), creating, claims)


def absorbed(path: str, max_bytes: int | None) -> RefFacts | None:
    """What the VM DB at `path` gives gc, from what its last decode left
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
        old=state.data,
        chunk_bytes=CHUNK_BYTES,
    )
    if delta is None or delta.spans is None:
        return None
    state.data = delta.data if delta.data is not None and len(delta.data) <= KEEP_BYTES else None
    for key in delta.removed:
        _drop(state, key)
    for key, facts in delta.added.items():
        _add(state, key, facts or _NONE)
    for name in delta.names_removed:
        state.names.pop(name, None)
    state.names.update(delta.names_added)
    state.spans = delta.spans
    _set_runs(state)
    _remember(path, state)
    return _facts(state)


def decode(data: bytes, path: str) -> RefFacts:
    """The full decode (refdbs), its result remembered for the next write."""
    _STATES.pop(path, None)
    top = unmarshal(data, path, goschema.VM_INDEX)
    whole = vm_facts(top)
    vms: dict[str, Any] = top.get("vms") or {}
    names: dict[str, str] = top.get("names") or {}
    found = walk_spans(text_go(data), FIRST, len(vms), names, CHUNK_BYTES)
    if found is not None:
        spans, _ = found
        kept = data if len(data) <= KEEP_BYTES else None
        state = _State(spans, {}, dict(names), Counter(), set(), {}, kept)
        for key, vm in vms.items():
            one = vm_facts({"vms": {key: vm}})
            _add(state, key, one._replace(refs=_shared(one.refs)))
        if all(k in state.per_vm for c in spans.snapshots for k in c.keys):
            _set_runs(state)
            got = _facts(state)
            if got == whole and list(got.creating) == list(whole.creating):
                _remember(path, state)
                return got  # the same facts, sharing the state's (one copy, not two)
    return whole


def forget(path: str) -> None:
    _STATES.pop(path, None)


def _remember(path: str, state: _State) -> None:
    _STATES[path] = state
    while len(_STATES) > MAX_FILES:
        _STATES.popitem(last=False)


def _decode_vm(text: str, key: str, start: int, idx: int, dec: Decoder) -> tuple[RefFacts, int]:
    """One VM entry, decoded as a one-VM DB by the full decoder."""
    _, end = scan_value(text, idx, 2)
    if end >= len(text):
        raise JSONWalkError("past the window")
    doc = head_of(FIRST) + text[start:end] + "}}"
    try:
        facts = decode_vm_facts(doc.encode("utf-8", "surrogatepass"), "")
    except (DBError, UnicodeError):
        raise Bail from None
    return facts._replace(refs=_shared(facts.refs)), end
