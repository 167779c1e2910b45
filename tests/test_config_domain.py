"""The engine configuration's validation domain, walked at its edges: every bounded key takes its edge value
and refuses the value just past it naming that key, and every rule between keys holds on both sides.

The base is the bundled spread scenario's [instruments], [strategy] and [risk]; each case changes one
thing and expects either a clean read or exactly the one problem it names.
"""

from __future__ import annotations

import math
import tomllib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.config import DEFAULT_REJECT_POLICY, ConfigError, Instrument, Problem, Section, read_engine, read_toml
from tests.conftest import SPREAD
from tests.helpers.documents import DELETE, edited, only_problem

VENUES = {"SHFE", "COMEX", "FX"}
BASE = {k: v for k, v in tomllib.loads(SPREAD.read_text()).items() if k in ("instruments", "strategy", "risk")}


def read(doc: dict):
    problems: list[Problem] = []
    config = read_engine(Section(doc, "", problems), VENUES)
    return config, problems


def accepted(*changes: tuple[str, object]):
    config, problems = read(edited(BASE, *changes))
    assert problems == [], f"{changes} was refused: {problems}"
    return config


def refused(key: str, *changes: tuple[str, object]) -> Problem:
    """The one problem `changes` make, which must name `key` and say how to fix it."""
    return only_problem(read(edited(BASE, *changes))[1], key, changes)


def test_the_base_reads_clean():
    config = accepted()
    assert (config.strategy.leg_a, config.strategy.leg_b, config.strategy.fx) == ("CU", "HG", "USDCNY")


# (key, its edge value, which is taken, and the value just past it, which is refused naming the key)
EDGES = [
    ("strategy.trigger.hysteresis", 0.0, -0.001),
    ("strategy.execution.order_timeout_ms", 0.001, 0.0),
    ("strategy.execution.cooldown_ms", 0.0, -0.001),
    ("strategy.execution.max_concurrent_episodes", 1, 0),
    ("strategy.execution.answer_timeout_ms", 0.001, 0.0),
    ("strategy.execution.ack_timeout_rtts", 0.0, -0.001),
    ("strategy.recovery.max_chase_attempts", 0, -1),
    ("strategy.recovery.chase_payup_ticks", 0, -1),
    ("strategy.recovery.chase_step_ticks", 0, -1),
    ("strategy.recovery.liquidity_step_ticks", 0, -1),
    ("strategy.recovery.max_payup_ticks", 0, -1),
    ("strategy.recovery.legged_budget_ms", 0.001, 0.0),
    ("strategy.recovery.unwind_payup_ticks", 0, -1),
    ("strategy.recovery.unwind_step_ticks", 0, -1),
    ("strategy.recovery.max_unwind_attempts", 1, 0),
    ("strategy.recovery.status_timeout_ms", 0.001, 0.0),
    ("strategy.clip_lots_a", 1, 0),
    ("strategy.price_multiplier_a", 1e-9, 0.0),
    ("strategy.price_multiplier_b", 1e-9, 0.0),
    ("risk.max_notional_cny", 0.01, 0.0),
    ("risk.price_band_pct", 1e-9, 0.0),
    ("risk.max_naked_tonnes", 1e-9, 0.0),
    ("risk.max_slippage_ticks", 0, -1),
    ("risk.max_order_lots.CU", 1, 0),
    ("risk.max_position_lots.HG", 1, 0),
    ("risk.max_orders_per_day.CU", 1, 0),
    ("risk.max_cancels_per_day.HG", 0, -1),
    ("strategy.execution.payup_ticks.CU", 0, -1),
    ("strategy.trigger.max_quote_age_ms.USDCNY", 0.001, 0.0),
    ("instruments.USDCNY.lot", 0.0, -0.001),
    ("instruments.CU.tick", 1e-9, 0.9e-9),
    ("instruments.CU.lot", 1e9, 1.000001e9),
    ("instruments.HG.tick", 1e9, 1.000001e9),
]


@pytest.mark.parametrize("key,edge,past", EDGES, ids=[e[0] for e in EDGES])
def test_each_bounded_key_takes_its_edge_and_refuses_the_value_just_past_it(key, edge, past):
    accepted((key, edge))
    problem = refused(key, (key, past))
    assert repr(past) in problem.what or str(past) in problem.what


@pytest.mark.parametrize("key", ["strategy.offset", "strategy.trigger.sell_above", "risk.max_notional_cny"])
def test_a_magnitude_beyond_any_real_one_is_refused_whichever_its_sign(key):
    for value in (1.0000001e12, -1.0000001e12):
        assert "beyond any real magnitude" in refused(key, (key, value)).what
    accepted((key, 1e12))


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_number_that_is_no_number_is_refused(value):
    assert "finite" in refused("strategy.offset", ("strategy.offset", value)).fix


