"""Fault injection really happens, the checkers really catch a broken engine, bad faults are exit 2."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core import engine_core, risk, sizing
from engine.core.recovery import ChaseThenUnwind
from simulator import runner, scenario
from tests.conftest import ROOT
from xmc.cli import main

F03 = ROOT / "scenarios" / "f03_reject_fatal_unwind.toml"


def test_skipping_the_unwind_turns_the_scenario_red_with_decision_id_and_replay(monkeypatch):
    monkeypatch.setattr(ChaseThenUnwind, "_flatten", lambda self, core, ep, now, lots, purpose: [])
    rep = runner.run(scenario.load(F03), 1).report
    assert rep["verdict"] == "fail"
    inv = rep["invariants"]["2"]
    assert inv["status"] == "fail" and inv["first"]["decision_id"].startswith("E1-")
    failed = {x["key"] for x in rep["expectations"] if x["verdict"] == "fail"}
    assert {"invariants_hold", "all_terminal"} <= failed
    assert rep["replay"] == f"xmc run {F03} --seed 1"


def test_a_clean_run_passes_every_invariant_it_exercised():
    rep = runner.run(scenario.load(F03), 2).report
    statuses = {k: v["status"] for k, v in rep["invariants"].items()}
    assert "fail" not in statuses.values() and statuses["5"] == "unknown"
    assert statuses["9"] == "pass" and statuses["6"] == "pass"


def test_a_duplicate_clordid_reaching_a_venue_is_caught():
    from engine.core.engine_core import EngineCore
    from simulator.checkers import InvariantChecker

    sc = scenario.load(F03)
    checker = InvariantChecker(EngineCore(sc.engine))
    checker.on_venue_order(1.0, "E1-000001A1")
    checker.on_venue_order(2.0, "E1-000001A1")
    assert checker.v[4].status == "fail" and checker.v[4].first["t"] == 2.0


def _chase_from_the_wrong_attempt(original):
    def chase(self, core, ep, missing, now):
        ep.chase_attempts = 0  # every chase priced as a first attempt: the payup never grows
        return original(self, core, ep, missing, now)

    return chase


@pytest.mark.parametrize(
    "planted",
    [
        lambda mp: mp.setattr(ChaseThenUnwind, "_chase", _chase_from_the_wrong_attempt(ChaseThenUnwind._chase)),
        lambda mp: mp.setattr(
            "engine.core.engine_core.EngineCore.price_from_touch",
            lambda self, inst, side, payup: (
                None if (b := self.books.get(inst.name)) is None else (b.ask if side == "1" else b.bid)
            ),
        ),  # no payup at all
    ],
)
def test_a_recovery_order_off_the_policys_price_schedule_fails_invariant_13(monkeypatch, planted):
    planted(monkeypatch)
    rep = runner.run(scenario.load(ROOT / "scenarios" / "f04_partial_fill_ioc.toml")).report
    inv = rep["invariants"]["13"]
    assert inv["status"] == "fail" and "the schedule gives" in inv["first"]["detail"]


def test_a_late_fill_the_venue_did_not_send_late_is_an_illegal_move(monkeypatch):
    """Invariant 7 accepts a late_fill anomaly only for an order the venue really filled after ending
    it: an engine that ended an order the venue kept working would raise the same anomaly."""
    from simulator.venue import Venue

    f67 = scenario.load(ROOT / "scenarios" / "f67_late_fill_overfill_hedge.toml")
    clean = runner.run(f67, 1).report
    assert clean["invariants"]["7"]["status"] == "pass" and "late_fill" in clean["coverage"]
    original = Venue._late_fill

    def unregistered(self, co):
        original(self, co)
        self.checker.late_fills.discard(co.cl_ord_id)

    monkeypatch.setattr(Venue, "_late_fill", unregistered)
    inv = runner.run(f67, 1).report["invariants"]["7"]
    assert inv["status"] == "fail" and "after the venue ended the order" in inv["first"]["detail"]


def test_an_order_the_engine_registers_but_never_hands_to_the_transport_fails_invariant_10(monkeypatch):
    """A lost action: the reconciliation resumes two legged episodes at once and keeps only the last
    one's actions, so the first one's chase is registered as sent but never leaves the node."""
    from engine.core.episode import EpisodeState
    from engine.core.reconciliation import Reconciliation

    f63 = scenario.load(ROOT / "scenarios" / "f63_two_episodes_wait_for_one_reconciliation.toml")
    assert runner.run(f63, 2).report["invariants"]["10"]["status"] == "pass"

    def resume_keeping_the_last(self, now):
        out = []
        for ep in list(self.core.active.values()):
            if ep.state is EpisodeState.LEGGED and not ep.working:
                out = self.core.recovery.on_legged(self.core, ep, now)
        return out

    monkeypatch.setattr(Reconciliation, "resume_waiting", resume_keeping_the_last)
    inv = runner.run(f63, 2).report["invariants"]["10"]
    assert inv["status"] == "fail" and "never handed to the transport" in inv["first"]["detail"]


def test_recovery_prices_follow_the_schedule_in_a_clean_run():
    rep = runner.run(scenario.load(ROOT / "scenarios" / "f04_partial_fill_ioc.toml")).report
    assert rep["invariants"]["13"]["status"] == "pass"


@pytest.mark.parametrize(
    "path,coverage",
    [
        ("f09_no_ack_timeout", {"timeout_cancel", "cancel_reject"}),
        ("f10_duplicate_reports", {"duplicate_report"}),
        ("f11_dropped_messages", {"sequence_gap"}),
        ("f13_disconnect_no_cancel", {"session_down"}),
        ("f14_stale_market_data", {"stale_skip"}),
        ("f19_reject_during_chase", {"reject_during_chase"}),
    ],
)
def test_each_fault_kind_really_bites(path, coverage):
    rep = runner.run(scenario.load(ROOT / "scenarios" / f"{path}.toml"), 4).report
    assert coverage <= set(rep["coverage"]) and sum(rep["faults"].values()) > 0
    assert all(v["status"] != "fail" for v in rep["invariants"].values())


def test_dropped_messages_lose_no_fill():
    rep = runner.run(scenario.load(ROOT / "scenarios" / "f11_dropped_messages.toml"), 5).report
    assert rep["fills_match_positions"] and rep["episodes"]


@pytest.mark.parametrize("orders", ["any", "entry", "recovery", "chase", "unwind"])
def test_a_drop_with_an_order_filter_loses_only_messages_about_matching_orders(orders):
    """The order filter of a drop is honoured (it was read and ignored: a drop of entry orders lost
    every message, market data included): the order, its cancel or replace (by OrigClOrdID), its
    status question and their reports; a message naming no order only an unfiltered drop loses."""
    import math
    import random

    from simulator.faults import Fault, FaultPlan, order_ids

    plan = FaultPlan(
        [Fault(index=0, kind="drop", venue="SHFE", after=0.0, until=math.inf, orders=orders, rate=1.0, count=0)],
        lambda name: random.Random(name),
    )
    purpose = {"E1-000001A1": "entry", "E1-000001A2R": "chase", "E1-000001B3U": "unwind", "E2-000004B1-E3": "entry"}
    messages = {f"35=D\x0111={cl}\x0155=cu2603\x01": cl for cl in purpose}  # new orders
    messages |= {f"35=F\x0141={cl}\x0111={cl}C1\x01": cl for cl in purpose}  # their cancels
    messages |= {f"35=8\x0137=S9\x0111={cl}\x01150=F\x01": cl for cl in purpose}  # their reports
    # amended: a second replace names the first replace (41) and itself (11), and so do its reports; a
    # takeover node's replace of an adopted order, and the cancel of a replaced order
    messages |= {f"35=G\x0141={cl}M1\x0111={cl}M2\x01": cl for cl in purpose}
    messages |= {f"35=8\x0137=S9\x0111={cl}M2\x0141={cl}M1\x01150=5\x01": cl for cl in purpose}
    messages |= {f"35=F\x0141={cl}M2-E4\x0111={cl}M2-E4C1-E4\x01": cl for cl in purpose}
    filters = {"any": set(purpose.values()), "entry": {"entry"}, "recovery": {"chase", "unwind"}}
    wanted = filters.get(orders, {orders})
    for raw, cl in messages.items():
        msg_type = raw.split("=", 1)[1].split("\x01", 1)[0]
        lost = plan.drops(msg_type, False, "SHFE", "up", 1.0, order_ids(raw)) is not None
        assert lost == (purpose[cl] in wanted), (orders, raw)
        assert plan.drops(msg_type, True, "SHFE", "up", 1.0, order_ids(raw)) is None  # a PossDup resend passes
        assert plan.drops(msg_type, False, "COMEX", "up", 1.0, order_ids(raw)) is None  # another venue
    md = "35=X\x01262=MD-CU\x01"
    assert (plan.drops("X", False, "SHFE", "down", 1.0, order_ids(md)) is not None) == (orders == "any")
    assert plan.drops("1", False, "SHFE", "up", 1.0, ()) is None  # a TestRequest is never lost


def test_a_fault_strikes_inside_its_half_open_window_on_its_own_venue_direction_and_question_only():
    """Each lookup of the fault plan honours what its fault says: the window [after_s, until_s) (open at
    after_s, closed at until_s, for order faults and window faults alike), the venue, a latency spike's
    direction, the status question a disconnect_on_status waits for, and the count of hits."""
    import random

    from simulator.faults import Fault, FaultPlan

    def plan(kind: str, **kw) -> FaultPlan:
        fault = Fault(index=0, kind=kind, venue="SHFE", after=10.0, until=20.0, orders="any", rate=1.0, count=0)
        for key, value in kw.items():
            setattr(fault, key, value)
        return FaultPlan([fault], lambda name: random.Random(name))

    reject = plan("reject")
    assert [reject.for_order("reject", "SHFE", "E1-000001A1", t) is not None for t in (9.999, 10.0, 19.999, 20.0)] == [
        False,
        True,
        True,
        False,
    ]
    assert reject.for_order("reject", "COMEX", "E1-000001A1", 15.0) is None
    stale = plan("md_stale")
    assert [stale.window("md_stale", "SHFE", t) is not None for t in (9.999, 10.0, 19.999, 20.0)] == [
        False,
        True,
        True,
        False,
    ]
    spike = plan("latency_spike", direction="down")
    assert spike.for_message("latency_spike", "SHFE", "up", 15.0) is None
    assert spike.for_message("latency_spike", "SHFE", "down", 15.0) is not None
    assert plan("latency_spike").for_message("latency_spike", "SHFE", "up", 15.0) is not None  # "both"
    question = plan("disconnect_on_status", on_message="AN")
    assert question.on_question("SHFE", "AF", 15.0) is None
    assert question.on_question("SHFE", "AN", 15.0) is not None
    twice = plan("reject", count=2)
    assert [twice.for_order("reject", "SHFE", "E1-000001A1", 15.0) is not None for _ in range(3)] == [True, True, False]


def test_a_lost_order_and_its_lost_question_are_found_by_a_test_request():
    """Every SHFE message about an entry order is lost (the order, its status question, its cancel) and
    nothing else goes there: the overdue question is followed by a TestRequest, SHFE answers it with a
    Heartbeat naming it, asks for the gap its MsgSeqNum shows, and the episode ends."""
    path = ROOT / "tests" / "regressions" / "lost_status_question_probed_by_a_test_request.toml"
    result = runner.run(scenario.load(path))
    rep = result.report
    assert rep["verdict"] == "pass" and set(rep["outcomes"]) <= {"BALANCED", "UNWOUND", "ABORTED"}

    def field(raw, tag):
        return raw.split(f"\x01{tag}=", 1)[1].split("\x01", 1)[0] if f"\x01{tag}=" in raw else None

    probes = [m for m in result.messages if field(m, 35) == "1" and field(m, 56) == "SHFE"]
    assert probes, "no TestRequest went to SHFE"
    first = field(probes[0], 112)
    after = result.messages[result.messages.index(probes[0]) :]
    assert any(field(m, 35) == "2" and field(m, 49) == "SHFE" for m in after)  # the gap it showed
    assert any(field(m, 35) == "0" and field(m, 49) == "SHFE" and field(m, 112) == first for m in after)
    assert any(r.stage == "session_probe" for r in result.audit)


FAULT = '\n[[faults]]\nkind = "reject"\nvenue = "COMEX"\n'


@pytest.mark.parametrize(
    "extra,key,hint",
    [
        ('[[faults]]\nkind = "reject"\nvenue = "LME"\n', "faults[1].venue", "unknown venue"),
        ('[[faults]]\nkind = "reject"\nvenue = "COMEX"\nrate = 1.5\n', "faults[1].rate", "(0, 1]"),
        (
            '[[faults]]\nkind = "drop"\nvenue = "COMEX"\nafter_s = 50\nuntil_s = 40\n',
            "faults[1].until_s",
            "never happen",
        ),
        ('[[faults]]\nkind = "drop"\nvenue = "COMEX"\nafter_s = 9999\n', "faults[1].after_s", "never happen"),
        ('[[faults]]\nkind = "meteor"\nvenue = "COMEX"\n', "faults[1].kind", "reject"),
        ('[[faults]]\nkind = "late_ack"\nvenue = "COMEX"\n', "faults[1].delay_ms", "delay_ms > 0"),
        ('[[faults]]\nkind = "disconnect"\nvenue = "COMEX"\nafter_s = 5\n', "faults[1].until_s", "needs an end"),
        (
            '[[faults]]\nkind = "disconnect_on_status"\nvenue = "COMEX"\ndelay_ms = 100\non_message = "D"\n',
            "faults[1].on_message",
            "AF",
        ),
        ('[[faults]]\nkind = "disconnect_on_status"\nvenue = "COMEX"\n', "faults[1].delay_ms", "delay_ms > 0"),
        ('[[faults]]\nkind = "reject"\nvenue = "COMEX"\non_message = "AF"\n', "faults[1].on_message", "not supported"),
        (
            '[[faults]]\nkind = "late_fill"\nvenue = "COMEX"\nreports_lost = true\n',
            "faults[1].reports_lost",
            "not supported",
        ),
        ('[[faults]]\nkind = "reject"\nvenue = "COMEX"\nafter_ms = 100\n', "faults[1].after_ms", "not supported"),
        (
            '[[faults]]\nkind = "replication_cut"\nafter_s = 5\nuntil_s = 9\nreports_lost = true\n',
            "faults[1].reports_lost",
            "primary_crash",
        ),
        (
            '[[faults]]\nkind = "disconnect_on_order"\nvenue = "COMEX"\ndelay_ms = 100\nafter_ms = -1\n',
            "faults[1].after_ms",
            "milliseconds >= 0",
        ),
        ('[[faults]]\nkind = "partial_fill"\nvenue = "COMEX"\ndelay_ms = 100\n', "faults[1].delay_ms", 'rest = "work"'),
    ],
)
def test_bad_fault_is_exit_2_with_file_and_key(tmp_path, capsys, extra, key, hint):
    path = tmp_path / "bad.toml"
    path.write_text(F03.read_text() + "\n" + extra)  # after the scenario's own fault: faults[1]
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and key in err and hint in err


@pytest.mark.parametrize("question", ["AF", "AN"])
def test_a_drop_as_either_logon_question_arrives_is_asked_again_and_finds_the_desk_trade(tmp_path, question):
    """disconnect_on_status cuts the session at the AF or at the AN (f70 cuts at the AF): either way the
    answers are lost, the next logon asks again and the position mismatch is found."""
    f70 = ROOT / "scenarios" / "f70_second_drop_during_reconciliation.toml"
    text = f70.read_text().replace('extends = "', f'extends = "{ROOT / "scenarios"}/')
    path = tmp_path / f"cut_at_{question}.toml"
    path.write_text(text.replace('on_message = "AF"', f'on_message = "{question}"'))
    rep = runner.run(scenario.load(path), 1).report
    assert rep["verdict"] == "pass", [x for x in rep["expectations"] if x["verdict"] != "pass"]
    assert {"status_reasked", "position_mismatch"} <= set(rep["coverage"])
    assert rep["faults"] and all(hits == 1 for key, hits in rep["faults"].items() if "disconnect_on_status" in key)


def test_cancel_on_disconnect_is_the_venues_unless_the_fault_says_otherwise(tmp_path):
    from simulator import scenario
    from tests.conftest import ROOT

    text = (ROOT / "scenarios" / "f12_disconnect_cancel_on_disconnect.toml").read_text()
    text = text.replace("cancel_on_disconnect = true\n", "")
    plain = tmp_path / "venue_default.toml"
    plain.write_text(text)
    sc = scenario.load(plain)
    assert all(f.cancel_on_disconnect is None for f in sc.faults) and sc.venues["COMEX"].cancel_on_disconnect
    off = tmp_path / "venue_off.toml"
    off.write_text(text + "\n[venues.COMEX]\ncancel_on_disconnect = false\n")  # over the base's COMEX
    assert not scenario.load(off).venues["COMEX"].cancel_on_disconnect


def test_an_injected_duplicate_report_is_a_poss_resend_under_a_new_sequence_number():
    """FIX marks an application message sent again by the application with PossResend (97=Y) under a
    new MsgSeqNum; PossDup (43=Y) is the session layer's, under the original number with 122."""
    sc = scenario.load(ROOT / "scenarios" / "f10_duplicate_reports.toml")
    result = runner.run(sc, 1)
    by_exec: dict[str, list[dict[int, str]]] = {}
    for raw in result.messages:
        if "\x0135=8\x01" in raw and "\x0117=" in raw:
            fields = dict((int(t), v) for t, _, v in (p.partition("=") for p in raw.split("\x01")[:-1]))
            by_exec.setdefault(fields[17], []).append(fields)
    twice = [msgs for msgs in by_exec.values() if len(msgs) > 1 and not any(m.get(43) == "Y" for m in msgs)]
    assert twice, "the fault must have sent a report twice"
    for first, again in (msgs[:2] for msgs in twice):
        assert 97 not in first and again[97] == "Y" and 43 not in again and again[34] != first[34]


