"""Run time of this checkout against another one (an earlier commit's worktree), on the same scenarios in
the same session, each on its own compiled build (xmc/accel.py), best of N runs per scenario, the two
checkouts taking turns so that a noisy machine slows both alike. Build both first
(`.venv/bin/python -m xmc.accel build` in each). Run:
.venv/bin/python benchmarks/compare.py OTHER_CHECKOUT [--repeat N] [--pure] [SCENARIO.toml ...]
"""

from __future__ import annotations

import argparse
import json
import os
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
    t = time.perf_counter()
    result = runner.run(sc, 1)
    times[path] = [time.perf_counter() - t, result.report["run_hash"]]
print(json.dumps({"compiled": bool(compiled), "times": times}))
"""


def measure(checkout: Path, files: list[str], pure: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XMC_PURE"}  # the caller's XMC_PURE would hide the builds
    if pure:
        env["XMC_PURE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkout), *files], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", help="the other checkout (e.g. a `git worktree add` of an earlier commit)")
    ap.add_argument("scenarios", nargs="*", help="scenario files (default: three library scenarios)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pure", action="store_true", help="compare the Python modules instead of the builds")
    args = ap.parse_intermixed_args()
    other = Path(args.other).resolve()
    if not (other / "simulator").is_dir():
        print(f"compare.py: {args.other}: not an xmc checkout (no simulator/ in it)", file=sys.stderr)
        return 2
    files = args.scenarios or [str(ROOT / "scenarios" / f"{n}.toml") for n in DEFAULT]
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
