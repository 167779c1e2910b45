"""Safety-invariant checkers evaluated during every simulated run (../shared/domain.md, 1-11, and 12-16 of our own).

Each invariant ends pass, fail or unknown (not exercised by the run). The first violation of each
is kept with its decision id and time; the run report adds the seed and the replay command.
Invariant 5 (one sending node) is checked where orders leave a node in runs with a standby
([failover]): an order, cancel or replace under an epoch older than the lease's is a violation, and so
is a node the fence stops that goes on trying past the failure detector's window (a node without the
lease left running); single-node runs report it unknown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Set
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Final

from engine.config import grid_slack
from engine.core.engine_core import EngineCore
from engine.core.episode import TERMINAL
from engine.core.events import BusinessReject, CancelReject, ExecReport, Quote, SessionDown, SessionGap, SessionUp
from engine.core.ids import BUY, CHILD_ID, SELL, decision_of, epoch_of
from engine.fix.codec import fmt_px

if TYPE_CHECKING:
    from simulator.failover import SimulatedLease

NAMES = {
    1: "naked exposure within limits (tonnes; legged no longer than the budget plus the time to hear back from a venue)",
    2: "every episode terminal",
    3: "residual recorded, and every outcome borne out by its legs' fills (BALANCED: no leg short; UNWOUND, ABORTED: flat)",
    4: "no duplicate ClOrdID",
    5: "single sending node",
    6: "fills applied once: positions = fills, no fill of no lots on record",
    7: "legal transitions, no engine error, no unrecorded overfill, every venue report read as the venue meant it",
    8: "risk limits never exceeded (a chase's slippage included)",
    9: "chase/unwind within budgets, unwind never flips",
    10: "every order in a decision, one live per leg, handed to the transport, stages ordered",
    11: "no decision on a stale quote",
    12: "at the end of every run: engine orders (filled, done, average price) = the venues', none unknown left working or traded untold",
    13: "recovery orders and amends priced by their schedule (touch plus the attempt's payup), none beyond its max attempts",
    14: "every order refused by a position or order-size limit really breaks it (worst case over its own instrument's working orders)",
    15: "every episode opens on a signal the quotes give, past its threshold, its side re-armed since it last fired",
    16: "no signal missed: a quote that puts an armed side past its threshold, fresh inputs and the engine free, opens an episode",
}
# an average fill price (on no tick grid) travels to six decimals: invariant 12 allows that rounding
AVG_PX_SLACK: Final = 1e-6
# seconds: invariant 1 allows one far round trip (Shanghai-Aurora and back) beyond the budget
FAR_ROUND_TRIP: Final = 0.5
# anomalies that accuse a venue of a report the simulated venues never send (invariant 7)
MISREAD: Final = frozenset({"status_mismatch", "cum_qty_mismatch", "bad_fill", "unknown_exec_type"})
AMEND_ID: Final = re.compile(r"^(.+)M(\d+)(?:-E\d+)?$")  # a replace's ClOrdID: <the order's first ClOrdID>M<n>, stamped
SELL_SPREAD, BUY_SPREAD = "sell_spread", "buy_spread"  # sell leg A and buy leg B; the other way
# the OrdStatus (39) values that end an order: filled, done for day, cancelled, rejected, expired
SETTLED: Final = frozenset({"2", "3", "4", "8", "C"})


@dataclass
class Verdict:
    status: str = "unknown"  # pass / fail / unknown
    first: dict = field(default_factory=dict)


@dataclass
class _Spell:
    """A legged spell of one decision, for invariant 1: the stretches its allowance counts so far, the
    slowest answer within it, and the requests it still awaited when it ended (key -> the stretch
    their wait adds once answered)."""

    decision: str
    since: float
    until: float
    spans: list[tuple[float, float]]
    slowest: float
    awaited: dict[str, tuple[float, float]]
    slow_answers: bool
    stuck: bool


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """These (start, end) spans, sorted by start, with those that overlap or touch joined: disjoint."""
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _union_length(spans: list[tuple[float, float]]) -> float:
    """Total length covered by these (start, end) spans, sorted by start; overlaps counted once."""
    return sum(end - start for start, end in _merged(spans) if end > start)


def _overlap(one: list[tuple[float, float]], other: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The stretches covered by both lists of disjoint, sorted (start, end) spans."""
    out: list[tuple[float, float]] = []
    i = j = 0
    while i < len(one) and j < len(other):
        start, end = max(one[i][0], other[j][0]), min(one[i][1], other[j][1])
        if end > start:
            out.append((start, end))
        if one[i][1] < other[j][1]:
            i += 1
        else:
            j += 1
    return out


