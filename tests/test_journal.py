"""The write-ahead journal: replay rebuilds the core exactly; only a torn final record is cut (and
kept beside the journal); any other damage, a newer format or another config is refused, untouched."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.engine_core import EngineCore
from engine.core.events import Quote, SessionUp
from engine.shell.journal import Journal, JournalError, read, replay
from simulator import runner
from tests.conftest import ROOT, short


def state(core: EngineCore) -> tuple:
    return (
        core.seq,
        sorted(core.positions.items()),
        sorted((d, e.state.value, e.chase_attempts, e.unwind_attempts) for d, e in core.episodes.items()),
        sorted((c, o.state.name, o.cum_qty, round(o.avg_px, 9)) for c, o in core.orders.items()),
    )


def test_replaying_a_journaled_run_rebuilds_the_core_exactly(tmp_path, spread_scenario):
    sc = short(spread_scenario, 120)
    path = tmp_path / "engine.journal"
    journal = Journal(path, sc.engine, durability="batch")
    rep = runner.run(sc, 3, journal=journal).report
    journal.close()
    assert rep["episodes"]
    recovered = read(path, journal.fingerprint)
    assert recovered.truncated_bytes == 0 and recovered.records
    rebuilt = EngineCore(sc.engine)
    replay(rebuilt, recovered.records)
    assert {k: v for k, v in rebuilt.positions.items() if v} == rep["positions"]["engine"]
    assert sorted(e["outcome"] for e in rep["episodes"]) == sorted(e.state.value for e in rebuilt.episodes.values())
    second = EngineCore(sc.engine)
    replay(second, read(path, journal.fingerprint).records)
    assert state(second) == state(rebuilt)


def _journal_with(tmp_path, config, n: int) -> Journal:
    j = Journal(tmp_path / "j", config)
    j.append(SessionUp("SHFE"), 0.0)
    for i in range(n - 1):
        j.append(Quote("CU", 70000.0 + i, 5.0, 70010.0 + i, 5.0), 0.1 * i)
    j.sync()
    return j


def test_a_torn_tail_is_cut_reported_and_never_replayed(tmp_path, config):
    j = _journal_with(tmp_path, config, 4)
    j.close()
    whole = (tmp_path / "j").read_bytes()
    (tmp_path / "j").write_bytes(whole[:-7])  # the process died in the middle of the last write
    reopened = Journal(tmp_path / "j", config)
    assert len(reopened.recovered.records) == 3 and reopened.recovered.truncated_bytes > 0
    assert "torn" in reopened.recovered.reason
    kept = tmp_path / reopened.recovered.kept.rsplit("/", 1)[-1]
    assert kept.read_bytes() == whole[len(whole) - 7 - reopened.recovered.truncated_bytes : -7]  # nothing lost
    reopened.append(Quote("CU", 1.0, 1.0, 2.0, 1.0), 9.0)
    reopened.close()
    again = read(tmp_path / "j", reopened.fingerprint)
    assert len(again.records) == 4 and again.truncated_bytes == 0 and again.records[-1][0] == 9.0


def test_a_record_reaches_the_file_before_append_returns_and_a_simulated_one_when_synced(tmp_path, config):
    """A real process hands each record to the OS before its core acts (a kill -9 loses nothing it acted
    on); a simulated process's journal (simulator.scratch) keeps them buffered until the simulator syncs it."""
    live = Journal(tmp_path / "live", config)
    live.append(Quote("CU", 1.0, 1.0, 2.0, 1.0), 1.0)
    assert len(read(tmp_path / "live", live.fingerprint).records) == 1  # read by another handle, now
    simulated = Journal(tmp_path / "sim", config, flush_each=False)
    simulated.append(Quote("CU", 1.0, 1.0, 2.0, 1.0), 1.0)
    assert read(tmp_path / "sim", simulated.fingerprint).records == []
    simulated.sync()
    assert len(read(tmp_path / "sim", simulated.fingerprint).records) == 1
    live.close()
    simulated.close()


@pytest.mark.parametrize("where", ["last", "early"])
def test_a_corrupt_record_is_refused_naming_offset_and_record_and_the_file_stays(tmp_path, config, where):
    j = _journal_with(tmp_path, config, 6)
    j.close()
    data = bytearray((tmp_path / "j").read_bytes())
    data[-3 if where == "last" else data.index(b"\n") + 1 + 8 + 3] ^= 0xFF  # in a body: past the header and a frame
    (tmp_path / "j").write_bytes(bytes(data))
    with pytest.raises(JournalError) as err:
        Journal(tmp_path / "j", config)
    assert "damaged at byte" in str(err.value) and "record" in str(err.value) and "checksum" in str(err.value)
    assert (tmp_path / "j").read_bytes() == bytes(data)  # left as it is


