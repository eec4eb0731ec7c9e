"""`cocoond show REF` on trees written by hand from cocoon's Go structs
(snapshot.SnapshotIndex, images' imageIndex, hypervisor.VMIndex): every
resolution rule of utils/resolve.go and images/index.go, ambiguity, unknown
REFs, a snapshot that cannot be restored or cloned, and that show's
findings are check's for the same subject (one model)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cocoond.cli.main import main
from cocoond.storage import goschema, records

T0 = "2026-01-01T00:00:00Z"
CLOUD_HEX = "c" * 64
OCI_HEX = "0" * 63 + "1"
MANIFEST = "sha256:" + "d" * 64


def write(root: Path, relpath: str, obj: Any) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def record(sid: str, name: str, **extra: Any) -> dict[str, Any]:
    """snapshot.SnapshotRecord: types.SnapshotConfig plus pending, data_dir."""
    return {"id": sid, "name": name, "created_at": T0, "image_blob_ids": {CLOUD_HEX: {}}, **extra}


@pytest.fixture
def tree(root: Path) -> Path:
    snaps = {
        "ABCDEF1": record("ABCDEF1", "web"),
        "ABCXYZ2": record("ABCXYZ2", "db"),
        # a record whose name is another record's ID: cocoon resolves the ID first
        "QQQ0001": record("QQQ0001", "ABCDEF1"),
    }
    for sid, rec in snaps.items():
        rec["data_dir"] = str(root / "snapshot/localfile" / sid)
    write(
        root,
        "snapshot/db/snapshots.json",
        {"snapshots": snaps, "names": {"web": "ABCDEF1", "db": "ABCXYZ2", "ABCDEF1": "QQQ0001"}},
    )
    write(
        root,
        "cloudimg/db/images.json",
        {
            "images": {
                "https://img.example/u.qcow2": {
                    "ref": "https://img.example/u.qcow2",
                    "content_sum": f"sha256:{CLOUD_HEX}",
                    "size": 1,
                    "created_at": T0,
                }
            }
        },
    )
    write(
        root,
        "oci/db/images.json",
        {
            "images": {
                "index.docker.io/library/busybox:latest": {
                    "ref": "index.docker.io/library/busybox:latest",
                    "manifest_digest": MANIFEST,
                    "layers": [{"digest": f"sha256:{OCI_HEX}"}],
                    "kernel_layer": f"sha256:{OCI_HEX}",
                    "initrd_layer": f"sha256:{OCI_HEX}",
                    "size": 1,
                    "created_at": T0,
                }
            }
        },
    )
    (root / "cloudimg/blobs").mkdir(parents=True)
    (root / f"cloudimg/blobs/{CLOUD_HEX}.qcow2").write_bytes(b"q" * 100)
    (root / "oci/blobs").mkdir(parents=True)
    (root / f"oci/blobs/{OCI_HEX}.erofs").write_bytes(b"e" * 100)
    # What `cocoon vm run` of each image opens besides its blobs: the OCI
    # kernel and initrd of the layers the entry names (images/oci/oci.go:136-143),
    # cloudimg's firmware (images/cloudimg/config.go:28-30).
    (root / f"oci/boot/{OCI_HEX}").mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        (root / f"oci/boot/{OCI_HEX}/{name}").write_bytes(b"k" * 100)
    (root / "firmware").mkdir()
    (root / "firmware/CLOUDHV.fd").write_bytes(b"f" * 100)
    write(
        root,
        "cloudhypervisor/db/vms.json",
        {
            "vms": {
                "VMAAAA1": {
                    "id": "VMAAAA1",
                    "state": "running",
                    "config": {"name": "vm-web"},
                    "image_blob_ids": {CLOUD_HEX: {}},
                    "snapshot_ids": {"ABCDEF1": {}, "GONE999": {}},
                    "created_at": T0,
                    "updated_at": T0,
                }
            },
            "names": {"vm-web": "VMAAAA1"},
        },
    )
    return root


def show(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any] | str]:
    capsys.readouterr()
    rc = main(["show", "--root", str(root), "--json", *args])
    out, err = capsys.readouterr()
    if rc == 3 and not out:
        assert err.count("\n") == 1, err
        return rc, err
    return rc, json.loads(out)


@pytest.mark.parametrize(
    ("ref", "kind", "id_", "how"),
    [
        ("ABCDEF1", "snapshot", "ABCDEF1", "id"),  # an exact ID wins over the name "ABCDEF1"
        ("web", "snapshot", "ABCDEF1", "name"),
        ("ABCX", "snapshot", "ABCXYZ2", "id prefix"),
        ("QQQ", "snapshot", "QQQ0001", "id prefix"),
        ("https://img.example/u.qcow2", "image", "https://img.example/u.qcow2", "ref"),
        (CLOUD_HEX, "image", "https://img.example/u.qcow2", "digest"),
        ("sha256:" + CLOUD_HEX[:12], "image", "https://img.example/u.qcow2", "digest prefix"),
        ("index.docker.io/library/busybox:latest", "image", "index.docker.io/library/busybox:latest", "ref"),
        (MANIFEST, "image", "index.docker.io/library/busybox:latest", "digest"),
        ("VMAAAA1", "vm", "VMAAAA1", "id"),
        ("vm-web", "vm", "VMAAAA1", "name"),
        ("VMA", "vm", "VMAAAA1", "id prefix"),
    ],
)
def test_each_resolution_rule(
    tree: Path, capsys: pytest.CaptureFixture[str], ref: str, kind: str, id_: str, how: str
) -> None:
    _rc, out = show(tree, capsys, ref)
    assert isinstance(out, dict), out
    assert (out["kind"], out["id"], out["resolved_by"]) == (kind, id_, how)


def test_id_first_is_noted_against_the_seeds_name_first(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _rc, out = show(tree, capsys, "ABCDEF1")
    assert isinstance(out, dict)
    assert any("QQQ0001" in note for note in out["notes"])


def test_ambiguous_prefix_is_exit_3_listing_the_candidates(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, err = show(tree, capsys, "ABC")
    assert rc == 3 and isinstance(err, str)
    assert "ambiguous" in err and "ABCDEF1" in err and "ABCXYZ2" in err


def test_kind_disambiguates(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # "VMA" is only a VM; "ABC" stays ambiguous among snapshots whatever the kind
    rc, out = show(tree, capsys, "VMA", "--kind", "snapshot")
    assert rc == 3 and "no snapshot" in str(out)
    rc, out = show(tree, capsys, "ABCDEF1", "--kind", "vm")
    assert rc == 3


def test_unknown_ref_is_one_line_exit_3(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = show(tree, capsys, "nothing-like-it")
    assert rc == 3 and isinstance(err, str) and "nothing-like-it" in err


def test_a_short_oci_name_is_not_the_canonical_key(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """name.ParseReference("busybox").String() is "busybox" (go-containerregistry
    v0.21.0 pkg/name/tag.go:63-65): cocoon's LookupRefs does not find an
    entry keyed index.docker.io/library/busybox:latest by it."""
    rc, err = show(tree, capsys, "busybox")
    assert rc == 3 and isinstance(err, str) and "busybox" in err


def test_an_undecodable_snapshot_db_is_said_not_taken_for_no_such_snapshot(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "snapshot/db/snapshots.json").write_text('{"snapshots": {"ABCDEF1": {"pending": "yes"}}}')
    rc, err = show(tree, capsys, "web")
    assert rc == 3 and isinstance(err, str) and "cannot look in" in err and "snapshots.json" in err
    rc, out = show(tree, capsys, "vm-web")  # a VM still resolves
    assert isinstance(out, dict) and out["kind"] == "vm"


def test_a_snapshot_that_cannot_be_restored_or_cloned(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No data dir: missing_data_dir says restore and clone fail; show says
    so with that finding's message as the reason, and exits 2 as check."""
    rc, out = show(tree, capsys, "web")
    assert isinstance(out, dict)
    assert rc == 2
    ops = out["operations"]
    assert ops["restore"]["works"] is False and ops["clone"]["works"] is False
    finding = next(f for f in out["findings"] if f["kind"] == "missing_data_dir")
    assert ops["clone"]["reasons"] == [finding["message"]]
    assert set(finding["fails"]) == {"restore", "clone"}
    assert out["disk"]["data_dir"]["exists"] is False
    assert {"vm": "VMAAAA1", "backend": "cloud-hypervisor", "name": "vm-web"} in out["referred_by"]
    assert out["refers_to"][0]["blob"] == CLOUD_HEX
    assert out["refers_to"][0]["files"][0]["usable"] is True


