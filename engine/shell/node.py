"""A live engine node of a primary/standby pair: the replication stream between the two processes,
heartbeats, the etcd lease, and the standby's takeover. The core is the same EngineCore as always.

Primary: holds the lease (its revision is the fencing epoch), streams every event its core consumes
to the standby over TCP before the core acts on it (write-ahead), sends a heartbeat every
`heartbeat` seconds and keeps the lease alive; if a keep-alive fails it stops sending at once.
Standby: applies the stream to its own core as it arrives (hot), and when `misses` heartbeats are
missing and the lease can be taken, becomes active: Takeover(epoch) into its core, its replicated
timers armed, FIX sessions logged on with a sequence reset, every venue reconciled (AF and H)
before new risk. Frames: 4-byte length, 1 byte kind (H hello, E event, B heartbeat), payload.
A standby that meets a frame it cannot apply stops following and refuses that primary's stream from
then on, naming the event and why (two xmc versions, a record its core cannot read): it says so once,
where a stream dropped and attached again at each heartbeat would say it for ever. Each connection to
the standby is served on its own thread: a stranger saying nothing holds nobody back, and the same
primary attaching again replaces the stream it had (half-open on the standby's side) at once.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Any

from engine.core.engine_core import EngineCore
from engine.core.events import Event, track_timers
from engine.shell import journal
from engine.shell.journal import Journal

_HEADER = struct.Struct(">IB")
# the most a hello may hold (a node name, a fingerprint, a count): a stranger's first frame is refused at
# its header, never read for the hello timeout
MAX_HELLO = 64 * 1024
# the most a streamed record may hold: an event of a few short fields is well under a KiB; this leaves room
# for any text a venue sends and still refuses a header that is no record's (bytes are read as they
# arrive, a chunk at a time, so a length alone allocates nothing)
MAX_RECORD = 64 * 1024 * 1024
_CHUNK = 64 * 1024
# the record format a primary streams whose hello names none: an xmc from before the hello named it
_FORMAT_UNNAMED = 2
# connections a standby handles at once (each on a thread of its own): its primary, and strays saying
# nothing until their hello timeout
MAX_CONNECTIONS = 16


# the most entries either end's log keeps (report.json's node.stream): a stream that drops and attaches
# again at every heartbeat for days logs at every heartbeat; past this the oldest give way to a count
MAX_LOG = 1000


def _keep(log: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    """Append `entry` to a node's log; past MAX_LOG entries the oldest gives way, counted by the first
    entry (`{"event": "earlier_entries_dropped", "entries": n}`)."""
    log.append(entry)
    if len(log) <= MAX_LOG:
        return
    if log[0].get("event") == "earlier_entries_dropped":
        del log[1]
        log[0]["entries"] += 1
    else:  # the two oldest give way to the count
        log[0:2] = [{"event": "earlier_entries_dropped", "entries": 2}]


class NodeError(Exception):
    """A node that must not trade (pointed at itself, another config, the lease held elsewhere)."""


class _Unfollowable(Exception):
    """The primary's stream holds a frame this standby cannot apply: it stops following it."""


