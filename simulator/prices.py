"""Fair values for the pair and its FX rate: a world price and FX as random walks, and the local price
cointegrated with them (world per tonne x FX + premium + a mean-reverting spread, in the local
instrument's unit), with the scenario's price jumps; `market` is the process that hands them to the
venues every step. A pair in one currency has no FX: the rate is 1 and nothing quotes it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from engine.config import ConfigError, Problem
from simulator.rng import normal

LB_PER_TONNE = 2204.62


class PriceModelError(ValueError):
    """The price model made a fair value that is no price (zero, negative or not finite): the
    scenario's parameters cannot be simulated (a spread noise as large as the price level, a price
    unit that makes the level tiny); the runner reports it as a problem of the scenario file."""


def price_problem(source: str, exc: PriceModelError, now: float, seed: int) -> ConfigError:
    """A price model that made a fair value no price, as a problem of the scenario file `source` (exit 2)."""
    return ConfigError(
        source,
        [
            Problem(
                "prices",
                f"at {now:g} s (seed {seed}) {exc}",
                "keep every price level well above the spread's noise: lower prices.local.spread_sigma, raise "
                "the level (prices.world.start, prices.local.premium), or check each instrument's price_unit",
            )
        ],
    )


@dataclass(frozen=True, slots=True)
class PriceConfig:
    step: float  # seconds between fair-value updates
    world: str  # the driver, e.g. COMEX HG in USD/lb
    world_start: float
    world_vol_bp: float  # volatility, basis points per sqrt(second)
    fx: str  # the rate from the world's currency to the local one, e.g. USD/CNY; "" for one currency
    fx_start: float
    fx_vol_bp: float
    local: str  # the local instrument, e.g. SHFE CU in CNY/t
    premium: float  # local currency per tonne
    spread_mean: float  # local currency per tonne around which the local-world spread reverts
    spread_sigma: float  # local currency per tonne per sqrt(second)
    half_life: float  # seconds
    world_per_tonne: float = LB_PER_TONNE  # the world instrument's price units per tonne (lb)
    local_per_tonne: float = 1.0  # the local instrument's (t)


class PriceProcess:
    def __init__(self, cfg: PriceConfig, rng: random.Random):
        self.cfg = cfg
        self.rng = rng
        self.world = cfg.world_start
        self.fx = cfg.fx_start
        self.spread = cfg.spread_mean
        self.kappa = math.log(2) / cfg.half_life
        self.moves_bp: dict[str, float] = {}  # |last step's move| per instrument, in basis points
        self._last = self.fair()

    def fair(self) -> dict[str, float]:
        c = self.cfg
        local = (self.world * c.world_per_tonne * self.fx + c.premium + self.spread) / c.local_per_tonne
        if not c.fx:
            return self._checked({c.world: self.world, c.local: local})
        return self._checked({c.world: self.world, c.fx: self.fx, c.local: local})

    def step(self) -> dict[str, float]:
        c, dt, rng = self.cfg, self.cfg.step, self.rng
        sq = math.sqrt(dt)
        self.world *= math.exp(c.world_vol_bp * 1e-4 * sq * normal(rng))
        if c.fx:
            self.fx *= math.exp(c.fx_vol_bp * 1e-4 * sq * normal(rng))
        decay = math.exp(-self.kappa * dt)
        noise = c.spread_sigma * math.sqrt((1 - decay * decay) / (2 * self.kappa)) * normal(rng)
        self.spread = c.spread_mean + (self.spread - c.spread_mean) * decay + noise
        now = self.fair()
        self.moves_bp = {k: abs(math.log(now[k] / self._last[k])) * 1e4 for k in now}
        self._last = now
        return now

    def _checked(self, fair: dict[str, float]) -> dict[str, float]:
        for name, value in fair.items():
            if not (value > 0.0 and math.isfinite(value)):
                c = self.cfg
                raise PriceModelError(
                    f"the fair price of {name} went to {value:.6g} (world {self.world:.6g}"
                    + (f", FX {self.fx:.6g}" if c.fx else "")
                    + f", local spread {self.spread:.6g} around a mean of {c.spread_mean:g}, "
                    f"sigma {c.spread_sigma:g}, premium {c.premium:g})"
                )
        return fair

    def jump(self, target: str, bp: float) -> None:
        """A jump of `bp` basis points in the world metal price or in USD/CNY (the local price follows)."""
        factor = math.exp(bp * 1e-4)
        if target == "fx":
            self.fx *= factor
        else:
            self.world *= factor


def jump_schedule(faults) -> list[tuple[float, Any]]:
    """(time, fault) of every price jump, drawn up front from each price_jump fault's own generator:
    one at after_s, or a Poisson stream at rate_per_s inside the window, at most `count` (0: no cap)."""
    out = []
    for f in faults:
        if f.kind != "price_jump":
            continue
        if f.rate_per_s <= 0:
            out.append((f.after, f))
            continue
        t, n = f.after, 0
        while True:
            t += f.rng.expovariate(f.rate_per_s)
            if t >= f.until or (f.count and n >= f.count):
                break
            out.append((t, f))
            n += 1
    return sorted(out, key=lambda x: (x[0], x[1].index))


def market(env, prices: PriceProcess, venues, step: float, faults=(), on_jump=None):
    """The simpy process of the world: every `step` the price process moves, due jumps are applied,
    and every venue re-quotes around the new fair values."""
    pending = jump_schedule(faults)
    fair = prices.fair()
    while True:
        for v in venues:
            v.on_fair(fair)
        yield env.timeout(step)
        prices.step()
        while pending and pending[0][0] <= env.now + 1e-12:
            _, f = pending.pop(0)
            prices.jump(f.target, f.jump_bp)
            f.hits += 1
            if on_jump is not None:
                on_jump(env.now, f)
        fair = prices.fair()