@pytest.mark.parametrize("damage", ["checksum", "undecodable", "bad_content", "unknown_venue", "not_a_journal"])
def test_a_damaged_journal_is_refused_at_the_restart_and_left_as_it_was(damage):
    """Each kind of journal damage: the restarted process refuses it with the production reader's
    error (never cuts good records as a torn tail, never trades on it) and the file is untouched."""
    rep = runner.run(_with_damage(damage)).report
    (refused,) = rep["restarts_refused"]
    assert refused["journal_untouched"] and refused["damage"] == damage and not rep["restarts"]
    assert "journal_refused" in rep["coverage"] and rep["verdict"] == "pass"
    assert "damaged at byte" in refused["error"] or "not an xmc journal" in refused["error"]


def _with_damage(damage: str):
    import dataclasses

    sc = scenario.load(ROOT / "scenarios" / "f52_journal_checksum_damage_refuses_restart.toml")
    (fault,) = [f for f in sc.faults if f.kind == "crash_restart"]
    return dataclasses.replace(sc, faults=[dataclasses.replace(fault, journal_damage=damage)])


def test_journal_damage_is_only_for_a_restart(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(
        F03.read_text() + '\n[[faults]]\nkind = "disconnect"\nvenue = "COMEX"\nafter_s = 5\nuntil_s = 9\n'
        'journal_damage = "checksum"\n'
    )
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "faults[1].journal_damage" in err and "crash_restart" in err


def test_a_chase_that_skips_the_daily_order_limit_fails_invariant_8(monkeypatch):
    """f58 allows one HG order a day: a recovery order sent without the pre-trade limits (the core's
    `_risk` skipped) is a second HG order, which invariant 8 counts at the transport."""
    from unittest import mock

    from engine.core.engine_core import EngineCore

    path = ROOT / "scenarios" / "f58_daily_order_limit_refuses_the_chase.toml"
    assert runner.run(scenario.load(path), 1).report["invariants"]["8"]["status"] == "pass"
    original = EngineCore.recovery_order

    def unchecked(self, ep, leg, side, qty, price, now, purpose, check_slippage=True):
        with mock.patch.object(EngineCore, "_risk", lambda *a, **k: None):
            return original(self, ep, leg, side, qty, price, now, purpose, check_slippage)

    monkeypatch.setattr(EngineCore, "recovery_order", unchecked)
    inv = runner.run(scenario.load(path), 1).report["invariants"]["8"]
    assert inv["status"] == "fail" and "max_orders_per_day 1" in inv["first"]["detail"]


def test_a_desk_trade_needs_a_venue(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(F03.read_text() + '\n[[faults]]\nkind = "desk_trade"\nafter_s = 5\nlots = 2\n')
    assert main(["run", str(path)]) == 2
    assert "faults[1].venue" in capsys.readouterr().err


def _chase_sized_from_the_wrong_side(original):
    def chase(self, core, ep, missing, now):
        flipped = {
            name: dataclasses.replace(book, bid_size=book.ask_size, ask_size=book.bid_size)
            for name, book in core.books.items()
        }
        saved, core.books = core.books, flipped
        try:
            return original(self, core, ep, missing, now)
        finally:
            core.books = saved

    return chase


def test_a_chase_sized_from_the_wrong_side_of_a_one_sided_thin_book_fails_invariant_13(monkeypatch):
    """f60: offers one lot deep, bids deep. A chase that reads the depth of the side it does not take
    pays (or skips) the liquidity step wrongly; invariant 13 recomputes from the right side."""
    path = ROOT / "scenarios" / "f60_one_sided_thin_far_book.toml"
    assert runner.run(scenario.load(path), 1).report["invariants"]["13"]["status"] == "pass"
    monkeypatch.setattr(ChaseThenUnwind, "_chase", _chase_sized_from_the_wrong_side(ChaseThenUnwind._chase))
    inv = runner.run(scenario.load(path), 1).report["invariants"]["13"]
    assert inv["status"] == "fail" and "the schedule gives" in inv["first"]["detail"]


def test_each_side_of_the_background_book_has_its_own_depth(tmp_path, capsys):
    sc = scenario.load(ROOT / "scenarios" / "f60_one_sided_thin_far_book.toml")
    liq = sc.venues["COMEX"].liquidity
    assert liq.ask_sizes == (1, 1) and liq.bid_sizes == (10, 25)
    assert scenario.load(ROOT / "scenarios" / "cu_hg_spread.toml").venues["COMEX"].liquidity.ask_sizes == (5, 25)
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "cu_hg_spread.toml"\n[venues.COMEX.liquidity]\nbid_size_min = 9\nbid_size_max = 3\n')
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "venues.COMEX.liquidity.bid_size_max" in err and str(bad) in err and "Traceback" not in err


def test_a_position_check_that_counts_only_fills_breaches_the_limit_in_f62(monkeypatch):
    """f62: signals faster than a COMEX round trip; the HG limit holds one clip. Counting the orders
    still in flight is what keeps HG inside it: without them invariant 8 (risk limits) fails."""
    path = ROOT / "scenarios" / "f62_risk_position_counts_orders_in_flight.toml"
    assert runner.run(scenario.load(path), 1).report["invariants"]["8"]["status"] == "pass"
    original = engine_core.check_order
    monkeypatch.setattr(
        engine_core,
        "check_order",
        lambda limits, inst, sign, qty, price, ref, fx, pos, open_buy, open_sell: original(
            limits, inst, sign, qty, price, ref, fx, pos, 0.0, 0.0
        ),
    )
    inv = runner.run(scenario.load(path), 1).report["invariants"]["8"]
    assert inv["status"] == "fail" and "HG" in inv["first"]["detail"]


def test_a_chase_that_skips_the_slippage_limit_fails_invariant_8(monkeypatch):
    """f65 sets max_slippage_ticks at the first chase's payup: a second chase pays one tick more and is
    refused. An engine that skipped the slippage check sends it, and invariant 8 measures it."""
    path = ROOT / "scenarios" / "f65_chase_slippage_at_its_limit.toml"
    assert runner.run(scenario.load(path), 1).report["invariants"]["8"]["status"] == "pass"
    original = engine_core.EngineCore.recovery_order
    monkeypatch.setattr(
        engine_core.EngineCore,
        "recovery_order",
        lambda self, ep, leg, side, qty, price, now, purpose, check_slippage=True: original(
            self, ep, leg, side, qty, price, now, purpose, check_slippage=False
        ),
    )
    inv = runner.run(scenario.load(path), 1).report["invariants"]["8"]
    assert inv["status"] == "fail" and "max_slippage_ticks" in inv["first"]["detail"]


def test_a_position_service_of_its_own_lets_the_position_answer_overtake_the_order_answers():
    """position_delay_ms (f78): COMEX's AP reaches the standby before the AF's last line, and the positions
    are compared only after that line (the adopted chase's fill) is in: no false mismatch."""
    result = runner.run(scenario.load(ROOT / "scenarios" / "f78_position_answer_overtakes_the_order_answers.toml"), 1)
    assert result.report["verdict"] == "pass"
    comex = [m for m in result.messages if "\x0149=COMEX\x01" in m]
    ap = next(i for i, m in enumerate(comex) if "\x0135=AP\x01" in m)
    last_af_line = next(i for i, m in enumerate(comex) if "\x01912=Y\x01" in m and "\x01584=MS-COMEX-E2" in m)
    assert ap < last_af_line
    stages = [(row.stage, row.ts) for row in result.audit]
    adopted = next(ts for stage, ts in stages if stage == "adopted")
    compared = next(ts for stage, ts in stages if stage == "positions_reconciled" and ts >= adopted - 1e-9)
    assert compared >= adopted and "position_mismatch" not in {s for s, _ in stages}


@pytest.mark.parametrize(
    "name,lost",
    [("f51_failover_adopts_a_working_chase", False), ("f76_failover_adopts_a_chase_seen_only_in_mass_status", True)],
)
def test_a_primary_crash_with_reports_lost_leaves_the_standby_only_the_mass_status_answer(name, lost):
    """primary_crash with reports_lost (f76): the reports of the order the primary died on are never resent
    to the standby, which learns of it from its AF answer alone; without it (f51) they are resent (PossDup)."""
    result = runner.run(scenario.load(ROOT / "scenarios" / f"{name}.toml"), 1)
    assert result.report["verdict"] == "pass"
    adopted = next(row.cl_ord_id for row in result.audit if row.stage == "adopted")
    resent = [m for m in result.messages if f"\x0111={adopted}\x01" in m and "\x0143=Y\x01" in m]
    answered = [m for m in result.messages if f"\x0111={adopted}\x01" in m and "\x01150=I\x01" in m]
    assert answered and bool(resent) is not lost


def test_a_position_check_that_counts_the_other_instruments_orders_fails_invariant_14_in_f82(monkeypatch):
    """f82: far SHFE, the HG limit holds one clip, signals both ways faster than a CU round trip. An
    entry the other way while a CU order is in flight keeps HG's worst case within its limit; an engine
    that counted that CU order's lots against HG refuses it, and invariant 14 recomputes the worst case
    over HG's own orders and finds the refusal false."""
    path = ROOT / "scenarios" / "f82_risk_position_counts_only_its_own_instrument.toml"
    assert runner.run(scenario.load(path), 1).report["invariants"]["14"]["status"] == "pass"
    original = engine_core.EngineCore._risk

    def counts_every_instrument(self, inst, side, qty, price, fx_rate):
        other = [o for o in self.orders.values() if o.instrument != inst.name and not o.done]
        with monkeypatch.context() as m:
            m.setattr(
                engine_core,
                "check_order",
                lambda limits, i, sign, q, p, ref, fx, pos, open_buy, open_sell: risk.check_order(
                    limits,
                    i,
                    sign,
                    q,
                    p,
                    ref,
                    fx,
                    pos,
                    open_buy + sum(o.leaves_qty for o in other if o.side == "1"),
                    open_sell + sum(o.leaves_qty for o in other if o.side != "1"),
                ),
            )
            return original(self, inst, side, qty, price, fx_rate)

    monkeypatch.setattr(engine_core.EngineCore, "_risk", counts_every_instrument)
    inv = runner.run(scenario.load(path), 1).report["invariants"]["14"]
    assert (
        inv["status"] == "fail"
        and "max_position_lots" in inv["first"]["detail"]
        and "within max_position_lots 2" in inv["first"]["detail"]
    )


def test_an_order_size_refusal_within_the_limit_fails_invariant_14(monkeypatch):
    """f42 refuses entries larger than max_order_lots (invariant 14 passes: each breaks it); an engine
    that refused every order as too large is caught on the first one that is not."""
    path = ROOT / "scenarios" / "f42_risk_order_size_refuses_entries.toml"
    assert runner.run(scenario.load(path), 1).report["invariants"]["14"]["status"] == "pass"
    monkeypatch.setattr(
        engine_core,
        "check_order",
        lambda limits, inst, sign, qty, *rest: engine_core.Breach("max_order_lots", f"{qty} lots"),
    )
    inv = runner.run(scenario.load(path), 1).report["invariants"]["14"]
    assert inv["status"] == "fail" and "is within max_order_lots" in inv["first"]["detail"]


def test_an_answer_taken_as_complete_at_its_first_foreign_line_pages_the_desk_in_f83(monkeypatch):
    """f83: COMEX's position report overtakes its AF answer of several orders the standby does not know.
    Taking the answer as complete at a foreign line before the last compares the positions without the
    later lines' fills: a false mismatch that pages the desk."""
    from engine.core.reconciliation import Reconciliation

    path = ROOT / "scenarios" / "f83_failover_positions_wait_for_every_foreign_line.toml"
    assert runner.run(scenario.load(path), 1).report["verdict"] == "pass"
    original = Reconciliation.on_foreign_report

    def complete_at_any_line(self, r, now):
        out = original(self, r, now)
        if r.mass_status_id and not r.last_report:
            out += self.answered(r.venue, r.mass_status_id, now)
        return out

    monkeypatch.setattr(Reconciliation, "on_foreign_report", complete_at_any_line)
    report = runner.run(scenario.load(path), 1).report
    failed = {e["key"] for e in report["expectations"] if e["verdict"] == "fail"}
    assert "max_alerts" in failed


@pytest.mark.parametrize(
    "name,wrong",
    [
        ("cu_hg_round_down", lambda lots_a, ratio, rule, a, b: sizing.align(lots_a, ratio, "nearest", a, b)),
        (
            "cu_hg_round_down_exact",
            lambda lots_a, ratio, rule, a, b: sizing.align(lots_a, (ratio[0], ratio[1] - 1e-6), rule, a, b),
        ),
        (
            "cu_hg_round_up_exact",
            lambda lots_a, ratio, rule, a, b: sizing.align(lots_a, (ratio[0], ratio[1] + 1e-6), rule, a, b),
        ),
    ],
)
def test_the_rounding_scenarios_pin_leg_b(monkeypatch, name, wrong):
    """Down where it matters (1.6 HG lots: one, not nearest's two), and both rules where the ratio divides
    exactly (a quotient a hair off 2 must not round to 1 or 3): leg_lots fails on each wrong sizing."""
    path = ROOT / "scenarios" / f"{name}.toml"
    assert runner.run(scenario.load(path), 1).report["verdict"] == "pass"
    monkeypatch.setattr(engine_core, "align", wrong)
    report = runner.run(scenario.load(path), 1).report
    assert "leg_lots" in {e["key"] for e in report["expectations"] if e["verdict"] == "fail"}


@pytest.mark.parametrize("name", ["cu_hg_spread", "cu_hg_ratio", "cu_hg_counter_price", "cu_calendar_spread"])
def test_invariant_15_recomputes_every_kind_of_signal_and_passes_the_engines(name):
    inv = runner.run(scenario.load(ROOT / "scenarios" / f"{name}.toml"), 1).report["invariants"]["15"]
    assert inv["status"] == "pass"


def _planted_trigger(monkeypatch, defect: str) -> None:
    """A trigger that computes or fires wrongly in one way (engine.core.trigger), for invariant 15."""
    from engine.core import trigger as trig

    if defect == "fx_ignored":  # leg B's USD price taken as CNY: no FX conversion
        monkeypatch.setattr(trig, "in_common_unit", lambda price, units_per_tonne, fx: price * units_per_tonne)
    elif defect == "counter_price_at_mids":  # the executable spread taken at the mids, not the touches
        real_values = trig.TriggerEvaluator.values

        def at_mids(self, books):
            if self.t.kind != "counter_price":
                return real_values(self, books)
            mids = {
                n: trig.TopOfBook(b.mid, b.bid_size, b.mid, b.ask_size, b.ts) if b.mid is not None else b
                for n, b in books.items()
            }
            return real_values(self, mids)

        monkeypatch.setattr(trig.TriggerEvaluator, "values", at_mids)
    elif defect == "fx_of_one_currency_not_one":  # a pair with no FX instrument converted at 2, not 1
        real_fx = trig.TriggerEvaluator.fx_rate
        monkeypatch.setattr(
            trig.TriggerEvaluator, "fx_rate", lambda self, books: 2.0 if self.fx is None else real_fx(self, books)
        )
    elif defect == "never_disarms":  # a side stays armed after firing: no hysteresis
        monkeypatch.setattr(trig.TriggerEvaluator, "disarm", lambda self, side: None)
    elif defect == "sides_swapped":  # a crossing of one side opens the other side's episode
        real_evaluate = trig.TriggerEvaluator.evaluate

        def swapped(self, books, now):
            sig = real_evaluate(self, books, now)
            if sig is None:
                return None
            other = trig.BUY_SPREAD if sig.side == trig.SELL_SPREAD else trig.SELL_SPREAD
            return trig.Signal(other, sig.value, sig.price_a, sig.price_b, sig.fx_rate)

        monkeypatch.setattr(trig.TriggerEvaluator, "evaluate", swapped)
    elif defect == "side_misnamed":  # the sell side's episode recorded under a side the trigger has not
        real_evaluate = trig.TriggerEvaluator.evaluate

        def misnamed(self, books, now):
            sig = real_evaluate(self, books, now)
            if sig is None or sig.side != trig.SELL_SPREAD:
                return sig
            return trig.Signal("sell", sig.value, sig.price_a, sig.price_b, sig.fx_rate)

        monkeypatch.setattr(trig.TriggerEvaluator, "evaluate", misnamed)
    elif defect == "priced_from_mids":  # the right signal, its legs priced from the mids, not the touches
        real_evaluate = trig.TriggerEvaluator.evaluate

        def at_mids(self, books, now):
            sig = real_evaluate(self, books, now)
            if sig is None:
                return None
            return trig.Signal(sig.side, sig.value, books[self.a.name].mid, books[self.b.name].mid, sig.fx_rate)

        monkeypatch.setattr(trig.TriggerEvaluator, "evaluate", at_mids)
    elif defect == "far_leg_on_the_near_legs_side":  # both legs buy (or both sell): no spread at all
        from engine.core import engine_core

        real_leg = engine_core.Leg
        monkeypatch.setattr(
            engine_core,
            "Leg",
            lambda name, inst, side, lots, tonnes: real_leg(
                name, inst, side if name == "A" else ("1" if side == "2" else "2"), lots, tonnes
            ),
        )


@pytest.mark.parametrize(
    "name,defect,says",
    [
        ("cu_hg_spread", "priced_from_mids", "not the touches"),
        ("cu_hg_spread", "far_leg_on_the_near_legs_side", "it sells A and buys B, or the reverse"),
        ("cu_hg_spread", "fx_ignored", "not past its threshold"),
        ("cu_hg_counter_price", "counter_price_at_mids", "not the quotes'"),
        ("cu_hg_spread", "never_disarms", "without its signal retreating"),
        ("cu_calendar_spread", "fx_of_one_currency_not_one", "not past its threshold"),
        ("cu_hg_spread", "sides_swapped", "not past its threshold"),
        ("cu_hg_spread", "side_misnamed", "which is no side"),
    ],
)
def test_a_trigger_that_computes_or_fires_wrongly_fails_invariant_15(monkeypatch, name, defect, says):
    _planted_trigger(monkeypatch, defect)
    inv = runner.run(scenario.load(ROOT / "scenarios" / f"{name}.toml"), 1).report["invariants"]["15"]
    assert inv["status"] == "fail" and says in inv["first"]["detail"], inv


def _planted_deaf_trigger(monkeypatch, defect: str) -> None:
    """A trigger that fails to fire, or miscounts what it skipped, in one way, for invariant 16."""
    from engine.core import trigger as trig

    real_init = trig.TriggerEvaluator.__init__
    real_evaluate = trig.TriggerEvaluator.evaluate
    if defect == "sell_starts_disarmed":

        def init(self, strategy, instruments):
            real_init(self, strategy, instruments)
            self.armed[trig.SELL_SPREAD] = False

        monkeypatch.setattr(trig.TriggerEvaluator, "__init__", init)
    elif defect == "rearms_at_twice_the_hysteresis":  # a side that fired re-arms only far past its threshold

        def init(self, strategy, instruments):
            real_init(self, strategy, instruments)
            self._hysteresis = 2 * self._hysteresis  # the threshold terms it read from the strategy

        monkeypatch.setattr(trig.TriggerEvaluator, "__init__", init)
    elif defect == "stale_skips_miscounted":

        def init(self, strategy, instruments):
            real_init(self, strategy, instruments)
            self.stale_skips = 1

        monkeypatch.setattr(trig.TriggerEvaluator, "__init__", init)
    elif defect == "buy_side_deaf":  # the buy side's crossing is never looked at

        def deaf(self, books, now):
            sig = real_evaluate(self, books, now)
            return None if sig is not None and sig.side == trig.BUY_SPREAD else sig

        monkeypatch.setattr(trig.TriggerEvaluator, "evaluate", deaf)


@pytest.mark.parametrize("name", ["cu_hg_spread", "cu_hg_ratio", "cu_hg_counter_price", "f14_stale_market_data"])
def test_invariant_16_finds_no_missed_signal_in_the_engines_runs(name):
    inv = runner.run(scenario.load(ROOT / "scenarios" / f"{name}.toml"), 1).report["invariants"]["16"]
    assert inv["status"] == "pass", inv


@pytest.mark.parametrize(
    "name,defect,says",
    [
        ("cu_hg_spread_opens_past_threshold", "sell_starts_disarmed", "put sell_spread at"),
        ("cu_hg_spread", "buy_side_deaf", "put buy_spread at"),
        ("cu_hg_counter_price", "rearms_at_twice_the_hysteresis", "no episode opened"),
        ("cu_hg_spread", "stale_skips_miscounted", "the quotes give 0"),
    ],
)
def test_a_trigger_that_misses_a_signal_fails_invariant_16(monkeypatch, name, defect, says):
    """The converse of invariant 15: every quote the engine was free to act on that puts an armed side
    past its threshold opens an episode, and the trigger's count of quotes skipped as stale is the
    quotes' own."""
    _planted_deaf_trigger(monkeypatch, defect)
    inv = runner.run(scenario.load(ROOT / "scenarios" / f"{name}.toml"), 1).report["invariants"]["16"]
    assert inv["status"] == "fail" and says in inv["first"]["detail"], inv


@pytest.mark.parametrize(
    "defect,seed,invariant",
    [("fires_only_strictly_past", 1, "16"), ("rearms_on_the_boundary", 3, "15")],
)
def test_a_trigger_off_by_its_boundaries_fails_on_the_calendar_spread(monkeypatch, defect, seed, invariant):
    """With no FX and prices on ticks the calendar spread lands exactly on its thresholds: a side fires
    at sell_above / buy_below itself, and re-arms only strictly past the hysteresis."""
    from engine.core import trigger as trig

    real = trig.TriggerEvaluator.evaluate
    if defect == "fires_only_strictly_past":

        def evaluate(self, books, now):
            sig = real(self, books, now)
            at = self.t.sell_above if sig is not None and sig.side == trig.SELL_SPREAD else self.t.buy_below
            return None if sig is not None and sig.value == at else sig

    else:

        def evaluate(self, books, now):
            if self.inputs_fresh(books, now) is None:
                vals = self.values(books)
                if vals[trig.SELL_SPREAD] == self.t.sell_above - self.t.hysteresis:
                    self.armed[trig.SELL_SPREAD] = True
                if vals[trig.BUY_SPREAD] == self.t.buy_below + self.t.hysteresis:
                    self.armed[trig.BUY_SPREAD] = True
            return real(self, books, now)

    path = ROOT / "scenarios" / "cu_calendar_spread.toml"
    assert runner.run(scenario.load(path), seed).report["verdict"] == "pass"
    monkeypatch.setattr(trig.TriggerEvaluator, "evaluate", evaluate)
    inv = runner.run(scenario.load(path), seed).report["invariants"][invariant]
    assert inv["status"] == "fail", inv


def test_a_trigger_that_ignores_the_fx_rates_age_fails_invariant_11(monkeypatch):
    """f85 stops the USD/CNY feed while both copper books stay fresh: a staleness guard that looks at
    the legs only decides on a rate older than its max_quote_age."""
    from engine.core import trigger as trig

    path = ROOT / "scenarios" / "f85_fx_feed_stops.toml"
    real = trig.TriggerEvaluator.inputs_fresh

    def legs_only(self, books, now):
        inputs, self._inputs = self._inputs, self._inputs[:2]  # leg A's and leg B's books, not the rate's
        try:
            return real(self, books, now)
        finally:
            self._inputs = inputs

    monkeypatch.setattr(trig.TriggerEvaluator, "inputs_fresh", legs_only)
    inv = runner.run(scenario.load(path), 1).report["invariants"]["11"]
    assert inv["status"] == "fail" and "USDCNY quote" in inv["first"]["detail"], inv


def _planted_amend(monkeypatch, defect: str) -> None:
    """Amending (limit mode) that strays from its schedule in one way, for invariant 13."""
    from engine.core import amending, order

    if defect == "counted_from_one":  # each order starts as if amended once: ids and payups one step on
        real_init = order.ChildOrder.__init__

        def init(self, *args, **kwargs):
            real_init(self, *args, **kwargs)
            self.replaces = 1

        monkeypatch.setattr(order.ChildOrder, "__init__", init)
    elif defect in ("double_step", "one_amend_too_many"):
        real_amend = amending.Amending.amend

        def amend(self, ep, now):
            ex = self.core.strategy.execution
            wrong = (
                dataclasses.replace(ex, amend_step_ticks=2 * ex.amend_step_ticks)
                if defect == "double_step"
                else dataclasses.replace(ex, max_amends=ex.max_amends + 1)
            )
            right, self.core.strategy = self.core.strategy, dataclasses.replace(self.core.strategy, execution=wrong)
            try:
                return real_amend(self, ep, now)
            finally:
                self.core.strategy = right

        monkeypatch.setattr(amending.Amending, "amend", amend)


@pytest.mark.parametrize(
    "defect,max_amends,says",
    [
        ("counted_from_one", 3, "named M2"),
        ("double_step", 3, "the schedule gives"),
        ("one_amend_too_many", 1, "amend 2 of"),
    ],
)
def test_amends_off_their_schedule_fail_invariant_13(monkeypatch, tmp_path, defect, max_amends, says):
    """The k-th replace of a resting order is named M<k>, k <= max_amends, priced at the touch plus
    payup_ticks plus amend_step_ticks x k (or one step past the order's price where that is no better);
    cu_hg_limit_amend, with one amend allowed for the one too many (its lagging legs use that one up)."""
    path = tmp_path / "amends.toml"
    path.write_text(
        'extends = "cu_hg_limit_amend.toml"\n[scenario]\nname = "amends"\ndescription = "amends"\n'
        f"[strategy.execution]\nmax_amends = {max_amends}\n"
    )
    assert runner.run(scenario.load(path), 1).report["invariants"]["13"]["status"] == "pass"
    _planted_amend(monkeypatch, defect)
    inv = runner.run(scenario.load(path), 1).report["invariants"]["13"]
    assert inv["status"] == "fail" and says in inv["first"]["detail"], inv


def test_an_order_machine_that_misreads_a_venue_report_fails_invariant_7(monkeypatch):
    """The simulated venues report truly: a status mismatch the engine raises is its own misreading.
    An order table that keeps a part-filled order New disagrees with every partial fill's OrdStatus."""
    from engine.core import order

    path = ROOT / "scenarios" / "f06_partial_fill_rest_working.toml"
    assert runner.run(scenario.load(path), 1).report["invariants"]["7"]["status"] == "pass"
    table = {state: dict(moves) for state, moves in order.TRANSITIONS.items()}
    table[order.S.NEW][order.E.PARTIAL_FILL] = order.S.NEW
    monkeypatch.setattr(order, "TRANSITIONS", table)
    rep = runner.run(scenario.load(path), 1).report
    assert rep["anomalies"]["by_kind"].get("status_mismatch", 0) >= 1
    assert rep["invariants"]["7"]["status"] == "fail" and "OrdStatus=1" in rep["invariants"]["7"]["first"]["detail"]


@pytest.mark.parametrize("leg,outcome", [("A", "BALANCED"), ("B", "BALANCED"), ("A", "ABORTED"), ("B", "ABORTED")])
def test_a_leg_one_lot_off_taken_as_done_fails_invariant_3_in_f84(monkeypatch, leg, outcome):
    """f84 settles episodes with a leg exactly one lot short of its target, or one lot above nothing, on
    each leg. An engine that took a leg within one lot of its target as complete (or of zero as flat)
    ends such an episode BALANCED (or ABORTED) with a lot naked; invariant 3 recomputes the outcome from
    the legs' fills."""
    from engine.core import episode as episode_module

    path = ROOT / "scenarios" / "f84_partial_leaves_one_lot_short.toml"
    assert runner.run(scenario.load(path), 1).report["invariants"]["3"]["status"] == "pass"
    E = episode_module.EpisodeEvent

    def settle_event(self):
        if self.working:
            return None
        near = {n: (1.5 if n == leg else 1e-9) for n in self.legs}
        if outcome == "BALANCED":
            if all(abs(lg.filled - lg.target) < near[n] for n, lg in self.legs.items()):
                return E.DONE_BALANCED
        elif all(abs(lg.filled - lg.target) < 1e-9 for lg in self.legs.values()):
            return E.DONE_BALANCED
        if outcome == "ABORTED" and all(abs(lg.filled) < near[n] for n, lg in self.legs.items()):
            return E.DONE_FLAT
        if outcome == "BALANCED" and all(abs(lg.filled) < 1e-9 for lg in self.legs.values()):
            return E.DONE_FLAT
        return E.DONE_LEGGED

    monkeypatch.setattr(episode_module.Episode, "settle_event", settle_event)
    inv = runner.run(scenario.load(path), 1).report["invariants"]["3"]
    says = "short of its target" if outcome == "BALANCED" else "not flat"
    assert inv["status"] == "fail" and says in inv["first"]["detail"], inv


def test_invariant_16_after_a_takeover_starts_from_the_quotes_the_new_core_holds(monkeypatch):
    """A takeover node may decide on the quotes replication gave it, before its own quote of every input
    arrives: the checker starts from those books, and the episode it opens so counts as opened (not a
    missed signal), although invariant 15 cannot judge it until the node's own quotes arrive."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import Quote
    from simulator.checkers import InvariantChecker

    cfg = scenario.load(ROOT / "scenarios" / "cu_hg_spread.toml").engine
    old, new = EngineCore(cfg), EngineCore(cfg)
    checker = InvariantChecker(old)
    for q in (Quote("HG", 4.4995, 10, 4.5005, 10), Quote("USDCNY", 7.0998, 1000, 7.1002, 1000)):
        new.handle(q, 1.0)  # replicated before the takeover (its venues not ready: nothing opens)
    assert not new.episodes
    checker.core = new
    assert checker.quote_at == {"HG": 1.0, "USDCNY": 1.0} and set(checker.held) == {"HG", "USDCNY"}
    monkeypatch.setattr(new.reconciliation, "venue_ready", lambda venue: True)  # reconciled
    cu = Quote("CU", 70790.0, 10, 70810.0, 10)  # CU/t 70,800 against ~70,438: the spread ~362 > sell_above 250
    new.handle(cu, 1.2)
    checker.after_event(1.2, cu, new)
    assert len(new.episodes) == 1 and checker.v[16].status == "pass", checker.v[16]


def test_a_session_that_is_down_gets_no_backlog_of_quotes_only_the_market_at_its_logon():
    """f12 cuts COMEX for seconds while HG moves every 100 ms: nothing of its market data is queued
    for the dead session (the gateway keeps execution reports, not quotes, which would arrive after
    the logon as if they were the market now); at the logon the engine is told once where HG is."""
    result = runner.run(scenario.load(ROOT / "scenarios" / "f12_disconnect_cancel_on_disconnect.toml"), 1)

    def fields(raw: str) -> dict[int, str]:
        return {int(t): v for t, _, v in (p.partition("=") for p in raw.split("\x01")[:-1])}

    from_comex = [f for f in map(fields, result.messages) if f[49] == "COMEX" and f[56] == "XMC"]
    logons = [f for f in from_comex if f[35] == "A"]
    assert len(logons) >= 2, "f12 must reconnect COMEX"
    at_logon = [f for f in from_comex if f[35] == "X" and f.get(43) != "Y" and f[52] == logons[1][52]]
    assert len(at_logon) == 1 and at_logon[0][262] == "MD-HG"


@given(st.lists(st.floats(min_value=0.0, max_value=9.0, allow_nan=False), min_size=2, max_size=60))
def test_messages_held_behind_a_slow_one_arrive_in_the_order_sent(send_times):
    """TCP never reorders: a message queued behind a slow one arrives when it does, after it. Every
    timeout's time is now + (arrival - now) in floating point, a hair either side of the arrival, so
    due-together messages came out shuffled (found as a replication cut's held events reaching the
    standby out of order); a link delivers from a queue in the order sent."""
    import random

    import simpy

    from simulator.link import Latency, Link

    env = simpy.Environment()
    got: list[str] = []
    link = Link(env, "down", Latency("constant", 0.001), random.Random(1), got.append)
    link.latency = Latency("constant", 10.0)  # the first message is slow: the rest queue behind it
    sent: list[str] = []

    def sender():
        for i, t in enumerate(sorted(send_times)):
            yield env.timeout(max(0.0, t - env.now))
            sent.append(f"m{i}")
            link.send(f"m{i}")
            link.latency = Latency("constant", 0.001 * (1 + i % 3))

    env.process(sender())
    env.run()
    assert got == sent


@pytest.mark.parametrize(
    "name", ["crash_on_order_while_the_process_is_down", "crash_on_order_while_the_node_in_charge_alone_is_down"]
)
def test_a_crash_that_finds_the_process_down_is_skipped_and_reported(name):
    """An order the dead process had sent strikes a crash_on_order as it reaches its venue, after another
    crash killed the engine (a single node; the standby left in charge alone of a pair): one death, one
    restart (a second restart from the journal the first had cut and reopened synced a closed file and
    killed the run), and the report says so."""
    rep = runner.run(scenario.load(ROOT / "tests" / "regressions" / f"{name}.toml")).report
    assert rep["verdict"] == "pass" and len(rep["restarts"]) == 1
    assert [c["fault"] for c in rep["crashes_skipped"]] == ["crash_on_order"]


@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 30)).map(lambda p: (p[0] / 4, (p[0] + p[1]) / 4)),
        max_size=12,
    )
)
def test_invariant_1_counts_each_stretch_of_slow_answers_once(spans):
    """The legged-time allowance adds the time covered by the slow answers' waits: overlapping waits (one
    outage seen by an order and its cancel) count once, waits in turn (two outages) each count. Checked
    against the measure taken on the quarter-unit grid the spans are drawn on."""
    from simulator.checkers import _union_length

    covered = sum(1 for k in range(0, 90) if any(a <= k / 4 and k / 4 + 0.25 <= b for a, b in spans))
    assert _union_length(sorted(spans)) == pytest.approx(covered / 4)


def _disjoint(gaps_and_lengths):
    """Spans laid end to end on the quarter-unit grid, each after its gap: disjoint and sorted by construction."""
    spans, at = [], 0
    for gap, length in gaps_and_lengths:
        spans.append(((at + gap) / 4, (at + gap + length) / 4))
        at += gap + length
    return spans


SPANS = st.lists(st.tuples(st.integers(1, 10), st.integers(1, 10)), max_size=6).map(_disjoint)


@given(SPANS, SPANS)
def test_invariant_1_excuses_only_the_time_both_kinds_of_venue_were_down(one, other):
    """The stretches in which a short leg's venue and a filled leg's venue were both down are the overlap
    of their outages: checked against the quarter-unit grid the spans are drawn on."""
    from simulator.checkers import _overlap

    both = _overlap(one, other)
    grid = [k / 4 for k in range(0, 130)]
    inside = lambda spans, t: any(a <= t and t + 0.25 <= b for a, b in spans)  # noqa: E731
    assert sum(b - a for a, b in both) == pytest.approx(sum(0.25 for t in grid if inside(one, t) and inside(other, t)))
    assert all(a < b for a, b in both) and both == sorted(both)


def test_invariant_1_fails_past_the_hard_naked_limit(config):
    """Naked tonnes past max_naked_tonnes fail invariant 1 at once, whatever the legged clock says: the
    engine's entry check keeps every run of the library below it, so only a state made here shows it."""
    import dataclasses

    from engine.core.engine_core import EngineCore
    from engine.core.events import SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    core = EngineCore(config)
    assert [a for a in fire(core) if isinstance(a, SendOrder)]
    (ep,) = core.active.values()
    checker = InvariantChecker(core)
    ep.legs["A"].orders[0].cum_qty = ep.legs["A"].target  # the near leg filled, the far one not yet: 25 t naked
    checker.after_event(0.01)
    assert checker.v[1].status != "fail"  # within the 60 t hard limit
    for limit, t in ((25.0, 0.02), (24.5, 0.03)):  # exactly at the limit, then half a tonne past it
        core.cfg = dataclasses.replace(core.cfg, risk=dataclasses.replace(core.cfg.risk, max_naked_tonnes=limit))
        checker.after_event(t)
    v = checker.v[1]
    assert v.status == "fail" and v.first["t"] == 0.03 and "25.00 t naked > hard limit 24.5 t" in v.first["detail"]


def test_invariant_1_hears_each_request_answered_by_its_own_kind_of_report(config):
    """Found by mutating after_event (no test failed): a resting order is answered by its acknowledgement,
    an IOC only by its outcome (an ack leaves it working), a status question ("?" + the order's ClOrdID)
    only by a report of ExecType I for that order, and any of them by a BusinessMessageReject refusing it
    unprocessed; each answer records its round trip from the send."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import BusinessReject, SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import report

    checker = InvariantChecker(EngineCore(config))

    def order(cl_ord_id: str, tif: str) -> SendOrder:
        checker.on_send(1.0, "CU", cl_ord_id, "E1-000001", 5, 70010.0, "1", immediate=tif == "3")
        return SendOrder("SHFE", cl_ord_id, "CU", "cu2603", "1", 5, 70010.0, "2", tif, "ACC", "E1-000001")

    resting, ioc = order("E1-000001A1", "0"), order("E1-000001A2R", "3")
    checker.on_ask(1.0, "?E1-000001A1", "E1-000001")
    checker.after_event(1.25, report(resting, "X1", "0", "0", 0))
    assert set(checker.awaiting) == {"E1-000001A2R", "?E1-000001A1"}  # its question is not answered by the ack
    checker.after_event(1.5, report(ioc, "X2", "0", "0", 0))
    assert set(checker.awaiting) == {"E1-000001A2R", "?E1-000001A1"}  # an IOC acknowledged: its outcome to come
    checker.after_event(2.0, report(resting, "X3", "I", "0", 0))
    checker.after_event(2.5, report(ioc, "X4", "4", "4", 0))
    order("E1-000001B1", "0")
    checker.after_event(3.0, BusinessReject("SHFE", "D", "E1-000001B1", 3, "unsupported"))  # refused unprocessed
    assert not checker.awaiting
    assert checker.answers == {"E1-000001": [(1.25, 0.25), (2.0, 1.0), (2.5, 1.5), (3.0, 2.0)]}


def test_invariant_9_allows_exactly_the_attempts_the_recovery_section_gives(config):
    """An episode at max_unwind_attempts (or max_chase_attempts) is within its caps; one more fails 9."""
    core, checker, _, _ = _legged_beside(config, "0")  # a fatal reject: unwinding
    ep, rc = core.episodes["E1-000001"], core.strategy.recovery
    ep.chase_attempts, ep.unwind_attempts = rc.max_chase_attempts, rc.max_unwind_attempts
    checker.after_event(0.3)
    assert checker.v[9].status == "pass"
    ep.unwind_attempts += 1
    checker.after_event(0.4)
    v = checker.v[9]
    assert v.status == "fail" and v.first["detail"] == "chase 3, unwind 4 attempts" and v.first["t"] == 0.4


def _entered_beside(config):
    """A bare core beside its checker, the spread fired at 0 (`_fire_beside`). Returns the core, the
    checker, `feed(event, t)` handling an event in both and returning the orders it sent, and the two
    entry orders (A: CU on SHFE, B: HG on COMEX)."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import SendOrder
    from simulator.checkers import InvariantChecker

    core = EngineCore(config)
    checker = InvariantChecker(core)
    a, b = [x for x in _fire_beside(core, checker) if isinstance(x, SendOrder)]

    def feed(event, t: float) -> list:
        acts = core.handle(event, t)
        checker.after_event(t, event)
        return [x for x in acts if isinstance(x, SendOrder)]

    return core, checker, feed, a, b


def _legged_beside(config, reason=None):
    """`_entered_beside`, legged at 0.2: leg A filled at 0.1, leg B rejected at 0.2 (for `reason`; none: a
    chase follows). Returns the core, the checker, `feed` and the orders the reject brought."""
    from tests.conftest import report

    core, checker, feed, a, b = _entered_beside(config)
    feed(report(a, "X1", "F", "2", a.qty, a.qty, a.price), 0.1)
    return core, checker, feed, feed(report(b, "X2", "8", "8", 0, reason=reason), 0.2)


@pytest.mark.parametrize(("ends_at", "verdict"), [(1.4, "pass"), (2.0, "fail")])
def test_invariant_1_times_a_legged_spell_from_the_event_that_legged_it_to_the_one_that_ended_it(
    config, ends_at, verdict
):
    """Found by mutating the legged clock (no test failed): it starts on the event after which the engine
    holds the episode LEGGED, noting the short legs' and filled legs' venues then, runs through every
    event in between without restarting, and is judged on the event that ends the spell: 1.2 s legged
    is within the 0.8 s budget and one far round trip, 1.8 s is not."""
    from tests.conftest import report

    core, checker, feed, (chase,) = _legged_beside(config)
    assert checker.legged_since == {"E1-000001": 0.2}
    assert checker.legged_venues == {"E1-000001": (frozenset({"COMEX"}), frozenset({"SHFE"}))}
    assert checker.v[1].status == "pass"  # a legged episode within its hard limit
    for k in range(3, int(ends_at * 10)):
        checker.after_event(k / 10)  # the engine still LEGGED: the same spell
    assert checker.legged_since == {"E1-000001": 0.2}
    feed(report(chase, "X3", "F", "2", chase.qty, chase.qty, chase.price), ends_at)
    assert core.episodes["E1-000001"].state._value_ == "BALANCED" and not checker.legged_since
    v = checker.v[1]
    assert v.status == verdict
    if verdict == "fail":
        assert (v.first["t"], v.first["decision_id"]) == (2.0, "E1-000001")
        assert v.first["detail"].startswith("legged 1800 ms > budget 800 ms + 500 ms"), v.first


def test_invariant_1_notes_a_part_filled_leg_as_short_and_filled_at_the_spells_start(config):
    """A leg part-filled is short on its venue and filled on it too (one lot either way counts)."""
    from tests.conftest import report

    core, checker, feed, a, b = _entered_beside(config)
    events = [
        (0.1, report(a, "X1", "F", "1", a.qty - 1, a.qty - 1, a.price)),  # one lot short of 5
        (0.1, report(a, "X2", "4", "4", a.qty - 1)),  # the IOC's rest cancelled
        (0.2, report(b, "X3", "F", "1", 1, 1, b.price)),  # one lot of 2
        (0.2, report(b, "X4", "4", "4", 1)),
    ]
    for t, event in events:
        feed(event, t)
    assert core.episodes["E1-000001"].state._value_ == "LEGGED"
    both = frozenset({"SHFE", "COMEX"})
    assert checker.legged_venues == {"E1-000001": (both, both)}


@pytest.mark.parametrize("how", ["time", "attempts", "fatal_reject"])
def test_invariant_1_notes_when_the_chase_budget_ran_out_and_the_episode_turned_to_unwinding(config, how):
    """From then on a filled leg's venue down alone excuses the time (only an unwind can repair it): the
    moment is the first event after which the engine unwinds with the budget's time spent (the chase
    timer, exactly the budget after the spell began) or its attempts (three chases rejected at once),
    never while it still chases; an unwind chosen with the budget left (a fatal reject) is not one."""
    from engine.core.events import TimerFired
    from tests.conftest import report

    core, checker, feed, chases = _legged_beside(config, "0" if how == "fatal_reject" else None)
    ep = core.episodes["E1-000001"]
    if how == "time":
        checker.after_event(0.5)
        assert not checker.chase_spent
        feed(TimerFired("legged:E1-000001"), 0.6)
        spent = 0.6
    elif how == "attempts":
        (chase,) = chases
        for k, t in enumerate((0.25, 0.3), start=4):
            (chase,) = feed(report(chase, f"X{k}", "8", "8", 0), t)
            assert ep.mode._value_ == "chase" and not checker.chase_spent
        assert ep.chase_attempts == 3
        unwind = feed(report(chase, "X9", "8", "8", 0), 0.35)
        assert [o.cl_ord_id for o in unwind] == ["E1-000001A2U"]
        spent = 0.35
    else:
        assert [o.cl_ord_id for o in chases] == ["E1-000001A2U"]  # no chase: the unwind at once
        spent = None
    assert ep.state._value_ == "LEGGED" and ep.mode._value_ == "unwind"
    assert checker.chase_spent == ({} if spent is None else {"E1-000001": spent})


@pytest.mark.parametrize("defect", ["unwind_one_lot_too_many", "chases_past_max_attempts"])
def test_invariant_9_fails_on_a_flipped_leg_and_on_attempts_past_their_caps(defect):
    """An unwind of one lot too many flips the leg (9 and W9 name it); a chase that ignores
    max_chase_attempts goes one round too far (9 names the attempts, 13 the round)."""
    from unittest import mock

    from engine.core import recovery
    from tests.helpers import planted

    if defect == "unwind_one_lot_too_many":
        name, says, plant = "f03_reject_fatal_unwind", "leg A flipped: -1 lots", planted.unwind_one_lot_too_many()
    else:
        original = recovery.ChaseThenUnwind._stop_chasing

        def stop(core, ep, now):
            why = original(core, ep, now)
            return None if why and why.startswith("chase budget spent") else why

        name, says = "f59_near_leg_rejected_until_chase_attempts_run_out", "chase 4, unwind 0 attempts"
        plant = mock.patch.object(recovery.ChaseThenUnwind, "_stop_chasing", staticmethod(stop))
    sc = scenario.load(ROOT / "scenarios" / f"{name}.toml")
    assert runner.run(sc, 1).report["invariants"]["9"]["status"] == "pass"
    with plant:
        inv = runner.run(sc, 1).report["invariants"]
    assert inv["9"]["status"] == "fail" and says in inv["9"]["first"]["detail"], inv["9"]
    if defect == "chases_past_max_attempts":  # and invariant 13 counts the rounds on its own
        assert inv["13"]["status"] == "fail" and "chase round 4 of an episode allowed 3" in inv["13"]["first"]["detail"]


def test_invariants_8_and_10_judge_each_order_as_it_is_handed_to_the_transport(config):
    """An order of no decision (10), more lots than max_order_lots, a price with no reference to hold
    the band to, and a price beyond the band (8) each fail as the order leaves: the engine's own checks
    keep every library run clear of them, so the orders are handed to the checker here."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    core = EngineCore(config)
    a, _ = [x for x in fire(core) if isinstance(x, SendOrder)]
    ref = core.reference_price("CU")
    limit = config.risk.max_order_lots["CU"]

    def verdict(n: int, *args, fresh_core: EngineCore | None = None) -> tuple[str, str]:
        checker = InvariantChecker(fresh_core or core)
        checker.on_send(0.1, "CU", *args)
        v = checker.v[n]
        return v.status, v.first.get("detail", "") if v.first else ""

    assert verdict(8, "E1-000001A2R", a.decision_id, 1, ref, a.side)[0] == "pass"
    assert "belongs to no decision" in verdict(10, "E9-000009A1", "E9-000009", 1, ref)[1]
    assert f"lots > max_order_lots {limit}" in verdict(8, "E1-000001A2R", a.decision_id, limit + 1, ref, a.side)[1]
    far = ref * (1 + 2 * config.risk.price_band_pct / 100)
    assert "beyond" in verdict(8, "E1-000001A2R", a.decision_id, 1, far, a.side)[1]
    unquoted = EngineCore(config)
    unquoted.episodes = core.episodes
    assert "no reference price" in verdict(8, "E1-000001A2R", a.decision_id, 1, ref, a.side, fresh_core=unquoted)[1]


def test_invariants_6_10_and_13_fail_on_what_the_engine_never_does_in_the_library(config):
    """Each check fails on its violation handed to the checker directly (disabling any of them passed
    the suite): a fill of no lots on the audit trail (6); a second live order for one leg (10); a
    replace that names no order sent before, an amend with no touch to price it from, and a recovery
    order with no touch to price it from (13)."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import AuditRow, SendOrder
    from engine.core.trigger import TopOfBook
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    ex = dataclasses.replace(config.strategy.execution, max_amends=3)  # amends allowed, as in limit mode
    core = EngineCore(dataclasses.replace(config, strategy=dataclasses.replace(config.strategy, execution=ex)))
    a, _ = [x for x in fire(core) if isinstance(x, SendOrder)]
    ref = core.reference_price("CU")

    def first(n: int, act) -> str:
        checker = InvariantChecker(core)
        act(checker)
        v = checker.v[n]
        assert v.status == "fail", (n, v)
        return v.first["detail"]

    phantom = AuditRow(0, 0.1, "fill", a.decision_id, a.cl_ord_id, "CU", "ACC", a.side, 0.0, ref, "")
    assert "a fill on record that moved nothing" in first(6, lambda c: c.on_audit(phantom))
    # the entry A1 is still working: a chase of the same leg would be a second order for one intent
    assert "two orders for one intent" in first(
        10, lambda c: c.on_send(0.1, "CU", f"{a.decision_id}A2R", a.decision_id, 1, ref, a.side)
    )
    assert "names no order sent before" in first(
        13, lambda c: c.on_send(0.1, "CU", f"{a.decision_id}A9M1", a.decision_id, 1, ref, a.side, replace=True)
    )

    def amend_on_an_empty_side(c) -> None:
        c.on_send(0.1, "CU", a.cl_ord_id, a.decision_id, 5, ref, a.side)
        book = core.books["CU"]
        core.books["CU"] = TopOfBook(None, 0.0, None, 0.0, book.ts)
        try:
            c.on_send(0.2, "CU", f"{a.cl_ord_id}M1", a.decision_id, 5, ref, a.side, replace=True)
        finally:
            core.books["CU"] = book

    assert "an amend priced with no touch" in first(13, amend_on_an_empty_side)

    def chase_on_an_empty_side(c) -> None:
        book = core.books["CU"]
        core.books["CU"] = TopOfBook(None, 0.0, None, 0.0, book.ts)
        try:
            c.on_send(0.2, "CU", f"{a.decision_id}A2R", a.decision_id, 5, ref, a.side)
        finally:
            core.books["CU"] = book

    assert "a recovery order priced with no" in first(13, chase_on_an_empty_side)


def test_the_end_of_run_checks_fail_on_what_the_library_never_shows(config):
    """At the end of a run (or as a batch ends) each check fails on its violation made here (disabling
    any of them passed the suite): positions that differ from the venues' fills (6), a stage chain out of
    order (10), a BALANCED episode with no residual recorded (3), an order working at a venue that the
    engine does not know (12), and an order adopted from an earlier node with no audit row naming it (10)."""
    from engine.core.engine_core import EngineCore
    from engine.core.episode import EpisodeState
    from engine.core.events import SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    def made(change=None):
        core = EngineCore(config)
        orders = [x for x in fire(core) if isinstance(x, SendOrder)]
        (ep,) = core.active.values()
        if change is not None:
            change(core, ep)
        return core, orders

    def finished(n: int, change=None, venue_positions=None) -> str:
        core, _ = made(change)
        checker = InvariantChecker(core)
        checker.finish(1.0, [], venue_positions or {})
        v = checker.v[n]
        assert v.status == "fail", (n, v)
        return v.first["detail"]

    assert "!= venue fills" in finished(6, venue_positions={"CU": 5.0})
    assert "stage chain out of order" in finished(
        10, lambda core, ep: ep.stages.__setitem__("risk_check", ep.stages["signal"] - 1.0)
    )

    def balanced_without_residual(core, ep) -> None:
        ep.state = EpisodeState.BALANCED
        ep.stages["terminal"] = ep.stages["signal"]
        ep.residual_tonnes = None

    assert "residual not recorded" in finished(3, balanced_without_residual)
    core, (a, b) = made()
    checker = InvariantChecker(core)
    checker.reconcile_check(
        2.0, {a.cl_ord_id: ("0", 0.0, 0.0), b.cl_ord_id: ("0", 0.0, 0.0), "E7-000001A1": ("0", 0.0, 0.0)}
    )
    assert checker.v[12].status == "fail" and "E7-000001A1: working at the venue" in checker.v[12].first["detail"]
    core = EngineCore(config)
    checker = InvariantChecker(core)  # it judges the orders registered from here on
    a = next(x for x in fire(core) if isinstance(x, SendOrder))
    core.find_order(a.cl_ord_id).adopted = True
    checker.after_batch(0.5)
    assert checker.v[10].status == "fail" and "adopted from an earlier node" in checker.v[10].first["detail"]


def test_invariant_10_notes_each_order_once_when_its_batch_ends_and_holds_adopted_orders_to_the_audit(config):
    """Found by mutating after_batch (no test failed): the orders a batch registered and did not hand to
    the transport are noted at that batch's end, once (a later batch does not move the time the run's
    end names); an order handed needs no audit row here; an adopted order needs one of this node."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import Audit, SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire, report

    core = EngineCore(config)
    checker = InvariantChecker(core)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    checker.on_send(0.25, a.instrument, a.cl_ord_id, a.decision_id, a.qty, a.price, a.side)  # only A leaves
    checker.after_batch(0.5)
    core.handle(report(a, "X1", "F", "2", a.qty, a.qty, a.price), 0.6)
    # B rejected: its chase is handed; the batch after it looks at that order alone, not at B again
    (chase,) = [x for x in core.handle(report(b, "X2", "8", "8", 0), 0.7) if isinstance(x, SendOrder)]
    checker.on_send(0.7, chase.instrument, chase.cl_ord_id, chase.decision_id, chase.qty, chase.price, chase.side)
    checker.after_batch(0.75)
    assert checker.unsent == {b.cl_ord_id: (b.decision_id, 0.5)} and checker.v[10].status != "fail"
    checker.finish(1.0, [], {})
    v = checker.v[10]
    assert v.status == "fail" and (v.first["t"], v.first["decision_id"]) == (0.5, b.decision_id)
    assert (
        v.first["detail"] == f"order {b.cl_ord_id} registered by the engine as sent but never handed to the transport"
    )

    core = EngineCore(config)
    checker = InvariantChecker(core)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    for o in (a, b):  # both rebuilt as a takeover node's, only A named by one of its audit rows
        core.find_order(o.cl_ord_id).adopted = True
    checker.on_audit(Audit(0.4, "adopted", a.decision_id, a.cl_ord_id, "CU", "ACC", a.side, a.qty, a.price, ""))
    checker.after_batch(0.5)
    v = checker.v[10]
    assert v.status == "fail" and not checker.unsent
    assert v.first["detail"] == (
        f"order {b.cl_ord_id} adopted from an earlier node with no audit row of this node naming it"
    )


def test_invariant_10_after_a_takeover_counts_only_the_new_nodes_audit_rows_and_orders(config):
    """Found by mutating the checker's takeover hand-over (`core`'s setter; no test or scenario failed):
    an adopted order must be named by an audit row of the node that adopted it; the dead node's rows
    naming the same ClOrdID do not count. And what the new core holds when it takes over was sent by an
    earlier node: only the orders it registers from then on are looked at."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import Audit, SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    old = EngineCore(config)
    checker = InvariantChecker(old)
    a, b = [x for x in fire(old) if isinstance(x, SendOrder)]
    checker.on_audit(Audit(0.4, "sent", a.decision_id, a.cl_ord_id, "CU", "ACC", a.side, a.qty, a.price, ""))
    checker.on_send(0.25, a.instrument, a.cl_ord_id, a.decision_id, a.qty, a.price, a.side)  # B never leaves
    checker.after_batch(0.3)
    replicated = EngineCore(config)
    fire(replicated)  # it followed the decision, never sent a thing: not this node's to hand over
    checker.core = replicated
    checker.after_batch(0.5)
    # B, lost by the dead node in a batch it lived through, stays a lost action; nothing of the new core's
    assert checker.v[10].status != "fail" and checker.unsent == {b.cl_ord_id: (b.decision_id, 0.3)}

    cut = EngineCore(config)  # a standby cut off before the decision: it adopts both orders from the venues
    checker.core = cut
    a2, b2 = [x for x in fire(cut) if isinstance(x, SendOrder)]
    assert (a2.cl_ord_id, b2.cl_ord_id) == (a.cl_ord_id, b.cl_ord_id)
    for o in (a2, b2):
        cut.find_order(o.cl_ord_id).adopted = True
    checker.on_audit(Audit(1.0, "adopted", b2.decision_id, b2.cl_ord_id, "HG", "ACC", b2.side, b2.qty, b2.price, ""))
    checker.after_batch(1.0)
    v = checker.v[10]
    assert v.status == "fail" and v.first["detail"] == (
        f"order {a2.cl_ord_id} adopted from an earlier node with no audit row of this node naming it"
    )
    dead = EngineCore(config)  # a dead node's lost order alone fails invariant 10 at the end
    lost = InvariantChecker(dead)
    a, b = [x for x in fire(dead) if isinstance(x, SendOrder)]
    lost.on_send(0.25, a.instrument, a.cl_ord_id, a.decision_id, a.qty, a.price, a.side)
    lost.after_batch(0.3)
    lost.core = EngineCore(config)
    lost.finish(2.0, [], {})
    assert lost.v[10].status == "fail" and (lost.v[10].first["t"], lost.v[10].first["decision_id"]) == (
        0.3,
        b.decision_id,
    )


