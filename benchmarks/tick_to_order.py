"""Tick-to-order on the production path (wall clock): a market-data message as quickfix hands it to
the shell (raw FIX string) -> parsed, decoded, EngineCore decides -> both NewOrderSingles built and
serialised by quickfix, ready for Session.sendToTarget. Printed beside the cost of parsing the same
message and building the same two orders alone (the floor), measured in the same run.
Run: .venv/bin/python benchmarks/tick_to_order.py [--n N]

Targets (issue 4): p50 under 100 us, p99 under 500 us.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.engine_core import EngineCore  # noqa: E402
from engine.core.events import Quote, SendOrder, SessionUp  # noqa: E402
from engine.fix.codec import FixCodec, Parsed  # noqa: E402
from engine.fix.dictionary import load  # noqa: E402
from simulator import scenario  # noqa: E402
from simulator.runner import percentile  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="ticks that fire an episode")
    args = ap.parse_args()
    sc = scenario.load(ROOT / "scenarios" / "cu_hg_spread.toml")
    shfe = FixCodec(load("SHFE"), "XMC", "SHFE", {"CU": "cu2603"})
    comex = FixCodec(load("COMEX"), "XMC", "COMEX", {"HG": "HGH6"})
    codecs = {"SHFE": shfe, "COMEX": comex}
    venue_side = FixCodec(load("SHFE"), "SHFE", "XMC", {"CU": "cu2603"})
    tick = venue_side.frame(
        venue_side.message(
            "X",
            [(262, "MD-CU")],
            (
                (
                    268,
                    [
                        [(279, "1"), (269, "0"), (55, "cu2603"), (270, "71080"), (271, "40")],
                        [(279, "1"), (269, "1"), (55, "cu2603"), (270, "71100"), (271, "40")],
                    ],
                ),
            ),
        ),
        7,
        1.8e9,
    )
    full, floor = [], []
    for _ in range(args.n):
        core = EngineCore(sc.engine)
        for v in ("SHFE", "COMEX", "FX"):
            core.handle(SessionUp(v), 0.0)
        core.handle(Quote("USDCNY", 7.0999, 1e6, 7.1001, 1e6), 0.0)
        core.handle(Quote("HG", 4.4995, 50, 4.5005, 50), 0.0)
        shfe._md_top.clear()
        t0 = time.perf_counter_ns()
        events = shfe.decode(Parsed(tick), "SHFE")
        wires = []
        for ev in events:
            for a in core.handle(ev, 0.001):
                if type(a) is SendOrder:
                    wires.append(codecs[a.venue].frame(codecs[a.venue].encode(a, 1.8e9), 1, 1.8e9))
        t1 = time.perf_counter_ns()
        assert len(wires) == 2, "the tick must fire both legs"
        orders = [a for a in core.orders.values()]
        t2 = time.perf_counter_ns()
        Parsed(tick)
        for o in orders:
            action = SendOrder(o.venue, o.cl_ord_id, o.instrument, "x", o.side, o.qty, o.price, "2", "3", "", "")
            codecs[o.venue].frame(codecs[o.venue].encode(action, 1.8e9), 1, 1.8e9)
        t3 = time.perf_counter_ns()
        full.append((t1 - t0) / 1e3)
        floor.append((t3 - t2) / 1e3)
    print(f"{'measure':<52} {'p50 us':>8} {'p99 us':>8}")
    print(
        f"{'tick -> decision -> both orders serialised (xmc)':<52} {percentile(full, 50):>8.1f} "
        f"{percentile(full, 99):>8.1f}"
    )
    print(
        f"{'floor: parse the tick + build both orders':<52} {percentile(floor, 50):>8.1f} {percentile(floor, 99):>8.1f}"
    )
    print(
        f"targets: p50 < 100 us: {'met' if percentile(full, 50) < 100 else 'NOT met'}; "
        f"p99 < 500 us: {'met' if percentile(full, 99) < 500 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
