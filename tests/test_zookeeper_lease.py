"""The leadership lease on a real ZooKeeper (Debian's zookeeper, started here on 127.0.0.1, its port
from the OS): one holder at a time, the epoch (the leader node's creation zxid) above every earlier
one, a holder that died expired by the server within its session timeout and a watching standby told
at once, a fenced holder that stops at once, and the fence's margin inside the session."""

from __future__ import annotations

import time

import pytest

from engine.shell.lease import LeaseServiceUnreachable, ZooKeeperLease

pytestmark = pytest.mark.zookeeper


def test_one_holder_at_a_time_and_the_next_epoch_is_higher(zookeeper):
    a = ZooKeeperLease(zookeeper.client(2.0), "node-a", 2.0)
    b = ZooKeeperLease(zookeeper.client(2.0), "node-b", 2.0)
    assert b.held_by(0.0) is None and a.grant_outlives() >= 2.0
    first = a.acquire("node-a", 0.0)
    assert first is not None and first > 0 and a.holds("node-a", first, 0.5)
    assert b.held_by(0.1) == "node-a"  # who holds it, as a restarted primary asks (its own name: wait)
    assert b.acquire("node-b", 0.1) is None and not b.holds("node-b", first, 0.1) and not b.changed.is_set()
    assert a.keep_alive("node-a", 1.0) and a.holds("node-a", first, 2.0)
    a.client.stop()  # node-a's session ends (a process that dies is the same, after the session timeout)
    assert b.changed.wait(5)  # the standby's watch fires when the leader node goes
    second = b.acquire("node-b", 3.0)
    assert second is not None and second > first and b.holds("node-b", second, 3.1)
    assert not b.holds("node-b", first, 3.1)  # the old epoch is not this holder's
    b.release("node-b", 4.0)
    c = ZooKeeperLease(zookeeper.client(2.0), "node-a", 2.0)
    third = c.acquire("node-a", 4.1)
    assert third is not None and third > second


HOLDER = """
import sys, threading, time
from kazoo.client import KazooClient
from engine.shell.lease import ZooKeeperLease, may_send, renew
lease = ZooKeeperLease(KazooClient(hosts=sys.argv[1], timeout=0.4), "node-a", 0.4)
lease.client.start(timeout=10)
epoch = lease.acquire("node-a", time.monotonic())
print(epoch, flush=True)
beat = threading.Event()  # the holder's keep-alive cadence, as a node's keep-alive thread waits (never set)
while renew(lease, "node-a", time.monotonic)[0] is not False:  # a node's rule: on until the grant is gone
    beat.wait(0.05)
print("fenced", may_send(lease, "node-a", epoch, time.monotonic()), flush=True)
"""


