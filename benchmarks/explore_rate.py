"""Explore throughput: schedules run per minute on local processes (1 and 2) and on a local Ray
cluster with 1 and 2 workers, the same search (seed, runs) in each, beside the serial in-process
rate measured in the same run (the floor: no process or task overhead). Each mode's run hashes are
compared with the serial search's: a distributed run must give the local results.
Run: .venv/bin/python benchmarks/explore_rate.py [--runs N] [--duration S]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import explore  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=48, help="schedules per mode (default 48)")
    ap.add_argument("--duration", type=float, default=60.0, help="virtual seconds per run (default 60)")
    args = ap.parse_args()
    bases = [
        explore.load_base(ROOT / "scenarios" / "cu_hg_spread.toml", args.duration),
        explore.load_base(ROOT / "scenarios" / "f25_failover_primary_crash_mid_chase.toml", args.duration),
    ]
    print(f"{'mode':<34} {'runs':>5} {'seconds':>8} {'runs/min':>9}  same results")
    reference = None
    modes = [
        ("floor: serial, in this process", lambda: explore.serial_mapper()),
        ("local processes x1", lambda: explore.ProcessMapper(1)),
        ("local processes x2", lambda: explore.ProcessMapper(2)),
    ]
    try:
        import ray  # noqa: F401

        modes += [
            ("ray, local cluster, 1 worker", lambda: explore.RayMapper(None, 1)),
            ("ray, local cluster, 2 workers", lambda: explore.RayMapper(None, 2)),
        ]
    except ImportError:
        print("(ray not installed: pip install -e '.[ray]' to measure it)")
    for name, make in modes:
        mapper = make()
        try:
            started = time.perf_counter()
            state = explore.search(bases, mapper, seed=11, max_runs=args.runs)
            seconds = time.perf_counter() - started
        finally:
            if hasattr(mapper, "close"):
                mapper.close()
        reference = reference or state.run_hashes
        print(
            f"{name:<34} {state.runs:>5} {seconds:>8.1f} {state.runs / seconds * 60:>9.1f}  "
            f"{'yes' if state.run_hashes == reference else 'NO'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
