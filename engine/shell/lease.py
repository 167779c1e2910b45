"""Who may send: the leadership lease a node must hold, and its revision, the fencing epoch.

The engine's node shells use this interface only. Two coordination services implement it in live and
wire mode (`xmc live --lease-service`): etcd (a lease with a whole-second TTL kept alive, the leader
key created under it, the key's create_revision the epoch) and ZooKeeper (an ephemeral leader node
owned by the holder's session, which the server expires a session timeout after it last heard from
the holder, a few hundred milliseconds if wanted; the node's creation zxid the epoch). The simulator's
SimulatedLease implements it in virtual time with the same semantics. The sending path asks
`holds(node, epoch, now)` before an order, cancel or replace leaves the node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol


class LeaseServiceUnreachable(Exception):
    """The coordination service did not answer a keep-alive (a partition, the service down or electing):
    proof of nothing. The holder's last grant is still its own for as long as its own clock says
    (`holds`); it asks again at its next heartbeat and steps down only once that time has run out."""


class Lease(Protocol):
    revision: int  # the epoch of the current (or last) holder; only ever grows

    def acquire(self, node: str, now: float) -> int | None:
        """Take the lease if nobody holds it (or it expired): the new revision; None if it is held."""

    def keep_alive(self, node: str, now: float) -> bool:
        """Refresh the TTL; False when the service says `node` no longer holds the lease (it must stop
        sending); LeaseServiceUnreachable when the service did not answer (the grant is unchanged)."""

    def holds(self, node: str, epoch: int, now: float) -> bool:
        """Does `node` hold the lease now, under `epoch`? The fencing check."""

    def release(self, node: str, now: float) -> None:
        """Give the lease up (a node stepping down); a no-op if it does not hold it."""

    def held_by(self, now: float) -> str | None:
        """The node named in the leader key now; None when nobody holds the lease."""

    def grant_outlives(self) -> float:
        """Seconds at most that a grant outlives its holder's last keep-alive: how long a process
        restarted after a crash may have to wait for its dead predecessor's grant to go."""


# A holder stops sending this share of the TTL before its lease would expire: room for clock drift and
# for an order already in flight, so that nothing it sent arrives after another node may hold the lease.
# The simulator's lease fences with the same rule.
FENCE_MARGIN = 0.25


def may_send(lease: Lease, node: str, epoch: int, now: float) -> bool:
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
    return bool(renewed) and lease.holds(node, epoch, now)


def renew(
    lease: Lease,
    node: str,
    clock: Callable[[], float],
    unanswered: tuple[type[BaseException], ...] = (Exception,),
) -> tuple[bool | None, str]:
    """One keep-alive by the holder's rule, the same in `xmc live` and in the simulator: (True, "") when
    the service renewed the lease; (False, "") when it says the lease is gone; when it did not answer,
    the error and None while the holder's own clock says its last grant still lasts (it trades on
    that grant and asks again at its next heartbeat), False once that has run out. In production any
    error counts as unanswered (`unanswered`): a client's own exception must not end the keep-alives
    unseen; the simulator passes LeaseServiceUnreachable alone, so that its own bugs still raise."""
    try:
        return bool(lease.keep_alive(node, clock())), ""
    except unanswered as exc:  # LeaseServiceUnreachable, or whatever else the client raised
        error = f"{type(exc).__name__}: {exc}"[:300]
        return (None if lease.holds(node, lease.revision, clock()) else False), error


def etcd_request_timeout(ttl_s: float, heartbeat_s: float) -> float:
    """How long the etcd client waits for an answer before a request counts as unanswered: 0.5 s, or three
    heartbeats if longer, and never more than the holder's grant (3/4 of the TTL). A blackholed link
    would otherwise hold a keep-alive for minutes: the keep-alive thread stuck, the node fenced by its
    own clock but never stepping down. (ZooKeeper's counterpart: ZooKeeperLease.request_timeout.)"""
    return min(ttl_s * (1.0 - FENCE_MARGIN), max(3 * heartbeat_s, 0.5))


def _text(value: bytes | str) -> str:
    """A leader key's value as text: etcd3gw answers bytes; a client answering text is read the same."""
    return value.decode() if isinstance(value, bytes) else str(value)


