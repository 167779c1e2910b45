"""EngineCore: the sans-I/O engine. ``handle(event, now)`` in, a list of actions out.

Theory of operation: quotes update the books and may fire the trigger; a signal opens an episode
(engine/core/episode.py) that sizes both legs, checks risk for both before sending either, and sends
them at once as child orders (engine/core/order.py). Execution reports, cancel rejects and business
rejects move the orders; whenever no order of an episode is working, the legs decide its next
state; a LEGGED episode is handed to the recovery policy (engine/core/recovery.py). Timers are actions
too, so the same code runs under simpy's virtual clock and under a production timer thread.
The core owns no clock, socket, thread or random number; it is deterministic in its inputs.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from typing import Any

from engine.config import EngineConfig, Instrument
from engine.core import ids
from engine.core.ack_watch import AckWatch
from engine.core.amending import Amending
from engine.core.episode import Episode, EpisodeEvent, EpisodeState, Leg, RecoveryMode
from engine.core.events import (
    Action,
    Alert,
    Anomaly,
    Audit,
    BusinessReject,
    CancelReject,
    CancelTimer,
    Command,
    Event,
    ExecReport,
    MarketDataRefused,
    PositionReport,
    Quote,
    SendCancel,
    SendOrder,
    SessionDown,
    SessionGap,
    SessionUp,
    SetTimer,
    Takeover,
    TimerFired,
    TimerKind,
    parse_timer_key,
    timer_key,
)
from engine.core.ids import ALL_ORDERS_QUESTION, BUY, SELL, TIF, epoch_of, side_sign  # noqa: F401 - epoch_of: importable from here too
from engine.core.order import ChildOrder, OrderEvent, OrdStatus
from engine.core.reconciliation import Reconciliation
from engine.core.recovery import ChaseThenUnwind, EscalateOnLegged, RecoveryPolicy
from engine.core.registry import OrderRegistry
from engine.core.risk import Breach, check_order
from engine.core.sizing import align
from engine.core.trigger import SELL_SPREAD, Signal, TopOfBook, TriggerEvaluator


def _crossed(bid: float | None, ask: float | None) -> bool:
    """A two-sided top whose bid is above its offer (the trigger does not price from it either)."""
    return bid is not None and ask is not None and bid > ask


class EngineCore:
    """One strategy's engine state; feed it events in order, carry out the actions it returns."""

    def __init__(self, config: EngineConfig, recovery: RecoveryPolicy | None = None):
        self.cfg = config
        self.strategy = config.strategy
        self.instruments = config.instruments
        if recovery is None:
            recovery = ChaseThenUnwind() if config.strategy.recovery.policy == "chase_unwind" else EscalateOnLegged()
        self.recovery = recovery
        self.trigger = TriggerEvaluator(config.strategy, config.instruments)
        self.books: dict[str, TopOfBook] = {}
        self.last_mid: dict[str, float] = {}  # the last two-sided mid per instrument (see reference_price)
        self.orders = OrderRegistry()  # every child order by ClOrdID, and its cancels' and replaces' ids
        self.episodes: dict[str, Episode] = {}
        self.active: dict[str, Episode] = {}
        self.positions: dict[str, float] = {name: 0.0 for name in config.instruments}
        self.reconciliation = Reconciliation(self)  # sessions, status answers, foreign reports, position holds
        self.amending = Amending(self)  # limit mode: lagging resting legs moved toward the market
        ex = config.strategy.execution
        self.ack_watch = AckWatch(ex.ack_timeout_rtts, ex.answer_timeout)  # new orders' answers, per venue
        self.killed = False
        self.draining = False
        self.cooldown_until = -math.inf
        self.seq = 0
        self.epoch = config.epoch  # fencing epoch of this node: a Takeover raises it
        self.orders_today: dict[str, int] = {name: 0 for name in config.instruments}
        self.cancels_today: dict[str, int] = {name: 0 for name in config.instruments}
        self._handlers: dict[type, Callable[[Any, float], list[Action]]] = {
            Quote: self._on_quote,
            ExecReport: self._on_exec_report,
            CancelReject: self._on_cancel_reject,
            Takeover: self.reconciliation.on_takeover,
            BusinessReject: self._on_business_reject,
            SessionUp: self.reconciliation.on_session_up,
            PositionReport: self.reconciliation.on_position_report,
            SessionDown: self._on_session_down,
            SessionGap: self._on_session_gap,
            TimerFired: self._on_timer,
            Command: self._on_command,
            MarketDataRefused: self._on_md_refused,
        }

    # ---- entry point ------------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Action]:
        """Decide what `event` at `now` means; the actions for the shell to carry out.

        A defect that raises here must not leave sessions up with nobody deciding: the error is
        recorded (anomaly engine_error, with the traceback), a critical alert raised and the kill
        switch thrown (working orders cancelled, no new episodes), in every shell alike.
        """
        try:
            return self._handlers[type(event)](event, now)
        except Exception as exc:  # noqa: BLE001 - the fail-safe of last resort, see above
            return self._failed(event, now, exc)

    def _failed(self, event: Event, now: float, exc: Exception) -> list[Action]:
        where = traceback.format_exception(exc)[-3:]  # the innermost frame and the error, for the audit
        out: list[Action] = [
            self.anomaly(
                now,
                "engine_error",
                getattr(event, "cl_ord_id", ""),
                f"{type(exc).__name__}: {exc} while handling {type(event).__name__}; {''.join(where).strip()}",
            ),
            Alert(
                now,
                "critical",
                f"engine error on {type(event).__name__} ({type(exc).__name__}: {exc}): kill switch thrown",
            ),
        ]
        if not self.killed:
            try:
                out += self._on_command(Command("kill"), now)
            except Exception as again:  # noqa: BLE001 - nothing left to try in the core; the desk must act
                out.append(Alert(now, "critical", f"kill switch failed after the engine error: {again!r}"))
        return out

    # ---- sessions and market data -----------------------------------------------------------
    def stamp(self, cl_ord_id: str) -> str:
        """This node's fencing epoch on a ClOrdID (engine.core.ids.stamp)."""
        return ids.stamp(cl_ord_id, self.epoch)

    def venue_ready(self, venue: str) -> bool:
        """Logged on and reconciled, its positions agreeing with ours: orders may go there."""
        return self.reconciliation.venue_ready(venue)

    def order_list_due(self, venue: str) -> bool:
        """`venue` is to list all its orders, one round trip away (Reconciliation.order_list_due)."""
        return self.reconciliation.order_list_due(venue)

    def _on_quote(self, q: Quote, now: float) -> list[Action]:
        if q.instrument not in self.instruments:
            return [self.anomaly(now, "unknown_instrument", "", f"quote for {q.instrument!r}")]
        before = self.books.get(q.instrument)
        book = self.books[q.instrument] = TopOfBook(q.bid, q.bid_size, q.ask, q.ask_size, now)
        if _crossed(q.bid, q.ask):  # a bid above the offer on one venue's own book: no price anyone trades at
            if before is not None and _crossed(before.bid, before.ask):
                return []  # recorded when it crossed
            return [self.anomaly(now, "crossed_book", "", f"{q.instrument}: bid {q.bid:g} > offer {q.ask:g}")]
        mid = book.mid
        if mid:
            self.last_mid[q.instrument] = mid
        resumed = self._resume_quote_waits(q.instrument, now)
        if (
            self.killed
            or self.draining
            or len(self.active) >= self.strategy.execution.max_concurrent_episodes
            or now < self.cooldown_until
            or not self._legs_connected()
        ):
            return resumed
        signal = self.trigger.evaluate(self.books, now)
        if signal is None:
            return resumed
        self.trigger.disarm(signal.side)
        return resumed + self._open_episode(signal, now)

    def _on_session_gap(self, ev: SessionGap, now: float) -> list[Action]:
        """Messages of `ev.venue` were lost or are late: any of them may have moved its books, so none
        is fresh (the trigger's max_quote_age) until the venue's next live quote; resent market data
        never makes one fresh (engine/fix/codec.py)."""
        self._books_unknown(ev.venue)
        return []

    def _on_session_down(self, ev: SessionDown, now: float) -> list[Action]:
        """The session is gone, and with it every quote the venue sends until the next logon: its books
        are not fresh until its next live quote (the snapshot its logon's subscription brings)."""
        self._books_unknown(ev.venue)
        return self.reconciliation.on_session_down(ev, now)

    def _books_unknown(self, venue: str) -> None:
        for inst in self.instruments.values():
            book = self.books.get(inst.name)
            if inst.venue == venue and book is not None:
                book.ts = -math.inf

    def quote_fresh(self, instrument: str, now: float) -> bool:
        """The instrument's book is a live quote within the trigger's max_quote_age: what an order may be
        priced from (an entry through the trigger, a recovery order through this)."""
        book = self.books.get(instrument)
        limit = self.trigger.t.max_quote_age.get(instrument)
        return book is not None and (limit is None or now - book.ts <= limit)

    def quote_age_limit(self, instrument: str) -> float:
        """Seconds a quote of `instrument` stays fresh (the trigger's max_quote_age; every leg has one)."""
        return self.trigger.t.max_quote_age.get(instrument, math.inf)

    def _resume_quote_waits(self, instrument: str, now: float) -> list[Action]:
        """A live quote of `instrument`: every legged episode whose recovery waited for it goes on."""
        out: list[Action] = []
        for ep in list(self.active.values()):
            if instrument in ep.quotes_awaited and ep.state is EpisodeState.LEGGED and not ep.working:
                out += self.recovery.on_legged(self, ep, now)
        return out

    def _on_md_refused(self, ev: MarketDataRefused, now: float) -> list[Action]:
        """The venue will not quote a subscription: its instrument's book stays without fresh quotes, so
        no episode opens on it (the trigger's inputs are stale), and the desk must know why."""
        names = [n for n, inst in self.instruments.items() if inst.venue == ev.venue and f"MD-{n}" == ev.req_id]
        what = names[0] if names else f"MDReqID {ev.req_id}"
        text = f"{ev.venue}: market data for {what} refused (MDReqRejReason {ev.reason or 'none'}) {ev.text}".strip()
        return [self.anomaly(now, "md_refused", "", text), Alert(now, "critical", f"{text}: no episode can use it")]

    def _legs_connected(self) -> bool:
        s = self.strategy
        ready = self.reconciliation.venue_ready
        return ready(self.instruments[s.leg_a].venue) and ready(self.instruments[s.leg_b].venue)

    # ---- episodes ---------------------------------------------------------------------------
    def _open_episode(self, sig: Signal, now: float) -> list[Action]:
        s = self.strategy
        a, b = self.instruments[s.leg_a], self.instruments[s.leg_b]
        self.seq += 1
        did = f"E{self.epoch}-{self.seq:06d}"
        size = align(s.clip_lots_a, s.lot_ratio, s.rounding, a, b)
        side_a = SELL if sig.side == SELL_SPREAD else BUY
        side_b = BUY if side_a == SELL else SELL
        legs = {
            "A": Leg("A", a.name, side_a, size.lots_a, a.lot_tonnes),
            "B": Leg("B", b.name, side_b, size.lots_b, b.lot_tonnes),
        }
        ep = Episode(did, sig.side, sig.value, legs, {"A": sig.price_a, "B": sig.price_b}, size.residual_tonnes)
        ep.stages["signal"] = now
        self.episodes[did] = ep
        self.active[did] = ep
        out: list[Action] = [
            Audit(
                now,
                "signal",
                did,
                detail=(
                    f"{s.trigger.kind} {sig.side} value={sig.value:.6g} fx={sig.fx_rate:.6g} lots A={size.lots_a} "
                    f"B={size.lots_b} residual_t={size.residual_tonnes:.3f}"
                ),
            )
        ]
        prices = {name: self._entry_price(self.instruments[leg.instrument], leg.side) for name, leg in legs.items()}
        ep.stages["risk_check"] = now
        worst_naked = max(leg.target * leg.lot_tonnes for leg in legs.values())
        if worst_naked > self.cfg.risk.max_naked_tonnes:
            ep.reason = (
                f"risk: max_naked_tonnes: one leg alone would leave {worst_naked:.2f} t naked "
                f"(limit {self.cfg.risk.max_naked_tonnes:g} t)"
            )
            out.append(Audit(now, "risk_breach", did, detail=ep.reason))
            return out + self.move_episode(ep, EpisodeEvent.RISK_FAILED, now)
        priced: dict[str, float] = {}
        for name, leg in legs.items():
            inst = self.instruments[leg.instrument]
            price = prices[name]
            if price is None:
                ep.reason = f"no price: {inst.name} has no {'offers' if leg.side == BUY else 'bids'} to trade against"
                out.append(Audit(now, "risk_breach", did, instrument=inst.name, detail=ep.reason))
                return out + self.move_episode(ep, EpisodeEvent.RISK_FAILED, now)
            breach = self._risk(inst, leg.side, leg.target, price, sig.fx_rate)
            if breach is not None:
                ep.reason = f"risk: {breach.limit} on {inst.name}: {breach.detail}"
                out.append(
                    Audit(
                        now,
                        "risk_breach",
                        did,
                        instrument=inst.name,
                        account=inst.account,
                        side=leg.side,
                        qty=leg.target,
                        price=price,
                        detail=ep.reason,
                    )
                )
                return out + self.move_episode(ep, EpisodeEvent.RISK_FAILED, now)
            priced[name] = price
        out.append(Audit(now, "risk_pass", did))
        out += self.move_episode(ep, EpisodeEvent.RISK_PASSED, now)
        for name, leg in legs.items():
            out += self.send_order(ep, leg, leg.side, leg.target, priced[name], now)
        out.append(SetTimer(now + s.execution.order_timeout, timer_key(TimerKind.TIMEOUT, did)))
        return out

    def _entry_price(self, inst: Instrument, side: str) -> float | None:
        return self.price_from_touch(inst, side, self.strategy.execution.payup_ticks.get(inst.name, 0))

    def price_from_touch(self, inst: Instrument, side: str, payup_ticks: int) -> float | None:
        """The opposite touch plus `payup_ticks` in the direction that makes the order more marketable;
        None when that side of the book is empty (no offers to buy from, no bids to sell to): a
        marketable price cannot be derived from the other side, whose prices are away from the market."""
        book = self.books.get(inst.name)
        touch = None if book is None else book.ask if side == BUY else book.bid
        if touch is None:
            return None
        payup = payup_ticks * inst.tick
        return inst.round_to_tick(touch + payup if side == BUY else touch - payup, side_sign(side))

    def reference_price(self, instrument: str) -> float | None:
        """The price the pre-trade price band is measured from: the book's mid; on a one-sided or
        empty book the last two-sided mid; None when the book has never been two-sided (then no
        order may be priced: the band cannot be checked). Invariant 8 uses the same reference. Every
        quote that shows both sides sets it (`_on_quote`), so it is the book's mid while there is one."""
        return self.last_mid.get(instrument)

    def set_timer(self, at: float, key: str) -> SetTimer:
        return SetTimer(at, key)

    def recovery_order(
        self,
        ep: Episode,
        leg: Leg,
        side: str,
        qty: int,
        price: float,
        now: float,
        purpose: str,
        check_slippage: bool = True,
    ) -> tuple[list[Action], bool]:
        """A chase, unwind or overfill-hedge order through every risk limit: (actions, sent)."""
        inst = self.instruments[leg.instrument]
        detail = ""
        if check_slippage:
            trigger_px = ep.trigger_prices[leg.name]
            slip = (price - trigger_px) * side_sign(side) / inst.tick
            if slip > self.cfg.risk.max_slippage_ticks + 1e-9:
                detail = (
                    f"max_slippage_ticks: {slip:.1f} ticks from the trigger price > {self.cfg.risk.max_slippage_ticks}"
                )
        if not detail:
            breach = self._risk(inst, side, qty, price, self.fx_for(inst))
            if breach is not None:
                detail = f"{breach.limit}: {breach.detail}"
        if detail:
            return [
                Audit(
                    now,
                    "risk_breach",
                    ep.decision_id,
                    instrument=inst.name,
                    account=inst.account,
                    side=side,
                    qty=qty,
                    price=price,
                    detail=f"{purpose}: {detail}",
                )
            ], False
        ep.last_reject = None
        ep.stages.setdefault("recovery_send", now)
        out = self.send_order(ep, leg, side, qty, price, now, purpose)
        out.append(
            SetTimer(now + self._recovery_timeout(ep, inst.venue, now), timer_key(TimerKind.TIMEOUT, ep.decision_id))
        )
        return out, True

    def _recovery_timeout(self, ep: Episode, venue: str, now: float) -> float:
        """How long a recovery order may work before it is cancelled and recovery decides again: the
        order timeout, cut to what is left of the legged budget (an unwind that rests part-filled must
        not keep the desk legged for a whole order timeout past it: found by explore), but never
        shorter than the venue needs to answer (`AckWatch.answer_due`: its slowest recent round trip
        plus the answer timeout, at least the answer timeout), so no cancel races an order's first
        answer. Not the status question's deadline (four round trips): the cancel of an unwind to a
        venue 307 ms away waited 1.2 s while the legged budget ran out (explore seed 3904 on f62)."""
        ex = self.strategy.execution
        legged = ep.stages.get("legged")
        if legged is None:
            return ex.order_timeout
        left = legged + self.strategy.recovery.legged_budget - now
        floor = max(ex.answer_timeout, self.ack_watch.answer_due(venue) or 0.0)
        return min(ex.order_timeout, max(left, floor))

    def _rest_of_recovery_order(self, ep: Episode, sent: float, now: float) -> list[Action]:
        """A recovery order answered and still working (an IOC the venue left resting): the floor of
        `_recovery_timeout`, there so no cancel races the first answer, is no longer needed, so it is
        cancelled when the legged budget is spent (at once if it is), never later than its order timeout
        (found by explore: three part-filled unwinds each rested 300 ms past the budget)."""
        legged = ep.stages.get("legged")
        if legged is None or ep.terminal:
            return []
        at = min(max(now, legged + self.strategy.recovery.legged_budget), sent + self.strategy.execution.order_timeout)
        return [SetTimer(at, timer_key(TimerKind.TIMEOUT, ep.decision_id))]

    def fx_for(self, inst: Instrument) -> float:
        """FX rate that converts `inst`'s currency into leg A's currency for a recovery order's risk
        check: 1 when they are the same; else the FX book's mid, or on a one-sided or empty FX book its
        last two-sided mid (as the price band's reference); 1 only when FX was never quoted two-sided,
        so that a repair is not refused for want of a rate it never had."""
        base = self.instruments[self.strategy.leg_a].currency
        fx = self.strategy.fx
        if inst.currency == base or not fx:
            return 1.0
        return self.last_mid.get(fx) or 1.0  # every two-sided quote sets it (`_on_quote`): the mid while there is one

    def _risk(self, inst: Instrument, side: str, qty: int, price: float, fx_rate: float) -> Breach | None:
        limit = self.cfg.risk.max_orders_per_day.get(inst.name)
        if limit is not None and self.orders_today[inst.name] + 1 > limit:
            return Breach("max_orders_per_day", detail=f"order {self.orders_today[inst.name] + 1} > {limit}")
        reference = self.reference_price(inst.name)
        working = [
            o
            for ep in self.active.values()
            for leg in ep.legs.values()
            for o in leg.orders
            if o.instrument == inst.name and not o.done
        ]  # orders of ended episodes are all done
        open_buy = sum(o.leaves_qty for o in working if o.side == BUY)
        open_sell = sum(o.leaves_qty for o in working if o.side == SELL)
        fx = fx_rate if inst.currency != self.instruments[self.strategy.leg_a].currency else 1.0
        return check_order(
            self.cfg.risk,
            inst,
            side_sign(side),
            qty,
            price,
            reference,
            fx,
            self.positions[inst.name],
            open_buy,
            open_sell,
        )

    def send_order(
        self, ep: Episode, leg: Leg, side: str, qty: int, price: float, now: float, purpose: str = "entry"
    ) -> list[Action]:
        """Create and send one child order of `leg` (entry or recovery); the only way orders leave."""
        inst = self.instruments[leg.instrument]
        # ClOrdID: decision id, leg, order number within the leg, and the purpose's letter (none for entry)
        cl_ord_id = self.stamp(ids.child_id(ep.decision_id, leg.name, len(leg.orders) + 1, purpose))
        order = ChildOrder(cl_ord_id, ep.decision_id, leg.name, inst.venue, inst.name, side, qty, price, purpose)
        self.orders.add(order)
        self.orders_today[inst.name] += 1
        leg.orders.append(order)
        ep.stages.setdefault(f"send_{leg.name}", now)
        due = self.ack_watch.sent(cl_ord_id, inst.venue, now)
        watch: list[Action] = [] if due is None else [SetTimer(due, timer_key(TimerKind.ACK, cl_ord_id))]
        return watch + [
            SendOrder(
                inst.venue,
                cl_ord_id,
                inst.name,
                inst.symbol,
                side,
                qty,
                price,
                "2",
                TIF[self.strategy.execution.mode],
                inst.account,
                ep.decision_id,
            ),
            Audit(now, "send", ep.decision_id, cl_ord_id, inst.name, inst.account, side, qty, price, purpose),
        ]

    def cancel(self, order: ChildOrder, now: float) -> list[Action]:
        """Cancel a working order (OrderCancelRequest), once; while a replace of it is open, once that
        replace is answered (`cancel_after_replace` sends it)."""
        if order.done or order.state is OrdStatus.PENDING_CANCEL:
            return []
        if order.pending_replace is not None:
            if order.cancel_deferred:
                return []
            order.cancel_deferred = True
            return [
                self._order_audit(
                    now,
                    "cancel_deferred",
                    order,
                    order.leaves_qty,
                    0.0,
                    f"cancel of {order.cl_ord_id} waits for the answer to replace {order.pending_replace[0]}: "
                    f"the venue may rename the order first and refuse a cancel naming the old ClOrdID",
                )
            ]
        limit = self.cfg.risk.max_cancels_per_day.get(order.instrument)
        if limit is not None and self.cancels_today[order.instrument] + 1 > limit:
            return [
                Alert(
                    now,
                    "critical",
                    f"cancel of {order.cl_ord_id} not sent: max_cancels_per_day {limit} on {order.instrument}",
                    order.decision_id,
                ),
                Audit(
                    now,
                    "risk_breach",
                    order.decision_id,
                    order.cl_ord_id,
                    order.instrument,
                    detail=f"max_cancels_per_day {limit}: cancel not sent",
                ),
            ]
        self.cancels_today[order.instrument] += 1
        cid = self.orders.new_cancel_id(order, self.epoch)
        problem = order.move(OrderEvent.CANCEL_SENT)
        # a move the table refuses is on record; the cancel still goes (a venue that put the order in a
        # state of its own, pending a replace nobody sent, must not keep it from being cancelled)
        refused: list[Action] = [self.anomaly(now, "illegal_transition", order.cl_ord_id, problem)] if problem else []
        inst = self.instruments[order.instrument]
        return refused + [
            SendCancel(
                order.venue,
                cid,
                order.cl_ord_id,
                inst.name,
                inst.symbol,
                order.side,
                order.qty,
                order.decision_id,
                inst.account,
            ),
            Audit(
                now,
                "cancel",
                order.decision_id,
                cid,
                inst.name,
                inst.account,
                order.side,
                order.leaves_qty,
                0.0,
                f"cancel {order.cl_ord_id}",
            ),
            self.answer_due(cid, now),
        ]

    def _order_audit(self, now: float, stage: str, order: ChildOrder, qty: float, price: float, detail: str) -> Audit:
        """An audit row about one order under its current ClOrdID, with its account."""
        return Audit(
            now,
            stage,
            order.decision_id,
            order.cl_ord_id,
            order.instrument,
            self.instruments[order.instrument].account,
            order.side,
            qty,
            price,
            detail,
        )

    def replace_settled_by_status(self, order: ChildOrder, r: ExecReport, now: float) -> list[Action]:
        """A status answer about an order whose replace is open settles the replace: no replace is
        sent while a question is open at the venue (Amending waits for it to be ready), so the venue read
        the replace before the question. Named by the replace's ClOrdID, the replace took effect (its own
        Replaced lost, say, with a session's reports); by another, it did not. A cancel deferred for it
        goes now."""
        if order.pending_replace is None:
            return []
        new_id = order.pending_replace[0]
        took = r.cl_ord_id == new_id
        order.end_replace(took)
        what = "took effect" if took else "did not take effect"
        detail = f"status answer: replace {new_id} {what}; {order.state.name}"
        return [
            self._order_audit(
                now, "replaced" if took else "replace_rejected", order, order.leaves_qty, order.price or 0.0, detail
            )
        ] + self.cancel_after_replace(order, now)

    def cancel_after_replace(self, order: ChildOrder, now: float) -> list[Action]:
        """The open replace of `order` was answered (replaced or refused): the cancel decided meanwhile
        goes now, under the ClOrdID the answer left (nothing, if the order ended)."""
        if not order.cancel_deferred or order.pending_replace is not None:
            return []
        order.cancel_deferred = False
        return self.cancel(order, now)

    def move_episode(self, ep: Episode, event: EpisodeEvent, now: float) -> list[Action]:
        problem = ep.move(event)
        if problem:
            return [self.anomaly(now, "illegal_episode_transition", "", problem)]
        if not ep.terminal:
            return []
        ep.stages["terminal"] = now
        ep.ended_with = {name: leg.filled for name, leg in ep.legs.items()}
        self.active.pop(ep.decision_id, None)
        self.cooldown_until = now + self.strategy.execution.cooldown
        return [
            CancelTimer(timer_key(TimerKind.TIMEOUT, ep.decision_id)),
            CancelTimer(timer_key(TimerKind.LEGGED, ep.decision_id)),
            CancelTimer(timer_key(TimerKind.AMEND, ep.decision_id)),
            Audit(now, "terminal", ep.decision_id, detail=f"{ep.state.value} {ep.reason}".strip()),
        ]

    def _settle(self, ep: Episode, now: float) -> list[Action]:
        """Move the episode on once none of its orders is working."""
        if ep.terminal:
            return self._after_end(ep, now)
        if ep.state is EpisodeState.NEW:
            return []
        event = ep.settle_event()
        if event is None:
            return []
        if event is EpisodeEvent.DONE_LEGGED:
            out: list[Action] = []
            if ep.state is EpisodeState.WORKING:
                out += self.move_episode(ep, event, now)
                ep.stages["legged"] = now
                out.append(
                    Audit(
                        now,
                        "legged",
                        ep.decision_id,
                        detail=(
                            f"missing={ep.missing()} naked_t={ep.naked_tonnes():.3f} naked_cny="
                            f"{ep.naked_tonnes() * self._price_cny_t(ep):.0f}"
                        ),
                    )
                )
            return out + self.recovery.on_legged(self, ep, now)
        return self.move_episode(ep, event, now)

    def _after_end(self, ep: Episode, now: float) -> list[Action]:
        """An ended episode whose legs a fill moved since (a venue's late trade report, learned from the
        report itself or from a status answer): its outcome no longer holds, so it is reopened as
        legged and recovery repairs the difference under the same policy and limits (an overfill is
        hedged or recorded, an unwound leg unwound again). An escalated one is the desk's: paged again."""
        if all(abs(leg.filled - ep.ended_with.get(name, leg.filled)) < 1e-9 for name, leg in ep.legs.items()):
            return []
        if ep.state is EpisodeState.ESCALATED:  # no recovery runs for it: the desk must act
            moved = ", ".join(
                f"leg {n} holds {leg.filled:g} of {leg.target} lots"
                for n, leg in ep.legs.items()
                if abs(leg.filled - ep.ended_with.get(n, leg.filled)) >= 1e-9
            )
            ep.ended_with = {name: leg.filled for name, leg in ep.legs.items()}
            return [
                Alert(
                    now,
                    "critical",
                    f"fill after episode {ep.decision_id} ended ESCALATED: {moved}, naked "
                    f"{ep.naked_tonnes():.3f} t; the desk must flatten it",
                    ep.decision_id,
                )
            ]
        if ep.working:  # only an escalated episode can end with an order working; others wait for it
            return []
        ended, was = ep.stages["terminal"], ep.state.value
        out = self.move_episode(ep, EpisodeEvent.LATE_FILL, now)
        ep.reopened.append((ended, now))
        self.active[ep.decision_id] = ep
        ep.stages["legged"] = now  # a fresh exposure: its repair is timed from now
        out.append(
            Audit(
                now,
                "reopened",
                ep.decision_id,
                detail=f"ended {was}, a late fill moved its legs: "
                f"missing={ep.missing()} naked_t={ep.naked_tonnes():.3f}",
            )
        )
        return out + self.recovery.on_legged(self, ep, now)

    def _price_cny_t(self, ep: Episode) -> float:
        inst = self.instruments[ep.legs["A"].instrument]
        book = self.books.get(inst.name)
        px = book.mid if book is not None and book.mid else ep.trigger_prices["A"]
        return px * inst.units_per_tonne

    # ---- order events -----------------------------------------------------------------------
    def find_order(self, cl_ord_id: str, orig: str = "") -> ChildOrder | None:
        """The order an answer is about (OrderRegistry.find)."""
        return self.orders.find(cl_ord_id, orig)

    def _on_exec_report(self, r: ExecReport, now: float) -> list[Action]:
        if r.mass_status_id:  # an answer to our mass status query: what each order's CumQty says we hold
            tally = self.reconciliation.mass_tally.setdefault(r.venue, {})  # "no orders" (NONE) too: then flat
            if r.cl_ord_id not in ("", "NONE") and r.instrument in self.instruments:
                tally[r.cl_ord_id] = (r.instrument, side_sign(r.side) * r.cum_qty)
        order = self.find_order(r.cl_ord_id, r.orig_cl_ord_id)
        if order is None:
            return self.reconciliation.on_foreign_report(r, now)
        if r.exec_type == "I":
            return self.reconciliation.on_status(order, r, now)
        first: list[Action] = []
        waiting = self.ack_watch.unanswered.get(order.cl_ord_id)  # (venue, sent at) until its first answer
        if self.ack_watch.answered(order.cl_ord_id, now):  # its round trip measured, its watch over
            first.append(CancelTimer(timer_key(TimerKind.ACK, order.cl_ord_id)))
            first += self.reconciliation.answered_by_its_report(order, now)
        if order.adopted and r.exec_type == "F" and r.cum_qty <= order.cum_qty + 1e-9:
            # adopted with the venue's CumQty: a resend of a fill from before adoption adds nothing
            order.exec_ids.add(r.exec_id)
            return [
                self.anomaly(
                    now,
                    "duplicate_exec_id",
                    order.cl_ord_id,
                    f"ExecID {r.exec_id} is inside the CumQty {order.cum_qty:g} adopted from the venue",
                    exec_id=r.exec_id,
                )
            ]
        fill, problems = order.apply(r)
        ep = self.episodes[order.decision_id]
        inst = self.instruments[order.instrument]
        out: list[Action] = first + [
            self.anomaly(now, kind, order.cl_ord_id, detail, exec_id=r.exec_id) for kind, detail in problems
        ]
        if fill:
            self.positions[order.instrument] += side_sign(order.side) * fill
            self.reconciliation.after_live_fill(order.venue)  # reported as it happened (status answers went above)
            ep.fills.append((now, order.leg, fill, r.last_px))
            ep.stages.setdefault(f"fill_{order.leg}", now)
            out.append(
                Audit(
                    now,
                    "fill",
                    ep.decision_id,
                    order.cl_ord_id,
                    inst.name,
                    inst.account,
                    order.side,
                    fill,
                    r.last_px,
                    f"ExecID {r.exec_id} cum={order.cum_qty:g}/{order.qty}",
                )
            )
        elif not problems or problems[0][0] != "duplicate_exec_id":
            stage = {"0": "ack", "4": "canceled", "8": "rejected", "C": "expired"}.get(r.exec_type, "report")
            if stage == "ack":
                ep.stages.setdefault(f"ack_{order.leg}", now)
            out.append(
                Audit(
                    now,
                    stage,
                    ep.decision_id,
                    order.cl_ord_id,
                    inst.name,
                    inst.account,
                    order.side,
                    order.leaves_qty,
                    order.price or 0.0,
                    f"{order.state._name_}" + (f" reason={r.ord_rej_reason} {r.text}" if stage == "rejected" else ""),
                )
            )
        if r.exec_type == "5" and order.pending_replace is not None and not problems:
            order.end_replace(took=True)  # the order lives on under its new ClOrdID
            detail = f"{order.state._name_} replace {order.replaces}"
            out[-1:] = [self._order_audit(now, "replaced", order, order.leaves_qty, order.price or 0.0, detail)]
            out += self.cancel_after_replace(order, now)
        if fill and self.strategy.execution.amend_after > 0 and not ep.terminal:
            out += self.amending.arm(ep, now)
        if r.exec_type == "8" and not problems:
            ep.last_reject = (r.ord_rej_reason, False, False)
        if r.exec_type == "F" and f"ack_{order.leg}" not in ep.stages:
            ep.stages[f"ack_{order.leg}"] = now  # a fill acknowledges the order too
        if waiting is not None and order.purpose != "entry" and not order.done:
            out += self._rest_of_recovery_order(ep, waiting[1], now)
        out += self._settle(ep, now)
        if order.done and self.reconciliation.cancel_questions and not problems:
            out += self.reconciliation.answered_by_a_final_report(order, r, now)
        return out

    def _on_cancel_reject(self, r: CancelReject, now: float) -> list[Action]:
        order = self.find_order(r.cl_ord_id, r.orig_cl_ord_id)
        if order is None:
            return self.reconciliation.on_foreign_cancel_reject(r, now)
        out: list[Action] = []
        if r.response_to == "2":  # the replace was refused: the order works on unchanged (or its fill follows)
            order.end_replace(took=False)
            detail = f"reason={r.reason} OrdStatus={r.ord_status} {r.text}".strip()
            return (
                [self._order_audit(now, "replace_rejected", order, order.leaves_qty, order.price or 0.0, detail)]
                + self.cancel_after_replace(order, now)
                + self._settle(self.episodes[order.decision_id], now)
            )
        event = OrderEvent.CANCEL_REJECTED
        if not order.done and r.reason == 1 and order.cum_qty == 0 and not order.order_id:
            event = OrderEvent.REJECTED  # the venue never knew the order (lost before its ack): it is dead
            self.episodes[order.decision_id].last_reject = (None, False, False)
        elif not order.done and r.ord_status == "4":
            event = OrderEvent.CANCELED  # already cancelled at the venue; that report never reached us
        problem = order.move(event) if not order.done else None
        if problem:
            out.append(self.anomaly(now, "illegal_transition", order.cl_ord_id, problem))
        detail = f"reason={r.reason} OrdStatus={r.ord_status} {r.text}".strip()
        out.append(self._order_audit(now, "cancel_rejected", order, order.leaves_qty, 0.0, detail))
        return out + self._settle(self.episodes[order.decision_id], now)

    def _on_business_reject(self, r: BusinessReject, now: float) -> list[Action]:
        if r.ref_msg_type == "AF":  # the venue does not do mass status: its per-order answers (H) must do
            asked = [
                k for k in self.reconciliation.status_pending.get(r.venue, ()) if k.startswith(ALL_ORDERS_QUESTION)
            ]
            out: list[Action] = [Audit(now, "mass_status_unsupported", detail=f"{r.venue}: {r.text}".strip())]
            self.reconciliation.mass_tally.pop(
                r.venue, None
            )  # no complete picture of its positions: per-order status must do
            for key in asked:
                out += self.reconciliation.answered(r.venue, key, now)
            return out
        if r.ref_msg_type == "AN":  # no position reports from this venue: its orders' CumQty must do
            return self.reconciliation.position_request_refused(
                r.venue, now, f"RequestForPositions refused: {r.text}".strip()
            )
        order = self.find_order(r.ref_id)
        kind = "session Reject" if r.session_level else "BusinessMessageReject"
        if order is None:
            return [
                self.anomaly(
                    now,
                    "reject_unmatched",
                    r.ref_id,
                    f"{kind} for MsgType {r.ref_msg_type!r} reason={r.reason} {r.text}",
                )
            ]
        out = []
        is_cancel = self.orders.is_cancel(r.ref_id)  # a refused cancel or replace: the order itself lives on
        if not is_cancel and self.ack_watch.answered(order.cl_ord_id, now):  # the order itself refused
            out.append(CancelTimer(timer_key(TimerKind.ACK, order.cl_ord_id)))
            out += self.reconciliation.answered_by_its_report(order, now)
        event = OrderEvent.CANCEL_REJECTED if is_cancel else OrderEvent.REJECTED
        if self.orders.is_replace(r.ref_id):
            order.pending_replace = None
            if order.state is OrdStatus.PENDING_REPLACE:
                event = OrderEvent.REPLACE_REJECTED
        if not order.done:
            problem = order.move(event)
            if problem:
                out.append(self.anomaly(now, "illegal_transition", order.cl_ord_id, problem))
            if not is_cancel:
                self.episodes[order.decision_id].last_reject = (r.reason, r.session_level, not r.session_level)
        detail = f"{kind} reason={r.reason} {r.text}".strip()
        out.append(self._order_audit(now, "rejected", order, order.qty, order.price or 0.0, detail))
        return out + self.cancel_after_replace(order, now) + self._settle(self.episodes[order.decision_id], now)

    # ---- timers and commands ----------------------------------------------------------------
    def answer_due(self, request_id: str, now: float) -> SetTimer:
        """A cancel or replace must be answered within the answer timeout; if not, the venue is asked
        for the order's status (Reconciliation.ask_unanswered)."""
        return SetTimer(now + self.strategy.execution.answer_timeout, timer_key(TimerKind.ANSWER, request_id))

    def _on_timer(self, t: TimerFired, now: float) -> list[Action]:
        kind, did = parse_timer_key(t.key)
        if kind is TimerKind.ANSWER:  # `did` is a cancel's or replace's ClOrdID here
            return self.reconciliation.ask_unanswered(did, now)
        if kind is TimerKind.ACK:  # `did` is a new order's ClOrdID here
            return self.reconciliation.ask_unacknowledged(did, now)
        if kind is TimerKind.PROBE:  # set by no version since the probe went with its question; an older journal's
            return self.reconciliation.probe(did, now)
        if kind is TimerKind.STATUS:  # `did` is a venue here: has it answered every status question?
            unanswered = sorted(self.reconciliation.status_pending.get(did, ()))
            if not unanswered:
                return []
            text = (
                f"{did} has not answered {len(unanswered)} status question(s) in "
                f"{self.strategy.recovery.status_timeout:g} s ({', '.join(unanswered[:5])}); "
                f"no new risk there until it does: the desk must check the venue"
            )
            return [
                Alert(now, "critical", text),
                Audit(now, "status_unanswered", detail=text),
                *self.reconciliation.status_overdue(did, now),
            ]
        ep = self.episodes.get(did)
        if ep is None or ep.terminal:
            return []
        if kind is TimerKind.AMEND:
            return self.amending.amend(ep, now)
        if kind is TimerKind.QUOTES:
            return self.recovery.quotes_overdue(self, ep, now)
        if kind is TimerKind.TIMEOUT:
            out: list[Action] = [Audit(now, "timeout", did, detail="order timeout: cancelling what is working")]
        elif kind is TimerKind.LEGGED and ep.mode is RecoveryMode.CHASE:
            ep.set_mode(RecoveryMode.UNWIND)
            out = [Audit(now, "unwind_decision", did, detail="chase time spent: unwinding")]
            if not ep.working:
                return out + self.recovery.on_legged(self, ep, now)
        else:
            return []
        return out + self._cancel_working(ep, now)

    def _cancel_working(self, ep: Episode, now: float) -> list[Action]:
        """Cancel every order of `ep` still working (an order timeout, a chase given up, a drain)."""
        out: list[Action] = []
        for leg in ep.legs.values():
            for order in leg.orders:
                out += self.cancel(order, now)
        return out

    def _on_command(self, c: Command, now: float) -> list[Action]:
        if c.name == "kill":
            self.killed = True
            out: list[Action] = [
                Alert(now, "critical", "kill switch: cancelling all working orders"),
                Audit(now, "kill_switch", detail="new episodes and recovery stopped"),
            ]
            for order in self.orders.values():
                out += self.cancel(order, now)
            for ep in list(self.active.values()):  # legged and idle: nothing will move it again
                out += self._settle(ep, now)
            return out
        if c.name == "resume":
            self.killed = self.draining = False
            held, self.reconciliation.position_hold = sorted(self.reconciliation.position_hold), {}
            out = [
                Audit(
                    now,
                    "resume",
                    detail="new episodes allowed" + (f"; position hold lifted on {', '.join(held)}" if held else ""),
                )
            ]
            if held:  # recovery that waited for a held venue goes on
                out += self.reconciliation.resume_waiting(now)
            return out
        if c.name == "reconcile":  # after a restart: ask every trading venue for all its orders (AF)
            legs = {self.instruments[n].venue for n in (self.strategy.leg_a, self.strategy.leg_b)}
            self.reconciliation.mass_status_due |= legs
            self.reconciliation.dropped |= legs
            return [Audit(now, "reconcile", detail=f"all orders to be asked of {', '.join(sorted(legs))} at logon")]
        if c.name == "drain":
            # winding down: no new episodes, and no entry left resting for a fill that would open risk
            # after the drain (a resting limit entry may have minutes left of its order timeout); its
            # cancel is its order timeout brought forward, so a leg that filled is repaired as then
            self.draining = True
            out = [Audit(now, "drain", detail="no new episodes; working entries cancelled; open episodes finish")]
            for ep in list(self.active.values()):
                if ep.state is EpisodeState.WORKING and ep.mode is RecoveryMode.NONE:
                    out += self._cancel_working(ep, now)
            return out
        return [self.anomaly(now, "unknown_command", "", f"command {c.name!r}")]

    def anomaly(self, now: float, kind: str, cl_ord_id: str, detail: str, **data: Any) -> Anomaly:
        return Anomaly(now, kind, cl_ord_id, detail, data)
