"""journald's native protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL), spoken
directly, for log lines that carry their priority and fields.

Lines written to stdout reach the journal through its stream transport,
which knows no level: every line is stored at PRIORITY=6, so
`journalctl -p warning`, syslog forwarding by severity and log shippers see
an error finding as routine. When stdout *is* the journal stream (systemd
sets `$JOURNAL_STREAM` to its device and inode), each event goes instead as
one datagram to journald's native socket: `MESSAGE` is the very line stdout
would have carried, plus `PRIORITY` and fields to filter on without parsing.

Written here rather than taken from a package: the protocol is two field
encodings and one fallback (a sealed memfd for an entry too large for a
datagram); systemd-python and pystemd compile against libsystemd's headers,
cysystemd is a binary wheel that bundles libsystemd and always sends to the
fixed socket path (no test could listen), and the pure-Python
logging-journald writes the binary form's length in the host's byte order
where the protocol says little-endian.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import socket
import stat
import struct
from collections.abc import Iterable, Mapping
from typing import Any, Final

#: Where journald listens for native datagrams.
JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"
#: Names another socket (a path, or `@name` for an abstract one). For tests,
#: which cannot listen on journald's own path; not meant for hosts.
SOCKET_ENV: Final = "COCOOND_JOURNAL_SOCKET"
#: syslog priorities of the daemon's levels (syslog(3): LOG_ERR, LOG_WARNING...).
PRIORITY: Final[Mapping[str, int]] = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
#: LOG_DAEMON: the facility journald gives stdout lines by default (the unit's
#: SyslogFacility=), so a syslog forwarder files native entries where it did.
SYSLOG_FACILITY: Final = 3
IDENTIFIER: Final = "cocoond"
#: Event fields copied into journal fields, for `journalctl COCOOND_KIND=...`.
FIELDS: Final[Mapping[str, str]] = {
    "event": "COCOOND_EVENT",
    "kind": "COCOOND_KIND",
    "severity": "COCOOND_SEVERITY",
    "subject": "COCOOND_SUBJECT",
    "snapshot_id": "COCOOND_SNAPSHOT_ID",
}
#: What libsystemd asks for (its SNDBUF_SIZE); the kernel caps it at
#: net.core.wmem_max, and larger entries go through a memfd anyway.
_SNDBUF: Final = 8 << 20
#: A datagram that does not fit: retry through a memfd, as sd_journal_sendv does.
_TOO_BIG: Final = frozenset({errno.EMSGSIZE, errno.ENOBUFS, errno.EAGAIN})
#: Linux's values, for a Python built without them in `fcntl`.
_F_ADD_SEALS: Final = getattr(fcntl, "F_ADD_SEALS", 1033)
_SEALS: Final = (
    getattr(fcntl, "F_SEAL_SEAL", 1)
    | getattr(fcntl, "F_SEAL_SHRINK", 2)
    | getattr(fcntl, "F_SEAL_GROW", 4)
    | getattr(fcntl, "F_SEAL_WRITE", 8)
)
_SUN_PATH_MAX: Final = 108

Field = tuple[str, str | bytes]


def stdout_is_journal(environ: Mapping[str, str] | None = None, fd: int = 1) -> bool:
    """Is `fd` the stream systemd connected to the journal? `$JOURNAL_STREAM`
    alone is not enough: a child whose stdout was redirected inherits it."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def socket_address(environ: Mapping[str, str] | None = None) -> bytes:
    """journald's socket, or the one `$COCOOND_JOURNAL_SOCKET` names."""
    value = (os.environ if environ is None else environ).get(SOCKET_ENV) or JOURNAL_SOCKET
    return b"\0" + os.fsencode(value[1:]) if value.startswith("@") else os.fsencode(value)


def encode(fields: Iterable[Field]) -> bytes:
    """One entry: `KEY=value\\n`, or for a value holding a newline the
    binary-safe form `KEY\\n`, its length as a little-endian u64, the value, `\\n`."""
    out = bytearray()
    for key, value in fields:
        data = value if isinstance(value, bytes) else value.encode("utf-8", "backslashreplace")
        name = key.encode("ascii")
        if b"\n" in data:
            out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name + b"=" + data + b"\n"
    return bytes(out)


def entry(message: str, fields: Iterable[Field]) -> bytes:
    """One event's datagram: its fields and MESSAGE, the line as rendered."""
    return encode([*fields, ("MESSAGE", message)])


def entry_fields(level: str, event_dict: Mapping[str, Any]) -> list[Field]:
    """The journal fields of one event, besides MESSAGE. A subject is cut to
    output.FIELD_LIMIT by the finding already; values are one line each
    unless the event's own value has a newline (then the binary form)."""
    fields: list[Field] = [
        ("PRIORITY", str(PRIORITY.get(level, PRIORITY["info"]))),
        ("SYSLOG_FACILITY", str(SYSLOG_FACILITY)),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
    ]
    for key, name in FIELDS.items():
        value = event_dict.get(key)
        if value is not None:
            fields.append((name, str(value)))
    return fields


class JournalSender:
    """One unconnected datagram socket, addressed on every send as
    sd_journal_sendv does, so a restarted journald (a new socket file at the
    same path) is reached without reconnecting."""

    def __init__(self, address: bytes) -> None:
        if len(address) > _SUN_PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, "journal socket address too long")
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # A small buffer only means the memfd path is taken sooner.
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)

    def reachable(self) -> str | None:
        """None if the address names a socket (or is abstract), else why not."""
        if self.address.startswith(b"\0"):
            return None
        try:
            mode = os.stat(self.address).st_mode
        except OSError as exc:
            return f"{os.fsdecode(self.address)}: {exc.strerror or exc}"
        return None if stat.S_ISSOCK(mode) else f"{os.fsdecode(self.address)}: not a socket"

    def send(self, payload: bytes) -> None:
        """Raises OSError when journald cannot be reached."""
        try:
            self.sock.sendto(payload, self.address)
        except OSError as exc:
            if exc.errno not in _TOO_BIG:
                raise
            self._send_memfd(payload)

    def _send_memfd(self, payload: bytes) -> None:
        """The entry in a sealed memfd, sent alone with an empty payload:
        journald maps it as it is, and the entry is never split."""
        fd = os.memfd_create("cocoond-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
            # Not socket.send_fds: in Python 3.11 it ignores its address argument.
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self.sock.sendmsg([b""], rights, 0, self.address)
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sock.close()
