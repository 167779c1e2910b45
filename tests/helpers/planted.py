"""Defects planted on purpose in the engine core, to prove the certification library catches them.

Each is a context manager that patches the engine for the duration of a run and restores it; the
engine's code stays clean. A defect here is a real bug that once existed or easily could: the
scenario named beside it (tests/test_planted.py) must fail while it is planted and pass without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

from engine.core import recovery
from engine.core.engine_core import EngineCore
from engine.core.ids import BUY, side_sign
from engine.core.reconciliation import Reconciliation
from simulator.transport import SessionEnd


@contextlib.contextmanager
def escalate_on_refused_chase() -> Iterator[None]:
    """A chase that risk refuses escalates at once, with the filled leg naked (issue 10, defect 1)."""
    original = recovery.ChaseThenUnwind._chase

    def chase(self, core, ep, missing, now):
        actions, why = original(self, core, ep, missing, now)
        if why is None:
            return actions, None
        return actions + recovery.escalate(core, ep, now, why), None

    with mock.patch.object(recovery.ChaseThenUnwind, "_chase", chase):
        yield


@contextlib.contextmanager
def buy_priced_from_bid() -> Iterator[None]:
    """An empty side of the book is priced from the other side (issue 10, defect 2) and the band is
    measured from the order's own price when the book is one-sided (defect 3)."""

    def price_from_touch(self, inst, side, payup_ticks):
        book = self.books[inst.name]
        touch = book.ask if side == BUY else book.bid
        if touch is None:
            touch = book.bid if side == BUY else book.ask
        payup = payup_ticks * inst.tick
        return inst.round_to_tick(touch + payup if side == BUY else touch - payup, side_sign(side))

    def reference_price(self, instrument):
        book = self.books.get(instrument)
        return book.mid if book is not None and book.mid else None

    import engine.core.engine_core as core_module

    original = core_module.check_order

    def check_order(limits, inst, sign, qty, price, reference, *rest):
        return original(limits, inst, sign, qty, price, price if reference is None else reference, *rest)

    with (
        mock.patch.object(EngineCore, "price_from_touch", price_from_touch),
        mock.patch.object(EngineCore, "reference_price", reference_price),
        mock.patch.object(core_module, "check_order", check_order),
    ):
        yield


@contextlib.contextmanager
def resend_fenced_orders() -> Iterator[None]:
    """After a takeover the session layer resends the dead primary's orders (issue 10, defect 4)."""
    with mock.patch.object(SessionEnd, "_fenced", lambda self, raw: False):
        yield


@contextlib.contextmanager
def chase_away_from_market() -> Iterator[None]:
    """The chase's payup is applied away from the market instead of toward it (entries are right)."""
    original_chase = recovery.ChaseThenUnwind._chase
    original_price = EngineCore.price_from_touch

    def away(self, inst, side, payup_ticks):
        return original_price(self, inst, side, -payup_ticks)

    def chase(self, core, ep, missing, now):
        with mock.patch.object(EngineCore, "price_from_touch", away):
            return original_chase(self, core, ep, missing, now)

    with mock.patch.object(recovery.ChaseThenUnwind, "_chase", chase):
        yield


@contextlib.contextmanager
def recovery_skips_risk() -> Iterator[None]:
    """Recovery orders skip the pre-trade slippage and price checks."""
    original = EngineCore.recovery_order

    def recovery_order(self, ep, leg, side, qty, price, now, purpose, check_slippage=True):
        with mock.patch.object(EngineCore, "_risk", lambda *a, **k: None):
            return original(self, ep, leg, side, qty, price, now, purpose, check_slippage=False)

    with mock.patch.object(EngineCore, "recovery_order", recovery_order):
        yield


@contextlib.contextmanager
def overfill_left_open() -> Iterator[None]:
    """A leg a late fill overfilled is declared balanced without trading the excess back: the desk
    holds lots nobody asked for (overfill = hedge ignored)."""
    original = recovery.ChaseThenUnwind._flatten

    def flatten(self, core, ep, now, lots, purpose):
        if purpose == "overfill_hedge":
            return core.move_episode(ep, recovery.EpisodeEvent.DONE_BALANCED, now)
        return original(self, core, ep, now, lots, purpose)

    with mock.patch.object(recovery.ChaseThenUnwind, "_flatten", flatten):
        yield


@contextlib.contextmanager
def resume_over_working_order() -> Iterator[None]:
    """A venue that becomes ready resumes every legged episode, also one whose chase still works
    there: a second chase goes out on top of the first (two orders for one intent)."""

    def resume_waiting(self, now):
        out = []
        for ep in list(self.core.active.values()):
            if ep.state is recovery.EpisodeState.LEGGED:
                out += self.core.recovery.on_legged(self.core, ep, now)
        return out

    with mock.patch.object(Reconciliation, "resume_waiting", resume_waiting):
        yield


@contextlib.contextmanager
def status_fill_ignores_earlier_fills() -> Iterator[None]:
    """A fill learned from a status answer is priced as if the order had filled nothing before: the
    order's average price drifts from the venue's once it had filled in part (AvgPx over CumQty)."""
    original = Reconciliation.on_status

    def on_status(self, order, r, now):
        known_qty = order.cum_qty
        out = original(self, order, r, now)
        if 0 < known_qty < r.cum_qty:
            order.avg_px = r.avg_px * (r.cum_qty + known_qty) / r.cum_qty  # the sum where the difference belongs
        return out

    with mock.patch.object(Reconciliation, "on_status", on_status):
        yield


