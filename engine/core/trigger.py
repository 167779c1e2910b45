"""Triggers: spread, ratio and counter-price signals over two legs and FX, with hysteresis and staleness.

Prices are first brought to one unit (leg A's currency per tonne): price x units-per-tonne x FX.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import Instrument, Strategy

SELL_SPREAD = "sell_spread"  # sell leg A, buy leg B
BUY_SPREAD = "buy_spread"  # buy leg A, sell leg B


@dataclass(slots=True)
class TopOfBook:
    bid: float | None
    bid_size: float
    ask: float | None
    ask_size: float
    ts: float

    @property
    def mid(self) -> float | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2.0


def two_sided(book: TopOfBook) -> tuple[float, float]:
    """(bid, ask) of a book the caller knows is two-sided (inputs_fresh checked it)."""
    if book.bid is None or book.ask is None:
        raise ValueError("a one-sided book has no spread value")
    return book.bid, book.ask


def to_common(price: float, inst: Instrument, fx_rate: float) -> float:
    """A leg's price in the common unit (leg A currency per tonne)."""
    return price * inst.units_per_tonne * fx_rate


@dataclass(frozen=True, slots=True)
class Signal:
    side: str  # SELL_SPREAD or BUY_SPREAD
    value: float  # the signal that crossed (spread in CNY/t, or ratio)
    price_a: float  # leg A reference price, own units (the touch it would trade against)
    price_b: float
    fx_rate: float


class TriggerEvaluator:
    """Evaluates the configured trigger on each quote; remembers which sides are armed."""

    def __init__(self, strategy: Strategy, instruments: dict[str, Instrument]):
        self.s = strategy
        self.t = strategy.trigger
        self.a = instruments[strategy.leg_a]
        self.b = instruments[strategy.leg_b]
        self.fx = instruments.get(strategy.fx) if strategy.fx else None
        self.armed = {SELL_SPREAD: True, BUY_SPREAD: True}
        self.stale_skips = 0
        self.last_value: dict[str, float] = {}

    def inputs_fresh(self, books: dict[str, TopOfBook], now: float) -> str | None:
        """None when every input is two-sided, uncrossed and fresh, else the name of the first that is not."""
        for inst in (self.a, self.b, self.fx):
            if inst is None:
                continue
            name = inst.name
            book = books.get(name)
            if book is None or book.bid is None or book.ask is None or book.bid > book.ask:
                return name  # one-sided, or crossed (a data error on one venue's own book): no price to use
            limit = self.t.max_quote_age.get(name)
            if limit is not None and now - book.ts > limit:
                return name
        return None

    def fx_rate(self, books: dict[str, TopOfBook]) -> float:
        if self.fx is None:
            return 1.0
        mid = books[self.fx.name].mid
        assert mid is not None
        return mid

    def values(self, books: dict[str, TopOfBook]) -> dict[str, float]:
        """The signal each side compares with its threshold (for spread/ratio one value serves both)."""
        fx = self.fx_rate(books)
        (a_bid, a_ask), (b_bid, b_ask) = two_sided(books[self.a.name]), two_sided(books[self.b.name])
        ma, mb = self.s.price_multiplier_a, self.s.price_multiplier_b
        if self.t.kind == "counter_price":
            # executable: selling the spread sells A at its bid and buys B at its ask, and vice versa
            sell = ma * to_common(a_bid, self.a, 1.0) - mb * to_common(b_ask, self.b, fx) + self.s.offset
            buy = ma * to_common(a_ask, self.a, 1.0) - mb * to_common(b_bid, self.b, fx) + self.s.offset
            return {SELL_SPREAD: sell, BUY_SPREAD: buy}
        ca = ma * to_common((a_bid + a_ask) / 2.0, self.a, 1.0)
        cb = mb * to_common((b_bid + b_ask) / 2.0, self.b, fx)
        v = ca / cb if self.t.kind == "ratio" else ca - cb + self.s.offset
        return {SELL_SPREAD: v, BUY_SPREAD: v}

    def evaluate(self, books: dict[str, TopOfBook], now: float) -> Signal | None:
        """Returns a signal when an armed side crosses; re-arms sides that retreated past hysteresis."""
        if self.inputs_fresh(books, now) is not None:
            self.stale_skips += 1
            return None
        vals = self.values(books)
        self.last_value = vals
        sell_v, buy_v = vals[SELL_SPREAD], vals[BUY_SPREAD]
        if not self.armed[SELL_SPREAD] and sell_v < self.t.sell_above - self.t.hysteresis:
            self.armed[SELL_SPREAD] = True
        if not self.armed[BUY_SPREAD] and buy_v > self.t.buy_below + self.t.hysteresis:
            self.armed[BUY_SPREAD] = True
        (a_bid, a_ask), (b_bid, b_ask) = two_sided(books[self.a.name]), two_sided(books[self.b.name])
        fx = self.fx_rate(books)
        if self.armed[SELL_SPREAD] and sell_v >= self.t.sell_above:
            return Signal(SELL_SPREAD, sell_v, a_bid, b_ask, fx)
        if self.armed[BUY_SPREAD] and buy_v <= self.t.buy_below:
            return Signal(BUY_SPREAD, buy_v, a_ask, b_bid, fx)
        return None

    def disarm(self, side: str) -> None:
        self.armed[side] = False