def test_a_frozen_holder_expires_the_standby_takes_over_and_the_holder_is_fenced(zookeeper):
    """The primary's process freezes (SIGSTOP, a long pause): the server expires its session within
    the timeout and deletes the leader node; the standby's watch fires and it takes the lease under a
    higher epoch; the old holder, woken, can neither renew nor send."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, zookeeper.hosts],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        epoch = int(holder.stdout.readline())
        # the standby keeps a session of ordinary length: under load a 0.4 s one of its own can expire too
        b = ZooKeeperLease(zookeeper.client(2.0), "node-b", 2.0)
        assert b.acquire("node-b", time.monotonic()) is None
        os.kill(holder.pid, signal.SIGSTOP)
        assert b.changed.wait(10)  # expired by the server, the leader node deleted, the watch fired
        taken = b.acquire("node-b", time.monotonic())
        assert taken is not None and taken > epoch
        os.kill(holder.pid, signal.SIGCONT)
        out, err = holder.communicate(timeout=10)  # a holder that never noticed would run on: a timeout, a failure
        assert out.split() == ["fenced", "False"], f"the holder said {out!r}; its stderr:\n{err[-3000:]}"
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_cut_off_from_zookeeper_is_unanswered_not_refused_and_keeps_the_lease_when_it_heals(zookeeper):
    """A partition between the holder and the server (a relay swallowing every byte): the keep-alive
    gives up after its own timeout, unanswered, which is no proof the lease is gone (kazoo would have
    held the request until it reconnected); the grant stands by the holder's clock, and once the
    partition heals inside the session timeout the same session renews it under the same epoch."""
    from kazoo.client import KazooClient

    from engine.shell.live import wait_for
    from simulator.localnet import TcpCut

    relay = TcpCut(zookeeper.port)
    client = KazooClient(hosts=f"127.0.0.1:{relay.port}", timeout=2.0)
    client.start(timeout=10)
    a = ZooKeeperLease(client, "node-a", 2.0)
    try:
        epoch = a.acquire("node-a", time.monotonic())
        assert epoch is not None
        relay.cut(1.2, silent=True)  # longer than the keep-alive's 0.75 s timeout, inside the 2 s session
        asked = time.monotonic()
        with pytest.raises(LeaseServiceUnreachable, match="ZooKeeper did not answer"):
            a.keep_alive("node-a", asked)
        assert a.holds("node-a", epoch, asked + 0.1)  # what the last answer proved still stands

        def renewed() -> bool:
            try:
                return a.keep_alive("node-a", time.monotonic())
            except LeaseServiceUnreachable:
                return False

        assert wait_for(renewed, 10, 0.05), "the healed session never renewed the lease"
        assert a.revision == epoch
    finally:
        client.stop()
        relay.close()


@pytest.mark.zookeeper_max_session_ms(1000)
def test_a_server_granting_a_shorter_session_than_asked_is_what_the_fence_counts_on(zookeeper):
    """The server caps sessions at 1 s (its maxSessionTimeout); the node asked for 2 s. Its session then
    ends 1 s after the server last heard from it, so the fence must stop sending 0.75 s after the last
    answered request, not 1.5 s: counting on the asked timeout would send after the lease could pass
    to another node. A dead holder's grant still outlives it by at most twice the longer of the two."""
    a = ZooKeeperLease(zookeeper.client(2.0), "node-a", 2.0)
    try:
        assert a.granted == pytest.approx(1.0)
        epoch = a.acquire("node-a", 10.0)
        assert epoch is not None and a.holds("node-a", epoch, 10.7) and not a.holds("node-a", epoch, 10.8)
        assert a.request_timeout == pytest.approx(0.375) and a.grant_outlives() == pytest.approx(4.0)
    finally:
        a.client.stop()


@pytest.mark.zookeeper_max_session_ms(1000)
def test_xmc_live_says_when_zookeeper_grants_another_session_timeout(zookeeper, capsys):
    from types import SimpleNamespace

    from xmc.cli import _zookeeper_lease

    args = SimpleNamespace(lease_session_ms=2000.0, zookeeper=zookeeper.hosts)
    lease = _zookeeper_lease(args, "node-a", ("127.0.0.1", zookeeper.port))
    try:
        err = capsys.readouterr().err
        assert "granted a session timeout of 1000 ms, not the 2000 ms of --lease-session-ms" in err
        assert "the fence counts on 1000 ms" in err
    finally:
        lease.client.stop()


def test_a_server_granting_a_longer_session_than_asked_keeps_the_fence_on_the_asked_one(zookeeper):
    """Asked 60 ms, below the server's minimum of two 50 ms ticks: granted 100 ms. The fence keeps the
    shorter (always safe); a restarted holder waits for the longer before it calls a grant stale."""
    a = ZooKeeperLease(zookeeper.client(0.06), "node-a", 0.06)
    try:
        assert a.granted == pytest.approx(0.1)
        assert a._valid(0.0) == pytest.approx(0.045) and a.grant_outlives() == pytest.approx(0.2)
    finally:
        a.client.stop()


def test_the_fence_stops_inside_the_session_timeout(zookeeper):
    a = ZooKeeperLease(zookeeper.client(2.0), "node-a", 2.0, margin=0.25)
    epoch = a.acquire("node-a", 10.0)
    assert a.holds("node-a", epoch, 11.4) and not a.holds("node-a", epoch, 11.6)  # 2 s less 25%
    with pytest.raises(ValueError):
        a.acquire("node-b", 12.0)


def test_the_servers_port_is_held_for_it_so_no_other_socket_can_take_it(zookeeper):
    """ZooKeeper cannot be given port 0: its port is one the OS assigned to a socket kept for it
    (simulator.ports), and ZooKeeper listens beside that socket. While it runs, nothing else can bind
    the port, with or without SO_REUSEADDR, and ZooKeeper answers on it."""
    from tests.helpers.sockets import no_other_listener_can_take

    assert no_other_listener_can_take(zookeeper.port)
    client = zookeeper.client(2.0)
    try:
        assert client.exists("/") is not None
    finally:
        client.stop()


