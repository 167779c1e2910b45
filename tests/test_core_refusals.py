"""A venue's refusals of the engine's cancels and of its messages (OrderCancelReject, session Reject,
BusinessMessageReject), and the daily cancel limit: what each refusal means for the order, its episode
and the venue's acknowledgement record."""

from __future__ import annotations

import dataclasses

import pytest

from engine.core.engine_core import EngineCore
from engine.core.events import Alert, Audit, BusinessReject, CancelReject, SendCancel, SendOrder
from engine.core.order import OrdStatus
from tests.conftest import fire, report


def core_with(spread_scenario, **risk) -> EngineCore:
    cfg = spread_scenario.engine
    return EngineCore(dataclasses.replace(cfg, risk=dataclasses.replace(cfg.risk, **risk)))


def entries(core: EngineCore) -> tuple[SendOrder, SendOrder]:
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    return a, b


def cancels(acts) -> list[SendCancel]:
    return [x for x in acts if isinstance(x, SendCancel)]


def test_the_daily_cancel_limit_counts_every_cancel_sent_and_refuses_the_one_past_it(spread_scenario):
    core = core_with(spread_scenario, max_cancels_per_day={"HG": 1})
    a, b = entries(core)
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    order = core.orders[b.cl_ord_id]
    (c,) = cancels(core.cancel(order, 0.1))
    core.handle(CancelReject("COMEX", c.cl_ord_id, b.cl_ord_id, "0", 0, "too late to cancel"), 0.2)
    assert order.state is OrdStatus.NEW
    acts = core.cancel(order, 0.3)  # the second HG cancel of the day
    assert not cancels(acts) and any(isinstance(x, Alert) for x in acts)
    assert [x.detail for x in acts if isinstance(x, Audit)] == ["max_cancels_per_day 1: cancel not sent"]
    none = core_with(spread_scenario, max_cancels_per_day={"HG": 0})
    a, b = entries(none)
    none.handle(report(b, "b0", "0", "0", 0), 0.01)
    assert not cancels(none.cancel(none.orders[b.cl_ord_id], 0.1))


def test_a_cancel_names_the_orders_whole_quantity(spread_scenario):
    """OrderQty on a cancel is the order's, fills included, not what is left of it."""
    core = core_with(spread_scenario)
    a, b = entries(core)
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    core.handle(report(b, "b1", "F", "1", 1, 1, b.price), 0.02)
    (c,) = cancels(core.cancel(core.orders[b.cl_ord_id], 0.1))
    assert c.qty == b.qty == 2


@pytest.mark.parametrize(
    "acked,filled,dead",
    [(False, 0, True), (True, 0, False), (False, 1, False)],
    ids=["never-acknowledged", "acknowledged", "part-filled"],
)
def test_unknown_order_kills_only_an_order_the_venue_never_showed_it_knew(spread_scenario, acked, filled, dead):
    """An "unknown order" refusal (reason 1) of the cancel of an order with no OrderID and no fill means
    the venue never had it (lost before its acknowledgement): it is rejected, its episode remembers a
    reject with no reason; an order the venue acknowledged or filled is not dead on its word."""
    core = core_with(spread_scenario)
    a, b = entries(core)
    if acked:
        core.handle(report(b, "b0", "0", "0", 0), 0.01)
    if filled:
        core.handle(report(b, "b1", "F", "1", filled, filled, b.price), 0.02)
    order = core.orders[b.cl_ord_id]
    (c,) = cancels(core.cancel(order, 0.1))
    core.handle(CancelReject("COMEX", c.cl_ord_id, b.cl_ord_id, "8", 1, "unknown order"), 0.2)
    ep = core.episodes[b.decision_id]
    assert (order.state is OrdStatus.REJECTED) is dead
    assert (ep.last_reject == (None, False, False)) is dead


@pytest.mark.parametrize("status,cancelled", [("4", True), ("2", False), ("0", False)])
def test_a_cancel_refused_as_already_cancelled_ends_the_order(spread_scenario, status, cancelled):
    """A refusal saying the order is cancelled (OrdStatus 4) ends it as cancelled (that report was
    lost); one saying it is filled or working does not cancel it (its fills come in their reports)."""
    core = core_with(spread_scenario)
    a, b = entries(core)
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    order = core.orders[b.cl_ord_id]
    (c,) = cancels(core.cancel(order, 0.1))
    core.handle(CancelReject("COMEX", c.cl_ord_id, b.cl_ord_id, status, 0, "too late to cancel"), 0.2)
    assert (order.state is OrdStatus.CANCELED) is cancelled


def test_a_refused_cancel_is_no_answer_to_the_order_and_no_reject_of_it(spread_scenario):
    """A BusinessMessageReject of a cancel leaves the order alive: it is not the order's first answer
    (its acknowledgement is still awaited) and not a reject the recovery would act on."""
    core = core_with(spread_scenario)
    a, b = entries(core)
    order = core.orders[b.cl_ord_id]
    (c,) = cancels(core.cancel(order, 0.1))
    core.handle(BusinessReject("COMEX", "F", c.cl_ord_id, 0, "throttled"), 0.15)
    assert b.cl_ord_id in core.ack_watch.unanswered and core.episodes[b.decision_id].last_reject is None
    assert not order.done


@pytest.mark.parametrize("session_level", [False, True])
def test_a_reject_of_an_order_records_which_layer_refused_it(spread_scenario, session_level):
    core = core_with(spread_scenario)
    a, b = entries(core)
    core.handle(BusinessReject("COMEX", "D", b.cl_ord_id, 5, "bad field", session_level), 0.05)
    assert core.orders[b.cl_ord_id].state is OrdStatus.REJECTED
    assert core.episodes[b.decision_id].last_reject == (5, session_level, not session_level)
