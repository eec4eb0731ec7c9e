"""The sd_notify(3) protocol, spoken directly: one datagram of `KEY=VALUE`
lines to the AF_UNIX socket named by `$NOTIFY_SOCKET`.

Written here rather than taken from a package because the protocol is a few
lines and the daemon must not gain a dependency (or a C extension) for it.
Every call is safe outside systemd: without `$NOTIFY_SOCKET` it is a no-op that
returns False, and no send failure ever raises, because a daemon that crashes
on a missed keep-alive would turn a monitoring hiccup into an outage.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Mapping

__all__ = ["Notifier"]

#: Longest address the kernel accepts in `sockaddr_un.sun_path`.
_SUN_PATH_MAX = 108
#: systemd rejects a datagram with a NUL in it; a newline would start a new field.
_LINE_BREAKS = re.compile(r"[\r\n\x00]+")
#: Long enough to ride out a busy manager, short enough that a wedged one
#: cannot stall the daemon's loop (a full receive queue blocks a datagram send).
DEFAULT_SEND_TIMEOUT = 1.0


def _one_line(value: object) -> str:
    """systemd reads a datagram as newline-separated fields, so a value with
    a line break in it would be cut short and its tail taken as a bogus field."""
    return _LINE_BREAKS.sub(" ", str(value)).strip()


def _parse_address(value: str) -> tuple[bytes | None, str | None]:
    """Return (sockaddr, None) or (None, why it is unusable). Only the two
    AF_UNIX forms are supported: the unit restricts the daemon to AF_UNIX,
    so a `vsock:` (or any other) address could not be reached anyway."""
    if value.startswith("/"):
        address = os.fsencode(value)
    elif value.startswith("@"):
        if len(value) == 1:
            return None, "NOTIFY_SOCKET '@' names no abstract socket"
        # An abstract socket is spelt with a leading NUL instead of the '@'.
        address = b"\0" + os.fsencode(value[1:])
    else:
        return None, (
            f"NOTIFY_SOCKET {value!r} is not supported: only an absolute AF_UNIX path "
            "or an abstract '@name' is; sd_notify disabled"
        )
    if len(address) > _SUN_PATH_MAX:
        return None, f"NOTIFY_SOCKET {value!r} is longer than an AF_UNIX address can be; sd_notify disabled"
    return address, None


def _parse_watchdog(environ: Mapping[str, str]) -> float | None:
    """A quarter of the watchdog timeout. sd_watchdog_enabled(3) asks for a
    ping at least every half; pinging at exactly half leaves no room for jitter
    (at 1M snapshots the gaps measured 15.05 s against WatchdogSec=30), so a
    quarter keeps every gap under half even when a ping is late by a quarter. None when there is no
    watchdog for this process: a WATCHDOG_PID naming another process means the
    variables were inherited from a parent that systemd is actually watching."""
    usec_text = environ.get("WATCHDOG_USEC", "")
    if not usec_text.isdigit():
        return None
    usec = int(usec_text)
    if usec <= 0:
        return None
    pid_text = environ.get("WATCHDOG_PID")
    if pid_text is not None and (not pid_text.isdigit() or int(pid_text) != os.getpid()):
        return None
    return usec / 4_000_000


class Notifier:
    """Talks to the service manager for one process.

    `$NOTIFY_SOCKET` is read once and deliberately left in the environment
    (unlike sd_notify's `unset_environment`): cocoond spawns no children that
    could send on it by mistake, and `NotifyAccess=main` in the unit would
    ignore them if it did.

    The socket is opened on first use, not at construction, so a Notifier
    made outside systemd (tests, `cocoond check`) never opens anything. Each
    message is a separate `sendto` to the address rather than a `connect`ed
    socket, so a manager that re-executes and rebinds its socket is still
    reached. Thread-safe: the watchdog may be fed from a timer thread while
    the main thread reports status.
    """

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, timeout: float = DEFAULT_SEND_TIMEOUT
    ) -> None:
        env = os.environ if environ is None else environ
        self._timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._last_error: str | None = None
        self._address: bytes | None = None
        self._socket_name = env.get("NOTIFY_SOCKET", "")
        if self._socket_name:
            self._address, self._last_error = _parse_address(self._socket_name)
        self._watchdog_interval = _parse_watchdog(env)

    @property
    def enabled(self) -> bool:
        """False when there is no usable notify socket, so callers can skip
        work (a watchdog timer thread) that only matters under systemd."""
        return self._address is not None

    @property
    def last_error(self) -> str | None:
        """The most recent failure, kept (not cleared by a later success) so the
        daemon can log it once instead of every send raising or logging."""
        return self._last_error

    def watchdog_interval(self) -> float | None:
        """Seconds between `watchdog()` calls, or None when systemd is not
        watching this process (unset, invalid or zero WATCHDOG_USEC, or a
        WATCHDOG_PID that is not ours)."""
        return self._watchdog_interval

    def send(self, text: str) -> bool:
        """Send `text` as one datagram, unchanged (newlines separate fields).
        True when the kernel accepted it; False when disabled or on any
        socket error, which is remembered in `last_error` and never raised."""
        address = self._address
        if address is None:
            return False
        data = text.encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    # Python opens sockets with SOCK_CLOEXEC (PEP 446): no child inherits it.
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.settimeout(self._timeout)
                self._sock.sendto(data, socket.MSG_NOSIGNAL, address)
            except OSError as exc:  # ENOENT, ECONNREFUSED, EAGAIN, timeout, EMFILE...
                self._last_error = f"sd_notify to {self._socket_name!r} failed: {exc}"
                return False
        return True

    def notify(self, **fields: object) -> bool:
        """Send several fields in one datagram, so systemd applies them
        together (READY=1 with its STATUS, say). Values are made one line."""
        return self.send("".join(f"{key}={_one_line(value)}\n" for key, value in fields.items()))

    def ready(self, status: str | None = None) -> bool:
        """Startup is finished: `systemctl start` returns, and ordering waits
        end, only now for Type=notify. Also ends a reload begun with
        `reloading()`."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """Shown by `systemctl status`; flattened to one line."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Keep-alive. Sent even when `watchdog_interval()` is None, as
        sd_notify does: it is harmless, and the caller decides the schedule."""
        return self.notify(WATCHDOG=1)

    def stopping(self) -> bool:
        """Shutdown has begun, so systemd shows `deactivating` rather than
        treating the silence that follows as a hang."""
        return self.notify(STOPPING=1)

    def reloading(self) -> bool:
        """A reload has begun; send `ready()` when it is done. MONOTONIC_USEC
        lets systemd >= 253 (Type=notify-reload) tell this reload from an
        earlier one; older managers ignore the field."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec)

    def close(self) -> None:
        """Release the socket; a later send opens a new one."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
