"""The simulator is an independent model: it imports nothing of cocoond's
outside cocoond/sim/ (standard library only), and the daemon, check and
the CLI never import it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cocoond

SIM_DIR = Path(cocoond.__file__).parent / "sim"


def test_the_simulator_imports_only_the_standard_library_and_itself() -> None:
    stdlib = sys.stdlib_module_names
    for path in sorted(SIM_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0 and node.module, f"{path.name}: relative import"
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = (
                    name == "cocoond.sim"
                    or name.startswith("cocoond.sim.")
                    or (top in stdlib and top != "cocoond")
                )
                assert ok, f"{path.name} imports {name}"


def test_cocoond_never_loads_the_simulator() -> None:
    code = (
        "import sys, cocoond.cli.main, cocoond.daemon.loop, cocoond.cli.check\n"
        "print(sorted(m for m in sys.modules if m == 'cocoond.sim' or m.startswith('cocoond.sim.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for path in (Path(cocoond.__file__).parent).rglob("*.py"):
        if SIM_DIR not in path.parents:
            assert (
                "cocoond.sim" not in path.read_text() and "from cocoond import sim" not in path.read_text()
            ), path
