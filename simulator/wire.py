"""The scenario's venues as real FIX acceptors (quickfix), paced in real time on the same venue model.

The order books, matching, background liquidity, market data and the scenario's order faults are
the virtual-time venue's own code; simpy's RealtimeEnvironment paces them on the wall clock, and
the session layer is quickfix's (logon, sequence numbers, resend, gap fill). quickfix callbacks run
on its threads and only queue messages; the simpy thread applies them.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import quickfix as fix
import simpy.rt

from engine.config import ConfigError, Problem
from engine.core.events import AuditRow
from engine.fix import dictionary
from engine.fix.codec import FixParseError, Parsed, msg_type_of
from engine.shell.live import mask
from engine.shell.session_events import SessionEvents
from simulator.faults import FAILOVER_KINDS, NODE_KINDS, FaultPlan
from simulator.ports import reserve
from simulator.prices import PriceModelError, PriceProcess, market, price_problem
from simulator.relay import FaultRelay
from simulator.rng import fork
from simulator.scenario import Scenario
from simulator.transport import WireLog
from simulator.venue import ENGINE_COMP_ID, ClientOrder, Member, Venue
from simulator.venue_state import VenueState

LINK_FAULTS = ("disconnect", "drop", "latency_spike")
# faults of the engine's own process (crash, journal, standby pair): virtual time only; a wire run
# lists them in report.json (`faults_virtual_only`) and says so, never skips them silently
VIRTUAL_ONLY = NODE_KINDS + FAILOVER_KINDS


def _restart_timings(
    restarts: list[dict], audit: Sequence[AuditRow], logon_at: dict[str, float], open_at: float
) -> list:
    """Per venue restart: when the engine was logged on again and reconciled (every order it had
    working there answered by status), on the market's clock."""
    out = []
    for r in restarts:
        killed = r["killed_at_s"] + open_at
        reconciled = [row.ts for row in audit if row.stage == "reconciled" and row.ts > killed]
        out.append(
            dict(
                r,
                logged_on_again_s=round(max(logon_at.values()) - open_at, 6),
                reconciled_at_s=round(min(reconciled) - open_at, 6) if reconciled else None,
            )
        )
    return out


class WireSession:
    """The venue's end of a quickfix session, with the interface the venue model expects."""

    def __init__(self, codec, log: WireLog):
        self.codec = codec
        self.log = log
        self.session_id: fix.SessionID | None = None
        self.connected = False  # the venue model's view (simulation thread)
        self.quickfix_up = False  # quickfix's view, updated on its threads
        self.queued: list = []

    def send(self, msg) -> None:
        if self.session_id is None or not self.connected:
            self.queued.append(msg)
            return
        fix.Session.sendToTarget(self.codec.build(msg), self.session_id)

    def reject(self, err: FixParseError) -> None:
        """The venue model refuses a message: a session Reject (3) or BusinessMessageReject (j) sent through
        quickfix, as the virtual-time session sends it (a message quickfix's own validation refuses is
        answered by quickfix before the model sees it)."""
        answer = self.codec.reject_draft(err)
        if answer is not None:
            self.send(answer)

    def skip(self) -> None:
        """A market-data gap: advance the real sequence number so the engine's quickfix sees a gap."""
        if self.session_id is not None:
            session = fix.Session.lookupSession(self.session_id)
            session.setNextSenderMsgSeqNum(session.getExpectedSenderNum() + 1)

    def drop(self) -> None:
        """The session is down in the venue model's view (quickfix keeps its own resend state)."""
        self.connected = False

    def reconnect(self) -> None:
        self.connected = True
        queued, self.queued = self.queued, []
        for msg in queued:
            self.send(msg)


def _served(member: Member) -> WireSession:
    """A member's session as quickfix serves it here."""
    session = member.session
    assert isinstance(session, WireSession), f"{member.name}'s session is not served by quickfix"
    return session


