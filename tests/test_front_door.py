"""The front door, searched: hypothesis damages valid scenario documents (deleted keys, wrong types,
zero, negative, huge and NaN numbers, control characters, non-ASCII text, unknown tables) and every
one must end in a report (exit 0 or 1) or in exit 2 with a message naming the file and a key: never
a traceback, never a hang (each run is short by construction or refused by the bounds)."""

from __future__ import annotations

import math
import signal
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.scenario import to_toml
from tests.conftest import ROOT
from xmc.cli import main

pytestmark = pytest.mark.slow

BASE = tomllib.loads((ROOT / "scenarios" / "cu_hg_spread.toml").read_text())
BASE["scenario"]["duration_s"] = 20  # a valid document runs in a fraction of a second


def _paths(doc, prefix=()):
    for key, value in doc.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


PATHS = list(_paths(BASE))
WEIRD = st.one_of(
    st.just(0),
    st.just(-1),
    st.just(-1e9),
    st.just(1e308),
    st.just(math.nan),
    st.just(math.inf),
    st.just(2**63),
    st.just(""),
    st.just("x\x01y"),
    st.just("é"),
    st.just(True),
    st.just([]),
    st.just({}),
    st.just([1, 2, 3]),
    st.text(max_size=8),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
)


# every key any bundled scenario sets (its own tables, not its faults): keys BASE leaves to their defaults
# (drain_s, [failover], limit-mode amends...) are damaged too; drain_s = 0 ended a run in a traceback
LIBRARY_PATHS = sorted(
    {
        path
        for f in (ROOT / "scenarios").glob("*.toml")
        for path in _paths({k: v for k, v in tomllib.loads(f.read_text()).items() if k not in ("faults", "extends")})
    }
)


