"""cocoond's Go-decode verdict against real Go (issue 19): whether
json.Unmarshal into cocoon's snapshot.SnapshotIndex, hypervisor.VMIndex or
the cloudimg and OCI image indexes accepts a document is asked of a tiny Go program built from cocoon's own
struct definitions (tests/gocheck/main.go, standard library only, built
offline), and must be cocoond's answer by each of its routes: the exact
decoder (godecode), the quick route (goplain, which reads the VM and image
DBs) and
the streaming snapshot DB decoder (records).

The other Go-rule tests are hand-typed tables of what Go does; this one
asks Go. It needs `go` (Debian: golang-go, which .ci/run installs) and is
skipped with that reason where it is missing. Verdicts only, not error
texts: Debian 12's Go is 1.19 and cocoon builds with 1.25, whose messages
name the embedded structs (godecode follows 1.25). For the same reason
the times in these documents are valid RFC 3339 or plainly not a time:
Go 1.20 made time.Time's RFC 3339 parsing stricter, so edge cases of the
time grammar would test Go's version, not cocoond."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoond.errors import DBError
from cocoond.storage import gofast, records
from cocoond.storage import goschema as g
from cocoond.storage.godecode import Decoder, GoDecodeError
from cocoond.storage.gojson import loads_exact, text_go
from cocoond.storage.goplain import unmarshal
from cocoond.storage.records import decode_snapshot_db

SOURCE = Path(__file__).resolve().parent / "gocheck" / "main.go"


@pytest.fixture(scope="module")
def gocheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checker, built offline: no module proxy, no module mode."""
    go = shutil.which("go")
    if go is None:
        if os.environ.get("CI"):
            pytest.fail("go is missing in CI: .ci/run should have installed golang-go")
        pytest.skip("go not installed (Debian: apt-get install golang-go; .ci/run installs it)")
    out = tmp_path_factory.mktemp("gocheck")
    env = {
        **os.environ,
        "GOPROXY": "off",
        "GOFLAGS": "-mod=readonly",
        "GO111MODULE": "off",
        "GOTOOLCHAIN": "local",
        "GOCACHE": str(out / "cache"),
        "GOPATH": str(out / "gopath"),
        "CGO_ENABLED": "0",
    }
    subprocess.run(
        [go, "build", "-o", str(out / "gocheck"), str(SOURCE)], check=True, env=env, timeout=300, cwd=out
    )
    return out / "gocheck"


def go_verdicts(gocheck: Path, docs: list[bytes], tmp: Path, db: str = "snapshots") -> list[str | None]:
    """None where Go accepts the document, else Go's error text."""
    paths = []
    for i, doc in enumerate(docs):
        path = tmp / f"doc{i}.json"
        path.write_bytes(doc)
        paths.append(str(path))
    done = subprocess.run([str(gocheck), db, *paths], capture_output=True, check=True, timeout=60)
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    assert len(lines) == len(docs), lines
    return [None if line == "ok" else line.partition("\t")[2] for line in lines]


def cocoond_verdicts(doc: bytes, db: str = "snapshots") -> dict[str, str | None]:
    """Each route's answer: None (accepted) or its error."""
    t = {"snapshots": g.SNAPSHOT_INDEX, "vms": g.VM_INDEX, "cloudimg": g.CLOUDIMG_INDEX, "oci": g.OCI_INDEX}[
        db
    ]
    out: dict[str, str | None] = {}
    try:
        Decoder().unmarshal(loads_exact(text_go(doc), "db.json"), t)
        out["godecode"] = None
    except (GoDecodeError, DBError) as exc:
        out["godecode"] = str(exc)
    try:
        unmarshal(doc, "db.json", t)
        out["goplain"] = None
    except DBError as exc:
        out["goplain"] = str(exc)
    # The msgspec route answers only for documents it proves Go accepts.
    if db == "snapshots":
        if records._decode_fast(doc, lambda sid, fields, raw: None, False, False) is not None:
            out["gofast"] = None
    elif gofast.unmarshal_fast(doc, t) is not None:
        out["gofast"] = None
    if db != "snapshots":
        return out
    try:
        decode_snapshot_db(doc, "db.json")
        out["records"] = None
    except DBError as exc:
        out["records"] = str(exc)
    return out