class WireVenues(fix.Application):
    """Every venue of a scenario behind one quickfix ThreadedSocketAcceptor, one port per venue; on
    each port one session per client CompID (the engine's, XMC, by default), all trading in the same
    books.

    Threaded, not quickfix's SocketAcceptor: that one's stop() closes its server from the caller's
    thread while its own thread, woken at the same moment, deletes it (a use-after-free in
    SocketServer::close, seen under gdb as a SIGSEGV in about one stop in ten under load). The
    threaded acceptor's stop closes the sockets and joins the threads that own them."""

    def __init__(
        self,
        sc: Scenario,
        seed: int,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        password: str = "",
        open_on_logon: bool = False,
        state_dir: Path | None = None,
        clients: tuple[str, ...] = (ENGINE_COMP_ID,),
    ):
        super().__init__()
        self.clients = tuple(clients)
        # with open_on_logon the market (prices, liquidity, clock) starts only once every venue's
        # session is logged on, as in virtual time where sessions log on at t=0: the parity check
        # compares the two runs on one clock
        self.open_on_logon = open_on_logon
        self.opened_at: float | None = None
        self.password = password  # when set, a Logon must carry it (Password 554) or is refused
        self.refused_logons: list[str] = []
        self.session_answers: list[str] = []  # every session Reject (3) and Logout (5) sent with a reason
        self.session_events = SessionEvents()  # quickfix's own events: garbled input, unknown sessions, ...
        self.cuts: list[dict] = []  # disconnect_on_order faults carried out: when, which session, for how long
        self._cut_policy: dict[int, bool | None] = {}  # id(member) -> the cutting fault's cancel_on_disconnect
        self._cut_lost: dict[int, bool] = {}  # id(member) -> the cutting fault's reports_lost
        self._down_until: dict[int, float] = {}  # id(member) -> wall time its logons are refused until
        self.sc = sc
        self.seed = seed
        self.host = host
        # set when the simulation thread stops before its time: the scenario's prices became no price
        self.failed: ConfigError | None = None
        self.ended = threading.Event()  # the simulation thread has stopped (its time is up, or failed)
        # ports given by the caller are held by the caller (run_wire keeps them across a venue restart);
        # otherwise the OS assigns them to sockets held here until stop() (simulator.ports)
        self._held = {} if ports else reserve(sc.venues)
        self.ports = ports or {name: held.port for name, held in self._held.items()}
        self.log = WireLog()
        self.inbox: queue.Queue = queue.Queue()
        self.env = simpy.rt.RealtimeEnvironment(factor=1.0, strict=False)
        # link faults are the engine-side relay's (simulator.relay), not the venue's
        faults = self.faults = FaultPlan(
            [dataclasses.replace(f) for f in sc.faults if f.kind not in LINK_FAULTS], lambda name: fork(seed, name)
        )
        self.venues: dict[str, Venue] = {}
        self.by_comp: dict[str, str] = {}
        for name, vcfg in sc.venues.items():
            insts = [i for i in sc.engine.instruments.values() if i.venue == name]
            venue = Venue(self.env, vcfg, insts, fork(seed, f"venue:{name}"), self.log)
            for client in dict.fromkeys((ENGINE_COMP_ID, *self.clients)):  # the engine's is kept even if not served
                member = venue.members.get(client)
                if member is None:
                    member = venue.add_member(client, lambda codec: WireSession(codec, self.log))
                else:  # the engine's, made for virtual time: served by quickfix here
                    member.session = WireSession(member.codec, self.log)
            venue.faults = faults
            venue.on_disconnect_fault = lambda fault, member, v=venue: self._cut(v, member, fault)
            self.venues[name] = venue
            self.by_comp[vcfg.comp_id] = name
        try:
            self.prices = PriceProcess(sc.prices, fork(seed, "prices"))
        except PriceModelError as exc:
            raise price_problem(str(sc.path), exc, 0.0, seed) from None
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.acceptor: fix.ThreadedSocketAcceptor | None = None
        self._thread: threading.Thread | None = None
        # with a state directory the venues survive their process: quickfix's FileStore (sequence
        # numbers, sent messages) and the engine's orders and fills (simulator.venue_state)
        self.state = None
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._store = state_dir / "store"
            self.state = VenueState(state_dir / "venues.jsonl")
            for venue in self.venues.values():
                for co in self.state.restore(venue, ClientOrder):
                    co.status = "4"  # resting when the venue died: cancelled; the engine hears it on logon
                    venue._exec(co, "4", "4")
                venue.recorder = self.state
        else:  # the sessions' store lives as long as the venues: removed when they stop (see remove_store)
            self._store = Path(tempfile.mkdtemp(prefix="xmc-venue-store-"))
        self._temporary_store = state_dir is None

    def settings(self) -> str:
        lines = [
            "[DEFAULT]",
            "ConnectionType=acceptor",
            f"FileStorePath={self._store}",
            "StartTime=00:00:00",
            "EndTime=00:00:00",
            "UseDataDictionary=Y",
            "ResetOnLogon=N",
            "ValidateUserDefinedFields=N",
            "AllowUnknownMsgFields=Y",
            "SocketNodelay=Y",
        ]
        # quickfix 1.16 has no setting for the address to listen on (SocketAcceptHost is not one of its
        # settings: its acceptor binds every interface): the sessions take connections from `host` only,
        # unless that is every address
        if self.host not in ("0.0.0.0", ""):
            lines.append(f"AllowedRemoteAddresses={self.host}")
        for name, vcfg in self.sc.venues.items():
            for client in self.clients:
                lines += [
                    "",
                    "[SESSION]",
                    "BeginString=FIX.4.4",
                    f"SenderCompID={vcfg.comp_id}",
                    f"TargetCompID={client}",
                    f"SocketAcceptPort={self.ports[name]}",
                    f"DataDictionary={dictionary.load(vcfg.dictionary).path}",
                ]
        return "\n".join(lines) + "\n"

    # ---- quickfix callbacks --------------------------------------------------------------------
    def _venue(self, session_id) -> Venue:
        return self.venues[self.by_comp[session_id.getSenderCompID().getValue()]]

    def _member(self, session_id) -> tuple[Venue, Member]:
        venue = self._venue(session_id)
        return venue, venue.members[session_id.getTargetCompID().getValue()]

    def onCreate(self, session_id):
        _served(self._member(session_id)[1]).session_id = session_id

    def onLogon(self, session_id):
        venue, member = self._member(session_id)
        _served(member).quickfix_up = True
        self.inbox.put(("logon", venue, member))

    def onLogout(self, session_id):
        venue, member = self._member(session_id)
        _served(member).quickfix_up = False
        self.inbox.put(("logout", venue, member))
        if id(member) in self._down_until:  # cut by a fault: take logons again, to refuse them until it ends
            fix.Session.lookupSession(session_id).logon()

    def _cut(self, venue: Venue, member: Member, fault) -> None:
        """disconnect_on_order over the wire (simulation thread): from this order on the member's
        reports are held; quickfix logs the session out and refuses its logons for the fault's
        `delay`, then takes them again. The held reports follow the next logon; resting orders are
        cancelled as the fault (or else the venue) says."""
        served = _served(member)
        session = fix.Session.lookupSession(served.session_id) if served.session_id else None
        if session is None or not served.quickfix_up:
            return
        member.session.connected = False
        self._cut_policy[id(member)] = fault.cancel_on_disconnect
        self._cut_lost[id(member)] = fault.reports_lost
        self._down_until[id(member)] = time.time() + fault.delay  # fromAdmin refuses its logons till then
        session.logout("disconnect fault")
        self.cuts.append(
            {"venue": venue.cfg.name, "client": member.name, "at_s": round(self.env.now, 6), "down_s": fault.delay}
        )

    def _sessions_up(self) -> list[bool]:
        return [_served(v.members[c]).quickfix_up for v in self.venues.values() for c in self.clients]

    def toAdmin(self, message, session_id):
        raw = message.toString()
        self._wire(raw)
        msg_type = message.getHeader().getField(35)
        if msg_type in ("3", "5") and message.isSetField(58):  # a session Reject or a Logout with its reason
            self.session_answers.append(
                f"{session_id.toString()} {'Reject' if msg_type == '3' else 'Logout'}: {message.getField(58)}"
            )

    def fromAdmin(self, message, session_id):
        raw = message.toString()
        self._wire(mask(raw))
        if message.getHeader().getField(35) == "A":
            _, member = self._member(session_id)
            until = self._down_until.get(id(member))
            if until is not None and time.time() < until:
                raise fix.RejectLogon(f"disconnect fault: this session is down for {until - time.time():.1f} s more")
            self._down_until.pop(id(member), None)
        if self.password and message.getHeader().getField(35) == "A":
            given = message.getField(554) if message.isSetField(554) else ""
            if given != self.password:
                who = message.getField(553) if message.isSetField(553) else "?"
                self.refused_logons.append(f"{session_id.toString()} user {who}")
                print(
                    f"xmc venue: logon refused for {session_id.toString()} (user {who}): wrong password",
                    file=sys.stderr,
                    flush=True,
                )
                raise fix.RejectLogon("invalid username or password")

    def toApp(self, message, session_id):
        self._wire(message.toString())

    def fromApp(self, message, session_id):
        raw = message.toString()
        self._wire(raw)
        self.inbox.put(("fix", *self._member(session_id), raw))

    def _wire(self, raw: str) -> None:
        with self._lock:
            self.messages.append(raw)

    # ---- the simulation thread -----------------------------------------------------------------
    def _market(self):
        return market(self.env, self.prices, list(self.venues.values()), self.sc.prices.step, self.faults.faults)

    def _pump(self):
        while not self._stop.is_set():
            yield self.env.timeout(0.0005)
            while True:
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    break
                kind, venue, member = item[0], item[1], item[2]
                if kind == "logon":
                    member.logged_on = True
                    member.forget_held()
                    member.session.reconnect()
                    venue.refresh(member)  # where the market is now, once, as a virtual-time venue does
                elif kind == "logout":
                    # cancel-on-disconnect as the cutting fault says, else the venue's; reports wait for a logon
                    venue.disconnect(
                        self._cut_policy.pop(id(member), None),
                        member=member,
                        reports_lost=self._cut_lost.pop(id(member), False),
                    )
                    # no backlog of quotes for a session that is down (publish skips it; none queued before)
                    member.session.queued = [m for m in member.session.queued if msg_type_of(m) not in ("W", "X")]
                else:
                    venue._apply(Parsed(item[3]), member)
                    if venue.cfg.md_interval == 0 and venue.dirty:
                        venue.publish()

    def _run(self, until: float) -> None:
        if self.open_on_logon:
            while not self._stop.is_set() and not all(self._sessions_up()):
                self._stop.wait(0.001)
            self.env.sync()
        self.opened_at = time.time()  # wall time of the venues' clock 0 (same machine: the engine's clock too)
        for venue in self.venues.values():  # TransactTime on the same clock as quickfix's SendingTime
            venue.clock_base = self.opened_at - self.env.now
        self.env.process(self._market())
        self.env.process(self._pump())
        try:
            while not self._stop.is_set() and self.env.now < until:  # in slices, so that stop() is prompt
                self.env.run(until=min(self.env.now + 0.05, until))
        except PriceModelError as exc:  # the scenario's file is at fault: said by whoever waits (serve)
            self.failed = price_problem(str(self.sc.path), exc, self.env.now, self.seed)
        finally:
            self.ended.set()

    def start(self, until: float, attempts: int = 50) -> dict[str, int]:
        """Listen (one port per venue) and start the venues' clock. The ports are held for these venues
        (simulator.ports), so nothing else can take them; a venue started again on the ports of one just
        killed retries for a moment while the OS closes the dead process's sockets."""
        for attempt in range(attempts):
            ss = fix.SessionSettings()
            ss.setFromString(self.settings())
            acceptor = fix.ThreadedSocketAcceptor(self, fix.FileStoreFactory(ss), ss, self.session_events)
            try:
                acceptor.start()
                break
            except fix.RuntimeError:
                if attempt == attempts - 1:
                    raise
                self._stop.wait(0.1)
        self.acceptor = acceptor
        self._thread = threading.Thread(target=self._run, args=(until,), name="xmc-venues", daemon=True)
        self._thread.start()
        return self.ports

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def halt(self) -> None:
        """Stop the simulation thread: no more market data, matching or messages."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def stop(self) -> None:
        """Stop the simulation thread first (nothing may send into a session being torn down), then
        quickfix's acceptor."""
        self.halt()
        if self.acceptor is not None:
            # let peers that are logging out finish first: the threaded acceptor's stop spins (for
            # up to 5 s, a core busy) while any session is still logged on
            deadline = threading.Event()
            for _ in range(200):
                if not any(self._sessions_up()):
                    break
                deadline.wait(0.01)
            self.acceptor.stop(True)
            self.acceptor = None
        for held in self._held.values():
            held.close()
        self.remove_store()

    def remove_store(self) -> None:
        """Delete the sessions' store when it is a temporary one of these venues (no state_dir): it is
        of no use once they have stopped. A state_dir's store is kept for the next start."""
        if self._temporary_store:
            shutil.rmtree(self._store, ignore_errors=True)

    def positions(self) -> dict[str, float]:
        """The engine's (XMC's) signed lots per instrument, from the venues' own fills."""
        return self.client_positions().get(ENGINE_COMP_ID, {})

    def client_positions(self) -> dict[str, dict[str, float]]:
        """Every client's signed lots per instrument, from the venues' own fills."""
        out: dict[str, dict[str, float]] = {}
        for v in self.venues.values():
            for name, member in v.members.items():
                mine = out.setdefault(name, {})
                for inst, lots in member.positions(v.instruments).items():
                    mine[inst] = mine.get(inst, 0.0) + lots
        return out

    def write_state(self, path: Path) -> None:
        path.write_text(json.dumps({"positions": self.positions(), "ports": self.ports}))


