"""The run report's own arithmetic and its JUnit form (engine/report.py): nearest-rank percentiles, the
distributions report.json and the regression gate read, Wilson intervals, outcome and anomaly counts, and what `certify --junit` promises a CI system
(README: one testcase per scenario and seed, failures with the failed expectations, invariants and the
replay command, timings and run_hash as properties)."""

from __future__ import annotations

import dataclasses
import math
from xml.etree import ElementTree as ET

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.engine_core import EngineCore
from engine.core.events import Anomaly, AuditRow
from engine.report import (
    PARQUET_SCHEMA,
    RunResult,
    anomaly_summary,
    audit_columns,
    count_outcomes,
    distribution,
    episode_row,
    junit_xml,
    parquet_dtypes,
    percentile,
    wilson,
    write_audit_parquet,
)
from tests.conftest import fire, report
from tests.test_recovery import RECOVERY, sends
from xmc.cli import main


def _report(scenario: str, seed: int, verdict: str, **changes) -> dict:
    """A run's report with the fields junit_xml reads."""
    report = {
        "scenario": scenario,
        "seed": seed,
        "verdict": verdict,
        "run_hash": f"hash-{scenario}-{seed}",
        "episodes": [{}, {}, {}],
        "recovery": {
            "legged": 2,
            "repaired_in_budget": {"rate": 0.5},
            "reorder_success": {"rate": None},
            "rollback_success": {"rate": 1.0},
        },
        "timings": {
            "signal_to_acks_ms": {"p50": 1.25, "p99": 9.5},
            "reaction_ms": {"p50": 0.5, "p99": 0.75},
            "legged_ms": {"p50": 120.0, "p99": 480.0},
            "signal_to_terminal_ms": {"p50": 2.0, "p99": 700.0},
        },
        "wall": {"run_s": 0.125},
        "replay": f"xmc run scenarios/{scenario}.toml --seed {seed}",
        "expectations": [{"key": "min_episodes", "expected": 3, "actual": 3, "verdict": "pass"}],
        "invariants": {"1": {"name": "legged time bounded", "status": "pass"}},
    }
    report.update(changes)
    return report


@pytest.fixture()
def core(config) -> EngineCore:
    """A core on the spread scenario with tests/test_recovery.py's recovery settings (chase, then unwind)."""
    return EngineCore(dataclasses.replace(config, strategy=dataclasses.replace(config.strategy, recovery=RECOVERY)))


