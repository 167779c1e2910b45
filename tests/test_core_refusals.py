"""A venue's refusals of the engine's cancels and of its messages (OrderCancelReject, session Reject,
BusinessMessageReject), and the daily cancel limit: what each refusal means for the order, its episode
and the venue's acknowledgement record."""

from __future__ import annotations

import dataclasses

import pytest

from engine.core.engine_core import EngineCore
from engine.core.events import (
    Alert,
    Anomaly,
    Audit,
    BusinessReject,
    CancelReject,
    CancelTimer,
    Quote,
    SendCancel,
    SendOrder,
    TimerKind,
    timer_key,
)
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


@pytest.mark.parametrize("limit", [1, 2])
def test_the_daily_cancel_limit_counts_every_cancel_sent_and_refuses_the_one_past_it(spread_scenario, limit):
    core = core_with(spread_scenario, max_cancels_per_day={"HG": limit})
    a, b = entries(core)
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    order = core.orders[b.cl_ord_id]
    for i in range(limit):  # each cancel the venue refuses still counts
        (c,) = cancels(core.cancel(order, 0.1 + i))
        core.handle(CancelReject("COMEX", c.cl_ord_id, b.cl_ord_id, "0", 0, "too late to cancel"), 0.2 + i)
        assert order.state is OrdStatus.NEW
    assert core.cancels_today["HG"] == limit
    acts = core.cancel(order, 0.3 + limit)  # the one past the day's limit
    assert not cancels(acts) and any(isinstance(x, Alert) for x in acts)
    assert [x.detail for x in acts if isinstance(x, Audit)] == [f"max_cancels_per_day {limit}: cancel not sent"]
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
    acts = core.handle(BusinessReject("COMEX", "D", b.cl_ord_id, 5, "bad field", session_level), 0.05)
    assert core.orders[b.cl_ord_id].state is OrdStatus.REJECTED
    assert core.episodes[b.decision_id].last_reject == (5, session_level, not session_level)
    # the refusal is the order's first answer: its acknowledgement watch ends with it
    assert CancelTimer(timer_key(TimerKind.ACK, b.cl_ord_id)) in acts
    assert b.cl_ord_id not in core.ack_watch.unanswered
    # and the audit trail names the layer, the reason and the venue's words, at the order's quantity and price
    (row,) = [x for x in acts if isinstance(x, Audit) and x.cl_ord_id == b.cl_ord_id and x.stage == "rejected"]
    kind = "session Reject" if session_level else "BusinessMessageReject"
    assert row.detail == f"{kind} reason=5 bad field" and (row.qty, row.price) == (b.qty, b.price)


@pytest.mark.parametrize("session_level", [False, True])
def test_a_reject_naming_no_order_of_ours_is_an_anomaly_on_record(spread_scenario, session_level):
    core = core_with(spread_scenario)
    entries(core)
    acts = core.handle(BusinessReject("COMEX", "D", "ZZ-9", 5, "bad field", session_level), 0.05)
    (anomaly,) = [x for x in acts if isinstance(x, Anomaly)]
    kind = "session Reject" if session_level else "BusinessMessageReject"
    assert anomaly.kind == "reject_unmatched" and anomaly.detail == f"{kind} for MsgType 'D' reason=5 bad field"


def test_a_recovery_order_in_another_currency_is_measured_at_the_fx_rate(spread_scenario):
    """A chase of HG (USD/lb) is checked against the CNY notional limit at USD/CNY's mid: 3 lots are
    25,000 lb x 4.50 x 7.1 x 3 = ~2.4M CNY, over a 1.8M limit (at a rate of 1 they would be ~0.34M).
    The entry (CU 5 lots ~1.77M, HG 2 lots ~1.6M) is under it. With the FX book one-sided the rate is
    its last two-sided mid, never 1 (1 only before FX was ever quoted); leg A's own currency needs none."""
    core = core_with(spread_scenario, max_notional_cny=1_800_000)
    hg, cu = core.instruments["HG"], core.instruments["CU"]
    assert core.fx_for(hg) == 1.0  # before FX was ever quoted: no rate to refuse a repair for
    a, b = entries(core)
    ep = core.episodes[b.decision_id]
    assert core.fx_for(hg) == pytest.approx(7.1) and core.fx_for(cu) == 1.0
    acts, sent = core.recovery_order(ep, ep.legs["B"], b.side, 3, b.price, 0.1, "chase", check_slippage=False)
    assert not sent and any(isinstance(x, Audit) and "max_notional_cny" in x.detail for x in acts)
    core.handle(Quote("USDCNY", None, 0, 7.1001, 1e6), 0.2)  # the bids gone: no mid now
    assert core.fx_for(hg) == pytest.approx(7.1)
    acts, sent = core.recovery_order(ep, ep.legs["B"], b.side, 3, b.price, 0.3, "chase", check_slippage=False)
    assert not sent
    acts, sent = core.recovery_order(ep, ep.legs["B"], b.side, 2, b.price, 0.4, "chase", check_slippage=False)
    assert sent and [x.qty for x in acts if isinstance(x, SendOrder)] == [2]


def test_a_quote_is_fresh_up_to_its_age_limit_itself(spread_scenario):
    """HG's quotes may be 1 s old (max_quote_age_ms): one exactly 1 s old may still price an order."""
    core = core_with(spread_scenario)
    entries(core)  # HG quoted at 0.0
    limit = core.quote_age_limit("HG")
    assert limit == 1.0 and core.quote_fresh("HG", 0.0 + limit) and not core.quote_fresh("HG", limit + 1e-6)
    assert core.quote_fresh("HG", 0.5) and not core.quote_fresh("XX", 0.0)


@pytest.mark.parametrize("named_by", ["its_cancel_alone", "its_order_alone"])
def test_a_cancel_reject_is_matched_by_either_of_its_ids(spread_scenario, named_by):
    """An OrderCancelReject names the cancel (ClOrdID) and the order (OrigClOrdID); a venue may fill in
    only one of them usefully (no OrigClOrdID, or a ClOrdID of its own): either finds our order, whose
    reject is then on record as ours, not as a foreign order's."""
    core = core_with(spread_scenario)
    a, b = entries(core)
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    order = core.orders[b.cl_ord_id]
    (c,) = cancels(core.cancel(order, 0.1))
    ids = (c.cl_ord_id, "") if named_by == "its_cancel_alone" else ("VENUE-77", b.cl_ord_id)
    acts = core.handle(CancelReject("COMEX", *ids, "0", 0, "too late to cancel"), 0.2)
    assert [x.stage for x in acts if isinstance(x, Audit)] == ["cancel_rejected"]
    assert order.state is OrdStatus.NEW and not [x for x in acts if isinstance(x, Anomaly)]


def test_a_report_under_a_clordid_of_the_venues_own_is_found_by_its_origclordid(spread_scenario):
    """A venue that cancels our order on its own may give the report a ClOrdID we never sent, with
    ours as OrigClOrdID: it is our order's report (cancelled), not a foreign order's."""
    core = core_with(spread_scenario)
    a, b = entries(core)
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    r = dataclasses.replace(report(b, "b4", "4", "4", 0), cl_ord_id="VENUE-78", orig_cl_ord_id=b.cl_ord_id)
    acts = core.handle(r, 0.2)
    assert core.orders[b.cl_ord_id].state is OrdStatus.CANCELED
    assert [x.stage for x in acts if isinstance(x, Audit) and x.cl_ord_id == b.cl_ord_id][:1] == ["canceled"]
