"""Virtual-time FIX transport: one end of a simulated session (framing, sequence numbers, the wire log).

quickfix's Session cannot run in virtual time from Python, so the simulator frames messages itself
with quickfix (header, BodyLength, CheckSum) and models the session layer here: outgoing sequence
numbers and a history for resends; incoming messages applied strictly in sequence, a gap answered
with ResendRequest (2) and filled by PossDup resends or SequenceReset-GapFill (4); messages held
while disconnected and sent after the next logon. Every message is written to the wire log as sent.

What the engine receives from a simulated venue was built by quickfix from the same venue dictionary
the engine's codec holds, or (market-data refreshes, and every venue message without groups) written in
quickfix's layout to the same bytes (engine.fix.codec.laid_out; the venue end `vouches` for the exact
bytes it framed); parsing and validating those bytes again on receipt would check the simulator, not
the engine, so a vouched message is read without it (issue 15). Everything else is parsed and validated by quickfix: every
message the engine sends, resends, anything a fault altered; `Simulation(strict_fix=True)` validates
vouched messages too (the test suite checks both readings give the same run).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import quickfix as fix

from engine.core.ids import epoch_of
from engine.fix.codec import SOH, VIRTUAL_EPOCH, Draft, FixCodec, FixParseError, Parsed, fix_time
from simulator.link import Link


class WireLog:
    """Every FIX message exactly as sent, in order, and the run hash over the canonical event log."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._hash = hashlib.sha256()
        # the log's lines not hashed yet: fed to the hash a few hundred at a time (one encode and one
        # update for many short lines; SHA-256 of the concatenation is the same digest)
        self._pending: list[str] = []
        # the time of the last line and its text: lines written at one virtual instant (a venue's
        # refreshes, an event's audit rows) format it once
        self._t = -1.0
        self._t_text = ""

    def _time(self, t: float) -> str:
        if t != self._t:  # virtual time is never negative: equal times have the same text
            self._t = t
            self._t_text = f"{t:.9f}"
        return self._t_text

    def message(self, t: float, raw: str) -> None:
        self.lines.append(raw)
        self._pending.append(f"{self._time(t)} {raw}\n")
        if len(self._pending) >= 256:
            self._flush()

    def event(self, t: float, text: str) -> None:
        self._pending.append(f"{self._time(t)} # {text}\n")
        if len(self._pending) >= 256:
            self._flush()

    def _flush(self) -> None:
        self._hash.update("".join(self._pending).encode())
        self._pending.clear()

    def digest(self) -> str:
        self._flush()
        return self._hash.hexdigest()


