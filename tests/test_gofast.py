"""gofast (msgspec) against the exact decoder (godecode over jsonwalk's
exact parse): whenever the fast route answers, its answer is Go's; and the
public decoders (goplain.unmarshal, records.decode_records) give the same
values or the same error text whichever route they take.

Documents are drawn from cocoon's Go types (goschema), then made hostile:
duplicate keys at every level, case-folded and unknown keys, escapes (\\u0000,
lone surrogates, Go's \\u003c), null anywhere, numbers out of int64's range
or with a fraction or exponent, invalid UTF-8, a BOM, white space and
indentation, trailing garbage, truncation."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoond.errors import DBError
from cocoond.storage import gofast, goplain, goschema, gotime, records
from cocoond.storage.godecode import ZERO, Decoder, GoDecodeError
from cocoond.storage.gojson import loads_exact, text_go
from cocoond.storage.goschema import GoType, Kind
from cocoond.storage.snapshotdir import CH_VM_CONFIG, FC_SIDECAR_META, SIDECAR_META

CHARS = st.one_of(
    st.characters(codec="utf-8"),
    st.characters(categories=["Cs"]),
    st.sampled_from('<>&\u2028"\\/\x00\x1f\n\x7f\u017f\u212a'),
)
TEXT = st.text(alphabet=CHARS, max_size=6)
KEYS = st.text(alphabet="abcdefgxyz_", min_size=1, max_size=5)
TIMES = st.sampled_from(
    [
        "2026-12-02T08:29:05.65382051Z",
        "2024-02-29T23:59:59+05:30",
        "0001-01-01T00:00:00Z",
        "2021-02-30T00:00:00Z",  # Go: day out of range
        "2021-01-01 00:00:00Z",
        "2021-01-01T00:00:00z",
        "2021-01-01T24:00:00Z",
        "2021-01-01T1:00:00Z",  # Go's one-digit hour
        "",
    ]
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=2**63 - 2, max_value=2**64),
    st.integers(min_value=-(2**64), max_value=-(2**63) + 1),
    st.sampled_from([0, -1, 1.0, 1.5, 1e3, -0.0]),
)


class Obj(list[tuple[str, Any]]):
    """A JSON object as its members, duplicates allowed."""


class Raw(str):
    """JSON text put in as it stands (a number's own spelling)."""


def dump(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Obj):
        inner = ",".join(f"{json.dumps(k, ensure_ascii=ascii_only)}:{dump(v, ascii_only)}" for k, v in value)
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


ANY_LEAF = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, st.just(Obj()), st.just([]))


@st.composite
def go_values(draw: st.DrawFn, t: GoType, depth: int = 0) -> Any:
    """A JSON value for Go type `t`: mostly well-typed, sometimes not."""
    if draw(st.integers(0, 30)) == 0:
        return draw(ANY_LEAF)  # the wrong type, or null, anywhere
    kind = t.kind
    if kind is Kind.STRING:
        return draw(TEXT)
    if kind is Kind.BOOL:
        return draw(st.booleans())
    if kind is Kind.INT:
        number = draw(NUMBERS)
        if draw(st.integers(0, 20)) == 0:
            return Raw(draw(st.sampled_from(["1e2", "1E2", "-0", "10.0", "1e400"])))
        return number
    if kind is Kind.TIME:
        return draw(TIMES)
    assert t.elem is not None or t.struct is not None
    if kind is Kind.PTR:
        assert t.elem is not None
        return None if draw(st.integers(0, 5)) == 0 else draw(go_values(t.elem, depth))
    if kind is Kind.SLICE:
        assert t.elem is not None
        if depth > 3 or draw(st.integers(0, 8)) == 0:
            return None
        return draw(st.lists(go_values(t.elem, depth + 1), max_size=2))
    if kind is Kind.MAP:
        assert t.elem is not None
        if depth > 3:
            return Obj()
        keys = draw(st.lists(st.one_of(KEYS, TEXT), max_size=3, unique=True))
        members = Obj((k, draw(go_values(t.elem, depth + 1))) for k in keys)
        if members and draw(st.integers(0, 6)) == 0:  # a duplicate key
            members.append((members[0][0], draw(go_values(t.elem, depth + 1))))
        return members
    assert t.struct is not None
    fields = [f for f in t.struct.fields if depth < 4 or f.type.kind in (Kind.STRING, Kind.INT, Kind.BOOL)]
    chosen = (
        draw(st.lists(st.sampled_from(fields), max_size=len(fields), unique_by=lambda f: f.name))
        if fields
        else []
    )
    chosen.sort(key=lambda f: f.index)
    members = Obj((f.name, draw(go_values(f.type, depth + 1))) for f in chosen)
    edit = draw(st.integers(0, 12))
    if edit == 0 and members:  # a duplicate field
        f = t.struct.exact[members[-1][0]]
        members.append((f.name, draw(go_values(f.type, depth + 1))))
    elif edit == 1 and members:  # a case-folded key
        name = members[0][0]
        members[0] = (
            draw(st.sampled_from([name.upper(), name.capitalize(), name.replace("s", "\u017f")])),
            members[0][1],
        )
    elif edit == 2:  # an unknown key
        members.insert(draw(st.integers(0, len(members))), (draw(KEYS) + "_x", draw(ANY_LEAF)))
    elif edit == 3 and len(members) > 1:  # another order
        members.reverse()
    return members


