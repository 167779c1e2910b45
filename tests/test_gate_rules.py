"""The regression gate's rules (simulator/baseline.py), each held on synthetic runs whose numbers are chosen
at the rule's edges: a metric regresses only when its median move passes the tolerance and more than half
of the seeds moved beyond it; a success share regresses downward; wall time against the lower end of its
interval; a failed invariant, a changed behaviour, a new or missing scenario and an edited file are each
a row. (tests/test_regression_gate.py runs the gate on real certifications.)"""

from __future__ import annotations

import json
import math

import pytest

from simulator import baseline as gate

SCENARIO = "s1"
BASE_LEGGED = 100.0  # legged_ms.p50 of every baseline seed: the limit is 10 + 10% of 100 = 20 ms


def report(seed: int, legged: float = BASE_LEGGED, **kw) -> dict:
    """A run's report as the gate reads it (run_record), with its timings, shares and wall figures."""
    timings = {k: {"p50": 50.0, "p99": 60.0} for k in ("signal_to_acks_ms", "signal_to_terminal_ms", "reaction_ms")}
    timings["legged_ms"] = {"p50": legged, "p99": legged}
    return {
        "scenario": kw.get("scenario", SCENARIO),
        "seed": seed,
        "run_hash": kw.get("run_hash", f"h{seed}"),
        "replay": f"xmc run {SCENARIO}.toml --seed {seed}",
        "verdict": "pass",
        "outcomes": kw.get("outcomes", {"BALANCED": 3}),
        "episodes": [
            {"decision_id": "E1-000001", "legs": {"A": {"filled": 5}, "B": {"filled": 2}}, "outcome": "BALANCED"}
        ],
        "positions": {"venues": kw.get("positions", {"CU": 0, "HG": 0})},
        "invariants": {"1": {"status": "fail" if kw.get("invariant_fails") else "pass"}},
        "expectations": [{"key": "min_episodes", "verdict": "pass"}],
        "timings": timings,
        "recovery": {
            k: {"rate": kw.get("share", 1.0)} for k in ("reorder_success", "rollback_success", "repaired_in_budget")
        },
        "wall": {"run_s": kw.get("run_s", 1.0), "engine_compute_us": {"p50": 10.0}},
    }


def baseline(tmp_path, reports: list[dict], **kw) -> dict:
    path = tmp_path / f"{SCENARIO}.toml"
    path.write_text("# the scenario file\n")
    files = {r["scenario"]: path for r in reports}
    return gate.build(reports, files, 1.0, tmp_path, **kw)


def legged_rows(base: dict, moves: list[float], base_legged: float = BASE_LEGGED) -> list[gate.Row]:
    now = [report(i + 1, base_legged + m) for i, m in enumerate(moves)]
    return [r for r in gate.compare(base, now, 1.0).rows if r.metric == "legged_ms.p50"]


@pytest.fixture
def four_seeds(tmp_path):
    return baseline(tmp_path, [report(s) for s in (1, 2, 3, 4)])


@pytest.mark.parametrize(
    "moves,verdict",
    [
        ([0, 0, 60, 60], None),  # the median moved 30 ms, but only half of the seeds did: no verdict
        ([0, 30, 30, 30], "regressed"),  # three of four beyond the limit
        ([20, 20, 20, 20], None),  # at the limit is inside it
        ([21, 21, 21, 21], "regressed"),
        ([15, 15, 15, 15], None),  # beyond the relative part alone (10 ms), inside abs + rel
        ([-21, -21, -21, -21], "improved"),
        ([-60, -60, 0, 0], None),
    ],
)
def test_a_metric_moves_only_when_its_median_and_most_of_its_seeds_pass_the_limit(four_seeds, moves, verdict):
    rows = legged_rows(four_seeds, moves)
    assert [r.verdict for r in rows] == ([verdict] if verdict else [])


def test_the_limit_is_relative_to_the_size_of_the_baseline_median(tmp_path):
    """abs 10 + rel 10% of |median|: a median of -100 (a signed figure) gives 20, not 10 - 10 = 0."""
    base = baseline(tmp_path, [report(s, -100.0) for s in (1, 2, 3)])
    assert legged_rows(base, [15, 15, 15], -100.0) == []
    assert [r.verdict for r in legged_rows(base, [21, 21, 21], -100.0)] == ["regressed"]


def test_the_row_names_the_seed_that_moved_most(four_seeds):
    (row,) = legged_rows(four_seeds, [21, 50, 22, 23])
    assert row.replay.endswith("--seed 2") and "median of 4 seeds; 4 beyond" in row.change


