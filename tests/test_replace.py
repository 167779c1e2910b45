"""OrderCancelReplaceRequest (G) end to end: the core amends a lagging resting leg toward the market,
follows the order through Replaced (ExecType 5) under its new ClOrdID, survives a refused replace
(OrderCancelReject 434=2) and a fill that wins the race; the venue serves G, also in certification."""

from __future__ import annotations

import dataclasses

import pytest

from engine.config import ConfigError
from engine.core.engine_core import EngineCore
from engine.core.episode import EpisodeState
from engine.core.events import (
    Anomaly,
    Audit,
    BusinessReject,
    CancelReject,
    ExecReport,
    SendCancel,
    SendOrder,
    SendReplace,
    SendStatusRequest,
    SetTimer,
    TimerFired,
)
from engine.core.order import OrdStatus
from simulator import runner, scenario
from tests.conftest import ROOT, fire, report
from tests.test_core import stages
from tests.test_fix import _cert_venue


@pytest.fixture()
def amend_config(spread_scenario):
    cfg = spread_scenario.engine
    ex = dataclasses.replace(
        cfg.strategy.execution, mode="limit", amend_after=0.15, amend_step_ticks=1, max_amends=2, order_timeout=0.8
    )
    return dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, execution=ex))


def _leg_a_fills_b_rests(core):
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    core.handle(report(a, "a0", "0", "0", 0), 0.01)
    core.handle(report(b, "b0", "0", "0", 0), 0.01)
    acts = core.handle(report(a, "a1", "F", "2", a.qty, a.qty, a.price), 0.05)
    return a, b, acts


def _replaced(b: SendOrder, g: SendReplace, exec_id: str, cum: float = 0.0) -> ExecReport:
    return ExecReport(
        b.venue,
        g.cl_ord_id,
        g.orig_cl_ord_id,
        "O2",
        exec_id,
        "5",
        "1" if cum else "0",
        b.instrument,
        b.side,
        b.qty,
        cum,
        b.qty - cum,
        0.0,
        0.0,
        0.0,
    )


def test_a_lagging_resting_leg_is_amended_toward_the_market_and_completes(amend_config):
    core = EngineCore(amend_config)
    a, b, acts = _leg_a_fills_b_rests(core)
    assert [t for t in acts if isinstance(t, SetTimer) and t.key.startswith("amend:")][0].at == pytest.approx(0.2)
    (g,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2) if isinstance(x, SendReplace)]
    order = core.orders[b.cl_ord_id]
    assert g.orig_cl_ord_id == b.cl_ord_id and g.cl_ord_id == f"{b.cl_ord_id}M1" and g.qty == b.qty
    assert g.price > b.price and order.state is OrdStatus.PENDING_REPLACE  # buy leg: a higher bid
    core.handle(_replaced(b, g, "b5"), 0.21)
    assert order.state is OrdStatus.NEW and order.cl_ord_id == g.cl_ord_id and order.price == g.price
    # the second amend replaces the new ClOrdID, one tick further
    (g2,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.35) if isinstance(x, SendReplace)]
    assert g2.orig_cl_ord_id == g.cl_ord_id and g2.cl_ord_id == f"{b.cl_ord_id}M2" and g2.price > g.price
    core.handle(_replaced(b, g2, "b6"), 0.36)
    fill = ExecReport(
        b.venue,
        g2.cl_ord_id,
        "",
        "O2",
        "b7",
        "F",
        "2",
        b.instrument,
        b.side,
        b.qty,
        b.qty,
        0.0,
        b.qty,
        g2.price,
        g2.price,
    )
    acts = core.handle(fill, 0.4)
    ep = core.episodes[a.decision_id]
    assert ep.state is EpisodeState.BALANCED and core.positions["HG"] == b.qty and ep.legs["B"].filled == b.qty
    assert not [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.5) if isinstance(x, SendReplace)]


def test_the_answer_timer_of_an_answered_replace_asks_nothing_while_a_later_replace_is_open(amend_config):
    """Each replace has its answer timer; the first replace's, firing once it was answered and while
    the second is open, is about a request already answered: no status question (it would hold the
    venue a round trip for nothing). The open one's timer asks, naming the order as last confirmed."""
    core = EngineCore(amend_config)
    a, b, _ = _leg_a_fills_b_rests(core)
    (g,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2) if isinstance(x, SendReplace)]
    core.handle(_replaced(b, g, "b5"), 0.21)
    (g2,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.35) if isinstance(x, SendReplace)]
    timeout = amend_config.strategy.execution.answer_timeout
    stale = core.handle(TimerFired(f"answer:{g.cl_ord_id}"), 0.2 + timeout)
    assert not [x for x in stale if isinstance(x, SendStatusRequest)] and core.venue_ready("COMEX")
    asked = core.handle(TimerFired(f"answer:{g2.cl_ord_id}"), 0.35 + timeout)
    # the question names the order as the venue last confirmed it: the first replace's ClOrdID
    assert [x.cl_ord_id for x in asked if isinstance(x, SendStatusRequest)] == [g.cl_ord_id]


