"""The write-ahead journal: every event the core consumes, with its time, appended before the core
acts on it. The core is deterministic, so replaying the journal into a fresh core rebuilds its state
exactly (orders, episodes, positions, id counters): the basis of cold restart and hot standby.

Format: one header line (JSON: magic, format version, fingerprint of the engine config), then
records framed as 4-byte length, 4-byte CRC32, JSON payload. Version 2 writes a payload as an array,
[time, event type, each field's value in the order the event declares them]; version 1 wrote an
object {"t": time, "e": event type, "f": {field: value}}, and is still read (a payload's shape, object
or array, says which it is), so a journal written before the change replays as it did. Only an
incomplete final record (a crash during a write) is a torn tail: on open it is cut, the cut bytes
are kept beside the journal (`<name>.torn-<offset>`) and reported, never replayed. Any other damage (a bad checksum, a record
that does not decode or whose content has the wrong types or names a venue or instrument the engine
config does not have, valid records after a bad one) is refused with the file, byte offset and
record number, and the journal is left untouched: nothing is ever lost silently.
Every append is handed to the OS at once (it survives the process being killed); durability says
when it is forced to disk (surviving a power loss): "record" every append, "batch" every `batch`
appends, "none" when the OS decides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.core import events as ev
from engine.core.engine_core import EngineCore

MAGIC = "xmc-journal"
VERSION = 2  # 2: a record is [time, type, values...]; 1 (still read): {"t", "e", "f": {name: value}}
DURABILITY = ("none", "batch", "record")
FRAME = struct.Struct(">II")  # each record: body length and CRC-32 of the body, then the body
EVENT_TYPES = {
    cls.__name__: cls
    for cls in (
        ev.Quote,
        ev.ExecReport,
        ev.CancelReject,
        ev.BusinessReject,
        ev.PositionReport,
        ev.SessionUp,
        ev.SessionDown,
        ev.SessionGap,
        ev.TimerFired,
        ev.Command,
        ev.Takeover,
        ev.MarketDataRefused,
    )
}


class JournalError(Exception):
    """The journal cannot be used: it names the file, what is wrong and what to do."""


def fingerprint(config: EngineConfig) -> str:
    """A stable digest of the engine config: a journal only replays into the config that wrote it."""
    return hashlib.sha256(repr(config).encode()).hexdigest()[:32]


# the field names of each journaled event type, and a getter of all their values at once: events are
# flat frozen dataclasses, so no deep copy (dataclasses.asdict's) is needed, and a record that lists
# the values in declaration order needs neither a dict per record nor the field names in every payload
_FIELDS = {name: tuple(f.name for f in dataclasses.fields(cls)) for name, cls in EVENT_TYPES.items()}
_VALUES = {
    name: (lambda event, one=operator.attrgetter(fields[0]): (one(event),))
    if len(fields) == 1
    else operator.attrgetter(*fields)
    for name, fields in _FIELDS.items()
}


def _not_json(value: object) -> object:
    raise TypeError(f"a journal record holds str, int, float, bool or None, not {type(value).__name__}")


# json's C encoder, made once: JSONEncoder.encode builds a new one on every call (and json.dumps a new
# JSONEncoder too), which cost as much as the encoding itself. Same bytes as JSONEncoder(separators=
# (",", ":")): ASCII-escaped strings, floats by repr, NaN allowed; no circular check (records are flat).
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODER = (
    _make_c_encoder(None, _not_json, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    if _make_c_encoder is not None
    else None
)
_JSON = json.JSONEncoder(separators=(",", ":")).encode  # without the C accelerator


def encode(event: ev.Event, now: float) -> bytes:
    """A record's payload (format 2): [time, event type, the event's field values in order]."""
    name = type(event).__name__
    record = [now, name, *_VALUES[name](event)]
    if _C_ENCODER is not None:
        return "".join(_C_ENCODER(record, 0)).encode()
    return _JSON(record).encode()


def decode(payload: bytes) -> tuple[float, ev.Event]:
    """(time, event) of a record's payload in either format; ValueError, KeyError or TypeError when it
    is not one."""
    obj = json.loads(payload)
    if isinstance(obj, dict):  # format 1
        return obj["t"], EVENT_TYPES[obj["e"]](**obj["f"])
    if not isinstance(obj, list) or len(obj) < 2 or not isinstance(obj[1], str):
        raise ValueError("a record is [time, event type, values...]")
    t, name, *values = obj
    fields = _FIELDS[name]
    if len(values) != len(fields):
        raise ValueError(f"{name} has {len(fields)} fields, the record {len(values)} values")
    return t, EVENT_TYPES[name](*values)


def load(payload: bytes, config: EngineConfig | None) -> tuple[float, ev.Event]:
    """(time, event) of a record's payload that decodes, has a finite number for its time and content
    `check_content` finds possible; else ValueError naming what is wrong. What a restart replays and
    what a standby applies from its primary's stream pass this same check."""
    try:
        t, event = decode(payload)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"record does not decode ({type(exc).__name__}: {exc})") from None
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
        raise ValueError(f"its time is {t!r}")
    problem = check_content(event, config)
    if problem:
        raise ValueError(problem)
    return t, event


