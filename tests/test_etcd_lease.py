"""The leadership lease on a real etcd (Debian's etcd-server, started here on 127.0.0.1 with ports
the OS gives): one holder at a time, keep-alive, a lost lease noticed, and a new holder's epoch
(the leader key's create_revision) above every earlier one. No waiting for TTLs: a node's death is
its lease being revoked, which etcd applies at once."""

from __future__ import annotations

import pytest

from engine.shell.lease import EtcdLease, LeaseServiceUnreachable, etcd_request_timeout

pytestmark = pytest.mark.etcd


def test_one_holder_at_a_time_and_the_next_epoch_is_higher(etcd):
    a, b = EtcdLease(etcd(), "node-a", ttl=2), EtcdLease(etcd(), "node-b", ttl=2)
    first = a.acquire("node-a", 0.0)
    assert first is not None and first > 0 and a.holds("node-a", first, 0.5)
    assert b.acquire("node-b", 0.1) is None and not b.holds("node-b", first, 0.1)
    assert a.keep_alive("node-a", 1.0) and a.holds("node-a", first, 2.0)
    a._lease.revoke()  # node-a dies: nobody keeps its lease alive; etcd drops the leader key
    second = b.acquire("node-b", 3.0)
    assert second is not None and second > first and b.holds("node-b", second, 3.1)
    assert not a.keep_alive("node-a", 3.2) and not a.holds("node-a", first, 3.2)  # fenced
    assert not b.holds("node-b", first, 3.1)  # the old epoch is not this holder's
    b.release("node-b", 4.0)
    third = a.acquire("node-a", 4.1)
    assert third is not None and third > second


def test_a_lease_is_not_held_past_its_ttl_without_keep_alive(etcd):
    a = EtcdLease(etcd(), "node-a", ttl=2, margin=0.25)
    epoch = a.acquire("node-a", 10.0)
    assert a.holds("node-a", epoch, 11.4) and not a.holds("node-a", epoch, 11.6)  # 2 s less 25%
    with pytest.raises(ValueError):
        a.acquire("node-b", 12.0)
    assert a.keep_alive("node-a", 11.0)  # a renewal holds it for the TTL less the margin again
    assert a.holds("node-a", epoch, 12.4) and not a.holds("node-a", epoch, 12.6)


def test_a_failed_revoke_of_an_unused_lease_does_not_end_a_takeover():
    """etcd answered "Not Found" to the revoke of a lease nobody used (under load): acquire just
    reports the leader key is held; the unused lease expires by its TTL."""

    class Lease:
        def revoke(self):
            raise RuntimeError("Not Found")

    class Client:
        def lease(self, ttl):
            return Lease()

        def create(self, key, value, lease=None):
            return False

    assert EtcdLease(Client(), "node-b").acquire("node-b", 0.0) is None


def test_an_unanswered_keep_alive_is_no_proof_and_a_refused_one_is():
    """etcd3gw raises when etcd does not answer (a timeout, a refused connection): the keep-alive says
    LeaseServiceUnreachable and the grant stands by the holder's clock; a TTL of -1 (the lease is gone
    on the server) is a lost lease at once."""

    class Lease:
        answer: object = 1

        def refresh(self):
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    class Client:
        def get(self, key, metadata=False):
            return [(b"node-a", {"create_revision": 7})]

    lease = EtcdLease(Client(), "node-a", ttl=2)
    lease._lease, lease.revision, lease._valid_until = Lease(), 7, 11.5  # granted at 10.0: 2 s x 3/4
    lease._lease.answer = TimeoutError("read timed out")
    with pytest.raises(LeaseServiceUnreachable, match="etcd did not answer a keep-alive: TimeoutError"):
        lease.keep_alive("node-a", 11.0)
    assert lease.holds("node-a", 7, 11.4) and not lease.holds("node-a", 7, 11.6)
    lease._lease.answer = 2
    assert lease.keep_alive("node-a", 11.2) and lease.holds("node-a", 7, 12.6)
    lease._lease.answer = -1
    assert not lease.keep_alive("node-a", 11.3) and not lease.holds("node-a", 7, 11.4)