EDITS = (
    "none",
    "none",
    "none",
    "indent",
    "ws",
    "trail",
    "garbage",
    "bom",
    "truncate",
    "badbyte",
    "escape",
    "nul",
)


@st.composite
def documents(draw: st.DrawFn, t: GoType) -> bytes:
    text = dump(draw(go_values(t)), ascii_only=draw(st.integers(0, 5)) == 0)
    data = text.encode("utf-8", "surrogatepass")
    edit = draw(st.sampled_from(EDITS))
    if edit == "indent":
        with contextlib.suppress(ValueError):
            indent = draw(st.one_of(st.just(1), st.just("\t")))
            data = json.dumps(json.loads(data), indent=indent).encode()
    elif edit == "ws":
        data = b" \n\t" + data + b"\r\n "
    elif edit == "trail":
        data += b"\n"
    elif edit == "garbage":
        data += draw(st.sampled_from([b"x", b"{}", b"\x0c", b"\x00"]))
    elif edit == "bom":
        data = b"\xef\xbb\xbf" + data
    elif edit == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif edit == "badbyte" and data:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + data[at:]
    elif edit in ("escape", "nul") and b'"' in data:
        at = data.index(b'"') + 1
        data = (
            data[:at]
            + draw(st.sampled_from([b"\\u0041", b"\\ud800", b"\\u003c", b"\\u0000", b"\\/"]))
            + data[at:]
        )
    return data


def _plain(value: Any) -> Any:
    """godecode's value as goplain gives it (a time.Time as its text)."""
    if type(value) is tuple:
        return value[1]
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    if type(value) is list:
        return [_plain(v) for v in value]
    return value


def exact(data: bytes, t: GoType) -> Any:
    """Go's answer: the decoded value, or the error's text."""
    try:
        return _plain(Decoder().unmarshal(loads_exact(text_go(data), ""), t))
    except DBError as exc:
        return ("error", exc.reason)
    except GoDecodeError as exc:
        return ("error", str(exc))


def _drop_unknown(value: Any, t: GoType) -> Any:
    """goplain's quick route may keep keys Go skips: compare what Go sets."""
    if value is None or t.kind in (Kind.STRING, Kind.BOOL, Kind.INT, Kind.TIME):
        return value
    if t.kind is Kind.PTR:
        assert t.elem is not None
        return _drop_unknown(value, t.elem)
    if t.kind is Kind.SLICE:
        assert t.elem is not None
        return [_drop_unknown(v, t.elem) for v in value]
    if t.kind is Kind.MAP:
        assert t.elem is not None
        return {k: _drop_unknown(v, t.elem) for k, v in value.items()}
    assert t.struct is not None
    if type(value) is not dict:
        return value
    return {k: _drop_unknown(v, t.struct.exact[k].type) for k, v in value.items() if k in t.struct.exact}


def public(data: bytes, t: GoType, lenient: bool) -> Any:
    try:
        return _plain(_drop_unknown(goplain.unmarshal(data, "", t, lenient=lenient), t))
    except DBError as exc:
        return ("error", exc.reason)


TYPES = {
    "vms": (goschema.VM_INDEX, False),
    "oci": (goschema.OCI_INDEX, False),
    "cloudimg": (goschema.CLOUDIMG_INDEX, False),
    "cni": (goschema.CNI_INDEX, False),
    "fc-sidecar": (FC_SIDECAR_META, False),
    "ch-sidecar": (SIDECAR_META, False),
    "ch-config-lenient": (CH_VM_CONFIG, True),
    "ch-config": (CH_VM_CONFIG, False),
}


