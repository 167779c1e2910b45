"""The acknowledgement watch: a new order the venue never answers is asked about after a few of the
venue's own round trips (never sooner than the answer timeout), not after the order timeout."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.ack_watch import LOSING_MULTIPLE, MIN_SAMPLES, WINDOW, AckWatch
from engine.core.engine_core import EngineCore
from engine.core.events import CancelTimer, SendOrder, SendStatusRequest, SessionDown, SetTimer, TimerFired
from tests.conftest import fire, report


@given(st.lists(st.floats(min_value=0.0, max_value=5.0, allow_nan=False), max_size=80))
def test_the_deadline_is_a_multiple_of_the_recent_round_trips_never_below_the_floor(trips):
    watch = AckWatch(multiple=4.0, floor=0.3)
    now = 0.0
    for i, trip in enumerate(trips):
        assert watch.sent(f"c{i}", "V", now) == now + watch.deadline("V")  # every order is watched
        assert watch.answered(f"c{i}", now + trip) and not watch.answered(f"c{i}", now + trip)  # once
        now += 1.0
    if len(trips) >= MIN_SAMPLES:
        latest = sorted(trips[-WINDOW:])
        slowest, median = latest[-1], latest[(len(latest) - 1) // 2]
        expected = max(0.3, min(4.0 * slowest, max(4.0 * median, slowest + 0.3)))
    else:  # too few measured: four times the floor, or longer if what was measured says so
        expected = max(1.2, 4.0 * max(trips, default=0.0))
    assert watch.deadline("V") == pytest.approx(expected)
    assert watch.deadline("OTHER") == pytest.approx(1.2) and not watch.unanswered
    # the venue loses an order: watched closer (never later than usual, never sooner than the floor)
    watch.sent("lost", "V", now)
    watch.ask("lost")
    watch.lost("lost")
    watch.forget("lost")
    if len(trips) >= MIN_SAMPLES:
        expected = max(0.3, min(expected, LOSING_MULTIPLE * max(trips[-WINDOW:])))
    assert watch.deadline("V") == pytest.approx(expected)
    assert watch.deadline("OTHER") == pytest.approx(1.2) and not watch.unanswered


def test_the_slowest_round_trip_is_forgotten_once_a_window_of_newer_ones_is_measured():
    """One slow answer (a venue's bad second) must not set its deadline for the rest of the day: the
    record is the venue's latest WINDOW round trips (the property test above rarely draws lists that long)."""
    watch = AckWatch(multiple=4.0, floor=0.01)
    trips = [0.5] + [0.02] * WINDOW
    for i, trip in enumerate(trips):
        watch.sent(f"c{i}", "V", float(i))
        watch.answered(f"c{i}", i + trip)
        if i < WINDOW:  # the slow one is still among the latest: it sets the deadline (not four times it)
            assert watch.deadline("V") == pytest.approx(0.51 if i > 0 else 2.0)
    assert watch.deadline("V") == pytest.approx(0.08)


@pytest.mark.parametrize(
    ("trips", "deadline"),
    [
        ([0.115] * 31 + [0.573], 0.873),  # one outlier: the slowest plus the floor, not 4 x 573 ms
        ([0.115] * 32, 0.46),  # a steady venue: four times its trips
        ([0.1] * 16 + [0.5] * 16, 0.8),  # half of them slow: the slowest plus the floor (over 4 x 100 ms)
        ([0.1] * 15 + [0.5] * 17, 2.0),  # most of them slow: the venue is slow, four times that
        ([0.02] * 31 + [0.07], 0.3),  # a fast venue's outlier stays under the floor
        ([0.2] * 31 + [0.3], 0.8),  # four times the median is longer than the slowest plus the floor
    ],
)
def test_one_slow_round_trip_among_fast_ones_raises_the_deadline_only_to_it_plus_the_floor(trips, deadline):
    """xmc explore seed 20261203 on f29: one COMEX round trip of 573 ms among ~115 ms ones set a 2.29 s
    deadline, so an unwind COMEX lost waited out the order timeout (legged 1,735 ms against 1,300)."""
    watch = AckWatch(multiple=4.0, floor=0.3)
    for i, trip in enumerate(trips):
        watch.sent(f"c{i}", "V", float(i))
        watch.answered(f"c{i}", i + trip)
    assert watch.deadline("V") == pytest.approx(deadline)


@given(st.lists(st.floats(min_value=0.0005, max_value=3.0), min_size=0, max_size=40))
def test_an_answer_is_due_by_the_slowest_recent_trip_plus_the_floor_never_after_the_deadline(trips):
    """What a recovery order's cancel waits for (`EngineCore._recovery_timeout`): an answer as slow as
    the venue's slowest recent one plus the floor, capped by the status question's deadline; with no
    record, the deadline itself."""
    watch = AckWatch(multiple=4.0, floor=0.3)
    for i, trip in enumerate(trips):
        watch.sent(f"c{i}", "V", float(i))
        watch.answered(f"c{i}", i + trip)
    due, deadline = watch.answer_due("V"), watch.deadline("V")
    assert due is not None and deadline is not None and 0.3 <= due <= deadline
    if trips:
        assert due == pytest.approx(min(deadline, max(list(trips)[-WINDOW:]) + 0.3))
    else:
        assert due == deadline == pytest.approx(1.2)
    assert AckWatch(multiple=0.0, floor=0.3).answer_due("V") is None  # the watch off


def test_a_distant_venue_answers_well_before_its_status_deadline():
    """COMEX 307 ms away (explore seed 3904 on f62): the status question waits four round trips
    (1.23 s), an answer is due by 607 ms; the legged budget (800 ms) can wait for the latter only."""
    watch = AckWatch(multiple=4.0, floor=0.3)
    watch.sent("c1", "COMEX", 0.0)
    watch.answered("c1", 0.307)
    assert watch.deadline("COMEX") == pytest.approx(1.228)
    assert watch.answer_due("COMEX") == pytest.approx(0.607)


@pytest.mark.parametrize(("trip", "usual", "losing"), [(0.116, 0.464, 0.3), (0.3, 1.2, 0.45)])
def test_a_venue_that_lost_an_order_is_asked_sooner_about_the_next_until_one_is_answered_on_time(trip, usual, losing):
    """xmc explore seed 20261204 on f67: COMEX lost three unwinds in turn; each was asked about after four
    of its median round trips (465 ms) and the episode stayed legged 1,740 ms. After a loss the venue's
    next orders are asked about once half again its slowest round trip has passed (the floor at least)."""
    watch = AckWatch(multiple=4.0, floor=0.3)
    for i in range(8):
        watch.sent(f"c{i}", "V", float(i))
        watch.answered(f"c{i}", i + trip)
    assert watch.deadline("V") == pytest.approx(usual)
    watch.sent("lost", "V", 10.0)
    watch.lost("lost")  # not asked about (an answer was not yet due): its loss is no news of the venue
    assert watch.deadline("V") == pytest.approx(usual)
    watch.ask("lost")
    watch.lost("lost")
    watch.forget("lost")
    assert watch.deadline("V") == pytest.approx(losing) and watch.deadline("W") == pytest.approx(1.2)
    watch.lost("lost")  # settled already: nothing more to learn from it
    watch.sent("late", "V", 20.0)
    watch.ask("late")
    assert watch.answered("late", 21.0)  # answered only after its question: not on time
    assert watch.deadline("V") == pytest.approx(losing)
    watch.sent("on-time", "V", 30.0)
    watch.answered("on-time", 30.0 + trip)
    assert watch.deadline("V") == pytest.approx(usual)


def test_the_watch_keeps_nothing_of_an_order_once_it_is_settled():
    """A day of orders must not grow the watch: an order asked about and then settled by its status
    answer, or dropped with its session, leaves no trace, and asking about an order the watch does not
    hold records nothing."""
    watch = AckWatch(multiple=4.0, floor=0.3)
    for i in range(100):
        watch.sent(f"c{i}", "V", float(i))
        watch.ask(f"c{i}")
        watch.forget(f"c{i}")
        watch.ask(f"gone{i}")  # never watched (or settled already)
    assert not watch.unanswered and not watch.asked
    # nor orders asked about when their session dropped: the next logon's questions settle them
    for i in range(100):
        watch.sent(f"d{i}", "V", 200.0 + i)
        watch.ask(f"d{i}")
        watch.session_down("V")
    assert not watch.unanswered and not watch.asked


def test_a_multiple_of_zero_turns_the_watch_off():
    watch = AckWatch(multiple=0.0, floor=0.3)
    for i in range(10):
        watch.sent(f"c{i}", "V", float(i))
        watch.answered(f"c{i}", i + 0.001)
    assert watch.sent("late", "V", 20.0) is None
    # any multiple above 0 watches, one of 1 or below too: never sooner than the floor
    for multiple in (0.5, 1.0):
        watch = AckWatch(multiple=multiple, floor=0.3)
        assert watch.deadline("V") == pytest.approx(0.3)
        watch.sent("c", "V", 0.0)
        watch.answered("c", 0.1)
        assert watch.deadline("V") == pytest.approx(0.3) and watch.sent("d", "V", 1.0) == pytest.approx(1.3)


@pytest.fixture()
def config(spread_scenario):
    cfg = spread_scenario.engine
    ex = dataclasses.replace(cfg.strategy.execution, ack_timeout_rtts=4.0, answer_timeout=0.3)
    return dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, execution=ex))


