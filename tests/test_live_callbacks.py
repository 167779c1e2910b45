"""The live shell's quickfix callbacks and store scrubbing, called as quickfix calls them but without a
socket: what each queues for the engine thread, what it adds to a message, what it logs (masked), and
what the engine thread records of a refused message or a send with no session. Found unpinned by
mutation: the wire tests run these, at minutes a run."""

from __future__ import annotations

import os
import stat

import pytest
import quickfix as fix

from engine.core.engine_core import EngineCore
from engine.core.events import SendCancel
from engine.shell.live import LiveEngine, SessionConfig

SID = fix.SessionID("FIX.4.4", "XMC", "SHFE-GW")


@pytest.fixture
def engine(config):
    sessions = [
        SessionConfig("SHFE", "SHFE", "SHFE-GW", "127.0.0.1", 1, "desk1", "s3cret"),
        SessionConfig("COMEX", "COMEX", "COMEX-GW", "127.0.0.1", 2),  # no credentials
    ]
    return LiveEngine(EngineCore(config), sessions, quiet_gc=False, session_events=False)


def _message(msg_type: str, **fields: str) -> fix.Message:
    msg = fix.Message()
    header = msg.getHeader()
    header.setField(8, "FIX.4.4")
    header.setField(35, msg_type)
    header.setField(34, "7")
    for tag, value in fields.items():
        msg.setField(int(tag[1:]), value)
    return msg


def _at_100(config) -> LiveEngine:
    """An engine with one session (SHFE) whose clock stands at 100 s."""
    sessions = [SessionConfig("SHFE", "SHFE", "SHFE-GW", "127.0.0.1", 1)]
    return LiveEngine(EngineCore(config), sessions, clock=lambda: 100.0, quiet_gc=False, session_events=False)


def _queued(engine: LiveEngine) -> list:
    out = []
    while not engine.events.empty():
        out.append(engine.events.get_nowait())
    return out


def test_a_logon_carries_its_sessions_credentials_and_is_logged_masked(engine):
    logon = _message("A")
    engine.toAdmin(logon, SID)
    assert (logon.getField(553), logon.getField(554)) == ("desk1", "s3cret")
    (logged,) = engine.messages
    assert "\x01554=***\x01" in logged and "s3cret" not in logged and "\x01553=desk1\x01" in logged
    bare = _message("A")
    engine.toAdmin(bare, fix.SessionID("FIX.4.4", "XMC", "COMEX-GW"))
    assert not bare.isSetField(553) and not bare.isSetField(554)
    assert _queued(engine) == []  # a Logon is nothing for the engine thread


def test_a_session_reject_quickfix_sends_is_queued_once_and_recorded_naming_what_it_refused(engine):
    """quickfix's own validation refused a message (fromApp never saw it): its Reject, seen in toAdmin,
    goes to the engine thread as ("refused", venue, raw) and becomes a fix_session anomaly naming the
    reason, the refused MsgSeqNum, MsgType and tag; a Reject the engine thread itself is sending (already
    recorded where it was decided) is not queued again."""
    reject = _message("3", t45="12", t372="D", t373="5", t371="44", t58="Value is incorrect")
    engine.toAdmin(reject, SID)
    ((kind, venue, raw),) = _queued(engine)
    assert (kind, venue) == ("refused", "SHFE") and "\x0145=12\x01" in raw
    engine._answering.active = True
    engine.toAdmin(_message("3", t45="13", t373="5"), SID)
    assert _queued(engine) == []
    engine._answering.active = False
    engine._refused(venue, raw)
    (anomaly,) = engine.anomalies
    assert anomaly.kind == "fix_session"
    assert anomaly.detail == "SHFE: session reject (5) of its MsgSeqNum 12 (MsgType D, tag 44): Value is incorrect"
    assert [row.stage for row in engine.audit] == ["anomaly"]


def test_what_a_venue_sends_is_logged_and_queued_for_the_engine_thread(engine):
    """fromApp: every application message is logged and queued as ("fix", venue, raw); fromAdmin: a
    session Reject too (it may refuse one of our orders), other session messages only logged."""
    report = _message("8", t11="E1-000001A1", t39="0")
    engine.fromApp(report, SID)
    reject = _message("3", t45="4", t373="99")
    engine.fromAdmin(reject, SID)
    engine.fromAdmin(_message("0"), SID)  # a Heartbeat
    queued = _queued(engine)
    assert [(k, v) for k, v, _ in queued] == [("fix", "SHFE"), ("fix", "SHFE")]
    assert "\x0111=E1-000001A1\x01" in queued[0][2] and "\x0145=4\x01" in queued[1][2]
    assert len(engine.messages) == 3 and "\x0135=0\x01" in engine.messages[2]


