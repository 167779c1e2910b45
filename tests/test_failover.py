"""Primary and hot standby in virtual time: the lease, fencing epochs in ClOrdIDs, takeover after
missed heartbeats, reconciliation, a paused primary fenced on waking, and the checker catching a
split brain when fencing is turned off on purpose."""

from __future__ import annotations

import dataclasses

import pytest

from engine.config import ConfigError
from engine.core.engine_core import EngineCore, epoch_of
from engine.core.events import (
    Anomaly,
    Audit,
    CancelReject,
    ExecReport,
    Quote,
    SendCancel,
    SendOrder,
    SendReplace,
    SendStatusRequest,
    SessionUp,
    Takeover,
)
from simulator import runner, scenario
from simulator.failover import SimulatedLease
from tests.conftest import ROOT, fire, report

F25 = ROOT / "scenarios" / "f25_failover_primary_crash_mid_chase.toml"
F26 = ROOT / "scenarios" / "f26_failover_primary_pause_split_brain.toml"


def test_the_lease_is_held_kept_alive_expires_and_bumps_its_revision():
    lease = SimulatedLease(0.3, "primary", 1)
    assert lease.holds("primary", 1, 0.1) and lease.acquire("standby", 0.2) is None
    assert lease.keep_alive("primary", 0.25) and not lease.keep_alive("standby", 0.25)
    assert lease.acquire("standby", 0.5) is None  # kept alive at 0.25: valid until 0.55
    assert lease.acquire("standby", 0.56) == 2 and lease.holder == "standby"
    assert not lease.holds("primary", 1, 0.57) and not lease.keep_alive("primary", 0.57)
    assert lease.holds("standby", 2, 0.57) and not lease.holds("standby", 1, 0.57)
    assert not lease.holds("standby", 2, 0.9)  # not kept alive: expired
    lease.release("standby", 0.9)
    assert lease.acquire("primary", 0.91) == 3


def test_a_restarted_process_waits_for_its_dead_process_lease_and_takes_the_next_epoch():
    """A node's restarted process is a new holder: the grant of the process that died (same node name)
    is not handed back, since it would expire under the new process with no keep-alive of its own;
    once it has expired the restarted process gets the next revision, as etcd and ZooKeeper give a
    new session a new key."""
    lease = SimulatedLease(0.3, "standby", 2)
    assert lease.acquire("standby", 0.2) is None and lease.acquire("primary", 0.2) is None
    assert lease.held_by(0.2) == "standby" and lease.held_by(0.3) is None and lease.grant_outlives() == 0.3
    assert lease.acquire("standby", 0.3) == 3 and lease.holds("standby", 3, 0.31)
    assert not lease.holds("standby", 2, 0.31) and lease.keep_alive("standby", 0.5)


def test_takeover_raises_the_epoch_stamps_new_clordids_and_reconciles_every_venue(config):
    core = EngineCore(config)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    assert epoch_of(a.cl_ord_id) == 1 and a.cl_ord_id.startswith("E1-")
    acts = core.handle(Takeover(2), 0.5)
    assert core.epoch == 2 and "takeover" in [x.stage for x in acts if isinstance(x, Audit)]
    assert not core.venue_ready("SHFE") and not core.venue_ready("COMEX")
    queries = core.handle(SessionUp("SHFE"), 0.6)
    assert any(type(x).__name__ == "SendStatusRequest" and x.cl_ord_id == a.cl_ord_id for x in queries)
    assert core.stamp("E1-000001A2R") == "E1-000001A2R-E2" and epoch_of("E1-000001A2R-E2") == 2
    assert core.stamp("E2-000009A1") == "E2-000009A1" and epoch_of("E2-000009A1C1") == 2
    assert epoch_of("FOREIGN-1") is None
    stale = core.handle(Takeover(2), 0.7)
    assert any(type(x).__name__ == "Anomaly" and x.kind == "stale_takeover" for x in stale)


def test_the_standby_takes_over_a_crashed_primary_mid_chase_and_finishes_the_episode():
    sc = scenario.load(F25)
    result = runner.run(sc, 7)
    rep = result.report
    assert rep["verdict"] == "pass", rep["expectations"]
    (f,) = rep["failover"]["failovers"]
    hb, misses = sc.failover.heartbeat, sc.failover.misses
    assert f["fault"] == "primary_crash" and f["epoch"] == 2
    # the detector fires when the last heartbeat is `misses` intervals old; the crash came after it
    assert (misses - 1) * hb * 1e3 < f["detect_ms"] <= misses * hb * 1e3 + 1e-3
    assert f["detect_ms"] <= f["active_ms"] <= f["reconciled_ms"]
    assert f["reconciled_ms"] < 500 + 2 * 58.5  # the target: 500 ms plus one COMEX round trip (>= 2 x 56 ms floor)
    assert rep["invariants"]["5"]["status"] == "pass" and rep["invariants"]["6"]["status"] == "pass"
    later = [row for row in result.audit if row[2] == "send" and row[1] > f["active_s"]]
    assert later and all(epoch_of(row[4]) == 2 for row in later)  # every order after the takeover: epoch 2
    assert [g["epoch"] for g in rep["failover"]["lease_grants"]] == [1, 2]


def test_a_paused_primary_that_wakes_after_the_takeover_is_fenced():
    rep = runner.run(scenario.load(F26), 7).report
    assert rep["verdict"] == "pass", rep["expectations"]
    assert rep["failover"]["fenced_attempts"] >= 1 and rep["invariants"]["5"]["status"] == "pass"
    assert "positions_reconciled" in rep["coverage"]  # the new node compared positions with the venues'
    events = [e["event"] for e in rep["failover"]["node_events"]]
    assert events == ["primary_pause", "standby_suspects_primary", "primary_wake", "primary_stepped_down"]