def test_a_flipped_length_early_is_damage_not_a_torn_tail(tmp_path, config):
    """A length field made huge looks like a torn body, but good records follow it: refused."""
    j = _journal_with(tmp_path, config, 6)
    j.close()
    data = bytearray((tmp_path / "j").read_bytes())
    first = data.index(b"\n") + 1
    data[first] ^= 0x40  # the high byte of the first record's length
    (tmp_path / "j").write_bytes(bytes(data))
    with pytest.raises(JournalError) as err:
        read(tmp_path / "j", j.fingerprint)
    assert f"byte {first}, record 1" in str(err.value) and "valid record starts at byte" in str(err.value)


def test_records_with_impossible_content_are_refused(tmp_path, config):
    import zlib

    from engine.shell.journal import FRAME

    j = _journal_with(tmp_path, config, 2)
    j.close()
    good = (tmp_path / "j").read_bytes()
    for body, what in (
        (b'{"t":1.0,"e":"SessionUp","f":{"venue":"NYSE"}}', "venue 'NYSE'"),
        (
            b'{"t":1.0,"e":"Quote","f":{"instrument":"CU","bid":"high","bid_size":1,"ask":2.0,"ask_size":1}}',
            "Quote.bid",
        ),
        (b'{"t":"soon","e":"SessionUp","f":{"venue":"SHFE"}}', "time"),
        (
            b'{"t":1.0,"e":"Quote","f":{"instrument":"GOLD","bid":1.0,"bid_size":1,"ask":2.0,"ask_size":1}}',
            "instrument 'GOLD'",
        ),
        (b"[1, 2]", "does not decode"),
        # an empty field that may not be, a flag for a number, a number that is none, a time that is a flag, too few values
        (
            b'{"t":1.0,"e":"Quote","f":{"instrument":"CU","bid":null,"bid_size":null,"ask":2.0,"ask_size":1}}',
            "Quote.bid_size is None",
        ),
        (b'[1.0,"Quote","CU",1.0,true,2.0,1]', "Quote.bid_size is True"),
        (b'[1.0,"Quote","CU",NaN,1,2.0,1]', "Quote.bid is NaN"),
        (b'[true,"SessionUp","SHFE"]', "its time is True"),
        (b'[NaN,"SessionUp","SHFE"]', "its time is nan"),
        (b'[-Infinity,"SessionUp","SHFE"]', "its time is -inf"),
        (b'[1.0,"Quote","CU",1.0,1,2.0]', "Quote has 5 fields, the record 4 values"),
    ):
        (tmp_path / "j").write_bytes(good + FRAME.pack(len(body), zlib.crc32(body)) + body)
        with pytest.raises(JournalError) as err:
            read(tmp_path / "j", j.fingerprint, config)
        assert what in str(err.value) and "record 3" in str(err.value), str(err.value)


def test_a_torn_tail_that_holds_what_looks_like_a_record_is_still_a_torn_tail(tmp_path, config):
    """Only a whole record with its checksum right proves that good records follow the damage: bytes in
    a torn tail that merely frame a '[' (a payload's first byte) do not (planted: that check dropped)."""
    import zlib

    from engine.shell.journal import FRAME

    j = _journal_with(tmp_path, config, 3)
    j.close()
    good = (tmp_path / "j").read_bytes()
    fake = FRAME.pack(3, zlib.crc32(b"[1]") ^ 1) + b"[1]"  # framed like a record, its checksum wrong
    torn = FRAME.pack(200, 0) + b'[0.5,"Quote",' + fake  # a body of 200 bytes promised, fewer written
    (tmp_path / "j").write_bytes(good + torn)
    got = read(tmp_path / "j", j.fingerprint, config)
    assert len(got.records) == 3 and got.truncated_bytes == len(torn) and got.reason == "torn record body"


def test_a_final_record_cut_right_after_its_frame_is_a_torn_body(tmp_path, config):
    """The frame's 8 bytes are whole and promise a body that is missing: a torn body (the frame was
    read), not a torn header."""
    j = _journal_with(tmp_path, config, 3)
    j.close()
    data = (tmp_path / "j").read_bytes()
    last = len(json.dumps([0.1, "Quote", "CU", 70001.0, 5.0, 70011.0, 5.0], separators=(",", ":")))
    (tmp_path / "j").write_bytes(data[:-last])  # the frame of the last record kept, its body gone
    got = read(tmp_path / "j", j.fingerprint, config)
    assert len(got.records) == 2 and got.truncated_bytes == 8 and got.reason == "torn record body"
    (tmp_path / "j").write_bytes(data[: -last - 1])
    assert read(tmp_path / "j", j.fingerprint, config).reason == "torn record header"


