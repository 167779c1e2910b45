"""The ClOrdID scheme: a child order's id names its decision, leg, order number and purpose, and
carries the fencing epoch of the node that sent it; sides as signs."""

from __future__ import annotations

import re

BUY, SELL = "1", "2"
TIF = {"ioc": "3", "limit": "0"}  # TimeInForce (59) of each execution mode
_EPOCH_SUFFIX = re.compile(r"-E(\d+)$")
_EPOCH_PREFIX = re.compile(r"E(\d+)-")
PURPOSE_TAG = {"entry": "", "chase": "R", "unwind": "U", "overfill_hedge": "H"}
# a child order's ClOrdID: decision id, leg, order number in the leg, purpose letter, epoch suffix
CHILD_ID = re.compile(r"^(E\d+-\d+)([AB])\d+([RUH]?)(?:-E\d+)?$")
PURPOSE_OF_TAG = {tag: purpose for purpose, tag in PURPOSE_TAG.items()}
# the child order an id of ours belongs to, read from its start: whatever follows is the order's own cancel
# (C<n>) or replace (M<n>) or an epoch stamp (-E<n>)
_ORDER_PART = re.compile(r"E\d+-\d+[AB]\d+([RUH]?)")
_DECISION_PREFIX = re.compile(r"E\d+-\d+")  # a decision's id, which leads every ClOrdID of ours


# the ids of this node's questions to a venue at a logon after a restart or takeover: for all its orders
# (OrderMassStatusRequest, MassStatusReqID) and for its positions (RequestForPositions, PosReqID); a
# question's kind is read back from its prefix
ALL_ORDERS_QUESTION = "MS-"
POSITIONS_QUESTION = "PR-"


def purpose_tag(cl_ord_id: str) -> str | None:
    """The purpose letter ("" entry, R chase, U unwind, H overfill hedge) of the child order a ClOrdID of ours
    names: the order's own id, one of its cancels' or replaces', however stamped; None for an id not ours.
    The simulator's order filters and the audit trail's roles read it (an amended order keeps its purpose)."""
    m = _ORDER_PART.match(cl_ord_id)
    return m[1] if m else None


def decision_of(cl_ord_id: str) -> str:
    """The decision an order, cancel or replace of ours belongs to, read off the start of its ClOrdID
    (E<epoch>-<number>, whatever the epoch's number of digits); the ClOrdID itself if it is not ours."""
    m = _DECISION_PREFIX.match(cl_ord_id)
    return m[0] if m else cl_ord_id


def epoch_of(cl_ord_id: str) -> int | None:
    """The fencing epoch a ClOrdID carries (see stamp), None if it is not one of ours."""
    m = _EPOCH_SUFFIX.search(cl_ord_id) or _EPOCH_PREFIX.match(cl_ord_id)
    return int(m.group(1)) if m else None


def stamp(cl_ord_id: str, epoch: int) -> str:
    """A ClOrdID carries the fencing epoch of the node that sends it: the decision's own (its prefix
    E<epoch>-) or, for a decision of an earlier epoch, a suffix -E<epoch>."""
    return cl_ord_id if cl_ord_id.startswith(f"E{epoch}-") else f"{cl_ord_id}-E{epoch}"


def child_id(decision_id: str, leg: str, number: int, purpose: str) -> str:
    """A new child order's ClOrdID before stamping: decision, leg, its number in the leg, purpose letter."""
    return f"{decision_id}{leg}{number}{PURPOSE_TAG[purpose]}"


def side_sign(side: str) -> int:
    return 1 if side == BUY else -1
