"""Quantity alignment: leg B lots from leg A lots by the lot ratio and rounding rule, residual in tonnes."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config import Instrument


@dataclass(frozen=True, slots=True)
class Sizing:
    lots_a: int
    lots_b: int
    residual_tonnes: float  # leg A tonnes minus leg B tonnes that the rounding leaves unhedged


def round_lots(x: float, rule: str) -> int:
    if rule == "up":
        return math.ceil(x - 1e-9)
    if rule == "down":
        return math.floor(x + 1e-9)
    return math.floor(x + 0.5)


def align(lots_a: int, ratio: tuple[int, int], rule: str, a: Instrument, b: Instrument) -> Sizing:
    """Leg B lots for `lots_a` lots of A at ratio A:B, rounded by `rule`; never below one lot."""
    lots_b = max(round_lots(lots_a * ratio[1] / ratio[0], rule), 1)
    return Sizing(lots_a, lots_b, lots_a * a.lot_tonnes - lots_b * b.lot_tonnes)
