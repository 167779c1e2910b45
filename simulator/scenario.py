"""Scenario files (TOML): read and validate fully before anything runs.

Every problem is reported with the file, the key and what to write instead (ConfigError).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from engine.config import (
    ConfigError,
    EngineConfig,
    Instrument,
    Problem,
    Section,
    UnusablePath,
    non_negative,
    number_problem,
    path_kind,
    positive,
    read_engine,
    read_toml,
)
from engine.core.events import ANOMALY_KINDS
from engine.fix import dictionary
from engine.fix.codec import dictionary_problem
from simulator.failover import FailoverConfig
from simulator.faults import FAILOVER_KINDS, REJECT_LEVELS, Fault, read_faults
from simulator.link import Latency
from simulator.prices import LB_PER_TONNE, PriceConfig

BUNDLED = Path(__file__).resolve().parents[1] / "scenarios"  # the bundled library
MAX_DURATION_S = 86_400.0  # one trading day of virtual time
# A run's seed: any whole number a signed 64-bit column holds (audit.parquet, the reports, a baseline):
# beyond it a run would trade and then fail to write what it did. The CLI's --seed options, scenario
# files and baselines all read seeds through this one domain.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
SEED_HINT = f"a whole number in [{SEED_MIN}, {SEED_MAX}] (a signed 64-bit integer)"


def seed_in_domain(value: int) -> bool:
    """Whether `value` can seed a run (see SEED_MIN/SEED_MAX); bool is not a seed."""
    return isinstance(value, int) and not isinstance(value, bool) and SEED_MIN <= value <= SEED_MAX


MAX_LATENCY_MS = 60_000.0
MAX_PRICE_STEPS = 2_000_000  # duration / price step: a run must end in reasonable wall time
# a price level in ticks of its instrument: enough that the venues' ladders (a few ticks either side of
# the fair value) and the price's moves stay above zero, few enough that a float price still tells one
# tick from the next (engine.config.Instrument.on_grid; 2**53 is about 9e15)
MIN_PRICE_TICKS = 100.0
MAX_PRICE_TICKS = 1e12
# the market maker's ladder: levels per side (each re-quoted on every price step) and its spacing in ticks
MAX_BOOK_LEVELS = 50
MAX_LADDER_TICKS = 10_000
EXPECT_KEYS = {
    "min_episodes": (int, "a whole number of episodes >= 0"),
    "all_terminal": (bool, "true or false"),
    "outcomes_at_least": (dict, "a table such as { BALANCED = 3 }"),
    "outcomes_at_most": (dict, "a table such as { ESCALATED = 0 }"),
    "max_p99_signal_to_acks_ms": (float, "milliseconds > 0"),
    "max_anomalies": (int, "a whole number >= 0"),
    "anomalies_at_least": (dict, "a table of anomaly kinds the run must record, e.g. { duplicate_exec_id = 1 }"),
    "anomalies_at_most": (dict, "a table of anomaly kinds the run may record at most, e.g. { status_mismatch = 0 }"),
    "max_alerts": (int, "a whole number >= 0 of critical alerts the desk may be paged with (0: none)"),
    "max_orders_sent": (int, "a whole number >= 0 of orders the engine may send (0: risk refuses every one)"),
    "fills_match_positions": (bool, "true or false"),
    "invariants_hold": (bool, "true or false (default true)"),
    "min_legged": (int, "a whole number of legged episodes >= 0: proves the fault really bit"),
    "min_recovery_success": (float, "a share in [0, 1] of legged episodes ending BALANCED or UNWOUND in budget"),
    "coverage": (list, 'an array of rare paths the run must reach, e.g. ["chase", "unwind"]'),
    "outcome_share_at_least": (dict, "a table of shares in [0, 1] of all episodes, e.g. { BALANCED = 0.8 }"),
    "outcome_share_at_most": (dict, "a table of shares in [0, 1] of all episodes, e.g. { ESCALATED = 0.0 }"),
    "min_reorder_success": (float, "a share in [0, 1] of chased episodes that end BALANCED"),
    "min_rollback_success": (float, "a share in [0, 1] of unwound episodes that end UNWOUND"),
    "max_legged_ms": (float, "milliseconds > 0 that every legged episode may stay legged"),
    "leg_lots": (list, "[lots of leg A, lots of leg B] every episode must size, e.g. [5, 2]"),
    "max_residual_t": (float, "tonnes >= 0 a balanced episode may leave unhedged"),
    "no_episode_during": (list, 'fault kinds of this scenario whose windows open no episode, e.g. ["disconnect"]'),
    "no_episode_between": (list, "windows [from_s, to_s] of virtual time that open no episode, e.g. [[100, 130]]"),
    "faults_reach_paths": (bool, "true (default): every fault that fired reached its rare path"),
}
# the rare path (coverage) each fault kind exists to reach: a fault that fires without reaching it
# means the scenario did not test what it claims (faults_reach_paths); kinds absent have no path of
# their own (they shape timing: latency, clock, replication)
FAULT_PATHS: dict[str, tuple[str, ...]] = {
    "reject": ("reject_entry", "reject_during_chase"),
    "partial_fill": ("partial_fill",),
    "late_ack": ("late_ack",),
    "no_ack": ("timeout_cancel", "status_query"),
    "duplicate_report": ("duplicate_report",),
    "disconnect_on_order": ("session_down",),
    "crash_on_order": ("engine_restart",),
    "crash_restart": ("engine_restart", "failover"),
    "drop": ("sequence_gap",),
    "disconnect": ("session_down",),
    "md_stale": ("stale_skip",),
    "md_gap": ("sequence_gap",),
    "price_limit_lock": ("stale_skip",),
    "kill_switch": ("kill_switch",),
    "primary_crash": ("failover",),
    "primary_pause": ("failover", "fenced_attempt"),
    "fill_before_ack": ("fill_before_ack",),
    "cancel_race": ("cancel_reject",),
    "crash_mid_batch": ("engine_restart",),
    "price_jump": ("price_jump",),
    "desk_trade": ("position_mismatch",),
    "late_fill": ("late_fill", "fill_from_status"),
    "disconnect_on_status": ("status_reasked",),
}
WINDOW_KINDS = (
    "disconnect",
    "md_stale",
    "md_gap",
    "price_limit_lock",
    "clock_offset",
    "kill_switch",
    "latency_spike",
    "drop",
    "reject",
    "partial_fill",
)
COVERAGE: tuple[str, ...] = (
    "legged",
    "chase",
    "unwind",
    "overfill_hedge",
    "escalated",
    "reject_entry",
    "reject_during_chase",
    "partial_fill",
    "partial_and_reject",
    "duplicate_report",
    "duplicate_during_recovery",
    "sequence_gap",
    "session_down",
    "disconnect_during_chase",
    "disconnect_during_unwind",
    "stale_skip",
    "cancel_reject",
    "late_ack",
    "risk_refused_recovery",
    "timeout_cancel",
    "status_query",
    "fill_from_status",
    "kill_switch",
    "engine_restart",
    "failover",
    "fenced_attempt",
    "journal_torn",
    "fill_before_ack",
    "price_jump",
    "positions_reconciled",
    "position_mismatch",
    "foreign_cancel",
    "unknown_order",
    "adopted",
    "journal_refused",
    "late_fill",
    "overfill_recorded",
    "status_reasked",
    "mass_status_unsupported",
    "positions_unsupported",
)
RISK_LIMITS = (
    "max_order_lots",
    "max_position_lots",
    "max_notional_cny",
    "price_band_pct",
    "max_orders_per_day",
    "max_slippage_ticks",
)
COVERAGE += tuple(f"risk:{limit}" for limit in RISK_LIMITS)  # an order this limit refused (entry or recovery)
OUTCOMES = ("BALANCED", "UNWOUND", "ESCALATED", "ABORTED", "LEGGED", "WORKING")


@dataclass(frozen=True, slots=True)
class Liquidity:
    levels: int
    size_min: int
    size_max: int
    half_spread_ticks: int
    level_gap_ticks: int
    # lots per level drawn for each side (bid, ask): size_min..size_max unless a side sets its own,
    # so a book can be deep on one side and thin on the other
    bid_sizes: tuple[int, int] = (5, 30)
    ask_sizes: tuple[int, int] = (5, 30)


@dataclass(frozen=True, slots=True)
class VenueConfig:
    name: str
    dictionary: str
    comp_id: str
    md_interval: float  # seconds between conflated market-data publications (0: every change)
    price_band_pct: float  # orders beyond this % of the reference price are rejected (daily limit)
    trading: bool
    liquidity: Liquidity
    up: Latency  # engine -> venue
    down: Latency  # venue -> engine
    certification: bool = False  # behaviour chosen by OrderQty band (broker certification style)
    cancel_on_disconnect: bool = True  # the engine's resting orders are cancelled when its session drops
    position_requests: bool = True  # answers RequestForPositions (AN) with PositionReports (AP)
    mass_status: bool = True  # answers OrderMassStatusRequest (AF); false: BusinessMessageReject, H must do
    mass_status_delay: float = 0.0  # seconds the venue takes to answer a mass status (AF) or position request (AN)
    position_delay: float | None = None  # seconds to answer an AN when its position service differs (None: as AF)

    @property
    def daily_limit(self) -> bool:
        """Has the venue a daily price limit (a band below 100%)? A price_limit_lock sits at it; without
        one a limit-down lock would quote at 0 and limit-up at twice the reference."""
        return self.price_band_pct < 100.0


@dataclass(frozen=True, slots=True)
class Scenario:
    path: Path
    name: str
    description: str
    duration: float
    seed: int
    venues: dict[str, VenueConfig]
    prices: PriceConfig
    engine: EngineConfig
    expect: dict
    faults: tuple[Fault, ...] = ()
    drain: float = 5.0  # virtual seconds after `duration` with no new episodes, for open ones to finish
    failover: FailoverConfig | None = None  # [failover]: a hot standby beside the primary
    files: tuple[Path, ...] = ()  # this file and the bases it extends, in that order


def _latency(sec: Section, name: str) -> Latency:
    s = sec.sub(name)
    dist = s.get("dist", str, choices=("constant", "lognormal"))
    coupling = (
        s.get(
            "vol_ms_per_bp",
            float,
            0.0,
            check=non_negative,
            hint="extra one-way ms per basis point of the venue's last price move, >= 0",
        )
        / 1e3
    )
    if dist == "constant":
        lat = Latency(
            "constant",
            s.get(
                "ms",
                float,
                check=lambda v: 0 <= v <= MAX_LATENCY_MS,
                hint=f"one-way milliseconds in [0, {MAX_LATENCY_MS:g}]",
            )
            / 1e3,
            vol_coupling=coupling,
        )
    else:
        lat = Latency(
            "lognormal",
            s.get(
                "floor_ms",
                float,
                check=lambda v: 0 <= v <= MAX_LATENCY_MS,
                hint=f"the propagation floor in ms, in [0, {MAX_LATENCY_MS:g}]",
            )
            / 1e3,
            s.get(
                "median_ms",
                float,
                check=lambda v: 0 < v <= MAX_LATENCY_MS,
                hint=f"median jitter above the floor, ms in (0, {MAX_LATENCY_MS:g}]",
            )
            / 1e3,
            s.get(
                "sigma", float, check=lambda v: 0 <= v <= 3, hint="lognormal shape in [0, 3], e.g. 0.8 for a fat tail"
            ),
            coupling,
        )
    s.finish()
    return lat


def _venue(name: str, sec: Section) -> VenueConfig:
    dict_name = sec.get("dictionary", str, hint=f"one of {', '.join(['FIX44', *dictionary.available()])}")
    if isinstance(sec.data.get("dictionary"), str) and dict_name != "FIX44" and dict_name not in dictionary.available():
        sec.problem(
            "dictionary",
            f"names no dictionary in fix_specs/ ({dict_name!r})",
            f"write one of {', '.join(['FIX44', *dictionary.available()])}",
        )
    elif dict_name and (unusable := dictionary_problem(dict_name)):
        sec.problem("dictionary", f"cannot be used: {unusable}", "or name another dictionary")
    liq = sec.sub("liquidity", optional=True)
    size_min = liq.get("size_min", int, 5, check=positive, hint="lots >= 1")
    size_max = liq.get("size_max", int, 30, check=positive, hint="lots >= size_min")
    sizes_ok = liq.ok("size_min", "size_max")
    if sizes_ok and size_max < size_min:
        liq.problem("size_max", f"({size_max}) is below size_min ({size_min})", "set size_max >= size_min")
    sides = {}
    for side in ("bid", "ask"):
        lo = liq.get(
            f"{side}_size_min", int, size_min, check=positive, hint=f"lots >= 1 per {side} level (default size_min)"
        )
        hi = liq.get(
            f"{side}_size_max",
            int,
            max(size_max, lo),
            check=positive,
            hint=f"lots >= {side}_size_min per {side} level (default size_max)",
        )
        if sizes_ok and liq.ok(f"{side}_size_min", f"{side}_size_max") and hi < lo:
            liq.problem(
                f"{side}_size_max", f"({hi}) is below {side}_size_min ({lo})", f"set {side}_size_max >= {side}_size_min"
            )
        sides[side] = (lo, hi)
    liquidity = Liquidity(
        levels=liq.get(
            "levels",
            int,
            5,
            check=lambda v: 1 <= v <= MAX_BOOK_LEVELS,
            hint=f"book levels per side in [1, {MAX_BOOK_LEVELS}]",
        ),
        size_min=size_min,
        size_max=size_max,
        half_spread_ticks=liq.get(
            "half_spread_ticks",
            int,
            1,
            check=lambda v: 1 <= v <= MAX_LADDER_TICKS,
            hint=f"ticks in [1, {MAX_LADDER_TICKS:,}]",
        ),
        level_gap_ticks=liq.get(
            "level_gap_ticks",
            int,
            1,
            check=lambda v: 1 <= v <= MAX_LADDER_TICKS,
            hint=f"ticks in [1, {MAX_LADDER_TICKS:,}]",
        ),
        bid_sizes=sides["bid"],
        ask_sizes=sides["ask"],
    )
    liq.finish()
    cfg = VenueConfig(
        name=name,
        dictionary=dict_name,
        comp_id=sec.get("comp_id", str, name),
        md_interval=sec.get(
            "md_interval_ms",
            float,
            0.0,
            check=lambda v: v == 0 or 1 <= v <= 60_000,
            hint="0 (every change) or milliseconds in [1, 60000]",
        )
        / 1e3,
        price_band_pct=sec.get("price_band_pct", float, 100.0, check=positive, hint="a percentage > 0"),
        trading=sec.get("trading", bool, True),
        liquidity=liquidity,
        certification=sec.get("certification", bool, False),
        up=_latency(sec, "latency_up"),
        down=_latency(sec, "latency_down"),
        cancel_on_disconnect=sec.get("cancel_on_disconnect", bool, True),
        position_requests=sec.get("position_requests", bool, True),
        mass_status=sec.get("mass_status", bool, True),
        mass_status_delay=sec.get(
            "mass_status_delay_ms",
            float,
            0.0,
            check=lambda v: 0 <= v <= MAX_LATENCY_MS,
            hint=f"milliseconds in [0, {MAX_LATENCY_MS:g}] the venue takes to answer AF and AN",
        )
        / 1e3,
        position_delay=sec.get(
            "position_delay_ms",
            float,
            check=lambda v: 0 <= v <= MAX_LATENCY_MS,
            hint=f"milliseconds in [0, {MAX_LATENCY_MS:g}] the venue takes to answer an AN",
        )
        / 1e3
        if sec.has("position_delay_ms")
        else None,
    )
    sec.finish()
    return cfg


def _prices(root: Section, instruments: dict[str, Instrument], strategy_fx: str) -> PriceConfig:
    """[prices]: the world price, the FX rate (absent for a pair in one currency) and the local price;
    the FX instrument is the strategy's own."""
    p = root.sub("prices")

    def inst(sec: Section) -> str:
        name = sec.get("instrument", str)
        if name and name not in instruments:
            sec.problem(
                "instrument", f"names unknown instrument {name!r}", f"use one of {', '.join(sorted(instruments))}"
            )
        return name

    w, fx, loc = p.sub("world"), p.sub("fx", optional=True), p.sub("local")
    has_fx = p.has("fx")
    if root.ok("strategy.fx") and has_fx != bool(strategy_fx):
        p.problem(
            "fx",
            "is given, but the strategy has no fx (its legs share a currency)"
            if has_fx
            else f"is missing: the strategy converts leg B's currency through {strategy_fx}",
            "remove [prices.fx]"
            if has_fx
            else f'add fx = {{ instrument = "{strategy_fx}", start = ..., vol_bp = ... }}',
        )
    cfg = PriceConfig(
        step=p.get("step_ms", float, 100.0, check=lambda v: 1 <= v <= 60_000, hint="milliseconds in [1, 60000]") / 1e3,
        world=inst(w),
        world_start=w.get("start", float, check=positive, hint="a price > 0 in its instrument's unit (USD/lb)"),
        world_vol_bp=w.get("vol_bp", float, check=non_negative, hint="basis points per sqrt(second), >= 0"),
        fx=inst(fx) if has_fx else "",
        fx_start=fx.get("start", float, check=positive, hint="a rate > 0 (CNY per USD)") if has_fx else 1.0,
        fx_vol_bp=fx.get("vol_bp", float, check=non_negative, hint="basis points per sqrt(second), >= 0")
        if has_fx
        else 0.0,
        local=inst(loc),
        premium=loc.get("premium", float, 0.0),
        spread_mean=loc.get("spread_mean", float, 0.0),
        spread_sigma=loc.get(
            "spread_sigma", float, check=non_negative, hint="local currency per tonne per sqrt(second), >= 0"
        ),
        half_life=loc.get("half_life_s", float, check=positive, hint="seconds > 0"),
    )
    if has_fx and strategy_fx and cfg.fx and cfg.fx != strategy_fx:
        fx.problem(
            "instrument",
            f"is {cfg.fx!r}, but the strategy prices leg B through {strategy_fx!r}",
            f'write instrument = "{strategy_fx}": the simulated rate is the one the strategy reads',
        )
    units = {n: i.units_per_tonne for n, i in instruments.items()}
    cfg = dataclasses.replace(
        cfg, world_per_tonne=units.get(cfg.world, LB_PER_TONNE), local_per_tonne=units.get(cfg.local, 1.0)
    )
    _price_levels_in_ticks(cfg, instruments, w, fx, loc)
    for s in (w, fx, loc, p):
        s.finish()
    return cfg