def test_a_reject_of_an_order_unprocessed_is_its_answer_for_invariant_1(config):
    """A session Reject or BusinessMessageReject (mapped to the ClOrdID it refuses) answers the order as
    an execution report would: its round trip joins the decision's answers (invariant 1's allowance for
    answers slower than a far round trip), and the order is no longer awaited."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import BusinessReject, SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    core = EngineCore(config)
    checker = InvariantChecker(core)
    a = next(x for x in fire(core) if isinstance(x, SendOrder))
    checker.on_send(0.0, "CU", a.cl_ord_id, a.decision_id, a.qty, a.price, a.side)
    assert a.cl_ord_id in checker.awaiting
    checker.after_event(0.9, BusinessReject("SHFE", "D", a.cl_ord_id, 99, "throttled", True))
    assert a.cl_ord_id not in checker.awaiting
    assert checker.answers[a.decision_id] == [(0.9, pytest.approx(0.9))]


@pytest.mark.parametrize(
    "case,detail",
    [
        ("cum_differs", "engine PENDING_NEW CumQty 0, venue OrdStatus 1 CumQty 1"),
        ("done_differs", "venue OrdStatus 4 CumQty 0"),
        ("working_unknown_at_venue", "unknown at the venue"),
        ("filled_unknown_at_venue", "unknown at the venue"),
        ("flag_names_no_venue_order", "no venue holds an order of that ClOrdID"),
        ("flag_names_own_order", "it is the engine's own order"),
    ],
)
def test_invariant_12_fails_on_each_way_the_engine_and_the_venues_can_disagree(config, case, detail):
    """Found by disabling each of invariant 12's failures in turn (three of them passed the checker tests: a
    planted engine defect that breaks one breaks other invariants too): at the end of a run an order the
    engine holds must agree with the venue on CumQty and on being done; one the venue never saw must be
    dead with nothing filled; an unknown_order alert must name an order a venue holds and the engine
    does not. Each disagreement made here fails invariant 12 on its own, naming the order."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import SendOrder
    from engine.core.order import OrdStatus
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    core = EngineCore(config)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    checker = InvariantChecker(core)
    venue = {a.cl_ord_id: ("8", 0.0, 0.0), b.cl_ord_id: ("8", 0.0, 0.0)}
    for o in (a, b):  # both refused: the engine agrees with the venues
        order = core.find_order(o.cl_ord_id)
        order.state = OrdStatus.REJECTED
    flagged: frozenset[str] = frozenset()
    target = core.find_order(b.cl_ord_id)
    if case == "cum_differs":
        target.state = OrdStatus.PENDING_NEW
        venue[b.cl_ord_id] = ("1", 1.0, b.price)
    elif case == "done_differs":
        target.state = OrdStatus.NEW
        venue[b.cl_ord_id] = ("4", 0.0, 0.0)
    elif case == "working_unknown_at_venue":
        target.state = OrdStatus.NEW
        del venue[b.cl_ord_id]
    elif case == "filled_unknown_at_venue":
        target.cum_qty = 1.0
        del venue[b.cl_ord_id]
    elif case == "flag_names_no_venue_order":
        flagged = frozenset({"E7-000001A1"})
    else:
        flagged = frozenset({a.cl_ord_id})
    control = InvariantChecker(core)
    checker.reconcile_check(2.0, venue, flagged)
    assert checker.v[12].status == "fail", case
    assert detail in checker.v[12].first["detail"]
    if case.startswith("flag"):
        control.reconcile_check(2.0, venue)
    else:
        target.state, target.cum_qty = OrdStatus.REJECTED, 0.0
        venue[b.cl_ord_id] = ("8", 0.0, 0.0)
        control.reconcile_check(2.0, venue)
    assert control.v[12].status == "pass", case  # the same engine, agreeing with the venues: no failure