def test_with_fencing_off_the_split_brain_is_caught_and_the_duplicate_order_named(tmp_path):
    text = F26.read_text().replace("replication_ms = 0.2", "replication_ms = 0.2\nfencing = false")
    path = tmp_path / "no_fence.toml"
    path.write_text(text)
    rep = runner.run(scenario.load(path), 7).report
    v5 = rep["invariants"]["5"]
    assert rep["verdict"] == "fail" and v5["status"] == "fail"
    assert "E1-000001B2R" in v5["first"]["detail"] and "duplicate order" in v5["first"]["detail"]
    assert v5["first"]["decision_id"] == "E1-000001" and rep["failover"]["fenced_attempts"] == 0


def test_same_seed_same_failover():
    sc = scenario.load(F26)
    a, b = runner.run(sc, 3).report, runner.run(sc, 3).report
    assert a["run_hash"] == b["run_hash"] and a["failover"]["failovers"] == b["failover"]["failovers"]


@pytest.mark.parametrize(
    "edit,key",
    [
        (lambda t: t.replace("[failover]", "[unused_failover]"), "faults[1].kind"),
        (lambda t: t.replace("lease_ttl_ms = 300", "lease_ttl_ms = 50"), "failover.lease_ttl_ms"),
        (lambda t: t.replace("on_order = true\n", ""), "faults[1].venue"),
    ],
)
def test_bad_failover_settings_name_the_key(tmp_path, edit, key):
    path = tmp_path / "bad.toml"
    path.write_text(edit(F26.read_text()))
    with pytest.raises(ConfigError) as exc:
        scenario.load(path)
    assert key in str(exc.value)


def test_a_stale_standby_learns_what_it_missed_from_the_venues_and_keeps_every_fill():
    """f27: the stream was cut long before the crash; the lease refused the standby while the
    primary lived; after the takeover the venues' mass status (AF) tells it every order it missed."""
    result = runner.run(scenario.load(ROOT / "scenarios" / "f27_failover_replication_cut_then_crash.toml"), 7)
    rep = result.report
    assert rep["verdict"] == "pass", rep["expectations"]
    (f,) = rep["failover"]["failovers"]
    assert f["replicated_events"] < f["streamed_events"]  # the standby really was behind
    events = [e["event"] for e in rep["failover"]["node_events"]]
    assert "takeover_refused_lease_held" in events and events.index("takeover_refused_lease_held") < events.index(
        "primary_crash"
    )
    log = "\n".join(result.messages)
    assert "\x0135=AF\x01" in log and "\x01912=Y\x01" in log
    assert rep["invariants"]["6"]["status"] == "pass"  # positions = the venues' fills, none lost
    assert any(row[2] == "foreign_fill" for row in result.audit)


def test_a_crash_between_the_two_legs_is_reconciled_and_the_session_gap_filled():
    """f29: the primary dies as its first leg reaches SHFE, the second still in flight; the standby
    never saw the decision. Its logon is answered although a sequence gap sits below it."""
    rep = runner.run(
        scenario.load(ROOT / "scenarios" / "f29_failover_replication_lag_crash_between_legs.toml"), 7
    ).report
    assert rep["verdict"] == "pass", rep["expectations"]
    (f,) = rep["failover"]["failovers"]
    assert f["reconciled_ms"] is not None and f["first_new_order_ms"] is not None
    assert rep["invariants"]["6"]["status"] == "pass" and rep["invariants"]["5"]["status"] == "pass"


def test_invariant_12_compares_engine_orders_with_the_venues(config):
    from simulator.checkers import InvariantChecker

    core = EngineCore(config)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    checker = InvariantChecker(core)
    checker.reconcile_check(1.0, {a.cl_ord_id: ("0", 0.0, 0.0), b.cl_ord_id: ("0", 0.0, 0.0)})
    assert checker.v[12].status == "pass"
    checker.reconcile_check(
        2.0, {a.cl_ord_id: ("2", 5.0, 70000.0), b.cl_ord_id: ("0", 0.0, 0.0)}
    )  # a fill the engine lacks
    assert checker.v[12].status == "fail" and a.cl_ord_id in checker.v[12].first["detail"]
    other = InvariantChecker(core)
    other.reconcile_check(3.0, {a.cl_ord_id: ("0", 0.0, 0.0)})  # the engine holds an order the venue never saw
    assert other.v[12].status == "fail" and b.cl_ord_id in other.v[12].first["detail"]
    # the same fills at another price: the engine's books would carry the wrong cost
    a_order = core.find_order(a.cl_ord_id)
    a_order.cum_qty, a_order.avg_px = 5.0, 70000.0
    priced = InvariantChecker(core)
    priced.reconcile_check(4.0, {a.cl_ord_id: ("1", 5.0, 70000.0), b.cl_ord_id: ("0", 0.0, 0.0)})
    assert priced.v[12].status == "pass"
    priced.reconcile_check(4.0, {a.cl_ord_id: ("1", 5.0, 70010.0), b.cl_ord_id: ("0", 0.0, 0.0)})
    assert priced.v[12].status == "fail" and "AvgPx" in priced.v[12].first["detail"]
    # a fraction of a tick off is a wrong average too (one lot of 1,000 filled a tick of 10 away shifts
    # it by 0.01); the six decimals an AvgPx travels with are not
    for venue_avg, verdict in ((70000.01, "fail"), (70000.0000004, "pass"), (69999.9999996, "pass")):
        slight = InvariantChecker(core)
        slight.reconcile_check(4.0, {a.cl_ord_id: ("1", 5.0, venue_avg), b.cl_ord_id: ("0", 0.0, 0.0)})
        assert slight.v[12].status == verdict, venue_avg
    # an order the engine never knew, still working at the venue at the end: nobody will ever cancel it
    stray = InvariantChecker(core)
    stray.reconcile_check(
        5.0, {a.cl_ord_id: ("1", 5.0, 70000.0), b.cl_ord_id: ("0", 0.0, 0.0), "E1-000077B1": ("1", 1.0, 4.5)}
    )
    assert stray.v[12].status == "fail" and "E1-000077B1" in stray.v[12].first["detail"]
    # done at the venue: its fills are in the positions (W6, #6), but the desk must have been told of it
    venue_orders = {a.cl_ord_id: ("1", 5.0, 70000.0), b.cl_ord_id: ("0", 0.0, 0.0), "E1-000077B1": ("4", 1.0, 4.5)}
    done_stray = InvariantChecker(core)
    done_stray.reconcile_check(5.0, venue_orders, {"E1-000077B1"})
    assert done_stray.v[12].status == "pass"
    untold = InvariantChecker(core)
    untold.reconcile_check(5.0, venue_orders)
    assert untold.v[12].status == "fail" and "never told" in untold.v[12].first["detail"]
    nothing_traded = InvariantChecker(core)  # a foreign order that ended with nothing filled holds nothing
    nothing_traded.reconcile_check(5.0, {**venue_orders, "E1-000077B1": ("4", 0.0, 0.0)})
    assert nothing_traded.v[12].status == "pass"
    # an order the venue rejected is one it saw: a node that hears of it as unknown raises no false alarm
    rejected = InvariantChecker(core)
    rejected.reconcile_check(5.0, {**venue_orders, "E1-000078A1": ("8", 0.0, 0.0)}, {"E1-000077B1", "E1-000078A1"})
    assert rejected.v[12].status == "pass"
    # and the other way: an unknown_order alarm must name an order a venue holds that the engine does not
    # know, not the ClOrdID of the engine's own cancel of it, nor one of the engine's own orders
    for named in ("E1-000077B1X1-E2", a.cl_ord_id):
        false_alarm = InvariantChecker(core)
        false_alarm.reconcile_check(5.0, venue_orders, {"E1-000077B1", named})
        assert false_alarm.v[12].status == "fail" and named in false_alarm.v[12].first["detail"]