def test_a_leader_node_recreated_under_the_same_node_name_is_not_renewed_by_the_old_holder(zookeeper):
    """The ZooKeeper twin of the etcd test: the leader node comes back with the same name, created by
    another session (another process started with the same --node, or a restart after the old
    session's node was deleted): the old holder's keep-alive sees another creation zxid and owner
    session, and stops (planted: a keep-alive that read only the node's data passed every other test)."""
    old = ZooKeeperLease(zookeeper.client(2.0), "node-a", 2.0)
    new = ZooKeeperLease(zookeeper.client(2.0), "node-a", 2.0)
    first = old.acquire("node-a", 0.0)
    assert first is not None
    old.client.delete(old.path)  # the node goes; the same name is taken by another session
    second = new.acquire("node-a", 0.1)
    assert second is not None and second > first
    assert not old.keep_alive("node-a", 0.2) and not old.holds("node-a", first, 0.2)
    assert new.keep_alive("node-a", 0.3) and new.holds("node-a", second, 0.3)


def test_a_holder_whose_leader_node_is_gone_steps_down_and_watchers_are_told(zookeeper):
    """The leader node is deleted (an operator, or the server expiring the session): the holder's next
    keep-alive is a lost lease, not a renewal; a standby watching is told at once, and a watch set
    while no leader node exists fires at once (nobody to wait for)."""
    holder = ZooKeeperLease(zookeeper.client(2.0), "node-a", 2.0)
    standby = ZooKeeperLease(zookeeper.client(2.0), "node-b", 2.0)
    standby.watch()
    assert standby.changed.is_set()  # no leader node yet
    epoch = holder.acquire("node-a", 0.0)
    assert epoch is not None
    standby.watch()
    assert not standby.changed.is_set()  # a leader holds it: wait for it to go
    holder.client.delete(holder.path)
    assert standby.changed.wait(5)
    assert holder.keep_alive("node-a", 0.1) is False and not holder.holds("node-a", epoch, 0.1)


def test_an_old_epoch_is_not_renewed_even_by_its_own_session_and_its_release_spares_the_new_holder(zookeeper):
    """A keep-alive renews the epoch it was granted and no other: the same session creating the leader
    node again (a new creation zxid) does not renew the old grant. Releasing a grant deletes the leader
    node only if it is still that grant's (a node of the same name created since is another holder's)."""
    client = zookeeper.client(2.0)
    old, again = ZooKeeperLease(client, "node-a", 2.0), ZooKeeperLease(client, "node-a", 2.0)
    first = old.acquire("node-a", 0.0)
    assert first is not None
    client.delete(old.path)
    second = again.acquire("node-a", 0.1)
    assert second is not None and second > first
    assert old.keep_alive("node-a", 0.2) is False
    other = ZooKeeperLease(zookeeper.client(2.0), "node-a", 2.0)
    client.delete(old.path)
    third = other.acquire("node-a", 0.3)
    assert third is not None
    again.release("node-a", 0.4)  # same name, but the node is the third grant's now
    assert other.held_by(0.5) == "node-a" and other.keep_alive("node-a", 0.5) and other.holds("node-a", third, 0.5)


class _Stat:
    def __init__(self, czxid: int, owner: int, version: int = 0):
        self.czxid, self.ephemeralOwner, self.version = czxid, owner, version


class _Answer:
    """kazoo's async result: the keep-alive must say how long it waits (never for ever)."""

    def __init__(self, value, waits: list):
        self.value, self.waits = value, waits

    def get(self, timeout=None):
        self.waits.append(timeout)
        if timeout is None:
            raise AssertionError("a keep-alive waiting without a timeout hangs on a silent server")
        return self.value


class _Client:
    """A kazoo client's answers, set by the test (races a real server cannot be made to show on demand)."""

    def __init__(self, data: bytes = b"node-a", czxid: int = 7, owner: int = 99, session: int = 99):
        self.data, self.stat, self.client_id, self.waits = data, _Stat(czxid, owner), (session, b""), []

    def create(self, path, value, ephemeral=False, makepath=False):
        return path

    def get(self, path):
        return self.data, self.stat

    def get_async(self, path):
        return _Answer((self.data, self.stat), self.waits)


