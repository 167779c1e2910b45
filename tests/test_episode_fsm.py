"""Paired-leg episode state machine: every transition of the table and how the legs decide the event."""

from __future__ import annotations

import pytest

from engine.core.episode import (
    RECOVERY_MOVES,
    TERMINAL,
    TRANSITIONS,
    Episode,
    EpisodeEvent,
    EpisodeState,
    Leg,
    RecoveryMode,
)
from engine.core.order import ChildOrder, OrdStatus

ALLOWED = [(s, e, t) for s, row in TRANSITIONS.items() for e, t in row.items()]
FORBIDDEN = [(s, e) for s in EpisodeState for e in EpisodeEvent if e not in TRANSITIONS[s]]


def episode() -> Episode:
    legs = {"A": Leg("A", "CU", "2", 5, 5.0), "B": Leg("B", "HG", "1", 2, 11.34)}
    return Episode("D1", "sell_spread", 300.0, legs, {"A": 70000.0, "B": 4.5}, 2.32)


@pytest.mark.parametrize("state,event,target", ALLOWED, ids=[f"{s.value}-{e.value}" for s, e, _ in ALLOWED])
def test_every_allowed_transition(state, event, target):
    ep = episode()
    ep.state = state
    assert ep.move(event) is None and ep.state is target


@pytest.mark.parametrize("state,event", FORBIDDEN, ids=[f"{s.value}-{e.value}" for s, e in FORBIDDEN])
def test_every_forbidden_transition_is_reported(state, event):
    ep = episode()
    ep.state = state
    assert ep.move(event) is not None and ep.state is state


def test_only_a_late_fill_leads_out_of_a_terminal_state_and_never_out_of_escalation():
    # a venue's late trade report moves the legs of an ended episode: reopened as legged for recovery,
    # unless the desk already holds it (escalated)
    assert {s: dict(TRANSITIONS[s]) for s in TERMINAL} == {
        EpisodeState.BALANCED: {EpisodeEvent.LATE_FILL: EpisodeState.LEGGED},
        EpisodeState.UNWOUND: {EpisodeEvent.LATE_FILL: EpisodeState.LEGGED},
        EpisodeState.ABORTED: {EpisodeEvent.LATE_FILL: EpisodeState.LEGGED},
        EpisodeState.ESCALATED: {},
    }


def fill(leg: Leg, qty: float, side: str | None = None, done: bool = True) -> None:
    o = ChildOrder(
        f"{leg.name}{len(leg.orders)}",
        "D1",
        leg.name,
        "V",
        leg.instrument,
        side or leg.side,
        int(max(qty, 1)),
        1.0,
        "entry",
    )
    o.cum_qty = qty
    o.state = OrdStatus.FILLED if done else OrdStatus.NEW
    leg.orders.append(o)


@pytest.mark.parametrize(
    "a,b,expected",
    [
        (5, 2, EpisodeEvent.DONE_BALANCED),
        (0, 0, EpisodeEvent.DONE_FLAT),
        (5, 0, EpisodeEvent.DONE_LEGGED),
        (0, 2, EpisodeEvent.DONE_LEGGED),
        (5, 1, EpisodeEvent.DONE_LEGGED),
        (3, 2, EpisodeEvent.DONE_LEGGED),
    ],
)
def test_legs_decide_the_event(a, b, expected):
    ep = episode()
    fill(ep.legs["A"], a)
    fill(ep.legs["B"], b)
    assert ep.settle_event() is expected


def test_nothing_is_decided_while_an_order_works():
    ep = episode()
    fill(ep.legs["A"], 5)
    fill(ep.legs["B"], 0, done=False)
    assert ep.settle_event() is None


def test_unwind_fills_reduce_the_leg_and_flatten_it():
    ep = episode()
    fill(ep.legs["A"], 5)
    fill(ep.legs["A"], 5, side="1")  # an unwind on the opposite side
    fill(ep.legs["B"], 0)
    assert ep.legs["A"].filled == 0 and ep.settle_event() is EpisodeEvent.DONE_FLAT


def test_exposure_in_tonnes():
    ep = episode()
    fill(ep.legs["A"], 5)
    fill(ep.legs["B"], 0)
    assert ep.naked_tonnes() == pytest.approx(25.0)
    assert ep.missing() == {"A": 0, "B": 2}


@pytest.mark.parametrize("start", list(RecoveryMode))
@pytest.mark.parametrize("target", list(RecoveryMode))
def test_the_recovery_mode_moves_only_as_its_table_allows(start, target):
    ep = Episode("E1-000001", "sell_spread", 300.0, {}, {}, 0.0)
    ep.mode = start
    if target in RECOVERY_MOVES[start]:
        ep.set_mode(target)
        assert ep.mode is target
    else:
        with pytest.raises(ValueError, match="not allowed"):
            ep.set_mode(target)
        assert ep.mode is start


def test_the_recovery_mode_table_is_a_path_from_none_to_an_end():
    """none -> chase -> unwind or hedge_overfill, and nothing leaves those two: a legged episode's repair
    never goes back to chasing once it unwinds."""
    assert RECOVERY_MOVES[RecoveryMode.NONE] == {RecoveryMode.CHASE}
    assert RECOVERY_MOVES[RecoveryMode.CHASE] == {RecoveryMode.UNWIND, RecoveryMode.HEDGE_OVERFILL}
    assert not RECOVERY_MOVES[RecoveryMode.UNWIND] and not RECOVERY_MOVES[RecoveryMode.HEDGE_OVERFILL]


def test_a_new_episode_moves_only_on_the_risk_decision():
    """Before risk has decided, nothing was sent: the legs imply nothing and no outcome is reachable."""
    assert dict(TRANSITIONS[EpisodeState.NEW]) == {
        EpisodeEvent.RISK_PASSED: EpisodeState.WORKING,
        EpisodeEvent.RISK_FAILED: EpisodeState.ABORTED,
    }


def test_a_leg_works_while_any_of_its_orders_does():
    """An earlier order still working (a chase sent while the entry rests) keeps the leg working, whatever
    the later orders' states."""
    ep = episode()
    fill(ep.legs["A"], 5)
    fill(ep.legs["B"], 1, done=False)
    fill(ep.legs["B"], 1)
    assert ep.legs["B"].working and ep.working and ep.settle_event() is None


def test_naked_tonnes_net_the_legs_by_their_direction():
    """A sold CU leg and a bought HG leg offset each other: the naked exposure is the difference of their
    tonnes, not the sum; one leg alone is its own tonnes whichever side it trades."""
    ep = episode()  # A sells 5 x 5 t, B buys 2 x 11.34 t
    fill(ep.legs["A"], 5)
    fill(ep.legs["B"], 2)
    assert ep.legs["A"].signed_tonnes == pytest.approx(-25.0) and ep.legs["B"].signed_tonnes == pytest.approx(22.68)
    assert ep.naked_tonnes() == pytest.approx(2.32)
    only_b = episode()
    fill(only_b.legs["B"], 2)
    assert only_b.naked_tonnes() == pytest.approx(22.68)
