"""The lease service cut off from one node (fault kind lease_cut) in virtual time: the node trades on
its last grant while its own clock says it lasts, then stops; the standby takes over, waits for the
service, or a node in charge alone restarts once the service answers. Plus the scenario domain of
the kind, its draws in xmc explore, and the checker that fails a node trading on past its grant."""

from __future__ import annotations

import random

import pytest

from engine.shell.lease import LeaseServiceUnreachable
from simulator import explore, failover, runner, scenario
from simulator.failover import SimulatedLease
from tests.conftest import ROOT, refused_run, variant

F88 = ROOT / "scenarios" / "f88_failover_lease_service_cut_off_mid_chase.toml"
F25 = ROOT / "scenarios" / "f25_failover_primary_crash_mid_chase.toml"


def _events(rep) -> list[str]:
    return [e["event"] for e in rep["failover"]["node_events"]]


def test_the_simulated_service_answers_no_request_of_a_node_cut_off_and_the_grant_runs_on():
    lease = SimulatedLease(0.3, "primary", 1)
    lease.cut.add("primary")
    for ask in (lambda: lease.keep_alive("primary", 0.1), lambda: lease.acquire("primary", 0.5)):
        with pytest.raises(LeaseServiceUnreachable):
            ask()
    assert lease.holds("primary", 1, 0.2) and not lease.holds("primary", 1, 0.23)  # its own clock: 3/4 TTL
    assert lease.acquire("standby", 0.31) == 2  # the others still reach it; the grant expired unrenewed
    lease.cut.clear()
    assert not lease.keep_alive("primary", 0.4)


def test_a_cut_mid_chase_fences_the_primary_when_its_grant_runs_out_and_the_standby_takes_over():
    """f88: the primary trades on for three quarters of the TTL after its last answered keep-alive (its
    first chase goes), then the fence stops the re-chase; it stops at its next keep-alive, the standby
    takes the expired lease and finishes the episode, and the primary's restarted process, still cut
    off, finds the standby in charge and is refused (production's: exit 2)."""
    rep = runner.run(scenario.load(F88)).report
    assert rep["verdict"] == "pass", [x for x in rep["expectations"] if x["verdict"] != "pass"]
    fo = rep["failover"]
    events = _events(rep)
    assert events[:4] == ["lease_cut", "primary_lost_lease", "standby_suspects_primary", "restart_refused_lease_held"]
    assert [(g["node"], g["epoch"]) for g in fo["lease_grants"]] == [("primary", 1), ("standby", 2)]
    (record,) = fo["failovers"]
    cut_at = fo["node_events"][0]["at_s"]
    # counted from when the fence began to stop it: after the cut, within the grant's three quarters
    assert record["fault"] == "lease_lost" and cut_at < record["crash_s"] <= cut_at + 0.225 + 1e-9
    assert record["active_s"] - record["crash_s"] <= 0.4 + 1e-9  # the detector's window, not the cut's 2 s
    assert fo["fenced_attempts"] >= 1 and rep["restarts"] == []


def test_a_cut_shorter_than_the_grant_costs_no_failover(tmp_path):
    sc = variant(tmp_path, F88, "blip", "delay_ms = 2000", "delay_ms = 60")
    rep = runner.run(sc).report
    assert _events(rep) == ["lease_cut", "lease_reachable"]
    assert [g["epoch"] for g in rep["failover"]["lease_grants"]] == [1]
    assert rep["failover"]["fenced_attempts"] == 0 and rep["failover"]["failovers"] == []
    assert all(v["status"] != "fail" for v in rep["invariants"].values())


def test_a_node_trading_on_past_its_grant_while_the_service_is_silent_fails_invariant_5(monkeypatch):
    """The defect planted: an unanswered keep-alive taken as a renewal. The node keeps beating, so the
    standby never takes over, and stays fenced in charge for the whole 2 s cut: invariant 5 names it."""

    def trusting(self, node):
        try:
            return self.lease.keep_alive(node, self.env.now)
        except LeaseServiceUnreachable:
            return None

    monkeypatch.setattr(failover.Cluster, "_renew", trusting)
    verdict = runner.run(scenario.load(F88), 1).report["invariants"]["5"]
    assert verdict["status"] == "fail" and "node primary still sending" in verdict["first"]["detail"], verdict