def test_the_history_streamed_to_a_standby_stops_at_a_corrupt_record(tmp_path, config):
    """`bodies` hands a standby the journal's records as they are: a record whose checksum fails is
    never sent (the standby would apply garbage), nor anything after it."""
    from engine.shell.journal import bodies

    j = _journal_with(tmp_path, config, 5)
    j.close()
    whole, end = bodies(tmp_path / "j")
    assert len(whole) == 5 and end == len((tmp_path / "j").read_bytes())
    data = bytearray((tmp_path / "j").read_bytes())
    data[-3] ^= 0x01  # inside the last record's body
    (tmp_path / "j").write_bytes(bytes(data))
    cut, at = bodies(tmp_path / "j")
    assert cut == whole[:4] and at == end - 8 - len(whole[4])


@pytest.mark.parametrize(
    ("durability", "syncs", "pending", "at_close"), [("none", 0, 7, 0), ("batch", 2, 1, 3), ("record", 7, 0, 8)]
)
def test_durability_forces_records_to_disk_as_configured(
    tmp_path, config, monkeypatch, durability, syncs, pending, at_close
):
    """7 appends: "record" fsyncs each, "batch" (3 here) every third, "none" leaves it to the OS; closing
    forces the rest to disk unless the OS decides."""
    from engine.shell import journal as jn

    j = Journal(tmp_path / "j", config, durability=durability, batch=3)
    calls = []
    monkeypatch.setattr(jn.os, "fsync", lambda fd: calls.append(fd))
    for i in range(7):
        j.append(Quote("CU", 70000.0 + i, 5.0, 70010.0 + i, 5.0), float(i))
    assert len(calls) == syncs and j.pending == pending
    j.close()
    assert len(calls) == at_close


def test_replay_hands_back_exactly_the_timers_still_armed(config):
    """A journal's replay returns the timers the shell must arm: those set and not cancelled since (the
    acknowledgement watches of answered orders are not among them), less those that fired (the order
    timeout here: re-armed, it fired again right after the restart and cancelled whatever the episode
    had working by then)."""
    from engine.core.events import CancelTimer, SendCancel, SendOrder, SetTimer, TimerFired
    from tests.conftest import fire, report

    live = EngineCore(config)
    records: list = []
    armed: dict[str, float] = {}
    original = live.handle

    def handle(event, now):
        records.append((now, event))
        actions = original(event, now)
        for a in actions:
            if type(a) is SetTimer:
                armed[a.key] = a.at
            elif type(a) is CancelTimer:
                armed.pop(a.key, None)
        return actions

    live.handle = handle
    sent = [a for a in fire(live, now=1.0) if isinstance(a, SendOrder)]
    for o in sent:
        live.handle(report(o, f"{o.cl_ord_id}-0", "0", "0", 0), 1.1)
    assert armed and not any(k.startswith("ack:") for k in armed)
    assert replay(EngineCore(config), records) == armed
    timeout = next(k for k in armed if k.startswith("timeout:"))
    del armed[timeout]  # the shell drops a timer as it fires it
    cancels = [a for a in live.handle(TimerFired(timeout), 9.0) if isinstance(a, SendCancel)]
    assert len(cancels) == 2 and timeout not in armed
    assert replay(EngineCore(config), records) == armed


def test_newer_format_other_config_and_foreign_files_are_refused(tmp_path, config, spread_scenario):
    j = _journal_with(tmp_path, config, 2)
    j.close()
    path = tmp_path / "j"
    lines = path.read_bytes().split(b"\n", 1)
    header = json.loads(lines[0])
    path.write_bytes(json.dumps({**header, "version": 99}).encode() + b"\n" + lines[1])
    with pytest.raises(JournalError, match="newer"):
        Journal(path, config)
    path.write_bytes(json.dumps({**header, "config": "someone-else"}).encode() + b"\n" + lines[1])
    with pytest.raises(JournalError, match="another engine config"):
        Journal(path, config)
    path.write_bytes(b"hello\n")
    with pytest.raises(JournalError, match="not an xmc journal"):
        Journal(path, config)
    # another program's file that happens to carry this config's fingerprint: the magic tells them apart
    path.write_bytes(json.dumps({**header, "magic": "not-xmc"}).encode() + b"\n" + lines[1])
    with pytest.raises(JournalError, match="not an xmc journal \\(magic 'not-xmc'\\)"):
        Journal(path, config)
    with pytest.raises(JournalError, match="durability"):
        Journal(tmp_path / "k", config, durability="sometimes")


