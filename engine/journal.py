"""The write-ahead journal: every event the core consumes, with its time, appended before the core
acts on it. The core is deterministic, so replaying the journal into a fresh core rebuilds its state
exactly (orders, episodes, positions, id counters): the basis of cold restart and hot standby.

Format: one header line (JSON: magic, format version, fingerprint of the engine config), then
records framed as 4-byte length, 4-byte CRC32, JSON payload. A torn or corrupt tail (a crash during
a write) is detected on open, truncated to the last good record and reported, never replayed.
Every append is handed to the OS at once (it survives the process being killed); durability says
when it is forced to disk (surviving a power loss): "record" every append, "batch" every `batch`
appends, "none" when the OS decides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from engine import events as ev
from engine.config import EngineConfig

MAGIC = "xmc-journal"
VERSION = 1
DURABILITY = ("none", "batch", "record")
_FRAME = struct.Struct(">II")
EVENT_TYPES = {cls.__name__: cls for cls in (ev.Quote, ev.ExecReport, ev.CancelReject, ev.BusinessReject,
                                             ev.SessionUp, ev.SessionDown, ev.TimerFired, ev.Command,
                                             ev.Takeover)}


class JournalError(Exception):
    """The journal cannot be used: it names the file, what is wrong and what to do."""


def fingerprint(config: EngineConfig) -> str:
    """A stable digest of the engine config: a journal only replays into the config that wrote it."""
    return hashlib.sha256(repr(config).encode()).hexdigest()[:32]


def encode(event: ev.Event, now: float) -> bytes:
    return json.dumps({"t": now, "e": type(event).__name__, "f": dataclasses.asdict(event)},
                      separators=(",", ":")).encode()


def decode(payload: bytes) -> tuple[float, ev.Event]:
    obj = json.loads(payload)
    return obj["t"], EVENT_TYPES[obj["e"]](**obj["f"])


@dataclass
class Recovered:
    records: list[tuple[float, ev.Event]]
    truncated_bytes: int  # bytes of a torn or corrupt tail that were cut off (0: clean)
    reason: str = ""


def read(path: Path, config_fingerprint: str) -> Recovered:
    """Every good record of the journal at `path`; a bad tail is reported (and not returned)."""
    data = path.read_bytes()
    newline = data.find(b"\n")
    if newline < 0:
        raise JournalError(f"{path}: no journal header; it is not an xmc journal (move it away to start afresh)")
    try:
        header = json.loads(data[:newline])
    except json.JSONDecodeError:
        raise JournalError(f"{path}: unreadable journal header; it is not an xmc journal") from None
    if header.get("magic") != MAGIC:
        raise JournalError(f"{path}: not an xmc journal (magic {header.get('magic')!r})")
    if header.get("version", 0) > VERSION:
        raise JournalError(f"{path}: journal format version {header['version']} is newer than this xmc "
                           f"({VERSION}); run the xmc that wrote it, or upgrade")
    if header.get("config") != config_fingerprint:
        raise JournalError(f"{path}: the journal belongs to another engine config (fingerprint "
                           f"{header.get('config')}, this config {config_fingerprint}); refusing to trade on it")
    pos, records, reason = newline + 1, [], ""
    while pos < len(data):
        if pos + _FRAME.size > len(data):
            reason = "torn record header"
            break
        length, crc = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size: pos + _FRAME.size + length]
        if len(body) < length:
            reason = "torn record body"
            break
        if zlib.crc32(body) != crc:
            reason = "record checksum mismatch"
            break
        try:
            records.append(decode(body))
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"undecodable record ({exc})"
            break
        pos += _FRAME.size + length
    return Recovered(records, len(data) - pos, reason)


def bodies(path: Path, offset: int = 0) -> tuple[list[bytes], int]:
    """The raw record payloads (as `encode` made them) from byte `offset` on (0: after the header),
    without decoding them, and the offset just after the last whole record: for streaming a
    journal's history to a standby in passes. Stops at a torn or corrupt tail."""
    with open(path, "rb") as fh:
        data = fh.read()
    pos = offset or data.find(b"\n") + 1
    out = []
    while pos + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size: pos + _FRAME.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        out.append(body)
        pos += _FRAME.size + length
    return out, pos


class Journal:
    """Append-only writer. Opening an existing journal validates it and cuts a bad tail."""

    def __init__(self, path: str | Path, config: EngineConfig, durability: str = "none", batch: int = 64):
        if durability not in DURABILITY:
            raise JournalError(f"durability {durability!r}: use one of {', '.join(DURABILITY)}")
        self.path = Path(path)
        self.durability = durability
        self.batch = batch
        self.pending = 0
        self.fingerprint = fingerprint(config)
        self.recovered = Recovered([], 0)
        if self.path.exists() and self.path.stat().st_size > 0:
            self.recovered = read(self.path, self.fingerprint)
            if self.recovered.truncated_bytes:
                with open(self.path, "r+b") as fh:
                    fh.truncate(self.path.stat().st_size - self.recovered.truncated_bytes)
            self.fh = open(self.path, "ab")
        else:
            self.fh = open(self.path, "wb")
            header = {"magic": MAGIC, "version": VERSION, "config": self.fingerprint}
            self.fh.write(json.dumps(header).encode() + b"\n")
            self.fh.flush()
            os.fsync(self.fh.fileno())

    def append(self, event: ev.Event, now: float) -> bytes:
        """Write one record; returns its payload (what a replication stream sends as it is)."""
        body = encode(event, now)
        self.fh.write(_FRAME.pack(len(body), zlib.crc32(body)) + body)
        self.fh.flush()  # to the OS before the core acts: a killed process loses nothing it acted on
        self.pending += 1
        if self.durability == "record" or (self.durability == "batch" and self.pending >= self.batch):
            self.sync()
        return body

    def torn_append(self, event: ev.Event, now: float, keep: float = 0.5) -> int:
        """Write only the first `keep` share of a record, as a process killed mid-write leaves it
        (fault injection: the simulator's torn_write); returns the bytes written."""
        body = encode(event, now)
        frame = _FRAME.pack(len(body), zlib.crc32(body)) + body
        part = frame[:max(1, int(len(frame) * keep))]
        self.fh.write(part)
        self.fh.flush()
        return len(part)

    def sync(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.pending = 0

    def close(self) -> None:
        self.fh.flush()
        if self.durability != "none":
            os.fsync(self.fh.fileno())
        self.fh.close()


def replay(core, records: list[tuple[float, ev.Event]]) -> dict[str, float]:
    """Feed journaled events to a fresh core in order (its actions are not carried out again);
    returns the timers still pending afterwards (key -> due time), for the shell to arm."""
    timers: dict[str, float] = {}
    for now, event in records:
        for a in core.handle(event, now):
            if type(a) is ev.SetTimer:
                timers[a.key] = a.at
            elif type(a) is ev.CancelTimer:
                timers.pop(a.key, None)
    return timers