def assert_agree(gocheck: Path, docs: list[bytes], tmp: Path, db: str = "snapshots") -> None:
    disagreements = []
    for doc, go in zip(docs, go_verdicts(gocheck, docs, tmp, db), strict=True):
        for route, ours in cocoond_verdicts(doc, db).items():
            if (ours is None) != (go is None):
                disagreements.append(f"{route}: {doc[:200]!r}\n  go: {go or 'ok'}\n  cocoond: {ours or 'ok'}")
    assert not disagreements, "\n".join(disagreements)


T = "2026-03-04T05:06:07.123456789Z"
#: Documents typed by hand from cocoon's structs and Go's decode rules.
HAND_MADE: list[str | bytes] = [
    "null",
    "{}",
    '{"snapshots":null,"names":null}',
    '{"snapshots":{},"names":{}}',
    f'{{"snapshots":{{"A":{{"id":"A","name":"n","created_at":"{T}","image_blob_ids":{{"ab":{{}}}}}}}},'
    '"names":{"n":"A"}}',
    '{"snapshots":{"A":null},"names":{"n":null}}',
    '{"snapshots":{"A":{"cpu":"2"}}}',
    '{"snapshots":{"A":{"cpu":2.0}}}',
    '{"snapshots":{"A":{"cpu":1e2}}}',
    '{"snapshots":{"A":{"cpu":-0}}}',
    '{"snapshots":{"A":{"memory":9223372036854775807,"storage":-9223372036854775808}}}',
    '{"snapshots":{"A":{"memory":9223372036854775808}}}',
    '{"snapshots":{"A":{"nics":true}}}',
    '{"snapshots":{"A":{"pending":"true"}}}',
    '{"snapshots":{"A":{"pending":1}}}',
    '{"snapshots":{"A":{"name":1}}}',
    '{"snapshots":{"A":{"image_blob_ids":[]}}}',
    '{"snapshots":{"A":{"image_blob_ids":{"ab":1}}}}',
    '{"snapshots":{"A":{"image_blob_ids":{"ab":{"x":[1,2]},"cd":null}}}}',
    '{"snapshots":{"A":{"CPU":2,"Pending":true,"Data_Dir":"/x"}}}',
    '{"snapshots":{"A":{"cpu":"x","cpu":2}}}',
    '{"snapshots":{"A":{"cpu":2,"cpu":"x"}}}',
    '{"snapshots":{"A":{"dis\\u212a_queue_size":1}}}',  # KELVIN SIGN folds to k
    '{"snapshots":{"A":{"dis\u212a_queue_size":"x"}}}',
    '{"snapshots":{"A":{"unknown":{"deep":[[[[{"x":NaN}]]]]}}}}',
    '{"snapshots":{"A":{"unknown":[1,2,{"a":"b"}]}}}',
    '{"snapshots":{"A":{"created_at":1}}}',
    '{"snapshots":{"A":{"created_at":""}}}',
    '{"snapshots":{"A":{"created_at":"2026-03-04"}}}',
    '{"snapshots":{"A":{"created_at":"2026-03-04T05:06:07\\u005a"}}}',
    '{"snapshots":{"A":{"created_at":null}}}',
    '{"snapshots":{"A":{"created_at":"2026-03-04T05:06:07+05:30"}}}',
    '{"snapshots":{"A":{"name":"\\ud800"}}}',
    b'{"snapshots":{"A":{"name":"\xff\xfe"}}}',
    b'\xef\xbb\xbf{"snapshots":{}}',
    '{"snapshots":[]}',
    '{"snapshots":{"A":[]}}',
    '{"names":{"n":1}}',
    '{"names":[]}',
    "[]",
    '"x"',
    "1",
    "",
    "{",
    '{"snapshots":{}} x',
    '{"snapshots":{},}',
    '{"snapshots":{"A":{"cpu":01}}}',
    '{"snapshots":{"A":{"cpu":NaN}}}',
    " \n{ } \t",
    '{"snapshots":{"A":{"name":"a\\u0000b"}}}',
    '{"snapshots":{"A":{"name":"tab\there"}}}',
]