def test_an_engine_crash_is_survived_by_replaying_the_journal():
    from simulator import scenario
    from tests.conftest import ROOT

    rep = runner.run(scenario.load(ROOT / "scenarios" / "f24_engine_crash_restart.toml"), 2).report
    assert len(rep["restarts"]) == 2 and all(r["replayed"] > 0 for r in rep["restarts"])
    assert rep["verdict"] == "pass" and rep["fills_match_positions"]
    assert rep["invariants"]["4"]["status"] == "pass", "no ClOrdID reused after the restart"
    assert "positions_reconciled" in rep["coverage"], "after the restart, positions are compared with the venues'"
    assert all(e["outcome"] in ("BALANCED", "UNWOUND", "ESCALATED", "ABORTED") for e in rep["episodes"])


def test_a_death_in_the_middle_of_a_journal_write_is_cut_and_reported_on_restart():
    from simulator import runner, scenario
    from tests.conftest import ROOT

    rep = runner.run(scenario.load(ROOT / "scenarios" / "f30_engine_crash_torn_journal.toml"), 7).report
    assert rep["verdict"] == "pass", rep["expectations"]
    (restart,) = rep["restarts"]
    assert restart["torn_written"] > 0 and restart["torn_bytes_cut"] == restart["torn_written"]
    assert restart["torn_reason"].startswith("torn record") and "journal_torn" in rep["coverage"]


def test_a_live_standby_journals_the_stream_it_follows(tmp_path, spread_scenario):
    """What the standby applies from the primary's stream is in its own journal, in order, so the
    node that takes over can itself restart cold."""
    from engine.core.engine_core import EngineCore
    from engine.shell.journal import Journal, fingerprint, read
    from engine.shell.live import wait_for
    from engine.shell.node import PrimaryStream, StandbyNode
    from tests.conftest import fire

    cfg = spread_scenario.engine
    journal = Journal(tmp_path / "standby.journal", cfg)
    standby = StandbyNode("b", EngineCore(cfg), ("127.0.0.1", 0), 0.1, 3, journal)  # the OS picks; it keeps the socket
    stream = PrimaryStream(
        "a", ("127.0.0.1", standby.address[1]), fingerprint(cfg), Journal(tmp_path / "primary.journal", cfg)
    )
    recorder = EngineCore(cfg)
    sent = []
    original = recorder.handle

    def handle(event, now):
        sent.append((now, event))
        stream.record(event, now)
        return original(event, now)

    recorder.handle = handle
    try:
        fire(recorder, now=1.0)
        assert wait_for(lambda: standby.applied == len(sent), 5)
        assert [e for _, e in read(journal.path, fingerprint(cfg)).records] == [e for _, e in sent]
        assert standby.core.episodes.keys() == recorder.episodes.keys() and standby.primary == "a"
    finally:
        if stream.sock is not None:
            stream.sock.close()
        standby.take_over(2, 2.0)  # stops following and closes its listening socket
        stream.writer.close()
        journal.close()


def test_a_standby_attaching_late_gets_the_history_it_lacks_then_the_live_events(tmp_path, config):
    """The primary's stream to a standby that says it has applied 20 events: events 21.. of the journal
    (bulk and tail passes), then what is recorded after, each exactly once and in order; a torn
    journal tail is never sent."""
    import socket
    import threading

    from engine.shell import journal as jn
    from engine.shell import node

    journal = Journal(tmp_path / "engine.journal", config)
    for i in range(50):
        journal.append(Quote("CU", 70000.0 + i, 5, 70010.0 + i, 5), float(i))
    server = socket.create_server(("127.0.0.1", 0))
    received: list[float] = []

    def standby() -> None:
        sock, _ = server.accept()
        node._read_frame(sock)
        node._send_frame(sock, b"H", json.dumps({"node": "b", "applied": 20}).encode())
        try:
            while True:
                kind, payload = node._read_frame(sock)
                if kind == b"E":
                    received.append(jn.decode(payload)[0])
        except ConnectionError:
            pass
        finally:
            sock.close()

    follower = threading.Thread(target=standby)
    follower.start()
    stream = node.PrimaryStream("a", server.getsockname(), journal.fingerprint, journal)
    for i in range(50, 55):
        stream.record(Quote("CU", 70000.0, 5, 70010.0, 5), float(i))
    stream.sock.close()
    follower.join(timeout=10)
    assert received == [float(i) for i in range(20, 55)]
    assert stream.log[0]["history_sent"] == 30
    bodies, end = jn.bodies(journal.path)
    journal.torn_append(Quote("CU", 1.0, 1, 2.0, 1), 99.0)
    journal.fh.flush()
    again, end2 = jn.bodies(journal.path)
    assert len(bodies) == len(again) == 55 and end == end2  # the torn record is not history
    server.close()
    journal.close()


