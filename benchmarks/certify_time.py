"""Certification time: the whole bundled library x N seeds on -j processes (wall clock), with the CPU
each scenario costs per run and the one-off start-up of a worker (imports, dictionaries), beside the
floor measured in the same run: the same runs' summed CPU divided by the workers (perfect packing,
no start-up). Run: .venv/bin/python benchmarks/certify_time.py [--seeds N] [-j N]

It also prints the part of that floor no change to the simulator can remove: framing every message
(quickfix building it from its text; a venue's market-data refresh written in quickfix's layout by
`engine.fix.codec.laid_out`, as the venues do) and reading it back (parsed and validated against the
receiving venue's dictionary when the engine sent it, read by `Parsed` when a simulated venue did), simpy delivering it,
for all the messages the library's runs exchanged (the cost per message measured in this run over one
scenario's messages), and beside it the engine core's own compute in those runs (the system under test).

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
from xmc import accel  # noqa: E402

accel.enable()  # as `xmc certify` runs (its workers import this file first, and enable it too)
SAMPLE = ROOT / "scenarios" / "cu_hg_spread.toml"  # whose messages price the library's per-message floor


def library_floor_per_message(repeat: int = 3) -> tuple[float, int]:
    """Seconds per message of quickfix framing, reading back and simpy delivery (nothing of xmc's own
    logic) over the messages of one run of SAMPLE, the best of `repeat`; and how many messages that was."""
    import quickfix as fix
    import simpy

    from engine.fix.codec import Draft, Parsed, _wire_text, laid_out
    from engine.fix.dictionary import load
    from simulator import runner, scenario
    from simulator.venue import ENGINE_COMP_ID

    sc = scenario.load(SAMPLE)
    messages = runner.run(sc).messages
    dictionaries = {v.comp_id: load(v.dictionary).dd for v in sc.venues.values()}
    plan = []
    for raw in messages:
        sender = raw.split("\x0149=", 1)[1].split("\x01", 1)[0]
        target = raw.split("\x0156=", 1)[1].split("\x01", 1)[0]
        from_engine = sender == ENGINE_COMP_ID
        dd = dictionaries[target if from_engine else sender]
        refresh = None
        if not from_engine and "\x0135=X\x01" in raw:  # the venues write these in quickfix's layout
            body = raw.split(f"\x0156={target}\x01", 1)[1].rsplit("10=", 1)[0]
            refresh = Draft("X", body, True, None, True), sender, target
            seq = int(raw.split("\x0134=", 1)[1].split("\x01", 1)[0])
            sent = raw.split("\x0152=", 1)[1].split("\x01", 1)[0]
            assert laid_out(refresh[0], sender, target, seq, sent) == raw, raw  # the very bytes the run sent
        plan.append((raw, dd, from_engine, refresh))

    def replay(env):
        for raw, dd, from_engine, refresh in plan:
            yield env.timeout(0.0001)
            if refresh is not None:
                laid_out(refresh[0], refresh[1], refresh[2], 7, "20260105-01:00:00.200")
            else:
                _wire_text(raw, dd)  # built against the dictionary (groups need it): the dearer build
            if from_engine:
                dd.validate(fix.Message(raw, dd, False))
            else:
                Parsed(raw)

    best = float("inf")
    for _ in range(repeat):
        env = simpy.Environment()
        env.process(replay(env))
        t0 = time.perf_counter()
        env.run()
        best = min(best, time.perf_counter() - t0)
    return best / len(plan), len(plan)


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
    messages = sum(r["counters"]["messages"] for r in runs)
    engine_s = sum(r["wall"]["engine_compute_s"] for r in runs)
    per_message, sampled = library_floor_per_message()
    print(f"\n{'scenario':<46} {'runs':>5} {'s per run':>10}")
    for name, times in sorted(per.items(), key=lambda kv: -sum(kv[1]) / len(kv[1]))[:15]:
        print(f"{name:<46} {len(times):>5} {sum(times) / len(times):>10.2f}")
    compiled = sum(bool(r["wall"].get("compiled")) for r in runs)
    print(f"runs on the compiled hot modules (xmc/accel.py): {compiled} of {len(runs)}")
    print(f"... {len(per)} scenarios; worker start-up (imports, first scenario load): {float(startup.stdout):.2f} s")
    print(
        f"library x {args.seeds} seeds on {args.jobs} processes: {len(runs)} runs, wall {wall:.1f} s; "
        f"floor (summed run time / {args.jobs}): {cpu / args.jobs:.1f} s; target < 30 s; exit {code}"
    )
    print(
        f"of which framing + read back + simpy delivery of the runs' {messages:,} messages "
        f"({1e6 * per_message:.1f} us each, measured over {sampled:,} of {SAMPLE.name}'s): "
        f"{messages * per_message / args.jobs:.1f} s; the engine core's own compute: {engine_s / args.jobs:.1f} s; "
        f"everything else (venues, checkers, prices, sessions, links): "
        f"{max(0.0, cpu - messages * per_message - engine_s) / args.jobs:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
