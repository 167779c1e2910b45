"""What goes into the sans-I/O core (events) and what comes out of it (actions).

Shells (the simulator, the quickfix Application) turn FIX messages and timer fires into events,
call ``EngineCore.handle(event, now)`` and carry out the actions it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


# ---- events ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book of one instrument, as the venue's market data last said."""

    instrument: str
    bid: float | None
    bid_size: float
    ask: float | None
    ask_size: float


@dataclass(frozen=True, slots=True)
class ExecReport:
    """A parsed ExecutionReport (35=8)."""

    venue: str
    cl_ord_id: str
    orig_cl_ord_id: str
    order_id: str
    exec_id: str
    exec_type: str  # tag 150
    ord_status: str  # tag 39
    instrument: str
    side: str
    order_qty: float
    cum_qty: float
    leaves_qty: float
    last_qty: float
    last_px: float
    avg_px: float
    ord_rej_reason: int | None = None
    text: str = ""
    poss_dup: bool = False
    mass_status_id: str = ""  # MassStatusReqID (584): an answer to our OrderMassStatusRequest
    last_report: bool = False  # LastRptRequested (912): the last answer to it


@dataclass(frozen=True, slots=True)
class CancelReject:
    """A parsed OrderCancelReject (35=9)."""

    venue: str
    cl_ord_id: str
    orig_cl_ord_id: str
    ord_status: str
    reason: int | None
    text: str = ""
    response_to: str = "1"  # CxlRejResponseTo (434): "1" the cancel, "2" the cancel/replace was refused


@dataclass(frozen=True, slots=True)
class BusinessReject:
    """A BusinessMessageReject (35=j) or session Reject (35=3) that refers to one of our messages."""

    venue: str
    ref_msg_type: str
    ref_id: str  # BusinessRejectRefID (ClOrdID for orders) when the venue gave one
    reason: int | None
    text: str = ""
    session_level: bool = False


@dataclass(frozen=True, slots=True)
class PositionReport:
    """A PositionReport (AP) answering our RequestForPositions (AN): the venue's net position of our
    account in one instrument (LongQty - ShortQty), one of `total` reports for `req_id`; or a
    RequestForPositionsAck (AO) with no report to follow (`total` 0, `instrument` ""): `result` is
    PosReqResult (728): "0" valid, "2" no positions, anything else the venue could not answer."""

    venue: str
    req_id: str
    instrument: str
    net_qty: float
    total: int = 1
    result: str = "0"


@dataclass(frozen=True, slots=True)
class SessionUp:
    venue: str


@dataclass(frozen=True, slots=True)
class SessionDown:
    venue: str


@dataclass(frozen=True, slots=True)
class SessionGap:
    """Messages from the venue were lost or are late (its session saw a sequence gap and asked for
    them again): its books may be behind, so none is fresh until the venue's next live quote."""

    venue: str


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: str


@dataclass(frozen=True, slots=True)
class Command:
    """An operator command: "kill" (cancel everything, stop new episodes) or "resume"."""

    name: str


@dataclass(frozen=True, slots=True)
class Takeover:
    """This node became the active one under fencing epoch `epoch` (its lease's revision): every
    order it sends from now carries that epoch; every venue is reconciled before new risk."""

    epoch: int


@dataclass(frozen=True, slots=True)
class MarketDataRefused:
    """A MarketDataRequestReject (35=Y): the venue will send no quotes for the subscription `req_id`."""

    venue: str
    req_id: str
    reason: str  # MDReqRejReason (281) as sent, "" when the venue gave none
    text: str = ""


Event = (
    Quote
    | ExecReport
    | CancelReject
    | BusinessReject
    | PositionReport
    | SessionUp
    | SessionDown
    | SessionGap
    | TimerFired
    | Command
    | Takeover
    | MarketDataRefused
)


# ---- actions --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendOrder:
    venue: str
    cl_ord_id: str
    instrument: str
    symbol: str
    side: str  # FIX 54: "1" buy, "2" sell
    qty: int
    price: float | None
    ord_type: str  # FIX 40: "1" market, "2" limit
    tif: str  # FIX 59: "0" day, "3" IOC, "4" FOK
    account: str
    decision_id: str


