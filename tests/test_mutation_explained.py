"""The mutation run's explanations (mutation/explained.toml) stay true to the code: each names a line its
function still has, so an explanation can never silently stop matching (its survivor would then count as
unexplained) or outlive the code it explains."""

from __future__ import annotations

import ast
import tomllib

from tests.conftest import ROOT


def _functions() -> dict[str, list[list[str]]]:
    """Function name -> the source lines of every function of that name in the mutated modules."""
    out: dict[str, list[list[str]]] = {}
    for path in [*(ROOT / "engine" / "core").glob("*.py"), *(ROOT / "engine" / "fix").glob("*.py")]:
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.setdefault(node.name, []).append(lines[node.lineno - 1 : node.end_lineno])
    return out


def test_every_explanation_names_a_line_its_function_has():
    functions = _functions()
    rules = tomllib.loads((ROOT / "mutation" / "explained.toml").read_text())["survivor"]
    assert rules
    stale = [
        f"{r['function']}: {r['line_contains']!r}"
        for r in rules
        if not any(r["line_contains"] in line for body in functions.get(r["function"], []) for line in body)
    ]
    assert not stale, f"explanations whose line no function of that name has (update mutation/explained.toml): {stale}"
    assert all(r.get("why", "").strip() for r in rules)