def test_a_standby_that_stops_reading_is_dropped_instead_of_stalling_the_primary(tmp_path, config):
    """The stream's socket fills when the standby stops reading; the primary's engine thread waits at
    most the stall bound once, drops the standby (recorded) and journals on alone."""
    import socket
    import threading

    from engine.shell import node

    journal = Journal(tmp_path / "engine.journal", config)
    server = socket.create_server(("127.0.0.1", 0))
    hold = threading.Event()

    def standby() -> None:  # answers the hello, then never reads again
        sock, _ = server.accept()
        node._read_frame(sock)
        node._send_frame(sock, b"H", json.dumps({"node": "b", "applied": 0}).encode())
        hold.wait(30)
        sock.close()

    threading.Thread(target=standby, daemon=True).start()
    stream = node.PrimaryStream("a", server.getsockname(), journal.fingerprint, journal, stall=0.05)
    big = Quote("CU", 70000.0, 5, 70010.0, 5)
    n = 0
    while stream.alive and n < 200_000:
        stream.record(big, float(n))
        n += 1
    hold.set()
    assert not stream.alive and stream.log[-1]["event"] == "lost" and stream.log[-1]["why"] == "TimeoutError"
    stream.record(big, float(n))  # journals on without a standby
    assert len(read(journal.path, journal.fingerprint).records) == n + 1
    if stream.sock is not None:
        stream.sock.close()
    server.close()
    journal.close()


@pytest.mark.parametrize(
    "header", [b"[1, 2]\n", b'"text"\n', b'{"magic": 3}\n', b'{"magic": "xmc-journal", "version": "x"}\n']
)
def test_headers_of_the_wrong_json_type_are_refused_not_a_traceback(tmp_path, config, header):
    (tmp_path / "j").write_bytes(header)
    with pytest.raises(JournalError):
        Journal(tmp_path / "j", config)


def test_a_path_that_is_a_directory_is_refused(tmp_path, config):
    with pytest.raises(JournalError, match="directory"):
        Journal(tmp_path, config)


_DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=12)),
)


@given(damage=st.lists(_DAMAGE, min_size=1, max_size=3))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_damage_is_refused_or_cut_as_a_torn_tail_never_a_wrong_start(tmp_path_factory, config, damage):
    """Random byte flips, truncations and insertions: the journal either opens with a prefix of the
    records that were written (only a torn final record cut, and kept), or is refused (JournalError)
    and left untouched. Never a traceback, never a record that was not written."""
    path = tmp_path_factory.mktemp("j") / "engine.journal"
    j = Journal(path, config)
    written = [(0.0, SessionUp("SHFE"))] + [
        (0.1 * i, Quote("CU", 70000.0 + i, 5.0, 70010.0 + i, 5.0)) for i in range(1, 8)
    ]
    for t, event in written:
        j.append(event, t)
    j.close()
    data = bytearray(path.read_bytes())
    header_end = data.index(b"\n") + 1
    for kind, at, arg in damage:
        at = header_end + at % max(1, len(data) - header_end)
        if kind == "flip":
            data[min(at, len(data) - 1)] ^= arg
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = arg
    path.write_bytes(bytes(data))
    try:
        reopened = Journal(path, config)
    except JournalError as err:
        assert str(path) in str(err)
        assert path.read_bytes() == bytes(data)
        return
    got = reopened.recovered.records
    reopened.close()
    assert got == written[: len(got)], "only records that were written, in order, from the start"
    if reopened.recovered.truncated_bytes:
        kept = path.with_name(reopened.recovered.kept.rsplit("/", 1)[-1])
        assert path.read_bytes() + kept.read_bytes() == bytes(data)


def test_format_2_records_list_the_values_and_format_1_journals_still_replay(tmp_path, config):
    """Issue 15: a record is [time, type, values in field order], encoded without a deep copy or a dict
    per record; every event type round-trips through it. A journal written in format 1 (an object per
    record, as dataclasses.asdict gave) still reads and replays to the same events."""
    import dataclasses as dc
    import zlib

    from engine.core.events import BusinessReject, CancelReject, Command, ExecReport, Takeover, TimerFired
    from engine.shell.journal import FRAME, MAGIC, decode, encode, fingerprint

    events = [
        Quote("CU", 70000.0, 5.0, None, 0.0),
        SessionUp("SHFE"),
        TimerFired("timeout:E1-000001"),
        ExecReport(
            "COMEX",
            "E1-000001B1",
            "",
            "O1",
            "X1",
            "F",
            "2",
            "HG",
            "1",
            2.0,
            2.0,
            0.0,
            2.0,
            4.5,
            4.5,
            None,
            "",
            True,
            "MS-1",
            True,
        ),
        CancelReject("SHFE", "C1", "E1-000001A1", "4", 0, "too late"),
        Command("kill"),
        Takeover(2),
        BusinessReject("SHFE", "D", "E1-000001A1", 3, "x", True),
    ]
    for e in events:
        payload = encode(e, 1.5)
        assert payload.startswith(b"[1.5,") and b'"venue":' not in payload  # values only, no field names
        assert json.loads(payload) == [1.5, type(e).__name__, *dc.astuple(e)]
        assert decode(payload) == (1.5, e)
    old = [json.dumps({"t": 1.5, "e": type(e).__name__, "f": dc.asdict(e)}).encode() for e in events]
    path = tmp_path / "old.journal"
    header = {"magic": MAGIC, "version": 1, "config": fingerprint(config)}
    path.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(FRAME.pack(len(b), zlib.crc32(b)) + b for b in old))
    assert read(path, fingerprint(config)).records == [(1.5, e) for e in events]
    j = Journal(path, config)  # appending to it: the new record in format 2, the file read as one
    j.append(Command("drain"), 2.0)
    j.close()
    assert read(path, fingerprint(config)).records[-1] == (2.0, Command("drain"))


