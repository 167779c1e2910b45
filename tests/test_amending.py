"""Amending a lagging resting leg (engine.core.amending), decision by decision: which orders lag, the
price each amend asks for, the limits it stays inside, what it sends with the replace, and when it stops.
tests/test_replace.py follows the replaces it sends through the venue's answers."""

from __future__ import annotations

import dataclasses

import pytest

from engine.core.engine_core import EngineCore
from engine.core.episode import EpisodeState
from engine.core.events import Audit, Quote, SendCancel, SendOrder, SendReplace, SessionDown, SetTimer, TimerFired
from engine.core.order import OrdStatus
from tests.conftest import fire, report
from tests.test_replace import _replaced

HG_TICK = 0.0005
HG_PAYUP = 6  # the spread scenario's payup_ticks for HG


def amend_core(spread_scenario, step: int = 1, max_amends: int = 2, **risk) -> EngineCore:
    cfg = spread_scenario.engine
    ex = dataclasses.replace(
        cfg.strategy.execution,
        mode="limit",
        amend_after=0.15,
        amend_step_ticks=step,
        max_amends=max_amends,
        order_timeout=5.0,
    )
    cfg = dataclasses.replace(
        cfg, strategy=dataclasses.replace(cfg.strategy, execution=ex), risk=dataclasses.replace(cfg.risk, **risk)
    )
    return EngineCore(cfg)


def entries(core: EngineCore) -> tuple[SendOrder, SendOrder]:
    """Fire a sell-spread episode (A sells CU, B buys HG) and acknowledge both legs."""
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    core.handle(report(a, "a0", "0", "0", 0), 0.01)
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    return a, b


def amend_timer(acts) -> list[SetTimer]:
    return [t for t in acts if isinstance(t, SetTimer) and t.key.startswith("amend:")]


def replaces(acts) -> list[SendReplace]:
    return [x for x in acts if isinstance(x, SendReplace)]


def test_an_amend_asks_one_step_more_than_the_entry_payup_from_the_touch_and_sends_the_whole_order(spread_scenario):
    """The k-th amend prices at the opposite touch plus the leg's payup_ticks plus k x amend_step_ticks;
    its OrderQty is the order's whole quantity (FIX: fills included), however much is filled; an answer
    timer watches it, and the next amend is armed while amends are left."""
    core = amend_core(spread_scenario, step=2, max_amends=2)
    a, b = entries(core)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    core.handle(report(b, "b1", "F", "1", 1, 1, b.price), 0.06)  # B part-filled: 1 of 2
    acts = core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2)
    (g,) = replaces(acts)
    assert g.price == pytest.approx(4.5005 + (HG_PAYUP + 2) * HG_TICK)
    assert g.qty == b.qty == 2
    assert [t.key for t in acts if isinstance(t, SetTimer)] == [f"answer:{g.cl_ord_id}", f"amend:{a.decision_id}"]
    assert amend_timer(acts)[0].at == pytest.approx(0.35)


def test_an_amend_follows_an_offer_that_rose(spread_scenario):
    """The offer rose 4 ticks since the entry: the amend prices from the touch now, payup plus one step
    above it (not from the order's own price)."""
    core = amend_core(spread_scenario, step=2)
    a, b = entries(core)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    core.handle(Quote("HG", 4.5015, 50, 4.5025, 50), 0.1)
    (g,) = replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2))
    assert g.price == pytest.approx(4.5025 + (HG_PAYUP + 2) * HG_TICK)


def test_the_last_amend_arms_no_further_amend(spread_scenario):
    core = amend_core(spread_scenario, max_amends=1)
    a, b = entries(core)
    acts = core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    assert len(amend_timer(acts)) == 1  # armed by the fill that left B behind
    acts = core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2)
    (g,) = replaces(acts)
    assert not amend_timer(acts)
    core.handle(_replaced(b, g, "b5"), 0.21)
    # a timer that fires anyway (set before, raced) amends nothing past max_amends
    assert not replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.4))


def test_the_amend_timer_is_armed_once_per_episode(spread_scenario):
    """Every fill of the leading leg re-evaluates the episode; only the first arms the amend timer (the
    amend re-arms itself)."""
    core = amend_core(spread_scenario)
    a, b = entries(core)
    first = core.handle(report(a, "a1", "F", "1", 2, 2, a.price), 0.05)
    second = core.handle(report(a, "a2", "F", "1", 4, 2, a.price), 0.06)
    assert len(amend_timer(first)) == 1 and not amend_timer(second)


