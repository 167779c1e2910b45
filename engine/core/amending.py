"""Amending a resting leg that lags the other (limit mode): OrderCancelReplaceRequest toward the
market, inside risk, armed once per episode after a fill."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.core.episode import Episode, EpisodeState
from engine.core.events import Action, Audit, SendReplace, SetTimer, TimerKind, timer_key
from engine.core.ids import TIF, side_sign
from engine.core.order import ChildOrder, OrderEvent, OrdStatus

if TYPE_CHECKING:
    from engine.core.engine_core import EngineCore


class Amending:
    """The core's part that amends a lagging resting leg toward the market (OrderCancelReplaceRequest),
    inside the slippage and risk limits, and re-arms itself until max_amends."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.armed: set[str] = set()  # decisions whose amend timer was armed (once per episode; amend re-arms)

    def lagging_orders(self, ep: Episode) -> list[ChildOrder]:
        """Working orders of a leg that is behind the other (by share of its target filled)."""
        share = {n: leg.filled / leg.target for n, leg in ep.legs.items() if leg.target}
        lead = max(share.values(), default=0.0)
        return [
            o
            for n, leg in ep.legs.items()
            if share.get(n, 0.0) < lead - 1e-9
            for o in leg.orders
            if not o.done and o.purpose == "entry"
        ]

    def arm(self, ep: Episode, now: float) -> list[Action]:
        if ep.state is not EpisodeState.WORKING or ep.decision_id in self.armed:
            return []
        todo = [o for o in self.lagging_orders(ep) if o.replaces < self.core.strategy.execution.max_amends]
        if not todo:
            return []
        self.armed.add(ep.decision_id)
        return [SetTimer(now + self.core.strategy.execution.amend_after, timer_key(TimerKind.AMEND, ep.decision_id))]

    def amend(self, ep: Episode, now: float) -> list[Action]:
        """Move each lagging resting order `amend_step_ticks` further into the market (G), inside risk."""
        ex = self.core.strategy.execution
        out: list[Action] = []
        again = False
        for order in self.lagging_orders(ep):
            if order.state not in (OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED) or order.replaces >= ex.max_amends:
                continue
            if self.core.killed or not self.core.reconciliation.venue_ready(order.venue):
                continue
            inst = self.core.instruments[order.instrument]
            payup = ex.payup_ticks.get(inst.name, 0) + ex.amend_step_ticks * (order.replaces + 1)
            price = self.core.price_from_touch(inst, order.side, payup)
            if price is None:  # nothing on the other side to amend toward: the order rests as it is
                continue
            sign = side_sign(order.side)
            if order.price is not None and (price - order.price) * sign <= 1e-12:
                price = inst.round_to_tick(order.price + sign * ex.amend_step_ticks * inst.tick, sign)
            slip = (price - ep.trigger_prices[order.leg]) * sign / inst.tick
            breach = (
                f"max_slippage_ticks: {slip:.1f} ticks from the trigger price > {self.core.cfg.risk.max_slippage_ticks}"
                if slip > self.core.cfg.risk.max_slippage_ticks + 1e-9
                else None
            )
            if breach is None:
                b = self.core._risk(inst, order.side, 0, price, self.core.fx_for(inst))
                breach = f"{b.limit}: {b.detail}" if b is not None else None
            if breach:
                out.append(
                    Audit(
                        now,
                        "risk_breach",
                        ep.decision_id,
                        order.cl_ord_id,
                        inst.name,
                        inst.account,
                        order.side,
                        order.leaves_qty,
                        price,
                        f"amend: {breach}",
                    )
                )
                continue
            order.replaces += 1
            new_id = self.core.orders.new_replace_id(order, self.core.epoch)
            order.pending_replace = (new_id, price)
            order.move(OrderEvent.REPLACE_SENT)
            out += [
                SendReplace(
                    order.venue,
                    new_id,
                    order.cl_ord_id,
                    inst.name,
                    inst.symbol,
                    order.side,
                    order.qty,
                    price,
                    TIF[ex.mode],
                    ep.decision_id,
                    inst.account,
                ),
                Audit(
                    now,
                    "amend",
                    ep.decision_id,
                    new_id,
                    inst.name,
                    inst.account,
                    order.side,
                    order.leaves_qty,
                    price,
                    f"replace {order.cl_ord_id} at {price:g} (payup {payup} ticks)",
                ),
                self.core.answer_due(new_id, now),
            ]
            again = again or order.replaces < ex.max_amends
        if again:
            out.append(SetTimer(now + ex.amend_after, timer_key(TimerKind.AMEND, ep.decision_id)))
        return out
