"""simpy's `Environment.run(until=t)`, stepped from compiled code (xmc/accel.py): the same events, in the
same order, with the same clock, without a call into simpy's Python `step` per event."""

from __future__ import annotations

from heapq import heappop
from typing import Any

import simpy
from simpy.events import URGENT

# the environment's internals this loop reads; any other simpy falls back to its own run()
_INTERNALS = ("_queue", "_now", "_eid")


def stepped_here(env: simpy.Environment) -> bool:
    """Can `run_until` step this environment itself (a plain simpy 4 Environment with the internals
    it reads)?"""
    return (
        type(env) is simpy.Environment
        and simpy.__version__.startswith("4.")
        and all(hasattr(env, name) for name in _INTERNALS)
    )


def run_until(env: simpy.Environment, at: float) -> None:
    """Process every event before time `at`, then set the clock to `at`: what `env.run(until=at)` does.

    As simpy does it: a stop event is scheduled at `at` with URGENT priority (before the timeouts due
    then, after anything scheduled at `at` with URGENT priority before it), events leave the queue in
    (time, priority, insertion) order, each event's callbacks run in order, and an event that failed
    and was not defused raises a copy of its exception."""
    if not stepped_here(env):
        env.run(until=at)
        return
    if at <= env.now:
        raise ValueError(f"until ({at}) must be greater than the current simulation time")
    stop = simpy.Event(env)
    stop._ok = True
    stop._value = None
    env.schedule(stop, URGENT, at - env.now)
    queue: list[Any] = env._queue
    while True:
        when, _, _, event = heappop(queue)  # never empty: the stop event is in it
        env._now = when
        if event is stop:
            stop.callbacks = None  # processed, as simpy leaves it
            return
        callbacks = event.callbacks
        event.callbacks = None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            failure = event._value
            exc = type(failure)(*failure.args)
            exc.__cause__ = failure
            raise exc
