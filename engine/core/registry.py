"""The order registry: every child order this node knows, by ClOrdID, and the ClOrdIDs of the cancels
and replaces it sent for them, so that any answer a venue gives finds the order it is about."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, ValuesView

from engine.core import ids
from engine.core.order import ChildOrder


class OrderRegistry(Mapping[str, ChildOrder]):
    """ClOrdID -> ChildOrder (read as a mapping), plus the request ids that point at an order:
    a cancel's ClOrdID names the order it cancels, a replace's the order's first ClOrdID."""

    def __init__(self) -> None:
        self._orders: dict[str, ChildOrder] = {}
        self._cancels: dict[str, str] = {}  # OrderCancelRequest ClOrdID -> the order's ClOrdID
        self._replaces: dict[str, str] = {}  # OrderCancelReplaceRequest ClOrdID -> the order's first ClOrdID
        self._cancels_sent: dict[str, int] = {}  # the order's ClOrdID -> cancel requests sent for it

    def __getitem__(self, cl_ord_id: str) -> ChildOrder:
        return self._orders[cl_ord_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._orders)

    def __len__(self) -> int:
        return len(self._orders)

    def values(self) -> ValuesView[ChildOrder]:
        """The orders, oldest first, read straight from the dict (Mapping's own would look each up)."""
        return self._orders.values()

    def items(self) -> ItemsView[str, ChildOrder]:
        return self._orders.items()

    def add(self, order: ChildOrder) -> None:
        """A new order (sent by this node, or adopted from a venue's report)."""
        self._orders[order.cl_ord_id] = order

    def new_cancel_id(self, order: ChildOrder, epoch: int) -> str:
        """The ClOrdID of the next cancel of `order` (its n-th: <ClOrdID>C<n>, stamped), registered."""
        n = self._cancels_sent[order.cl_ord_id] = self._cancels_sent.get(order.cl_ord_id, 0) + 1
        cid = ids.stamp(f"{order.cl_ord_id}C{n}", epoch)
        self._cancels[cid] = order.cl_ord_id
        return cid

    def new_replace_id(self, order: ChildOrder, epoch: int) -> str:
        """The ClOrdID of the replace that `order.replaces` counts (<first ClOrdID>M<n>, stamped), registered."""
        first = self.key(order.cl_ord_id)
        rid = ids.stamp(f"{first}M{order.replaces}", epoch)
        self._replaces[rid] = first
        return rid

    def key(self, cl_ord_id: str) -> str:
        """The key of the order a ClOrdID belongs to: its own, its cancel's, or one of its replaces'."""
        cl_ord_id = self._cancels.get(cl_ord_id, cl_ord_id)
        return self._replaces.get(cl_ord_id, cl_ord_id)

    def find(self, cl_ord_id: str, orig: str = "") -> ChildOrder | None:
        """The order an answer is about, by its ClOrdID, else by its OrigClOrdID."""
        order = self._orders.get(self.key(cl_ord_id))
        if order is None and orig:
            order = self._orders.get(self.key(orig))
        return order

    def is_cancel(self, cl_ord_id: str) -> bool:
        """A ClOrdID of a cancel or replace request (refusing it leaves the order itself alive)."""
        return cl_ord_id in self._cancels or cl_ord_id in self._replaces

    def is_replace(self, cl_ord_id: str) -> bool:
        return cl_ord_id in self._replaces
