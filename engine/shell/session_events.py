"""quickfix's own session events (garbled input dropped, logons refused, resend requests, disconnects,
a connection for a session nobody configured) collected for the audit trail, secrets masked.

quickfix reports these only to its log; without this a garbled message or an unknown CompID left
no record of ours. Message contents are logged by the shells themselves (masked), so the messages
quickfix would log are not kept here.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import quickfix as fix

_SECRET = re.compile(r"(^|\x01|\|)(554|925|96)=[^\x01|]*")


def masked(text: str) -> str:
    """`text` with the values of Password (554), NewPassword (925) and RawData (96) starred."""
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}=***", text)


class SessionEvents(fix.LogFactory):
    """A quickfix LogFactory whose logs keep only events: (wall time, session, text) tuples."""

    def __init__(self, limit: int = 100_000):
        super().__init__()
        self.events: list[tuple[float, str, str]] = []
        self.limit = limit  # a flood of bad input cannot grow it without bound; the count goes on
        self.count = 0
        self._lock = threading.Lock()
        self._logs: list[_EventLog] = []  # quickfix holds raw pointers to these: keep them alive

    def create(self, *args: Any) -> Any:
        log = _EventLog(self, args[0].toString() if args else "global")
        self._logs.append(log)
        return log.__disown__()  # quickfix owns the log now (returned without this, quickfix crashed)

    def destroy(self, log: Any) -> None:
        pass  # kept alive with the factory (quickfix may still call it while it shuts down)

    def add(self, session: str, text: str) -> None:
        with self._lock:
            self.count += 1
            if len(self.events) < self.limit:
                self.events.append((time.time(), session, masked(text)))


class _EventLog(fix.Log):
    def __init__(self, factory: SessionEvents, session: str):
        super().__init__()
        self.factory = factory
        self.session = session

    def clear(self) -> None:
        pass

    def backup(self) -> None:
        pass

    def onIncoming(self, message: str) -> None:
        pass  # messages: logged by the shell, masked

    def onOutgoing(self, message: str) -> None:
        pass

    def onEvent(self, text: str) -> None:
        self.factory.add(self.session, text)
