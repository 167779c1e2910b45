"""The live pair's replication stream (engine/shell/node.py) over real loopback sockets: what a standby
attaching again receives, whom it refuses, when it calls the primary dead, and what it hands over.
Planted defects in each of these survived the failover tests, which exercise only the happy path."""

from __future__ import annotations

import json
import threading
import time

import pytest

from engine.core.engine_core import EngineCore
from engine.core.events import CancelTimer, Quote, SendCancel, SendOrder, SetTimer, TimerFired
from engine.shell.journal import Journal, fingerprint, read
from engine.shell.live import wait_for
from engine.shell.node import NodeError, PrimaryStream, StandbyNode
from tests.conftest import fire, report

LOOPBACK = "127.0.0.1"


class Pair:
    """A standby listening on a port the OS picked (it keeps the socket) and a primary streaming to it,
    each with its own journal; `record` journals and streams an event as the live primary does."""

    def __init__(self, tmp_path, cfg, flush_each: bool = True) -> None:
        self.cfg = cfg
        self.standby_journal = Journal(tmp_path / "standby.journal", cfg)
        before = set(threading.enumerate())
        self.standby = StandbyNode("b", EngineCore(cfg), (LOOPBACK, 0), 0.1, 3, self.standby_journal)
        (self.follower,) = set(threading.enumerate()) - before
        self.journal = Journal(tmp_path / "primary.journal", cfg, flush_each=flush_each)
        self.stream = PrimaryStream("a", (LOOPBACK, self.standby.address[1]), fingerprint(cfg), self.journal)
        # the thread the standby follows this stream on (each connection has its own)
        (self.connection,) = [t for t in set(threading.enumerate()) - before if t is not self.follower]
        self.count = 0

    def quote(self, i: int) -> None:
        self.stream.record(Quote("CU", 70000.0 + i, 5, 70010.0 + i, 5), float(i))
        self.count += 1

    def close(self) -> None:
        if self.stream.sock is not None:
            self.stream.sock.close()
        if not self.standby.active:
            self.standby.take_over(99, 99.0)
        self.journal.close()
        self.standby_journal.close()


@pytest.fixture()
def pair(tmp_path, config):
    made: list[Pair] = []

    def make(flush_each: bool = True) -> Pair:
        made.append(Pair(tmp_path, config, flush_each))
        return made[-1]

    yield make
    for p in made:
        p.close()


# what each kind of entry in a standby's log (report.json's node.stream) carries besides "event" and "at"
ENTRY_KEYS = {
    "stream_connected": {"from"},
    "stream_replaced": {"from"},
    "refused": {"from", "why"},
    "stopped_following": {"from", "why"},
    "stream_lost": {"why"},
    "listener_error": {"why"},
    "accept_failed": {"why"},
    "takeover": {"epoch"},
    "earlier_entries_dropped": {"entries"},
}


def _well_formed(log: list[dict]) -> None:
    """Every entry of a standby's log names its event, when it happened, and what its kind carries
    (a repeated one also how often and when last)."""
    for entry in log:
        kind = entry["event"]
        keys = set(entry) - {"event", "times", "last_at"}
        if kind == "earlier_entries_dropped":
            assert keys == {"entries"}, entry
            continue
        assert keys == ENTRY_KEYS[kind] | {"at"}, entry
        assert isinstance(entry["at"], float), entry
        if "times" in entry:
            assert entry["times"] >= 2 and entry["last_at"] >= entry["at"], entry


def _break(p: Pair) -> None:
    """The stream breaks under the primary: the standby sees it closed, the primary's next frame fails."""
    assert p.stream.sock is not None
    p.stream.sock.close()
    assert wait_for(lambda: any(e["event"] == "stream_lost" for e in p.standby.log), 5)
    p.stream.heartbeat(0.0)
    assert not p.stream.alive and p.stream.log[-1]["event"] == "lost"


@pytest.mark.parametrize("flush_each", [True, False], ids=["flushed", "buffered"])
def test_a_standby_attached_again_gets_each_event_it_lacks_once(pair, flush_each):
    """The stream breaks after 10 events; 5 more are journaled meanwhile, and the standby attaches again:
    it receives events 11-15 and then the live ones, none twice, none missed, also when the primary's
    journal still buffers what the standby had already applied (the journal on disk is then shorter
    than what the standby says it holds, and what was buffered is read only after a flush)."""
    p = pair(flush_each)
    for i in range(10):
        p.quote(i)
    assert wait_for(lambda: p.standby.applied == 10, 5)
    _break(p)
    for i in range(10, 15):
        p.quote(i)  # the primary trades on alone
    assert p.stream.reattach() and p.stream.alive
    assert p.stream.log[-1]["event"] == "attached" and p.stream.log[-1]["history_sent"] == 5
    p.quote(15)
    assert wait_for(lambda: p.standby.applied >= 16, 5)
    p.journal.fh.flush()
    primary = [t for t, _ in read(p.journal.path, fingerprint(p.cfg)).records]
    p.standby.take_over(2, 17.0)
    p.standby_journal.fh.flush()
    standby = [t for t, _ in read(p.standby_journal.path, fingerprint(p.cfg)).records]
    assert p.standby.applied == 16 and standby == primary == [float(i) for i in range(16)]


def test_asking_an_attached_stream_to_attach_again_keeps_it(pair):
    """The keep-alive loop calls reattach() every beat: while a standby follows, that is a no-op, not a
    second connection the busy standby would leave unanswered (and the primary wait on)."""
    p = pair()
    assert wait_for(lambda: p.standby.log, 5)  # the standby notes the connection once it answered the hello
    assert p.stream.reattach() and p.stream.reattach()
    assert [e["event"] for e in p.stream.log] == ["attached"]
    assert [e["event"] for e in p.standby.log] == ["stream_connected"]
    p.quote(0)
    assert wait_for(lambda: p.standby.applied == 1, 5)


