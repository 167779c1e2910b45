"""The xmc command line: run one scenario, or certify the scenario library across seeds.

Exit codes: 0 every expectation holds, 1 an expectation failed, 2 bad input (the message says
which file, which key and what to write instead).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from xmc import accel


def _simulates(argv: list[str]) -> bool:
    """Does this command only simulate (virtual time)? Those run mypyc's build of the hot modules when it
    matches the sources (xmc/accel.py); a command that trades on FIX sessions (live, venue, wire mode,
    parity) runs the Python modules its wire tests run."""
    command = argv[0] if argv else ""
    if command == "run":
        return not any(a == "wire" or a == "--mode=wire" for a in argv)
    return command in ("certify", "regress", "explore")


if _simulates(sys.argv[1:]):
    accel.enable()  # before any engine or simulator module loads

from engine import provenance  # noqa: E402
from engine.config import MAX_MAGNITUDE, ConfigError, UnusablePath, path_kind  # noqa: E402
from engine.fix.dictionary import DictionaryError  # noqa: E402

# the checkout's scenarios/ and baselines/, else the copies a non-editable install keeps (xmc/scenarios, xmc/baselines)
_HERE = Path(__file__).resolve().parent
SCENARIO_DIR = next(
    (d for d in (_HERE.parent / "scenarios", _HERE / "scenarios") if d.is_dir()), _HERE.parent / "scenarios"
)
BASELINE = next(
    (f for f in (_HERE.parent / "baselines" / "library.json", _HERE / "baselines" / "library.json") if f.is_file()),
    _HERE.parent / "baselines" / "library.json",
)

# `xmc live --node`: the node's journal file (engine-<node>.journal) and its name in the lease; ASCII
# only (re's \w would take any script's letters)
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code is 2 already; keep its wording
        self.print_usage(sys.stderr)
        print(f"xmc: error: {message}", file=sys.stderr)
        sys.exit(2)


def _kind(p: Path, what: str) -> str:
    """engine.config.path_kind of an option's path, a path that cannot be looked at named with its option."""
    try:
        return path_kind(p)
    except UnusablePath as exc:
        raise UsageError(f"{what} {exc}") from None


def writable_dir(path: str | Path, what: str) -> Path:
    """`path` as a directory this process can write into, checked before any work is done."""
    p = Path(path)
    try:
        kind = path_kind(p)
    except UnusablePath:  # a name too long, a path through a file: mkdir below names the reason
        kind = "missing"
    if kind not in ("dir", "missing"):
        raise UsageError(f"{what} {p}: is a {kind if kind == 'file' else 'device or pipe'}; give a directory path")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".xmc-write-check-"):
            pass
    except ValueError:  # a NUL character, which a path from a config file (not from argv) can hold
        raise UsageError(f"{what} {str(p)!r}: holds a NUL character; give a directory path without it") from None
    except OSError as exc:
        raise UsageError(
            f"{what} {p}: cannot be written ({exc.strerror or exc}); give a directory you may write to"
        ) from None
    return p


def writable_file(path: str | Path, what: str) -> Path:
    """`path` as a file this process can create or replace, checked before any work is done."""
    p = Path(path)
    kind = _kind(p, what)
    if kind == "dir":
        raise UsageError(f"{what} {p}: is a directory; give a file path")
    writable_dir(p.parent if str(p.parent) else ".", f"{what} {p}: its directory")
    if kind != "missing" and not os.access(p, os.W_OK):
        raise UsageError(f"{what} {p}: cannot be written (permission denied); give a file you may write")
    return p


