"""Strict expectations, scenarios that extend a base, and the new fault kinds: validated before
anything runs, evaluated so that they can fail."""

from __future__ import annotations

import math
import random

import pytest

from engine.config import ConfigError
from simulator import runner, scenario
from simulator.prices import PriceProcess
from tests.conftest import ROOT

BASE = ROOT / "scenarios" / "cu_hg_spread.toml"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def extending(tmp_path, body: str, name: str = "child.toml"):
    base = write(tmp_path, "base.toml", BASE.read_text())
    return write(tmp_path, name, f'extends = "{base.name}"\n[scenario]\ndescription = "a child"\n' + body)


def test_a_child_merges_tables_key_by_key_and_states_its_own_expectations(tmp_path):
    sc = scenario.load(extending(tmp_path, "[risk]\nmax_slippage_ticks = 3\n[expect]\nmin_episodes = 1\n"))
    assert sc.name == "child" and sc.description == "a child" and sc.duration == 300
    assert sc.engine.risk.max_slippage_ticks == 3 and sc.engine.risk.price_band_pct == 2.0  # the base's, kept
    assert sc.expect == {"min_episodes": 1}  # [expect] is the child's own, never merged


def test_a_bad_value_inherited_from_the_base_names_the_base_file(tmp_path):
    base = write(tmp_path, "base.toml", BASE.read_text().replace("price_band_pct = 2.0", "price_band_pct = -1"))
    child = write(tmp_path, "child.toml", f'extends = "{base.name}"\n[scenario]\ndescription = "x"\n')
    with pytest.raises(ConfigError) as err:
        scenario.load(child)
    assert "risk.price_band_pct" in str(err.value) and "(set in base.toml)" in str(err.value)


@pytest.mark.parametrize(
    "extends,fragment", [('"missing.toml"', "not a file"), ("3", "write the path"), ('"child.toml"', "cycle")]
)
def test_bad_extends_is_a_clear_error(tmp_path, extends, fragment):
    child = write(tmp_path, "child.toml", f"extends = {extends}\n")
    with pytest.raises(ConfigError) as err:
        scenario.load(child)
    assert "extends" in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize(
    "expect,key",
    [
        ("outcome_share_at_least = { BALANCED = 1.5 }", "outcome_share_at_least.BALANCED"),
        ("outcome_share_at_most = { WON = 0.1 }", "outcome_share_at_most.WON"),
        ("min_reorder_success = 2.0", "min_reorder_success"),
        ("max_legged_ms = 0", "max_legged_ms"),
        ("leg_lots = [5, 0]", "leg_lots"),
        ("leg_lots = [5]", "leg_lots"),
        ("max_residual_t = -1", "max_residual_t"),
        ('no_episode_during = ["disconnect"]', "no_episode_during"),
        ("no_episode_between = [[30, 10]]", "no_episode_between"),
        ("anomalies_at_least = { dupe = 1 }", "anomalies_at_least.dupe"),
        ("anomalies_at_most = { status_mismatch = -1 }", "anomalies_at_most.status_mismatch"),
        ("anomalies_at_most = { overfill = 0.5 }", "anomalies_at_most.overfill"),
    ],
)
def test_impossible_expectations_are_refused(tmp_path, expect, key):
    with pytest.raises(ConfigError) as err:
        scenario.load(extending(tmp_path, f"[expect]\n{expect}\n"))
    assert f"expect.{key}" in str(err.value)


@pytest.mark.parametrize(
    "fault,key",
    [
        ('kind = "price_jump"\njump_bp = 0', "jump_bp"),
        ('kind = "price_jump"\njump_bp = 10\nvenue = "SHFE"', "venue"),
        ('kind = "price_jump"\njump_bp = 10\nrate_per_s = 1', "until_s"),
        ('kind = "crash_mid_batch"\npoint = "somewhere"\ndelay_ms = 10', "point"),
        ('kind = "crash_mid_batch"', "delay_ms"),
        ('kind = "price_limit_lock"\nvenue = "COMEX"\non_order = true', "delay_ms"),
        ('kind = "reject"\nvenue = "COMEX"\non_order = true', "on_order"),
        ('kind = "reject"\nvenue = "COMEX"\nlevel = "transport"', "level"),
        ('kind = "no_ack"\nvenue = "COMEX"\nlevel = "session"', "level"),
    ],
)
def test_impossible_faults_are_refused(tmp_path, fault, key):
    with pytest.raises(ConfigError) as err:
        scenario.load(extending(tmp_path, f"[[faults]]\n{fault}\n"))
    assert f"faults[0].{key}" in str(err.value)