@pytest.mark.parametrize(("status", "cum"), [("2", 5.0), ("4", 0.0), ("8", 0.0), ("C", 0.0)])
def test_invariant_12_fails_an_order_the_venue_ended_and_the_engine_still_works(config, status, cum):
    """Done is compared as well as CumQty: filled, cancelled, rejected or expired at the venue while the
    engine holds the order working with the same fills is a disagreement."""
    from simulator.checkers import InvariantChecker

    core = EngineCore(config)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    core.find_order(a.cl_ord_id).cum_qty = cum
    core.find_order(a.cl_ord_id).avg_px = 70000.0
    checker = InvariantChecker(core)
    checker.reconcile_check(1.0, {a.cl_ord_id: (status, cum, 70000.0), b.cl_ord_id: ("0", 0.0, 0.0)})
    first = checker.v[12].first
    assert checker.v[12].status == "fail" and f"venue OrdStatus {status} CumQty {cum:g}" in first["detail"]
    assert first["decision_id"] == a.cl_ord_id[:9] and first["t"] == 1.0


def test_invariant_12_at_its_edges(config):
    """One lot counts (filled but unknown at the venue; at another average price); an average a
    billionth off in relative terms is float noise; an order the engine ended with nothing filled that
    no venue saw is no disagreement, nor does it end the check of the orders after it; a foreign order
    only working with nothing filled is still one nobody will cancel; a flagged foreign order that
    filled or expired ended; an anomaly naming NONE (a venue's "no such order") is no false alarm. A
    failure keeps its first breach, names no decision for a foreign order."""
    from engine.core.order import OrdStatus
    from simulator.checkers import InvariantChecker

    core = EngineCore(config)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    a_order = core.find_order(a.cl_ord_id)
    a_order.cum_qty, a_order.avg_px, a_order.state = 1.0, 70000.0, OrdStatus.FILLED

    def verdict(venue_orders, flagged=frozenset()) -> tuple[str, dict]:
        checker = InvariantChecker(core)
        checker.reconcile_check(2.0, venue_orders, flagged)
        return checker.v[12].status, checker.v[12].first

    working_b = {b.cl_ord_id: ("0", 0.0, 0.0)}
    status, first = verdict(working_b)
    assert status == "fail" and f"{a.cl_ord_id}: engine FILLED CumQty 1, unknown at the venue" in first["detail"]
    assert verdict({a.cl_ord_id: ("2", 1.0, 70010.0)} | working_b)[0] == "fail"
    status, first = verdict({a.cl_ord_id: ("2", 1.0, 70000.0), b.cl_ord_id: ("1", 1.0, 4.5)})  # a lot untold
    assert (
        status == "fail"
        and f"{b.cl_ord_id}: engine PENDING_NEW CumQty 0, venue OrdStatus 1 CumQty 1" in first["detail"]
    )
    assert verdict({a.cl_ord_id: ("2", 1.0, 70000.00005)} | working_b)[0] == "pass"
    status, first = verdict(working_b | {"E1-000079B1": ("0", 0.0, 0.0)} | {a.cl_ord_id: ("2", 1.0, 70000.0)})
    assert status == "fail" and "E1-000079B1: working at the venue" in first["detail"] and first["decision_id"] == ""
    both_foreign = {"E1-000079B1": ("2", 1.0, 4.5), "E1-000080B1": ("C", 0.0, 0.0), a.cl_ord_id: ("2", 1.0, 70000.0)}
    assert verdict(working_b | both_foreign, {"E1-000079B1", "NONE"}) == ("pass", {})
    status, first = verdict(working_b | {a.cl_ord_id: ("2", 1.0, 70000.0)}, {"E1-000081B1"})
    assert status == "fail" and first["decision_id"] == "" and "no venue holds" in first["detail"]
    status, first = verdict(working_b | {a.cl_ord_id: ("2", 1.0, 70000.0), "E1-000082B1": ("4", 2.0, 4.5)})
    assert status == "fail" and first["decision_id"] == "" and "never told" in first["detail"]
    a_order.cum_qty, a_order.state = 0.0, OrdStatus.CANCELED  # dead with nothing filled, never seen
    status, first = verdict({b.cl_ord_id: ("4", 0.0, 0.0)})
    assert status == "fail" and b.cl_ord_id in first["detail"]
    checker = InvariantChecker(core)
    checker.reconcile_check(3.0, {b.cl_ord_id: ("4", 0.0, 0.0)})
    checker.reconcile_check(4.0, {b.cl_ord_id: ("2", 2.0, 4.5)})
    assert checker.v[12].first["t"] == 3.0 and "OrdStatus 4" in checker.v[12].first["detail"]


