"""journald's native protocol, spoken directly (systemd.io/JOURNAL_NATIVE_PROTOCOL).

Under systemd, stdout reaches the journal through its stream transport,
which gives every line the unit's default priority (info) and nothing else.
The native protocol carries one entry per datagram with any fields we
choose: `PRIORITY` from the event's level, and fields to filter on without
parsing. Each entry is `KEY=value\\n` per field; a value holding a newline
(or any bytes) is sent as `KEY\\n`, its length as a little-endian u64, the
value and `\\n`. An entry too large for a datagram (EMSGSIZE) goes into a
sealed memfd whose descriptor is sent in an otherwise empty datagram: never
split into several entries.

Written here rather than taken from a package: systemd-python compiles
against libsystemd's headers, and bindings of libsystemd (cysystemd) make
`sd_journal_sendv` report an absent journal as success, with the socket path
fixed, so neither the fallback to stdout nor a test listener would be
possible. The protocol is the few lines below.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import re
import socket
import struct
import threading
from collections.abc import Iterable, Mapping

__all__ = [
    "SOCKET_ENV",
    "SOCKET_PATH",
    "JournalSocket",
    "encode_entry",
    "stderr_prefix",
    "stdout_is_journal",
]

#: Where journald listens for native entries.
SOCKET_PATH = "/run/systemd/journal/socket"
#: Names another socket than SOCKET_PATH. For tests (a listener of their
#: own); nothing sets it in production.
SOCKET_ENV = "COCOOND_JOURNAL_SOCKET"
#: libsystemd's choice: a large send buffer delays blocking and makes an
#: entry fit in one datagram (the kernel caps it at net.core.wmem_max).
SNDBUF_SIZE = 8 * 1024 * 1024

#: journald's rule for field names (journal_field_valid): upper-case ASCII
#: letters, digits and '_', not starting with a digit, at most 64 bytes.
#: A leading '_' marks fields only journald itself may set.
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_U64_LE = struct.Struct("<Q")

# Linux constants; some Python builds lack the fcntl names (their values are ABI).
_F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
_SEALS = (
    getattr(fcntl, "F_SEAL_SEAL", 0x1)
    | getattr(fcntl, "F_SEAL_SHRINK", 0x2)
    | getattr(fcntl, "F_SEAL_GROW", 0x4)
    | getattr(fcntl, "F_SEAL_WRITE", 0x8)
)


def stdout_is_journal(fd: int = 1, environ: Mapping[str, str] | None = None) -> bool:
    """Is `fd` the stream systemd connected to the journal? systemd puts its
    `st_dev:st_ino` in $JOURNAL_STREAM; a process whose output was
    redirected (a pipe to `tee`, a file) inherits the variable, but its fd
    is another file, so the comparison, not the variable, decides."""
    env = os.environ if environ is None else environ
    dev, sep, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not (sep and dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def stderr_prefix(priority: int, fd: int = 2) -> str:
    """`<N>` when `fd` (stderr) is the journal's stream, else "". systemd's
    stream transport reads a leading syslog priority from each line
    (SyslogLevelPrefix=, on by default), so the one line that says why a
    start or a reload failed is stored at err, not at the unit's default
    info. When stdout and stderr are separate streams, $JOURNAL_STREAM
    names stderr's; when stderr is inherited from stdout, both match."""
    return f"<{priority}>" if stdout_is_journal(fd) else ""


def _bytes(value: str | bytes | int) -> bytes:
    if isinstance(value, bytes):
        return value
    # A lone surrogate (valid in a JSON string from the DB) has no UTF-8
    # form; it is written escaped rather than lose the entry.
    return str(value).encode("utf-8", "backslashreplace")


def encode_entry(fields: Iterable[tuple[str, str | bytes | int]]) -> bytes:
    """One entry in the native format. A field name journald would drop
    silently is a ValueError here: the names are the program's own."""
    out = bytearray()
    for name, value in fields:
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"not a journal field name: {name!r}")
        data = _bytes(value)
        if b"\n" in data:
            out += name.encode() + b"\n" + _U64_LE.pack(len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalSocket:
    """Sends entries to journald. Each send addresses the socket by path
    (no `connect`), as libsystemd does, so a journald that restarts and
    binds its socket anew is reached again without reopening anything.
    Sends block like writes to stdout do: a journald that cannot keep up
    slows the daemon rather than losing its entries. Thread-safe."""

    def __init__(self, path: str = SOCKET_PATH, *, sndbuf: int = SNDBUF_SIZE) -> None:
        self.path = path
        self._sndbuf = sndbuf
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def send(self, fields: Iterable[tuple[str, str | bytes | int]]) -> None:
        """Send one entry. Raises OSError when journald cannot be reached
        (no socket, refused, denied); the caller decides what then."""
        data = encode_entry(fields)
        with self._lock:
            sock = self._socket()
            try:
                sock.sendto(data, socket.MSG_NOSIGNAL, self.path)
            except OSError as exc:
                # Too big for one datagram (ENOBUFS/EAGAIN: no room for one
                # that big right now): the protocol's answer is a memfd.
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS, errno.EAGAIN):
                    raise
                self._send_memfd(sock, data)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # CLOEXEC, as Python opens all
            # The default buffer works too: large entries then go by memfd.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._sndbuf)
            self._sock = sock
        return self._sock

    def _send_memfd(self, sock: socket.socket, data: bytes) -> None:
        """The entry in a memfd, sealed so journald may map it (it refuses
        an unsealed one from an unprivileged sender), sent as the only
        content of an empty datagram."""
        fd = os.memfd_create("cocoond-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            sock.sendmsg([], rights, socket.MSG_NOSIGNAL, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
