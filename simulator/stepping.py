"""simpy's `Environment.run(until=t)`, stepped from compiled code (xmc/accel.py): the same events, in the
same order, with the same clock, without a call into simpy's Python `step` per event; and `call_later`,
a timeout's callback scheduled without building simpy's Timeout."""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.events import NORMAL, URGENT

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
    and was not defused raises a copy of its exception (the exception itself when its class cannot be
    made again from its args, where simpy would raise a TypeError instead)."""
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
            try:
                exc = type(failure)(*failure.args)
            except Exception:  # its constructor does not take its own args (simpy would raise a TypeError)
                raise failure from None
            exc.__cause__ = failure
            raise exc


class Call:
    """An event in simpy's queue that calls one function when its time comes: all simpy's loop reads of
    an event (its callbacks, and that it did not fail)."""

    callbacks: list[Callable[[Any], None]] | None
    _ok: bool

    def __init__(self, callback: Callable[[Any], None]) -> None:
        self.callbacks = [callback]
        self._ok = True


def call_later(env: simpy.Environment, delay: float, callback: Callable[[Any], None], direct: bool) -> None:
    """`env.timeout(delay).callbacks.append(callback)`: the callback runs `delay` from now, in the place
    in the queue such a timeout takes (its time, NORMAL priority, the next insertion number). `direct`
    (`stepped_here(env)`, asked once by the caller): without building simpy's Timeout."""
    if not direct:
        env.timeout(delay).callbacks.append(callback)
        return
    if delay < 0:
        raise ValueError(f"Negative delay {delay}")
    queue: list[Any] = env._queue  # holds simpy's events and these alike: the loop reads both the same way
    heappush(queue, (env._now + delay, NORMAL, next(env._eid), Call(callback)))