@pytest.mark.parametrize("answered", [True, False])
def test_a_request_still_awaited_when_a_legged_spell_ends_counts_once_the_venue_answers_it(config, answered):
    """A fill held on the link ends a legged spell while the chase's cancel waits behind it: the cancel's
    wait past a far round trip counts in invariant 1's allowance once the venue answers it (explore, the
    f37 latency-spike regression after status questions brought their TestRequest). Judged then, not
    at the spell's end; a request never answered extends nothing (judged when the run ends)."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import CancelReject
    from simulator.checkers import FAR_ROUND_TRIP, InvariantChecker

    core = EngineCore(config)
    checker = InvariantChecker(core)
    budget = core.strategy.recovery.legged_budget
    checker.on_ask(0.2, "E1-000001A2RC1", "E1-000001")  # the cancel, sent 0.2 s into the spell
    until = FAR_ROUND_TRIP + budget + 0.2  # the spell is 0.2 s past budget + one far round trip
    checker._check_legged_time("E1-000001", 0.0, until)
    assert checker.v[1].status != "fail" and checker.judged_later  # not judged yet: the cancel is awaited
    if answered:
        checker.after_event(until + 0.2, CancelReject("SHFE", "E1-000001A2RC1", "E1-000001A2R", "2", 0, "too late"))
    checker.finish(until + 1.0, [], {})
    assert not checker.judged_later
    assert (checker.v[1].status == "fail") is not answered
    if not answered:
        assert "legged" in checker.v[1].first["detail"]


def _spell_answered(config, until: float, answers: list[tuple[float, float]], since: float = 0.0):
    """Invariant 1's verdict on one legged spell [since, until] of decision E1-000001 whose cancels were
    sent and answered (by a CancelReject) at the (sent, answered) times in `answers`, all before it is
    judged."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import CancelReject
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    for i, (sent, at) in enumerate(answers, start=1):
        checker.on_ask(sent, f"E1-000001A{i}RC1", "E1-000001")
        checker.after_event(at, CancelReject("SHFE", f"E1-000001A{i}RC1", f"E1-000001A{i}R", "2", 0, "too late"))
    checker._check_legged_time("E1-000001", since, until)
    assert not checker.judged_later  # every request answered: judged at once
    return "fail" if checker.v[1].status == "fail" else "pass"  # a spell judged within its limit records nothing


