"""Triggers: spread, ratio and counter-price signals over two legs and FX, with hysteresis and staleness.

Prices are first brought to one unit (leg A's currency per tonne): price x units-per-tonne x FX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from engine.config import Instrument, Strategy

SELL_SPREAD: Final = "sell_spread"  # sell leg A, buy leg B
BUY_SPREAD: Final = "buy_spread"  # buy leg A, sell leg B


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


def in_common_unit(price: float, units_per_tonne: float, fx_rate: float) -> float:
    """`to_common` of an instrument whose mass units per tonne the caller has read already."""
    return price * units_per_tonne * fx_rate


@dataclass(frozen=True, slots=True)
class Signal:
    side: str  # SELL_SPREAD or BUY_SPREAD
    value: float  # the signal that crossed (spread in CNY/t, or ratio)
    price_a: float  # leg A reference price, own units (the touch it would trade against)
    price_b: float
    fx_rate: float


class TriggerEvaluator:
    """Evaluates the configured trigger on each quote; remembers which sides are armed.

    The strategy and instruments are frozen: the terms every quote needs (each input's name and
    staleness limit, the legs' mass units per tonne, the thresholds) are read from them once, here."""

    def __init__(self, strategy: Strategy, instruments: dict[str, Instrument]):
        self.t = t = strategy.trigger
        self.a = instruments[strategy.leg_a]
        self.b = instruments[strategy.leg_b]
        self.fx = instruments.get(strategy.fx) if strategy.fx else None
        self.armed = {SELL_SPREAD: True, BUY_SPREAD: True}
        self.stale_skips = 0
        self.last_value: dict[str, float] = {}
        # (name, max quote age or None) of each input, in the order they are judged
        self._inputs: tuple[tuple[str, float | None], ...] = tuple(
            (inst.name, t.max_quote_age.get(inst.name)) for inst in (self.a, self.b, self.fx) if inst is not None
        )
        self._a_name, self._b_name = self.a.name, self.b.name
        self._fx_name = self.fx.name if self.fx is not None else ""
        self._units_a, self._units_b = self.a.units_per_tonne, self.b.units_per_tonne
        self._kind = t.kind
        self._multiplier_a, self._multiplier_b = strategy.price_multiplier_a, strategy.price_multiplier_b
        self._offset = strategy.offset
        self._sell_above, self._buy_below, self._hysteresis = t.sell_above, t.buy_below, t.hysteresis

    def inputs_fresh(self, books: dict[str, TopOfBook], now: float) -> str | None:
        """None when every input is two-sided, uncrossed and fresh, else the name of the first that is not."""
        for name, limit in self._inputs:
            book = books.get(name)
            if book is None:
                return name
            bid, ask = book.bid, book.ask
            if bid is None or ask is None or bid > ask:
                return name  # one-sided, or crossed (a data error on one venue's own book): no price to use
            if limit is not None and now - book.ts > limit:
                return name
        return None

    def fx_rate(self, books: dict[str, TopOfBook]) -> float:
        if self.fx is None:
            return 1.0
        mid = books[self._fx_name].mid
        assert mid is not None
        return mid

    def values(self, books: dict[str, TopOfBook]) -> dict[str, float]:
        """The signal each side compares with its threshold (for spread/ratio one value serves both).
        Each leg's price in the common unit: price x mass units per tonne x FX (`in_common_unit`)."""
        fx = self.fx_rate(books)
        (a_bid, a_ask), (b_bid, b_ask) = two_sided(books[self._a_name]), two_sided(books[self._b_name])
        ma, mb = self._multiplier_a, self._multiplier_b
        ua, ub = self._units_a, self._units_b
        if self._kind == "counter_price":
            # executable: selling the spread sells A at its bid and buys B at its ask, and vice versa
            sell = ma * in_common_unit(a_bid, ua, 1.0) - mb * in_common_unit(b_ask, ub, fx) + self._offset
            buy = ma * in_common_unit(a_ask, ua, 1.0) - mb * in_common_unit(b_bid, ub, fx) + self._offset
            return {SELL_SPREAD: sell, BUY_SPREAD: buy}
        ca = ma * in_common_unit((a_bid + a_ask) / 2.0, ua, 1.0)
        cb = mb * in_common_unit((b_bid + b_ask) / 2.0, ub, fx)
        v = ca / cb if self._kind == "ratio" else ca - cb + self._offset
        return {SELL_SPREAD: v, BUY_SPREAD: v}

    def evaluate(self, books: dict[str, TopOfBook], now: float) -> Signal | None:
        """Returns a signal when an armed side crosses; re-arms sides that retreated past hysteresis."""
        if self.inputs_fresh(books, now) is not None:
            self.stale_skips += 1
            return None
        vals = self.values(books)
        self.last_value = vals
        sell_v, buy_v = vals[SELL_SPREAD], vals[BUY_SPREAD]
        armed = self.armed
        if not armed[SELL_SPREAD] and sell_v < self._sell_above - self._hysteresis:
            armed[SELL_SPREAD] = True
        if not armed[BUY_SPREAD] and buy_v > self._buy_below + self._hysteresis:
            armed[BUY_SPREAD] = True
        sell = armed[SELL_SPREAD] and sell_v >= self._sell_above
        buy = not sell and armed[BUY_SPREAD] and buy_v <= self._buy_below
        if not sell and not buy:
            return None
        (a_bid, a_ask), (b_bid, b_ask) = two_sided(books[self._a_name]), two_sided(books[self._b_name])
        fx = self.fx_rate(books)
        if sell:
            return Signal(SELL_SPREAD, sell_v, a_bid, b_ask, fx)
        return Signal(BUY_SPREAD, buy_v, a_ask, b_bid, fx)

    def disarm(self, side: str) -> None:
        self.armed[side] = False
