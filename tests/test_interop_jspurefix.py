"""Interoperability with a FIX engine nobody here wrote: a jspurefix initiator (node) trades against
the venue model served by quickfix acceptors. The bytes on the socket are captured by a loopback
relay and checked (framing, BodyLength, CheckSum) independently of both engines."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from engine.fix import dictionary
from tests.conftest import ROOT

pytestmark = pytest.mark.interop

JS = ROOT / "interop" / "jspurefix"


def _require_node() -> None:
    missing = None
    if shutil.which("node") is None:
        missing = "node is not installed (apt-get install nodejs npm, then scripts/bootstrap)"
    elif not (JS / "node_modules" / "jspurefix").is_dir():
        missing = "jspurefix is not installed (scripts/bootstrap runs `npm ci` in interop/jspurefix)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the interoperability test: {missing}")
        pytest.skip(missing)


class Relay:
    """A loopback TCP relay that records every byte in each direction."""

    def __init__(self, target_port: int):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.target = target_port
        self.up = bytearray()
        self.down = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.server.accept()
        venue = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=self._pump, args=(client, venue, self.up), daemon=True).start()
        threading.Thread(target=self._pump, args=(venue, client, self.down), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, record: bytearray) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            record += data
            dst.sendall(data)


def split_checked(stream: bytes) -> list[bytes]:
    """Split a captured byte stream into FIX messages, checking BodyLength and CheckSum ourselves."""
    out, pos = [], 0
    while pos < len(stream):
        assert stream.startswith(b"8=FIX.4.4\x019=", pos), stream[pos : pos + 40]
        len_start = pos + len(b"8=FIX.4.4\x019=")
        len_end = stream.index(b"\x01", len_start)
        body_len = int(stream[len_start:len_end])  # jspurefix pads it (9=0073): still a number
        body_start = len_end + 1
        trailer = body_start + body_len
        assert stream.startswith(b"10=", trailer), "BodyLength must end exactly where CheckSum starts"
        checksum = int(stream[trailer + 3 : trailer + 6])
        assert checksum == sum(stream[pos:trailer]) % 256, "CheckSum"
        assert stream[trailer + 6 : trailer + 7] == b"\x01"
        out.append(stream[pos : trailer + 7])
        pos = trailer + 7
    return out


def test_jspurefix_client_trades_against_xmc_venue():
    _require_node()
    venue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(ROOT / "scenarios" / "cu_hg_spread.toml"),
            "--duration",
            "120",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ports = json.loads(venue.stdout.readline())["ports"]
        relay = Relay(ports["SHFE"])
        proc = subprocess.run(
            [
                "node",
                "client.js",
                "127.0.0.1",
                str(relay.port),
                "XMC",
                "SHFE",
                str(dictionary.load("SHFE").path),
                "cu2603",
                "JS-ACC",
                "71500",
                "69000",
            ],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        venue.stdin.close()
        venue.wait(timeout=30)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    events = [x.get("event") for x in lines if "event" in x]
    assert events[0] == "ready" and events[-1] == "stopped", (proc.stdout[-2000:], proc.stderr[-2000:])
    reports = [x["body"] for x in lines if x.get("msgType") == "8"]
    by_kind = {(r["ClOrdID"].split("-")[1], r["ExecType"]) for r in reports}
    assert {("IOC", "0"), ("IOC", "F"), ("REST", "0"), ("CXL", "4")} <= by_kind, by_kind
    assert any(x.get("msgType") == "W" for x in lines), "market data snapshot"
    up, down = split_checked(bytes(relay.up)), split_checked(bytes(relay.down))
    kinds_up = {m.split(b"\x0135=")[1].split(b"\x01")[0] for m in up}
    kinds_down = {m.split(b"\x0135=")[1].split(b"\x01")[0] for m in down}
    assert {b"A", b"V", b"D", b"F", b"5"} <= kinds_up and {b"A", b"W", b"8", b"5"} <= kinds_down


LIVE = ROOT / "tests" / "live_broker.toml"


def _live_config(tmp_path, port: int) -> str:
    path = tmp_path / "live.toml"
    path.write_text(LIVE.read_text().replace("PORT", str(port)).replace("OUT_DIR", str(tmp_path / "out")))
    return str(path)


def test_xmc_live_trades_with_a_jspurefix_broker(tmp_path):
    _require_node()
    broker = subprocess.Popen(
        [
            "node",
            "broker.js",
            "0",
            "BROKER",
            "XMC",
            str(dictionary.load("FIX44").path),
            "cu2603:70000,cu2604:70100",
            "10",
            "60",
        ],
        cwd=JS,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(broker.stdout.readline())
        assert first["event"] == "listening", first  # on the port the OS chose for the socket it keeps
        port = first["port"]
        proc = subprocess.run(
            [sys.executable, "-m", "xmc.cli", "live", "--config", _live_config(tmp_path, port), "--duration", "5"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "XMC_BROKER_PASSWORD": "broker-secret-9"},
        )
    finally:
        broker.kill()
        out, _ = broker.communicate(timeout=30)
    assert proc.returncode == 0, proc.stderr[-3000:]
    received = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert any(x.get("event") == "logon" and x.get("user") == "desk1" for x in received)
    orders = [x["body"] for x in received if x.get("msgType") == "D"]
    assert orders and all(o["Account"] == "ACC1" for o in orders)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["outcomes"].get("BALANCED", 0) >= 1
    fills = sum(
        o["OrderQtyData"]["OrderQty"] * (1 if o["Side"] == "1" else -1)
        for o in orders
        if o["Instrument"]["Symbol"] == "cu2603"
    )
    assert report["positions"]["engine"].get("CU1", 0.0) == fills  # the broker fills every order in full
    for path in (tmp_path / "out").rglob("*"):  # the FIX store included: the sent Logon is scrubbed
        if path.is_file():
            assert b"broker-secret-9" not in path.read_bytes(), path


def test_xmc_live_refuses_to_start_without_its_credential(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XMC_BROKER_PASSWORD"}
    proc = subprocess.run(
        [sys.executable, "-m", "xmc.cli", "live", "--config", _live_config(tmp_path, 1), "--duration", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "XMC_BROKER_PASSWORD" in proc.stderr and "sessions.BROKER.password_env" in proc.stderr