class EtcdLease:
    """The lease on etcd (live and wire mode): a TTL lease kept alive by its holder, a leader key
    created under it only if absent (a transaction on create_revision = 0), and that key's
    create_revision as the fencing epoch: etcd's revision only ever grows, so every new leader has
    a higher epoch than all before it.

    `holds` answers from what the last keep-alive proved (no I/O on the sending path): the lease is
    valid until the last successful refresh plus its TTL, less a safety margin for clock drift.
    """

    def __init__(self, client: Any, node: str, ttl: int = 1, key: str = "xmc/leader", margin: float = FENCE_MARGIN):
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

    def acquire(self, node: str, now: float, attempts: int = 3) -> int | None:
        """The leader key under a new lease: its create_revision (the epoch), or None when another node
        holds it. A key created and gone before it is read back (the process stalled past the TTL, as
        under heavy load) proves nothing and is tried again with a new lease, `attempts` times in all:
        the epoch is only ever read from our own key."""
        self._check(node)
        for _ in range(attempts):
            lease = self.client.lease(self.ttl)
            if not self.client.create(self.key, node, lease=lease):
                try:
                    lease.revoke()
                except Exception:  # noqa: BLE001 - etcd "Not Found" under load: the unused lease expires by its TTL
                    pass
                return None
            found = self.client.get(self.key, metadata=True)
            if not found:
                continue  # ours expired before we read it: nobody holds the key now
            value, meta = found[0]
            if _text(value) != node:
                return None  # ours expired and another node took the key meanwhile
            self._lease, self.revision = lease, int(meta["create_revision"])
            self._valid_until = now + self.ttl * (1.0 - self.margin)
            return self.revision
        return None

    def keep_alive(self, node: str, now: float) -> bool:
        self._check(node)
        if self._lease is None:
            return False
        try:
            ttl = self._lease.refresh()
            found = self.client.get(self.key, metadata=True) if ttl > 0 else None
        except Exception as exc:  # noqa: BLE001 - etcd3gw's connection errors, timeouts, HTTP 5xx: unanswered
            raise LeaseServiceUnreachable(f"etcd did not answer a keep-alive: {type(exc).__name__}: {exc}") from exc
        if ttl <= 0:
            self._valid_until = float("-inf")
            return False
        if not found or _text(found[0][0]) != node or int(found[0][1]["create_revision"]) != self.revision:
            self._valid_until = float("-inf")
            return False
        self._valid_until = now + self.ttl * (1.0 - self.margin)
        return True

    def holds(self, node: str, epoch: int, now: float) -> bool:
        return node == self.node and epoch == self.revision and now < self._valid_until

    def held_by(self, now: float) -> str | None:
        found = self.client.get(self.key)
        if not found:
            return None
        return _text(found[0])

    def grant_outlives(self) -> float:
        return 2.0 * max(self.ttl, 2)  # etcd raises a TTL below its minimum (about 2 s by default) unasked

    def release(self, node: str, now: float) -> None:
        self._check(node)
        if self._lease is not None:
            try:
                self._lease.revoke()
            except Exception:  # noqa: BLE001 - already expired or etcd gone: nothing left to give up
                pass
        self._lease, self._valid_until = None, float("-inf")