def test_a_status_answer_under_the_replaced_clordid_answers_the_question_asked_under_the_old_one(amend_config):
    """The replace went unanswered, so the order's status was asked under the ClOrdID the venue had
    last confirmed; the Replaced then came, and the venue answers the question under the new ClOrdID:
    it answers that question, and the venue is ready again (not held until the STATUS timer)."""
    core = EngineCore(amend_config)
    a, b, _ = _leg_a_fills_b_rests(core)
    (g,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2) if isinstance(x, SendReplace)]
    timeout = amend_config.strategy.execution.answer_timeout
    asked = core.handle(TimerFired(f"answer:{g.cl_ord_id}"), 0.2 + timeout)
    assert [x.cl_ord_id for x in asked if isinstance(x, SendStatusRequest)] == [b.cl_ord_id]
    core.handle(_replaced(b, g, "b5"), 0.21 + timeout)
    assert not core.venue_ready("COMEX")
    answer = dataclasses.replace(_replaced(b, g, "b6"), exec_type="I", ord_status="0")
    core.handle(answer, 0.22 + timeout)
    assert core.venue_ready("COMEX") and core.orders[b.cl_ord_id].cl_ord_id == g.cl_ord_id


def test_a_refused_replace_leaves_the_order_working_and_a_fill_that_won_the_race_counts(amend_config):
    core = EngineCore(amend_config)
    a, b, _ = _leg_a_fills_b_rests(core)
    (g,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2) if isinstance(x, SendReplace)]
    order = core.orders[b.cl_ord_id]
    acts = core.handle(CancelReject("COMEX", g.cl_ord_id, b.cl_ord_id, "0", 99, "replace refused", "2"), 0.21)
    assert "replace_rejected" in [x.stage for x in acts if isinstance(x, Audit)]
    assert order.state is OrdStatus.NEW and order.cl_ord_id == b.cl_ord_id and order.price == b.price
    # a second attempt; the fill wins the race: the fill, then "too late" (102=0)
    (g2,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.35) if isinstance(x, SendReplace)]
    core.handle(report(b, "b1", "F", "2", b.qty, b.qty, b.price), 0.36)
    core.handle(CancelReject("COMEX", g2.cl_ord_id, b.cl_ord_id, "2", 0, "too late", "2"), 0.37)
    assert order.state is OrdStatus.FILLED and core.episodes[a.decision_id].state is EpisodeState.BALANCED
    assert not core.handle(TimerFired("anything:else"), 0.4)


def test_a_business_reject_of_the_replace_keeps_the_order(amend_config):
    core = EngineCore(amend_config)
    a, b, _ = _leg_a_fills_b_rests(core)
    (g,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2) if isinstance(x, SendReplace)]
    core.handle(BusinessReject("COMEX", "G", g.cl_ord_id, 3, "unsupported"), 0.21)
    order = core.orders[b.cl_ord_id]
    assert order.state is OrdStatus.NEW and order.pending_replace is None


@pytest.mark.parametrize("answer", ["replaced", "replace_refused", "replace_rejected_by_the_session"])
def test_a_cancel_decided_while_a_replace_is_open_goes_once_the_replace_is_answered(amend_config, answer):
    """The order timeout fired while an amend was open (explore seed 20261219 on the limit-amend
    scenario): the cancel, sent at once naming the old ClOrdID, was refused by the venue that had just
    renamed the order ("unknown order"); the order was back to working, was amended again, and the
    stray refusal then took it out of its open replace, so the venue's Replaced was an illegal move
    and the engine followed the order under a superseded ClOrdID to the end of the run. Now the cancel
    waits for the replace's answer and names the ClOrdID that answer left; a refused cancel leaves an
    open replace open."""
    core = EngineCore(amend_config)
    a, b, _ = _leg_a_fills_b_rests(core)
    (g,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2) if isinstance(x, SendReplace)]
    order = core.orders[b.cl_ord_id]
    timeout = core.handle(TimerFired(f"timeout:{a.decision_id}"), 0.25)
    assert not [x for x in timeout if isinstance(x, SendCancel)] and "cancel_deferred" in stages(timeout)
    assert order.state is OrdStatus.PENDING_REPLACE and order.cancel_deferred
    # a cancel refusal that is no answer to the open replace leaves it open
    core.handle(CancelReject("COMEX", f"{b.cl_ord_id}C9", b.cl_ord_id, "0", 1, "unknown order", "1"), 0.26)
    assert order.state is OrdStatus.PENDING_REPLACE and order.pending_replace is not None
    if answer == "replaced":
        acts = core.handle(_replaced(b, g, "b5"), 0.3)
        named = g.cl_ord_id
    elif answer == "replace_refused":
        acts = core.handle(CancelReject("COMEX", g.cl_ord_id, b.cl_ord_id, "0", 99, "replace refused", "2"), 0.3)
        named = b.cl_ord_id
    else:
        acts = core.handle(BusinessReject("COMEX", "G", g.cl_ord_id, 3, "unsupported"), 0.3)
        named = b.cl_ord_id
    (cancel,) = [x for x in acts if isinstance(x, SendCancel)]
    assert cancel.orig_cl_ord_id == named == order.cl_ord_id and order.state is OrdStatus.PENDING_CANCEL
    assert not order.cancel_deferred and not [x for x in acts if isinstance(x, Anomaly)]
    # no amend of an order being cancelled, and the cancel is sent once
    assert not [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.35) if isinstance(x, SendReplace)]
    assert not core.cancel(order, 0.36)
    canceled = dataclasses.replace(_replaced(b, g, "b6"), cl_ord_id=cancel.cl_ord_id, orig_cl_ord_id=named)
    out = core.handle(dataclasses.replace(canceled, exec_type="4", ord_status="4", leaves_qty=0.0), 0.4)
    assert order.state is OrdStatus.CANCELED and not [x for x in out if isinstance(x, Anomaly)]