@pytest.mark.parametrize(
    "level,tag,field,allowed",
    [
        ("order", 103, "OrdRejReason", {str(v) for v in (*range(12), *range(13, 16), 99)}),
        ("session", 373, "SessionRejectReason", {str(v) for v in (*range(18), 99)}),
        ("business", 380, "BusinessRejectReason", {str(v) for v in range(8)}),
    ],
)
def test_a_reject_faults_reason_is_one_its_venues_dictionary_allows(tmp_path, level, tag, field, allowed):
    """The venue's answer carries the reason in `tag`, which the engine's session validates against the
    venue's dictionary (quickfix on the wire): a reason outside it would be refused there and the engine
    would never learn of the reject, so the scenario is refused at load, naming the values it may use."""
    for reason in range(0, 120):
        text = f'[[faults]]\nkind = "reject"\nvenue = "COMEX"\nlevel = "{level}"\nreason = {reason}\n'
        if str(reason) in allowed:
            assert scenario.load(extending(tmp_path, text)).faults[0].reason == reason
            continue
        with pytest.raises(ConfigError) as err:
            scenario.load(extending(tmp_path, text))
        message = str(err.value)
        assert "faults[0].reason" in message and f"{field} ({tag})" in message and "COMEX" in message, message
        assert f"use one of {', '.join(sorted(allowed, key=int))}" in message, message


def fake_report(outcomes: list[str], legged_ms=(), coverage=(), windows=(), anomalies=None) -> dict:
    episodes = [
        {
            "decision_id": f"E1-{i:06d}",
            "outcome": o,
            "signal_at_s": float(i),
            "legs": {"A": {"target": 5}, "B": {"target": 2}},
            "residual_t": 2.32,
            "recovery": {"legged_ms": ms} if ms is not None else None,
        }
        for i, (o, ms) in enumerate(zip(outcomes, list(legged_ms) + [None] * len(outcomes)))
    ]
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    none = {"rate": None, "n": 0}
    return {
        "outcomes": counts,
        "episodes": episodes,
        "invariants": {},
        "coverage": list(coverage),
        "recovery": {
            "legged": len(legged_ms),
            "repaired_in_budget": none,
            "reorder_success": {"rate": 0.5},
            "rollback_success": none,
        },
        "fills_match_positions": True,
        "fault_windows": list(windows),
        "timings": {"signal_to_acks_ms": {"p99": 1.0}},
        "anomalies": {"count": sum((anomalies or {}).values()), "by_kind": dict(anomalies or {})},
    }


def verdicts(expect: dict, rep: dict) -> dict[str, str]:
    return {x["key"]: x["verdict"] for x in runner.evaluate(expect, rep)}


def test_shares_and_success_rates_fail_when_short():
    rep = fake_report(["BALANCED", "UNWOUND", "UNWOUND", "ESCALATED"], legged_ms=[100.0, 900.0, None])
    v = verdicts(
        {
            "outcome_share_at_least": {"BALANCED": 0.5},
            "outcome_share_at_most": {"ESCALATED": 0.25},
            "min_reorder_success": 0.6,
            "min_rollback_success": 0.9,
            "max_legged_ms": 800.0,
            "leg_lots": [5, 2],
            "max_residual_t": 2.0,
        },
        rep,
    )
    assert v == {
        "outcome_share_at_least.BALANCED": "fail",
        "outcome_share_at_most.ESCALATED": "pass",
        "min_reorder_success": "fail",
        "min_rollback_success": "fail",
        "max_legged_ms": "fail",
        "leg_lots": "pass",
        "max_residual_t": "fail",
        "invariants_hold": "pass",
        "fills_match_positions": "pass",
    }


