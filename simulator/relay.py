"""Link faults at the wire: a loopback TCP relay in the engine's path to one venue that cuts the
connection for a window, drops whole FIX messages (a sequence gap) and adds latency, per direction,
and (on request) the scenario's own link latency, so that wire timings resemble virtual time's.

The relay frames the byte stream into FIX messages (BeginString, BodyLength, CheckSum) so a drop
removes exactly one message, never half of one, and a delay keeps TCP's order. What each fault did
is recorded for the run's report. Its clock is the scenario's: seconds since the market opened.
"""

from __future__ import annotations

import heapq
import re
import socket
import threading
import time

from simulator.faults import Fault, FaultPlan, order_ids

_BODY_LENGTH = re.compile(rb"^8=[^\x01]+\x019=(\d+)\x01")


def split_messages(buffer: bytearray) -> list[bytes]:
    """Take every complete FIX message off the front of `buffer` (incomplete tail stays)."""
    out: list[bytes] = []
    while True:
        start = buffer.find(b"8=FIX")
        if start < 0:
            return out
        if start:
            del buffer[:start]
        m = _BODY_LENGTH.match(buffer)
        if m is None:
            return out
        end = m.end() + int(m.group(1)) + 7  # body, then "10=xxx\x01"
        if len(buffer) < end:
            return out
        out.append(bytes(buffer[:end]))
        del buffer[:end]


def hang_up(socks: list[socket.socket]) -> None:
    """Close each connection at once, both directions (a cut, not a goodbye)."""
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        except OSError:
            pass


def _field(msg: bytes, tag: bytes) -> bytes:
    i = msg.find(b"\x01" + tag + b"=")
    if i < 0:
        return b""
    j = msg.find(b"\x01", i + 1)
    return msg[i + len(tag) + 2 : j]


class _Direction:
    """One direction of one connection: frames, applies drop and delay faults, delivers in order."""

    def __init__(self, relay: FaultRelay, src: socket.socket, dst: socket.socket, name: str):
        self.relay, self.src, self.dst, self.name = relay, src, dst, name
        self.pending: list[tuple[float, int, bytes]] = []  # (due, order, bytes): a heap
        self.order = 0
        self.last_due = 0.0
        self.cv = threading.Condition()
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._deliver, daemon=True).start()

    def _read(self) -> None:
        buffer = bytearray()
        while True:
            try:
                data = self.src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            buffer += data
            for msg in split_messages(buffer):
                self._apply_faults(msg)
        with self.cv:
            self.closed = True
            self.cv.notify()

    def _apply_faults(self, msg: bytes) -> None:
        now = self.relay.now()
        relay = self.relay
        msg_type = _field(msg, b"35").decode()
        with relay.fault_lock:  # both directions draw from the faults' generators
            f = relay.faults.drops(
                msg_type,
                _field(msg, b"43") == b"Y",
                relay.venue,
                self.name,
                now,
                order_ids(msg.decode(errors="replace")),
            )
        if f is not None:
            relay.record(
                {
                    "fault": "drop",
                    "venue": relay.venue,
                    "direction": self.name,
                    "at_s": round(now, 6),
                    "msg_type": msg_type,
                    "seq": int(_field(msg, b"34") or 0),
                }
            )
            return
        extra = 0.0
        latency = relay.latency.get(self.name)
        if latency is not None:  # the scenario's own link latency, as virtual time has it
            with relay.fault_lock:
                extra += latency.draw(relay.rng)
        with relay.fault_lock:
            f = relay.faults.for_message("latency_spike", relay.venue, self.name, now)
        if f is not None:
            extra = f.delay
            relay.delayed[self.name] = relay.delayed.get(self.name, 0) + 1
        with self.cv:
            due = max(time.monotonic() + extra, self.last_due)  # TCP keeps order: never overtake
            self.last_due = due
            self.order += 1
            heapq.heappush(self.pending, (due, self.order, msg))
            self.cv.notify()

    def _deliver(self) -> None:
        while True:
            with self.cv:
                while not self.pending and not self.closed:
                    self.cv.wait()
                if not self.pending:
                    break
                due, _, msg = self.pending[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self.cv.wait(wait)
                    continue
                heapq.heappop(self.pending)
            try:
                self.dst.sendall(msg)
            except OSError:
                break
        hang_up([self.src, self.dst])  # shut down, so the far end sees the close even if another thread reads


class FaultRelay:
    """Listens on a free loopback port and relays each engine connection to the venue's port."""

    def __init__(self, venue: str, target_port: int, faults: list[Fault], fork, latency: dict | None = None):
        self.venue = venue
        self.latency = latency or {}  # direction ("up"/"down") -> simulator.link.Latency to add per message
        self.rng = fork("latency")
        self.faults = FaultPlan(faults, fork)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.target = target_port
        self.blocked = threading.Event()
        self.active: list[socket.socket] = []
        self.events: list[dict] = []  # what the faults did, in order
        self.delayed: dict[str, int] = {}  # messages delayed per direction
        self.opened: float | None = None  # monotonic time the market opened: the faults' clock starts
        self._lock = threading.Lock()
        self.fault_lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        threading.Thread(target=self._accept, name=f"xmc-relay-{venue}", daemon=True).start()

    def now(self) -> float:
        return -1.0 if self.opened is None else time.monotonic() - self.opened

    def record(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)

    def open(self, end: float) -> None:
        """The market opened: start the faults' clock and the timed cuts (each restored by `end`)."""
        self.opened = time.monotonic()
        for f in self.faults.faults:
            if f.kind == "disconnect":
                self._timers += [
                    threading.Timer(f.after, self.cut, args=(f"{self.venue} at {f.after:g} s",)),
                    threading.Timer(min(f.until, end), self.restore),
                ]
        for t in self._timers:
            t.start()

    def close(self) -> None:
        """The faults' time is over: timed cuts cancelled, connections taken again (it relays on)."""
        for t in self._timers:
            t.cancel()
        self.restore()

    def shutdown(self) -> None:
        """The run is over: no more connections (its listener thread ends) and every relayed one hung up."""
        self.close()
        with self._lock:
            socks, self.active = self.active, []
        hang_up([self.server, *socks])  # shut down first: a close alone does not wake a blocked accept()
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.blocked.is_set():
                client.close()
                continue
            try:
                venue = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            for sock in (client, venue):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.active += [client, venue]
            _Direction(self, client, venue, "up").start()
            _Direction(self, venue, client, "down").start()

    def cut(self, label: str) -> None:
        self.blocked.set()
        with self._lock:
            socks, self.active = self.active, []
        hang_up(socks)
        self.record(
            {
                "fault": "disconnect",
                "venue": self.venue,
                "cut": label,
                "at_s": round(self.now(), 6),
                "connections_closed": len(socks) // 2,
            }
        )

    def restore(self) -> None:
        self.blocked.clear()

    def summary(self) -> list[dict]:
        out = list(self.events)
        for direction, n in sorted(self.delayed.items()):
            out.append({"fault": "latency_spike", "venue": self.venue, "direction": direction, "messages_delayed": n})
        return out
