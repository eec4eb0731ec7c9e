"""Paths: cocoon's layout, the root's precedence, resolve_snapshot_id and
snapshot_exists."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

import cocoond
from cocoond import DEFAULT_ROOT_DIR, Paths, SnapshotNotFound, snapshot_exists
from cocoond.errors import CocoondError

# Three IDs sharing "QWE", two sharing "QWERT"; one alone under "MN".
S1 = "QWERTYUIOPASDFGHJKLZXCVBNM"
S2 = "QWERTZZZZZZZZZZZZZZZZZZZZZ"
S3 = "QWEAAAAAAAAAAAAAAAAAAAAAAA"
S4 = "MNOPQRSTUVWXYZ234567ABCDEF"
# Named after S1's ID: the name must win over the exact ID.
S5 = "ZZZZZZZZZZZZZZZZZZZZZZZZZ2"


# ------------------------------------------------------------------ layout
def test_layout_under_a_root() -> None:
    p = Paths("/x")
    assert p.root_dir == "/x"
    assert p.snapshot_db_file() == Path("/x/snapshot/db/snapshots.json")
    assert p.snapshot_lock_file() == Path("/x/snapshot/db/snapshots.lock")
    assert p.snapshot_db_dir() == Path("/x/snapshot/db")
    assert p.snapshot_localfile_dir() == Path("/x/snapshot/localfile")
    assert p.snapshot_data_dir("ABC") == Path("/x/snapshot/localfile/ABC")
    assert p.cloudimg_blob_dir() == Path("/x/cloudimg/blobs")
    assert p.cloudimg_blob_file("ab12") == Path("/x/cloudimg/blobs/ab12.qcow2")
    assert p.cloudimg_db_file() == Path("/x/cloudimg/db/images.json")
    assert p.cloudimg_lock_file() == Path("/x/cloudimg/db/images.lock")
    assert p.cloudimg_temp_dir() == Path("/x/cloudimg/temp")
    assert p.oci_blob_dir() == Path("/x/oci/blobs")
    assert p.oci_blob_file("ab12") == Path("/x/oci/blobs/ab12.erofs")
    assert p.vm_db_files() == [Path("/x/cloudhypervisor/db/vms.json"), Path("/x/firecracker/db/vms.json")]


@pytest.mark.parametrize(
    "method", ["snapshot_db_file", "cloudimg_blob_dir", "snapshot_lock_file", "cloudimg_db_file"]
)
def test_path_methods_return_pathlib_paths(method: str) -> None:
    assert type(getattr(Paths("/x"), method)()) is type(Path("/x"))


def test_data_dir_returns_pathlib_path() -> None:
    assert isinstance(Paths("/x").snapshot_data_dir("ID"), Path)


def test_root_accepts_pathlike_and_keeps_a_str(tmp_path: Path) -> None:
    p = Paths(tmp_path)
    assert p.root_dir == str(tmp_path)
    assert isinstance(p.root_dir, str)
    assert p.snapshot_db_file() == tmp_path / "snapshot" / "db" / "snapshots.json"


def test_layout_agrees_with_the_simulator(sim: ModuleType, root: Path) -> None:
    r = str(root)
    p = Paths(r)
    assert str(p.snapshot_db_file()) == sim.snapshot_db(r)
    assert str(p.snapshot_lock_file()) == sim.snapshot_lock(r)
    assert str(p.snapshot_data_dir("SID")) == sim.data_dir(r, "SID")
    assert str(p.cloudimg_db_file()) == sim.cloudimg_db(r)
    assert str(p.cloudimg_lock_file()) == sim.cloudimg_lock(r)
    assert str(p.cloudimg_blob_file("ab")) == sim.blob_path(r, "ab")


def test_layout_matches_a_sim_tree(sim: ModuleType, root: Path) -> None:
    hex_ = sim.pull_image(str(root))
    sid = sim.create(str(root), name="a", blobs=[hex_])
    p = Paths(root)
    assert p.snapshot_db_file().is_file()
    assert p.snapshot_lock_file().is_file()
    assert p.snapshot_data_dir(sid).is_dir()
    assert p.cloudimg_blob_file(hex_).is_file()
    assert p.cloudimg_blob_dir().is_dir()
    assert p.cloudimg_db_file().is_file()
    assert p.cloudimg_temp_dir().is_dir()
    assert p.oci_blob_dir().is_dir()
    assert p.read_snapshot_db().snapshots[sid].data_dir == str(p.snapshot_data_dir(sid))


# ------------------------------------------------------------ root choice
def test_default_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COCOON_ROOT_DIR", raising=False)
    assert DEFAULT_ROOT_DIR == "/data01/cocoon"
    assert cocoond.DEFAULT_ROOT_DIR == "/data01/cocoon"
    assert Paths().root_dir == "/data01/cocoon"
    assert Paths().snapshot_db_file() == Path("/data01/cocoon/snapshot/db/snapshots.json")


def test_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCOON_ROOT_DIR", "/env/root")
    assert Paths().root_dir == "/env/root"
    assert Paths().snapshot_db_file() == Path("/env/root/snapshot/db/snapshots.json")
    assert Paths(None).root_dir == "/env/root"


def test_explicit_root_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCOON_ROOT_DIR", "/env/root")
    assert Paths("/arg").root_dir == "/arg"


def test_empty_env_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCOON_ROOT_DIR", "")
    assert Paths().root_dir == DEFAULT_ROOT_DIR


@pytest.mark.parametrize("env", [None, "/env/root"])
def test_empty_root_is_the_default_root_as_the_seeds_newpaths(
    monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    """The seed's NewPaths("") means the default root, not the current directory."""
    if env is None:
        monkeypatch.delenv("COCOON_ROOT_DIR", raising=False)
    else:
        monkeypatch.setenv("COCOON_ROOT_DIR", env)
    assert Paths("").root_dir == (env or DEFAULT_ROOT_DIR)
    assert Paths("").snapshot_db_file() == Path(env or DEFAULT_ROOT_DIR, "snapshot/db/snapshots.json")