class InvariantChecker:
    def __init__(self, core: EngineCore):
        self._core = core
        # invariant 13: per decision, the send times of its chase and of its unwind rounds (one round
        # sends every short leg at one instant), and each leg's last order price (a "retry" reject
        # re-sends at it); decisions a restarted or takeover node inherited, whose earlier rounds it
        # may not know (a replication cut), are held to the schedule of any round seen so far
        self.rounds: dict[tuple[str, str], list[float]] = {}
        self.last_price: dict[tuple[str, str], float] = {}
        # and per resting order (its first ClOrdID) the amends sent for it and every price it was sent at
        self.amends: dict[str, int] = {}
        self.order_prices: dict[str, list[float]] = {}
        self.inherited: set[str] = set()
        self.sent_today: dict[str, int] = {}  # invariant 8: new orders handed to the transport per instrument
        self.v = {n: Verdict() for n in NAMES}
        self.seen_episodes = 0
        self.client_ids: set[str] = set()
        self.venue_position: dict[str, float] = {}
        self.legged_since: dict[str, float] = {}
        # invariant 1: each legged decision's venues at the start of its spell, (the short legs', the
        # filled legs'); and each venue's session outages seen by the engine ((down, up), and since when
        # one is down now): while a venue of each set is down, neither a chase nor an unwind can go
        self.legged_venues: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        # legged decision -> when its chase budget was spent (attempts or time) and it turned to unwinding:
        # from then on only a filled leg's venue can repair it (invariant 1's `stuck` time)
        self.chase_spent: dict[str, float] = {}
        self.outages: dict[str, list[tuple[float, float]]] = {}
        self.down_since: dict[str, float] = {}
        # invariant 1's soft limit: when each request was handed to the transport (an order, replace or
        # cancel by its ClOrdID, a status question by "?" + the order's: -> (decision, time), until its
        # first answer) and the round trips of each decision's answered requests (decision -> [(answered
        # at, seconds)]): a venue slower than the allowance extends it
        self.awaiting: dict[str, tuple[str, float]] = {}
        self.answers: dict[str, list[tuple[float, float]]] = {}
        # legged spells judged once the requests they still awaited are answered (a held fill may end a
        # spell while its cancel waits behind it); judged at the run's end without those never answered
        self.judged_later: list[_Spell] = []
        # IOC and FOK orders by ClOrdID: the engine learns what became of one from its outcome (filled,
        # cancelled, rejected, expired), so an acknowledgement that leaves it working answers nothing yet
        self.immediate: set[str] = set()
        self.coverage: set[str] = set()
        self.late_acks: set[str] = set()  # ClOrdIDs a venue acknowledged late (a late_ack fault)
        self.reordered: set[str] = set()  # ClOrdIDs whose fills a venue sent before their ack (fill_before_ack)
        self.late_fills: set[str] = set()  # ClOrdIDs a venue filled after reporting them Canceled (late_fill)
        self.late_position: dict[str, float] = {}  # instrument -> lots of those late fills, either side
        self.jumps: list[float] = []  # times of price jumps (price_jump faults)
        self.lease: SimulatedLease | None = None  # failover runs: the lease whose revision is the current fencing epoch
        # invariant 5, its other half: a node the fence stops must step down or be superseded within the
        # failure detector's window (Simulation sets it from [failover]); (node, epoch) -> its first
        # fenced attempt since it last put anything on the wire (a process restarted under a new epoch
        # starts afresh)
        self.fence_window = math.inf
        self.fenced_since: dict[tuple[str, int | None], float] = {}
        # invariant 10: every order the core registers as sent leaves the node (handed to the transport,
        # or stopped by the fence) before the run ends; `registered` orders of the current core were
        # looked at, `unsent` are those registered and not handed yet (ClOrdID -> (decision, when))
        self.handed: set[str] = set()
        self.registered = len(core.orders)
        self.unsent: dict[str, tuple[str, float]] = {}
        self.audited: set[str] = set()  # ClOrdIDs named by the current node's audit rows
        # invariant 15: the quotes the current node was given (instrument -> last Quote), and per trigger
        # side whether its signal retreated past the hysteresis since the side last fired (a node starts
        # armed); the signal is recomputed here from these, not taken from the engine's trigger
        self.quotes: dict[str, Quote] = {}
        self.retreated = {SELL_SPREAD: True, BUY_SPREAD: True}
        # invariant 16: when each instrument's last quote reached the node; per side whether it is armed
        # as of the quotes the engine was free to act on (a side re-arms only on a quote the engine
        # evaluates: killed, draining, busy, cooling down or with a leg's venue not ready it looks at
        # none); how many of those quotes found an input missing or stale, against the trigger's count
        self.quote_at: dict[str, float] = {}
        self.held: dict[str, Quote] = {}  # the last quote per instrument the current node holds
        self.armed = {SELL_SPREAD: True, BUY_SPREAD: True}
        self.stale = 0
        self.stale_before = 0  # a new core's trigger has skipped nothing yet
        # the trigger's inputs and its legs' mass units per tonne, looked up once per strategy (per core)
        self._inputs_of: object = None
        self._input_names: tuple[str, ...] = ()
        self._units_of: object = None
        self._terms_of: object = None
        # (leg A's and leg B's currency per tonne per price unit, B's before FX; FX an input; trigger kind; offset)
        self._terms: tuple[float, float, bool, str, float] = (1.0, 1.0, False, "", 0.0)

    @property
    def core(self) -> EngineCore:
        return self._core

    @core.setter
    def core(self, core: EngineCore) -> None:
        """A restart or takeover: the new node's core from here on."""
        if core is not self._core:
            self.inherited |= set(self._core.episodes) | set(core.episodes)
            self.registered = len(core.orders)  # what it rebuilt or replicated was sent by an earlier node
            # `unsent` stays: an order the dead node registered and did not hand over though it lived
            # through that batch (a crash or pause cut short is never noted) was lost before it died
            self.audited.clear()  # ClOrdIDs the new node's own audit rows name
            self.quotes.clear()  # the new node prices from the quotes it is given from now on
            self.retreated = {SELL_SPREAD: True, BUY_SPREAD: True}
            # for invariant 16, what its books hold already (replicated or journalled quotes, with the
            # times they arrived): the new node may decide on them before a fresh quote of each input
            self.quote_at = {name: book.ts for name, book in core.books.items()}
            self.held = {
                name: Quote(name, book.bid, book.bid_size, book.ask, book.ask_size) for name, book in core.books.items()
            }
            # the episodes it opens from here on are new (it may know fewer than the old core: a cut)
            self.seen_episodes = len(core.episodes)
            # a takeover or restarted core's trigger already looked at what was replicated or journalled
            # (a replication cut included), which this checker cannot replay: it goes on from that state
            self.armed = dict(core.trigger.armed)
            self.stale, self.stale_before = 0, core.trigger.stale_skips
        self._core = core

    def _ok(self, n: int) -> None:
        if self.v[n].status == "unknown":
            self.v[n].status = "pass"

    def _fail(self, n: int, now: float, decision_id: str, detail: str) -> None:
        if self.v[n].status != "fail":
            self.v[n] = Verdict("fail", {"t": now, "decision_id": decision_id, "detail": detail})

    # ---- after every event the core handled ---------------------------------------------------
    def after_event(self, now: float, event=None, node_core: EngineCore | None = None) -> None:
        """`event` was handled by `node_core` (the checked node's own core when None): a superseded
        node woken after a takeover still handles what it buffered, and its quotes are not the
        checked node's."""
        core = self.core
        kind = type(event)
        if kind is SessionDown:
            self.down_since.setdefault(event.venue, now)
            for ep in core.active.values():
                if ep.mode:
                    self.coverage.add(f"disconnect_during_{ep.mode}")
        elif kind is SessionUp and event.venue in self.down_since:
            self.outages.setdefault(event.venue, []).append((self.down_since.pop(event.venue), now))
        if kind is ExecReport or kind is CancelReject:
            keys = [event.cl_ord_id]
            if kind is ExecReport:
                if event.exec_type == "I":  # a status answer: the question "?" + ClOrdID is answered
                    keys.append("?" + event.cl_ord_id)
                if event.cl_ord_id in self.immediate and event.ord_status not in SETTLED:
                    keys.pop(0)  # an IOC acknowledged, its outcome still on the way (held behind a spike)
            for key in keys:
                if key in self.awaiting:
                    decision, sent = self.awaiting.pop(key)
                    self.answers.setdefault(decision, []).append((now, now - sent))
                    if self.judged_later:
                        self._answered_after_its_spell(key)
        elif kind is BusinessReject and event.ref_id in self.awaiting:  # refused unprocessed: answered too
            decision, sent = self.awaiting.pop(event.ref_id)
            self.answers.setdefault(decision, []).append((now, now - sent))
            if self.judged_later:
                self._answered_after_its_spell(event.ref_id)
        # an episode's legged clock runs while it stays LEGGED in the active node's view: one that
        # ended (or that a takeover node knows only from before it ended) starts afresh if legged again
        if self.legged_since:
            for decision in [
                d for d in self.legged_since if d not in core.active or core.active[d].state._value_ != "LEGGED"
            ]:
                self._check_legged_time(decision, self.legged_since.pop(decision), now)
        risk = core.cfg.risk
        rc = core.strategy.recovery
        for ep in core.active.values():
            naked = ep.naked_tonnes()
            if naked > risk.max_naked_tonnes + 1e-9:
                self._fail(1, now, ep.decision_id, f"{naked:.2f} t naked > hard limit {risk.max_naked_tonnes} t")
            if ep.state._value_ == "LEGGED":
                if ep.decision_id not in self.legged_since:
                    self.legged_since[ep.decision_id] = now
                    venue = {n: core.instruments[leg.instrument].venue for n, leg in ep.legs.items()}
                    self.legged_venues[ep.decision_id] = (
                        frozenset(venue[n] for n, leg in ep.legs.items() if leg.filled < leg.target - 1e-9),
                        frozenset(venue[n] for n, leg in ep.legs.items() if leg.filled > 1e-9),
                    )
                if (
                    ep.decision_id not in self.chase_spent
                    and ep.mode._value_ == "unwind"
                    and (
                        ep.chase_attempts >= rc.max_chase_attempts
                        or now - self.legged_since[ep.decision_id] >= rc.chase_budget - 1e-9
                    )
                ):
                    self.chase_spent[ep.decision_id] = now
                self._ok(1)
            for leg in ep.legs.values():
                if leg.filled < -1e-9:
                    self._fail(9, now, ep.decision_id, f"leg {leg.name} flipped: {leg.filled:g} lots")
            if ep.chase_attempts > rc.max_chase_attempts or ep.unwind_attempts > rc.max_unwind_attempts:
                self._fail(9, now, ep.decision_id, f"chase {ep.chase_attempts}, unwind {ep.unwind_attempts} attempts")
            elif ep.mode:
                self._ok(9)
        values = None
        mine = node_core is None or node_core is core
        if (kind is SessionGap or kind is SessionDown) and mine:
            # the engine's rule: after a gap or a drop none of the venue's quotes is fresh until its next one
            for name, inst in core.instruments.items():
                if inst.venue == event.venue and name in self.quote_at:
                    self.quote_at[name] = -math.inf
        quote = kind is Quote and mine and event.instrument in core.instruments
        if quote:
            self.quotes[event.instrument] = self.held[event.instrument] = event
            self.quote_at[event.instrument] = now
            values = self._signal_values()
            if values is not None:
                t = core.strategy.trigger
                if values[SELL_SPREAD] < t.sell_above - t.hysteresis:
                    self.retreated[SELL_SPREAD] = True
                if values[BUY_SPREAD] > t.buy_below + t.hysteresis:
                    self.retreated[BUY_SPREAD] = True
        opened = []
        if len(core.episodes) > self.seen_episodes:
            for ep in list(core.episodes.values())[self.seen_episodes :]:
                self._check_fresh(ep, now)
                if ep.stages.get("signal") == now:
                    opened.append(ep)  # on this event (invariant 16), whether or not 15 can judge it yet
                    if values is not None:
                        self._check_signal(ep, now, values)
            self.seen_episodes = len(core.episodes)
        if quote:
            # the signal from the quotes given is the one from the quotes held (each given quote is held
            # as well); until every input is given after a takeover it is None, and _check_missed
            # computes it from what the books held (seeded by the takeover)
            self._check_missed(now, event, opened, values)

    def _check_legged_time(self, decision: str, since: float, until: float) -> None:
        """Invariant 1's soft limit, judged when a legged spell ends (or the run does): legged no longer
        than the budget plus the time to hear back from a venue: one far round trip (500 ms), and every
        stretch of the spell in which one of the decision's requests (orders, replaces, cancels, status
        questions) had waited longer than that for its answer (counted once where such waits overlap, so
        two outages in turn count twice, one outage once). The engine cannot act on what it has not
        heard; a request still awaited when the spell ends (a fill held on the link ended it while the
        cancel waited behind it) counts its wait up to that end once the venue answers it, so such a
        spell is judged then (or when the run ends); a request never answered extends nothing, and an
        IOC or FOK order is answered by its outcome (an acknowledgement that leaves it working tells
        the engine nothing it can act on). Never less than the slowest of those answers whole (a
        request sent before the spell began counts all its wait, as it always has). The time
        in which a venue of a short leg and one of a filled leg were both down (logged off; the same
        venue, for a leg part-filled) counts too: no chase and no unwind could go then. A filled leg's
        venue down alone excuses nothing while the chase budget lasts, as the missing lots can be chased
        on their own venue; once the budget is spent (its attempts or its time, the episode unwinding)
        only the filled legs' venues can repair it, and the time one of them is down counts as well."""
        core = self.core
        if core.strategy.recovery.policy != "chase_unwind":
            return
        answered = [(at, rtt) for at, rtt in self.answers.get(decision, ()) if since <= at <= until]
        waits = [(max(at - rtt + FAR_ROUND_TRIP, since), at) for at, rtt in answered if rtt > FAR_ROUND_TRIP]
        short, filled = self.legged_venues.pop(decision, (frozenset(), frozenset()))
        stuck = _overlap(self._down(short, since, until), self._down(filled, since, until))
        spent = self.chase_spent.pop(decision, None)
        if spent is not None and spent < until:  # no chase left: a filled leg's venue down holds the unwind
            stuck = _merged(sorted(stuck + self._down(filled, max(since, spent), until)))
        slowest = max((rtt for _, rtt in answered), default=0.0)
        awaited = {
            key: (max(sent + FAR_ROUND_TRIP, since), until)
            for key, (d, sent) in self.awaiting.items()
            if d == decision and until - sent > FAR_ROUND_TRIP
        }
        spell = _Spell(decision, since, until, waits + stuck, slowest, awaited, bool(waits), bool(stuck))
        if awaited:
            self.judged_later.append(spell)
        else:
            self._judge_legged_time(spell)

    def _answered_after_its_spell(self, key: str) -> None:
        """A request a legged spell still awaited when it ended is answered: its wait counts; the spell
        is judged once every such request is answered."""
        for spell in [s for s in self.judged_later if key in s.awaited]:
            spell.spans.append(spell.awaited.pop(key))
            spell.slow_answers = True
            if not spell.awaited:
                self.judged_later.remove(spell)
                self._judge_legged_time(spell)

    def _judge_legged_time(self, spell: _Spell) -> None:
        budget = self.core.strategy.recovery.legged_budget
        decision, since, until = spell.decision, spell.since, spell.until
        allowance = max(FAR_ROUND_TRIP + _union_length(sorted(spell.spans)), spell.slowest)
        waits, stuck = spell.slow_answers, spell.stuck
        if until - since > budget + allowance:
            self._fail(
                1,
                until,
                decision,
                f"legged {1e3 * (until - since):.0f} ms > budget {1e3 * budget:.0f} ms + {1e3 * allowance:.0f} ms "
                f"(one far round trip{', the answers slower than it' if waits else ''}"
                f"{', the time no repair order could go' if stuck else ''})",
            )

    def _down(self, venues: Set[str], since: float, until: float) -> list[tuple[float, float]]:
        """The stretches of [since, until] in which any of `venues` was logged off, merged and sorted."""
        return _merged(
            sorted(
                (max(a, since), min(b, until))
                for v in venues
                for a, b in [*self.outages.get(v, ()), *([(self.down_since[v], until)] if v in self.down_since else [])]
                if b > since and a < until
            )
        )

    def _engine_free(self, now: float) -> bool:
        """The engine looks at the trigger on a quote only when nothing holds it back: not killed or
        draining, below its concurrent episodes, past its cooldown and with both legs' venues logged
        on and reconciled (a quote that opens no episode changes none of these)."""
        core = self.core
        s = core.strategy
        if (
            core.killed
            or core.draining
            or len(core.active) >= s.execution.max_concurrent_episodes
            or now < core.cooldown_until
        ):
            return False
        instruments = core.instruments
        return core.venue_ready(instruments[s.leg_a].venue) and core.venue_ready(instruments[s.leg_b].venue)

    def _inputs_fresh(self, now: float) -> bool:
        """Every input of the trigger quoted two-sided and uncrossed, none older than its max_quote_age."""
        limits = self.core.strategy.trigger.max_quote_age
        for name in self._inputs():
            q = self.held.get(name)
            if q is None or q.bid is None or q.ask is None or q.bid > q.ask:
                return False
            limit = limits.get(name)
            if limit is not None and now - self.quote_at[name] > limit:
                return False
        return True

    def _inputs(self) -> tuple[str, ...]:
        s = self.core.strategy
        if s is not self._inputs_of:
            self._inputs_of = s
            self._input_names = (s.leg_a, s.leg_b, s.fx) if s.fx else (s.leg_a, s.leg_b)
        return self._input_names

    def _check_missed(self, now: float, quote: Quote, opened: list, held_values: dict | None = None) -> None:
        """Invariant 16, the converse of 15: on a quote the engine was free to act on, with every input
        fresh, a side that is armed and past its threshold opens an episode (the sell side first, as
        one quote cannot put both past theirs); the side disarms when it fires and re-arms once its
        signal retreats past the hysteresis."""
        if not opened and not self._engine_free(now):
            return
        if not self._inputs_fresh(now):
            self.stale += 1
            return
        values = held_values or self._signal_values(self.held)
        assert values is not None  # fresh inputs are two-sided
        t = self.core.strategy.trigger
        sell, buy = values[SELL_SPREAD], values[BUY_SPREAD]
        tol_sell, tol_buy = 1e-9 * max(1.0, abs(sell)), 1e-9 * max(1.0, abs(buy))
        if (
            0.0 < abs(sell - t.sell_above) <= tol_sell
            or 0.0 < abs(sell - (t.sell_above - t.hysteresis)) <= tol_sell
            or 0.0 < abs(buy - t.buy_below) <= tol_buy
            or 0.0 < abs(buy - (t.buy_below + t.hysteresis)) <= tol_buy
        ):
            # a hair off a threshold (the engine multiplies in another order, and may land on the other
            # side of it): its reading stands. Exactly on one (prices on ticks, no FX: both exact) it
            # fires at the threshold and re-arms only strictly past it, as the strategy says
            self.armed = dict(self.core.trigger.armed)
            return
        if not self.armed[SELL_SPREAD] and sell < t.sell_above - t.hysteresis:
            self.armed[SELL_SPREAD] = True
        if not self.armed[BUY_SPREAD] and buy > t.buy_below + t.hysteresis:
            self.armed[BUY_SPREAD] = True
        due = None
        if self.armed[SELL_SPREAD] and sell >= t.sell_above:
            due = SELL_SPREAD
        elif self.armed[BUY_SPREAD] and buy <= t.buy_below:
            due = BUY_SPREAD
        for ep in opened:
            self.armed[ep.side] = False
        if due is None or any(ep.side == due for ep in opened):
            if due is not None:
                self._ok(16)
            return
        value = values[due]
        self._fail(
            16,
            now,
            "",
            f"{quote.instrument} quote put {due} at {fmt_px(value)}, past its threshold "
            f"({'sell_above' if due == SELL_SPREAD else 'buy_below'} "
            f"{fmt_px(t.sell_above if due == SELL_SPREAD else t.buy_below)}), the side armed, inputs fresh, the "
            "engine free to act; no episode opened",
        )

    def _signal_values(self, given: dict[str, Quote] | None = None) -> dict[str, float] | None:
        """The trigger's signal per side from the quotes the node was given (`given`, else those since
        it started), computed here from the strategy's definition (leg A's currency per tonne: price x
        mass units per tonne x FX for leg B); None while an input has no two-sided quote."""
        core = self.core
        s = core.strategy
        if s is not self._terms_of or core.instruments is not self._units_of:
            # the strategy's terms, read once per strategy (a new core's, after a restart or takeover)
            self._terms_of, self._units_of = s, core.instruments
            units = (core.instruments[s.leg_a].units_per_tonne, core.instruments[s.leg_b].units_per_tonne)
            self._terms = (
                s.price_multiplier_a * units[0],  # leg A's currency per tonne per unit of its price
                s.price_multiplier_b * units[1],  # leg B's, before FX
                bool(s.fx),
                s.trigger.kind,
                s.offset,
            )
        names = self._inputs()
        per_a, per_b_base, has_fx, kind, offset = self._terms
        quotes = self.quotes if given is None else given
        touches = []
        for name in names:
            q = quotes.get(name)
            if q is None:
                return None
            bid, ask = q.bid, q.ask
            if bid is None or ask is None:
                return None
            touches.append((bid, ask))
        (a_bid, a_ask), (b_bid, b_ask) = touches[0], touches[1]
        fx = (touches[2][0] + touches[2][1]) / 2.0 if has_fx else 1.0
        per_b = per_b_base * fx
        if kind == "counter_price":  # what trading at the touches gives: A's bid and B's ask, or the reverse
            return {
                SELL_SPREAD: a_bid * per_a - b_ask * per_b + offset,
                BUY_SPREAD: a_ask * per_a - b_bid * per_b + offset,
            }
        mid_a, mid_b = (a_bid + a_ask) / 2.0 * per_a, (b_bid + b_ask) / 2.0 * per_b
        value = mid_a / mid_b if kind == "ratio" else mid_a - mid_b + offset
        return {SELL_SPREAD: value, BUY_SPREAD: value}

    def _check_signal(self, ep, now: float, values: dict[str, float]) -> None:
        """An episode opened on this quote: its side's signal is past that side's threshold, the engine's
        value is the quotes' value, the touches it priced from and its legs' sides are that side's, and
        the side re-armed (retreated past the hysteresis) since it last fired (invariant 15)."""
        s = self.core.strategy
        t = s.trigger
        value = values.get(ep.side)
        if value is None:
            self._fail(15, now, ep.decision_id, f"episode on trigger side {ep.side!r}, which is no side")
            return
        tol = 1e-9 * max(1.0, abs(value))
        qa, qb = self.quotes[s.leg_a], self.quotes[s.leg_b]
        sell = ep.side == SELL_SPREAD
        touches = {"A": qa.bid if sell else qa.ask, "B": qb.ask if sell else qb.bid}
        sides = {"A": SELL if sell else BUY, "B": BUY if sell else SELL}
        if (value < t.sell_above - tol) if sell else (value > t.buy_below + tol):
            self._fail(
                15,
                now,
                ep.decision_id,
                f"{ep.side} opened at a signal of {fmt_px(value)}, not past its threshold "
                f"({'sell_above' if sell else 'buy_below'} "
                f"{fmt_px(t.sell_above if sell else t.buy_below)})",
            )
        elif abs(ep.signal_value - value) > tol:
            self._fail(
                15,
                now,
                ep.decision_id,
                f"the engine's signal {ep.signal_value:.9g} is not the quotes' {value:.9g} ({t.kind})",
            )
        elif any(abs(ep.trigger_prices[n] - touches[n]) > 1e-9 for n in touches):
            self._fail(
                15,
                now,
                ep.decision_id,
                f"{ep.side} priced from {ep.trigger_prices}, not the touches {touches} it trades against",
            )
        elif any(ep.legs[n].side != sides[n] for n in sides):
            self._fail(
                15,
                now,
                ep.decision_id,
                f"{ep.side} with leg A side {ep.legs['A'].side} and leg B side "
                f"{ep.legs['B'].side}: it sells A and buys B, or the reverse",
            )
        elif not self.retreated[ep.side]:
            self._fail(
                15,
                now,
                ep.decision_id,
                f"{ep.side} fired again without its signal retreating "
                f"{fmt_px(t.hysteresis)} past its threshold since it last fired",
            )
        else:
            self._ok(15)
        self.retreated[ep.side] = False

    def _check_fresh(self, ep, now: float) -> None:
        limits = self.core.strategy.trigger.max_quote_age
        for name, book in self.core.books.items():
            limit = limits.get(name)
            if limit is not None and now - book.ts > limit + 1e-9:
                self._fail(
                    11, now, ep.decision_id, f"{name} quote {1e3 * (now - book.ts):.0f} ms old > {1e3 * limit:.0f} ms"
                )
                return
        self._ok(11)

    # ---- every order as the engine hands it to the transport, and as a venue receives it ---------
    def on_send(
        self,
        now: float,
        instrument: str,
        cl_ord_id: str,
        decision_id: str,
        qty: float,
        price: float | None,
        side: str = "",
        replace: bool = False,
        immediate: bool = False,
    ) -> None:
        """Order size and price band, against the same book the engine priced from; a recovery order's
        price against the policy's schedule (invariant 13). An `immediate` order (IOC, FOK) is answered
        by its outcome, not by an acknowledgement that leaves it working (invariant 1's allowance)."""
        core = self.core
        if not replace:
            self.handed.add(cl_ord_id)
            self.unsent.pop(cl_ord_id, None)
        self.awaiting[cl_ord_id] = (decision_id, now)
        if immediate:
            self.immediate.add(cl_ord_id)
        if side and price is not None and not replace:
            self._check_recovery_price(now, instrument, cl_ord_id, decision_id, side, qty, price)
            self.order_prices[cl_ord_id] = [price]
        elif side and price is not None:
            self._check_amend_price(now, instrument, cl_ord_id, decision_id, side, price)
        risk = core.cfg.risk
        if decision_id not in core.episodes:
            self._fail(10, now, decision_id, f"order {cl_ord_id} belongs to no decision")
        elif not replace:
            self._check_one_live(now, decision_id, cl_ord_id)
        max_qty = risk.max_order_lots.get(instrument)
        ref = core.reference_price(instrument)  # the book's mid, else its last two-sided mid
        sent = self.sent_today[instrument] = self.sent_today.get(instrument, 0) + (not replace)
        max_orders = risk.max_orders_per_day.get(instrument)
        if max_orders is not None and sent > max_orders:
            self._fail(
                8,
                now,
                decision_id,
                f"{cl_ord_id}: order {sent} on {instrument} today > max_orders_per_day {max_orders}",
            )
        elif max_qty is not None and qty > max_qty:
            self._fail(8, now, decision_id, f"{cl_ord_id}: {qty:g} lots > max_order_lots {max_qty}")
        elif price is not None and ref is None:
            self._fail(
                8,
                now,
                decision_id,
                f"{cl_ord_id}: priced at {price} with no reference price to check "
                f"the {risk.price_band_pct}% band against",
            )
        elif price is not None and ref is not None and abs(price - ref) / ref * 100 > risk.price_band_pct + 1e-9:
            self._fail(8, now, decision_id, f"{cl_ord_id}: price {price} beyond {risk.price_band_pct}% of {ref}")
        elif (
            slip := self._chase_slippage(instrument, cl_ord_id, decision_id, side, price)
        ) is not None and slip > risk.max_slippage_ticks + 1e-6:
            self._fail(
                8,
                now,
                decision_id,
                f"{cl_ord_id}: chase {slip:g} ticks from its leg's trigger price "
                f"> max_slippage_ticks {risk.max_slippage_ticks}",
            )
        else:
            self._ok(8)

    def on_audit(self, row) -> None:
        """A fill on record moves a position: one of no lots is a phantom the audit trail must not hold
        (invariant 6). A refusal on record must name a limit the order breaks (invariant 14)."""
        self.audited.add(row.cl_ord_id)
        if row.stage in ("fill", "foreign_fill") and not row.qty > 1e-9:
            self._fail(
                6,
                row.ts,
                row.decision_id,
                f"audit row {row.seq}: {row.stage} of {row.qty:g} lots for "
                f"{row.cl_ord_id or 'no order'}: a fill on record that moved nothing",
            )
        elif row.stage == "risk_breach" and row.side and row.instrument:
            self._check_refusal(row)

    def _check_refusal(self, row) -> None:
        """Invariant 14: an order refused by max_position_lots or max_order_lots breaks it, as computed
        here from the engine's position and every order of that instrument it holds and that is not
        done (what could still fill), whatever episode it belongs to; orders of other instruments never
        count. Refusals by the other limits are not recomputed here."""
        core, name, qty = self.core, row.instrument, row.qty
        risk = core.cfg.risk
        if "max_order_lots" in row.detail:
            limit = risk.max_order_lots.get(name)
            if limit is not None and qty > limit:
                self._ok(14)
            else:
                self._fail(
                    14,
                    row.ts,
                    row.decision_id,
                    f"{row.detail}: but {qty:g} lots is within max_order_lots {limit} of {name}",
                )
        elif "max_position_lots" in row.detail:
            limit = risk.max_position_lots.get(name)
            working = list(core.orders.values())
            buys = sum(o.leaves_qty for o in working if o.instrument == name and o.side == BUY)
            sells = sum(o.leaves_qty for o in working if o.instrument == name and o.side != BUY)
            position = core.positions.get(name, 0.0)
            worst = position + buys + qty if row.side == BUY else position - sells - qty
            if limit is not None and abs(worst) > limit + 1e-9:
                self._ok(14)
            else:
                self._fail(
                    14,
                    row.ts,
                    row.decision_id,
                    f"{row.detail}: but {name}'s worst case is {worst:+g} lots "
                    f"(position {position:+g}, working buys {buys:g}, sells "
                    f"{sells:g}), within max_position_lots {limit}",
                )

    def _check_one_live(self, now: float, decision_id: str, cl_ord_id: str) -> None:
        """One intent, one live order: a new order of an episode's leg leaves only when no earlier order
        of that leg is still live in the engine's view (working, or a cancel not yet answered); a
        second one could fill on top of the first (invariant 10)."""
        m = CHILD_ID.match(cl_ord_id)
        leg = self.core.episodes[decision_id].legs.get(m.group(2)) if m is not None else None
        if leg is None:
            return
        live = [o.cl_ord_id for o in leg.orders if not o.done and o.cl_ord_id != cl_ord_id]
        if live:
            self._fail(
                10,
                now,
                decision_id,
                f"{cl_ord_id} sent while {', '.join(live)} of leg {leg.name} is still live: two orders for one intent",
            )

    def _chase_slippage(
        self, instrument: str, cl_ord_id: str, decision_id: str, side: str, price: float | None
    ) -> float | None:
        """Ticks a chase order pays beyond its leg's price at the trigger (the slippage limit's measure)."""
        m = CHILD_ID.match(cl_ord_id)
        ep = self.core.episodes.get(decision_id)
        inst = self.core.instruments.get(instrument)
        if m is None or m.group(3) != "R" or ep is None or inst is None or price is None or not side:
            return None
        trigger = ep.trigger_prices.get(m.group(2))
        return None if trigger is None else (price - trigger) * (1 if side == BUY else -1) / inst.tick

    def _check_amend_price(
        self, now: float, instrument: str, cl_ord_id: str, decision_id: str, side: str, price: float
    ) -> None:
        """Invariant 13 for amends (limit mode): the k-th replace of a resting order is named <its
        ClOrdID>M<k>, k is at most `max_amends`, and it is priced at the touch of the book the engine saw
        plus the leg's `payup_ticks` plus `amend_step_ticks` x k, or, where that is no better than the
        order's price, one `amend_step_ticks` beyond it (an episode a takeover inherited may have had
        amends this checker's node did not send: any k up to the count is allowed there)."""
        m = AMEND_ID.match(cl_ord_id)
        first = m.group(1) if m is not None else ""
        if m is None or first not in self.order_prices:
            self._fail(13, now, decision_id, f"{cl_ord_id}: a replace that names no order sent before")
            return
        k = self.amends[first] = self.amends.get(first, 0) + 1
        ex = self.core.strategy.execution
        inherited = decision_id in self.inherited
        if not inherited and (k > ex.max_amends or int(m.group(2)) != k):
            self._fail(
                13,
                now,
                decision_id,
                f"{cl_ord_id}: amend {k} of {first} (max_amends {ex.max_amends}) named M{m.group(2)}",
            )
            return
        inst = self.core.instruments.get(instrument)
        book = self.core.books.get(instrument)
        touch = None if book is None else book.ask if side == BUY else book.bid
        if inst is None or touch is None:
            self._fail(13, now, decision_id, f"{cl_ord_id}: an amend priced with no touch to price it from")
            return
        sign = 1 if side == BUY else -1
        base = ex.payup_ticks.get(instrument, 0)
        allowed = set()
        for n in range(1, k + 1) if inherited else (k,):
            target = inst.round_to_tick(touch + sign * (base + ex.amend_step_ticks * n) * inst.tick, sign)
            allowed.add(target)
            allowed |= {
                inst.round_to_tick(p + sign * ex.amend_step_ticks * inst.tick, sign)
                for p in self.order_prices[first]
                if (target - p) * sign <= 1e-12
            }
        self.order_prices[first].append(price)
        self._on_schedule(
            now,
            decision_id,
            price,
            allowed,
            inst.tick,
            f"{cl_ord_id}: amend {k} of {first}",
            f"the touch {fmt_px(touch)}",
        )

    def _on_schedule(
        self, now: float, decision_id: str, price: float, allowed: set[float], tick: float, what: str, source: str
    ) -> None:
        """Invariant 13's verdict on one price: one of the schedule's, to a millionth of a tick (or the
        float noise of a price that size, where a fine tick is below it)."""
        slack = grid_slack(tick, price)  # as Instrument.on_grid judges a price
        if any(abs(price - a) <= slack for a in allowed):
            self._ok(13)
        else:
            self._fail(
                13,
                now,
                decision_id,
                f"{what} priced {fmt_px(price)}, the schedule gives {' or '.join(fmt_px(a) for a in sorted(allowed))} "
                f"from {source}",
            )

    def _check_recovery_price(
        self, now: float, instrument: str, cl_ord_id: str, decision_id: str, side: str, qty: float, price: float
    ) -> None:
        """Invariant 13, recomputed from the recovery section of the config and the book the engine saw
        when it sent: a chase is priced at the touch plus `chase_payup_ticks`, plus `chase_step_ticks` per
        earlier round, plus `liquidity_step_ticks` when the touch shows fewer lots than it sends, capped
        at `max_payup_ticks` (or at its leg's last price, a "retry" re-send); an unwind or overfill hedge
        at the touch plus `unwind_payup_ticks` plus `unwind_step_ticks` per earlier unwind round; and an
        episode never starts more chase rounds than `max_chase_attempts` nor more unwind rounds than
        `max_unwind_attempts` (an episode a takeover inherited is not counted: its rounds span nodes)."""
        m = CHILD_ID.match(cl_ord_id)
        if m is None:
            return
        leg = m.group(2)
        previous = self.last_price.get((decision_id, leg))
        self.last_price[decision_id, leg] = price
        tag = m.group(3)
        if not tag:  # an entry: priced by the execution mode, checked by the price band
            return
        core = self.core
        inst = core.instruments.get(instrument)
        book = core.books.get(instrument)
        touch = None if book is None else book.ask if side == BUY else book.bid
        retry = tag == "R" and previous is not None and inst is not None and abs(price - previous) < inst.tick / 2
        if (inst is None or book is None or touch is None) and not retry:
            self._fail(
                13,
                now,
                decision_id,
                f"{cl_ord_id}: a recovery order priced with no {'offer' if side == BUY else 'bid'} to price it from",
            )
            return
        rc = core.strategy.recovery
        kind = "R" if tag == "R" else "U"
        rounds = self.rounds.setdefault((decision_id, kind), [])
        if tag != "H" and (not rounds or rounds[-1] != now):
            rounds.append(now)
            limit = rc.max_chase_attempts if kind == "R" else rc.max_unwind_attempts
            if len(rounds) > limit and decision_id not in self.inherited:
                self._fail(
                    13,
                    now,
                    decision_id,
                    f"{cl_ord_id}: {'chase' if kind == 'R' else 'unwind'} round "
                    f"{len(rounds)} of an episode allowed {limit} "
                    f"(max_{'chase' if kind == 'R' else 'unwind'}_attempts)",
                )
                return
        if book is None or touch is None or inst is None:
            return  # a "retry" re-send at its leg's last price needs no touch: the rounds were counted
        unwinds = len(self.rounds.get((decision_id, "U"), ()))
        if tag == "R":
            size = book.ask_size if side == BUY else book.bid_size
            extra = rc.liquidity_step_ticks if size < qty else 0
            attempts = range(1, len(rounds) + 1) if decision_id in self.inherited else (len(rounds),)
            payups = {
                min(rc.chase_payup_ticks + rc.chase_step_ticks * (n - 1) + extra, rc.max_payup_ticks) for n in attempts
            }
        else:
            attempts = range(0, unwinds + 1) if decision_id in self.inherited else (unwinds,)
            payups = {rc.unwind_payup_ticks + rc.unwind_step_ticks * max(n - 1, 0) for n in attempts}
        sign = 1 if side == BUY else -1
        allowed = {inst.round_to_tick(touch + sign * p * inst.tick, sign) for p in payups}
        if tag == "R" and previous is not None:
            allowed.add(previous)
        self._on_schedule(
            now,
            decision_id,
            price,
            allowed,
            inst.tick,
            cl_ord_id + ":",
            f"the {'offer' if side == BUY else 'bid'} {fmt_px(touch)} (payup {sorted(payups)} ticks)",
        )

    def on_ask(self, now: float, key: str, decision_id: str) -> None:
        """A cancel (its ClOrdID) or a status question ("?" + the order's) handed to the transport: its
        answer's round trip counts in invariant 1's allowance like an order's (orders: `on_send`)."""
        self.awaiting[key] = (decision_id, now)

    def on_leave(self, now: float, node: str, cl_ord_id: str, what: str) -> None:
        """An order, cancel or replace handed to the transport by `node` (invariant 5)."""
        if self.lease is None:
            return
        if self.fenced_since:  # it holds the lease now: its spells behind the fence are over
            self.fenced_since = {k: t for k, t in self.fenced_since.items() if k[0] != node}
        epoch = epoch_of(cl_ord_id)
        if epoch is not None and epoch < self.lease.revision:
            self._fail(
                5,
                now,
                decision_of(cl_ord_id),
                f"{what} {cl_ord_id} left node {node} under fenced epoch {epoch} while epoch "
                f"{self.lease.revision} is active: a duplicate order for one intent",
            )
        else:
            self._ok(5)

    def after_batch(self, now: float) -> None:
        """The core's actions for one event were carried out in full (the process lived through the
        batch): the orders it registered meanwhile and did not hand to the transport are noted; one
        still not handed when the run ends is a lost action (invariant 10, at finish)."""
        orders = self.core.orders
        if len(orders) == self.registered:
            return
        new = list(islice(orders.values(), self.registered, None))
        self.registered = len(orders)
        for o in new:
            if not o.adopted and o.cl_ord_id not in self.handed:
                self.unsent[o.cl_ord_id] = (o.decision_id, now)
            elif o.adopted and o.cl_ord_id not in self.audited:
                # the audit trail shows every decision: an order taken over from an earlier node is one
                self._fail(
                    10,
                    now,
                    o.decision_id,
                    f"order {o.cl_ord_id} adopted from an earlier node with no audit row of this node naming it",
                )

    def on_fenced(self, now: float, node: str, cl_ord_id: str) -> None:
        """An order, cancel or replace of `node` stopped by the fence (invariant 5's other half: a node
        without the lease is not left running, its core waiting for answers to orders that never left
        while nobody trades: it steps down, or stops and restarts, or is superseded, within the window
        the failure detector needs)."""
        self.handed.add(cl_ord_id)
        self.unsent.pop(cl_ord_id, None)
        self.coverage.add("fenced_attempt")
        since = self.fenced_since.setdefault((node, epoch_of(cl_ord_id)), now)
        if now - since > self.fence_window:
            self._fail(
                5,
                now,
                decision_of(cl_ord_id),
                f"node {node} still sending ({cl_ord_id}) {now - since:.3f} s after the fence first stopped "
                f"it: a node without the lease left running (it must step down or be superseded within "
                f"{self.fence_window:.3f} s)",
            )
        else:
            self._ok(5)

    def on_venue_order(self, now: float, cl_ord_id: str) -> None:
        if cl_ord_id in self.client_ids:
            self._fail(4, now, cl_ord_id, f"ClOrdID {cl_ord_id} reached a venue twice")
        else:
            self._ok(4)
        self.client_ids.add(cl_ord_id)

    def on_venue_fill(self, instrument: str, signed_qty: float, now: float, cl_ord_id: str) -> None:
        pos = self.venue_position[instrument] = self.venue_position.get(instrument, 0.0) + signed_qty
        if cl_ord_id in self.late_fills:  # a venue's late fill (fault late_fill): no order of ours asked for it
            self.late_position[instrument] = self.late_position.get(instrument, 0.0) + abs(signed_qty)
        limit = self.core.cfg.risk.max_position_lots.get(instrument)
        # the limit bounds what the engine's orders can do; a late fill adds what no order could foresee,
        # in either direction, and the engine may since have traded it away (a reopened episode's repair):
        # the position may be beyond the limit by no more than the late fills' lots
        if limit is not None and abs(pos) > limit + self.late_position.get(instrument, 0.0) + 1e-9:
            order = self.core.find_order(cl_ord_id)
            self._fail(
                8, now, order.decision_id if order else "", f"{instrument} position {pos:+g} lots beyond ±{limit}"
            )

    # ---- at the end of the run -----------------------------------------------------------------
    def reconcile_check(
        self, now: float, venue_orders: dict[str, tuple[str, float, float]], flagged: Set[str] = frozenset()
    ) -> None:
        """Invariant 12, at the end of every run (restarts, failovers and disconnects included): every order the engine holds agrees
        with the venue on filled quantity, on being done and on its average fill price (venue_orders:
        ClOrdID -> (OrdStatus, CumQty, AvgPx)); an order the venue never saw must be dead with nothing
        filled in the engine; nothing the engine does not know is left working at a venue, and every
        one that traded was told to the desk (`flagged`: ClOrdIDs of unknown_order anomalies), and only
        those: each unknown_order anomaly names an order a venue holds and the engine does not know
        (not, say, the ClOrdID of its own cancel of such an order: a false alarm)."""
        for cl in sorted(flagged):
            if cl and cl != "NONE" and (cl not in venue_orders or self.core.find_order(cl) is not None):
                self._fail(
                    12,
                    now,
                    "",
                    f"{cl}: reported as an unknown order, but "
                    + (
                        "no venue holds an order of that ClOrdID"
                        if cl not in venue_orders
                        else "it is the engine's own order"
                    ),
                )
                return
        for cl, (status, cum, _avg) in venue_orders.items():
            if cum > 1e-9 and cl not in flagged and self.core.find_order(cl) is None:
                self._fail(
                    12,
                    now,
                    "",
                    f"{cl}: {cum:g} lots filled at the venue by an order the engine does not "
                    f"know, and the desk was never told of it",
                )
                return
            if status not in ("2", "4", "8", "C") and self.core.find_order(cl) is None:
                # an order of another node (or of nobody) the reconciliation should have cancelled
                self._fail(
                    12,
                    now,
                    "",
                    f"{cl}: working at the venue (OrdStatus {status}, CumQty {cum:g}) and unknown to the engine",
                )
                return
        for o in self.core.orders.values():
            seen = venue_orders.get(o.cl_ord_id)
            if seen is None:
                if o.cum_qty > 1e-9 or not o.done:
                    self._fail(
                        12,
                        now,
                        o.decision_id,
                        f"{o.cl_ord_id}: engine {o.state.name} CumQty {o.cum_qty:g}, unknown at the venue",
                    )
                    return
                continue
            status, cum, avg = seen
            if abs(cum - o.cum_qty) > 1e-9 or (status in ("2", "4", "8", "C")) != o.done:
                self._fail(
                    12,
                    now,
                    o.decision_id,
                    f"{o.cl_ord_id}: engine {o.state.name} CumQty {o.cum_qty:g}, "
                    f"venue OrdStatus {status} CumQty {cum:g}",
                )
                return
            # an AvgPx travels to six decimals (an order adopted from a status answer holds that text's
            # value) and an average made fill by fill carries float noise: nothing more than those
            if cum > 1e-9 and abs(avg - o.avg_px) > AVG_PX_SLACK + 1e-9 * abs(avg):
                self._fail(
                    12,
                    now,
                    o.decision_id,
                    f"{o.cl_ord_id}: engine AvgPx {o.avg_px:.6f}, venue AvgPx {avg:.6f} over {cum:g} lots",
                )
                return
        self._ok(12)

    def _check_outcome(self, ep, now: float) -> None:
        """An ended episode's outcome is what its legs' fills say: BALANCED leaves no leg short of its
        target (one past it is an overfill, hedged or on record), UNWOUND and ABORTED leave every leg flat
        (invariant 3)."""
        filled = {name: leg.filled for name, leg in ep.legs.items()}
        if ep.state.value == "BALANCED" and any(filled[n] < leg.target - 1e-9 for n, leg in ep.legs.items()):
            self._fail(
                3,
                now,
                ep.decision_id,
                f"BALANCED with a leg short of its target: filled {filled}, targets "
                f"{ {n: leg.target for n, leg in ep.legs.items()} }",
            )
        elif ep.state.value in ("UNWOUND", "ABORTED") and any(abs(f) > 1e-9 for f in filled.values()):
            self._fail(3, now, ep.decision_id, f"{ep.state.value} with a leg not flat: filled {filled}")

    def finish(self, now: float, anomalies: list, venue_positions: dict[str, float]) -> dict:
        core = self.core
        for decision, since in list(self.legged_since.items()):  # still legged as the run ends
            self._check_legged_time(decision, since, now)
        for spell in self.judged_later:  # what was never answered extends nothing
            self._judge_legged_time(spell)
        self.judged_later = []
        for ep in core.episodes.values():
            if ep.state not in TERMINAL:
                self._fail(2, now, ep.decision_id, f"episode ended the run {ep.state.value}")
            st = ep.stages
            order = ["signal", "risk_check", "terminal"]
            times = [st[k] for k in order if k in st]
            if (
                "signal" not in st
                or ("terminal" not in st and ep.state in TERMINAL)
                or times != sorted(times)
                or any(v < st["signal"] for v in st.values())
            ):
                self._fail(10, now, ep.decision_id, f"stage chain out of order or incomplete: {st}")
            if ep.state.value == "BALANCED" and ep.residual_tonnes is None:
                self._fail(3, now, ep.decision_id, "residual not recorded")
            self._check_outcome(ep, now)
        for cl, (decision_id, when) in self.unsent.items():
            self._fail(
                10, when, decision_id, f"order {cl} registered by the engine as sent but never handed to the transport"
            )
            break
        if core.episodes:
            for n in (2, 3, 10):
                self._ok(n)
        skips = core.trigger.stale_skips - self.stale_before
        if skips != self.stale:
            self._fail(
                16,
                now,
                "",
                f"the trigger counted {skips} quotes skipped for a missing or stale input; the quotes give {self.stale}",
            )
        engine_pos = {k: v for k, v in core.positions.items() if v}
        if engine_pos != {k: v for k, v in venue_positions.items() if v}:
            self._fail(6, now, "", f"engine positions {engine_pos} != venue fills {venue_positions}")
        else:
            self._ok(6)
        # an overfill is allowed when it is on record (an anomaly row); an illegal move never is
        illegal = [
            a for a in anomalies if a.kind in ("illegal_transition", "illegal_episode_transition", "engine_error")
        ]
        # a late fill is the venue's doing only when the venue really filled the order after ending it;
        # an engine that ended an order the venue kept working would show the same anomaly
        illegal += [a for a in anomalies if a.kind == "late_fill" and a.cl_ord_id not in self.late_fills]
        # the simulated venues report every order truly: an OrdStatus or CumQty the engine finds at odds with
        # its own reading, a fill it finds void or an ExecType it does not know is the engine misreading them
        illegal += [a for a in anomalies if a.kind in MISREAD]
        if illegal:
            self._fail(7, illegal[0].ts, "", f"{illegal[0].cl_ord_id}: {illegal[0].detail}")
        else:
            self._ok(7)
        return {
            str(n): {"name": NAMES[n], "status": v.status, **({"first": v.first} if v.first else {})}
            for n, v in self.v.items()
        }