def _balanced_episodes(core: EngineCore, n: int, rtt: dict[str, float]) -> float:
    """n episodes whose legs are acknowledged `rtt[venue]` after sending and filled: the venues' record."""
    now = 0.0
    for i in range(n):  # selling and buying the spread in turn (a signal fires when it crosses again)
        sent = [a for a in fire(core, now=now, spread_cny=400.0 if i % 2 == 0 else -400.0) if isinstance(a, SendOrder)]
        assert len(sent) == 2
        for o in sent:
            core.handle(report(o, f"{o.cl_ord_id}-0", "0", "0", 0), now + rtt[o.venue])
            core.handle(report(o, f"{o.cl_ord_id}-1", "F", "2", o.qty, o.qty, 70000.0), now + rtt[o.venue])
        now += 10.0
    return now


def test_an_unanswered_order_is_asked_about_and_unknown_order_ends_it(config):
    core = EngineCore(config)
    first = {t.key: t.at for t in fire(core) if isinstance(t, SetTimer) and t.key.startswith("ack:")}
    assert sorted(first.values()) == [pytest.approx(1.2)] * 2  # nothing measured yet: four times the floor
    core = EngineCore(config)
    now = _balanced_episodes(core, MIN_SAMPLES, {"SHFE": 0.001, "COMEX": 0.2})
    acts = fire(core, now=now, spread_cny=-400.0 if MIN_SAMPLES % 2 else 400.0)
    a, b = (x for x in acts if isinstance(x, SendOrder))
    due = {t.key: t.at for t in acts if isinstance(t, SetTimer) and t.key.startswith("ack:")}
    # SHFE is 1 ms away: the floor; COMEX 200 ms: four of its round trips
    assert due == {f"ack:{a.cl_ord_id}": pytest.approx(now + 0.3), f"ack:{b.cl_ord_id}": pytest.approx(now + 0.8)}
    got = core.handle(report(b, "b0", "0", "0", 0), now + 0.2)  # COMEX answers: its watch is cancelled
    assert CancelTimer(f"ack:{b.cl_ord_id}") in got
    assert not core.handle(TimerFired(f"ack:{b.cl_ord_id}"), now + 0.8)
    asked = core.handle(TimerFired(f"ack:{a.cl_ord_id}"), now + 0.3)  # SHFE never answered A
    assert [(q.venue, q.cl_ord_id) for q in asked if isinstance(q, SendStatusRequest)] == [("SHFE", a.cl_ord_id)]
    assert not core.venue_ready("SHFE") and core.venue_ready("COMEX")
    assert not core.handle(TimerFired(f"ack:{a.cl_ord_id}"), now + 0.4)  # asked once
    unknown = dataclasses.replace(report(a, "a-I", "I", "8", 0), exec_type="I")
    core.handle(unknown, now + 0.301)
    assert core.orders[a.cl_ord_id].state.name == "REJECTED" and core.venue_ready("SHFE")
    assert a.cl_ord_id not in core.ack_watch.unanswered


