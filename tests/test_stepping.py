"""simulator.stepping.run_until steps a simpy Environment as its own run(until=...) does: the same
callbacks in the same order at the same times, the same clock after, failures raised alike."""

from __future__ import annotations

from functools import partial

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.stepping import call_later, run_until, stepped_here

# a model: processes, each a list of waits (some zero, many on a coarse grid so that times tie), and
# callbacks on plain timeouts that schedule more timeouts from inside the loop
waits = st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 0.25, 0.1, 0.3]), max_size=8)
model = st.tuples(
    st.lists(waits, max_size=5),
    st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 0.7]), st.integers(0, 3)), max_size=10),
    st.sampled_from([0.5, 1.0, 2.0, 3.0, 2.75]),
)


def _trace(spec, drive, later=None) -> tuple[list, float]:
    """The callbacks' trace and the final clock; `later(env, delay, callback)` schedules the plain timeouts'
    callbacks (simpy's own Timeout when not given)."""
    processes, timeouts, at = spec
    env = simpy.Environment()
    trace: list = []
    if later is None:

        def later(env, delay, callback):
            env.timeout(delay).callbacks.append(callback)

    def proc(i, ws):
        for k, w in enumerate(ws):
            yield env.timeout(w)
            trace.append(("p", i, k, env.now))

    def chain(j, left):
        def fire(_ev):
            trace.append(("t", j, left, env.now))
            if left:
                later(env, 0.5, chain(j, left - 1))

        return fire

    for i, ws in enumerate(processes):
        env.process(proc(i, ws))
    for j, (delay, left) in enumerate(timeouts):
        later(env, delay, chain(j, left))
    drive(env, at)
    drive(env, at + 1.25)  # and on from there, as a run goes on into its drain
    return trace, env.now


@given(model)
@settings(max_examples=300, deadline=None)
def test_run_until_is_simpys_run(spec):
    assert _trace(spec, run_until) == _trace(spec, lambda env, at: env.run(until=at))


@given(model)
@settings(max_examples=200, deadline=None)
def test_call_later_takes_the_place_a_timeout_takes(spec):
    """A callback scheduled by call_later runs where a timeout's callback would: stepped here or by simpy."""
    simpys = _trace(spec, lambda env, at: env.run(until=at))
    direct = partial(call_later, direct=True)
    assert _trace(spec, run_until, direct) == simpys
    assert _trace(spec, lambda env, at: env.run(until=at), direct) == simpys
    assert _trace(spec, run_until, partial(call_later, direct=False)) == simpys


def test_a_failed_event_raises_as_simpy_raises_it():
    def failing(drive):
        env = simpy.Environment()
        ev = env.event()
        env.timeout(1.0).callbacks.append(lambda _e: ev.fail(KeyError("lost")))
        with pytest.raises(KeyError) as caught:
            drive(env, 5.0)
        return env.now, caught.value.args, type(caught.value.__cause__)

    assert failing(run_until) == failing(lambda env, at: env.run(until=at))


def test_a_failure_whose_class_cannot_be_made_from_its_args_is_raised_itself():
    """simpy raises a copy made from the exception's args: for a class whose constructor takes other
    arguments (engine.config.ConfigError: a source and its problems) that copy is a TypeError hiding the
    failure; run_until raises the failure itself."""
    from engine.config import ConfigError, Problem

    env = simpy.Environment()
    ev = env.event()
    failure = ConfigError("s.toml", [Problem("faults[0].x", "is wrong", "write it right")])
    env.timeout(1.0).callbacks.append(lambda _e: ev.fail(failure))
    with pytest.raises(ConfigError) as caught:
        run_until(env, 5.0)
    assert caught.value is failure and env.now == 1.0


def test_a_defused_failure_is_left_alone_and_a_past_time_refused():
    env = simpy.Environment()
    ev = env.event()
    ev.fail(ValueError("x"))
    ev.defused = True
    run_until(env, 1.0)
    assert env.now == 1.0
    with pytest.raises(ValueError, match="greater than the current simulation time"):
        run_until(env, 1.0)


def test_another_environment_is_run_by_simpy_itself():
    class Mine(simpy.Environment):
        pass

    env = Mine()
    assert stepped_here(simpy.Environment()) and not stepped_here(env)
    env.timeout(0.5)
    run_until(env, 1.0)
    assert env.now == 1.0
