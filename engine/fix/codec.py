"""FIX 4.4 codec of one session: core actions -> quickfix messages, quickfix messages -> core events.

Used by every shell: the simulator frames the messages itself in virtual time; quickfix's session
layer frames them in wire and live mode. Parsing validates against the venue dictionary and turns
each failure into the FIX answer it deserves (session Reject 3 or BusinessMessageReject j).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import zlib
from typing import Any, Final

import _quickfix
import quickfix as fix
import quickfix44 as fix44

from engine.config import GRID_NOISE_ULPS
from engine.core.events import (
    BusinessReject,
    CancelReject,
    Event,
    ExecReport,
    FixSend,
    MarketDataRefused,
    PositionReport,
    Quote,
    SendCancel,
    SendMassStatusRequest,
    SendOrder,
    SendPositionRequest,
    SendReplace,
    SendStatusRequest,
    SendTestRequest,
    Subscribe,
)
from engine.fix.dictionary import DictionaryError, VenueDictionary, load

BEGIN_STRING: Final = "FIX.4.4"
SOH: Final = "\x01"
# The virtual-time clock starts on a Monday at 09:00 Shanghai (01:00 UTC), SHFE's day session.
VIRTUAL_EPOCH: Final = _dt.datetime(2026, 1, 5, 1, 0, 0, tzinfo=_dt.UTC).timestamp()

# quickfix exception -> SessionRejectReason (373)
# received messages that need nothing of the engine's decoder: the session layer's own (a Logon is
# handled by the shells; quickfix, or the virtual-time session, answers the rest)
_NOTHING_TO_DO: Final = frozenset({"0", "1", "2", "4", "5", "A"})
_NO_TOP: Final[tuple[Any, ...]] = (None, 0.0, None, 0.0)  # a symbol's top before any quote: no bid, no offer
_REJECT_REASONS = {
    "InvalidTagNumber": 0,
    "RequiredTagMissing": 1,
    "TagNotDefinedForMessage": 2,
    "NoTagValue": 4,
    "IncorrectTagValue": 5,
    "IncorrectDataFormat": 6,
    "InvalidMessageType": 11,
    "RepeatedTag": 13,
    "TagOutOfOrder": 14,
    "RepeatingGroupCountMismatch": 16,
}
# Repeating groups: quickfix's own classes carry the dictionary's field order, but building that
# order costs ~80 SWIG calls per instance, so each kind is built once and copied (a cheap C++ copy).
_GROUP_CLASSES = {
    ("V", 267): fix44.MarketDataRequest.NoMDEntryTypes,
    ("V", 146): fix44.MarketDataRequest.NoRelatedSym,
    ("W", 268): fix44.MarketDataSnapshotFullRefresh.NoMDEntries,
    ("X", 268): fix44.MarketDataIncrementalRefresh.NoMDEntries,
    ("Y", 816): fix44.MarketDataRequestReject.NoAltMDSource,
    ("AP", 702): fix44.PositionReport.NoPositions,
    ("AP", 753): fix44.PositionReport.NoPosAmt,
}
_GROUP_TEMPLATES = {key: cls() for key, cls in _GROUP_CLASSES.items()}
# A message built only to be written out, or parsed only to be validated, never needs quickfix's
# Python proxy object (its construction costs as much as the C++ parse of a short message): the
# binding's own functions are called on the bare handle, the same C++ calls giving the same bytes.
_new_message = _quickfix.new_Message
_message_text = _quickfix.Message_toString
_delete_message = _quickfix.delete_Message
_validate = _quickfix.DataDictionary_validate


def _wire_text(raw: str, dd: fix.DataDictionary | None) -> str:
    """quickfix's bytes (BodyLength, CheckSum, field order) of a message given as text."""
    handle = _new_message(raw, dd, False) if dd is not None else _new_message(raw, False)
    try:
        return str(_message_text(handle))
    finally:
        _delete_message(handle)


# set by framing (session header, trailer), never by a message body
_FRAMING_TAGS: Final = frozenset({8, 9, 10, 34, 35, 43, 49, 52, 56})
# tags quickfix puts in a message's header or trailer wherever they stand in the text it reads (below
# _LAYOUT_TAG_LIMIT; a tag at or above it is never laid out by xmc): a body holding one is left to quickfix
_LAYOUT_TAG_LIMIT: Final = 10_000
_ENVELOPE_TAGS: Final = frozenset(
    t for t in range(1, _LAYOUT_TAG_LIMIT) if fix.Message.isHeaderField(t) or fix.Message.isTrailerField(t)
)


_SECOND_TEXT: Final[dict[int, str]] = {}  # whole epoch second -> "YYYYMMDD-HH:MM:SS." (most messages share one)
_LAST_TIME: tuple[float, str] = (-1.0, "")  # the last time formatted: messages sent together share it


