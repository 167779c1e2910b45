"""The regression gate (xmc certify --save-baseline/--baseline, xmc regress): a slowed recovery fails
naming the metric, an unchanged engine passes, one noisy seed cannot fail a build, bad baselines are
exit 2, and the committed baseline covers the bundled library."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import baseline as gate
from tests.helpers import planted
from xmc.cli import BASELINE, SCENARIO_DIR, main

pytestmark = pytest.mark.slow

SCENARIOS = [str(SCENARIO_DIR / f"{n}.toml") for n in ("f01_reject_far_leg_retry", "f19_reject_during_chase")]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A baseline of two chase scenarios x 3 seeds, and the certification's reports."""
    d = tmp_path_factory.mktemp("gate")
    path = d / "baseline.json"
    assert (
        main(["certify", *SCENARIOS, "--seeds", "3", "-j", "1", "--out", str(d / "c"), "--save-baseline", str(path)])
        == 0
    )
    reports = json.loads((d / "c" / "report.json").read_text())["runs"]
    return path, reports


def test_an_unchanged_engine_passes_the_gate(recorded, tmp_path, capsys):
    path, _ = recorded
    assert main(["regress", "--baseline", str(path), "-j", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "6 runs compared (6 identical to the baseline, same run_hash)" in out and "no regression" in out
    assert json.loads((tmp_path / "report.json").read_text())["regression"]["verdict"] == "pass"


def test_a_slowed_chase_fails_the_gate_naming_the_metric(recorded, tmp_path, capsys):
    path, _ = recorded
    with planted.slow_chase(0.08):
        assert main(["regress", "--baseline", str(path), "-j", "1", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    regressed = [line for line in out.splitlines() if " regressed " in line]
    assert any("legged_ms.p50" in line for line in regressed), out
    assert all("replay: xmc run " in line and "--seed " in line for line in regressed)
    assert "REGRESSION:" in out
    rows = json.loads((tmp_path / "report.json").read_text())["regression"]["rows"]
    assert any(r["metric"] == "legged_ms.p50" and r["verdict"] == "regressed" for r in rows)


def test_accepting_changes_writes_the_new_baseline(recorded, tmp_path, capsys):
    path, _ = recorded
    mine = tmp_path / "b.json"
    doc = json.loads(path.read_text())
    del doc["scenarios"]["f19_reject_during_chase"]  # slowed, it fails its own legged-time budget: never accepted
    mine.write_text(json.dumps(doc))
    with planted.slow_chase(0.08):
        assert (
            main(["regress", "--baseline", str(mine), "-j", "1", "--out", str(tmp_path / "a"), "--accept-changes"]) == 0
        )
        assert "baseline updated" in capsys.readouterr().out
        assert main(["regress", "--baseline", str(mine), "-j", "1", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["regress", "--baseline", str(mine), "-j", "1", "--out", str(tmp_path / "c")]) == 0
    assert any("legged_ms.p50" in line and " improved " in line for line in capsys.readouterr().out.splitlines())


def test_a_failed_expectation_is_a_regression_even_when_changes_are_accepted(recorded, tmp_path, capsys):
    _, reports = recorded
    bad = copy.deepcopy(reports)
    bad[0]["expectations"][0]["verdict"] = "fail"
    base = gate.load(recorded[0])
    for accept in (False, True):
        comp = gate.compare(base, bad, base["calibration_s"], accept_changes=accept)
        assert [r.verdict for r in comp.regressions] == ["failed"]
        assert comp.regressions[0].replay == bad[0]["replay"]


def _shifted(reports: list[dict], metric: str, by: dict[int, float]) -> list[dict]:
    out = copy.deepcopy(reports)
    for r in out:
        if r["seed"] in by and r["timings"][metric]["p50"] is not None:
            r["timings"][metric]["p50"] += by[r["seed"]]
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.sampled_from([1, 2, 3]), jump=st.floats(min_value=-1e4, max_value=1e4))
def test_one_noisy_seed_never_fails_the_build(recorded, seed, jump):
    path, reports = recorded
    base = gate.load(path)
    comp = gate.compare(base, _shifted(reports, "legged_ms", {seed: jump}), base["calibration_s"])
    assert not [r for r in comp.regressions if r.metric.startswith("legged_ms")]


@settings(max_examples=30, deadline=None)
@given(shift=st.floats(min_value=0, max_value=500))
def test_a_shift_of_every_seed_beyond_tolerance_fails(recorded, shift):
    path, reports = recorded
    base = gate.load(path)
    comp = gate.compare(base, _shifted(reports, "legged_ms", {1: shift, 2: shift, 3: shift}), base["calibration_s"])
    failed = {r.scenario for r in comp.regressions if r.metric == "legged_ms.p50"}
    for name in ("f01_reject_far_leg_retry", "f19_reject_during_chase"):
        values = [rec["metrics"]["legged_ms.p50"] for rec in base["scenarios"][name]["seeds"].values()]
        limit = 10.0 + 0.10 * abs(sorted(values)[1])
        assert (name in failed) == (shift > limit + 1e-9), (name, shift, limit)


def test_wall_time_fails_only_beyond_the_margin_after_calibration(recorded):
    path, reports = recorded
    base = gate.load(path)
    slow = copy.deepcopy(reports)
    for i, r in enumerate(slow):
        r["wall"]["run_s"] = base["scenarios"][r["scenario"]]["seeds"][str(r["seed"])]["wall"]["run_s"] * (5 + 0.1 * i)
    assert [r.metric for r in gate.compare(base, slow, base["calibration_s"]).regressions] == ["wall.run_s"]
    # the same figures on a machine five times slower (its calibration says so) are no regression
    assert not gate.compare(base, slow, base["calibration_s"] * 5).regressions


def test_sign_test():
    assert gate.sign_test_p(3, 0) == 0.125 and gate.sign_test_p(0, 0) == 1.0
    assert math.isclose(gate.sign_test_p(8, 2), 56 / 1024)


@pytest.mark.parametrize(
    "text,says",
    [
        ("{", "not a readable JSON baseline"),
        ('{"kind": "something"}', "not an xmc certification baseline"),
        ('{"kind": "xmc-certification-baseline", "schema": 99}', "schema 99"),
    ],
)
def test_a_bad_baseline_is_exit_2_naming_the_file(tmp_path, capsys, text, says):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    assert main(["regress", "--baseline", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and says in err and "--save-baseline" in err and "Traceback" not in err


def test_a_bad_tolerance_is_named(recorded, tmp_path, capsys):
    doc = json.loads(recorded[0].read_text())
    doc["tolerances"]["legged_ms.p50"] = {"abs": -1, "rel": 0.1}
    doc["tolerances"]["made_up"] = {"abs": 1, "rel": 0}
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(doc))
    assert main(["certify", SCENARIOS[0], "--baseline", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "tolerances.legged_ms.p50" in err and "tolerances.made_up: not a known metric" in err


def test_the_committed_baseline_covers_the_bundled_library():
    base = gate.load(BASELINE)
    bundled = {p.stem for p in Path(SCENARIO_DIR).glob("*.toml")}
    assert set(base["scenarios"]) == bundled, (
        "record it again: xmc certify --seeds 3 --save-baseline baselines/library.json"
    )
    for name, entry in base["scenarios"].items():
        assert gate.sha256_of(SCENARIO_DIR / f"{name}.toml") == entry["sha256"], (
            f"{name}.toml was edited after the baseline was recorded; record it again (README, Regression gate)"
        )
        # the gate finds it from the baseline's own directory, as on a clean clone (a baseline written
        # elsewhere and copied in names a path that exists only on the machine that wrote it)
        assert (Path(BASELINE).parent / entry["file"]).resolve() == (SCENARIO_DIR / f"{name}.toml").resolve(), (
            f"{name}: file {entry['file']} is not the library's; record the baseline in place "
            f"(xmc certify --save-baseline baselines/library.json)"
        )


@pytest.mark.parametrize("seed", ["²", "-1", "99999999999999999999999", "1.0", ""])
def test_a_baseline_seed_outside_the_seed_domain_is_named(recorded, tmp_path, capsys, seed):
    """`str.isdigit` takes "²", which `int()` cannot read: the gate raised a traceback on it. A seed key is
    read through the runs' seed domain (ASCII digits, at most a signed 64-bit integer)."""
    doc = json.loads(recorded[0].read_text())
    name, entry = next(iter(doc["scenarios"].items()))
    entry["seeds"][seed] = next(iter(entry["seeds"].values()))
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(doc))
    assert main(["regress", "--baseline", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"scenarios.{name}.seeds.{seed}" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "key,value,says",
    [
        ("metrics", {"legged_ms.p50": {"a": 1}}, "metrics: is not a table of metric -> number or null"),
        ("metrics", {"legged_ms.p50": float("nan")}, "metrics: is not a table of metric -> number or null"),
        ("wall", True, "wall: is not a table of timing"),
        ("fills", {"E1-000001": None}, "fills: is not a table of decision"),
        ("outcomes", None, "outcomes: is missing"),
        ("positions", {"CU": "five"}, "positions: is not a table of instrument -> lots"),
        ("run_hash", 7, "run_hash: is not a hash"),
    ],
)
def test_a_baseline_run_record_of_the_wrong_shape_is_named(recorded, tmp_path, capsys, key, value, says):
    """Found by damaging the committed baseline at random: a metric that is a table, a wall record that
    is `true`, a decision's fills that are null all loaded and then raised TypeError/AttributeError in the
    comparison. Every part of a run's record the gate reads is checked for its shape when it loads."""
    doc = json.loads(recorded[0].read_text())
    name, entry = next(iter(doc["scenarios"].items()))
    seed, rec = next(iter(entry["seeds"].items()))
    if value is None and key == "outcomes":
        del rec[key]
    else:
        rec[key] = value
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(doc))
    assert main(["regress", "--baseline", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"scenarios.{name}.seeds.{seed}.{says}" in err and "Traceback" not in err, err