def _price_levels_in_ticks(
    cfg: PriceConfig, instruments: dict[str, Instrument], w: Section, fx: Section, loc: Section
) -> None:
    """Each instrument's starting fair price (the local one at its spread's mean) is a price its tick
    can write: MIN_PRICE_TICKS to MAX_PRICE_TICKS ticks. A world price in the wrong unit (4.5 on a tick
    of 5) would have the venues quote a bid of 0; a tick of 1e-9 on a price of 1e6 is below a float's
    resolution."""
    if not (
        w.ok("start", "instrument") and loc.ok("instrument", "premium", "spread_mean") and fx.ok("start", "instrument")
    ):
        return
    local = (cfg.world_start * cfg.world_per_tonne * cfg.fx_start + cfg.premium + cfg.spread_mean) / cfg.local_per_tonne
    levels = [(w, "start", cfg.world, cfg.world_start), (loc, "", cfg.local, local)]
    if cfg.fx:
        levels.insert(1, (fx, "start", cfg.fx, cfg.fx_start))
    for sec, key, name, price in levels:
        inst = instruments.get(name)
        if inst is None or not price > 0:  # an unknown instrument is its own problem; a level <= 0 the run's
            continue
        ticks = price / inst.tick
        if not MIN_PRICE_TICKS <= ticks <= MAX_PRICE_TICKS:
            what = "starts" if key == "start" else "starts (world x FX x units + premium + spread_mean)"
            sec.problem(
                key,
                f"{name} {what} at {price:.6g}, {ticks:.6g} ticks of {inst.tick:g}: a price must be "
                f"{MIN_PRICE_TICKS:,.0f} to {MAX_PRICE_TICKS:,.0f} ticks",
                (
                    f"check the price's unit against instruments.{name}.price_unit"
                    if key
                    else f"check instruments.{cfg.world}.price_unit and instruments.{name}.price_unit, and the premium"
                )
                + f", or change instruments.{name}.tick",
            )