@dataclass(frozen=True, slots=True)
class SendCancel:
    venue: str
    cl_ord_id: str
    orig_cl_ord_id: str
    instrument: str
    symbol: str
    side: str
    qty: int
    decision_id: str
    account: str = ""


@dataclass(frozen=True, slots=True)
class SendReplace:
    """OrderCancelReplaceRequest (G): the working order `orig_cl_ord_id` at a new price, same quantity."""

    venue: str
    cl_ord_id: str
    orig_cl_ord_id: str
    instrument: str
    symbol: str
    side: str
    qty: int
    price: float
    tif: str
    decision_id: str
    account: str = ""


@dataclass(frozen=True, slots=True)
class SendMassStatusRequest:
    """OrderMassStatusRequest (AF), all orders: the venue reports every order of this session."""

    venue: str
    req_id: str


@dataclass(frozen=True, slots=True)
class SendPositionRequest:
    """RequestForPositions (AN), PosReqType 0: the venue reports our account's position in each of
    its instruments (PositionReport AP), after a restart or a takeover."""

    venue: str
    req_id: str
    account: str


@dataclass(frozen=True, slots=True)
class SendStatusRequest:
    """OrderStatusRequest (H): what does the venue say about this order now?"""

    venue: str
    cl_ord_id: str
    order_id: str
    symbol: str
    side: str


@dataclass(frozen=True, slots=True)
class SendTestRequest:
    """TestRequest (1): a probe of the session itself. Its answer is a Heartbeat naming `test_req_id`;
    sent when status questions go unanswered, its MsgSeqNum shows the venue a gap that nothing else
    would (every message about an order lost and nothing else sent there)."""

    venue: str
    test_req_id: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    venue: str
    instrument: str
    symbol: str
    req_id: str


@dataclass(frozen=True, slots=True)
class SetTimer:
    at: float
    key: str


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: str


@dataclass(frozen=True, slots=True)
class Audit:
    """One audit-trail row: a decision stage or an order event, with the core's time."""

    ts: float
    stage: str
    decision_id: str = ""
    cl_ord_id: str = ""
    instrument: str = ""
    account: str = ""
    side: str = ""
    qty: float = 0.0
    price: float = 0.0
    detail: str = ""


class TimerKind(StrEnum):
    """What a timer of the core is for; its key is "<kind>:<subject>" (as journaled and replicated)."""

    TIMEOUT = "timeout"  # an episode's orders worked too long: cancel what is working (subject: decision)
    LEGGED = "legged"  # a legged episode's chase time is spent: unwind (subject: decision)
    AMEND = "amend"  # move a lagging resting leg toward the market (subject: decision)
    STATUS = "status"  # a venue's status answers are overdue (subject: venue)
    ANSWER = "answer"  # is a cancel or replace still unanswered? (subject: the request's ClOrdID)
    ACK = "ack"  # is a new order still unanswered? (subject: its ClOrdID; engine/core/ack_watch.py)
    PROBE = "probe"  # set by no version now (a question's TestRequest goes with it); read from older journals
    QUOTES = (
        "quotes"  # a legged episode's budget is spent while it waits for fresh quotes: escalate (subject: decision)
    )


def timer_key(kind: TimerKind, subject: str) -> str:
    return f"{kind}:{subject}"


def parse_timer_key(key: str) -> tuple[TimerKind | None, str]:
    """(kind, subject) of a timer key; kind None for a key no timer of the core sets."""
    kind, _, subject = key.partition(":")
    return (TimerKind(kind) if kind in TimerKind._value2member_map_ else None), subject


class AuditRow(NamedTuple):
    """An Audit as the dispatcher records it: numbered, every field set (engine.report.AUDIT_COLUMNS)."""

    seq: int
    ts: float
    stage: str
    decision_id: str
    cl_ord_id: str
    instrument: str
    account: str
    side: str
    qty: float
    price: float
    detail: str


