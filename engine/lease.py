"""Who may send: the leadership lease a node must hold, and its revision, the fencing epoch.

The engine's node shells use this interface only; etcd implements it in live and wire mode (a lease
with a TTL kept alive, the leader key created under it, the key's revision the epoch), and the
simulator's SimulatedLease implements it in virtual time with the same semantics. The sending path
asks `holds(node, epoch, now)` before an order, cancel or replace leaves the node.
"""

from __future__ import annotations

from typing import Protocol


class Lease(Protocol):
    revision: int  # the epoch of the current (or last) holder; only ever grows

    def acquire(self, node: str, now: float) -> int | None:
        """Take the lease if nobody holds it (or it expired): the new revision; None if it is held."""

    def keep_alive(self, node: str, now: float) -> bool:
        """Refresh the TTL; False when `node` no longer holds the lease (it must stop sending)."""

    def holds(self, node: str, epoch: int, now: float) -> bool:
        """Does `node` hold the lease now, under `epoch`? The fencing check."""

    def release(self, node: str, now: float) -> None:
        """Give the lease up (a node stepping down); a no-op if it does not hold it."""
