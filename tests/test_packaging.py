"""What a packager relies on (issue 19): the dependency floors are the ones
.ci/run tests (.ci/floors.txt pins each at its floor), the wheel carries
py.typed and the license, the license is an SPDX expression, and lint and
type tools are a `dev` extra, not part of `test`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
FLOORS = REPO / ".ci" / "floors.txt"
PIP_WHEEL = (sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "-q", "--no-deps")


def _name(text: str) -> str:
    return text.lower().replace("_", "-")


def floor_pins() -> dict[str, Version]:
    pins = {}
    for line in FLOORS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f".ci/floors.txt: not a pin: {line!r}"
            pins[_name(name)] = Version(version)
    return pins


def test_floors_file_pins_every_dependency_at_its_floor() -> None:
    floors = {}
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{text}: one '>=' floor, so .ci/floors.txt can test it"
        floors[_name(req.name)] = Version(lower[0])
    assert floor_pins() == floors


def test_known_bad_versions_are_below_the_floors() -> None:
    """The versions that fail (see pyproject.toml's comments) are refused."""
    deps = {_name(Requirement(t).name): Requirement(t) for t in PYPROJECT["project"]["dependencies"]}
    for name, bad in (("watchdog", "6.0.0"), ("watchdog", "7.0.0"), ("structlog", "24.4.0")):
        assert not deps[name].specifier.contains(bad), (name, bad)


def test_lint_and_type_tools_are_a_dev_extra() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    names = {key: {_name(Requirement(r).name) for r in reqs} for key, reqs in extras.items()}
    assert {"ruff", "mypy"} <= names["dev"]
    assert not {"ruff", "mypy"} & names["test"]
    assert {"pytest", "pytest-timeout", "hypothesis"} <= names["test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "-e '.[test,dev]'" in ci
    # The README's test command is .ci/run's last line, exactly.
    readme = (REPO / "README.md").read_text().splitlines()
    (readme_command,) = [line for line in readme[:12] if line.startswith("python3 -m venv .venv")]
    assert ci.rstrip("\n").splitlines()[-1] == readme_command


def test_license_is_spdx_and_shipped() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    requires = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    setuptools = next(r for r in requires if r.name == "setuptools")
    assert not setuptools.specifier.contains("76.1.0"), "SPDX license strings need setuptools >= 77"


def test_pytest_has_a_per_test_timeout() -> None:
    timeout = PYPROJECT["tool"]["pytest"]["ini_options"]["timeout"]
    assert 0 < int(timeout) <= 300


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from a copy of this checkout (setuptools from
    the index, as an isolated build gets it; a copy, so that the checkout
    gets no build/ or egg-info)."""
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "cocoond", src / "cocoond", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [*PIP_WHEEL, "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"pip wheel failed in CI:\n{done.stderr}")
        pytest.skip(f"cannot build the wheel (no index for setuptools?): {done.stderr[-300:]}")
    (found,) = out.glob("cocoond-*.whl")
    return found


def test_wheel_carries_py_typed_license_and_spdx_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(whl.read(metadata_name).decode())
        assert "cocoond/py.typed" in names
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    dist = {
        _name(Requirement(r).name): Requirement(r)
        for r in metadata.get_all("Requires-Dist") or []
        if "extra ==" not in r
    }
    assert set(dist) == set(floor_pins())
    assert all(dist[name].specifier.contains(str(floor)) for name, floor in floor_pins().items())