def test_the_etcd_client_gives_up_a_request_within_the_grant():
    assert etcd_request_timeout(1, 0.1) == 0.5  # 0.5 s floor, under the 0.75 s grant
    assert etcd_request_timeout(2, 0.3) == pytest.approx(0.9)  # three heartbeats
    assert etcd_request_timeout(1, 0.9) == 0.75  # never past the grant (3/4 of the TTL)


def test_a_leader_key_gone_before_it_is_read_back_is_tried_again_and_never_taken_from_another_node():
    """Under heavy load the process stalled past the TTL between creating the leader key and reading
    it back: the key was gone (acquire once died unpacking an empty answer, and the wire failover
    tests' primary with it). A key gone is tried again under a new lease; a key another node took
    meanwhile is that node's (its create_revision is never taken as our epoch)."""

    class Lease:
        def revoke(self):
            pass

    class Client:
        def __init__(self, answers):
            self.answers = list(answers)
            self.leases = 0

        def lease(self, ttl):
            self.leases += 1
            return Lease()

        def create(self, key, value, lease=None):
            return True

        def get(self, key, metadata=False):
            return self.answers.pop(0)

    ours = [(b"node-a", {"create_revision": "41"})]
    theirs = [(b"node-b", {"create_revision": "42"})]
    retried = Client([[], ours])
    assert EtcdLease(retried, "node-a").acquire("node-a", 0.0) == 41 and retried.leases == 2
    assert EtcdLease(Client([[], theirs]), "node-a").acquire("node-a", 0.0) is None
    assert EtcdLease(Client([[], [], []]), "node-a").acquire("node-a", 0.0) is None


def test_a_leader_key_recreated_under_the_same_node_name_is_not_renewed_by_the_old_holder(etcd):
    """Two processes started with the same --node name (or an old one woken after its key expired and
    the node restarted): the leader key carries that name again, under another lease and revision. The
    old holder's keep-alive must see that the key is not the one it created (its create_revision), or it
    renews and sends under an epoch the venues have already seen fenced (planted: a keep-alive that read
    only the key's value passed every other lease and failover test)."""
    old, new = EtcdLease(etcd(), "node-a", ttl=2), EtcdLease(etcd(), "node-a", ttl=2)
    first = old.acquire("node-a", 0.0)
    assert first is not None
    old.client.delete(old.key)  # the key goes (its lease expired meanwhile, say); the name comes back:
    second = new.acquire("node-a", 0.1)
    assert second is not None and second > first
    assert not old.keep_alive("node-a", 0.2) and not old.holds("node-a", first, 0.2)
    assert new.keep_alive("node-a", 0.3) and new.holds("node-a", second, 0.3)


def test_who_holds_the_lease_and_how_long_a_dead_holders_grant_may_outlive_it(etcd):
    """`held_by` names the node in the leader key (None when nobody holds it), as a restarted process
    asks before it waits out its predecessor's grant; the lease etcd grants has the TTL asked (etcd
    raises one below its minimum, which `grant_outlives` allows for, twice over)."""
    a, b = EtcdLease(etcd(), "node-a", ttl=5), EtcdLease(etcd(), "node-b", ttl=5)
    assert a.revision == 0 and b.held_by(0.0) is None and not a.holds("node-a", 0, 0.0)
    epoch = a.acquire("node-a", 0.0)
    assert epoch is not None and b.held_by(0.1) == "node-a" and a.held_by(0.1) == "node-a"
    assert 3 <= a._lease.ttl() <= 5  # the TTL asked, not etcd's minimum
    a.release("node-a", 1.0)
    assert b.held_by(1.1) is None and not a.holds("node-a", epoch, 1.1)
    assert EtcdLease(etcd(), "n", ttl=1).grant_outlives() == 4.0  # etcd's ~2 s minimum TTL, twice
    assert EtcdLease(etcd(), "n", ttl=5).grant_outlives() == 10.0