class _Version(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        commit = provenance.git_commit()
        print(f"xmc {provenance.version()}" + (f" (git {commit})" if commit else ""))
        parser.exit(0)


def finite(text: str) -> float:
    """argparse type of every number option: a finite number (float() alone takes nan and inf, which
    pass every range check written as a comparison and would run forever or report nonsense)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number")
    return value


def seed_number(text: str) -> int:
    """argparse type of every --seed: a whole number a run can be seeded with (simulator.scenario's
    seed domain, what audit.parquet's signed 64-bit seed column holds)."""
    from simulator.scenario import SEED_HINT, seed_in_domain

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give {SEED_HINT}") from None
    if not seed_in_domain(value):
        raise argparse.ArgumentTypeError(f"{text}: out of range; give {SEED_HINT}")
    return value


MAX_SEEDS = 100_000  # per scenario in one certify run: beyond it, a typo (a week of CPU per scenario)
MAX_EXPLORE_RUNS = 1_000_000  # schedules in one explore: a week of 2 cores at ~1 s a run, as --time's week
MAX_DURATION_S = 86_400.0  # a scenario's own domain: at most a day


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xmc", description="Cross-market arbitrage FIX engine and its certifying exchange simulator.")
    p.add_argument("--version", action=_Version, nargs=0, help="print xmc's version (and git commit) and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser(
        "run",
        help="run one scenario, in virtual time or (--mode wire) over real FIX sessions",
        description="Run one scenario with one seed; write report.json, messages.log and "
        "audit.parquet to --out. Exit 0 when every expectation holds, 1 when one "
        "fails, 2 on bad input.",
    )
    r.add_argument("scenario", help="path of a scenario .toml file")
    r.add_argument("--seed", type=seed_number, default=None, help="random seed (default: the scenario's own)")
    r.add_argument("--out", default=None, help="directory for report.json, messages.log, audit.parquet")
    r.add_argument(
        "--print-scenario",
        action="store_true",
        help="print the scenario as validated, with every base it extends merged in, and exit",
    )
    r.add_argument(
        "--mode",
        choices=("virtual", "wire"),
        default="virtual",
        help="virtual: simpy virtual time (default); wire: real quickfix sessions over loopback, "
        "the venues in a child process, paced in real time (order, link, market-data and desk "
        "faults apply; faults of the engine's own process are named and left to virtual time)",
    )
    r.add_argument(
        "--duration",
        type=finite,
        default=None,
        help="seconds to trade: virtual seconds, or wall-clock seconds in wire mode (default: the scenario's duration)",
    )
    r.add_argument(
        "--link-latency",
        action="store_true",
        help="wire mode: add each venue's scenario latency (latency_up/latency_down) on a relay in "
        "the engine's path, as virtual time has it (loopback alone is ~0.1 ms)",
    )
    r.add_argument(
        "--kill-venues-at",
        type=finite,
        default=None,
        metavar="S",
        help="wire mode: kill the venue process (SIGKILL) S seconds into trading and start it again on "
        "the same ports and state (--venues-down seconds later); the engine must reconnect, "
        "resynchronise and reconcile",
    )
    r.add_argument(
        "--venues-down",
        type=finite,
        default=None,
        metavar="S",
        help="wire mode: seconds the killed venue process stays down (default 1)",
    )
    pa = sub.add_parser(
        "parity",
        help="run a scenario in virtual time and over the wire; compare the outcomes",
        description="Run one scenario with one seed twice, in virtual time and in wire mode, for "
        "the same --duration, and compare: same episodes (paired by side and signal "
        "time), same outcomes, same fill quantities, signal->terminal within the "
        "timing tolerance. Every difference is printed and written to "
        "--out/parity.json (beside virtual/ and wire/ artefacts). Exit 0 when the "
        "outcomes are identical, 1 when they differ, 2 on bad input.",
    )
    pa.add_argument("scenario", help="path of a scenario .toml file")
    pa.add_argument("--seed", type=seed_number, default=None, help="random seed (default: the scenario's own)")
    pa.add_argument("--duration", type=finite, default=10.0, help="seconds of trading in both runs (default 10)")
    pa.add_argument("--out", default="out/parity", help="output directory (default out/parity)")
    pa.add_argument(
        "--no-link-latency",
        action="store_true",
        help="run the wire side on bare loopback instead of with the scenario's link latency",
    )
    pa.add_argument(
        "--signal-tolerance-ms",
        type=finite,
        default=250.0,
        help="how far apart the same decision may fire on the two clocks (default 250)",
    )
    pa.add_argument(
        "--timing-tolerance-ms",
        type=finite,
        default=250.0,
        help="how much signal->terminal may differ between the runs (default 250)",
    )
    c = sub.add_parser(
        "certify",
        help="run scenarios across seeds and print a certification table",
        description="Run every scenario (default: all under scenarios/) for --seeds seeds, "
        "print a summary table and write report.json (and each run's messages.log "
        "and audit.parquet under runs/) to --out.",
    )
    c.add_argument("paths", nargs="*", help="scenario files or directories (default: the bundled scenarios/)")
    c.add_argument("--seeds", type=int, default=3, help="seeds per scenario, 1..N, N at most 100,000 (default 3)")
    c.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes")
    c.add_argument("--out", default="out/certify", help="output directory (default out/certify)")
    c.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the scenario x seed runs as tasks on a Ray cluster at ADDRESS; without one, a local "
        "Ray started for the command (-j CPUs). Results are identical to local runs",
    )
    c.add_argument(
        "--save-baseline",
        default=None,
        metavar="FILE",
        help="record this certification (per scenario and seed: run_hash, outcomes, fills, recovery "
        "timings, wall figures) as the baseline FILE",
    )
    c.add_argument(
        "--baseline",
        default=None,
        metavar="FILE",
        help="compare with the baseline FILE and exit 1 on a regression (rules: README, Regression gate)",
    )
    c.add_argument(
        "--accept-changes",
        action="store_true",
        help="with --baseline: accept changed behaviour and timings, write this run as the new baseline "
        "and say what changed (never accepted: a failed expectation or invariant)",
    )
    c.add_argument(
        "--html",
        default=None,
        metavar="FILE",
        help="write the report for people: one self-contained HTML file (verdicts, timing plots, "
        "timelines, claims against measurements, coverage, failures with replay commands)",
    )
    c.add_argument(
        "--html-run",
        default=None,
        metavar="SCENARIO:SEED",
        help="the run whose episode and failover timelines --html draws (default: the first failed "
        "run, else the one with the most legged episodes)",
    )
    c.add_argument(
        "--junit",
        default=None,
        metavar="FILE",
        help="also write JUnit XML: one testcase per scenario and seed, failures with the failed "
        "expectations and the replay command, timings as properties",
    )
    rg = sub.add_parser(
        "regress",
        help="re-run a baseline's scenarios and seeds and fail (exit 1) on a regression "
        "of outcomes, fills or recovery timings",
        description="Re-run every scenario x seed a baseline recorded and compare (xmc certify "
        "--baseline). Exit 0: no regression; 1: a regression (the table names scenario, "
        "metric and the replay command of the seed that moved most); 2: bad input.",
    )
    rg.add_argument(
        "--baseline",
        default=str(BASELINE),
        metavar="FILE",
        help=f"the baseline (default: the committed {BASELINE.relative_to(BASELINE.parents[1])})",
    )
    rg.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes")
    rg.add_argument("--out", default="out/regress", help="output directory (default out/regress)")
    rg.add_argument(
        "--accept-changes",
        action="store_true",
        help="accept changed behaviour and timings: write this run as the new baseline, saying what changed",
    )
    ex = sub.add_parser(
        "explore",
        help="search the fault space on top of base scenarios; shrink each failure to a minimal replayable scenario",
        description="Generate fault schedules over the whole grammar (swarm testing: each schedule "
        "enables a random subset of fault kinds), keep those that reach new coverage and "
        "mutate them further, check every safety invariant, liveness and the base's "
        "schedule-independent expectations, and shrink each failure (by signature) to the "
        "fewest faults, narrowest windows, lowest rates and shortest run that still fail. "
        "Ctrl-C ends the search and keeps what it found: the summary, and the failures written as "
        "found (not shrunk). Exit 0: nothing failed; 1: failures (written as scenarios under "
        "OUT/failures); 2: bad input; 130: interrupted before any failure was found.",
    )
    ex.add_argument("bases", nargs="+", metavar="BASE.toml", help="base scenario files (their faults are replaced)")
    ex.add_argument("--out", default="out/explore", help="output directory (default out/explore)")
    budget = ex.add_mutually_exclusive_group()
    budget.add_argument("--time", default=None, metavar="T", help="search this long: 300, 90s, 10m, 1h (default 5m)")
    budget.add_argument("--runs", type=int, default=None, metavar="N", help="search this many schedules (1..1,000,000)")
    ex.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes (or Ray CPUs)")
    ex.add_argument(
        "--seed", type=seed_number, default=1, help="the search's seed: same seed and --runs, same schedules"
    )
    ex.add_argument(
        "--duration",
        type=finite,
        default=None,
        metavar="S",
        help="cap each run's virtual duration (default: the base's)",
    )
    ex.add_argument("--shrink-budget", type=int, default=80, metavar="N", help="runs spent shrinking each failure")
    ex.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on a Ray cluster at ADDRESS; without one, a local Ray started for the command",
    )
    au = sub.add_parser(
        "audit",
        help="query audit trails: a decision's stages and latencies, an order's life, an "
        "episode's orders and fills, decisions by time, instrument, venue, outcome",
        description="Query the audit.parquet of one run (xmc run/live --out) or of a whole "
        "certification (xmc certify --out: every runs/*/audit.parquet). Without "
        "--decision/--order/--episode it lists the decisions that match the filters.",
    )
    au.add_argument("path", help="an audit.parquet, or the --out directory of xmc run, certify or live")
    what = au.add_mutually_exclusive_group()
    what.add_argument(
        "--decision",
        metavar="ID",
        help="one decision's stages in order, with ms since its signal and since the stage before",
    )
    what.add_argument("--order", metavar="CLORDID", help="one order's life: every report, cumulative quantity")
    what.add_argument("--episode", metavar="ID", help="one episode's orders: role, quantity, fills, average price")
    au.add_argument("--run", default=None, help="only this run (its scenario name, or 'live')")
    au.add_argument("--seed", type=seed_number, default=None, help="only this seed")
    au.add_argument("--from", dest="start", type=finite, default=None, metavar="S", help="decisions from this time (s)")
    au.add_argument("--to", dest="end", type=finite, default=None, metavar="S", help="decisions up to this time (s)")
    au.add_argument("--instrument", default=None, help="decisions that traded this instrument")
    au.add_argument("--venue", default=None, help="decisions that traded on this venue")
    au.add_argument("--outcome", default=None, help="decisions that ended so: BALANCED, UNWOUND, ESCALATED, ABORTED")
    au.add_argument("--limit", type=int, default=None, help="at most this many decisions in the list")
    au.add_argument("--json", action="store_true", help="JSON records instead of a table")
    lv = sub.add_parser(
        "live",
        help="trade for real: the engine over quickfix sessions to brokers",
        description="Connect to the brokers in the config's [sessions] (credentials from the "
        "environment or files it names, never logged) and trade the configured strategy. "
        "SIGUSR1: kill switch (cancel all, no new episodes). SIGINT/SIGTERM: stop new "
        "episodes, cancel entries still working, let open episodes finish (a filled leg "
        "is repaired), log out, write report.json, messages.log and "
        "audit.parquet to [live].out_dir. Every event is journaled there first; started "
        "again after a crash, it rebuilds from that journal and reconciles before new "
        "risk. With --role primary/standby two processes share a lease on etcd or "
        "ZooKeeper (--lease-service; see README, Failover). A session not logged on 5 s plus one reconnect interval "
        "after start is said on stderr with quickfix's last word on it. Exit 0, 2 bad "
        "input, 3 when a session never logged on during the run, 4 when the node lost its "
        "lease and stopped (a supervisor restarts it).",
    )
    lv.add_argument("--config", required=True, help="path of a live .toml config")
    lv.add_argument(
        "--duration", type=finite, default=None, help="stop after this many seconds (default: run until a signal)"
    )
    lv.add_argument(
        "--role",
        choices=("single", "primary", "standby"),
        default="single",
        help="single: one node (default); primary: hold the lease and stream every event to the "
        "standby at --peer; standby: listen on --peer, follow the stream, take over when the "
        "primary's heartbeats stop and the lease is free",
    )
    lv.add_argument(
        "--node",
        default=None,
        help="this node's name in the lease and in its journal's file name: ASCII letters, digits, '.', '_', '-' "
        "(default: the role)",
    )
    lv.add_argument(
        "--lease-service",
        choices=("etcd", "zookeeper"),
        default="etcd",
        help="where the leadership lease lives (primary/standby): etcd (whole-second TTL; default) or "
        "zookeeper (an ephemeral node; sessions expire in a few hundred ms)",
    )
    lv.add_argument("--etcd", default=None, metavar="HOST:PORT", help="etcd client address (--lease-service etcd)")
    lv.add_argument(
        "--zookeeper", default=None, metavar="HOST:PORT", help="ZooKeeper address (--lease-service zookeeper)"
    )
    lv.add_argument(
        "--peer",
        default=None,
        metavar="HOST:PORT",
        help="the replication address: the standby listens there, the primary connects to it",
    )
    lv.add_argument("--heartbeat-ms", type=finite, default=100.0, help="heartbeat interval (default 100)")
    lv.add_argument("--misses", type=int, default=3, help="heartbeats missed before a takeover (default 3)")
    lv.add_argument("--lease-ttl-s", type=int, default=1, help="etcd lease TTL in whole seconds (default 1)")
    lv.add_argument(
        "--lease-session-ms",
        type=finite,
        default=400.0,
        help="ZooKeeper session timeout in ms: how long after a node's last word its lease ends "
        "(default 400; the server's tickTime x 2 at least)",
    )
    lv.add_argument("--trace", action="store_true", help="print every audit row as it happens (stdout)")
    v = sub.add_parser(
        "venue",
        help="run a scenario's venues as real FIX acceptors (quickfix), in real time",
        description="Serve the scenario's venues as quickfix acceptors on 127.0.0.1 (one port "
        "each, printed at start as JSON), on the same venue model as virtual time. "
        "Stops after --duration seconds or when standard input closes. With "
        "XMC_VENUE_PASSWORD set, a Logon without that Password (554) is refused "
        "with a Logout saying why; other sessions keep trading.",
    )
    v.add_argument("--scenario", required=True, help="path of a scenario .toml file")
    v.add_argument("--seed", type=seed_number, default=None, help="random seed (default: the scenario's own)")
    v.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address engines log on from, announced with the ports (default 127.0.0.1: local "
        "engines only; quickfix 1.16 listens on every interface and its sessions refuse "
        "logons from any other address); 0.0.0.0 takes them from anywhere",
    )
    v.add_argument("--duration", type=finite, default=3600.0, help="seconds to serve (default 3600)")
    v.add_argument("--state", default=None, help="write the venues' final positions to this JSON file")
    v.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="VENUE=PORT",
        help="listen for VENUE on PORT (repeatable; default: a port the OS assigns, held for the "
        "venue while it serves so that no other process can take it)",
    )
    v.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="COMPID",
        help="a client CompID allowed to log on to every venue (repeatable; default XMC, the engine's). "
        "Each client has its own session, sequence numbers and ClOrdIDs; all trade in the same "
        "books, so one client's order can fill against another's",
    )
    v.add_argument(
        "--state-dir",
        default=None,
        help="keep the venues' state here (quickfix FileStore, the engine's orders and fills): a venue "
        "process killed and restarted with the same directory and ports resumes its sessions",
    )
    v.add_argument(
        "--open-on-logon",
        action="store_true",
        help="start the market (prices, liquidity, the venues' clock) only once every venue's session "
        "is logged on, as in virtual time (used by `xmc run --mode wire` and `xmc parity`)",
    )
    v.add_argument(
        "--certification",
        action="store_true",
        help="broker-certification behaviour by OrderQty band: 1-9 accept, 10-19 fill, 20-29 partial "
        "then fill, 30-39 partial then cancel, 40-49 reject, 50-59 a cancel or replace loses the "
        "race (OrderCancelReject 102=0, then the fill), 60-69 a replace is refused (434=2)",
    )
    return p


