"""The one code path, checked: engine/ never imports the simulator or simpy, and production
(`xmc live`: the CLI, the live node, report building) loads neither."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT


def test_engine_never_imports_the_simulator_or_simpy():
    offenders = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ("simulator", "simpy")
            ]
    assert not offenders, offenders


def test_production_loads_neither_simpy_nor_the_simulator():
    code = (
        "import sys, xmc.cli, engine.report, engine.shell.live_node, engine.shell.live_config, engine.shell.lease, engine.shell.node; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('simpy', 'simulator')); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_import_contract_holds():
    """pyproject.toml [tool.importlinter]: the sans-I/O core imports no shell, FIX, clock, socket, thread
    or random module, and engine/ never the simulator (scripts/test runs the same check before pytest)."""
    linter = ROOT / ".venv" / "bin" / "lint-imports"
    exe = str(linter) if linter.exists() else "lint-imports"
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "0 broken" in out.stdout, out.stdout + out.stderr


def test_the_core_type_checks_strictly():
    """pyproject.toml [tool.mypy] strict over engine.core (scripts/test runs the same check before pytest)."""
    mypy = ROOT / ".venv" / "bin" / "mypy"
    exe = str(mypy) if mypy.exists() else "mypy"
    out = subprocess.run(
        [exe, "-p", "engine.core", "--no-incremental"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