# -------------------------------------------------------------- resolving
@pytest.fixture
def resolving(root: Path, sim: ModuleType) -> Paths:
    r = str(root)
    sim.create(r, name="web", sid=S1)
    sim.create(r, name="db", sid=S2)
    sim.create(r, name="cache", sid=S3)
    sim.create(r, name="lonely", sid=S4)
    sim.create(r, name="s5", sid=S5)
    # Named after S1's ID by hand: `cocoon snapshot save` refuses a name that
    # resolves already (cmd/snapshot/handler.go:44-51); `import` or an edit do not.
    with sim.flock(sim.snapshot_lock(r)):
        db = sim.load_snapshots(r)
        db["snapshots"][S5]["name"] = S1
        db["names"][S1] = db["names"].pop("s5")
        sim.atomic_write_json(sim.snapshot_db(r), db)
    sim.create(r, name="half", sid="PENDINGPENDINGPENDINGPEND2", crash_at="pending")
    return Paths(root)


@pytest.mark.parametrize(
    ("ref", "sid"),
    [
        ("web", S1),
        ("db", S2),
        ("lonely", S4),
        (S1, S5),  # a name equal to another snapshot's ID: the name wins
        (S2, S2),  # exact ID
        (S4, S4),
        (S5, S5),
        ("QWERTY", S1),  # unique prefixes
        ("QWERTZ", S2),
        ("QWEA", S3),
        ("MNO", S4),  # exactly 3 characters
        ("ZZZ", S5),
        ("PEN", "PENDINGPENDINGPENDINGPEND2"),  # a pending record resolves too
        ("half", "PENDINGPENDINGPENDINGPEND2"),
    ],
)
def test_resolve(resolving: Paths, ref: str, sid: str) -> None:
    assert resolving.resolve_snapshot_id(ref) == sid


@pytest.mark.parametrize("ref", ["MN", "M", "Q", "QW", "x", "", "nope", "qwerty", "we", "web-", "QWERTYX"])
def test_resolve_unknown(resolving: Paths, ref: str) -> None:
    with pytest.raises(SnapshotNotFound) as info:
        resolving.resolve_snapshot_id(ref)
    assert str(info.value) == f"snapshot '{ref}' not found in cocoon DB"
    assert info.value.ref == ref


def test_resolve_unknown_exact_message(resolving: Paths) -> None:
    with pytest.raises(SnapshotNotFound) as info:
        resolving.resolve_snapshot_id("x")
    assert str(info.value) == "snapshot 'x' not found in cocoon DB"


@pytest.mark.parametrize(("ref", "hits"), [("QWE", [S1, S2, S3]), ("QWER", [S1, S2]), ("QWERT", [S1, S2])])
def test_resolve_ambiguous_prefix(resolving: Paths, ref: str, hits: list[str]) -> None:
    with pytest.raises(SnapshotNotFound) as info:
        resolving.resolve_snapshot_id(ref)
    msg = str(info.value)
    assert msg.startswith(f"snapshot '{ref}' not found in cocoon DB")
    assert "ambiguous" in msg
    for sid in hits:
        assert sid in msg
    assert info.value.ambiguous == sorted(hits)


