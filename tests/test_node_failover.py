"""Wire-mode failover with real processes: `xmc venue`, etcd, a primary and a standby `xmc live`
node. The primary is killed with SIGKILL while a chase order is outstanding; the standby notices
the missing heartbeats, takes the etcd lease (a higher epoch), logs on, reconciles with the venues
(AF and H) and finishes the episode; its positions equal the venues'. Ports come from the OS."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC

import pytest

from simulator.localnet import live_config
from tests.conftest import ROOT

pytestmark = [pytest.mark.wire, pytest.mark.etcd, pytest.mark.zookeeper]

BENCH = ROOT / "benchmarks" / "throughput.toml"


def _scenario(tmp_path):
    text = BENCH.read_text()
    text = (
        text.replace("max_concurrent_episodes = 50", "max_concurrent_episodes = 1")
        .replace("cooldown_ms = 0", "cooldown_ms = 300")
        .replace("order_timeout_ms = 1500", "order_timeout_ms = 4000")
    )
    text = text.replace(
        "[risk]",
        """[strategy.recovery]
policy = "chase_unwind"
max_chase_attempts = 3
legged_budget_ms = 8000

[risk]""",
    )
    text = text.replace(
        "[expect]",
        """[[faults]]
kind = "reject"          # every COMEX entry is refused (retry class): every episode chases
venue = "COMEX"
orders = "entry"
reason = 3

[[faults]]
kind = "late_ack"        # and the chase waits 1.5 s at COMEX: the kill lands mid-chase
venue = "COMEX"
orders = "chase"
delay_ms = 1500

[expect]""",
    )
    path = tmp_path / "chase.toml"
    path.write_text(text)
    return path, text


def _live_config(tmp_path, text: str, ports: dict, name: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(live_config(text, ports, tmp_path / name))
    return path


def _start_venue_and_standby(tmp_path, etcd, duration: str, lease_flags: list[str] | None = None):
    """`xmc venue` on the chasing scenario and a standby node following on a free port: the
    processes (venue first), the scenario text, the venue ports and the node flags they share
    (the lease on `etcd`, unless `lease_flags` names another service)."""
    scenario, text = _scenario(tmp_path)
    venue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(scenario),
            "--duration",
            "120",
            "--state",
            str(tmp_path / "venue.json"),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ports = json.loads(venue.stdout.readline())["ports"]
    etcd_flag = lease_flags or ["--etcd", f"127.0.0.1:{etcd.port}"]
    standby = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "live",
            "--config",
            str(_live_config(tmp_path, text, ports, "standby")),
            "--role",
            "standby",
            "--node",
            "b",
            "--duration",
            duration,
            *etcd_flag,
            "--peer",
            "127.0.0.1:0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    common = [*etcd_flag, "--peer", _following_on(standby)]
    return [venue, standby], text, ports, common


def _following_on(standby: subprocess.Popen) -> str:
    """The address a standby started with --peer HOST:0 listens on: the OS chose the port for the
    socket it keeps, and the standby says which."""
    line = standby.stdout.readline()
    found = re.search(r"following on (\S+:\d+)", line)
    assert found, line
    return found[1]


def _start_primary(tmp_path, text: str, ports: dict, common: list[str], duration: str) -> subprocess.Popen:
    """The primary node `a`, printing its audit as it happens (--trace) so a test can time a kill."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "live",
            "--config",
            str(_live_config(tmp_path, text, ports, "primary")),
            "--role",
            "primary",
            "--node",
            "a",
            "--duration",
            duration,
            "--trace",
            *common,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_mid_chase(primary: subprocess.Popen, lines, not_before: float = 0.0, ready=lambda: True) -> float:
    """SIGKILL the primary as soon as its audit tail shows a chase order sent (at or after the wall
    time `not_before`, and once `ready()` holds); returns when it was killed."""
    seen = []
    for line in lines:
        seen.append(line)
        if "|send|" in line and line.rstrip().endswith("|chase") and time.time() >= not_before and ready():
            break
    else:
        raise AssertionError("the primary never chased: " + "".join(seen[-20:]) + primary.stderr.read()[-2000:])
    killed_at = time.time()
    os.kill(primary.pid, signal.SIGKILL)
    primary.wait(timeout=10)
    return killed_at