def fix_time(t: float) -> str:
    """UTCTimestamp with milliseconds for an absolute epoch time (t >= 0).

    The same text as datetime.fromtimestamp(t, UTC) gives (its microseconds rounded half to even,
    carried into the second at 1e6, then cut to milliseconds), with the date and time of each whole
    second formatted once: this runs for every message, in header and body."""
    global _LAST_TIME
    last = _LAST_TIME  # one tuple, read once: a thread that formats another time meanwhile cannot split it
    if last[0] == t:
        return last[1]
    second = int(t)
    us = round((t - second) * 1e6)  # t - second: exactly math.modf's fraction (Sterbenz), without its call
    if us >= 1_000_000:
        second += 1
        us -= 1_000_000
    text = _SECOND_TEXT.get(second)
    if text is None:
        if len(_SECOND_TEXT) >= 4096:
            _SECOND_TEXT.clear()
        text = _SECOND_TEXT[second] = _dt.datetime.fromtimestamp(second, _dt.UTC).strftime("%Y%m%d-%H:%M:%S.")
    text = f"{text}{us // 1000:03d}"
    _LAST_TIME = (t, text)
    return text


_PX_DECIMALS: Final = (6, 7, 8, 9)  # a tick may be as fine as 1e-9 (engine.config)


def fmt_px(px: float) -> str:
    """A price as FIX text (no exponent, no trailing zeros): to the fewest decimals, 6 to 9, that write
    it within float noise, so a price on any tick grid the configuration allows (a tick >= 1e-9) reads
    back on its grid. A value on no such grid (an average price, a settlement reference) is written to
    6 decimals."""
    tolerance = GRID_NOISE_ULPS * math.ulp(px)
    for decimals in _PX_DECIMALS:
        text = f"{px:.{decimals}f}"
        if abs(float(text) - px) <= tolerance:
            break
    else:
        text = f"{px:.6f}"
    return text.rstrip("0").rstrip(".")


def fmt_qty(q: float) -> str:
    return str(int(q)) if float(q).is_integer() else fmt_px(q)


class FixParseError(Exception):
    """A received message that failed: `kind` is garbled (drop it), session (answer 3) or business (answer j)."""

    def __init__(
        self,
        kind: str,
        reason: int,
        text: str,
        msg_type: str = "",
        seq: int = 0,
        ref_tag: int = 0,
        ref_id: str = "",
    ):
        super().__init__(kind, reason, text, msg_type, seq, ref_tag, ref_id)
        self.kind = kind
        self.reason = reason
        self.text = text
        self.msg_type = msg_type
        self.seq = seq
        self.ref_tag = ref_tag
        self.ref_id = ref_id

    def __str__(self) -> str:
        return f"{self.kind} reject ({self.reason}): {self.text}"


class _Unreadable(Exception):
    """A field of a received message whose value the engine cannot read (FixCodec.decode answers it as
    FixParseError): its tag, the SessionRejectReason and what is wrong."""

    def __init__(self, tag: int, reason: int, text: str):
        super().__init__(tag, reason, text)
        self.tag = tag
        self.reason = reason
        self.text = text


# how much of a venue's free Text (58) an event carries into the audit trail, anomalies and alerts: a
# venue may write kilobytes there, and every record of it would carry them again (the whole message
# stays in the message log, so nothing is lost)
TEXT_KEPT: Final = 200
VALUE_SHOWN: Final = 40  # how much of an unreadable value an error names


def _shown(value: str) -> str:
    """An unreadable value as an error names it: quoted, cut to VALUE_SHOWN characters."""
    if len(value) <= VALUE_SHOWN:
        return repr(value)
    return f"{value[:VALUE_SHOWN]!r}... ({len(value)} characters)"


def _fix_float(value: str, tag: int) -> float:
    """A received number (price, quantity) as FIX writes one: ASCII digits with at most one '.' and an
    optional leading '-', and finite; else the field is unreadable. Python's float() also reads '1e5',
    '+5', ' 5', '1_000', 'nan' and other scripts' digits, none of them a FIX number (and a NaN price
    compares false with every limit, so it must never reach the core)."""
    digits = value[1:] if value[:1] == "-" else value
    if not (digits.isascii() and digits.replace(".", "", 1).isdigit()):
        raise _Unreadable(tag, 6, f"tag {tag}: {_shown(value)} is not a number")
    x = float(value)
    if x - x != 0.0:  # digits past a float's range: infinity
        raise _Unreadable(tag, 6, f"tag {tag}: {_shown(value)} is not a finite number")
    return x


def venue_text(msg: Parsed) -> str:
    """The message's Text (58), cut to TEXT_KEPT characters with the length it had when it was longer."""
    text = msg.get(58)
    if len(text) <= TEXT_KEPT:
        return text
    return f"{text[:TEXT_KEPT]}... ({len(text)} characters; the whole message is in the message log)"


def _fix_int(value: str, tag: int) -> int:
    """A received whole number as FIX writes one: ASCII digits with an optional leading '-' (int() also
    reads '+5', ' 5', '1_000' and other scripts' digits); else the field is unreadable."""
    digits = value[1:] if value[:1] == "-" else value
    if not (digits.isascii() and digits.isdigit()):
        raise _Unreadable(tag, 6, f"tag {tag}: {_shown(value)} is not a whole number")
    return int(value)