def test_anomaly_counts_per_kind_fail_when_short_or_over():
    rep = fake_report(["BALANCED"], anomalies={"duplicate_exec_id": 2, "status_mismatch": 1})
    v = verdicts(
        {
            "anomalies_at_least": {"duplicate_exec_id": 2, "late_fill": 1},
            "anomalies_at_most": {"status_mismatch": 0, "overfill": 0},
        },
        rep,
    )
    assert {k: x for k, x in v.items() if k.startswith("anomalies")} == {
        "anomalies_at_least.duplicate_exec_id": "pass",
        "anomalies_at_least.late_fill": "fail",
        "anomalies_at_most.status_mismatch": "fail",
        "anomalies_at_most.overfill": "pass",
    }


def test_every_anomaly_kind_the_code_records_is_a_kind_scenarios_can_name():
    """ANOMALY_KINDS is the domain of anomalies_at_least / anomalies_at_most: a kind recorded anywhere in
    the engine or the simulator that is missing from it could never be asserted, and one nothing records
    would be an expectation that can never be met."""
    import re

    from engine.core.events import ANOMALY_KINDS

    recorded = set()
    for path in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "simulator").rglob("*.py")]:
        text = path.read_text()
        recorded |= set(re.findall(r'anomaly\(\s*now,\s*"(\w+)"', text))
        recorded |= set(re.findall(r'Anomaly\([^,]+,\s*"(\w+)"', text))
        recorded |= set(re.findall(r'anomalies\.append\(\s*\(\s*"(\w+)"', text))  # ChildOrder.apply's
        recorded |= set(re.findall(r'return 0\.0, \[\s*\(\s*"(\w+)"', text))
        recorded |= {f"fix_{k}" for k in re.findall(r'FixParseError\("(\w+)"', text)}
    assert recorded == set(ANOMALY_KINDS), (recorded - set(ANOMALY_KINDS), set(ANOMALY_KINDS) - recorded)


def test_a_fault_that_fired_without_reaching_its_path_fails_and_windows_stay_empty():
    windows = [
        {
            "index": 0,
            "kind": "late_ack",
            "venue": "COMEX",
            "orders": "entry",
            "after_s": 0.0,
            "until_s": None,
            "hits": 3,
        },
        {
            "index": 1,
            "kind": "disconnect",
            "venue": "COMEX",
            "orders": "any",
            "after_s": 1.0,
            "until_s": 2.5,
            "hits": 1,
        },
    ]
    rep = fake_report(["BALANCED", "BALANCED", "BALANCED"], coverage=["session_down"], windows=windows)
    v = verdicts({"no_episode_during": ["disconnect"]}, rep)
    assert v["faults_reach_paths.0:late_ack"] == "fail" and v["faults_reach_paths.1:disconnect"] == "pass"
    assert v["no_episode_during.disconnect fault 1"] == "fail"  # episodes at t=1 and t=2
    assert verdicts({"faults_reach_paths": False}, rep).get("faults_reach_paths.0:late_ack") is None
    assert verdicts({"no_episode_between": [[5, 9]]}, rep)["no_episode_during.window 5-9 s"] == "pass"