@pytest.mark.parametrize("took", [True, False])
def test_a_status_answer_settles_an_open_replace_and_the_deferred_cancel_goes(amend_config, took):
    """The replace's own answer never came (lost with a session's reports, say): the status question
    its answer timer asked settles it, since no replace is sent while a question is open there, so the
    venue read the replace first. Named by the replace's ClOrdID it took effect, by the old one it did
    not; either way the cancel deferred behind it goes, naming the ClOrdID the venue holds."""
    core = EngineCore(amend_config)
    a, b, _ = _leg_a_fills_b_rests(core)
    (g,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2) if isinstance(x, SendReplace)]
    core.handle(TimerFired(f"timeout:{a.decision_id}"), 0.25)  # the cancel waits for the replace
    timeout = amend_config.strategy.execution.answer_timeout
    core.handle(TimerFired(f"answer:{g.cl_ord_id}"), 0.2 + timeout)
    held = g.cl_ord_id if took else b.cl_ord_id
    answer = dataclasses.replace(_replaced(b, g, "b-I"), cl_ord_id=held, exec_type="I", ord_status="0")
    acts = core.handle(answer, 0.21 + timeout)
    order = core.orders[b.cl_ord_id]
    (cancel,) = [x for x in acts if isinstance(x, SendCancel)]
    assert cancel.orig_cl_ord_id == held == order.cl_ord_id and order.pending_replace is None
    assert order.state is OrdStatus.PENDING_CANCEL and order.price == (g.price if took else b.price)
    assert not [x for x in acts if isinstance(x, Anomaly)] and core.venue_ready("COMEX")
    # the audit trail says which way the answer settled it, and at what price the order now rests
    (settled,) = [x for x in acts if isinstance(x, Audit) and x.stage in ("replaced", "replace_rejected")]
    assert settled.stage == ("replaced" if took else "replace_rejected") and settled.price == order.price
    what = "took effect" if took else "did not take effect"
    assert settled.detail == f"status answer: replace {g.cl_ord_id} {what}; NEW"


def test_a_cancel_decided_while_a_replace_is_open_is_not_sent_when_a_fill_ends_the_order(amend_config):
    core = EngineCore(amend_config)
    a, b, _ = _leg_a_fills_b_rests(core)
    (g,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2) if isinstance(x, SendReplace)]
    core.handle(TimerFired(f"timeout:{a.decision_id}"), 0.25)
    acts = core.handle(report(b, "b1", "F", "2", b.qty, b.qty, b.price), 0.26)  # the fill won the race
    acts += core.handle(CancelReject("COMEX", g.cl_ord_id, b.cl_ord_id, "2", 0, "too late", "2"), 0.27)
    assert not [x for x in acts if isinstance(x, SendCancel)]
    assert core.orders[b.cl_ord_id].state is OrdStatus.FILLED
    assert core.episodes[a.decision_id].state is EpisodeState.BALANCED


