"""Defects found by `xmc explore`, each kept as the shrunk schedule that exposed it
(tests/regressions/, at the seed it was found with): it failed before the fix and must pass now.
And the fence itself: a node inside its lease's safety margin renews before it sends."""

from __future__ import annotations

import pytest

from engine.shell.lease import FENCE_MARGIN, may_send
from simulator import runner, scenario
from simulator.failover import SimulatedLease
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

REGRESSIONS = sorted((ROOT / "tests" / "regressions").glob("*.toml"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_a_schedule_explore_found_passes(path):
    sc = scenario.load(path)
    rep = runner.run(sc).report  # the scenario's own seed: the one the failure was found with
    failed = {k: v.get("first") for k, v in rep["invariants"].items() if v["status"] == "fail"}
    assert rep["verdict"] == "pass", (rep["replay"], failed)


def test_the_fence_renews_inside_the_margin_and_refuses_when_the_lease_is_gone():
    lease = SimulatedLease(ttl=0.3, holder="primary", revision=1, now=0.0)
    assert may_send(lease, "primary", 1, 0.1)  # plenty left
    inside = 0.3 * (1 - FENCE_MARGIN) + 0.01  # 0.235: inside the margin, still the holder
    assert not lease.holds("primary", 1, inside) and may_send(lease, "primary", 1, inside)
    assert lease.expires == pytest.approx(inside + 0.3)  # renewed first
    assert not may_send(lease, "primary", 1, inside + 0.31)  # expired: no renewal, no send
    assert lease.acquire("standby", inside + 0.31) == 2
    assert not may_send(lease, "primary", 1, inside + 0.32) and not may_send(lease, "primary", 2, inside + 0.32)


def test_a_renewal_does_not_fence_in_an_order_of_an_older_epoch():
    """The node holds the lease again, under a newer epoch (it lost it and won it back): an order stamped
    with the old epoch is refused even though the renewal inside the margin succeeds (planted: a fence
    that sent whenever the renewal worked passed every other lease and failover test)."""
    lease = SimulatedLease(ttl=0.3, holder="primary", revision=1, now=0.0)
    assert lease.acquire("standby", 0.31) == 2 and lease.acquire("primary", 0.62) == 3
    inside = 0.62 + 0.3 * (1 - FENCE_MARGIN) + 0.01  # inside the margin: may_send renews first
    assert not may_send(lease, "primary", 1, inside)
    assert lease.expires == pytest.approx(inside + 0.3)  # the renewal itself worked
    assert may_send(lease, "primary", 3, inside + 0.01)  # the current epoch still sends


def test_a_lease_service_that_fails_is_no_proof():
    class Broken:
        def holds(self, node, epoch, now):
            return False

        def keep_alive(self, node, now):
            raise ConnectionError("etcd unreachable")

    assert not may_send(Broken(), "primary", 1, 0.0)
