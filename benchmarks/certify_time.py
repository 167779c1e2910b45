"""Certification time: the whole bundled library x N seeds on -j processes (wall clock), with the CPU
each scenario costs per run and the one-off start-up of a worker (imports, dictionaries), beside the
floor measured in the same run: the same runs' summed CPU divided by the workers (perfect packing,
no start-up). Run: .venv/bin/python benchmarks/certify_time.py [--seeds N] [-j N]

Target (issue 15): library x 5 seeds in < 30 s wall on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args()
    startup = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; t=time.perf_counter(); "
            "from simulator import runner, scenario; "
            "scenario.load('scenarios/cu_hg_spread.toml'); print(time.perf_counter()-t)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    import json
    import tempfile

    from xmc.cli import main as xmc

    with tempfile.TemporaryDirectory() as d:
        started = time.perf_counter()
        code = xmc(["certify", "--seeds", str(args.seeds), "-j", str(args.jobs), "--out", d])
        wall = time.perf_counter() - started
        runs = json.loads((Path(d) / "report.json").read_text())["runs"]
    per = defaultdict(list)
    for r in runs:
        per[r["scenario"]].append(r["wall"]["run_s"])
    cpu = sum(sum(v) for v in per.values())
    print(f"\n{'scenario':<46} {'runs':>5} {'s per run':>10}")
    for name, times in sorted(per.items(), key=lambda kv: -sum(kv[1]) / len(kv[1]))[:15]:
        print(f"{name:<46} {len(times):>5} {sum(times) / len(times):>10.2f}")
    print(f"... {len(per)} scenarios; worker start-up (imports, first scenario load): {float(startup.stdout):.2f} s")
    print(
        f"library x {args.seeds} seeds on {args.jobs} processes: {len(runs)} runs, wall {wall:.1f} s; "
        f"floor (summed run time / {args.jobs}): {cpu / args.jobs:.1f} s; target < 30 s; exit {code}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
