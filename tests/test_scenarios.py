"""Whole runs in virtual time: every bundled scenario, determinism, and the artefacts checked independently."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
import simplefix
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import runner, scenario
from tests.conftest import ROOT, SCENARIOS, SPREAD, short, variant

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_bundled_scenario_trades_and_holds_its_expectations(path):
    sc = scenario.load(path)
    rep = runner.run(sc).report
    assert rep["episodes"], "the scenario must really trade"
    assert rep["verdict"] == "pass", [x for x in rep["expectations"] if x["verdict"] != "pass"]
    assert all(e["outcome"] in ("BALANCED", "UNWOUND", "ESCALATED", "ABORTED") for e in rep["episodes"])


def test_same_seed_same_hash_different_seed_different_hash(spread_scenario):
    sc = short(spread_scenario, 60)
    h1, h2 = runner.run(sc, 5).report["run_hash"], runner.run(sc, 5).report["run_hash"]
    assert h1 == h2 and runner.run(sc, 6).report["run_hash"] != h1


def test_same_seed_same_hash_in_separate_processes(tmp_path):
    hashes = set()
    for i in range(2):
        out = tmp_path / f"run{i}"
        subprocess.run(
            [sys.executable, "-m", "xmc.cli", "run", str(SPREAD), "--seed", "3", "--out", str(out)],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        hashes.add(json.loads((out / "report.json").read_text())["run_hash"])
    assert len(hashes) == 1


def _checked_messages(path):
    """Parse messages.log line by line with simplefix, verifying BodyLength and CheckSum ourselves."""
    out = []
    for line in path.read_text(encoding="ascii").splitlines():
        raw = line.encode("ascii")
        fields = raw.split(b"\x01")[:-1]
        assert fields[0] == b"8=FIX.4.4" and fields[1].startswith(b"9=") and fields[-1].startswith(b"10=")
        body_start = len(fields[0]) + len(fields[1]) + 2
        trailer = raw.rindex(b"\x0110=") + 1
        assert int(fields[1][2:]) == trailer - body_start, line
        assert int(fields[-1][3:]) == sum(raw[:trailer]) % 256, line
        parser = simplefix.FixParser()
        parser.append_buffer(raw)
        msg = parser.get_message()
        assert msg is not None
        out.append(msg)
    return out


def test_messages_log_parses_independently_and_fills_add_up_to_positions(tmp_path, spread_scenario):
    result = runner.run(short(spread_scenario, 120), 2)
    runner.write_artifacts(result, tmp_path)
    # every message as sent, one a line, nothing else
    assert (tmp_path / "messages.log").read_bytes() == "".join(f"{m}\n" for m in result.messages).encode()
    msgs = _checked_messages(tmp_path / "messages.log")
    symbols = {i.symbol: i.name for i in spread_scenario.engine.instruments.values()}
    positions: dict[str, float] = {}
    seen_exec_ids = set()
    for m in msgs:
        if m.get(35) == b"8" and m.get(150) == b"F" and m.get(17) not in seen_exec_ids:
            seen_exec_ids.add(m.get(17))  # a PossDup resend repeats an ExecID: count each fill once
            qty = float(m.get(32))
            name = symbols[m.get(55).decode()]
            positions[name] = positions.get(name, 0.0) + (qty if m.get(54) == b"1" else -qty)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["episodes"]
    assert {k: v for k, v in positions.items() if v} == report["positions"]["engine"] == report["positions"]["venues"]
    audit = pl.read_parquet(tmp_path / "audit.parquet")
    assert {"decision_id", "cl_ord_id", "instrument", "account", "ts", "stage"} <= set(audit.columns)
    assert audit.filter(pl.col("stage") == "fill").height == len(seen_exec_ids)
    for did in (e["decision_id"] for e in report["episodes"]):
        chain = audit.filter(pl.col("decision_id") == did).sort("seq")
        assert chain["stage"][0] == "signal" and chain["stage"][-1] == "terminal"
        assert chain["ts"].is_sorted()


@given(seed=st.integers(0, 2**31))
@settings(max_examples=4, deadline=None)
def test_any_seed_gives_fills_that_sum_to_positions(seed):
    sc = short(scenario.load(SPREAD), 45)
    rep = runner.run(sc, seed).report
    assert rep["fills_match_positions"]
    filled = {}
    for e in rep["episodes"]:
        for leg in e["legs"].values():
            sign = 1 if leg["side"] == "1" else -1
            filled[leg["instrument"]] = filled.get(leg["instrument"], 0) + sign * leg["filled"]
    assert {k: v for k, v in filled.items() if v} == rep["positions"]["engine"]


def test_an_instrument_on_a_tick_finer_than_a_millionth_trades_on_its_grid(tmp_path):
    """A tick of 3e-7 is a valid configuration (>= 1e-9): the venue's quotes and the engine's orders are
    written on that grid, so no order is refused for its price and the run passes. (Prices written to
    six decimals put most HG orders off the grid: the venue refused them and episodes unwound.)"""
    sc = variant(tmp_path, SPREAD, "fine_tick", "tick = 0.0005", "tick = 0.0000003")
    result = runner.run(short(sc, 120), 1)
    assert result.report["verdict"] == "pass", result.report["invariants"]
    assert not [m for m in result.messages if "tick grid" in m]
    hg = [m for m in result.messages if "\x0135=D\x01" in m and "\x0155=HGH6\x01" in m]
    prices = [float(m.split("\x0144=")[1].split("\x01")[0]) for m in hg]
    assert prices and all(abs(round(p / 3e-7) * 3e-7 - p) <= 3e-13 for p in prices), prices
