"""The simulated venue reports what its book traded: every fill of a member's order at the price and
size the book's price-time priority gave it, partial fills (the fault) in the chunks asked at the
traded average, and each order's end (rested, cancelled remainder, FOK refused) as the book left it.

The book itself is held to a rulebook by tests/test_book.py; here a copy of the venue's book, taken
just before each order arrives, says which trades that order must make, and the venue's
ExecutionReports (the bytes it sent, parsed) must tell exactly those: the wire checker's W12 sees a
report's own consistency and its order's history, not whether the trade happened at the book's price.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.events import SendCancel, SendOrder
from engine.fix.codec import FixCodec, fmt_px, fmt_qty
from engine.fix.dictionary import load
from simulator.book import BUY, SELL, BookOrder
from simulator.faults import Fault, FaultPlan
from simulator.link import Latency, Link
from simulator.rng import fork
from simulator.transport import WireLog
from simulator.venue import MARKET_MAKER, Venue

SYMBOL = "cu2603"

# one member order: side, lots, limit in ticks from the fair value (None: market), time in force,
# and a partial_fill fault (fill ratio, reports) or None
ORDER = st.tuples(
    st.sampled_from(("1", "2")),
    st.integers(1, 60),
    st.one_of(st.none(), st.integers(-6, 6)),
    st.sampled_from(("0", "3", "4")),
    st.one_of(st.none(), st.tuples(st.sampled_from((0.2, 0.5, 0.8)), st.integers(1, 3))),
)
# a step: a re-quote of the market maker around a fair value moved by some ticks, an order, or a
# cancel of the n-th order sent so far (which loses a race with the order's fill: the cancel_race fault)
STEP = st.one_of(
    st.tuples(st.just("quote"), st.integers(-4, 4)),
    st.tuples(st.just("order"), ORDER),
    st.tuples(st.just("cancel"), st.integers(0, 30), st.booleans()),
)


class Desk:
    """One SHFE venue in virtual time, driven by a member's FIX messages; its answers parsed."""

    def __init__(self, sc):
        self.env = simpy.Environment()
        self.cfg = sc.venues["SHFE"]
        self.inst = sc.engine.instruments["CU"]
        self.venue = Venue(self.env, self.cfg, [self.inst], fork(7, "v"), WireLog())
        self.raw: list[str] = []
        self.venue.session.link = Link(self.env, "down", Latency("constant", 0.001), fork(7, "l"), self.raw.append)
        self.venue.logged_on = True
        self.codec = FixCodec(load("SHFE"), "XMC", self.cfg.comp_id, {"CU": SYMBOL})
        self.seq = 0
        self.fair_ticks = round(70000.0 / self.inst.tick)
        self.venue.on_fair({"CU": self.fair_ticks * self.inst.tick})

    def send(self, action) -> list:
        """Deliver `action` to the venue and return the messages it answered with."""
        self.seq += 1
        before = len(self.raw)
        self.venue.receive(self.codec.frame(self.codec.encode(action, 1.8e9), self.seq, 1.8e9))
        self.env.run(until=self.env.now + 0.01)
        return [self.codec.parse(r) for r in self.raw[before:]]


def book_ids(desk: Desk) -> set[str]:
    """The ids of the orders resting in the venue's book."""
    return set(desk.venue.books[SYMBOL].orders)


