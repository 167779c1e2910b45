"""The reconnect backoff as a pure state machine on a given clock: waits double after every failed
attempt up to the cap, a logon resets them, and a logged-on session is never touched."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.shell.reconnect import Backoff


def drive(b: Backoff, until: float, up_at: float | None = None, step: float = 0.05) -> list[tuple[float, str]]:
    actions, t = [], 0.0
    while t <= until:
        a = b.tick("SHFE", t, up_at is not None and t >= up_at)
        if a:
            actions.append((round(t, 2), a))
        t = round(t + step, 10)
    return actions


def test_failed_attempts_wait_twice_as_long_each_time_up_to_the_cap():
    b = Backoff(base=1.0, cap=4.0, window=0.5)
    drive(b, 20.0)
    waits = [w for _, _, action, w in b.log if action == "disable"]
    assert waits[:5] == [2.0, 4.0, 4.0, 4.0, 4.0]  # the first window failed: 1 x 2^1, then capped
    enables = [t for t, _, action, _ in b.log if action == "enable"]
    assert all(later - earlier >= 4.5 - 1e-9 for earlier, later in zip(enables[1:], enables[2:]))


def test_a_logon_resets_the_waits_and_a_drop_starts_again_at_the_base():
    b = Backoff(base=1.0, cap=8.0, window=0.5)
    drive(b, 10.0, up_at=6.0)
    assert b.sessions["SHFE"].state == "up" and b.sessions["SHFE"].failures == 0
    assert b.tick("SHFE", 11.0, False) == "disable" and b.log[-1][3] == 1.0  # dropped: base wait
    assert b.tick("SHFE", 11.5, False) is None and b.tick("SHFE", 12.0, False) == "enable"


@given(st.floats(0.1, 5), st.floats(1, 60), st.lists(st.booleans(), min_size=1, max_size=200))
def test_never_touches_a_logged_on_session_and_never_waits_past_the_cap(base, cap, ups):
    cap = max(cap, base)
    b = Backoff(base=base, cap=cap, window=1.0)
    for i, up in enumerate(ups):
        action = b.tick("COMEX", i * 0.25, up)
        assert not (up and action is not None)
    assert all(0 < w <= cap for _, _, action, w in b.log if action == "disable")


@given(st.floats(0.1, 5), st.floats(0.1, 2), st.floats(1e-6, 1e-3))
def test_a_wait_and_a_window_end_at_their_deadline_not_before(base, window, early):
    """Found by mutation (a wait ending a millisecond early passed): a session disabled at t stays
    disabled until t + its wait, however close a tick comes, and is enabled at that instant; an
    attempt's window likewise runs to its end before it counts as failed."""
    b = Backoff(base=base, cap=10 * base, window=window)
    assert b.tick("SHFE", 0.0, False) is None  # quickfix's first attempt, for one window
    assert b.tick("SHFE", window - early, False) is None
    assert b.tick("SHFE", window, False) == "disable"
    until = window + b.log[-1][3]
    assert b.tick("SHFE", until - early, False) is None
    assert b.tick("SHFE", until, False) == "enable"


def test_the_log_tells_each_logon_and_each_window_opened_with_no_wait():
    """The shell's report of reconnects reads the log: a logon is ("up", 0) and a window opened is
    ("enable", 0), beside each disable's wait."""
    b = Backoff(base=1.0, cap=4.0, window=0.5)
    assert b.tick("SHFE", 0.0, False) is None
    assert b.tick("SHFE", 0.5, False) == "disable"
    assert b.tick("SHFE", 2.5, False) == "enable"
    assert b.tick("SHFE", 2.6, True) is None
    assert b.log == [(0.5, "SHFE", "disable", 2.0), (2.5, "SHFE", "enable", 0.0), (2.6, "SHFE", "up", 0.0)]
