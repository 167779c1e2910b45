"""Reconnection with exponential backoff for initiator sessions (quickfix itself only retries at a
fixed ReconnectInterval). A small state machine per session, driven by time and "logged on?",
answering what the shell should do: enable the session (quickfix may connect) or disable it.

States: UP (logged on); TRYING (enabled, for `window` seconds: quickfix's own attempt); WAITING
(disabled until a deadline). A drop or a failed attempt waits base x 2^failures, capped; a logon
resets the count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UP, TRYING, WAITING = "up", "trying", "waiting"


@dataclass
class _Session:
    state: str
    until: float
    failures: int = 0


@dataclass
class Backoff:
    base: float  # seconds before the first retry after a drop
    cap: float  # the longest wait between attempts
    window: float  # seconds an enabled session gets to connect and log on
    sessions: dict[str, _Session] = field(default_factory=dict)
    log: list[tuple[float, str, str, float]] = field(default_factory=list)  # (time, session, action, wait)

    def tick(self, name: str, now: float, logged_on: bool) -> str | None:
        """What to do for session `name` now: "enable", "disable" or None."""
        s = self.sessions.get(name)
        if s is None:  # quickfix starts every session enabled: its first attempt is under way
            s = self.sessions[name] = _Session(TRYING, now + self.window)
        if logged_on:
            if s.state != UP:
                s.state, s.failures = UP, 0
                self.log.append((now, name, "up", 0.0))
            return None
        if s.state == UP:  # dropped: quickfix would retry at once, forever at the same pace
            return self._wait(s, name, now)
        if s.state == TRYING and now >= s.until:
            s.failures += 1
            return self._wait(s, name, now)
        if s.state == WAITING and now >= s.until:
            s.state, s.until = TRYING, now + self.window
            self.log.append((now, name, "enable", 0.0))
            return "enable"
        return None

    def _wait(self, s: _Session, name: str, now: float) -> str:
        wait = min(self.cap, self.base * 2**s.failures)
        s.state, s.until = WAITING, now + wait
        self.log.append((now, name, "disable", wait))
        return "disable"