def serve(
    sc: Scenario,
    seed: int,
    host: str,
    duration: float,
    announce,
    until_closed,
    password: str = "",
    open_on_logon: bool = False,
    ports: dict[str, int] | None = None,
    state_dir: Path | None = None,
    clients: tuple[str, ...] = (ENGINE_COMP_ID,),
) -> dict:
    """`xmc venue`: run the venues until `duration` passes or `until_closed(ended)` returns; announce ports
    first. `ended` is set when the venues' simulation stops by itself, so the wait can end then too; a
    scenario whose prices the model cannot make raises its ConfigError here (venues halted, store gone)."""
    venues = WireVenues(
        sc,
        seed,
        host,
        ports=ports,
        password=password,
        open_on_logon=open_on_logon,
        state_dir=state_dir,
        clients=clients,
    )
    ports = venues.start(until=duration)
    announce(
        {
            "ports": ports,
            "host": host,
            "comp_ids": {n: v.comp_id for n, v in sc.venues.items()},
            "clients": list(venues.clients),
        }
    )
    until_closed(venues.ended)
    # The caller ends the process right after recording this (see cmd_venue) and the OS closes the
    # sockets: a venue process killed by its test must not depend on a clean shutdown either.
    venues.halt()
    venues.remove_store()
    if venues.failed is not None:
        raise venues.failed
    return {
        "positions": venues.positions(),
        "client_positions": venues.client_positions(),
        "ports": ports,
        "cuts": venues.cuts,
        "messages": len(venues.messages),
        "refused_logons": venues.refused_logons,
        "session_answers": venues.session_answers,
        "session_events": [{"at": t, "session": sid, "text": text} for t, sid, text in venues.session_events.events],
        "opened_at": venues.opened_at,
    }