@pytest.mark.parametrize(
    "bid,ask",
    [
        (4.4955, 4.4965),  # the offer dropped 8 ticks: touch + payup + 2 is 2 ticks below the entry's price
        (4.4985, 4.4995),  # it dropped exactly the amend step: touch + payup + 2 is the order's own price
    ],
)
def test_a_market_that_moved_away_is_amended_one_step_past_the_order_and_never_backwards(spread_scenario, bid, ask):
    """Where touch plus payup is no better than the order's own price (the offer fell away), the amend
    moves the order's price one amend step further instead, never to the same or a worse price."""
    core = amend_core(spread_scenario, step=2, max_amends=3)
    a, b = entries(core)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    core.handle(Quote("HG", bid, 50, ask, 50), 0.1)
    (g,) = replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2))
    assert g.price == pytest.approx(b.price + 2 * HG_TICK)


def test_only_the_lagging_legs_entry_orders_are_amended(spread_scenario):
    """With both legs part-filled and working, only the one behind by share of its target is amended."""
    core = amend_core(spread_scenario)
    a, b = entries(core)
    core.handle(report(a, "a1", "F", "1", 3, 3, a.price), 0.05)  # A 3 of 5: 60%
    core.handle(report(b, "b1", "F", "1", 1, 1, b.price), 0.06)  # B 1 of 2: 50%
    (g,) = replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2))
    assert g.orig_cl_ord_id == b.cl_ord_id
    # the other way round, with the leg of more lots behind by share though ahead in lots filled: A 2 of
    # 5 (40%) lags B 1 of 2 (50%); by lots filled (or lots weighted by the target) B would look behind
    core2 = amend_core(spread_scenario)
    a2, b2 = entries(core2)
    core2.handle(report(a2, "a1", "F", "1", 2, 2, a2.price), 0.05)
    core2.handle(report(b2, "b1", "F", "1", 1, 1, b2.price), 0.06)
    (g2,) = replaces(core2.handle(TimerFired(f"amend:{a2.decision_id}"), 0.2))
    assert g2.orig_cl_ord_id == a2.cl_ord_id
    core3 = amend_core(spread_scenario)
    a3, b3 = entries(core3)
    # neither leg has filled: no leg lags, nothing to amend
    assert not replaces(core3.handle(TimerFired(f"amend:{a3.decision_id}"), 0.2))


def test_an_order_with_a_request_open_is_not_amended(spread_scenario):
    """A replace still unanswered, or a cancel on its way, leaves the order alone: one request at a time."""
    core = amend_core(spread_scenario, max_amends=3)
    a, b = entries(core)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    (g,) = replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2))
    assert core.orders[b.cl_ord_id].state is OrdStatus.PENDING_REPLACE
    assert not replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.35))


def test_an_order_the_venue_has_not_acknowledged_is_not_amended(spread_scenario):
    """A replace names an order the venue has taken: one still pending new is left alone."""
    core = amend_core(spread_scenario)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    core.handle(report(a, "a0", "0", "0", 0), 0.01)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    assert core.orders[b.cl_ord_id].state is OrdStatus.PENDING_NEW
    assert not replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2))


def test_no_amend_while_killed_or_while_the_venue_is_not_ready(spread_scenario):
    for stop in ("kill", "down"):
        core = amend_core(spread_scenario)
        a, b = entries(core)
        core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
        if stop == "kill":
            core.killed = True
        else:
            core.handle(SessionDown("COMEX"), 0.1)
        assert not replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2)), stop


def test_an_amend_beyond_the_slippage_limit_is_refused_on_either_side(spread_scenario):
    """Slippage counts ticks against the order: up from the trigger price for a buy, down for a sell; at
    the limit the amend goes, one tick past it is refused with the figures on record."""
    # B (buy HG) lags: the first amend is payup + 1 = 7 ticks above the trigger's ask
    for limit, sent in ((7, True), (6, False)):
        core = amend_core(spread_scenario, max_slippage_ticks=limit)
        a, b = entries(core)
        core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
        acts = core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2)
        refused = [x for x in acts if isinstance(x, Audit) and x.stage == "risk_breach"]
        assert bool(replaces(acts)) is sent and bool(refused) is not sent, limit
        if refused:
            assert refused[0].detail.startswith("amend: max_slippage_ticks: 7.0 ticks")
    # A (sell CU) lags: the first amend is CU's payup + 1 = 6 ticks below the trigger's bid
    for limit, sent in ((6, True), (5, False)):
        core = amend_core(spread_scenario, max_slippage_ticks=limit)
        a, b = entries(core)
        core.handle(report(b, "b1", "F", "2", b.qty, b.qty, b.price), 0.05)
        acts = core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2)
        assert bool(replaces(acts)) is sent, limit
        if sent:
            assert replaces(acts)[0].orig_cl_ord_id == a.cl_ord_id