def test_an_operator_deleting_the_leader_key_ends_its_holders_lease(etcd):
    """The key is deleted (`etcdctl del`) while its lease lives on: the holder's next keep-alive finds
    no key and steps down (it does not fail reading an empty answer)."""
    a = EtcdLease(etcd(), "node-a", ttl=5)
    epoch = a.acquire("node-a", 0.0)
    assert epoch is not None
    a.client.delete(a.key)
    assert a.keep_alive("node-a", 0.1) is False and not a.holds("node-a", epoch, 0.2)


class _Lease:
    def __init__(self, ttl: int):
        self.answer = ttl

    def refresh(self) -> int:
        return self.answer


class _Client:
    """An etcd3gw client's answers, set by the test: the leader key's value and create_revision."""

    def __init__(self, value: object = b"node-a", revision: int = 7):
        self.value, self.revision = value, revision

    def get(self, key, metadata=False):
        if self.value is None:
            return []
        return [(self.value, {"create_revision": self.revision})] if metadata else [self.value]


def _granted(client: _Client, ttl_answer: int) -> EtcdLease:
    lease = EtcdLease(client, "node-a", ttl=2)
    lease._lease, lease.revision, lease._valid_until = _Lease(ttl_answer), 7, 11.5  # granted at 10.0
    return lease


@pytest.mark.parametrize(
    ("ttl", "value", "revision", "renewed"),
    [
        (1, b"node-a", 7, True),  # one second left is still a live lease
        (0, b"node-a", 7, False),  # etcd says the lease has no time left: gone
        (-1, b"node-a", 7, False),  # not found: gone
        (2, None, 7, False),  # the key deleted under a live lease
        (2, b"node-b", 7, False),  # the key holds another node's name
        (2, b"node-a", 8, False),  # our name, another key (created again since): not ours to renew
        (2, "node-a", 7, True),  # a client answering text rather than bytes
    ],
)
def test_a_keep_alive_renews_only_the_key_it_created_under_a_live_lease(ttl, value, revision, renewed):
    lease = _granted(_Client(value, revision), ttl)
    assert lease.keep_alive("node-a", 11.0) is renewed
    assert lease.holds("node-a", 7, 11.2) is renewed  # a lost lease is dropped at once, not at its grant's end
    if renewed:
        assert lease.holds("node-a", 7, 12.4) and not lease.holds("node-a", 7, 12.5)  # 11.0 + 2 s x 3/4


def test_a_lease_never_acquired_renews_nothing_and_holds_nothing():
    lease = EtcdLease(_Client(), "node-a", ttl=2)
    assert lease.keep_alive("node-a", 0.0) is False and not lease.holds("node-a", 0, 0.0)


def test_a_grant_ends_at_its_instant_and_acts_for_one_node_only():
    lease = _granted(_Client(), 2)
    assert lease.holds("node-a", 7, 11.4999) and not lease.holds("node-a", 7, 11.5)  # valid until, not at
    assert not lease.holds("node-b", 7, 11.0) and not lease.holds("node-a", 6, 11.0)
    with pytest.raises(ValueError, match="this EtcdLease acts for node 'node-a', not 'node-b'"):
        lease.keep_alive("node-b", 11.0)


def test_acquire_reads_a_leader_key_written_as_text_or_bytes():
    class Client(_Client):
        def lease(self, ttl):
            return _Lease(ttl)

        def create(self, key, value, lease=None):
            return True

    assert EtcdLease(Client("node-a", 41), "node-a").acquire("node-a", 0.0) == 41
    assert EtcdLease(Client(b"node-a", 41), "node-a").acquire("node-a", 0.0) == 41
    assert EtcdLease(Client("node-b", 41), "node-a").acquire("node-a", 0.0) is None
