"""Wire mode: the same engine over real quickfix sessions on loopback, against the venue model
served by quickfix acceptors. Ports are asked of the OS; nothing sleeps: waits are on conditions."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from engine.core import EngineCore
from engine.live import LiveEngine, SessionConfig, mask, settings_text, wait_for
from simulator import scenario
from simulator.wire import WireVenues
from tests.conftest import ROOT
from tests.test_scenarios import _checked_messages

BENCH = ROOT / "benchmarks" / "throughput.toml"


@pytest.fixture()
def wire_pair(tmp_path):
    sc = dataclasses.replace(scenario.load(BENCH), duration=30)
    venues = WireVenues(sc, 3)
    ports = venues.start(until=60)
    core = EngineCore(sc.engine)
    sessions = [SessionConfig(n, v.dictionary, v.comp_id, "127.0.0.1", ports[n], username="desk1",
                              password="s3cret-pw") for n, v in sc.venues.items()]
    engine = LiveEngine(core, sessions)
    engine.start(settings_text(sessions, tmp_path / "store"))
    yield core, engine, venues, ports
    engine.stop()
    venues.stop()
    venues.join(5)


def test_engine_trades_against_the_venue_model_over_real_fix_sessions(wire_pair, tmp_path):
    core, engine, venues, ports = wire_pair
    assert all(p > 0 for p in ports.values()) and len(set(ports.values())) == 3
    assert wait_for(lambda: len(engine.logged_on) == 3, 30), f"all three sessions log on: {engine.logged_on}"
    assert wait_for(lambda: len(core.episodes) >= 3, 40), f"episodes trade over the wire: {len(core.episodes)}"
    engine.command("drain")
    assert wait_for(lambda: not core.active, 20), f"open episodes finish: {list(core.active)}"
    assert wait_for(lambda: {k: v for k, v in core.positions.items() if v} ==
                    {k: v for k, v in venues.positions().items() if v}, 10), \
        f"fills reach the engine: {core.positions} vs {venues.positions()}"
    log = tmp_path / "messages.log"
    log.write_text("\n".join(engine.messages) + "\n")
    msgs = _checked_messages(log)  # BodyLength and CheckSum recomputed independently
    types = {m.get(35) for m in msgs}
    assert {b"A", b"V", b"W", b"D", b"8"} <= types


def test_credentials_are_sent_but_never_logged(wire_pair):
    core, engine, venues, _ = wire_pair
    assert wait_for(lambda: len(engine.logged_on) == 3, 30)
    logons = [m for m in engine.messages if "\x0135=A\x01" in m and "\x0149=XMC\x01" in m]
    assert logons and all("554=***" in m and "s3cret-pw" not in m for m in logons)
    assert all("s3cret-pw" not in m for m in engine.messages)
    masked = mask("8=FIX.4.4\x019=15\x0135=A\x01554=topsecret\x0110=000\x01")
    assert "554=***" in masked and "topsecret" not in masked and masked.startswith("8=FIX.4.4\x019=")


def test_xmc_run_in_wire_mode_writes_the_same_artefacts(tmp_path):
    out = tmp_path / "wire"
    proc = subprocess.run([sys.executable, "-m", "xmc.cli", "run", str(BENCH), "--mode", "wire", "--duration", "4",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "wire" and report["episodes"] and report["fills_match_positions"]
    assert (out / "audit.parquet").exists() and (out / "messages.log").read_text().count("\n") > 10


def test_venue_command_rejects_bad_input():
    proc = subprocess.run([sys.executable, "-m", "xmc.cli", "venue", "--scenario", "nope.toml"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "nope.toml" in proc.stderr
