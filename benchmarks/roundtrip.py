"""Simulated order round trips per wall-clock second in a full scenario, beside a floor measured in the
same run: bare simpy plus the quickfix encode (one setField per field, toString) and parse (with
dictionary validation) of exactly the same wire messages. Run: .venv/bin/python benchmarks/roundtrip.py [--repeat N]

Targets (issue 15): >= 3,000 round trips/s, and >= 75% of the floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import quickfix as fix
import simpy

ROOT = Path(__file__).resolve().parents[1]
HEADER = {8, 9, 35, 34, 49, 52, 56, 43, 97}
sys.path.insert(0, str(ROOT))

from xmc import accel  # noqa: E402

COMPILED = accel.enable()  # as the xmc command runs: mypyc's build of the hot modules when it matches

from engine.fix.dictionary import load  # noqa: E402
from simulator import runner, scenario  # noqa: E402


def full_run(sc) -> tuple[float, runner.RunResult]:
    t0 = time.perf_counter()
    result = runner.run(sc)
    return time.perf_counter() - t0, result


def floor_run(messages: list[str], dictionaries: dict[str, fix.DataDictionary]) -> float:
    """simpy scheduling plus quickfix encode and parse+validate of every message, nothing else."""
    env = simpy.Environment()
    plan = []
    for raw in messages:
        sender = raw.split("\x0149=", 1)[1].split("\x01", 1)[0]
        target = raw.split("\x0156=", 1)[1].split("\x01", 1)[0]
        pairs = [(int(t), v) for t, _, v in (p.partition("=") for p in raw.split("\x01")[:-1])]
        header = [(t, v) for t, v in pairs if t in HEADER]
        body = [(t, v) for t, v in pairs if t not in HEADER and t != 10]
        plan.append((header, body, dictionaries[target if sender == "XMC" else sender]))

    def replay():
        for header, body, dd in plan:
            yield env.timeout(0.0001)
            msg = fix.Message()
            h = msg.getHeader()
            for t, v in header:
                h.setField(t, v)
            for t, v in body:  # group entries go in as flat fields: the floor only counts the calls
                msg.setField(t, v)
            parsed = fix.Message(msg.toString(), dd, False)
            try:
                dd.validate(parsed)
            except Exception:  # flattened groups may not validate; the cost is what is measured
                pass

    env.process(replay())
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is printed")
    args = ap.parse_args()
    sc = scenario.load(ROOT / "benchmarks" / "throughput.toml")
    dictionaries = {v.comp_id: load(v.dictionary).dd for v in sc.venues.values()}
    full, floor, result = [], [], None
    for _ in range(args.repeat):
        wall, result = full_run(sc)
        full.append(wall)
        floor.append(floor_run(result.messages, dictionaries))
    orders = result.report["counters"]["orders_sent"]
    msgs = len(result.messages)
    rt_full = orders / statistics.median(full)
    rt_floor = orders / statistics.median(floor)
    compute = result.report["wall"]["engine_compute_us"]
    print(
        f"scenario: {sc.name}, {sc.duration:.0f} virtual s, {orders} orders, {msgs} FIX messages, "
        f"{len(result.report['episodes'])} episodes"
    )
    print(f"compiled hot modules (xmc/accel.py): {'yes' if COMPILED else 'no, the Python modules'}")
    print(f"{'measure':<44} {'value':>12}")
    print(f"{'full scenario: order round trips / wall s':<44} {rt_full:>12,.0f}")
    print(f"{'floor (simpy + quickfix encode/parse)':<44} {rt_floor:>12,.0f}")
    print(f"{'full / floor':<44} {rt_full / rt_floor:>11.0%}")
    print(f"{'full scenario: FIX messages / wall s':<44} {msgs / statistics.median(full):>12,.0f}")
    print(f"{'engine core per event p50 (us, wall)':<44} {compute['p50']:>12.1f}")
    print(f"{'engine core per event p99 (us, wall)':<44} {compute['p99']:>12.1f}")
    print(
        f"targets: >= 3,000 round trips/s: {'met' if rt_full >= 3000 else 'NOT met'}; "
        f">= 75% of floor: {'met' if rt_full >= 0.75 * rt_floor else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