def _scenario_files(paths: list[str]) -> list[Path]:
    if not paths:
        paths = [str(SCENARIO_DIR)]
    files: list[Path] = []
    for p in map(Path, paths):
        kind = path_kind(p)
        if kind == "dir":
            found = sorted(p.glob("*.toml"))
            if not found:
                raise UsageError(f"{p}: no .toml scenario files in this directory; give files or another directory")
            files += found
        elif kind != "missing":
            files.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory; give a scenario .toml file or a directory of them")
    return files


def _run_one(path: str, seed: int, out: str | None) -> dict:
    import time

    from simulator import runner, scenario

    started = time.perf_counter()
    sc = scenario.load(path)
    result = runner.run(sc, seed)
    result.report["wall"]["run_s"] = round(time.perf_counter() - started, 3)  # informative, never in run_hash
    if out:
        runner.write_artifacts(result, Path(out))
    return result.report


def cmd_venue(args) -> int:
    from simulator import scenario, wire

    sc = scenario.load(args.scenario)
    if args.duration <= 0:
        raise UsageError(f"--duration {args.duration}: give seconds > 0")
    if args.certification:
        sc = dataclasses.replace(
            sc, venues={n: dataclasses.replace(v, certification=True) for n, v in sc.venues.items()}
        )
    seed = sc.seed if args.seed is None else args.seed
    if args.state:
        writable_file(args.state, "--state")
    if args.state_dir:
        writable_dir(args.state_dir, "--state-dir")

    def announce(info: dict) -> None:
        print(json.dumps(info), flush=True)

    def until_closed(ended: threading.Event) -> None:
        """Until stdin closes, the duration passes or the venues' simulation ends by itself."""

        def stdin_closed() -> None:
            sys.stdin.read()  # the parent closed it: stop
            ended.set()

        threading.Thread(target=stdin_closed, daemon=True).start()
        ended.wait(args.duration)

    try:
        ipaddress.ip_address(args.host)
    except ValueError:
        raise UsageError(
            f"--host {args.host}: not an IP address; give the address engines log on from, e.g. 127.0.0.1, "
            f"or 0.0.0.0 for any"
        ) from None
    ports: dict[str, int] = {}
    for item in args.port:
        name, sep, value = item.partition("=")
        if not sep or name not in sc.venues or not (value.isascii() and value.isdigit()) or not 0 < int(value) < 65536:
            raise UsageError(
                f"--port {item}: write VENUE=PORT with VENUE one of {', '.join(sc.venues)} and PORT a number 1-65535"
            )
        if name in ports:  # the last one would win silently
            raise UsageError(f"--port: {name} given twice ({ports[name]} and {value}); give each venue one port")
        ports[name] = int(value)
    if ports and set(ports) != set(sc.venues):
        raise UsageError(
            f"--port: give every venue a port ({', '.join(sorted(set(sc.venues) - set(ports)))} missing) or none"
        )
    clients = tuple(args.client) or ("XMC",)
    for c in clients:
        if not c or len(c) > 64 or not (c.isascii() and c.isprintable()) or any(ch in c for ch in " =|\x01"):
            raise UsageError(  # ASCII: a FIX header field carries no MessageEncoding
                f"--client {c!r}: a CompID is 1-64 printable ASCII characters without spaces, '=' or '|' "
                f"(e.g. --client CLIENT1)"
            )
    if len(set(clients)) != len(clients):
        raise UsageError(
            f"--client: {', '.join(sorted({c for c in clients if clients.count(c) > 1}))} given "
            f"twice; name each client once"
        )
    password = os.environ.get("XMC_VENUE_PASSWORD", "")  # when set, every Logon must carry it
    try:
        result = wire.serve(
            sc,
            seed,
            args.host,
            args.duration,
            announce,
            until_closed,
            password,
            args.open_on_logon,
            ports or None,
            Path(args.state_dir) if args.state_dir else None,
            clients,
        )
    except ValueError as exc:  # a corrupt --state-dir
        raise UsageError(str(exc)) from None
    except ConfigError as exc:  # the scenario's prices failed mid-run: exit 2 without quickfix's teardown
        print(f"xmc: {exc}", file=sys.stderr, flush=True)
        if args.state:  # for the engine side of `xmc run --mode wire`, which reports it as its own exit 2
            problems = [{"key": p.key, "what": p.what, "fix": p.fix} for p in exc.problems]
            Path(args.state).write_text(json.dumps({"error": {"source": exc.source, "problems": problems}}))
        os._exit(2)
    if args.state:
        Path(args.state).write_text(json.dumps(result))
    print(f"venues stopped; engine positions at the venues: {result['positions']}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # End without tearing quickfix down: its acceptor's stop() has crashed under load, and leaving
    # it to interpreter shutdown crashes too; the OS closes the sockets, peers see a disconnect.
    os._exit(0)


def cmd_live(args) -> int:
    import signal

    from engine.report import RunResult, anomaly_summary, count_outcomes, episode_row, venue_of, write_artifacts
    from engine.shell.live_config import load
    from engine.shell.live_node import LiveNode, NodeOptions, SetupError

    cfg = load(args.config)
    writable_dir(cfg.out_dir, f"[live] out_dir of {args.config}:")
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration {args.duration}: give seconds > 0")
    node_name = args.node or args.role
    if not NODE_NAME.fullmatch(node_name):  # it names the journal file and the lease holder
        raise UsageError(
            f"--node {node_name!r}: write a name of letters, digits, '.', '_' and '-' (at most 64, starting "
            f"with a letter or digit); it names this node's journal file and its lease"
        )
    if args.heartbeat_ms <= 0 or args.misses < 1 or args.lease_ttl_s < 1:  # whatever the role: a typo either way
        raise UsageError("--heartbeat-ms > 0, --misses >= 1 and --lease-ttl-s >= 1, please")
    lease = peer = None
    if args.role != "single":
        lease, peer = _failover_args(args, node_name)
    stop = threading.Event()
    opts = NodeOptions(
        args.role,
        node_name,
        args.heartbeat_ms / 1e3,
        args.misses,
        args.duration,
        args.trace,
        lease,
        peer,
        (args.etcd if args.lease_service == "etcd" else args.zookeeper) or "",
    )
    node = LiveNode(cfg, opts, stop)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: node.kill())
    try:
        took_part = node.run()
    except SetupError as exc:
        raise UsageError(str(exc)) from None
    if not took_part:  # a standby whose primary never failed
        idle = {"mode": "live", "node": node.report, "episodes": [], "outcomes": {}}
        (cfg.out_dir / "report.json").write_text(json.dumps(idle, indent=2))
        return 0
    engine, core = node.engine, node.core
    assert engine is not None and core is not None  # it took part: it ran an engine
    backoff = engine.backoff
    assert backoff is not None  # a live node's engine always reconnects with one (live_node)
    episodes = [episode_row(ep, core) for ep in core.episodes.values()]
    outcomes = count_outcomes(episodes)
    report: dict[str, Any] = {
        "mode": "live",
        "config": str(cfg.path),
        "episodes": episodes,
        "outcomes": outcomes,
        "positions": {"engine": {k: v for k, v in core.positions.items() if v}},
        "anomalies": anomaly_summary(engine.anomalies),
        "alerts": [a.text for a in engine.alerts[:50]],
        "sessions_logged_on_at_end": node.logged_on_at_end,
        "sessions_never_logged_on": node.never_logged_on,
        "session_events": engine.session_event_summary(),
        "node": node.report,
        "fenced_attempts": sum(1 for row in engine.audit if row.stage == "fenced"),
        "reconnects": [{"t": t, "session": n, "action": a, "wait_s": w} for t, n, a, w in backoff.log],
    }
    report["provenance"] = provenance.provenance({"config": cfg.path})
    write_artifacts(RunResult(report, engine.messages, engine.audit, venue_of(core)), cfg.out_dir)
    print(
        f"xmc live: {len(episodes)} episodes {outcomes}; positions {report['positions']['engine']}; "
        f"artefacts in {cfg.out_dir}"
    )
    if node.report.get("lease_lost_at") is not None:  # stopped by its fence, not by the operator
        print(
            f"xmc live: node {node.opts.node} lost its lease and stopped trading (exit 4); a standby, if any, "
            f"trades on: start this node again (as --role primary it waits out its old grant)",
            file=sys.stderr,
        )
        return 4
    if node.never_logged_on:  # the desk must know: those venues were never traded, nor reconciled
        for venue in node.never_logged_on:
            target = next(s.target_comp_id for s in cfg.sessions if s.venue == venue)
            print(f"xmc live: session {venue} never logged on: {node.logon_failure(target)}", file=sys.stderr)
        return 3
    return 0


