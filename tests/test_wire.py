"""Wire mode: the same engine over real quickfix sessions on loopback, against the venue model
served by quickfix acceptors in a child process. Ports are asked of the OS; nothing sleeps.

Each wire run is its own process: quickfix keeps sessions in a process-wide registry, so one
initiator and one acceptor per process is what production does too."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import polars as pl
import pytest

from engine.shell.live import mask
from simulator.localnet import live_config
from tests.conftest import ROOT
from tests.test_scenarios import _checked_messages

pytestmark = pytest.mark.wire

BENCH = ROOT / "benchmarks" / "throughput.toml"


def wire_run(out, seconds: float = 5.0, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "run",
            str(BENCH),
            "--mode",
            "wire",
            "--duration",
            str(seconds),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
        env={**os.environ, **(env or {})},
    )
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return proc, report


def wire_variant(
    tmp_path, name: str, text: str, seconds: float, *extra: str
) -> tuple[subprocess.CompletedProcess, dict]:
    """`xmc run --mode wire` of a variant of the benchmark scenario, written to tmp_path/<name>.toml."""
    scenario_file = tmp_path / f"{name}.toml"
    scenario_file.write_text(text)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "run",
            str(scenario_file),
            "--mode",
            "wire",
            "--duration",
            str(seconds),
            *extra,
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    path = tmp_path / "out" / "report.json"
    return proc, json.loads(path.read_text()) if path.exists() else {}


def test_engine_trades_against_the_venue_model_over_real_fix_sessions(tmp_path):
    scratch = tmp_path / "tmp"  # the run's working files (venue state, session stores) go, the report stays
    scratch.mkdir()
    proc, report = wire_run(tmp_path / "wire", env={"TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(scratch.iterdir()), list(scratch.rglob("*"))[:5]
    assert report["mode"] == "wire" and len(report["episodes"]) >= 3
    assert report["fills_match_positions"] and report["all_terminal"]
    msgs = _checked_messages(tmp_path / "wire" / "messages.log")  # BodyLength, CheckSum recomputed
    assert {b"A", b"V", b"W", b"D", b"8"} <= {m.get(35) for m in msgs}
    from datetime import datetime

    def stamp(v: bytes) -> float:
        return datetime.strptime(v.decode()[:21], "%Y%m%d-%H:%M:%S.%f").timestamp()

    reports = [m for m in msgs if m.get(35) == b"8" and m.get(60)]
    assert reports and all(abs(stamp(m.get(60)) - stamp(m.get(52))) < 1.0 for m in reports), (
        "the venue's TransactTime and SendingTime must come from one clock"
    )
    audit = pl.read_parquet(tmp_path / "wire" / "audit.parquet")
    assert {"signal", "send", "fill", "terminal"} <= set(audit["stage"].to_list())


def test_credentials_are_sent_but_never_logged(tmp_path):
    secret = "s3cret-pw-1"
    proc, report = wire_run(tmp_path / "creds", 2.0, {"XMC_SHFE_USERNAME": "desk1", "XMC_SHFE_PASSWORD": secret})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "creds" / "messages.log").read_text()
    logons = [m for m in log.splitlines() if "\x0135=A\x01" in m and "\x0156=SHFE\x01" in m]
    assert logons and all("553=desk1" in m and "554=***" in m for m in logons)
    written = [p for p in (tmp_path / "creds").rglob("*") if p.is_file()]
    assert any(p.suffix == ".body" for p in written)  # quickfix's FileStore, where the sent Logon is kept
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    store = next(p for p in written if p.suffix == ".body").parent
    assert store.stat().st_mode & 0o077 == 0 and all(p.stat().st_mode & 0o077 == 0 for p in store.iterdir())
    assert secret not in proc.stdout + proc.stderr
    events = report["session_events"]  # quickfix's own events are on record, without the secret
    assert (
        events["recorded"] and any("logon" in e.lower() for e in events["first"]) and secret not in json.dumps(report)
    )
    masked = mask("8=FIX.4.4\x019=15\x0135=A\x01554=topsecret\x0110=000\x01")
    assert "554=***" in masked and "topsecret" not in masked and masked.startswith("8=FIX.4.4\x019=")


def test_venue_command_rejects_bad_input():
    proc = subprocess.run(
        [sys.executable, "-m", "xmc.cli", "venue", "--scenario", "nope.toml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and "nope.toml" in proc.stderr


def _no_price_midway(tmp_path):
    """The spread scenario with CU's level brought down to ~1,440 CNY/t (a premium of -69,000: 144 ticks, a
    level a scenario may start at) and a spread noise far above it: CU's fair value goes negative in the
    first seconds of the run."""
    text = (ROOT / "scenarios" / "cu_hg_spread.toml").read_text()
    old = "premium = 0.0, spread_mean = 0.0, spread_sigma = 60.0"
    assert old in text
    text = text.replace(old, "premium = -69000.0, spread_mean = 0.0, spread_sigma = 5000.0", 1)
    path = tmp_path / "no_price_midway.toml"
    path.write_text(text)
    return path


def test_prices_that_fail_mid_run_end_a_wire_run_with_exit_2_naming_the_scenario(tmp_path):
    """The venues' market (in the venue process) stops on a fair value that is no price: the venue
    process ends with exit 2, and `xmc run --mode wire` too, at once (not after its hour of duration),
    naming the file and the prices table, never a traceback; the same problem the virtual-time run
    reports."""
    path = _no_price_midway(tmp_path)
    cmd = [sys.executable, "-m", "xmc.cli", "run", str(path), "--out", str(tmp_path / "out")]
    virtual = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert virtual.returncode == 2 and "went to -" in virtual.stderr, virtual.stderr[-2000:]
    # an hour of duration: a run that waited for venues that had stopped would hit the timeout
    wire = [*cmd, "--mode", "wire", "--duration", "3600"]
    proc = subprocess.run(wire, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "wire run failed" not in proc.stderr
    assert f"xmc: {path}" in proc.stderr and "prices: at " in proc.stderr and "went to -" in proc.stderr
    venue = subprocess.Popen(  # stdin kept open: the venue ends by itself, on the price
        [sys.executable, "-m", "xmc.cli", "venue", "--scenario", str(path), "--duration", "3600"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        venue.wait(timeout=300)
    finally:
        venue.kill()
        venue.stdin.close()
    err = venue.stderr.read()
    assert venue.returncode == 2 and "Traceback" not in err, err[-3000:]
    assert f"xmc: {path}" in err and "went to -" in err


def test_a_logon_with_a_bad_password_is_refused_and_other_sessions_keep_trading(tmp_path):
    scenario_file = ROOT / "scenarios" / "cu_hg_spread.toml"
    state = tmp_path / "venue.json"
    venue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(scenario_file),
            "--duration",
            "120",
            "--state",
            str(state),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XMC_VENUE_PASSWORD": "right-pw"},
    )
    try:
        ports = json.loads(venue.stdout.readline())["ports"]
        text = scenario_file.read_text()
        engine_tables = text[text.index("[instruments.CU]") : text.index("[prices]")]
        sessions = "".join(
            f'[sessions.{n}]\nhost = "127.0.0.1"\nport = {p}\ntarget_comp_id = "{n}"\n'
            f'dictionary = "{ {"SHFE": "SHFE", "COMEX": "COMEX", "FX": "FXFEED"}[n] }"\nusername = "desk1"\n'
            f'password_env = "PW_{n}"\n\n'
            for n, p in ports.items()
        )
        config = tmp_path / "live.toml"
        config.write_text(
            f'[live]\nout_dir = "{tmp_path / "out"}"\nheartbeat_s = 1\nreconnect_s = 1\n'
            f'start_time = "00:00:00"\nend_time = "00:00:00"\n'
            f"reset_on_logon = true\n\n{sessions}{engine_tables}"
        )
        live = subprocess.run(
            [sys.executable, "-m", "xmc.cli", "live", "--config", str(config), "--duration", "4"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PW_SHFE": "right-pw", "PW_COMEX": "wrong-pw", "PW_FX": "right-pw"},
        )
    finally:
        venue.stdin.close()
        venue.wait(timeout=30)
        venue_err = venue.stderr.read()
    assert live.returncode == 3, live.stderr[-3000:]  # a session never logged on: said, and not exit 0
    assert "session COMEX never logged on" in live.stderr
    assert venue.returncode == 0, venue_err[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["sessions_logged_on_at_end"] == ["FX", "SHFE"] and report["sessions_never_logged_on"] == ["COMEX"]
    assert any("COMEX" in r for r in json.loads(state.read_text())["refused_logons"])
    assert "wrong password" in venue_err and "wrong-pw" not in venue_err
    log = (tmp_path / "out" / "messages.log").read_text()
    assert any("\x0135=5\x01" in m and "\x0149=COMEX\x01" in m for m in log.splitlines())  # Logout with reason
    assert "wrong-pw" not in log and "right-pw" not in log
    for path in (p for p in tmp_path.rglob("*") if p.is_file() and p != config):  # stores, journal, reports
        data = path.read_bytes()
        assert b"wrong-pw" not in data and b"right-pw" not in data, path
    assert "wrong-pw" not in live.stdout + live.stderr and "right-pw" not in live.stdout + live.stderr


def test_a_tcp_cut_is_recovered_by_quickfix_resend_and_loses_no_fill(tmp_path):
    text = BENCH.read_text().replace(
        "[expect]", '[[faults]]\nkind = "disconnect"\nvenue = "COMEX"\nafter_s = 2.0\nuntil_s = 3.5\n\n[expect]'
    )
    proc, report = wire_variant(tmp_path, "cut", text, 6)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["wire_faults"] and report["wire_faults"][0]["connections_closed"] == 1
    assert report["fills_match_positions"] and report["all_terminal"] and report["episodes"]
    log = (tmp_path / "out" / "messages.log").read_text().splitlines()
    comex_logons = [m for m in log if "\x0135=A\x01" in m and "\x0156=COMEX\x01" in m]
    assert len(comex_logons) >= 2, "the engine logged on again after the cut"


def test_a_cut_the_moment_an_order_arrives_holds_its_reports_until_the_engine_is_back(tmp_path):
    """disconnect_on_order over the wire: the venue processes the COMEX entry, logs the session out and
    refuses logons for 1.5 s; the engine logs on again, its reports follow, the episode ends with
    positions equal to the venues' and the cut is in report.json."""
    text = BENCH.read_text().replace(
        "[expect]",
        '[[faults]]\nkind = "disconnect_on_order"\nvenue = "COMEX"\n'
        'orders = "entry"\ncount = 1\ndelay_ms = 1500\n\n[expect]',
    )
    proc, report = wire_variant(tmp_path, "cut_on_order", text, 5)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cuts = [f for f in report["wire_faults"] if f["fault"] == "disconnect_on_order"]
    assert len(cuts) == 1 and cuts[0]["venue"] == "COMEX" and cuts[0]["down_s"] == 1.5
    assert report["fills_match_positions"] and report["all_terminal"] and report["episodes"]
    cut_at = cuts[0]["at_s"] + report["market_open_s"]
    hit = [e for e in report["episodes"] if e["signal_at_s"] <= cut_at + 0.01 <= e["signal_at_s"] + 10]
    assert hit and hit[0]["signal_to_terminal_ms"] >= 1500  # its reports waited for the logon after the cut
    log = (tmp_path / "out" / "messages.log").read_text().splitlines()
    assert any("\x0135=5\x01" in m and "disconnect fault" in m for m in log)  # refused while down, with why