def _standby_finds_a_foreign_order(config, status: str = "1"):
    """A standby takes over and its mass status answer shows ZZ-1, working (OrdStatus `status`) with 1
    of 4 lots filled, an order it never sent: (core, the actions of that answer, the cancels among them)."""
    from engine.core.events import SendCancel

    core = EngineCore(config)
    fire(core)
    core.handle(Takeover(2), 1.0)
    core.handle(SessionUp("COMEX"), 1.1)
    foreign = ExecReport(
        "COMEX", "ZZ-1", "", "O9", "X1", "I", "1", "HG", "1", 4, 1, 3, 0, 0, 4.5, None, "", False, "MS-COMEX-E2", False
    )
    foreign = dataclasses.replace(foreign, ord_status=status)
    acts = core.handle(foreign, 1.2)
    return core, acts, [a for a in acts if isinstance(a, SendCancel)]


@pytest.mark.parametrize("status", ["0", "1", "A"])
def test_an_order_the_node_never_sent_is_recorded_cancelled_and_its_fills_counted_once(config, status):
    """Working in any state (new, part-filled, pending new), it is cancelled; every report of it moves
    the position by what its CumQty adds, once: a resend, or a report older than one applied (a status
    answer delivered late), adds nothing and does not lower the count a later resend is measured by."""
    from engine.core.events import Alert

    core, acts, cancel = _standby_finds_a_foreign_order(config, status)
    assert cancel and cancel[0].orig_cl_ord_id == "ZZ-1" and epoch_of(cancel[0].cl_ord_id) == 2
    assert any(isinstance(a, Alert) and "never sent" in a.text for a in acts)
    assert core.positions["HG"] == 1 and "ZZ-1" not in core.orders  # counted, never adopted
    resent_fill = ExecReport("COMEX", "ZZ-1", "", "O9", "X0", "F", "1", "HG", "1", 4, 1, 3, 1, 4.5, 4.5, None, "", True)
    core.handle(resent_fill, 1.3)  # the same fill again (a resend): the position does not move twice
    assert core.positions["HG"] == 1
    later = ExecReport("COMEX", "ZZ-1", "", "O9", "X2", "F", "2", "HG", "1", 4, 4, 0, 3, 4.5, 4.5)
    core.handle(later, 1.4)
    assert core.positions["HG"] == 4
    older = ExecReport("COMEX", "ZZ-1", "", "O9", "X1S", "I", "1", "HG", "1", 4, 1, 3, 0, 0, 4.5)
    core.handle(older, 1.41)  # a status of before the last fill, delivered late
    core.handle(dataclasses.replace(later, poss_dup=True), 1.42)  # and the last fill resent
    assert core.positions["HG"] == 4
    # the venue's answer to our cancel names the cancel's ClOrdID: a report of that order, not another unknown one
    answer = ExecReport("COMEX", cancel[0].cl_ord_id, "ZZ-1", "O9", "X3", "4", "4", "HG", "1", 4, 4, 0, 0, 0, 4.5)
    assert not [a for a in core.handle(answer, 1.5) if getattr(a, "kind", "") == "unknown_order"]
    assert core.positions["HG"] == 4
    # and so is its refusal of our cancel (the order had filled first): on record, not an unknown order
    refused = core.handle(CancelReject("COMEX", cancel[0].cl_ord_id, "ZZ-1", "2", 0, "too late to cancel"), 1.6)
    assert [a.stage for a in refused if isinstance(a, Audit)] == ["foreign_cancel_rejected"]
    assert not [a for a in refused if getattr(a, "kind", "") == "unknown_order"]
    # a cancel refused for an order nobody knows is still an unknown order
    stray = core.handle(CancelReject("COMEX", "QQ-1X1", "QQ-1", "8", 1, "unknown order"), 1.7)
    assert [a.kind for a in stray if getattr(a, "kind", "")] == ["unknown_order"]


def test_a_fill_whose_report_was_lost_counts_from_the_next_report_of_a_foreign_order(config):
    core, _, cancel = _standby_finds_a_foreign_order(config)
    # two more lots traded, their fill report lost; the answer to our cancel says CumQty 3
    answer = ExecReport("COMEX", cancel[0].cl_ord_id, "ZZ-1", "O9", "X3", "4", "4", "HG", "1", 4, 3, 0, 0, 0, 4.5)
    core.handle(answer, 1.5)
    assert core.positions["HG"] == 3


def test_a_venue_without_mass_status_is_reconciled_by_its_order_status_answers(config):
    from engine.core.events import BusinessReject

    core = EngineCore(config)
    fire(core)
    core.handle(Takeover(2), 1.0)
    acts = core.handle(SessionUp("SHFE"), 1.1)
    assert any(type(a).__name__ == "SendMassStatusRequest" for a in acts) and not core.venue_ready("SHFE")
    working = [a.cl_ord_id for a in acts if type(a).__name__ == "SendStatusRequest"]
    acts = core.handle(BusinessReject("SHFE", "AF", "", 3, "unsupported message type"), 1.2)
    assert "mass_status_unsupported" in [a.stage for a in acts if isinstance(a, Audit)]
    assert core.venue_ready("SHFE") == (not working)  # still waiting for the H answers, if any


def test_both_nodes_crash_in_turn_and_the_second_restarts_from_its_own_journal():
    rep = runner.run(scenario.load(ROOT / "scenarios" / "f31_failover_both_nodes_crash_in_turn.toml"), 7).report
    assert rep["verdict"] == "pass", rep["expectations"]
    assert [g["epoch"] for g in rep["failover"]["lease_grants"]] == [1, 2, 3]
    (restart,) = rep["restarts"]
    assert restart["node"] == "standby" and restart["replayed"] > 0  # replicated events and its own
    assert rep["invariants"]["12"]["status"] == "pass" and rep["invariants"]["4"]["status"] == "pass"