def _failover_args(args, node: str):
    """The lease (on etcd or ZooKeeper, --lease-service) and the replication address of a
    primary/standby node, from --etcd or --zookeeper and --peer."""

    def address(flag: str, value: str | None) -> tuple[str, int]:
        host, sep, port = (value or "").rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
            raise UsageError(f"{flag} {value}: write HOST:PORT (--role {args.role} needs it)")
        return host, int(port)

    peer = address("--peer", args.peer)
    zk = args.lease_service == "zookeeper"
    if zk and not 100 <= args.lease_session_ms <= 60000:
        raise UsageError(
            f"--lease-session-ms {args.lease_session_ms:g}: give 100..60000 ms (ZooKeeper allows "
            f"two of its ticks at least)"
        )
    ttl_ms = float(args.lease_session_ms) if zk else args.lease_ttl_s * 1e3
    if args.heartbeat_ms >= ttl_ms:  # the keep-alives ride on the heartbeat: one every TTL or more is too late
        raise UsageError(
            f"--heartbeat-ms {args.heartbeat_ms:g} is not shorter than the lease's "
            f"{'--lease-session-ms' if zk else '--lease-ttl-s'} ({ttl_ms:g} ms): the node would lose its lease "
            f"between keep-alives; give a heartbeat of at most a third of it"
        )
    if zk:
        return _zookeeper_lease(args, node, address("--zookeeper", args.zookeeper)), peer
    import etcd3gw

    from engine.shell.lease import EtcdLease, etcd_request_timeout

    etcd_host, etcd_port = address("--etcd", args.etcd)
    timeout = etcd_request_timeout(args.lease_ttl_s, args.heartbeat_ms / 1e3)
    client = etcd3gw.client(host=etcd_host, port=etcd_port, timeout=timeout)
    try:
        client.status()
    except Exception as exc:
        raise UsageError(
            f"--etcd {args.etcd}: etcd does not answer ({type(exc).__name__}); start it "
            f"(scripts/etcd) or fix the address"
        ) from None
    return EtcdLease(client, node, ttl=args.lease_ttl_s), peer