class _GrantedTimeout(logging.Handler):
    """Reads the session timeout the server granted out of kazoo's "Session created" record (kazoo keeps
    the value nowhere else) and passes every other record kazoo's own logger would show on to it."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if str(record.msg).startswith("Session created") and isinstance(args, tuple) and len(args) >= 3:
            granted = args[2]  # milliseconds, as the server answered the connect
            if isinstance(granted, int | float) and granted > 0:
                self.seconds = granted / 1e3
            return
        usual = logging.getLogger("kazoo.client")
        if record.levelno >= usual.getEffectiveLevel():
            usual.handle(record)


def zookeeper_client(hosts: str, session_timeout: float) -> Any:
    """A kazoo client (not started) asking for `session_timeout` seconds, which also learns the timeout the
    server grants: ZooKeeper holds what a client asks inside its minSessionTimeout..maxSessionTimeout
    (by default 2 and 20 of its ticks), so a session may end sooner, or later, than asked."""
    from kazoo.client import KazooClient

    logger = logging.Logger("xmc.kazoo", level=5)  # kazoo's BLATHER level, where it says what was granted
    logger.addHandler(_GrantedTimeout())
    return KazooClient(hosts=hosts, timeout=session_timeout, logger=logger)


def granted_timeout(client: Any) -> float | None:
    """The session timeout (seconds) the server granted a client made by `zookeeper_client`, once
    connected; None if unknown (another client, or a kazoo that no longer says it)."""
    handlers = getattr(getattr(client, "logger", None), "handlers", ())
    return next((h.seconds for h in handlers if isinstance(h, _GrantedTimeout)), None)


class ZooKeeperLease:
    """The lease on ZooKeeper (live and wire mode, kazoo client): the leader is an ephemeral node
    created only if absent, owned by the holder's session; its creation zxid is the fencing epoch
    (ZooKeeper's zxid only ever grows, so every new leader has a higher epoch than all before it).
    When the holder dies, the server expires its session `session_timeout` after it last heard from
    it and deletes the node; a standby watching the node learns it at once (`changed`).

    `holds` answers from what the last round trip proved (no I/O on the sending path): the server
    answered a request sent at `t`, so the session lives at least until `t + session_timeout` (the
    server counts from the last packet it received, which is later); less the safety margin."""

    def __init__(
        self, client: Any, node: str, session_timeout: float, path: str = "/xmc/leader", margin: float = FENCE_MARGIN
    ):
        import threading

        self.client = client  # a started kazoo.client.KazooClient with this session timeout
        self.node = node
        self.session_timeout = session_timeout  # asked; the server may grant another (`granted`)
        self.path = path
        self.margin = margin
        self.revision = 0
        self._valid_until = float("-inf")
        self.changed = threading.Event()  # set when the leader node goes away (a standby acts on it)

    def _check(self, node: str) -> None:
        if node != self.node:
            raise ValueError(f"this ZooKeeperLease acts for node {self.node!r}, not {node!r}")

    def _session_id(self) -> int | None:
        """kazoo's id of this client's session, None while it has none (lost, or reconnecting): then no
        node is this session's own. kazoo drops `client_id` to None when the session goes, which may
        happen between a read of the node and this check (a holder frozen past its session timeout)."""
        client_id = self.client.client_id
        return client_id[0] if client_id else None

    @property
    def granted(self) -> float | None:
        """The session timeout the server granted (seconds), when known (see `zookeeper_client`)."""
        return granted_timeout(self.client)

    def _lasts(self) -> float:
        """How long after its last answered request the session surely lives: the shorter of the timeout
        asked and the one granted (a server capping it by its maxSessionTimeout expires it sooner)."""
        granted = self.granted
        return min(self.session_timeout, granted) if granted else self.session_timeout

    @property
    def request_timeout(self) -> float:
        """A keep-alive unanswered this long is given up (the connection is down: kazoo would hold the
        request until it reconnects), so the node goes by its own clock and steps down in time."""
        return self._lasts() * (1.0 - self.margin) / 2

    def _valid(self, sent_at: float) -> float:
        return sent_at + self._lasts() * (1.0 - self.margin)

    def _watch(self, event: Any = None) -> None:
        self.changed.set()

    def watch(self) -> None:
        """Watch the leader node: `changed` is set when it goes (at once if there is none now)."""
        self.changed.clear()
        if self.client.exists(self.path, watch=self._watch) is None:
            self.changed.set()

    def acquire(self, node: str, now: float) -> int | None:
        from kazoo.exceptions import NodeExistsError

        self._check(node)
        self.changed.clear()
        try:
            self.client.create(self.path, node.encode(), ephemeral=True, makepath=True)
        except NodeExistsError:
            if self.client.exists(self.path, watch=self._watch) is None:
                self.changed.set()  # gone between the two calls: ask again at once
            return None
        data, stat = self.client.get(self.path)
        if data.decode() != node or stat.ephemeralOwner != self._session_id():
            return None
        self.revision = stat.czxid
        self._valid_until = self._valid(now)
        return self.revision

    def keep_alive(self, node: str, now: float) -> bool:
        from kazoo.exceptions import NoNodeError, SessionExpiredError

        self._check(node)
        try:
            data, stat = self.client.get_async(self.path).get(timeout=self.request_timeout)
        except (NoNodeError, SessionExpiredError):  # the node or the session is gone: the lease is lost
            self._valid_until = float("-inf")
            return False
        except Exception as exc:  # noqa: BLE001 - connection lost or no answer in time: proof of nothing
            raise LeaseServiceUnreachable(
                f"ZooKeeper did not answer a keep-alive: {type(exc).__name__}: {exc}"
            ) from exc
        if data.decode() != node or stat.czxid != self.revision or stat.ephemeralOwner != self._session_id():
            self._valid_until = float("-inf")
            return False
        self._valid_until = self._valid(now)
        return True

    def holds(self, node: str, epoch: int, now: float) -> bool:
        return node == self.node and epoch == self.revision and now < self._valid_until

    def held_by(self, now: float) -> str | None:
        from kazoo.exceptions import NoNodeError

        try:
            data, _ = self.client.get(self.path)
        except NoNodeError:
            return None
        return bytes(data).decode()

    def grant_outlives(self) -> float:
        # the server expires sessions on its ticks, after the timeout: the longer of asked and granted
        return 2.0 * max(self.session_timeout, self.granted or 0.0)

    def release(self, node: str, now: float) -> None:
        self._check(node)
        try:
            data, stat = self.client.get(self.path)
            if data.decode() == node and stat.czxid == self.revision:
                self.client.delete(self.path, version=stat.version)
        except Exception:  # noqa: BLE001 - already expired or ZooKeeper gone: nothing left to give up
            pass
        self._valid_until = float("-inf")