# the member tags of a NoMDEntries (268) entry in a snapshot (W) and an incremental refresh (X), as
# text, each with its bit in the set of members an entry has shown (`FixCodec._market_data`)
_MD_SNAPSHOT_BITS: Final = {"269": 1, "270": 2, "271": 4}
_MD_INCREMENTAL_BITS: Final = {"279": 1, "269": 2, "55": 4, "270": 8, "271": 16}
_FIELD: Final = re.compile("([0-9]+)=([^\x01]*)\x01")  # one field of a message: tag, value, delimiter


def _compiled() -> bool:
    """Whether this module runs as mypyc's build (its functions are native, without Python code)."""
    return not hasattr(_compiled, "__code__")


_SPLIT_IS_FASTER: Final = _compiled()


def fields_of(raw: str) -> list[tuple[str, str]]:
    """The (tag, value) pairs of a message's text: `_FIELD.findall(raw)`'s pairs, by the faster of two
    readings that give the same (`split_fields`). Compiled (xmc.accel), splitting is about twice as fast
    as the regular expression's scan; as Python bytecode (production's `xmc live`) the scan is faster."""
    return split_fields(raw) if _SPLIT_IS_FASTER else _FIELD.findall(raw)


def split_fields(raw: str) -> list[tuple[str, str]]:
    """The (tag, value) pairs `_FIELD.findall(raw)` gives, by splitting at the delimiters: the same pairs
    for every text made only of fields (digits, '=', a value, the delimiter), and the regular expression's
    own reading of anything else."""
    pieces = raw.split(SOH)
    pairs: list[tuple[str, str]] = []
    ascii_text = raw.isascii()  # then every tag made of digits is made of ASCII digits: one check, not one a field
    for i in range(len(pieces) - 1):  # the text after the last delimiter is no field, as for the expression
        piece = pieces[i]
        eq = piece.find("=")  # the first '=', as partition finds it, without partition's tuple
        tag = piece[:eq]
        if eq <= 0 or not tag.isdigit() or not (ascii_text or tag.isascii()):
            return _FIELD.findall(raw)
        pairs.append((tag, piece[eq + 1 :]))
    return pairs


# the text of each tag number below 1000, made once: a lookup by tag then hashes a string whose hash is
# kept, not a new string per lookup (most of a message's reads)
_TAG_TEXTS: Final = tuple(str(t) for t in range(1000))


def _tag_text(tag: int) -> str:
    return _TAG_TEXTS[tag] if 0 <= tag < 1000 else str(tag)


# (count tag, member tags) of a group -> the count tag, the delimiter and each member as text
_GROUP_TEXT: Final[dict[tuple[int, tuple[int, ...]], tuple[str, str, dict[str, int]]]] = {}


class Parsed:
    """A message quickfix has parsed and validated (or built: what a simulated venue framed), with its
    fields read once from the raw string.

    Reading fields through SWIG costs a call each; after validation a plain split is exact (the
    messages xmc handles carry no raw-data fields), and it keeps the order needed for groups. One
    regular-expression pass reads them all (tags stay text: converting every tag costs more than the
    few lookups a message gets).
    """

    __slots__ = ("_pairs", "_index", "msg_type", "seq")

    def __init__(self, raw: str):
        self._pairs: list[tuple[str, str]] = fields_of(raw)
        self._index: dict[str, str] | None = None  # tag -> value, made at the first lookup by tag
        msg_type = seq = None
        for tag, value in self._pairs:  # the header leads: MsgType and MsgSeqNum come within a few fields
            if tag == "35" and msg_type is None:
                msg_type = value
            elif tag == "34" and seq is None:
                seq = value
            if msg_type is not None and seq is not None:
                break
        self.msg_type = msg_type or ""
        self.seq = int(seq) if seq is not None and seq.isascii() and seq.isdigit() else 0  # FIX digits only

    @property
    def _fields(self) -> dict[str, str]:
        index = self._index
        if index is None:
            index = self._index = dict(reversed(self._pairs))  # a repeated tag: its first value
        return index

    def get(self, tag: int, default: str = "") -> str:
        return self._fields.get(_tag_text(tag), default)

    def has(self, tag: int) -> bool:
        return _tag_text(tag) in self._fields

    def group(self, count_tag: int, members: tuple[int, ...]) -> list[dict[int, str]]:
        """Entries of a repeating group: `members` are its tags, the first the delimiter."""
        key = (count_tag, members)
        texts = _GROUP_TEXT.get(key)
        if texts is None:
            texts = _GROUP_TEXT[key] = (str(count_tag), str(members[0]), {str(m): m for m in members})
        count, first, tags = texts
        entries: list[dict[int, str]] = []
        inside = False
        for text, value in self._pairs:
            if text == count:
                inside = True
            elif inside and text == first:
                entries.append({members[0]: value})
            elif inside and entries and text in tags and tags[text] not in entries[-1]:
                entries[-1][tags[text]] = value
            elif inside and entries:
                break
        return entries


