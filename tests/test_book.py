"""The simulator's order book: matching by price then time, and the market maker's bulk re-quote
(cancel_all, rest_if_apart, staged quotes) leaving the book exactly as the one-by-one operations leave it."""

from __future__ import annotations

import copy

import pytest
from hypothesis import example, given, settings
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


class ReferenceBook:
    """Price-time priority as a rulebook states it, with no index at all: the resting orders in the
    order they came to rest. The best opposite price trades first, at the resting order's price, and
    within a price the order that rested first; FOK trades all or nothing; what is left of a day or GTC
    limit order rests, anything else left is dead."""

    def __init__(self) -> None:
        self.resting: list[BookOrder] = []
        self.last_staged: list[str] = []

    def _crosses(self, order: BookOrder, other: BookOrder) -> bool:
        if other.side == order.side:
            return False
        return order.ticks is None or (other.ticks <= order.ticks if order.side == BUY else other.ticks >= order.ticks)

    def submit(self, order: BookOrder) -> tuple[list[tuple], bool]:
        takers = [o for o in self.resting if self._crosses(order, o)]
        if order.tif == "4" and sum(o.leaves for o in takers) < order.qty:
            order.live = False
            return [], False
        takers.sort(key=lambda o: o.ticks if order.side == BUY else -o.ticks)  # stable: time within a price
        trades = []
        for resting in takers:
            if order.leaves == 0:
                break
            qty = min(resting.leaves, order.leaves)
            resting.cum += qty
            order.cum += qty
            trades.append((resting.order_id, order.order_id, qty, resting.ticks))
            if resting.leaves == 0:
                resting.live = False
                self.resting.remove(resting)
        rested = order.leaves > 0 and order.ticks is not None and order.tif in ("0", "1")
        if rested:
            self.resting.append(order)
        else:
            order.live = False
        return trades, rested

    def rest_if_apart(self, order: BookOrder) -> bool:
        if any(self._crosses(order, o) for o in self.resting):
            return False
        self.resting.append(order)
        return True

    def cancel(self, order_id: str) -> BookOrder | None:
        for o in self.resting:
            if o.order_id == order_id:
                self.resting.remove(o)
                o.live = False
                return o
        return None

    def best(self, side: str) -> tuple[int, int] | None:
        prices = [o.ticks for o in self.resting if o.side == side]
        if not prices:
            return None
        px = max(prices) if side == BUY else min(prices)
        return px, sum(o.leaves for o in self.resting if o.side == side and o.ticks == px)

    def depth(self, side: str, limit: int | None) -> int:
        probe = BookOrder("probe", "x", SELL if side == BUY else BUY, limit, 0)
        return sum(o.leaves for o in self.resting if self._crosses(probe, o))

    def picture(self) -> dict:
        return {
            side: [
                (px, [(o.order_id, o.owner, o.leaves) for o in self.resting if o.side == side and o.ticks == px])
                for px in sorted({o.ticks for o in self.resting if o.side == side})
            ]
            for side in (BUY, SELL)
        } | {"ids": sorted(o.order_id for o in self.resting)}


SIDE = st.sampled_from([BUY, SELL])
OPERATION = st.one_of(
    st.tuples(
        st.just("submit"), SIDE, st.one_of(st.none(), st.integers(95, 105)), st.integers(1, 9), st.sampled_from("0134")
    ),
    st.tuples(st.just("rest"), SIDE, st.integers(95, 105), st.integers(1, 9)),
    st.tuples(st.just("cancel"), st.integers(0, 60)),
    st.tuples(st.just("cancel_all"), st.lists(st.integers(0, 60), max_size=6)),
    st.tuples(st.just("stage"), QUOTES, QUOTES),
    st.tuples(st.just("withdraw")),
    st.tuples(st.just("depth"), SIDE, st.one_of(st.none(), st.integers(95, 105))),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(OPERATION, max_size=40))
@example([("rest", SELL, 100, 3), ("rest", SELL, 101, 2), ("submit", BUY, 101, 5, "4")])  # FOK for all there is
def test_the_book_trades_and_rests_as_price_time_priority_says(ops):
    """Every answer of the book (trades with their prices and sizes, rested or not, best, depth, what a
    cancel finds, each order's fill and whether it is still live) is the rulebook's, whatever the mix of
    market and limit orders, IOC, FOK, cancels and the market maker's staged re-quotes."""
    book, ref = OrderBook("X"), ReferenceBook()
    ours: dict[str, tuple[BookOrder, BookOrder]] = {}  # every order we made: the book's and the reference's
    ids: list[str] = []
    for n, op in enumerate(ops):
        kind = op[0]
        if kind in ("submit", "rest"):
            side, ticks, qty = op[1], op[2], op[3]
            tif = op[4] if kind == "submit" else "0"
            a, b = (BookOrder(f"o{n}", "member", side, ticks, qty, tif) for _ in range(2))
            ours[a.order_id] = (a, b)
            ids.append(a.order_id)
            if kind == "submit":
                trades, rested = book.submit(a)
                got = ([(t.resting.order_id, t.aggressor.order_id, t.qty, t.ticks) for t in trades], rested)
                assert got == ref.submit(b), op
            else:
                assert book.rest_if_apart(a) == ref.rest_if_apart(b), op
        elif kind == "cancel":
            oid = ids[op[1] % len(ids)] if ids and op[1] < 50 else "gone"
            found, expected = book.cancel(oid), ref.cancel(oid)
            assert (found is None) == (expected is None) and (found is None or found.order_id == oid), op
        elif kind == "cancel_all":
            chosen = [ids[i % len(ids)] if ids and i < 50 else "gone" for i in op[1]]
            book.cancel_all(list(dict.fromkeys(chosen)))
            for oid in dict.fromkeys(chosen):
                ref.cancel(oid)
        elif kind == "stage":
            if book.orders or book.staged():
                continue  # the market maker stages only into an empty book
            quotes = [(BUY, 100 - gap, qty) for gap, qty in op[1]] + [(SELL, 100 + gap, qty) for gap, qty in op[2]]
            book.stage("mm", "M", n * 10, quotes)
            ref.last_staged = []
            for i, (side, ticks, qty) in enumerate(quotes):
                assert ref.rest_if_apart(BookOrder(f"M{n * 10 + i}", "mm", side, ticks, qty))
                ref.last_staged.append(f"M{n * 10 + i}")
        elif kind == "withdraw":
            book.withdraw_staged()
            for oid in ref.last_staged:
                ref.cancel(oid)
            ref.last_staged = []
        else:
            assert book.depth(op[1], op[2]) == ref.depth(op[1], op[2]), op
        for side in (BUY, SELL):
            assert book.best(side) == ref.best(side), (op, side)
        if not book.staged():
            assert picture(book) == ref.picture(), op
        for a, b in ours.values():
            assert (a.cum, a.live) == (b.cum, b.live), (op, a.order_id)
    book.withdraw_staged()  # what is left is made and compared once more
    for oid in ref.last_staged:
        ref.cancel(oid)
    book.depth(BUY, None)
    assert picture(book) == ref.picture()
