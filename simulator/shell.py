"""The virtual-time shell around EngineCore: FIX strings from the links in, actions carried out in simpy.

It is to the simulator what the quickfix Application is to production: it parses and validates
what arrives (answering malformed messages as FIX says; the exact bytes a simulated venue framed
through quickfix are read without validating them again, simulator.transport), hands events to the core with the
virtual time, and turns the core's actions into FIX messages, simpy timers and audit rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import simpy

from engine.core.dispatch import ActionDispatcher
from engine.core.engine_core import EngineCore
from engine.core.events import (
    FENCED_SENDS,
    Alert,
    Anomaly,
    Audit,
    AuditRow,
    Event,
    SendCancel,
    SendOrder,
    SendReplace,
    SendStatusRequest,
    SessionDown,
    SessionGap,
    SessionUp,
    Takeover,
    TimerFired,
)
from engine.fix import dictionary
from engine.fix.codec import VIRTUAL_EPOCH, FixCodec, FixParseError, naming_its_order
from engine.report import AUDIT_COLUMNS  # noqa: F401 - the audit row's columns, re-exported for callers
from simulator.stepping import call_later, stepped_here
from simulator.transport import SessionEnd, WireLog
from simulator.venue import ENGINE_COMP_ID

if TYPE_CHECKING:
    from engine.shell.journal import Journal
    from simulator.checkers import InvariantChecker


class SimEngineShell(ActionDispatcher):
    def __init__(self, env: simpy.Environment, core: EngineCore, venues: dict, log: WireLog):
        super().__init__()
        self.env = env
        self.core = core
        self.log = log
        self.sessions: dict[str, SessionEnd] = {}
        for name, vcfg in venues.items():
            symbols = {i.name: i.symbol for i in core.instruments.values() if i.venue == name}
            codec = FixCodec(dictionary.load(vcfg.dictionary), ENGINE_COMP_ID, vcfg.comp_id, symbols)
            self.sessions[name] = SessionEnd(env, codec, log)
        self.timers: dict[str, int] = {}
        self.timer_gen = 0
        self._direct = stepped_here(env)  # timers scheduled without simpy's Timeout (simulator.stepping)
        self.compute_ns: list[int] = []
        self.recovery_ns: list[int] = []  # compute of the events that sent a recovery order
        self.orders_sent = 0
        self.checker: InvariantChecker | None = None  # set by the runner
        self.journal: Journal | None = None  # every event written before the core acts on it
        self.alive = True  # False while the engine process is down (a crash_restart fault)
        self.node = "primary"  # which engine node this shell is (failover: primary / standby)
        # failover: may this node send orders under its epoch now? (the lease check where orders
        # leave the node); None: a single node, always
        self.fence: Callable[[int], bool] | None = None
        self.own_codecs: dict = {}  # a superseded node's own decoding state (simulator.failover._take_over)
        self.replicate: Callable[[Event, float], None] | None = (
            None  # failover: streams each journaled event to the hot standby
        )
        self.paused = False  # a frozen process (GC-like pause): inputs and timers wait for wake()
        self.backlog: list = []  # what reached a paused process: ("fix", venue, raw) or ("timer", key)
        # crash_mid_batch: actions -> (index to die at, fault) or None; crash_now(fault) kills the process
        self.batch_crash: Callable[[list], tuple[int, Any] | None] | None = None
        self.crash_now: Callable[[Any], None] | None = None

    def successor(self) -> SimEngineShell:
        """A second process of this node holding everything this one holds, shared (its sessions and
        their replicated FIX state, the audit trail, the checker): the hot standby that takes over
        (simulator.failover) sets its own core, node, timers and journal on it."""
        new = SimEngineShell(self.env, self.core, {}, self.log)
        new.audit, new.anomalies, new.alerts = self.audit, self.anomalies, self.alerts
        new.sessions, new.timers, new.timer_gen = self.sessions, self.timers, self.timer_gen
        new.compute_ns, new.recovery_ns, new.orders_sent = self.compute_ns, self.recovery_ns, self.orders_sent
        new.checker, new.journal, new.alive, new.node = self.checker, self.journal, self.alive, self.node
        new.fence, new.own_codecs, new.replicate = self.fence, self.own_codecs, self.replicate
        new.paused, new.backlog = self.paused, self.backlog
        new.batch_crash, new.crash_now = self.batch_crash, self.crash_now
        new._direct = self._direct
        return new

    def start(self) -> None:
        for session in self.sessions.values():
            session.send(session.codec.draft("A", [(98, "0"), (108, "30")]))

    def crash(self) -> None:
        """The engine process dies: its timers die with it; its FIX stores (sequence numbers) survive."""
        self.alive = False
        self.timers.clear()
        for session in self.sessions.values():
            session.drop()

    def restart(self, core: EngineCore, pending_timers: dict[str, float]) -> None:
        """A new process with a core rebuilt from the journal; its timers re-armed; logons follow."""
        self.core = core
        if self.checker is not None:
            self.checker.core = core
        self.alive = True
        for key, at in pending_timers.items():
            self.set_timer(key, max(at, self.env.now))

    def disconnected(self, venue: str) -> None:
        self.sessions[venue].drop()
        self.dispatch(SessionDown(venue))

    def reconnect(self, venue: str) -> None:
        """Log on again; what the engine tried to send while down follows the logon."""
        session = self.sessions[venue]
        session.connected = True
        queued, session.queued = session.queued, []
        session.send(session.codec.draft("A", [(98, "0"), (108, "30")]))
        for msg in queued:
            session.send(msg)

    # ---- inbound ----------------------------------------------------------------------------
    def receive(self, venue: str, raw: str) -> None:
        if not self.alive:
            return  # the process is down: nothing reads the socket
        if self.paused:
            self.backlog.append(("fix", venue, raw))
            return
        session = self.sessions[venue]
        gaps = session.gaps
        try:
            ready = session.receive(raw)
        except FixParseError as err:
            self.record_anomaly(Anomaly(self.env.now, f"fix_{err.kind}", err.ref_id, f"{venue}: {err}"))
            session.reject(err)
            return
        if session.gaps > gaps:
            self.record_anomaly(
                Anomaly(
                    self.env.now,
                    "sequence_gap",
                    "",
                    f"{venue}: gap before MsgSeqNum {session.resend_asked_to + 1}; ResendRequest sent",
                )
            )
            session.codec.forget_book()  # what arrives from here on builds the venue's top afresh
            self.dispatch(SessionGap(venue))  # what the gap held may have moved the venue's books
        for msg in ready:
            if msg.msg_type == "A":
                self.dispatch(SessionUp(venue))
                continue
            try:
                events = session.codec.decode(msg, venue)
            except FixParseError as err:  # a value the engine cannot read: answered as validation would
                self.record_anomaly(Anomaly(self.env.now, f"fix_{err.kind}", err.ref_id, f"{venue}: {err}"))
                session.reject(err)
                continue
            for event in events:
                self.dispatch(naming_its_order(event, session.sent))

    def dispatch(self, event: Event) -> None:
        if not self.alive:
            return
        now = self.env.now  # one event: virtual time stands still while it is handled
        if self.journal is not None:
            self.journal.append(event, now)
        if self.replicate is not None:
            self.replicate(event, now)
        t0 = time.perf_counter_ns()
        actions = self.core.handle(event, now)
        spent = time.perf_counter_ns() - t0
        self.compute_ns.append(spent)
        for a in actions:
            if type(a) is Audit and a.stage == "send" and a.detail != "entry":
                self.recovery_ns.append(spent)
                break
        if type(event) is Takeover:  # no layer may carry a fenced epoch's order out of this node again
            for session in self.sessions.values():
                session.min_epoch = self.core.epoch
        if actions:  # most quotes decide nothing
            self.execute(actions)
        if self.checker is not None:
            if self.alive and not self.paused:
                self.checker.after_batch(now)
            self.checker.after_event(now, event, self.core)

    def execute(self, actions: list) -> None:
        """Carry out one batch of actions; a crash_mid_batch fault may kill the process part-way:
        what comes after its point in the batch is never carried out (the journal has the event)."""
        cut = self.batch_crash(actions) if self.batch_crash is not None and self.alive else None
        if cut is None:
            return super().execute(actions)
        index, fault = cut
        super().execute(actions[:index])
        assert self.crash_now is not None  # set with batch_crash
        self.crash_now(fault)

    # ---- outbound: the hooks of engine.core.dispatch.ActionDispatcher ------------------------------
    def now(self) -> float:
        return self.env.now

    def send(self, a) -> None:
        session = self.sessions[a.venue]
        now = self.env.now  # simpy's clock is a Python property: read once an action
        session.send(session.codec.draft_of(a, VIRTUAL_EPOCH + now))
        kind = type(a)
        if kind in FENCED_SENDS and self.checker is not None:
            self.checker.on_leave(now, self.node, a.cl_ord_id, kind.__name__)
        if kind is SendCancel and self.checker is not None:
            self.checker.on_ask(now, a.cl_ord_id, a.decision_id)
        elif kind is SendStatusRequest and self.checker is not None:
            order = self.core.find_order(a.cl_ord_id)
            if order is not None:
                self.checker.on_ask(now, "?" + a.cl_ord_id, order.decision_id)
        if kind is SendOrder or kind is SendReplace:  # a replace prices an order too: same limits
            self.orders_sent += kind is SendOrder
            if self.checker is not None:
                self.checker.on_send(
                    now,
                    a.instrument,
                    a.cl_ord_id,
                    a.decision_id,
                    a.qty,
                    a.price,
                    a.side,
                    replace=kind is SendReplace,
                    immediate=a.tif == "3" or a.tif == "4",
                )

    def fenced(self, a) -> None:
        super().fenced(a)
        if self.checker is not None:
            self.checker.on_fenced(self.env.now, self.node, a.cl_ord_id)

    def audited(self, row: AuditRow) -> None:
        # the text str() gives each of the row's fields from its stage on, "|"-joined, in one formatting
        self.log.event(
            row.ts,
            f"audit {row.stage}|{row.decision_id}|{row.cl_ord_id}|{row.instrument}|{row.account}|{row.side}|"
            f"{row.qty}|{row.price}|{row.detail}",
        )
        if self.checker is not None:
            self.checker.on_audit(row)

    def alert(self, a: Alert) -> None:
        self.log.event(a.ts, f"alert {a.level} {a.text}")

    def pause(self) -> None:
        self.paused = True

    def wake(self) -> None:
        """The frozen process runs again: what reached it while frozen, in the order it came, as a woken
        process would: messages through its session layer while it is still the node in charge (a gap
        they fill, or a resend they answer, counts as for any message: read around the session layer,
        the answers to a ResendRequest it had open left the gap open for the rest of the run), read on
        its own once a takeover superseded it (the venue closed its socket); the timers that came due."""
        self.paused = False
        backlog, self.backlog = self.backlog, []
        for item in backlog:
            if not self.alive:
                return
            if item[0] == "timer":
                self.dispatch(TimerFired(item[1]))
                continue
            _, venue, raw = item
            if not self.own_codecs:  # still the node in charge: its session layer reads what was buffered
                self.receive(venue, raw)
                continue
            codec = self.own_codecs[venue]  # superseded: the venue closed its socket; it reads on its own
            try:
                events = codec.decode(codec.parse(raw), venue)
            except FixParseError as err:  # the session that carried it is closed: no Reject can go back
                self.record_anomaly(
                    Anomaly(self.env.now, f"fix_{err.kind}", err.ref_id, f"{venue}: {err} (read on waking)")
                )
                continue
            for event in events:
                self.dispatch(naming_its_order(event, self.sessions[venue].sent))

    def set_timer(self, key: str, at: float) -> None:
        self.timer_gen += 1
        gen = self.timers[key] = self.timer_gen
        # a timeout's place in simpy's queue, without building simpy's Timeout (simulator.stepping)
        call_later(self.env, max(at - self.env.now, 0.0), lambda _e: self._fire(key, gen), self._direct)

    def cancel_timer(self, key: str) -> None:
        self.timers.pop(key, None)

    def _fire(self, key: str, gen: int) -> None:
        if self.timers.get(key) != gen:
            return  # cancelled or re-armed since
        del self.timers[key]
        if self.paused:
            self.backlog.append(("timer", key))
            return
        self.dispatch(TimerFired(key))