class Draft:
    """A message not built yet: its type and body as FIX text (fields, then groups). quickfix builds it
    in one call, with the session header when it is framed. (A plain class, not a frozen dataclass:
    one is made per message, and compiled (xmc/accel.py) a plain class is made several times faster.)"""

    __slots__ = ("msg_type", "body", "groups", "cl_ord_id", "laid_out")

    def __init__(self, msg_type: str, body: str, groups: bool, cl_ord_id: str | None, laid_out: bool = False):
        self.msg_type = msg_type
        self.body = body
        self.groups = groups  # built against the dictionary, which knows the groups' field order
        self.cl_ord_id = cl_ord_id  # its ClOrdID (11), if it has one
        # its body is already in the order quickfix puts it (a simulated venue's own message): framed by
        # writing the header and computing BodyLength and CheckSum as quickfix does (`laid_out`)
        self.laid_out = laid_out

    def __repr__(self) -> str:
        return f"Draft({self.msg_type!r}, {self.body!r}, {self.groups}, {self.cl_ord_id!r}, {self.laid_out})"


def laid_out(msg: Draft, sender: str, target: str, seq: int, sending_time: str) -> str | None:
    """The wire text of a draft whose body is in quickfix's order: the header in quickfix's order
    (BeginString, BodyLength, MsgType, then by tag number), BodyLength and CheckSum computed as quickfix
    computes them (bytes after BodyLength up to CheckSum; their sum modulo 256). None when that cannot
    be said for sure (a value that is empty or not ASCII): quickfix frames it then."""
    rest = f"35={msg.msg_type}{SOH}34={seq}{SOH}49={sender}{SOH}52={sending_time}{SOH}56={target}{SOH}{msg.body}"
    if not rest.isascii() or f"={SOH}" in rest:
        return None
    text = f"8={BEGIN_STRING}{SOH}9={len(rest)}{SOH}{rest}"
    data = text.encode()
    # Adler-32's low half is 1 + the byte sum modulo 65521: the byte sum itself while it stays below
    # 65520, which ASCII (bytes < 128) guarantees up to 515 bytes; C-fast where sum() walks each byte
    total = (zlib.adler32(data) & 0xFFFF) - 1 if len(data) <= 515 else sum(data)
    return f"{text}10={total & 255:03d}{SOH}"


def msg_type_of(msg: Draft | fix.Message) -> str:
    """MsgType (35) of a draft or a built message."""
    return msg.msg_type if isinstance(msg, Draft) else str(msg.getHeader().getField(35))


def naming_its_order(event: Event, sent: dict[int, str]) -> Event:
    """A session Reject (3) names the message it refuses only by that message's MsgSeqNum (45): the same
    Reject naming the ClOrdID that message carried instead (`sent`: MsgSeqNum -> ClOrdID of the
    application messages this session sent), or "" when it carried none (a Logon, a Heartbeat), which
    the core records as a Reject it cannot match. Every other event is returned as it is."""
    if isinstance(event, BusinessReject) and event.session_level and event.ref_id.isascii() and event.ref_id.isdigit():
        return BusinessReject(
            event.venue,
            event.ref_msg_type,
            sent.get(int(event.ref_id), ""),
            event.reason,
            event.text,
            True,
        )
    return event


