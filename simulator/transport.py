"""Virtual-time FIX transport: one end of a simulated session (framing, sequence numbers, the wire log).

quickfix's Session cannot run in virtual time from Python, so the simulator frames messages itself
with quickfix (header, BodyLength, CheckSum) and models the session layer here: sequence numbers
out, a check of sequence numbers in, and every message written to the run's wire log as sent.
"""

from __future__ import annotations

import hashlib

import quickfix as fix

from engine.fix.codec import VIRTUAL_EPOCH, FixCodec, FixParseError, Parsed


class WireLog:
    """Every FIX message exactly as sent, in order, and the run hash over the canonical event log."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._hash = hashlib.sha256()

    def message(self, t: float, raw: str) -> None:
        self.lines.append(raw)
        self._hash.update(f"{t:.9f} {raw}\n".encode())

    def event(self, t: float, text: str) -> None:
        self._hash.update(f"{t:.9f} # {text}\n".encode())

    def digest(self) -> str:
        return self._hash.hexdigest()


class SessionEnd:
    """One side of a simulated FIX session: frames what it sends, checks what it receives."""

    def __init__(self, env, codec: FixCodec, log: WireLog, link=None):
        self.env = env
        self.codec = codec
        self.log = log
        self.link = link
        self.next_out = 1
        self.next_in = 1
        self.gaps = 0
        self.sent: dict[int, str] = {}  # MsgSeqNum -> ClOrdID of application messages, for Reject (3)
        self.connected = True
        self.queued: list[fix.Message] = []  # application messages held while disconnected

    def send(self, msg: fix.Message) -> str | None:
        if not self.connected:
            self.queued.append(msg)  # the session layer delivers it after the next logon
            return None
        if msg.isSetField(11):
            self.sent[self.next_out] = msg.getField(11)
        raw = self.codec.frame(msg, self.next_out, VIRTUAL_EPOCH + self.env.now)
        self.next_out += 1
        self.log.message(self.env.now, raw)
        self.link.send(raw)
        return raw

    def skip(self) -> None:
        """A message that is lost after it took a sequence number: the receiver will see a gap."""
        self.next_out += 1

    def reconnect(self) -> None:
        self.connected = True
        queued, self.queued = self.queued, []
        for msg in queued:
            self.send(msg)

    def receive(self, raw: str) -> Parsed:
        """Parse and validate; raises FixParseError. Counts sequence gaps (the session layer's job)."""
        msg = self.codec.parse(raw)
        seq = msg.seq
        if seq > self.next_in:
            self.gaps += 1
        self.next_in = max(self.next_in, seq + 1)
        return msg

    def reject(self, err: FixParseError) -> None:
        """Answer a message that failed validation as FIX says: session Reject (3) or BusinessMessageReject (j)."""
        if err.kind == "garbled":
            return  # a garbled message is dropped, never answered (FIX session rules)
        if err.kind == "session":
            fields = [(45, str(err.seq)), (373, str(err.reason)), (58, err.text[:120])]
            if err.ref_tag:
                fields.append((371, str(err.ref_tag)))
            if err.msg_type:
                fields.append((372, err.msg_type))
            self.send(self.codec.message("3", fields))
        else:
            fields = [(45, str(err.seq)), (372, err.msg_type or "?"), (380, str(err.reason)), (58, err.text[:120])]
            if err.ref_id:
                fields.append((379, err.ref_id))
            self.send(self.codec.message("j", fields))
