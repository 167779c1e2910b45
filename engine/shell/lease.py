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


# A holder stops sending this share of the TTL before its lease would expire: room for clock drift and
# for an order already in flight, so that nothing it sent arrives after another node may hold the lease.
# The simulator's lease fences with the same rule.
FENCE_MARGIN = 0.25


def may_send(lease, node: str, epoch: int, now: float) -> bool:
    """The fence where orders leave a node: it holds the lease under `epoch` with more than the
    margin left; inside the margin (a node that just woke from a pause, say) it renews first and
    sends only if that worked, so an order is neither sent on a lease about to pass to another node
    nor dropped while the lease is still its own."""
    if lease.holds(node, epoch, now):
        return True
    try:
        renewed = lease.keep_alive(node, now)
    except Exception:  # noqa: BLE001 - the coordination service is unreachable: not proof of the lease
        return False
    return renewed and lease.holds(node, epoch, now)


class EtcdLease:
    """The lease on etcd (live and wire mode): a TTL lease kept alive by its holder, a leader key
    created under it only if absent (a transaction on create_revision = 0), and that key's
    create_revision as the fencing epoch: etcd's revision only ever grows, so every new leader has
    a higher epoch than all before it.

    `holds` answers from what the last keep-alive proved (no I/O on the sending path): the lease is
    valid until the last successful refresh plus its TTL, less a safety margin for clock drift.
    """

    def __init__(self, client, node: str, ttl: int = 1, key: str = "xmc/leader", margin: float = FENCE_MARGIN):
        self.client = client  # an etcd3gw.client.Etcd3Client
        self.node = node
        self.ttl = ttl  # whole seconds (etcd's unit)
        self.key = key
        self.margin = margin
        self.revision = 0
        self._lease = None
        self._valid_until = float("-inf")

    def _check(self, node: str) -> None:
        if node != self.node:
            raise ValueError(f"this EtcdLease acts for node {self.node!r}, not {node!r}")

    def acquire(self, node: str, now: float) -> int | None:
        self._check(node)
        lease = self.client.lease(self.ttl)
        if not self.client.create(self.key, node, lease=lease):
            try:
                lease.revoke()
            except Exception:  # noqa: BLE001 - etcd "Not Found" under load: the unused lease expires by its TTL
                pass
            return None
        (value, meta), = self.client.get(self.key, metadata=True)
        self._lease, self.revision = lease, int(meta["create_revision"])
        self._valid_until = now + self.ttl * (1.0 - self.margin)
        return self.revision

    def keep_alive(self, node: str, now: float) -> bool:
        self._check(node)
        if self._lease is None or self._lease.refresh() <= 0:
            self._valid_until = float("-inf")
            return False
        found = self.client.get(self.key, metadata=True)
        if not found or found[0][0].decode() != node or int(found[0][1]["create_revision"]) != self.revision:
            self._valid_until = float("-inf")
            return False
        self._valid_until = now + self.ttl * (1.0 - self.margin)
        return True

    def holds(self, node: str, epoch: int, now: float) -> bool:
        return node == self.node and epoch == self.revision and now < self._valid_until

    def release(self, node: str, now: float) -> None:
        self._check(node)
        if self._lease is not None:
            try:
                self._lease.revoke()
            except Exception:  # noqa: BLE001 - already expired or etcd gone: nothing left to give up
                pass
        self._lease, self._valid_until = None, float("-inf")