@pytest.mark.parametrize(
    ("status", "filled", "closer"),
    [("8", False, True), ("0", False, False), ("2", True, False), ("4", False, False)],
    ids=["unknown", "working", "filled", "cancelled"],
)
def test_only_an_answer_that_the_venue_lost_the_order_watches_it_closer(config, status, filled, closer):
    """The status answer about an order COMEX (200 ms away: usually asked after 800 ms) never answered:
    "not there, never traded" means the venue lost it (or its refusal), and its next order is asked
    about after 300 ms; an order it holds, or one that traded, only lost its answer on the way."""
    core = EngineCore(config)
    now = _balanced_episodes(core, MIN_SAMPLES, {"SHFE": 0.001, "COMEX": 0.2})
    _a, b = (
        x for x in fire(core, now=now, spread_cny=-400.0 if MIN_SAMPLES % 2 else 400.0) if isinstance(x, SendOrder)
    )
    assert core.ack_watch.deadline("COMEX") == pytest.approx(0.8)
    asked = core.handle(TimerFired(f"ack:{b.cl_ord_id}"), now + 0.8)
    assert [q.cl_ord_id for q in asked if isinstance(q, SendStatusRequest)] == [b.cl_ord_id]
    answer = report(b, "b-I", "I", status, b.qty if filled else 0.0, 0.0, 70000.0)
    core.handle(answer, now + 1.0)
    assert b.cl_ord_id not in core.ack_watch.unanswered
    assert core.ack_watch.deadline("COMEX") == pytest.approx(0.3 if closer else 0.8)
    assert core.ack_watch.deadline("SHFE") == pytest.approx(0.3)