def test_a_standby_asks_the_lease_service_again_after_it_failed_and_records_why(tmp_path, monkeypatch, capsys):
    """The lease service fails as the standby tries to take over (etcd "Not Found" under load, a
    ZooKeeper connection loss): the standby records the error, says it, asks again at its next beat,
    and takes over when the service answers. It never ends the takeover."""
    from engine.shell import live_config
    from engine.shell import live_node as ln
    from tests.conftest import ROOT

    text = (ROOT / "tests" / "live_broker.toml").read_text().replace("OUT_DIR", str(tmp_path / "out"))
    (tmp_path / "live.toml").write_text(text.replace("PORT", "1"))
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "x")
    cfg = live_config.load(tmp_path / "live.toml")

    class FlakyLease:
        revision = 0

        def __init__(self):
            self.calls = 0

        def acquire(self, node, now):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("Not Found")
            return 7

    class SilentPrimary(ln.StandbyNode):  # the primary was heard a second ago and is silent since
        def primary_dead(self):
            self.last_beat = self.last_beat or time.monotonic() - 1.0
            return True

        def take_over(self, epoch, now):
            self.server.close()
            return {}

    monkeypatch.setattr(ln, "StandbyNode", SilentPrimary)
    lease = FlakyLease()
    opts = ln.NodeOptions("standby", "b", 0.01, 1, 5.0, False, lease, ("127.0.0.1", 0), "test")
    node = ln.LiveNode(cfg, opts, threading.Event())
    assert node._follow() == 7 and lease.calls == 2
    (error,) = node.report["lease_errors"]
    assert "Not Found" in error["error"]
    assert "the lease service failed" in capsys.readouterr().err


_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),  # quotes, backslashes, control characters, non-ASCII: escaped as json.dumps escapes them
)


@given(st.floats(allow_nan=False, allow_infinity=False), st.lists(_VALUE, max_size=25))
@settings(max_examples=300)
def test_a_record_is_encoded_to_the_bytes_jsons_own_encoder_gives(now, values):
    """encode() drives json's C encoder made once; a record must come out exactly as
    json.JSONEncoder(separators=(",", ":")) writes it (the format-2 bytes earlier journals hold)."""
    from engine.shell import journal

    record = [now, "Quote", *values]
    expected = json.JSONEncoder(separators=(",", ":")).encode(record).encode()
    assert journal._C_ENCODER is not None  # CPython's json has its C accelerator
    assert "".join(journal._C_ENCODER(record, 0)).encode() == expected


def test_encode_writes_the_same_bytes_as_jsons_encoder_for_an_event():
    from engine.core.events import ExecReport
    from engine.shell.journal import encode

    event = ExecReport(
        "COMEX", "E1-000042B1", "", "CMO77", 'id "q"\\é', "F", "2", "HG", "1", 2, 2, 0, 2, 4.5005, 4.5005
    )
    values = [getattr(event, f) for f in event.__slots__]
    expected = json.dumps([7.25, "ExecReport", *values], separators=(",", ":")).encode()
    assert encode(event, 7.25) == expected
    with pytest.raises(TypeError, match="a journal record holds"):
        encode(Quote("HG", object(), 1.0, 2.0, 1.0), 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "made"),
    [("f30_engine_crash_torn_journal", 1), ("f31_failover_both_nodes_crash_in_turn", 2)],
)
@pytest.mark.parametrize("ending", ["report", "error in the run", "error while building"])
def test_a_simulated_run_removes_the_journals_it_made_for_itself(tmp_path, monkeypatch, name, made, ending):
    """A restart or a standby needs a journal on disk; the run makes its own in a temporary directory
    and removes it however the run ends (certifying the library x 5 seeds left gigabytes in /tmp)."""
    import tempfile

    from engine.config import ConfigError
    from simulator import scenario
    from simulator.prices import PriceModelError
    from simulator.scratch import Scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    paths = []
    original = Scratch.journal

    def journal(self, *args):
        made_now = original(self, *args)
        paths.append(made_now.path)
        return made_now

    monkeypatch.setattr(Scratch, "journal", journal)
    sc = scenario.load(ROOT / "scenarios" / f"{name}.toml")
    if ending == "report":
        assert runner.run(sc, 7).report["verdict"] == "pass"
    elif ending == "error in the run":
        monkeypatch.setattr(runner, "build_report", lambda *a: (_ for _ in ()).throw(RuntimeError("planted")))
        with pytest.raises(RuntimeError, match="planted"):
            runner.run(sc, 7)
    else:

        def no_prices(*a):
            raise PriceModelError("planted: no price")

        monkeypatch.setattr(runner, "PriceProcess", no_prices)
        with pytest.raises(ConfigError, match="planted"):
            runner.run(sc, 7)
    # a restart's journal is made before the prices, a standby's after them
    assert len(paths) >= (made if ending != "error while building" else 1)
    assert all(p.parent.parent == tmp_path for p in paths)
    assert not list(tmp_path.iterdir()), list(tmp_path.rglob("*"))