@pytest.mark.parametrize("which", TYPES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_route_answers_only_with_go_s_answer(which: str, data: st.DataObject) -> None:
    t, lenient = TYPES[which]
    doc = data.draw(documents(t))
    go = exact(doc, t)
    fast = gofast.unmarshal_fast(doc, t, lenient=lenient)
    if fast is not None:
        assert fast == go
    # goplain: a bare null (Go's untouched zero struct) is an empty DB.
    assert public(doc, t, lenient) == ({} if go is None or go is ZERO else go)


def _hand(record: dict[str, Any] | None = None, **top: Any) -> bytes:
    rec = {"cpu": 2, "id": "A", "name": "a", "created_at": "2026-01-02T03:04:05Z", **(record or {})}
    order = [f.name for f in goschema.fields_of(goschema.SNAPSHOT_RECORD).fields]
    rec = dict(
        sorted(rec.items(), key=lambda kv: order.index(kv[0].lower()) if kv[0].lower() in order else 99)
    )
    return json.dumps({"snapshots": {"A": rec}, "names": {"a": "A"}, **top}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("doc", "fast"),
    [
        (_hand(), True),
        (_hand() + b"\n", True),
        (_hand({"image_blob_ids": {"ab": {}}, "pending": True}), True),
        (_hand({"cpu": 0}), False),  # Go leaves a zero cpu out (omitempty): not its bytes
        (_hand({"Cpu": 3}), False),  # case-folded: Go takes it, msgspec would not
        (_hand({"x": 1}), False),  # unknown: Go skips it
        (_hand({"cpu": 2**63}), False),
        (_hand({"created_at": "2021-02-30T00:00:00Z"}), False),
        (_hand({"name": "<a&b>"}), True),  # msgspec writes <, >, & as they are
        (_hand({"name": "\\u003c"}).replace(b"\\\\u003c", b"\\u003c"), False),  # Go's own escape
        (_hand().replace(b'"cpu":2', b'"cpu":2,"cpu":3'), False),
        (_hand().replace(b'"names"', b'"names":{},"names"'), False),
        (b"\xef\xbb\xbf" + _hand(), False),
        (_hand()[:-1], False),
        (b"null", False),
        (_hand().replace(b'"A":{', b'"0":null,"A":{'), True),
        (_hand().replace(b'"A":{', b'"0":null, "A":{'), False),
        (_hand().replace(b'"A":{', b'"0":null,"A":{').replace(b'}},"names"', b'},"1":null},"names"'), True),
        (_hand().replace(b'}},"names"', b'},"A":null},"names"'), False),  # a repeated ID
    ],
)
def test_snapshot_db_routes(doc: bytes, fast: bool) -> None:
    assert (records._decode_fast(doc, lambda s, f, r: (f, r), False, True) is not None) is fast
    with mock.patch.object(records, "_CHUNK", 1):
        assert (records._decode_fast(doc, lambda s, f, r: (f, r), False, True) is not None) is fast
    assert _db(doc) == _db(text_go(doc).encode("utf-8", "surrogatepass"), via_text=True)


def _db(doc: bytes, via_text: bool = False) -> Any:
    """decode_records' whole answer; bytes take the fast route first, text
    only the exact walk."""
    try:
        d = records.decode_records(text_go(doc) if via_text else doc, "db", lambda s, f, r: (f, r))
    except DBError as exc:
        return str(exc)
    return d.records, d.null_ids, d.names, d.extra, d.key_order


@st.composite
def snapshot_dbs(draw: st.DrawFn) -> bytes:
    """A DB cocoon could write (mostly canonical, so the fast route runs),
    then made hostile as the other documents are."""
    recs = Obj()
    for sid in draw(st.lists(st.one_of(KEYS, TEXT), max_size=4, unique=True)):
        if draw(st.integers(0, 8)) == 0:
            recs.append((sid, None))
            continue
        rec = Obj(
            [
                ("cpu", draw(NUMBERS)),
                ("image", draw(TEXT)),
                ("id", sid),
                ("name", draw(TEXT)),
                ("image_blob_ids", Obj((h, Obj()) for h in draw(st.lists(KEYS, max_size=2, unique=True)))),
                ("hypervisor", draw(st.sampled_from(["cloud-hypervisor", "firecracker", ""]))),
                ("created_at", draw(TIMES)),
                ("pending", draw(st.booleans())),
                ("data_dir", draw(TEXT)),
            ]
        )
        drop = draw(st.sets(st.integers(0, len(rec) - 1), max_size=3))
        rec = Obj(m for i, m in enumerate(rec) if i not in drop)
        recs.append(
            (
                sid,
                rec if draw(st.integers(0, 10)) else draw(go_values(goschema.ptr(goschema.SNAPSHOT_RECORD))),
            )
        )
    names = Obj(
        (k, sid)
        for k, sid in zip(draw(st.lists(KEYS, max_size=3, unique=True)), [s for s, _ in recs], strict=False)
    )
    top = Obj([("snapshots", recs), ("names", names)])
    if draw(st.integers(0, 8)) == 0:
        top = draw(go_values(goschema.SNAPSHOT_INDEX))
    data = dump(top, ascii_only=draw(st.integers(0, 5)) == 0).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = draw(documents(goschema.SNAPSHOT_INDEX)) if draw(st.integers(0, 3)) == 0 else data + b"\n"
    return data


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot_dbs())
def test_snapshot_db_same_answer_either_route(doc: bytes) -> None:
    assert _db(doc) == _db(doc, via_text=True)
    with mock.patch.object(records, "_CHUNK", 1):  # records proved one chunk at a time
        assert _db(doc) == _db(doc, via_text=True)
    assert _api(doc) == _api(text_go(doc))


