"""What the core takes from an execution report beyond the order's own state: the episode's stage
times (each the first of its kind), its fills, the audit rows, the reject it remembers, and the amend
timer a fill may arm."""

from __future__ import annotations

import dataclasses

import pytest

from engine.core.engine_core import EngineCore
from engine.core.events import Audit, SendOrder, SetTimer
from tests.conftest import fire, report


def core_with(spread_scenario, **execution) -> EngineCore:
    cfg = spread_scenario.engine
    ex = dataclasses.replace(cfg.strategy.execution, **execution)
    return EngineCore(dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, execution=ex)))


def entries(core: EngineCore) -> tuple[SendOrder, SendOrder]:
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    return a, b


def test_stage_times_are_the_first_of_their_kind_and_a_fill_acknowledges(spread_scenario):
    core = core_with(spread_scenario, mode="limit", order_timeout=30.0)
    a, b = entries(core)
    ep = core.episodes[a.decision_id]
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    core.handle(report(b, "b0x", "0", "0", 0), 0.02)  # a second acknowledgement
    core.handle(report(b, "b1", "F", "1", 1, 1, 4.5), 0.03)
    core.handle(report(b, "b2", "F", "2", 2, 1, 4.501), 0.04)
    assert (ep.stages["ack_B"], ep.stages["fill_B"]) == (0.01, 0.03)
    assert ep.fills == [(0.03, "B", 1, 4.5), (0.04, "B", 1, 4.501)]
    core.handle(report(a, "a1", "F", "1", 2, 2, 70000.0), 0.05)  # A's first word is a fill
    assert ep.stages["ack_A"] == 0.05 == ep.stages["fill_A"]


def test_a_duplicate_report_is_an_anomaly_and_no_second_audit_row(spread_scenario):
    core = core_with(spread_scenario)
    a, b = entries(core)
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    acts = core.handle(report(b, "b0", "0", "0", 0), 0.02)
    assert not [x for x in acts if isinstance(x, Audit)]
    (anomaly,) = [x for x in acts if type(x).__name__ == "Anomaly"]
    assert anomaly.kind == "duplicate_exec_id" and anomaly.data == {"exec_id": "b0"}  # the report it names


def test_a_reject_the_order_table_refuses_is_not_remembered_as_the_episodes_reject(spread_scenario):
    """A reject report for an order already filled is an anomaly; recovery must not read its reason."""
    core = core_with(spread_scenario, mode="limit", order_timeout=30.0)
    a, b = entries(core)
    core.handle(report(b, "b1", "F", "2", 2, 2, 4.5), 0.01)
    core.handle(report(b, "b8", "8", "8", 2, reason=99), 0.02)
    assert core.episodes[b.decision_id].last_reject is None


def test_the_fill_that_ends_an_episode_arms_no_amend(spread_scenario):
    core = core_with(spread_scenario, mode="limit", amend_after=0.15, max_amends=2, order_timeout=30.0)
    a, b = entries(core)
    core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.01)
    acts = core.handle(report(b, "b1", "F", "2", b.qty, b.qty, b.price), 0.02)
    assert core.episodes[a.decision_id].terminal
    assert not [t for t in acts if isinstance(t, SetTimer) and t.key.startswith("amend:")]


@pytest.mark.parametrize(
    "exec_type,status,stage",
    [("0", "0", "ack"), ("4", "4", "canceled"), ("8", "8", "rejected"), ("C", "C", "expired"), ("6", "6", "report")],
)
def test_each_kind_of_report_has_its_own_audit_row(spread_scenario, exec_type, status, stage):
    """An answer that fills nothing is one audit row, named by its ExecType (any other kind: "report"),
    at the order's leaves and price, saying the order's state (and a reject's reason and text)."""
    core = core_with(spread_scenario, mode="limit", order_timeout=30.0)
    a, b = entries(core)
    if exec_type != "0":
        core.handle(report(b, "b0", "0", "0", 0), 0.01)
    r = dataclasses.replace(report(b, "bx", exec_type, status, 0, reason=5 if exec_type == "8" else None), text="why")
    acts = core.handle(r, 0.02)
    order = core.orders[b.cl_ord_id]
    (row,) = [x for x in acts if isinstance(x, Audit) and x.cl_ord_id == b.cl_ord_id]
    assert (row.stage, row.qty, row.price) == (stage, order.leaves_qty, b.price)
    assert row.detail == order.state.name + (" reason=5 why" if exec_type == "8" else "")


@pytest.mark.parametrize("mode,amend_after,fill", [("limit", 0.15, False), ("limit", 0.0, True), ("ioc", 0.0, True)])
def test_only_a_fill_arms_the_amend_and_only_when_amending_is_on(spread_scenario, mode, amend_after, fill):
    """Amending (limit mode, amend_after_ms > 0) arms when a leg fills and the other lags: not on an
    acknowledgement, and never with amend_after 0 (the setting that turns it off)."""
    core = core_with(spread_scenario, mode=mode, amend_after=amend_after, max_amends=2, order_timeout=30.0)
    a, b = entries(core)
    acts = core.handle(report(b, "b0", "0", "0", 0), 0.01)
    acts += core.handle(report(a, "a0", "0", "0", 0), 0.01)
    if fill:
        acts += core.handle(report(a, "a1", "F", "1", 1, 1, a.price), 0.02)
    assert not core.episodes[a.decision_id].terminal
    assert not [t for t in acts if isinstance(t, SetTimer) and t.key.startswith("amend:")]