def test_a_success_share_regresses_when_it_falls(tmp_path):
    base = baseline(tmp_path, [report(s) for s in (1, 2, 3)])
    fell = {r.metric: r.verdict for r in gate.compare(base, [report(s, share=0.5) for s in (1, 2, 3)], 1.0).rows}
    assert fell["reorder_success"] == "regressed"
    base = baseline(tmp_path, [report(s, share=0.5) for s in (1, 2, 3)])
    rose = {r.metric: r.verdict for r in gate.compare(base, [report(s) for s in (1, 2, 3)], 1.0).rows}
    assert rose["reorder_success"] == "improved"


def test_wall_time_fails_on_the_lower_end_of_its_interval_from_two_runs_on(tmp_path):
    base = baseline(tmp_path, [report(s) for s in (1, 2)])
    margin = base["wall_margin"]
    steady = gate.compare(base, [report(1, run_s=margin * 2), report(2, run_s=margin * 2)], 1.0)
    assert [r.metric for r in steady.regressions] == ["wall.run_s"]  # two runs are enough for an interval
    # a geometric mean beyond the margin, but an interval that reaches below it: not proven slower
    spread = gate.compare(base, [report(1, run_s=1.0), report(2, run_s=margin**2 * 2)], 1.0)
    (row,) = [r for r in spread.rows if r.metric == "wall.run_s"]
    assert float(row.now[1:]) > margin and row.verdict == "info"


def test_a_failed_invariant_is_a_failure_row_whatever_is_accepted(tmp_path):
    base = baseline(tmp_path, [report(1)])
    for accept in (False, True):
        comp = gate.compare(base, [report(1, run_hash="h1", invariant_fails=True)], 1.0, accept_changes=accept)
        assert [(r.verdict, r.change) for r in comp.regressions] == [("failed", "invariant 1")]


@pytest.mark.parametrize(
    "change,fills",
    [({"outcomes": {"BALANCED": 2, "UNWOUND": 1}}, "same fills"), ({"positions": {"CU": 1, "HG": 0}}, "fills differ")],
)
def test_a_run_that_behaves_otherwise_is_a_changed_row_and_an_identical_one_is_counted(tmp_path, change, fills):
    base = baseline(tmp_path, [report(1), report(2)])
    comp = gate.compare(base, [report(1), report(2, run_hash="other", **change)], 1.0)
    assert comp.identical_runs == 1 and comp.runs == 2
    rows = [(r.metric, r.verdict, r.change) for r in comp.rows if not r.metric.startswith("wall.")]
    assert rows == [("behaviour (seed 2)", "changed", fills)]
    assert not gate.compare(base, [report(1), report(2, run_hash="other", **change)], 1.0, True).regressions


def test_a_scenario_new_or_not_run_and_a_file_edited_since_are_each_a_row(tmp_path):
    base = baseline(tmp_path, [report(1)])
    comp = gate.compare(base, [report(1, scenario="s2")], 1.0)
    assert {(r.scenario, r.verdict) for r in comp.rows} == {("s1", "not run"), ("s2", "new")}
    edited = tmp_path / f"{SCENARIO}.toml"
    edited.write_text("# the scenario file, edited\n")
    comp = gate.compare(base, [report(1)], 1.0, files={SCENARIO: edited})
    assert [(r.metric, r.verdict) for r in comp.regressions] == [("scenario file", "changed")]


@pytest.mark.parametrize("margin,ok", [(1, True), (0.99, False), (math.inf, False), (math.nan, False), (True, False)])
def test_a_wall_margin_below_one_or_no_number_is_refused_at_load(tmp_path, margin, ok):
    doc = baseline(tmp_path, [report(1)])
    doc["wall_margin"] = margin
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    if ok:
        assert gate.load(path)["wall_margin"] == margin
    else:
        with pytest.raises(gate.BaselineError) as err:
            gate.load(path)
        assert [p.key for p in err.value.problems] == ["wall_margin"]


# ---- one metric of one scenario, straight through the rule (`_compare_metric`), its row word for word ----
TIME = gate.Metric("legged_ms.p50", "ms", +1, 10.0, 0.10, lambda r: None)
SHARE = gate.Metric("repaired_in_budget", "share", -1, 0.05, 0.0, lambda r: None)


def judged(metric: gate.Metric, pairs: list[tuple[str, float, float]], tol=None) -> gate.Comparison:
    comp = gate.Comparison()
    gate._compare_metric("f01", metric, tol or {"abs": metric.abs_tol, "rel": metric.rel_tol}, pairs, comp)
    return comp


def seeds(base: list[float], now: list[float]) -> list[tuple[str, float, float]]:
    return [(f"xmc run f01.toml --seed {i}", b, n) for i, (b, n) in enumerate(zip(base, now), 1)]


def test_nothing_to_compare_counts_nothing():
    comp = judged(TIME, [])
    assert comp.compared == 0 and comp.rows == []


