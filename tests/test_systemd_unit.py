"""systemd/cocoond.service: the directives the daemon and the alert rules rely
on are there, and systemd itself (when installed) finds nothing to warn about."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "cocoond.service"
VERIFY_SCRIPT = REPO / ".ci" / "verify-unit.sh"
INSTALLED_EXEC = "/opt/cocoond/bin/cocoond"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """systemd's own syntax, not INI: keys repeat (SystemCallFilter=), a
    trailing backslash continues a line, '#' and ';' start comments."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}= set {len(values)} times: {values}"
    return values[0]


def test_parser_handles_repeats_and_continuations() -> None:
    parsed = parse_unit("# c\n[S]\nA=1\n; c\nA=2\nB=x \\\n  y\n")
    assert parsed == {"S": {"A": ["1", "2"], "B": ["x  y"]}}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStart", f"{INSTALLED_EXEC} run --config /etc/cocoond/config.toml"),
        ("Restart", "on-failure"),
        ("RestartSec", "5"),
        ("RestartPreventExitStatus", "78 64"),
        ("StateDirectory", "cocoond"),
        ("StateDirectoryMode", "0700"),
        ("TimeoutStopSec", "10"),
        ("Environment", "PYTHONUNBUFFERED=1"),
        ("User", "root"),
        ("CapabilityBoundingSet", "CAP_DAC_READ_SEARCH"),
        ("NoNewPrivileges", "yes"),
        ("UMask", "0077"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("PrivateNetwork", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
    ],
)
def test_service_directive(unit: Unit, key: str, value: str) -> None:
    assert one(unit, "Service", key) == value


def test_watchdog_is_set(unit: Unit) -> None:
    """The daemon pings every WatchdogSec/2; it must be a plain positive number
    of seconds so the interval the daemon computes matches what systemd enforces."""
    value = one(unit, "Service", "WatchdogSec")
    assert value.isdigit()
    assert int(value) > 0


def test_syscall_filter(unit: Unit) -> None:
    filters = unit["Service"]["SystemCallFilter"]
    assert "@system-service" in filters
    denied = {word for f in filters if f.startswith("~") for word in f[1:].split()}
    assert {"@privileged", "@resources"} <= denied


def test_install(unit: Unit) -> None:
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def _cocoond_executable() -> Path:
    """The console script beside the running interpreter (the venv's); verify
    only checks that ExecStart= names an executable, so the interpreter itself
    stands in when the script is not there."""
    candidate = Path(sys.executable).parent / "cocoond"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    return Path(sys.executable)


def _unit_copy(tmp_path: Path) -> Path:
    """The unit with its commands pointed at this checkout's cocoond, which
    systemd-analyze requires to exist."""
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(f"ExecStart={INSTALLED_EXEC} ") == 1
    for key in ("ExecStart", "ExecReload"):
        text = text.replace(f"{key}={INSTALLED_EXEC} ", f"{key}={_cocoond_executable()} ")
    copy = tmp_path / "cocoond.service"
    copy.write_text(text)
    return copy


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (.ci/verify-unit.sh installs it in CI)",
)


@needs_systemd_analyze
def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    """verify exits 0 on unknown keys and bad values, so its output is what counts."""
    copy = _unit_copy(tmp_path)
    if not os.access("/bin/kill", os.X_OK):
        pytest.skip("/bin/kill (ExecReload=) is missing; .ci/verify-unit.sh installs procps")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, output
    assert output == ""


@needs_systemd_analyze
def test_verify_unit_script() -> None:
    done = subprocess.run(
        ["bash", str(VERIFY_SCRIPT), str(_cocoond_executable())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "SKIP:" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    assert "verify-unit: OK:" in done.stderr


@needs_systemd_analyze
def test_security_exposure_stays_ok(tmp_path: Path) -> None:
    """`systemd-analyze security` rated the unit 1.1 ("OK") before it got a
    writable StateDirectory=; it must not get worse (--threshold is the
    exposure times ten)."""
    if (
        "--offline"
        not in subprocess.run(["systemd-analyze", "--help"], capture_output=True, text=True).stdout
    ):
        pytest.skip("systemd-analyze too old for security --offline (systemd < 250)")
    copy = _unit_copy(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=11", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Overall exposure level for cocoond.service:" in done.stdout


# ------------------------------------------------------- issue 19: conventions
def test_documentation_names_the_man_page(unit: Unit) -> None:
    assert one(unit, "Unit", "Documentation") == "man:cocoond(8)"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Nice", "10"),
        ("CPUWeight", "20"),
        ("IOWeight", "20"),
        ("IOSchedulingClass", "best-effort"),
        ("IOSchedulingPriority", "7"),
    ],
)
def test_yields_to_the_vms(unit: Unit, key: str, value: str) -> None:
    """Lower CPU and I/O priority than the VMs, but not the idle I/O class,
    which a busy disk can starve past WatchdogSec= (systemd/README.md)."""
    assert one(unit, "Service", key) == value


NOTIFY_RELOAD = 253


def _systemd_version() -> int:
    done = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True, timeout=60)
    return int(done.stdout.split()[1])


def _drop_in() -> str:
    """The notify-reload drop-in systemd/README.md gives, as written there."""
    text = (REPO / "systemd" / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```ini\n")[1:]]
    (block,) = [b for b in blocks if "Type=notify-reload" in b]
    return "\n".join(line.strip() for line in block.splitlines()) + "\n"


@needs_systemd_analyze
def test_notify_reload_drop_in_is_valid_where_systemd_has_it(tmp_path: Path) -> None:
    """The unit stays Type=notify because notify-reload needs systemd 253:
    an older systemd-analyze refuses the drop-in's type (the reason the
    README gives), a newer one takes the unit with it without a word."""
    if not os.access("/bin/kill", os.X_OK):
        pytest.skip("/bin/kill (ExecReload=) is missing; .ci/verify-unit.sh installs procps")
    copy = _unit_copy(tmp_path)
    copy.write_text(copy.read_text() + "\n" + _drop_in())
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    output = (done.stdout + done.stderr).strip()
    if _systemd_version() >= NOTIFY_RELOAD:
        assert output == "", output
    else:
        assert "Failed to parse service type" in output and "notify-reload" in output, output


def test_the_textfile_directory_is_made_before_the_sandbox(unit: Unit) -> None:
    """Issue 18 point 6: ReadWritePaths=-DIR is applied when the daemon
    starts; a DIR made later stays read-only to it (EROFS). Each such DIR is
    made first by a privileged ("+") ExecStartPre=, so it exists then."""
    writable = [p.lstrip("-") for p in unit["Service"]["ReadWritePaths"]]
    made = unit["Service"].get("ExecStartPre", [])
    for directory in writable:
        assert f"+/bin/mkdir -p -m 0755 {directory}" in made, (directory, made)


def test_proc_locks_stays_visible(unit: Unit) -> None:
    """/proc/locks shows a cocoon command in flight (inflight.py); ProcSubset=pid would hide it."""
    assert "ProcSubset" not in unit["Service"]
    assert one(unit, "Service", "ProtectProc") == "invisible"
