"""The simulator's files against the golden files in tests/golden/, which
were written by hand from cocoon's Go structs (tests/golden/README.md says
which struct and line each follows). Field by field: the same keys in the
same order, the same JSON types, the same omitempty presence; values that
differ on every run (IDs, hexes, times, addresses, the root, blob sizes)
are compared by shape. So the simulator cannot drift from cocoon unnoticed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cocoond import sim
from cocoond.sim import CH, FC, DataDisk

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_ROOT = "/var/lib/cocoon"
URL = "https://cloud-images.example/noble/noble-server-cloudimg-amd64.img"
OCI_REF = "ghcr.io/cocoonstack/ubuntu:24.04"
#: Volatile tokens, most specific first.
_TOKENS = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), "<TIME>"),
    (re.compile(r"[0-9a-f]{64}"), "<HEX>"),
    (re.compile(r"[A-Z2-7]{26}"), "<ID>"),
    (re.compile(r"tap[A-Z2-7]{8}-"), "tap<ID8>-"),
    (re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}"), "<MAC>"),
    (re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b"), "<IP>"),
]
VOLATILE_INTS = {"size"}


def shape(text: str, root: str) -> str:
    text = text.replace(root, "<ROOT>")
    for pattern, token in _TOKENS:
        text = pattern.sub(token, text)
    return text


def _pair_key(value: Any) -> Any:
    if isinstance(value, dict):
        if isinstance(value.get("config"), dict):
            return value["config"].get("name")
        return value.get("name", value.get("ref"))
    return None


def compare(golden: Any, actual: Any, root: str, where: str = "$") -> None:
    """Assert `actual` has the golden's structure; see the module docstring."""
    assert type(actual) is type(golden), (
        f"{where}: {type(actual).__name__} where golden has {type(golden).__name__}"
    )
    if isinstance(golden, dict):
        volatile = any(shape(k, GOLDEN_ROOT) != k for k in golden)
        if not volatile:  # a struct, or a map with stable keys: the same keys, in order
            assert list(actual) == list(golden), f"{where}: keys {list(actual)} != golden {list(golden)}"
            for k in golden:
                compare(golden[k], actual[k], root, f"{where}.{k}")
            return
        assert len(actual) == len(golden), f"{where}: {len(actual)} entries, golden {len(golden)}"
        assert sorted(shape(k, root) for k in actual) == sorted(shape(k, GOLDEN_ROOT) for k in golden), where
        if all(v == {} for v in golden.values()):
            assert all(v == {} for v in actual.values()), f"{where}: a Go set holds {{}} only"
            return
        by_name = {_pair_key(v): v for v in actual.values()}
        for k, v in golden.items():
            name = _pair_key(v)
            assert name in by_name, f"{where}: nothing named {name!r} (golden key {k})"
            compare(v, by_name[name], root, f"{where}[{name}]")
        return
    if isinstance(golden, list):
        assert len(actual) == len(golden), f"{where}: {len(actual)} items, golden {len(golden)}"
        for i, (g, a) in enumerate(zip(golden, actual, strict=True)):
            compare(g, a, root, f"{where}[{i}]")
        return
    if isinstance(golden, str):
        assert shape(actual, root) == shape(golden, GOLDEN_ROOT), f"{where}: {actual!r} vs golden {golden!r}"
        return
    if isinstance(golden, int) and not isinstance(golden, bool) and where.rsplit(".", 1)[-1] in VOLATILE_INTS:
        assert actual >= 0, where
        return
    assert actual == golden, f"{where}: {actual!r} != golden {golden!r}"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The golden host, built by the simulator's commands."""
    root = str(tmp_path_factory.mktemp("golden") / "cocoon")
    sim.pull_image(root, url=URL)
    sim.pull_oci(root, OCI_REF, layers=2)
    sim.create_vm(
        root,
        hypervisor=CH,
        image=URL,
        name="win-1",
        cpu=4,
        memory=4 << 30,
        storage=20 << 30,
        queue_size=256,
        disk_queue_size=128,
        network="cni-lan",
        no_direct_io=True,
        windows=True,
        data_disks=[DataDisk("logs", 1 << 30, "ext4", "/var/log/app")],
    )
    sim.create_vm(
        root, hypervisor=CH, image=URL, name="web-1", memory=2 << 30, data_disks=[DataDisk("data1")]
    )
    sim.create_vm(
        root,
        hypervisor=FC,
        image=OCI_REF,
        name="fc-1",
        memory=2 << 30,
        data_disks=[DataDisk("data", 256 << 20, "none")],
    )
    sim.create(root, vm="win-1", name="win-1-base", description="before the <b>upgrade</b> & reboot")
    fc_base = sim.create(root, vm="fc-1", name="fc-1-base")
    web_base = sim.create(root, vm="web-1", name="web-1-base")
    sim.create(root, vm="web-1", name="web-1-next", crash_at="pending")
    return {
        "root": root,
        "snapshots.json": Path(sim.snapshot_db(root)),
        "cloudimg-images.json": Path(root, "cloudimg/db/images.json"),
        "oci-images.json": Path(root, "oci/db/images.json"),
        "cloudhypervisor-vms.json": Path(sim.vm_db(root, CH)),
        "firecracker-vms.json": Path(sim.vm_db(root, FC)),
        "ch-cocoon.json": Path(sim.data_dir(root, web_base), "cocoon.json"),
        "fc-cocoon.json": Path(sim.data_dir(root, fc_base), "cocoon.json"),
    }


