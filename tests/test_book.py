"""The simulator's order book: matching by price then time, and the market maker's bulk re-quote
(cancel_all, rest_if_apart, staged quotes) leaving the book exactly as the one-by-one operations leave it."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.book import BUY, SELL, BookOrder, OrderBook

ORDER = st.tuples(
    st.sampled_from([BUY, SELL]),
    st.integers(95, 105),
    st.integers(1, 9),
    st.sampled_from(["0", "3", "4"]),
    st.booleans(),
)


def picture(book: OrderBook) -> dict:
    """Everything the book holds, in queue order: what two books must share to be the same."""
    return {
        side: [(px, [(o.order_id, o.owner, o.leaves) for o in book.levels[side][px]]) for px in book.prices[side]]
        for side in (BUY, SELL)
    } | {"ids": sorted(book.orders)}


def build(ops) -> tuple[OrderBook, list[str]]:
    """A book after these submissions (market maker's orders and a member's), and the MM's live ids."""
    book, mm = OrderBook("X"), []
    for i, (side, ticks, qty, tif, is_mm) in enumerate(ops):
        order = BookOrder(f"o{i}", "mm" if is_mm else "member", side, ticks, qty, tif if not is_mm else "0")
        book.submit(order)
        if is_mm and order.live:
            mm.append(order.order_id)
    return book, mm


@settings(max_examples=200, deadline=None)
@given(st.lists(ORDER, max_size=40))
def test_the_book_never_rests_crossed_and_keeps_time_priority(ops):
    book, _ = build(ops)
    bids, asks = book.prices[BUY], book.prices[SELL]
    assert bids == sorted(bids) and asks == sorted(asks)
    assert not bids or not asks or bids[-1] < asks[0]  # anything that could trade has traded
    for side in (BUY, SELL):
        for px in book.prices[side]:
            queue = list(book.levels[side][px])
            assert queue and all(o.live and o.leaves > 0 for o in queue)
            assert [int(o.order_id[1:]) for o in queue] == sorted(int(o.order_id[1:]) for o in queue)
    assert sum(len(q) for lv in book.levels.values() for q in lv.values()) == len(book.orders)


@settings(max_examples=200, deadline=None)
@given(st.lists(ORDER, max_size=40), st.data())
def test_cancel_all_is_cancelling_one_by_one(ops, data):
    book, mm = build(ops)
    ids = data.draw(st.lists(st.sampled_from(mm + ["gone"]), unique=True)) if mm else ["gone"]
    one_by_one = copy.deepcopy(book)
    for oid in ids:
        one_by_one.cancel(oid)
    book.cancel_all(ids)
    assert picture(book) == picture(one_by_one)


@settings(max_examples=200, deadline=None)
@given(st.lists(ORDER, max_size=40), st.sampled_from([BUY, SELL]), st.integers(95, 105), st.integers(1, 9))
def test_rest_if_apart_rests_what_submit_would_rest_and_refuses_what_would_trade(ops, side, ticks, qty):
    book, _ = build(ops)
    by_submit = copy.deepcopy(book)
    trades, rested = by_submit.submit(BookOrder("new", "mm", side, ticks, qty))
    if book.rest_if_apart(BookOrder("new", "mm", side, ticks, qty)):
        assert rested and not trades and picture(book) == picture(by_submit)
    else:
        assert trades and picture(book) == picture(build(ops)[0])  # refused: nothing done


QUOTES = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 9)), min_size=0, max_size=6)


@settings(max_examples=300, deadline=None)
@given(QUOTES, QUOTES, st.lists(ORDER, max_size=12), st.data())
def test_staged_quotes_are_the_book_that_resting_them_one_by_one_makes(bids, asks, ops, data):
    """A staged re-quote reads (best) and trades, is cancelled and withdrawn exactly as the same quotes
    rested one by one would be, whatever comes after it."""
    quotes = [(BUY, 100 - gap, qty) for gap, qty in bids] + [(SELL, 100 + gap, qty) for gap, qty in asks]
    quotes = data.draw(st.permutations(quotes))
    staged, eager = OrderBook("X"), OrderBook("X")
    staged.stage("mm", "M", 7, list(quotes))
    ids = []
    for i, (side, ticks, qty) in enumerate(quotes):
        order = BookOrder(f"M{7 + i}", "mm", side, ticks, qty)
        assert eager.rest_if_apart(order)
        ids.append(order.order_id)
    for side in (BUY, SELL):
        assert staged.best(side) == eager.best(side)
    assert staged.staged()
    for i, (side, ticks, qty, tif, cancel) in enumerate(ops):
        if cancel and ids:  # cancel one of the market maker's orders, or withdraw them all
            oid = data.draw(st.sampled_from(ids + ["all"]))
            if oid == "all":
                staged.withdraw_staged()
                eager.cancel_all(ids)
            else:
                assert (staged.cancel(oid) is None) == (eager.cancel(oid) is None)
        else:
            a, b = (
                BookOrder(f"o{i}", "member", side, ticks, qty, tif),
                BookOrder(f"o{i}", "member", side, ticks, qty, tif),
            )
            ta, ra = staged.submit(a)
            tb, rb = eager.submit(b)
            assert ra == rb and [(t.resting.order_id, t.qty, t.ticks) for t in ta] == [
                (t.resting.order_id, t.qty, t.ticks) for t in tb
            ]
        assert not staged.staged()
        assert picture(staged) == picture(eager)
        for side in (BUY, SELL):
            assert staged.best(side) == eager.best(side)
    staged.withdraw_staged()
    eager.cancel_all(ids)
    assert picture(staged) == picture(eager)


def test_quotes_are_staged_only_into_an_empty_book_and_never_crossed():
    book = OrderBook("X")
    with pytest.raises(ValueError, match="would trade with each other"):
        book.stage("mm", "M", 1, [(BUY, 100, 1), (SELL, 100, 1)])
    book.submit(BookOrder("o1", "member", BUY, 90, 1))
    with pytest.raises(ValueError, match="only into an empty book"):
        book.stage("mm", "M", 1, [(BUY, 99, 1)])
