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