GOLDEN_FILES = sorted(p.name for p in GOLDEN.glob("*.json"))


def test_every_golden_file_is_documented() -> None:
    manifest = (GOLDEN / "README.md").read_text()
    assert (
        sorted(
            [
                "ch-cocoon.json",
                "cloudhypervisor-vms.json",
                "cloudimg-images.json",
                "fc-cocoon.json",
                "firecracker-vms.json",
                "oci-images.json",
                "snapshots.json",
            ]
        )
        == GOLDEN_FILES
    )
    for name in GOLDEN_FILES:
        assert f"`{name}`" in manifest, name


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_sim_file_matches_golden(host: dict[str, Any], name: str) -> None:
    golden = json.loads((GOLDEN / name).read_bytes())
    actual = json.loads(host[name].read_bytes())
    compare(golden, actual, host["root"])


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_sim_file_is_encoded_as_go_encodes_it(host: dict[str, Any], name: str) -> None:
    """Compact, one trailing newline for DBs and none for sidecars, as the
    golden file; Go's escaping of <, > and &."""
    golden, actual = (GOLDEN / name).read_bytes(), host[name].read_bytes()
    assert golden.endswith(b"\n") == actual.endswith(b"\n")
    assert b"\n" not in actual.rstrip(b"\n")
    assert b", " not in actual and b": " not in actual.replace(b"https: ", b"")
    for raw in (golden, actual):
        assert b"<" not in raw and b">" not in raw and b"&" not in raw
    if name == "snapshots.json":
        assert b"before the \\u003cb\\u003eupgrade\\u003c/b\\u003e \\u0026 reboot" in actual


def test_comparison_catches_drift(host: dict[str, Any]) -> None:
    """The comparison fails on each kind of drift it is there to catch."""
    golden = json.loads((GOLDEN / "snapshots.json").read_bytes())
    root = host["root"]
    actual = json.loads(host["snapshots.json"].read_bytes())
    compare(golden, actual, root)
    rec = next(r for r in actual["snapshots"].values() if r["name"] == "fc-1-base")
    drifts = {
        "reordered": lambda r: r.update({"id": r.pop("id")}),
        "omitempty ignored": lambda r: r.update(pending=False),
        "type": lambda r: r.update(nics="1"),
        "value": lambda r: r.update(hypervisor="cloud-hypervisor"),
        "time shape": lambda r: r.update(created_at="2026-03-02 10:01:33"),
    }
    for what, change in drifts.items():
        broken = json.loads(json.dumps(actual))
        change(next(r for r in broken["snapshots"].values() if r["name"] == rec["name"]))
        with pytest.raises(AssertionError):
            compare(golden, broken, root)
        assert what
