"""A stand-in for journald's native socket, for tests: an AF_UNIX datagram
socket bound in the test's directory that reads entries the way
systemd-journald does (src/journal/journald-native.c) and is stricter where
journald would drop something silently: every such case is recorded in
`errors`, which a test asserts empty.

What it checks, after systemd.io/JOURNAL_NATIVE_PROTOCOL: a datagram holds
either a payload and no descriptor, or an empty payload and exactly one
descriptor, a sealed memfd holding the payload; an entry is `KEY=value\\n`
fields, or `KEY\\n` + little-endian u64 length + value + `\\n`; a blank line
ends an entry; field names follow journal_field_valid (upper-case letters,
digits, '_', not starting with a digit or '_', at most 64 bytes).
"""

from __future__ import annotations

import array
import fcntl
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

WAIT = 30.0
_FIELD_NAME = re.compile(rb"[A-Z][A-Z0-9_]{0,63}")
_F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
#: Write, grow and shrink sealed: what journald's memfd_get_sealed() asks.
_SEALED = 0x2 | 0x4 | 0x8
_MAX_DATAGRAM = 1 << 20


@dataclass
class Entry:
    """One journal entry: every field's values (a name may repeat), which
    fields came in the binary-safe form, and whether it came in a memfd."""

    fields: dict[str, list[bytes]] = field(default_factory=dict)
    binary: set[str] = field(default_factory=set)
    via_memfd: bool = False

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return None if values is None else values[0].decode("utf-8")

    @property
    def message(self) -> str:
        return self.get("MESSAGE") or ""


def parse_entries(data: bytes, errors: list[str]) -> list[Entry]:
    """Entries of one datagram (or memfd), as journald splits them."""
    entries: list[Entry] = []
    entry = Entry()
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            errors.append(f"trailing noise without a newline: {data[pos : pos + 60]!r}")
            break
        if end == pos:  # a blank line ends the entry
            entries.append(entry)
            entry = Entry()
            pos += 1
            continue
        line = data[pos:end]
        name, eq, value = line.partition(b"=")
        if not eq:  # binary-safe form
            if end + 9 > len(data):
                errors.append(f"binary field {line!r} cut short")
                break
            (size,) = struct.unpack_from("<Q", data, end + 1)
            start = end + 9
            if start + size >= len(data) or data[start + size] != 0x0A:
                errors.append(f"binary field {line!r}: {size} bytes not followed by a newline")
                break
            value = data[start : start + size]
            pos = start + size + 1
            entry.binary.add(name.decode("ascii", "replace"))
        else:
            pos = end + 1
        if not _FIELD_NAME.fullmatch(name):
            errors.append(f"journald drops the field name {name!r}")
            continue
        entry.fields.setdefault(name.decode("ascii"), []).append(value)
    if entry.fields:
        entries.append(entry)
    return entries


class JournalListener:
    """Binds `path` and collects entries on a thread until `close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[Entry] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data, ancdata, flags, _ = self._sock.recvmsg(_MAX_DATAGRAM, socket.CMSG_SPACE(4 * 4))
            except TimeoutError:
                continue
            except OSError:
                return
            errors: list[str] = []
            entries = self._datagram(data, ancdata, flags, errors)
            with self._cond:
                self.entries.extend(entries)
                self.errors.extend(errors)
                self._cond.notify_all()

    def _datagram(
        self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, errors: list[str]
    ) -> list[Entry]:
        fds = array.array("i")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                errors.append("datagram truncated")
                return []
            if not fds:
                return parse_entries(data, errors)
            if data or len(fds) != 1:
                errors.append(f"datagram with {len(data)} bytes and {len(fds)} fds: journald ignores it")
                return []
            content = self._memfd(fds[0], errors)
            entries = parse_entries(content, errors) if content is not None else []
            for entry in entries:
                entry.via_memfd = True
            return entries
        finally:
            for fd in fds:
                os.close(fd)

    @staticmethod
    def _memfd(fd: int, errors: list[str]) -> bytes | None:
        try:
            seals = fcntl.fcntl(fd, _F_GET_SEALS)
        except OSError as exc:
            errors.append(f"passed fd is not a memfd: {exc}")
            return None
        if seals & _SEALED != _SEALED:
            errors.append(f"memfd not sealed (seals {seals:#x}): journald refuses it from non-root")
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)

    # --------------------------------------------------------------- reads
    def wait_for(
        self, predicate: Callable[[Entry], bool], timeout: float = WAIT, what: str = "a matching entry"
    ) -> Entry:
        found = self.wait_count(predicate, 1, timeout, what)
        return found[0]

    def wait_count(
        self, predicate: Callable[[Entry], bool], count: int, timeout: float = WAIT, what: str = "entries"
    ) -> list[Entry]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [e for e in self.entries if predicate(e)]
                if len(hits) >= count:
                    return hits
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    messages = "\n".join(e.message for e in self.entries[-20:])
                    raise AssertionError(
                        f"timed out after {timeout:.1f}s waiting for {count} x {what}; "
                        f"{len(self.entries)} entries, last:\n{messages}\nerrors: {self.errors}"
                    )
                self._cond.wait(remaining)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> JournalListener:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