def test_junit_has_one_testcase_per_run_with_its_properties_and_the_failures_named():
    passing = _report("cu_hg_spread", 1, "pass")
    failing = _report(
        "f84_partial",
        3,
        "fail",
        wall={"run_s": 0.5},
        expectations=[
            {"key": "min_episodes", "expected": 3, "actual": 3, "verdict": "pass"},
            {"key": "outcomes_at_least.BALANCED", "expected": 3, "actual": 1, "verdict": "fail"},
            {"key": "max_alerts", "expected": 0, "actual": 2, "verdict": "fail"},
        ],
        invariants={
            "1": {"name": "legged time bounded", "status": "pass"},
            "3": {"name": "outcome matches fills", "status": "fail", "first": {"detail": "D1 BALANCED, leg A short"}},
        },
    )
    # a run failing an invariant alone, whose report has no wall time, timings or first breach
    invariant_only = {
        k: v for k, v in _report("f12_crash", 2, "fail").items() if k not in ("wall", "timings", "expectations")
    }
    invariant_only["expectations"] = []
    invariant_only["invariants"] = {"7": {"name": "no lost fills", "status": "fail"}}
    text = junit_xml([passing, failing, invariant_only], suite="nightly")
    assert text.startswith("<?xml ") and text.endswith("</testsuites>\n")
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    assert (root.get("name"), root.get("tests"), root.get("failures"), root.get("time")) == (
        "nightly",
        "3",
        "2",
        "0.625",
    )
    (suite,) = root.findall("testsuite")
    assert {k: suite.get(k) for k in ("name", "tests", "failures", "errors", "skipped", "time")} == {
        "name": "nightly",
        "tests": "3",
        "failures": "2",
        "errors": "0",
        "skipped": "0",
        "time": "0.625",
    }
    ok, bad, bare = suite.findall("testcase")
    assert (ok.get("classname"), ok.get("name"), ok.get("time")) == ("xmc.cu_hg_spread", "seed 1", "0.125")
    assert (bad.get("classname"), bad.get("name"), bad.get("time")) == ("xmc.f84_partial", "seed 3", "0.500")
    properties = {p.get("name"): p.get("value") for p in ok.findall("properties/property")}
    assert properties == {
        "run_hash": "hash-cu_hg_spread-1",
        "episodes": "3",
        "legged": "2",
        "replay": "xmc run scenarios/cu_hg_spread.toml --seed 1",
        "signal_to_acks_ms_p50": "1.25",
        "signal_to_acks_ms_p99": "9.5",
        "reaction_ms_p50": "0.5",
        "reaction_ms_p99": "0.75",
        "legged_ms_p50": "120.0",
        "legged_ms_p99": "480.0",
        "signal_to_terminal_ms_p50": "2.0",
        "signal_to_terminal_ms_p99": "700.0",
        "repaired_in_budget": "0.5",
        "rollback_success": "1.0",
    }  # a timing or share with no value (no legged episode chased) is left out, not written as None
    assert ok.find("failure") is None
    failure = bad.find("failure")
    assert failure is not None
    assert failure.get("type") == "expectation"
    assert failure.get("message") == "outcomes_at_least.BALANCED; max_alerts"
    assert (failure.text or "").splitlines() == [
        "outcomes_at_least.BALANCED: expected 3, got 1",
        "max_alerts: expected 0, got 2",
        "#3 outcome matches fills: D1 BALANCED, leg A short",
        "replay: xmc run scenarios/f84_partial.toml --seed 3",
    ]
    assert bare.get("time") == "0.000"
    assert {p.get("name") for p in bare.findall("properties/property")} == {
        "run_hash",
        "episodes",
        "legged",
        "replay",
        "repaired_in_budget",
        "rollback_success",
    }
    failure = bare.find("failure")
    assert failure is not None and failure.get("message") == ""
    assert (failure.text or "").splitlines() == [
        "#7 no lost fills: ",
        "replay: xmc run scenarios/f12_crash.toml --seed 2",
    ]
    # the default suite is named for the command; a character XML 1.0 cannot hold becomes U+FFFD
    damaged = _report("b", 1, "fail", replay="xmc run b\x01.toml")
    default = ET.fromstring(junit_xml([damaged]))
    assert default.get("name") == "xmc certify"
    assert (default.findtext("testsuite/testcase/failure") or "").endswith("replay: xmc run b\ufffd.toml")


def test_junit_of_a_run_failing_only_an_invariant_and_of_a_long_failure_message():
    """A run can fail on an invariant alone (its expectation invariants_hold says so), and a message
    attribute stays within 500 characters however many expectations failed."""
    many = [
        {"key": f"coverage.path_{i:03d}", "expected": "reached", "actual": "not reached", "verdict": "fail"}
        for i in range(60)
    ]
    root = ET.fromstring(junit_xml([_report("a", 1, "fail", expectations=many, wall={})]))
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("time") == "0.000"  # a report without its wall time
    failure = case.find("failure")
    assert failure is not None
    assert len(failure.get("message") or "") == 500
    assert (failure.get("message") or "").startswith("coverage.path_000; coverage.path_001; ")
    assert (failure.text or "").count("expected reached, got not reached") == 60


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60), st.floats(0.0, 100.0))
def test_a_percentile_is_the_nearest_rank(values, q):
    """The smallest value with at least q% of the values at or below it (nearest rank): one of the values,
    the minimum at q = 0, the maximum at 100."""
    p = percentile(values, q)
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    assert p == ordered[rank - 1]
    assert sum(v <= p for v in values) >= q / 100.0 * len(values) - 1e-9
    assert sum(v < p for v in values) < max(1.0, q / 100.0 * len(values))


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([3.0, 1.0, 2.0], 0, 1.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.0),
        ([4.0, 1.0, 3.0, 2.0], 51, 3.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        (list(map(float, range(1, 101))), 99, 99.0),
        (list(map(float, range(1, 201))), 99, 198.0),
        ([], 50, None),
    ],
)
def test_percentile_examples(values, q, expected):
    assert percentile(values, q) == expected


