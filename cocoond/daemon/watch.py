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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from watchdog.events import (
    DirAttribEvent,
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
PARENT_DIRS: tuple[str, ...] = ("", "snapshot", "cloudimg", "oci", *VM_BACKENDS, "cni")

#: How soon a directory that could not be watched is tried again, doubling
#: up to the most.
WATCH_RETRY_FIRST = 1.0
WATCH_RETRY_MAX = 60.0

#: The signals the daemon handles; only its main thread may receive them.
DAEMON_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_EVENTS = [
    DirAttribEvent,
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

    what: str  # "db", "ref_db", "data_dir", "blob", "boot", "temp", "structure", "rearm"
    name: str  # data dir name or relpath under the root


def classify(root: str, path: str, *, attrib: bool = False) -> Change | None:
    """Map an event path to the index entry it touches (None: irrelevant).
    An attribute change (`attrib`: chmod, chown) of a directory the watcher
    watches or waits for is a reason to re-arm: it may have become readable,
    or unreadable."""
    change = _classify(root, path)
    if attrib and change is not None and change.what == "structure":
        return Change("rearm", change.name)
    return change


def _classify(root: str, path: str) -> Change | None:
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
        #: Resolved path of a watched dir -> the path under the root it stands
        #: for (a root, or a localfile/ on another disk, may be a symlink).
        self.aliases: dict[str, str] = {}

    def on_any_event(self, event: FileSystemEvent) -> None:
        # A chmod or chown of a directory may have made it (un)readable.
        kind = "attrib" if isinstance(event, DirAttribEvent) else "fs"
        self._out.put((kind, self._logical(os.fsdecode(event.src_path))))
        dest = getattr(event, "dest_path", "")
        if dest:
            self._out.put(("fs", self._logical(os.fsdecode(dest))))

    def _logical(self, path: str) -> str:
        aliases = self.aliases
        if path in aliases:
            return aliases[path]
        parent, _, name = path.rpartition("/")
        return f"{aliases[parent]}/{name}" if parent in aliases else path


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
    """Owns the observer, re-arms it when directories come and go, and
    keeps the directories it could not watch (`failed`: dir -> why) so the
    daemon can say so and try again.

    watchdog does not report a watch the kernel refused for permission
    (inotify_add_watch's EACCES is dropped in its inotify_c.py and the
    watch silently never fires), so each directory is first opened for
    reading, the same permission check inotify makes."""

    def __init__(
        self,
        root: str,
        out: queue.SimpleQueue[tuple[str, Any]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = os.path.abspath(root)
        self._out = out
        self._clock = clock
        self._observer: InotifyObserver | None = None
        self._handler = _Forward(out)
        self._trouble = _WatcherTrouble(out)
        logging.getLogger("watchdog").addHandler(self._trouble)
        self.watched: list[str] = []
        self.failed: dict[str, str] = {}
        #: When `retry` is due (clock time); None while every watch is set.
        self.retry_at: float | None = None
        self._retry_delay = WATCH_RETRY_FIRST
        self._reported: dict[str, str] = {}

    def arm(self) -> list[str]:
        """(Re)create every watch that can exist now. Returns the watched
        directories. Called at start, on a structure change and on rescans
        after trouble: re-arming is cheap (a dozen directories)."""
        self.disarm()
        targets = [os.path.join(self.root, d) if d else self.root for d in (*PARENT_DIRS, *LEAF_DIRS)]
        if not os.path.isdir(self.root):
            targets = [_nearest_existing(self.root)]
        self.watched, self.failed = [], {}
        self._handler.aliases = {}
        # The observer starts threads as soon as it is made, not only in start().
        with signals_blocked():
            observer = InotifyObserver(timeout=1.0)
            observer.daemon = True
            observer.start()
            self._observer = observer
            for target in targets:
                self._watch(target)
        self._schedule_retry(reset=True)
        return self.watched

    def retry(self) -> list[str]:
        """Try the directories that could not be watched again. Returns those
        watched now; a directory that no longer exists is dropped (its
        parent's watch reports it if it comes back)."""
        if self._observer is None:
            return []
        before = set(self.watched)
        with signals_blocked():
            for target in list(self.failed):
                del self.failed[target]
                self._watch(target)
        self._schedule_retry(reset=False)
        return [d for d in self.watched if d not in before]

    def news(self) -> tuple[dict[str, str], list[str]]:
        """What to tell a person since the last call: directories that now
        cannot be watched (or fail for another reason), and those watched
        again. Each failure is told once, however often it is retried, and
        not for a directory inside another that fails (the root closed is
        one line, not seventeen): it is told if it still fails once the
        outer one is fixed."""
        shown = {
            d: why
            for d, why in self.failed.items()
            if not any(d.startswith(outer.rstrip("/") + "/") for outer in self.failed)
        }
        failed = {d: why for d, why in shown.items() if self._reported.get(d) != why}
        restored = [d for d in self._reported if d not in self.failed and d in self.watched]
        self._reported = shown
        return failed, restored

    def _schedule_retry(self, *, reset: bool) -> None:
        """Back off from WATCH_RETRY_FIRST to WATCH_RETRY_MAX seconds while
        something stays unwatchable; a fixed permission is usually also
        seen sooner, as an attribute change on the parent's watch."""
        if not self.failed:
            self.retry_at, self._retry_delay = None, WATCH_RETRY_FIRST
            return
        if reset:
            self._retry_delay = WATCH_RETRY_FIRST
        self.retry_at = self._clock() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, WATCH_RETRY_MAX)

    def _watch(self, target: str) -> None:
        assert self._observer is not None
        try:
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return  # not there (yet): nothing to watch
        except OSError as exc:
            self.failed[target] = exc.strerror or str(exc)
            return
        os.close(fd)
        # watchdog watches a symlink itself (IN_DONT_FOLLOW), which reports
        # nothing of the dir behind it: watch the resolved dir and map its
        # events back to the path under the root.
        real = os.path.realpath(target)
        if real != target:
            self._handler.aliases = {**self._handler.aliases, real: target}
        try:
            self._observer.schedule(self._handler, real, recursive=False, event_filter=_EVENTS)
        except OSError as exc:  # ENOSPC: the inotify watch limit
            self.failed[target] = exc.strerror or str(exc)
            return
        self.watched.append(target)

    def disarm(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=1.0)

    def close(self) -> None:
        self.disarm()
        logging.getLogger("watchdog").removeHandler(self._trouble)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
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