@pytest.mark.parametrize(
    ("since", "past_budget", "answers", "verdict"),
    [
        # an answer 1 s slow arriving the instant the spell starts is the spell's (allowance 1 s, not 0.5 s)
        (1.0, 0.9, [(0.0, 1.0)], "pass"),
        (1.0, 0.9, [(0.0, 0.999)], "fail"),  # before it began: not the spell's answer
        # one arriving the instant the spell ends is the spell's too
        (0.0, 0.9, [("end-1", "end")], "pass"),
        (0.0, 0.9, [("end-1", "end+")], "fail"),  # after it ended
        # two answers 1 s slow in turn: each counts from one far round trip after its send, 0.5 + 0.5
        # of waits on top of the far round trip: allowance 1.5 s (from the send itself it would be 2.5 s)
        (0.0, 1.4, [(0.0, 1.0), (1.0, 2.0)], "pass"),
        (0.0, 1.6, [(0.0, 1.0), (1.0, 2.0)], "fail"),
    ],
)
def test_invariant_1_counts_the_answers_inside_the_spell_and_their_waits_past_a_far_round_trip(
    config, since, past_budget, answers, verdict
):
    """Found by mutating invariant 1's allowance (no test failed): an answer that lands on either end of
    a legged spell belongs to it, one outside it does not; a slow answer extends the allowance by its
    wait past one far round trip, measured from when the request was sent."""
    from engine.core.engine_core import EngineCore

    budget = EngineCore(config).strategy.recovery.legged_budget
    until = since + budget + past_budget
    at = {"end": until, "end-1": until - 1.0, "end+": until + 0.001}
    timed = [(at.get(s, s), at.get(a, a)) for s, a in answers]
    assert all(isinstance(t, float) for pair in timed for t in pair)
    assert _spell_answered(config, until, timed, since) == verdict


