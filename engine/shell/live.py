"""The production shell: EngineCore behind quickfix initiator sessions, one per venue or broker.

quickfix calls back on its own threads; every callback only turns the message into core events and
puts them on one queue. One engine thread owns the core: it takes events in arrival order, fires
due timers, calls ``core.handle(event, now)`` with the wall clock, and carries out the actions
(FIX messages through ``Session.sendToTarget``, timers into its heap, audit rows into a list).
So the core stays single-threaded and decides exactly as it does in virtual time.
"""

from __future__ import annotations

import heapq
import logging
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import quickfix as fix

from engine.config import ConfigError, Problem, read_input
from engine.core.dispatch import ActionDispatcher
from engine.core.engine_core import EngineCore
from engine.core.events import Alert, Anomaly, AuditRow, Command, Event, SessionDown, SessionGap, SessionUp, TimerFired
from engine.core.ids import epoch_of
from engine.fix import dictionary
from engine.fix.codec import FixCodec, FixParseError, Parsed, naming_its_order
from engine.shell.quiet_gc import QuietGc
from engine.shell.reconnect import Backoff
from engine.shell.session_events import SessionEvents

log = logging.getLogger(__name__)
ENGINE_COMP_ID = "XMC"
SECRET_TAGS = ("554", "925", "96")  # Password, NewPassword, RawData: never logged
SENT_KEPT = 100_000  # per session, the newest application messages a session Reject may still name


def mask(raw: str) -> str:
    """A wire message with secret fields replaced by asterisks, for logs and the audit trail.

    A masked message is re-framed (BodyLength and CheckSum recomputed) so the log still parses;
    every other message is logged exactly as on the wire.
    """
    if "\x01554=" not in raw and "\x01925=" not in raw and "\x0196=" not in raw:
        return raw  # the common case, checked without splitting the message
    parts = raw.split("\x01")
    masked = False
    for i, part in enumerate(parts):
        tag, sep, _ = part.partition("=")
        if sep and tag in SECRET_TAGS:
            parts[i] = f"{tag}=***"
            masked = True
    if not masked:
        return raw
    fields = [p for p in parts if p and not p.startswith(("8=", "9=", "10="))]
    body = "\x01".join(fields) + "\x01"
    head = f"{parts[0]}\x019={len(body)}\x01"
    return f"{head}{body}10={sum((head + body).encode()) % 256:03d}\x01"


@dataclass(frozen=True)
class SessionConfig:
    venue: str
    dictionary: str
    target_comp_id: str
    host: str
    port: int
    username: str = ""
    password: str = ""  # from the environment or a file outside the repo; never logged
    settings: tuple[tuple[str, str], ...] = ()  # quickfix session settings (its template + the config's)


def settings_text(
    sessions: list[SessionConfig],
    store_dir: Path,
    heartbeat: int = 1,
    reconnect: int = 1,
    start_time: str = "00:00:00",
    end_time: str = "00:00:00",
    reset_on_logon: bool = True,
    force_reset: bool = False,
) -> str:
    """quickfix initiator settings: FileStore for sequence numbers, dictionaries, and per session its
    own settings (schedule, heartbeat, reset policy: see engine.fix.session_templates) over the
    defaults given here. `force_reset`: every session resets its sequence numbers at logon (a standby
    taking over has not got the primary's stores)."""
    lines = [
        "[DEFAULT]",
        "ConnectionType=initiator",
        f"HeartBtInt={heartbeat}",
        f"ReconnectInterval={reconnect}",
        f"FileStorePath={store_dir}",
        f"StartTime={start_time}",
        f"EndTime={end_time}",
        "UseDataDictionary=Y",
        f"ResetOnLogon={'Y' if reset_on_logon else 'N'}",
        "ValidateUserDefinedFields=N",
        "AllowUnknownMsgFields=Y",
        "SocketNodelay=Y",
    ]
    for s in sessions:
        own = dict(s.settings)
        if force_reset:
            own["ResetOnLogon"] = "Y"
        lines += [
            "",
            "[SESSION]",
            "BeginString=FIX.4.4",
            f"SenderCompID={ENGINE_COMP_ID}",
            f"TargetCompID={s.target_comp_id}",
            f"SocketConnectHost={s.host}",
            f"SocketConnectPort={s.port}",
            f"DataDictionary={dictionary.load(s.dictionary).path}",
            *(f"{k}={v}" for k, v in own.items()),
        ]
    return "\n".join(lines) + "\n"


