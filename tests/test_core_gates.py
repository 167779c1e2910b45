"""What lets a signal open an episode (drain, kill, cooldown, concurrent episodes), the entry's own
limits (worst-case naked tonnes, notional with the signal's FX), the entry price's rounding, and what
the kill switch and the drain do to episodes already open: the core's gates, each at its boundary."""

from __future__ import annotations

import dataclasses

import pytest

from engine.core.engine_core import EngineCore
from engine.core.episode import EpisodeState
from engine.core.events import Audit, Command, Quote, SendCancel, SendOrder
from tests.conftest import fire, report

HG_CNY = 4.5 * 2204.62 * 7.1


def core_with(spread_scenario, risk: dict | None = None, strategy: dict | None = None, **execution) -> EngineCore:
    cfg = spread_scenario.engine
    s = dataclasses.replace(cfg.strategy, execution=dataclasses.replace(cfg.strategy.execution, **execution))
    s = dataclasses.replace(s, **(strategy or {}))
    return EngineCore(dataclasses.replace(cfg, strategy=s, risk=dataclasses.replace(cfg.risk, **(risk or {}))))


def cu_quote(core: EngineCore, spread: float, now: float) -> list:
    """A CU quote whose mid is `spread` CNY/t over HG at 4.50 and USD/CNY 7.10 (fire's HG and FX)."""
    mid = round((HG_CNY + spread) / 10) * 10
    return core.handle(Quote("CU", mid - 10, 50, mid + 10, 50), now)


def sends(acts) -> list[SendOrder]:
    return [x for x in acts if isinstance(x, SendOrder)]


def balance(core: EngineCore, acts, now: float) -> None:
    for o in sends(acts):
        core.handle(report(o, f"{o.cl_ord_id}-0", "0", "0", 0), now)
        core.handle(report(o, f"{o.cl_ord_id}-1", "F", "2", o.qty, o.qty, o.price), now)


def test_a_draining_node_opens_nothing_until_resumed(spread_scenario):
    core = core_with(spread_scenario)
    fire(core, spread_cny=0.0)  # sessions up, quotes inside the thresholds
    core.handle(Command("drain"), 0.1)
    assert not sends(cu_quote(core, 400.0, 0.2))
    core.handle(Command("resume"), 0.3)
    assert not core.draining and len(sends(cu_quote(core, 400.0, 0.4))) == 2


def test_no_more_episodes_than_max_concurrent(spread_scenario):
    core = core_with(spread_scenario, max_concurrent_episodes=1, cooldown=0.0)
    assert len(sends(fire(core))) == 2
    cu_quote(core, 0.0, 0.1)  # back inside: the sell side re-arms
    assert not sends(cu_quote(core, 400.0, 0.2))  # one open already
    two = core_with(spread_scenario, max_concurrent_episodes=2, cooldown=0.0)
    fire(two)
    cu_quote(two, 0.0, 0.1)
    assert len(sends(cu_quote(two, 400.0, 0.2))) == 2


def test_the_cooldown_runs_from_the_end_of_an_episode_to_the_instant_it_expires(spread_scenario):
    core = core_with(spread_scenario, cooldown=1.0)
    balance(core, fire(core), 0.5)  # ends at 0.5: no new signal before 1.5
    core.handle(Quote("USDCNY", 7.0999, 1e6, 7.1001, 1e6), 1.4)  # keep every input fresh
    core.handle(Quote("HG", 4.4995, 50, 4.5005, 50), 1.4)
    # the buy side never fired, so it is armed: only the cooldown holds it
    assert core.trigger.armed["buy_spread"] and not sends(cu_quote(core, -400.0, 1.4995))
    assert len(sends(cu_quote(core, -400.0, 1.5))) == 2


