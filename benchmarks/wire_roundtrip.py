"""Order round trip over real FIX sessions on loopback, the venue in its own process:
xmc (engine core + quickfix initiator against `xmc venue`, from the engine's audit: order handed to
quickfix -> its acknowledgement handled by the core) beside a bare quickfix initiator/acceptor pair
(an acceptor that answers each NewOrderSingle with an ExecutionReport) measured in the same run,
plus the bare pair's sustained rate. Run: .venv/bin/python benchmarks/wire_roundtrip.py

Targets (issue 4): xmc round trip at most 1.3x the bare pair; >= 1,000 orders/s with p99 ack < 2 ms.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import quickfix as fix

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.fix.dictionary import base_dictionary_path  # noqa: E402
from simulator import scenario  # noqa: E402
from simulator.runner import percentile  # noqa: E402
from simulator.wire import free_port, run_wire  # noqa: E402


def settings(kind: str, port: int, store: str) -> str:
    sender, target = ("BARE-V", "BARE-E") if kind == "acceptor" else ("BARE-E", "BARE-V")
    where = f"SocketAcceptPort={port}" if kind == "acceptor" else f"SocketConnectHost=127.0.0.1\nSocketConnectPort={port}"
    return (f"[DEFAULT]\nConnectionType={kind}\nHeartBtInt=30\nReconnectInterval=1\nFileStorePath={store}\n"
            f"StartTime=00:00:00\nEndTime=00:00:00\nResetOnLogon=Y\nUseDataDictionary=Y\n"
            f"DataDictionary={base_dictionary_path()}\n\n[SESSION]\nBeginString=FIX.4.4\nSenderCompID={sender}\n"
            f"TargetCompID={target}\n{where}\n")


class BareAcceptor(fix.Application):
    def onCreate(self, s): pass
    def onLogon(self, s): pass
    def onLogout(self, s): pass
    def toAdmin(self, m, s): pass
    def fromAdmin(self, m, s): pass
    def toApp(self, m, s): pass

    def fromApp(self, m, s):
        r = fix.Message()
        r.getHeader().setField(35, "8")
        for tag, value in ((37, "O1"), (11, m.getField(11)), (17, m.getField(11)), (150, "0"), (39, "0"),
                           (55, m.getField(55)), (54, m.getField(54)), (151, m.getField(38)), (14, "0"), (6, "0")):
            r.setField(tag, value)
        fix.Session.sendToTarget(r, s)


class BareInitiator(fix.Application):
    def __init__(self):
        super().__init__()
        self.session = None
        self.sent: dict[str, int] = {}
        self.rtt_us: list[float] = []
        self.logged_on = threading.Event()
        self.lock = threading.Lock()

    def onCreate(self, s): self.session = s
    def onLogon(self, s): self.logged_on.set()
    def onLogout(self, s): pass
    def toAdmin(self, m, s): pass
    def fromAdmin(self, m, s): pass
    def toApp(self, m, s): pass

    def fromApp(self, m, s):
        now = time.perf_counter_ns()
        with self.lock:
            t0 = self.sent.pop(m.getField(11), None)
        if t0 is not None:
            self.rtt_us.append((now - t0) / 1e3)

    def order(self, cl_ord_id: str) -> None:
        m = fix.Message()
        m.getHeader().setField(35, "D")
        for tag, value in ((11, cl_ord_id), (55, "HGH6"), (54, "1"), (60, "20260105-01:00:00.000"), (38, "1"),
                           (40, "2"), (44, "4.5"), (59, "3")):
            m.setField(tag, value)
        with self.lock:
            self.sent[cl_ord_id] = time.perf_counter_ns()
        fix.Session.sendToTarget(m, self.session)


def bare_pair(n: int, rate: float, seconds: float) -> dict:
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--bare-acceptor", str(port)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    child.stdout.readline()  # "ready"
    app = BareInitiator()
    ss = fix.SessionSettings()
    ss.setFromString(settings("initiator", port, tempfile.mkdtemp()))
    init = fix.SocketInitiator(app, fix.MemoryStoreFactory(), ss, fix.ScreenLogFactory(False, False, False))
    init.start()
    try:
        app.logged_on.wait(15)
        done = threading.Event()
        for i in range(n):  # sequential: one order in flight at a time
            app.order(f"S{i}")
            while len(app.rtt_us) <= i:
                done.wait(0.00005)
        sequential = list(app.rtt_us)
        app.rtt_us.clear()
        start, sent = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:  # paced at `rate` orders per second
            due = int((time.perf_counter() - start) * rate)
            while sent < due:
                app.order(f"P{sent}")
                sent += 1
            done.wait(0.0005)
        done.wait(0.5)
        paced = list(app.rtt_us)
    finally:
        init.stop()
        child.stdin.close()
        child.wait(timeout=10)
    return {"sequential": sequential, "paced": paced, "paced_sent": sent, "seconds": seconds}


def serve_bare_acceptor(port: int) -> None:
    ss = fix.SessionSettings()
    ss.setFromString(settings("acceptor", port, tempfile.mkdtemp()))
    acc = fix.SocketAcceptor(BareAcceptor(), fix.MemoryStoreFactory(), ss, fix.ScreenLogFactory(False, False, False))
    acc.start()
    print("ready", flush=True)
    sys.stdin.read()
    import os
    os._exit(0)  # see cmd_venue: no acceptor teardown at exit


def xmc_round_trips(seconds: float) -> list[float]:
    import polars as pl

    sc = scenario.load(ROOT / "benchmarks" / "throughput.toml")
    out = Path(tempfile.mkdtemp(prefix="xmc-bench-"))
    run_wire(sc, sc.seed, seconds, out)
    audit = pl.read_parquet(out / "audit.parquet")
    sends = {r["cl_ord_id"]: r["ts"] for r in audit.filter(pl.col("stage") == "send").iter_rows(named=True)}
    acks: dict[str, float] = {}
    for r in audit.filter(pl.col("stage").is_in(["ack", "fill"])).sort("seq").iter_rows(named=True):
        acks.setdefault(r["cl_ord_id"], r["ts"])
    return [(acks[c] - t) * 1e6 for c, t in sends.items() if c in acks]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bare-acceptor", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=500, help="sequential bare round trips")
    ap.add_argument("--rate", type=float, default=1000.0, help="orders per second in the sustained test")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of the sustained test and of the xmc run")
    args = ap.parse_args()
    if args.bare_acceptor is not None:
        serve_bare_acceptor(args.bare_acceptor)
        return 0
    bare = bare_pair(args.n, args.rate, args.seconds)
    xmc = xmc_round_trips(args.seconds)
    b50, x50 = percentile(bare["sequential"], 50), percentile(xmc, 50)
    print(f"{'measure':<58} {'n':>6} {'p50 us':>8} {'p99 us':>8}")
    print(f"{'bare quickfix pair: order -> ack (sequential)':<58} {len(bare['sequential']):>6} {b50:>8.0f} "
          f"{percentile(bare['sequential'], 99):>8.0f}")
    print(f"{'xmc: order handed to quickfix -> ack in the core':<58} {len(xmc):>6} {x50:>8.0f} "
          f"{percentile(xmc, 99):>8.0f}")
    rate = len(bare["paced"]) / bare["seconds"]
    print(f"{'bare pair sustained: acks/s at ' + str(int(args.rate)) + '/s offered':<58} {len(bare['paced']):>6} "
          f"{percentile(bare['paced'], 50):>8.0f} {percentile(bare['paced'], 99):>8.0f}   ({rate:,.0f}/s)")
    print(f"xmc / bare round trip (p50): {x50 / b50:.2f}x (target <= 1.3x: {'met' if x50 <= 1.3 * b50 else 'NOT met'})")
    print("note: the xmc figure comes from a full scenario (market data flowing, two legs per decision); the "
          "sustained xmc rate at 1,000 orders/s is not measured yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
