"""Random generators forked per subsystem from the scenario seed: same seed, same draws, any process."""

from __future__ import annotations

import hashlib
import random


def fork(seed: int, subsystem: str) -> random.Random:
    """An independent generator for `subsystem`, derived from `seed` by a hash (not Python's hash())."""
    digest = hashlib.sha256(f"{seed}:{subsystem}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