def test_a_standby_refuses_a_primary_running_another_config(tmp_path, config):
    """A primary whose engine config differs (another fingerprint) would replicate events the standby's
    core reads differently: refused with the reason, which the primary reports as fatal."""
    journal = Journal(tmp_path / "standby.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3, journal)
    primary = Journal(tmp_path / "primary.journal", config)
    try:
        with pytest.raises(NodeError, match="another engine config"):
            PrimaryStream("a", (LOOPBACK, standby.address[1]), "not-this-config", primary, timeout=2.0)
        assert standby.applied == 0 and standby.primary == ""
    finally:
        standby.take_over(1, 0.0)
        primary.close()
        journal.close()


def test_the_primary_is_dead_only_after_its_misses_heartbeats(pair):
    """misses = 3 beats of 100 ms: silent for 250 ms is alive, for 350 ms dead; never heard: not dead."""
    p = pair()
    p.standby.last_beat = None
    assert not p.standby.primary_dead()
    now = time.monotonic()
    p.standby.last_beat = now - 0.25
    assert not p.standby.primary_dead()
    p.standby.last_beat = now - 0.35
    assert p.standby.primary_dead()


def test_the_standby_hands_over_exactly_the_timers_the_primary_has_armed(pair):
    """The primary opens an episode (acknowledgement watches, order timeouts armed), the venues answer
    (watches cancelled): the standby's takeover arms what is armed on the primary then, nothing
    cancelled and nothing missing."""
    p = pair()
    recorder = EngineCore(p.cfg)
    armed: dict[str, float] = {}
    original = recorder.handle

    def handle(event, now):
        p.stream.record(event, now)
        p.count += 1
        actions = original(event, now)
        for a in actions:
            if type(a) is SetTimer:
                armed[a.key] = a.at
            elif type(a) is CancelTimer:
                armed.pop(a.key, None)
        return actions

    recorder.handle = handle
    sent = [a for a in fire(recorder, now=1.0) if isinstance(a, SendOrder)]
    watches = {k for k in armed if k.startswith("ack:")}
    assert len(sent) == 2 and len(watches) == 2
    for o in sent:
        recorder.handle(report(o, f"{o.cl_ord_id}-0", "0", "0", 0), 1.1)  # acknowledged: watch cancelled
    timeout = next(k for k in armed if k.startswith("timeout:"))
    del armed[timeout]  # the primary's shell drops a timer as it fires it (the order timeout: cancels sent)
    assert any(isinstance(a, SendCancel) for a in recorder.handle(TimerFired(timeout), 9.0))
    assert wait_for(lambda: p.standby.applied == p.count, 5)
    handed = p.standby.take_over(2, 10.0)
    # not re-armed: fired again at the takeover, it would cancel whatever the episode had working then
    assert handed == armed and handed and not watches & handed.keys() and timeout not in handed


def test_nothing_the_stream_carries_after_the_takeover_is_applied(pair):
    """Once the standby took over, its core is the engine's: an event the old primary still streams
    (it does not know yet) is neither applied nor journaled, and the follower stops."""
    p = pair()
    p.quote(0)
    assert wait_for(lambda: p.standby.applied == 1, 5)
    p.standby.take_over(2, 1.0)
    p.quote(1)
    assert p.standby.log[-1] == {"event": "takeover", "epoch": 2, "at": 1.0}
    _well_formed(p.standby.log)
    for thread in (p.follower, p.connection):  # the listener and the stream's own thread
        thread.join(timeout=5)
        assert not thread.is_alive()
    p.standby_journal.fh.flush()
    assert p.standby.applied == 1 and len(read(p.standby_journal.path, fingerprint(p.cfg)).records) == 1


def test_a_frame_read_in_pieces_is_whole_and_the_next_frame_is_untouched():
    """TCP hands a frame over in any pieces: each is read to its length, no further (the next frame's
    bytes stay for the next read), and a stream closed mid-frame says so."""
    from engine.shell.node import _HEADER, _read_frame

    class Pieces:
        """A socket whose bytes arrive in the pieces given (recv returns at most one piece, at most n bytes)."""

        def __init__(self, *pieces: bytes) -> None:
            self.pieces = list(pieces)

        def recv(self, n: int) -> bytes:
            if not self.pieces:
                return b""  # closed
            piece = self.pieces.pop(0)
            if len(piece) > n:
                self.pieces.insert(0, piece[n:])
            return piece[:n]

    first = _HEADER.pack(6, ord("E")) + b"abcdef"
    second = _HEADER.pack(8, ord("B")) + b"12345678"
    sock = Pieces(first[:3], first[3:7], first[7:] + second[:2], second[2:])
    assert _read_frame(sock) == (b"E", b"abcdef") and _read_frame(sock) == (b"B", b"12345678")  # type: ignore[arg-type]
    with pytest.raises(ConnectionError, match="replication stream closed"):
        _read_frame(Pieces(_HEADER.pack(6, ord("E")) + b"abc"))  # type: ignore[arg-type]


def test_reattaching_with_no_standby_there_fails_and_says_why_once(tmp_path, config):
    """The keep-alive loop asks to reattach every beat while the standby is away: each attempt is False
    (the primary trades on alone), and the report notes each new reason once, not every beat."""
    import socket

    standby_journal = Journal(tmp_path / "standby.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3, standby_journal)
    journal = Journal(tmp_path / "primary.journal", config)
    stream = PrimaryStream("a", (LOOPBACK, standby.address[1]), fingerprint(config), journal)
    try:
        assert stream.alive
        held = socket.socket()  # a port nobody listens on, kept by the test (never released for reuse)
        held.bind((LOOPBACK, 0))
        stream.sock.close()
        stream.alive, stream.peer = False, held.getsockname()
        assert stream.reattach() is False and stream.reattach() is False
        failed = [e for e in stream.log if e["event"] == "reattach_failed"]
        assert len(failed) == 1 and "ConnectionRefusedError" in failed[0]["why"]
        held.close()
    finally:
        standby.take_over(9, 0.0)
        journal.close()
        standby_journal.close()


def test_no_standby_answering_is_fatal_only_after_the_timeout_and_names_the_address(tmp_path, config, monkeypatch):
    """A primary started before its standby keeps trying for its timeout (on a clock the test turns:
    0.1 s a reading, no waiting), then stops naming the address it tried."""
    import types

    from engine.shell import node

    clock = iter(i * 0.1 for i in range(10_000))
    attempts: list[float] = []

    def refused(self, connect_timeout):
        attempts.append(connect_timeout)
        raise ConnectionRefusedError("refused")

    turned = types.SimpleNamespace(monotonic=lambda: next(clock), time=time.time, sleep=time.sleep)
    monkeypatch.setattr(node, "time", turned)  # this module's clock only (time.monotonic stays the OS's)
    monkeypatch.setattr(
        node,
        "threading",
        types.SimpleNamespace(Event=lambda: types.SimpleNamespace(wait=lambda s: None), Lock=threading.Lock),
    )
    monkeypatch.setattr(PrimaryStream, "_attach", refused)
    journal = Journal(tmp_path / "primary.journal", config)
    try:
        with pytest.raises(NodeError, match=f"no standby answers at {LOOPBACK}:9"):
            PrimaryStream("a", (LOOPBACK, 9), fingerprint(config), journal, timeout=1.0)
        assert 8 <= len(attempts) <= 12  # about one attempt per 0.1 s of its 1 s timeout
    finally:
        journal.close()


def test_events_journaled_while_the_history_is_sent_reach_the_standby_once_in_order(pair, monkeypatch):
    """Attaching sends the journal in two passes: the bulk while the engine trades on, then, holding the
    engine, what was journaled meanwhile. Events that land between the passes are sent in the second,
    each once and in order."""
    from engine.shell import node

    p = pair()
    for i in range(4):
        p.quote(i)
    assert wait_for(lambda: p.standby.applied == 4, 5)
    _break(p)
    for i in range(4, 7):
        p.quote(i)
    real = node.journal.bodies
    calls: list[int] = []

    def bodies(path, offset=0):
        out = real(path, offset)
        if not calls:  # after the bulk is read, the engine journals two more (it does not wait for it)
            p.journal.append(Quote("CU", 70007.0, 5, 70017.0, 5), 7.0)
            p.journal.append(Quote("CU", 70008.0, 5, 70018.0, 5), 8.0)
        calls.append(offset)
        return out

    monkeypatch.setattr(node.journal, "bodies", bodies)
    assert p.stream.reattach()
    assert p.stream.log[-1]["history_sent"] == 5 and p.stream.log[-1]["sent_holding_the_engine"] == 2
    assert wait_for(lambda: p.standby.applied == 9, 5)
    p.standby.take_over(2, 10.0)
    p.standby_journal.fh.flush()
    assert [t for t, _ in read(p.standby_journal.path, fingerprint(p.cfg)).records] == [float(i) for i in range(9)]


def test_a_standby_turns_away_whatever_is_no_primary_of_its_config_and_keeps_listening_for_one(tmp_path, config):
    """What connects to a standby before its primary does is turned away, noted with why, and the standby
    listens on: a primary named as the standby itself (pointed at itself: told so, fatal for that
    primary), a connection that closes before saying hello, a first frame that is no hello, a hello
    that is no JSON, no JSON object or names no node, a primary of another config. Then the right
    primary attaches: each side names the other, and what it streams is applied."""
    import socket

    from engine.shell.node import _send_frame

    standby_journal = Journal(tmp_path / "standby.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3, standby_journal)
    journal = Journal(tmp_path / "primary.journal", config)
    address = (LOOPBACK, standby.address[1])
    try:
        with pytest.raises(NodeError, match=rf"--peer {LOOPBACK}:{address[1]} is this node \(b\) itself"):
            PrimaryStream("b", address, fingerprint(config), journal, timeout=2.0)
        socket.create_connection(address, timeout=2.0).close()  # gone before its hello
        assert wait_for(lambda: len(standby.log) == 2, 5)  # each connection has its thread: one at a time here
        not_hellos = [
            (b"E", b"{}", "not a hello"),
            (b"H", b"{not json", "no JSON"),
            (b"H", b'["b"]', "no JSON object"),
            (b"H", b'{"fingerprint": "x"}', "names no node"),
            (b"H", b'{"node": 7}', "names no node: 7"),
        ]
        for n, (kind, payload, _) in enumerate(not_hellos, start=2):
            with socket.create_connection(address, timeout=2.0) as stranger:
                _send_frame(stranger, kind, payload)
                assert wait_for(lambda n=n: sum(e["event"] == "stream_lost" for e in standby.log) == n, 5)
        with pytest.raises(NodeError, match="another engine config"):
            PrimaryStream("a", address, "not-this-config", journal, timeout=2.0)
        assert standby.primary == "" and standby.applied == 0
        assert [(e["event"], e.get("from")) for e in standby.log] == [
            ("refused", "b"),
            *[("stream_lost", None)] * 6,
            ("refused", "a"),
        ]
        assert "points at itself" in standby.log[0]["why"] and "fingerprint differs" in standby.log[-1]["why"]
        assert "ConnectionError" in standby.log[1]["why"]
        for entry, (_, _, why) in zip(standby.log[2:7], not_hellos, strict=True):
            assert why in entry["why"], entry

        stream = PrimaryStream("a", address, fingerprint(config), journal)
        assert stream.alive and stream.standby == "b"
        assert [(e["event"], e["standby"], e["history_sent"]) for e in stream.log] == [("attached", "b", 0)]
        stream.record(Quote("CU", 70000.0, 5, 70010.0, 5), 1.0)
        assert wait_for(lambda: standby.applied == 1, 5)
        assert standby.primary == "a" and standby.log[-1]["event"] == "stream_connected"
        assert standby.log[-1]["from"] == "a"
        assert standby.core.books["CU"].bid == 70000.0
        _well_formed(standby.log)
        stream.sock.close()
    finally:
        standby.take_over(9, 0.0)
        journal.close()
        standby_journal.close()


@pytest.mark.parametrize(
    "answer, says",
    [
        ((b"E", b"{}"), "not a hello"),
        ((b"H", b"HTTP/1.1 400"), "no JSON"),
        ((b"H", b"3"), "no JSON object"),
        ((b"H", b'{"node": "b", "applied": -2}'), "node 'b', applied -2: a standby gives"),
        ((b"H", b'{"node": "b", "applied": "5"}'), "applied '5'"),
        ((b"H", b'{"node": "b", "applied": 2.0}'), "applied 2.0"),
        ((b"H", b'{"node": "b", "applied": true}'), "applied True"),
        ((b"H", b'{"node": "b"}'), "applied None"),
        ((b"H", b'{"applied": 0}'), "node None, applied 0"),
        ((b"H", b'{"node": "", "applied": 0}'), "node '', applied 0"),
        ((b"H", b'{"node": ["b"], "applied": 0}'), r"node \['b'\]"),
        ((b"H", b'{"node": "b", "applied": 6}'), r"has applied 6 events, more than this primary's journal holds \(5\)"),
    ],
    ids=[
        "kind",
        "not-json",
        "not-object",
        "negative",
        "text",
        "float",
        "bool",
        "no-count",
        "no-name",
        "empty-name",
        "list-name",
        "ahead",
    ],
)
def test_a_primary_attaches_only_to_a_standby_that_answers_as_one_with_no_more_than_its_history(
    tmp_path, config, answer, says
):
    """The primary's side of the hello: a peer that answers as no xmc standby does (another frame, no
    JSON object, an applied count that is no count of events) is refused naming the address to check,
    never a traceback nor a history sent from a position it made up (a negative count would send the
    journal's last events only); a standby that has applied more events than this primary ever
    journaled (on disk and still buffered) followed another history, and streaming on would build on
    it: refused too, nothing sent."""
    import socket

    from engine.shell.node import _read_frame, _send_frame

    journal = Journal(tmp_path / "primary.journal", config, flush_each=False)
    for i in range(3):
        journal.append(Quote("CU", 70000.0 + i, 5, 70010.0 + i, 5), float(i))
    journal.fh.flush()
    for i in range(3, 5):  # still buffered: read in the second pass, after the flush
        journal.append(Quote("CU", 70000.0 + i, 5, 70010.0 + i, 5), float(i))
    server = socket.socket()  # the peer, on a port the OS picked, kept by the test
    server.bind((LOOPBACK, 0))
    server.listen(1)
    seen: list[bytes] = []

    def peer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5.0)
            _read_frame(conn)
            _send_frame(conn, *answer)
            try:
                while True:
                    seen.append(_read_frame(conn)[0])
            except (OSError, ConnectionError):
                pass

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        with pytest.raises(NodeError, match=says) as refused:
            PrimaryStream("a", server.getsockname(), fingerprint(config), journal, timeout=2.0)
        thread.join(timeout=5)
        assert not thread.is_alive() and seen == []
        fix = "restart the standby" if "more than" in says else f"{LOOPBACK}:{server.getsockname()[1]}"
        assert fix in str(refused.value)  # what to do: which address to check, or the standby to restart
    finally:
        server.close()
        journal.close()


def test_a_silent_connection_holds_nobody_back_and_is_dropped_after_its_timeouts(tmp_path, config):
    """Each connection says its hello on its own thread: the primary attaches at once while a stranger
    that says nothing stays connected (before, connections were taken one at a time and the primary
    waited out the stranger's hello timeout, 5 s); the stranger is dropped after that timeout. A followed
    stream silent for ten times the silence that calls the primary dead (a half-open connection:
    heartbeats of 20 ms, 3 misses) is dropped then, not before, and the standby listens on."""
    import socket

    from engine.shell.node import _read_frame, _send_frame

    standby_journal = Journal(tmp_path / "standby.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.02, 3, standby_journal)
    standby.hello_timeout, standby.silence_floor = 30.0, 60.0  # the primary's stream is not dropped for silence
    journal = Journal(tmp_path / "primary.journal", config)
    address = (LOOPBACK, standby.address[1])
    try:
        with socket.create_connection(address, timeout=2.0):  # says nothing, for longer than the primary waits
            stream = PrimaryStream("a", address, fingerprint(config), journal, timeout=2.0, hello_timeout=2.0)
            assert stream.alive and wait_for(lambda: [e["event"] for e in standby.log] == ["stream_connected"], 5)
            standby.hello_timeout = 0.3  # the next stranger's
            with socket.create_connection(address, timeout=2.0):
                assert wait_for(lambda: any("timed out" in e.get("why", "") for e in standby.log), 5)
        stream.sock.close()
        # three connections ended: the two strangers' (one timed out) and the primary's stream
        assert wait_for(lambda: sum(e.get("times", 1) for e in standby.log if e["event"] == "stream_lost") == 3, 5)
        assert [e["event"] for e in standby.log if e["event"] != "stream_lost"] == ["stream_connected"]
        standby.log.clear()
        standby.silence_floor = 0.1
        with socket.create_connection(address, timeout=2.0) as half_open:
            said = time.monotonic()  # the standby's silence cannot start before it hears the hello
            _send_frame(half_open, b"H", f'{{"node": "a", "fingerprint": "{fingerprint(config)}"}}'.encode())
            _read_frame(half_open)
            assert wait_for(lambda: len(standby.log) == 2, 5)
            silent = time.monotonic() - said
        assert [e["event"] for e in standby.log] == ["stream_connected", "stream_lost"]
        assert "timed out" in standby.log[-1]["why"] and silent >= 10 * 3 * 0.02
        _well_formed(standby.log)
    finally:
        standby.take_over(9, 0.0)
        journal.close()
        standby_journal.close()


def test_the_same_primary_attaching_again_replaces_its_half_open_stream_at_once(tmp_path, config):
    """A primary whose end of the stream broke attaches again while the standby's end still looks open
    (a half-open connection: nothing ever arrives on it again). The new stream replaces the old one at
    once (before, the primary waited for the standby to give up the old one, ten heartbeat silences at
    least), gets the events the standby lacks, and nothing the old connection still carries is applied."""
    standby_journal = Journal(tmp_path / "standby.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3, standby_journal)
    standby.silence_floor = 60.0  # the old stream is never given up by silence in this test
    journal = Journal(tmp_path / "primary.journal", config)
    address = (LOOPBACK, standby.address[1])
    old, answer = _attached_by_hand(address, config)
    try:
        assert answer == {"node": "b", "applied": 0}
        from engine.shell.node import _send_frame

        _send_frame(old, b"E", _quote_record(1))
        assert wait_for(lambda: standby.applied == 1, 5)
        journal.append(Quote("CU", 70000.0, 5, 70010.0, 5), 1.0)  # the event the old stream delivered
        stream = PrimaryStream("a", address, fingerprint(config), journal, timeout=2.0, hello_timeout=2.0)
        assert stream.alive
        replaced = ["stream_connected", "stream_replaced", "stream_connected"]
        assert wait_for(lambda: [e["event"] for e in standby.log] == replaced, 5), standby.log
        try:
            _send_frame(old, b"E", _quote_record(7))  # the old connection is closed by the standby
        except OSError:
            pass
        stream.record(Quote("CU", 70002.0, 5, 70012.0, 5), 2.0)
        assert wait_for(lambda: standby.applied == 2, 5)
        assert standby.core.books["CU"].bid == 70002.0  # the new stream's event, not the old one's
        assert old.recv(16) == b""  # the standby ended the replaced connection
        assert [e.get("from") for e in standby.log] == ["a", "a", "a"]
        _well_formed(standby.log)
        stream.sock.close()
    finally:
        old.close()
        standby.take_over(9, 0.0)
        journal.close()
        standby_journal.close()


def test_another_primary_is_refused_while_one_is_followed_and_more_connections_than_allowed_are_closed(
    tmp_path, config
):
    """Two primaries cannot both be followed: a hello from another node while a stream is open is refused
    naming the one followed, which streams on. Connections beyond `max_connections` are closed at once
    and noted (a flood cannot take a thread each)."""
    import socket

    from engine.shell.node import _read_hello, _send_frame

    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3)
    standby.max_connections = 2
    address = (LOOPBACK, standby.address[1])
    first, _ = _attached_by_hand(address, config)
    try:
        other = socket.create_connection(address, timeout=5.0)
        _send_frame(other, b"H", json.dumps({"node": "c", "fingerprint": fingerprint(config), "version": 2}).encode())
        assert _read_hello(other)["refused"] == "this standby follows primary 'a', whose stream is open"
        other.close()
        assert wait_for(lambda: standby._connections == 1, 5)
        _send_frame(first, b"E", _quote_record(1))
        assert wait_for(lambda: standby.applied == 1, 5)
        with socket.create_connection(address, timeout=5.0) as stranger:  # the second and last allowed
            with socket.create_connection(address, timeout=5.0) as third:
                assert third.recv(16) == b""  # closed at once
            assert standby.log[-1]["event"] == "refused" and "2 connections are handled" in standby.log[-1]["why"]
            stranger.sendall(b"")
        _send_frame(first, b"E", _quote_record(2))
        assert wait_for(lambda: standby.applied == 2, 5)
        assert standby.primary == "a"
        _well_formed(standby.log)
        assert [e.get("from") for e in standby.log if e["event"] == "refused"] == ["c", ""]
        later = socket.create_connection(address, timeout=5.0)  # the listener took the next one as before
        _send_frame(later, b"H", json.dumps({"node": "c", "fingerprint": fingerprint(config), "version": 2}).encode())
        assert "follows primary 'a'" in _read_hello(later)["refused"]
        later.close()
        first.close()
        assert wait_for(lambda: standby._connections == 0, 5)  # every connection's thread counted out
    finally:
        first.close()
        standby.take_over(9, 0.0)


def test_a_peer_that_never_answers_the_hello_is_no_standby_and_says_where(tmp_path, config):
    """A peer that accepts the connection and never answers the hello (another service on the port, a
    standby hung) fails each attempt after the hello timeout; the primary tries again until its own
    timeout and stops naming the address, never waiting for ever."""
    import socket

    from engine.shell.node import _read_frame

    journal = Journal(tmp_path / "primary.journal", config)
    server = socket.socket()  # the peer, on a port the OS picked, kept by the test
    server.bind((LOOPBACK, 0))
    server.listen(8)
    held: list[socket.socket] = []

    def peer() -> None:
        try:
            while True:
                conn, _ = server.accept()
                held.append(conn)
                _read_frame(conn)  # hears the hello, says nothing
        except OSError:
            pass

    threading.Thread(target=peer, daemon=True).start()
    address = f"{LOOPBACK}:{server.getsockname()[1]}"
    try:
        with pytest.raises(NodeError, match=f"no standby answers at {address} .*timed out"):
            PrimaryStream("a", server.getsockname(), fingerprint(config), journal, timeout=0.3, hello_timeout=0.05)
        assert held  # it was heard, and not answered
    finally:
        server.close()
        for conn in held:
            conn.close()
        journal.close()


def test_whatever_a_stranger_sends_first_the_standby_notes_it_once_and_listens_on(tmp_path, config):
    """The property behind the cases above: any first frame (any kind, any bytes, any JSON) from a
    connection that then closes is refused or noted as a lost stream, once, and the standby still takes
    the right primary afterwards; the primary's side, given any answer, attaches only to a named
    standby with a count of events, and otherwise refuses with NodeError (never another exception)."""
    import socket

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from engine.shell.node import _read_frame, _send_frame

    json_value = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=6,
    )
    hello = st.fixed_dictionaries(
        {}, optional={"node": json_value | st.sampled_from(["a", "b"]), "fingerprint": json_value}
    ).map(lambda d: json.dumps(d).encode())
    first_frame = st.tuples(st.sampled_from([b"H", b"E", b"B", b"x"]), st.binary(max_size=40) | hello)

    standby_journal = Journal(tmp_path / "standby.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3, standby_journal)
    address = (LOOPBACK, standby.address[1])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(first_frame)
    def a_stranger(frame: tuple[bytes, bytes]) -> None:
        def noted() -> int:  # a reason repeated is counted on its entry (`times`), not listed again
            return sum(e.get("times", 1) for e in standby.log)

        before = noted()
        with socket.create_connection(address, timeout=2.0) as stranger:
            _send_frame(stranger, *frame)
            stranger.shutdown(socket.SHUT_WR)  # says no more: a lost stream unless it was refused
            assert wait_for(lambda: noted() > before, 5)
        assert noted() == before + 1 and standby.log[-1]["event"] in ("refused", "stream_lost")
        assert standby.applied == 0 and standby.primary == ""

    server = socket.socket()  # a peer answering the primary's hello, on a port the OS picked, kept
    server.bind((LOOPBACK, 0))
    server.listen(1)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.tuples(st.sampled_from([b"H", b"E"]), st.binary(max_size=40) | hello)
        | st.tuples(
            st.just(b"H"),
            st.fixed_dictionaries({"node": json_value | st.just("b"), "applied": json_value | st.integers(-3, 3)}).map(
                lambda d: json.dumps(d).encode()
            ),
        )
    )
    def an_answer(answer: tuple[bytes, bytes]) -> None:
        def peer() -> None:
            conn, _ = server.accept()
            with conn:
                _read_frame(conn)
                _send_frame(conn, *answer)

        thread = threading.Thread(target=peer, daemon=True)
        thread.start()
        try:
            stream = PrimaryStream("a", server.getsockname(), fingerprint(config), journal, timeout=0.0)
        except NodeError:  # refused, or no standby within the timeout: the primary's only failure
            pass
        else:
            assert isinstance(stream.standby, str) and stream.standby and stream.alive
            stream.sock.close()
        thread.join(timeout=5)

    journal = Journal(tmp_path / "primary.journal", config)
    try:
        a_stranger()
        right = PrimaryStream("a", address, fingerprint(config), journal)
        assert right.alive and wait_for(lambda: standby.primary == "a", 5)
        right.sock.close()
        an_answer()
    finally:
        server.close()
        standby.take_over(9, 0.0)
        journal.close()
        standby_journal.close()


def _attached_by_hand(address, config, version: object = 2):
    """A connection that says a primary's hello (of `config`, records of format `version`) and reads the
    standby's answer: a test's own primary, which can then stream whatever frames it likes."""
    import socket

    from engine.shell.node import _read_hello, _send_frame

    sock = socket.create_connection(address, timeout=5.0)
    _send_frame(sock, b"H", json.dumps({"node": "a", "fingerprint": fingerprint(config), "version": version}).encode())
    return sock, _read_hello(sock)


def _quote_record(i: int) -> bytes:
    from engine.shell.journal import encode

    return encode(Quote("CU", 70000.0 + i, 5, 70010.0 + i, 5), float(i))


UNAPPLIABLE = [
    ((b"x", b"{}"), "a frame of kind b'x' (2 bytes), which no primary streams"),
    ((b"H", b'{"node": "a"}'), "a frame of kind b'H'"),
    ((b"B", b"\x00" * 7), "a frame of kind b'B' (7 bytes)"),
    ((b"E", b"not json"), "event 3 of the stream is no event this xmc applies: record does not decode"),
    ((b"E", b'[1.0,"Quake","CU"]'), "does not decode (KeyError"),
    ((b"E", b'[1.0,"Quote","CU",1.0,5,2.0]'), "Quote has 5 fields, the record 4 values"),
    ((b"E", b'[1.0,"SessionUp","NYSE"]'), "venue 'NYSE'"),
    ((b"E", b'[NaN,"SessionUp","SHFE"]'), "its time is nan"),
    ((b"E", b'{"t": 1.0, "e": "Quote", "f": {"instrument": "CU"}}'), "does not decode (TypeError"),
]


@pytest.mark.parametrize(
    "frame, says",
    UNAPPLIABLE,
    ids=["kind", "hello", "beat", "not-json", "type", "values", "venue", "nan-time", "format-1-fields"],
)
def test_a_standby_that_cannot_apply_its_primarys_stream_stops_following_it_and_says_why_once(
    tmp_path, config, frame, says
):
    """A frame no primary sends, or an event record this xmc cannot read or whose content its config
    cannot have (two xmc versions on the pair, a record written by a defect), was an exception that
    killed the standby's listener thread (a KeyError or TypeError from the decoder), or a frame silently
    skipped: the standby then stood still, hot no more, and nobody was told. Now it applies nothing of
    that frame (its core and journal stay at the events before it), stops following, notes why with the
    event's number, and refuses that primary from then on with the reason and what to do, its log saying
    it once however often the primary re-attaches."""
    from engine.shell.node import _send_frame

    standby_journal = Journal(tmp_path / "standby.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3, standby_journal)
    address = (LOOPBACK, standby.address[1])
    try:
        sock, answer = _attached_by_hand(address, config)
        with sock:
            assert answer == {"node": "b", "applied": 0}
            for i in range(2):
                _send_frame(sock, b"E", _quote_record(i))
            _send_frame(sock, b"B", b"\x00" * 8)
            _send_frame(sock, *frame)
            _send_frame(sock, b"E", _quote_record(2))  # after the bad frame: never applied
            assert wait_for(lambda: standby.unfollowable != "", 5)
        assert standby.applied == 2 and standby.core.books["CU"].bid == 70001.0
        assert wait_for(lambda: standby.log[-1]["event"] == "stopped_following", 5)
        assert [e["event"] for e in standby.log] == ["stream_connected", "stopped_following"]
        assert says in standby.log[-1]["why"], standby.log[-1]
        assert says in standby.unfollowable and "restart this standby" in standby.unfollowable
        standby_journal.fh.flush()
        assert len(read(standby_journal.path, fingerprint(config), config).records) == 2

        journal = Journal(tmp_path / "primary.journal", config)
        try:
            for _ in range(3):  # the primary attaching again at each heartbeat: refused each time, said once
                with pytest.raises(NodeError, match="the standby refused the stream: .*applied the first 2 events"):
                    PrimaryStream("a", address, fingerprint(config), journal, timeout=2.0)
        finally:
            journal.close()
        assert [e["event"] for e in standby.log] == ["stream_connected", "stopped_following", "refused"]
        assert standby.log[-1]["times"] == 3 and standby.log[-1]["last_at"] >= standby.log[-1]["at"]
        assert says in standby.log[-1]["why"]
        assert [e.get("from") for e in standby.log] == ["a", "a", "a"]
        _well_formed(standby.log)
    finally:
        standby.take_over(9, 0.0)
        standby_journal.close()


@pytest.mark.parametrize("version", [3, 0, "2", None, 2.0], ids=["newer", "zero", "text", "null", "float"])
def test_a_standby_refuses_a_primary_streaming_records_of_a_format_it_does_not_read(tmp_path, config, version):
    """The primary's hello names the record format it streams; a standby that does not read that format
    (a newer xmc's, or none) refuses it before a single record, naming the format and the fix. A hello
    without the field is of a primary before it was named: format 2, followed."""
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3)
    address = (LOOPBACK, standby.address[1])
    try:
        sock, answer = _attached_by_hand(address, config, version)
        sock.close()
        assert answer["node"] == "b" and "applied" not in answer
        assert f"records of format {version!r}" in answer["refused"] and "same xmc on both" in answer["refused"]
        assert standby.log == [{"event": "refused", "from": "a", "why": answer["refused"], "at": standby.log[0]["at"]}]
        import socket

        from engine.shell.node import _read_hello, _send_frame

        with socket.create_connection(address, timeout=5.0) as older:
            _send_frame(older, b"H", json.dumps({"node": "a", "fingerprint": fingerprint(config)}).encode())
            assert _read_hello(older) == {"node": "b", "applied": 0}
    finally:
        standby.take_over(9, 0.0)


def test_a_frame_longer_than_a_hello_may_be_is_refused_at_its_header_by_either_end(tmp_path, config):
    """A stranger's first frame whose header promises more than a hello holds (a header read from another
    protocol's bytes promises up to 4 GiB) was read for the whole hello timeout, and `recv` was asked for
    all of it at once (CPython allocates what it is asked for); now it is refused at its header, at once,
    on the standby's side and on the primary's, and a long frame that does arrive is read whole."""
    import socket
    import struct

    from engine.shell.node import MAX_HELLO, _read_exact, _read_frame, _send_frame

    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3)
    standby.hello_timeout = 30.0  # the refusal must not wait for it
    address = (LOOPBACK, standby.address[1])
    journal = Journal(tmp_path / "primary.journal", config)
    server = socket.socket()
    server.bind((LOOPBACK, 0))
    server.listen(1)
    try:
        with socket.create_connection(address, timeout=5.0) as stranger:
            stranger.sendall(b"GET / HTTP/1.1\r\n")  # b"GET " as a length: 1.2 GiB
            assert wait_for(lambda: bool(standby.log), 5)
        assert standby.log[0]["event"] == "stream_lost"
        assert f"says it holds {struct.unpack('>I', b'GET ')[0]} bytes, more than {MAX_HELLO}" in standby.log[0]["why"]

        def peer() -> None:
            conn, _ = server.accept()
            with conn:
                _read_frame(conn)
                conn.sendall(struct.pack(">IB", MAX_HELLO + 1, ord("H")))

        thread = threading.Thread(target=peer, daemon=True)
        thread.start()
        with pytest.raises(NodeError, match=f"answered as no xmc standby does .*more than {MAX_HELLO}"):
            PrimaryStream("a", server.getsockname(), fingerprint(config), journal, timeout=0.0)
        thread.join(timeout=5)

        left, right = socket.socketpair()
        with left, right:
            big = bytes(range(256)) * 1024  # 256 KiB: several chunks
            sender = threading.Thread(target=_send_frame, args=(left, b"E", big), daemon=True)
            sender.start()
            right.settimeout(5.0)
            assert _read_frame(right) == (b"E", big)
            sender.join(timeout=5)
            left.sendall(b"ab")
            left.close()
            with pytest.raises(ConnectionError):
                _read_exact(right, 3)
    finally:
        server.close()
        standby.take_over(9, 0.0)
        journal.close()


def test_whatever_a_primary_streams_the_standby_applies_its_events_in_order_or_stops_and_says_so(tmp_path, config):
    """The property behind the cases above: after a right hello, any sequence of frames (good events,
    heartbeats, garbage of any kind) leaves the standby having applied exactly the good events before the
    first frame it cannot apply, in order, and then either following on or stopped with a reason; its
    listener thread never dies (it answers the next hello)."""
    import socket

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from engine.shell.node import _read_hello, _send_frame

    good = st.integers(0, 50).map(lambda i: ("good", b"E", _quote_record(i)))
    beat = st.just(("beat", b"B", b"\x00" * 8))
    bad = st.tuples(st.just("bad"), st.sampled_from([b"E", b"B", b"H", b"\x00"]), st.binary(max_size=30)).filter(
        lambda f: not (f[1] == b"B" and len(f[2]) == 8)
    ) | st.sampled_from([("bad", *frame) for frame, _ in UNAPPLIABLE])

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(good | beat | bad, max_size=8))
    def stream(frames: list[tuple[str, bytes, bytes]]) -> None:
        standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3)
        address = (LOOPBACK, standby.address[1])
        try:
            sock, answer = _attached_by_hand(address, config)
            with sock:
                assert answer == {"node": "b", "applied": 0}
                marks = [m for m, _, _ in frames]
                for n, (_, kind, payload) in enumerate(frames):
                    try:
                        _send_frame(sock, kind, payload)
                    except OSError:  # the standby closed the stream: only after a frame it cannot apply
                        assert "bad" in marks[:n]
                        break
                applies = marks.index("bad") if "bad" in marks else len(marks)
                expected = [p for m, _, p in frames[:applies] if m == "good"]
                stops = "bad" in marks
                assert wait_for(lambda: standby.applied == len(expected) and bool(standby.unfollowable) == stops, 5)
            if expected:
                last = json.loads(expected[-1])
                assert standby.core.books["CU"].bid == last[3]
            with socket.create_connection(address, timeout=5.0) as again:  # the listener is alive
                _send_frame(again, b"H", json.dumps({"node": "a", "fingerprint": fingerprint(config)}).encode())
                answered = _read_hello(again)
            assert ("refused" in answered) == stops and answered["node"] == "b"
        finally:
            standby.take_over(9, 0.0)

    stream()


