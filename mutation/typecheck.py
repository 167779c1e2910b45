"""The type check of a mutation run (pyproject [tool.mutmut] type_check_command): strict mypy over the
mutated core, reporting only the errors a mutant itself introduced. mutmut's trampolines change the
signatures of the classes they wrap (so EngineCore no longer matches the RecoveryContext protocol in
mypy's eyes); such errors appear in the unmutated copy of a function (`__mutmut_orig`) as well, and
an error a mutant shares with it, at the same place in the function, is the run's artefact, not the
mutant's. What is left is a mutant that `mypy --strict` in CI would reject. Prints mypy's JSON lines,
as mutmut expects."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path


@cache
def functions(path: str) -> list[tuple[int, int, str]]:
    """(first line, last line, name) of every mutant and original copy in a mutated file."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    return [
        (node.lineno, node.end_lineno or node.lineno, node.name)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name
    ]


def where(error: dict) -> tuple[str, str, int] | None:
    """(base function, copy suffix, line offset inside it) of an error, None outside every copy."""
    for start, end, name in functions(error["file"]):
        if start <= error["line"] <= end:
            base, _, suffix = name.rpartition("__mutmut_")
            return f"{error['file']}:{base}", suffix, error["line"] - start
    return None


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "mypy"]
    out = subprocess.run([sys.executable, "-m", "mypy", *args], capture_output=True, text=True, check=False).stdout
    errors = [json.loads(line) for line in out.splitlines() if line.strip()]
    original: dict[str, set[tuple[int, str]]] = defaultdict(set)
    located = []
    for error in errors:
        at = where(error)
        if at is None:
            continue
        base, suffix, offset = at
        if suffix == "orig":
            original[base].add((offset, error["message"]))
        else:
            located.append((base, offset, error))
    for base, offset, error in located:
        if (offset, error["message"]) not in original[base]:
            print(json.dumps(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