@pytest.mark.parametrize(
    "edit,key",
    [
        (("lot = 5\n", "lot = 0\n"), "instruments.CU.lot"),
        (('lot_unit = "t"\n', ""), "instruments.CU.lot"),
        (('account = "SHFE-ARB-01"', 'account = "SHFE\\u0001ARB"'), "instruments.CU.account"),
        (('symbol = "cu2603"', 'symbol = "cu2603\\u00e9"'), "instruments.CU.symbol"),
        (("tick = 10\n", "tick = 1e12\n"), "instruments.CU.tick"),
    ],
)
def test_traded_instruments_need_real_lots_and_fix_safe_names(tmp_path, edit, key):
    """A traded leg with lot 0 once certified `pass`; a control character in an account went onto
    the wire as an extra field; non-ASCII crashed messages.log. Each is refused before anything runs."""
    text = BASE.read_text()
    assert edit[0] in text
    path = write(tmp_path, "bad.toml", text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as err:
        scenario.load(path)
    assert key in str(err.value)


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.toml")), ids=lambda p: p.stem)
def test_print_scenario_shows_the_merged_document_that_loads_to_the_same_scenario(tmp_path, capsys, path):
    from xmc.cli import main

    assert main(["run", str(path), "--print-scenario"]) == 0
    merged = tmp_path / path.name
    merged.write_text(capsys.readouterr().out)
    assert "extends" not in merged.read_text()
    a, b = scenario.load(path), scenario.load(merged)
    assert (a.name, a.engine, a.venues, a.prices, a.expect, a.faults, a.duration, a.seed, a.drain, a.failover) == (
        b.name,
        b.engine,
        b.venues,
        b.prices,
        b.expect,
        b.faults,
        b.duration,
        b.seed,
        b.drain,
        b.failover,
    )


def test_a_critical_alert_the_scenario_does_not_call_for_fails_the_run():
    """max_alerts counts every critical alert raised to the desk: f50 calls for exactly one (the
    position mismatch that holds SHFE); allowing none turns the same run red, naming the key."""
    sc = scenario.load(ROOT / "scenarios" / "f50_desk_trade_position_mismatch_holds_venue.toml")
    rep = runner.run(sc, 1).report
    assert rep["counters"]["alerts"] == 1 and rep["verdict"] == "pass"
    strict = runner.evaluate({**sc.expect, "max_alerts": 0}, rep)
    (row,) = [x for x in strict if x["key"] == "max_alerts"]
    assert row["verdict"] == "fail" and row["actual"] == 1


CALENDAR = ROOT / "scenarios" / "cu_calendar_spread.toml"


def test_a_pair_in_one_currency_has_no_fx_rate_and_says_so_when_one_is_half_given(tmp_path):
    """cu_calendar_spread prices both legs in CNY/t with no FX instrument: its fair values quote no
    rate. [prices.fx] and the strategy's fx go together: either without the other is refused, naming
    the key; so is a price jump aimed at a rate the pair does not have."""
    sc = scenario.load(CALENDAR)
    assert sc.engine.strategy.fx == "" and sc.prices.fx == ""
    fair = PriceProcess(sc.prices, random.Random(1)).fair()
    assert set(fair) == {"CU03", "CU04"} and fair["CU03"] == fair["CU04"]  # no premium, spread at its mean
    with_fx = CALENDAR.read_text().replace(
        "[prices]\n", '[prices]\nfx = { instrument = "CU04", start = 7.1, vol_bp = 0.5 }\n'
    )
    with pytest.raises(ConfigError) as err:
        scenario.load(write(tmp_path, "with_fx.toml", with_fx))
    assert "prices.fx" in str(err.value) and "the strategy has no fx" in str(err.value)
    jump = CALENDAR.read_text() + '\n[[faults]]\nkind = "price_jump"\ntarget = "fx"\nafter_s = 10\njump_bp = 20\n'
    with pytest.raises(ConfigError) as err:
        scenario.load(write(tmp_path, "jump.toml", jump))
    assert "faults[0].target" in str(err.value) and "no FX rate" in str(err.value)


def test_prices_without_their_fx_table_are_refused_when_the_strategy_converts(tmp_path):
    base = BASE.read_text()
    start = base.index("fx = { instrument")
    no_fx = base[:start] + base[base.index("\n", start) + 1 :]
    with pytest.raises(ConfigError) as err:
        scenario.load(write(tmp_path, "no_fx.toml", no_fx))
    assert "prices.fx" in str(err.value) and "converts leg B's currency through USDCNY" in str(err.value)
    other = base.replace('fx = { instrument = "USDCNY"', 'fx = { instrument = "CU"')
    with pytest.raises(ConfigError) as err:
        scenario.load(write(tmp_path, "other_fx.toml", other))
    assert "prices.fx.instrument" in str(err.value) and "through 'USDCNY'" in str(err.value)


def test_a_price_limit_lock_needs_a_venue_with_a_daily_limit(tmp_path):
    """A locked market sits at the venue's daily limit: at a venue without one (price_band_pct 100, the
    default) the limit-down price would be 0 and limit-up twice the reference, and fills came at
    LastPx 0. Such a lock is refused, naming the fault and the fix; with a band it loads."""
    lock = '\n[[faults]]\nkind = "price_limit_lock"\nvenue = "COMEX"\nafter_s = 4\nuntil_s = 5\nside = "sell"\n'
    with pytest.raises(ConfigError) as err:
        scenario.load(write(tmp_path, "lock.toml", BASE.read_text() + lock))
    text = str(err.value)
    assert "faults[0].venue" in text and "no daily price limit" in text and "price_band_pct" in text
    banded = BASE.read_text().replace("[venues.COMEX]\n", "[venues.COMEX]\nprice_band_pct = 3.0\n", 1) + lock
    assert scenario.load(write(tmp_path, "banded.toml", banded)).faults[0].venue == "COMEX"


def _row(expect: dict, rep: dict, key: str) -> tuple | None:
    """(expected, actual, verdict) of the expectation `key` evaluated on `rep`; None when not judged."""
    rows = [x for x in runner.evaluate(expect, rep) if x["key"] == key]
    assert len(rows) <= 1, rows
    return (rows[0]["expected"], rows[0]["actual"], rows[0]["verdict"]) if rows else None


def _judged(outcomes=("BALANCED", "BALANCED", "ESCALATED", "UNWOUND"), **changes) -> dict:
    """A report with a value for every expectation to read: changes replace top-level keys."""
    rep = fake_report(list(outcomes), legged_ms=[100.0, 900.0])
    rep["counters"] = {"orders_sent": 7, "alerts": 1}
    rep["anomalies"] = {"count": 2, "by_kind": {"late_fill": 2}}
    rep["timings"] = {"signal_to_acks_ms": {"p99": 10.0}}
    rep["recovery"] = {
        "legged": 2,
        "repaired_in_budget": {"rate": 0.5},
        "reorder_success": {"rate": 0.5},
        "rollback_success": {"rate": 0.75},
    }
    rep.update(changes)
    return rep


@pytest.mark.parametrize(
    ("key", "bound", "actual", "past"),
    [  # each bound met exactly passes, and the next value past it fails naming what the run had
        ("min_episodes", 4, 4, 5),
        ("max_p99_signal_to_acks_ms", 10.0, 10.0, 9.999),
        ("max_orders_sent", 7, 7, 6),
        ("max_anomalies", 2, 2, 1),
        ("max_alerts", 1, 1, 0),
        ("min_legged", 2, 2, 3),
        ("min_recovery_success", 0.5, 0.5, 0.501),
        ("min_reorder_success", 0.5, 0.5, 0.501),
        ("min_rollback_success", 0.75, 0.75, 0.751),
        ("max_legged_ms", 900.0, 900.0, 899.9),
    ],
)
def test_each_bound_passes_when_met_exactly_and_fails_one_past_it(key, bound, actual, past):
    rep = _judged()
    assert _row({key: bound}, rep, key) == (bound, actual, "pass")
    assert _row({key: past}, rep, key) == (past, actual, "fail")
    assert _row({}, rep, key) is None  # not asked for: not judged


@pytest.mark.parametrize(
    ("key", "changes"),
    [
        ("max_p99_signal_to_acks_ms", {"timings": {"signal_to_acks_ms": {"p99": None}}}),
        ("min_recovery_success", {"recovery": {"legged": 0, "repaired_in_budget": {"rate": None}}}),
        ("min_reorder_success", {"recovery": {"legged": 0, "reorder_success": {"rate": None}}}),
        ("min_rollback_success", {"recovery": {"legged": 0, "rollback_success": {"rate": None}}}),
    ],
)
def test_a_figure_the_run_never_measured_fails_its_expectation(key, changes):
    """No acknowledged episode, or no legged one: nothing shows the figure was met."""
    assert _row({key: 0.0}, _judged(**changes), key) == (0.0, None, "fail")


def test_outcome_counts_are_judged_per_outcome_at_their_bounds():
    rep = _judged()  # 2 BALANCED, 1 ESCALATED, 1 UNWOUND
    expect = {
        "outcomes_at_least": {"BALANCED": 2, "UNWOUND": 2, "ABORTED": 0, "NEW": 1},
        "outcomes_at_most": {"ESCALATED": 1, "BALANCED": 1, "ABORTED": 0},
    }
    rows = {x["key"]: (x["expected"], x["actual"], x["verdict"]) for x in runner.evaluate(expect, rep)}
    assert {k: v for k, v in rows.items() if k.startswith("outcomes_")} == {
        "outcomes_at_least.BALANCED": (2, 2, "pass"),
        "outcomes_at_least.UNWOUND": (2, 1, "fail"),
        "outcomes_at_least.ABORTED": (0, 0, "pass"),
        "outcomes_at_least.NEW": (1, 0, "fail"),  # an outcome no episode had counts none
        "outcomes_at_most.ESCALATED": (1, 1, "pass"),
        "outcomes_at_most.BALANCED": (1, 2, "fail"),
        "outcomes_at_most.ABORTED": (0, 0, "pass"),
    }


@pytest.mark.parametrize("open_state", ["NEW", "WORKING", "LEGGED"])
def test_all_terminal_counts_every_open_episode(open_state):
    assert _row({"all_terminal": True}, _judged(), "all_terminal") == (0, 0, "pass")
    rep = _judged(outcomes=("BALANCED", open_state, open_state))
    assert _row({"all_terminal": True}, rep, "all_terminal") == (0, 2, "fail")
    assert _row({"all_terminal": False}, rep, "all_terminal") is None


def test_anomaly_kinds_are_judged_at_their_bounds_and_an_absent_kind_counts_zero():
    rep = _judged()  # late_fill x 2
    expect = {"anomalies_at_least": {"late_fill": 2, "overfill": 0}, "anomalies_at_most": {"late_fill": 2}}
    assert _row(expect, rep, "anomalies_at_least.late_fill") == (2, 2, "pass")
    assert _row(expect, rep, "anomalies_at_least.overfill") == (0, 0, "pass")
    assert _row(expect, rep, "anomalies_at_most.late_fill") == (2, 2, "pass")
    expect = {"anomalies_at_least": {"late_fill": 3, "overfill": 1}, "anomalies_at_most": {"late_fill": 1}}
    assert _row(expect, rep, "anomalies_at_least.late_fill") == (3, 2, "fail")
    assert _row(expect, rep, "anomalies_at_least.overfill") == (1, 0, "fail")
    assert _row(expect, rep, "anomalies_at_most.late_fill") == (1, 2, "fail")
    assert _row({"anomalies_at_most": {"overfill": 0}}, rep, "anomalies_at_most.overfill") == (0, 0, "pass")
    # either kind of bound alone reads the counts
    assert _row({"anomalies_at_most": {"late_fill": 1}}, rep, "anomalies_at_most.late_fill") == (1, 2, "fail")
    assert _row({"anomalies_at_least": {"late_fill": 2}}, rep, "anomalies_at_least.late_fill") == (2, 2, "pass")


def test_invariants_hold_names_the_first_violated_invariant_and_can_be_waived():
    rep = _judged()
    assert _row({}, rep, "invariants_hold") == ("no violation", "none", "pass")
    rep["invariants"] = {
        "1": {"name": "legged time bounded", "status": "pass"},
        "3": {"name": "outcome matches fills", "status": "fail", "first": {"detail": "D1 short"}},
        "7": {"name": "no lost fills", "status": "fail", "first": {"detail": "D2"}},
    }
    assert _row({}, rep, "invariants_hold") == (
        "no violation",
        "#3 outcome matches fills: {'detail': 'D1 short'}",
        "fail",
    )
    assert _row({"invariants_hold": False}, rep, "invariants_hold") is None


def test_coverage_paths_are_each_reached_or_not():
    rep = _judged(coverage=["partial_fill", "late_ack"])
    expect = {"coverage": ["late_ack", "session_down"]}
    assert _row(expect, rep, "coverage.late_ack") == ("reached", "reached", "pass")
    assert _row(expect, rep, "coverage.session_down") == ("reached", "not reached", "fail")


def test_outcome_shares_at_their_bounds_rounded_and_none_without_episodes():
    rep = _judged(outcomes=("BALANCED", "UNWOUND", "UNWOUND"))  # a third BALANCED
    assert _row({"outcome_share_at_least": {"BALANCED": 1 / 3}}, rep, "outcome_share_at_least.BALANCED") == (
        1 / 3,
        0.333333,
        "pass",
    )
    assert _row({"outcome_share_at_least": {"BALANCED": 0.34}}, rep, "outcome_share_at_least.BALANCED")[2] == "fail"
    assert _row({"outcome_share_at_most": {"UNWOUND": 2 / 3}}, rep, "outcome_share_at_most.UNWOUND") == (
        2 / 3,
        0.666667,
        "pass",
    )
    assert _row({"outcome_share_at_most": {"UNWOUND": 0.66}}, rep, "outcome_share_at_most.UNWOUND")[2] == "fail"
    assert _row({"outcome_share_at_most": {"ABORTED": 0.0}}, rep, "outcome_share_at_most.ABORTED") == (0.0, 0.0, "pass")
    empty = _judged(outcomes=())
    for key in ("outcome_share_at_least", "outcome_share_at_most"):
        assert _row({key: {"BALANCED": 0.0}}, empty, f"{key}.BALANCED") == (0.0, None, "fail")


def test_the_worst_legged_time_counts_an_unrepaired_legging_as_endless():
    rep = _judged()
    rep["episodes"][2]["recovery"] = {"legged_ms": None}  # legged, never repaired
    assert _row({"max_legged_ms": 1e9}, rep, "max_legged_ms") == (1e9, math.inf, "fail")
    none_legged = _judged(outcomes=("BALANCED",))
    none_legged["episodes"][0]["recovery"] = None
    assert _row({"max_legged_ms": 0.0}, none_legged, "max_legged_ms") == (0.0, 0.0, "pass")


def test_leg_lots_names_how_many_episodes_differ_and_the_first():
    rep = _judged()
    assert _row({"leg_lots": [5, 2]}, rep, "leg_lots") == ([5, 2], "every episode", "pass")
    rep["episodes"][1]["legs"]["B"]["target"] = 3
    rep["episodes"][3]["legs"]["A"]["target"] = 4
    assert _row({"leg_lots": [5, 2]}, rep, "leg_lots") == ([5, 2], "2 episode(s) differ, first E1-000001", "fail")


def test_the_residual_bound_reads_balanced_episodes_only_by_size():
    rep = _judged()  # every residual 2.32 t
    rep["episodes"][0]["residual_t"] = -2.5  # BALANCED, short the other way
    rep["episodes"][3]["residual_t"] = 9.0  # UNWOUND: not a balanced residual
    assert _row({"max_residual_t": 2.5}, rep, "max_residual_t") == (2.5, 2.5, "pass")
    assert _row({"max_residual_t": 2.49}, rep, "max_residual_t") == (2.49, 2.5, "fail")
    assert _row({"max_residual_t": 0.0}, _judged(outcomes=("UNWOUND",)), "max_residual_t") == (0.0, 0.0, "pass")


def _window(index, kind, after, until, hits=1, orders="any", **extra):
    return {"index": index, "kind": kind, "venue": "COMEX", "orders": orders, "after_s": after, "until_s": until,
            "hits": hits, **extra}  # fmt: skip


def test_no_episode_windows_hold_from_their_start_up_to_their_end():
    rep = _judged()  # signals at t = 0, 1, 2, 3
    rep["fault_windows"] = [
        _window(0, "disconnect", 1.0, 2.0),  # holds the signal at 1, not the one at 2
        _window(1, "md_stale", 2.5, None),  # open-ended: to the end of the run
        _window(2, "kill_switch", 0.5, 0.6),  # the kill switch holds from its time on
        _window(3, "md_gap", 0.0, 9.0),  # not named by the expectation
    ]
    expect = {"no_episode_during": ["disconnect", "md_stale", "kill_switch"], "faults_reach_paths": False}
    rows = {x["key"]: (x["expected"], x["actual"], x["verdict"]) for x in runner.evaluate(expect, rep)}
    assert {k: v for k, v in rows.items() if k.startswith("no_episode")} == {
        "no_episode_during.disconnect fault 0": (0, 1, "fail"),
        "no_episode_during.md_stale fault 1": (0, 1, "fail"),
        "no_episode_during.kill_switch fault 2": (0, 3, "fail"),
    }
    rows = {x["key"]: x["actual"] for x in runner.evaluate({"no_episode_between": [[0, 2], [2, 2.5], [4, 5]]}, rep)}
    assert {k: v for k, v in rows.items() if k.startswith("no_episode")} == {
        "no_episode_during.window 0-2 s": 2,
        "no_episode_during.window 2-2.5 s": 1,
        "no_episode_during.window 4-5 s": 0,
    }


def test_a_report_without_fault_windows_is_judged_without_them():
    """A report that carries no fault windows (none were scheduled) is judged on everything else."""
    rep = _judged()
    del rep["fault_windows"]
    keys = [x["key"] for x in runner.evaluate({"no_episode_during": ["disconnect"], "min_episodes": 1}, rep)]
    assert keys == ["min_episodes", "invariants_hold", "fills_match_positions"]


@pytest.mark.parametrize(
    ("window", "paths"),
    [
        (_window(0, "reject", 0, None, orders="entry"), "reject_entry"),
        (_window(0, "reject", 0, None, orders="chase"), "reject_during_chase"),
        (_window(0, "reject", 0, None, orders="recovery"), "reject_during_chase"),
        (_window(0, "reject", 0, None, orders="any"), "reject_entry or reject_during_chase"),
        (_window(0, "no_ack", 0, None), "timeout_cancel or status_query"),
        (_window(0, "crash_restart", 0, None, journal_damage="torn_tail"), "journal_refused"),
    ],
)
def test_a_fault_that_fired_must_reach_one_of_its_paths(window, paths):
    key = f"faults_reach_paths.0:{window['kind']}"
    first = paths.split(" or ")[-1]
    reached = _judged(coverage=[first], fault_windows=[window])
    assert _row({}, reached, key) == (paths, "reached", "pass")
    missed = _judged(coverage=["something_else"], fault_windows=[{**window, "hits": 2}])
    assert _row({}, missed, key) == (paths, "fired 2 time(s), path not reached", "fail")
    assert _row({}, _judged(coverage=[], fault_windows=[{**window, "hits": 0}]), key) is None  # never fired
    assert _row({"faults_reach_paths": False}, missed, key) is None


def test_a_fault_kind_with_no_path_of_its_own_is_not_judged_by_its_paths():
    rep = _judged(coverage=[], fault_windows=[_window(0, "clock_offset", 0, None, hits=3)])
    assert not [x for x in runner.evaluate({}, rep) if x["key"].startswith("faults_reach_paths")]


def test_every_fault_that_fired_is_judged_after_one_that_did_not():
    windows = [_window(0, "late_ack", 0, None, hits=0), _window(1, "clock_offset", 0, None, hits=2)]
    windows.append(_window(2, "partial_fill", 0, None, hits=1))
    rows = [x["key"] for x in runner.evaluate({}, _judged(coverage=[], fault_windows=windows))]
    assert [k for k in rows if k.startswith("faults_reach_paths")] == ["faults_reach_paths.2:partial_fill"]


def test_fills_that_disagree_with_positions_fail_unless_waived():
    rep = _judged(fills_match_positions=False)
    assert _row({}, rep, "fills_match_positions") == (True, False, "fail")
    assert _row({}, _judged(), "fills_match_positions") == (True, True, "pass")
    assert _row({"fills_match_positions": False}, rep, "fills_match_positions") is None
