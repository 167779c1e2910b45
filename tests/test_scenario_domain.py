"""A scenario file's own validation domain (venues, latency, prices, [expect], [failover]) walked at its
edges: each bounded key takes its edge value and refuses the value just past it naming that key, and
each rule between keys holds on both sides. (The engine's keys: tests/test_config_domain.py.)

The base is the bundled spread scenario with a [failover] table; each case changes one thing, writes the
file and loads it as `xmc run` would, expecting a clean load or exactly the one problem it names.
"""

from __future__ import annotations

import itertools
import math
import tomllib

import pytest

from engine.config import ConfigError, Problem
from simulator.scenario import COVERAGE, WINDOW_KINDS, load, to_toml
from tests.conftest import SPREAD
from tests.helpers.documents import DELETE, edited, only_problem

BASE = tomllib.loads(SPREAD.read_text())
BASE["failover"] = {"heartbeat_ms": 100, "misses": 3, "lease_ttl_ms": 300, "replication_ms": 0.2}
_names = itertools.count()


def load_doc(tmp_path, doc: dict):
    path = tmp_path / f"s{next(_names)}.toml"
    path.write_text(to_toml(doc))
    try:
        return load(path), []
    except ConfigError as err:
        assert err.source == str(path)
        return None, err.problems


def accepted(tmp_path, *changes):
    scenario, problems = load_doc(tmp_path, edited(BASE, *changes))
    assert problems == [], f"{changes} was refused: {problems}"
    return scenario


def refused(tmp_path, key: str, *changes) -> Problem:
    return only_problem(load_doc(tmp_path, edited(BASE, *changes))[1], key, changes)


def test_the_base_loads_clean(tmp_path):
    scenario = accepted(tmp_path)
    assert scenario.failover is not None and scenario.failover.misses == 3


_LATENCY = "venues.COMEX.latency_up"
# (key, a value at the edge of its domain, which loads, and the value just past it, which is refused naming the key)
EDGES = [
    ("scenario.duration_s", 0.001, 0.0),
    ("scenario.duration_s", 86_400.0, 86_400.001),
    ("scenario.drain_s", 0.0, -0.001),
    ("scenario.drain_s", 3600.0, 3600.001),
    ("scenario.seed", 2**63 - 1, 2**63),
    ("scenario.seed", -(2**63), -(2**63) - 1),
    ("scenario.seed", 10**12 + 1, 2**64),  # a seed is any signed 64-bit integer, not only a "real magnitude"
    ("venues.COMEX.md_interval_ms", 1.0, 0.999),
    ("venues.COMEX.md_interval_ms", 60_000.0, 60_000.001),
    ("venues.SHFE.price_band_pct", 1e-6, 0.0),
    ("venues.FX.latency_up.ms", 0.0, -0.001),
    ("venues.FX.latency_down.ms", 60_000.0, 60_000.001),
    (f"{_LATENCY}.floor_ms", 0.0, -0.001),
    (f"{_LATENCY}.floor_ms", 60_000.0, 60_000.001),
    (f"{_LATENCY}.median_ms", 0.001, 0.0),
    (f"{_LATENCY}.median_ms", 60_000.0, 60_000.001),
    (f"{_LATENCY}.sigma", 0.0, -0.001),
    (f"{_LATENCY}.sigma", 3.0, 3.001),
    (f"{_LATENCY}.vol_ms_per_bp", 0.0, -0.001),
    ("venues.SHFE.liquidity.levels", 1, 0),
    ("venues.SHFE.liquidity.levels", 50, 51),  # each re-quoted every price step: 10**8 exhausted memory
    ("venues.SHFE.liquidity.half_spread_ticks", 1, 0),
    ("venues.SHFE.liquidity.half_spread_ticks", 10_000, 10_001),
    ("venues.SHFE.liquidity.level_gap_ticks", 1, 0),
    ("venues.SHFE.liquidity.level_gap_ticks", 10_000, 10_001),
    ("venues.SHFE.liquidity.size_min", 1, 0),
    ("venues.SHFE.liquidity.size_max", 10, 9),  # its size_min is 10
    ("venues.SHFE.liquidity.bid_size_min", 1, 0),
    ("venues.SHFE.liquidity.ask_size_max", 40, 0),
    ("venues.SHFE.liquidity.bid_size_max", 10, 9),  # its bid_size_min is size_min, 10
    ("venues.SHFE.mass_status_delay_ms", 0.0, -0.001),
    ("venues.SHFE.mass_status_delay_ms", 60_000.0, 60_000.001),
    ("venues.SHFE.position_delay_ms", 0.0, -0.001),
    ("venues.SHFE.position_delay_ms", 60_000.0, 60_000.001),
    ("prices.step_ms", 1.0, 0.999),
    ("prices.step_ms", 60_000.0, 60_000.001),
    ("prices.world.vol_bp", 0.0, -0.001),
    ("prices.fx.vol_bp", 0.0, -0.001),
    ("prices.local.spread_sigma", 0.0, -0.001),
    ("prices.local.half_life_s", 1e-9, 0.0),
    ("expect.min_episodes", 0, -1),
    ("expect.max_anomalies", 0, -1),
    ("expect.max_alerts", 0, -1),
    ("expect.max_orders_sent", 0, -1),
    ("expect.min_legged", 0, -1),
    ("expect.min_recovery_success", 0.0, -0.001),
    ("expect.min_recovery_success", 1.0, 1.001),
    ("expect.min_reorder_success", 1.0, 1.001),
    ("expect.min_rollback_success", 0.0, -0.001),
    ("expect.max_legged_ms", 0.001, 0.0),
    ("expect.max_residual_t", 0.0, -0.001),
    ("expect.outcome_share_at_least.BALANCED", 1.0, 1.001),
    ("expect.outcome_share_at_most.ESCALATED", 0.0, -0.001),
    ("expect.outcomes_at_least.BALANCED", 0, -1),
    ("expect.outcomes_at_most.ESCALATED", 0, -1),
    ("expect.anomalies_at_least.duplicate_exec_id", 0, -1),
    ("expect.anomalies_at_most.status_mismatch", 0, -1),
    ("failover.heartbeat_ms", 1e-6, 0.0),
    ("failover.misses", 1, 0),
    ("failover.lease_ttl_ms", 100.001, 100.0),  # longer than heartbeat_ms: a keep-alive at expiry is too late
    ("failover.replication_ms", 0.0, -0.001),
]