def test_a_keep_alive_waits_at_most_its_request_timeout_and_a_grant_ends_at_its_instant():
    client = _Client()
    lease = ZooKeeperLease(client, "node-a", 0.4)
    assert lease.acquire("node-a", 10.0) == 7
    assert lease.keep_alive("node-a", 10.1) and client.waits == [pytest.approx(0.4 * 0.75 / 2)]
    assert lease.holds("node-a", 7, 10.1 + 0.3 - 1e-9) and not lease.holds("node-a", 7, 10.1 + 0.3)
    assert not lease.holds("node-b", 7, 10.2) and not lease.holds("node-a", 6, 10.2)
    with pytest.raises(ValueError, match="this ZooKeeperLease acts for node 'node-a', not 'node-b'"):
        lease.keep_alive("node-b", 10.2)


@pytest.mark.parametrize(
    ("data", "czxid", "owner", "ours"),
    [
        (b"node-a", 7, 99, True),
        (b"node-b", 7, 99, False),  # another node's name
        (b"node-a", 7, 98, False),  # our name, another session's node: ours expired, theirs since
    ],
)
def test_acquire_takes_the_leader_node_only_when_it_is_this_sessions(data, czxid, owner, ours):
    lease = ZooKeeperLease(_Client(data, czxid, owner), "node-a", 2.0)
    assert lease.acquire("node-a", 0.0) == (7 if ours else None)
    assert lease.holds("node-a", 7, 0.1) is ours


@pytest.mark.parametrize(
    ("czxid", "owner"),
    [(8, 99), (7, 98)],  # created again (same session, a new zxid); or the same zxid under another session
)
def test_a_keep_alive_renews_only_the_node_its_session_created_under_its_epoch(czxid, owner):
    client = _Client()
    lease = ZooKeeperLease(client, "node-a", 2.0)
    assert lease.acquire("node-a", 0.0) == 7
    client.stat = _Stat(czxid, owner)
    assert lease.keep_alive("node-a", 0.1) is False and not lease.holds("node-a", 7, 0.1)


def test_grant_outlives_counts_the_longer_of_the_timeout_asked_and_the_one_granted():
    assert ZooKeeperLease(_Client(), "node-a", 0.3).revision == 0  # no epoch before a grant
    assert ZooKeeperLease(_Client(), "node-a", 0.3).grant_outlives() == pytest.approx(0.6)  # nothing granted known


def test_the_granted_session_timeout_is_read_from_kazoos_record_and_other_records_pass_on():
    """kazoo 2.10 says what the server granted only in its "Session created" record (arguments: session
    id, password, negotiated timeout ms, connect timeout, read timeout); every other record goes on to
    kazoo's own logger as it would without xmc."""
    import logging

    from engine.shell.lease import _GrantedTimeout, granted_timeout, zookeeper_client

    def created(*args):
        return logging.LogRecord("xmc.kazoo", 5, "", 0, "Session created, session_id: %r ...", args, None)

    handler = _GrantedTimeout()
    handler.emit(created(1, "00", 400, 133.3, 266.7))
    assert handler.seconds == pytest.approx(0.4)  # the negotiated timeout, not the connect timeout
    handler.emit(created(1, "00", 1))
    assert handler.seconds == pytest.approx(0.001)
    handler.emit(created(1, "00", 0))
    assert handler.seconds == pytest.approx(0.001)  # a zero is no grant: the last one stands
    handler.emit(created(1, "00"))
    assert handler.seconds == pytest.approx(0.001)
    kazoo_logger, seen = logging.getLogger("kazoo.client"), []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.lineno == 0:  # this test's records; a client of an earlier test may still log here
                seen.append(record.getMessage())

    kept, kazoo_logger.level = kazoo_logger.level, logging.WARNING
    kazoo_logger.addHandler(watcher := Seen())
    try:
        handler.emit(logging.LogRecord("xmc.kazoo", logging.WARNING, "", 0, "Connection dropped", None, None))
        handler.emit(logging.LogRecord("xmc.kazoo", logging.INFO, "", 0, "Connecting", None, None))
    finally:
        kazoo_logger.removeHandler(watcher)
        kazoo_logger.level = kept
    assert seen == ["Connection dropped"]  # to kazoo's own logger, at its level and above
    assert granted_timeout(object()) is None and granted_timeout(zookeeper_client("127.0.0.1:1", 0.4)) is None

    class NoHandlers:
        logger = object()

    assert granted_timeout(NoHandlers()) is None
