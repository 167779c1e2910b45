"""The certification library catches defects planted in the engine core (tests/helpers/planted.py):
each scenario named here fails while its defect is planted and passes without it. The scenarios were
written for issue 10; the defects are the bugs they exist to keep out."""

from __future__ import annotations

import pytest

from simulator import runner, scenario
from tests.conftest import ROOT
from tests.helpers.planted import DEFECTS

pytestmark = pytest.mark.slow

CAUGHT_BY = {
    "escalate_on_refused_chase": ("f32_chase_refused_unwinds", 1, {"outcome_share_at_most.ESCALATED"}),
    "buy_priced_from_bid": ("f33_far_leg_locks_limit_up", 1, {"invariants_hold"}),
    "resend_fenced_orders": ("f34_failover_fenced_resend", 1, {"invariants_hold"}),
    "chase_away_from_market": ("f04_partial_fill_ioc", 1, {"min_reorder_success"}),
    "recovery_skips_risk": ("f32_chase_refused_unwinds", 1, {"coverage.risk_refused_recovery"}),
    "overfill_left_open": ("f67_late_fill_overfill_hedge", 1, {"invariants_hold", "coverage.overfill_hedge"}),
    "resume_over_working_order": ("f73_reconnect_while_a_chase_rests", 1, {"invariants_hold"}),
    "status_fill_ignores_earlier_fills": ("f74_rest_fills_while_disconnected", 1, {"invariants_hold"}),
    "foreign_fill_unflagged": ("f75_failover_foreign_orders_already_filled", 1, {"invariants_hold"}),
}


def test_every_planted_defect_has_a_scenario():
    assert set(CAUGHT_BY) == set(DEFECTS)


@pytest.mark.parametrize("defect", sorted(CAUGHT_BY))
def test_the_library_catches_the_planted_defect(defect):
    name, seed, failing = CAUGHT_BY[defect]
    sc = scenario.load(ROOT / "scenarios" / f"{name}.toml")
    assert runner.run(sc, seed).report["verdict"] == "pass"
    with DEFECTS[defect]():
        rep = runner.run(sc, seed).report
    failed = {x["key"] for x in rep["expectations"] if x["verdict"] != "pass"}
    assert rep["verdict"] == "fail" and failing <= failed, failed
    assert rep["replay"].startswith(f"xmc run {sc.path} --seed {seed}")


def test_a_fenced_epoch_resend_is_named_on_the_wire():
    sc = scenario.load(ROOT / "scenarios" / "f34_failover_fenced_resend.toml")
    with DEFECTS["resend_fenced_orders"]():
        rep = runner.run(sc, 1).report
    w5 = rep["invariants"]["W5"]
    assert w5["status"] == "fail"
    first = w5["first"]
    assert first["venue"] == "COMEX" and first["seq"] > 0 and first["cl_ord_id"].startswith("E1-")
    assert "PossDup" in first["detail"] and "epoch 2" in first["detail"]