def _positions_match_the_venues(report: dict, state) -> None:
    venue_positions = {k: v for k, v in json.loads(state.read_text())["positions"].items() if v}
    instrument = {"cu2603": "CU", "HGH6": "HG"}
    assert report["positions"]["engine"] == {instrument.get(k, k): v for k, v in venue_positions.items()}


def _stop(procs) -> None:
    for p in procs[1:]:
        if p.poll() is None:
            p.kill()
    procs[0].stdin.close()
    procs[0].wait(timeout=30)


@pytest.fixture(params=["etcd", "zookeeper"])
def lease_service(request, tmp_path):
    """The lease service a node pair uses, each real on loopback: (name, xmc live flags, its floor in s)."""
    if request.param == "etcd":
        etcd = request.getfixturevalue("etcd")
        yield "etcd", ["--lease-service", "etcd", "--etcd", f"127.0.0.1:{etcd.port}"], 1.0
    else:
        zk = request.getfixturevalue("zookeeper")
        # sessions of 2 s: with the 300 ms ones the failover benchmark measures, the node holding the lease
        # had its own session expire under a loaded CI run and fenced itself mid-chase (an episode left
        # legged); this test is about behaviour, the benchmark about the floor
        yield "zookeeper", ["--lease-service", "zookeeper", "--zookeeper", zk.hosts, "--lease-session-ms", "2000"], 2.0


def test_kill_9_of_the_primary_mid_chase_the_standby_finishes_and_positions_match(tmp_path, lease_service):
    service, flags, floor = lease_service
    procs, text, ports, common = _start_venue_and_standby(tmp_path, None, "25", flags)
    standby = procs[1]
    state = tmp_path / "venue.json"
    try:
        primary = _start_primary(tmp_path, text, ports, common, "60")
        procs.append(primary)
        killed_at = _kill_mid_chase(primary, primary.stdout)
        out, err = standby.communicate(timeout=60)
        assert standby.returncode == 0, err[-3000:]
    finally:
        _stop(procs)
    report = json.loads((tmp_path / "standby" / "report.json").read_text())
    node = report["node"]
    assert node["role"] == "standby" and node["primary"] == "a" and node["replicated_events"] > 0
    assert node["stream"][0]["event"] == "stream_connected" and node["stream"][0]["from"] == "a"
    # behaviour, not a timing budget: detection follows the missing heartbeats, and the lease is taken
    # no earlier than the service can have freed it (loaded machines are slow; never faster than the floor)
    assert node["active_at"] >= node["detected_at"] >= killed_at
    assert node["epoch"] > 0
    assert node["reconciled_at"] is not None and node["reconciled_at"] >= node["active_at"] - 1.0
    chased = [e for e in report["episodes"] if e["recovery"]]
    assert chased and all(e["outcome"] in ("BALANCED", "UNWOUND", "ESCALATED", "ABORTED") for e in report["episodes"])
    assert report["anomalies"]["count"] == 0, report["anomalies"]
    _positions_match_the_venues(report, state)
    assert report["fenced_attempts"] == 0
    audit = (tmp_path / "standby" / "messages.log").read_text()
    assert "\x0135=AF\x01" in audit and "\x01141=Y\x01" in audit  # mass status; sessions started afresh


def test_a_primary_frozen_with_sigstop_wakes_fenced_and_steps_down(tmp_path, etcd):
    """The split brain for real: SIGSTOP the primary longer than detection plus the lease TTL, let
    the standby take over, SIGCONT it. Its keep-alive fails: it is fenced and stops; nothing it
    tries to send after the takeover leaves it."""
    procs, text, ports, common = _start_venue_and_standby(tmp_path, etcd, "20")
    standby = procs[1]
    try:
        primary = _start_primary(tmp_path, text, ports, common, "30")
        procs.append(primary)
        for line in primary.stdout:
            if "|send|" in line and line.rstrip().endswith("|chase"):
                break
        os.kill(primary.pid, signal.SIGSTOP)
        frozen_at = time.time()
        lease = etcd()
        from engine.shell.live import wait_for

        def standby_holds() -> bool:
            found = lease.get("xmc/leader")
            return bool(found) and found[0] == b"b"

        assert wait_for(standby_holds, 15, 0.05), "the standby never took the lease"
        os.kill(primary.pid, signal.SIGCONT)
        primary_out, primary_err = primary.communicate(timeout=60)
        out, err = standby.communicate(timeout=60)
    finally:
        _stop(procs)
    assert "lost the lease: fenced, stepping down" in primary_err
    assert primary.returncode == 4 and "lost its lease and stopped trading" in primary_err
    first = json.loads((tmp_path / "primary" / "report.json").read_text())
    second = json.loads((tmp_path / "standby" / "report.json").read_text())
    assert first["node"]["lease_lost_at"] > frozen_at and second["node"]["epoch"] > first["node"]["epoch"]
    # nothing of the woken primary's left it after the takeover: its log has no order sent after it woke
    woke = first["node"]["lease_lost_at"]
    late = [
        m
        for m in (tmp_path / "primary" / "messages.log").read_text().splitlines()
        if "\x0135=D\x01" in m and "\x0149=XMC\x01" in m and _sending_time(m) > woke
    ]
    assert not late, late[:3]


