"""Paired-leg episode state machine: one arbitrage decision from its signal to a terminal outcome.

Rules:
- An episode owns two legs (A and B). Each leg has a target quantity and side and the child orders
  sent for it; its filled quantity is the sum of its orders' fills, signed in the leg's direction
  (so an unwind order, on the opposite side, reduces it).
- Moves are looked up in TRANSITIONS[state][event]. Events are derived from the legs whenever no
  order of the episode is working: both legs at target -> DONE_BALANCED, both at zero -> DONE_FLAT,
  anything else -> DONE_LEGGED. Risk and recovery add RISK_PASSED/RISK_FAILED and ESCALATE.
- LEGGED is not terminal: it is the seam where recovery (chase, unwind) takes over; from there
  DONE_BALANCED means the chase completed the missing leg, DONE_FLAT that the unwind flattened it.
- Terminal states: BALANCED, UNWOUND, ESCALATED, ABORTED. Only a venue's late fill (a trade reported
  after it ended the order) moves one: LATE_FILL reopens a BALANCED, UNWOUND or ABORTED episode as
  LEGGED, since its legs no longer hold what its outcome says, and recovery repairs the difference;
  an ESCALATED one stays with the desk.
- While LEGGED, the recovery mode is a second, smaller machine (RECOVERY_MOVES): none -> chase;
  chase -> unwind (the chase cannot succeed) or hedge_overfill (every leg at or past its target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final

from engine.core.order import ChildOrder


class EpisodeState(str, Enum):
    NEW = "NEW"  # signal seen, risk not yet decided
    WORKING = "WORKING"  # both legs sent, at least one order working
    LEGGED = "LEGGED"  # no entry order working and the legs do not match: naked exposure
    BALANCED = "BALANCED"
    UNWOUND = "UNWOUND"
    ESCALATED = "ESCALATED"
    ABORTED = "ABORTED"  # nothing traded: risk refused, or neither leg filled


class EpisodeEvent(str, Enum):
    RISK_PASSED = "risk_passed"
    RISK_FAILED = "risk_failed"
    DONE_BALANCED = "done_balanced"
    DONE_FLAT = "done_flat"
    DONE_LEGGED = "done_legged"
    ESCALATE = "escalate"
    LATE_FILL = "late_fill"  # a fill on an order of an ended episode moved its legs


S, E = EpisodeState, EpisodeEvent
TERMINAL: Final = frozenset({S.BALANCED, S.UNWOUND, S.ESCALATED, S.ABORTED})

TRANSITIONS: dict[EpisodeState, dict[EpisodeEvent, EpisodeState]] = {
    S.NEW: {E.RISK_PASSED: S.WORKING, E.RISK_FAILED: S.ABORTED},
    S.WORKING: {E.DONE_BALANCED: S.BALANCED, E.DONE_FLAT: S.ABORTED, E.DONE_LEGGED: S.LEGGED, E.ESCALATE: S.ESCALATED},
    S.LEGGED: {E.DONE_BALANCED: S.BALANCED, E.DONE_FLAT: S.UNWOUND, E.DONE_LEGGED: S.LEGGED, E.ESCALATE: S.ESCALATED},
    S.BALANCED: {E.LATE_FILL: S.LEGGED},
    S.UNWOUND: {E.LATE_FILL: S.LEGGED},
    S.ABORTED: {E.LATE_FILL: S.LEGGED},
    S.ESCALATED: {},
}


class RecoveryMode(StrEnum):
    """How a legged episode is being repaired (engine.core.recovery decides; RECOVERY_MOVES allows)."""

    NONE = ""  # not legged yet, or legged and recovery not started
    CHASE = "chase"  # re-order the missing quantity
    HEDGE_OVERFILL = "hedge_overfill"  # every leg at or past target: trade the excess back
    UNWIND = "unwind"  # flatten what the legs hold


M = RecoveryMode
RECOVERY_MOVES: Final[dict[RecoveryMode, frozenset[RecoveryMode]]] = {
    M.NONE: frozenset({M.CHASE}),
    M.CHASE: frozenset({M.UNWIND, M.HEDGE_OVERFILL}),
    M.HEDGE_OVERFILL: frozenset(),
    M.UNWIND: frozenset(),
}


@dataclass(slots=True)
class Leg:
    name: str  # "A" or "B"
    instrument: str
    side: str  # FIX side of the entry: "1" buy, "2" sell
    target: int
    lot_tonnes: float
    orders: list[ChildOrder] = field(default_factory=list)

    @property
    def sign(self) -> int:
        return 1 if self.side == "1" else -1

    @property
    def filled(self) -> float:
        """Net quantity done in the leg's own direction (entry fills minus unwind fills)."""
        return sum(o.cum_qty if o.side == self.side else -o.cum_qty for o in self.orders)

    @property
    def working(self) -> bool:
        return any(not o.done for o in self.orders)

    @property
    def signed_tonnes(self) -> float:
        return self.sign * self.filled * self.lot_tonnes