def test_snapshot_not_found_is_a_lookup_error(resolving: Paths) -> None:
    assert issubclass(SnapshotNotFound, LookupError)
    assert issubclass(cocoond.SnapshotNotFound, LookupError)
    with pytest.raises(LookupError):
        resolving.resolve_snapshot_id("missing")


def test_dangling_name_and_null_record_do_not_resolve(root: Path, sim: ModuleType) -> None:
    r = str(root)
    sim.create(r, name="real", sid=S1)
    data = json.loads(Path(sim.snapshot_db(r)).read_bytes())
    data["names"]["ghost"] = "GHOSTGHOSTGHOSTGHOSTGHOST2"
    data["snapshots"]["NULLNULLNULLNULLNULLNULL22"] = None
    data["names"]["void"] = "NULLNULLNULLNULLNULLNULL22"
    Path(sim.snapshot_db(r)).write_text(json.dumps(data))
    p = Paths(root)
    for ref in ("ghost", "void", "NULLNULLNULLNULLNULLNULL22", "NUL", "GHO"):
        with pytest.raises(SnapshotNotFound, match=f"^snapshot '{ref}' not found in cocoon DB$"):
            p.resolve_snapshot_id(ref)
    assert p.resolve_snapshot_id("real") == S1


def test_dangling_name_equal_to_an_id_falls_back_to_the_id(root: Path, sim: ModuleType) -> None:
    r = str(root)
    sim.create(r, name="real", sid=S1)
    data = json.loads(Path(sim.snapshot_db(r)).read_bytes())
    data["names"][S1] = "GHOSTGHOSTGHOSTGHOSTGHOST2"
    Path(sim.snapshot_db(r)).write_text(json.dumps(data))
    assert Paths(root).resolve_snapshot_id(S1) == S1


def test_resolve_on_missing_db(tmp_path: Path) -> None:
    with pytest.raises(SnapshotNotFound, match=r"^snapshot 'abc' not found in cocoon DB$"):
        Paths(tmp_path / "none").resolve_snapshot_id("abc")


def test_resolve_on_corrupt_db_is_a_db_error(root: Path, sim: ModuleType) -> None:
    sim.create(str(root), name="a")
    sim.inject(str(root), "corrupt-db")
    with pytest.raises(cocoond.DBError):
        Paths(root).resolve_snapshot_id("a")


# --------------------------------------------------------- snapshot_exists
def test_snapshot_exists(resolving: Paths) -> None:
    assert snapshot_exists(resolving, "web") is True
    assert snapshot_exists(resolving, S1) is True  # S5's name
    assert snapshot_exists(resolving, "half") is True
    assert snapshot_exists(resolving, "nope") is False
    assert snapshot_exists(resolving, S2) is False  # an ID, not a name
    assert snapshot_exists(resolving, "QWERTY") is False  # no prefixes


def test_snapshot_exists_after_sim_delete(root: Path, sim: ModuleType) -> None:
    sim.create(str(root), name="gone")
    p = Paths(root)
    assert snapshot_exists(p, "gone") is True
    sim.delete(str(root), "gone")
    assert snapshot_exists(p, "gone") is False


def test_snapshot_exists_is_false_for_unreadable_db(root: Path, sim: ModuleType) -> None:
    sim.create(str(root), name="a")
    p = Paths(root)
    assert snapshot_exists(p, "a") is True
    sim.inject(str(root), "corrupt-db")
    assert snapshot_exists(p, "a") is False


def test_snapshot_exists_is_false_when_db_is_a_directory(root: Path) -> None:
    p = Paths(root)
    p.snapshot_db_file().mkdir(parents=True)
    assert snapshot_exists(p, "a") is False


def test_snapshot_exists_is_false_without_a_root(tmp_path: Path) -> None:
    assert snapshot_exists(Paths(tmp_path / "none"), "a") is False


# ------------------------------------------------------ writing elsewhere
@pytest.mark.parametrize("op", ["write", "update"])
def test_write_to_a_missing_root_fails_and_creates_nothing(tmp_path: Path, op: str) -> None:
    # A mistyped root must not become a fresh cocoon tree: _write_locked's
    # "no such directory" CocoondError is the intended answer.
    root = tmp_path / "typo"
    p = Paths(root, lock_timeout=1)
    with pytest.raises(CocoondError, match="no such directory"):
        if op == "write":
            p.write_snapshot_db(cocoond.SnapshotDB())
        else:
            p.update_snapshot_db(lambda db: None)
    assert not root.exists()
