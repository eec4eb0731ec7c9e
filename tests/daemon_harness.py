"""Runs `cocoond run` as a real subprocess for end-to-end tests, the way
systemd would: a config file in tmp_path, NOTIFY_SOCKET naming an AF_UNIX
datagram socket bound here, JSON log lines on stdout.

One I/O thread reads stdout, stderr and the notify socket. After taking a
datagram it drains everything in the stdout pipe before recording it, so
each datagram's `lines_before` includes every log line the daemon wrote
before sending it (the daemon writes the line, then sends: the pipe holds
the line before the socket holds the datagram). "READY=1 after
index.loaded" is then checked on one thread's order of reads, not on a race
between two reader threads.

Nothing here sleeps to synchronise: every wait blocks on a Condition until
a matching line or datagram arrives, or its deadline passes, and then fails
with the tail of the log and stderr.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Small timings for most tests; a test overrides what it needs.
FAST_CONFIG: dict[str, dict[str, Any]] = {
    "watch": {"settle_seconds": 0.3, "debounce_seconds": 0.05, "full_rescan_seconds": 0},
    "thresholds": {"pending_stale_seconds": 3600},
    "alerts": {"heartbeat_seconds": 0, "reminder_seconds": 0},
}
#: Generous deadline for one wait on a loaded 2-core machine.
WAIT = 30.0
SUN_PATH_MAX = 107

#: Rewrites the daemon's command line before it starts.
Launcher = Callable[[list[str]], list[str]]


def with_prelude(code: str) -> Launcher:
    """A launcher that runs `code` in the daemon's interpreter before
    cocoond starts: to stand in for slow storage or shrink a bound, with
    nothing in cocoond itself that exists only for tests."""

    def launch(argv: list[str]) -> list[str]:
        assert argv[1:3] == ["-m", "cocoond"], argv
        start = "\nimport runpy\nrunpy.run_module('cocoond', run_name='__main__', alter_sys=True)\n"
        return [argv[0], "-c", code + start, *argv[3:]]

    return launch


class LogLine(dict[str, Any]):
    """One stdout line: the parsed JSON object (empty when the line is not
    JSON), plus the raw text, its position and when it arrived."""

    def __init__(self, raw: str, index: int, arrived: float) -> None:
        self.raw = raw
        self.index = index
        self.arrived = arrived  # time.monotonic()
        self.is_json = False
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            self.is_json = True
            super().__init__(obj)
        else:
            super().__init__()

    def matches(self, event: str | None = None, **fields: Any) -> bool:
        if event is not None and self.get("event") != event:
            return False
        return all(self.get(k) == v for k, v in fields.items())


@dataclass(frozen=True)
class Datagram:
    fields: dict[str, str]
    arrived: float  # time.monotonic()
    lines_before: int  # stdout lines read by then: includes all written before it was sent


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"no TOML for {value!r}")


def render_toml(config: Mapping[str, Any]) -> str:
    """A flat TOML document: top-level keys, then one table per section."""
    out = [f"{k} = {toml_value(v)}" for k, v in config.items() if not isinstance(v, Mapping)]
    for table, values in config.items():
        if isinstance(values, Mapping):
            out.append(f"\n[{table}]")
            out.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
    return "\n".join(out) + "\n"


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


class DaemonProcess:
    """One `cocoond run` subprocess and everything it said."""

    def __init__(
        self,
        workdir: Path,
        root: Path,
        config: Mapping[str, Any] | str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        notify: bool = True,
        pass_root: bool = True,
        pass_config: bool = True,
        name: str = "daemon",
        launch: Launcher | None = None,
        journal_stream: bool = False,
    ) -> None:
        self.workdir = workdir
        self.root = root
        self.config_path = workdir / f"{name}.toml"
        self.write_config(FAST_CONFIG if config is None else config)
        self._cond = threading.Condition()
        self._lines: list[LogLine] = []
        self._stderr = bytearray()
        self._datagrams: list[Datagram] = []
        self._out_buf = b""
        self._sock: socket.socket | None = None
        self._notify_address = ""
        if notify:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            path = workdir / f"{name}.notify"
            if len(os.fsencode(str(path))) <= SUN_PATH_MAX:
                self._sock.bind(str(path))
                self._notify_address = str(path)
            else:  # a long tmp_path: an abstract socket instead
                abstract = f"cocoond-test-{uuid.uuid4().hex}"
                self._sock.bind("\0" + abstract)
                self._notify_address = "@" + abstract
            self._sock.setblocking(False)
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        child_env.pop("COCOON_ROOT_DIR", None)
        child_env.pop("JOURNAL_STREAM", None)
        child_env["PYTHONUNBUFFERED"] = "1"
        if self._notify_address:
            child_env["NOTIFY_SOCKET"] = self._notify_address
        # journal_stream: stdout as systemd connects it to the journal, a
        # stream socket whose st_dev:st_ino $JOURNAL_STREAM names.
        self._out_sock: socket.socket | None = None
        child_out: Any = subprocess.PIPE
        if journal_stream:
            self._out_sock, theirs = socket.socketpair()
            st = os.fstat(theirs.fileno())
            child_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            child_out = theirs.fileno()
        child_env.update(env or {})
        argv = [sys.executable, "-m", "cocoond", "run"]
        if pass_config:
            argv += ["--config", str(self.config_path)]
        if pass_root:
            argv += ["--root", str(root)]
        if launch is not None:
            argv = launch(argv)
        self.argv = argv
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=child_out,
            stderr=subprocess.PIPE,
            env=child_env,
            cwd=str(workdir),
        )
        if self._out_sock is not None:
            theirs.close()
            self._out_fd = self._out_sock.fileno()
        else:
            assert self.proc.stdout is not None
            self._out_fd = self.proc.stdout.fileno()
        assert self.proc.stderr is not None
        self._err_fd = self.proc.stderr.fileno()
        os.set_blocking(self._out_fd, False)
        os.set_blocking(self._err_fd, False)
        self._done = False
        self._thread = threading.Thread(target=self._pump, name=f"{name}-io", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- config
    def write_config(self, config: Mapping[str, Any] | str) -> None:
        """Replace the config file (atomically, as an editor or CM tool would)."""
        text = config if isinstance(config, str) else render_toml(config)
        tmp = self.config_path.with_name(self.config_path.name + ".new")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    # ------------------------------------------------------------------ I/O
    def _pump(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._out_fd, selectors.EVENT_READ, "out")
        sel.register(self._err_fd, selectors.EVENT_READ, "err")
        if self._sock is not None:
            sel.register(self._sock, selectors.EVENT_READ, "sock")
        streams = 2
        try:
            while streams:
                for key, _ in sel.select(timeout=1.0):
                    if key.data == "sock":
                        self._drain_socket()
                    elif key.data == "out":
                        if not self._drain_stdout():
                            sel.unregister(self._out_fd)
                            streams -= 1
                    elif not self._drain_stderr():
                        sel.unregister(self._err_fd)
                        streams -= 1
            # Both pipes closed: the daemon is gone; what it sent last is queued.
            self._drain_socket()
        finally:
            sel.close()
            with self._cond:
                if self._out_buf:
                    self._add_line(self._out_buf)
                    self._out_buf = b""
                self._done = True
                self._cond.notify_all()

    def _drain_stdout(self) -> bool:
        """Read all that is in the pipe now. False at EOF."""
        while True:
            try:
                chunk = os.read(self._out_fd, 65536)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    return False
                raise
            if not chunk:
                return False
            with self._cond:
                data = self._out_buf + chunk
                *complete, self._out_buf = data.split(b"\n")
                for raw in complete:
                    self._add_line(raw)
                self._cond.notify_all()

    def _add_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self._lines.append(LogLine(text, len(self._lines), time.monotonic()))

    def _drain_stderr(self) -> bool:
        while True:
            try:
                chunk = os.read(self._err_fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            with self._cond:
                self._stderr += chunk
                self._cond.notify_all()

    def _drain_socket(self) -> None:
        """Take each datagram, then drain stdout before recording it: every
        line the daemon wrote before sending the datagram is then among the
        first `lines_before` lines (draining first would miss a line written
        between that drain and the send)."""
        if self._sock is None:
            return
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:  # BlockingIOError: nothing (more) queued
                return
            self._drain_stdout()
            fields: dict[str, str] = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                if line:
                    key, _, value = line.partition("=")
                    fields[key] = value
            with self._cond:
                self._datagrams.append(Datagram(fields, time.monotonic(), len(self._lines)))
                self._cond.notify_all()

    # ---------------------------------------------------------------- reads
    @property
    def lines(self) -> list[LogLine]:
        with self._cond:
            return list(self._lines)

    def events(self, event: str | None = None, since: int = 0, **fields: Any) -> list[LogLine]:
        return [line for line in self.lines[since:] if line.matches(event, **fields)]

    def mark(self) -> int:
        """The index the next line will have: pass as `since`."""
        with self._cond:
            return len(self._lines)

    @property
    def stderr(self) -> str:
        with self._cond:
            return self._stderr.decode("utf-8", "replace")

    def notify_messages(self) -> list[Datagram]:
        with self._cond:
            return list(self._datagrams)

    def describe(self, tail: int = 30) -> str:
        with self._cond:
            lines = [line.raw for line in self._lines[-tail:]]
            stderr = self._stderr.decode("utf-8", "replace")
            datagrams = [d.fields for d in self._datagrams[-5:]]
        rc = self.proc.poll()
        return (
            f"daemon {self.argv} (exit code {rc})\n--- last {len(lines)} log lines:\n"
            + "\n".join(lines)
            + f"\n--- stderr:\n{stderr[-4000:]}\n--- last datagrams: {datagrams}"
        )

    # ---------------------------------------------------------------- waits
    def _wait(self, find: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._done:
                    break
                self._cond.wait(remaining)
        raise AssertionError(
            f"timed out after {timeout:.1f}s waiting for {what}"
            + (" (the daemon exited)" if self._done else "")
            + "\n"
            + self.describe()
        )

    def wait_for(
        self,
        predicate: Callable[[LogLine], bool],
        timeout: float = WAIT,
        *,
        since: int = 0,
        what: str = "a matching log line",
    ) -> LogLine:
        """The first line from `since` on that satisfies `predicate`."""

        def find() -> LogLine | None:
            return next((line for line in self._lines[since:] if predicate(line)), None)

        result: LogLine = self._wait(find, timeout, what)
        return result

    def wait_event(self, event: str, timeout: float = WAIT, *, since: int = 0, **fields: Any) -> LogLine:
        return self.wait_for(
            lambda line: line.matches(event, **fields), timeout, since=since, what=f"{event} {fields}"
        )

    def wait_count(
        self,
        predicate: Callable[[LogLine], bool],
        count: int,
        timeout: float = WAIT,
        *,
        since: int = 0,
        what: str = "matching log lines",
    ) -> list[LogLine]:
        def find() -> list[LogLine] | None:
            hits = [line for line in self._lines[since:] if predicate(line)]
            return hits if len(hits) >= count else None

        result: list[LogLine] = self._wait(find, timeout, f"{count} x {what}")
        return result

    def wait_notify(
        self,
        predicate: Callable[[Datagram], bool],
        timeout: float = WAIT,
        *,
        count: int = 1,
        what: str = "a datagram",
    ) -> list[Datagram]:
        def find() -> list[Datagram] | None:
            hits = [d for d in self._datagrams if predicate(d)]
            return hits if len(hits) >= count else None

        result: list[Datagram] = self._wait(find, timeout, f"{count} x {what}")
        return result

    def wait_ready(self, timeout: float = WAIT) -> Datagram:
        """The READY=1 datagram (the first one)."""
        return self.wait_notify(lambda d: d.fields.get("READY") == "1", timeout, what="READY=1")[0]

    # ------------------------------------------------------------- lifecycle
    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = WAIT) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon did not exit within {timeout}s\n{self.describe()}") from None
        self._thread.join(timeout)
        return rc

    def stop(self, signum: int = signal.SIGTERM, timeout: float = WAIT) -> tuple[int, float]:
        """Send `signum`; return (exit code, seconds from the signal to the exit)."""
        sent = time.monotonic()
        self.send_signal(signum)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"daemon did not exit within {timeout}s of {signum}\n{self.describe()}"
            ) from None
        took = time.monotonic() - sent
        self._thread.join(timeout)
        return rc, took

    def kill(self) -> None:
        """Teardown: make sure the process is gone and the socket closed."""
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._thread.join(10)
        for stream in (self.proc.stdout, self.proc.stderr, self._out_sock):
            if stream is not None:
                stream.close()
        if self._sock is not None:
            self._sock.close()
            if self._notify_address.startswith("/"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._notify_address)


class Daemons:
    """Starts daemons for one test and kills every one of them at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[DaemonProcess] = []

    def start(
        self,
        root: Path,
        config: Mapping[str, Any] | str | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        notify: bool = True,
        pass_root: bool = True,
        pass_config: bool = True,
        launch: Launcher | None = None,
        journal_stream: bool = False,
    ) -> DaemonProcess:
        """`config` replaces FAST_CONFIG; `overrides` is merged into it;
        `launch` rewrites the command line (see `with_prelude`, and
        tests/unprivileged.py's `unprivileged`)."""
        if config is None:
            config = merge(FAST_CONFIG, overrides or {})
        elif overrides:
            assert not isinstance(config, str)
            config = merge(config, overrides)
        daemon = DaemonProcess(
            self.workdir,
            root,
            config,
            env=env,
            notify=notify,
            pass_root=pass_root,
            pass_config=pass_config,
            name=f"daemon{len(self._started)}",
            launch=launch,
            journal_stream=journal_stream,
        )
        self._started.append(daemon)
        return daemon

    def close(self) -> None:
        for daemon in self._started:
            daemon.kill()


