"""Engine compute per recovery decision (wall clock), on the core alone: a legged episode is built by
a fill and a reject, and the time of the call that decides and emits the chase or unwind is taken.
Printed beside the cost of an ordinary quote event measured in the same run.
Run: .venv/bin/python benchmarks/recovery.py [--n N]

Target (issue 3): p99 under 1 ms per recovery decision.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.engine_core import EngineCore  # noqa: E402
from engine.core.events import ExecReport, Quote, SendOrder, SessionUp  # noqa: E402
from simulator import scenario  # noqa: E402
from simulator.runner import percentile  # noqa: E402


def one(cfg, reason: int) -> tuple[int, int]:
    core = EngineCore(cfg)
    for v in ("SHFE", "COMEX", "FX"):
        core.handle(SessionUp(v), 0.0)
    core.handle(Quote("USDCNY", 7.0999, 1e6, 7.1001, 1e6), 0.0)
    core.handle(Quote("HG", 4.4995, 50, 4.5005, 50), 0.0)
    t0 = time.perf_counter_ns()
    acts = core.handle(Quote("CU", 71080, 50, 71100, 50), 0.0)
    quote_ns = time.perf_counter_ns() - t0
    a, b = [x for x in acts if isinstance(x, SendOrder)]
    core.handle(ExecReport("SHFE", a.cl_ord_id, "", "O1", "X1", "F", "2", "CU", a.side, 5, 5, 0, 5, 71080, 71080), 0.01)
    rej = ExecReport("COMEX", b.cl_ord_id, "", "O2", "X2", "8", "8", "HG", b.side, 2, 0, 0, 0, 0, 0, reason)
    t0 = time.perf_counter_ns()
    out = core.handle(rej, 0.12)
    spent = time.perf_counter_ns() - t0
    assert any(isinstance(x, SendOrder) for x in out), "the reject must lead to a recovery order"
    return spent, quote_ns


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="decisions per reject class")
    args = ap.parse_args()
    sc = scenario.load(ROOT / "scenarios" / "f01_reject_far_leg_retry.toml")
    cfg = dataclasses.replace(sc.engine)
    print(f"{'reject class':<28} {'decisions':>9} {'p50 us':>8} {'p99 us':>8} {'quote p50 us':>13}")
    for label, reason in (("retry (3): chase", 3), ("fix_and_retry (99): chase", 99), ("fatal (1): unwind", 1)):
        runs = [one(cfg, reason) for _ in range(args.n)]
        dec = [r[0] / 1e3 for r in runs]
        quote = [r[1] / 1e3 for r in runs]
        print(
            f"{label:<28} {len(dec):>9} {percentile(dec, 50):>8.1f} {percentile(dec, 99):>8.1f} "
            f"{percentile(quote, 50):>13.1f}"
        )
    print("target: p99 under 1,000 us per recovery decision")
    return 0


if __name__ == "__main__":
    sys.exit(main())