def test_a_venues_session_reject_of_an_order_reaches_the_order_over_quickfix(tmp_path):
    """A venue that refuses an order unprocessed answers a session Reject (3), which names the order only by
    its MsgSeqNum, or a BusinessMessageReject (j). quickfix hands the 3 to fromAdmin, where the live shell
    had only logged it: the engine waited for the order's timeout and asked its status, legged meanwhile.
    Now the shell maps the MsgSeqNum to the ClOrdID it sent under it, as the virtual-time shell does, and
    the order is rejected at once: no status question about it, no Reject left unmatched."""
    text = BENCH.read_text().replace(
        "[expect]",
        '[[faults]]\nkind = "reject"\nlevel = "session"\nvenue = "SHFE"\norders = "entry"\ncount = 1\n\n'
        '[[faults]]\nkind = "reject"\nlevel = "business"\nreason = 4\nvenue = "COMEX"\norders = "entry"\n'
        "after_s = 2.0\ncount = 1\n\n[expect]",
    )
    proc, report = wire_variant(tmp_path, "session_reject", text, 5)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "out" / "messages.log").read_text().splitlines()
    assert any("\x0135=3\x01" in m and "\x0149=SHFE\x01" in m and "\x01372=D\x01" in m for m in log)
    assert any("\x0135=j\x01" in m and "\x0149=COMEX\x01" in m and "\x01380=4\x01" in m for m in log)
    audit = pl.read_parquet(tmp_path / "out" / "audit.parquet")
    rejected = audit.filter(pl.col("stage") == "rejected")
    kinds = {(d or "").split(" reason=")[0] for d in rejected["detail"].to_list()}
    assert kinds == {"session Reject", "BusinessMessageReject"}, rejected
    asked = set(audit.filter(pl.col("stage") == "status_query")["cl_ord_id"].to_list())
    assert not asked & set(rejected["cl_ord_id"].to_list()), "a rejected order was asked about as unanswered"
    assert not any("reject_unmatched" in (d or "") for d in audit["detail"].to_list())
    assert report["fills_match_positions"] and report["all_terminal"]


