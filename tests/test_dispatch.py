"""The one loop both shells run to carry out the core's actions (engine.core.dispatch.ActionDispatcher):
each kind of action reaches its hook, in the order the core gave them, and the audit trail is numbered."""

from __future__ import annotations

from engine.core.dispatch import ActionDispatcher
from engine.core.events import Alert, Anomaly, Audit, AuditRow, CancelTimer, SendOrder, SetTimer


class Shell(ActionDispatcher):
    """A shell that writes down every hook call, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.core = type("Core", (), {"epoch": 1})()  # type: ignore[assignment]

    def now(self) -> float:
        return 7.0

    def send(self, action) -> None:
        self.calls.append(("send", action.cl_ord_id))

    def set_timer(self, key: str, at: float) -> None:
        self.calls.append(("set_timer", key, at))

    def cancel_timer(self, key: str) -> None:
        self.calls.append(("cancel_timer", key))

    def audited(self, row) -> None:
        self.calls.append(("audited", row.seq, row.stage))

    def alert(self, a: Alert) -> None:
        self.calls.append(("alert", a.level, a.text))


def test_every_action_reaches_its_hook_in_the_cores_order():
    """Timers set and cancelled by key, orders sent, audit rows numbered from 0 in the order written,
    an anomaly kept with its own audit row, and an alert kept and handed to the shell (the desk's page:
    one dropped here would never reach anyone)."""
    shell = Shell()
    order = SendOrder("SHFE", "E1-000001A1", "CU", "cu2603", "1", 1, 70000.0, "2", "0", "ACC", "E1-000001")
    page = Alert(7.0, "CRITICAL", "E1-000001 escalated: 1 lot CU naked", "E1-000001")
    odd = Anomaly(7.0, "duplicate_exec_id", "E1-000001A1", "SHFE: ExecID x1 twice")
    shell.execute(
        [
            Audit(7.0, "send", "E1-000001", "E1-000001A1", "CU", "ACC", "1", 1, 70000.0, "entry A"),
            order,
            SetTimer(7.5, "answer:E1-000001A1"),
            CancelTimer("amend:E1-000001"),
            odd,
            page,
            Audit(7.0, "terminal", "E1-000001"),
        ]
    )
    assert shell.calls == [
        ("audited", 0, "send"),
        ("send", "E1-000001A1"),
        ("set_timer", "answer:E1-000001A1", 7.5),
        ("cancel_timer", "amend:E1-000001"),
        ("audited", 1, "anomaly"),
        ("alert", "CRITICAL", "E1-000001 escalated: 1 lot CU naked"),
        ("audited", 2, "terminal"),
    ]
    assert [r.seq for r in shell.audit] == [0, 1, 2]
    # a row carries every field of its Audit (the trail's columns, engine.report.AUDIT_COLUMNS)
    assert shell.audit[0] == AuditRow(
        0, 7.0, "send", "E1-000001", "E1-000001A1", "CU", "ACC", "1", 1.0, 70000.0, "entry A"
    )
    assert shell.anomalies == [odd] and shell.alerts == [page]
    assert shell.audit[1].detail == "duplicate_exec_id: SHFE: ExecID x1 twice"