def _api(doc: bytes | str) -> bytes | str:
    """The API's SnapshotDB, written back (or the error)."""
    try:
        d = records.decode_records(doc, "db", records._record)
    except DBError as exc:
        return str(exc)
    return records.SnapshotDB(d.records, d.names, d.null_ids, d.extra, d.key_order).encode()


def test_ints_beyond_int64_are_refused_by_the_generated_types() -> None:
    typ = gofast.struct_type(goschema.CNI_INDEX)
    doc = b'{"networks":{"a":{"network":{"prefix":99999999999999999999}}}}'
    with pytest.raises(gofast.NotCanonical):
        gofast.canonical(doc, typ)
    assert exact(doc, goschema.CNI_INDEX)[0] == "error"
    # msgspec alone takes it (as an int since 0.17, a float before).
    assert msgspec.json.decode(doc)["networks"]["a"]["network"]["prefix"] > 2**63


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{1,2}:[0-9]{2}:[0-9]{2}"
        r"([.,][0-9]{0,10})?(Z|z|[+-][0-9]{2}:[0-9]{2})",
        fullmatch=True,
    )
)
def test_parse_time_is_gotime_s_parser(text: str) -> None:
    try:
        expected: Any = gotime.parse_rfc3339(text)
    except ValueError:
        expected = None
    assert gofast.parse_time(text) == expected


@pytest.mark.parametrize(
    ("doc", "fast"),
    [
        (b'{"payload":{"kernel":"/k","firmware":null},"extra":{"Kernel":1}}', False),  # folded (conservative)
        (b'{"payload":{"Kernel":"/k"}}', False),  # Go sets payload.kernel from it
        (b'{"payload":{"\xe2\x84\xaaernel":"/k"}}', False),  # Kelvin sign: Go folds it to K
        (b'{"payload":{"kernel":"/k","kernel":"/j"}}', False),
        (b'{"payload":{"kernel":"/k","firmware":null},"cpus":{"boot_vcpus":2,"topology":null}}', True),
        (b'{"payload":{"kernel":"/k"},"memory":{"size":1.5}}', False),
    ],
)
def test_lenient_documents(doc: bytes, fast: bool) -> None:
    got = gofast.unmarshal_fast(doc, CH_VM_CONFIG, lenient=True)
    assert (got is not None) is fast
    if got is not None:
        assert got == exact(doc, CH_VM_CONFIG)
    assert public(doc, CH_VM_CONFIG, True) == exact(doc, CH_VM_CONFIG)


@pytest.mark.parametrize("depth", [100, 5000, 20000])
def test_deep_nesting_steps_aside_or_agrees(depth: int) -> None:
    """Go's limit is 10,000 levels; msgspec has its own: either way the
    answer is the exact decoder's."""
    doc = b'{"payload":{"kernel":"/k"},"x":' + b"[" * depth + b"]" * depth + b"}"
    fast = gofast.unmarshal_fast(doc, CH_VM_CONFIG, lenient=True)
    go = exact(doc, CH_VM_CONFIG)
    if fast is not None:
        assert fast == go
    assert public(doc, CH_VM_CONFIG, True) == go
    vms = b'{"vms":{},"names":{},"x":' + b"[" * depth + b"]" * depth + b"}"
    assert gofast.unmarshal_fast(vms, goschema.VM_INDEX) is None  # an unknown key: the exact route
    assert public(vms, goschema.VM_INDEX, False) == exact(vms, goschema.VM_INDEX)