def test_the_desks_kill_switch_fault_acts_in_wire_mode_and_engine_process_faults_are_named(tmp_path):
    """A kill_switch fault throws the switch at its time over the wire too (no episode after it); a
    crash of the engine's own process cannot happen in a wire run: it is named, not skipped quietly."""
    text = BENCH.read_text().replace(
        "[expect]",
        '[[faults]]\nkind = "kill_switch"\nafter_s = 2.0\n\n'
        '[[faults]]\nkind = "crash_restart"\nafter_s = 3.0\ndelay_ms = 500\n\n'
        "[expect]",
    )
    proc, report = wire_variant(tmp_path, "desk", text, 4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["faults_virtual_only"] == ["faults[1] crash_restart"] and "faults[1] crash_restart" in proc.stderr
    signals = [e["signal_at_s"] - report["market_open_s"] for e in report["episodes"]]
    assert signals and min(signals) < 2.0 and max(signals) < 2.1  # none after the switch
    assert any("kill switch" in a for a in report["alerts"]) and report["fills_match_positions"]


def test_dropped_messages_and_added_latency_happen_on_the_wire_and_are_recovered(tmp_path):
    """A relay in the engine's path drops whole FIX messages (the receiver sees a sequence gap, asks
    for a resend and gets PossDup copies or a GapFill) and delays others by 40 ms; nothing is lost."""
    text = BENCH.read_text().replace(
        "[expect]",
        """[[faults]]
kind = "drop"
venue = "COMEX"
direction = "down"
after_s = 0.5
rate = 0.2
count = 3

[[faults]]
kind = "drop"
venue = "SHFE"
direction = "up"
after_s = 0.5
rate = 0.3
count = 2

[[faults]]
kind = "latency_spike"
venue = "SHFE"
direction = "up"
after_s = 2.0
until_s = 3.0
delay_ms = 40

[expect]""",
    )
    proc, report = wire_variant(tmp_path, "gaps", text, 5)
    assert report["fills_match_positions"] and report["all_terminal"] and report["episodes"], proc.stderr[-3000:]
    drops = [f for f in report["wire_faults"] if f["fault"] == "drop"]
    assert len([d for d in drops if d["venue"] == "COMEX"]) == 3 and all(d["seq"] > 0 for d in drops)
    assert any(d["venue"] == "SHFE" and d["direction"] == "up" for d in drops)
    delayed = [f for f in report["wire_faults"] if f["fault"] == "latency_spike"]
    assert delayed and delayed[0]["messages_delayed"] > 0
    msgs = _checked_messages(tmp_path / "out" / "messages.log")
    assert any(m.get(35) == b"2" for m in msgs), "a gap was noticed and a resend asked for"
    assert any(m.get(43) == b"Y" or (m.get(35) == b"4" and m.get(123) == b"Y") for m in msgs), "and answered"
    anomalies = pl.read_parquet(tmp_path / "out" / "audit.parquet").filter(pl.col("stage") == "anomaly")["detail"]
    assert any(d.startswith("sequence_gap: COMEX") for d in anomalies.to_list()), "the gap is in the audit trail"
    # orders sent during the latency window waited for it
    slow = [e for e in report["episodes"] if 2.0 <= e["signal_at_s"] - report["market_open_s"] < 2.9]
    assert not slow or max(e["signal_to_acks_ms"] or 0 for e in slow) >= 40


def test_a_lost_status_question_is_followed_by_a_test_request_that_shows_the_venue_the_gap(tmp_path):
    """Every SHFE message about an entry order is lost on the relay (the order and its status
    question): nothing else goes to SHFE, so no gap shows until the overdue question is followed by a
    TestRequest sent through quickfix; SHFE's quickfix asks for the gap, gets the PossDup copies and
    answers the probe with a Heartbeat naming it; nothing is lost. (With a production heartbeat of
    30 s the probe is what shows the gap; at this harness's 1 s the heartbeat may show it first, so
    the answer timeout is cut to 50 ms and some wait of the run meets its probe first.)"""
    text = (
        BENCH.read_text()
        .replace(
            "[expect]",
            '[[faults]]\nkind = "drop"\nvenue = "SHFE"\ndirection = "up"\nafter_s = 0.5\norders = "entry"\n\n[expect]',
        )
        # overdue in 50 ms on loopback: the probe goes out well inside quickfix's 1 s heartbeat here,
        # which would show the venue the gap too
        .replace('mode = "ioc"\n', 'mode = "ioc"\nanswer_timeout_ms = 50\n')
    )
    assert "answer_timeout_ms = 50" in text
    proc, report = wire_variant(tmp_path, "probe", text, 5)
    assert report["fills_match_positions"] and report["all_terminal"], proc.stderr[-3000:]
    msgs = _checked_messages(tmp_path / "out" / "messages.log")
    probes = [m for m in msgs if m.get(35) == b"1" and m.get(56) == b"SHFE"]
    assert probes and probes[0].get(112).startswith(b"TR-SHFE-"), "an overdue question probes the session"
    after = msgs[msgs.index(probes[0]) :]
    assert any(m.get(35) == b"2" and m.get(49) == b"SHFE" for m in after), "SHFE saw the gap"
    assert any(m.get(35) == b"D" and m.get(43) == b"Y" and m.get(56) == b"SHFE" for m in after), "and got it"
    assert any(m.get(35) == b"0" and m.get(112) == probes[0].get(112) for m in after), "and answered the probe"


def test_the_venue_process_killed_mid_run_and_restarted_loses_and_duplicates_no_fill(tmp_path):
    """SIGKILL the venue process while orders rest there, start it again on the same ports and state:
    the engine reconnects, quickfix resynchronises (ResendRequest, resend or gap fill), the engine
    queries every order it had working (H) and adopts the answers; positions equal the venues'."""
    # every SHFE order fills 40% and the rest keeps working at the venue until the order timeout
    text = (
        BENCH.read_text()
        .replace('mode = "ioc"', 'mode = "limit"')
        .replace(
            "[expect]",
            """[[faults]]
kind = "partial_fill"
venue = "SHFE"
fill_ratio = 0.4
rest = "work"

[expect]""",
        )
    )
    proc, report = wire_variant(tmp_path, "resting", text, 6, "--kill-venues-at", "2", "--venues-down", "0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["fills_match_positions"] and report["all_terminal"], report["positions"]
    (restart,) = report["venue_restarts"]
    assert restart["killed_at_s"] < restart["restarted_at_s"] < restart["logged_on_again_s"]
    assert restart["reconciled_at_s"] is not None and restart["reconciled_at_s"] >= restart["logged_on_again_s"] - 0.1
    assert "venues killed at" in proc.stdout
    log = (tmp_path / "out" / "messages.log").read_text().splitlines()
    logons = [m for m in log if "\x0135=A\x01" in m and "\x0149=XMC\x01" in m]
    assert len(logons) >= 6  # three sessions, twice
    # the sessions resumed their sequence numbers from both FileStores (no reset): what either side
    # missed is resent or gap-filled on ResendRequest
    relogons = logons[3:]
    assert all("\x01141=Y\x01" not in m and int(m.split("\x0134=")[1].split("\x01")[0]) > 1 for m in relogons)
    audit = pl.read_parquet(tmp_path / "out" / "audit.parquet")
    assert "reconciled" in audit["stage"].to_list()
    assert report["status_queries"] >= 1  # an order was working at the venue when it died: asked, answered
    assert "status" in audit["stage"].to_list()
    fills = audit.filter(pl.col("stage") == "fill")
    assert fills.select("detail").n_unique() == fills.height  # no ExecID applied twice


def test_amending_a_lagging_leg_over_real_fix_sessions(tmp_path):
    """OrderCancelReplaceRequest through quickfix both ways: COMEX fills 40% of each entry and keeps
    the rest working, so that leg lags; the engine amends it (G), the venue answers Replaced (150=5)."""
    text = (
        BENCH.read_text()
        .replace('mode = "ioc"', 'mode = "limit"')
        .replace("cooldown_ms = 0", "cooldown_ms = 0\namend_after_ms = 100\namend_step_ticks = 1\nmax_amends = 2")
        .replace(
            "[expect]",
            '[[faults]]\nkind = "partial_fill"\nvenue = "COMEX"\norders = "entry"\nfill_ratio = 0.5\n'
            'rest = "work"\n\n[expect]',
        )
    )
    proc, report = wire_variant(tmp_path, "amend", text, 4)
    assert report["fills_match_positions"] and report["all_terminal"], proc.stderr[-3000:]
    msgs = _checked_messages(tmp_path / "out" / "messages.log")
    replaces = [m for m in msgs if m.get(35) == b"G" and m.get(49) == b"XMC"]
    replaced = [m for m in msgs if m.get(35) == b"8" and m.get(150) == b"5"]
    assert replaces and replaced and replaced[0].get(41) == replaces[0].get(41)
    audit = pl.read_parquet(tmp_path / "out" / "audit.parquet")
    assert {"amend", "replaced"} <= set(audit["stage"].to_list())


def test_sigusr1_is_the_kill_switch_of_xmc_live(tmp_path):
    """SIGUSR1 to a trading `xmc live`: working orders cancelled, no new order after it, the desk told."""
    import signal

    state = tmp_path / "venue.json"
    venue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(BENCH),
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
    try:
        ports = json.loads(venue.stdout.readline())["ports"]
        config = tmp_path / "live.toml"
        config.write_text(live_config(BENCH.read_text(), ports, tmp_path / "out", reset_on_logon=True))
        live = subprocess.Popen(
            [sys.executable, "-m", "xmc.cli", "live", "--config", str(config), "--duration", "5", "--trace"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sends = 0
        for line in live.stdout:
            sends += "|send|" in line
            if sends >= 4:
                break
        live.send_signal(signal.SIGUSR1)
        out, err = live.communicate(timeout=60)
    finally:
        venue.stdin.close()
        venue.wait(timeout=30)
    assert live.returncode == 0, err[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any("kill switch" in a for a in report["alerts"])
    audit = pl.read_parquet(tmp_path / "out" / "audit.parquet").sort("seq")
    stages = audit["stage"].to_list()
    assert "kill_switch" in stages and "send" not in stages[stages.index("kill_switch") :]


def _frame(body: str) -> bytes:
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    return (head + body + f"10={sum((head + body).encode()) % 256:03d}\x01").encode()


def _raw_session(
    port: int,
    sender: str,
    bodies: tuple[bytes | str, ...] = (),
    linger: float = 0.0,
    logon_extra: str = "",
    source: str = "127.0.0.1",
    until: bytes = b"",
) -> bytes:
    """Log on over a raw socket from `source` as `sender`, then send each of `bodies` (a str is a
    message body framed here, "{now}" replaced by the time; bytes go as they are) once the Logon is
    answered; every byte received until the peer closes, `until` arrives or, with `linger`, that many
    quiet seconds pass."""
    import socket
    import time

    now = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime())
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(
            _frame(f"35=A\x0149={sender}\x0156=SHFE\x0134=1\x0152={now}\x0198=0\x01108=30\x01141=Y\x01{logon_extra}")
        )
        if linger:
            s.settimeout(linger)
        pending = list(bodies)
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return got
            if not chunk:  # quickfix ends a refused or logged-out connection
                return got
            got += chunk
            if until and until in got:
                return got
            if pending and b"\x0135=A\x01" in got:
                for body in pending:
                    s.sendall(_frame(body.replace("{now}", now)) if isinstance(body, str) else body)
                pending = []


def test_several_clients_share_one_venue_and_trade_against_each_other(tmp_path):
    """`xmc venue --client`: two clients on one port, each its own session and ClOrdIDs (both use
    ORDER-1), one's resting buy filled by the other's sell at the same price; market data to both;
    OrderMassStatus answers with the asker's orders only. A wrong CompID inside a session gets the
    FIX answer (Reject 373=9 and Logout); a Logon from a CompID the venue does not serve is closed.
    The clients keep trading through both."""
    wide = BENCH.read_text().replace("half_spread_ticks = 1 }", "half_spread_ticks = 100 }")
    scenario_file = tmp_path / "wide.toml"
    scenario_file.write_text(wide)  # background quotes 100 ticks away: the clients meet each other in between
    state = tmp_path / "venue.json"
    venue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(scenario_file),
            "--client",
            "CLIENT1",
            "--client",
            "CLIENT2",
            "--duration",
            "120",
            "--state",
            str(state),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(venue.stdout.readline())
        port = info["ports"]["SHFE"]
        assert info["clients"] == ["CLIENT1", "CLIENT2"]
        strangers = _raw_session(port, "STRANGER", logon_extra="553=who\x01554=stranger-secret\x01")
        bad_comp = _raw_session(port, "CLIENT2", ("35=0\x0149=SOMEONE\x0156=SHFE\x0134=2\x0152={now}\x01",))
        from engine.fix import dictionary

        clients = subprocess.run(
            [
                sys.executable,
                str(ROOT / "tests" / "helpers" / "two_clients.py"),
                str(port),
                "SHFE",
                str(dictionary.load("SHFE").path),
                "cu2603",
                "SHFE-ARB-01",
                "10",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=90,
        )
    finally:
        venue.stdin.close()
        venue.wait(timeout=30)
    assert strangers == b""  # quickfix knows no such session: the connection is closed unanswered
    assert b"\x0135=3\x01" in bad_comp and b"\x01373=9\x01" in bad_comp and b"\x0135=5\x01" in bad_comp
    assert clients.returncode == 0, clients.stderr[-3000:]
    out = json.loads(clients.stdout.strip().splitlines()[-1])
    assert out["finished"], out
    got = out["received"]
    for name, side in (("CLIENT1", "1"), ("CLIENT2", "2")):
        reports = [m for m in got[name] if m["35"] == "8" and m.get("150") != "I"]
        assert [(m["150"], m["11"], m["54"]) for m in reports] == [("0", "ORDER-1", side), ("F", "ORDER-1", side)]
        assert reports[1]["32"] == "2" and float(reports[1]["31"]) == out["price"] and reports[1]["39"] == "2"
        assert any(m["35"] == "W" for m in got[name])  # each its own snapshot
    statuses = [m for m in got["CLIENT1"] if m.get("584") == "MS-1"]
    assert [(m["11"], m["54"], m["912"]) for m in statuses] == [("ORDER-1", "1", "Y")]  # its own order only
    result = json.loads(state.read_text())
    assert result["client_positions"]["CLIENT1"] == {"CU": 2.0}
    assert result["client_positions"]["CLIENT2"] == {"CU": -2.0}
    assert any("CompID problem" in a for a in result["session_answers"])
    unknown = [e["text"] for e in result["session_events"] if "Session not found" in e["text"]]
    assert unknown and "49=STRANGER" in unknown[0]  # the unknown CompID is on record, its password is not
    assert "stranger-secret" not in json.dumps(result) and "554=***" in unknown[0]


def test_bad_messages_to_xmc_venue_get_their_fix_answer_and_the_session_goes_on(tmp_path):
    """Over a real socket to `xmc venue`: garbled bytes (a wrong CheckSum) are dropped, a NewOrderSingle
    the SHFE dictionary refuses (no Account) gets session Reject 3 naming the tag, a message type the
    venue does not serve gets BusinessMessageReject j (380=3); then a TestRequest is still answered."""
    scratch = tmp_path / "tmp"  # where its session store goes without --state-dir: removed when it ends
    scratch.mkdir()
    venue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmc.cli",
            "venue",
            "--scenario",
            str(BENCH),
            "--duration",
            "60",
            "--state",
            str(tmp_path / "venue.json"),
        ],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(scratch)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = json.loads(venue.stdout.readline())["ports"]["SHFE"]
        head = "49=XMC\x0156=SHFE\x0152={now}\x01"
        garbled = _frame(f"35=0\x0134=2\x01{head}").replace(b"\x0110=", b"\x0110=9")[:-4] + b"000\x01"
        # dropped as if never received: the next message takes its sequence number (no gap to resend)
        no_account = (
            f"35=D\x0134=2\x01{head}11=BAD-1\x0155=cu2603\x0154=1\x0160={{now}}\x0138=1\x0140=2\x01"
            f"44=70000\x0159=0\x0120001=2\x01"
        )
        unserved = f"35=BE\x0134=3\x01{head}553=desk1\x01923=U-1\x01924=1\x01"  # a valid UserRequest
        test_request = f"35=1\x0134=4\x01{head}112=STILL-THERE\x01"
        got = _raw_session(port, "XMC", (garbled, no_account, unserved, test_request), linger=2.0)
    finally:
        venue.stdin.close()
        venue.wait(timeout=30)
    assert not list(scratch.iterdir()), "xmc venue left its temporary session store behind"
    messages = [b"8=FIX.4.4\x01" + m for m in got.split(b"8=FIX.4.4\x01") if m]
    rejects = [m for m in messages if b"\x0135=3\x01" in m]
    assert rejects and b"\x0145=2\x01" in rejects[0] and b"\x01371=1\x01" in rejects[0]  # Account missing
    business = [m for m in messages if b"\x0135=j\x01" in m]
    assert business and b"\x01372=BE\x01" in business[0] and b"\x01380=3\x01" in business[0]
    assert any(b"\x0135=0\x01" in m and b"\x01112=STILL-THERE\x01" in m for m in messages)
    assert len(rejects) == 1 and not any(b"\x0135=2\x01" in m for m in messages)  # no answer, no gap to fill
    state = json.loads((tmp_path / "venue.json").read_text())
    assert any("Reject" in a for a in state["session_answers"])
    assert any("Invalid message" in e["text"] and "CheckSum" in e["text"] for e in state["session_events"])


def _against_a_raw_broker(tmp_path, body: str) -> tuple[bytes, list[str]]:
    """`xmc live` (tests/live_broker.toml) against a broker written here on a raw socket: it answers the
    Logon, sends `body` (framed, "{now}" replaced) as its MsgSeqNum 2, and reads until the engine's
    run ends. Returns every byte the engine sent and the details of its audit trail's anomaly rows."""
    import socket
    import time

    def frame(text: str) -> bytes:
        head = f"8=FIX.4.4\x019={len(text.encode())}\x01{text}"
        return (head + f"10={sum(head.encode()) % 256:03d}\x01").encode()

    now = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime())
    config = tmp_path / "live.toml"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))  # the OS's port, on the socket kept open until the engine is done
        server.listen(1)
        config.write_text(
            (ROOT / "tests" / "live_broker.toml")
            .read_text()
            .replace("PORT", str(server.getsockname()[1]))
            .replace("OUT_DIR", str(tmp_path / "out"))
        )
        engine = subprocess.Popen(
            [sys.executable, "-m", "xmc.cli", "live", "--config", str(config), "--duration", "3"],
            cwd=ROOT,
            env={**os.environ, "XMC_BROKER_PASSWORD": "pw"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            server.settimeout(60)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(60)
                got, sent = b"", False
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:  # the engine logged out and closed at the end of its run
                        break
                    got += chunk
                    if not sent and b"\x0135=A\x01" in got:
                        logon = f"35=A\x0134=1\x0149=BROKER\x0152={now}\x0156=XMC\x0198=0\x01108=5\x01141=Y\x01"
                        conn.sendall(frame(logon) + frame("35=" + body.replace("{now}", now)))
                        sent = True
            _, err = engine.communicate(timeout=60)
        finally:
            engine.kill()
    assert engine.returncode == 0, err[-3000:]
    audit = pl.read_parquet(tmp_path / "out" / "audit.parquet")
    return got, [d or "" for d in audit.filter(pl.col("stage") == "anomaly")["detail"].to_list()]


@pytest.mark.parametrize(
    "body,answer,recorded",
    [
        (  # OrdStatus Z: quickfix's validation refuses it before fromApp
            "8\x0134=2\x0149=BROKER\x0152={now}\x0156=XMC\x0137=O1\x0111=NOPE\x0117=X1\x01150=0\x0139=Z\x01"
            "55=cu2603\x0154=1\x01151=1\x0114=0\x016=0\x01",
            ("35=3", "45=2", "371=39", "373=5"),
            "fix_session: BROKER: session reject (5) of its MsgSeqNum 2 (MsgType 8, tag 39)",
        ),
        (  # News without its required NoLinesOfText
            "B\x0134=2\x0149=BROKER\x0152={now}\x0156=XMC\x01148=hello\x01",
            ("35=3", "45=2", "371=33", "373=1"),
            "fix_session: BROKER: session reject (1) of its MsgSeqNum 2 (MsgType B, tag 33)",
        ),
        (  # a refresh priced nan: quickfix does not read inside the group, the engine's decoder does
            "X\x0134=2\x0149=BROKER\x0152={now}\x0156=XMC\x01262=M\x01268=1\x01279=0\x01269=0\x0155=cu2603\x01"
            "270=nan\x01271=1\x01",
            ("35=3", "45=2", "371=270"),
            "fix_session: BROKER: session reject (",
        ),
        (  # a valid News: a message type the engine does not serve
            "B\x0134=2\x0149=BROKER\x0152={now}\x0156=XMC\x01148=hello\x0133=1\x0158=line one\x01",
            ("35=j", "45=2", "372=B", "380=3"),
            "fix_business: BROKER: business reject (3): MsgType B is not served by this engine",
        ),
    ],
)
def test_xmc_live_answers_and_records_a_message_it_cannot_take(tmp_path, body, answer, recorded):
    """A broker's message that quickfix's validation refuses was answered by quickfix's session Reject
    and left no record of the engine's (fromApp never saw it); one of a type the engine does not serve
    was dropped unanswered. Now each gets its FIX answer and an anomaly row in the audit trail."""
    got, anomalies = _against_a_raw_broker(tmp_path, body)
    answers = [m for m in got.split(b"8=FIX.4.4\x01") if all(f"\x01{f}\x01".encode() in m for f in answer)]
    assert len(answers) == 1, got
    assert [d for d in anomalies if d.startswith(recorded)], anomalies
    assert len(anomalies) == 1, anomalies  # recorded once: not again for the engine's own answer


def test_xmc_live_alerts_when_a_broker_refuses_its_market_data(tmp_path):
    """A MarketDataRequestReject (Y) was dropped by the decoder: the instrument never got a quote and the
    strategy never traded, with nothing said. It is recorded (md_refused, naming the instrument) and
    raises a critical alert; it needs no FIX answer."""
    got, anomalies = _against_a_raw_broker(
        tmp_path, "Y\x0134=2\x0149=BROKER\x0152={now}\x0156=XMC\x01262=MD-CU2\x01281=1\x0158=not entitled\x01"
    )
    assert anomalies == ["md_refused: BROKER: market data for CU2 refused (MDReqRejReason 1) not entitled"]
    assert not any(f"\x0135={t}\x01".encode() in got for t in ("3", "j"))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any("market data for CU2 refused" in a for a in report["alerts"]), report["alerts"]


def test_the_venues_take_sessions_only_from_their_host(spread_scenario, tmp_path):
    """quickfix 1.16 cannot be told which address to listen on (it listens on every interface): the
    venues' sessions hang up on a connection from any address but their host (AllowedRemoteAddresses);
    from the host the session lives on and answers a TestRequest."""
    from simulator.wire import WireVenues

    sc = dataclasses.replace(spread_scenario, path=tmp_path / "s.toml")
    venues = WireVenues(sc, 1, state_dir=tmp_path / "state")
    ports = venues.start(until=60)
    test_request = ("35=1\x0149=XMC\x0156=SHFE\x0134=2\x0152={now}\x01112=still-there\x01",)
    try:  # another loopback address, not the host: hung up on (after quickfix's own Logon answer)
        stranger = _raw_session(ports["SHFE"], "XMC", test_request, source="127.0.0.2", until=b"112=still-there")
        assert b"112=still-there" not in stranger
        assert any("Deny connections" in text and "127.0.0.2" in text for _, _, text in venues.session_events.events)
        # the hang-up is handled on quickfix's own thread: until the session is off, a second Logon is
        # refused as a duplicate (under load the host's came first and got nothing back)
        import quickfix as fix

        from engine.shell.live import wait_for

        session = fix.Session.lookupSession(fix.SessionID("FIX.4.4", "SHFE", "XMC"))
        assert session is not None and wait_for(lambda: not session.isLoggedOn(), 10)
        host = _raw_session(ports["SHFE"], "XMC", test_request, until=b"112=still-there")
        assert b"\x0135=0\x01" in host and b"112=still-there" in host  # the Heartbeat that answers it
    finally:
        # stop the acceptor too: one left running is destroyed whenever the garbage collector gets to it,
        # threads and all, and quickfix then crashed the worker (SIGSEGV) in a later, unrelated test
        venues.stop()


def test_a_wire_session_takes_every_call_the_venue_model_makes_on_a_session(spread_scenario):
    """The venue model drives a member's session through one interface in both modes: the virtual-time
    SessionEnd and, in wire mode, WireSession (quickfix). A logout in wire mode (venue.disconnect)
    called a method only SessionEnd had, which would have killed the venues' simulation thread; every
    public method SessionEnd offers the venue is checked on WireSession too, and a logout is replayed."""
    import inspect

    import simpy

    from simulator.rng import fork
    from simulator.transport import SessionEnd, WireLog
    from simulator.venue import Venue
    from simulator.wire import WireSession

    venue_calls = set(inspect.getsource(Venue).split("session.")[1:]) | set(
        inspect.getsource(__import__("simulator.venue", fromlist=["Member"]).Member).split("session.")[1:]
    )
    called = {c.split("(")[0] for c in venue_calls if c.split("(")[0].isidentifier() and "(" in c[:40]}
    # Venue.receive (virtual time) reads its bytes through session.receive; in wire mode quickfix
    # parses them and the venue's shell hands them to _apply, so that one call never reaches WireSession
    needed = {name for name in called if callable(getattr(SessionEnd, name, None))} - {"receive"}
    assert {"send", "drop", "reconnect", "skip"} <= needed
    assert all(callable(getattr(WireSession, name, None)) for name in needed), needed
    env = simpy.Environment()
    log = WireLog()
    venue = Venue(env, spread_scenario.venues["SHFE"], [spread_scenario.engine.instruments["CU"]], fork(1, "v"), log)
    member = venue.add_member("DESK", lambda codec: WireSession(codec, log))
    member.logged_on = True
    member.session.reconnect()
    venue.disconnect(member=member)
    assert not member.session.connected and not member.logged_on


def test_a_relay_stops_listening_when_it_is_shut_down():
    """A fault relay relays on after its faults' time (`close`), and ends with the run (`shutdown`):
    its listener thread ends, its port refuses, its relayed connections are hung up. Before, nothing
    ended the listener: every wire run left a thread blocked in accept() and its socket behind (a close
    from another thread does not wake accept). The same for the TCP cut the lease tests put in front of
    a server."""
    import random
    import socket
    import threading

    from simulator.localnet import TcpCut
    from simulator.relay import FaultRelay

    with socket.create_server(("127.0.0.1", 0)) as venue:
        before = set(threading.enumerate())
        relay = FaultRelay("SHFE", venue.getsockname()[1], [], lambda name: random.Random(name))
        cut = TcpCut(venue.getsockname()[1])
        listeners = set(threading.enumerate()) - before
        assert {t.name for t in listeners} == {"xmc-relay-SHFE", "xmc-tcp-cut"}
        engine = socket.create_connection(("127.0.0.1", relay.port), timeout=5.0)
        far, _ = venue.accept()
        relay.close()  # the faults' time is over: it still relays
        heartbeat = b"8=FIX.4.4\x019=5\x0135=0\x0110=163\x01"
        engine.sendall(heartbeat)
        far.settimeout(5.0)
        assert far.recv(64) == heartbeat
        relay.shutdown()
        cut.close()
        for thread in listeners:
            thread.join(timeout=5)
            assert not thread.is_alive(), thread.name
        engine.settimeout(5.0)
        assert engine.recv(16) == b""  # hung up
        for port in (relay.port, cut.port):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        engine.close()
        far.close()


@pytest.mark.parametrize("hangs", [False, True], ids=["ends", "hangs"])
def test_a_wire_runs_venue_process_ends_and_its_ports_and_relays_are_released_even_if_it_hangs(hangs):
    """`end_venues` closes the venue process's stdin and waits for it; one that does not end in time is
    killed, and either way the ports held for it are released and the relays stop listening. Before, a
    hung venue process made the wait raise in the run's `finally`: the process was left running, its
    ports held, its relays listening, and the run's own error masked by the timeout."""
    import random
    import socket
    import threading

    from simulator.ports import reserve
    from simulator.relay import FaultRelay
    from simulator.wire import end_venues

    after_stdin = "import signal; signal.pause()" if hangs else "pass"
    child = subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.stdin.read(); {after_stdin}"], stdin=subprocess.PIPE, text=True
    )
    held = reserve(["SHFE"])
    with socket.create_server(("127.0.0.1", 0)) as venue:
        before = set(threading.enumerate())
        relay = FaultRelay("SHFE", venue.getsockname()[1], [], lambda name: random.Random(name))
        listener = (set(threading.enumerate()) - before).pop()
        try:
            assert end_venues(child, held, {"SHFE": relay}, within=0.5 if hangs else 30.0) is (not hangs)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == (-9 if hangs else 0)
        listener.join(timeout=5)
        assert not listener.is_alive()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", relay.port), timeout=1.0).close()
    assert held["SHFE"]._socket.fileno() == -1  # the port's reservation let go (never bound again here)
