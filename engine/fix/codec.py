"""FIX 4.4 codec of one session: core actions -> quickfix messages, quickfix messages -> core events.

Used by every shell: the simulator frames the messages itself in virtual time; quickfix's session
layer frames them in wire and live mode. Parsing validates against the venue dictionary and turns
each failure into the FIX answer it deserves (session Reject 3 or BusinessMessageReject j).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import quickfix as fix
import quickfix44 as fix44

from engine.events import BusinessReject, CancelReject, Event, ExecReport, Quote, SendCancel, SendOrder, Subscribe
from engine.fix.dictionary import VenueDictionary

BEGIN_STRING = "FIX.4.4"
SOH = "\x01"
# The virtual-time clock starts on a Monday at 09:00 Shanghai (01:00 UTC), SHFE's day session.
VIRTUAL_EPOCH = _dt.datetime(2026, 1, 5, 1, 0, 0, tzinfo=_dt.UTC).timestamp()

# quickfix exception -> SessionRejectReason (373)
_REJECT_REASONS = {
    "InvalidTagNumber": 0, "RequiredTagMissing": 1, "TagNotDefinedForMessage": 2, "NoTagValue": 4,
    "IncorrectTagValue": 5, "IncorrectDataFormat": 6, "InvalidMessageType": 11, "RepeatedTag": 13,
    "TagOutOfOrder": 14, "RepeatingGroupCountMismatch": 16,
}
# Repeating groups built with quickfix's own classes, which carry the dictionary's field order.
GROUPS = {
    ("V", 267): fix44.MarketDataRequest.NoMDEntryTypes,
    ("V", 146): fix44.MarketDataRequest.NoRelatedSym,
    ("W", 268): fix44.MarketDataSnapshotFullRefresh.NoMDEntries,
    ("X", 268): fix44.MarketDataIncrementalRefresh.NoMDEntries,
    ("Y", 816): fix44.MarketDataRequestReject.NoAltMDSource,
}


def fix_time(t: float) -> str:
    """UTCTimestamp with milliseconds for an absolute epoch time."""
    d = _dt.datetime.fromtimestamp(t, _dt.UTC)
    return d.strftime("%Y%m%d-%H:%M:%S.") + f"{d.microsecond // 1000:03d}"


def fmt_px(px: float) -> str:
    return f"{px:.6f}".rstrip("0").rstrip(".")


def fmt_qty(q: float) -> str:
    return str(int(q)) if float(q).is_integer() else fmt_px(q)


@dataclass(frozen=True, slots=True)
class FixParseError(Exception):
    """A received message that failed: `kind` is garbled (drop it), session (answer 3) or business (answer j)."""

    kind: str
    reason: int
    text: str
    msg_type: str = ""
    seq: int = 0
    ref_tag: int = 0
    ref_id: str = ""

    def __str__(self) -> str:
        return f"{self.kind} reject ({self.reason}): {self.text}"


def get(msg: fix.Message, tag: int, default: str = "") -> str:
    return msg.getField(tag) if msg.isSetField(tag) else default


class FixCodec:
    """Builds and parses the messages of one session against one venue dictionary."""

    def __init__(self, vd: VenueDictionary, sender: str, target: str, symbols: dict[str, str] | None = None):
        self.vd = vd
        self.dd = vd.dd
        self.sender = sender
        self.target = target
        self.symbol_to_instrument = {v: k for k, v in (symbols or {}).items()}
        self._md_top: dict[str, list] = {}  # symbol -> [bid, bid_size, ask, ask_size]

    # ---- building ------------------------------------------------------------------------------
    def message(self, msg_type: str, fields: list[tuple[int, str]] | tuple = (),
                groups: tuple[tuple[int, int, list[list[tuple[int, str]]]], ...] = ()) -> fix.Message:
        """A message body: fields in order, then (count tag, delimiter tag, entries) groups."""
        m = fix.Message()
        m.getHeader().setField(35, msg_type)
        for tag, value in fields:
            m.setField(tag, value)
        for tag, value in self.vd.outbound.get(msg_type, ()):
            m.setField(tag, value)
        for count_tag, entries in groups:
            make = GROUPS[(msg_type, count_tag)]
            for entry in entries:
                g = make()
                for t, v in entry:
                    g.setField(t, v)
                m.addGroup(g)
        return m

    def frame(self, msg: fix.Message, seq: int, sending_time: float, poss_dup: bool = False) -> str:
        """Session header and trailer for virtual-time transport; returns the wire string."""
        h = msg.getHeader()
        h.setField(8, BEGIN_STRING)
        h.setField(49, self.sender)
        h.setField(56, self.target)
        h.setField(34, str(seq))
        h.setField(52, fix_time(sending_time))
        if poss_dup:
            h.setField(43, "Y")
        return msg.toString()

    def encode(self, action: SendOrder | SendCancel | Subscribe, transact_time: float) -> fix.Message:
        """The FIX message for an engine action."""
        if isinstance(action, SendOrder):
            fields = [(11, action.cl_ord_id), (55, action.symbol), (54, action.side),
                      (60, fix_time(transact_time)), (38, fmt_qty(action.qty)), (40, action.ord_type),
                      (59, action.tif)]
            if action.price is not None:
                fields.append((44, fmt_px(action.price)))
            if action.account:
                fields.append((1, action.account))
            return self.message("D", fields)
        if isinstance(action, SendCancel):
            fields = [(41, action.orig_cl_ord_id), (11, action.cl_ord_id), (55, action.symbol),
                      (54, action.side), (60, fix_time(transact_time)), (38, fmt_qty(action.qty))]
            if action.account:
                fields.append((1, action.account))
            return self.message("F", fields)
        if isinstance(action, Subscribe):
            return self.message("V", [(262, action.req_id), (263, "1"), (264, "1"), (265, "1")],
                                ((267, [[(269, "0")], [(269, "1")]]), (146, [[(55, action.symbol)]])))
        raise TypeError(f"no FIX message for {action!r}")

    # ---- parsing -------------------------------------------------------------------------------
    def parse(self, raw: str) -> fix.Message:
        """Parse and validate one wire message; raises FixParseError with the FIX answer's reason."""
        try:
            msg = fix.Message(raw, self.dd, True)
        except fix.InvalidMessage as exc:
            raise FixParseError("garbled", 0, str(exc)) from None
        except Exception as exc:  # quickfix raises its own types for unparsable content
            raise FixParseError("garbled", 0, f"{type(exc).__name__}: {exc}") from None
        header = msg.getHeader()
        msg_type = get(header, 35)
        seq = int(get(header, 34, "0") or 0) if get(header, 34, "0").isdigit() else 0
        try:
            self.dd.validate(msg)
        except Exception as exc:
            name = type(exc).__name__
            if name == "InvalidMessageType" or name == "UnsupportedMessageType":
                raise FixParseError("business", 3, f"unsupported MsgType {msg_type!r}", msg_type, seq) from None
            reason = _REJECT_REASONS.get(name, 99)
            ref_tag = int(getattr(exc, "field", 0) or 0)
            raise FixParseError("session", reason, f"{name}: {exc}", msg_type, seq, ref_tag,
                                get(msg, 11)) from None
        return msg

    def decode(self, msg: fix.Message, venue: str) -> list[Event]:
        """Core events carried by an application message the engine received."""
        msg_type = get(msg.getHeader(), 35)
        if msg_type == "8":
            return [self._exec_report(msg, venue)]
        if msg_type == "9":
            rr = get(msg, 102)
            return [CancelReject(venue, get(msg, 11), get(msg, 41), get(msg, 39), int(rr) if rr else None,
                                 get(msg, 58))]
        if msg_type == "j":
            rr = get(msg, 380)
            return [BusinessReject(venue, get(msg, 372), get(msg, 379), int(rr) if rr else None, get(msg, 58))]
        if msg_type == "3":
            rr = get(msg, 373)
            return [BusinessReject(venue, get(msg, 372), get(msg, 379) or get(msg, 45), int(rr) if rr else None,
                                   get(msg, 58), session_level=True)]
        if msg_type in ("W", "X"):
            return self._market_data(msg, msg_type == "W")
        return []

    def _exec_report(self, msg: fix.Message, venue: str) -> ExecReport:
        def num(tag: int) -> float:
            v = get(msg, tag)
            return float(v) if v else 0.0

        rr = get(msg, 103)
        symbol = get(msg, 55)
        return ExecReport(
            venue=venue, cl_ord_id=get(msg, 11), orig_cl_ord_id=get(msg, 41), order_id=get(msg, 37),
            exec_id=get(msg, 17), exec_type=get(msg, 150), ord_status=get(msg, 39),
            instrument=self.symbol_to_instrument.get(symbol, symbol), side=get(msg, 54), order_qty=num(38),
            cum_qty=num(14), leaves_qty=num(151), last_qty=num(32), last_px=num(31), avg_px=num(6),
            ord_rej_reason=int(rr) if rr else None, text=get(msg, 58),
            poss_dup=get(msg.getHeader(), 43) == "Y" or get(msg.getHeader(), 97) == "Y",
        )

    def _market_data(self, msg: fix.Message, snapshot: bool) -> list[Event]:
        n = int(get(msg, 268, "0") or 0)
        group = GROUPS[("W" if snapshot else "X", 268)]()
        touched: list[str] = []
        default_symbol = get(msg, 55)
        for i in range(1, n + 1):
            msg.getGroup(i, group)
            symbol = get(group, 55) or default_symbol
            top = self._md_top.setdefault(symbol, [None, 0.0, None, 0.0])
            if snapshot and symbol not in touched:
                top[:] = [None, 0.0, None, 0.0]
            etype = get(group, 269)
            action = get(group, 279, "0")
            idx = 0 if etype == "0" else 2 if etype == "1" else None
            if idx is None:
                continue
            if action == "2":
                top[idx], top[idx + 1] = None, 0.0
            else:
                top[idx] = float(get(group, 270))
                top[idx + 1] = float(get(group, 271, "0"))
            if symbol not in touched:
                touched.append(symbol)
        return [Quote(self.symbol_to_instrument.get(s, s), *self._md_top[s]) for s in touched]