def test_an_event_the_standbys_journal_cannot_take_is_not_applied_and_comes_again(tmp_path, config, monkeypatch):
    """Write-ahead on the standby too: when its journal cannot take an event (a full disk), its core does
    not apply it nor count it, the stream is let go, and the primary attaching again sends it once more;
    core, count and journal stay in step (applied first, the journal and the core differed)."""
    from engine.shell.node import _send_frame

    standby_journal = Journal(tmp_path / "standby.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3, standby_journal)
    address = (LOOPBACK, standby.address[1])
    real, failed = standby_journal.append, []

    def full_once(event, now):
        if not failed:
            failed.append(now)
            raise OSError(28, "No space left on device")
        return real(event, now)

    monkeypatch.setattr(standby_journal, "append", full_once)
    try:
        sock, answer = _attached_by_hand(address, config)
        with sock:
            _send_frame(sock, b"E", _quote_record(0))
            assert wait_for(lambda: any(e["event"] == "stream_lost" for e in standby.log), 5)
        assert standby.applied == 0 and "CU" not in standby.core.books
        assert "No space left" in standby.log[-1]["why"]
        sock, answer = _attached_by_hand(address, config)
        with sock:
            assert answer == {"node": "b", "applied": 0}
            _send_frame(sock, b"E", _quote_record(0))
            assert wait_for(lambda: standby.applied == 1, 5)
        assert standby.core.books["CU"].bid == 70000.0
        standby_journal.fh.flush()
        assert len(read(standby_journal.path, fingerprint(config), config).records) == 1
    finally:
        standby.take_over(9, 0.0)
        standby_journal.close()


def test_a_stream_attaching_again_and_again_keeps_the_standbys_log_bounded(tmp_path, config, monkeypatch):
    """A primary that attaches again and again (each replacing the stream before) logs twice each time;
    for days at every heartbeat that grew report.json's node.stream without end. Past MAX_LOG entries the
    oldest give way to one entry counting them, and the newest are all there."""
    import engine.shell.node as node

    monkeypatch.setattr(node, "MAX_LOG", 5)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3)
    standby.silence_floor = 60.0
    address = (LOOPBACK, standby.address[1])
    socks = []
    try:
        for _ in range(6):
            socks.append(_attached_by_hand(address, config)[0])
        # 6 connected, 5 replaced: 11 entries, 7 of them given way to the count
        assert wait_for(lambda: standby.log[0].get("entries") == 7, 5), standby.log
        assert len(standby.log) == 5
        assert [e["event"] for e in standby.log[1:]] == ["stream_replaced", "stream_connected"] * 2
        _well_formed(standby.log)
    finally:
        for sock in socks:
            sock.close()
        standby.take_over(9, 0.0)