def test_an_order_with_no_session_to_go_to_is_recorded_naming_it(engine):
    engine.send(SendCancel("SHFE", "E1-000002A1", "E1-000001A1", "CU", "cu2603", "1", 5, "D1"))
    (anomaly,) = engine.anomalies
    assert (anomaly.kind, anomaly.cl_ord_id) == ("send_failed", "E1-000002A1")
    assert anomaly.detail == "SHFE: session not available"


def test_the_store_keeps_no_password_and_is_private_to_the_user(engine, tmp_path):
    """quickfix's FileStore keeps the sent Logon with its password: each occurrence in a .body file is
    overwritten in place with as many asterisks (offsets stay valid), other files are left as they are,
    the directory becomes 0700 and its files 0600."""
    store = tmp_path / "store"
    store.mkdir()
    logon = b"8=FIX.4.4\x0135=A\x01554=s3cret\x0110=001\x01"
    body = logon * 3  # three logons: every one scrubbed, the middle one too
    (store / "S.body").write_bytes(body)
    (store / "S.header").write_bytes(b"1,0,40\x01554=s3cret\x01")  # not a .body: not touched
    os.chmod(store / "S.body", 0o644)
    engine.store_dir = store
    engine.scrub_store()
    assert (store / "S.body").read_bytes() == body.replace(b"554=s3cret", b"554=******")
    assert (store / "S.header").read_bytes() == b"1,0,40\x01554=s3cret\x01"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in store.iterdir()} == {0o600}
    engine.store_dir = None
    engine.scrub_store()  # no store (quickfix not started): nothing to do, nothing raised


def test_each_venues_codec_reads_only_that_venues_symbols(engine, config):
    """A report or a refresh names its instrument by the venue's symbol: each session's codec maps the
    symbols of the instruments that trade there, and no other venue's."""
    for venue in ("SHFE", "COMEX"):
        mine = {i.symbol: i.name for i in config.instruments.values() if i.venue == venue}
        assert mine and engine.codecs[venue].symbol_to_instrument == mine


def test_one_turn_of_the_engine_thread_fires_due_timers_then_handles_what_was_queued(config):
    """A timer due at this very instant fires (its time is not in the future), before the item the
    turn took from the queue; one due later waits; a ("refused", venue, raw) item becomes its anomaly."""
    from engine.core.events import TimerFired

    engine = _at_100(config)
    seen = []
    engine.on_event = lambda event, now: seen.append((event, now))
    engine.set_timer("due", 100.0)
    engine.set_timer("later", 100.5)
    engine.toAdmin(_message("3", t45="3", t372="D", t373="1", t58="no"), SID)
    engine._turn()
    assert seen == [(TimerFired("due"), 100.0)]
    assert [a.kind for a in engine.anomalies] == ["fix_session"] and "MsgSeqNum 3" in engine.anomalies[0].detail
    assert [key for _, _, key in engine.timers] == ["later"]


def test_session_life_reaches_the_engine_thread_and_the_clock_counts_from_the_start(config):
    """onCreate keeps the session's id, onLogon and onLogout queue SessionUp and SessionDown and keep the
    set of sessions logged on; a desk command is queued; engine time is the clock less the start."""
    from engine.core.events import Command, SessionDown, SessionUp

    engine = _at_100(config)
    engine.epoch_start = 40.0
    engine.onCreate(SID)
    assert engine.session_ids == {"SHFE": SID}
    engine.onLogon(SID)
    assert engine.logged_on == {"SHFE"} and engine.logon_at == {"SHFE": 60.0}
    engine.onLogout(SID)
    engine.command("kill")
    assert engine.logged_on == set()
    assert _queued(engine) == [SessionUp("SHFE"), SessionDown("SHFE"), Command("kill")]


def test_the_reports_session_events_say_whether_they_were_kept(config):
    from engine.shell.session_events import _EventLog

    quiet = LiveEngine(EngineCore(config), [], quiet_gc=False, session_events=False)
    assert quiet.session_event_summary() == {"recorded": False}
    kept = LiveEngine(EngineCore(config), [], quiet_gc=False, session_events=True)
    assert kept.session_events is not None
    log = _EventLog(kept.session_events, "FIX.4.4:XMC->SHFE-GW")
    for i in range(3):
        log.onEvent(f"event {i}")
    summary = kept.session_event_summary(first=2)
    assert summary == {
        "recorded": True,
        "count": 3,
        "first": ["FIX.4.4:XMC->SHFE-GW: event 0", "FIX.4.4:XMC->SHFE-GW: event 1"],
    }