@pytest.mark.parametrize("cut_ms", [1000, 3000])
def test_a_standby_cut_off_takes_over_only_once_the_service_answers(tmp_path, cut_ms):
    """The primary dies mid-chase as the standby loses the service: missed heartbeats are not the lease,
    so it asks every heartbeat and takes over only when the service answers again."""
    cut = (
        f'\n[[faults]]\nkind = "lease_cut"\nnode = "standby"\non_order = true\nvenue = "COMEX"\n'
        f'orders = "chase"\ncount = 1\ndelay_ms = {cut_ms}\n'
    )
    rep = runner.run(variant(tmp_path, F25, f"standby_cut_{cut_ms}", extra=cut)).report
    fo = rep["failover"]
    events = {e["event"]: e["at_s"] for e in fo["node_events"]}
    assert events["takeover_lease_unreachable"] < events["lease_reachable"]
    (grant,) = [g for g in fo["lease_grants"] if g["node"] == "standby"]
    assert events["lease_reachable"] <= grant["at_s"] <= events["lease_reachable"] + 0.1 + 1e-9
    assert events["lease_reachable"] - events["lease_cut"] == pytest.approx(cut_ms / 1e3)
    assert all(v["status"] != "fail" for v in rep["invariants"].values())
    assert rep["outcomes"].get("ESCALATED", 0) == 0


def test_the_node_in_charge_alone_cut_off_stops_and_restarts_under_the_next_epoch_once_it_answers(tmp_path):
    """After f25's takeover (at 86 s) the standby is in charge with nobody standing by; cut off for 1.5 s it loses
    its grant, stops (as production's node does) and its process is restarted from its journal,
    asking the service every heartbeat: it trades again under epoch 3 once the service answers."""
    cut = '\n[[faults]]\nkind = "lease_cut"\nnode = "standby"\nafter_s = 120\nuntil_s = 121.5\n'
    rep = runner.run(variant(tmp_path, F25, "active_cut", extra=cut)).report
    fo = rep["failover"]
    events = {e["event"]: e["at_s"] for e in fo["node_events"]}
    assert fo["failovers"][0]["active_s"] < 120  # the standby is in charge before the cut
    assert 120 < events["standby_lost_lease"] < 120.3 and events["active_restarted"] >= 121.5
    assert [g["epoch"] for g in fo["lease_grants"]] == [1, 2, 3]
    (restart,) = rep["restarts"]
    assert restart["node"] == "standby" and restart["restart_s"] >= 121.5 and restart["replayed"] > 0
    assert all(v["status"] != "fail" for v in rep["invariants"].values())
    assert rep["outcomes"].get("ESCALATED", 0) == 0 and rep["outcomes"].get("ABORTED", 0) == 0


@pytest.mark.parametrize(
    "extra,key,hint",
    [
        ('kind = "lease_cut"\nafter_s = 5\n', "faults[2].until_s", "needs an end"),
        ('kind = "lease_cut"\nafter_s = 5\nuntil_s = 6\nnode = "backup"\n', "faults[2].node", "standby"),
        ('kind = "lease_cut"\non_order = true\nvenue = "COMEX"\n', "faults[2].delay_ms", "delay_ms > 0"),
        ('kind = "lease_cut"\nafter_s = 5\nuntil_s = 6\nvenue = "COMEX"\n', "faults[2].venue", "is set"),
        ('kind = "standby_crash"\nafter_s = 5\ndelay_ms = 9\nnode = "primary"\n', "faults[2].node", "known key"),
    ],
)
def test_a_bad_lease_cut_is_exit_2_with_file_and_key(tmp_path, capsys, extra, key, hint):
    path, err = refused_run(tmp_path, capsys, F25, "\n[[faults]]\n" + extra)  # after f25's two: faults[2]
    assert str(path) in err and key in err and hint in err


def test_a_lease_cut_needs_a_pair(tmp_path, capsys):
    f03 = ROOT / "scenarios" / "f03_reject_fatal_unwind.toml"
    _, err = refused_run(tmp_path, capsys, f03, '\n[[faults]]\nkind = "lease_cut"\nafter_s = 5\nuntil_s = 6\n')
    assert "lease_cut" in err and "[failover]" in err


def test_explore_draws_lease_cuts_on_pairs_only_each_valid():
    """Failover bases draw the kind: either node, short cuts and long, from a time or an order; every
    draw loads as a scenario (the domain above), and a base without a pair never draws it."""
    pair = explore.load_base(F25)
    single = explore.load_base(ROOT / "scenarios" / "f03_reject_fatal_unwind.toml")
    assert "lease_cut" in pair.kinds and "lease_cut" not in single.kinds
    rng = random.Random(5)
    drawn = [explore.fault(rng, pair, "lease_cut") for _ in range(200)]
    assert {f["node"] for f in drawn} == {"primary", "standby"}
    struck = [f for f in drawn if f.get("on_order")]
    timed = [f for f in drawn if not f.get("on_order")]
    assert struck and timed and all(f["venue"] in pair.trading and f["delay_ms"] > 0 for f in struck)
    # a timed cut is a drawn window, at least half a second long (explore.in_time)
    assert {round(f["until_s"] - f["after_s"], 3) for f in timed} == {0.5, 1.0, 3.0}
    assert {round(f["delay_ms"]) for f in struck} == {150, 400, 1000, 3000}