@dataclass
class Recovered:
    records: list[tuple[float, ev.Event]]
    truncated_bytes: int  # bytes of a torn final record that were cut off (0: clean)
    reason: str = ""
    kept: str = ""  # where the cut bytes were kept


_FIELD_TYPES = {"str": (str,), "float": (int, float), "int": (int,), "bool": (bool,), "None": (type(None),)}


def check_content(event: ev.Event, config: EngineConfig | None) -> str | None:
    """What is impossible about a decoded record's content, or None: every field of the type its
    event declares, and every venue and instrument one the engine config has."""
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        kinds = [k.strip() for k in str(f.type).split("|")]
        if value is None and "None" in kinds:
            continue
        allowed = tuple(t for k in kinds for t in _FIELD_TYPES.get(k, (object,)))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            return f"{type(event).__name__}.{f.name} is {value!r}, not {f.type}"
        if isinstance(value, float) and value != value:
            return f"{type(event).__name__}.{f.name} is NaN"
    if config is not None:
        venues = {i.venue for i in config.instruments.values()}
        venue = getattr(event, "venue", None)
        if venue is not None and venue not in venues:
            return f"{type(event).__name__} names venue {venue!r}, which the engine config does not have"
        instrument = getattr(event, "instrument", None)
        if instrument and instrument not in config.instruments:
            return f"{type(event).__name__} names instrument {instrument!r}, which the engine config does not have"
    return None


def _later_record(data: bytes, start: int) -> int | None:
    """The offset of a whole, valid record that begins after `start`, if any (then the damage at
    `start` is not a torn tail: good records follow it)."""
    found = []
    for opening in (b"[", b'{"t":'):  # how a payload of format 2, or of format 1, begins
        at = data.find(opening, start + 1)
        while at >= 0:
            frame = at - FRAME.size
            if frame > start:
                length, crc = FRAME.unpack_from(data, frame)
                body = data[at : at + length]
                if len(body) == length and zlib.crc32(body) == crc:
                    found.append(frame)
                    break
            at = data.find(opening, at + 1)
    return min(found, default=None)