def test_a_node_log_past_its_bound_counts_what_gave_way():
    from engine.shell.node import MAX_LOG, _keep

    log: list = []
    for i in range(MAX_LOG + 3):
        _keep(log, {"event": "e", "i": i})
    assert len(log) == MAX_LOG
    assert log[0] == {"event": "earlier_entries_dropped", "entries": 4}
    assert [e["i"] for e in log[1:]] == list(range(4, MAX_LOG + 3))


def test_what_a_replaced_stream_still_carries_stops_nothing(tmp_path, config, monkeypatch):
    """A frame the replaced connection still delivers (here its hang-up is held back, so its thread
    reads on) is no frame of the followed stream: even one no primary sends leaves the standby
    following the new stream, where it would have stopped following for good."""
    import socket

    from engine.shell.node import _send_frame

    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3)
    standby.silence_floor = 60.0
    address = (LOOPBACK, standby.address[1])
    old, _ = _attached_by_hand(address, config)
    monkeypatch.setattr(socket.socket, "shutdown", lambda self, how: None)  # the old thread reads on
    new, _ = _attached_by_hand(address, config)
    try:
        assert wait_for(lambda: [e["event"] for e in standby.log][-1:] == ["stream_connected"], 5)
        _send_frame(old, b"x", b"{}")
        assert wait_for(lambda: standby._connections == 1, 5)  # the old thread read it and ended
        assert standby.unfollowable == ""
        _send_frame(new, b"E", _quote_record(1))
        assert wait_for(lambda: standby.applied == 1, 5)
    finally:
        monkeypatch.undo()
        old.close()
        new.close()
        standby.take_over(9, 0.0)