@pytest.mark.parametrize("key,edge,past", EDGES, ids=[f"{e[0]}={e[2]}" for e in EDGES])
def test_each_bounded_key_takes_its_edge_and_refuses_the_value_just_past_it(tmp_path, key, edge, past):
    accepted(tmp_path, (key, edge))
    refused(tmp_path, key, (key, past))


def test_a_zero_md_interval_publishes_every_change_and_is_taken(tmp_path):
    assert accepted(tmp_path, ("venues.SHFE.md_interval_ms", 0)).venues["SHFE"].md_interval == 0.0


def test_a_run_must_end_in_reasonable_time_whatever_pair_of_keys_makes_it_long(tmp_path):
    day = ("scenario.duration_s", 86_400.0)
    accepted(tmp_path, day, ("prices.step_ms", 43.2))  # 2,000,000 price steps: the most a run may take
    problem = refused(tmp_path, "prices.step_ms", day, ("prices.step_ms", 43.19))
    assert "price steps" in problem.what


@pytest.mark.parametrize(
    "key,value",
    [
        ("expect.leg_lots", [5, True]),
        ("expect.leg_lots", [5, 2, 1]),
        ("expect.leg_lots", [5, 0]),
        ("expect.no_episode_between", [[1, 1]]),
        ("expect.no_episode_between", [[-1, 2]]),
        ("expect.no_episode_between", [[0, math.inf]]),
        ("expect.no_episode_between", [[0, True]]),
        ("expect.no_episode_between", [[0, 1, 2]]),
        ("expect.coverage", ["chase", "teleport"]),
        ("expect.outcomes_at_least.HAPPY", 1),
        ("expect.anomalies_at_most.gremlins", 0),
        ("expect.outcome_share_at_least.BALANCED", True),
        ("expect.outcomes_at_most.ESCALATED", 0.5),
    ],
)
def test_an_expectation_outside_its_domain_is_refused_naming_it(tmp_path, key, value):
    refused(tmp_path, key, (key, value))


def test_expectations_inside_their_domain_are_taken(tmp_path):
    scenario = accepted(
        tmp_path,
        ("expect.leg_lots", [5, 2]),
        ("expect.no_episode_between", [[0, 0.5], [10, 20]]),
        ("expect.coverage", list(COVERAGE)),
    )
    assert scenario.expect["no_episode_between"] == [[0, 0.5], [10, 20]]