class FixCodec:
    """Builds and parses the messages of one session against one venue dictionary."""

    def __init__(
        self, vd: VenueDictionary, sender: str, target: str, symbols: dict[str, str] | None = None, check: bool = True
    ):
        if check:  # False only for check_engine_messages' own probe
            check_engine_messages(vd)
        self.vd = vd
        self.dd = vd.dd
        self.sender = sender
        self.target = target
        self.symbol_to_instrument = {v: k for k, v in (symbols or {}).items()}
        self._md_top: dict[
            str, list[Any]
        ] = {}  # symbol -> [bid, bid_size, ask, ask_size]: floats, a side None when empty

    def forget_book(self) -> None:
        """Market data of this session was lost (a sequence gap): the top its incremental refreshes
        built is no longer the venue's. Each side is unknown until a refresh names it again, so a side
        whose change was lost (the bids withdrawn as the market locked limit-down, in a refresh that
        never came) is not quoted on as if it still stood."""
        self._md_top.clear()

    def fork(self) -> FixCodec:
        """A codec of the same session whose market-data state is its own from now on (two processes
        that shared a session each keep their own view of the book)."""
        twin = FixCodec(self.vd, self.sender, self.target, check=False)
        twin.symbol_to_instrument = self.symbol_to_instrument
        twin._md_top = {symbol: list(top) for symbol, top in self._md_top.items()}
        return twin

    # ---- building ------------------------------------------------------------------------------
    def draft(
        self,
        msg_type: str,
        fields: list[tuple[int, str]] | tuple[tuple[int, str], ...] = (),
        groups: tuple[tuple[int, list[list[tuple[int, str]]]], ...] = (),
        lay_out: bool = False,
    ) -> Draft | fix.Message:
        """A message body: fields, then (count tag, entries) groups, each entry's first tag its delimiter,
        as FIX text for quickfix to build from (`build`, or `frame` with the header in the same call).
        With `lay_out` (a simulated venue's own messages, never the engine's) a body without groups is
        written in quickfix's order, tag by tag number, and framed by `laid_out` to quickfix's bytes.

        One string parsed by quickfix is one call into C++ instead of one per field; quickfix puts
        fields and group members in the dictionary's order either way, so the bytes are the same. A
        value that carries the field delimiter cannot go through text: that message is built field by
        field at once, as a quickfix Message.
        """
        body = dict(fields)
        body.update(self.vd.outbound.get(msg_type, ()))
        if not _FRAMING_TAGS.isdisjoint(body):
            raise ValueError(f"{msg_type} body sets {sorted(_FRAMING_TAGS.intersection(body))}: framing sets those")
        # without groups quickfix orders a body by tag number: laid out in that order, the same bytes
        flat = lay_out and not groups and _ENVELOPE_TAGS.isdisjoint(body) and max(body, default=0) < _LAYOUT_TAG_LIMIT
        parts = [f"{tag}={value}{SOH}" for tag, value in (sorted(body.items()) if flat else body.items())]
        count = len(parts)
        for count_tag, entries in groups:
            if entries:  # an empty group is left out, as addGroup would leave it
                parts.append(f"{count_tag}={len(entries)}{SOH}")
                parts += [f"{t}={v}{SOH}" for entry in entries for t, v in entry]
                count += 1 + sum(len(entry) for entry in entries)
        text = "".join(parts)
        if text.count(SOH) == count:  # no value carries a delimiter that would split it
            return Draft(msg_type, text, bool(groups), body.get(11), flat)
        m = fix.Message()
        m.getHeader().setField(35, msg_type)
        for tag, value in fields:
            m.setField(tag, value)
        for tag, value in self.vd.outbound.get(msg_type, ()):
            m.setField(tag, value)
        for count_tag, entries in groups:
            template = _GROUP_TEMPLATES[(msg_type, count_tag)]
            for entry in entries:
                g = fix.Group(template)
                for t, v in entry:
                    g.setField(t, v)
                m.addGroup(g)
        return m

    def build(self, msg: Draft | fix.Message) -> fix.Message:
        """The quickfix Message of a draft (for quickfix's own session layer, which adds the header)."""
        if not isinstance(msg, Draft):
            return msg
        return self._from_text(f"8={BEGIN_STRING}{SOH}9=0{SOH}35={msg.msg_type}{SOH}{msg.body}10=000{SOH}", msg.groups)

    def _from_text(self, raw: str, groups: bool) -> fix.Message:
        """quickfix parses the message from one string, against the dictionary when it has groups."""
        return fix.Message(raw, self.dd, False) if groups else fix.Message(raw, False)

    def message(
        self,
        msg_type: str,
        fields: list[tuple[int, str]] | tuple[tuple[int, str], ...] = (),
        groups: tuple[tuple[int, list[list[tuple[int, str]]]], ...] = (),
    ) -> fix.Message:
        """The quickfix Message of a body (see `draft`)."""
        return self.build(self.draft(msg_type, fields, groups))

    def frame(self, msg: Draft | fix.Message, seq: int, sending_time: float, poss_dup: bool = False) -> str:
        """Session header and trailer for virtual-time transport; returns the wire string. A draft is
        built by quickfix with its header in one call (BodyLength and CheckSum are quickfix's); a laid-out
        draft (a simulated venue's own message) is written by `laid_out`, to the same bytes."""
        if isinstance(msg, Draft):
            if msg.laid_out and not poss_dup:
                wire = laid_out(msg, self.sender, self.target, seq, fix_time(sending_time))
                if wire is not None:
                    return wire
            dup = f"43=Y{SOH}" if poss_dup else ""
            raw = (
                f"8={BEGIN_STRING}{SOH}9=0{SOH}35={msg.msg_type}{SOH}49={self.sender}{SOH}56={self.target}{SOH}"
                f"34={seq}{SOH}52={fix_time(sending_time)}{SOH}{dup}{msg.body}10=000{SOH}"
            )
            return _wire_text(raw, self.dd if msg.groups else None)
        h = msg.getHeader()
        h.setField(8, BEGIN_STRING)
        h.setField(49, self.sender)
        h.setField(56, self.target)
        h.setField(34, str(seq))
        h.setField(52, fix_time(sending_time))
        if poss_dup:
            h.setField(43, "Y")
        return str(msg.toString())

    def encode(
        self,
        action: FixSend,
        transact_time: float,
    ) -> fix.Message:
        """The FIX message for an engine action."""
        return self.build(self.draft_of(action, transact_time))

    def draft_of(
        self,
        action: FixSend,
        transact_time: float,
    ) -> Draft | fix.Message:
        """The FIX message for an engine action, as a draft (see `draft`)."""
        if isinstance(action, SendOrder):
            fields = [
                (11, action.cl_ord_id),
                (55, action.symbol),
                (54, action.side),
                (60, fix_time(transact_time)),
                (38, fmt_qty(action.qty)),
                (40, action.ord_type),
                (59, action.tif),
            ]
            if action.price is not None:
                fields.append((44, fmt_px(action.price)))
            if action.account:
                fields.append((1, action.account))
            return self.draft("D", fields)
        if isinstance(action, SendCancel):
            fields = [
                (41, action.orig_cl_ord_id),
                (11, action.cl_ord_id),
                (55, action.symbol),
                (54, action.side),
                (60, fix_time(transact_time)),
                (38, fmt_qty(action.qty)),
            ]
            if action.account:
                fields.append((1, action.account))
            return self.draft("F", fields)
        if isinstance(action, SendReplace):
            fields = [
                (41, action.orig_cl_ord_id),
                (11, action.cl_ord_id),
                (55, action.symbol),
                (54, action.side),
                (60, fix_time(transact_time)),
                (38, fmt_qty(action.qty)),
                (40, "2"),
                (44, fmt_px(action.price)),
                (59, action.tif),
            ]
            if action.account:
                fields.append((1, action.account))
            return self.draft("G", fields)
        if isinstance(action, SendMassStatusRequest):
            return self.draft("AF", [(584, action.req_id), (585, "7")])
        if isinstance(action, SendPositionRequest):  # positions (724=0) of our account, as of today
            return self.draft(
                "AN",
                [
                    (710, action.req_id),
                    (724, "0"),
                    (1, action.account or "NONE"),
                    (581, "1"),
                    (715, fix_time(transact_time)[:8]),
                    (60, fix_time(transact_time)),
                ],
            )
        if isinstance(action, SendStatusRequest):
            fields = [(11, action.cl_ord_id), (55, action.symbol), (54, action.side)]
            if action.order_id:
                fields.append((37, action.order_id))
            return self.draft("H", fields)
        if isinstance(action, SendTestRequest):
            return self.draft("1", [(112, action.test_req_id)])
        if isinstance(action, Subscribe):
            return self.draft(
                "V",
                [(262, action.req_id), (263, "1"), (264, "1"), (265, "1")],
                ((267, [[(269, "0")], [(269, "1")]]), (146, [[(55, action.symbol)]])),
            )
        raise TypeError(f"no FIX message for {action!r}")

    # ---- parsing -------------------------------------------------------------------------------
    def parse(self, raw: str) -> Parsed:
        """Parse and validate one wire message; raises FixParseError with the FIX answer's reason."""
        try:
            handle = _new_message(raw, self.dd, True)
        except fix.InvalidMessage as exc:
            raise FixParseError("garbled", 0, str(exc)) from None
        except Exception as exc:  # quickfix raises its own types for unparsable content
            raise FixParseError("garbled", 0, f"{type(exc).__name__}: {exc}") from None
        parsed = Parsed(raw)
        msg_type, seq = parsed.msg_type, parsed.seq
        try:
            _validate(self.dd, handle)
        except Exception as exc:
            name = type(exc).__name__
            if name == "InvalidMessageType" or name == "UnsupportedMessageType":
                raise FixParseError("business", 3, f"unsupported MsgType {msg_type!r}", msg_type, seq) from None
            reason = _REJECT_REASONS.get(name, 99)
            ref_tag = int(getattr(exc, "field", 0) or 0)
            raise FixParseError("session", reason, f"{name}: {exc}", msg_type, seq, ref_tag, parsed.get(11)) from None
        finally:
            _delete_message(handle)
        return parsed

    def decode(self, msg: Parsed, venue: str) -> list[Event]:
        """Core events carried by an application message the engine received. A value the engine cannot
        read (a price that is no finite number, a NoMDEntries entry without its price) raises
        FixParseError("session", ...), answered with a session Reject (`reject_draft`) like a message
        that failed validation: quickfix's dictionary check does not read the values inside groups."""
        try:
            return self._decode(msg, venue)
        except _Unreadable as exc:
            raise FixParseError("session", exc.reason, exc.text, msg.msg_type, msg.seq, exc.tag, msg.get(11)) from None

    def reject_draft(self, err: FixParseError) -> Draft | None:
        """The FIX answer to a received message that failed: session Reject (3) or BusinessMessageReject
        (j); None for a garbled one, which is dropped, never answered (FIX session rules)."""
        if err.kind == "garbled":
            return None
        if err.kind == "session":
            fields = [(45, str(err.seq)), (373, str(err.reason)), (58, err.text[:120])]
            if err.ref_tag:
                fields.append((371, str(err.ref_tag)))
            if err.msg_type:
                fields.append((372, err.msg_type))
            return self.draft("3", fields)
        fields = [(45, str(err.seq)), (372, err.msg_type or "?"), (380, str(err.reason)), (58, err.text[:120])]
        if err.ref_id:
            fields.append((379, err.ref_id))
        return self.draft("j", fields)

    def _decode(self, msg: Parsed, venue: str) -> list[Event]:
        msg_type = msg.msg_type
        if msg_type == "8":
            return [self._exec_report(msg, venue)]
        if msg_type == "9":
            rr = msg.get(102)
            return [
                CancelReject(
                    venue,
                    msg.get(11),
                    msg.get(41),
                    msg.get(39),
                    _fix_int(rr, 102) if rr else None,
                    venue_text(msg),
                    msg.get(434) or "1",
                )
            ]
        if msg_type == "j":
            rr = msg.get(380)
            return [
                BusinessReject(venue, msg.get(372), msg.get(379), _fix_int(rr, 380) if rr else None, venue_text(msg))
            ]
        if msg_type == "3":
            rr = msg.get(373)
            return [
                BusinessReject(
                    venue,
                    msg.get(372),
                    msg.get(379) or msg.get(45),
                    _fix_int(rr, 373) if rr else None,
                    venue_text(msg),
                    session_level=True,
                )
            ]
        if msg_type in ("W", "X"):
            quotes, resent = self._market_data(msg, msg_type == "W")
            # a resend (PossDup, or PossResend) of market data is history, not the market now: it keeps
            # the book's incremental state in sequence, but no quote of it is priced from (a gap filled
            # after a reconnect would otherwise hand the trigger prices from before the outage)
            return [] if resent else quotes
        if msg_type == "AP":  # net of every position quantity it carries
            net = sum(
                _fix_float(e.get(704) or "0", 704) - _fix_float(e.get(705) or "0", 705)
                for e in msg.group(702, (703, 704, 705, 706))
            )
            symbol = msg.get(55)
            return [
                PositionReport(
                    venue,
                    msg.get(710),
                    self.symbol_to_instrument.get(symbol, symbol),
                    net,
                    _fix_int(msg.get(727) or "1", 727),
                    msg.get(728) or "0",
                )
            ]
        if msg_type == "AO":  # an answer with no report to follow: none held, or the venue cannot say
            total = _fix_int(msg.get(727) or "0", 727)
            return [PositionReport(venue, msg.get(710), "", 0.0, total, msg.get(728))] if total == 0 else []
        if msg_type == "Y":  # the venue will not quote this subscription
            return [MarketDataRefused(venue, msg.get(262), msg.get(281), venue_text(msg))]
        if msg_type in _NOTHING_TO_DO:
            return []
        # an application message the engine does not serve: FIX answers it so (BusinessRejectReason 3)
        raise FixParseError(
            "business", 3, f"MsgType {msg_type} is not served by this engine", msg_type, msg.seq, ref_id=msg.get(11)
        )

    def _exec_report(self, msg: Parsed, venue: str) -> ExecReport:
        def num(tag: int) -> float:
            v = msg.get(tag)
            return _fix_float(v, tag) if v else 0.0

        rr = msg.get(103)
        symbol = msg.get(55)
        return ExecReport(
            venue=venue,
            cl_ord_id=msg.get(11),
            orig_cl_ord_id=msg.get(41),
            order_id=msg.get(37),
            exec_id=msg.get(17),
            exec_type=msg.get(150),
            ord_status=msg.get(39),
            instrument=self.symbol_to_instrument.get(symbol, symbol),
            side=msg.get(54),
            order_qty=num(38),
            cum_qty=num(14),
            leaves_qty=num(151),
            last_qty=num(32),
            last_px=num(31),
            avg_px=num(6),
            ord_rej_reason=_fix_int(rr, 103) if rr else None,
            text=venue_text(msg),
            poss_dup=msg.get(43) == "Y" or msg.get(97) == "Y",
            mass_status_id=msg.get(584),
            last_report=msg.get(912) == "Y",
        )

    def _market_data(self, msg: Parsed, snapshot: bool) -> tuple[list[Event], bool]:
        """The quotes a snapshot (W) or incremental refresh (X) leaves, and whether the message is a
        resend (PossDupFlag or PossResend Y). One pass over its fields: the first value of a tag where
        it repeats, and the NoMDEntries (268) entries as `Parsed.group` reads them (an entry starts at
        its first member; a member seen twice in it, or a field of no member, ends the group)."""
        first = "269" if snapshot else "279"
        members = _MD_SNAPSHOT_BITS if snapshot else _MD_INCREMENTAL_BITS
        default_symbol = poss_dup = poss_resend = None
        # each entry as (55, 269, 279, 270, 271), None where it has no such member; `seen` holds the
        # bits of the members the current entry has (one seen twice ends the group)
        entries: list[tuple[str | None, str | None, str | None, str | None, str | None]] = []
        symbol = etype = action = px = size = None
        seen = 0
        inside = ended = False
        for tag, value in msg._pairs:
            if tag == "55":
                if default_symbol is None:
                    default_symbol = value
            elif tag == "43":
                if poss_dup is None:
                    poss_dup = value
            elif tag == "97":
                if poss_resend is None:
                    poss_resend = value
            if ended:
                continue
            if tag == "268":
                inside = True
            elif inside and tag == first:
                if seen:
                    entries.append((symbol, etype, action, px, size))
                symbol = etype = action = px = size = None
                seen = members[tag]
                if snapshot:
                    etype = value
                else:
                    action = value
            elif inside and seen:
                bit = members.get(tag, 0)
                if bit and not seen & bit:
                    seen |= bit
                    if tag == "269":
                        etype = value
                    elif tag == "270":
                        px = value
                    elif tag == "271":
                        size = value
                    elif tag == "55":
                        symbol = value
                    else:
                        action = value
                else:
                    ended = True
        if seen:
            entries.append((symbol, etype, action, px, size))
        # applied to copies of the tops it touches, kept only once every entry has been read: a message
        # refused half-way (an entry it cannot read) leaves the book as it was, not half-changed
        tops: dict[str, list[Any]] = {}
        touched: list[str] = []
        if snapshot and default_symbol and not entries:  # the whole book of the symbol it names: empty
            tops[default_symbol] = [None, 0.0, None, 0.0]
            touched.append(default_symbol)
        for own_symbol, etype, action, px, size in entries:
            symbol = own_symbol or default_symbol or ""
            top = tops.get(symbol)
            if top is None:
                top = tops[symbol] = [None, 0.0, None, 0.0] if snapshot else list(self._md_top.get(symbol, _NO_TOP))
            idx = 0 if etype == "0" else 2 if etype == "1" else None
            if idx is None:
                continue
            if action == "2":
                top[idx], top[idx + 1] = None, 0.0
            else:
                if px is None:
                    raise _Unreadable(270, 1, "an entry that adds or changes a level has no MDEntryPx (270)")
                top[idx] = _fix_float(px, 270)
                top[idx + 1] = _fix_float(size, 271) if size is not None else 0.0
                if top[idx + 1] < 0.0:
                    raise _Unreadable(271, 5, f"tag 271: {_shown(size or '')} is a negative quantity")
            if symbol not in touched:
                touched.append(symbol)
        self._md_top.update(tops)
        quotes: list[Event] = [Quote(self.symbol_to_instrument.get(s, s), *tops[s]) for s in touched]
        return quotes, poss_dup == "Y" or poss_resend == "Y"


