"""scripts/install into a temporary DESTDIR, offline from a wheel directory
(in a network namespace of its own where the machine allows one), then the
staged tree moved to where PREFIX says it runs, and run from there. And
scripts/uninstall, which leaves the config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

from cocoond import __version__

REPO = Path(__file__).resolve().parents[1]
INSTALL, UNINSTALL = REPO / "scripts" / "install", REPO / "scripts" / "uninstall"
LOCK = REPO / "requirements.lock"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) from requirements.lock."""
    text = LOCK.read_text().replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            spec, *hashes = line.split()
            name, _, version = spec.partition("==")
            pins[name.lower().replace("_", "-")] = (
                version,
                [h.removeprefix("--hash=sha256:") for h in hashes],
            )
    return pins


def test_lock_pins_every_dependency_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = locked()
    for requirement in [*project["project"]["dependencies"], *project["build-system"]["requires"]]:
        req = Requirement(requirement)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{requirement} is not in requirements.lock: run scripts/lock-requirements"
        version, hashes = pins[name]
        assert req.specifier.contains(version), f"{name}=={version} does not satisfy {requirement}"
    for name, (version, hashes) in pins.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.]*", version), name
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


# ------------------------------------------------------------------ install
@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What an operator brings to an offline host: the locked wheels."""
    out = tmp_path_factory.mktemp("wheels")
    download = [sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "--quiet"]
    done = subprocess.run(
        [*download, "--require-hashes", "--no-deps", "--only-binary=:all:", "-r", str(LOCK), "-d", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"pip download failed in CI:\n{done.stderr}")
        pytest.skip(f"cannot download the locked wheels (no index reachable?): {done.stderr[-300:]}")
    return out


def offline() -> list[str]:
    """A command prefix with no network at all, where unshare(1) can make one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@dataclass
class Layout:
    dest: Path  # DESTDIR
    final: Path  # where the prefix, bindir and mandir live once the package is "installed"

    @property
    def prefix(self) -> Path:
        return self.final / "opt" / "cocoond"

    def staged(self, path: Path) -> Path:
        return Path(f"{self.dest}{path}")

    def args(self) -> list[str]:
        return [
            "--prefix",
            str(self.prefix),
            "--bindir",
            str(self.final / "bin"),
            "--mandir",
            str(self.final / "man"),
        ]


