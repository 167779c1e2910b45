"""Journal append cost (wall clock) per event, fsync off (durability "none") and on ("record"),
beside the cost of serialising the same event alone (the floor), measured in the same run, under
Python's automatic collector and under the live engine's own (engine/shell/quiet_gc.py: automatic
collection off, young collections between events, as `xmc live` runs; the target is for this one).
Run: .venv/bin/python benchmarks/journal.py [--n N]

Target (issue 15): append p99 under 20 us with fsync off; a stated figure with fsync on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.events import ExecReport  # noqa: E402
from engine.shell.journal import Journal, encode  # noqa: E402
from engine.shell.quiet_gc import QuietGc  # noqa: E402
from simulator import scenario  # noqa: E402
from simulator.runner import percentile  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="appends with fsync off (a tenth of it with fsync on)")
    args = ap.parse_args()
    cfg = scenario.load(ROOT / "scenarios" / "cu_hg_spread.toml").engine
    event = ExecReport("COMEX", "E1-000042B1", "", "CMO77", "CMX1234", "F", "2", "HG", "1", 2, 2, 0, 2, 4.5005, 4.5005)
    print(f"{'measure':<44} {'n':>7} {'p50 us':>8} {'p99 us':>8}")
    floor = []
    for _ in range(args.n):
        t0 = time.perf_counter_ns()
        encode(event, 1.0)
        floor.append((time.perf_counter_ns() - t0) / 1e3)
    print(f"{'floor: serialise the event':<44} {args.n:>7} {percentile(floor, 50):>8.1f} {percentile(floor, 99):>8.1f}")
    off_p99 = 0.0
    for durability, n, collector in (
        ("none", args.n, "automatic"),
        ("none", args.n, "live engine's"),
        ("record", max(args.n // 10, 100), "live engine's"),
    ):
        quiet = QuietGc() if collector != "automatic" else None
        with tempfile.TemporaryDirectory() as d:
            j = Journal(Path(d) / "bench.journal", cfg, durability=durability)
            spent = []
            if quiet is not None:
                quiet.install()
            try:
                for i in range(n):
                    t0 = time.perf_counter_ns()
                    j.append(event, float(i))
                    spent.append((time.perf_counter_ns() - t0) / 1e3)
                    if quiet is not None:  # the engine thread: busy() after each event, idle() when the queue is empty
                        quiet.busy()
                        if i % 16 == 15:
                            quiet.idle()
            finally:
                if quiet is not None:
                    quiet.uninstall()
            j.close()
        label = f"append, fsync {'off' if durability == 'none' else 'every record'}, {collector} GC"
        print(f"{label:<44} {n:>7} {percentile(spent, 50):>8.1f} {percentile(spent, 99):>8.1f}")
        if durability == "none" and quiet is not None:
            off_p99 = percentile(spent, 99)
    print(f"target: append p99 < 20 us with fsync off (the live engine's GC): {'met' if off_p99 < 20 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