def test_an_amend_outside_the_pre_trade_limits_is_refused(spread_scenario):
    """The amend's price passes the same pre-trade checks as any order (here the price band)."""
    # the entries are 0.085% (CU, 60 CNY from 70,840) and 0.078% (HG, 7 ticks from 4.50) from their mids;
    # the amend, 8 ticks from 4.50, is 0.089%
    core = amend_core(spread_scenario, price_band_pct=0.087)
    a, b = entries(core)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    acts = core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2)
    assert not replaces(acts)
    (refused,) = [x for x in acts if isinstance(x, Audit) and x.stage == "risk_breach"]
    assert refused.detail.startswith("amend: price_band_pct")


def test_a_chase_order_of_a_legged_episode_is_never_amended(spread_scenario):
    """The amend timer can still fire once the entries are done and the episode is legged: the chase's own
    orders are recovery's, priced by its rules, and are not amended."""
    core = amend_core(spread_scenario)
    a, b = entries(core)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    acts = core.handle(report(b, "b2", "4", "4", 0), 0.1)  # B cancelled: legged, a chase goes
    chase = [x for x in acts if isinstance(x, SendOrder)]
    ep = core.episodes[a.decision_id]
    assert ep.state is EpisodeState.LEGGED and chase, acts
    core.handle(report(chase[0], "c0", "0", "0", 0), 0.11)
    # a fill of the chase arms no amend timer (only a working episode's fills do)
    assert not amend_timer(core.handle(report(chase[0], "c1", "F", "1", 1, 1, chase[0].price), 0.12))
    acts = core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2)
    assert not replaces(acts) and not [x for x in acts if isinstance(x, SendCancel)]


def test_max_amends_zero_turns_amending_off_without_arming_a_timer(spread_scenario):
    """max_amends = 0 turns amending off: a fill that leaves the other leg behind arms no amend timer at
    all (not one that fires to do nothing)."""
    core = amend_core(spread_scenario, max_amends=0)
    a, b = entries(core)
    acts = core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    assert not amend_timer(acts)
    assert not replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2))


def test_a_leg_without_payup_ticks_is_amended_from_the_touch_by_the_amend_steps_alone(spread_scenario):
    """payup_ticks names no HG: its entry and its amends price from the touch with no payup (0), the
    first amend one amend step past the offer."""
    core = amend_core(spread_scenario, step=2)
    ex = dataclasses.replace(core.strategy.execution, payup_ticks={"CU": 5})
    core = EngineCore(dataclasses.replace(core.cfg, strategy=dataclasses.replace(core.strategy, execution=ex)))
    a, b = entries(core)
    assert b.price == pytest.approx(4.5005)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    (g,) = replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2))
    assert g.price == pytest.approx(4.5005 + 2 * HG_TICK)


def test_an_amend_adds_no_quantity_so_a_position_limit_at_its_edge_lets_it_through(spread_scenario):
    """A replace moves the price of lots already counted (in flight or filled): the pre-trade check of an
    amend adds none, so a leg sized exactly to its position limit can still be amended."""
    core = amend_core(spread_scenario, max_position_lots={"CU": 5, "HG": 2})
    a, b = entries(core)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    acts = core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2)
    assert replaces(acts) and not [x for x in acts if isinstance(x, Audit) and x.stage == "risk_breach"]


def test_a_replace_carries_its_legs_account(spread_scenario):
    """The venue's dictionary may require Account (SHFE does) on an OrderCancelReplaceRequest as on the
    order: the replace carries the account of the order's instrument, whichever leg lags."""
    for lagging in ("B", "A"):
        core = amend_core(spread_scenario)
        a, b = entries(core)
        ahead, behind = (a, b) if lagging == "B" else (b, a)
        core.handle(report(ahead, "x1", "F", "2", ahead.qty, ahead.qty, ahead.price), 0.05)
        (g,) = replaces(core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2))
        assert g.orig_cl_ord_id == behind.cl_ord_id
        assert g.account == behind.account == core.instruments[behind.instrument].account != ""