def test_a_primary_that_dies_while_the_standby_is_down_restarts_from_its_own_journal(tmp_path):
    """f28 with the standby down for four minutes: the primary dies (on a chase) while no standby can take
    over. Nothing restarted it, and the run went on with no engine; it restarts from its own journal as
    a single node's process does, takes the lease anew once the dead process's grant expired (the next
    epoch), reconciles, and every episode ends; the standby, back later, resyncs from it."""
    text = (ROOT / "scenarios" / "f28_failover_standby_crash_resync_then_primary_crash.toml").read_text()
    assert "delay_ms = 2000" in text
    path = tmp_path / "f28_standby_down_for_four_minutes.toml"
    path.write_text(text.replace("delay_ms = 2000", "delay_ms = 250000", 1))
    sc = scenario.load(path)
    rep = runner.run(sc, 1).report
    events = [e["event"] for e in rep["failover"]["node_events"]]
    assert events[:2] == ["standby_crash", "primary_crash_no_standby"], events
    assert "active_restarted" in events and "standby_resynced" in events
    assert [g["epoch"] for g in rep["failover"]["lease_grants"]] == [1, 2]
    (restart,) = rep["restarts"]
    assert restart["node"] == "primary" and restart["replayed"] > 0
    assert rep["invariants"]["2"]["status"] == "pass" and rep["invariants"]["12"]["status"] == "pass"


def _f26_with_the_standby_down(tmp_path):
    """f26 (the primary pauses 1.5 s, five lease TTLs) with the standby dead from 2 s to 202 s."""
    text = (ROOT / "scenarios" / "f26_failover_primary_pause_split_brain.toml").read_text()
    path = tmp_path / "f26_pause_with_the_standby_down.toml"
    extra = '\n[[faults]]\nkind = "standby_crash"\nafter_s = 2\ndelay_ms = 200000\n'
    path.write_text(text.replace('extends = "', f'extends = "{ROOT / "scenarios"}/', 1) + extra)
    return scenario.load(path)


def test_a_node_left_running_without_its_lease_fails_invariant_5(tmp_path, monkeypatch):
    """Invariant 5's other half, planted both ways: a woken primary that nobody restarts, and a restarted
    process handed its dead process's grant (which expires under it) whose lost lease nobody acts on,
    each leave a node trying to send past the fence for longer than the failure detector's window;
    the invariant names the node. (With the lost lease acted on, the second defect heals itself: the
    node in charge alone stops at its next keep-alive and restarts under the next epoch.)"""
    from simulator import failover

    with monkeypatch.context() as m:
        m.setattr(failover.Cluster, "_lost_lease", lambda self, p: None)
        first = runner.run(_f26_with_the_standby_down(tmp_path), 1).report["invariants"]["5"]
    assert first["status"] == "fail" and "node primary still sending" in first["first"]["detail"], first

    granted = failover.SimulatedLease.acquire

    def handed_back(self, node, now):  # the defect: the holder's own name gets its live grant back
        return self.revision if self.holder == node and now < self.expires else granted(self, node, now)

    monkeypatch.setattr(failover.SimulatedLease, "acquire", handed_back)
    path = ROOT / "tests" / "regressions" / "restarted_node_waits_for_its_dead_process_lease.toml"
    healed = runner.run(scenario.load(path)).report
    assert healed["invariants"]["5"]["status"] == "pass"
    assert "standby_lost_lease" in [e["event"] for e in healed["failover"]["node_events"]]
    monkeypatch.setattr(failover.Cluster, "_lost_lease", lambda self, p: None)
    second = runner.run(scenario.load(path)).report["invariants"]["5"]
    assert second["status"] == "fail" and "node standby still sending" in second["first"]["detail"], second


def test_invariant_5_times_each_fenced_node_from_its_own_first_stop_until_it_sends_again(config):
    """The window runs per node (and epoch) from its first fenced attempt: another node's sends do not
    restart it, the node's own send ends it (a later stop starts afresh), an attempt exactly at the
    window's edge is still inside; the failure names the node, the seconds since the first stop and
    the decision the ClOrdID belongs to, whatever its epoch's digits. A send under a fenced epoch fails
    at once, naming that decision too."""
    from simulator.checkers import InvariantChecker

    def checker(revision: int) -> InvariantChecker:
        c = InvariantChecker(EngineCore(config))
        c.lease, c.fence_window = SimulatedLease(1.0, "standby", revision), 0.5
        return c

    lone = checker(3)
    lone.on_fenced(0.25, "primary", "E1-000001A1")  # the fence's own verdict: nothing left the node
    assert lone.v[5].status == "pass" and lone.coverage == {"fenced_attempt"}
    lone.on_fenced(0.75, "primary", "E1-000001A2R")  # exactly the window after the first stop
    assert lone.v[5].status == "pass"

    others = checker(13)
    others.on_fenced(0.125, "primary", "E12-000007A1")
    others.on_leave(0.25, "standby", "E13-000008A1", "SendOrder")  # the new leader trades meanwhile
    others.on_fenced(0.75, "primary", "E12-000007A1C1")
    v = others.v[5]
    assert v.status == "fail" and v.first["decision_id"] == "E12-000007" and v.first["t"] == 0.75, v.first
    assert "node primary still sending (E12-000007A1C1) 0.625 s after the fence first stopped it" in v.first["detail"]

    own = checker(3)
    own.on_fenced(0.0, "primary", "E1-000001A1")
    own.on_leave(0.25, "primary", "E3-000002A1", "SendOrder")  # it holds the lease again: the spell is over
    own.on_fenced(0.625, "primary", "E1-000001A1C1")
    assert own.v[5].status == "pass"

    stale = checker(13)
    stale.on_leave(1.0, "primary", "E12-000007A1C1", "SendCancel")
    v = stale.v[5]
    assert v.status == "fail" and v.first["decision_id"] == "E12-000007", v.first
    assert "SendCancel E12-000007A1C1 left node primary under fenced epoch 12 while epoch 13" in v.first["detail"]


