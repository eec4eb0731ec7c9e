"""One look at the root (cocoond/core/rootview.py judges it): shared by
`check`, `config check` and the daemon (cocoond/daemon/rootwatch.py), so
all three call the same directory unseen for the same reason."""

from __future__ import annotations

import os
import stat

from cocoond.core.rootview import DB_DIRS, RootLook


def look(root: str) -> RootLook:
    """One look at the root: what it is, which directory, and whether any
    of cocoon's DB dirs is in it. Never raises."""
    try:
        st = os.stat(root)
    except (FileNotFoundError, NotADirectoryError):
        return RootLook(root, "missing")
    except OSError as exc:
        return RootLook(root, "unreadable", error=exc.strerror or str(exc))
    realpath = os.path.realpath(root)
    if not stat.S_ISDIR(st.st_mode):
        return RootLook(root, "not_dir", dev=st.st_dev, ino=st.st_ino, realpath=realpath)
    try:
        entries = len(os.listdir(root))
    except OSError as exc:
        why = exc.strerror or str(exc)
        return RootLook(root, "unreadable", error=why, dev=st.st_dev, ino=st.st_ino, realpath=realpath)
    try:
        parent_dev: int | None = os.stat(os.path.dirname(realpath) or "/").st_dev
    except OSError:
        parent_dev = None
    return RootLook(
        root,
        "dir",
        dev=st.st_dev,
        ino=st.st_ino,
        realpath=realpath,
        db_dirs=sum(_there(os.path.join(root, d)) for d in DB_DIRS),
        entries=entries,
        parent_dev=parent_dev,
    )


def _there(path: str) -> bool:
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # cannot tell: dir_unreadable says so, the root is not unseen for it
    return True


def identity(root: str) -> tuple[int, int, str] | None:
    """The cheap part of a look: which directory the name means now."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, os.path.realpath(root)) if stat.S_ISDIR(st.st_mode) else None