def test_every_event_the_core_takes_is_journaled_and_read_back():
    """A restart replays the journal into a new core: an event type missing from the journal's table
    (SessionGap was added after format 2) could not be written, and its effect would be lost."""
    import typing

    from engine.core import events as ev
    from engine.shell.journal import EVENT_TYPES, decode, encode

    assert set(EVENT_TYPES.values()) == set(typing.get_args(ev.Event))
    for event in (ev.SessionGap("SHFE"), ev.SessionDown("COMEX"), ev.Quote("HG", 4.5, 1.0, None, 0.0)):
        assert decode(encode(event, 3.5)) == (3.5, event)


def test_a_new_journal_says_its_format_and_an_existing_file_is_never_taken_for_an_empty_one(tmp_path, config):
    """The header names the format it was written in; an empty file is a new journal, but a file with
    anything in it (one stray byte, say) is read and refused, never overwritten; a clean journal reports
    nothing cut and no reason; opening checks each record against the engine config (a venue the
    config lacks is refused at open, not at replay)."""
    import dataclasses as dc
    import zlib

    from engine.shell.journal import FRAME, VERSION, fingerprint

    fresh = Journal(tmp_path / "new", config)
    fresh.close()
    header = json.loads((tmp_path / "new").read_bytes().split(b"\n", 1)[0])
    assert header["version"] == VERSION and fresh.recovered.truncated_bytes == 0 and fresh.recovered.reason == ""
    (tmp_path / "empty").write_bytes(b"")
    Journal(tmp_path / "empty", config).close()
    assert json.loads((tmp_path / "empty").read_bytes().split(b"\n", 1)[0])["magic"] == "xmc-journal"
    (tmp_path / "stray").write_bytes(b"x")
    with pytest.raises(JournalError, match="no journal header; it is not an xmc journal"):
        Journal(tmp_path / "stray", config)
    assert (tmp_path / "stray").read_bytes() == b"x"
    (tmp_path / "blank").write_bytes(b"\n")
    with pytest.raises(JournalError, match="unreadable journal header"):
        read(tmp_path / "blank", "x")
    j = _journal_with(tmp_path, config, 3)
    j.close()
    clean = Journal(tmp_path / "j", config)
    clean.close()
    assert len(clean.recovered.records) == 3 and clean.recovered.reason == "" and clean.recovered.truncated_bytes == 0
    body = b'[1.0,"SessionUp","NYSE"]'
    with open(tmp_path / "j", "ab") as fh:
        fh.write(FRAME.pack(len(body), zlib.crc32(body)) + body)
    with pytest.raises(JournalError, match="names venue 'NYSE'"):
        Journal(tmp_path / "j", config)
    other = dc.replace(config, node="N2")
    assert fingerprint(other) != fingerprint(config) and len(fingerprint(config)) == 32
    with pytest.raises(JournalError, match="durability 'often': use one of none, batch, record"):
        Journal(tmp_path / "d", config, durability="often")


@pytest.mark.parametrize(
    ("payload", "says"),
    [(b"5", "a record is [time, event type, values...]"), (b"[5]", "a record is [time, event type, values...]")],
)
def test_a_record_that_is_no_list_of_time_and_type_is_refused_as_such(payload, says):
    from engine.shell.journal import decode

    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        decode(payload)


