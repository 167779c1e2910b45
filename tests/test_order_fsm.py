"""Child-order state machine: every transition of the table, every forbidden one, and fill accounting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.events import ExecReport
from engine.core.order import RESTORE, TRANSITIONS, ChildOrder, OrderEvent, OrdStatus

ALLOWED = [(s, e, t) for s, row in TRANSITIONS.items() for e, t in row.items()]
FORBIDDEN = [(s, e) for s in OrdStatus for e in OrderEvent if e not in TRANSITIONS[s]]


def order(qty: int = 10) -> ChildOrder:
    return ChildOrder("C1", "D1", "A", "SHFE", "CU", "1", qty, 70000.0, "entry")


@pytest.mark.parametrize("state,event,target", ALLOWED, ids=[f"{s.name}-{e.value}" for s, e, _ in ALLOWED])
@pytest.mark.parametrize("cum", [0.0, 4.0])
def test_every_allowed_transition(state, event, target, cum):
    o = order()
    o.state, o.cum_qty = state, cum
    assert o.move(event) is None
    if target == RESTORE:
        assert o.state is (OrdStatus.PARTIALLY_FILLED if cum else OrdStatus.NEW)
    else:
        assert o.state is target


@pytest.mark.parametrize("state,event", FORBIDDEN, ids=[f"{s.name}-{e.value}" for s, e in FORBIDDEN])
def test_every_forbidden_transition_is_an_anomaly_not_a_crash(state, event):
    o = order()
    o.state = state
    problem = o.move(event)
    assert problem is not None and event.value in problem and state.name in problem
    assert o.state is state


def rpt(exec_id: str, exec_type: str, status: str, cum: float, last_qty: float = 0.0, px: float = 0.0, qty=10):
    return ExecReport(
        "SHFE", "C1", "", "O1", exec_id, exec_type, status, "CU", "1", qty, cum, qty - cum, last_qty, px, px
    )


def test_fills_accumulate_with_weighted_average_price():
    o = order()
    assert o.apply(rpt("X1", "0", "0", 0)) == (0.0, [])
    assert o.apply(rpt("X2", "F", "1", 4, 4, 100.0))[0] == 4
    assert o.apply(rpt("X3", "F", "2", 10, 6, 110.0))[0] == 6
    assert o.state is OrdStatus.FILLED and o.cum_qty == 10 and o.leaves_qty == 0
    assert o.avg_px == pytest.approx(106.0)


def test_duplicate_exec_id_is_applied_once():
    o = order()
    o.apply(rpt("X1", "F", "1", 4, 4, 100.0))
    fill, problems = o.apply(rpt("X1", "F", "1", 4, 4, 100.0))
    assert fill == 0 and problems[0][0] == "duplicate_exec_id" and o.cum_qty == 4


def test_overfill_is_recorded_and_the_fill_still_counts():
    o = order(5)
    fill, problems = o.apply(rpt("X1", "F", "2", 7, 7, 100.0, qty=5))
    assert fill == 7 and o.cum_qty == 7 and ("overfill" in [k for k, _ in problems])


def test_cum_qty_disagreement_is_recorded():
    o = order()
    _, problems = o.apply(rpt("X1", "F", "1", 5, 3, 100.0))
    assert problems[0][0] == "cum_qty_mismatch"


@st.composite
def venue_reports(draw):
    """What an honest venue may send for one order, with duplicates (PossDup resends) mixed in."""
    qty = draw(st.integers(1, 50))
    reports, cum, n = [("X0", "0", 0.0, 0.0)], 0.0, 0
    for _ in range(draw(st.integers(0, 12))):
        if cum >= qty:
            break
        n += 1
        last = draw(st.integers(1, int(qty - cum)))
        cum += last
        reports.append((f"X{n}", "F", float(last), cum))
    if cum < qty and draw(st.booleans()):
        reports.append(("XC", "4", 0.0, cum))
    dupes = draw(st.lists(st.sampled_from(reports), max_size=4))
    order_ = draw(st.permutations(reports + dupes)) if draw(st.booleans()) else reports + dupes
    return qty, order_


@given(venue_reports())
@settings(max_examples=200, deadline=None)
def test_any_report_sequence_keeps_quantities_consistent(case):
    qty, reports = case
    o = order(qty)
    unique_fill = {}
    for exec_id, exec_type, last, cum in reports:
        status = "4" if exec_type == "4" else ("2" if cum >= qty else ("1" if exec_type == "F" else "0"))
        o.apply(rpt(exec_id, exec_type, status, cum, last, 100.0, qty=qty))
        if exec_type == "F":
            unique_fill[exec_id] = last
        assert o.cum_qty <= o.qty
        if not o.done:
            assert o.leaves_qty == o.qty - o.cum_qty
        else:
            assert o.leaves_qty == 0
    assert o.cum_qty == sum(unique_fill.values())


@pytest.mark.parametrize("ended", ["4", "C"])
def test_a_fill_after_the_venue_ended_the_order_counts_and_is_a_late_fill_not_an_illegal_move(ended):
    o = order()
    o.apply(rpt("X1", "F", "1", 4, 4, 100.0))
    o.apply(rpt("X2", ended, ended, 4))
    fill, problems = o.apply(rpt("X3", "F", "2", 10, 6, 110.0))
    assert fill == 6 and o.cum_qty == 10 and o.avg_px == pytest.approx(106.0)
    assert [k for k, _ in problems] == ["late_fill"] and o.state is OrdStatus(ended) and o.leaves_qty == 0
    fill, problems = o.apply(rpt("X3", "F", "2", 10, 6, 110.0))  # the same late fill again: applied once
    assert fill == 0 and problems[0][0] == "duplicate_exec_id"


@pytest.mark.parametrize("ended", [OrdStatus.FILLED, OrdStatus.REJECTED, OrdStatus.REPLACED])
def test_a_fill_after_any_other_end_stays_an_illegal_move(ended):
    o = order()
    o.state = ended
    fill, problems = o.apply(rpt("X1", "F", "1", 4, 4, 100.0))
    assert fill == 4 and [k for k, _ in problems] == ["illegal_transition"]


@pytest.mark.parametrize(
    "cum,venue_says,mismatch", [(0.0, "0", False), (4.0, "1", False), (4.0, "0", True), (0.0, "1", True)]
)
def test_a_replaced_report_is_held_to_the_status_the_order_returns_to(cum, venue_says, mismatch):
    """While a cancel or replace is pending the venue names the order's working status and the engine's is
    the pending one: no mismatch. A Replaced report takes the order out of pending, back to what its fills
    say; from there the venue's OrdStatus must be the engine's (a Replaced report of an order with fills
    says PartiallyFilled)."""
    o = order()
    o.apply(rpt("x0", "0", "0", 0.0))
    if cum:
        o.apply(rpt("x1", "F", "1", cum, cum, 70000.0))
    o.move(OrderEvent.REPLACE_SENT)
    _, during = o.apply(rpt("x2", "E", "1" if cum else "0", cum))  # the venue's PendingReplace report
    assert during == [] and o.state is OrdStatus.PENDING_REPLACE
    _, after = o.apply(rpt("x3", "5", venue_says, cum))
    assert o.state is (OrdStatus.PARTIALLY_FILLED if cum else OrdStatus.NEW)
    assert [kind for kind, _ in after] == (["status_mismatch"] if mismatch else [])


def test_an_overfill_of_a_single_lot_is_recorded():
    o = order(5)
    fill, problems = o.apply(rpt("X1", "F", "2", 6, 6, 100.0, qty=5))
    assert fill == 6 and "overfill" in [k for k, _ in problems]


def test_a_venue_cum_qty_below_the_fills_is_recorded_too():
    o = order()
    o.apply(rpt("X1", "F", "1", 4, 4, 100.0))
    _, problems = o.apply(rpt("X2", "F", "1", 5, 3, 100.0))  # fills sum to 7, the venue says 5
    assert problems[0][0] == "cum_qty_mismatch" and o.cum_qty == 7


@pytest.mark.parametrize("last_qty,px", [(3, 0.0), (3, -1.0), (0, 100.0)])
def test_a_fill_without_quantity_or_price_is_ignored_and_recorded(last_qty, px):
    o = order()
    fill, problems = o.apply(rpt("X1", "F", "1", last_qty, last_qty, px))
    assert fill == 0 and o.cum_qty == 0 and problems[0][0] == "bad_fill"


def test_the_venues_first_order_id_is_kept_and_a_later_one_replaces_it():
    """OrderID is the venue's name for the order as its latest report gives it (a venue may re-key an
    order, e.g. on a replace)."""
    o = order()
    o.apply(ExecReport("SHFE", "C1", "", "O1", "X1", "0", "0", "CU", "1", 10, 0, 10, 0, 0, 0))
    o.apply(ExecReport("SHFE", "C1", "", "O2", "X2", "0", "0", "CU", "1", 10, 0, 10, 0, 0, 0))
    assert o.order_id == "O2"


@pytest.mark.parametrize("before", [OrdStatus.PARTIALLY_FILLED, OrdStatus.FILLED, OrdStatus.CANCELED])
def test_an_acknowledgement_overtaken_by_fills_or_the_cancel_is_stale_not_a_mismatch(before):
    o = order()
    o.state = before
    _, problems = o.apply(rpt("X9", "0", "0", 0))
    assert problems == [] and o.state is before


@pytest.mark.parametrize("status", ["0", "1"])
@pytest.mark.parametrize("pending", [OrdStatus.PENDING_CANCEL, OrdStatus.PENDING_REPLACE])
def test_a_report_of_a_working_order_while_a_request_is_open_is_no_mismatch(status, pending):
    """While a cancel or replace is open the venue still calls the order New or Partially filled."""
    o = order()
    o.state = pending
    _, problems = o.apply(rpt("X9", "I", status, 0))
    assert problems == [] and o.state is pending


@pytest.mark.parametrize(
    "status,state",
    [("2", OrdStatus.FILLED), ("4", OrdStatus.CANCELED), ("8", OrdStatus.REJECTED), ("C", OrdStatus.EXPIRED)],
)
def test_a_status_answer_naming_an_end_ends_a_working_order_and_never_reopens_a_done_one(status, state):
    o = order()
    o.state = OrdStatus.NEW
    o.adopt_status(status)
    assert o.state is state
    done = order()
    done.state = OrdStatus.REPLACED
    done.adopt_status(status)
    assert done.state is OrdStatus.REPLACED


@pytest.mark.parametrize(
    "status,cum,state",
    [
        ("A", 0, OrdStatus.PENDING_NEW),
        ("0", 0, OrdStatus.NEW),
        ("0", 2, OrdStatus.PARTIALLY_FILLED),
        ("1", 2, OrdStatus.PARTIALLY_FILLED),
        ("6", 2, OrdStatus.PENDING_CANCEL),
        ("E", 0, OrdStatus.PENDING_REPLACE),
        ("2", 10, OrdStatus.FILLED),
        ("4", 2, OrdStatus.CANCELED),
        ("C", 0, OrdStatus.EXPIRED),
        ("Z", 0, OrdStatus.NEW),
    ],
)
def test_an_adopted_order_starts_in_the_status_the_venue_names(status, cum, state):
    o = ChildOrder.from_venue("C1", "D1", "A", "SHFE", "CU", "1", 10, "chase", status, cum, 70000.0 if cum else 0.0)
    assert o.state is state and o.adopted and o.cum_qty == cum