def _expected(book, side: str, qty: int, ticks: int | None, tif: str, cap: int | None):
    """The trades an order makes against a copy of `book`: [(resting order, lots, ticks)]."""
    mirror = copy.deepcopy(book)
    if cap is not None:  # a partial fill: the venue trades at most `cap` lots of it, IOC
        probe = BookOrder("probe", "member", side, ticks, cap, "3")
    else:
        probe = BookOrder("probe", "member", side, ticks, qty, tif)
    trades, rested = mirror.submit(probe)
    return [(t.resting, t.qty, t.ticks) for t in trades], rested


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_the_venue_reports_exactly_what_its_book_traded(spread_scenario, steps):
    desk = Desk(spread_scenario)
    tick = desk.inst.tick
    sent: list[str] = []  # ClOrdIDs of the member's orders, in order
    for n, step in enumerate(steps):
        if step[0] == "quote":
            desk.fair_ticks += step[1]
            desk.venue.on_fair({"CU": desk.fair_ticks * tick})
            desk.env.run(until=desk.env.now + 0.01)  # what the re-quote traded is told before the next order
            continue
        if step[0] == "cancel":
            if not sent:
                continue
            working_ids = [c for c in sent if desk.venue.orders[c].status in ("0", "1")]
            pool = working_ids if working_ids and step[1] % 4 else sent  # mostly a working order, at times any
            target = pool[step[1] % len(pool)]
            co = desk.venue.orders[target]
            working, rest, race = co.status in ("0", "1"), co.qty - co.cum, step[2]
            desk.venue.faults = None
            if race:
                fault = Fault(0, "cancel_race", "SHFE", 0.0, 1e9, "any", 1.0, 0)
                desk.venue.faults = FaultPlan([fault], lambda name: fork(7, name))
            answers = desk.send(SendCancel("SHFE", f"K{n}", target, "CU", SYMBOL, co.side, co.qty, "D1", "ACC"))
            answers = [m for m in answers if m.msg_type != "X"]
            if working and race:  # too late to cancel (102=0), then the rest fills at the order's limit
                got = [(m.msg_type, m.get(102) or m.get(150)) for m in answers]
                assert got == [("9", "0"), ("8", "F")]
                fill = answers[1]
                assert float(fill.get(32)) == rest and fill.get(39) == "2" and float(fill.get(151)) == 0
                if co.price is not None:
                    assert float(fill.get(31)) == co.price
                assert co.book_order.order_id not in book_ids(desk), "a filled order leaves the book"
            elif working:  # a working order is cancelled with what it filled, and leaves the book
                assert [(m.msg_type, m.get(150), m.get(39)) for m in answers] == [("8", "4", "4")]
                assert float(answers[0].get(14)) == co.cum and co.book_order.order_id not in book_ids(desk)
            else:  # an ended order cannot be cancelled
                assert [m.msg_type for m in answers] == ["9"]
            continue
        side, qty, offset, tif, partial = step[1]
        cl = f"C{n}"
        ticks = None if offset is None else desk.fair_ticks + offset
        price = None if ticks is None else round(ticks * tick, 10)
        cap = None
        if partial is not None:
            ratio, reports = partial
            fault = Fault(0, "partial_fill", "SHFE", 0.0, 1e9, "any", 1.0, 0, fill_ratio=ratio, reports=reports)
            desk.venue.faults = FaultPlan([fault], lambda name: fork(7, name))
            cap = max(1, math.floor(qty * ratio))
        else:
            desk.venue.faults = None
        book = desk.venue.books[SYMBOL]
        trades, rested = _expected(book, side, qty, ticks, tif, cap)
        if tif == "4" and cap is None and not trades:
            rested = False
        resting_members = {
            t[0].order_id: t for t in trades if t[0].owner != MARKET_MAKER
        }  # member orders the new one trades with
        answers = desk.send(
            SendOrder("SHFE", cl, "CU", SYMBOL, side, qty, price, "1" if ticks is None else "2", tif, "ACC", "D1")
        )
        mine = [m for m in answers if m.msg_type == "8" and m.get(11) == cl]
        fills = [(int(float(m.get(32))), float(m.get(31))) for m in mine if m.get(150) == "F"]
        done = sum(q for _, q, _ in trades)
        if cap is None:
            assert fills == [(q, round(t * tick, 10)) for _, q, t in trades], "each trade reported at its book price"
        else:
            vwap = round(sum(q * t for _, q, t in trades) / done) * tick if done else 0.0
            chunks = [done // reports + (1 if i < done % reports else 0) for i in range(reports)]
            assert fills == [(c, vwap) for c in chunks if c], "partial fill: its chunks at the traded average"
        last = mine[-1]
        assert float(last.get(14)) == done, "CumQty is what the book traded"
        if done:
            assert abs(float(last.get(6)) - sum(q * p for q, p in fills) / done) < 1e-6
        co = desk.venue.orders[cl]
        if cap is None and rested:
            assert co.book_order.live and last.get(39) == ("1" if done else "0")
        elif done < qty:  # nothing of it works on (IOC, FOK, market, a partial fill's cancelled rest)
            assert last.get(150) == "4" and last.get(39) == "4" and float(last.get(151)) == 0
        else:
            assert last.get(39) == "2" and float(last.get(151)) == 0
        for resting, q, t in resting_members.values():  # the member on the other side is told too
            theirs = [m for m in answers if m.msg_type == "8" and m.get(37) == resting.order_id and m.get(150) == "F"]
            assert [(int(float(m.get(32))), float(m.get(31))) for m in theirs] == [(q, round(t * tick, 10))]
        sent.append(cl)


def test_a_partial_fill_of_two_levels_reports_their_average_in_the_chunks_asked(spread_scenario):
    """An explicit case of the property: a buy sweeping two ask levels, half filled, in three reports."""
    desk = Desk(spread_scenario)
    book = desk.venue.books[SYMBOL]
    best = book.best("2")
    assert best is not None
    qty = 2 * best[1] + 10  # half of it more than the best level holds
    fault = Fault(0, "partial_fill", "SHFE", 0.0, 1e9, "any", 1.0, 0, fill_ratio=0.5, reports=3)
    desk.venue.faults = FaultPlan([dataclasses.replace(fault)], lambda name: fork(7, name))
    trades, _ = _expected(book, "1", qty, best[0] + 5, "0", qty // 2)
    assert len({t for _, _, t in trades}) == 2, "the half reaches a second level"
    answers = desk.send(
        SendOrder("SHFE", "P1", "CU", SYMBOL, "1", qty, (best[0] + 5) * desk.inst.tick, "2", "0", "ACC", "D1")
    )
    fills = [(int(float(m.get(32))), float(m.get(31))) for m in answers if m.get(150) == "F"]
    done = qty // 2
    vwap = round(sum(q * t for _, q, t in trades) / done) * desk.inst.tick
    assert [q for q, _ in fills] == [done // 3 + (1 if i < done % 3 else 0) for i in range(3)]
    assert {p for _, p in fills} == {vwap}


_VALUE = st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=6)


@settings(max_examples=400, deadline=None)
@given(
    venue=st.sampled_from(("SHFE", "COMEX")),
    values=st.tuples(_VALUE, _VALUE, _VALUE, _VALUE, _VALUE, _VALUE),
    exec_type=st.sampled_from(("0", "4", "5", "8", "C", "F", "I")),
    price=st.one_of(st.none(), st.floats(0.0001, 1e6)),
    quantities=st.tuples(st.integers(1, 500), st.integers(0, 500), st.floats(0, 1e6), st.integers(0, 500)),
    last_px=st.floats(0, 1e6),
)
def test_a_report_written_at_once_is_the_draft_of_its_fields(venue, values, exec_type, price, quantities, last_px):
    """The venue writes most ExecutionReports' bodies in one piece (venue.report_draft): the very draft the
    codec makes of the same fields laid out (tag order, ClOrdID, framing), for any values, those that carry
    the field delimiter or are empty included; where the two could differ it declines (None) and the
    report is drafted from its fields."""
    from simulator.venue import ClientOrder, report_draft

    cl, order_id, account, symbol, orig, exec_id = values
    qty, cum, notional, leaves = quantities
    co = ClientOrder(cl, order_id or "O1", symbol, "1", qty, price, account, None, None)
    co.cum, co.notional = cum, notional
    codec = FixCodec(load(venue), venue, "XMC")
    avg = co.notional / co.cum if co.cum else 0.0
    at = "20260105-01:00:00.001"
    got = report_draft(codec, co, cl, exec_id, exec_type, "0", leaves, avg, 3, last_px, orig, at)
    fields = [(37, co.order_id), (11, cl), (17, exec_id), (150, exec_type), (39, "0"), (55, symbol), (54, "1")]
    fields += [(38, fmt_qty(qty)), (151, fmt_qty(leaves)), (14, fmt_qty(cum)), (6, fmt_px(avg)), (60, at)]
    fields += [(44, fmt_px(price))] if price is not None else []
    fields += [(41, orig)] if orig else []
    fields += [(1, account)] if account else []
    fields += [(32, fmt_qty(3)), (31, fmt_px(last_px))] if exec_type == "F" else []
    want = codec.draft("8", fields, lay_out=True)
    if got is None:
        assert "\x01" in "".join(values)  # declined only where a value carries the delimiter
        return
    assert repr(got) == repr(want)


def test_the_market_maker_quotes_no_bid_at_a_price_of_zero_or_below(spread_scenario):
    """A ladder deeper than the price (CU at 7,000 ticks, 50 levels 200 ticks apart: 9,801 deep) quotes its
    bids down to one tick and leaves the deeper ones out; every ask stays."""
    cfg = spread_scenario.venues["SHFE"]
    deep = dataclasses.replace(cfg, liquidity=dataclasses.replace(cfg.liquidity, levels=50, level_gap_ticks=200))
    desk = Desk(dataclasses.replace(spread_scenario, venues={**spread_scenario.venues, "SHFE": deep}))
    book = desk.venue.books[SYMBOL]
    book.depth(BUY, None)  # the staged ladder made into levels
    bids, asks = sorted(book.levels[BUY]), sorted(book.levels[SELL])
    assert len(asks) == 50 and len(bids) == 35 and bids[0] == 7000 - 1 - 34 * 200 > 0