class SessionEnd:
    """One side of a simulated FIX session: frames what it sends, checks what it receives."""

    # where this end's messages go: set (by simulator.runner) before the first send; typed, so that
    # compiled (xmc/accel.py) each send on it is a direct call
    link: Link

    def __init__(self, env, codec: FixCodec, log: WireLog, link: Link | None = None):
        self.env = env
        self.codec = codec
        self.log = log
        if link is not None:
            self.link = link
        self.next_out = 1
        self.next_in = 1
        self.gaps = 0
        self.sent: dict[int, str] = {}  # MsgSeqNum -> ClOrdID of application messages, for Reject (3)
        self.connected = True
        self.queued: list[Draft | fix.Message] = []  # application messages held while disconnected
        self.history: dict[int, str] = {}  # MsgSeqNum -> raw, for resends
        self.buffer: dict[int, Parsed] = {}  # received ahead of a gap, applied once it is filled
        self.resend_asked_to = 0  # highest sequence number already asked for again
        self.resent = 0
        # fencing: application messages carrying a ClOrdID of an epoch below this are never resent
        # (a ResendRequest for them is answered with GapFill; status queries settle what they carried)
        self.min_epoch = 0
        self.observer: Callable[[str, float], None] | None = (
            None  # called (raw, now) for every message this end puts on the wire
        )
        self.fenced_resends = 0
        # a simulated venue's end: the exact messages it framed through quickfix from its dictionary,
        # until the far end reads them (None: this end vouches for nothing)
        self.vouched: set[str] | None = None
        self.peer: SessionEnd | None = None  # the far end whose vouched messages this end trusts

    def send(self, msg: Draft | fix.Message) -> str | None:
        if not self.connected:
            self.queued.append(msg)  # the session layer delivers it after the next logon
            return None
        if isinstance(msg, Draft):
            if msg.cl_ord_id is not None:
                self.sent[self.next_out] = msg.cl_ord_id
        elif msg.isSetField(11):
            self.sent[self.next_out] = msg.getField(11)
        now = self.env.now  # simpy's clock is a Python property: read once a message
        raw = self.codec.frame(msg, self.next_out, VIRTUAL_EPOCH + now)
        if self.vouched is not None:
            self.vouched.add(raw)
        self.history[self.next_out] = raw
        self.next_out += 1
        self.log.message(now, raw)
        if self.observer is not None:
            self.observer(raw, now)
        self.link.send(raw)
        return raw

    def skip(self) -> None:
        """A message that is lost after it took a sequence number: the receiver will see a gap."""
        self.next_out += 1

    def drop(self) -> None:
        """The connection is gone: a ResendRequest still open died with it (its answer, if any, was
        lost on the way), so the next gap asks again from the first number not received."""
        self.connected = False
        self.forget_resend_request()

    def forget_resend_request(self) -> None:
        """A ResendRequest still open is nobody's to wait for any more (its connection dropped, or the
        process that sent it was superseded and its answers went to that process): the next gap asks
        again from the first number not received."""
        self.resend_asked_to = self.next_in - 1

    def reconnect(self) -> None:
        self.connected = True
        queued, self.queued = self.queued, []
        for msg in queued:
            self.send(msg)

    def receive(self, raw: str) -> list[Parsed]:
        """The messages now ready to apply, in sequence order (none while a gap is open).

        Raises FixParseError for a message that fails validation; its sequence number is consumed.
        """
        vouched = self.peer.vouched if self.peer is not None else None
        if vouched is not None and raw in vouched:
            vouched.discard(raw)  # read once as vouched; the same bytes again are parsed in full
            msg = Parsed(raw)
        else:
            try:
                msg = self.codec.parse(raw)
            except FixParseError as err:
                if err.seq == self.next_in:
                    self.next_in += 1
                raise
        if msg.msg_type == "2":  # ResendRequest: answered at once, whatever its own sequence number
            self._resend(int(msg.get(7, "1")), int(msg.get(16, "0")))
        seq = msg.seq
        if msg.msg_type == "4" and msg.get(123) == "Y" and seq == self.next_in:  # SequenceReset-GapFill, in turn
            self.next_in = max(self.next_in + 1, int(msg.get(36, "0")))
            return self._drain([])
        # a GapFill ahead of a gap is held like any message: applied in turn, it must not skip the hole
        if seq < self.next_in:
            return []  # seen already: a PossDup resend of something applied
        if seq > self.next_in:
            early = msg.msg_type == "A"  # a Logon is answered at once; the gap below it is asked for after
            self.buffer[seq] = Parsed(f"35=0{SOH}34={seq}{SOH}") if early else msg
            high = seq - 1
            while high in self.buffer:  # already held: the hole below it was asked for before
                high -= 1
            if high >= self.next_in and high > self.resend_asked_to:
                self.gaps += 1
                self.send(
                    self.codec.draft("2", [(7, str(max(self.next_in, self.resend_asked_to + 1))), (16, str(high))])
                )
                self.resend_asked_to = high
            return [msg] if early else []
        self.next_in += 1
        return self._drain([msg])

    def _drain(self, ready: list[Parsed]) -> list[Parsed]:
        while self.next_in in self.buffer:
            msg = self.buffer.pop(self.next_in)
            ready.append(msg)
            if msg.msg_type == "4" and msg.get(123) == "Y":  # a held GapFill: on to its NewSeqNo
                self.next_in = max(self.next_in + 1, int(msg.get(36, "0")))
            else:
                self.next_in += 1
        for seq in [s for s in self.buffer if s < self.next_in]:
            del self.buffer[seq]
        return [m for m in ready if m.msg_type not in ("2", "4")]

    def _resend(self, begin: int, end: int) -> None:
        """Resend [begin, end] (0: to the last sent): application messages again with PossDupFlag, the
        rest (admin messages, and numbers lost before sending) as SequenceReset-GapFill."""
        last = self.next_out - 1 if end == 0 else min(end, self.next_out - 1)
        for seq in range(begin, last + 1):
            raw = self.history.get(seq)
            msg_type = raw.split("\x0135=", 1)[1].split("\x01", 1)[0] if raw else ""
            if raw and msg_type not in ("A", "0", "1", "2", "4", "5") and self._fenced(raw):
                raw = None
                self.fenced_resends += 1
            if raw and msg_type not in ("A", "0", "1", "2", "4", "5"):
                m = fix.Message(raw, self.codec.dd, False)
                h = m.getHeader()
                h.setField(122, h.getField(52))
                h.setField(43, "Y")
                h.setField(52, fix_time(VIRTUAL_EPOCH + self.env.now))
                out = m.toString()
            else:
                m = self.codec.draft("4", [(123, "Y"), (36, str(seq + 1))])
                out = self.codec.frame(m, seq, VIRTUAL_EPOCH + self.env.now, poss_dup=True)
            self.resent += 1
            self.log.message(self.env.now, out)
            if self.observer is not None:
                self.observer(out, self.env.now)
            self.link.send(out)

    def _fenced(self, raw: str) -> bool:
        """Does this application message carry a ClOrdID of a fenced (older) epoch?"""
        if not self.min_epoch or "\x0111=" not in raw:
            return False
        epoch = epoch_of(raw.split("\x0111=", 1)[1].split("\x01", 1)[0])
        return epoch is not None and epoch < self.min_epoch

    def reject(self, err: FixParseError) -> None:
        """Answer a message that failed validation as FIX says: session Reject (3) or BusinessMessageReject (j)."""
        answer = self.codec.reject_draft(err)
        if answer is not None:  # a garbled message is dropped, never answered (FIX session rules)
            self.send(answer)