def ended_within(process, seconds: float) -> bool:
    """Wait `seconds` unless `process` ends first; whether it has ended."""
    import subprocess

    try:
        process.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


VENUES_END_S = 30.0  # after its stdin closes, the venue process writes its final state and exits within this


def end_venues(process, held: dict, relays: dict, within: float = VENUES_END_S) -> bool:
    """End a wire run's venue process (its stdin closed: it writes its final state and exits), killed when
    it has not ended `within` seconds later; then, whatever happened, the ports held for it are released
    and the fault relays stop listening. Whether it ended on its own."""
    import subprocess

    try:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=within)
            return True
        except subprocess.TimeoutExpired:
            process.kill()  # no run leaves a venue process behind, nor its ports held
            process.wait()
            return False
    finally:
        for h in held.values():
            h.close()
        for relay in relays.values():  # their listeners end with the run
            relay.shutdown()


def run_wire(
    sc: Scenario,
    seed: int,
    duration: float,
    out: Path | None = None,
    venue_restart: tuple[float, float] | None = None,
    link_latency: bool = False,
) -> dict:
    """`xmc run --mode wire`: venues as acceptors in a child process, the engine as initiator here.
    With `venue_restart` = (at, down): the venue process is killed (SIGKILL) `at` seconds after the
    market opened and started again `down` seconds later on the same ports and state directory.
    With `link_latency` every venue's messages also take the scenario's latency_up/latency_down.
    The run's working files (the venue process's state, the sessions' stores unless `out` keeps
    them) live in a temporary directory removed when the run ends."""
    with tempfile.TemporaryDirectory(prefix="xmc-wire-") as work:
        return _run_wire(sc, seed, duration, out, venue_restart, link_latency, Path(work))


