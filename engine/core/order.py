"""Child-order state machine: one order's FIX 4.4 OrdStatus life, driven by execution reports.

Rules (everything that moves an order lives in this file):
- The state is the FIX OrdStatus as the engine believes it. Moves are looked up in TRANSITIONS,
  keyed by (state, order event); an order event is derived from a report's ExecType (150) and
  quantities, or is a local request (cancel or replace sent).
- A fill is applied once per ExecID, whatever state it arrives in: quantities never lose a fill.
  CumQty only grows, LeavesQty = OrderQty - CumQty while working and 0 when done, AvgPx is the
  quantity-weighted mean of fills.
- A report the table does not allow, a duplicate ExecID, a CumQty that disagrees with the fills, an
  overfill: each becomes an anomaly naming the order, the state and the event. Never an exception.
- A fill reported after the venue said the order was cancelled or expired (a late trade report, a
  trade correction) is a LATE_FILL: it counts, the order stays done, and it is an anomaly of the
  venue (`late_fill`), not an illegal move of ours; the episode it overfills is repaired by recovery.
- After a cancel reject the order returns to what its fills say (New or PartiallyFilled).
- A replace (OrderCancelReplaceRequest) keeps the order: the engine follows one order through its
  replaces under its current ClOrdID, so Replaced (ExecType 5) returns it to working at the new
  price with its fills, and a refused replace (OrderCancelReject 434=2) returns it unchanged.
  REPLACED is the FIX status of an old ClOrdID; the engine's order never rests in it.
- One request open at a time: a cancel decided while a replace is open is not sent until the
  replace is answered (`cancel_deferred`; the core sends it then), because the venue may rename the
  order first and refuse a cancel naming the ClOrdID the replace superseded; a refused cancel
  changes nothing about a replace still open.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from engine.core.events import ExecReport


class OrdStatus(str, Enum):
    PENDING_NEW = "A"
    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    CANCELED = "4"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    EXPIRED = "C"
    PENDING_REPLACE = "E"
    REPLACED = "5"  # the state of the old order id once a replace took effect


class OrderEvent(str, Enum):
    ACK = "ack"  # ExecType 0 New
    PARTIAL_FILL = "partial_fill"  # ExecType F with CumQty < OrderQty
    FILL = "fill"  # ExecType F with CumQty >= OrderQty
    CANCELED = "canceled"  # ExecType 4
    REJECTED = "rejected"  # ExecType 8
    EXPIRED = "expired"  # ExecType C
    PENDING_CANCEL = "pending_cancel"  # ExecType 6 from the venue
    PENDING_REPLACE = "pending_replace"  # ExecType E from the venue
    REPLACED = "replaced"  # ExecType 5
    STATUS = "status"  # ExecType I (order status) or D (restated): no move of its own
    CANCEL_SENT = "cancel_sent"  # local: we sent OrderCancelRequest
    REPLACE_SENT = "replace_sent"  # local: we sent OrderCancelReplaceRequest
    CANCEL_REJECTED = "cancel_rejected"  # OrderCancelReject (9) of a cancel received
    REPLACE_REJECTED = "replace_rejected"  # a replace refused: OrderCancelReject 434=2, or a reject of the G
    LATE_FILL = "late_fill"  # ExecType F after the venue reported the order Canceled or Expired


S, E = OrdStatus, OrderEvent
TERMINAL: Final = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.REPLACED})
WORKING: Final = frozenset({S.NEW, S.PARTIALLY_FILLED, S.PENDING_CANCEL, S.PENDING_REPLACE, S.PENDING_NEW})
# An acknowledgement that reaches an order already in one of these states was overtaken by the
# order's fills or cancel: it is stale, and says nothing new.
STALE_ACK_STATES: Final = frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED})
# A fill that reaches an order in one of these states came after the venue ended it (LATE_FILL).
LATE_FILL_STATES: Final = frozenset({S.CANCELED, S.EXPIRED})
# The marker RESTORE means: back to NEW or PARTIALLY_FILLED, as the fills say.
RESTORE: Final = "restore"

TRANSITIONS: dict[OrdStatus, dict[OrderEvent, OrdStatus | str]] = {
    S.PENDING_NEW: {
        E.ACK: S.NEW,
        E.REJECTED: S.REJECTED,
        E.PARTIAL_FILL: S.PARTIALLY_FILLED,
        E.FILL: S.FILLED,
        E.CANCELED: S.CANCELED,
        E.EXPIRED: S.EXPIRED,
        E.CANCEL_SENT: S.PENDING_CANCEL,
        E.PENDING_CANCEL: S.PENDING_CANCEL,
        E.STATUS: S.PENDING_NEW,
    },
    S.NEW: {
        E.ACK: S.NEW,
        E.PARTIAL_FILL: S.PARTIALLY_FILLED,
        E.FILL: S.FILLED,
        E.CANCELED: S.CANCELED,
        E.EXPIRED: S.EXPIRED,
        E.CANCEL_SENT: S.PENDING_CANCEL,
        E.REPLACE_SENT: S.PENDING_REPLACE,
        E.PENDING_CANCEL: S.PENDING_CANCEL,
        E.PENDING_REPLACE: S.PENDING_REPLACE,
        E.STATUS: S.NEW,
        # the reject of a cancel that a replace's confirmation overtook (it named the superseded ClOrdID):
        # the order works on as the replace left it
        E.CANCEL_REJECTED: S.NEW,
    },
    S.PARTIALLY_FILLED: {
        E.ACK: S.PARTIALLY_FILLED,
        E.PARTIAL_FILL: S.PARTIALLY_FILLED,
        E.FILL: S.FILLED,
        E.CANCELED: S.CANCELED,
        E.EXPIRED: S.EXPIRED,
        E.CANCEL_SENT: S.PENDING_CANCEL,
        E.REPLACE_SENT: S.PENDING_REPLACE,
        E.PENDING_CANCEL: S.PENDING_CANCEL,
        E.PENDING_REPLACE: S.PENDING_REPLACE,
        E.STATUS: S.PARTIALLY_FILLED,
        E.CANCEL_REJECTED: S.PARTIALLY_FILLED,  # as in NEW: a cancel a replace overtook
    },
    S.PENDING_CANCEL: {
        E.ACK: S.PENDING_CANCEL,
        E.PENDING_CANCEL: S.PENDING_CANCEL,
        E.PARTIAL_FILL: S.PENDING_CANCEL,
        E.FILL: S.FILLED,
        E.CANCELED: S.CANCELED,
        E.EXPIRED: S.EXPIRED,
        E.CANCEL_REJECTED: RESTORE,
        E.REJECTED: S.REJECTED,
        E.STATUS: S.PENDING_CANCEL,
    },
    S.PENDING_REPLACE: {
        E.ACK: S.PENDING_REPLACE,
        E.PENDING_REPLACE: S.PENDING_REPLACE,
        E.PARTIAL_FILL: S.PENDING_REPLACE,
        E.FILL: S.FILLED,
        E.REPLACED: RESTORE,
        E.CANCELED: S.CANCELED,
        E.EXPIRED: S.EXPIRED,
        E.REPLACE_REJECTED: RESTORE,
        # the refusal of a cancel (a stale or duplicated one: the core sends none while a replace is
        # open) leaves the replace open: its answer still renames the order
        E.CANCEL_REJECTED: S.PENDING_REPLACE,
        E.STATUS: S.PENDING_REPLACE,
    },
    # Terminal states accept only status reports, and the acknowledgement a fill or cancel overtook
    # on its way (a stale ack changes nothing); anything else is an anomaly (fills still count).
    S.FILLED: {E.STATUS: S.FILLED, E.ACK: S.FILLED},
    S.CANCELED: {E.STATUS: S.CANCELED, E.ACK: S.CANCELED, E.LATE_FILL: S.CANCELED},
    S.REJECTED: {E.STATUS: S.REJECTED},
    S.EXPIRED: {E.STATUS: S.EXPIRED, E.LATE_FILL: S.EXPIRED},
    S.REPLACED: {E.STATUS: S.REPLACED},
}

# The venue's answer to a status question (ExecType I, or the order found in a mass status) is its
# truth: a working order takes the terminal status the venue names (its fills are applied first, once,
# by the core); an order the engine already believes done keeps its state. An order the engine never
# sent but adopts (a takeover node's, Reconciliation.adopt) starts in the status the venue names.
STATUS_ADOPTION: Final[dict[str, OrdStatus]] = {"2": S.FILLED, "4": S.CANCELED, "8": S.REJECTED, "C": S.EXPIRED}
ADOPTED_START: Final[dict[str, OrdStatus]] = {
    "A": S.PENDING_NEW,
    "0": S.NEW,
    "1": S.PARTIALLY_FILLED,
    "6": S.PENDING_CANCEL,
    "E": S.PENDING_REPLACE,
    **STATUS_ADOPTION,
}

_EXEC_TYPE_EVENTS: Final = {
    "0": E.ACK,
    "4": E.CANCELED,
    "8": E.REJECTED,
    "C": E.EXPIRED,
    "6": E.PENDING_CANCEL,
    "E": E.PENDING_REPLACE,
    "5": E.REPLACED,
    "I": E.STATUS,
    "D": E.STATUS,
}


class ChildOrder:
    """One order the engine sent, with the quantities the venue reported."""

    __slots__ = (
        "cl_ord_id",
        "decision_id",
        "leg",
        "venue",
        "instrument",
        "side",
        "qty",
        "price",
        "state",
        "cum_qty",
        "avg_px",
        "exec_ids",
        "order_id",
        "purpose",
        "pending_replace",
        "replaces",
        "adopted",
        "cancel_deferred",
        "answered",
        "cancelled_unanswered",
    )

    def __init__(
        self,
        cl_ord_id: str,
        decision_id: str,
        leg: str,
        venue: str,
        instrument: str,
        side: str,
        qty: int,
        price: float | None,
        purpose: str,
    ):
        self.cl_ord_id = cl_ord_id
        self.decision_id = decision_id
        self.leg = leg
        self.venue = venue
        self.instrument = instrument
        self.side = side
        self.qty = qty
        self.price = price
        self.state = S.PENDING_NEW
        self.cum_qty = 0.0
        self.avg_px = 0.0
        self.exec_ids: set[str] = set()
        self.order_id = ""
        self.purpose = purpose
        self.pending_replace: tuple[str, float] | None = None  # (new ClOrdID, new price) while a G is open
        self.replaces = 0  # replace requests sent for this order
        self.adopted = False  # sent by an earlier node for an episode this one knows (Reconciliation.adopt)
        self.cancel_deferred = False  # a cancel decided while a replace was open: sent once it is answered
        # the venue reported on the order itself (acknowledged, filled, refused, cancelled, ...), not only
        # through a status answer (ExecType I), which also says "unknown" of an order the venue never got
        self.answered = False
        # the engine asked to cancel it before the venue had reported on it: the venue was too slow to
        # acknowledge it (whatever it answers now, it did not handle the order in time)
        self.cancelled_unanswered = False

    @property
    def leaves_qty(self) -> float:
        return 0.0 if self.state in TERMINAL else max(self.qty - self.cum_qty, 0.0)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def move(self, event: OrderEvent) -> str | None:
        """Apply a local or derived event; returns an anomaly description when the table forbids it."""
        target = TRANSITIONS[self.state].get(event)
        if target is None:
            return f"{event.value} not allowed in state {self.state.name}"
        if target == RESTORE:
            target = S.PARTIALLY_FILLED if self.cum_qty > 0 else S.NEW
        self.state = target  # type: ignore[assignment]
        if event is E.CANCEL_SENT and not self.answered:
            self.cancelled_unanswered = True
        return None

    def end_replace(self, took: bool) -> None:
        """The open replace was answered: it took effect (the order lives on under the replace's ClOrdID
        at its price) or it did not; an order still pending it returns to working, as its fills say."""
        if self.pending_replace is None:
            return
        new_id, price = self.pending_replace
        self.pending_replace = None
        if took:
            self.cl_ord_id, self.price = new_id, price
        if self.state is S.PENDING_REPLACE:
            self.move(E.REPLACED if took else E.REPLACE_REJECTED)  # both allowed there (RESTORE)

    def adopt_status(self, ord_status: str) -> None:
        """The venue's status answer names a terminal status (STATUS_ADOPTION): a working order takes it."""
        target = STATUS_ADOPTION.get(ord_status)
        if target is not None and not self.done:
            self.state = target

    @classmethod
    def from_venue(
        cls,
        cl_ord_id: str,
        decision_id: str,
        leg: str,
        venue: str,
        instrument: str,
        side: str,
        qty: int,
        purpose: str,
        ord_status: str,
        cum_qty: float,
        avg_px: float,
    ) -> ChildOrder:
        """An order an earlier node sent, as the venue reports it (ADOPTED_START; part-filled if it
        says New with fills; New if it names no status the table knows)."""
        order = cls(cl_ord_id, decision_id, leg, venue, instrument, side, qty, None, purpose)
        order.adopted = True
        order.cum_qty, order.avg_px = cum_qty, avg_px
        order.state = ADOPTED_START.get(ord_status, S.NEW)
        if order.state is S.NEW and cum_qty > 1e-9:
            order.state = S.PARTIALLY_FILLED
        return order

    def apply(self, rpt: ExecReport) -> tuple[float, list[tuple[str, str]]]:
        """Apply one execution report. Returns (new fill quantity, [(anomaly kind, detail)])."""
        anomalies: list[tuple[str, str]] = []
        if rpt.exec_id in self.exec_ids:
            return 0.0, [("duplicate_exec_id", f"ExecID {rpt.exec_id} already applied (PossDup={rpt.poss_dup})")]
        self.exec_ids.add(rpt.exec_id)
        self.answered = True  # (a status answer is adopted instead: `adopt_status`, never applied here)
        if rpt.order_id:
            self.order_id = rpt.order_id
        fill = 0.0
        if rpt.exec_type == "F":
            if rpt.last_qty <= 0 or rpt.last_px <= 0:
                anomalies.append(("bad_fill", f"LastQty={rpt.last_qty} LastPx={rpt.last_px} ignored"))
                return 0.0, anomalies
            fill = rpt.last_qty
            new_cum = self.cum_qty + fill
            self.avg_px = (self.avg_px * self.cum_qty + rpt.last_px * fill) / new_cum
            self.cum_qty = new_cum
            if abs(rpt.cum_qty - new_cum) > 1e-9:
                anomalies.append(("cum_qty_mismatch", f"venue CumQty={rpt.cum_qty}, fills sum to {new_cum}"))
            if new_cum > self.qty + 1e-9:
                anomalies.append(("overfill", f"CumQty {new_cum} exceeds OrderQty {self.qty}"))
            event = E.FILL if new_cum >= self.qty - 1e-9 else E.PARTIAL_FILL
            if self.state in LATE_FILL_STATES:
                event = E.LATE_FILL
                anomalies.append(
                    (
                        "late_fill",
                        f"{fill:g} lots reported after the venue ended the order "
                        f"({self.state.name}): CumQty now {new_cum:g}",
                    )
                )
        else:
            known = _EXEC_TYPE_EVENTS.get(rpt.exec_type)
            if known is None:
                anomalies.append(("unknown_exec_type", f"ExecType {rpt.exec_type!r} not understood"))
                return 0.0, anomalies
            event = known
        before = self.state
        problem = self.move(event)
        if problem:
            anomalies.append(("illegal_transition", problem))
        elif (
            rpt.ord_status
            and rpt.ord_status != self.state._value_
            and not (self.state in (S.PENDING_CANCEL, S.PENDING_REPLACE) and rpt.ord_status in ("0", "1"))
            and not (event is E.ACK and before in STALE_ACK_STATES)
            and event is not E.LATE_FILL
        ):
            anomalies.append(("status_mismatch", f"venue OrdStatus={rpt.ord_status}, engine {self.state.name}"))
        return fill, anomalies