def test_the_orders_own_late_report_answers_the_question_and_frees_the_venue(config):
    """A slow venue's acknowledgement overtakes the status answer a round trip behind it: the venue
    is held only until the order's own report, which already says what the question asked."""
    core = EngineCore(config)
    now = _balanced_episodes(core, MIN_SAMPLES, {"SHFE": 0.001, "COMEX": 0.001})
    a, _b = (
        x for x in fire(core, now=now, spread_cny=-400.0 if MIN_SAMPLES % 2 else 400.0) if isinstance(x, SendOrder)
    )
    core.handle(TimerFired(f"ack:{a.cl_ord_id}"), now + 0.3)
    assert not core.venue_ready("SHFE")
    core.handle(report(a, "late-ack", "0", "0", 0), now + 0.35)
    assert core.venue_ready("SHFE") and core.orders[a.cl_ord_id].state.name == "NEW"
    # its status answer, coming later, changes nothing
    core.handle(dataclasses.replace(report(a, "a-I", "I", "0", 0), exec_type="I"), now + 0.36)
    assert core.venue_ready("SHFE") and core.orders[a.cl_ord_id].state.name == "NEW"


def test_a_cancelled_unanswered_order_is_left_to_its_cancels_watch(config):
    core = EngineCore(config)
    now = _balanced_episodes(core, MIN_SAMPLES, {"SHFE": 0.001, "COMEX": 0.001})
    a, _b = (
        x for x in fire(core, now=now, spread_cny=-400.0 if MIN_SAMPLES % 2 else 400.0) if isinstance(x, SendOrder)
    )
    core.handle(TimerFired(f"timeout:{a.decision_id}"), now + 0.1)  # the order timeout came first
    assert not [x for x in core.handle(TimerFired(f"ack:{a.cl_ord_id}"), now + 0.3) if isinstance(x, SendStatusRequest)]
    assert a.cl_ord_id not in core.ack_watch.unanswered


def test_an_outage_is_not_taken_for_a_round_trip(config):
    """An order in flight when its session drops is answered (if at all) after the outage: that wait
    must not stretch the venue's deadline for the orders after it."""
    core = EngineCore(config)
    now = _balanced_episodes(core, MIN_SAMPLES, {"SHFE": 0.001, "COMEX": 0.001})
    before = core.ack_watch.deadline("SHFE")
    a, _b = (
        x for x in fire(core, now=now, spread_cny=-400.0 if MIN_SAMPLES % 2 else 400.0) if isinstance(x, SendOrder)
    )
    core.handle(SessionDown("SHFE"), now + 0.01)
    assert a.cl_ord_id not in core.ack_watch.unanswered
    core.handle(report(a, "after-outage", "0", "0", 0), now + 5.0)  # its acknowledgement, 5 s later
    assert core.ack_watch.deadline("SHFE") == before == pytest.approx(0.3)