def test_hand_made_documents(gocheck: Path, tmp_path: Path) -> None:
    docs = [d if isinstance(d, bytes) else d.encode() for d in HAND_MADE]
    assert_agree(gocheck, docs, tmp_path)


VM_HAND_MADE: list[str] = [
    "null",
    '{"vms":{},"names":{}}',
    f'{{"vms":{{"v":{{"id":"v","state":"running","config":{{"name":"n","cpu":2,"User":"root","-":1}},'
    f'"created_at":"{T}","updated_at":"{T}","started_at":"{T}","stopped_at":null,'
    '"network_configs":[{"tap":"t","network":{"ip":"10.0.0.2","prefix":24}},null],'
    '"storage_configs":[{"path":"/d","role":"cow","direct_io":true}],'
    '"boot_config":null,"image_blob_ids":{"ab":{}},"snapshot_ids":{"S":{}}}},"names":{"n":"v"}}',
    '{"vms":{"v":{"config":{"name":1}}}}',
    '{"vms":{"v":{"config":[]}}}',
    '{"vms":{"v":{"config":null}}}',
    '{"vms":{"v":{"state":1}}}',
    '{"vms":{"v":{"pid":"1"}}}',
    '{"vms":{"v":{"network_configs":{}}}}',
    '{"vms":{"v":{"network_configs":[1]}}}',
    '{"vms":{"v":{"network_configs":[{"network":[]}]}}}',
    '{"vms":{"v":{"network_configs":[{"num_queues":1.5}]}}}',
    '{"vms":{"v":{"storage_configs":[{"direct_io":"yes"}]}}}',
    '{"vms":{"v":{"storage_configs":[{"ro":null,"direct_io":null}]}}}',
    '{"vms":{"v":{"started_at":"yesterday"}}}',
    '{"vms":{"v":{"started_at":1}}}',
    '{"vms":{"v":{"updated_at":"2026-03-04T05:06:07Z","created_at":false}}}',
    '{"vms":{"v":{"boot_config":{"cmdline":1}}}}',
    '{"vms":{"v":{"boot_config":"x"}}}',
    '{"vms":{"v":{"snapshot_ids":{"S":1}}}}',
    '{"vms":{"v":{"first_booted":"true"}}}',
    '{"vms":{"v":{"CONFIG":{"Name":"n","Cpu":1},"Boot_Config":{"Kernel_Path":"k"}}}}',
    '{"vms":{"v":{"config":{"OnDemand":"not a bool","DataDisks":7}}}}',
    '{"vms":[]}',
]


def test_hand_made_vm_documents(gocheck: Path, tmp_path: Path) -> None:
    assert_agree(gocheck, [d.encode() for d in VM_HAND_MADE], tmp_path, "vms")


IMAGE_HAND_MADE: list[tuple[str, str]] = [
    ("cloudimg", "null"),
    ("cloudimg", f'{{"images":{{"u":{{"ref":"u","content_sum":"sha256:ab","size":3,"created_at":"{T}"}}}}}}'),
    ("cloudimg", '{"images":{"u":null}}'),
    ("cloudimg", '{"images":{"u":{"size":"3"}}}'),
    ("cloudimg", '{"images":{"u":{"content_sum":1}}}'),
    ("cloudimg", '{"images":{"u":{"created_at":"2026"}}}'),
    ("cloudimg", '{"Images":{"u":{"Content_Sum":"sha256:ab"}},"index":1}'),
    ("cloudimg", '{"images":[]}'),
    ("oci", f'{{"images":{{"r":{{"layers":[{{"digest":"sha256:a"}},{{}}],"created_at":"{T}"}}}}}}'),
    ("oci", '{"images":{"r":{"layers":[null]}}}'),
    ("oci", '{"images":{"r":{"layers":[1]}}}'),
    ("oci", '{"images":{"r":{"layers":{}}}}'),
    ("oci", '{"images":{"r":{"layers":[{"digest":2}]}}}'),
    ("oci", '{"images":{"r":{"kernel_layer":null,"size":1e3}}}'),
    ("oci", '{"images":{"r":{"layers":[{"digest":"a"}],"layers":[{}]}}}'),
]


