"""Run time of this checkout against another one (an earlier commit's worktree), on the same scenarios in
the same session, each on its own compiled build (xmc/accel.py), best of N runs per scenario, the two
checkouts taking turns so that a noisy machine slows both alike; or, with --instructions, the instructions
each checkout executes per run under valgrind's callgrind (the same on a fast or a slow machine: what tells
a change of the code from a change of the machine). Build both first (`.venv/bin/python -m xmc.accel build`
in each). Run:
.venv/bin/python benchmarks/compare.py OTHER_CHECKOUT [--repeat N] [--pure] [--instructions] [SCENARIO.toml ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["cu_hg_spread", "f84_partial_leaves_one_lot_short", "f31_failover_both_nodes_crash_in_turn"]

CHILD = """
import json, os, sys, time
root = sys.argv[1]
sys.path.insert(0, root)
from xmc import accel
compiled = accel.enable() if not os.environ.get("XMC_PURE") else None
from simulator import runner, scenario
import dataclasses
runner.run(dataclasses.replace(scenario.load(sys.argv[2]), duration=5.0), 1)  # imports, dictionaries: once
times = {}
for path in sys.argv[2:]:
    sc = scenario.load(path)
    for _ in range(int(os.environ.get("XMC_RUNS", "1"))):  # --instructions: k more runs, less one run
        t = time.perf_counter()
        result = runner.run(sc, 1)
        times[path] = [time.perf_counter() - t, result.report["run_hash"]]
print(json.dumps({"compiled": bool(compiled), "times": times}))
"""


def _child_env(pure: bool, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XMC_PURE"}  # the caller's XMC_PURE would hide the builds
    if pure:
        env["XMC_PURE"] = "1"
    return {**env, **extra}


def measure(checkout: Path, files: list[str], pure: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkout), *files],
        capture_output=True,
        text=True,
        check=True,
        env=_child_env(pure),
    )
    return json.loads(out.stdout.splitlines()[-1])


def instructions(checkout: Path, files: list[str], pure: bool, runs: int) -> tuple[float, dict]:
    """Instructions of one pass over `files` (callgrind's count for 1 + runs passes, less 1 pass, over runs:
    start-up and imports cancel out) and the child's answer (compiled or not, each file's run_hash)."""
    counts = []
    for n in (1, 1 + runs):
        env = _child_env(pure, XMC_RUNS=str(n), PYTHONHASHSEED="0")  # hash seeds move dict probing, the count
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", CHILD]
        out = subprocess.run([*cmd, str(checkout), *files], capture_output=True, text=True, env=env)
        found = re.search(r"Collected : (\d+)", out.stderr)
        if out.returncode != 0 or found is None:
            raise RuntimeError(f"{checkout}: the child under callgrind failed: {out.stderr.strip()[-400:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / runs, json.loads(out.stdout.splitlines()[-1])


def compare_instructions(other: Path, files: list[str], pure: bool, runs: int) -> int:
    if shutil.which("valgrind") is None:
        print("compare.py: --instructions needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    got = {}
    for name, checkout in (("other", other), ("this", ROOT)):
        try:
            got[name] = instructions(checkout, files, pure, runs)
        except RuntimeError as err:
            print(f"compare.py: {err}", file=sys.stderr)
            return 2
        if not pure and not got[name][1]["compiled"]:
            print(f"compare.py: {checkout}: no compiled build matches its sources; build it first", file=sys.stderr)
            return 2
    (a, other_child), (b, this_child) = got["other"], got["this"]
    same = all(other_child["times"][f][1] == this_child["times"][f][1] for f in files)
    print(f"{'instructions per pass over':<46} {'other M':>9} {'this M':>9} {'this/other':>10}")
    print(f"{', '.join(Path(f).stem for f in files)[:46]:<46} {a / 1e6:>9.1f} {b / 1e6:>9.1f} {b / a:>10.3f}")
    print(f"same run_hash in both: {'yes' if same else 'no'}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", help="the other checkout (e.g. a `git worktree add` of an earlier commit)")
    ap.add_argument("scenarios", nargs="*", help="scenario files (default: three library scenarios)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per checkout (3), or passes counted (1: counts barely vary)",
    )
    ap.add_argument("--pure", action="store_true", help="compare the Python modules instead of the builds")
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind's callgrind instead of timing (--repeat: passes counted)",
    )
    args = ap.parse_intermixed_args()
    other = Path(args.other).resolve()
    if not (other / "simulator").is_dir():
        print(f"compare.py: {args.other}: not an xmc checkout (no simulator/ in it)", file=sys.stderr)
        return 2
    files = args.scenarios or [str(ROOT / "scenarios" / f"{n}.toml") for n in DEFAULT]
    if args.repeat is None:
        args.repeat = 1 if args.instructions else 3
    if args.repeat < 1:
        print(f"compare.py: --repeat {args.repeat}: must be at least 1", file=sys.stderr)
        return 2
    if args.instructions:
        return compare_instructions(other, files, args.pure, args.repeat)
    best: dict[str, dict[str, float]] = {"this": {}, "other": {}}
    for _ in range(args.repeat):
        for name, checkout in (("other", other), ("this", ROOT)):
            got = measure(checkout, files, args.pure)
            if not args.pure and not got["compiled"]:
                print(f"compare.py: {checkout}: no compiled build matches its sources; build it first", file=sys.stderr)
                return 2
            for f, (seconds, _hash) in got["times"].items():
                best[name][f] = min(best[name].get(f, float("inf")), seconds)
    print(f"{'scenario':<46} {'other s':>8} {'this s':>8} {'this/other':>10}")
    for f in files:
        a, b = best["other"][f], best["this"][f]
        print(f"{Path(f).stem:<46} {a:>8.3f} {b:>8.3f} {b / a:>10.2f}")
    a, b = sum(best["other"].values()), sum(best["this"].values())
    print(f"{'total':<46} {a:>8.3f} {b:>8.3f} {b / a:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