def test_a_move_exactly_at_the_tolerance_is_no_regression_and_just_past_it_is():
    # baseline median 100 ms: the tolerance is 10 + 0.10 x 100 = 20 ms
    at = judged(TIME, seeds([100.0, 100.0, 100.0], [120.0, 120.0, 120.0]))
    assert at.compared == 1 and at.rows == []
    past = judged(TIME, seeds([100.0, 100.0, 100.0], [120.5, 120.5, 120.5]))
    (row,) = past.rows
    assert (row.scenario, row.metric, row.baseline, row.now, row.verdict) == (
        "f01",
        "legged_ms.p50",
        "100.0",
        "120.5",
        "regressed",
    )
    assert row.change == "+20.5 ms (median of 3 seeds; 3 beyond ±20; sign test p=0.125)"


def test_the_tolerance_grows_with_the_size_of_the_baseline_median():
    # baseline median 1000 ms: 10 + 100 = 110 ms; the same +50 ms is noise here
    assert judged(TIME, seeds([1000.0] * 3, [1050.0] * 3)).rows == []
    assert judged(TIME, seeds([1000.0] * 3, [1111.0] * 3)).rows[0].verdict == "regressed"
    # the absolute part alone where the median is 0
    assert judged(TIME, seeds([0.0] * 3, [10.0] * 3)).rows == []
    assert judged(TIME, seeds([0.0] * 3, [10.5] * 3)).rows[0].verdict == "regressed"
    # a negative median's size counts, not its sign
    assert judged(TIME, seeds([-100.0] * 3, [-80.0] * 3)).rows == []


def test_a_regression_needs_more_than_half_the_seeds_beyond_the_tolerance():
    # 2 of 4 beyond (not more than half), though the median move is beyond too
    two = judged(TIME, seeds([100.0] * 4, [130.0, 130.0, 119.0, 100.0]))
    assert two.rows == []
    three = judged(TIME, seeds([100.0] * 4, [130.0, 130.0, 121.0, 100.0]))
    assert [r.verdict for r in three.rows] == ["regressed"]
    # one seed far out, the median within: noise
    assert judged(TIME, seeds([100.0] * 3, [10_000.0, 100.0, 100.0])).rows == []


def test_an_improvement_is_reported_the_same_way_and_never_blocks():
    comp = judged(TIME, seeds([100.0] * 3, [50.0, 60.0, 70.0]))
    (row,) = comp.rows
    assert row.verdict == "improved" and row.now == "60.0"
    assert row.change == "-40.0 ms (median of 3 seeds; 3 beyond ±20; sign test p=0.125)"
    assert row.replay == "xmc run f01.toml --seed 1"  # the seed that moved most, the way it moved
    assert comp.regressions == []


def test_the_replay_named_is_the_seed_that_moved_most_toward_the_verdict():
    comp = judged(TIME, seeds([100.0, 100.0, 100.0], [140.0, 190.0, 125.0]))
    assert comp.rows[0].replay == "xmc run f01.toml --seed 2"


def test_a_share_regresses_when_it_falls():
    # shares: 5 points of absolute tolerance, lower is worse
    fell = judged(SHARE, seeds([0.9] * 3, [0.8, 0.84, 0.85]))
    (row,) = fell.rows
    assert (row.baseline, row.now, row.verdict) == ("90%", "84%", "regressed")
    assert row.change.startswith("-6 pp (median of 3 seeds; 3 beyond ±0.05; sign test p=0.125)")
    assert judged(SHARE, seeds([0.9] * 3, [0.86] * 3)).rows == []
    rose = judged(SHARE, seeds([0.8] * 3, [0.9] * 3))
    assert [r.verdict for r in rose.rows] == ["improved"]


def test_the_sign_test_counts_every_move_not_only_those_beyond_the_tolerance():
    # 4 seeds worse beyond the tolerance, one a little worse, none better: 5 of 5 up
    comp = judged(TIME, seeds([100.0] * 5, [130.0, 130.0, 130.0, 130.0, 101.0]))
    assert comp.rows[0].change.endswith("4 beyond ±20; sign test p=0.031)")
    # the same with the fifth a little better: 4 up, 1 down
    comp = judged(TIME, seeds([100.0] * 5, [130.0, 130.0, 130.0, 130.0, 99.0]))
    assert comp.rows[0].change.endswith("4 beyond ±20; sign test p=0.188)")


@pytest.mark.parametrize(
    ("worse", "better", "p"),
    [(0, 0, 1.0), (1, 0, 0.5), (0, 1, 1.0), (3, 0, 0.125), (2, 1, 0.5), (8, 2, 56 / 1024), (5, 5, 638 / 1024)],
)
def test_the_sign_test_is_the_binomial_tail(worse, better, p):
    assert math.isclose(gate.sign_test_p(worse, better), p)


