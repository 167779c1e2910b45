"""The fence where orders leave a node (engine.shell.lease.may_send), against a lease whose answers
the test sets: send while the lease is held under the node's epoch, renew inside the margin and send
only if the renewal leaves it held under that epoch, never on an unreachable coordination service."""

from __future__ import annotations

import pytest

from engine.shell.lease import may_send


class ScriptedLease:
    """A lease that says what the test tells it: held (per epoch) before and after a renewal."""

    def __init__(self, held_epoch: int | None, renews: bool | Exception, epoch_after: int | None):
        self.held_epoch, self.renews, self.epoch_after = held_epoch, renews, epoch_after
        self.renewals = 0

    def acquire(self, node: str, now: float) -> int | None:
        raise AssertionError("the fence never acquires")

    def keep_alive(self, node: str, now: float) -> bool:
        self.renewals += 1
        if isinstance(self.renews, Exception):
            raise self.renews
        if self.renews:
            self.held_epoch = self.epoch_after
        return self.renews

    def holds(self, node: str, epoch: int, now: float) -> bool:
        return self.held_epoch == epoch

    def release(self, node: str, now: float) -> None:
        raise AssertionError("the fence never releases")


@pytest.mark.parametrize(
    "held,renews,after,sends,renewals",
    [
        (7, False, None, True, 0),  # held outside the margin: sent, no renewal asked
        (None, True, 7, True, 1),  # inside the margin, renewed under its epoch: sent
        (None, False, None, False, 1),  # the renewal failed: fenced
        (None, True, 8, False, 1),  # "renewed", but the lease is now another epoch's: fenced
        (None, ConnectionError("etcd unreachable"), None, False, 1),  # no answer is no proof: fenced
    ],
)
def test_the_fence(held, renews, after, sends, renewals):
    lease = ScriptedLease(held, renews, after)
    assert may_send(lease, "node-a", 7, 1.0) is sends and lease.renewals == renewals


def test_renew_says_renewed_lost_or_unanswered_and_names_the_error():
    """One keep-alive by the holder's rule: renewed or refused with no error; an unanswered one carries
    the error's type and text (at most 300 characters), and None while the holder's own grant lasts."""
    from engine.shell.lease import renew

    class Lease(ScriptedLease):
        revision = 7

    assert renew(Lease(7, True, 7), "node-a", lambda: 1.0) == (True, "")
    assert renew(Lease(7, False, None), "node-a", lambda: 1.0) == (False, "")
    held, gone = Lease(7, TimeoutError("x" * 400), None), Lease(None, TimeoutError("no answer"), None)
    assert renew(held, "node-a", lambda: 1.0) == (None, "TimeoutError: " + "x" * 286)
    assert renew(gone, "node-a", lambda: 1.0) == (False, "TimeoutError: no answer")