@pytest.mark.parametrize(
    "key,value",
    [
        ("strategy.clip_lots_a", True),
        ("strategy.offset", False),
        ("strategy.lot_ratio", [True, 2]),
        ("strategy.lot_ratio", [5, 2, 1]),
        ("strategy.lot_ratio", [5]),
        ("strategy.lot_ratio", [5, 2.0]),
        ("strategy.execution.payup_ticks.CU", True),
        ("strategy.execution.payup_ticks.CU", 1.5),
        ("risk.max_order_lots.CU", True),
    ],
)
def test_true_false_and_fractions_are_no_counts(key, value):
    refused(key, (key, value))


def test_a_per_instrument_table_refuses_an_instrument_nobody_defined():
    problem = refused("risk.max_order_lots.ZN", ("risk.max_order_lots.ZN", 3))
    assert "unknown instrument" in problem.what and "CU" in problem.fix


def test_an_instrument_on_a_venue_nobody_defined_is_refused_naming_the_venues():
    problem = refused("instruments.CU.venue", ("instruments.CU.venue", "LME"))
    assert "LME" in problem.what and "SHFE" in problem.fix


@pytest.mark.parametrize("key", ["instruments.CU.symbol", "instruments.HG.account"])
@pytest.mark.parametrize("value", ["cu\x012603", "cu2603\n", " cu2603", "cu\u00e92603", "cu\x7f"])
def test_a_symbol_or_account_a_fix_field_cannot_carry_is_refused(key, value):
    assert "FIX field" in refused(key, (key, value)).what


def test_a_symbol_with_an_inner_space_is_printable_ascii_and_taken():
    assert accepted(("instruments.CU.symbol", "CU 2603")).instruments["CU"].symbol == "CU 2603"


@pytest.mark.parametrize("section", ["instruments.CU", "strategy", "strategy.trigger", "strategy.execution", "risk"])
def test_a_key_nobody_reads_is_refused_in_every_table(section):
    problem = refused(f"{section}.leverage", (f"{section}.leverage", 3))
    assert "not a known key" in problem.what


def test_the_two_thresholds_may_not_meet():
    accepted(("strategy.trigger.sell_above", -249.999))
    problem = refused("strategy.trigger.sell_above", ("strategy.trigger.sell_above", -250.0))
    assert "not above buy_below" in problem.what


def test_the_two_legs_are_two_instruments():
    problem = refused("strategy.leg_b", ("strategy.leg_b", "CU"))
    assert "same instrument" in problem.what


@pytest.mark.parametrize(
    "changes",
    [
        [("instruments.HG.lot", 0)],
        [("instruments.HG.lot_unit", DELETE)],
        [("instruments.CU.lot", 0)],
    ],
)
def test_a_traded_leg_needs_a_lot_and_its_unit(changes):
    leg = changes[0][0].split(".")[1]
    problem = refused(f"instruments.{leg}.lot", *changes)
    assert "could not be aligned" in problem.what


def test_a_pricing_only_instrument_needs_no_lot():
    assert accepted(("instruments.USDCNY.lot", 0)).instruments["USDCNY"].lot == 0


def test_legs_in_two_currencies_need_an_fx_rate():
    problem = refused("strategy.fx", ("strategy.fx", DELETE))
    assert "different currencies" in problem.what
    accepted(("strategy.fx", DELETE), ("instruments.HG.currency", "CNY"))


@pytest.mark.parametrize("leg", ["CU", "HG", "USDCNY"])
def test_every_input_of_the_signal_needs_a_staleness_limit(leg):
    problem = refused(f"strategy.trigger.max_quote_age_ms.{leg}", (f"strategy.trigger.max_quote_age_ms.{leg}", DELETE))
    assert problem.what == "is missing"


@pytest.mark.parametrize("limit", ["max_order_lots", "max_position_lots"])
@pytest.mark.parametrize("leg", ["CU", "HG"])
def test_every_traded_leg_needs_each_lot_limit(limit, leg):
    assert refused(f"risk.{limit}.{leg}", (f"risk.{limit}.{leg}", DELETE)).what == "is missing"


def test_amending_needs_both_its_keys_and_a_mode_where_orders_rest():
    limit = ("strategy.execution.mode", "limit")
    accepted(limit, ("strategy.execution.amend_after_ms", 200), ("strategy.execution.max_amends", 2))
    accepted(limit)
    refused("strategy.execution.amend_after_ms", limit, ("strategy.execution.amend_after_ms", 200))
    refused("strategy.execution.amend_after_ms", limit, ("strategy.execution.max_amends", 2))
    problem = refused(
        "strategy.execution.amend_after_ms",
        ("strategy.execution.amend_after_ms", 200),
        ("strategy.execution.max_amends", 2),
    )
    assert "nothing rests" in problem.what


def test_the_chase_fits_inside_the_legged_budget_and_defaults_to_half_of_it():
    assert accepted().strategy.recovery.chase_budget == pytest.approx(0.4)
    assert accepted(("strategy.recovery.chase_budget_ms", 800)).strategy.recovery.chase_budget == pytest.approx(0.8)
    problem = refused("strategy.recovery.chase_budget_ms", ("strategy.recovery.chase_budget_ms", 800.001))
    assert "longer than legged_budget_ms" in problem.what