_SAMPLE_ACTIONS: tuple[FixSend, ...] = (  # one of each message the engine sends, with every optional field it can carry
    SendOrder("V", "C1", "CU", "CU", "1", 1, 70000.0, "2", "3", "ACCT", "D1"),
    SendOrder("V", "C2", "CU", "CU", "2", 1, None, "1", "3", "ACCT", "D1"),
    SendCancel("V", "C3", "C1", "CU", "CU", "1", 1, "D1", "ACCT"),
    SendReplace("V", "C4", "C1", "CU", "CU", "1", 1, 70010.0, "0", "D1", "ACCT"),
    SendStatusRequest("V", "C1", "O1", "CU", "1"),
    SendMassStatusRequest("V", "R1"),
    SendPositionRequest("V", "R2", "ACCT"),
    SendTestRequest("V", "T1"),
    Subscribe("V", "CU", "CU", "R3"),
)
_ENGINE_MESSAGE_NAMES = {
    "SendOrder": "NewOrderSingle (D)",
    "SendCancel": "OrderCancelRequest (F)",
    "SendReplace": "OrderCancelReplaceRequest (G)",
    "SendStatusRequest": "OrderStatusRequest (H)",
    "SendMassStatusRequest": "OrderMassStatusRequest (AF)",
    "SendPositionRequest": "RequestForPositions (AN)",
    "SendTestRequest": "TestRequest (1)",
    "Subscribe": "MarketDataRequest (V)",
}
_ENGINE_MESSAGES_CHECKED: set[str] = set()  # merged dictionary files whose check passed