def _send_frame(sock: socket.socket, kind: bytes, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload), kind[0]) + payload)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    """n bytes, read as they arrive, a chunk at a time (memory grows with what was sent, not with n)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), _CHUNK))
        if not chunk:
            raise ConnectionError("replication stream closed")
        if len(chunk) == n:
            return chunk  # the whole of it at once, as nearly every frame arrives
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket, limit: int = MAX_RECORD) -> tuple[bytes, bytes]:
    """(kind, payload) of the next frame; ValueError when its header says more than `limit` bytes."""
    size, kind = _HEADER.unpack(_read_exact(sock, _HEADER.size))
    if size > limit:
        raise ValueError(f"a frame of kind {bytes([kind])!r} says it holds {size} bytes, more than {limit}")
    return bytes([kind]), _read_exact(sock, size)


def _read_hello(sock: socket.socket) -> dict[str, Any]:
    """The first frame of either end: a hello (kind H) whose payload is a JSON object of at most
    MAX_HELLO bytes; ValueError naming what arrived instead (a longer frame, another kind of frame, no
    JSON, JSON that is no object)."""
    kind, payload = _read_frame(sock, MAX_HELLO)
    if kind != b"H":
        raise ValueError(f"the first frame is of kind {kind!r}, not a hello (H)")
    try:
        hello = json.loads(payload)
    except ValueError:
        raise ValueError(f"the hello is no JSON: {payload[:60]!r}") from None
    if not isinstance(hello, dict):
        raise ValueError(f"the hello is no JSON object: {payload[:60]!r}")
    return hello


class PrimaryStream:
    """The primary's end: journals every event and streams it to the standby, under one lock, so
    that a standby attaching later gets exactly the journal's history and then the live events.

    At start it connects to the standby and checks who it is (refusals are fatal). If the standby is
    lost, the primary trades on alone; `reattach()` (called from the keep-alive loop) connects again
    when a standby listens there and sends the history it lacks: the standby says how many events it
    has applied and receives the journal from there on, the bulk while the engine trades on and only
    what was journaled meanwhile while the engine waits.
    """

    def __init__(
        self,
        node: str,
        peer: tuple[str, int],
        fingerprint: str,
        writer: Journal,
        timeout: float = 10.0,
        stall: float = 0.2,
        hello_timeout: float = 5.0,
    ):
        self.node = node
        # a standby that accepts and never answers the hello is none: this attempt fails after this long
        self.hello_timeout = hello_timeout
        # a standby that stops reading fills the socket's buffer: the engine thread may wait this long
        # for it once, then the standby is dropped (re-attached later) and the primary trades on
        self.stall = stall
        self.peer = peer
        self.fingerprint = fingerprint
        self.writer = writer  # the primary's engine.shell.journal.Journal
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.alive = False
        self.standby = ""
        self.log: list[dict[str, Any]] = []  # attach / lost, with times and how much history was sent
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._attach(2.0)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise NodeError(
                        f"no standby answers at {peer[0]}:{peer[1]} ({exc}); start the standby first or check --peer"
                    ) from None
                threading.Event().wait(0.1)

    def _attach(self, connect_timeout: float) -> None:
        """Connect, hello, then (holding the lock) the history the standby lacks; raises NodeError when
        the standby refuses, the peer answers as no standby does or has applied more than this journal
        holds, OSError / ConnectionError when none answers (or not within `hello_timeout`)."""
        sock = socket.create_connection(self.peer, timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.hello_timeout)
            hello = {"node": self.node, "fingerprint": self.fingerprint, "version": journal.VERSION}
            _send_frame(sock, b"H", json.dumps(hello).encode())
            try:
                answer = _read_hello(sock)
            except ValueError as exc:
                raise NodeError(
                    f"{self.peer[0]}:{self.peer[1]} answered as no xmc standby does ({exc}); check --peer"
                ) from None
            standby, skip = answer.get("node"), answer.get("applied")
            if standby == self.node:
                raise NodeError(
                    f"--peer {self.peer[0]}:{self.peer[1]} is this node ({self.node}) itself: point "
                    f"the primary at the standby's replication address"
                )
            if answer.get("refused"):
                raise NodeError(f"the standby refused the stream: {answer['refused']}")
            if not isinstance(standby, str) or not standby or type(skip) is not int or skip < 0:
                raise NodeError(
                    f"{self.peer[0]}:{self.peer[1]} answered as no xmc standby does (node {standby!r}, applied "
                    f"{skip!r}: a standby gives its name and the count of events it has applied); check --peer"
                )
            # the history in two passes: the bulk while the engine trades on (a busy standby may take
            # its time: the engine does not wait for it), then, holding the lock so that no event is
            # missed or sent twice, what was journaled meanwhile: there the engine waits, `stall` at most
            bulk, offset = journal.bodies(self.writer.path)
            sent = self._history(sock, bulk, skip)
            sock.settimeout(self.stall)
            with self.lock:
                self.writer.fh.flush()
                tail, _ = journal.bodies(self.writer.path, offset)
                if skip > len(bulk) + len(tail):
                    # it applied events this primary never journaled: it followed another history (a
                    # primary restarted on another or a lost journal); streaming on would build on that
                    raise NodeError(
                        f"the standby has applied {skip} events, more than this primary's journal holds "
                        f"({len(bulk) + len(tail)}): it followed another history; restart the standby, "
                        f"which then takes this primary's whole history"
                    )
                sent += self._history(sock, tail, max(skip - len(bulk), 0))
                self.sock, self.alive, self.standby = sock, True, standby
                _keep(
                    self.log,
                    {
                        "event": "attached",
                        "standby": self.standby,
                        "at": time.time(),
                        "history_sent": sent,
                        "sent_holding_the_engine": len(tail),
                    },
                )
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _history(sock: socket.socket, bodies: list[bytes], skip: int) -> int:
        for body in bodies[skip:]:
            _send_frame(sock, b"E", body)
        return max(len(bodies) - skip, 0)

    def reattach(self) -> bool:
        """Attach a standby again if one listens at the peer address now; True when attached."""
        if self.alive:
            return True
        try:
            self._attach(0.2)
            return True
        except (OSError, ConnectionError, NodeError, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}"[:200]
            if not self.log or self.log[-1].get("why") != why:  # each new reason once, for the report
                _keep(self.log, {"event": "reattach_failed", "at": time.time(), "why": why})
            return False

    def _send_locked(self, kind: bytes, payload: bytes) -> None:
        sock = self.sock
        if not self.alive or sock is None:
            return
        try:
            _send_frame(sock, kind, payload)
        except OSError as exc:  # gone, or stalled past `stall`: trade on alone until one attaches again
            self.alive = False
            sock.close()
            _keep(self.log, {"event": "lost", "at": time.time(), "why": type(exc).__name__})

    def record(self, event: Event, now: float) -> None:
        """Journal the event and stream it (the engine's write-ahead hook)."""
        with self.lock:
            self._send_locked(b"E", self.writer.append(event, now))

    def heartbeat(self, now: float) -> None:
        with self.lock:
            self._send_locked(b"B", struct.pack(">d", now))


class StandbyNode:
    """Listens for the primary's stream, applies it to its own core, watches the heartbeats."""

    def __init__(
        self,
        node: str,
        core: EngineCore,
        listen: tuple[str, int],
        heartbeat: float,
        misses: int,
        writer: Journal | None = None,
    ):
        self.node = node
        self.writer = writer  # an engine.shell.journal.Journal: what it applies is journaled, to restart cold later
        self.core = core
        self.fingerprint = journal.fingerprint(core.cfg)
        self.heartbeat = heartbeat
        self.misses = misses
        self.timers: dict[str, float] = {}
        self.lock = threading.Lock()  # the core is applied by the stream thread, taken over by another
        self.last_beat: float | None = None  # monotonic time of the last heartbeat or event
        # a connection that says no hello this long is no primary; each connection says its hello on its
        # own thread, so a silent one holds nobody else back
        self.hello_timeout = 5.0
        # connections handled at once (saying their hello, or followed): one more is closed at once and
        # noted, so a flood of them cannot take a thread each
        self.max_connections = MAX_CONNECTIONS
        # a followed stream that carries nothing, not even heartbeats, for ten times the silence that
        # calls the primary dead (and at least this long) is gone, a half-open connection: let it go and
        # listen for the primary to attach again (or sooner: the same primary attaching again replaces it)
        self.silence_floor = 2.0
        self.applied = 0
        self.primary = ""
        # why this standby follows no primary any more (it met a frame it could not apply), "" while it can
        self.unfollowable = ""
        self.log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()  # the log and the count of connection threads; `lock` is never taken under it
        # the connection followed now (None between streams) and its number: a stream that is no longer
        # the followed one applies nothing more
        self._followed: socket.socket | None = None
        self._generation = 0
        self._connections = 0  # connection threads alive
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(listen)
        self.server.listen(16)
        self.address = self.server.getsockname()
        self.active = False
        threading.Thread(target=self._accept, name="xmc-standby-stream", daemon=True).start()

    def _accept(self) -> None:
        """Take connections, each to a thread of its own (`_serve`), until the takeover."""
        while not self.active:
            try:
                sock, _ = self.server.accept()
            except OSError as exc:
                if self.active or self.server.fileno() == -1:
                    return  # taken over, or shut down: nothing follows any more
                # a connection reset before it was accepted (a primary that gave up, a relay that cut it)
                # is that connection's problem, not the end of following: keep listening
                self._note({"event": "accept_failed", "at": time.time(), "why": type(exc).__name__})
                time.sleep(0.01)
                continue
            with self._log_lock:
                full = self._connections >= self.max_connections
                if not full:
                    self._connections += 1
            if full:
                why = f"{self.max_connections} connections are handled already: closed at once"
                self._note({"event": "refused", "from": "", "why": why, "at": time.time()})
                sock.close()
                continue
            threading.Thread(target=self._serve, args=(sock,), name="xmc-standby-connection", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        """One connection: its hello within `hello_timeout`, then, if it is this standby's primary,
        follow its stream. The same primary attaching again replaces the stream it had (whose end it
        found broken where this end did not: a half-open connection); another primary while one is
        followed is refused."""
        mine = 0
        try:
            sock.settimeout(self.hello_timeout)
            hello = _read_hello(sock)
            node = hello.get("node")
            if not isinstance(node, str) or not node:
                raise ValueError(f"the hello names no node: {node!r}")
            refused = self._refusal(node, hello.get("fingerprint"), hello.get("version", _FORMAT_UNNAMED))
            replaced: socket.socket | None = None
            with self.lock:
                if self.active:
                    return
                if refused is None and self._followed is not None and node != self.primary:
                    refused = f"this standby follows primary {self.primary!r}, whose stream is open"
                if refused is None:  # logged before the answer: the log says what the primary was told, in order
                    replaced, self._followed = self._followed, sock
                    self._generation += 1
                    mine = self._generation
                    self.primary = node
                    if replaced is not None:
                        self._note({"event": "stream_replaced", "from": node, "at": time.time()})
                    with self._log_lock:
                        _keep(self.log, {"event": "stream_connected", "from": node, "at": time.time()})
                    # the primary sends what this core has not applied yet
                    _send_frame(sock, b"H", json.dumps({"node": self.node, "applied": self.applied}).encode())
            if refused is not None:  # told, never followed: the listener waits for the right primary
                self._note({"event": "refused", "from": node, "why": refused, "at": time.time()})
                _send_frame(sock, b"H", json.dumps({"node": self.node, "refused": refused}).encode())
                return
            if replaced is not None:
                try:
                    replaced.shutdown(socket.SHUT_RDWR)  # its thread reads no further
                except OSError:
                    pass
            sock.settimeout(max(10 * self.misses * self.heartbeat, self.silence_floor))
            self._follow(sock, mine)
        except _Unfollowable as exc:
            if mine != self._generation:
                return  # what a replaced stream still carried: nothing of it was applied, nor will be
            self.unfollowable = (
                f"{exc}; this standby applied the first {self.applied} events and follows no further: "
                f"run the primary's xmc on both nodes and restart this standby"
            )
            self._note({"event": "stopped_following", "from": self.primary, "at": time.time(), "why": str(exc)})
        except (OSError, ConnectionError, ValueError) as exc:
            # a replaced stream's end was noted as its replacement, and the takeover ends every stream
            if not self.active and (not mine or mine == self._generation):
                why = f"{type(exc).__name__}: {exc}"[:200]
                self._note({"event": "stream_lost", "at": time.time(), "why": why})
        except Exception as exc:  # noqa: BLE001 - a defect met on one connection must not end the listening
            why = f"{type(exc).__name__}: {exc}"[:200]
            self._note({"event": "listener_error", "at": time.time(), "why": why})
        finally:
            with self.lock:
                if self._followed is sock:
                    self._followed = None
            sock.close()
            with self._log_lock:
                self._connections -= 1

    def _note(self, entry: dict[str, Any]) -> None:
        """Log an entry; the same event for the same reason as the entry before only counts it there
        (`times`, `last_at`): a primary re-attaching at every heartbeat to be refused says so once."""
        with self._log_lock:
            last = self.log[-1] if self.log else None
            if last is not None and all(last.get(k) == entry.get(k) for k in ("event", "from", "why")):
                last["times"] = last.get("times", 1) + 1
                last["last_at"] = entry["at"]
            else:
                _keep(self.log, entry)

    def _refusal(self, node: str, fingerprint: object, version: object) -> str | None:
        """Why a hello from `node` is refused, or None to follow it: a primary named as this node is this
        node itself (the primary's --peer points back at it, which its side reports, seeing its own
        name answer), one of another engine config or of a record format this xmc does not read would
        stream events this core reads otherwise, and a standby that stopped following follows no more."""
        if node == self.node:
            return "a primary named as this standby: its --peer points at itself"
        if fingerprint != self.fingerprint:
            return "the primary runs another engine config (fingerprint differs)"
        if type(version) is not int or not 1 <= version <= journal.VERSION:
            return (
                f"the primary streams records of format {version!r}; this xmc reads formats 1 to "
                f"{journal.VERSION}: run the same xmc on both nodes"
            )
        if self.unfollowable:
            return self.unfollowable
        return None

    def _follow(self, sock: socket.socket, mine: int) -> None:
        """Apply stream number `mine` until it ends (OSError, ConnectionError, ValueError), another
        replaces it, or the takeover; a frame no primary sends or an event this core cannot apply raises
        _Unfollowable, naming it."""
        while not self.active and mine == self._generation:
            kind, payload = _read_frame(sock)
            self.last_beat = time.monotonic()
            if kind == b"B" and len(payload) == 8:
                continue
            number = self.applied + 1
            if kind != b"E":
                raise _Unfollowable(
                    f"after event {self.applied} the primary sent a frame of kind {kind!r} ({len(payload)} "
                    f"bytes), which no primary streams"
                )
            try:
                t, event = journal.load(payload, self.core.cfg)
            except ValueError as exc:
                raise _Unfollowable(f"event {number} of the stream is no event this xmc applies: {exc}") from None
            with self.lock:
                if self.active or mine != self._generation:
                    return
                if self.writer is not None:  # write-ahead: a journal that cannot take it applies nothing
                    self.writer.append(event, t)
                try:
                    actions = self.core.handle(event, t)
                except Exception as exc:  # the core's own failure: it stands at event `number - 1` at best
                    raise _Unfollowable(
                        f"event {number} of the stream ({type(event).__name__}) failed in this core: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                self.applied = number
                track_timers(self.timers, event, actions)

    def primary_dead(self) -> bool:
        """Missed heartbeats (only once the primary has been heard from)."""
        return self.last_beat is not None and time.monotonic() - self.last_beat > self.misses * self.heartbeat

    def take_over(self, epoch: int, now: float) -> dict[str, float]:
        """Stop following (the caller hands Takeover(epoch) to the core next); returns the timers to arm."""
        with self.lock:
            self.active = True
            for sock in (self.server, self._followed):  # wakes the listener's accept and the follower's read
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.server.close()
            with self._log_lock:
                _keep(self.log, {"event": "takeover", "epoch": epoch, "at": now})
            return dict(self.timers)