def test_no_episode_during_names_a_fault_of_this_scenario_that_has_a_window(tmp_path):
    window = ("faults", [{"kind": "disconnect", "venue": "COMEX", "after_s": 50, "until_s": 55}])
    accepted(tmp_path, window, ("expect.no_episode_during", ["disconnect"]))
    assert (
        "no such fault"
        in refused(tmp_path, "expect.no_episode_during", ("expect.no_episode_during", ["disconnect"])).what
    )
    kind = next(k for k in ("late_ack", "duplicate_report", "no_ack") if k not in WINDOW_KINDS)
    assert "has no window" in refused(tmp_path, "expect.no_episode_during", ("expect.no_episode_during", [kind])).what


def test_prices_and_the_strategy_agree_on_the_fx_rate(tmp_path):
    problem = refused(tmp_path, "prices.fx", ("prices.fx", DELETE))
    assert "USDCNY" in problem.what
    problem = refused(tmp_path, "prices.fx.instrument", ("prices.fx.instrument", "CU"))
    assert "USDCNY" in problem.fix
    one_currency = [
        ("strategy.fx", DELETE),
        ("instruments.HG.currency", "CNY"),
        ("strategy.trigger.max_quote_age_ms.USDCNY", DELETE),
    ]
    assert "remove [prices.fx]" in refused(tmp_path, "prices.fx", *one_currency).fix
    accepted(tmp_path, *one_currency, ("prices.fx", DELETE))


def test_each_starting_price_is_a_hundred_to_a_trillion_ticks_of_its_instrument(tmp_path):
    """The world price, the FX rate and the local price they make each start at 100 to 1e12 ticks: fewer
    and the venues' ladders quote at 0 or below (HG at 4.5 on a tick of 5), more and a float price no
    longer tells one tick from the next (CU at 70,000 on a tick of 1e-9). Each edge loads; just past it
    is refused naming the price that breaks it."""
    accepted(tmp_path, ("prices.world.start", 5.0), ("instruments.HG.tick", 0.05))  # 100 ticks
    problem = refused(tmp_path, "prices.world.start", ("prices.world.start", 5.0), ("instruments.HG.tick", 0.0500001))
    assert "HG" in problem.what and "99.9998 ticks" in problem.what and "instruments.HG.tick" in problem.fix
    assert "0.9 ticks" in refused(tmp_path, "prices.world.start", ("instruments.HG.tick", 5.0)).what
    accepted(tmp_path, ("prices.world.start", 1000.0), ("instruments.HG.tick", 1e-9))  # 1e12 ticks, to a float
    refused(tmp_path, "prices.world.start", ("prices.world.start", 1000.001), ("instruments.HG.tick", 1e-9))
    accepted(tmp_path, ("prices.fx.start", 0.01), ("prices.world.start", 4000.0))  # 100 ticks of 0.0001
    refused(tmp_path, "prices.fx.start", ("prices.fx.start", 0.0099), ("prices.world.start", 4000.0))
    problem = refused(tmp_path, "prices.local", ("instruments.CU.tick", 1e-9))
    assert "CU" in problem.what and "instruments.CU.tick" in problem.fix
    refused(tmp_path, "prices.local", ("prices.local.premium", -70_000.0))  # 0.17 CNY/t from 70,438


@pytest.mark.parametrize("part", ["world", "fx", "local"])
def test_a_price_series_on_an_instrument_nobody_defined_is_refused(tmp_path, part):
    key = f"prices.{part}.instrument"
    problems = load_doc(tmp_path, edited(BASE, (key, "ZN")))[1]
    assert key in [p.key for p in problems]


@pytest.mark.parametrize(
    "section",
    ["scenario", "venues.SHFE", "venues.SHFE.liquidity", _LATENCY, "prices", "prices.world", "expect", "failover"],
)
def test_a_key_nobody_reads_is_refused_in_every_table(tmp_path, section):
    assert "not a known key" in refused(tmp_path, f"{section}.leverage", (f"{section}.leverage", 3)).what


def test_a_failover_fault_needs_a_standby(tmp_path):
    crash = ("faults", [{"kind": "primary_crash", "after_s": 100}])
    accepted(tmp_path, crash)
    assert "no standby" in refused(tmp_path, "faults[0].kind", crash, ("failover", DELETE)).what


def fault(**table) -> tuple[str, list]:
    return ("faults", [table])


