"""The wire/virtual parity check: episodes paired by side and signal time on one clock; every
difference in outcome, fill or timing listed; one-sided episodes near the edges noted, not counted."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from simulator.parity import Tolerance, compare, summary
from tests.conftest import ROOT

pytestmark = pytest.mark.wire


def _episode(
    did: str, t: float, side: str = "buy_spread", outcome: str = "BALANCED", fills=(5.0, 2.0), terminal_ms: float = 0.4
) -> dict:
    return {
        "decision_id": did,
        "side": side,
        "signal_at_s": t,
        "outcome": outcome,
        "signal_to_terminal_ms": terminal_ms,
        "legs": {"A": {"filled": fills[0]}, "B": {"filled": fills[1]}},
    }


def _report(episodes: list[dict], open_at: float = 0.0) -> dict:
    outcomes: dict[str, int] = {}
    for e in episodes:
        outcomes[e["outcome"]] = outcomes.get(e["outcome"], 0) + 1
    return {
        "scenario": "s",
        "seed": 1,
        "duration_s": 10.0,
        "market_open_s": open_at,
        "episodes": episodes,
        "outcomes": outcomes,
    }


VIRTUAL = _report([_episode("E1-000001", 2.0), _episode("E1-000002", 4.5, "sell_spread"), _episode("E1-000003", 7.0)])


def test_the_same_episodes_on_a_shifted_clock_are_identical():
    wire = copy.deepcopy(VIRTUAL)
    for e in wire["episodes"]:
        e["signal_at_s"] += 3.25 + 0.002  # the wire engine's clock started 3.25 s before the market opened
        e["signal_to_terminal_ms"] = 1.8
    result = compare(VIRTUAL, dict(wire, market_open_s=3.25))
    assert result["identical"] and result["verdict"] == "pass" and result["episodes"]["paired"] == 3
    assert not result["differences"]
    assert abs(result["timing_ms"]["signal_offset_wire_minus_virtual"]["p50"] - 2.0) < 1e-6


def test_a_different_fill_outcome_and_timing_are_each_listed():
    wire = copy.deepcopy(VIRTUAL)
    wire["episodes"][1].update(outcome="ESCALATED", legs={"A": {"filled": 0.0}, "B": {"filled": 2.0}})
    wire["episodes"][2]["signal_to_terminal_ms"] = 900.0
    result = compare(VIRTUAL, wire, Tolerance(terminal_ms=250))
    kinds = sorted(d["kind"] for d in result["differences"])
    assert kinds == ["fill", "outcome", "timing"] and not result["identical"] and result["verdict"] == "fail"
    fill = next(d for d in result["differences"] if d["kind"] == "fill")
    assert "E1-000002" in fill["where"] and "leg A filled 5.0 lots in virtual, 0.0 in wire" in fill["detail"]
    assert "DIFF outcome" in summary(result) and "DIFFERENT" in summary(result)


def test_missing_episodes_count_but_edge_ones_are_only_noted():
    wire = _report(
        [
            _episode("E1-000001", 2.0),
            _episode("E1-000002", 4.9, "sell_spread"),
            _episode("E1-000003", 7.0),
            _episode("E1-000004", 9.6),
        ]
    )
    result = compare(VIRTUAL, wire, Tolerance(signal_ms=250))  # 4.5 vs 4.9: too far apart to pair
    counted = [(d["kind"], d["where"].split()[0]) for d in result["differences"] if d["counts"]]
    assert sorted(counted) == [("missing", "virtual"), ("missing", "wire")]
    edge = [d for d in result["differences"] if not d["counts"]]
    assert len(edge) == 1 and edge[0]["kind"] == "edge" and "E1-000004" in edge[0]["where"]
    assert not result["identical"]
    assert compare(VIRTUAL, wire, Tolerance(signal_ms=500))["episodes"]["paired"] == 3


def test_a_session_cut_inside_an_episode_widens_its_timing_tolerance_by_one_reconnect():
    """quickfix logs on again at its next ReconnectInterval after a cut, virtual time at once: an
    episode a cut falls into may end up to that much later; one without a cut may not."""
    virtual = _report([_episode("E1-000001", 2.0, terminal_ms=3400.0), _episode("E1-000002", 6.0, terminal_ms=3300.0)])
    wire = copy.deepcopy(virtual)
    wire["episodes"][0]["signal_to_terminal_ms"] = 4200.0
    wire["episodes"][1]["signal_to_terminal_ms"] = 4200.0
    wire["wire_faults"] = [{"fault": "disconnect_on_order", "at_s": 2.06}]  # inside the first episode only
    result = compare(virtual, wire, Tolerance(terminal_ms=250, reconnect_s=1.0))
    timing = [d for d in result["differences"] if d["kind"] == "timing"]
    assert len(timing) == 1 and "E1-000002" in timing[0]["where"] and "tolerance 250 ms" in timing[0]["detail"]


def test_the_side_must_match_to_pair():
    wire = copy.deepcopy(VIRTUAL)
    wire["episodes"][0]["side"] = "sell_spread"
    result = compare(VIRTUAL, wire)
    assert result["episodes"]["paired"] == 2 and {d["kind"] for d in result["differences"]} == {"missing"}


def test_parity_over_real_fix_sessions(tmp_path):
    """Virtual and wire runs of the parity scenario: real FIX both ways, one clock, the comparison
    written and printed. Real sessions interleave the venues' quotes as the OS schedules the
    sockets, so an episode may fire one quote apart; such a difference must be listed, never lost."""
    out = tmp_path / "parity"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "parity",
            str(ROOT / "scenarios" / "cu_hg_fast_spread.toml"),
            "--duration",
            "8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    result = json.loads((out / "parity.json").read_text())
    assert result["episodes"]["virtual"] >= 3 and result["episodes"]["paired"] >= result["episodes"]["virtual"] // 2
    assert (proc.returncode == 0) == result["identical"]
    assert ("identical outcomes and fills" in proc.stdout) == result["identical"]
    for d in result["differences"]:
        assert d["kind"] in ("missing", "edge", "outcome", "fill", "timing") and d["where"] and d["detail"]
        assert f"{d['kind']}: {d['where']}" in proc.stdout
    for mode in ("virtual", "wire"):
        assert (out / mode / "report.json").exists() and (out / mode / "messages.log").exists()
    wire = json.loads((out / "wire" / "report.json").read_text())
    assert wire["fills_match_positions"] and wire["market_open_s"] > 0


def test_parity_of_a_failure_scenario_whose_fault_cuts_the_session(tmp_path):
    """f12 over the wire for its first episode: the venue cuts the COMEX session the moment the entry
    arrives (disconnect_on_order, 3 s), the engine logs on again and the episode ends as in virtual
    time: same outcome and fills, the timing within the tolerance a cut allows. (A wire run that
    skipped the fault would end ~3 s sooner and be listed as a timing difference.)"""
    out = tmp_path / "parity"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "parity",
            str(ROOT / "scenarios" / "f12_disconnect_cancel_on_disconnect.toml"),
            "--duration",
            "50",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    result = json.loads((out / "parity.json").read_text())
    wire = json.loads((out / "wire" / "report.json").read_text())
    assert [f["fault"] for f in wire["wire_faults"]] == ["disconnect_on_order"], wire["wire_faults"]
    assert result["episodes"] == {"virtual": 1, "wire": 1, "paired": 1}
    assert proc.returncode == 0 and result["identical"], proc.stdout[-2000:]
    assert wire["episodes"][0]["signal_to_terminal_ms"] > 3000  # the cut's 3 s happened on the wire


def test_parity_rejects_bad_arguments():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "parity",
            str(ROOT / "scenarios" / "cu_hg_fast_spread.toml"),
            "--duration",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and "--duration 0: give seconds in (0, 86400]" in proc.stderr
