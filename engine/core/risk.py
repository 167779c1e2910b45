"""Pre-trade risk: order size, position (worst case, counting every order that could still fill),
notional in CNY and price band. A breach means the order is not sent."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config import Instrument, RiskLimits
from engine.core.trigger import to_common


@dataclass(frozen=True, slots=True)
class Breach:
    limit: str  # the limit's name in the [risk] table: what refused the order
    detail: str  # the figures, for people (the audit row names the instrument and the order)


def check_order(
    limits: RiskLimits,
    inst: Instrument,
    side_sign: int,
    qty: int,
    price: float,
    reference: float | None,
    fx_rate: float,
    position: float,
    open_buy: float,
    open_sell: float,
) -> Breach | None:
    """The first limit this order would break, or None. `side_sign` is +1 buy, -1 sell; `reference` is
    the price the band is measured from (EngineCore.reference_price): None refuses the order, since
    a band that cannot be measured cannot be held."""
    max_qty = limits.max_order_lots.get(inst.name)
    if max_qty is not None and qty > max_qty:
        return Breach("max_order_lots", detail=f"{qty} lots > {max_qty}")
    max_pos = limits.max_position_lots.get(inst.name)
    if max_pos is not None:
        worst = position + open_buy + qty if side_sign > 0 else position - open_sell - qty
        if abs(worst) > max_pos:
            return Breach("max_position_lots", detail=f"worst-case position {worst:+g} lots beyond ±{max_pos}")
    notional = qty * inst.lot_tonnes * to_common(price, inst, fx_rate)
    if notional > limits.max_notional_cny:
        return Breach("max_notional_cny", detail=f"{notional:,.0f} CNY > {limits.max_notional_cny:,.0f}")
    if reference is None or reference <= 0:  # a band that cannot be measured cannot be held
        dev = math.inf
    else:
        dev = abs(price - reference) / reference * 100.0
    if dev > limits.price_band_pct:  # its figures are written only for an order refused
        return Breach("price_band_pct", detail=_band_detail(inst, limits, price, reference, dev))
    return None


def _band_detail(inst: Instrument, limits: RiskLimits, price: float, reference: float | None, dev: float) -> str:
    """The figures of a price-band refusal, for people."""
    if reference is None or reference <= 0:
        return (
            f"no reference price for {inst.name}: its book has never been two-sided, "
            f"so the {limits.price_band_pct}% band cannot be checked"
        )
    return f"price {price:g} is {dev:.2f}% from reference {reference:g} (band {limits.price_band_pct}%)"