def test_image_and_vm(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = show(tree, capsys, "index.docker.io/library/busybox:latest")
    assert isinstance(out, dict) and rc == 0
    assert out["operations"] == {"vm_create": {"works": True, "reasons": []}}
    assert [r["blob"] for r in out["refers_to"]] == [OCI_HEX]
    rc, out = show(tree, capsys, "vm-web")
    assert isinstance(out, dict)
    assert {"snapshot": "GONE999", "exists": False} in out["refers_to"]
    assert out["record"]["config"]["name"] == "vm-web"


def test_human_output_fits_80_columns(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["show", "--root", str(tree), "web"]) == 2
    out = capsys.readouterr().out
    # the monitoring-plugin first line, check's status words (CONTRACT §4)
    first = out.splitlines()[0]
    assert first == (
        "COCOOND CRITICAL - snapshot ABCDEF1 (snapshot; web resolved by name): restore FAILS, clone FAILS"
    ), first
    assert "restore: FAILS" in out and "clone: FAILS" in out
    # only a path longer than the line (this test's tmp root) may stick out
    long = [line for line in out.splitlines()[1:] if len(line) > 80 and str(tree) not in line]
    assert long == [], long


# ----------------------------------------------------- one model with check
def test_show_says_what_check_says_about_each_snapshot(
    root: Path, sim: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.create(str(root))
    for fault in ("missing-dir", "incomplete-ch-state", "stale-pending", "missing-blob", "dangling-name"):
        sim.inject(str(root), fault)
    capsys.readouterr()
    main(["check", "--root", str(root), "--json"])
    checked = json.loads(capsys.readouterr().out)["findings"]
    db = json.loads((root / "snapshot/db/snapshots.json").read_bytes())
    assert len(db["snapshots"]) >= 5
    for sid, rec in db["snapshots"].items():
        _rc, out = show(root, capsys, sid)
        assert isinstance(out, dict)
        subjects = {sid, rec.get("name") or sid, *(rec.get("image_blob_ids") or {}), "gc"}
        want = sorted(_same(f) for f in checked if f["subject"] in subjects)
        got = sorted(_same(f) for f in out["findings"])
        assert got == want, sid


def _same(f: dict[str, Any]) -> str:
    """A finding as both say it (age and fails aside: check's JSON has no fails)."""
    return json.dumps({k: v for k, v in f.items() if k not in ("fails", "age_seconds")}, sort_keys=True)


def test_a_prefix_shared_with_a_null_record_is_ambiguous_to_cocoon(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """utils.ResolveRef's prefix step walks every key, null records' too
    (utils/resolve.go:18-26): "NUL" matches NULL001 (null) and NULL002, which
    cocoon calls ambiguous; "NULL001" by ID is no record (items[ref] != nil,
    :11), and a prefix that only a null record has resolves to it and then
    fails as not found (localfile.go:163-166)."""
    db = json.loads((tree / "snapshot/db/snapshots.json").read_text())
    db["snapshots"]["NULL001"] = None
    db["snapshots"]["NZZ0003"] = None
    db["snapshots"]["NULL002"] = record("NULL002", "n2", data_dir=str(tree / "snapshot/localfile/NULL002"))
    write(tree, "snapshot/db/snapshots.json", db)
    rc, err = show(tree, capsys, "NUL")
    assert rc == 3 and isinstance(err, str) and "ambiguous" in err and "NULL001" in err, err
    rc, out = show(tree, capsys, "NULL002")
    assert isinstance(out, dict) and out["id"] == "NULL002"
    for ref in ("NULL001", "NZZ"):
        rc, err = show(tree, capsys, ref)
        assert rc == 3 and isinstance(err, str) and "ambiguous" not in err, (ref, err)


def test_human_unknown_ref_is_one_status_line_on_stdout(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["show", "--root", str(tree), "nothing-like-it"]) == 3
    out, err = capsys.readouterr()
    assert out.startswith("COCOOND UNKNOWN - nothing-like-it: no snapshot") and out.count("\n") == 1, out
    assert err == ""


# -------------------------------------------- the DB as Go writes it (lazy)
def _go_bytes(db: dict[str, Any]) -> bytes:
    """snapshots.json as Go's json.Marshal writes it (struct fields in
    order, map keys sorted, no white space): the bytes `show` reads on its
    fast route, decoding only the records it shows."""
    order = [f.name for f in goschema.fields_of(goschema.SNAPSHOT_RECORD).fields]

    def rec(r: dict[str, Any]) -> dict[str, Any]:
        return {k: r[k] for k in sorted(r, key=order.index)}

    top = {
        "snapshots": {sid: rec(db["snapshots"][sid]) for sid in sorted(db["snapshots"])},
        "names": dict(sorted(db["names"].items())),
    }
    return json.dumps(top, separators=(",", ":"), sort_keys=False).encode()


@pytest.mark.parametrize("ref", ["ABCDEF1", "web", "ABCX", "QQQ", "db", "ABC", "nosuch", "vm-web"])
def test_go_s_bytes_and_a_hand_edit_show_the_same(
    tree: Path, capsys: pytest.CaptureFixture[str], ref: str
) -> None:
    """The same DB written by Go (show's lazy route) and by hand (the exact
    walk) shows the same, the cloud blob gone too (missing_blob counts every
    snapshot using it: all three)."""
    (tree / f"cloudimg/blobs/{CLOUD_HEX}.qcow2").unlink()
    path = tree / "snapshot/db/snapshots.json"
    by_hand = path.read_bytes()
    data = _go_bytes(json.loads(by_hand))
    assert records.decode_lazily(data, "db") is not None
    assert records.decode_lazily(by_hand, "db") is None
    want = show(tree, capsys, ref)
    path.write_bytes(data)
    assert show(tree, capsys, ref) == want
    if ref == "web":
        assert isinstance(want[1], dict)
        found = [f for f in want[1]["findings"] if f["kind"] == "missing_blob"]
        assert len(found) == 1 and "3 snapshot" in found[0]["message"], found


def test_a_time_go_cannot_parse_in_another_record_makes_show_refuse(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Go decodes the whole DB or nothing: a day that does not exist in a
    record far from REF makes every cocoon command fail, so show says it
    cannot look rather than answer for the one record."""
    path = tree / "snapshot/db/snapshots.json"
    db = json.loads(path.read_bytes())
    db["snapshots"]["QQQ0001"]["created_at"] = "2021-02-30T00:00:00Z"
    path.write_bytes(_go_bytes(db))
    rc, err = show(tree, capsys, "ABCDEF1", "--kind", "snapshot")
    assert rc == 3 and isinstance(err, str) and "snapshots.json" in err and "QQQ0001" in err, err


@pytest.mark.parametrize("go_bytes", [False, True])
def test_a_root_given_by_another_spelling_reads_as_check_reads_it(
    tree: Path, capsys: pytest.CaptureFixture[str], go_bytes: bool
) -> None:
    """Records name the root by its real path, cocoond is given a symlink to
    it: the records' data_dir is the canonical one (scan.root_aliases), for
    show as for check (show said recorded elsewhere, a finding check has not)."""
    path = tree / "snapshot/db/snapshots.json"
    if go_bytes:
        path.write_bytes(_go_bytes(json.loads(path.read_bytes())))
    link = tree.parent / "link"
    link.symlink_to(tree)
    capsys.readouterr()
    main(["check", "--root", str(link), "--json"])
    checked = json.loads(capsys.readouterr().out)["findings"]
    rc, out = show(link, capsys, "web")
    assert rc == 2  # missing_data_dir, as check
    assert isinstance(out, dict)
    assert "recorded_data_dir" not in out["disk"]
    subjects = {"ABCDEF1", "web", CLOUD_HEX, "gc"}
    assert sorted(_same(f) for f in out["findings"]) == sorted(
        _same(f) for f in checked if f["subject"] in subjects
    )
    assert [f["kind"] for f in out["findings"]] == ["missing_data_dir"]