def _expect(root: Section, fault_kinds: set[str]) -> dict:
    e = root.sub("expect")
    out = {}
    for key, (type_, hint) in EXPECT_KEYS.items():
        if e.has(key):
            value = e.get(key, type_, hint=hint)
            if e.ok(key):  # a refused value's stand-in is judged by no later rule
                out[key] = value
    for path in out.get("coverage", []):
        if path not in COVERAGE:
            e.problem("coverage", f"names unknown path {path!r}", f"use any of {', '.join(COVERAGE)}")
    for key in ("min_episodes", "max_anomalies", "max_alerts", "max_orders_sent", "min_legged"):
        if out.get(key, 0) < 0:
            e.problem(key, f"is {out[key]}, below 0", "write a whole number >= 0")
    if not 0.0 <= out.get("min_recovery_success", 0.0) <= 1.0:
        e.problem("min_recovery_success", "is outside [0, 1]", "write a share such as 0.97")
    for key in ("min_reorder_success", "min_rollback_success"):
        if not 0.0 <= out.get(key, 0.0) <= 1.0:
            e.problem(key, "is outside [0, 1]", "write a share such as 0.95")
    if out.get("max_legged_ms", 1.0) <= 0:
        e.problem("max_legged_ms", "is not > 0", "write milliseconds > 0, e.g. 800")
    if out.get("max_residual_t", 0.0) < 0:
        e.problem("max_residual_t", "is negative", "write tonnes >= 0")
    lots = out.get("leg_lots")
    if lots is not None and (len(lots) != 2 or not all(number_problem(n, int) is None and n > 0 for n in lots)):
        e.problem("leg_lots", f"is {lots!r}", "write two whole numbers of lots > 0, e.g. [5, 2]")
    for kind in out.get("no_episode_during", []):
        if kind not in WINDOW_KINDS:
            e.problem(
                "no_episode_during",
                f"names {kind!r}, which has no window",
                f"use fault kinds with a window: {', '.join(WINDOW_KINDS)}",
            )
        elif kind not in fault_kinds:
            e.problem(
                "no_episode_during",
                f"names {kind!r} but the scenario has no such fault",
                "name a kind of this scenario's [[faults]]",
            )
    for window in out.get("no_episode_between", []):
        if not (
            isinstance(window, list)
            and len(window) == 2
            and all(number_problem(x, float) is None for x in window)
            and 0 <= window[0] < window[1]
        ):
            e.problem("no_episode_between", f"has {window!r}", "write windows [from_s, to_s] with 0 <= from_s < to_s")
    for key in ("outcome_share_at_least", "outcome_share_at_most"):
        for outcome, share in out.get(key, {}).items():
            if outcome not in OUTCOMES:
                e.problem(f"{key}.{outcome}", "is not an episode outcome", f"use one of {', '.join(OUTCOMES)}")
            elif not isinstance(share, (int, float)) or isinstance(share, bool) or not 0.0 <= share <= 1.0:
                e.problem(f"{key}.{outcome}", f"is {share!r}", "write a share in [0, 1]")
    for key, names, what in (
        ("outcomes_at_least", OUTCOMES, "an episode outcome"),
        ("outcomes_at_most", OUTCOMES, "an episode outcome"),
        ("anomalies_at_least", tuple(ANOMALY_KINDS), "an anomaly kind"),
        ("anomalies_at_most", tuple(ANOMALY_KINDS), "an anomaly kind"),
    ):
        for name, n in out.get(key, {}).items():
            if name not in names:
                e.problem(f"{key}.{name}", f"is not {what}", f"use one of {', '.join(names)}")
            elif (wrong := number_problem(n, int, "a whole number >= 0")) or n < 0:
                e.problem(f"{key}.{name}", *(wrong or (f"is {n!r}", "write a whole number >= 0")))
    e.finish()
    return out