def _zookeeper_lease(args, node: str, where: tuple[str, int]):
    try:
        import kazoo  # noqa: F401
    except ImportError:
        raise UsageError("--lease-service zookeeper needs kazoo: pip install kazoo (scripts/bootstrap does)") from None
    from engine.shell.lease import ZooKeeperLease, zookeeper_client

    timeout = args.lease_session_ms / 1e3
    client = zookeeper_client(f"{where[0]}:{where[1]}", timeout)
    try:
        client.start(timeout=5)
    except Exception as exc:
        raise UsageError(
            f"--zookeeper {args.zookeeper}: ZooKeeper does not answer ({type(exc).__name__}); start "
            f"it or fix the address"
        ) from None
    lease = ZooKeeperLease(client, node, timeout)
    granted = lease.granted
    if granted is not None and abs(granted - timeout) > 5e-4:
        print(
            f"xmc live: ZooKeeper granted a session timeout of {granted * 1e3:g} ms, not the {timeout * 1e3:g} ms "
            f"of --lease-session-ms (its minSessionTimeout/maxSessionTimeout): the fence counts on "
            f"{min(granted, timeout) * 1e3:g} ms and a dead holder's lease ends {granted * 1e3:g} ms after its "
            f"last word",
            file=sys.stderr,
            flush=True,
        )
    return lease


def cmd_run(args) -> int:
    from simulator import runner, scenario

    sc = scenario.load(args.scenario)
    if args.print_scenario:
        doc, _ = scenario.read_document(Path(args.scenario))
        print(f"# {args.scenario}, bases merged ({', '.join(str(f) for f in sc.files)})")
        print(scenario.to_toml(doc).lstrip("\n"), end="")
        return 0
    if args.out:
        writable_dir(args.out, "--out")
    duration = sc.duration if args.duration is None else args.duration
    if not 0 < duration <= MAX_DURATION_S:
        raise UsageError(f"--duration {duration:g}: give seconds in (0, {MAX_DURATION_S:g}]")
    if args.mode == "wire":
        from simulator import wire

        venues_down = 1.0 if args.venues_down is None else args.venues_down
        seed = sc.seed if args.seed is None else args.seed
        try:
            restart = None
            if args.kill_venues_at is not None:
                if not 0 < args.kill_venues_at < duration or venues_down <= 0:
                    raise UsageError(
                        f"--kill-venues-at {args.kill_venues_at} --venues-down {venues_down}: "
                        f"kill inside the run (0 < S < {duration:g}) and stay down > 0 s"
                    )
                restart = (args.kill_venues_at, venues_down)
            rep = wire.run_wire(sc, seed, duration, Path(args.out) if args.out else None, restart, args.link_latency)
        except RuntimeError as exc:
            print(f"xmc: wire run failed: {exc}", file=sys.stderr)
            return 1
        for r in rep["venue_restarts"]:
            print(
                f"venues killed at {r['killed_at_s']:.3f} s, restarted at {r['restarted_at_s']:.3f} s, engine "
                f"logged on again at {r['logged_on_again_s']:.3f} s, reconciled at {r['reconciled_at_s']} s"
            )
        print(
            f"wire run of {sc.name} seed {seed}: {len(rep['episodes'])} episodes {rep['outcomes']}, "
            f"positions engine {rep['positions']['engine']} venues {rep['positions']['venues']}, "
            f"verdict {rep['verdict']}"
        )
        return 0 if rep["verdict"] == "pass" else 1
    wire_only = [
        flag
        for flag, given in (
            ("--link-latency", args.link_latency),
            ("--kill-venues-at", args.kill_venues_at is not None),
            ("--venues-down", args.venues_down is not None),
        )
        if given
    ]
    if wire_only:
        raise UsageError(f"{', '.join(wire_only)}: only for --mode wire; add --mode wire or leave them out")
    if args.duration is not None:  # the scenario run for the virtual seconds asked, as parity runs it
        sc = dataclasses.replace(sc, duration=args.duration)
    result = runner.run(sc, args.seed)
    if args.out:
        runner.write_artifacts(result, Path(args.out))
    rep = result.report
    _table([rep])
    if args.out:
        print(f"artefacts: {args.out}/report.json, messages.log, audit.parquet")
    return 0 if rep["verdict"] == "pass" else 1


