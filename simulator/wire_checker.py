"""Safety invariants computed from the FIX messages each venue actually received and sent, independent
of the engine's own state (simulator/checkers.py checks that state; this checks what reached the world).

It sees only: every application message a venue applied (after its session layer, so PossDup
resends that a venue executes are included), every message a venue sent to the engine, every
order message the engine's session put on the wire (with its send time), the venue's own book, the
lease (whose revision is the fencing epoch) and the scenario's configuration. From those alone:

- W1 every message either side sends is ASCII (no field here declares a MessageEncoding);
- W2 nothing is sent for an episode (NewOrderSingle, replace, cancel) after the engine called it terminal
  (a session-layer PossDup resend is judged at its first send);
- W3 entry legs follow the lot ratio and rounding rule, the residual within one lot of the larger contract;
- W5 every order, cancel or replace a venue accepts carries the epoch that held the lease when it
  arrived, or was put on the wire while its epoch held the lease outside the fence's margin (sent
  by the holder, then held on the way past a takeover: the new node's reconciliation finds it);
  session-layer resends included, each judged at its own send;
- W6 positions from the fills the venues reported (each ExecID once) equal the engine's positions;
- W8 every order's price is within the risk band of a defined reference: the venue's two-sided mid
  at arrival or any published in the second before it, else the last two-sided mid it had;
- W9 no unwind fill changes the sign of its decision's position in that instrument;
- W10 at the end, every decision the engine ended is what the venues' fills say: BALANCED holds
  exactly its entry quantities (more only with overfill = "record"), UNWOUND and ABORTED hold
  nothing; only an episode escalated to the desk may hold anything else;
- W11 no new risk on a venue that is not reconciled: no NewOrderSingle reaches a venue while a status
  question the engine asked there since its last logon (H, AF, AN) has not been answered in full by
  the venue (its last status report, its position reports, or a reject of the question; for a
  question asked about an order a cancel or replace had named, also a report that ended the order,
  sent before or after the question or the cancel, under any ClOrdID a confirmed replace gave it:
  the engine's rule, as such an order trades no more).
  A PossDup resend is not a new decision (W5 judges those).
- W12 the venue is a faithful counterparty: every ExecutionReport it sends agrees with itself (OrdStatus
  with ExecType and with CumQty, LeavesQty and OrderQty; a fill of some lots at a price within the
  order's limit; the side, symbol, quantity and price the order, or the replace that renamed it,
  asked for) and with the order's earlier reports in the order the venue made them (by ExecID:
  CumQty never falls and grows by at least each fill's LastQty; AvgPx is the fills' volume-weighted
  price whenever the fills seen add up to CumQty). A failure here accuses the simulated venue, not
  the engine: a certification against a venue that misreports proves nothing.

A violation names the message: venue, MsgSeqNum, ClOrdID, and the run's replay command is added
by the report.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from engine.config import EngineConfig, grid_slack
from engine.fix.codec import SOH, fmt_px
from engine.shell.lease import FENCE_MARGIN

WIRE_NAMES = {
    "W1": "on the wire: only ASCII (no field carries text without a MessageEncoding)",
    "W2": "on the wire: nothing sent for an episode after it is terminal",
    "W3": "on the wire: entry legs follow the lot ratio, residual within one lot",
    "W5": "on the wire: every order a venue accepts carries the lease's epoch",
    "W6": "on the wire: positions from venue fills = the engine's",
    "W8": "on the wire: every order priced within the band of a defined reference",
    "W9": "on the wire: an unwind never flips its decision's position",
    "W10": "on the wire: every ended decision's fills are balanced or flat as the engine says",
    "W11": "on the wire: no new order to a venue before it has answered every status question",
    "W12": "on the wire: every execution report a venue sends agrees with itself and with the order's earlier reports",
}
# OrdStatus (39) values that end an order (nothing left: LeavesQty 0), and those each ExecType (150) may
# carry (a status answer, I, carries any)
ENDED: Final = frozenset({"2", "3", "4", "8", "C"})
STATUS_FOR: Final = {"0": ("0",), "4": ("4",), "8": ("8",), "F": ("1", "2"), "5": ("0", "1", "2")}
_EXEC_NO: Final = re.compile(r"(\d+)$")  # the venue numbers its ExecIDs in the order it makes its reports
AVG_PX_EPS: Final = 1e-6  # an average price (on no tick grid) travels with six decimals
# the status questions of a reconciliation, and the tag that names each: OrderStatusRequest by
# ClOrdID, OrderMassStatusRequest by MassStatusReqID, RequestForPositions by PosReqID
QUESTION_ID: Final = {"H": 11, "AF": 584, "AN": 710}
FINAL_STATUS: Final = frozenset({"2", "4", "8", "C"})  # OrdStatus of an order that trades no more
# engine ClOrdIDs: decision E<epoch>-<6 digits>, leg, order number, purpose letter, then any cancel
# (C<n>) or replace (M<n>) suffix, and the epoch suffix of a later node
_CL: Final = re.compile(r"^(E\d+-\d{6})([AB])(\d+)([RUH]?)")
_EPOCH_SUFFIX: Final = re.compile(r"-E(\d+)$")  # compiled once: epoch_in reads every order the venues apply
_EPOCH_PREFIX: Final = re.compile(r"E(\d+)-")
# MsgType fields as they stand in a message's text (written once, not per message read)
_LOGON: Final = f"{SOH}35=A{SOH}"
_EXECUTION_REPORT: Final = f"{SOH}35=8{SOH}"
_ORDER_MESSAGES: Final = tuple((mt, f"{SOH}35={mt}{SOH}") for mt in ("D", "F", "G"))
REFERENCE_WINDOW: Final = 1.0  # seconds of published mids an order's price may be measured against


# tag text -> its number, for the tags seen so far: a run reads the same few dozen tags thousands of times
_TAG_NUMBERS: Final[dict[str, int]] = {}
_TAG_NUMBERS_MAX: Final = 4096  # texts kept at most (a garbled message cannot grow it without bound)


def fields_of(raw: str) -> dict[int, str]:
    """Tag -> first value of a raw FIX message (enough for messages without repeating groups)."""
    out: dict[int, str] = {}
    numbers = _TAG_NUMBERS
    for part in raw.split(SOH):
        eq = part.find("=")  # the first '=', as partition finds it, without partition's tuple
        tag = part if eq < 0 else part[:eq]
        key = numbers.get(tag)
        if key is None:
            if not (tag.isdigit() and tag.isascii()):  # a digit int() cannot read (e.g. superscript) is no tag
                continue
            key = int(tag)
            if len(numbers) < _TAG_NUMBERS_MAX:
                numbers[tag] = key
        if key not in out:
            out[key] = "" if eq < 0 else part[eq + 1 :]
    return out


def _is_fix_int(text: str) -> bool:
    """ASCII digits only, as FIX writes a sequence number (str.isdigit also takes '²', which int() refuses)."""
    return text.isascii() and text.isdigit()


# the terms an order (or a replace) asked for: Side, Symbol, OrderQty and Price as the engine wrote them
# (None where absent), and OrderQty and Price as numbers, read once (NaN where the text is no number,
# which no report's number equals)
Terms = tuple[str | None, str | None, str | None, str | None, float, float]


def asked_terms(side: str | None, symbol: str | None, qty: str | None, price: str | None) -> Terms:
    return side, symbol, qty, price, _number_or_nan(qty), _number_or_nan(price)


def _number_or_nan(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _seq(f: dict[int, str]) -> int:
    """A message's MsgSeqNum (34), 0 when it has none FIX could write (a failure names it as it can)."""
    text = f.get(34) or ""
    return int(text) if _is_fix_int(text) else 0