def _failover(root: Section, faults: list[Fault]) -> FailoverConfig | None:
    if not root.has("failover"):
        for f in faults:
            if f.kind in FAILOVER_KINDS:
                root.problem(
                    f"faults[{f.index}].kind",
                    f"is {f.kind!r} but the scenario has no standby",
                    "add a [failover] table (heartbeat_ms, misses, lease_ttl_ms, ...)",
                )
        return None
    fo = root.sub("failover")
    cfg = FailoverConfig(
        heartbeat=fo.get("heartbeat_ms", float, 100.0, check=positive, hint="milliseconds > 0") / 1e3,
        misses=fo.get("misses", int, 3, check=positive, hint="a whole number of heartbeats >= 1"),
        lease_ttl=fo.get("lease_ttl_ms", float, 300.0, check=positive, hint="milliseconds > 0") / 1e3,
        replication_latency=fo.get("replication_ms", float, 0.2, check=non_negative, hint="milliseconds >= 0") / 1e3,
        fencing=fo.get("fencing", bool, True),
    )
    if fo.ok("lease_ttl_ms", "heartbeat_ms") and cfg.lease_ttl <= cfg.heartbeat:
        fo.problem(
            "lease_ttl_ms",
            f"({cfg.lease_ttl * 1e3:g}) is not longer than heartbeat_ms ({cfg.heartbeat * 1e3:g}): a "
            "keep-alive due as the lease expires comes too late, and the primary would lose its lease",
            "make lease_ttl_ms longer than heartbeat_ms (typically misses x heartbeat_ms)",
        )
    fo.finish()
    return cfg


