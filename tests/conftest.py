"""Shared fixtures: the bundled spread scenario's engine config and helpers to drive a bare core."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

# The tests run the Python modules themselves (some patch them); xmc commands the tests start inherit
# this. tests/test_accel.py runs the compiled build (xmc/accel.py) against them. XMC_TEST_COMPILED=1
# runs the tests on the compiled build instead, to search it for a declared type a value does not have
# (mypyc raises TypeError there); the tests that patch or copy compiled code fail in that mode (55 on
# 2026-12-02: planted defects, patched methods, copies of a book; then 3 more that patch codec.laid_out),
# which is why it is not CI's mode.
if os.environ.get("XMC_TEST_COMPILED"):
    from xmc import accel

    if not accel.enable():
        raise RuntimeError("XMC_TEST_COMPILED: no compiled build matches: run .venv/bin/python -m xmc.accel build")
else:
    os.environ["XMC_PURE"] = "1"

from engine.core.engine_core import EngineCore
from engine.core.events import ExecReport, Quote, SendOrder, SessionUp
from simulator import scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
SPREAD = ROOT / "scenarios" / "cu_hg_spread.toml"


@pytest.fixture(scope="session")
def spread_scenario():
    return scenario.load(SPREAD)


@pytest.fixture(scope="session")
def config(spread_scenario):
    return spread_scenario.engine


def short(sc, seconds: float = 60.0):
    return dataclasses.replace(sc, duration=seconds)


def variant(tmp_path: Path, base: Path, name: str, old: str = "", new: str = "", extra: str = ""):
    """A bundled scenario copied under tmp_path (its `extends` made absolute), `old` replaced by `new`
    and `extra` (more [[faults]], say) appended: loaded."""
    text = base.read_text().replace('extends = "', f'extends = "{ROOT / "scenarios"}/', 1)
    if old:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.toml"
    path.write_text(text + extra)
    return scenario.load(path)


def refused_run(tmp_path: Path, capsys, base: Path, extra: str) -> tuple[Path, str]:
    """`xmc run` of a bundled scenario with `extra` appended (its `extends` made absolute): it must exit
    2; the file run and what was said on stderr."""
    from xmc.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(base.read_text().replace('extends = "', f'extends = "{ROOT / "scenarios"}/', 1) + extra)
    assert main(["run", str(path)]) == 2
    return path, capsys.readouterr().err


def fire(core: EngineCore, now: float = 0.0, spread_cny: float = 400.0) -> list:
    """Bring sessions up and quote a spread wide enough to sell; returns the actions of the last quote."""
    for venue in ("SHFE", "COMEX", "FX"):
        core.handle(SessionUp(venue), now)
    core.handle(Quote("USDCNY", 7.0999, 1e6, 7.1001, 1e6), now)
    hg_cny = 4.5 * 2204.62 * 7.1
    core.handle(Quote("HG", 4.4995, 50, 4.5005, 50), now)
    mid = round((hg_cny + spread_cny) / 10) * 10
    return core.handle(Quote("CU", mid - 10, 50, mid + 10, 50), now)


def report(
    order: SendOrder,
    exec_id: str,
    exec_type: str,
    status: str,
    cum: float,
    last_qty: float = 0.0,
    last_px: float = 0.0,
    cl_ord_id: str = "",
    reason=None,
) -> ExecReport:
    leaves = 0.0 if status in ("2", "4", "8", "C") else order.qty - cum
    return ExecReport(
        order.venue,
        cl_ord_id or order.cl_ord_id,
        "",
        "O1",
        exec_id,
        exec_type,
        status,
        order.instrument,
        order.side,
        order.qty,
        cum,
        leaves,
        last_qty,
        last_px,
        last_px if cum else 0.0,
        reason,
    )


@pytest.fixture()
def etcd(tmp_path):
    """A real etcd on 127.0.0.1 (ports from the OS): yields a client factory with `.port`."""
    if shutil.which("etcd") is None:
        if os.environ.get("CI"):
            pytest.fail("etcd is missing in CI: scripts/bootstrap installs Debian's etcd-server")
        pytest.skip("etcd not installed: run scripts/bootstrap (apt-get install etcd-server)")
    from simulator.localnet import EtcdProcess

    server = EtcdProcess(tmp_path / "etcd")
    try:
        factory = lambda: server.client()  # noqa: E731
        factory.port = server.port
        yield factory
    finally:
        server.stop()


@pytest.fixture
def zookeeper(tmp_path, request):
    """A real ZooKeeper on 127.0.0.1 (port from the OS, 50 ms ticks): the running ZooKeeperProcess. A test
    marked `zookeeper_max_session_ms(N)` gets one that grants sessions of at most N ms."""
    from simulator.localnet import ZooKeeperProcess, zookeeper_available

    missing = [m for m in ("kazoo",) if importlib.util.find_spec(m) is None]
    if not zookeeper_available() or missing:
        if os.environ.get("CI"):
            pytest.fail("ZooKeeper or kazoo is missing in CI: scripts/bootstrap installs Debian's zookeeper and kazoo")
        pytest.skip("ZooKeeper not installed: run scripts/bootstrap (apt-get install zookeeper; pip install kazoo)")
    cap = request.node.get_closest_marker("zookeeper_max_session_ms")
    server = ZooKeeperProcess(tmp_path / "zookeeper", max_session_ms=cap.args[0] if cap else 60000)
    # every kazoo client the test starts is stopped with the server: one left running would reconnect to
    # the dead port for the rest of the worker's life, logging to kazoo's loggers under later tests
    from kazoo.client import KazooClient

    started: list[KazooClient] = []
    start_async = KazooClient.start_async

    def recorded(client: KazooClient) -> object:
        started.append(client)
        return start_async(client)

    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setattr(KazooClient, "start_async", recorded)
    try:
        yield server
    finally:
        for client in started:
            with contextlib.suppress(Exception):
                client.stop()
                client.close()
        server.stop()