@dataclass(slots=True)
class Episode:
    decision_id: str
    side: str  # trigger side: sell_spread / buy_spread
    signal_value: float
    legs: dict[str, Leg]
    trigger_prices: dict[str, float]
    residual_tonnes: float
    state: EpisodeState = S.NEW
    stages: dict[str, float] = field(default_factory=dict)
    fills: list[tuple[float, str, float, float]] = field(default_factory=list)  # (ts, leg, qty, px)
    reason: str = ""
    mode: RecoveryMode = RecoveryMode.NONE  # once legged; moved only by set_mode
    chase_attempts: int = 0
    unwind_attempts: int = 0
    last_reject: tuple[int | None, bool, bool] | None = None  # (OrdRejReason, session-level, business)
    ended_with: dict[str, float] = field(default_factory=dict)  # each leg's fills when it last became terminal
    reopened: list[tuple[float, float]] = field(default_factory=list)  # (ended at, reopened at) per late fill
    # instruments whose fresh quote the recovery waits for before it prices its next orders (empty: none)
    quotes_awaited: frozenset[str] = frozenset()

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def move(self, event: EpisodeEvent) -> str | None:
        """Apply an event; returns an anomaly description when the table forbids it."""
        target = TRANSITIONS[self.state].get(event)
        if target is None:
            return f"episode {self.decision_id}: {event.value} not allowed in state {self.state.value}"
        self.state = target
        return None

    def set_mode(self, mode: RecoveryMode) -> None:
        """Move the recovery mode as RECOVERY_MOVES allows; any other move is a defect of the policy."""
        if mode not in RECOVERY_MOVES[self.mode]:
            raise ValueError(
                f"episode {self.decision_id}: recovery mode {self.mode.value or 'none'} -> {mode.value} is not allowed"
            )
        self.mode = mode

    @property
    def working(self) -> bool:
        return any(leg.working for leg in self.legs.values())

    def settle_event(self) -> EpisodeEvent | None:
        """The event the legs imply once nothing is working, else None."""
        if self.working:
            return None
        a, b = self.legs["A"], self.legs["B"]
        if abs(a.filled - a.target) < 1e-9 and abs(b.filled - b.target) < 1e-9:
            return E.DONE_BALANCED
        if abs(a.filled) < 1e-9 and abs(b.filled) < 1e-9:
            return E.DONE_FLAT
        return E.DONE_LEGGED

    def naked_tonnes(self) -> float:
        """Net tonnes the two legs leave open (for a balanced episode: the planned rounding residual)."""
        return abs(self.legs["A"].signed_tonnes + self.legs["B"].signed_tonnes)

    def missing(self) -> dict[str, float]:
        """Lots each leg still lacks to reach its target (negative: overfilled)."""
        return {n: leg.target - leg.filled for n, leg in self.legs.items()}