REJECT = {"kind": "reject", "venue": "COMEX"}
PARTIAL = {"kind": "partial_fill", "venue": "COMEX"}
JUMP = {"kind": "price_jump", "jump_bp": 50}
DESK = {"kind": "desk_trade", "venue": "SHFE", "after_s": 10}
# (a fault, its key, a value at the edge of the key's domain, which loads, and the value just past it)
FAULT_EDGES = [
    (REJECT, "rate", 1.0, 1.001),
    (REJECT, "rate", 1e-9, 0.0),
    (REJECT, "count", 0, -1),
    (REJECT, "reason", 99, -1),
    (REJECT, "after_s", 0.0, -0.001),
    (REJECT, "after_s", 299.999, 300.0),  # the scenario lasts 300 s
    ({**REJECT, "after_s": 10}, "until_s", 10.001, 10.0),
    (PARTIAL, "fill_ratio", 0.001, 0.0),
    (PARTIAL, "fill_ratio", 0.999, 1.0),
    (PARTIAL, "reports", 1, 0),
    (PARTIAL, "reports", 1000, 1001),  # 10**12 reports: a list of that many chunks at the first partial fill
    ({"kind": "late_ack", "venue": "COMEX"}, "delay_ms", 0.001, 0.0),
    ({"kind": "late_ack", "venue": "COMEX"}, "delay_ms", 0.001, -0.001),
    ({"kind": "disconnect_on_order", "venue": "COMEX", "delay_ms": 50}, "after_ms", 0.0, -0.001),
    (JUMP, "jump_bp", 2000.0, 2000.001),
    (JUMP, "jump_bp", -2000.0, -2000.001),
    (JUMP, "jump_bp", 0.001, 0.0),
    ({**JUMP, "until_s": 100}, "rate_per_s", 10.0, 10.001),
    ({**JUMP, "until_s": 100}, "rate_per_s", 0.0, -0.001),
    (DESK, "lots", 1, 0),
    (DESK, "lots", 1000, 1001),
]


@pytest.mark.parametrize("table,key,edge,past", FAULT_EDGES, ids=[f"{t['kind']}.{k}={p}" for t, k, _, p in FAULT_EDGES])
def test_each_bounded_fault_key_takes_its_edge_and_refuses_the_value_just_past_it(tmp_path, table, key, edge, past):
    accepted(tmp_path, fault(**{**table, key: edge}))
    refused(tmp_path, f"faults[0].{key}", fault(**{**table, key: past}))


@pytest.mark.parametrize(
    "table,key,what",
    [
        ({"kind": "disconnect", "venue": "COMEX", "after_s": 10}, "until_s", "needs an end"),
        ({**JUMP, "rate_per_s": 1}, "until_s", "need a window"),
        ({"kind": "reject", "venue": "LME"}, "venue", "unknown venue 'LME'"),
        ({"kind": "desk_trade", "after_s": 10}, "venue", "booked at one venue"),
        ({**DESK, "side": "against"}, "side", "a desk trade cannot be"),
        (
            {"kind": "price_limit_lock", "venue": "SHFE", "after_s": 10, "until_s": 20, "side": "against"},
            "side",
            "not struck by an order",
        ),
        ({**JUMP, "venue": "COMEX"}, "venue", "does not happen at one venue"),
        ({"kind": "crash_mid_batch", "after_s": 10, "delay_ms": 50, "venue": "COMEX"}, "venue", "not happen at one"),
        ({"kind": "primary_crash", "after_s": 10, "venue": "COMEX"}, "venue", "happens to a node"),
        ({**REJECT, "on_order": True}, "on_order", "not supported for reject"),
        ({**REJECT, "journal_damage": "checksum"}, "journal_damage", "not supported for reject"),
        ({**REJECT, "reports_lost": True}, "reports_lost", "not supported for reject"),
        ({**REJECT, "after_ms": 5}, "after_ms", "not supported for reject"),
        ({**PARTIAL, "level": "session"}, "level", "not supported for partial_fill"),
        ({**REJECT, "on_message": "AN"}, "on_message", "not supported for reject"),
        ({**PARTIAL, "delay_ms": 50}, "delay_ms", "no rest to trade later"),
        ({**REJECT, "stream": "x 3\x01"}, "stream", "is 'x 3\\x01'"),
        ({**REJECT, "stream": "x\u00e9"}, "stream", "is 'x\u00e9'"),
        ({**REJECT, "text": "caf\u00e9"}, "text", "Text (58) cannot carry"),
        ({"kind": "crash_restart", "after_s": 10}, "delay_ms", "changes nothing"),
        ({"kind": "price_limit_lock", "venue": "SHFE", "on_order": True}, "delay_ms", "changes nothing"),
        ({**REJECT, "kind": "teleport"}, "kind", "is 'teleport'"),
    ],
)
def test_a_fault_that_could_never_happen_or_change_nothing_is_refused_naming_its_key(tmp_path, table, key, what):
    _, problems = load_doc(tmp_path, edited(BASE, fault(**table)))
    said = [p.what for p in problems if p.key == f"faults[0].{key}"]
    assert any(what in w for w in said), problems