def read_document(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict, dict[str, Path]]:
    """A scenario file with its `extends` chain merged: (document, key path -> the file that set it).

    `extends = "base.toml"` (a path relative to the extending file, else a scenario of the bundled
    library) starts from the base document;
    tables merge key by key, the extending file winning; arrays (such as [[faults]]) and the whole
    [expect] table are the extending file's own when it has them (a scenario states its own claims);
    [scenario] name and description are never inherited (name defaults to the file's stem).
    """
    data = read_toml(path, "a scenario .toml file")
    origin = {key: path for key in _key_paths(data)}
    base = data.pop("extends", None)
    if base is None:
        return data, origin
    if not isinstance(base, str) or not base:
        raise ConfigError(
            str(path),
            [
                Problem(
                    "extends",
                    f"is {base!r}",
                    'write the path of the base scenario, relative to this file, e.g. extends = "cu_hg_spread.toml"',
                )
            ],
        )
    try:
        base_path = (path.parent / base).resolve()
        if path_kind(base_path) != "file" and path_kind(BUNDLED / base) == "file":  # a bundled base, from anywhere
            base_path = (BUNDLED / base).resolve()
        base_kind = path_kind(base_path)
    except UnusablePath as exc:
        raise ConfigError(
            str(path), [Problem("extends", f"names {base}, which cannot be looked at ({exc.reason})", exc.FIX)]
        ) from None
    if base_path in chain or base_path == path.resolve():
        raise ConfigError(
            str(path),
            [Problem("extends", f"makes a cycle through {base}", "extend a scenario that does not extend this one")],
        )
    if base_kind != "file":
        raise ConfigError(
            str(path),
            [
                Problem(
                    "extends",
                    f"names {base}, which is not a file",
                    f"give the path of an existing scenario relative to {path.parent}",
                )
            ],
        )
    merged, base_origin = read_document(base_path, (*chain, path.resolve()))
    for key in ("name", "description"):  # what a scenario is and proves is never inherited
        if isinstance(merged.get("scenario"), dict):
            merged["scenario"].pop(key, None)
    if "expect" in data:
        merged.pop("expect", None)
        base_origin = {k: v for k, v in base_origin.items() if not k.startswith("expect")}
    _merge(merged, data)
    return merged, {**base_origin, **origin}