def test_a_heartbeat_is_what_keeps_the_primary_alive_in_the_standbys_eyes(pair):
    """Every frame the standby reads, a heartbeat as much as an event, is a sign of life: the clock
    `primary_dead` judges starts again at it."""
    p = pair()
    assert p.standby.last_beat is None  # never heard from yet: not dead either
    before = time.monotonic()
    p.stream.heartbeat(0.0)
    assert wait_for(lambda: p.standby.last_beat is not None and p.standby.last_beat >= before, 5)
    assert not p.standby.primary_dead()
    heard = p.standby.last_beat
    p.quote(1)
    assert wait_for(lambda: p.standby.applied == 1 and p.standby.last_beat > heard, 5)


def test_a_hello_that_arrives_after_the_takeover_is_not_answered(tmp_path, config):
    """A connection taken before the takeover whose hello arrives after it (a primary attaching again at
    that very moment) is closed unanswered: the node that took over follows nobody."""
    import socket

    from engine.shell.node import _send_frame

    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3)
    late = socket.create_connection((LOOPBACK, standby.address[1]), timeout=5.0)
    try:
        assert wait_for(lambda: standby._connections == 1, 5)  # taken, its thread waiting for the hello
        standby.take_over(9, 0.0)
        assert standby.active
        _send_frame(late, b"H", json.dumps({"node": "a", "fingerprint": fingerprint(config), "version": 2}).encode())
        assert late.recv(16) == b""  # closed, no answer
        assert wait_for(lambda: standby._connections == 0, 5)
        assert standby.primary == "" and standby.applied == 0
    finally:
        late.close()