def check_engine_messages(vd: VenueDictionary) -> None:
    """DictionaryError naming the overlay unless the venue dictionary `vd` accepts every kind of message
    the engine sends: an overlay that requires a field the engine never sends, or an <outbound> value
    the field's type or enumeration refuses, would have every order rejected by the venue (a session
    Reject the engine treats as fatal) instead of refusing the configuration at start. Checked once per
    merged dictionary, the messages validated as a receiving venue validates them (`FixCodec.parse`)."""
    if str(vd.path) in _ENGINE_MESSAGES_CHECKED:
        return
    probe = FixCodec(vd, "ENGINE", "VENUE", check=False)
    for seq, action in enumerate(_SAMPLE_ACTIONS, 1):
        try:
            probe.parse(probe.frame(probe.draft_of(action, VIRTUAL_EPOCH), seq, VIRTUAL_EPOCH))
        except Exception as exc:  # noqa: BLE001 - FixParseError, or quickfix's own types building it
            kind = f"{_ENGINE_MESSAGE_NAMES[type(action).__name__]} message"
            raise DictionaryError(
                f"{vd.name}: the venue dictionary refuses the engine's own {kind} ({exc}); fix "
                f"fix_specs/{vd.name}.xml: give each <outbound> field a value its type and enumeration accept, "
                f"and make required only fields the engine sends or <outbound> adds"
            ) from None
    _ENGINE_MESSAGES_CHECKED.add(str(vd.path))


def dictionary_problem(name: str) -> str | None:
    """Why venue dictionary `name` cannot be used (its overlay cannot be merged or loaded, or it refuses
    one of the engine's messages), or None: a scenario or live config that names it is refused at load,
    before any process starts or any session logs on."""
    try:
        check_engine_messages(load(name))
    except DictionaryError as exc:
        return str(exc)
    return None