def _merge(into: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _key_paths(data: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        out.append(path)
        if isinstance(value, dict):
            out += _key_paths(value, path)
    return out


@functools.cache
def _reason_values(dictionary_name: str, tag: int) -> frozenset[str] | None:
    """The values dictionary `dictionary_name` lets field `tag` take (a reject reason: whole numbers up
    to 999), or None when it cannot be loaded (a problem of the venue's own key) or sets no values."""
    try:
        dd = dictionary.load(dictionary_name).dd
    except dictionary.DictionaryError:
        return None
    if not dd.hasFieldValue(tag):
        return None
    return frozenset(str(v) for v in range(1000) if dd.isFieldValue(tag, str(v)))


def _reasons_allowed(venue: VenueConfig, level: str) -> frozenset[str] | None:
    """The reasons a reject fault at `level` may carry to `venue`'s engine session: its answer is
    validated against the venue's dictionary (quickfix on the wire), and a value outside it would be
    refused there, so the engine never learns of the reject."""
    return _reason_values(venue.dictionary, REJECT_LEVELS[level][0])


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file (with its `extends` chain); raises ConfigError naming the
    file, every key (and the base file that set it, when not this one) and the fix."""
    path = Path(path)
    data, origin = read_document(path)
    problems: list = []
    root = Section(data, "", problems)
    sc = root.sub("scenario")
    # both are written into terminal tables, the HTML report and JUnit XML, which holds no control character
    name = sc.get(
        "name",
        str,
        path.stem,
        check=lambda v: v.strip() != "" and v.isprintable(),
        hint="printable text, no control characters (a name such as cu_hg_spread)",
    )
    description = sc.get(
        "description",
        str,
        check=lambda v: v.isprintable(),
        hint="one line saying what the scenario proves (printable text, no control characters)",
    )
    duration = sc.get(
        "duration_s",
        float,
        check=lambda v: 0 < v <= MAX_DURATION_S,
        hint=f"virtual seconds in (0, {MAX_DURATION_S:g}] (one trading day)",
    )
    seed = sc.get("seed", int, 1, check=seed_in_domain, hint=SEED_HINT, magnitude=False)
    drain = sc.get(
        "drain_s",
        float,
        5.0,
        check=lambda v: 0 <= v <= 3600,
        hint="virtual seconds in [0, 3600] after the end for open episodes to finish",
    )
    sc.finish()
    venues = {n: _venue(n, s) for n, s in root.tables("venues").items()}
    engine = read_engine(root, set(venues))
    prices = _prices(root, engine.instruments, engine.strategy.fx)
    if root.ok("scenario.duration_s", "prices.step_ms") and duration / prices.step > MAX_PRICE_STEPS:
        root.problem(
            "prices.step_ms",
            f"({prices.step * 1e3:g}) over duration_s {duration:g} makes "
            f"{duration / prices.step:,.0f} price steps: the run would not end in reasonable time",
            f"keep duration_s / step below {MAX_PRICE_STEPS:,} (a longer step or a shorter run)",
        )
    faults = read_faults(root, set(venues), duration)
    for f in faults:
        if f.kind == "price_limit_lock" and f.venue in venues and not venues[f.venue].daily_limit:
            root.problem(
                f"faults[{f.index}].venue",
                f"is {f.venue!r}, which has no daily price limit (price_band_pct {venues[f.venue].price_band_pct:g}): "
                "a locked market sits at its limit, which would be a price of 0 or twice the reference",
                f"set [venues.{f.venue}] price_band_pct to its daily limit band (below 100), or lock another venue",
            )
        if f.kind == "reject" and f.venue in venues and (allowed := _reasons_allowed(venues[f.venue], f.level)):
            tag, field_name, _ = REJECT_LEVELS[f.level]
            if str(f.reason) not in allowed:
                root.problem(
                    f"faults[{f.index}].reason",
                    f"is {f.reason}, which {field_name} ({tag}) does not take in {f.venue}'s dictionary "
                    f"({venues[f.venue].dictionary}): the engine's session would refuse the venue's answer",
                    f"use one of {', '.join(sorted(allowed, key=int))}",
                )
        if f.kind == "price_jump" and f.target == "fx" and not prices.fx:
            root.problem(
                f"faults[{f.index}].target",
                'is "fx", but the pair has no FX rate (no [prices.fx])',
                'aim the jump at "world"',
            )
    expect = _expect(root, {f.kind for f in faults})
    failover = _failover(root, faults)
    root.finish()
    if problems:
        for i, p in enumerate(problems):
            where = origin.get(p.key) or origin.get(p.key.split("[", 1)[0])
            if where is not None and where != path:
                problems[i] = Problem(p.key, f"{p.what} (set in {where.name})", p.fix)
        raise ConfigError(str(path), problems)
    return Scenario(
        path,
        name,
        description,
        duration,
        seed,
        venues,
        prices,
        engine,
        expect,
        tuple(faults),
        drain,
        failover,
        tuple(dict.fromkeys([path, *sorted(set(origin.values()) - {path})])),
    )


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(text: str) -> str:
    """A TOML basic string holding `text` exactly: quote, backslash and every control character escaped."""
    out = []
    for c in text:
        if c in ('"', "\\"):
            out.append("\\" + c)
        elif c < " " or c == "\x7f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def to_toml(doc: dict, prefix: str = "") -> str:
    """A scenario document (as read_document merges it) written back as TOML that reads back to the same
    document: small tables of scalars inline, sections as [tables], arrays of tables as [[...]]; strings
    and keys quoted and escaped as TOML needs. For `xmc run --print-scenario` and explore's reproducers."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return _toml_string(v)
        if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
            return v.isoformat()
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{ " + ", ".join(f"{_toml_key(k)} = {value(x)}" for k, x in v.items()) + " }"

    def is_table(v) -> bool:
        return isinstance(v, dict) and (any(isinstance(x, dict) for x in v.values()) or len(v) > 6 or prefix == "")

    def is_array_of_tables(v) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    scalars = {k: v for k, v in doc.items() if not is_table(v) and not is_array_of_tables(v)}
    header = prefix and (scalars or not doc)  # an empty table is written as its header alone
    out = (f"\n[{prefix}]\n" if header else "") + "".join(f"{_toml_key(k)} = {value(v)}\n" for k, v in scalars.items())
    for k, v in doc.items():
        if is_table(v):
            out += to_toml(v, f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k))
    for k, v in doc.items():
        if is_array_of_tables(v):
            for item in v:
                out += f"\n[[{prefix + '.' if prefix else ''}{_toml_key(k)}]]\n" + "".join(
                    f"{_toml_key(a)} = {value(b)}\n" for a, b in item.items()
                )
    return out