def test_a_distribution_is_count_median_p99_and_max_and_none_for_no_values():
    values = [float(v) for v in range(200, 0, -1)]
    assert distribution(values) == {"n": 200, "p50": 100.0, "p99": 198.0, "max": 200.0}
    assert distribution([]) == {"n": 0, "p50": None, "p99": None, "max": None}


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [  # Wilson score intervals at z = 1.96, as statistics texts tabulate them
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (1, 1, 0.2065, 1.0),
        (5, 10, 0.2366, 0.7634),
        (97, 100, 0.9155, 0.9897),
    ],
)
def test_a_wilson_interval_is_the_score_interval(successes, n, low, high):
    w = wilson(successes, n)
    assert (w["n"], w["successes"], w["rate"]) == (n, successes, successes / n)
    assert w["low"] == pytest.approx(low, abs=5e-5) and w["high"] == pytest.approx(high, abs=5e-5)


def test_a_wilson_interval_of_nothing_has_no_rate_and_no_bounds():
    assert wilson(0, 0) == {"n": 0, "successes": 0, "rate": None, "low": None, "high": None}


def test_outcomes_are_counted_one_per_episode():
    rows = [{"outcome": o} for o in ("BALANCED", "UNWOUND", "BALANCED", "ESCALATED", "BALANCED")]
    assert count_outcomes(rows) == {"BALANCED": 3, "UNWOUND": 1, "ESCALATED": 1}
    assert count_outcomes([]) == {}


def test_anomalies_are_counted_per_kind_and_the_first_twenty_kept_in_order():
    anomalies = [Anomaly(i / 10, "unknown_order" if i % 3 else "late_fill", f"C{i}", f"detail {i}") for i in range(25)]
    summary = anomaly_summary(anomalies)
    assert summary["count"] == 25
    assert summary["by_kind"] == {"late_fill": 9, "unknown_order": 16}
    assert list(summary["by_kind"]) == ["late_fill", "unknown_order"]  # sorted by kind: the same report each run
    assert summary["first"] == [f"{a.kind}: {a.detail}" for a in anomalies[:20]]
    assert anomaly_summary([]) == {"count": 0, "by_kind": {}, "first": []}


@pytest.mark.parametrize("n", [5, 10, 19, 23])
def test_a_wilson_interval_stays_within_zero_and_one_at_all_or_nothing(n):
    """All or none of n: the score interval touches 1 or 0, where float rounding lands a hair outside
    (1.0000000000000002 at n = 5): bounds are shares, clipped to [0, 1]."""
    assert wilson(n, n)["high"] == 1.0 and wilson(0, n)["low"] == 0.0