def cmd_parity(args) -> int:

    from simulator import parity, runner, scenario, wire

    sc = scenario.load(args.scenario)
    if not 0 < args.duration <= MAX_DURATION_S:
        raise UsageError(f"--duration {args.duration:g}: give seconds in (0, {MAX_DURATION_S:g}]")
    for flag, value in (
        ("--signal-tolerance-ms", args.signal_tolerance_ms),
        ("--timing-tolerance-ms", args.timing_tolerance_ms),
    ):
        if value < 0:
            raise UsageError(f"{flag} {value}: give milliseconds >= 0")
    seed = sc.seed if args.seed is None else args.seed
    out = writable_dir(args.out, "--out")
    virtual = runner.run(dataclasses.replace(sc, duration=args.duration), seed)
    runner.write_artifacts(virtual, out / "virtual")
    try:
        wire_report = wire.run_wire(sc, seed, args.duration, out / "wire", link_latency=not args.no_link_latency)
    except RuntimeError as exc:
        print(f"xmc: wire run failed: {exc}", file=sys.stderr)
        return 1
    result = parity.compare(
        virtual.report, wire_report, parity.Tolerance(args.signal_tolerance_ms, args.timing_tolerance_ms)
    )
    (out / "parity.json").write_text(json.dumps(result, indent=2))
    print(parity.summary(result))
    print(f"artefacts: {out}/parity.json, {out}/virtual/, {out}/wire/")
    return 0 if result["identical"] else 1


def cmd_certify(args) -> int:
    from simulator import baseline as gate

    if not 1 <= args.seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds {args.seeds}: give a whole number in 1..{MAX_SEEDS:,}")
    _check_jobs(args)
    if args.accept_changes and not args.baseline:
        raise UsageError("--accept-changes: give the baseline to update with --baseline FILE")
    base = gate.load(args.baseline) if args.baseline else None
    if args.save_baseline:
        writable_file(args.save_baseline, "--save-baseline")
    files = _scenario_files(args.paths)
    return _certify(
        args,
        [(f, seed) for f in files for seed in range(1, args.seeds + 1)],
        base,
        Path(args.baseline) if args.baseline else None,
    )


def cmd_audit(args) -> int:
    from engine import audit_query as q

    if args.limit is not None and not 1 <= args.limit <= MAX_MAGNITUDE:  # beyond it polars overflows
        raise UsageError(f"--limit {args.limit}: give a whole number in 1..{MAX_MAGNITUDE:,.0f}")
    lookups = (("--decision", args.decision), ("--order", args.order), ("--episode", args.episode))
    for option, value in lookups:
        if value is not None and not value.strip():
            raise UsageError(f"{option} {value!r}: empty; give the id to look up (xmc audit PATH lists the decisions)")
    asked = next((option for option, value in lookups if value), None)
    list_only = [
        o
        for o, v in (
            ("--instrument", args.instrument),
            ("--venue", args.venue),
            ("--outcome", args.outcome),
            ("--from", args.start),
            ("--to", args.end),
            ("--limit", args.limit),
        )
        if v is not None
    ]
    if asked and list_only:
        raise UsageError(
            f"{', '.join(list_only)}: filter the list of decisions, not one {asked[2:]}; with {asked} only "
            f"--run and --seed apply (leave the others out, or drop {asked} to list)"
        )
    f = q.Filters(
        run=args.run,
        seed=args.seed,
        instrument=args.instrument,
        venue=args.venue,
        outcome=args.outcome,
        start=args.start,
        end=args.end,
    )
    try:
        f.check()
        lf = q.scan(args.path)
        if args.decision is not None:
            df = q.decision(lf, args.decision, f)
        elif args.order is not None:
            df = q.order(lf, args.order, f)
        elif args.episode is not None:
            df = q.episode(lf, args.episode, f)
        else:
            df = q.decisions(lf, f, args.limit)
    except q.AuditQueryError as exc:
        raise UsageError(str(exc)) from None
    print(q.render(df, args.json))
    wanted = args.decision or args.order or args.episode
    if wanted and df.is_empty():
        print(
            f"xmc audit: nothing in {args.path} for {wanted!r}"
            + (" with these filters" if args.run is not None or args.seed is not None else ""),
            file=sys.stderr,
        )
        return 1
    return 0


def _seconds(text: str) -> float:
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 7 * 86400:
        raise UsageError(f"--time {text}: give a duration such as 300, 90s, 10m or 1h (more than 0, at most a week)")
    return value


def cmd_explore(args) -> int:
    from simulator import explore

    if args.runs is not None and not 1 <= args.runs <= MAX_EXPLORE_RUNS:
        raise UsageError(f"--runs {args.runs}: give a whole number in 1..{MAX_EXPLORE_RUNS:,}")
    _check_jobs(args)
    if args.duration is not None and not 1.0 <= args.duration <= 86400:
        raise UsageError(f"--duration {args.duration}: give virtual seconds in [1, 86400]")
    if args.shrink_budget < 0:
        raise UsageError(f"--shrink-budget {args.shrink_budget}: give a whole number >= 0")
    max_seconds = None if args.runs is not None else _seconds("5m" if args.time is None else args.time)
    problems, bases = [], []
    for path in _scenario_files(args.bases):
        try:
            bases.append(explore.load_base(path, args.duration))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise UsageError("\n".join(problems))
    out = writable_dir(args.out, "--out")
    mapper: explore.RayMapper | explore.ProcessMapper | None
    if args.ray is not None:
        try:
            mapper = explore.RayMapper(args.ray or None, args.jobs)
        except RuntimeError as exc:
            raise UsageError(f"--ray: {exc}") from None
    else:
        mapper = explore.ProcessMapper(args.jobs) if args.jobs > 1 else None
    run = mapper or explore.serial_mapper()

    def progress(state, elapsed: float) -> None:
        print(
            f"[{elapsed:6.0f} s] {state.runs} runs, {len(state.seen)} reached, corpus {len(state.corpus)}, "
            f"{len(state.failures)} failure signature(s)",
            file=sys.stderr,
            flush=True,
        )

    try:
        started = time.monotonic()
        state = explore.search(bases, run, args.seed, args.runs, max_seconds, progress)
        by_path = {str(b.path): b for b in bases}
        for n, failure in enumerate(state.failures.values(), 1):
            base = by_path[failure.base]
            if not state.interrupted:  # after a Ctrl-C (in the search or here) failures are written as found
                try:
                    explore.shrink(base, failure, run, args.shrink_budget)
                except KeyboardInterrupt:
                    state.interrupted = True
            explore.write_failure(base, failure, out / "failures", n)
        data = explore.summary(state, bases, time.monotonic() - started)
    finally:
        if mapper is not None:
            mapper.close()
    explore.write_summary(data, out)
    print(explore.table(data))
    print(f"summary: {out}/explore.json")
    if data["failures"]:
        return 1
    return 130 if state.interrupted else 0