def test_without_a_recovery_table_a_legged_episode_goes_to_the_desk():
    assert accepted(("strategy.recovery", DELETE)).strategy.recovery.policy == "escalate"
    assert accepted().strategy.recovery.policy == "chase_unwind"


def test_the_reject_policy_takes_reasons_and_classes_it_knows_and_refuses_others():
    policy = accepted(
        ("strategy.recovery.reject_policy", {"3": "fatal", "default": "retry", "business": "retry"})
    ).strategy.recovery
    assert policy.reject_class(3) == "fatal"
    assert policy.reject_class(2) == DEFAULT_REJECT_POLICY["2"]
    assert policy.reject_class(77) == "retry"  # a reason with no entry of its own takes "default"
    assert policy.reject_class(None, business=True) == "retry"
    assert policy.reject_class(None, session_level=True) == "fatal"
    assert accepted().strategy.recovery.reject_class(77) == "fix_and_retry"
    problem = refused("strategy.recovery.reject_policy.3", ("strategy.recovery.reject_policy", {"3": "maybe"}))
    assert "retry" in problem.fix
    problem = refused("strategy.recovery.reject_policy.late", ("strategy.recovery.reject_policy", {"late": "fatal"}))
    assert "not an OrdRejReason" in problem.what
    for digits in ("²", "٣"):  # str.isdigit takes them; no OrdRejReason (tag 103) is written so
        problem = refused(
            f"strategy.recovery.reject_policy.{digits}", ("strategy.recovery.reject_policy", {digits: "fatal"})
        )
        assert "not an OrdRejReason" in problem.what


def test_a_document_with_many_problems_reports_each_once():
    _, problems = read(
        edited(
            BASE,
            ("instruments.CU.tick", 0),
            ("strategy.leg_b", "CU"),
            ("risk.max_order_lots.HG", 0),
            ("strategy.execution.cooldown_ms", -1),
        )
    )
    assert sorted(p.key for p in problems) == sorted(
        ["instruments.CU.tick", "strategy.leg_b", "risk.max_order_lots.HG", "strategy.execution.cooldown_ms"]
    )


def test_a_config_file_carries_every_problem_with_its_path(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text("[strategy\n")
    with pytest.raises(ConfigError) as err:
        read_toml(path, "the engine's configuration")
    assert err.value.source == str(path) and "not valid TOML" in err.value.problems[0].what


@given(n=st.integers(-(10**6), 10**6), tick=st.sampled_from([10.0, 0.0005, 0.0001, 0.25, 0.1, 5.0, 0.01]))
@example(n=7, tick=0.0005)  # 7 * 0.0005 / 0.0005 is 7.000000000000001 in floating point
@example(n=3, tick=0.1)  # 0.30000000000000004
@settings(max_examples=300, deadline=None)
def test_a_price_on_the_tick_grid_stays_where_it_is_whichever_way_it_rounds(n, tick):
    inst = Instrument("X", "V", "X", "CNY", "t", 1, "t", tick)
    on_grid = n * tick
    for side in (1, -1, 0):
        assert inst.round_to_tick(on_grid, side) == round(n * tick, 10)


@given(
    price=st.floats(0.0001, 1e6, allow_nan=False),
    tick=st.sampled_from([10.0, 0.0005, 0.0001, 0.25, 0.1, 5.0]),
)
@settings(max_examples=300, deadline=None)
def test_a_buy_rounds_up_a_sell_down_and_no_side_to_the_nearest_tick(price, tick):
    inst = Instrument("X", "V", "X", "CNY", "t", 1, "t", tick)
    up, down, near = (inst.round_to_tick(price, s) for s in (1, -1, 0))
    eps = tick * 1e-6 + price * 1e-12  # the float arithmetic's own error at this magnitude
    for p in (up, down, near):
        assert abs(p / tick - round(p / tick)) < 1e-6  # on the grid
        assert p == round(p, 10)
    assert down <= price + eps and up >= price - eps
    assert up - down <= tick + eps
    assert abs(near - price) <= tick / 2 + eps


def test_a_lot_and_a_tick_both_beyond_any_contract_are_each_reported():
    _, problems = read(edited(BASE, ("instruments.CU.lot", 2e9), ("instruments.CU.tick", 3e9)))
    assert [(p.key, "beyond 1e9" in p.what) for p in problems] == [
        ("instruments.CU.lot", True),
        ("instruments.CU.tick", True),
    ]


@pytest.mark.parametrize("ratio", [DELETE, "5:2", 5])
def test_a_lot_ratio_left_out_or_of_another_type_is_one_problem(ratio):
    assert refused("strategy.lot_ratio", ("strategy.lot_ratio", ratio)).what != "is [1, 1]"
