"""sd_notify against real AF_UNIX datagram sockets standing in for systemd's,
one on the filesystem (as /run/systemd/notify is) and one abstract."""

from __future__ import annotations

import errno
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocoond.daemon.sdnotify import Notifier

RECV_TIMEOUT = 5.0


class Manager:
    """The receiving end: what systemd would read."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env = {"NOTIFY_SOCKET": env_value}

    def recv(self) -> dict[str, str]:
        data = self.sock.recv(4096)
        assert b"\0" not in data
        lines = data.decode().split("\n")
        assert lines[-1] == "", "a datagram ends with a newline"
        return dict(line.split("=", 1) for line in lines[:-1])


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Manager]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(RECV_TIMEOUT)
    if request.param == "path":
        path = tmp_path / "notify"
        sock.bind(str(path))
        env_value = str(path)
    else:
        name = f"cocoond-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        env_value = "@" + name
    try:
        yield Manager(sock, env_value)
    finally:
        sock.close()


def test_ready_with_status(manager: Manager) -> None:
    n = Notifier(manager.env)
    assert n.enabled
    assert n.ready("watching /data01/cocoon")
    assert manager.recv() == {"READY": "1", "STATUS": "watching /data01/cocoon"}
    assert n.ready()
    assert manager.recv() == {"READY": "1"}
    assert n.last_error is None


def test_watchdog_stopping_status(manager: Manager) -> None:
    n = Notifier(manager.env)
    assert n.watchdog()
    assert manager.recv() == {"WATCHDOG": "1"}
    assert n.status("3 open findings")
    assert manager.recv() == {"STATUS": "3 open findings"}
    assert n.stopping()
    assert manager.recv() == {"STOPPING": "1"}


def test_reloading_sends_monotonic_usec(manager: Manager) -> None:
    n = Notifier(manager.env)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    msg = manager.recv()
    assert msg["RELOADING"] == "1"
    assert before <= int(msg["MONOTONIC_USEC"]) <= after
    assert set(msg) == {"RELOADING", "MONOTONIC_USEC"}


def test_multiline_status_is_flattened(manager: Manager) -> None:
    n = Notifier(manager.env)
    assert n.status("line one\nline two\r\nREADY=1\x00three")
    assert manager.recv() == {"STATUS": "line one line two READY=1 three"}
    assert n.ready("a\nb")
    assert manager.recv() == {"READY": "1", "STATUS": "a b"}


def test_notify_and_send(manager: Manager) -> None:
    n = Notifier(manager.env)
    assert n.notify(STATUS="x", ERRNO=2)
    assert manager.recv() == {"STATUS": "x", "ERRNO": "2"}
    assert n.send("EXTEND_TIMEOUT_USEC=1000000\n")
    assert manager.recv() == {"EXTEND_TIMEOUT_USEC": "1000000"}


def test_socket_is_close_on_exec_and_reopened_after_close(manager: Manager) -> None:
    n = Notifier(manager.env)
    assert n.watchdog()
    manager.recv()
    assert n._sock is not None
    assert not n._sock.get_inheritable()
    n.close()
    assert n._sock is None
    assert n.watchdog()
    assert manager.recv() == {"WATCHDOG": "1"}
    n.close()


def test_watchdog_interval_is_a_quarter_of_the_timeout() -> None:
    n = Notifier({"WATCHDOG_USEC": "2000000"})
    assert n.watchdog_interval() == 0.5
    n = Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval() == 0.5


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": ""},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "30s"},
        {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)},
        {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "self"},
    ],
)
def test_no_watchdog_for_us(env: dict[str, str]) -> None:
    assert Notifier(env).watchdog_interval() is None


def test_without_notify_socket_everything_is_a_noop() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not n.ready("x")
    assert not n.status("x")
    assert not n.watchdog()
    assert not n.stopping()
    assert not n.reloading()
    assert not n.notify(STATUS="x")
    assert not n.send("READY=1\n")
    assert n.last_error is None
    assert n._sock is None, "no socket is opened outside systemd"


def test_default_environ_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.watchdog_interval() == 1.0


def test_env_is_left_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    Notifier().ready()
    assert os.environ["NOTIFY_SOCKET"] == str(tmp_path / "notify")


def test_missing_socket_path_does_not_raise(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "absent")})
    assert n.enabled
    assert n.ready("x") is False
    assert n.watchdog() is False
    assert n.last_error is not None
    assert os.strerror(errno.ENOENT) in n.last_error


def test_refused_abstract_socket_does_not_raise() -> None:
    n = Notifier({"NOTIFY_SOCKET": f"@cocoond-test-{uuid.uuid4().hex}"})
    assert n.watchdog() is False
    assert n.last_error is not None
    assert os.strerror(errno.ECONNREFUSED) in n.last_error


def test_not_a_socket_does_not_raise(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("")
    n = Notifier({"NOTIFY_SOCKET": str(regular)})
    assert n.stopping() is False
    assert n.last_error is not None


def test_last_error_survives_a_later_success(manager: Manager, tmp_path: Path) -> None:
    n = Notifier(manager.env)
    n._address = os.fsencode(tmp_path / "gone")
    assert not n.watchdog()
    first = n.last_error
    assert first is not None
    n._address = Notifier(manager.env)._address
    assert n.watchdog()
    assert manager.recv() == {"WATCHDOG": "1"}
    assert n.last_error == first


@pytest.mark.parametrize(
    "value",
    ["vsock:2:1234", "relative/notify", "@", "/" + "x" * 200],
)
def test_unsupported_address_disables(value: str) -> None:
    n = Notifier({"NOTIFY_SOCKET": value})
    assert not n.enabled
    assert n.last_error is not None
    assert not n.ready()
    assert n._sock is None