def test_a_spell_waiting_on_several_requests_is_judged_when_the_last_is_answered(config):
    """Two cancels still awaited as a legged spell ends: the first answer judges nothing yet, the second
    judges the spell at once (not when the run ends), and a spell too long even with their waits fails
    naming the slow answers."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import CancelReject
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    until = checker.core.strategy.recovery.legged_budget + 2.0
    for key, sent in (("E1-000001A1RC1", until - 0.6), ("E1-000001A2RC1", until - 0.55)):
        checker.on_ask(sent, key, "E1-000001")
    checker._check_legged_time("E1-000001", 0.0, until)
    checker.after_event(until + 0.1, CancelReject("SHFE", "E1-000001A1RC1", "E1-000001A1R", "2", 0, "too late"))
    assert checker.judged_later and checker.v[1].status != "fail"  # the second cancel is still awaited
    checker.after_event(until + 0.2, CancelReject("SHFE", "E1-000001A2RC1", "E1-000001A2R", "2", 0, "too late"))
    assert not checker.judged_later and checker.v[1].status == "fail"
    assert "one far round trip, the answers slower than it)" in checker.v[1].first["detail"]


def _spell_with_outages(config, until: float, outages: dict[str, tuple[float, float | None]], spent=None):
    """Invariant 1 on a legged spell [0, until] of E1-000001, its short leg on COMEX and its filled leg on
    SHFE, with each venue in `outages` logged off from its start to its end (None: still down when the
    spell ends); `spent`: when the chase budget ran out (the episode unwinding), if it did."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import SessionDown, SessionUp
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    events = []
    for venue, (down, up) in outages.items():
        events.append((down, SessionDown(venue)))
        if up is not None:
            events.append((up, SessionUp(venue)))
    for t, event in sorted(events, key=lambda x: x[0]):
        checker.after_event(t, event)
    checker.legged_venues["E1-000001"] = (frozenset({"COMEX"}), frozenset({"SHFE"}))
    if spent is not None:
        checker.chase_spent["E1-000001"] = spent
    checker._check_legged_time("E1-000001", 0.0, until)
    return checker.v[1]


@pytest.mark.parametrize(
    ("outages", "spent", "verdict"),
    [
        ({"COMEX": (0.2, 1.4), "SHFE": (0.1, 1.5)}, None, "pass"),  # both down 1.2 s: no chase, no unwind
        ({"COMEX": (0.2, 1.4), "SHFE": (0.8, 1.5)}, None, "fail"),  # both down only 0.6 s
        ({"COMEX": (0.2, 1.4)}, None, "fail"),  # the short leg's venue alone: an unwind could go
        ({"SHFE": (0.2, 1.4)}, None, "fail"),  # the filled leg's alone, the chase budget left: a chase could go
        ({"SHFE": (0.2, 1.4)}, 0.1, "pass"),  # ... budget spent: only the filled leg's venue can repair it
        ({"SHFE": (0.2, 1.4)}, 1.0, "fail"),  # spent late: only 0.4 s of the outage counts
        ({"COMEX": (0.2, None), "SHFE": (0.2, None)}, None, "pass"),  # both still down as the spell ends
        ({"COMEX": (-1.0, 1.4), "SHFE": (-1.0, None)}, None, "pass"),  # down since before it: from its start
        ({"COMEX": (-1.0, -0.5), "SHFE": (-1.0, -0.5)}, None, "fail"),  # down and back before it: nothing
    ],
)
def test_invariant_1_excuses_the_time_no_repair_order_could_go(config, outages, spent, verdict):
    """Found by mutating invariant 1 (no test failed without the outage rules, the budget-spent rule
    survived every scenario): a spell 1 s past its budget and one far round trip passes when 1.2 s of it
    could send no repair: both kinds of venue down, or the filled leg's venue down once the chase budget
    is spent; a failure names the excused time."""
    from engine.core.engine_core import EngineCore

    until = EngineCore(config).strategy.recovery.legged_budget + 0.5 + 1.0
    v = _spell_with_outages(config, until, outages, spent)
    assert ("fail" if v.status == "fail" else "pass") == verdict
    if verdict == "fail" and "COMEX" in outages and "SHFE" in outages and outages["SHFE"][1] is not None:
        excused = outages["SHFE"][0] > 0  # some overlap inside the spell
        assert ("the time no repair order could go" in v.first["detail"]) is excused


@pytest.mark.parametrize(
    ("ago", "other_decision", "judged_at_once"),
    [
        (0.1, False, True),  # sent within a far round trip of the spell's end: not waited on
        (0.5, False, True),  # exactly a far round trip before it: not longer than one
        (0.6, False, False),  # longer: the spell waits for its answer
        (0.6, True, True),  # another decision's request is not this spell's
    ],
)
def test_a_spell_waits_only_for_its_own_requests_older_than_a_far_round_trip(
    config, ago, other_decision, judged_at_once
):
    """Which requests still out at a legged spell's end hold its verdict until they are answered."""
    from engine.core.engine_core import EngineCore
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    until = 1.5
    checker.on_ask(
        until - ago,
        "E1-000002A1RC1" if other_decision else "E1-000001A1RC1",
        "E1-000002" if other_decision else "E1-000001",
    )
    checker._check_legged_time("E1-000001", 0.0, until)
    assert (not checker.judged_later) is judged_at_once


@pytest.mark.parametrize(("sent_past_budget", "verdict"), [(-0.2, "pass"), (0.2, "fail")])
def test_a_late_answer_counts_its_wait_from_one_far_round_trip_after_the_send(config, sent_past_budget, verdict):
    """A cancel still out when the spell ends adds, once answered, the stretch from one far round trip
    after it was sent to the spell's end: the allowance is then the spell's end less the send, so the
    spell passes when the cancel went within the budget and fails when it went after."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import CancelReject
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    budget = checker.core.strategy.recovery.legged_budget
    until = budget + 3.0
    checker.on_ask(budget + sent_past_budget, "E1-000001A1RC1", "E1-000001")
    checker._check_legged_time("E1-000001", 0.0, until)
    checker.after_event(until + 0.1, CancelReject("SHFE", "E1-000001A1RC1", "E1-000001A1R", "2", 0, "too late"))
    assert not checker.judged_later
    assert ("fail" if checker.v[1].status == "fail" else "pass") == verdict


def test_invariant_1_at_its_exact_limit_and_the_slow_answers_named(config):
    """Legged exactly the budget plus one far round trip passes (the limit is not exceeded); a spell
    past its allowance with answers slower than a far round trip inside it says so."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import CancelReject
    from simulator.checkers import FAR_ROUND_TRIP, InvariantChecker, _merged

    budget = EngineCore(config).strategy.recovery.legged_budget
    assert _spell_answered(config, budget + FAR_ROUND_TRIP, []) == "pass"
    assert _spell_answered(config, budget + FAR_ROUND_TRIP + 1e-6, []) == "fail"
    checker = InvariantChecker(EngineCore(config))
    checker.on_ask(0.0, "E1-000001A1RC1", "E1-000001")
    checker.after_event(1.0, CancelReject("SHFE", "E1-000001A1RC1", "E1-000001A1R", "2", 0, "too late"))
    checker._check_legged_time("E1-000001", 0.0, budget + 3.0)
    assert "(one far round trip, the answers slower than it)" in checker.v[1].first["detail"]
    assert _merged([(0.0, 1.0), (1.0, 2.0), (2.5, 3.0)]) == [(0.0, 2.0), (2.5, 3.0)]  # touching spans join


def test_invariant_13_names_the_prices_as_they_travel_not_cut_to_six_digits(config):
    """A price off the schedule is shown beside the schedule's prices and the touch they came from, each
    written as the wire writes it: to six significant digits (`:g`), 123456.75 and its schedule's
    123456.5 both read 123457 or 123456, and the failure could not be told from a pass."""
    from engine.core.engine_core import EngineCore
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    checker._on_schedule(1.0, "E1-000001", 123456.75, {123456.5, 123457.25}, 0.25, "E1-000001A1R:", "the touch")
    assert checker.v[13].status == "fail"
    assert "priced 123456.75, the schedule gives 123456.5 or 123457.25" in checker.v[13].first["detail"]
    fine = InvariantChecker(EngineCore(config))
    fine._on_schedule(1.0, "E1-000001", 4.5000005, {4.5000005}, 1e-7, "E1-000001A1R:", "the touch")
    assert fine.v[13].status == "pass"


@pytest.mark.parametrize(
    ("position", "orders", "side", "verdict"),
    [
        (4.0, [("CU", "1", 5)], "1", "pass"),  # 4 + 5 working + 2 = 11 > 10: refused rightly
        (4.0, [("CU", "1", 3)], "1", "fail"),  # 4 + 3 + 2 = 9: within
        (4.0, [("HG", "1", 5)], "1", "fail"),  # another instrument's order does not count
        (4.0, [("CU", "2", 5)], "1", "fail"),  # nor, for a buy, a working sell
        (-4.0, [("CU", "2", 5), ("CU", "1", 1)], "2", "pass"),  # -4 - 5 - 2 = -11
        (-4.0, [("CU", "2", 3), ("CU", "1", 4)], "2", "fail"),  # -4 - 3 - 2 = -9; the buy does not count
        (0.0, [("CU", "1", 8)], "1", "fail"),  # flat: 0 + 8 + 2 = 10, exactly the limit
    ],
)
def test_invariant_14_recomputes_the_worst_case_of_a_position_refusal(config, position, orders, side, verdict):
    """A max_position_lots refusal (CU limit 10 here) is right only when the position plus every order
    of that instrument still working on the refused order's side, plus the refused lots, would pass the
    limit; reaching it exactly is allowed."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import AuditRow
    from engine.core.order import ChildOrder
    from simulator.checkers import InvariantChecker

    cfg = dataclasses.replace(
        config, risk=dataclasses.replace(config.risk, max_position_lots={**config.risk.max_position_lots, "CU": 10})
    )
    core = EngineCore(cfg)
    core.positions["CU"] = position
    for n, (inst, order_side, lots) in enumerate(orders):
        core.orders.add(ChildOrder(f"E1-00000{n}A1", f"E1-00000{n}", "A", "SHFE", inst, order_side, lots, 70000.0, ""))
    checker = InvariantChecker(core)
    row = AuditRow(
        1, 2.0, "risk_breach", "E1-000009", "E1-000009A1", "CU", "", side, 2.0, 70000.0, "max_position_lots 10"
    )
    checker.on_audit(row)
    assert checker.v[14].status == verdict, checker.v[14].first


def test_invariant_8_on_each_limits_edge(config):
    """An order of exactly max_order_lots, priced exactly at the band's edge, or a chase exactly
    max_slippage_ticks past its leg's trigger price is within the limits; one lot, a band's 2.5% or
    a tick more is not."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    cfg = dataclasses.replace(config, risk=dataclasses.replace(config.risk, max_slippage_ticks=3))
    core = EngineCore(cfg)
    a, _ = [x for x in fire(core) if isinstance(x, SendOrder)]
    ref, trigger, tick = core.reference_price("CU"), core.episodes[a.decision_id].trigger_prices["A"], 10.0
    assert cfg.risk.max_order_lots["CU"] == 20 and cfg.risk.price_band_pct == 2.0

    def invariant_8(qty: int, price: float, cl: str = "E1-000001A1", side: str = "") -> str:
        checker = InvariantChecker(core)
        checker.on_send(1.0, "CU", cl, a.decision_id, qty, price, side)
        return checker.v[8].status

    assert invariant_8(20, ref) == "pass" and invariant_8(21, ref) == "fail"
    assert invariant_8(5, ref * 1.02) == "pass" and invariant_8(5, ref * 0.98) == "pass"
    assert invariant_8(5, ref * 1.025) == "fail"
    # leg A sells: a chase pays down from the trigger price
    assert invariant_8(5, trigger - 3 * tick, "E1-000001A2R", "2") == "pass"
    assert invariant_8(5, trigger - 4 * tick, "E1-000001A2R", "2") == "fail"
    # leg B buys: a chase pays up from its trigger price
    hg_trigger = core.episodes[a.decision_id].trigger_prices["B"]
    checker = InvariantChecker(core)
    checker.on_send(1.0, "HG", "E1-000001B2R", a.decision_id, 2, hg_trigger + 3 * 0.0005, "1")
    assert checker.v[8].status == "pass"
    checker.on_send(1.0, "HG", "E1-000001B3R", a.decision_id, 2, hg_trigger + 4 * 0.0005, "1")
    assert checker.v[8].status == "fail" and "chase 4 ticks" in checker.v[8].first["detail"]


def test_invariant_13_lets_a_chase_be_resent_at_its_last_price_with_no_touch(config):
    """A chase re-sent at its leg's last price (a "retry") needs no touch to be priced from: its round is
    counted and it passes. With no touch, a chase at any other price, even a tick off, or an unwind at
    the last price, had nothing to be priced from: invariant 13 fails it, naming the side of the book
    missing. The last price may be the leg's entry's (a retry reject of the entry), never another leg's."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import Quote, SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    def after_a_chase(then: tuple[str, float], leg: str = "A") -> tuple[str, str]:
        core = EngineCore(config)
        a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
        checker = InvariantChecker(core)
        order = a if leg == "A" else b
        book, tick, sign = (
            core.books[order.instrument],
            core.instruments[order.instrument].tick,
            -1 if leg == "A" else 1,
        )
        touch = book.bid if leg == "A" else book.ask  # leg A sells: payup below the bid; B buys: above the offer
        chased = round(touch + sign * config.strategy.recovery.chase_payup_ticks * tick, 6)
        checker.on_send(1.0, order.instrument, f"E1-000001{leg}2R", a.decision_id, 5, chased, order.side)
        assert checker.v[13].status == "pass", checker.v[13].first
        gone = Quote("CU", None, 0, book.ask, 50) if leg == "A" else Quote("HG", book.bid, 50, None, 0)
        core.handle(gone, 1.5)
        suffix, off = then
        checker.on_send(2.0, order.instrument, f"E1-000001{leg}3{suffix}", a.decision_id, 5, chased + off, order.side)
        v = checker.v[13]
        return v.status, v.first.get("detail", "") if v.first else ""

    assert after_a_chase(("R", 0.0)) == ("pass", "")
    assert after_a_chase(("R", 10.0)) == ("fail", "E1-000001A3R: a recovery order priced with no bid to price it from")
    assert after_a_chase(("U", 0.0))[0] == "fail"
    missing_offer = after_a_chase(("R", 0.0005), leg="B")
    assert missing_offer == ("fail", "E1-000001B3R: a recovery order priced with no offer to price it from")

    core = EngineCore(config)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    checker = InvariantChecker(core)
    for o in (a, b):  # the entries leave
        checker.on_send(0.5, o.instrument, o.cl_ord_id, o.decision_id, o.qty, o.price, o.side)
    schedule = core.books["CU"].bid - config.strategy.recovery.chase_payup_ticks * 10.0
    assert a.price != schedule
    checker.on_send(1.0, "CU", "E1-000001A2R", a.decision_id, 5, a.price, a.side)  # A's entry rejected, re-sent
    assert checker.v[13].status == "pass", checker.v[13].first
    checker.on_send(1.5, "HG", "E1-000001B2R", a.decision_id, 2, a.price, b.side)  # at A's price: no retry of B's
    assert checker.v[13].status == "fail" and checker.v[13].first["detail"].startswith("E1-000001B2R: priced")


@pytest.mark.parametrize(
    ("instrument", "side", "order_at", "amends", "inherited", "verdicts"),
    [
        ("CU", "1", 0, [3], False, ["pass"]),  # CU's payup 1 + amend_step 2 x 1 past the offer
        ("CU", "1", 0, [4], False, ["fail"]),
        ("CU", "1", 0, [2], False, ["fail"]),
        ("HG", "2", 0, [2], False, ["pass"]),  # HG has no payup: 2 x 1 below the bid
        ("HG", "2", 0, [3], False, ["fail"]),
        ("HG", "2", -1, [2], False, ["pass"]),  # resting a tick inside the bid: from the bid, not the offer
        ("CU", "1", 4, [6], False, ["pass"]),  # resting past the target already: one step past its price
        ("CU", "1", 4, [3], False, ["pass"]),  # ... or the target
        ("CU", "1", 4, [5], False, ["fail"]),
        ("CU", "1", 3, [5], False, ["pass"]),  # exactly at the target: one step past it
        ("HG", "1", 1, [3], False, ["fail"]),  # a tick short of it: the target alone
        ("HG", "2", 3, [5], False, ["pass"]),
        ("CU", "1", 0, [3, 5], False, ["pass", "pass"]),  # the second amend: 1 + 2 x 2
        ("CU", "1", 0, [3, 3], False, ["pass", "fail"]),
        ("CU", "1", 0, [3, 3], True, ["pass", "pass"]),  # inherited: any amend up to the count seen
        ("CU", "1", 0, [3, 7], True, ["pass", "fail"]),
        ("CU", "1", 0, [1], True, ["fail"]),  # ... from the first
    ],
)
def test_invariant_13_prices_each_amend_on_either_side_by_its_schedule(
    config, instrument, side, order_at, amends, inherited, verdicts
):
    """Found by mutating `_check_amend_price` (no test failed): the k-th replace of a resting order is
    priced at the touch (the offer for a buy, the bid for a sell) plus the instrument's payup (none when
    it has none) plus amend_step_ticks x k, or one step past the order's last price where that is at or
    past the target; an episode a takeover inherited may be at any amend up to the count. Prices are
    in ticks past the touch, toward paying more; the verdict is read after each replace."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import Quote, SessionUp
    from simulator.checkers import InvariantChecker

    core = EngineCore(config)
    ex = core.strategy.execution
    ex = dataclasses.replace(ex, mode="limit", payup_ticks={"CU": 1}, amend_step_ticks=2, max_amends=3)
    core.strategy = dataclasses.replace(core.strategy, execution=ex)
    for venue in ("SHFE", "COMEX"):
        core.handle(SessionUp(venue), 0.0)
    core.handle(Quote("CU", 70000.0, 50, 70010.0, 50), 0.0)
    core.handle(Quote("HG", 4.4995, 50, 4.5005, 50), 0.0)
    checker = InvariantChecker(core)
    if inherited:
        checker.inherited.add("E1-000001")
    inst, book = core.instruments[instrument], core.books[instrument]
    sign = 1 if side == "1" else -1
    touch = book.ask if side == "1" else book.bid

    def at(ticks: int) -> float:
        return round(touch + sign * ticks * inst.tick, 6)

    first = "E1-000001A1" if instrument == "CU" else "E1-000001B1"
    checker.on_send(0.1, instrument, first, "E1-000001", 1, at(order_at), side)
    seen = []
    for k, ticks in enumerate(amends, start=1):
        checker.on_send(0.1 + k / 10, instrument, f"{first}M{k}", "E1-000001", 1, at(ticks), side, replace=True)
        seen.append(checker.v[13].status)
    assert seen == verdicts, checker.v[13].first


