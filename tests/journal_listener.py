"""A stand-in for journald's native socket, for tests: an AF_UNIX datagram
socket that takes entries as systemd.io/JOURNAL_NATIVE_PROTOCOL says
journald does (a payload, or an empty payload with exactly one memfd that
must be sealed) and parses them with its own reading of the format, written
from the spec and not from cocoond's encoder.

One thread receives; waits block on a Condition with a deadline."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import re
import select
import socket
import struct
import termios
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SUN_PATH_MAX = 107
#: journald's rule for a field name (journal_field_valid): A-Z, 0-9, _, no leading digit.
FIELD_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
#: What journald requires of a memfd it maps (memfd_get_sealed).
REQUIRED_SEALS = 2 | 4 | 8  # F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE


@dataclass
class Entry:
    """One received entry: fields in order (a key may repeat), the raw bytes,
    whether it came in a memfd, and which fields used the binary form."""

    fields: list[tuple[str, bytes]]
    raw: bytes
    memfd: bool = False
    binary_keys: set[str] = field(default_factory=set)

    def get(self, key: str) -> str | None:
        values = [v for k, v in self.fields if k == key]
        assert len(values) <= 1, f"{key} appears {len(values)} times"
        return values[0].decode("utf-8") if values else None

    @property
    def message(self) -> bytes:
        values = [v for k, v in self.fields if k == "MESSAGE"]
        assert len(values) == 1, self.fields
        return values[0]


def parse(data: bytes) -> tuple[list[tuple[str, bytes]], set[str]]:
    """The native format: `KEY=value\\n`, or `KEY\\n` + u64 LE size + value + `\\n`."""
    fields: list[tuple[str, bytes]] = []
    binary: set[str] = set()
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            pos = end + 1
        else:
            key = line
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert len(value) == size, "binary field runs past the entry"
            assert data[end + 9 + size : end + 10 + size] == b"\n", "binary field not closed by a newline"
            pos = end + 10 + size
            binary.add(key.decode("ascii"))
        name = key.decode("ascii")
        assert FIELD_NAME.fullmatch(name), f"bad field name {name!r}"
        assert not name.startswith("_"), f"trusted field sent by a client: {name}"
        fields.append((name, value))
    return fields, binary


class JournalListener:
    def __init__(self, workdir: Path, name: str = "journal") -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = workdir / f"{name}.socket"
        if len(os.fsencode(str(path))) <= SUN_PATH_MAX:
            self.sock.bind(str(path))
            self.address = str(path)
        else:
            abstract = f"cocoond-journal-{uuid.uuid4().hex}"
            self.sock.bind("\0" + abstract)
            self.address = "@" + abstract
        self.sock.setblocking(False)
        self.entries: list[Entry] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd_size = array.array("i").itemsize
        while not self._closed.is_set():
            try:
                if not select.select([self.sock], [], [], 0.2)[0]:
                    continue
                # As journald sizes its buffer: the next datagram's length.
                pending = array.array("i", [0])
                fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, pending)
                data, ancdata, flags, _ = self.sock.recvmsg(
                    max(pending[0], 1), socket.CMSG_SPACE(4 * fd_size)
                )
            except (BlockingIOError, InterruptedError):
                continue
            except (OSError, ValueError):
                return  # closed
            try:
                entry = self._entry(data, ancdata, flags)
            except (AssertionError, ValueError, struct.error, OSError) as exc:
                with self._cond:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    self._cond.notify_all()
                continue
            with self._cond:
                self.entries.append(entry)
                self._cond.notify_all()

    @staticmethod
    def _entry(data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int) -> Entry:
        assert not flags & socket.MSG_TRUNC, "datagram truncated"
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                fds.extend(got)
        try:
            if not fds:
                assert data, "empty datagram without a file descriptor"
                fields, binary = parse(data)
                return Entry(fields, data, binary_keys=binary)
            # journald: an fd only with an empty payload, exactly one, sealed.
            assert data == b"", "datagram with both a payload and a file descriptor"
            assert len(fds) == 1, f"{len(fds)} file descriptors in one datagram"
            seals = fcntl.fcntl(fds[0], F_GET_SEALS)
            assert seals & REQUIRED_SEALS == REQUIRED_SEALS, f"memfd not sealed (seals {seals:#x})"
            size = os.fstat(fds[0]).st_size
            raw = os.pread(fds[0], size, 0)
            fields, binary = parse(raw)
            return Entry(fields, raw, memfd=True, binary_keys=binary)
        finally:
            for fd in fds:
                os.close(fd)

    def wait(
        self, predicate: Callable[[Entry], bool], timeout: float = 30.0, *, count: int = 1
    ) -> list[Entry]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [e for e in self.entries if predicate(e)]
                if len(hits) >= count:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out waiting for {count} journal entries; got {len(self.entries)}: "
                        + "; ".join(repr(e.get("MESSAGE")) for e in self.entries[-10:])
                        + f"; errors {self.errors}"
                    )
                self._cond.wait(left)

    def snapshot(self) -> list[Entry]:
        with self._cond:
            return list(self.entries)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self.sock.close()
        if self.address.startswith("/"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
