"""A price-time-priority limit order book with matching: limit, market, IOC/FAK, FOK and cancel.

Prices are held as whole ticks so that levels compare exactly. The book knows nothing of FIX; the
venue turns its fills and cancels into execution reports. A re-quote into an otherwise empty book is
staged: its orders are made only when something trades against or cancels in the book.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Final

BUY: Final = "1"
SELL: Final = "2"


@dataclass(slots=True)
class BookOrder:
    order_id: str
    owner: str  # "mm" for background liquidity, else the session's name
    side: str
    ticks: int | None  # None for a market order
    qty: int
    tif: str = "0"  # FIX 59: 0 day, 1 GTC, 3 IOC, 4 FOK
    cum: int = 0
    live: bool = True

    @property
    def leaves(self) -> int:
        return self.qty - self.cum


@dataclass(frozen=True, slots=True)
class Trade:
    resting: BookOrder
    aggressor: BookOrder
    qty: int
    ticks: int


class OrderBook:
    def __init__(self, symbol: str):
        self.symbol = symbol
        self.levels: dict[str, dict[int, deque[BookOrder]]] = {BUY: {}, SELL: {}}
        self.prices: dict[str, list[int]] = {BUY: [], SELL: []}  # ascending tick lists
        self.orders: dict[str, BookOrder] = {}
        # a staged re-quote: (owner, id prefix, first id number, [(side, ticks, qty)]), not yet orders
        self._staged: tuple[str, str, int, list[tuple[str, int, int]]] | None = None
        self._made: list[str] = []  # ids of the orders the last staged quotes were made into
        self._staged_best: dict[str, tuple[int, int] | None] = {}  # best() of the staged quotes, per side

    def stage(self, owner: str, id_prefix: str, first_id: int, quotes: list[tuple[str, int, int]]) -> None:
        """Rest these quotes of `owner` in the book, which holds nothing else and is not crossed by them,
        as orders f"{id_prefix}{first_id + i}": what resting them one by one does, made only when the
        book is next traded or changed (a market maker re-quotes far more often than anyone trades, and
        `best` reads staged quotes as they are). `withdraw_staged` cancels them either way."""
        if self._staged is not None or self.orders:
            raise ValueError(f"{self.symbol}: quotes are staged only into an empty book")
        bid: list[int] | None = None  # [ticks, qty] of the best of each side
        ask: list[int] | None = None
        for side, ticks, qty in quotes:
            best = bid if side == BUY else ask
            if best is None or (ticks > best[0] if side == BUY else ticks < best[0]):
                if side == BUY:
                    bid = [ticks, qty]
                else:
                    ask = [ticks, qty]
            elif ticks == best[0]:
                best[1] += qty
        if bid is not None and ask is not None and bid[0] >= ask[0]:
            raise ValueError(f"{self.symbol}: staged quotes would trade with each other")
        self._staged = (owner, id_prefix, first_id, quotes)
        self._staged_best = {
            BUY: None if bid is None else (bid[0], bid[1]),
            SELL: None if ask is None else (ask[0], ask[1]),
        }
        self._made = []

    def staged(self) -> bool:
        """Quotes are staged and not yet made into orders."""
        return self._staged is not None

    def withdraw_staged(self) -> None:
        """Cancel the last staged quotes: unmade, they are dropped; made, their orders are cancelled."""
        if self._staged is not None:
            self._staged = None
        else:
            self.cancel_all(self._made)
        self._made = []

    def _make(self) -> None:
        """Turn staged quotes into resting orders, in the order they were quoted."""
        if self._staged is None:
            return
        owner, prefix, first, quotes = self._staged
        self._staged = None
        for i, (side, ticks, qty) in enumerate(quotes):
            order = BookOrder(f"{prefix}{first + i}", owner, side, ticks, qty)
            self._rest(order)
            self._made.append(order.order_id)

    def best(self, side: str) -> tuple[int, int] | None:
        """(ticks, total qty) at the best level of `side`, or None when empty."""
        if self._staged is not None:
            return self._staged_best[side]
        prices = self.prices[side]
        if not prices:
            return None
        px = prices[-1] if side == BUY else prices[0]
        return px, sum(o.leaves for o in self.levels[side][px])

    def depth(self, side: str, limit_ticks: int | None) -> int:
        """Quantity on `side` that an opposite order limited at `limit_ticks` could take."""
        self._make()
        total = 0
        for px, q in self.levels[side].items():
            if limit_ticks is None or (px >= limit_ticks if side == BUY else px <= limit_ticks):
                total += sum(o.leaves for o in q)
        return total

    def submit(self, order: BookOrder) -> tuple[list[Trade], bool]:
        """Match `order`; rest what is left if it is a day/GTC limit. Returns (trades, rested)."""
        self._make()
        opposite = SELL if order.side == BUY else BUY
        if order.tif == "4" and self.depth(opposite, order.ticks) < order.qty:
            order.live = False
            return [], False
        trades: list[Trade] = []
        prices = self.prices[opposite]
        while order.leaves > 0 and prices:
            px = prices[0] if order.side == BUY else prices[-1]
            if order.ticks is not None and (px > order.ticks if order.side == BUY else px < order.ticks):
                break
            queue = self.levels[opposite][px]
            while queue and order.leaves > 0:
                resting = queue[0]
                qty = min(resting.leaves, order.leaves)
                resting.cum += qty
                order.cum += qty
                trades.append(Trade(resting, order, qty, px))
                if resting.leaves == 0:
                    resting.live = False
                    queue.popleft()
                    del self.orders[resting.order_id]
            if not queue:
                del self.levels[opposite][px]
                prices.remove(px)
        rested = False
        if order.leaves > 0:
            if order.ticks is not None and order.tif in ("0", "1"):
                self._rest(order)
                rested = True
            else:
                order.live = False
        else:
            order.live = False
        return trades, rested

    def _rest(self, order: BookOrder) -> None:
        ticks = order.ticks
        assert ticks is not None, "a market order never rests"
        level = self.levels[order.side].get(ticks)
        if level is None:
            level = self.levels[order.side][ticks] = deque()
            bisect.insort(self.prices[order.side], ticks)
        level.append(order)
        self.orders[order.order_id] = order

    def rest_if_apart(self, order: BookOrder) -> bool:
        """Rest a day limit order that cannot trade with the book as it stands (what `submit` does with
        it, without the walk); False, and nothing done, when it would trade: `submit` it."""
        self._make()
        side, ticks = order.side, order.ticks
        assert ticks is not None, "a market order never rests"
        if side == BUY:
            opposite = self.prices[SELL]
            if opposite and opposite[0] <= ticks:
                return False
        else:
            opposite = self.prices[BUY]
            if opposite and opposite[-1] >= ticks:
                return False
        self._rest(order)
        return True

    def cancel_all(self, order_ids: list[str]) -> None:
        """`cancel` each of these orders, in order (a re-quote's withdrawal of its old levels)."""
        self._make()
        orders, levels, prices = self.orders, self.levels, self.prices
        for oid in order_ids:
            order = orders.pop(oid, None)
            if order is None:
                continue
            side, ticks = order.side, order.ticks
            assert ticks is not None  # it rested
            queue = levels[side][ticks]
            if len(queue) == 1:
                del levels[side][ticks]
                prices[side].remove(ticks)
            else:
                queue.remove(order)
            order.live = False

    def cancel(self, order_id: str) -> BookOrder | None:
        self._make()
        order = self.orders.pop(order_id, None)
        if order is None:
            return None
        ticks = order.ticks
        assert ticks is not None  # it rested
        queue = self.levels[order.side][ticks]
        queue.remove(order)
        if not queue:
            del self.levels[order.side][ticks]
            self.prices[order.side].remove(ticks)
        order.live = False
        return order