def test_a_primary_that_wakes_without_its_lease_and_no_standby_is_restarted_under_the_next_epoch(tmp_path):
    """f26's pause (1.5 s, five times the lease's TTL) with the standby dead and not back for 200 s: the
    woken primary's keep-alive failed, nobody could take over, and it stayed in charge fenced for the
    rest of the standby's absence: every order blocked while its core waited for answers (six episodes
    aborted, one escalated). It now stops as production's node does on a lost lease and its supervisor
    restarts it from its journal, under the next epoch: the episodes balance or unwind."""
    rep = runner.run(_f26_with_the_standby_down(tmp_path), 1).report
    events = [e["event"] for e in rep["failover"]["node_events"]]
    assert events[:5] == ["standby_crash", "primary_pause", "primary_wake", "primary_lost_lease", "active_restarted"]
    assert [g["epoch"] for g in rep["failover"]["lease_grants"]] == [1, 2]
    (restart,) = rep["restarts"]
    assert restart["node"] == "primary" and restart["replayed"] > 0
    outcomes = rep["outcomes"]
    assert outcomes.get("ABORTED", 0) == 0 and outcomes.get("ESCALATED", 0) == 0, outcomes
    assert all(v["status"] != "fail" for v in rep["invariants"].values())


def test_a_venue_that_never_answers_the_status_queries_is_escalated_and_still_holds_new_risk(config):
    from engine.core.events import Alert, TimerFired

    core = EngineCore(config)
    fire(core)
    core.handle(Takeover(2), 1.0)
    acts = core.handle(SessionUp("COMEX"), 1.1)
    (timer,) = [a for a in acts if type(a).__name__ == "SetTimer" and a.key == "status:COMEX"]
    assert timer.at == pytest.approx(1.1 + config.strategy.recovery.status_timeout)
    fired = core.handle(TimerFired("status:COMEX"), timer.at)
    assert any(isinstance(a, Alert) and "has not answered" in a.text for a in fired)
    assert "status_unanswered" in [a.stage for a in fired if isinstance(a, Audit)]
    assert not core.venue_ready("COMEX")  # never lifted without an answer


def test_a_takeover_node_adopts_the_old_nodes_order_for_an_episode_it_knows(config):
    """f47's defect: the standby knew the episode only from before the replication cut; the old primary
    had balanced it with a chase the standby never heard of. The AF answer shows that chase filled: it
    joins its leg (so recovery never 'repairs' an exposure that is not there, which would open one),
    the episode balances, and a resend of its fill adds nothing."""
    from engine.core.episode import EpisodeState
    from tests.conftest import report

    core = EngineCore(config)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    core.handle(report(a, "XA1", "F", "2", a.qty, a.qty, a.price), 0.1)  # leg A filled; leg B still working
    ep = core.episodes[a.decision_id]
    core.handle(Takeover(2), 1.0)
    core.handle(SessionUp("COMEX"), 1.1)
    chase_id = f"{b.decision_id}B2R"  # the old node's chase, after the cut
    core.handle(
        ExecReport(
            "COMEX",
            b.cl_ord_id,
            "",
            "O1",
            "XB1",
            "I",
            "8",
            b.instrument,
            b.side,
            b.qty,
            0,
            0,
            0,
            0,
            0,
            None,
            "",
            False,
            "MS-COMEX-E2",
            False,
        ),
        1.2,
    )  # the entry was rejected
    acts = core.handle(
        ExecReport(
            "COMEX",
            chase_id,
            "",
            "O2",
            "XB2",
            "I",
            "2",
            b.instrument,
            b.side,
            b.qty,
            b.qty,
            0,
            0,
            0,
            4.5,
            None,
            "",
            False,
            "MS-COMEX-E2",
            True,
        ),
        1.3,
    )
    assert "adopted" in [x.stage for x in acts if isinstance(x, Audit)]
    assert core.find_order(chase_id).adopted and ep.state is EpisodeState.BALANCED
    sign = 1 if b.side == "1" else -1
    assert core.positions[b.instrument] == sign * b.qty
    assert not [x for x in acts if isinstance(x, SendOrder)]  # nothing repaired that was not broken
    resent = ExecReport(
        "COMEX",
        chase_id,
        "",
        "O2",
        "XB2F",
        "F",
        "2",
        b.instrument,
        b.side,
        b.qty,
        b.qty,
        0,
        b.qty,
        4.5,
        4.5,
        None,
        "",
        True,
    )
    acts = core.handle(resent, 1.4)
    assert core.positions[b.instrument] == sign * b.qty  # inside the adopted CumQty: counted once
    # and on record as the resend it is, naming its ExecID, not as a fill or a move the table refuses
    assert [(x.kind, x.data) for x in acts if isinstance(x, Anomaly)] == [("duplicate_exec_id", {"exec_id": "XB2F"})]
    assert not [x for x in acts if isinstance(x, Audit) and x.stage == "fill"]