def _sending_time(raw: str) -> float:
    from datetime import datetime

    stamp = raw.split("\x0152=")[1].split("\x01")[0]
    return datetime.strptime(stamp, "%Y%m%d-%H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


def _refusing_ports(n: int) -> list[socket.socket]:
    """Sockets bound to ports the OS chose and kept, never listening: a connection to one is refused
    for as long as the test holds it (no port is released for another process to take)."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    return socks


def test_bad_node_setups_are_refused_with_the_reason(tmp_path, etcd):
    scenario, text = _scenario(tmp_path)
    refusing = _refusing_ports(4)
    dead_port = [s.getsockname()[1] for s in refusing]
    config = _live_config(tmp_path, text, dict(zip(("SHFE", "COMEX", "FX"), dead_port)), "n")

    def live(*args, timeout=60):
        return subprocess.run(
            [sys.executable, "-m", "xmc.cli", "live", "--config", str(config), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    no_etcd = live("--role", "primary", "--peer", "127.0.0.1:1")
    assert no_etcd.returncode == 2 and "--etcd" in no_etcd.stderr and "HOST:PORT" in no_etcd.stderr
    dead = live("--role", "primary", "--etcd", f"127.0.0.1:{dead_port[3]}", "--peer", "127.0.0.1:1")
    assert dead.returncode == 2 and "etcd does not answer" in dead.stderr
    # a heartbeat (the keep-alive's beat) as long as the lease's TTL would lose the lease between beats
    late = live(
        "--role", "primary", "--heartbeat-ms", "1000", "--etcd", f"127.0.0.1:{etcd.port}", "--peer", "127.0.0.1:1"
    )
    assert late.returncode == 2 and "--heartbeat-ms 1000 is not shorter than the lease's --lease-ttl-s" in late.stderr
    zk = ("--lease-service", "zookeeper", "--zookeeper", "127.0.0.1:1", "--lease-session-ms", "300")
    late = live("--role", "primary", *zk, "--heartbeat-ms", "300", "--peer", "127.0.0.1:1")
    assert late.returncode == 2 and "--lease-session-ms (300 ms)" in late.stderr and "Traceback" not in late.stderr

    def standby(name: str) -> subprocess.Popen:
        """A standby `name` following on a port the OS gives it (its address: _following_on)."""
        return subprocess.Popen(
            [sys.executable, "-m", "xmc.cli", "live", "--config", str(config), "--role", "standby", "--node", name]
            + ["--etcd", f"127.0.0.1:{etcd.port}", "--peer", "127.0.0.1:0", "--duration", "30"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    twin = standby("a")
    try:
        peer = _following_on(twin)
        itself = live("--role", "primary", "--node", "a", "--etcd", f"127.0.0.1:{etcd.port}", "--peer", peer)
        assert itself.returncode == 2 and "is this node (a) itself" in itself.stderr
    finally:
        twin.kill()
        twin.wait(timeout=10)
    holder = etcd()
    taken = holder.lease(5)
    assert holder.create("xmc/leader", "someone-else", lease=taken)
    held = live("--role", "primary", "--node", "a", "--etcd", f"127.0.0.1:{etcd.port}", "--peer", peer)
    assert held.returncode == 2 and "held by another node (someone-else)" in held.stderr
    taken.revoke()
    # a primary restarted at once after a kill -9: its dead process's grant (this node's name, never
    # released, no longer kept alive) is waited out, then the lease is this process's under a new epoch
    other = standby("b")
    try:
        peer = _following_on(other)
        stale = holder.lease(60)  # lives however slowly the new process starts on a loaded machine
        assert holder.create("xmc/leader", "a", lease=stale)
        old_epoch = int(holder.get("xmc/leader", metadata=True)[0][1]["create_revision"])
        flags = ["--node", "a", "--etcd", f"127.0.0.1:{etcd.port}", "--peer", peer, "--duration", "1"]
        restarted = subprocess.Popen(
            [sys.executable, "-m", "xmc.cli", "live", "--config", str(config), "--role", "primary", *flags],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        said = []
        for line in restarted.stderr:  # until it says it waits (or, refusing, ends)
            said.append(line)
            if "waiting up to" in line:
                stale.revoke()  # the dead process's grant goes, as its TTL would end it
                break
        out, rest = restarted.communicate(timeout=120)
        said.append(rest)
    finally:
        other.kill()
        other.wait(timeout=10)
    err = "".join(said)
    assert "waiting up to" in err and "held by another node" not in err, err
    assert restarted.returncode == 3, err  # it traded (no venue answers here: exit 3, not 2)
    node_report = json.loads((tmp_path / "n" / "report.json").read_text())["node"]
    assert node_report["epoch"] > old_epoch
    for s in refusing:
        s.close()


def test_a_standby_process_that_cannot_apply_its_primarys_stream_says_so_once_and_reports_it(tmp_path, etcd):
    """The operator's view of a standby that stops following (tests/test_node_stream.py has the cases):
    a primary of its config streams an event this xmc cannot read; the `xmc live` standby says on stderr,
    once, which event and what to do, refuses the primary attaching again, and report.json's node.stream
    lists both."""
    from engine.shell.journal import fingerprint
    from engine.shell.live_config import load
    from engine.shell.node import _read_hello, _send_frame

    scenario, text = _scenario(tmp_path)
    refusing = _refusing_ports(3)
    config = _live_config(
        tmp_path, text, dict(zip(("SHFE", "COMEX", "FX"), [s.getsockname()[1] for s in refusing])), "b"
    )
    hello = json.dumps({"node": "a", "fingerprint": fingerprint(load(config).engine), "version": 2}).encode()
    holder = etcd()  # the lease is the (hand-made) primary's: the silent standby must not take over
    held = holder.lease(60)
    assert holder.create("xmc/leader", "a", lease=held)
    standby = subprocess.Popen(
        [sys.executable, "-m", "xmc.cli", "live", "--config", str(config), "--role", "standby", "--node", "b"]
        + ["--etcd", f"127.0.0.1:{etcd.port}", "--peer", "127.0.0.1:0", "--duration", "4"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        host, port = _following_on(standby).split(":")
        for attempt in range(3):
            with socket.create_connection((host, int(port)), timeout=10) as primary:
                _send_frame(primary, b"H", hello)
                answer = _read_hello(primary)
                if attempt == 0:
                    assert answer == {"node": "b", "applied": 0}, answer
                    _send_frame(primary, b"E", b'[1.0,"Quake","CU"]')  # a newer xmc's event, say
                    primary.settimeout(10)
                    assert primary.recv(1) == b""  # the standby let the stream go
                else:
                    assert "follows no further" in answer["refused"], answer
        out, err = standby.communicate(timeout=60)
    finally:
        standby.kill()
        standby.wait(timeout=10)
        held.revoke()
        for s in refusing:
            s.close()
    said = [line for line in err.splitlines() if "follows no further" in line]
    assert len(said) == 1 and "event 1 of the stream" in said[0] and "restart this standby" in said[0], err
    assert "Traceback" not in err
    stream = json.loads((tmp_path / "b" / "report.json").read_text())["node"]["stream"]
    assert [e["event"] for e in stream] == ["stream_connected", "stopped_following", "refused"]
    assert "KeyError" in stream[1]["why"] and stream[2]["times"] == 2


def test_a_single_node_killed_mid_chase_restarts_from_its_journal(tmp_path):
    """kill -9 of a single `xmc live` while a chase is outstanding, then the same command again: the
    core is rebuilt from the write-ahead journal, the sessions resume their sequence numbers from
    the FileStore, every order that was working is queried, and the episode ends; positions equal
    the venue's."""
    scenario, text = _scenario(tmp_path)
    state = tmp_path / "venue.json"
    venue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(scenario),
            "--duration",
            "120",
            "--state",
            str(state),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    procs = [venue]
    try:
        ports = json.loads(venue.stdout.readline())["ports"]
        config = _live_config(tmp_path, text, ports, "single")
        first = subprocess.Popen(
            [sys.executable, "-m", "xmc.cli", "live", "--config", str(config), "--duration", "60", "--trace"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(first)
        for line in first.stdout:
            if "|send|" in line and line.rstrip().endswith("|chase"):
                break
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        second = subprocess.run(
            [sys.executable, "-m", "xmc.cli", "live", "--config", str(config), "--duration", "8"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 0, second.stderr[-3000:]
    finally:
        _stop(procs)
    assert "rebuilt from" in second.stderr
    report = json.loads((tmp_path / "single" / "report.json").read_text())
    assert report["node"]["restarted_from_journal"]["records"] > 0
    assert all(e["outcome"] in ("BALANCED", "UNWOUND", "ESCALATED", "ABORTED") for e in report["episodes"])
    assert any(e["recovery"] for e in report["episodes"])  # the chase that was outstanding at the kill
    venue_positions = {k: v for k, v in json.loads(state.read_text())["positions"].items() if v}
    assert report["positions"]["engine"] == venue_positions
    log = (tmp_path / "single" / "messages.log").read_text()
    assert "\x0135=H\x01" in log  # what was working at the kill was asked about before new risk


def test_a_standby_that_died_is_attached_again_with_the_history_and_can_take_over(tmp_path, etcd):
    """kill -9 of the standby while the primary trades; a new standby process listens on the same
    address; the primary attaches it and sends the journal's history before the live events. Then
    the primary is killed mid-chase: the new standby takes over and its positions equal the venues'."""
    procs, text, ports, common = _start_venue_and_standby(tmp_path, etcd, "60")
    first_standby = procs[1]
    state = tmp_path / "venue.json"
    try:
        primary = _start_primary(tmp_path, text, ports, common, "60")
        procs.append(primary)
        lines = iter(primary.stdout)
        assert any("|send|" in line for line in lines)  # trading, with the first standby attached
        first_standby.kill()
        first_standby.wait(timeout=10)
        second = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xmc.cli",
                "live",
                "--config",
                str(_live_config(tmp_path, text, ports, "second")),
                "--role",
                "standby",
                "--node",
                "c",
                "--duration",
                "25",
                *common,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(second)
        assert "following" in second.stdout.readline()
        listening = time.time()
        _kill_mid_chase(primary, lines, listening + 1.0)  # well after the new standby listens: attached by then
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err[-3000:]
    finally:
        _stop(procs)
    report = json.loads((tmp_path / "second" / "report.json").read_text())
    node = report["node"]
    assert node["role"] == "standby" and node["primary"] == "a" and node["epoch"] > 1
    assert node["reconciled_at"] is not None and report["anomalies"]["count"] == 0, report["anomalies"]
    from engine.core.events import Takeover
    from engine.shell import journal
    from simulator import scenario as scenario_module

    followed = journal.read(
        tmp_path / "second" / "engine-c.journal",
        journal.fingerprint(scenario_module.load(tmp_path / "chase.toml").engine),
    ).records
    first_t, first_event = followed[0]  # the history came first: the primary's own start, before c existed
    assert isinstance(first_event, Takeover) and first_event.epoch < node["epoch"] and first_t < listening
    assert any(t > listening for t, _ in followed)  # and then the live events
    _positions_match_the_venues(report, state)


def test_a_cut_replication_stream_is_no_takeover_while_the_primary_holds_the_lease(tmp_path, etcd):
    """The stream between two real processes is cut for 2 s while the primary trades: the standby
    hears nothing, suspects, and is refused the lease (the primary keeps it alive); when the cut
    heals the primary attaches it again with the events it missed. Then kill -9 of the primary: the
    standby takes over with the whole history and its positions equal the venues'."""
    from simulator.localnet import TcpCut

    scenario, text = _scenario(tmp_path)
    venue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(scenario),
            "--duration",
            "120",
            "--state",
            str(tmp_path / "venue.json"),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    procs = [venue]
    cut = None
    try:
        ports = json.loads(venue.stdout.readline())["ports"]
        etcd_flag = ["--etcd", f"127.0.0.1:{etcd.port}"]
        standby = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xmc.cli",
                "live",
                "--config",
                str(_live_config(tmp_path, text, ports, "standby")),
                "--role",
                "standby",
                "--node",
                "b",
                "--duration",
                "55",
                "--peer",
                "127.0.0.1:0",
                *etcd_flag,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(standby)
        listen = int(_following_on(standby).rsplit(":", 1)[1])
        cut = TcpCut(listen)
        primary = _start_primary(tmp_path, text, ports, ["--peer", f"127.0.0.1:{cut.port}", *etcd_flag], "90")
        procs.append(primary)
        lines = iter(primary.stdout)
        assert any("|send|" in line for line in lines)
        attached = threading.Event()  # the primary says so on stderr once the standby has what it missed

        said: list[str] = []  # what the primary said on stderr, for the failure message

        def watch_stderr() -> None:
            for line in primary.stderr:
                said.append(line)
                if "attached again" in line:
                    attached.set()

        threading.Thread(target=watch_stderr, daemon=True).start()
        cut.cut(2.0)  # well past 3 missed heartbeats (300 ms) and the 1 s lease TTL
        healed = time.time() + 2.0
        # after the cut healed and the stream is back with the history: a condition, not a duration
        try:
            killed_at = _kill_mid_chase(primary, lines, healed + 1.0, attached.is_set)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nprimary stderr:\n{''.join(said[-30:])}") from None
        out, err = standby.communicate(timeout=60)
        assert standby.returncode == 0, err[-3000:]
    finally:
        _stop(procs)
        if cut is not None:
            cut.close()
    report = json.loads((tmp_path / "standby" / "report.json").read_text())
    node = report["node"]
    assert node["takeovers_refused"], node  # suspected during the cut, refused: the primary held the lease
    assert node["primary"] == "a" and node["epoch"] > 1 and node["lease_at"] > healed
    assert "not taking over" in err
    assert node["reconciled_at"] is not None and report["anomalies"]["count"] == 0, report["anomalies"]
    _positions_match_the_venues(report, tmp_path / "venue.json")
    from engine.shell import journal
    from simulator import scenario as scenario_module

    followed = journal.read(
        tmp_path / "standby" / "engine-b.journal", journal.fingerprint(scenario_module.load(scenario).engine)
    ).records
    times = [t for t, _ in followed]
    assert times == sorted(times) and any(healed < t < killed_at for t in times)  # attached again, in order


def _primary_cut_off_from_etcd(tmp_path, etcd, cut_s: float, primary_s: str):
    """Primary `a` reaches etcd through a relay, standby `b` directly (2 s TTLs). Once `a` trades, the
    relay swallows every byte for `cut_s` (a partition: its requests go unanswered, not refused).
    Returns the primary's process (running), its stdout and stderr lines as they come (threads drain
    both, so its --trace never fills a pipe), when the cut began, and the processes to stop."""
    from simulator.localnet import TcpCut

    ttl = ["--lease-ttl-s", "2"]
    procs, text, ports, common = _start_venue_and_standby(
        tmp_path, etcd, "40", ["--etcd", f"127.0.0.1:{etcd.port}", *ttl]
    )
    relay = TcpCut(etcd.port)
    primary = _start_primary(
        tmp_path, text, ports, ["--etcd", f"127.0.0.1:{relay.port}", *ttl, *common[-2:]], primary_s
    )
    procs.append(primary)
    out: list[str] = []
    err: list[str] = []
    trading = threading.Event()

    def drain(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            if "|send|" in line:
                trading.set()

    for stream, lines in ((primary.stdout, out), (primary.stderr, err)):
        threading.Thread(target=drain, args=(stream, lines), daemon=True).start()
    assert trading.wait(60), "the primary never traded: " + "".join(err[-20:])
    cut_at = time.time()
    relay.cut(cut_s, silent=True)
    return primary, out, err, cut_at, procs, relay


def test_a_primary_cut_off_from_etcd_briefly_trades_on_its_grant_and_keeps_the_lease(tmp_path, etcd):
    """A 0.8 s partition from etcd: the keep-alive in flight waits out its timeout (0.5 s) unanswered,
    which proves nothing; the grant still has most of its 1.5 s (three quarters of the TTL) by the
    node's own clock, so it trades on, asks again a heartbeat later and keeps the lease: no failover.
    Before, the keep-alive waited with no timeout at all, its thread stuck, and the node was fenced."""
    primary, _, err, cut_at, procs, relay = _primary_cut_off_from_etcd(tmp_path, etcd, 0.8, "8")
    try:
        from engine.shell.live import wait_for

        said = lambda text: any(text in line for line in err)  # noqa: E731
        assert wait_for(lambda: said("answers again"), 15, 0.05), "".join(err[-20:])
        found = etcd().get("xmc/leader")
        assert found and found[0] == b"a"  # still the primary's: the standby never took the lease
        assert primary.wait(timeout=60) == 0, "".join(err[-30:])
    finally:
        _stop(procs)
        relay.close()
    assert said("the lease service does not answer") and not said("lost the lease")
    node = json.loads((tmp_path / "primary" / "report.json").read_text())["node"]
    assert "lease_lost_at" not in node
    (error,) = node["lease_errors"]  # one spell, recorded once
    assert error["at"] >= cut_at and "etcd did not answer a keep-alive" in error["error"]


def test_a_primary_cut_off_from_etcd_for_good_steps_down_in_time_and_the_standby_takes_over(tmp_path, etcd):
    """A 6 s partition: the primary trades on its grant only while its own clock says it lasts, then
    stops (exit 4, saying why); nothing of its leaves after that, before etcd can grant the lease to
    anyone (the TTL after its last answered keep-alive); the standby, which still reaches etcd, takes
    over under a higher epoch once the grant expired."""
    primary, _, err, cut_at, procs, relay = _primary_cut_off_from_etcd(tmp_path, etcd, 6.0, "30")
    try:
        from engine.shell.live import wait_for

        code = primary.wait(timeout=60)
        stopped_at = time.time()

        def standby_holds() -> bool:
            found = etcd().get("xmc/leader")
            return bool(found) and found[0] == b"b"

        assert wait_for(standby_holds, 30, 0.05), "the standby never took the lease"
    finally:
        _stop(procs)
        relay.close()
    said = "".join(err)
    assert code == 4 and "lost its lease and stopped trading" in said, said[-3000:]
    assert "lost the lease: fenced, stepping down (the lease service has not answered for" in said
    # it gave up once the grant ran out (1.5 s after its last answered keep-alive, plus one keep-alive's
    # 0.5 s timeout), not at the first unanswered keep-alive and not after the 6 s cut
    node = json.loads((tmp_path / "primary" / "report.json").read_text())["node"]
    assert cut_at + 1.0 < node["lease_lost_at"] < cut_at + 5.0 and node["lease_lost_at"] <= stopped_at
    assert node["drain"] == "skipped: the lease is lost"  # fenced, it logs out at once for the standby
    late = [
        m
        for m in (tmp_path / "primary" / "messages.log").read_text().splitlines()
        if "\x0135=D\x01" in m and "\x0149=XMC\x01" in m and _sending_time(m) > cut_at + 1.5 + 0.1
    ]
    assert not late, late[:3]  # the fence's bound: three quarters of the 2 s TTL after the cut, at most


def test_a_standby_frozen_with_sigstop_wakes_without_taking_over_and_later_takes_over_whole(tmp_path, etcd):
    """The standby's process frozen (SIGSTOP) while the primary trades on, until the primary has sent
    another order it has not read: woken (SIGCONT), it reads what its socket held; missed heartbeats
    alone never make it take over while the primary holds the lease. Then kill -9 of the primary: it
    takes over with the whole history, and its positions equal the venues'."""
    procs, text, ports, common = _start_venue_and_standby(tmp_path, etcd, "40")
    standby = procs[1]
    try:
        primary = _start_primary(tmp_path, text, ports, common, "60")
        procs.append(primary)
        lines = iter(primary.stdout)
        assert any("|send|" in line for line in lines), primary.stderr.read()[-2000:]
        os.kill(standby.pid, signal.SIGSTOP)
        frozen_at = time.time()
        try:
            # frozen until the primary has sent another order (a condition, not a duration)
            assert any("|send|" in line for line in lines), "the primary stopped trading"
        finally:
            os.kill(standby.pid, signal.SIGCONT)
        woke_at = time.time()
        killed_at = _kill_mid_chase(primary, lines, woke_at + 1.0)
        out, err = standby.communicate(timeout=60)
        assert standby.returncode == 0, err[-3000:]
    finally:
        _stop(procs)
    report = json.loads((tmp_path / "standby" / "report.json").read_text())
    node = report["node"]
    assert node["primary"] == "a" and node["epoch"] > 1
    assert node["lease_at"] > killed_at > woke_at > frozen_at  # no takeover on waking: the lease was held
    assert node["reconciled_at"] is not None and report["anomalies"]["count"] == 0, report["anomalies"]
    _positions_match_the_venues(report, tmp_path / "venue.json")