class LiveEngine(fix.Application, ActionDispatcher):
    """quickfix Application + the engine thread that owns the core (its actions carried out by the
    same dispatcher as the simulator's)."""

    def __init__(
        self,
        core: EngineCore,
        sessions: list[SessionConfig],
        clock: Callable[[], float] = time.time,
        absolute_time: bool = False,
        quiet_gc: bool = True,
        session_events: bool = True,
    ):
        fix.Application.__init__(self)
        ActionDispatcher.__init__(self)
        self.core = core
        self.fenced_resends = 0  # PossDup resends of a fenced epoch's orders turned into GapFill
        self.store_dir: Path | None = None  # quickfix's FileStorePath (scrubbed of passwords)
        self.clock = clock
        self.sessions = {s.venue: s for s in sessions}
        self.by_target = {s.target_comp_id: s.venue for s in sessions}
        self.codecs = {
            s.venue: FixCodec(
                dictionary.load(s.dictionary),
                ENGINE_COMP_ID,
                s.target_comp_id,
                {i.name: i.symbol for i in core.instruments.values() if i.venue == s.venue},
            )
            for s in sessions
        }
        self.session_ids: dict[str, fix.SessionID] = {}
        # per venue, MsgSeqNum -> ClOrdID of the application messages sent (the newest SENT_KEPT), so that a
        # session Reject (3), which names the refused message only by its MsgSeqNum, reaches its order
        self.sent: dict[str, dict[int, str]] = {s.venue: {} for s in sessions}
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()  # C-implemented: a faster hand-off between threads
        self.timers: list[tuple[float, int, str]] = []
        self.timer_gen: dict[str, int] = {}
        self.messages: list[str] = []
        self._msg_lock = threading.Lock()
        self._answering = threading.local()  # set while the engine thread sends its own Reject (see toAdmin)
        self.compute_ns: list[int] = []
        self.logged_on: set[str] = set()
        self.logon_at: dict[str, float] = {}  # engine time of each session's latest logon
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.initiator: fix.SocketInitiator | None = None
        self.epoch_start = 0.0
        self.absolute_time = absolute_time  # core time = the wall clock itself (nodes of a pair share it)
        self.on_event: Callable[[Event, float], object] | None = (
            None  # failover primary: streams each event to the standby before the core acts
        )
        self.fence: Callable[[int], bool] | None = (
            None  # failover: may this node send under its epoch? checked where orders leave
        )
        self.trace: Callable[[AuditRow], None] | None = None  # a live audit tail
        self.backoff: Backoff | None = None  # exponential reconnect instead of quickfix's fixed pace
        self.gc = QuietGc() if quiet_gc else None  # collections only while the engine thread is idle
        self.on_wire: Callable[[Any, float], None] | None = (
            None  # optional: (action, engine time) once a message is handed to quickfix
        )
        # quickfix's own events (garbled input dropped, resends, disconnects) for the record; off saves
        # quickfix's per-message call into Python (~30 us a round trip, benchmarks/wire_roundtrip.py)
        self.session_events = SessionEvents() if session_events else None

    # ---- quickfix callbacks (quickfix threads: only queue events) --------------------------------
    def onCreate(self, session_id: Any) -> None:
        self.session_ids[self.by_target[session_id.getTargetCompID().getValue()]] = session_id

    def onLogon(self, session_id: Any) -> None:
        self.scrub_store()  # the Logon just stored carries the password
        venue = self.by_target[session_id.getTargetCompID().getValue()]
        self.logged_on.add(venue)
        self.logon_at[venue] = self.now()
        self.events.put(SessionUp(venue))

    def onLogout(self, session_id: Any) -> None:
        self.scrub_store()  # a refused Logon was stored too
        venue = self.by_target[session_id.getTargetCompID().getValue()]
        self.logged_on.discard(venue)
        self.events.put(SessionDown(venue))

    def toAdmin(self, message: Any, session_id: Any) -> None:
        msg_type = message.getHeader().getField(35)
        if msg_type == "2":  # quickfix saw a sequence gap: what it held may have moved the venue's books
            self.events.put(SessionGap(self.by_target[session_id.getTargetCompID().getValue()]))
        if msg_type == "3" and not getattr(self._answering, "active", False):
            # quickfix's own validation refused a message (fromApp never saw it): recorded as the
            # virtual-time shell records a message its session refuses (the engine's own Rejects are
            # recorded where they are decided, in _decode)
            self.events.put(("refused", self.by_target[session_id.getTargetCompID().getValue()], message.toString()))
        if msg_type == "A":
            s = self.sessions[self.by_target[session_id.getTargetCompID().getValue()]]
            if s.username:
                message.setField(553, s.username)
            if s.password:
                message.setField(554, s.password)
        self._wire(message)

    def fromAdmin(self, message: Any, session_id: Any) -> None:
        if message.getHeader().getField(35) == "3":  # a session Reject: it may refuse one of our orders
            raw = message.toString()
            self._wire(message, raw)
            self.events.put(("fix", self.by_target[session_id.getTargetCompID().getValue()], raw))
            return
        self._wire(message)

    def toApp(self, message: Any, session_id: Any) -> None:
        header = message.getHeader()
        if header.isSetField(43) and header.getField(43) == "Y" and message.isSetField(11):
            # quickfix is resending an application message the counterparty asked for again: one of a
            # fenced (older) epoch must never reach a venue from any layer; quickfix gap-fills it instead
            epoch = epoch_of(message.getField(11))
            if epoch is not None and epoch < self.core.epoch:
                self.fenced_resends += 1
                raise fix.DoNotSend()
        if message.isSetField(11) and header.isSetField(34):  # quickfix has numbered it: what 45 will name
            sent = self.sent[self.by_target[session_id.getTargetCompID().getValue()]]
            with self._msg_lock:  # the engine thread sends, quickfix's own resends: never both at once
                sent[int(header.getField(34))] = message.getField(11)
                if len(sent) > SENT_KEPT:
                    del sent[next(iter(sent))]  # the oldest: a Reject answers within moments, not a day later
        self._wire(message)

    def fromApp(self, message: Any, session_id: Any) -> None:
        raw = message.toString()
        self._wire(message, raw)
        venue = self.by_target[session_id.getTargetCompID().getValue()]
        self.events.put(("fix", venue, raw))

    def _wire(self, message: Any, raw: str | None = None) -> None:
        with self._msg_lock:
            self.messages.append(mask(raw or message.toString()))

    # ---- the engine thread -------------------------------------------------------------------------
    def scrub_store(self) -> None:
        """quickfix's FileStore keeps every message it sent, the Logon too, after toAdmin added the
        password: overwrite each password in the stored bodies in place with asterisks of the same
        length (the store's offsets stay valid; quickfix never resends a Logon), and keep the store
        private to the user. Runs on quickfix's threads after each logon and logout, and at stop."""
        if self.store_dir is None:
            return
        secrets = [s.password.encode() for s in self.sessions.values() if s.password]
        try:
            os.chmod(self.store_dir, 0o700)
            for path in self.store_dir.iterdir():
                os.chmod(path, 0o600)
                if not secrets or path.suffix != ".body":
                    continue
                data = path.read_bytes()
                with open(path, "r+b") as fh:
                    for secret in secrets:
                        needle = b"\x01554=" + secret + b"\x01"
                        at = data.find(needle)
                        while at >= 0:
                            fh.seek(at + 5)
                            fh.write(b"*" * len(secret))
                            at = data.find(needle, at + len(needle))
        except OSError as exc:  # never let a callback raise into quickfix; say so loudly instead
            log.error("could not scrub the FIX store %s: %s", self.store_dir, exc)

    def start(self, settings: str) -> None:
        ss = fix.SessionSettings()
        ss.setFromString(settings)
        store = next((line.split("=", 1)[1] for line in settings.splitlines() if line.startswith("FileStorePath=")), "")
        self.store_dir = Path(store) if store else None
        self.epoch_start = 0.0 if self.absolute_time else self.clock()
        if self.gc is not None:
            self.gc.install()
        self._thread = threading.Thread(target=self._run, name="xmc-engine", daemon=True)
        self._thread.start()
        logs = self.session_events if self.session_events is not None else fix.ScreenLogFactory(False, False, False)
        self.initiator = fix.SocketInitiator(self, fix.FileStoreFactory(ss), ss, logs)
        self.initiator.start()

    def stop(self) -> None:
        """Stop the engine thread first (nothing may send into a session being torn down), then
        log out and stop quickfix's threads."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.initiator is not None:
            self.initiator.stop()
            self.initiator = None
        self.scrub_store()
        if self.gc is not None:
            self.gc.uninstall()

    def session_event_summary(self, first: int = 50) -> dict[str, Any]:
        """For report.json: how many quickfix session events, and the first ones (secrets masked)."""
        if self.session_events is None:
            return {"recorded": False}
        return {
            "recorded": True,
            "count": self.session_events.count,
            "first": [f"{sid}: {text}" for _, sid, text in self.session_events.events[:first]],
        }

    def command(self, name: str) -> None:
        self.events.put(Command(name))

    def now(self) -> float:
        return float(self.clock() - self.epoch_start)

    def _reconnects(self) -> None:
        """Drive the reconnect backoff: enable a session when its wait is over, disable it otherwise."""
        now, backoff = self.now(), self.backoff
        if backoff is None:
            return
        for venue, sid in self.session_ids.items():
            action = backoff.tick(venue, now, venue in self.logged_on)
            if action is not None:
                session = fix.Session.lookupSession(sid)
                if session is not None:
                    session.logon() if action == "enable" else session.logout()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception as exc:  # noqa: BLE001 - the thread's fail-safe of last resort (the core has its own)
                self._shell_failed(exc)

    def _shell_failed(self, exc: Exception) -> None:
        """A defect of the shell itself (decoding, timers, the session hooks) raised on the engine thread:
        never end the thread with sessions up and nobody deciding. Recorded (anomaly engine_error with the
        innermost frame), a critical alert, and the kill switch thrown through the core (working orders
        cancelled, no new episodes); the thread goes on serving what the desk and the venues send."""
        where = "".join(traceback.format_exception(exc)[-3:]).strip()
        now = self.now()
        self.execute(
            [
                Anomaly(now, "engine_error", "", f"{type(exc).__name__}: {exc} in the live shell; {where}"),
                Alert(now, "critical", f"engine shell error ({type(exc).__name__}: {exc}): kill switch thrown"),
            ]
        )
        if not self.core.killed:
            try:
                self._dispatch(Command("kill"))
            except Exception as again:  # noqa: BLE001 - nothing left to try here; the desk must act
                log.critical("kill switch failed after an engine shell error: %r", again)

    def _turn(self) -> None:
        """One turn of the engine thread: reconnects, the next event or a timer's wait, due timers."""
        if self.backoff is not None:
            self._reconnects()
        if self.gc is not None:
            if self.events.empty():
                self.gc.idle()
            else:
                self.gc.busy()
        wait = 0.05
        if self.timers:
            wait = max(0.0, min(wait, self.timers[0][0] - self.now()))
        try:
            item = self.events.get(timeout=wait)
        except queue.Empty:
            item = None
        while self.timers and self.timers[0][0] <= self.now():
            _, gen, key = heapq.heappop(self.timers)
            if self.timer_gen.get(key) == gen:
                del self.timer_gen[key]
                self._dispatch(TimerFired(key))
        if item is None:
            return
        if isinstance(item, tuple) and item[0] == "timers":
            for key, at in item[1].items():
                self.set_timer(key, at)
        elif isinstance(item, tuple) and item[0] == "refused":
            self._refused(item[1], item[2])
        elif isinstance(item, tuple):
            _, venue, raw = item
            for event in self._decode(venue, raw):
                self._dispatch(event)
        else:
            codec = self.codecs.get(item.venue) if type(item) is SessionGap else None
            if codec is not None:  # what arrives from here on builds the venue's top afresh
                codec.forget_book()
            if type(item) is SessionGap:  # recorded as the virtual-time shell records it
                self.record_anomaly(Anomaly(self.now(), "sequence_gap", "", f"{item.venue}: gap; ResendRequest sent"))
            self._dispatch(item)

    def _decode(self, venue: str, raw: str) -> list[Event]:
        codec = self.codecs[venue]
        try:
            msg = Parsed(raw)  # quickfix validated it against the dictionary before fromApp
        except (ValueError, FixParseError) as exc:
            self.record_anomaly(Anomaly(self.now(), "fix_garbled", "", f"{venue}: {exc}"))
            return []
        try:
            numbered = self.sent.get(venue, {})
            return [naming_its_order(event, numbered) for event in codec.decode(msg, venue)]
        except FixParseError as err:  # a value quickfix's validation let through that the engine cannot read, or
            # a message type it does not serve
            self.record_anomaly(Anomaly(self.now(), f"fix_{err.kind}", err.ref_id, f"{venue}: {err}"))
            answer = codec.reject_draft(err)
            sid = self.session_ids.get(venue)
            self._answering.active = True  # recorded just above: toAdmin must not record it again
            try:
                sent = answer is not None and sid is not None and fix.Session.sendToTarget(codec.build(answer), sid)
            finally:
                self._answering.active = False
            if answer is not None and not sent:
                self.record_anomaly(
                    Anomaly(self.now(), "send_failed", "", f"{venue}: the Reject: session not available")
                )
            return []

    def _refused(self, venue: str, raw: str) -> None:
        """The session Reject quickfix sent `venue` for a message its validation refused, as an anomaly
        (kind fix_session, with the audit row every anomaly gets): the rule for a malformed message is
        its FIX answer and a record of ours."""
        msg = Parsed(raw)
        tag = f", tag {msg.get(371)}" if msg.get(371) else ""
        self.record_anomaly(
            Anomaly(
                self.now(),
                "fix_session",
                "",
                f"{venue}: session reject ({msg.get(373)}) of its MsgSeqNum {msg.get(45)} "
                f"(MsgType {msg.get(372)}{tag}): {msg.get(58)}",
            )
        )

    def submit(self, event: Event) -> None:
        """Hand an event to the engine thread (thread-safe)."""
        self.events.put(event)

    def arm_after(self, timers: dict[str, float]) -> None:
        """Arm `timers` (key -> when) on the engine thread once every event submitted before is handled
        (thread-safe). Timers a node inherits (replicated from the old primary, or replayed from its
        journal) may be due already: they must fire in the view those events give the core (after a
        Takeover or SessionDown no session is logged on), never before it, in the old view, where they
        would send into a session that is not up."""
        self.events.put(("timers", dict(timers)))

    def _dispatch(self, event: Event) -> None:
        now = self.now()
        if self.on_event is not None:
            self.on_event(event, now)  # write-ahead: the standby has it before the core acts on it
        t0 = time.perf_counter_ns()
        actions = self.core.handle(event, now)
        self.compute_ns.append(time.perf_counter_ns() - t0)
        self.execute(actions)

    # ---- the hooks of engine.core.dispatch.ActionDispatcher (engine thread) ---------------------------
    def send(self, a: Any) -> None:
        sid = self.session_ids.get(a.venue)
        msg = self.codecs[a.venue].encode(a, self.clock())
        if sid is None or not fix.Session.sendToTarget(msg, sid):
            self.record_anomaly(
                Anomaly(self.now(), "send_failed", getattr(a, "cl_ord_id", ""), f"{a.venue}: session not available")
            )
        elif self.on_wire is not None:
            self.on_wire(a, self.now())

    def set_timer(self, key: str, at: float) -> None:
        """Arm a timer (the core's, or one a standby taking over replicated)."""
        gen = self.timer_gen[key] = self.timer_gen.get(key, 0) + 1
        heapq.heappush(self.timers, (at, gen, key))

    def cancel_timer(self, key: str) -> None:
        self.timer_gen.pop(key, None)

    def audited(self, row: AuditRow) -> None:
        if self.trace is not None:
            self.trace(row)

    def alert(self, a: Alert) -> None:
        log.warning("%s: %s", a.level, a.text)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Wait (on the wall clock) until `predicate()` holds; False on timeout. For shells and tools."""
    deadline = time.monotonic() + timeout
    ev = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        ev.wait(interval)
    return bool(predicate())


def drained(core: EngineCore) -> bool:
    """The engine may stop: its thread has taken the drain command (a quote queued ahead of it may
    have opened one more episode) and no episode is open any more."""
    return core.draining and not core.active


def credential(name: str) -> str:
    """A credential from the environment (XMC_<NAME>) or a file named by XMC_<NAME>_FILE; '' if neither
    is set. Both set is an error (which one was meant is a guess), as in a live config."""
    value = os.environ.get(f"XMC_{name}", "")
    path = os.environ.get(f"XMC_{name}_FILE", "")
    if value and path:
        raise ConfigError(
            f"XMC_{name} and XMC_{name}_FILE",
            [Problem("(environment)", "are both set", f"unset one of XMC_{name} and XMC_{name}_FILE")],
        )
    if path:
        try:
            value = read_input(Path(path), 64 * 1024).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"XMC_{name}_FILE={path}",
                [Problem("(file)", f"cannot be read ({exc})", "point it at a readable text file holding the value")],
            ) from None
    return value