@pytest.mark.parametrize(
    "table",
    [
        {**PARTIAL, "delay_ms": 50, "rest": "work"},
        {"kind": "disconnect", "venue": "COMEX", "after_s": 10, "until_s": 20},
        {"kind": "price_limit_lock", "venue": "SHFE", "on_order": True, "side": "against", "delay_ms": 100},
        {"kind": "primary_crash", "on_order": True, "venue": "COMEX"},
        {"kind": "disconnect_on_status", "venue": "COMEX", "on_message": "H", "delay_ms": 100, "reports_lost": True},
        {"kind": "crash_restart", "after_s": 10, "delay_ms": 100, "journal_damage": "checksum"},
        {**JUMP, "target": "fx", "rate_per_s": 0.5, "until_s": 60},
        {**REJECT, "level": "business", "reason": 0, "text": "not today", "stream": "x3"},
    ],
)
def test_the_same_keys_where_they_mean_something_are_taken(tmp_path, table):
    assert accepted(tmp_path, fault(**table)).faults[0].kind == table["kind"]


@pytest.mark.parametrize("delay", [-5, "soon", False])
def test_a_delay_refused_for_its_value_is_not_also_called_missing(tmp_path, delay):
    problem = refused(tmp_path, "faults[0].delay_ms", fault(kind="late_ack", venue="COMEX", delay_ms=delay))
    assert "missing" not in problem.what


def _number_leaves(value, path: tuple = ()):
    """(path, value) of every number in a document: keys, entries of inline tables, elements of arrays,
    numbers inside arrays of tables ([[faults]])."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _number_leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _number_leaves(v, (*path, i))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


def _every_number_of_the_library() -> list[tuple[str, tuple]]:
    """Each place a number stands in the bundled library (an array's elements as one place), with the
    first scenario that has it: the whole validation domain, as far as any scenario writes it."""
    from simulator.scenario import BUNDLED

    places: dict[tuple, str] = {}
    for path in sorted(BUNDLED.glob("*.toml")):
        for leaf, _ in _number_leaves(tomllib.loads(path.read_text())):
            place = tuple("#" if isinstance(p, int) else p for p in leaf)
            if place not in places and leaf != ("scenario", "seed"):  # any signed 64-bit seed: its own edge case
                places[place] = path.name
    out = []
    for path in sorted(BUNDLED.glob("*.toml")):
        doc = tomllib.loads(path.read_text())
        for leaf, _ in _number_leaves(doc):
            place = tuple("#" if isinstance(p, int) else p for p in leaf)
            if places.get(place) == path.name:
                out.append((path.name, leaf))
                del places[place]
    return out


@pytest.mark.parametrize("bad", [math.inf, -math.nan, 10**13, -(10**13), 1.0000001e12], ids=str)
def test_no_number_anywhere_in_a_scenario_may_be_infinite_nan_or_beyond_any_real_magnitude(tmp_path, bad):
    """The domain every number shares (engine.config.number_problem), wherever it stands: the per-instrument
    tables (max_quote_age_ms = { CU = inf } switched the staleness guard off; max_position_lots = { CU =
    10**13 } the position limit), lot_ratio, and [expect]'s counts took any number before. Each number of
    each bundled scenario set in turn to one such value is refused, naming that key or one inside it."""
    from simulator.scenario import BUNDLED

    slipped = []
    for name, leaf in _every_number_of_the_library():
        doc = tomllib.loads((BUNDLED / name).read_text())
        table = doc
        for part in leaf[:-1]:
            table = table[part]
        table[leaf[-1]] = bad
        _, problems = load_doc(tmp_path, doc)
        key = ""  # the key a problem names: faults[2].at_s for a table in an array, the array for an element
        for i, part in enumerate(leaf):
            if isinstance(part, int):
                if i + 1 == len(leaf) or isinstance(leaf[i + 1], int):
                    break
                key += f"[{part}]"
            else:
                key += f".{part}" if key else part
        if not any(p.key == key or p.key.startswith((f"{key}.", f"{key}[")) for p in problems):
            slipped.append((name, leaf, [p.key for p in problems]))
    assert slipped == []