@contextlib.contextmanager
def daemons_for(workdir: Path) -> Iterator[Daemons]:
    pool = Daemons(workdir)
    try:
        yield pool
    finally:
        pool.close()


# ------------------------------------------------------------ predicates
def opened(kind: str, subject: str | None = None) -> Callable[[LogLine], bool]:
    return lambda line: (
        line.matches("finding.opened", kind=kind) and (subject is None or line.get("subject") == subject)
    )


def resolved(kind: str, subject: str | None = None) -> Callable[[LogLine], bool]:
    return lambda line: (
        line.matches("finding.resolved", kind=kind) and (subject is None or line.get("subject") == subject)
    )


def above_info(line: LogLine) -> bool:
    return line.get("level") in ("warning", "error")


def lifecycle_errors(lines: list[LogLine]) -> list[str]:
    """Contract section 5: a finding is opened once and resolved once. Per
    (kind, subject), opened and resolved alternate, starting with opened;
    reminders only while open."""
    is_open: dict[tuple[str, str], bool] = {}
    errors = []
    for line in lines:
        event = line.get("event")
        if event not in ("finding.opened", "finding.resolved", "finding.reminder"):
            continue
        key = (str(line.get("kind")), str(line.get("subject")))
        now_open = is_open.get(key, False)
        if event == "finding.opened" and now_open:
            errors.append(f"opened twice: {line.raw}")
        elif event == "finding.resolved" and not now_open:
            errors.append(f"resolved while not open: {line.raw}")
        elif event == "finding.reminder" and not now_open:
            errors.append(f"reminder while not open: {line.raw}")
        if event != "finding.reminder":
            is_open[key] = event == "finding.opened"
    return errors