def test_a_seed_exactly_at_the_tolerance_does_not_count_as_beyond_it():
    # median move 25 ms, past the 20 ms tolerance, but only 2 of 4 seeds strictly beyond it
    assert judged(TIME, seeds([100.0] * 4, [130.0, 130.0, 120.0, 120.0])).rows == []
    assert judged(TIME, seeds([100.0] * 4, [70.0, 70.0, 80.0, 80.0])).rows == []


def test_a_seed_that_did_not_move_counts_neither_way_in_the_sign_test():
    comp = judged(TIME, seeds([100.0] * 4, [130.0, 130.0, 130.0, 100.0]))
    assert comp.rows[0].change.endswith("3 beyond ±20; sign test p=0.125)")  # 3 up, 0 down
    comp = judged(TIME, seeds([100.0] * 4, [70.0, 70.0, 70.0, 100.0]))
    assert comp.rows[0].change.endswith("3 beyond ±20; sign test p=0.125)")


def test_a_large_fall_of_a_share_is_said_in_whole_points():
    (row,) = judged(SHARE, seeds([0.9] * 3, [0.2] * 3)).rows
    assert (row.baseline, row.now, row.verdict) == ("90%", "20%", "regressed")
    assert row.change.startswith("-70 pp (median of 3 seeds")


def test_each_metric_compared_is_counted():
    comp = gate.Comparison()
    for _ in range(2):
        gate._compare_metric("f01", TIME, {"abs": 10.0, "rel": 0.1}, seeds([100.0] * 3, [100.0] * 3), comp)
    assert comp.compared == 2 and comp.rows == []


# ---- wall time, straight through its rule (`_compare_wall`) ----
def wall_rows(pairs: list[tuple[float | None, float | None]], calibration_now: float, margin: float = 3.0) -> list:
    comp = gate.Comparison()
    base = {"calibration_s": 0.5, "wall_margin": margin}
    walls = [
        ({"run_s": b, "engine_compute_us.p50": 10.0}, {"run_s": n, "engine_compute_us.p50": 10.0}) for b, n in pairs
    ]
    gate._compare_wall(base, walls, calibration_now, comp)
    return [r for r in comp.rows if r.metric == "wall.run_s"]


def test_wall_time_is_judged_on_this_machines_speed_against_the_baselines():
    # twice as long on a machine twice as slow (calibration 1.0 s against the baseline's 0.5 s): unchanged
    (row,) = wall_rows([(1.0, 2.0)] * 4, calibration_now=1.0)
    assert row == gate.Row(
        "(all)",
        "wall.run_s",
        "x1",
        "x1.00",
        "95% [1.00, 1.00] over 4 runs, machine speed x0.50 of the baseline's; fails beyond x3",
        "info",
    )
    # the same seconds on a machine as fast as the baseline's: twice as slow, within the margin of 3
    assert wall_rows([(1.0, 2.0)] * 4, calibration_now=0.5)[0].now == "x2.00"


def test_the_wall_interval_is_the_95_percent_interval_of_the_mean_log_ratio():
    e = math.exp
    (row,) = wall_rows([(1.0, e(0.1)), (1.0, e(-0.1)), (1.0, e(0.1)), (1.0, e(-0.1))], calibration_now=0.5)
    # mean log 0; stdev of ±0.1 over four runs 0.11547; half-width 1.96 x 0.11547 / 2 = 0.11316
    assert row.now == "x1.00" and row.change.startswith("95% [0.89, 1.12] over 4 runs")


def test_wall_time_regresses_only_when_the_interval_lies_wholly_beyond_the_margin():
    # every run exactly twice as long: the interval is [2, 2], on a margin of 2 and not beyond it
    assert wall_rows([(1.0, 2.0)] * 3, calibration_now=0.5, margin=2.0)[0].verdict == "info"
    assert wall_rows([(1.0, 2.5)] * 3, calibration_now=0.5, margin=2.0)[0].verdict == "regressed"


def test_runs_without_a_positive_wall_time_are_left_out_and_the_other_figure_still_judged():
    # a zero or missing figure on either side has no ratio: left out, not a division by zero
    (row,) = wall_rows([(0.0, 1.0), (1.0, 0.0), (None, 1.0), (1.0, 2.0), (1.0, 2.0)], calibration_now=0.5)
    assert row.change.startswith("95% [2.00, 2.00] over 2 runs")
    # fewer than two runs with a figure: no interval, and the next figure is judged all the same
    comp = gate.Comparison()
    base = {"calibration_s": 0.5, "wall_margin": 3.0}
    walls = [({"run_s": None, "engine_compute_us.p50": 10.0}, {"run_s": None, "engine_compute_us.p50": 20.0})] * 2
    gate._compare_wall(base, walls, 0.5, comp)
    assert [(r.metric, r.now) for r in comp.rows] == [("wall.engine_compute_us.p50", "x2.00")]
