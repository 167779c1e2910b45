"""The simulator's own normal draw (simulator.rng.normal) is random.Random.gauss(0.0, 1.0), draw for draw."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.rng import fork, normal


@given(seed=st.integers(0, 2**64 - 1), calls=st.lists(st.sampled_from(["normal", "random", "bits"]), max_size=40))
@settings(max_examples=300, deadline=None)
def test_normal_is_gauss_draw_for_draw(seed, calls):
    """Two generators of one seed, one drawing with `normal`, the other with gauss, interleaved with the
    generator's other draws (a half-used pair stays on the generator across them), agree bit for bit."""
    ours, theirs = random.Random(seed), random.Random(seed)
    for call in calls:
        if call == "normal":
            a, b = normal(ours), theirs.gauss(0.0, 1.0)
            assert a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
        elif call == "random":
            assert ours.random() == theirs.random()
        else:
            assert ours.getrandbits(7) == theirs.getrandbits(7)
    assert ours.getstate() == theirs.getstate()


def test_a_forked_generator_draws_as_gauss_would():
    """A generator forked for a link draws with normal what gauss drew (the committed baselines were recorded with gauss)."""
    rng = fork(1, "link:SHFE:up")
    first = [normal(rng) for _ in range(3)]
    again = fork(1, "link:SHFE:up")
    assert first == [again.gauss(0.0, 1.0) for _ in range(3)]
