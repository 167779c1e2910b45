"""The oracle of the mutation run (scripts/mutate): the certification library itself, as CI runs it.

A scenario here must hold its expectations and every safety invariant (engine and wire level) at
seed 1 and full virtual duration, and must not regress against the committed baseline
(baselines/library.json, seed 1) in any recovery timing or success share the regression gate
watches (simulator/baseline.py: a slower re-order or failover fails the build; a mere change of
fills is not counted). A mutant of the engine core that passes all that survived the library. To finish on 2 cores in about half an hour the default oracle is the part of the
library that exercises the modules under mutation (recovery, risk, reconciliation: legging,
rejects, partial fills, disconnects, restarts, failovers, one-sided books) and the base
scenarios whose expectations pin quantities and shares; XMC_ORACLE=all uses every bundled scenario.
pytest runs a mutant's scenarios in this order (mutation/conftest.py; mutmut hands them over as a set)
and stops at the first failure (-x), so most mutants die in seconds.
Not part of the default test run (pytest collects tests/ only).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulator import baseline, runner, scenario

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "scenarios"
BASELINE = baseline.load(ROOT / "baselines" / "library.json")
SEED = 1  # a seed every scenario of the baseline has
# the targeted scenarios first, the newest (each added to kill a mutant no other did) leading, then
# the older broad ones, then the last-resort ones: every mutant's tests run in this order (conftest.py). A mutant of a function
# every scenario calls dies at the first scenario that legs or reconnects, and one only a rare path
# tells apart meets that path early; on a sample of 12 killed mutants of the last run the first
# killer stood at place 9.2 on average in this order, 15.6 in the families-first one
SELECTED = (
    "f63_two_episodes_wait_for_one_reconciliation@2",
    "f81_late_fill_seen_only_in_mass_status",
    "f80_reconnect_after_a_restart_asks_only_what_was_working",
    "f79_late_answers_of_an_earlier_logon",
    "f78_position_answer_overtakes_the_order_answers",
    "f77_no_status_picture_no_false_alarm",
    "f76_failover_adopts_a_chase_seen_only_in_mass_status",
    "f75_failover_foreign_orders_already_filled",
    "f74_rest_fills_while_disconnected",
    "f73_reconnect_while_a_chase_rests",
    "f72_no_mass_status_positions_still_compared",
    "f71_desk_trade_seen_in_comex_position_reports",
    "f69_unwind_rejected_until_attempts_run_out",
    "f68_late_fill_overfill_recorded",
    "f67_late_fill_overfill_hedge",
    "f66_risk_price_band_at_its_edge",
    "f65_chase_slippage_at_its_limit",
    "f64_failover_foreign_order_untouched",
    "f63_two_episodes_wait_for_one_reconciliation",
    "f62_risk_position_counts_orders_in_flight",
    "f61_risk_notional_refuses_the_far_leg",
    "f60_one_sided_thin_far_book",
    "f59_near_leg_rejected_until_chase_attempts_run_out",
    "f58_daily_order_limit_refuses_the_chase",
    "f57_thin_far_book_chase_pays_for_liquidity",
    "f50_desk_trade_position_mismatch_holds_venue",
    "f49_reject_fatal_near_leg_unwinds_one_far_lot",
    "f48_kill_switch_while_a_leg_rests",
    "f47_failover_foreign_order_still_working",
    "f26_failover_primary_pause_split_brain",
    "f27_failover_replication_cut_then_crash",
    "f34_failover_fenced_resend",
    "f38_crash_between_legs",
    "f20_disconnect_during_unwind",
    "f09_no_ack_timeout",
    "f06_partial_fill_rest_working",
    "f18_partial_while_other_rejected",
    "f19_reject_during_chase",
    "f33_far_leg_locks_limit_up",
    "f32_chase_refused_unwinds",
    "f02_reject_price_band_fix",
    "f45_risk_orders_per_day_run_out",
    "f44_risk_price_band_refuses_entries",
    "f43_risk_notional_refuses_the_larger_leg",
    "f42_risk_order_size_refuses_entries",
    "f51_failover_adopts_a_working_chase",
    "f70_second_drop_during_reconciliation",
    "f46_disconnect_reports_lost",
    "f04_partial_fill_ioc",
    "f01_reject_far_leg_retry",
    "f25_failover_primary_crash_mid_chase",
    "f41_risk_limits_at_their_edges",
    "f12_disconnect_cancel_on_disconnect",
    "f03_reject_fatal_unwind",
    "f24_engine_crash_restart",
    "cu_hg_risk_limits",
    "cu_hg_spread",
    "cu_hg_round_up",
    # last: scenarios that kill only what survives everything above (one mutant each), so that they
    # cost time only for the survivors instead of for every mutant that reaches them (~1 s each)
    "f82_risk_position_counts_only_its_own_instrument",
    "f83_failover_positions_wait_for_every_foreign_line",
    "cu_hg_round_down",
    "cu_hg_round_down_exact",
    "cu_hg_round_up_exact",
    "f84_partial_leaves_one_lot_short",
    "cu_hg_limit_amend_partial",
    "f10_duplicate_reports",
    "f36_fill_before_ack",
    "cu_hg_counter_price",
    "cu_hg_counter_price_premium",
    "cu_hg_counter_price_discount",
    "cu_hg_spread_offset",
    "cu_hg_ratio",
    "f14_stale_market_data",
    "cu_hg_spread_opens_past_threshold",
    "f85_fx_feed_stops",
    "cu_calendar_spread",
    "cu_calendar_spread@3",
)
# "name@N": that scenario at seed N as well (a seed of the baseline), where seed 1 misses a path
# another seed reaches (f63 at seed 2 resumes two legged episodes with one reconciliation)
if os.environ.get("XMC_ORACLE") == "all":
    SCENARIOS = [(path, SEED) for path in sorted(LIBRARY.glob("*.toml"))]
else:
    SCENARIOS = [
        (LIBRARY / f"{name}.toml", int(seed or SEED)) for name, _, seed in (entry.partition("@") for entry in SELECTED)
    ]


@pytest.mark.parametrize("path,seed", SCENARIOS, ids=[f"{p.stem}@{s}" for p, s in SCENARIOS])
def test_the_library_holds(path, seed):
    rep = runner.run(scenario.load(path), seed).report
    failed = [
        f"{x['key']}: expected {x['expected']}, got {x['actual']}"
        for x in rep["expectations"]
        if x["verdict"] != "pass"
    ]
    assert not failed, f"{rep['replay']}: {failed}"
    comparison = baseline.compare(BASELINE, [rep], BASELINE["calibration_s"], accept_changes=True)
    slower = [
        f"{r.metric}: {r.baseline} -> {r.now} ({r.change})"
        for r in comparison.rows
        if r.verdict == "regressed" and not r.metric.startswith("wall.")
    ]
    # a timing the baseline measured that this run no longer reports (its stage never recorded) is
    # lost from every report and gate: as much a regression as a slower one
    recorded = BASELINE["scenarios"][rep["scenario"]]["seeds"][str(seed)]["metrics"]
    now = baseline.run_record(rep)["metrics"]
    slower += [
        f"{name}: {recorded[name]} -> not measured"
        for name in recorded
        if recorded[name] is not None and now.get(name) is None
    ]
    assert not slower, f"{rep['replay']}: regressed against the baseline: {slower}"
