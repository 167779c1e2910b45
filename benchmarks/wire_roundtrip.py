"""Order round trip over real FIX sessions on loopback, the acceptor in its own process, all in one run:
a bare quickfix initiator/acceptor pair (the acceptor answers each NewOrderSingle with one
ExecutionReport; one order or two at once in flight; in-memory or file store), xmc's engine
(LiveEngine + core, decisions opened by quotes on its event queue, both legs sent) against the same
kind of bare acceptor, sequential and sustained at --rate orders/s, and xmc against `xmc venue` (the
full simulated exchange). xmc's round trip runs from the decision (audit "send") to the report
handled by the core, and is split at the moment each order is handed to quickfix (LiveEngine.on_wire):
decision -> hand-off, hand-off -> report handled. Run: .venv/bin/python benchmarks/wire_roundtrip.py

Both sides wait for their round trip the same way, on an event set where the report is handled (the
bare initiator's fromApp, xmc's terminal audit row), never by polling: a polling sender would slow the
side it runs on and flatter the ratio.

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
from simulator.ports import PortReservation, reserve  # noqa: E402
from simulator.runner import percentile  # noqa: E402
from simulator.wire import run_wire  # noqa: E402

# every store and output of this process in one directory, removed when the process ends
SCRATCH = tempfile.TemporaryDirectory(prefix="xmc-bench-")


def scratch_dir(prefix: str = "") -> str:
    return tempfile.mkdtemp(prefix=prefix, dir=SCRATCH.name)


def end_process() -> None:
    """End without tearing quickfix down (see cmd_venue: its acceptor's stop has crashed), the scratch
    directory removed first (os._exit skips the interpreter's clean-up)."""
    import os

    SCRATCH.cleanup()
    os._exit(0)


def settings(kind: str, port: int, store: str) -> str:
    sender, target = ("BARE-V", "BARE-E") if kind == "acceptor" else ("BARE-E", "BARE-V")
    # quickfix 1.16's acceptor listens on every interface: its session takes loopback connections only
    where = (
        f"AllowedRemoteAddresses=127.0.0.1\nSocketAcceptPort={port}"
        if kind == "acceptor"
        else f"SocketConnectHost=127.0.0.1\nSocketConnectPort={port}"
    )
    return (
        f"[DEFAULT]\nConnectionType={kind}\nHeartBtInt=30\nReconnectInterval=1\nFileStorePath={store}\n"
        f"StartTime=00:00:00\nEndTime=00:00:00\nResetOnLogon=Y\nUseDataDictionary=Y\n"
        f"DataDictionary={base_dictionary_path()}\n\n[SESSION]\nBeginString=FIX.4.4\nSenderCompID={sender}\n"
        f"TargetCompID={target}\n{where}\n"
    )


class BareAcceptor(fix.Application):
    def onCreate(self, s):
        pass

    def onLogon(self, s):
        pass

    def onLogout(self, s):
        pass

    def toAdmin(self, m, s):
        pass

    def fromAdmin(self, m, s):
        pass

    def toApp(self, m, s):
        pass

    def fromApp(self, m, s):
        r = fix.Message()
        r.getHeader().setField(35, "8")
        for tag, value in (
            (37, "O1"),
            (11, m.getField(11)),
            (17, m.getField(11)),
            (150, "0"),
            (39, "0"),
            (55, m.getField(55)),
            (54, m.getField(54)),
            (151, m.getField(38)),
            (14, "0"),
            (6, "0"),
        ):
            r.setField(tag, value)
        fix.Session.sendToTarget(r, s)


class BareInitiator(fix.Application):
    def __init__(self):
        super().__init__()
        self.session = None
        self.sent: dict[str, int] = {}
        self.rtt_us: list[float] = []
        self.logged_on = threading.Event()
        self.arrived = threading.Event()
        self.lock = threading.Lock()

    def onCreate(self, s):
        self.session = s

    def onLogon(self, s):
        self.logged_on.set()

    def onLogout(self, s):
        pass

    def toAdmin(self, m, s):
        pass

    def fromAdmin(self, m, s):
        pass

    def toApp(self, m, s):
        pass

    def fromApp(self, m, s):
        now = time.perf_counter_ns()
        with self.lock:
            t0 = self.sent.pop(m.getField(11), None)
        if t0 is not None:
            self.rtt_us.append((now - t0) / 1e3)
        self.arrived.set()  # the sender waits on this event, as xmc's bench waits on its terminal row: no polling

    def order(self, cl_ord_id: str) -> None:
        m = fix.Message()
        m.getHeader().setField(35, "D")
        for tag, value in (
            (11, cl_ord_id),
            (55, "HGH6"),
            (54, "1"),
            (60, "20260105-01:00:00.000"),
            (38, "1"),
            (40, "2"),
            (44, "4.5"),
            (59, "3"),
        ):
            m.setField(tag, value)
        with self.lock:
            self.sent[cl_ord_id] = time.perf_counter_ns()
        fix.Session.sendToTarget(m, self.session)


def bare_pair(n: int, rate: float, seconds: float) -> dict:
    held = PortReservation()  # held until the child acceptor is gone (simulator.ports)
    port = held.port
    child = subprocess.Popen(
        [sys.executable, __file__, "--bare-acceptor", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    child.stdout.readline()  # "ready"
    app = BareInitiator()
    ss = fix.SessionSettings()
    ss.setFromString(settings("initiator", port, scratch_dir()))
    init = fix.SocketInitiator(app, fix.MemoryStoreFactory(), ss, fix.ScreenLogFactory(False, False, False))
    init.start()
    try:
        app.logged_on.wait(15)
        done = threading.Event()
        for i in range(n):  # sequential: one order in flight at a time, the next sent when its report arrived
            app.arrived.clear()
            app.order(f"S{i}")
            while len(app.rtt_us) <= i:
                app.arrived.wait(5)
                app.arrived.clear()
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
        held.close()
    return {"sequential": sequential, "paced": paced, "paced_sent": sent, "seconds": seconds}


def serve_bare_acceptor(port: int) -> None:
    ss = fix.SessionSettings()
    ss.setFromString(settings("acceptor", port, scratch_dir()))
    acc = fix.SocketAcceptor(BareAcceptor(), fix.MemoryStoreFactory(), ss, fix.ScreenLogFactory(False, False, False))
    acc.start()
    print("ready", flush=True)
    sys.stdin.read()
    end_process()


class XmcAcceptor(BareAcceptor):
    """The same bare acceptor, serving the sessions xmc's engine logs on to (SHFE, COMEX, FX against
    XMC, with the venue dictionaries): each NewOrderSingle is answered with one ExecutionReport, a
    full fill at its limit price. Nothing else happens on this side: what is measured is xmc."""

    def fromApp(self, m, s):
        if m.getHeader().getField(35) != "D":
            return
        r = fix.Message()
        r.getHeader().setField(35, "8")
        qty, cl = m.getField(38), m.getField(11)
        for tag, value in (
            (37, "O" + cl),
            (11, cl),
            (17, "X" + cl),
            (150, "F"),
            (39, "2"),
            (55, m.getField(55)),
            (54, m.getField(54)),
            (38, qty),
            (151, "0"),
            (14, qty),
            (6, m.getField(44)),
            (32, qty),
            (31, m.getField(44)),
        ):
            r.setField(tag, value)
        fix.Session.sendToTarget(r, s)


def _bench_scenario():
    import dataclasses

    sc = scenario.load(ROOT / "benchmarks" / "throughput.toml")
    cfg = sc.engine
    ex = dataclasses.replace(cfg.strategy.execution, cooldown=0.0, max_concurrent_episodes=200)
    return sc, dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, execution=ex))


def serve_xmc_acceptor() -> None:
    import json

    from engine.fix import dictionary

    sc, _ = _bench_scenario()
    held = reserve(sc.venues)  # held until this process exits (simulator.ports)
    ports = {name: h.port for name, h in held.items()}
    lines = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        "AllowedRemoteAddresses=127.0.0.1",
        "HeartBtInt=30",
        f"FileStorePath={scratch_dir()}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "ResetOnLogon=Y",
        "UseDataDictionary=Y",
        "SocketNodelay=Y",
        "ValidateUserDefinedFields=N",
        "AllowUnknownMsgFields=Y",
    ]
    for name, v in sc.venues.items():
        lines += [
            "",
            "[SESSION]",
            "BeginString=FIX.4.4",
            f"SenderCompID={v.comp_id}",
            "TargetCompID=XMC",
            f"SocketAcceptPort={ports[name]}",
            f"DataDictionary={dictionary.load(v.dictionary).path}",
        ]
    ss = fix.SessionSettings()
    ss.setFromString("\n".join(lines) + "\n")
    acc = fix.SocketAcceptor(XmcAcceptor(), fix.MemoryStoreFactory(), ss, fix.ScreenLogFactory(False, False, False))
    acc.start()
    print(json.dumps(ports), flush=True)
    sys.stdin.read()
    end_process()


def _quotes(sign: int) -> list:
    """Quotes that open a sell-spread (sign +1) or buy-spread (-1) decision in the benchmark config."""
    from engine.core.events import Quote

    hg_cny = 4.5 * 2204.62 * 7.1
    mid = round((hg_cny + sign * 400.0) / 10) * 10
    return [
        Quote("USDCNY", 7.0999, 1e6, 7.1001, 1e6),
        Quote("HG", 4.4995, 500, 4.5005, 500),
        Quote("CU", mid - 10, 500, mid + 10, 500),
    ]


def xmc_engine(n: int, rate: float, seconds: float) -> None:
    """Child process: xmc's engine (LiveEngine + core) against the xmc acceptor. Decisions are opened
    by quotes put on the engine's event queue (as its quickfix callbacks would); each sends both legs.
    Prints the round trips (order handed to quickfix -> its report handled by the core) as JSON."""
    import json

    from engine.core.engine_core import EngineCore
    from engine.shell.live import LiveEngine, SessionConfig, settings_text, wait_for

    sc, cfg = _bench_scenario()
    acceptor = subprocess.Popen(
        [sys.executable, __file__, "--xmc-acceptor"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    ports = json.loads(acceptor.stdout.readline())
    core = EngineCore(cfg)
    sessions = [SessionConfig(name, v.dictionary, v.comp_id, "127.0.0.1", ports[name]) for name, v in sc.venues.items()]
    engine = LiveEngine(core, sessions)
    handed: dict[str, float] = {}  # ClOrdID -> engine time its NewOrderSingle was handed to quickfix
    engine.on_wire = lambda a, t: handed.setdefault(getattr(a, "cl_ord_id", ""), t)
    engine.start(settings_text(sessions, Path(scratch_dir()), heartbeat=30))
    out: dict = {}
    try:
        if not wait_for(lambda: len(engine.logged_on) == len(sessions), 15):
            raise SystemExit("xmc engine: sessions not logged on")
        wait_for(lambda: False, 0.3)  # let the subscriptions go out
        sign = 1
        terminal = threading.Event()  # set by the episode's terminal audit row: an event wait, as the bare pair's
        base_audited = engine.audited

        def audited(row) -> None:
            base_audited(row)
            if row.stage == "terminal":
                terminal.set()

        engine.audited = audited
        for _ in range(n):  # sequential: one decision (two orders) in flight at a time
            seen = len(core.episodes)
            terminal.clear()
            for q in _quotes(sign):
                engine.events.put(q)
            sign = -sign
            terminal.wait(5)
            wait_for(lambda seen=seen: len(core.episodes) > seen and not core.active, 5)
        split = len(engine.audit)
        start, opened = time.perf_counter(), 0
        pace = threading.Event()
        while time.perf_counter() - start < seconds:  # paced: rate/2 decisions a second, two orders each
            due = int((time.perf_counter() - start) * rate / 2)
            while opened < due:
                for q in _quotes(sign):
                    engine.events.put(q)
                sign = -sign
                opened += 1
            pace.wait(0.0005)
        wait_for(lambda: not core.active, 5)
        rows = list(engine.audit)
        out = {
            "sequential": _rtts(rows[:split]),
            "paced": _rtts(rows[split:]),
            "paced_seconds": seconds,
            "handed_to_handled": _rtts(rows[:split], handed),
            "decision_to_handed": _to_hand_off(rows[:split], handed),
            "paced_decisions": opened,
            "episodes": len(core.episodes),
            "outcomes": sorted({e.state.value for e in core.episodes.values()}),
        }
    finally:
        engine.stop()
        acceptor.stdin.close()
        acceptor.wait(timeout=10)
    print(json.dumps(out), flush=True)
    end_process()


def _to_hand_off(rows: list[tuple], handed: dict[str, float]) -> list[float]:
    """Decision (audit "send", the core's time) -> the order handed to quickfix, per order."""
    return [(handed[r[4]] - r[1]) * 1e6 for r in rows if r[2] == "send" and r[4] in handed]


def _rtts(rows: list[tuple], handed: dict[str, float] | None = None) -> list[float]:
    """Per order: its decision (or, given `handed`, its hand-off to quickfix) -> its first report
    handled by the core."""
    sends = {
        r[4]: (handed[r[4]] if handed is not None else r[1])
        for r in rows
        if r[2] == "send" and (handed is None or r[4] in handed)
    }
    firsts: dict[str, float] = {}
    for r in rows:
        if r[2] in ("ack", "fill") and r[4] in sends:
            firsts.setdefault(r[4], r[1])
    return [(firsts[c] - t) * 1e6 for c, t in sends.items() if c in firsts]


def xmc_full_scenario(seconds: float) -> list[float]:
    """xmc against `xmc venue` (the simulated exchange: books, matching, market making, market data)."""
    import polars as pl

    sc = scenario.load(ROOT / "benchmarks" / "throughput.toml")
    out = Path(scratch_dir("wire-"))
    run_wire(sc, sc.seed, seconds, out)
    audit = pl.read_parquet(out / "audit.parquet")
    # the in-memory row's first columns, by name (audit.parquet has more, typed, in its own order)
    return _rtts(list(audit.select("seq", "ts", "stage", "decision_id", "cl_ord_id").iter_rows()))


def bare_pairs(n: int, file_store: bool) -> list[float]:
    """The bare pair sending two orders at once (as xmc sends both legs), one pair in flight at a time;
    with `file_store` the initiator persists every message as xmc's engine does (quickfix FileStore)."""
    held = PortReservation()  # held until the child acceptor is gone (simulator.ports)
    port = held.port
    child = subprocess.Popen(
        [sys.executable, __file__, "--bare-acceptor", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    child.stdout.readline()
    app = BareInitiator()
    ss = fix.SessionSettings()
    ss.setFromString(settings("initiator", port, scratch_dir()))
    store = fix.FileStoreFactory(ss) if file_store else fix.MemoryStoreFactory()
    init = fix.SocketInitiator(app, store, ss, fix.ScreenLogFactory(False, False, False))
    init.start()
    try:
        app.logged_on.wait(15)
        for i in range(n):
            app.arrived.clear()
            app.order(f"A{i}")
            app.order(f"B{i}")
            while len(app.rtt_us) < 2 * (i + 1):
                app.arrived.wait(5)
                app.arrived.clear()
        return list(app.rtt_us)
    finally:
        init.stop()
        child.stdin.close()
        child.wait(timeout=10)
        held.close()


def main() -> int:
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bare-acceptor", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--xmc-acceptor", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--xmc-engine", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=500, help="sequential round trips (bare) / decisions (xmc)")
    ap.add_argument("--rate", type=float, default=1000.0, help="orders per second in the sustained tests")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of the sustained tests and of the full run")
    args = ap.parse_args()
    if args.bare_acceptor is not None:
        serve_bare_acceptor(args.bare_acceptor)
        return 0
    if args.xmc_acceptor:
        serve_xmc_acceptor()
        return 0
    if args.xmc_engine:
        xmc_engine(args.n, args.rate, args.seconds)
        return 0
    bare = bare_pair(args.n, args.rate, args.seconds)
    pairs = bare_pairs(args.n, file_store=False)
    pairs_fs = bare_pairs(args.n, file_store=True)
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--xmc-engine",
            "--n",
            str(args.n),
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.seconds),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    xmc = json.loads(proc.stdout.strip().splitlines()[-1])
    full = xmc_full_scenario(args.seconds)

    def row(label: str, values: list[float], extra: str = "") -> None:
        print(f"{label:<64} {len(values):>6} {percentile(values, 50):>8.0f} {percentile(values, 99):>8.0f}{extra}")

    print(f"{'measure (loopback, the acceptor in its own process)':<64} {'n':>6} {'p50 us':>8} {'p99 us':>8}")
    row("bare quickfix pair: order -> ack, one in flight", bare["sequential"])
    row("bare quickfix pair: order -> ack, two at once", pairs)
    row("bare quickfix pair: two at once, FileStore as xmc uses", pairs_fs)
    row("xmc engine -> same bare acceptor: decision's two orders", xmc["sequential"])
    row("  of which decision -> order handed to quickfix", xmc["decision_to_handed"])
    row("  of which order handed to quickfix -> report handled by core", xmc["handed_to_handled"])
    rate = len(bare["paced"]) / bare["seconds"]
    row(f"bare pair sustained at {args.rate:,.0f} orders/s offered", bare["paced"], f"   ({rate:,.0f} acks/s)")
    xrate = len(xmc["paced"]) / xmc["paced_seconds"]
    row(f"xmc engine sustained at {args.rate:,.0f} orders/s offered", xmc["paced"], f"   ({xrate:,.0f} acks/s)")
    row("xmc engine -> xmc venue (full scenario: books, market data)", full)
    x50 = percentile(xmc["sequential"], 50)
    h50 = percentile(xmc["handed_to_handled"], 50)
    for label, base in (("in-memory store", pairs), ("FileStore, as xmc", pairs_fs)):
        b50 = percentile(base, 50)
        print(
            f"xmc / bare round trip (p50, two orders at once, bare with {label}): {x50 / b50:.2f}x from the "
            f"decision, {h50 / b50:.2f}x from the hand-off (target <= 1.3x: {'met' if x50 <= 1.3 * b50 else 'NOT met'})"
        )
    p99 = percentile(xmc["paced"], 99)
    ok = xrate >= 0.98 * args.rate and p99 < 2000
    print(
        f"xmc sustained: {xrate:,.0f} acks/s, p99 {p99:,.0f} us (target >= 1,000/s with p99 < 2 ms: "
        f"{'met' if ok and args.rate >= 1000 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