@pytest.mark.parametrize("limit,opens", [(25.0, True), (24.99, False)])
def test_max_naked_tonnes_bounds_the_larger_leg_alone(spread_scenario, limit, opens):
    """Worst case if only one leg fills: the larger leg's tonnes (CU 5 x 5 t = 25 t, HG 2 x 11.34 t);
    exactly at the limit opens."""
    core = core_with(spread_scenario, risk={"max_naked_tonnes": limit})
    acts = fire(core)
    assert bool(sends(acts)) is opens
    if not opens:
        (refused,) = [x for x in acts if isinstance(x, Audit) and x.stage == "risk_breach"]
        assert "25.00 t naked" in refused.detail


def test_an_entry_in_another_currency_is_measured_with_the_signals_fx(spread_scenario):
    """One CU lot against one HG lot: the HG leg's notional is 25,000 lb x ~4.50 USD x 7.1 = ~799k CNY,
    over a 500k limit, though the CU leg (5 t x ~70,800 = 354k) is under it."""
    core = core_with(spread_scenario, risk={"max_notional_cny": 500_000}, strategy={"clip_lots_a": 1})
    acts = fire(core)
    assert not sends(acts)
    (refused,) = [x for x in acts if isinstance(x, Audit) and x.stage == "risk_breach"]
    assert refused.instrument == "HG" and "max_notional_cny" in refused.detail


def test_an_entry_price_off_the_tick_grid_rounds_toward_the_market(spread_scenario):
    """A touch off the grid plus payup is rounded the way that keeps the order marketable: up for a
    buy, down for a sell."""
    core = core_with(spread_scenario)
    fire(core, spread_cny=0.0)
    core.handle(Quote("HG", 4.4996, 50, 4.5001, 50), 0.1)  # both touches off HG's 0.0005 grid
    a, b = sends(cu_quote(core, 400.0, 0.2))
    assert b.side == "1" and b.price == pytest.approx(4.5035)  # 4.5001 + 6 ticks = 4.5031, up
    core2 = core_with(spread_scenario)
    fire(core2, spread_cny=0.0)
    core2.handle(Quote("HG", 4.4996, 50, 4.5001, 50), 0.1)
    a2, b2 = sends(cu_quote(core2, -400.0, 0.2))
    assert b2.side == "2" and b2.price == pytest.approx(4.4965)  # 4.4996 - 6 ticks = 4.4966, down


def test_each_two_sided_quote_moves_the_reference_price(spread_scenario):
    core = core_with(spread_scenario)
    fire(core, spread_cny=0.0)
    core.handle(Quote("HG", 4.5095, 50, 4.5105, 50), 0.1)
    assert core.reference_price("HG") == pytest.approx(4.51)
    core.handle(Quote("HG", None, 0, 4.6, 50), 0.2)  # one-sided: the last two-sided mid stays
    assert core.reference_price("HG") == pytest.approx(4.51)


def test_a_drain_cancels_working_entries_but_leaves_a_repair_in_progress(spread_scenario):
    core = core_with(spread_scenario, mode="limit", order_timeout=30.0)
    a, b = sends(fire(core))
    for o in (a, b):
        core.handle(report(o, f"{o.cl_ord_id}0", "0", "0", 0), 0.01)
    acts = core.handle(Command("drain"), 0.1)
    assert {c.orig_cl_ord_id for c in acts if isinstance(c, SendCancel)} == {a.cl_ord_id, b.cl_ord_id}
    # a legged episode whose chase is working is recovery's: the drain leaves it
    core2 = core_with(spread_scenario)
    a2, b2 = sends(fire(core2))
    core2.handle(report(a2, "a1", "F", "2", a2.qty, a2.qty, a2.price), 0.01)
    chase = sends(core2.handle(report(b2, "b8", "8", "8", 0, reason=99), 0.02))
    ep = core2.episodes[a2.decision_id]
    assert ep.state is EpisodeState.LEGGED and chase
    assert not [c for c in core2.handle(Command("drain"), 0.1) if isinstance(c, SendCancel)]