def install(layout: Layout, wheels: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # No pip configuration of this machine (indexes, find-links): only the wheel dir.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"DESTDIR": str(layout.dest), "PIP_CONFIG_FILE": os.devnull}
    # A mandb that records being run: a DESTDIR build must not index the
    # staged pages (the package's man-db trigger does, on the host).
    fakebin = layout.dest.parent / "fakebin"
    fakebin.mkdir(exist_ok=True)
    (fakebin / "mandb").write_text(f'#!/bin/sh\necho "$@" >>{layout.dest.parent / "mandb.log"}\n')
    (fakebin / "mandb").chmod(0o755)
    env["PATH"] = f"{fakebin}:{env.get('PATH', '')}"
    done = subprocess.run(
        [
            *offline(),
            "bash",
            str(INSTALL),
            *layout.args(),
            "--wheels",
            str(wheels),
            "--python",
            sys.executable,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Layout:
    """Installed into DESTDIR, then the prefix tree moved to its final place
    and DESTDIR's copy gone, so nothing can still lean on the staging path."""
    base = tmp_path_factory.mktemp("install")
    layout = Layout(dest=base / "pkg", final=base / "root")
    install(layout, wheels)
    staged_files = [p for p in layout.dest.rglob("*") if p.is_file() and not p.is_symlink()]
    leaks = [str(p) for p in staged_files if str(layout.dest).encode() in p.read_bytes()]
    assert leaks == [], "files that name the staging directory"
    layout.staged(layout.final).rename(layout.final)
    return layout


def test_layout(installed: Layout) -> None:
    prefix, dest = installed.prefix, installed.dest
    assert (prefix / "pyvenv.cfg").is_file()
    link = installed.final / "bin" / "cocoond"
    assert link.is_symlink() and os.readlink(link) == str(prefix / "bin" / "cocoond")
    assert (dest / "etc" / "cocoond" / "config.toml").read_text() == (
        REPO / "config.example.toml"
    ).read_text()
    assert (prefix / "share" / "cocoond" / "config.example.toml").is_file()
    unit = (dest / "etc" / "systemd" / "system" / "cocoond.service").read_text()
    assert f"ExecStart={prefix}/bin/cocoond run --config /etc/cocoond/config.toml\n" in unit
    assert f"ExecReload={prefix}/bin/cocoond config check --config /etc/cocoond/config.toml\n" in unit
    assert "/opt/cocoond/bin" not in unit.replace(str(prefix), "")
    for path in (prefix / "bin" / "cocoond", installed.final / "man" / "man8" / "cocoond.8"):
        assert path.stat().st_mode & 0o755 == (0o755 if path.name == "cocoond" else 0o644)
    # Exactly the locked versions, nothing unpinned slipped in.
    done = subprocess.run(
        [str(prefix / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    )
    got = {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1] for line in done.stdout.split()}
    for name, (version, _) in locked().items():
        assert got.get(name) == version, name
    assert got["cocoond"] == __version__


def test_man_page_is_indexed_for_whatis(installed: Layout, tmp_path: Path) -> None:
    """Without DESTDIR, scripts/install runs `mandb -q MANDIR`; with one (a
    package build, as here) it must not. The command it runs makes
    `whatis cocoond` find the page."""
    assert not (installed.dest.parent / "mandb.log").exists(), "mandb ran for a DESTDIR build"
    assert 'mandb -q "$mandir"' in INSTALL.read_text()
    mandb, whatis = shutil.which("mandb"), shutil.which("whatis")
    if mandb is None or whatis is None:
        pytest.skip("man-db not installed")
    mandir = tmp_path / "man"
    shutil.copytree(installed.final / "man", mandir)
    subprocess.run([mandb, "-q", str(mandir)], check=True, timeout=120)
    done = subprocess.run([whatis, "-M", str(mandir), "cocoond"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("cocoond (8)"), done


def test_runs_at_its_final_place(installed: Layout, sim: ModuleType, tmp_path: Path) -> None:
    cocoond = str(installed.final / "bin" / "cocoond")
    done = subprocess.run([cocoond, "--version"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"cocoond {__version__}\n"), done.stderr
    tree = tmp_path / "cocoon"
    sim.init(str(tree))
    fault = sim.inject(str(tree), "orphan-dir")
    done = subprocess.run(
        [cocoond, "check", "--root", str(tree), "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert fault["subject"] in done.stdout
    # Tracebacks and __file__ name the final place, not the staging one.
    where = subprocess.run(
        [
            str(installed.prefix / "bin" / "python"),
            "-c",
            "import cocoond; print(cocoond.__file__, cocoond.__spec__.cached)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # not the checkout, whose cocoond/ would be imported instead
    ).stdout
    assert where.startswith(str(installed.prefix)), where


def test_installed_man_page_renders(installed: Layout) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff not installed")
    page = installed.final / "man" / "man8" / "cocoond.8"
    done = subprocess.run([groff, "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")


def test_installed_unit_verifies(installed: Layout, tmp_path: Path) -> None:
    """The unit as installed names the venv's cocoond, which now exists."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not os.access("/bin/kill", os.X_OK):
        pytest.skip("systemd-analyze or /bin/kill missing (.ci/verify-unit.sh installs them)")
    unit = tmp_path / "cocoond.service"
    shutil.copy(installed.dest / "etc" / "systemd" / "system" / "cocoond.service", unit)
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    assert done.returncode == 0 and (done.stdout + done.stderr).strip() == "", done.stdout + done.stderr


def test_reinstall_keeps_the_config_and_uninstall_leaves_it(wheels: Path, tmp_path: Path) -> None:
    layout = Layout(dest=tmp_path / "pkg", final=tmp_path / "root")
    install(layout, wheels)
    config = layout.dest / "etc" / "cocoond" / "config.toml"
    config.write_text('root_dir = "/srv/cocoon"\n')
    again = install(layout, wheels)  # an upgrade: same command
    assert "kept the existing" in again.stderr
    assert config.read_text() == 'root_dir = "/srv/cocoon"\n'
    staged_prefix = layout.staged(layout.prefix)
    assert sorted(p.name for p in staged_prefix.parent.iterdir()) == [
        "cocoond"
    ]  # no .old or .installing left
    version = subprocess.run(
        [str(staged_prefix / "bin" / "python"), "-m", "cocoond", "--version"], capture_output=True, text=True
    )
    assert version.stdout == f"cocoond {__version__}\n", version.stderr

    env = {**os.environ, "DESTDIR": str(layout.dest)}
    args = ["bash", str(UNINSTALL), *layout.args()]
    for _ in range(2):  # a second run finds nothing to do
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
    left = sorted(str(p.relative_to(layout.dest)) for p in layout.dest.rglob("*") if not p.is_dir())
    assert left == ["etc/cocoond/config.toml"]


def test_install_refuses_what_it_did_not_make(wheels: Path, tmp_path: Path) -> None:
    layout = Layout(dest=tmp_path / "pkg", final=tmp_path / "root")
    layout.staged(layout.prefix).mkdir(parents=True)
    (layout.staged(layout.prefix) / "precious").write_text("x")
    env = {**os.environ, "DESTDIR": str(layout.dest)}
    done = subprocess.run(
        ["bash", str(INSTALL), *layout.args(), "--wheels", str(wheels), "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 1 and "not a venv this script made" in done.stderr
    assert (layout.staged(layout.prefix) / "precious").read_text() == "x"
    bad = subprocess.run(
        ["bash", str(INSTALL), "--prefix", "relative"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 1 and "not an absolute directory" in bad.stderr
    usage = subprocess.run(["bash", str(INSTALL), "--bogus"], capture_output=True, text=True, env=env)
    assert usage.returncode == 64 and "--prefix DIR" in usage.stderr


def test_uninstall_removes_the_metrics_file_the_config_names(tmp_path: Path) -> None:
    """Issue 18 point 6: a cocoond.prom left behind keeps node_exporter
    exporting the last values (and alerts firing) on a host without cocoond."""
    from cocoond.daemon.metrics import Readings, render

    dest = tmp_path / "pkg"
    (dest / "etc" / "cocoond").mkdir(parents=True)
    prom = dest / "srv" / "textfiles" / "cocoond.prom"
    prom.parent.mkdir(parents=True)
    (dest / "etc" / "cocoond" / "config.toml").write_text(
        '[metrics]\ntextfile = "/srv/textfiles/cocoond.prom"\n'
    )
    prom.write_bytes(render(Readings([], 0, 0, 0, None, None, 0.0, 0.0)))
    other = prom.parent / "node.prom"
    other.write_text("node_x 1\n")
    env = {**os.environ, "DESTDIR": str(dest)}
    done = subprocess.run(["bash", str(UNINSTALL)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert not prom.exists() and f"removed {prom}" in done.stderr
    assert other.exists()
    # Not cocoond's: left, and said.
    prom.write_text("node_x 1\n")
    done = subprocess.run(["bash", str(UNINSTALL)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and prom.exists() and "does not hold cocoond's metrics" in done.stderr