@pytest.mark.parametrize("meanwhile", ["takeover", "replaced"])
def test_a_frame_read_as_the_stream_stops_being_followed_is_not_applied(tmp_path, config, monkeypatch, meanwhile):
    """The race the lock closes: a frame read just before the takeover (or before the same primary's new
    stream replaced this one) and applied after it would be an event the standby's core takes from a
    stream it no longer follows. Planted: the takeover (the replacement) happens between the read and
    the apply. The event is neither applied nor journaled."""
    import engine.shell.node as node

    standby_journal = Journal(tmp_path / "standby.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3, standby_journal)
    standby.silence_floor = 60.0
    address = (LOOPBACK, standby.address[1])
    real, socks = node.journal.load, []

    def load_then_stop_following(payload, cfg):
        if not socks[1:]:  # the first frame only
            if meanwhile == "takeover":
                socks.append(None)
                standby.take_over(9, 0.0)
            else:
                socks.append(_attached_by_hand(address, config)[0])
        return real(payload, cfg)

    monkeypatch.setattr(node.journal, "load", load_then_stop_following)
    old, _ = _attached_by_hand(address, config)
    socks.append(old)
    try:
        from engine.shell.node import _send_frame

        _send_frame(old, b"E", _quote_record(1))
        assert wait_for(lambda: len(socks) == 2, 5)
        assert wait_for(lambda: old.recv(16) == b"", 5)  # the old stream's thread ended
        assert standby.applied == 0
        standby_journal.fh.flush()
        assert read(standby_journal.path, fingerprint(config)).records == []
    finally:
        for sock in socks:
            if sock is not None:
                sock.close()
        if not standby.active:
            standby.take_over(9, 0.0)
        standby_journal.close()


@pytest.mark.parametrize(
    "where, event, why",
    [("hello", "listener_error", "RuntimeError: planted"), ("accept", "accept_failed", "ConnectionAbortedError")],
)
def test_a_failure_met_once_by_the_listener_is_noted_and_it_listens_on(
    tmp_path, config, monkeypatch, where, event, why
):
    """Planted, once: the hello reader raising RuntimeError (whatever else goes wrong while a connection
    is handled), or the listener's accept failing (a connection reset before it was taken, which loopback
    cannot stage). Each is noted with its type and the standby listens on: the primary attaches next.
    Ending the listener there would leave a standby no primary can ever attach to, silently."""
    import socket

    import engine.shell.node as node

    calls: list[int] = []
    if where == "hello":
        real_hello = node._read_hello

        def once_broken(sock):
            if threading.current_thread().name == "xmc-standby-connection" and not calls:  # not the primary's
                calls.append(1)
                raise RuntimeError("planted")
            return real_hello(sock)

        monkeypatch.setattr(node, "_read_hello", once_broken)
    else:
        real_accept = socket.socket.accept

        def once_failing(self):
            if threading.current_thread().name == "xmc-standby-stream" and not calls:
                calls.append(1)
                raise ConnectionAbortedError("planted")
            return real_accept(self)

        monkeypatch.setattr(socket.socket, "accept", once_failing)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3)
    journal = Journal(tmp_path / "primary.journal", config)
    try:
        if where == "hello":
            with pytest.raises(NodeError):  # the first connection: turned away (closed) by the planted defect
                PrimaryStream("a", (LOOPBACK, standby.address[1]), fingerprint(config), journal, timeout=0.0)
        stream = PrimaryStream("a", (LOOPBACK, standby.address[1]), fingerprint(config), journal, timeout=5.0)
        assert stream.alive and calls == [1] and wait_for(lambda: standby.primary == "a", 5)
        assert standby.log[0]["event"] == event and standby.log[0]["why"] == why
        _well_formed(standby.log)
        stream.sock.close()
    finally:
        standby.take_over(9, 0.0)
        journal.close()