def read(path: Path, config_fingerprint: str, config: EngineConfig | None = None) -> Recovered:
    """Every record of the journal at `path`; an incomplete final record is reported as a torn tail
    (and not returned). Any other damage raises JournalError naming the byte offset and record."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalError(
            f"{path}: cannot be read as a journal ({exc.strerror or exc}); give the path of an "
            f"xmc journal file, or move it away to start afresh"
        ) from None
    newline = data.find(b"\n")
    if newline < 0:
        raise JournalError(f"{path}: no journal header; it is not an xmc journal (move it away to start afresh)")
    try:
        header = json.loads(data[:newline])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise JournalError(f"{path}: unreadable journal header; it is not an xmc journal") from None
    if not isinstance(header, dict):
        raise JournalError(
            f"{path}: the journal header is a JSON {type(header).__name__}, not an object; "
            f"it is not an xmc journal (move it away to start afresh)"
        )
    if header.get("magic") != MAGIC:
        raise JournalError(f"{path}: not an xmc journal (magic {header.get('magic')!r})")
    if not isinstance(header.get("version", 0), int) or header.get("version", 0) > VERSION:
        raise JournalError(
            f"{path}: journal format version {header['version']} is newer than this xmc "
            f"({VERSION}); run the xmc that wrote it, or upgrade"
        )
    if header.get("config") != config_fingerprint:
        raise JournalError(
            f"{path}: the journal belongs to another engine config (fingerprint "
            f"{header.get('config')}, this config {config_fingerprint}); refusing to trade on it"
        )
    pos, reason = newline + 1, ""
    records: list[tuple[float, ev.Event]] = []

    def damaged(what: str) -> JournalError:
        return JournalError(
            f"{path}: damaged at byte {pos}, record {len(records) + 1}: {what}; the journal is "
            f"left as it is (nothing was cut): restore it from a copy, or move it away and "
            f"reconcile with the venues before trading"
        )

    while pos < len(data):
        torn = ""
        if pos + FRAME.size > len(data):
            torn = "torn record header"
        else:
            length, crc = FRAME.unpack_from(data, pos)
            body = data[pos + FRAME.size : pos + FRAME.size + length]
            if len(body) < length:
                torn = "torn record body"
        if torn:
            later = _later_record(data, pos)
            if later is not None:  # a whole record follows: this is damage inside the journal
                raise damaged(f"{torn}, yet a valid record starts at byte {later}")
            reason = torn
            break
        if zlib.crc32(body) != crc:
            raise damaged("record checksum mismatch")
        try:
            t, event = load(body, config)
        except ValueError as exc:
            raise damaged(str(exc)) from None
        records.append((t, event))
        pos += FRAME.size + length
    return Recovered(records, len(data) - pos, reason)


def cut_torn_tail(path: Path, size: int) -> Path:
    """Cut the last `size` bytes (a torn final record) off the journal, keeping them beside it."""
    end = path.stat().st_size - size
    kept = path.with_name(f"{path.name}.torn-{end}")
    with open(path, "r+b") as fh:
        fh.seek(end)
        kept.write_bytes(fh.read())
        fh.truncate(end)
    return kept


def bodies(path: Path, offset: int = 0) -> tuple[list[bytes], int]:
    """The raw record payloads (as `encode` made them) from byte `offset` on (0: after the header),
    without decoding them, and the offset just after the last whole record: for streaming a
    journal's history to a standby in passes. Stops at a torn or corrupt tail."""
    with open(path, "rb") as fh:
        data = fh.read()
    pos = offset or data.find(b"\n") + 1
    out = []
    while pos + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, pos)
        body = data[pos + FRAME.size : pos + FRAME.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        out.append(body)
        pos += FRAME.size + length
    return out, pos


class Journal:
    """Append-only writer. Opening an existing journal validates it and cuts a bad tail."""

    def __init__(
        self,
        path: str | Path,
        config: EngineConfig,
        durability: str = "none",
        batch: int = 64,
        flush_each: bool = True,
    ):
        if durability not in DURABILITY:
            raise JournalError(f"durability {durability!r}: use one of {', '.join(DURABILITY)}")
        self.path = Path(path)
        self.durability = durability
        self.batch = batch
        # False only for a simulated process (simulator.scratch): its records stay in this process's
        # buffer until sync() or close(), which the simulator calls before anything reads the file
        # (a simulated crash syncs first); a real process hands every record to the OS before it acts
        self.flush_each = flush_each
        self.pending = 0
        self.fingerprint = fingerprint(config)
        self.recovered = Recovered([], 0)
        if self.path.is_dir():
            raise JournalError(f"{self.path}: is a directory; give the path of a journal file")
        if self.path.exists() and self.path.stat().st_size > 0:
            self.recovered = read(self.path, self.fingerprint, config)
            if self.recovered.truncated_bytes:
                self.recovered.kept = str(cut_torn_tail(self.path, self.recovered.truncated_bytes))
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
        self.fh.write(FRAME.pack(len(body), zlib.crc32(body)) + body)
        if self.flush_each:
            self.fh.flush()  # to the OS before the core acts: a killed process loses nothing it acted on
        self.pending += 1
        if self.durability == "record" or (self.durability == "batch" and self.pending >= self.batch):
            self.sync()
        return body

    def torn_append(self, event: ev.Event, now: float, keep: float = 0.5) -> int:
        """Write only the first `keep` share of a record, as a process killed mid-write leaves it
        (fault injection: the simulator's torn_write); returns the bytes written."""
        body = encode(event, now)
        frame = FRAME.pack(len(body), zlib.crc32(body)) + body
        part = frame[: max(1, int(len(frame) * keep))]
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


def replay(core: EngineCore, records: list[tuple[float, ev.Event]]) -> dict[str, float]:
    """Feed journaled events to a fresh core in order (its actions are not carried out again);
    returns the timers still pending afterwards (key -> due time), for the shell to arm."""
    timers: dict[str, float] = {}
    for now, event in records:
        ev.track_timers(timers, event, core.handle(event, now))
    return timers