@pytest.mark.parametrize("venue_says", ["working", "part_filled", "no_order_qty", "other_instrument"])
def test_an_adopted_order_still_working_is_cancelled_and_a_report_of_another_instrument_is_not_adopted(
    config, venue_says
):
    """What the old node left working for an episode this node knows is not this node's plan: adopted
    with the venue's CumQty, it is cancelled under its own ClOrdID and recovery decides afresh. An
    order the venue reports without an OrderQty is adopted at its CumQty; a report that names the
    episode's leg but another instrument is no order of that leg (counted as a foreign order)."""
    from engine.core.events import SendCancel

    core = EngineCore(config)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    core.handle(Takeover(2), 1.0)
    core.handle(SessionUp("COMEX"), 1.1)
    chase_id = f"{b.decision_id}B2R"
    cum = {"working": 0.0, "part_filled": 1.0, "no_order_qty": 1.0, "other_instrument": 0.0}[venue_says]
    order_qty = 0.0 if venue_says == "no_order_qty" else float(b.qty)
    status = {"working": "0", "part_filled": "1", "no_order_qty": "1", "other_instrument": "0"}[venue_says]
    instrument = "CU" if venue_says == "other_instrument" else b.instrument
    leftover = ExecReport(
        "COMEX", chase_id, "", "O2", "XB2", "I", status, instrument, b.side, order_qty, cum, order_qty - cum,
        0, 0, 4.5 if cum else 0.0, None, "", False, "MS-COMEX-E2", False,
    )  # fmt: skip
    acts = core.handle(leftover, 1.2)
    adopted = core.find_order(chase_id)
    if venue_says == "other_instrument":
        assert adopted is None and "adopted" not in [x.stage for x in acts if isinstance(x, Audit)]
        return
    assert adopted is not None and adopted.adopted and adopted.qty == (1 if venue_says == "no_order_qty" else b.qty)
    (cancel,) = [x for x in acts if isinstance(x, SendCancel)]
    assert cancel.orig_cl_ord_id == chase_id and cancel.venue == "COMEX"
    sign = 1 if b.side == "1" else -1
    assert core.positions[b.instrument] == sign * cum


def test_an_order_of_an_unknown_or_ended_episode_is_never_adopted(config):
    core = EngineCore(config)
    fire(core)
    core.handle(Takeover(2), 1.0)
    core.handle(SessionUp("COMEX"), 1.1)
    stray = ExecReport(
        "COMEX",
        "E1-999999B2R",
        "",
        "O9",
        "X1",
        "I",
        "2",
        "HG",
        "1",
        2,
        2,
        0,
        0,
        0,
        4.5,
        None,
        "",
        False,
        "MS-COMEX-E2",
        False,
    )
    core.handle(stray, 1.2)
    assert core.find_order("E1-999999B2R") is None and core.positions["HG"] == 2  # counted, not adopted


def _legged_spell(config, answer_at: float | None, balanced_at: float | None, end: float = 3.0):
    """Leg A fills and B is rejected at 10 ms: legged. The chase for B is first answered at
    `answer_at` (None: never) and fills at `balanced_at` (None: never); the run ends at `end`.
    Returns invariant 1's verdict."""
    from simulator.checkers import InvariantChecker

    core = EngineCore(config)
    checker = InvariantChecker(core)
    sends = [x for x in fire(core) if isinstance(x, SendOrder)]
    for o in sends:
        checker.on_send(0.0, o.instrument, o.cl_ord_id, o.decision_id, o.qty, None)
    a, b = sends
    chases: list[SendOrder] = []

    def handle(event, now):
        acts = core.handle(event, now)
        for o in (x for x in acts if isinstance(x, SendOrder)):
            checker.on_send(now, o.instrument, o.cl_ord_id, o.decision_id, o.qty, None)
            chases.append(o)
        checker.after_event(now, event)

    handle(report(a, "a1", "F", "2", a.qty, a.qty, 70000.0), 0.01)
    handle(report(b, "b1", "8", "8", 0, reason=99), 0.01)
    assert chases and core.active[a.decision_id].state.value == "LEGGED"
    (chase,) = chases
    timeline = [(t, Quote("HG", 4.4995, 50, 4.5005, 50)) for t in (0.5, 1.0, 1.4, 1.6, 2.0, 2.5)]
    if answer_at is not None:  # quotes keep coming while the chase is out
        timeline.append((answer_at, report(chase, "c0", "0", "0", 0)))
    if balanced_at is not None:
        timeline.append((balanced_at, report(chase, "c1", "F", "2", chase.qty, chase.qty, 4.5)))
    for t, event in sorted(timeline, key=lambda x: (x[0], type(x[1]) is Quote)):
        handle(event, t)
    checker.finish(end, [], {})
    return checker.v[1]


def test_invariant_1_soft_limit_is_the_budget_plus_the_time_to_hear_back(config):
    """Legged longer than the budget (800 ms) plus one far round trip (500 ms) fails; a venue whose
    answer took longer than that extends the allowance by its own slowness, and an order never
    answered extends nothing."""
    assert _legged_spell(config, answer_at=0.02, balanced_at=0.5).status == "pass"
    slow = _legged_spell(config, answer_at=0.02, balanced_at=1.6)  # answered at once, then 1.59 s legged
    assert slow.status == "fail" and "+ 500 ms" in slow.first["detail"]
    assert _legged_spell(config, answer_at=1.4, balanced_at=1.6).status == "pass"  # the venue took 1.39 s
    lost = _legged_spell(config, answer_at=None, balanced_at=None)  # legged to the end, the chase never answered
    assert lost.status == "fail" and "2990 ms" in lost.first["detail"]


def test_a_successor_process_holds_everything_its_predecessor_held():
    """The standby's shell at a takeover: every attribute of the old process, the same objects (its
    sessions, audit trail, checker, journal); an attribute added to the shell and not handed on fails."""
    sim = runner.Simulation(scenario.load(ROOT / "scenarios" / "f25_failover_primary_crash_mid_chase.toml"), 1)
    try:
        old = sim.shell
        for name in list(vars(old)):  # each a value of its own: a default never passes for a copy
            if name not in ("env", "core", "log"):
                setattr(old, name, object())
        new = old.successor()
        assert vars(new).keys() == vars(old).keys()
        for name, value in vars(old).items():
            assert getattr(new, name) is value, f"{name} is not handed on to the successor"
    finally:
        sim.scratch.remove()