def test_the_same_refusal_of_two_nodes_is_two_entries(tmp_path, config):
    """A repeated entry is counted where it stands only when it is the same event for the same reason
    from the same node: two primaries of another config, one after the other, are two entries, each
    naming its node (merged, the log would name only the first)."""
    journal = Journal(tmp_path / "primary.journal", config)
    standby = StandbyNode("b", EngineCore(config), (LOOPBACK, 0), 0.1, 3)
    try:
        for node in ("x", "x", "y"):
            with pytest.raises(NodeError, match="another engine config"):
                PrimaryStream(node, (LOOPBACK, standby.address[1]), "not-this-config", journal, timeout=2.0)
        assert wait_for(lambda: len(standby.log) == 2, 5)
        assert [(e["from"], e.get("times", 1)) for e in standby.log] == [("x", 2), ("y", 1)]
        _well_formed(standby.log)
    finally:
        standby.take_over(9, 0.0)
        journal.close()


_EXIT_WITH_A_STRANGER_CONNECTED = """
import socket, sys
sys.path.insert(0, sys.argv[1])
from engine.core.engine_core import EngineCore
from engine.shell.live import wait_for
from engine.shell.node import StandbyNode
from simulator import scenario
config = scenario.load(sys.argv[1] + "/scenarios/cu_hg_spread.toml").engine
standby = StandbyNode("b", EngineCore(config), ("127.0.0.1", 0), 0.1, 3)
standby.hello_timeout = 600.0
stranger = socket.create_connection(("127.0.0.1", standby.address[1]), timeout=5.0)
wait_for(lambda: standby._connections == 1, 10)
print(standby._connections, flush=True)
"""


def test_a_connection_waiting_for_its_hello_does_not_hold_the_process_at_exit():
    """The standby's connection threads are daemons: a stranger that never says hello does not keep an
    `xmc live` process from exiting for its hello timeout (600 s here; the subprocess is given 60)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WITH_A_STRANGER_CONNECTED, str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr[-2000:]