def _run_wire(
    sc: Scenario,
    seed: int,
    duration: float,
    out: Path | None,
    venue_restart: tuple[float, float] | None,
    link_latency: bool,
    work: Path,
) -> dict:
    import subprocess
    import sys

    from engine.core.engine_core import EngineCore
    from engine.report import (
        RunResult,
        anomaly_summary,
        count_outcomes,
        distribution,
        episode_row,
        venue_of,
        write_artifacts,
    )
    from engine.shell.live import LiveEngine, SessionConfig, credential, drained, settings_text, wait_for

    # the engine's logon credentials, read (and refused when set twice) before any process starts
    logons = {n: (credential(f"{n}_USERNAME"), credential(f"{n}_PASSWORD")) for n in sc.venues}
    state = work / "venue-state.json"

    def start_venues(ports: dict[str, int]):
        args = [
            sys.executable,
            "-X",
            "faulthandler",
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(sc.path),
            "--seed",
            str(seed),
            "--duration",
            str(duration + sc.drain + 30),
            "--state",
            str(state),
            "--open-on-logon",
        ]
        if venue_restart is not None:
            args += ["--state-dir", str(work / "venues")]
        for name, port in ports.items():
            args += ["--port", f"{name}={port}"]
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None  # stdout=PIPE
        first = proc.stdout.readline()
        if not first:
            raise RuntimeError("the venue process ended before announcing its ports")
        return proc, json.loads(first)["ports"]

    skipped = [f"faults[{f.index}] {f.kind}" for f in sc.faults if f.kind in VIRTUAL_ONLY]
    if skipped:
        print(
            f"xmc run --mode wire: {sc.path}: {', '.join(skipped)} act on the engine's own process and run in "
            f"virtual time only; this wire run goes without them",
            file=sys.stderr,
            flush=True,
        )
    restarts: list[dict] = []
    # the venues' ports are held here, not in the venue process: a venue killed and started again finds
    # its ports still free (simulator.ports)
    held = reserve(sc.venues)
    venue_ports = {name: h.port for name, h in held.items()}
    try:
        child, _ = start_venues(venue_ports)
    except BaseException:
        for h in held.values():
            h.close()
        raise
    ports = dict(venue_ports)  # where the engine connects: the venue, or a fault relay in front of it
    relays: dict[str, FaultRelay] = {}
    try:
        # link faults (timed disconnects, dropped messages, added latency) happen for real on a TCP
        # relay in the engine's path to that venue
        link = [f for f in sc.faults if f.kind in LINK_FAULTS]
        relayed = sorted(set(sc.venues) if link_latency else {f.venue for f in link})
        relays = {
            v: FaultRelay(
                v,
                ports[v],
                [dataclasses.replace(f) for f in link if f.venue == v],
                lambda name, v=v: fork(seed, f"relay:{v}:{name}"),
                {"up": sc.venues[v].up, "down": sc.venues[v].down} if link_latency else None,
            )
            for v in relayed
        }
        ports = {n: relays[n].port if n in relays else p for n, p in ports.items()}
        core = EngineCore(sc.engine)
        sessions = [
            SessionConfig(
                n,
                v.dictionary,
                v.comp_id,
                "127.0.0.1",
                ports[n],
                *logons[n],
            )
            for n, v in sc.venues.items()
        ]
        engine = LiveEngine(core, sessions)
        # with link faults or a venue restart, sequence numbers survive: resend and gap fill recover
        cuts = any(f.kind in ("disconnect_on_order", "disconnect_on_status") for f in sc.faults)
        store = out / "store" if out is not None else work / "store"
        store.mkdir(parents=True, exist_ok=True)
        engine.start(settings_text(sessions, store, reset_on_logon=not link and not cuts and venue_restart is None))
        try:
            if not wait_for(lambda: len(engine.logged_on) == len(sessions), 15):
                raise RuntimeError(f"sessions not logged on after 15 s: {sorted(engine.logged_on)} of {sorted(ports)}")
            open_at = max(engine.logon_at.values())  # the venues' market opens then: their clock's 0
            for relay in relays.values():
                relay.open(end=duration)
            desk = [
                threading.Timer(f.after, engine.command, args=("kill",)) for f in sc.faults if f.kind == "kill_switch"
            ]  # the operator's kill switch at after_s, as in virtual time
            for timer in desk:
                timer.daemon = True
                timer.start()
            if venue_restart is None:
                venues_ended = ended_within(child, duration)
            else:
                at, down = venue_restart
                threading.Event().wait(at)
                killed = engine.now()
                child.kill()  # SIGKILL: no goodbye, no Logout; the OS closes the sockets
                child.wait()
                threading.Event().wait(down)
                child, _ = start_venues(venue_ports)
                restarts.append(
                    {"killed_at_s": round(killed - open_at, 6), "restarted_at_s": round(engine.now() - open_at, 6)}
                )
                venues_ended = ended_within(child, max(duration - at - down, 0.0))
            for relay in relays.values():
                relay.close()
            if not venues_ended:  # else they stopped on their own (a problem of the scenario): said below
                wait_for(lambda: len(engine.logged_on) == len(sessions), 10)
                engine.command("drain")
                # a condition, not a duration: on a loaded machine the drain's open episodes take longer
                # in wall time than the scenario's drain_s; stopping earlier left reports in flight. The
                # engine thread must have taken the drain first: a quote ahead of it in the queue may still
                # open an episode, which must finish too
                wait_for(lambda: drained(core), max(sc.drain, 30.0))
        finally:
            engine.stop()
    finally:
        ended = end_venues(child, held, relays)
    if not ended:
        raise RuntimeError(
            f"the venue process did not end within {VENUES_END_S:g} s of the run's end and was killed, "
            "without its final state"
        )
    if (child.returncode != 0 and child.returncode != 2) or not state.exists():
        raise RuntimeError(f"the venue process ended with exit code {child.returncode} without its final state")
    venue_state = json.loads(state.read_text())
    if "error" in venue_state:  # the venues stopped on a problem of the scenario file (exit 2 there too)
        error = venue_state["error"]
        raise ConfigError(error["source"], [Problem(**p) for p in error["problems"]])
    if venue_state.get("opened_at") and not restarts:
        # the venues' own clock 0 on the engine's clock (one machine, one wall clock): closer than
        # the last logon, which arrives a down-link latency after the venues opened
        open_at = venue_state["opened_at"] - engine.epoch_start
    episodes = [episode_row(ep, core) for ep in core.episodes.values()]
    outcomes = count_outcomes(episodes)
    engine_pos = {k: v for k, v in core.positions.items() if v}
    venue_pos = {k: v for k, v in venue_state["positions"].items() if v}
    report = {
        "mode": "wire",
        "link_latency": link_latency,
        "scenario": sc.name,
        "file": str(sc.path),
        "seed": seed,
        "duration_s": duration,
        "market_open_s": round(open_at, 6),
        "episodes": episodes,
        "outcomes": outcomes,
        "timings": {
            "signal_to_acks_ms": distribution(
                [e["signal_to_acks_ms"] for e in episodes if e["signal_to_acks_ms"] is not None]
            )
        },
        "positions": {"engine": engine_pos, "venues": venue_pos},
        "fills_match_positions": engine_pos == venue_pos,
        "anomalies": anomaly_summary(engine.anomalies),
        "alerts": [a.text for a in engine.alerts[:50]],
        "session_events": engine.session_event_summary(),
        "wall": {"engine_compute_us": distribution([n / 1e3 for n in engine.compute_ns])},
        "all_terminal": all(e["outcome"] in ("BALANCED", "UNWOUND", "ESCALATED", "ABORTED") for e in episodes),
        "wire_faults": [e for r in relays.values() for e in r.summary()]
        + [dict(c, fault="disconnect_on_order") for c in venue_state.get("cuts", [])],
        "venue_restarts": _restart_timings(restarts, engine.audit, engine.logon_at, open_at),
        "faults_virtual_only": skipped,
        "status_queries": sum(1 for row in engine.audit if row.stage == "status_query"),
    }
    report["verdict"] = "pass" if report["fills_match_positions"] and report["all_terminal"] else "fail"
    if out is not None:
        write_artifacts(RunResult(report, engine.messages, engine.audit, venue_of(core)), out)
    return report
