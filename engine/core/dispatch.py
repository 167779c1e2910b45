"""Carrying out the core's actions: the one loop every shell (virtual time and production) runs, so
the fencing check, the audit rows and the anomaly records are the same in both; each shell supplies
only how it sends FIX, keeps timers and tells the world."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.core.events import FENCED_SENDS, FIX_SENDS, Alert, Anomaly, Audit, AuditRow, CancelTimer, SetTimer

if TYPE_CHECKING:
    from engine.core.engine_core import EngineCore


class ActionDispatcher:
    """Base of a shell around an EngineCore. Subclasses set `core`, `fence` (None, or a callable
    epoch -> may this node send?) and `node`, and implement the hooks below."""

    core: EngineCore
    fence: Callable[[int], bool] | None = None
    node = ""

    def __init__(self) -> None:
        self.audit: list[AuditRow] = []
        self.anomalies: list[Anomaly] = []
        self.alerts: list[Alert] = []

    # ---- the loop ------------------------------------------------------------------------------
    def execute(self, actions: list[Any]) -> None:
        """Carry out actions in order (dispatched on their exact type: the hot path of every event)."""
        for a in actions:
            kind = type(a)
            if kind in FIX_SENDS:
                if self.fence is not None and kind in FENCED_SENDS and not self.fence(self.core.epoch):
                    self.fenced(a)
                else:
                    self.send(a)
            elif kind is Audit:
                self.record_audit(a)
            elif kind is SetTimer:
                self.set_timer(a.key, a.at)
            elif kind is CancelTimer:
                self.cancel_timer(a.key)
            elif kind is Anomaly:
                self.record_anomaly(a)
            elif kind is Alert:
                self.alerts.append(a)
                self.alert(a)

    def record_audit(self, a: Audit) -> AuditRow:
        row = AuditRow(
            len(self.audit),
            a.ts,
            a.stage,
            a.decision_id,
            a.cl_ord_id,
            a.instrument,
            a.account,
            a.side,
            float(a.qty),
            float(a.price),
            a.detail,
        )
        self.audit.append(row)
        self.audited(row)
        return row

    def record_anomaly(self, a: Anomaly) -> None:
        """Something a counterparty (or the core itself) did that the rules do not allow: kept, and a
        row in the audit trail."""
        self.anomalies.append(a)
        self.record_audit(Audit(a.ts, "anomaly", cl_ord_id=a.cl_ord_id, detail=f"{a.kind}: {a.detail}"))

    def fenced(self, a: Any) -> None:
        """An order this node may no longer send (its epoch is not the lease's): not sent, recorded."""
        self.record_audit(
            Audit(
                self.now(),
                "fenced",
                getattr(a, "decision_id", ""),
                a.cl_ord_id,
                a.instrument,
                detail=f"{type(a).__name__} from node {self.node or '-'} epoch {self.core.epoch} "
                f"blocked: this node no longer holds the lease",
            )
        )

    # ---- the shell's part ----------------------------------------------------------------------
    def now(self) -> float:
        raise NotImplementedError

    def send(self, action: Any) -> None:
        """Build the FIX message for `action` and hand it to the session."""
        raise NotImplementedError

    def set_timer(self, key: str, at: float) -> None:
        raise NotImplementedError

    def cancel_timer(self, key: str) -> None:
        raise NotImplementedError

    def audited(self, row: AuditRow) -> None:
        """A row was added to the audit trail (a shell may log or print it)."""

    def alert(self, a: Alert) -> None:
        """An alert for the desk (a shell logs it)."""