def cmd_regress(args) -> int:
    from simulator import baseline as gate

    _check_jobs(args)  # the arguments before any file is read
    base = gate.load(args.baseline)
    jobs = []
    for name, entry in base["scenarios"].items():
        path = Path(args.baseline).parent / entry["file"]  # recorded relative to the baseline's directory
        if path_kind(path) == "missing":
            raise UsageError(
                f"{args.baseline}: scenarios.{name}.file {entry['file']} does not exist; restore it, "
                f"or record the baseline again (xmc certify --save-baseline)"
            )
        jobs += [(path, int(seed)) for seed in sorted(entry["seeds"], key=int)]
    args.junit = args.html = args.html_run = None
    args.save_baseline = None
    return _certify(args, jobs, base, Path(args.baseline))


def local_jobs_limit() -> int:
    """The most worker processes a command starts on this machine: 8 per core. Each is a Python process
    with its own quickfix and dictionaries (~150 MB); thousands would exhaust memory before any run."""
    return 8 * (os.cpu_count() or 1)


def _check_jobs(args) -> None:
    """-j: at least 1; on this machine (no --ray) at most `local_jobs_limit()`."""
    if args.jobs < 1:
        raise UsageError(f"-j {args.jobs}: give a whole number of processes >= 1")
    if getattr(args, "ray", None) is None and args.jobs > local_jobs_limit():
        cluster = "; for more, run on a Ray cluster with --ray ADDRESS" if hasattr(args, "ray") else ""
        raise UsageError(
            f"-j {args.jobs}: give at most {local_jobs_limit()} processes on this machine (8 per core){cluster}"
        )


