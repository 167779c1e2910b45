"""Trigger arithmetic, quantity alignment and pre-trade risk."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.config import Instrument, RiskLimits
from engine.core.risk import check_order
from engine.core.sizing import align, round_lots
from engine.core.trigger import BUY_SPREAD, SELL_SPREAD, TopOfBook, TriggerEvaluator

prices = st.floats(1.0, 20.0, allow_nan=False)
fx_rates = st.floats(5.0, 9.0, allow_nan=False)


def books(cu_bid, cu_ask, hg_bid, hg_ask, fx, ts=0.0, hg="HG"):
    return {
        "CU": TopOfBook(cu_bid, 1, cu_ask, 1, ts),
        hg: TopOfBook(hg_bid, 1, hg_ask, 1, ts),
        "USDCNY": TopOfBook(fx, 1, fx, 1, ts),
    }


def evaluator(config, kind="spread", hg_inst=None, **kw):
    s = config.strategy
    trig = dataclasses.replace(s.trigger, kind=kind, **kw)
    instruments = dict(config.instruments)
    strategy = dataclasses.replace(s, trigger=trig)
    if hg_inst is not None:
        instruments[hg_inst.name] = hg_inst
        strategy = dataclasses.replace(strategy, leg_b=hg_inst.name)
    return TriggerEvaluator(strategy, instruments)


@given(
    hg=prices,
    fx=fx_rates,
    spread=st.floats(-2000, 2000),
    unit=st.sampled_from(["t", "kg"]),
    kind=st.sampled_from(["spread", "ratio", "counter_price"]),
)
@settings(max_examples=150, deadline=None)
def test_signal_is_the_same_whatever_unit_or_currency_the_far_leg_is_quoted_in(config, hg, fx, spread, unit, kind):
    cu = hg * 2204.62 * fx + spread
    assume(cu > 0)
    base = evaluator(config, kind).values(books(cu - 10, cu + 10, hg - 0.0005, hg + 0.0005, fx))
    # the same copper quoted per tonne or per kg instead of per pound
    factor = {"t": 2204.62, "kg": 2.20462}[unit]
    per_unit = Instrument("HGX", "COMEX", "HGX", "USD", unit, 25, "t", 0.0005 * factor)
    other = evaluator(config, kind, hg_inst=per_unit).values(
        books(cu - 10, cu + 10, (hg - 0.0005) * factor, (hg + 0.0005) * factor, fx, hg="HGX")
    )
    # and already converted to CNY, with an FX of 1
    in_cny = Instrument("HGC", "COMEX", "HGC", "CNY", "t", 25, "t", 1.0)
    cny = evaluator(config, kind, hg_inst=in_cny)
    cny_books = books(cu - 10, cu + 10, (hg - 0.0005) * 2204.62 * fx, (hg + 0.0005) * 2204.62 * fx, 1.0, hg="HGC")
    converted = cny.values(cny_books)
    for side in (SELL_SPREAD, BUY_SPREAD):
        assert other[side] == pytest.approx(base[side], rel=1e-9, abs=1e-6)
        assert converted[side] == pytest.approx(base[side], rel=1e-9, abs=1e-6)


@given(hg=prices, fx=fx_rates, spread=st.floats(-2000, 2000), half=st.floats(0, 50))
@settings(max_examples=100, deadline=None)
def test_counter_price_is_never_better_than_mid_spread(config, hg, fx, spread, half):
    cu = hg * 2204.62 * fx + spread
    b = books(cu - half, cu + half, hg - 0.001, hg + 0.001, fx)
    mid = evaluator(config, "spread").values(b)[SELL_SPREAD]
    exe = evaluator(config, "counter_price").values(b)
    assert exe[SELL_SPREAD] <= mid + 1e-6 and exe[BUY_SPREAD] >= mid - 1e-6


def test_hysteresis_fires_once_per_crossing(config):
    ev = evaluator(config, "spread", sell_above=100.0, buy_below=-100.0, hysteresis=50.0)
    hg, fx = 4.5, 7.1

    def at(spread):
        cu = hg * 2204.62 * fx + spread
        return books(cu, cu, hg, hg, fx)

    sig = ev.evaluate(at(120), 0.0)
    assert sig is not None and sig.side == SELL_SPREAD
    ev.disarm(sig.side)
    assert ev.evaluate(at(130), 0.1) is None  # still above: disarmed
    assert ev.evaluate(at(70), 0.2) is None  # retreated, but not past 100 - 50
    assert ev.evaluate(at(40), 0.3) is None  # past it: re-armed
    assert ev.evaluate(at(110), 0.4).side == SELL_SPREAD


def test_stale_input_blocks_the_trigger(config):
    ev = evaluator(config)
    hg, fx = 4.5, 7.1
    cu = hg * 2204.62 * fx + 1000
    b = books(cu, cu, hg, hg, fx, ts=0.0)
    b["USDCNY"].ts = -10.0  # FX older than its 5 s limit
    assert ev.evaluate(b, 0.0) is None and ev.stale_skips == 1
    b["USDCNY"].ts = 0.0
    assert ev.evaluate(b, 0.0) is not None


@pytest.mark.parametrize(
    "x,rule,expected",
    [(1.2, "nearest", 1), (1.5, "nearest", 2), (1.2, "up", 2), (1.8, "down", 1), (2.0, "up", 2), (2.0, "down", 2)],
)
def test_rounding_rules(x, rule, expected):
    assert round_lots(x, rule) == expected


def test_alignment_tracks_the_residual_in_tonnes(config):
    cu, hg = config.instruments["CU"], config.instruments["HG"]
    s = align(5, (5, 2), "nearest", cu, hg)
    assert (s.lots_a, s.lots_b) == (5, 2) and s.residual_tonnes == pytest.approx(25 - 2 * 25000 / 2204.62)
    s = align(3, (5, 2), "up", cu, hg)
    assert s.lots_b == 2 and s.residual_tonnes == pytest.approx(15 - 2 * 25000 / 2204.62)
    assert align(1, (5, 2), "down", cu, hg).lots_b == 1  # never a zero-lot hedge


LIMITS = RiskLimits({"CU": 10}, {"CU": 20}, 5_000_000, 3.0)


@pytest.mark.parametrize(
    "qty,price,position,open_buy,limit",
    [
        (11, 70000, 0, 0, "max_order_lots"),
        (10, 70000, 15, 0, "max_position_lots"),
        (5, 70000, 10, 6, "max_position_lots"),  # worst case counts what is still working
        (10, 110000, 0, 0, "max_notional_cny"),
        (1, 73000, 0, 0, "price_band_pct"),
        (5, 70000, 0, 0, None),
    ],
)
def test_each_risk_limit(config, qty, price, position, open_buy, limit):
    breach = check_order(LIMITS, config.instruments["CU"], 1, qty, price, 70000, 1.0, position, open_buy, 0)
    assert (breach.limit if breach else None) == limit


@pytest.mark.parametrize("band", [3.0, math.inf])
def test_a_band_refusal_names_its_figures_and_one_inside_the_band_has_none(config, band):
    """The band's refusal says how far the price is from which reference, or that there is no reference
    to measure from (an unmeasurable band refuses unless the band is unbounded); an order inside it
    passes with no text made for it."""
    cu = config.instruments["CU"]
    limits = RiskLimits({"CU": 10}, {"CU": 20}, 5_000_000, band)
    far = check_order(limits, cu, 1, 1, 73000, 70000, 1.0, 0, 0, 0)
    none = check_order(limits, cu, 1, 1, 70000, None, 1.0, 0, 0, 0)
    if math.isinf(band):
        assert far is None and none is None
        return
    assert far is not None and far.detail == "price 73000 is 4.29% from reference 70000 (band 3.0%)"
    assert none is not None and none.detail == (
        "no reference price for CU: its book has never been two-sided, so the 3.0% band cannot be checked"
    )
    assert check_order(limits, cu, 1, 1, 70100, 70000, 1.0, 0, 0, 0) is None


@given(
    a_mid=st.floats(50_000, 90_000),
    a_half=st.floats(0, 50),
    b_mid=prices,
    b_half=st.floats(0, 0.01),
    fx_mid=fx_rates,
    fx_half=st.floats(0, 0.01),
    mult_a=st.floats(0.5, 2.0),
    mult_b=st.floats(0.5, 2.0),
    offset=st.floats(-1000, 1000),
    kind=st.sampled_from(["spread", "ratio", "counter_price"]),
)
@settings(max_examples=150, deadline=None)
def test_signal_values_follow_the_strategys_definition(
    config, a_mid, a_half, b_mid, b_half, fx_mid, fx_half, mult_a, mult_b, offset, kind
):
    """Each side's value from its definition, computed here: leg B in leg A's currency per tonne (price x
    pounds per tonne x FX at its mid), each leg times its multiplier; spread and counter_price add the
    offset, the ratio of the two mids does not; counter_price sells A at its bid against B's ask and buys
    A at its ask against B's bid. The FX book is two-sided and not flat, so a rate taken from one side
    shows."""
    s = dataclasses.replace(
        config.strategy,
        price_multiplier_a=mult_a,
        price_multiplier_b=mult_b,
        offset=offset,
        trigger=dataclasses.replace(config.strategy.trigger, kind=kind),
    )
    ev = TriggerEvaluator(s, config.instruments)
    b = {
        "CU": TopOfBook(a_mid - a_half, 1, a_mid + a_half, 1, 0.0),
        "HG": TopOfBook(b_mid - b_half, 1, b_mid + b_half, 1, 0.0),
        "USDCNY": TopOfBook(fx_mid - fx_half, 1, fx_mid + fx_half, 1, 0.0),
    }
    fx = ((fx_mid - fx_half) + (fx_mid + fx_half)) / 2.0
    per_lb = 2204.62  # HG is quoted per pound (the config's pounds per tonne)
    a = lambda px: mult_a * px  # noqa: E731 - CU is quoted per tonne in CNY already
    bb = lambda px: mult_b * px * per_lb * fx  # noqa: E731
    if kind == "counter_price":
        want = {SELL_SPREAD: a(a_mid - a_half) - bb(b_mid + b_half) + offset}
        want[BUY_SPREAD] = a(a_mid + a_half) - bb(b_mid - b_half) + offset
    elif kind == "ratio":
        want = dict.fromkeys((SELL_SPREAD, BUY_SPREAD), a(a_mid) / bb(b_mid))
    else:
        want = dict.fromkeys((SELL_SPREAD, BUY_SPREAD), a(a_mid) - bb(b_mid) + offset)
    got = ev.values(b)
    for side in (SELL_SPREAD, BUY_SPREAD):
        assert got[side] == pytest.approx(want[side], rel=1e-6, abs=1e-3)


def _spread_books(spread: float, half_a: float = 10.0, half_b: float = 0.0005):
    """Books whose mid spread is `spread` CNY/t (FX flat at 7.1), each leg `half` either side of its mid."""
    hg, fx = 4.5, 7.1
    cu = hg * 2204.62 * fx + spread
    return books(cu - half_a, cu + half_a, hg - half_b, hg + half_b, fx)


@pytest.mark.parametrize("kind", ["spread", "counter_price"])
def test_a_side_fires_at_its_threshold_and_names_the_touches_it_trades_against(config, kind):
    """A side fires when its value reaches the threshold exactly (`at or above`, `at or below`); the
    signal carries the touches that side trades against: selling the spread sells A at its bid and buys
    B at its ask, buying it the reverse."""
    b = _spread_books(300.0)
    values = evaluator(config, kind).values(b)
    sell = evaluator(config, kind, sell_above=values[SELL_SPREAD], buy_below=-1e9, hysteresis=1.0)
    sig = sell.evaluate(b, 0.0)
    assert sig is not None and sig.side == SELL_SPREAD and sig.value == values[SELL_SPREAD]
    assert (sig.price_a, sig.price_b) == (b["CU"].bid, b["HG"].ask)
    buy = evaluator(config, kind, sell_above=1e9, buy_below=values[BUY_SPREAD], hysteresis=1.0)
    sig = buy.evaluate(b, 0.0)
    assert sig is not None and sig.side == BUY_SPREAD and sig.value == values[BUY_SPREAD]
    assert (sig.price_a, sig.price_b) == (b["CU"].ask, b["HG"].bid)
    assert sig.fx_rate == 7.1 and sell.last_value == values and buy.last_value == values
    # a hair short of either threshold fires nothing
    assert evaluator(config, kind, sell_above=values[SELL_SPREAD] + 1e-6, buy_below=-1e9).evaluate(b, 0.0) is None
    assert evaluator(config, kind, sell_above=1e9, buy_below=values[BUY_SPREAD] - 1e-6).evaluate(b, 0.0) is None


@pytest.mark.parametrize("side", [SELL_SPREAD, BUY_SPREAD])
def test_a_fired_side_re_arms_only_strictly_past_its_hysteresis(config, side):
    """After firing, a side stays disarmed while the signal sits exactly `hysteresis` back from its
    threshold, and re-arms once it is past that; each side on its own."""
    level = evaluator(config).values(_spread_books(0.0))[SELL_SPREAD]  # the mid spread these books give
    h = 64.0
    if side == SELL_SPREAD:
        ev = evaluator(config, sell_above=level + h, buy_below=-1e9, hysteresis=h)
        fire_at, back = 2 * h, -1.0  # `back` past the boundary (the boundary is the mid spread itself)
    else:
        ev = evaluator(config, sell_above=1e9, buy_below=level - h, hysteresis=h)
        fire_at, back = -2 * h, 1.0
    sig = ev.evaluate(_spread_books(fire_at), 0.0)
    assert sig is not None and sig.side == side
    ev.disarm(side)
    boundary = _spread_books(0.0)
    assert ev.values(boundary)[side] == level  # exactly threshold -/+ hysteresis
    assert ev.evaluate(boundary, 0.1) is None and not ev.armed[side]
    assert ev.evaluate(_spread_books(back), 0.2) is None and ev.armed[side]
    assert ev.evaluate(_spread_books(fire_at), 0.3).side == side


def test_a_quote_exactly_at_its_age_limit_is_fresh_and_one_a_hair_older_is_not(config):
    ev = evaluator(config)
    limit = config.strategy.trigger.max_quote_age["HG"]
    b = _spread_books(1000.0)
    b["HG"].ts = -limit
    assert ev.inputs_fresh(b, 0.0) is None
    b["HG"].ts = -limit - 1e-6
    assert ev.inputs_fresh(b, 0.0) == "HG"
    assert ev.evaluate(b, 0.0) is None and ev.stale_skips == 1 and ev.last_value == {}


@pytest.mark.parametrize(
    "x,rule,expected",
    [
        (2.0 + 1e-12, "up", 2),  # a product that misses a whole number by float error is that number
        (2.0 - 1e-12, "down", 2),
        (2.5, "nearest", 3),  # half a lot rounds up, not to the even number
        (0.5, "nearest", 1),
    ],
)
def test_rounding_forgives_float_error_and_rounds_halves_up(x, rule, expected):
    assert round_lots(x, rule) == expected


@pytest.mark.parametrize(
    "side,qty,position,open_buy,open_sell,limit",
    [
        (-1, 5, -10, 0, 6, "max_position_lots"),  # selling: what is still selling counts
        (-1, 5, -10, 6, 0, None),  # ... and what is buying does not
        (-1, 10, -15, 0, 0, "max_position_lots"),  # short beyond the limit is beyond it too
        (1, 10, 10, 0, 0, None),  # exactly at the limit is inside it
        (-1, 10, -10, 0, 0, None),
    ],
)
def test_the_worst_case_position_counts_its_own_side_and_allows_the_limit_itself(
    config, side, qty, position, open_buy, open_sell, limit
):
    breach = check_order(LIMITS, config.instruments["CU"], side, qty, 70000, 70000, 1.0, position, open_buy, open_sell)
    assert (breach.limit if breach else None) == limit


def test_notional_is_in_cny_and_allows_the_limit_itself(config):
    """Notional is lots x tonnes per lot x the price in CNY per tonne (FX included); an order exactly at
    the limit passes."""
    cu, hg = config.instruments["CU"], config.instruments["HG"]
    assert check_order(LIMITS, cu, 1, 10, 100_000, 100_000, 1.0, 0, 0, 0) is None  # 10 x 5 t x 100,000
    assert check_order(LIMITS, cu, 1, 10, 100_010, 100_010, 1.0, 0, 0, 0).limit == "max_notional_cny"
    limits = RiskLimits({}, {}, 500_000, 3.0)
    # one HG lot at 4.50 USD/lb is 25,000 lb x 4.50 = 112,500 USD, 798,750 CNY at 7.1
    assert check_order(limits, hg, 1, 1, 4.5, 4.5, 7.1, 0, 0, 0).limit == "max_notional_cny"
    assert check_order(limits, hg, 1, 1, 4.5, 4.5, 1.0, 0, 0, 0) is None


@pytest.mark.parametrize("reference", [0.0, -70000.0])
def test_a_reference_that_is_not_a_price_refuses_the_order(config, reference):
    breach = check_order(LIMITS, config.instruments["CU"], 1, 1, 70000, reference, 1.0, 0, 0, 0)
    assert breach is not None and breach.limit == "price_band_pct" and "no reference price" in breach.detail