def test_invariant_13_counts_chase_and_unwind_rounds_against_their_own_limits(config):
    """Chase rounds count against max_chase_attempts, unwind rounds against max_unwind_attempts (here 1
    and 2), and an overfill hedge (H) is priced like an unwind but starts no round of its own."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    rc = dataclasses.replace(config.strategy.recovery, max_chase_attempts=1, max_unwind_attempts=2)
    cfg = dataclasses.replace(config, strategy=dataclasses.replace(config.strategy, recovery=rc))
    core = EngineCore(cfg)
    a, _ = [x for x in fire(core) if isinstance(x, SendOrder)]
    bid, ask, tick = core.books["CU"].bid, core.books["CU"].ask, 10.0

    def sends(*orders: tuple[float, str, str, float]) -> tuple[list[str], str]:
        checker = InvariantChecker(core)
        verdicts = []
        for now, suffix, side, price in orders:
            checker.on_send(now, "CU", f"E1-000001A{suffix}", a.decision_id, 5, price, side)
            verdicts.append(checker.v[13].status)
        return verdicts, checker.v[13].first["detail"] if checker.v[13].first else ""

    chase = bid - rc.chase_payup_ticks * tick  # leg A sells: a chase pays below the bid
    chase2 = bid - (rc.chase_payup_ticks + rc.chase_step_ticks) * tick
    assert sends((1.0, "2R", "2", chase), (2.0, "3R", "2", chase2)) == (
        ["pass", "fail"],
        "E1-000001A3R: chase round 2 of an episode allowed 1 (max_chase_attempts)",
    )
    unwind = [ask + (rc.unwind_payup_ticks + rc.unwind_step_ticks * n) * tick for n in range(3)]  # buys back
    assert sends(
        (1.0, "2U", "1", unwind[0]),
        (2.0, "3U", "1", unwind[1]),
        (3.0, "4H", "1", unwind[1]),
        (4.0, "5U", "1", unwind[2]),
    ) == (
        ["pass", "pass", "pass", "fail"],
        "E1-000001A5U: unwind round 3 of an episode allowed 2 (max_unwind_attempts)",
    )


@pytest.mark.parametrize(
    ("inherited", "chases", "unwinds"),
    [
        (False, ["pass", "fail", "fail"], ["pass", "fail", "fail", "fail"]),
        (True, ["pass", "pass", "fail"], ["pass", "pass", "pass", "fail"]),
    ],
)
def test_invariant_13_lets_an_inherited_episode_be_at_any_round_up_to_the_count(config, inherited, chases, unwinds):
    """An episode a takeover inherited may have had rounds the checked node never saw (a replication cut):
    its rounds are not held to max_chase_attempts (1 here) or max_unwind_attempts (2), and its n-th round
    may be priced as any round up to the n-th, never past it. Chases: round 1 on HG, then CU at round 1's
    payup (no earlier CU price to re-send at), then CU past round 3's; unwinds: round 1's payup twice, then
    round 3's, then round 5's at the fourth."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import SendOrder
    from engine.fix.codec import fmt_px
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    rc = dataclasses.replace(config.strategy.recovery, max_chase_attempts=1, max_unwind_attempts=2)
    core = EngineCore(dataclasses.replace(config, strategy=dataclasses.replace(config.strategy, recovery=rc)))
    a, _ = [x for x in fire(core) if isinstance(x, SendOrder)]
    cu, hg = core.books["CU"], core.books["HG"]

    failures: list[str] = []

    def sends(*orders: tuple[str, str, str, float]) -> list[str]:
        checker = InvariantChecker(core)
        if inherited:
            checker.inherited.add(a.decision_id)
        verdicts = []
        for now, (instrument, suffix, side, price) in enumerate(orders, start=1):
            checker.on_send(float(now), instrument, f"E1-000001{suffix}", a.decision_id, 2, price, side)
            verdicts.append(checker.v[13].status)
        failures.append(checker.v[13].first["detail"] if checker.v[13].first else "")
        return verdicts

    chase = [rc.chase_payup_ticks + rc.chase_step_ticks * n for n in range(4)]  # rounds 1-4, in ticks
    assert (
        sends(
            ("HG", "B2R", "1", round(hg.ask + chase[0] * 0.0005, 4)),  # leg B buys: above the offer
            ("CU", "A2R", "2", cu.bid - chase[0] * 10.0),  # leg A sells: below the bid
            ("CU", "A3R", "2", cu.bid - chase[3] * 10.0),
        )
        == chases
    )
    unwind = [rc.unwind_payup_ticks + rc.unwind_step_ticks * n for n in range(5)]
    assert (
        sends(*[("CU", f"A{k}U", "1", cu.ask + unwind[n] * 10.0) for k, n in ((2, 0), (3, 0), (4, 2), (5, 4))])
        == unwinds
    )
    below_the_first = cu.bid - (rc.chase_payup_ticks - rc.chase_step_ticks) * 10.0  # a round before the first
    assert sends(("CU", "A2R", "2", below_the_first)) == ["fail"]
    if inherited:  # the schedule named from the side of the book it prices from
        assert failures[1].endswith(f"from the offer {fmt_px(cu.ask)} (payup {unwind[:4]} ticks)"), failures
        assert failures[2].endswith(f"from the bid {fmt_px(cu.bid)} (payup [{chase[0]}] ticks)"), failures


def _fire_beside(core, checker, fx_at: float = 0.0, legs_at: float = 0.0) -> list:
    """conftest.fire with the checker beside the core: sessions up and the rate at `fx_at`, HG and a CU
    spread of about 400 CNY/t (wide enough to sell) at `legs_at`; returns the actions of CU's quote."""
    from engine.core.events import Quote, SessionUp

    mid = round((4.5 * 2204.62 * 7.1 + 400.0) / 10) * 10
    events = [(fx_at, SessionUp(v)) for v in ("SHFE", "COMEX", "FX")] + [
        (fx_at, Quote("USDCNY", 7.0999, 1e6, 7.1001, 1e6)),
        (legs_at, Quote("HG", 4.4995, 50, 4.5005, 50)),
        (legs_at, Quote("CU", mid - 10, 50, mid + 10, 50)),
    ]
    acts: list = []
    for t, event in events:
        acts = core.handle(event, t)
        checker.after_event(t, event)
    return acts


CALENDAR = ROOT / "scenarios" / "cu_calendar_spread.toml"


def _calendar_pair(plant=None):
    """A bare core trading the calendar spread (no FX, prices on ticks: every signal exact) with no
    cooldown, its invariant checker, and `handle(event, t)` feeding both; the session is up and April
    quoted at 70,000 at 0. `plant` changes the core's trigger."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import Quote, SessionUp
    from simulator.checkers import InvariantChecker

    sc = scenario.load(CALENDAR)
    s = sc.engine.strategy
    cfg = dataclasses.replace(
        sc.engine, strategy=dataclasses.replace(s, execution=dataclasses.replace(s.execution, cooldown=0.0))
    )
    core = EngineCore(cfg)
    if plant is not None:
        plant(core.trigger)
    checker = InvariantChecker(core)

    def handle(event, t):
        acts = core.handle(event, t)
        checker.after_event(t, event)
        return acts

    handle(SessionUp("SHFE"), 0.0)
    handle(Quote("CU04", 69990.0, 50, 70010.0, 50), 0.0)
    return core, checker, handle


def _calendar_sixteen(spreads, plant=None, answer: bool = True, start: float = 0.1, core_hook=None):
    """Invariants 15 and 16 over `_calendar_pair`: March quoted at April + each spread in `spreads` (None:
    a locked March book at April + 130, bid = ask), 0.1 s apart from `start`; each episode's IOC
    orders expire unfilled at once unless `answer` is False. `core_hook(core, t)` runs before each March
    quote. Returns 16's verdict, 15's, the episodes opened and 16's first failure."""
    from engine.core.events import Quote, SendOrder
    from tests.conftest import report

    core, checker, handle = _calendar_pair(plant)
    for i, spread in enumerate(spreads):
        t = start + i * 0.1
        if core_hook is not None:
            core_hook(core, t)
        mid = 70000.0 + (130.0 if spread is None else spread)
        half = 0.0 if spread is None else 10.0
        acts = handle(Quote("CU03", mid - half, 50, mid + half, 50), t)
        for o in (a for a in acts if isinstance(a, SendOrder)):
            if answer:
                handle(report(o, f"x{o.cl_ord_id}", "4", "4", 0), t)
    checker.finish(start + len(spreads) * 0.1, [], dict(core.positions))
    verdict = lambda n: "fail" if checker.v[n].status == "fail" else "pass"  # noqa: E731
    return verdict(16), verdict(15), len(core.episodes), checker.v[16].first.get("detail", "")


def _never_rearms(trigger) -> None:
    trigger._hysteresis = 1e12  # a side that fired never retreats far enough to re-arm


def _fires_only_strictly_past(trigger) -> None:
    real = trigger.evaluate

    def evaluate(books, now):
        sig = real(books, now)
        return None if sig is not None and sig.value in (trigger.t.sell_above, trigger.t.buy_below) else sig

    trigger.evaluate = evaluate


def _deaf_until(until: float):
    def plant(trigger) -> None:
        real = trigger.evaluate

        def evaluate(books, now):  # inputs missing or stale are still counted as skipped
            return None if now <= until and trigger.inputs_fresh(books, now) is None else real(books, now)

        trigger.evaluate = evaluate

    return plant


@pytest.mark.parametrize(
    ("spreads", "plant", "verdict", "episodes", "says"),
    [
        ([130, 0, 130], None, "pass", 2, ""),  # fires, retreats past the hysteresis, re-arms, fires again
        ([-130, 0, -130], None, "pass", 2, ""),
        ([130, 60, 130], None, "pass", 1, ""),  # back exactly to sell_above - hysteresis: not re-armed
        ([-130, -60, -130], None, "pass", 1, ""),
        ([130, 50, 130], None, "pass", 2, ""),  # strictly past it: re-armed
        ([130, 0, 130], _never_rearms, "fail", 1, "put sell_spread at 130"),
        ([-130, 0, -130], _never_rearms, "fail", 1, "put buy_spread at -130"),
        ([120], None, "pass", 1, ""),  # exactly at the threshold: fires
        ([-120], None, "pass", 1, ""),
        ([120], _fires_only_strictly_past, "fail", 0, "put sell_spread at 120"),
        ([-120], _fires_only_strictly_past, "fail", 0, "put buy_spread at -120"),
        ([None], None, "pass", 1, ""),  # a locked book (bid = offer) is a price: fresh, and it fires
    ],
)
def test_invariant_16_rearms_and_fires_exactly_as_the_strategy_says(spreads, plant, verdict, episodes, says):
    """Found by mutating invariant 16 (a checker that never re-armed a side, or fired only strictly past a
    threshold, passed every test): the checker re-arms a side once its signal retreats strictly past the
    hysteresis, expects it to fire at the threshold itself, and names the side a deaf trigger missed."""
    sixteen, fifteen, opened, detail = _calendar_sixteen(spreads, plant)
    assert (sixteen, opened) == (verdict, episodes)
    assert fifteen == "pass"
    assert says in detail


@pytest.mark.parametrize(
    ("spreads", "hysteresis"),
    [
        ([130, 80, 130], 30.0),  # re-arms at half the hysteresis: 80 is not 60 below 120
        ([-130, -80, -130], 30.0),
        ([130, 60, 130], 60.0 - 1e-6),  # re-arms exactly on the level, which is not past it
        ([-130, -60, -130], 60.0 - 1e-6),
    ],
)
def test_invariant_15_fails_a_side_that_fires_again_before_its_signal_retreated_past_the_hysteresis(
    spreads, hysteresis
):
    """Found by mutating the checker's record of retreats (one that took any signal below sell_above plus
    the hysteresis as a retreat passed every test): a trigger that re-arms too early fires a second
    episode the strategy forbids."""

    def plant(trigger) -> None:
        trigger._hysteresis = hysteresis

    _, fifteen, opened, _ = _calendar_sixteen(spreads, plant)
    assert (fifteen, opened) == ("fail", 2)


@pytest.mark.parametrize(
    ("state", "verdict"),
    [
        ("killed", "pass"),  # a killed engine opens nothing: no signal is missed
        ("draining", "pass"),
        ("busy", "pass"),  # an episode still working (max_concurrent_episodes 1): the other side waits
        ("cooling", "pass"),  # before the cooldown ends
        ("cooled", "fail"),  # the instant it ends the engine is free: a trigger deaf then misses the signal
    ],
)
def test_invariant_16_expects_a_signal_only_when_the_engine_is_free(state, verdict):
    """The checker's own reading of when the engine looks at the trigger (not killed, not draining, below
    its concurrent episodes, past its cooldown): where the engine may not act, no signal is missed."""

    def hook(core, t):
        if state in ("killed", "draining") and t > 0.15:
            setattr(core, state, True)
        if state in ("cooling", "cooled") and t > 0.15:
            core.cooldown_until = t + (0.05 if state == "cooling" else 0.0)

    spreads = [-130, 130] if state == "busy" else [0, 130]
    plant = _deaf_until(0.2) if state in ("cooling", "cooled") else None
    sixteen, _, opened, detail = _calendar_sixteen(spreads, plant, answer=state != "busy", core_hook=hook)
    assert sixteen == verdict, detail
    assert opened == (1 if state == "busy" else 0)
    if verdict == "fail":
        assert "put sell_spread at 130" in detail


def test_invariant_16_counts_a_quote_exactly_max_quote_age_old_as_fresh():
    """April's quote is exactly its max_quote_age (2 s) old when March crosses: fresh to the engine (it
    fires) and to the checker, whose count of quotes skipped as stale agrees with the trigger's."""
    sixteen, fifteen, opened, detail = _calendar_sixteen([130], start=2.0)
    assert (sixteen, fifteen, opened) == ("pass", "pass", 1), detail
    sixteen, _, opened, detail = _calendar_sixteen([130], start=2.0 + 1e-6)
    assert (sixteen, opened) == ("pass", 0), detail  # a microsecond past it: stale to both