def _certify(args, runs: list[tuple[Path, int]], base: dict | None, base_path: Path | None) -> int:
    """Run scenario x seed pairs, print the table, write report.json (and JUnit, baselines); exit code."""
    from simulator import baseline as gate
    from simulator import scenario

    _check_jobs(args)
    # the same file named twice (a path and a directory holding it) runs once per seed
    runs = list({(f.resolve(), seed): (f, seed) for f, seed in runs}.values())
    files = list(dict.fromkeys(f for f, _ in runs))
    problems = []
    # a run is keyed by its scenario's name (report.json, the baseline, JUnit) and its artefacts by the
    # file's stem (runs/<stem>-s<seed>): two files sharing either would overwrite each other's runs
    names: dict[str, Path] = {}
    stems: dict[str, Path] = {}
    for f in files:  # validate everything before running anything
        try:
            name = scenario.load(f).name
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        for key, seen, what, fix in (
            (name, names, "scenario name", "give one another [scenario] name"),
            (f.stem, stems, "file name", "rename one of the files"),
        ):
            if key in seen:
                problems.append(
                    f"{f}: its {what} {key!r} is also {seen[key]}'s; their runs would overwrite each other's "
                    f"results; {fix}"
                )
            seen[key] = f
    if problems:
        raise UsageError("\n".join(problems))
    out = writable_dir(args.out, "--out")
    if args.junit:
        writable_file(args.junit, "--junit")
    if args.html:
        writable_file(args.html, "--html")
    if base_path is not None and args.accept_changes:
        writable_file(base_path, "--baseline")
    calibration = gate.calibrate() if base is not None or args.save_baseline else None
    jobs = [(str(f), seed, str(out / "runs" / f"{f.stem}-s{seed}")) for f, seed in runs]
    reports: list[dict] = []
    progress = _Progress(jobs, 1 if args.jobs == 1 else min(args.jobs, len(jobs)))
    if getattr(args, "ray", None) is not None:
        from simulator.cluster import RayPool

        try:
            pool = RayPool(args.ray or None, args.jobs)
        except RuntimeError as exc:
            raise UsageError(f"--ray: {exc}") from None
        try:
            reports = pool.map(_run_one, jobs)
        finally:
            pool.close()
        for report in reports:
            progress.tick(report)
    elif args.jobs == 1:
        for job in jobs:
            reports.append(_run_one(*job))
            progress.tick(reports[-1])
    else:
        from simulator.workers import local_pool

        with local_pool(min(args.jobs, len(jobs))) as executor:
            futures = [executor.submit(_run_one, *job) for job in jobs]
            for fut in futures:
                reports.append(fut.result())
                progress.tick(reports[-1])
    print(file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    failed = [r for r in reports if r["verdict"] != "pass"]
    aggregate = _aggregate(reports)
    summary = {
        "runs": reports,
        "scenarios": len(files),
        "seeds": len({s for _, s in runs}),
        "aggregate": aggregate,
        "verdict": "pass" if not failed else "fail",
        "failed": [r["replay"] for r in failed],
    }
    inputs: dict[str, str | Path] = {f"scenario:{f}": f for f in files}
    if base_path is not None:
        inputs["baseline"] = base_path
    summary["provenance"] = provenance.provenance(inputs)
    comparison = None
    if base is not None:
        assert calibration is not None  # measured whenever there is a baseline
        comparison = gate.compare(base, reports, calibration, args.accept_changes, names)
        summary["regression"] = {
            "verdict": "fail" if comparison.regressions else "pass",
            "rows": [vars(r) for r in comparison.rows],
        }
    (out / "report.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    if args.junit:
        from engine.report import junit_xml

        Path(args.junit).write_text(junit_xml(reports))
    if args.html:
        from simulator.html_report import render

        Path(args.html).write_text(render(summary, out, args.html_run), encoding="utf-8")
    _table(reports)
    for r in failed:
        bad = [x for x in r["expectations"] if x["verdict"] != "pass"]
        for n, v in r["invariants"].items():
            if v["status"] == "fail":
                print(
                    f"INVARIANT #{n} {v['name']} violated in {r['scenario']} seed {r['seed']}: "
                    f"decision {v['first'].get('decision_id') or '-'} at t={v['first'].get('t', 0):.6f} s: "
                    f"{v['first'].get('detail')}"
                )
        print(
            f"FAIL {r['scenario']} seed {r['seed']}: "
            + "; ".join(f"{x['key']} expected {x['expected']} got {x['actual']}" for x in bad)
            + f"  (replay: {r['replay']})"
        )
    for budget, rep in aggregate["repaired_by_budget"].items():  # shares only mean something per budget
        print(
            f"legged episodes repaired (BALANCED/UNWOUND) within a {budget} ms legged-time budget: "
            f"{rep['successes']}/{rep['n']} = {_pct(rep['rate'])}, Wilson 95% [{_pct(rep['low'])}, {_pct(rep['high'])}]; "
            f"legged time p50 {_fmt(rep['legged_ms']['p50'])} ms, p99 {_fmt(rep['legged_ms']['p99'])} ms "
            f"({rep['scenarios']} scenario(s))"
        )
    fo = aggregate["failover"]
    if fo["count"]:
        print(
            f"failovers: {fo['count']}; from the crash (ms) p50/p99: detected {_fmt(fo['detect_ms']['p50'])}/"
            f"{_fmt(fo['detect_ms']['p99'])}, standby active {_fmt(fo['active_ms']['p50'])}/"
            f"{_fmt(fo['active_ms']['p99'])}, reconciled (new risk allowed) {_fmt(fo['reconciled_ms']['p50'])}/"
            f"{_fmt(fo['reconciled_ms']['p99'])}"
        )
    print(f"safety-invariant violations: {aggregate['invariant_violations']}")
    print(f"{len(reports) - len(failed)}/{len(reports)} runs pass; report: {out}/report.json")
    if args.save_baseline and not failed:
        assert calibration is not None  # measured for --save-baseline
        Path(args.save_baseline).write_text(
            json.dumps(
                gate.build(reports, names, calibration, Path(args.save_baseline).parent), indent=1, sort_keys=True
            )
            + "\n"
        )
        print(f"baseline written: {args.save_baseline} ({len(reports)} runs)")
    elif args.save_baseline:
        print(f"baseline NOT written: {len(failed)} run(s) failed; a baseline records a passing certification")
    if comparison is None:
        return 0 if not failed else 1
    print()
    print(gate.table(comparison))
    if comparison.regressions or failed:
        return 1
    if args.accept_changes:
        assert base is not None and base_path is not None and calibration is not None  # there was a comparison
        new = gate.build(reports, names, calibration, base_path.parent, base["tolerances"], base["wall_margin"])
        base_path.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
        print(f"baseline updated: {base_path}")
    return 0


class _Progress:
    """Progress of a certification: on a terminal one bar that names the runs in flight and an ETA;
    otherwise (CI logs) one line per finished run with its verdict and wall time."""

    def __init__(self, jobs: list[tuple], workers: int, tty: bool | None = None):
        self.names = [f"{Path(job[0]).stem} s{job[1]}" for job in jobs]
        self.workers = max(1, workers)
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.started = time.monotonic()
        self.done = 0

    def line(self, report: dict | None = None) -> str:
        total = len(self.names)
        if not self.tty:
            text = ""
            if report is not None:
                text = (
                    f"[{self.done}/{total}] {report['scenario']} seed {report['seed']}: {report['verdict']} "
                    f"({report.get('wall', {}).get('run_s', 0.0):.1f} s)"
                )
            return text + (f"\n{self.done}/{total} runs done" if self.done == total else "")
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (total - self.done) if self.done else None
        running = self.names[self.done : self.done + self.workers]
        filled = 30 * self.done // total
        width = shutil.get_terminal_size((120, 20)).columns
        text = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{total} runs"
            + (f", ETA {int(eta) // 60}m{int(eta) % 60:02d}s" if eta is not None and self.done < total else "")
            + (f"; running: {', '.join(running)}" if running else "")
        )
        return "\r" + text[: width - 1].ljust(width - 1)

    def tick(self, report: dict | None = None) -> None:
        self.done += 1
        print(self.line(report), end="" if self.tty else "\n", file=sys.stderr, flush=True)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _table(reports: list[dict]) -> None:
    head = (
        f"{'scenario':<30} {'seed':>4} {'eps':>4} {'BAL':>4} {'UNW':>4} {'ESC':>4} {'ABT':>4} {'acks p99':>8} "
        f"{'legd':>4} {'repaired':>8} {'wilson':>6} {'leg p99':>8} {'inv':>5}  {'verdict':<7} run_hash"
    )
    print(head)
    print("-" * len(head))
    for r in reports:
        o = r["outcomes"]
        rec = r["recovery"]["repaired_in_budget"]
        failed = [k for k, v in r["invariants"].items() if v["status"] == "fail"]
        inv = "ok" if not failed else "#" + ",".join(failed)
        print(
            f"{r['scenario'][:30]:<30} {r['seed']:>4} {len(r['episodes']):>4} {o.get('BALANCED', 0):>4} "
            f"{o.get('UNWOUND', 0):>4} {o.get('ESCALATED', 0):>4} {o.get('ABORTED', 0):>4} "
            f"{_fmt(r['timings']['signal_to_acks_ms']['p99']):>8} {r['recovery']['legged']:>4} "
            f"{_pct(rec['rate']):>8} {_pct(rec['low']):>6} {_fmt(r['timings']['legged_ms']['p99']):>8} {inv:>5}  "
            f"{r['verdict']:<7} {r['run_hash'][:12]}"
        )
    print(
        "eps episodes; BAL/UNW/ESC/ABT balanced, unwound, escalated, aborted; acks p99 signal to both "
        "acknowledgements (ms); legd legged episodes; repaired share of them balanced or unwound within the "
        "legged-time budget, wilson its 95% lower bound; leg p99 legged time (ms); inv violated invariants "
        "(numbers: the engine's state, W: on the wire)"
    )


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _aggregate(reports: list[dict]) -> dict:
    """Recovery over every run: legged episodes repaired in budget, with the Wilson interval."""
    from engine.report import distribution, wilson

    legged = sum(r["recovery"]["legged"] for r in reports)
    ok = sum(r["recovery"]["repaired_in_budget"]["successes"] for r in reports)
    decisions = [
        e["recovery"]["legged_ms"]
        for r in reports
        for e in r["episodes"]
        if e["recovery"] and e["recovery"]["legged_ms"] is not None
    ]
    violations = sum(1 for r in reports for v in r["invariants"].values() if v["status"] == "fail")
    failovers = [
        f for r in reports for f in r.get("failover", {}).get("failovers", []) if f.get("active_ms") is not None
    ]
    timings = {
        k: distribution([f[k] for f in failovers if f.get(k) is not None])
        for k in ("detect_ms", "active_ms", "reconciled_ms", "first_new_order_ms")
    }
    by_budget: dict[str, dict] = {}
    for budget in sorted(
        {r["recovery"].get("legged_budget_ms") for r in reports if r["recovery"]["legged"]},
        key=lambda b: (b is None, b or 0),
    ):
        runs = [r for r in reports if r["recovery"]["legged"] and r["recovery"].get("legged_budget_ms") == budget]
        name = "unknown" if budget is None else f"{budget:g}"
        by_budget[name] = {
            **wilson(
                sum(r["recovery"]["repaired_in_budget"]["successes"] for r in runs),
                sum(r["recovery"]["legged"] for r in runs),
            ),
            "legged_ms": distribution(
                [
                    e["recovery"]["legged_ms"]
                    for r in runs
                    for e in r["episodes"]
                    if e["recovery"] and e["recovery"]["legged_ms"] is not None
                ]
            ),
            "scenarios": len({r["scenario"] for r in runs}),
        }
    return {
        "repaired_in_budget": wilson(ok, legged),
        "repaired_by_budget": by_budget,
        "legged_ms": distribution(decisions),
        "invariant_violations": violations,
        "failover": {"count": len(failovers), **timings},
    }


def main(argv: list[str] | None = None) -> int:
    provenance.COMMAND = ["xmc", *(sys.argv[1:] if argv is None else argv)]
    args = _parser().parse_args(argv)
    try:
        return {
            "run": cmd_run,
            "parity": cmd_parity,
            "certify": cmd_certify,
            "regress": cmd_regress,
            "audit": cmd_audit,
            "explore": cmd_explore,
            "venue": cmd_venue,
            "live": cmd_live,
        }[args.command](args)
    except (ConfigError, DictionaryError, UsageError, UnusablePath) as exc:
        print(f"xmc: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what the command cleans up on the way out is done (finally)
        print("xmc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