@pytest.mark.parametrize("db", ["cloudimg", "oci"])
def test_hand_made_image_documents(gocheck: Path, tmp_path: Path, db: str) -> None:
    assert_agree(gocheck, [d.encode() for kind, d in IMAGE_HAND_MADE if kind == db], tmp_path, db)


# ------------------------------------------------------------ generated
FIELDS = [f.name for f in g.fields_of(g.SNAPSHOT_RECORD).fields]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(1 << 64), 1 << 64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
    | st.sampled_from([T, "2026-03-04T05:06:07Z", "2026-03-04T05:06:07.5+01:00", "not a time"])
)
VALUES = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
    max_leaves=5,
)
KEYS = st.sampled_from(FIELDS) | st.sampled_from(FIELDS).map(str.title) | st.text("abcxyz_", max_size=4)
RECORDS = st.none() | st.lists(st.tuples(KEYS, VALUES), max_size=5) | VALUES


def render(value: Any, ascii_only: bool) -> str:
    """JSON text; a list of pairs is an object whose keys may repeat."""
    if isinstance(value, list) and all(isinstance(p, tuple) for p in value):
        inner = ",".join(
            f"{json.dumps(k, ensure_ascii=ascii_only)}:{render(v, ascii_only)}" for k, v in value
        )
        return "{" + inner + "}"
    return json.dumps(value, ensure_ascii=ascii_only)


DOCS = st.builds(
    lambda snaps, names, top_extra, ascii_only: render(
        [
            ("snapshots", [(k, r) for k, r in snaps]),
            ("names", names),
            *top_extra,
        ],
        ascii_only,
    ),
    st.lists(st.tuples(st.text("ABC", min_size=1, max_size=2), RECORDS), max_size=3),
    st.none()
    | st.dictionaries(st.text(max_size=3), st.none() | st.text(max_size=3) | st.integers(), max_size=3),
    st.lists(st.tuples(st.sampled_from(["Snapshots", "NAMES", "other"]), VALUES), max_size=1),
    st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(DOCS, min_size=1, max_size=8))
def test_generated_documents(gocheck: Path, tmp_path: Path, docs: list[str]) -> None:
    """Documents made by hypothesis from cocoon's field names, in batches
    (one Go process per batch)."""
    assert_agree(gocheck, [d.encode() for d in docs], tmp_path)


VM_FIELDS = [f.name for f in g.fields_of(g.VM_RECORD).fields]
VM_KEYS = (
    st.sampled_from(VM_FIELDS) | st.sampled_from(VM_FIELDS).map(str.upper) | st.text("abxyz", max_size=3)
)
NESTED = st.fixed_dictionaries(
    {},
    optional={
        "name": VALUES,
        "cpu": VALUES,
        "tap": VALUES,
        "network": st.none() | st.dictionaries(st.sampled_from(["ip", "prefix", "x"]), VALUES, max_size=2),
        "direct_io": VALUES,
        "kernel_path": VALUES,
    },
)
VM_VALUES = VALUES | NESTED | st.lists(st.none() | NESTED, max_size=2)
VM_DOCS = st.builds(
    lambda vms, ascii_only: render([("vms", [(k, r) for k, r in vms])], ascii_only),
    st.lists(
        st.tuples(
            st.text("vw", min_size=1, max_size=2),
            st.none() | st.lists(st.tuples(VM_KEYS, VM_VALUES), max_size=5),
        ),
        max_size=3,
    ),
    st.booleans(),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(VM_DOCS, min_size=1, max_size=8))
def test_generated_vm_documents(gocheck: Path, tmp_path: Path, docs: list[str]) -> None:
    assert_agree(gocheck, [d.encode() for d in docs], tmp_path, "vms")