@contextlib.contextmanager
def foreign_fill_unflagged() -> Iterator[None]:
    """An order this node never sent is booked but the desk is told only when it is seen a second time:
    a foreign order that traded and ended before the takeover is never reported."""
    original = Reconciliation.on_foreign_report

    def on_foreign_report(self, r, now):
        first = r.cl_ord_id not in self.foreign_filled
        out = original(self, r, now)
        return [a for a in out if not (first and getattr(a, "kind", "") == "unknown_order")]

    with mock.patch.object(Reconciliation, "on_foreign_report", on_foreign_report):
        yield


DEFECTS = {
    "resume_over_working_order": resume_over_working_order,
    "status_fill_ignores_earlier_fills": status_fill_ignores_earlier_fills,
    "foreign_fill_unflagged": foreign_fill_unflagged,
    "escalate_on_refused_chase": escalate_on_refused_chase,
    "buy_priced_from_bid": buy_priced_from_bid,
    "resend_fenced_orders": resend_fenced_orders,
    "chase_away_from_market": chase_away_from_market,
    "recovery_skips_risk": recovery_skips_risk,
    "overfill_left_open": overfill_left_open,
}


@contextlib.contextmanager
def slow_chase(delay_s: float = 0.08) -> Iterator[None]:
    """Every chase order leaves the node `delay_s` later than the engine decided it (a slower
    re-order path): the regression gate must name the recovery timing that moved (issue 13)."""
    from engine.core.events import SendOrder
    from simulator.shell import SimEngineShell

    chase_ids: set[str] = set()
    original_order = EngineCore.recovery_order
    original_send = SimEngineShell.send

    def recovery_order(self, ep, leg, side, qty, price, now, purpose, check_slippage=True):
        actions, sent = original_order(self, ep, leg, side, qty, price, now, purpose, check_slippage)
        if purpose == "chase":
            chase_ids.update(a.cl_ord_id for a in actions if type(a) is SendOrder)
        return actions, sent

    def send(self, a):
        if type(a) is SendOrder and a.cl_ord_id in chase_ids:
            later = self.env.timeout(delay_s)
            later.callbacks.append(lambda _e: original_send(self, a))
            return
        original_send(self, a)

    with (
        mock.patch.object(EngineCore, "recovery_order", recovery_order),
        mock.patch.object(SimEngineShell, "send", send),
    ):
        yield


@contextlib.contextmanager
def far_leg_sized_one_lot_over() -> Iterator[None]:
    """Sizing: leg B gets one lot more than the ratio gives (the lot ratio and residual break)."""
    from engine.core import engine_core as core_module

    original = core_module.align

    def align(lots_a, ratio, rule, a, b):
        size = original(lots_a, ratio, rule, a, b)
        return type(size)(size.lots_a, size.lots_b + 1, lots_a * a.lot_tonnes - (size.lots_b + 1) * b.lot_tonnes)

    with mock.patch.object(core_module, "align", align):
        yield


@contextlib.contextmanager
def fill_from_status_not_booked() -> Iterator[None]:
    """Reconciliation: a fill learned from an order-status answer (after a restart, a takeover or a
    disconnect) updates the order but never reaches the position."""
    original = Reconciliation.on_status

    def on_status(self, order, r, now):
        before = order.cum_qty
        out = original(self, order, r, now)
        missed = order.cum_qty - before
        if missed > 1e-9:
            self.core.positions[order.instrument] -= side_sign(order.side) * missed
        return out

    with mock.patch.object(Reconciliation, "on_status", on_status):
        yield


@contextlib.contextmanager
def unwind_one_lot_too_many() -> Iterator[None]:
    """Recovery: an unwind sells (buys) one lot more than the leg holds, flipping its position."""
    original = EngineCore.recovery_order

    def recovery_order(self, ep, leg, side, qty, price, now, purpose, check_slippage=True):
        if purpose == "unwind":
            qty += 1
        return original(self, ep, leg, side, qty, price, now, purpose, check_slippage)

    with mock.patch.object(EngineCore, "recovery_order", recovery_order):
        yield


@contextlib.contextmanager
def status_answer_not_adopted() -> Iterator[None]:
    """Reconciliation: an order-status answer that says the order is done (filled, canceled,
    rejected) is not adopted: the engine keeps waiting for an order the venue has finished."""
    original = Reconciliation.on_status

    def on_status(self, order, r, now):
        was = order.state
        out = original(self, order, r, now)
        order.state = was
        return out

    with mock.patch.object(Reconciliation, "on_status", on_status):
        yield


@contextlib.contextmanager
def position_limit_ignored() -> Iterator[None]:
    """Risk: the worst-case position limit is never checked (order size, notional and band are)."""
    import dataclasses

    from engine.core import engine_core as core_module

    original = core_module.check_order

    def check_order(limits, *rest):
        return original(dataclasses.replace(limits, max_position_lots={}), *rest)

    with mock.patch.object(core_module, "check_order", check_order):
        yield


@contextlib.contextmanager
def takeover_skips_reconciliation() -> Iterator[None]:
    """Reconciliation: a node that takes over trades at once, without asking the venues what the
    dead node left working or filled."""

    def on_takeover(self, ev, now):
        self.core.epoch = ev.epoch
        self.sessions.clear()
        return []

    with mock.patch.object(Reconciliation, "on_takeover", on_takeover):
        yield