def test_an_episodes_row_holds_its_stages_legs_slippage_and_recovery(core):
    """One legged episode driven through a core: leg A sells 5 lots in two fills, leg B buys 1 of its 2
    and is repaired by a chase; its report row, every field worked out from those messages."""

    t0 = 10.1234567  # stages are reported to the microsecond (s) and the nanosecond (ms since the signal)
    a, b = sends(fire(core, now=t0))
    core.handle(report(a, "xa", "0", "0", 0), t0 + 0.0005)
    core.handle(report(a, "xa1", "F", "1", 3, 3, 69990.0), t0 + 0.001)
    core.handle(report(a, "xa2", "F", "2", 5, 2, 70010.0), t0 + 0.002)
    core.handle(report(b, "xb0", "0", "0", 0), t0 + 0.0600001234)
    core.handle(report(b, "xb1", "F", "1", 1, 1, 4.5010), t0 + 0.07)
    (chase,) = sends(core.handle(report(b, "xb2", "4", "4", 1), t0 + 0.12))  # IOC: the other lot cancelled
    ep = core.episodes[a.decision_id]
    legged = episode_row(ep, core)  # still legged: no time to the end yet
    assert legged["outcome"] == "LEGGED" and legged["signal_to_terminal_ms"] is None
    assert legged["recovery"] == {
        "mode": "chase",
        "chase_attempts": 1,
        "unwind_attempts": 0,
        "reaction_ms": 0.0,
        "legged_ms": None,
    }
    core.handle(report(chase, "xc", "F", "2", 1, 1, 4.5015), t0 + 0.2500004321)
    assert ep.trigger_prices == {"A": 70830, "B": 4.5005}
    row = episode_row(ep, core)
    assert row == {
        "decision_id": a.decision_id,
        "side": "sell_spread",
        "signal_value": ep.signal_value,
        "outcome": "BALANCED",
        "signal_at_s": 10.123457,
        "reason": "",
        "stages_ms": {
            "signal": 0.0,
            "risk_check": 0.0,
            "send_A": 0.0,
            "send_B": 0.0,
            "ack_A": 0.5,
            "fill_A": 1.0,
            "ack_B": 60.000123,
            "fill_B": 70.0,
            "legged": 120.0,
            "recovery_send": 120.0,
            "terminal": 250.000432,
        },
        "signal_to_acks_ms": 60.000123,  # the later of the two acknowledgements
        "signal_to_terminal_ms": 250.000432,
        "legs": {
            "A": {"instrument": "CU", "side": "2", "target": 5, "filled": 5.0, "orders": [a.cl_ord_id]},
            "B": {
                "instrument": "HG",
                "side": "1",
                "target": 2,
                "filled": 2.0,
                "orders": [b.cl_ord_id, chase.cl_ord_id],
            },
        },
        "residual_t": round(ep.residual_tonnes, 6),
        "naked_t": round(ep.naked_tonnes(), 6),
        # entry fills only, against the trigger's price, in ticks, worse positive: A sold at an average of
        # (3 x 69990 + 2 x 70010) / 5 = 69998, 83.2 ticks of 10 under 70830; B's entry bought 1 lot at
        # 4.5010, one tick of 0.0005 over 4.5005 (its chase's fill is the recovery's, not slippage)
        "slippage_ticks": {"A": 83.2, "B": 1.0},
        "recovery": {
            "mode": "chase",
            "chase_attempts": 1,
            "unwind_attempts": 0,
            "reaction_ms": 0.0,  # the chase went out as the leg was found short
            "legged_ms": 130.000432,
        },
    }
    assert row["residual_t"] == pytest.approx(2.320355) and row["naked_t"] == row["residual_t"]


def test_an_episode_never_legged_has_no_recovery_and_one_acknowledgement_no_ack_time(core):

    a, b = sends(fire(core))
    core.handle(report(a, "xa", "0", "0", 0), 0.002)
    row = episode_row(core.episodes[a.decision_id], core)
    assert row["recovery"] is None and row["signal_to_acks_ms"] is None and row["signal_to_terminal_ms"] is None
    assert row["slippage_ticks"] == {} and row["stages_ms"]["ack_A"] == 2.0 and "ack_B" not in row["stages_ms"]