@st.composite
def damaged(draw, base: dict = BASE, paths: list = PATHS, elsewhere: list = LIBRARY_PATHS):
    """A copy of `base` with one to three keys deleted, given weird values, or joined by unknown ones,
    or a key another document of its kind sets (`elsewhere`) given a weird value, its tables made."""
    import copy

    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        if elsewhere and draw(st.integers(0, 3)) == 0:
            path = draw(st.sampled_from(elsewhere))
            parent = doc
            for key in path[:-1]:
                parent = parent.setdefault(key, {}) if isinstance(parent, dict) else None
            if isinstance(parent, dict):
                parent[path[-1]] = draw(WEIRD)
            continue
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        action = draw(st.sampled_from(["delete", "replace", "replace", "unknown"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(WEIRD)
        else:
            parent[f"surprise_{draw(st.integers(0, 9))}"] = draw(WEIRD)
    return doc


class _Hang(Exception):
    pass


def _alarm(_sig, _frame):
    raise _Hang()


# Every fault table of the bundled library: the fault grammar's real uses, damaged by the search below
LIBRARY_FAULTS = [
    fault
    for f in sorted((ROOT / "scenarios").glob("*.toml"))
    for fault in tomllib.loads(f.read_text()).get("faults", [])
]
FAULT_VALUES = sorted({repr(v) for fault in LIBRARY_FAULTS for v in fault.values()})  # a key's values elsewhere


@st.composite
def damaged_faults(draw):
    """BASE with one to three of the library's fault tables, each with up to two keys deleted, given a
    weird value or another fault's value (a valid value in the wrong place), or joined by unknown ones."""
    import ast
    import copy

    doc = copy.deepcopy(BASE)
    faults = []
    for _ in range(draw(st.integers(1, 3))):
        fault = copy.deepcopy(draw(st.sampled_from(LIBRARY_FAULTS)))
        for _ in range(draw(st.integers(0, 2))):
            key = draw(st.sampled_from([*fault, "surprise"]))
            action = draw(st.sampled_from(["delete", "weird", "elsewhere", "elsewhere"]))
            if action == "delete":
                fault.pop(key, None)
            elif action == "weird":
                fault[key] = draw(WEIRD)
            else:
                fault[key] = ast.literal_eval(draw(st.sampled_from(FAULT_VALUES)))
        faults.append(fault)
    doc["faults"] = faults
    return doc


def _ends_in_a_report_or_a_clear_exit_2(path, capsys) -> None:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        code = main(["run", str(path), "--out", str(path.parent / "out")])
    except _Hang:
        pytest.fail(f"a run of this document did not end within 60 s:\n{path.read_text()}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err
    assert code in (0, 1, 2), code
    assert "Traceback" not in err
    if code == 2:
        assert str(path) in err and (" - " in err or ": " in err), err
        said: dict[str, list[str]] = {}
        for line in err.splitlines():
            if line.startswith("  - ") and ": " in line:
                key, what = line[4:].split(": ", 1)
                said.setdefault(key, []).append(what)
        for key, whats in said.items():  # a value refused is not also missing: the two would contradict
            assert len(whats) == 1 or not any(w.startswith("is missing") for w in whats), (key, whats)
    else:
        assert (path.parent / "out" / "report.json").exists()


@given(doc=damaged())
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
def test_any_damaged_scenario_ends_in_a_report_or_a_clear_exit_2(tmp_path_factory, capsys, doc):
    path = tmp_path_factory.mktemp("doc") / "damaged.toml"
    path.write_text(to_toml(doc))
    _ends_in_a_report_or_a_clear_exit_2(path, capsys)


@given(doc=damaged_faults())
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
def test_any_damaged_fault_schedule_ends_in_a_report_or_a_clear_exit_2(tmp_path_factory, capsys, doc):
    """The search above never reached [[faults]] (an array of tables); this one damages the library's
    own fault tables. It found a crash_restart with journal_damage at 0 s: the journal had no record to
    damage and the run died in a traceback; now exit 2 naming faults[i].journal_damage."""
    path = tmp_path_factory.mktemp("faults") / "damaged.toml"
    path.write_text(to_toml(doc))
    _ends_in_a_report_or_a_clear_exit_2(path, capsys)


def test_journal_damage_before_any_record_is_a_problem_of_the_scenario(tmp_path, capsys):
    text = (ROOT / "scenarios" / "cu_hg_spread.toml").read_text().replace("duration_s = 300", "duration_s = 20")
    path = tmp_path / "early.toml"
    path.write_text(text + '\n[[faults]]\nkind = "crash_restart"\ndelay_ms = 2000\njournal_damage = "bad_content"\n')
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "faults[0].journal_damage: at 0 s (seed 7)" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "edit,key",
    [
        (("duration_s = 300", "duration_s = 1e308"), "scenario.duration_s"),
        (("step_ms = 100", "step_ms = 1e-300"), "prices.step_ms"),
        (("md_interval_ms = 250 ", "md_interval_ms = 1e-9 "), "venues.SHFE.md_interval_ms"),
        (("sigma = 0.5 }", "sigma = 1e300 }"), "venues.SHFE.latency_up.sigma"),
        (("tick = 10\n", "tick = 1e-300\n"), "instruments.CU.tick"),
        (("mass_status_delay_ms = 120", "mass_status_delay_ms = 1e308"), "venues.SHFE.mass_status_delay_ms"),
        (
            ("size_max = 40,", "size_max = 40, ask_size_min = 9, ask_size_max = 3,"),
            "venues.SHFE.liquidity.ask_size_max",
        ),
        (("duration_s = 300", "duration_s = 86400", "step_ms = 100", "step_ms = 1"), "prices.step_ms"),
    ],
)
def test_values_that_would_hang_or_overflow_a_run_are_refused(tmp_path, capsys, edit, key):
    """Once accepted and then hung, overflowed inside the core, or passed as if no limit were set."""
    text = (ROOT / "scenarios" / "cu_hg_spread.toml").read_text()
    for old, new in zip(edit[::2], edit[1::2]):
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err and str(path) in err and "Traceback" not in err


LIVE_BASE = tomllib.loads((ROOT / "tests" / "live_broker.toml").read_text().replace("PORT", "9999"))
LIVE_PATHS = list(_paths(LIVE_BASE))


@given(doc=damaged(LIVE_BASE, LIVE_PATHS, []))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_damaged_live_config_is_loaded_or_refused_naming_a_key(tmp_path_factory, doc):
    """The live config's front door: a damaged document either loads or raises ConfigError naming
    the file and a key; never another exception (a traceback in production)."""
    import os
    from unittest import mock

    from engine.config import ConfigError
    from engine.shell.live_config import load

    path = tmp_path_factory.mktemp("live") / "live.toml"
    path.write_text(to_toml(doc).replace("OUT_DIR", str(path.parent / "out")))
    with mock.patch.dict(os.environ, {"XMC_BROKER_PASSWORD": "pw"}):
        try:
            load(path)
        except ConfigError as err:
            assert str(path) in str(err) and err.problems and all(p.key for p in err.problems)


@pytest.mark.parametrize("command", [["run"], ["certify", "--seeds", "1", "-j", "2"]])
def test_prices_the_model_cannot_make_are_a_problem_of_the_scenario_not_a_traceback(tmp_path, capsys, command):
    """Found by the damaged-document search: HG without its price_unit is priced per tonne, so the local
    price level is ~32 CNY/t, 3 ticks of CU: refused as it loads, naming the local price and the unit.
    A level that starts at enough ticks but against a spread noise of thousands goes negative mid-run:
    the run (and a certify worker process) ends with exit 2 naming the file and the prices table, never
    a traceback."""
    text = (ROOT / "scenarios" / "cu_hg_spread.toml").read_text()
    path = tmp_path / "tiny_level.toml"
    path.write_text(text.replace('price_unit = "lb"\n', "", 1))
    assert 'price_unit = "lb"' not in path.read_text().split("[instruments.HG]")[1].split("[")[0]
    code = main([*command, str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert str(path) in err and "prices.local:" in err and "3.195 ticks" in err and "instruments.HG.price_unit" in err
    old = "premium = 0.0, spread_mean = 0.0, spread_sigma = 60.0"
    assert old in text
    path.write_text(text.replace(old, "premium = -69000.0, spread_mean = 0.0, spread_sigma = 5000.0", 1))
    code = main([*command, str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert str(path) in err and "prices:" in err and "went to" in err and "spread_sigma" in err


def test_the_price_model_refuses_a_fair_value_that_is_no_price():
    import random

    from simulator.prices import PriceConfig, PriceModelError, PriceProcess

    cfg = PriceConfig(0.1, "HG", 4.5, 4.0, "USDCNY", 7.1, 0.5, "CU", 0.0, 0.0, 5_000.0, 20.0, world_per_tonne=1.0)
    process = PriceProcess(cfg, random.Random(1))
    with pytest.raises(PriceModelError, match="the fair price of CU went to -"):
        for _ in range(10_000):
            process.step()
    with pytest.raises(PriceModelError, match="went to"):  # a level that is no price from the start
        PriceProcess(PriceConfig(0.1, "HG", 4.5, 4.0, "", 1.0, 0.0, "CU", -1e6, 0.0, 1.0, 20.0), random.Random(1))


def test_a_run_without_a_drain_ends_as_the_drain_starts(tmp_path, capsys):
    """drain_s = 0 passed validation and ended the run in simpy's "until must be greater than the
    current simulation time" (found by the search above once it reached keys BASE leaves out)."""
    text = (ROOT / "scenarios" / "cu_hg_spread.toml").read_text().replace("duration_s = 300", "duration_s = 60")
    path = tmp_path / "no_drain.toml"
    path.write_text(text.replace("[scenario]\n", "[scenario]\ndrain_s = 0\n", 1))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) in (0, 1)
    err = capsys.readouterr().err
    assert "Traceback" not in err and (tmp_path / "out" / "report.json").exists(), err
