"""A hypothesis state machine drives EngineCore through random sequences of quotes, venue answers (in
order, duplicated, overtaken), rejects, timers, session drops and commands, against an honest
venue model kept in the test. After every step: no illegal transition, positions equal the fills
delivered, never two live orders for one leg; once the inputs stop and the venues answer what is
outstanding, every episode is terminal."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.config import Recovery
from engine.core.engine_core import EngineCore
from engine.core.episode import TERMINAL
from engine.core.events import (
    Anomaly,
    CancelReject,
    CancelTimer,
    Command,
    ExecReport,
    Quote,
    SendCancel,
    SendMassStatusRequest,
    SendOrder,
    SendStatusRequest,
    SessionDown,
    SessionUp,
    SetTimer,
    TimerFired,
)
from simulator import scenario
from tests.conftest import SPREAD

pytestmark = pytest.mark.slow

CONFIG = scenario.load(SPREAD).engine
RECOVERY = Recovery(
    policy="chase_unwind",
    max_chase_attempts=2,
    chase_payup_ticks=2,
    chase_step_ticks=2,
    liquidity_step_ticks=1,
    max_payup_ticks=10,
    legged_budget=0.8,
    chase_budget=0.4,
    unwind_payup_ticks=5,
    unwind_step_ticks=5,
    max_unwind_attempts=2,
    reject_policy={"3": "retry", "99": "fix_and_retry", "1": "fatal", "session": "fatal", "business": "fatal"},
    overfill="hedge",
)
ILLEGAL = {"illegal_transition", "illegal_episode_transition", "engine_error"}
VENUES = ("SHFE", "COMEX", "FX")


@dataclasses.dataclass
class VenueOrder:
    send: SendOrder
    cum: int = 0
    status: str = "A"  # as the venue knows it: A (received), 0, 1, 2, 4, 8
    answered: bool = False  # the venue has processed it (ack, fill, reject or IOC cancel sent)


class CoreMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        cfg = dataclasses.replace(CONFIG, strategy=dataclasses.replace(CONFIG.strategy, recovery=RECOVERY))
        self.core = EngineCore(cfg)
        self.now = 0.0
        self.timers: dict[str, float] = {}
        self.orders: dict[str, VenueOrder] = {}  # by ClOrdID, as the venues received them
        self.outbox: list = []  # reports the venues sent, not yet delivered (in order per venue)
        self.delivered: dict[str, float] = {}  # instrument -> signed lots of the fills delivered
        self.exec_ids = 0
        self.up = set()
        self.sent_cancels: dict[str, str] = {}
        self.pending_status: list = []
        self.seen_exec: set[str] = set()
        self.status_cum: dict[str, float] = {}
        for venue in VENUES:
            self.feed(SessionUp(venue))
        self.quote(400.0, 0.0)

    # ---- plumbing -------------------------------------------------------------------------------
    def feed(self, event) -> None:
        if isinstance(event, SessionUp):
            self.up.add(event.venue)
        elif isinstance(event, SessionDown):
            self.up.discard(event.venue)
        actions = self.core.handle(event, self.now)
        bad = [a for a in actions if isinstance(a, Anomaly) and a.kind in ILLEGAL]
        assert not bad, f"{type(event).__name__}: {bad[0].kind}: {bad[0].detail}"
        for a in actions:
            kind = type(a)
            if kind is SetTimer:
                self.timers[a.key] = a.at
            elif kind is CancelTimer:
                self.timers.pop(a.key, None)
            elif kind is SendOrder:
                assert a.cl_ord_id not in self.orders, f"ClOrdID {a.cl_ord_id} sent twice"
                self.orders[a.cl_ord_id] = VenueOrder(a)
            elif kind is SendCancel:
                self.sent_cancels[a.cl_ord_id] = a.orig_cl_ord_id
            elif kind in (SendStatusRequest, SendMassStatusRequest):
                self.pending_status.append(a)

    def report(
        self,
        o: VenueOrder,
        exec_type: str,
        last: int = 0,
        cl: str = "",
        orig: str = "",
        mass: str = "",
        last_report: bool = False,
    ) -> ExecReport:
        self.exec_ids += 1
        s = o.send
        px = s.price or 0.0
        leaves = 0 if o.status in ("2", "4", "8") else s.qty - o.cum
        return ExecReport(
            s.venue,
            cl or s.cl_ord_id,
            orig,
            f"O-{s.cl_ord_id}",
            f"X{self.exec_ids}",
            exec_type,
            o.status,
            s.instrument,
            s.side,
            s.qty,
            o.cum,
            leaves,
            last,
            px if last else 0.0,
            px if o.cum else 0.0,
            3 if exec_type == "8" else None,
            "",
            False,
            mass,
            last_report,
        )

    def deliver(self, r) -> None:
        if isinstance(r, ExecReport) and r.exec_type == "F" and r.exec_id not in self.seen_exec:
            self.seen_exec.add(r.exec_id)
            sign = 1 if r.side == "1" else -1
            self.delivered[r.instrument] = self.delivered.get(r.instrument, 0.0) + sign * r.last_qty
        if isinstance(r, ExecReport) and r.exec_type == "I" and r.cum_qty:
            self.status_cum[r.cl_ord_id] = r.cum_qty  # a status answer can teach fills never delivered
        self.feed(r)

    def quote(self, spread: float, wiggle: float) -> None:
        hg = 4.5 + wiggle
        self.feed(Quote("USDCNY", 7.0999, 1e6, 7.1001, 1e6))
        self.feed(Quote("HG", round(hg - 0.0005, 4), 50, round(hg + 0.0005, 4), 50))
        mid = round((hg * 2204.62 * 7.1 + spread) / 10) * 10
        self.feed(Quote("CU", mid - 10, 50, mid + 10, 50))

    # ---- the world ------------------------------------------------------------------------------
    @rule(
        spread=st.sampled_from([-400.0, -120.0, 0.0, 120.0, 400.0]),
        wiggle=st.sampled_from([-0.002, 0.0, 0.002]),
        dt=st.sampled_from([0.001, 0.05, 0.3]),
    )
    def quotes(self, spread, wiggle, dt):
        self.now += dt
        self.quote(spread, wiggle)

    @precondition(lambda self: any(not o.answered for o in self.orders.values()))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["fill", "partial", "reject", "nothing", "ack_then_fill"]),
        dup=st.booleans(),
        overtake=st.booleans(),
    )
    def venue_processes_an_order(self, data, outcome, dup, overtake):
        """An honest venue: an IOC fills fully, partly (rest cancelled), not at all, or is rejected."""
        o = data.draw(st.sampled_from([o for o in self.orders.values() if not o.answered]))
        o.answered = True
        qty = o.send.qty
        out = []
        if outcome == "reject":
            o.status = "8"
            out.append(self.report(o, "8"))
        else:
            o.status = "0"
            ack = self.report(o, "0")
            fills = []
            if outcome in ("fill", "ack_then_fill"):
                o.cum, o.status = qty, "2"
                fills.append(self.report(o, "F", qty))
            elif outcome == "partial" and qty > 1:
                o.cum, o.status = qty // 2, "1"
                fills.append(self.report(o, "F", qty // 2))
            if o.status in ("0", "1"):
                o.status = "4"  # the IOC's rest
                fills.append(self.report(o, "4"))
            out += (fills + [ack]) if overtake else ([ack] + fills)
            if dup and fills:
                out.append(fills[0])  # the same report again, same ExecID
        self.now += 0.001
        if o.send.venue in self.up:
            for r in out:
                self.deliver(r)
        else:
            self.outbox += out

    @precondition(lambda self: bool(self.sent_cancels))
    @rule(data=st.data())
    def venue_answers_a_cancel(self, data):
        cid = data.draw(st.sampled_from(sorted(self.sent_cancels)))
        orig = self.sent_cancels.pop(cid)
        o = self.orders.get(orig)
        if o is None:
            return
        self.now += 0.001
        if o.status in ("A", "0", "1"):
            o.status, o.answered = "4", True
            r = self.report(o, "4", cl=cid, orig=orig)
        else:
            r = CancelReject(o.send.venue, cid, orig, o.status, 0, "too late to cancel")
        if o.send.venue in self.up:
            self.deliver(r)
        else:
            self.outbox.append(r)

    @precondition(lambda self: bool(self.pending_status))
    @rule()
    def venue_answers_status(self):
        req = self.pending_status.pop(0)
        if req.venue not in self.up:
            return
        self.now += 0.001
        if isinstance(req, SendMassStatusRequest):
            mine = [o for o in self.orders.values() if o.send.venue == req.venue]
            if not mine:
                self.deliver(
                    ExecReport(
                        req.venue,
                        "",
                        "",
                        "NONE",
                        f"X{self.exec_ids + 1}",
                        "I",
                        "8",
                        "CU",
                        "1",
                        0,
                        0,
                        0,
                        0,
                        0.0,
                        0.0,
                        None,
                        "no orders",
                        False,
                        req.req_id,
                        True,
                    )
                )
                self.exec_ids += 1
            for i, o in enumerate(mine, 1):
                self.deliver(self.report(o, "I", mass=req.req_id, last_report=i == len(mine)))
            return
        o = self.orders.get(req.cl_ord_id)
        if o is not None:
            self.deliver(self.report(o, "I"))

    @precondition(lambda self: bool(self.timers))
    @rule(data=st.data())
    def a_timer_fires(self, data):
        key = data.draw(st.sampled_from(sorted(self.timers)))
        self.now = max(self.now, self.timers.pop(key))
        self.feed(TimerFired(key))

    @rule(venue=st.sampled_from(["SHFE", "COMEX"]))
    def session_drops(self, venue):
        if venue in self.up:
            self.now += 0.01
            self.feed(SessionDown(venue))

    @rule(venue=st.sampled_from(["SHFE", "COMEX"]))
    def session_comes_back(self, venue):
        if venue not in self.up:
            self.now += 0.2
            self.feed(SessionUp(venue))
            held, self.outbox = (
                [r for r in self.outbox if r.venue == venue],
                [r for r in self.outbox if r.venue != venue],
            )
            for r in held:  # what the venue sent meanwhile follows the logon
                self.deliver(r)

    @rule(name=st.sampled_from(["kill", "resume", "drain"]))
    def desk(self, name):
        self.feed(Command(name))

    # ---- after every step -----------------------------------------------------------------------
    @invariant()
    def positions_equal_the_fills_delivered(self):
        pos = {k: v for k, v in self.core.positions.items() if v}
        want = {k: v for k, v in self.delivered.items() if v}
        if not self.status_cum:  # fills learned from status answers are on top of the delivered ones
            assert pos == want, (pos, want)

    @invariant()
    def never_two_live_orders_for_one_leg(self):
        for ep in self.core.active.values():
            for leg in ep.legs.values():
                live = [o.cl_ord_id for o in leg.orders if not o.done]
                assert len(live) <= 1, f"{ep.decision_id} leg {leg.name}: {live}"

    def teardown(self):
        """Inputs stop: sessions come back, the venues answer everything outstanding, timers fire."""
        if not hasattr(self, "core"):
            return
        for _ in range(200):
            for venue in ("SHFE", "COMEX"):
                self.session_comes_back(venue)
            progressed = False
            while any(not o.answered for o in self.orders.values()):
                o = next(o for o in self.orders.values() if not o.answered)
                o.answered, o.status = True, "4"
                self.deliver(self.report(o, "4"))
                progressed = True
            while self.sent_cancels:
                self.venue_answers_a_cancel_now(next(iter(self.sent_cancels)))
                progressed = True
            while self.pending_status:
                self.venue_answers_status()
                progressed = True
            if self.timers:
                key = min(self.timers, key=self.timers.get)
                self.now = max(self.now, self.timers.pop(key))
                self.feed(TimerFired(key))
                progressed = True
            if not progressed:
                break
        open_ = [(d, e.state.value) for d, e in self.core.episodes.items() if e.state not in TERMINAL]
        assert not open_, f"episodes not terminal once the inputs stopped: {open_}"

    def venue_answers_a_cancel_now(self, cid: str) -> None:
        orig = self.sent_cancels.pop(cid)
        o = self.orders.get(orig)
        if o is None:
            return
        if o.status in ("A", "0", "1"):
            o.status, o.answered = "4", True
            self.deliver(self.report(o, "4", cl=cid, orig=orig))
        else:
            self.deliver(CancelReject(o.send.venue, cid, orig, o.status, 0, "too late to cancel"))


CoreMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestCoreStateMachine = CoreMachine.TestCase