def test_audit_rows_become_typed_columns_with_nulls_where_a_field_does_not_apply():
    rows = [
        AuditRow(1, 0.5, "send", "E1-000001", "E1-000001A1", "CU", "SHFE-ARB-01", "2", 5.0, 70780.0, "entry"),
        AuditRow(2, 0.6, "fill", "E1-000001", "E1-000001A1", "CU", "SHFE-ARB-01", "2", 3.0, 70770.0,
                 "ExecID X-7 cum=3/5"),
        AuditRow(3, 0.7, "fill_from_status", "E1-000001", "E1-000001B2R", "HG", "", "1", 2.0, 4.5015,
                 "ExecID Y1 cum=2/2 (adopted)"),
        AuditRow(4, 0.8, "send", "E1-000001", "E1-000001B3U", "HG", "CME-ARB-01", "2", 2.0, 4.5, "unwind"),
        AuditRow(5, 0.9, "terminal", "E1-000001", "", "", "", "", 0.0, 0.0, "BALANCED"),
        AuditRow(6, 1.0, "anomaly", "", "FOREIGN-9", "", "", "", 0.0, 0.0, ""),
        AuditRow(7, 1.1, "terminal", "E1-000002", "", "", "", "", 0.0, 0.0, "not an outcome"),
        AuditRow(8, 1.2, "send", "E1-000003", "E1-000003A1H", "XX", "", "1", 1.0, 7.0, "hedge"),
    ]  # fmt: skip
    cols = audit_columns(rows, {"CU": "SHFE", "HG": "COMEX"}, "cu_hg_spread", 7)
    assert list(cols) == list(PARQUET_SCHEMA)
    assert cols["run"] == ["cu_hg_spread"] * 8 and cols["seed"] == [7] * 8
    assert cols["seq"] == [1, 2, 3, 4, 5, 6, 7, 8] and cols["ts"] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]
    assert cols["stage"] == ["send", "fill", "fill_from_status", "send", "terminal", "anomaly", "terminal", "send"]
    assert cols["decision_id"] == ["E1-000001"] * 5 + [None, "E1-000002", "E1-000003"]
    assert cols["cl_ord_id"] == ["E1-000001A1", "E1-000001A1", "E1-000001B2R", "E1-000001B3U", None, "FOREIGN-9", None,
                                 "E1-000003A1H"]  # fmt: skip
    assert cols["role"] == ["entry", "entry", "chase", "unwind", None, None, None, "hedge"]
    assert cols["instrument"] == ["CU", "CU", "HG", "HG", None, None, None, "XX"]
    assert cols["venue"] == ["SHFE", "SHFE", "COMEX", "COMEX", None, None, None, None]  # XX: no venue known
    assert cols["account"] == ["SHFE-ARB-01", "SHFE-ARB-01", None, "CME-ARB-01", None, None, None, None]
    assert cols["side"] == ["2", "2", "1", "2", None, None, None, "1"]
    assert cols["qty"] == [5.0, 3.0, 2.0, 2.0, None, None, None, 1.0]
    assert cols["price"] == [70780.0, 70770.0, 4.5015, 4.5, None, None, None, 7.0]
    assert cols["exec_id"] == [None, "X-7", "Y1", None, None, None, None, None]
    assert cols["last_qty"] == [None, 3.0, 2.0, None, None, None, None, None]  # fills only
    assert cols["last_px"] == [None, 70770.0, 4.5015, None, None, None, None, None]
    assert cols["cum_qty"] == [None, 3.0, 2.0, None, None, None, None, None]
    assert cols["outcome"] == [None, None, None, None, "BALANCED", None, None, None]
    assert cols["detail"] == ["entry", "ExecID X-7 cum=3/5", "ExecID Y1 cum=2/2 (adopted)", "unwind", "BALANCED", None,
                              "not an outcome", "hedge"]  # fmt: skip


def test_a_send_whose_text_reads_like_a_fill_is_no_fill():
    """ExecID and cumulative quantity are read out of fill rows only: another row's text proves nothing."""

    row = AuditRow(1, 0.1, "send", "E1-000001", "E1-000001A1", "CU", "", "2", 5.0, 70780.0, "ExecID Z cum=5/5")
    cols = audit_columns([row], {"CU": "SHFE"}, None, None)
    assert (cols["exec_id"], cols["cum_qty"], cols["last_qty"], cols["last_px"]) == ([None], [None], [None], [None])
    assert cols["run"] == [None] and cols["seed"] == [None]


def test_audit_parquet_keeps_its_types_when_a_column_holds_no_value(tmp_path):
    """A run without a fill has no ExecID, last quantity or price anywhere: those columns are still
    written with their types (not polars' Null), so `xmc audit` reads the file it wrote; a report of
    `xmc live` has no scenario, and its rows are named by its mode."""

    rows = [AuditRow(1, 0.5, "send", "E1-000001", "E1-000001A1", "CU", "SHFE-ARB-01", "2", 5.0, 70780.0, "entry")]
    path = tmp_path / "audit.parquet"
    write_audit_parquet(RunResult({"mode": "live", "seed": None}, [], rows, {"CU": "SHFE"}), path)
    frame = pl.read_parquet(path)
    assert dict(frame.schema) == parquet_dtypes()
    assert frame["run"].to_list() == ["live"] and frame["seed"].to_list() == [None]
    assert frame["last_qty"].to_list() == [None] and frame["venue"].to_list() == ["SHFE"]
    assert main(["audit", str(tmp_path), "--order", "E1-000001A1"]) == 0
