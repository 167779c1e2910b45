"""Reconnection with exponential backoff for initiator sessions (quickfix itself only retries at a
fixed ReconnectInterval). A small state machine per session, driven by time and "logged on?",
answering what the shell should do: enable the session (quickfix may connect) or disable it.

States: UP (logged on); TRYING (enabled, for `window` seconds: quickfix's own attempt); WAITING
(disabled until a deadline); the moves between them are the table TRANSITIONS. A drop or a failed
attempt waits base x 2^failures, capped; a logon resets the count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UP, TRYING, WAITING = "up", "trying", "waiting"
# what happened to a session since the last tick (`_event`)
LOGGED_ON, DROPPED, ATTEMPT_FAILED, WAIT_OVER = "logged_on", "dropped", "attempt_failed", "wait_over"
# (state, event) -> (next state, what the shell does): the whole machine; a pair not listed changes nothing
TRANSITIONS: dict[tuple[str, str], tuple[str, str]] = {
    (TRYING, LOGGED_ON): (UP, "up"),  # the attempt logged on: the count of failures starts again
    (WAITING, LOGGED_ON): (UP, "up"),  # quickfix got through while disabled (an acceptor's reconnect)
    (UP, DROPPED): (WAITING, "disable"),  # quickfix would retry at once, forever at the same pace
    (TRYING, ATTEMPT_FAILED): (WAITING, "disable"),  # its window passed without a logon: wait longer
    (WAITING, WAIT_OVER): (TRYING, "enable"),  # quickfix may connect, for one window
}


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
        """What to do for session `name` now: "enable", "disable" or None (TRANSITIONS)."""
        s = self.sessions.get(name)
        if s is None:  # quickfix starts every session enabled: its first attempt is under way
            s = self.sessions[name] = _Session(TRYING, now + self.window)
        event = _event(s, now, logged_on)
        move = TRANSITIONS.get((s.state, event))
        if move is None:
            return None
        s.state, action = move
        if action == "up":
            s.failures = 0
            self.log.append((now, name, "up", 0.0))
            return None
        if action == "enable":
            s.until = now + self.window
            self.log.append((now, name, "enable", 0.0))
            return "enable"
        if event == ATTEMPT_FAILED:  # a drop waits the base again (its count was reset by the logon)
            s.failures += 1
        wait = min(self.cap, self.base * 2**s.failures)
        s.until = now + wait
        self.log.append((now, name, "disable", wait))
        return "disable"


def _event(s: _Session, now: float, logged_on: bool) -> str:
    """What happened to session `s` since the last tick: one of the events of TRANSITIONS, or "" (nothing)."""
    if logged_on:
        return LOGGED_ON
    if s.state == UP:
        return DROPPED
    if now < s.until:
        return ""
    return ATTEMPT_FAILED if s.state == TRYING else WAIT_OVER