def epoch_in(cl_ord_id: str) -> int | None:
    """The fencing epoch a ClOrdID carries: its suffix -E<n> when a later node stamped it, else its prefix.
    Written from the ClOrdID contract on purpose rather than calling engine.core.engine_core.epoch_of: the checker
    must not share the code it checks."""
    suffix = _EPOCH_SUFFIX.search(cl_ord_id)
    if suffix:
        return int(suffix.group(1))
    prefix = _EPOCH_PREFIX.match(cl_ord_id)
    return int(prefix.group(1)) if prefix else None


def _said(status: str, cum: float, leaves: float, qty: float | None) -> str:
    """What a report says of its quantities, as a W12 failure quotes it (formatted only for a report
    found wrong: most reports are right)."""
    return f"OrdStatus {status}, CumQty {cum:g}, LeavesQty {leaves:g}, OrderQty {'-' if qty is None else f'{qty:g}'}"


@dataclass
class WireVerdict:
    status: str = "unknown"
    first: dict = field(default_factory=dict)


class WireChecker:
    def __init__(self, engine: EngineConfig, venue_symbols: dict[tuple[str, str], str], lease=None):
        self.cfg = engine
        self.instrument = venue_symbols  # (venue, symbol) -> instrument name
        self.lease = lease  # failover runs: the lease whose revision is the epoch; None: the config's
        self.v = {k: WireVerdict() for k in WIRE_NAMES}
        # instrument -> (t, mid): each mid the venue's two-sided book showed, at the last time it showed it
        # (a mid shown again at once is one entry, its time moved on)
        self.mids: dict[str, deque] = {}
        self.last_mid: dict[str, float] = {}
        self.exec_ids: set[tuple[str, str]] = set()
        self.positions: dict[str, float] = {}
        self.counted: dict[tuple[str, str], float] = {}  # (venue, OrderID) -> CumQty counted in positions
        self.decision_pos: dict[tuple[str, str], float] = {}  # (decision, instrument) -> signed lots
        self.entries: dict[str, dict[str, tuple[int, str, int]]] = {}  # decision -> leg -> (qty, venue, seq)
        self.entry_sides: dict[str, dict[str, tuple[str, str]]] = {}  # decision -> leg -> (instrument, side)
        self.sends: list[tuple[float, str, int, str, str]] = []  # (t, venue, seq, MsgType, ClOrdID) engine->venue
        self.first_sent: dict[tuple[str, int], float] = {}  # (venue, MsgSeqNum) -> when the engine first sent it
        # W5: (venue, MsgSeqNum, ClOrdID, PossDup) -> every send of it was made while its epoch held the
        # lease outside the fence's margin (what a correct fence lets out)
        self.fenced_in: dict[tuple[str, int, str, bool], bool] = {}
        # W8: (venue, MsgSeqNum) -> the references when the engine first sent that priced order or replace:
        # a PossDup resend of it carries the price decided then, and is judged against those too
        self.refs_at_send: dict[tuple[str, int], list[float]] = {}
        # W11: venue -> (MsgType, id) -> (t asked, MsgSeqNum) of status questions not yet answered in
        # full since the engine's last logon there; position reports counted per (venue, PosReqID)
        self.questions: dict[str, dict[tuple[str, str], tuple[float, int]]] = {}
        self.question_seq: dict[tuple[str, int], tuple[str, str]] = {}
        # (venue, OrderID) -> the status question that named that order: the venue answers under the
        # order's current ClOrdID, which a replace confirmed after the question was sent has changed
        self.question_order: dict[tuple[str, str], tuple[str, str]] = {}
        self.position_reports: dict[tuple[str, str], int] = {}
        # the engine's own rule (Reconciliation.answered_by_a_final_report): a status question asked about
        # an order because its cancel or replace went unanswered is answered by a report that ended the
        # order (it trades no more), whether that report crossed the question or followed it. An order
        # is named by the ClOrdID it was entered under (its root): a replace the venue confirmed
        # (ExecType 5) renames it, and it may end under any of its names. Since the venue's last logon:
        # the orders a cancel or replace named, the orders the venue reported ended (every one, as a
        # cancel may reach the venue after the order's end), and the questions asked about named orders
        # not yet ended (a venue's message other than an ExecutionReport is parsed only while a question
        # is open there)
        self.root_of: dict[tuple[str, str], str] = {}  # (venue, ClOrdID a replace gave) -> root
        self.cancel_named: set[tuple[str, str]] = set()
        self.ended: set[tuple[str, str]] = set()
        self.cancel_questions: dict[tuple[str, str], set[tuple[str, str]]] = {}
        # W12: (venue, ExecID) of every report judged (a PossDup resend or PossResend copy is judged
        # once), and per (venue, OrderID) its reports as (ExecID number, CumQty, LastQty, LastPx), sorted
        self.reports_seen: set[tuple[str, str]] = set()
        self.order_reports: dict[tuple[str, str], list[tuple[int, float, float, float]]] = {}
        # (venue, ClOrdID) -> the terms of the order or replace the venue applied under it (`Terms`)
        self.terms: dict[tuple[str, str], Terms] = {}

    # ---- verdicts -------------------------------------------------------------------------------
    def _ok(self, key: str) -> None:
        if self.v[key].status == "unknown":
            self.v[key].status = "pass"

    def _fail(self, key: str, now: float, venue: str, seq: int, cl_ord_id: str, detail: str) -> None:
        if self.v[key].status != "fail":
            m = _CL.match(cl_ord_id)
            self.v[key] = WireVerdict(
                "fail",
                {
                    "t": now,
                    "decision_id": m.group(1) if m else "",
                    "venue": venue,
                    "seq": seq,
                    "cl_ord_id": cl_ord_id,
                    "detail": f"{venue} MsgSeqNum {seq} ClOrdID {cl_ord_id}: {detail}",
                },
            )

    # ---- what the venues show and receive ---------------------------------------------------------
    def on_top(self, venue: str, symbol: str, bid: float | None, ask: float | None, now: float) -> None:
        """The venue's best bid and offer (prices) at `now`: the reference for price bands."""
        if bid is None or ask is None:
            return
        name = self.instrument.get((venue, symbol))
        if name is None:
            return
        mid = (bid + ask) / 2.0
        q = self.mids.get(name)
        if q is None:
            q = self.mids[name] = deque()
        if q and q[-1][1] == mid:
            # the same mid again (most re-quotes): its latest time is all the window reads of it
            q[-1] = (now, mid)
        else:
            q.append((now, mid))
        while len(q) > 1 and q[1][0] <= now - REFERENCE_WINDOW:
            q.popleft()
        self.last_mid[name] = mid

    def _references(self, name: str, now: float) -> list[float]:
        q = self.mids.get(name)
        if not q:
            return []
        return [mid for t, mid in q if t >= now - REFERENCE_WINDOW] or [q[-1][1]]

    def received(self, venue: str, msg, now: float) -> None:
        """An application message the venue applied (a `Parsed` from its session layer)."""
        mt = msg.msg_type
        if mt in QUESTION_ID:
            key = (mt, msg.get(QUESTION_ID[mt]))
            self.questions.setdefault(venue, {})[key] = (now, msg.seq)
            self.question_seq[venue, msg.seq] = key
            if mt == "H" and msg.get(37, "NONE") != "NONE":  # a replace may rename the order before it is answered
                self.question_order[venue, msg.get(37)] = key
            if mt == "H":
                order = (venue, self.root_of.get((venue, key[1]), key[1]))
                if order in self.cancel_named and order in self.ended:
                    del self.questions[venue][key]  # answered already: the order's final report crossed it
                elif order in self.cancel_named:
                    self.cancel_questions.setdefault(order, set()).add(key)
            return
        if mt not in ("D", "F", "G"):
            return
        cl = msg.get(11)
        if mt != "D" and msg.has(41):
            self.cancel_named.add((venue, self.root_of.get((venue, msg.get(41)), msg.get(41))))
        seq = msg.seq
        if mt != "F":  # W12: the terms the venue's reports under this ClOrdID must carry
            if (venue, cl) not in self.terms:
                self.terms[venue, cl] = asked_terms(msg.get(54), msg.get(55), msg.get(38), msg.get(44))
        if mt == "D" and msg.get(43) != "Y":
            self._reconciled_before(venue, seq, cl, now)
        epoch = epoch_in(cl)
        current = self.lease.revision if self.lease is not None else self.cfg.epoch
        resend = " (a PossDup resend)" if msg.get(43) == "Y" else ""
        if epoch is None:
            self._fail("W5", now, venue, seq, cl, "carries no fencing epoch")
        elif epoch < current and not self.fenced_in.get((venue, seq, cl, msg.get(43) == "Y"), False):
            self._fail(
                "W5",
                now,
                venue,
                seq,
                cl,
                f"{ {'D': 'order', 'F': 'cancel', 'G': 'replace'}[mt] } of fenced "
                f"epoch {epoch} accepted while epoch {current} holds the lease{resend}, "
                f"{'put on the wire when its epoch no longer held it' if (venue, seq, cl, bool(resend)) in self.fenced_in else 'never seen leaving the engine'}",
            )
        else:
            self._ok("W5")
        if mt == "F":
            return
        name = self.instrument.get((venue, msg.get(55)))
        if name is None:
            return
        if msg.has(44):
            price = float(msg.get(44))
            # the engine priced it when it first sent it: the mids of the second before that send count
            # as well as those before its arrival (a resend by the session layer, or an order held on
            # the way by a slow link while the market jumped past the band)
            refs = self.refs_at_send.get((venue, seq), []) + self._references(name, now)
            band = self.cfg.risk.price_band_pct
            if not refs:
                self._fail(
                    "W8", now, venue, seq, cl, f"priced at {fmt_px(price)} before {name} ever had a two-sided book"
                )
            else:
                dev = min(abs(price - r) / r * 100.0 for r in refs)
                if dev > band + 1e-9:
                    self._fail(
                        "W8",
                        now,
                        venue,
                        seq,
                        cl,
                        f"price {fmt_px(price)} is {dev:.2f}% from {name}'s reference {fmt_px(refs[-1])} (band {band}%)",
                    )
                else:
                    self._ok("W8")
        m = _CL.match(cl)
        if mt == "D" and m is not None and m.group(3) == "1" and m.group(4) == "":
            self.entries.setdefault(m.group(1), {})[m.group(2)] = (int(float(msg.get(38, "0"))), venue, seq)
            name = self.instrument.get((venue, msg.get(55)))
            if name is not None:
                self.entry_sides.setdefault(m.group(1), {})[m.group(2)] = (name, msg.get(54))

    def _reconciled_before(self, venue: str, seq: int, cl: str, now: float) -> None:
        open_ = self.questions.get(venue)
        if not open_:
            self._ok("W11")
            return
        (mt, qid), (t, qseq) = next(iter(open_.items()))
        what = {"H": "OrderStatusRequest", "AF": "OrderMassStatusRequest", "AN": "RequestForPositions"}[mt]
        self._fail(
            "W11",
            now,
            venue,
            seq,
            cl,
            f"new order while {len(open_)} status question(s) were unanswered, "
            f"the first {what} {qid} (MsgSeqNum {qseq}, asked "
            f"{1e3 * (now - t):.1f} ms before): new risk before reconciliation",
        )

    def _answers(self, venue: str, raw: str, report: dict[int, str] | None) -> None:
        """W11: close the status questions this message of the venue answers in full (`report`: its
        fields when it is an ExecutionReport)."""
        open_ = self.questions.get(venue)
        if raw.find(_LOGON, 0, 40) >= 0:  # a new logon: the engine asks again whatever it still needs
            self.questions[venue] = {}
            self.position_reports = {k: n for k, n in self.position_reports.items() if k[0] != venue}
            for since_logon in (self.cancel_named, self.ended):  # the logon's questions need answers
                since_logon.difference_update({k for k in since_logon if k[0] == venue})
            self.cancel_questions = {k: q for k, q in self.cancel_questions.items() if k[0] != venue}
            return
        if report is not None and report.get(150) != "I":
            self._order_named_or_ended(venue, report, open_)
        if not open_:
            return
        f = report if report is not None else fields_of(raw)
        mt = f.get(35)
        if mt == "8" and f.get(150) == "I":
            if 584 in f:
                if f.get(912) == "Y":
                    open_.pop(("AF", f[584]), None)
            elif open_.pop(("H", f.get(11, "")), None) is None:  # asked under a ClOrdID since replaced
                asked = self.question_order.get((venue, f.get(37, "")))
                if asked is not None:
                    open_.pop(asked, None)
        elif mt == "AP":
            key = (venue, f.get(710, ""))
            self.position_reports[key] = self.position_reports.get(key, 0) + 1
            total = f.get(727) or "1"
            if self.position_reports[key] >= (int(total) if _is_fix_int(total) else 1):
                open_.pop(("AN", f.get(710, "")), None)
        elif mt == "AO":
            open_.pop(("AN", f.get(710, "")), None)
        elif mt in ("3", "j") and _is_fix_int(f.get(45) or ""):
            asked = self.question_seq.get((venue, int(f[45])))
            if asked is not None:
                open_.pop(asked, None)

    def _order_named_or_ended(self, venue: str, f: dict[int, str], open_: dict | None) -> None:
        """A replace's confirmation renames its order; a report that ended an order answers the
        questions asked about it after a cancel or replace named it."""
        cl, orig = f.get(11, ""), f.get(41, "")
        if f.get(150) == "5" and orig:
            root = self.root_of.get((venue, orig), orig)
            self.root_of[venue, cl] = root
            for held in (self.cancel_named, self.ended):  # anything known under the new name is the order's
                if (venue, cl) in held:
                    held.discard((venue, cl))
                    held.add((venue, root))
            if (venue, cl) in self.cancel_questions:
                self.cancel_questions.setdefault((venue, root), set()).update(self.cancel_questions.pop((venue, cl)))
        if f.get(39) not in FINAL_STATUS:
            return
        name = orig or cl  # a cancel's confirmation names the order in OrigClOrdID
        order = (venue, self.root_of.get((venue, name), name))
        self.ended.add(order)
        for key in self.cancel_questions.pop(order, ()):
            if open_:
                open_.pop(key, None)

    def venue_sent(self, venue: str, raw: str, now: float) -> None:
        """A message the venue sent to the engine (resends included): fills are counted once per order by
        CumQty, from fill reports and status answers alike."""
        self._ascii(venue, raw, now)
        f = fields_of(raw) if _EXECUTION_REPORT in raw else None
        self._answers(venue, raw, f)
        if f is None:
            return
        if (venue, f.get(17, "")) not in self.reports_seen:
            self.reports_seen.add((venue, f.get(17, "")))
            self._report_agrees(venue, f, now)
        if f.get(150) not in ("F", "I"):
            return
        key = (venue, f.get(17, ""))
        if key in self.exec_ids:
            return
        self.exec_ids.add(key)
        name = self.instrument.get((venue, f.get(55, "")))
        if name is None:
            return
        # an order's fills counted so far, by its CumQty: a fill report adds what its CumQty says is new
        # (a status answer counted it already if the report comes later), and a status answer adds what
        # no fill report told (a fill whose report the venue never sent: the session was down and its
        # gateway kept nothing), so the venue's positions are what its messages say, whichever carried it
        oid = f.get(37, "")
        order = (venue, oid if oid and oid != "NONE" else f.get(11, ""))
        counted = self.counted.get(order, 0.0)
        try:
            cum = float(f.get(14, "0") or 0)
        except ValueError:
            return  # W12 names the report
        if cum <= counted + 1e-9:
            return
        self.counted[order] = cum
        qty = (cum - counted) * (1 if f.get(54) == "1" else -1)
        self.positions[name] = self.positions.get(name, 0.0) + qty
        cl = f.get(11, "")
        m = _CL.match(cl)
        if m is None:
            return
        dk = (m.group(1), name)
        before = self.decision_pos.get(dk, 0.0)
        after = self.decision_pos[dk] = before + qty
        if m.group(4) == "U":
            if before * after < -1e-9 or (abs(before) < 1e-9 and abs(after) > 1e-9):
                self._fail(
                    "W9",
                    now,
                    venue,
                    _seq(f),
                    cl,
                    f"unwind fill of {abs(qty):g} lots took decision {m.group(1)}'s {name} position "
                    f"from {before:+g} to {after:+g}",
                )
            else:
                self._ok("W9")

    def _report_agrees(self, venue: str, f: dict[int, str], now: float) -> None:
        """W12: one ExecutionReport the venue made, against itself and its order's other reports."""
        exec_type, status = f.get(150, ""), f.get(39, "")
        try:
            cum, leaves = float(f.get(14) or 0), float(f.get(151) or 0)
            qty = float(f[38]) if f.get(38) else None
            last, last_px = float(f.get(32) or 0), float(f.get(31) or 0)
            limit = float(f[44]) if f.get(44) else None
        except ValueError as err:
            return self._fail_report(venue, f, now, f"a quantity or price that is no number ({err})")
        wrong = None
        if exec_type in STATUS_FOR and status not in STATUS_FOR[exec_type]:
            wrong = f"ExecType {exec_type} with OrdStatus {status}"
        elif cum < 0 or leaves < 0:
            wrong = f"a negative quantity ({_said(status, cum, leaves, qty)})"
        elif status in ENDED and leaves != 0:
            wrong = f"an ended order with something left ({_said(status, cum, leaves, qty)})"
        elif qty is not None and status not in ENDED and abs(cum + leaves - qty) > 1e-9:
            wrong = f"CumQty and LeavesQty do not make OrderQty ({_said(status, cum, leaves, qty)})"
        elif qty is not None and cum > qty + 1e-9:
            wrong = f"more filled than ordered ({_said(status, cum, leaves, qty)})"
        elif status in ("0", "A", "8") and cum != 0:
            wrong = f"an order {'rejected' if status == '8' else 'new'} with fills ({_said(status, cum, leaves, qty)})"
        elif qty is not None and status == "1" and not 0 < cum < qty:
            wrong = f"partly filled, yet not ({_said(status, cum, leaves, qty)})"
        elif qty is not None and status == "2" and abs(cum - qty) > 1e-9:
            wrong = f"filled, yet not all of it ({_said(status, cum, leaves, qty)})"
        elif qty is not None and status == "4" and cum >= qty - 1e-9:
            wrong = f"cancelled with every lot filled ({_said(status, cum, leaves, qty)})"
        elif exec_type == "F" and (last <= 0 or last_px <= 0 or last > cum + 1e-9):
            wrong = f"a fill of {last:g} lots at {fmt_px(last_px)} ({_said(status, cum, leaves, qty)})"
        elif (
            exec_type == "F"
            and limit is not None
            and (last_px - limit if f.get(54) == "1" else limit - last_px) > self._px_slack(venue, f, limit)
        ):  # through its limit: above it for a buy, below it for a sell
            wrong = f"a {'buy' if f.get(54) == '1' else 'sell'} order limited at {fmt_px(limit)} filled at {fmt_px(last_px)}"
        oid = f.get(37, "")
        asked = self.terms.get((venue, f.get(11, ""))) if exec_type in ("0", "5", "F", "I") and oid != "NONE" else None
        if wrong is None and asked is not None:
            wrong = self._other_terms(f, asked, qty, limit, self._px_slack(venue, f, limit or 0.0))
        if wrong is not None:
            return self._fail_report(venue, f, now, wrong)
        found = _EXEC_NO.search(f.get(17, ""))
        if not oid or oid == "NONE" or found is None:
            self._ok("W12")
            return
        history = self.order_reports.setdefault((venue, oid), [])
        this = (int(found.group(1)), cum, last if exec_type == "F" else 0.0, last_px)
        at = bisect.bisect(history, this)
        history.insert(at, this)
        pairs = [(history[i], history[i + 1]) for i in (at - 1, at) if 0 <= i and i + 1 < len(history)]
        for (_, cum_a, _, _), (_, cum_b, last_b, _) in pairs:
            if cum_b + 1e-9 < cum_a + last_b:
                why = "CumQty fell" if cum_b < cum_a else f"a fill of {last_b:g} lots added {cum_b - cum_a:g}"
                return self._fail_report(venue, f, now, f"{why}: CumQty {cum_a:g} then {cum_b:g} (in ExecID order)")
        filled = sum(r[2] for r in history[: at + 1])
        if filled and abs(filled - cum) < 1e-9 and f.get(6):
            vwap = sum(r[2] * r[3] for r in history[: at + 1]) / filled
            avg = float(f[6])
            if abs(avg - vwap) > 2 * AVG_PX_EPS + abs(vwap) * 1e-12:  # rounded to six decimals
                return self._fail_report(venue, f, now, f"AvgPx {fmt_px(avg)}, but its fills' average is {vwap:.6f}")
        self._ok("W12")

    def _px_slack(self, venue: str, f: dict[int, str], price: float) -> float:
        """How far two prices of the report's instrument read from the wire may differ and still be one
        price: its grid's slack (`engine.config.grid_slack`) on each side, as a price travels with as
        many decimals as its tick needs (a fixed 1e-6 let a fill a thousand 1e-9 ticks through its
        limit pass); half a millionth where the symbol is not the engine's (no tick known)."""
        name = self.instrument.get((venue, f.get(55, "")))
        inst = self.cfg.instruments.get(name) if name is not None else None
        return 2 * grid_slack(inst.tick, price) if inst is not None else AVG_PX_EPS / 2

    @staticmethod
    def _other_terms(
        f: dict[int, str], asked: Terms, qty: float | None, price: float | None, px_slack: float
    ) -> str | None:
        """W12: where a report of an order (or of its replace) carries terms other than those it asked for
        (prices the same to `px_slack`, quantities to 1e-9); `qty` and `price` are the report's OrderQty
        and Price as numbers (None where the tag is empty or absent)."""
        side, symbol, qty_text, price_text, want_qty, want_price = asked
        got = f.get(54)
        if side is not None and got is not None and got != side:
            return f"Side {got} where the order asked for {side}"
        got = f.get(55)
        if symbol is not None and got is not None and got != symbol:
            return f"Symbol {got} where the order asked for {symbol}"
        got = f.get(38)  # a report whose OrderQty is empty carries none the order asked for
        if qty_text is not None and got is not None and (qty is None or not abs(qty - want_qty) <= 1e-9):
            return f"OrderQty {got} where the order asked for {qty_text}"
        got = f.get(44)  # a market order has no price; a replace may leave the price as it was
        if price_text is not None and got is not None and (price is None or not abs(price - want_price) <= px_slack):
            return f"Price {got} where the order asked for {price_text}"
        return None

    def _fail_report(self, venue: str, f: dict[int, str], now: float, detail: str) -> None:
        self._fail(
            "W12",
            now,
            venue,
            _seq(f),
            f.get(11, ""),
            f"ExecutionReport {f.get(17, '?')} (ExecType {f.get(150, '?')}) from the venue: {detail}",
        )

    def _ascii(self, venue: str, raw: str, now: float) -> None:
        if raw.isascii():
            self._ok("W1")
            return
        f = fields_of(raw)
        bad = next(c for c in raw if not c.isascii())
        self._fail(
            "W1",
            now,
            venue,
            _seq(f),
            f.get(11, ""),
            f"MsgType {f.get(35)} carries {bad!r}, which no field without a MessageEncoding may",
        )

    def engine_sent(self, venue: str, raw: str, now: float) -> None:
        """A message the engine's session put on the wire (first sends and resends)."""
        self._ascii(venue, raw, now)
        for mt, text in _ORDER_MESSAGES:
            if text in raw:
                f = fields_of(raw)
                seq = _seq(f)
                cl = f.get(11, "")
                key = (venue, seq, cl, f.get(43) == "Y")
                self.fenced_in[key] = self.fenced_in.get(key, True) and self._lease_held_by(epoch_in(cl), now)
                if f.get(43) == "Y" and (venue, seq) in self.first_sent:
                    # a session-layer resend (PossDup) carries what the engine decided at its first send:
                    # W2 judges it there (a cancel resent after its order filled is no new decision)
                    self.sends.append((self.first_sent[venue, seq], venue, seq, mt, f.get(11, "")))
                else:
                    self.first_sent.setdefault((venue, seq), now)
                    self.sends.append((now, venue, seq, mt, f.get(11, "")))
                name = self.instrument.get((venue, f.get(55, "")))
                if mt != "F" and f.get(43) != "Y" and name is not None:
                    self.refs_at_send[venue, seq] = self._references(name, now)
                return

    def _lease_held_by(self, epoch: int | None, now: float) -> bool:
        """`epoch` holds the lease now with more than the fence's margin left: what a node may send on
        (engine.shell.lease.may_send, which renews inside the margin before it sends)."""
        lease = self.lease
        if lease is None:
            return epoch == self.cfg.epoch
        return epoch == lease.revision and lease.holder is not None and now < lease.expires - lease.ttl * FENCE_MARGIN

    # ---- at the end of the run --------------------------------------------------------------------
    def _ended_as_said(self, outcomes: dict[str, str]) -> None:
        """W10: what each ended decision holds at the venues, from their fills alone, against its outcome."""
        record = self.cfg.strategy.recovery.overfill == "record"
        for decision, sides in self.entry_sides.items():
            outcome = outcomes.get(decision)
            legs = self.entries.get(decision, {})
            if outcome not in ("BALANCED", "UNWOUND", "ABORTED") or set(sides) != {"A", "B"} or set(legs) != {"A", "B"}:
                continue  # escalated to the desk, still open (invariant 2), or a decision this node never knew
            held, want = {}, {}
            for leg, (name, side) in sides.items():
                sign = 1 if side == "1" else -1
                held[leg] = sign * self.decision_pos.get((decision, name), 0.0)  # in the leg's own direction
                want[leg] = legs[leg][0] if outcome == "BALANCED" else 0
            ok = all(
                abs(held[k] - want[k]) < 1e-9 or (record and outcome == "BALANCED" and held[k] > want[k])
                for k in ("A", "B")
            )
            if ok:
                self._ok("W10")
                continue
            qty, venue, seq = legs["A"]
            self._fail(
                "W10",
                0.0,
                venue,
                seq,
                f"{decision}A1",
                f"decision {decision} ended {outcome} but the venues' fills hold leg A {held['A']:+g} / "
                f"leg B {held['B']:+g} lots (its entries {legs['A'][0]} / {legs['B'][0]})",
            )

    def finish(
        self,
        engine_positions: dict[str, float],
        closed: dict[str, list[tuple[float, float]]],
        outcomes: dict[str, str] | None = None,
    ) -> dict:
        """`closed`: per decision, the windows (from, to) in which the engine held it ended: from each
        terminal move to its reopening by a late fill, and from the last one on (to = inf)."""
        for t, venue, seq, mt, cl in self.sends:
            m = _CL.match(cl)
            if m is None:
                continue
            end = next((a for a, b in closed.get(m.group(1), ()) if a + 1e-9 < t < b), None)
            if end is not None:
                what = {"D": "NewOrderSingle", "F": "OrderCancelRequest", "G": "OrderCancelReplaceRequest"}[mt]
                self._fail(
                    "W2",
                    t,
                    venue,
                    seq,
                    cl,
                    f"{what} sent {1e3 * (t - end):.3f} ms after its episode {m.group(1)} was terminal",
                )
            else:
                self._ok("W2")
        s = self.cfg.strategy
        a, b = self.cfg.instruments[s.leg_a], self.cfg.instruments[s.leg_b]
        r0, r1 = s.lot_ratio
        for decision, legs in self.entries.items():
            if "A" not in legs or "B" not in legs:
                continue
            (qa, venue, seq), (qb, _, _) = legs["A"], legs["B"]
            exact = qa * r1 / r0
            rounded = {"up": math.ceil(exact - 1e-9), "down": math.floor(exact + 1e-9)}.get(
                s.rounding, math.floor(exact + 0.5)
            )
            want_b = max(rounded, 1)
            residual = abs(qa * a.lot_tonnes - qb * b.lot_tonnes)
            cl = f"{decision}A1"
            if qb != want_b:
                self._fail(
                    "W3",
                    0.0,
                    venue,
                    seq,
                    cl,
                    f"legs {qa}:{qb} lots, the ratio {r0}:{r1} rounded {s.rounding} wants {qa}:{want_b}",
                )
            elif residual > max(a.lot_tonnes, b.lot_tonnes) + 1e-9:
                self._fail(
                    "W3",
                    0.0,
                    venue,
                    seq,
                    cl,
                    f"residual {residual:.3f} t is more than one lot ({max(a.lot_tonnes, b.lot_tonnes):.3f} t)",
                )
            else:
                self._ok("W3")
        self._ended_as_said(outcomes or {})
        mine = {k: v for k, v in self.positions.items() if abs(v) > 1e-9}
        theirs = {k: v for k, v in engine_positions.items() if abs(v) > 1e-9}
        if mine != theirs:
            self.v["W6"] = WireVerdict(
                "fail",
                {
                    "t": 0.0,
                    "decision_id": "",
                    "detail": f"fills the venues reported {mine} != engine positions {theirs}",
                },
            )
        elif self.exec_ids:
            self._ok("W6")
        return {
            k: {"name": WIRE_NAMES[k], "status": v.status, **({"first": v.first} if v.first else {})}
            for k, v in self.v.items()
        }