@dataclass(frozen=True, slots=True)
class Alert:
    ts: float
    level: str
    text: str
    decision_id: str = ""


# Every kind of anomaly the engine and its shells record (Anomaly.kind), and what each means; a
# scenario's [expect] anomalies_at_least / anomalies_at_most name kinds from here.
ANOMALY_KINDS: dict[str, str] = {
    "duplicate_exec_id": "an execution report whose ExecID was applied already (a resend or a duplicate): ignored",
    "bad_fill": "a fill of no quantity or no price: ignored",
    "cum_qty_mismatch": "a report's CumQty differs from the sum of the order's fills",
    "overfill": "fills beyond an order's quantity, or an episode's legs past their targets",
    "late_fill": "a fill after the venue reported the order Canceled or Expired: it counts, the order stays done",
    "status_mismatch": "a report's OrdStatus differs from the state the order's table reached",
    "unknown_exec_type": "an execution report with an ExecType the engine does not know: ignored",
    "illegal_transition": "a report or request the order's table does not allow in its state",
    "illegal_episode_transition": "an episode event its table does not allow in its state",
    "reject_unmatched": "a session or business reject that names no order the engine sent",
    "unknown_order": "a report or cancel reject for an order no node of this engine sent",
    "unknown_instrument": "a quote for an instrument the engine does not trade or price from",
    "unknown_command": "an operator command the engine does not know",
    "stale_takeover": "a takeover whose epoch is not above the node's own",
    "position_mismatch": "a venue's positions differ from the engine's once reconciled: the desk is paged",
    "fill_from_status": "a fill the engine learnt only from a status answer (its report never came)",
    "engine_error": "the core (or xmc live's shell) raised while handling an event: recorded with the traceback, orders stop",
    "fix_garbled": "a received message quickfix could not parse: dropped",
    "fix_session": "a received message that breaks the session rules: answered with a session Reject (3)",
    "fix_business": "a received message the engine cannot act on: answered with a BusinessMessageReject (j)",
    "crossed_book": "a venue's best bid above its own best offer (a data error): not priced from until it uncrosses",
    "md_refused": "a venue refused a market data subscription: no quotes, so no episode on its instrument (the desk is alerted)",
    "sequence_gap": "a received MsgSeqNum beyond the next expected: a ResendRequest was sent",
    "send_failed": "a message quickfix refused to send",
}


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something a counterparty did that the rules do not allow: recorded, never a crash."""

    ts: float
    kind: str
    cl_ord_id: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict, compare=False)


# the actions a shell turns into FIX messages on the venue's session
# what a node that no longer holds the lease must not send (checked where orders leave a node)
FENCED_SENDS = frozenset({SendOrder, SendCancel, SendReplace})
FIX_SENDS = frozenset(
    {
        SendOrder,
        SendCancel,
        SendReplace,
        SendStatusRequest,
        SendMassStatusRequest,
        SendPositionRequest,
        SendTestRequest,
        Subscribe,
    }
)
# FIX_SENDS as a type: the engine's own FIX messages (engine.fix.codec writes each)
FixSend = (
    SendOrder
    | SendCancel
    | SendReplace
    | SendStatusRequest
    | SendMassStatusRequest
    | SendPositionRequest
    | SendTestRequest
    | Subscribe
)
Action = FixSend | SetTimer | CancelTimer | Audit | Alert | Anomaly


def track_timers(timers: dict[str, float], event: Event, actions: list[Action]) -> None:
    """Keep `timers` (key -> due time) as the timers pending after the core handled `event` with these
    `actions`: the timer that fired is gone (the shell that fired it dropped it: a journal's replay or
    a standby following the stream must drop it too, or the node taking over fires it a second time),
    then each SetTimer arms and each CancelTimer disarms its key, in order."""
    if type(event) is TimerFired:
        timers.pop(event.key, None)
    for a in actions:
        if type(a) is SetTimer:
            timers[a.key] = a.at
        elif type(a) is CancelTimer:
            timers.pop(a.key, None)