@pytest.mark.parametrize(
    "order",
    [
        SendOrder("SHFE", "E1-000001A1", "CU", "cu2603", "1", 1, 70000.0, "2", "0", "ACC", "E1-000001"),
        SendCancel("SHFE", "E1-000001A1C1", "E1-000001A1", "CU", "cu2603", "1", 1, "E1-000001"),
        SendReplace("SHFE", "E1-000001A1M1", "E1-000001A1", "CU", "cu2603", "1", 1, 70010.0, "0", "E1-000001"),
    ],
)
def test_a_node_that_no_longer_holds_the_lease_sends_no_order_cancel_or_replace(order):
    """Where orders leave a node (the one dispatcher both shells run), an order, a cancel and a replace
    are each blocked and recorded once the fence says the node's epoch is not the lease's; a status
    question still goes (it moves nothing at the venue). A fenced node's replace reaching a venue was
    caught by no scenario: an old primary wakes to no amend due (it steps down first)."""
    from engine.core.dispatch import ActionDispatcher

    class Shell(ActionDispatcher):
        def __init__(self) -> None:
            super().__init__()
            self.sent: list = []

        def now(self) -> float:
            return 5.0

        def send(self, action) -> None:
            self.sent.append(action)

    shell = Shell()
    shell.core = type("Core", (), {"epoch": 1})()  # type: ignore[assignment]
    shell.node = "primary"
    question = SendStatusRequest("SHFE", order.cl_ord_id, "O1", "cu2603", "1")
    shell.fence = lambda epoch: True
    shell.execute([order])
    assert shell.sent == [order]  # holding the lease, it goes
    shell.fence = lambda epoch: False
    shell.execute([order, question])
    assert shell.sent == [order, question]
    (row,) = shell.audit
    assert row.stage == "fenced" and row.cl_ord_id == order.cl_ord_id and type(order).__name__ in row.detail


def _primary_starting(lease, outlives: float):
    """A LiveNode as far as its first grant goes (`_first_grant` reads its options, lease and stop
    event only), over a simulated lease on the wall clock whose dead-holder bound is `outlives`."""
    import threading

    from engine.shell.live_node import LiveNode, NodeOptions

    lease.grant_outlives = lambda: outlives
    node = LiveNode.__new__(LiveNode)
    node.opts = NodeOptions(role="primary", node="a", heartbeat=0.001, lease=lease, etcd="sim")
    node.stop = threading.Event()
    return node


def test_a_restarted_primary_waits_out_its_dead_process_grant_and_refuses_a_live_twin():
    """xmc live --role primary started again under its own name: a grant of that name that expires within
    the service's bound is waited out (the next epoch); one still alive past it is a second live
    process under that name (exit 2 naming it); another node's grant is refused at once; a service
    that does not answer is a refusal naming its error (exit 2), never a traceback."""
    import time

    from engine.shell.live_node import SetupError

    lease = SimulatedLease(0.02, "a", 1, time.monotonic())  # the dead process's grant: 20 ms left
    node = _primary_starting(lease, 1.0)
    assert node._first_grant() == 2 and lease.holder == "a"

    twin = SimulatedLease(60.0, "a", 1, time.monotonic())  # kept alive by another process named a
    node = _primary_starting(twin, 0.02)
    with pytest.raises(SetupError, match=r"another live process runs as a"):
        node._first_grant()

    other = SimulatedLease(60.0, "b", 1, time.monotonic())
    node = _primary_starting(other, 60.0)
    assert node._first_grant() is None and other.holder == "b"

    silent = SimulatedLease(0.02, "a", 1, time.monotonic())  # the service stops answering meanwhile
    node = _primary_starting(silent, 1.0)
    silent.cut.add("a")
    with pytest.raises(SetupError, match=r"the lease service failed when a asked .*LeaseServiceUnreachable"):
        node._first_grant()  # a refusal naming the failure (exit 2), not a traceback


def _crashing_scenarios() -> list:
    """The library's scenarios whose engine process dies (the primary of a pair, or a lone engine
    restarted from its journal)."""
    kinds = {"primary_crash", "crash_restart", "crash_mid_batch", "crash_on_order"}
    return [p for p in sorted((ROOT / "scenarios").glob("*.toml")) if kinds & {f.kind for f in scenario.load(p).faults}]


def test_a_node_taking_over_or_restarting_never_arms_a_timer_that_already_fired(monkeypatch):
    """Over every library scenario whose engine process dies: the timers the standby arms at the
    takeover (from the stream it followed) and those a restart arms (from the journal) hold no timer
    that fired in the dead process and was not set again since. One did before (the standby's table
    and the journal's replay kept every timer set and not cancelled): armed again, it fired a second
    time on the new node, where an order timeout cancels whatever the episode has working by then."""
    from simulator.failover import Cluster
    from simulator.shell import SimEngineShell

    fired: set[str] = set()  # fired in a process that died, and not set again since
    handed: list[tuple[set[str], set[str]]] = []  # (armed by the new node, fired and not set again by then)
    real_fire, real_set = SimEngineShell._fire, SimEngineShell.set_timer
    real_take_over, real_restart = Cluster._take_over, SimEngineShell.restart

    def fire(self, key, gen):
        if self.timers.get(key) == gen and self.alive:
            fired.add(key)
        real_fire(self, key, gen)

    def set_timer(self, key, at):
        fired.discard(key)
        real_set(self, key, at)

    def take_over(self, revision):
        handed.append((set(self.standby_timers), set(fired)))
        real_take_over(self, revision)

    def restart(self, core, pending_timers):
        handed.append((set(pending_timers), set(fired)))
        real_restart(self, core, pending_timers)

    monkeypatch.setattr(SimEngineShell, "_fire", fire)
    monkeypatch.setattr(SimEngineShell, "set_timer", set_timer)
    monkeypatch.setattr(Cluster, "_take_over", take_over)
    monkeypatch.setattr(SimEngineShell, "restart", restart)
    judged = 0
    for path in _crashing_scenarios():
        fired.clear()
        handed.clear()
        runner.run(scenario.load(path))
        for armed, gone in handed:
            assert not armed & gone, f"{path.name}: armed {sorted(armed & gone)} again, fired already"
            judged += bool(gone)
    assert judged >= 5, judged  # takeovers and restarts after timers had fired