def test_a_status_answer_ends_the_watch_so_a_later_report_is_no_round_trip(config):
    core = EngineCore(config)
    now = _balanced_episodes(core, MIN_SAMPLES, {"SHFE": 0.001, "COMEX": 0.001})
    a, _b = (
        x for x in fire(core, now=now, spread_cny=-400.0 if MIN_SAMPLES % 2 else 400.0) if isinstance(x, SendOrder)
    )
    core.handle(TimerFired(f"ack:{a.cl_ord_id}"), now + 0.3)
    core.handle(dataclasses.replace(report(a, "a-I", "I", "0", 0), exec_type="I"), now + 0.31)  # it works
    assert a.cl_ord_id not in core.ack_watch.unanswered and core.venue_ready("SHFE")
    core.handle(report(a, "slow-ack", "0", "0", 0), now + 2.0)
    assert core.ack_watch.deadline("SHFE") == pytest.approx(0.3)


@pytest.mark.parametrize("asked_by", ["ack", "cancel"])
def test_an_order_answered_only_after_its_status_was_asked_teaches_no_round_trip(config, asked_by):
    """A lost order that the status question's sequence number had resent is answered a question's wait
    after it was sent: learned as a round trip, the next deadline would be four times that wait, and
    each loss would stretch it again (explore: a lost chase, asked about because its cancel went
    unanswered, took the deadline from 300 ms to 1.26 s, and the next lost unwind waited that long).
    Asked because the order went unacknowledged, or because its cancel went unanswered, alike; a
    slow answer that beats its deadline still teaches."""
    core = EngineCore(config)
    now = _balanced_episodes(core, MIN_SAMPLES, {"SHFE": 0.001, "COMEX": 0.001})
    before = core.ack_watch.deadline("SHFE")
    a, _b = (
        x for x in fire(core, now=now, spread_cny=-400.0 if MIN_SAMPLES % 2 else 400.0) if isinstance(x, SendOrder)
    )
    if asked_by == "ack":
        asked = core.handle(TimerFired(f"ack:{a.cl_ord_id}"), now + 0.3)
    else:
        cancels = core.handle(TimerFired(f"timeout:{a.decision_id}"), now + 0.1)
        cancel = next(c for c in cancels if type(c).__name__ == "SendCancel" and c.orig_cl_ord_id == a.cl_ord_id)
        asked = core.handle(TimerFired(f"answer:{cancel.cl_ord_id}"), now + 0.4)
    assert [q.cl_ord_id for q in asked if isinstance(q, SendStatusRequest)] == [a.cl_ord_id]
    core.handle(report(a, "resent-ack", "0", "0", 0), now + 0.41)  # its first answer, after the question
    assert a.cl_ord_id not in core.ack_watch.unanswered
    assert core.ack_watch.deadline("SHFE") == before == pytest.approx(0.3)
    # the watch itself: an asked order's answer teaches nothing, a slow answer inside the deadline does
    watch = AckWatch(multiple=4.0, floor=0.3)
    for i, (asked_first, trip) in enumerate([(True, 0.5), (False, 0.2), (True, 2.0)]):
        watch.sent(f"o{i}", "V", 0.0)
        if asked_first:
            watch.ask(f"o{i}")
        assert watch.answered(f"o{i}", trip)
    assert list(watch.recent["V"]) == [0.2] and not watch.asked


def test_one_measured_round_trip_sets_the_deadline():
    """Three were awaited: a venue's first orders stayed on four times the answer timeout (1.2 s) and a
    lost unwind early in a session waited past the order timeout (tests/regressions/lost_unwind_on_a_
    venue_with_one_round_trip_is_asked_about_after_a_few.toml)."""
    watch = AckWatch(multiple=4.0, floor=0.3)
    assert watch.deadline("COMEX") == pytest.approx(1.2)  # nothing measured yet
    watch.sent("c1", "COMEX", 0.0)
    watch.answered("c1", 0.114)
    assert watch.deadline("COMEX") == pytest.approx(0.456)
    watch.sent("s1", "SHFE", 0.0)
    watch.answered("s1", 0.001)
    assert watch.deadline("SHFE") == pytest.approx(0.3)  # never below the floor