@pytest.mark.parametrize("where", ["sell_above", "sell_rearm", "buy_below", "buy_rearm"])
def test_invariant_16_takes_the_engines_reading_a_hair_off_a_threshold(where):
    """A signal a hair (well inside 1e-9 of its size) off a threshold or a re-arm level may land on the
    other side of it in the engine's arithmetic: the checker takes the engine's armed sides there and
    judges nothing, so an engine that did not fire (or did not re-arm) on such a quote is no failure;
    a quote past the threshold afterwards is judged from the engine's reading."""
    from engine.core.events import Quote
    from engine.core.trigger import BUY_SPREAD, SELL_SPREAD

    core, checker, handle = _calendar_pair()
    handle(Quote("CU03", 69990.0, 50, 70010.0, 50), 0.1)  # spread 0: both sides armed, nothing fires
    t = core.strategy.trigger
    side = SELL_SPREAD if where.startswith("sell") else BUY_SPREAD
    level = {
        "sell_above": t.sell_above,
        "sell_rearm": t.sell_above - t.hysteresis,
        "buy_below": t.buy_below,
        "buy_rearm": t.buy_below + t.hysteresis,
    }[where]
    hair = 0.4e-9 * max(1.0, abs(level))  # inside the tolerance, and past the level on the side that acts
    value = level + (hair if where in ("sell_above", "buy_rearm") else -hair)
    quote = Quote("CU03", 69990.0, 50, 70010.0, 50)
    if where.endswith("rearm"):  # the side fired before: disarmed in both
        checker.armed[side] = core.trigger.armed[side] = False
    checker._check_missed(0.2, quote, [], {SELL_SPREAD: value, BUY_SPREAD: value})
    assert checker.armed == core.trigger.armed
    if where.endswith("rearm"):  # the engine did not re-arm: a crossing now is not a missed signal
        past = t.sell_above + 10.0 if side == SELL_SPREAD else t.buy_below - 10.0
        checker._check_missed(0.3, quote, [], {SELL_SPREAD: past, BUY_SPREAD: past})
    assert checker.v[16].status != "fail", checker.v[16].first


@given(
    kind=st.sampled_from(["spread", "ratio", "counter_price"]),
    swapped=st.booleans(),
    multipliers=st.tuples(st.floats(0.5, 3.0), st.floats(0.5, 3.0)),
    offset=st.floats(-1000.0, 1000.0),
    cu=st.tuples(st.floats(60000.0, 80000.0), st.floats(0.0, 200.0)),
    hg=st.tuples(st.floats(3.0, 6.0), st.floats(0.0, 0.01)),
    fx=st.tuples(st.floats(6.0, 8.0), st.floats(0.0, 0.01)),
)
def test_invariant_15_computes_every_signal_as_the_engine_does_whatever_the_legs_terms(
    spread_scenario, kind, swapped, multipliers, offset, cu, hg, fx
):
    """Invariant 15 recomputes the signal from the strategy's definition; over every kind, either leg
    order (leg A priced per pound, not per tonne), price multipliers and an offset, its values are the
    engine's trigger's to 1e-9 (found by mutation: with leg A always priced per tonne, multiplier 1 and
    no offset on the executable spread, dividing by leg A's terms or subtracting the offset passed)."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import Quote
    from engine.core.trigger import BUY_SPREAD, SELL_SPREAD, TopOfBook
    from simulator.checkers import InvariantChecker

    s = spread_scenario.engine.strategy
    legs = (s.leg_b, s.leg_a) if swapped else (s.leg_a, s.leg_b)
    strategy = dataclasses.replace(
        s,
        leg_a=legs[0],
        leg_b=legs[1],
        price_multiplier_a=multipliers[0],
        price_multiplier_b=multipliers[1],
        offset=offset,
        trigger=dataclasses.replace(s.trigger, kind=kind),
    )
    core = EngineCore(dataclasses.replace(spread_scenario.engine, strategy=strategy))
    checker = InvariantChecker(core)
    quotes = {
        name: Quote(name, bid, 10, bid + width, 10) for name, (bid, width) in ((s.leg_a, cu), (s.leg_b, hg), (s.fx, fx))
    }
    books = {n: TopOfBook(q.bid, q.bid_size, q.ask, q.ask_size, 0.0) for n, q in quotes.items()}
    ours, engines = checker._signal_values(quotes), core.trigger.values(books)
    assert ours is not None
    for side in (SELL_SPREAD, BUY_SPREAD):
        assert ours[side] == pytest.approx(engines[side], rel=1e-9, abs=1e-9), side


@pytest.mark.parametrize("off", [0.0, 0.0005])
def test_invariant_15_names_a_leg_priced_a_fraction_of_a_unit_off_its_touch(config, off):
    """An episode's far leg priced half an HG tick (0.0005 USD/lb) off the offer it sells against fails
    invariant 15: the touches are compared to 1e-9, not to a whole price unit (found by mutation)."""
    import math

    from engine.core.engine_core import EngineCore
    from engine.core.trigger import Signal
    from simulator.checkers import InvariantChecker

    core = EngineCore(config)
    real = core.trigger.evaluate

    def evaluate(books, now):
        sig = real(books, now)
        return None if sig is None else Signal(sig.side, sig.value, sig.price_a, sig.price_b + off, sig.fx_rate)

    core.trigger.evaluate = evaluate
    checker = InvariantChecker(core)
    _fire_beside(core, checker)
    (ep,) = core.episodes.values()
    assert math.isclose(ep.trigger_prices["B"], 4.5005 + off)
    assert checker.v[15].status == ("fail" if off else "pass")
    if off:
        assert "not the touches" in checker.v[15].first["detail"]


@pytest.mark.parametrize(
    ("at", "plant", "verdict"),
    [
        (5.0, None, "pass"),  # the USD/CNY rate exactly its max_quote_age (5 s) old: fresh, the episode opens
        (5.5, "ignores_age", "fail"),  # a trigger that ignores the age opens on a rate 0.5 s too old
    ],
)
def test_invariant_11_judges_the_age_of_every_input_an_episode_opened_on(config, at, plant, verdict):
    """Invariant 11 at its edge: an input exactly max_quote_age old is fresh; one half a second past it
    fails, named with its age and the limit (found by mutation: a slack of a whole second, or the limit
    itself counted as stale, passed every test)."""
    import math

    from engine.core.engine_core import EngineCore
    from simulator.checkers import InvariantChecker

    core = EngineCore(config)
    if plant:  # every input still there and two-sided, its age never looked at
        real = core.trigger.inputs_fresh
        core.trigger.inputs_fresh = lambda books, now: real(books, -math.inf)
    checker = InvariantChecker(core)
    _fire_beside(core, checker, fx_at=0.5, legs_at=0.5 + at)
    assert len(core.episodes) == 1
    assert checker.v[11].status == verdict
    if verdict == "fail":
        assert checker.v[11].first["detail"] == "USDCNY quote 5500 ms old > 5000 ms"


@pytest.mark.parametrize(
    ("stage", "qty", "phantom"),
    [
        ("fill", 0.0, True),
        ("foreign_fill", 0.0, True),  # a fill of an order the node never sent moves a position as much
        ("fill", 1e-9, True),  # a billionth of a lot is no lot
        ("foreign_fill", 1.0, False),
        ("fill", 1.0, False),
        ("order_new", 0.0, False),  # not a fill: its quantity moves nothing anyway
    ],
)
def test_invariant_6_finds_a_phantom_fill_on_the_audit_trail_whatever_order_it_names(config, stage, qty, phantom):
    """A fill or foreign fill on record of no lots fails invariant 6 (found by mutation: a foreign fill of
    nothing passed every test)."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import AuditRow
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    checker.on_audit(AuditRow(7, 0.1, stage, "E1-000001", "E1-000001A1", "CU", "ACC", "1", qty, 70000.0, ""))
    assert (checker.v[6].status == "fail") is phantom
    if phantom:
        assert checker.v[6].first["detail"].startswith(f"audit row 7: {stage} of {qty:g} lots for E1-000001A1")


def test_invariant_14_judges_only_refusals_of_an_order_with_a_side_and_an_instrument(config):
    """A risk_breach row with no side (the decision refused, not one order) is not recomputed as an
    order's refusal; the same row naming a buy of more than max_order_lots is (and passes)."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import AuditRow
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    limit = checker.core.cfg.risk.max_order_lots["CU"]
    row = AuditRow(3, 0.1, "risk_breach", "E1-000001", "", "CU", "", "", limit + 1, 0.0, "max_order_lots")
    checker.on_audit(row)
    assert checker.v[14].status == "unknown"
    checker.on_audit(row._replace(side="1"))
    assert checker.v[14].status == "pass"
    checker.on_audit(row._replace(side="1", qty=limit))
    assert checker.v[14].status == "fail"


def test_invariant_8_bounds_each_venue_position_by_max_position_lots_and_the_late_fills(config):
    """The fills a venue made bound its position by max_position_lots, beyond which only the lots of late
    fills (that no order asked for) may take it; the failure names the position, the limit and the
    decision of the fill (found by mutation: no test filled a venue to its limit, nor past it by a lot)."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    core = EngineCore(config)
    a, b = [x for x in fire(core) if isinstance(x, SendOrder)]
    limit = core.cfg.risk.max_position_lots["CU"]
    checker = InvariantChecker(core)
    checker.on_venue_fill("CU", -limit, 1.0, a.cl_ord_id)  # exactly the limit: within it
    assert checker.v[8].status != "fail"
    checker.late_fills.add("E1-000001A7")
    checker.on_venue_fill("CU", 1.0, 1.1, "E1-000001A7")  # a late fill the other way: back inside
    checker.on_venue_fill("CU", -2.0, 1.2, a.cl_ord_id)  # one lot past the limit, within it and the late lot
    assert checker.v[8].status != "fail"
    checker.on_venue_fill("CU", -1.0, 1.3, a.cl_ord_id)
    assert checker.v[8].first == {
        "t": 1.3,
        "decision_id": a.decision_id,
        "detail": f"CU position {-limit - 2:+g} lots beyond ±{limit}",
    }
    hg = core.cfg.risk.max_position_lots["HG"]
    other = InvariantChecker(core)
    other.on_venue_fill("HG", hg + 1, 1.0, "E9-000009B1")  # no late fill: one lot past fails, no order known
    assert other.v[8].first["detail"] == f"HG position +{hg + 1:g} lots beyond ±{hg}"
    assert other.v[8].first["decision_id"] == ""
    other.on_venue_order(1.0, b.cl_ord_id)
    other.on_venue_order(1.1, b.cl_ord_id)
    assert other.v[4].first == {
        "t": 1.1,
        "decision_id": b.cl_ord_id,
        "detail": f"ClOrdID {b.cl_ord_id} reached a venue twice",
    }


def _finished(config, change) -> dict:
    """The end-of-run verdicts over one episode fired on a bare core and changed by `change(ep)`."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import SendOrder
    from simulator.checkers import InvariantChecker
    from tests.conftest import fire

    core = EngineCore(config)
    assert [x for x in fire(core, 1.0) if isinstance(x, SendOrder)]
    (ep,) = core.active.values()
    change(ep)
    checker = InvariantChecker(core)
    checker.finish(5.0, [], {})
    return {n: (v.status, v.first.get("detail", "")) for n, v in checker.v.items() if n in (2, 3, 10)}


@pytest.mark.parametrize(
    ("case", "fails"),
    [
        ("working", {2}),  # still working as the run ends: 2, and its stage chain is fine so far
        ("ended_in_order", set()),
        ("no_signal_stage", {10}),
        ("ended_without_terminal_stage", {10}),
        ("terminal_before_risk_check", {10}),  # after its signal, yet before its risk check
        ("a_stage_before_its_signal", {10}),  # the named stages in order, an ack before the signal
        ("unwound_not_flat", {3}),
        ("aborted_not_flat", {3}),
        ("unwound_flat", set()),
        ("balanced_short", {3}),
    ],
)
def test_the_end_of_run_judges_each_episodes_state_stage_chain_and_outcome(config, case, fails):
    """Each end-of-run rule on its own (found by mutation: a stage chain judged on one clause only, an
    unwound episode not flat, and a non-terminal episode under another invariant's number passed)."""
    from engine.core.episode import EpisodeState

    def change(ep) -> None:
        st = ep.stages
        ended = {
            "ended_in_order": EpisodeState.ABORTED,
            "ended_without_terminal_stage": EpisodeState.ABORTED,
            "terminal_before_risk_check": EpisodeState.ABORTED,
            "a_stage_before_its_signal": EpisodeState.ABORTED,
            "no_signal_stage": EpisodeState.ABORTED,
            "unwound_not_flat": EpisodeState.UNWOUND,
            "aborted_not_flat": EpisodeState.ABORTED,
            "unwound_flat": EpisodeState.UNWOUND,
            "balanced_short": EpisodeState.BALANCED,
        }.get(case)
        if ended is None:
            return
        ep.state = ended
        ep.residual_tonnes = 0.0
        st["terminal"] = st["risk_check"] + 1.0
        if case == "ended_without_terminal_stage":
            del st["terminal"]
        elif case == "terminal_before_risk_check":
            st["risk_check"], st["terminal"] = st["signal"] + 0.5, st["signal"] + 0.25
        elif case == "a_stage_before_its_signal":
            st["ack_A"] = st["signal"] - 0.5
        elif case == "no_signal_stage":
            del st["signal"]
        elif case in ("unwound_not_flat", "aborted_not_flat", "balanced_short"):
            ep.legs["B"].orders[0].cum_qty = 1.0  # one lot of B filled, A none

    verdicts = _finished(config, change)
    assert {n for n, (status, _) in verdicts.items() if status == "fail"} == fails, verdicts
    assert all(status == "pass" for n, (status, _) in verdicts.items() if n not in fails), verdicts
    if 3 in fails:
        assert ("short of its target" if case == "balanced_short" else "with a leg not flat") in verdicts[3][1]
    if 2 in fails:
        assert verdicts[2][1] == "episode ended the run WORKING"


@pytest.mark.parametrize(
    ("kind", "late", "fails"),
    [
        ("illegal_transition", False, True),
        ("illegal_episode_transition", False, True),
        ("engine_error", False, True),
        ("status_mismatch", False, True),  # the engine misread a venue report
        ("late_fill", False, True),  # a late fill the venue never made late: the engine ended an order early
        ("late_fill", True, False),  # one the venue made (fault late_fill)
        ("overfill", False, False),  # on record: allowed
    ],
)
def test_invariant_7_fails_on_each_illegal_anomaly_at_the_end_of_a_run(config, kind, late, fails):
    """Each anomaly kind invariant 7 counts as illegal fails it, named by its order and detail (found by
    mutation: three of the kinds renamed passed every test)."""
    from engine.core.engine_core import EngineCore
    from engine.core.events import Anomaly
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    if late:
        checker.late_fills.add("E1-000001A1")
    verdicts = checker.finish(5.0, [Anomaly(2.5, kind, "E1-000001A1", "what happened")], {})
    assert checker.v[7].status == ("fail" if fails else "pass")
    assert ("first" in verdicts["7"]) is fails  # the report names a first breach only where there is one
    if fails:
        assert checker.v[7].first == {"t": 2.5, "decision_id": "", "detail": "E1-000001A1: what happened"}


def test_the_end_of_run_names_each_failure_exactly(config):
    """The end of a run: a BALANCED episode without its residual, an order registered and never handed
    to the transport, positions the venues' fills do not bear out, and a stale count that differs from
    the trigger's since the checker started (a takeover core's earlier skips are not its own), each
    named with its time, decision and words (found by mutation: each could be misnamed and pass)."""
    from engine.core.engine_core import EngineCore
    from engine.core.episode import EpisodeState
    from engine.core.events import SendOrder
    from simulator.checkers import InvariantChecker

    checker = InvariantChecker(EngineCore(config))
    core = EngineCore(config)
    core.trigger.stale_skips = 3  # a takeover core: skipped before the checker went on with it
    checker.core = core
    # the rate's quote and HG's are skipped (CU not quoted yet): the checker counts them as the trigger does
    orders = [x for x in _fire_beside(core, checker, 1.0, 1.0) if isinstance(x, SendOrder)]
    checker.after_batch(1.0)  # the core's actions for the quote carried out: its orders never handed over
    (ep,) = core.active.values()
    ep.state, ep.residual_tonnes = EpisodeState.BALANCED, None
    ep.stages["terminal"] = ep.stages["risk_check"]
    for leg in ep.legs.values():
        leg.orders[0].cum_qty = leg.target
    checker.finish(5.0, [], {"CU": 5.0})
    first = {n: v.first for n, v in checker.v.items() if v.status == "fail"}
    assert first[3] == {"t": 5.0, "decision_id": ep.decision_id, "detail": "residual not recorded"}
    assert first[10] == {
        "t": 1.0,
        "decision_id": ep.decision_id,
        "detail": f"order {orders[0].cl_ord_id} registered by the engine as sent but never handed to the transport",
    }
    assert first[6] == {"t": 5.0, "decision_id": "", "detail": "engine positions {} != venue fills {'CU': 5.0}"}
    assert set(first) == {3, 6, 10}  # the three skips before the takeover are not a miscount
    assert core.trigger.stale_skips == 5  # the rate's quote and HG's, each with CU not quoted yet
    core.trigger.stale_skips += 1  # a skip miscounted
    checker.finish(5.0, [], {})
    assert checker.v[16].first == {
        "t": 5.0,
        "decision_id": "",
        "detail": "the trigger counted 3 quotes skipped for a missing or stale input; the quotes give 2",
    }