def test_damage_is_named_checksum_or_decoding_and_a_record_holds_only_json_scalars(tmp_path, config):
    import zlib

    from engine.core.events import SessionUp as Up
    from engine.shell.journal import FRAME, encode

    j = _journal_with(tmp_path, config, 2)
    j.close()
    good = (tmp_path / "j").read_bytes()
    body = b'[1.0,"SessionUp","SHFE"]'
    (tmp_path / "j").write_bytes(good + FRAME.pack(len(body), zlib.crc32(body) ^ 1) + body)
    with pytest.raises(JournalError, match="record 3: record checksum mismatch"):
        read(tmp_path / "j", j.fingerprint, config)
    body = b'[1.0,"Nothing","SHFE"]'
    (tmp_path / "j").write_bytes(good + FRAME.pack(len(body), zlib.crc32(body)) + body)
    with pytest.raises(JournalError, match=r"record 3: record does not decode \(KeyError: 'Nothing'\)"):
        read(tmp_path / "j", j.fingerprint, config)
    with pytest.raises(TypeError, match="holds str, int, float, bool or None, not frozenset"):
        encode(Up(frozenset({"SHFE"})), 1.0)  # type: ignore[arg-type]


def test_a_damaged_format_1_record_followed_by_good_ones_is_refused_not_cut(tmp_path, config):
    """A journal written in format 1 ({"t": ..., ...} per record) damaged in the middle (a length made
    huge) has whole records after the damage: it is refused, as a format 2 journal is, never cut as
    if the damage were a torn tail (which would drop the good records after it)."""
    import zlib

    from engine.shell.journal import FRAME, MAGIC, fingerprint

    records = [b'{"t":%d.0,"e":"SessionUp","f":{"venue":"SHFE"}}' % i for i in range(4)]
    head = json.dumps({"magic": MAGIC, "version": 1, "config": fingerprint(config)}).encode() + b"\n"
    data = bytearray(head + b"".join(FRAME.pack(len(r), zlib.crc32(r)) + r for r in records))
    second = len(head) + FRAME.size + len(records[0])
    data[second] ^= 0x40  # the high byte of the second record's length
    (tmp_path / "j").write_bytes(bytes(data))
    with pytest.raises(JournalError, match="record 2: torn record body, yet a valid record starts at byte"):
        Journal(tmp_path / "j", config)
    assert (tmp_path / "j").read_bytes() == bytes(data)


def test_the_history_streamed_reads_every_record_whatever_bytes_its_frame_holds(tmp_path, config):
    """A record's frame (length, CRC) is binary and may hold a newline byte: the stream's reader starts
    after the header's newline, the first one, never a later one."""
    from engine.shell.journal import FRAME, bodies

    j = Journal(tmp_path / "j", config)
    n = 0
    while b"\n" not in (tmp_path / "j").read_bytes().split(b"\n", 1)[1]:
        j.append(Quote("CU", 70000.0 + n, 5.0, 70010.0 + n, 5.0), 0.1 * n)
        n += 1
    j.close()
    assert len(bodies(tmp_path / "j")[0]) == n == len(read(tmp_path / "j", j.fingerprint).records)
    assert FRAME.size == 8


def test_a_torn_write_leaves_at_least_one_byte(tmp_path, config):
    j = Journal(tmp_path / "j", config)
    assert j.torn_append(SessionUp("SHFE"), 1.0, keep=0.0) == 1
    j.close()


def test_a_standby_sets_its_old_journal_aside_and_never_over_one_set_aside_before(tmp_path, monkeypatch, capsys):
    """A standby starts from the primary's stream: a journal of its own past is renamed aside, not
    replayed. Named by the second it happened, a second restart within that second renamed over the
    first one kept (lost data); each is now kept under its own name, and the standby starts empty."""
    from engine.core.events import SessionUp
    from engine.shell import live_config
    from engine.shell import live_node as ln
    from tests.conftest import ROOT

    text = (ROOT / "tests" / "live_broker.toml").read_text().replace("OUT_DIR", str(tmp_path / "out"))
    (tmp_path / "live.toml").write_text(text.replace("PORT", "1"))
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "x")
    cfg = live_config.load(tmp_path / "live.toml")
    monkeypatch.setattr(ln.time, "time", lambda: 1_800_000_000.0)  # every restart in the same second
    path = cfg.out_dir / "engine-standby.journal"
    cfg.out_dir.mkdir(parents=True)
    kept = []
    for at in (1.0, 2.0, 3.0):
        j = Journal(path, cfg.engine)
        j.append(SessionUp("BROKER"), at)
        j.close()
        node = ln.LiveNode(cfg, ln.NodeOptions(role="standby", node="standby"), threading.Event())
        assert node._open_journal().records == []  # the standby starts from nothing of its own
        node.log.close()
        kept.append(sorted(p.name for p in cfg.out_dir.iterdir() if p.name != path.name))
    assert kept[-1] == [
        "engine-standby.journal.1800000000",
        "engine-standby.journal.1800000000-1",
        "engine-standby.journal.1800000000-2",
    ]
    for name, at in zip(kept[-1], (1.0, 2.0, 3.0)):  # each journal kept whole, as it was
        assert read(cfg.out_dir / name, node.log.fingerprint).records == [(at, SessionUp("BROKER"))]
