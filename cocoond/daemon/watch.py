"""inotify through watchdog: which directories to watch, and what a path
under the root means to the index.

Every directory is watched non-recursively: cocoon creates and removes
data dirs as immediate children of snapshot/localfile/, and what happens
inside a data dir is none of our business (100k recursive watches would be).
Events are only hints: the daemon re-stats what they name, so a lost or
reordered event costs latency, never correctness (the rescan catches it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver

from cocoond.core.rules import SNAPSHOT_DB
from cocoond.scan import BLOB_DIRS, OCI_BOOT, OCI_TEMP, REF_DBS, TEMP_DIRS, temp_rule
from cocoond.storage.paths import VM_BACKENDS

#: Directories whose entries matter, relative to the root.
LEAF_DIRS: tuple[str, ...] = (
    "snapshot/localfile",
    *(d for d, _ in BLOB_DIRS),
    OCI_BOOT,
    *TEMP_DIRS,  # the DB dirs and the image temp dirs
)
#: Their parents (and the root): watched so that a directory created later
#: is noticed without a restart.
PARENT_DIRS: tuple[str, ...] = ("", "snapshot", "cloudimg", "oci", *VM_BACKENDS)

#: The signals the daemon handles; only its main thread may receive them.
DAEMON_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_EVENTS = [
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileAttribEvent,
]


@dataclass(frozen=True, slots=True)
class Change:
    """What a path under the root is to the index."""

    what: str  # "db", "ref_db", "data_dir", "blob", "boot", "temp", "structure"
    name: str  # data dir name or relpath under the root


def classify(root: str, path: str) -> Change | None:
    """Map an event path to the index entry it touches (None: irrelevant)."""
    rel = os.path.relpath(path, root)
    if rel == "." or rel.startswith(".."):
        # The root itself, or an ancestor while the root does not exist yet.
        return Change("structure", rel) if _on_way_to(root, path) or rel == "." else None
    parts = rel.split(os.sep)
    if len(parts) <= 2:
        return Change("structure", rel) if rel in PARENT_DIRS or rel in LEAF_DIRS else None
    if len(parts) != 3:
        return None
    parent, name = f"{parts[0]}/{parts[1]}", parts[2]
    if parent == "snapshot/localfile":
        return Change("data_dir", name)
    if rel == SNAPSHOT_DB:
        return Change("db", rel)
    if rel in REF_DBS:
        return Change("ref_db", rel)
    if any(parent == d for d, _ in BLOB_DIRS):
        return Change("blob", rel)
    if parent == OCI_BOOT:
        return Change("boot", name)
    if parent == OCI_TEMP or temp_rule(rel, is_dir=False) is not None:
        return Change("temp", rel)  # stat_temp decides, knowing whether it is a dir
    return None


def _on_way_to(root: str, path: str) -> bool:
    root = os.path.abspath(root)
    path = os.path.abspath(path)
    return root == path or root.startswith(path.rstrip("/") + "/")


class _Forward(FileSystemEventHandler):
    """Runs on watchdog's thread: only hands paths over (SimpleQueue.put is
    thread- and signal-safe); all work happens on the daemon's thread."""

    def __init__(self, out: queue.SimpleQueue[tuple[str, Any]]) -> None:
        self._out = out

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._out.put(("fs", os.fsdecode(event.src_path)))
        dest = getattr(event, "dest_path", "")
        if dest:
            self._out.put(("fs", os.fsdecode(dest)))


class _WatcherTrouble(logging.Handler):
    """watchdog reports a kernel queue overflow (events lost) and emitter
    errors only through `logging`; turn those into rescan requests."""

    def __init__(self, out: queue.SimpleQueue[tuple[str, Any]]) -> None:
        super().__init__(level=logging.WARNING)
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        reason = "overflow" if "overflow" in record.getMessage().lower() else "watch_error"
        self._out.put(("rescan", reason))


class Watcher:
    """Owns the observer and re-arms it when directories come and go."""

    def __init__(self, root: str, out: queue.SimpleQueue[tuple[str, Any]]) -> None:
        self.root = os.path.abspath(root)
        self._out = out
        self._observer: InotifyObserver | None = None
        self._trouble = _WatcherTrouble(out)
        logging.getLogger("watchdog").addHandler(self._trouble)
        self.watched: list[str] = []

    def arm(self) -> list[str]:
        """(Re)create every watch that can exist now. Returns the watched
        directories. Called at start, on a structure change and on rescans
        after trouble: re-arming is cheap (a dozen directories)."""
        self.disarm()
        targets = [os.path.join(self.root, d) if d else self.root for d in (*PARENT_DIRS, *LEAF_DIRS)]
        if not os.path.isdir(self.root):
            targets = [_nearest_existing(self.root)]
        handler = _Forward(self._out)
        watched: list[str] = []
        # The observer starts threads as soon as it is made, not only in start().
        with _signals_blocked():
            observer = InotifyObserver(timeout=1.0)
            for target in targets:
                if not os.path.isdir(target):
                    continue
                try:
                    observer.schedule(handler, target, recursive=False, event_filter=_EVENTS)
                except OSError as exc:
                    self._out.put(("rescan", f"watch_error: {target}: {exc.strerror or exc}"))
                    continue
                watched.append(target)
            observer.daemon = True
            observer.start()
        self._observer = observer
        self.watched = watched
        return watched

    def disarm(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=1.0)

    def close(self) -> None:
        self.disarm()
        logging.getLogger("watchdog").removeHandler(self._trouble)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Start threads with SIGTERM, SIGINT and SIGHUP blocked, so that they
    inherit the mask and the kernel delivers those signals to the main
    thread only. A signal delivered to a watchdog thread would not wake the
    main thread's wait, and SIGTERM would sit unhandled until it timed out."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, DAEMON_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _nearest_existing(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current
