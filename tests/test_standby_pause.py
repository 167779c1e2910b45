"""A frozen standby (fault kind standby_pause) in virtual time: it reads nothing of the stream and its
failure detector stands still; waking, it reads what its socket held before it judges the heartbeats,
so a pause alone is no failover, and a primary that died meanwhile is taken over from once it wakes,
with every event the primary streamed. Plus the kind's scenario domain and its draws in xmc explore."""

from __future__ import annotations

import random

import pytest

from simulator import explore, runner
from tests.conftest import ROOT, refused_run, variant

F25 = ROOT / "scenarios" / "f25_failover_primary_crash_mid_chase.toml"  # the primary dies at 85.68 s (seed 7)


def _pause(after_s: float, delay_ms: float) -> str:
    return f'\n[[faults]]\nkind = "standby_pause"\nafter_s = {after_s}\ndelay_ms = {delay_ms}\n'


def _events(rep) -> list[tuple[str, float]]:
    return [(e["event"], e["at_s"]) for e in rep["failover"]["node_events"]]


def test_a_pause_alone_is_no_failover_and_the_woken_standby_reads_all_it_missed(tmp_path):
    rep = runner.run(variant(tmp_path, F25, "pause_alone", extra=_pause(60, 5000))).report
    events = _events(rep)
    assert [e for e, _ in events[:3]] == ["standby_pause", "standby_wake", "primary_crash"]
    wake = rep["failover"]["node_events"][1]
    assert wake["at_s"] == pytest.approx(65.0) and wake["read"] > 0  # 5 s of stream, heartbeats included
    assert "takeover_refused_lease_held" not in [e for e, _ in events]  # it never suspected the live primary
    (fo,) = rep["failover"]["failovers"]  # f25's own crash, 20 s later, handled as without the pause
    assert fo["detect_ms"] < 400 and fo["replicated_events"] == fo["streamed_events"]
    assert all(v["status"] != "fail" for v in rep["invariants"].values())


def test_a_primary_that_dies_while_the_standby_is_frozen_is_taken_over_from_once_it_wakes(tmp_path):
    rep = runner.run(variant(tmp_path, F25, "crash_in_pause", extra=_pause(85.5, 1500))).report
    events = dict(_events(rep))
    assert events["standby_pause"] < events["primary_crash"] < events["standby_wake"] == pytest.approx(87.0)
    (fo,) = rep["failover"]["failovers"]
    assert fo["detected_s"] >= events["standby_wake"] and fo["active_s"] >= fo["detected_s"]
    assert fo["replicated_events"] == fo["streamed_events"]  # what its socket held, all applied before
    assert [g["epoch"] for g in rep["failover"]["lease_grants"]] == [1, 2]
    assert all(v["status"] != "fail" for v in rep["invariants"].values())
    assert rep["outcomes"].get("ESCALATED", 0) == 0


def test_a_primary_that_loses_its_lease_while_the_standby_is_frozen_restarts_and_trades_on(tmp_path):
    """f26's primary pauses 1.5 s while the standby is frozen for 10 s: nobody takes over, and the woken
    primary's lease has expired. It stops (as production's node does) and its supervisor restarts it:
    it takes the free lease under the next epoch and trades on, rather than waiting fenced in charge
    for a standby that cannot act (that failed invariant 5). The standby, woken, stands by again."""
    f26 = ROOT / "scenarios" / "f26_failover_primary_pause_split_brain.toml"
    rep = runner.run(variant(tmp_path, f26, "both_frozen", extra=_pause(40, 10000)), 7).report
    names = [e for e, _ in _events(rep)]
    assert names[:6] == [
        "standby_pause",
        "primary_pause",
        "primary_wake",
        "primary_lost_lease",
        "active_restarted",
        "standby_wake",
    ]
    assert [(g["node"], g["epoch"]) for g in rep["failover"]["lease_grants"]] == [("primary", 1), ("primary", 2)]
    (restart,) = rep["restarts"]
    assert restart["node"] == "primary" and restart["replayed"] > 0
    assert all(v["status"] != "fail" for v in rep["invariants"].values())
    assert rep["outcomes"].get("ESCALATED", 0) == 0 and rep["outcomes"].get("ABORTED", 0) == 0


def test_a_standby_killed_while_frozen_loses_what_its_socket_held_and_resyncs(tmp_path):
    crash = '\n[[faults]]\nkind = "standby_crash"\nafter_s = 61\ndelay_ms = 500\n'
    rep = runner.run(variant(tmp_path, F25, "crash_while_frozen", extra=_pause(60, 5000) + crash)).report
    names = [e for e, _ in _events(rep)]
    assert names[:3] == ["standby_pause", "standby_crash", "standby_resynced"] and "standby_wake" not in names
    (fo,) = rep["failover"]["failovers"]
    assert fo["replicated_events"] == fo["streamed_events"]  # the resync's history, nothing applied twice
    assert all(v["status"] != "fail" for v in rep["invariants"].values())


@pytest.mark.parametrize(
    "extra,key,hint",
    [
        ('kind = "standby_pause"\nafter_s = 5\n', "faults[2].delay_ms", "delay_ms > 0"),
        ('kind = "standby_pause"\nafter_s = 5\ndelay_ms = 9\non_order = true\n', "faults[2].on_order", "not supported"),
        ('kind = "standby_pause"\nafter_s = 5\ndelay_ms = 9\nvenue = "COMEX"\n', "faults[2].venue", "is set"),
    ],
)
def test_a_bad_standby_pause_is_exit_2_with_file_and_key(tmp_path, capsys, extra, key, hint):
    path, err = refused_run(tmp_path, capsys, F25, "\n[[faults]]\n" + extra)  # after f25's two: faults[2]
    assert str(path) in err and key in err and hint in err


def test_explore_draws_standby_pauses_on_pairs_only():
    pair = explore.load_base(F25)
    single = explore.load_base(ROOT / "scenarios" / "f03_reject_fatal_unwind.toml")
    assert "standby_pause" in pair.kinds and "standby_pause" not in single.kinds
    drawn = [explore.fault(random.Random(i), pair, "standby_pause") for i in range(50)]
    assert all(f["delay_ms"] > 0 and "venue" not in f and "until_s" not in f for f in drawn)
