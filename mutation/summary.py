"""Killed and surviving mutants per module of the last mutation run (scripts/mutate): a table on
stdout and mutants/summary.json. Reads `mutmut results --all true` (mutmut 3). A survivor whose
mutated line matches an entry of mutation/explained.toml (function and a piece of the original line)
is counted as explained, with the entry's reason; the others are listed as unexplained."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

# the core's functions by the concern the issue sets a kill target for
CORE_GROUPS = {
    "risk": ("_risk", "recovery_order", "price_from_touch", "reference_price"),
}


def group_of(function: str) -> str:
    """engine.core.recovery.xǁChaseThenUnwindǁ_chase -> engine.core.recovery; the core's by concern."""
    module = ".".join(part for part in function.split(".") if not part.startswith(("x_", "xǁ")))
    if module == "engine.core.engine_core":
        name = function.rsplit("ǁ", 1)[-1]
        for group, names in CORE_GROUPS.items():
            if name in names:
                return f"engine.core.engine_core ({group})"
        return "engine.core.engine_core (other)"
    return module


def explanations() -> list[dict]:
    path = Path(__file__).with_name("explained.toml")
    return tomllib.loads(path.read_text())["survivor"] if path.exists() else []


def mutated_line(mutmut: Path, name: str) -> tuple[str, str]:
    """The original line a mutant changed and what it became (the first '-' and '+' lines of `mutmut show`)."""
    out = subprocess.run([str(mutmut), "show", name], capture_output=True, text=True, check=False).stdout
    lines = out.splitlines()
    old = next((ln[1:].strip() for ln in lines if ln.startswith("-") and not ln.startswith("---")), "")
    new = next((ln[1:].strip() for ln in lines if ln.startswith("+") and not ln.startswith("+++")), "")
    return old, new


def explain(name: str, old: str, new: str, rules: list[dict]) -> str | None:
    function = name.split("__mutmut_")[0].rsplit("ǁ", 1)[-1].rsplit(".", 1)[-1].removeprefix("x_")
    for rule in rules:
        if rule["function"] == function and rule["line_contains"] in old and rule.get("mutant_contains", "") in new:
            return rule["why"]
    return None


def main() -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    out = subprocess.run([str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=False)
    per_module: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in out.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        module = group_of(name.split("__mutmut_", 1)[0])
        per_module[module][status] += 1
        if status == "survived":
            survivors[module].append(name)
    if not per_module:
        print("no mutation results: run scripts/mutate first", file=sys.stderr)
        return 2
    rules = explanations()
    explained: dict[str, dict[str, str]] = defaultdict(dict)
    unexplained: dict[str, list[str]] = defaultdict(list)
    for module, names in survivors.items():
        for name in names:
            old, new = mutated_line(mutmut, name)
            why = explain(name, old, new, rules)
            if why is None:
                unexplained[module].append(f"{name}: {old}  ->  {new}")
            else:
                explained[module][name] = why
    print(
        f"{'module':<30} {'mutants':>8} {'scenario':>8} {'mypy':>5} {'survived':>9} {'explained':>9} {'other':>6} "
        f"{'killed %':>9} {'k+expl %':>9}"
    )
    print(
        "(killed by a scenario of the oracle, or by mypy --strict as CI runs it; other: not in this selection, no "
        "test reaches it, or timed out; explained: mutation/explained.toml; % of the mutants checked)"
    )
    summary = {}
    for module, counts in sorted(per_module.items()):
        total = sum(counts.values())
        by_scenario = counts["killed"] + counts["timeout"]
        by_mypy = counts["caught by type check"]
        killed = by_scenario + by_mypy
        other = total - killed - counts["survived"]
        tested = killed + counts["survived"]
        pct = 100.0 * killed / tested if tested else None
        both = 100.0 * (killed + len(explained[module])) / tested if tested else None
        shown = f"{pct:>8.1f}%" if pct is not None else "  not run"
        shown_both = f"{both:>8.1f}%" if both is not None else "  not run"
        print(
            f"{module:<30} {total:>8} {by_scenario:>8} {by_mypy:>5} {counts['survived']:>9} "
            f"{len(explained[module]):>9} {other:>6} {shown} {shown_both}"
        )
        summary[module] = {
            "counts": dict(counts),
            "killed_pct": None if pct is None else round(pct, 1),
            "killed_or_explained_pct": None if both is None else round(both, 1),
            "explained": explained[module],
            "unexplained": unexplained[module],
        }
    Path("mutants").mkdir(exist_ok=True)
    Path("mutants/summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
