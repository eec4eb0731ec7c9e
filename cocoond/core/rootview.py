"""Can cocoond see the root it watches? A pure judgement of one look.

A root cocoond cannot see is not an empty host (issue 18): read as empty,
a missing or unmounted root resolves every open finding and reports health
exactly when nothing can be seen. So before anything is judged against the
tree, the shell looks at the root itself (`cocoond/daemon/rootwatch.py`)
and this module says whether that look is a cocoon root, and if not, the
likely cause, for one `root_unseen` error.

Cocoon's backends create their DB dirs whenever they start:
`snapshot/localfile/config.go:20-26` (EnsureDirs: `snapshot/db`,
`snapshot/localfile`), `images/baseconfig.go:41-43` (`<type>/db`, temp,
blobs), `hypervisor/baseconfig.go:48-50` (`<hypervisor>/db`). A directory holding
none of them has never been used by cocoon: `root_dir` names the wrong
directory, or the filesystem with cocoon's tree is not mounted there (an
unmounted mount point is an empty directory of its parent's filesystem).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: Cocoon's DB dirs, one per backend (see the module doc).
DB_DIRS: tuple[str, ...] = (
    "snapshot/db",
    "cloudimg/db",
    "oci/db",
    "cloudhypervisor/db",
    "firecracker/db",
)

LookKind = Literal["dir", "missing", "not_dir", "unreadable"]


@dataclass(frozen=True, slots=True)
class RootLook:
    """What one look at the root found (`rootwatch.look` makes it)."""

    root: str
    kind: LookKind
    #: Why it could not be read (`unreadable`).
    error: str | None = None
    dev: int = 0
    ino: int = 0
    realpath: str = ""
    #: How many of DB_DIRS exist (one that cannot be told counts as there).
    db_dirs: int = 0
    #: Entries in the root (0: an empty directory).
    entries: int = 0
    #: The device of the root's parent: equal to `dev` when nothing is
    #: mounted on the root.
    parent_dev: int | None = None

    @property
    def identity(self) -> tuple[int, int, str]:
        """Which directory the root is: a rename, a repointed symlink or a
        mount on it changes this."""
        return (self.dev, self.ino, self.realpath)


@dataclass(frozen=True, slots=True)
class RootMemo:
    """What the last good look saw, kept in the daemon's state file so that
    a restart while the root is unmounted can say what it was."""

    realpath: str
    dev: int
    ino: int
    snapshots: int

    def to_json(self) -> dict[str, Any]:
        return {"realpath": self.realpath, "dev": self.dev, "ino": self.ino, "snapshots": self.snapshots}

    @staticmethod
    def from_json(doc: object) -> RootMemo | None:
        """None for anything that is not a memo this version wrote."""
        if not isinstance(doc, dict):
            return None
        realpath, dev, ino, snapshots = (doc.get(k) for k in ("realpath", "dev", "ino", "snapshots"))
        if not isinstance(realpath, str):
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (dev, ino, snapshots)):
            return None
        assert isinstance(dev, int) and isinstance(ino, int) and isinstance(snapshots, int)
        return RootMemo(realpath, dev, ino, snapshots)


def judge(look: RootLook, memo: RootMemo | None) -> str | None:
    """None when `look` is a cocoon root; else the likely cause, one line
    (it becomes the `root_unseen` message)."""
    was = _was(memo)
    if look.kind == "missing":
        return f"it does not exist{was}: is its filesystem mounted, is root_dir (or --root) right?"
    if look.kind == "not_dir":
        return f"it is not a directory{was}: is root_dir (or --root) right?"
    if look.kind == "unreadable":
        return f"cocoond cannot read it ({look.error}){was}: check its mode and owner"
    if look.db_dirs > 0:
        return None
    what = "it is empty" if look.entries == 0 else f"it has none of cocoon's DB dirs ({', '.join(DB_DIRS)})"
    if memo is not None and look.parent_dev is not None and look.dev == look.parent_dev != memo.dev:
        return (
            f"{what}, a directory of its parent's filesystem{was} (on device {memo.dev}): "
            "is its filesystem unmounted?"
        )
    if memo is not None:
        return f"{what}{was}: is its filesystem unmounted, or was the tree moved away?"
    return f"{what}: is root_dir (or --root) mistyped, or its filesystem not mounted?"


def _was(memo: RootMemo | None) -> str:
    if memo is None:
        return ""
    return f", where cocoond last saw {memo.snapshots} snapshots"


def same_dir(a: RootLook, b: RootLook) -> bool:
    """Two looks at one directory, whatever name each went by."""
    if a.kind != "dir" or b.kind != "dir":
        return False
    return (a.dev, a.ino) == (b.dev, b.ino) or a.realpath == b.realpath
