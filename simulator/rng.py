"""Random generators forked per subsystem from the scenario seed: same seed, same draws, any process."""

from __future__ import annotations

import hashlib
import math
import random

_TWOPI = 2.0 * math.pi


def fork(seed: int, subsystem: str) -> random.Random:
    """An independent generator for `subsystem`, derived from `seed` by a hash (not Python's hash())."""
    digest = hashlib.sha256(f"{seed}:{subsystem}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def normal(rng: random.Random) -> float:
    """`rng.gauss(0.0, 1.0)`: the same draw from the same generator state, by CPython's own method (two
    uniforms make a pair of normals; the second is kept on the generator, where gauss keeps it), without
    gauss's Python-level call: the links draw one per message. tests/test_rng.py holds it to gauss."""
    z = rng.gauss_next  # type: ignore[attr-defined]
    rng.gauss_next = None  # type: ignore[attr-defined]
    if z is None:
        x2pi = rng.random() * _TWOPI
        g2rad = math.sqrt(-2.0 * math.log(1.0 - rng.random()))
        z = math.cos(x2pi) * g2rad
        rng.gauss_next = math.sin(x2pi) * g2rad  # type: ignore[attr-defined]
    return 0.0 + z * 1.0  # gauss(mu=0.0, sigma=1.0) returns mu + z * sigma: -0.0 comes out as 0.0 there too