def test_an_order_a_venue_put_pending_replace_on_its_own_is_still_cancelled_and_the_move_recorded(amend_config):
    """A venue's ExecType E (pending replace) for a replace nobody sent leaves no replace open: the
    cancel goes at once, and the table's refusal of it in that state is an anomaly on record."""
    core = EngineCore(amend_config)
    a, b, _ = _leg_a_fills_b_rests(core)
    core.handle(dataclasses.replace(report(b, "b-E", "E", "E", 0), exec_type="E"), 0.1)
    order = core.orders[b.cl_ord_id]
    assert order.state is OrdStatus.PENDING_REPLACE and order.pending_replace is None
    acts = core.handle(TimerFired(f"timeout:{a.decision_id}"), 0.25)
    assert [x.orig_cl_ord_id for x in acts if isinstance(x, SendCancel)] == [b.cl_ord_id]
    assert [x.kind for x in acts if isinstance(x, Anomaly)] == ["illegal_transition"]


def test_amend_needs_limit_mode_and_both_settings(tmp_path):
    text = (ROOT / "scenarios" / "cu_hg_spread.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[strategy.execution]", "[strategy.execution]\namend_after_ms = 100\nmax_amends = 2"))
    with pytest.raises(ConfigError) as exc:
        scenario.load(bad)
    assert "amend_after_ms" in str(exc.value) and "limit" in str(exc.value)
    bad.write_text(text.replace("[strategy.execution]", "[strategy.execution]\namend_after_ms = 100"))
    with pytest.raises(ConfigError) as exc:
        scenario.load(bad)
    assert "max_amends" in str(exc.value)


@pytest.mark.slow
def test_the_amend_scenario_replaces_at_the_venue_and_leaves_fewer_legged_episodes():
    amend = scenario.load(ROOT / "scenarios" / "cu_hg_limit_amend.toml")
    plain = scenario.load(ROOT / "scenarios" / "cu_hg_limit_orders.toml")
    seeds = (1, 3, 5)
    with_amend = [runner.run(amend, s) for s in seeds]
    without = [runner.run(plain, s) for s in seeds]
    assert all(r.report["verdict"] == "pass" for r in with_amend)
    log = "\n".join(m for r in with_amend for m in r.messages)
    assert "\x0135=G\x01" in log and "\x01150=5\x01" in log  # sent as G, answered Replaced
    legged = [sum(1 for e in r.report["episodes"] if e["recovery"]) for r in (with_amend, without) for r in r]
    assert sum(legged[:3]) < sum(legged[3:])


@pytest.mark.parametrize(
    "qty,expected",
    [
        (5, [("8", "0"), ("8", "5")]),  # accepted, then replaced
        (65, [("8", "0"), ("9", "99")]),  # replace refused by the band
        (55, [("8", "0"), ("9", "0"), ("8", "F")]),  # too late to replace: the fill follows
        (15, [("8", "0"), ("8", "F"), ("9", "0")]),  # already filled
    ],
)
def test_the_certification_venue_answers_replaces_by_band(spread_scenario, qty, expected):
    replies, send = _cert_venue(spread_scenario)
    send(SendOrder("SHFE", "P1", "CU", "cu2603", "1", qty, 70010.0, "2", "0", "ACC", "D1"))
    send(SendReplace("SHFE", "P1M1", "P1", "CU", "cu2603", "1", qty, 70020.0, "0", "D1", "ACC"))
    got = [(m.msg_type, m.get(150) or m.get(102)) for m in replies()]
    assert got == expected
    if qty == 5:
        replaced = replies()[-1]
        assert replaced.get(11) == "P1M1" and replaced.get(41) == "P1" and replaced.get(44) == "70020"
    if expected[-1][0] == "9" or expected[1][0] == "9":
        assert all(m.get(434) == "2" for m in replies() if m.msg_type == "9")


@pytest.mark.parametrize("cancel_waits", [False, True])
def test_a_replaced_report_is_one_audit_row_and_a_cancel_waiting_for_it_goes(amend_config, cancel_waits):
    """ExecType 5 is recorded once, as "replaced" at the new price and leaves (not as a plain report),
    after the order's other rows; a cancel decided while the replace was open goes with it."""
    core = EngineCore(amend_config)
    a, b, _ = _leg_a_fills_b_rests(core)
    (g,) = [x for x in core.handle(TimerFired(f"amend:{a.decision_id}"), 0.2) if isinstance(x, SendReplace)]
    if cancel_waits:
        core.handle(TimerFired(f"timeout:{a.decision_id}"), 0.205)
    acts = core.handle(_replaced(b, g, "b5"), 0.21)
    rows = [x for x in acts if isinstance(x, Audit) and x.cl_ord_id in (b.cl_ord_id, g.cl_ord_id)]
    assert [(x.stage, x.cl_ord_id, x.price, x.qty, x.detail) for x in rows] == [
        ("replaced", g.cl_ord_id, g.price, b.qty, "NEW replace 1")
    ]
    cancels = [x for x in acts if isinstance(x, SendCancel)]
    assert [x.orig_cl_ord_id for x in cancels] == ([g.cl_ord_id] if cancel_waits else [])
