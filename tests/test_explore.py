"""`xmc explore`: every generated schedule is a valid scenario over the whole grammar, the same seed
gives the same search on any number of workers, failures are shrunk to a replayable scenario, the
planted defects are each found and shrunk within a stated budget, and bad arguments are exit 2."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import explore, runner, scenario
from simulator.faults import KINDS
from tests.conftest import ROOT
from tests.helpers import planted, processes
from xmc.cli import main

pytestmark = pytest.mark.slow

SPREAD = ROOT / "scenarios" / "cu_hg_spread.toml"
FAILOVER = ROOT / "scenarios" / "f25_failover_primary_crash_mid_chase.toml"


@pytest.fixture(scope="module")
def bases():
    return [explore.load_base(SPREAD, 60), explore.load_base(FAILOVER, 60)]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(0, 3))
def test_every_generated_schedule_is_a_valid_scenario(bases, tmp_path_factory, seed, steps):
    rng = random.Random(seed)
    base = bases[seed % 2]
    faults = explore.swarm(rng, base)
    for _ in range(steps):
        faults = explore.mutate(rng, base, faults)
    path = tmp_path_factory.mktemp("gen") / "s.toml"
    path.write_text(scenario.to_toml(explore.document(base, faults, "generated")))
    sc = scenario.load(path)  # a ConfigError here is a generator bug
    assert len(sc.faults) == len(faults) and all(f.kind in base.kinds for f in sc.faults)
    assert sc.duration <= 60.0 and all(f.after < sc.duration for f in sc.faults)  # bounded: every run ends
    # and every window closes before the run does, time to recover left: the liveness oracles judge a
    # run whose faults stopped (a disconnect open at the end failed them for want of a session)
    closes = sc.duration - min(explore.RECOVERY_S, 0.1 * sc.duration) + 1e-9
    # (a fault that hits messages or orders has a window even when none was drawn: open, it hit to the end)
    windows = [
        f
        for f in sc.faults
        if f.until != float("inf")
        or f.kind in explore.NEEDS_UNTIL
        or f.kind in explore.ORDER_KINDS + explore.LINK_KINDS
    ]
    assert all(f.until <= max(closes, f.after + 0.5) for f in windows), [(f.kind, f.after, f.until) for f in windows]


def test_a_run_that_raises_is_a_failure_not_the_end_of_the_search(monkeypatch, bases):
    """A defect that raises inside a run (found: a journal synced after a second crash had closed it)
    ended the whole search with a traceback; it is a failure with its own signature, shrunk and
    written like any other."""

    def broken(sc, seed=None, **kw):
        raise ValueError("flush of closed file")

    monkeypatch.setattr(runner, "run", broken)
    result = explore.run_job({"doc": explore.document(bases[0], [], "boom"), "seed": 1})
    assert result["signature"] == ["exception ValueError"]
    assert "flush of closed file" in result["first"]["exception"]["detail"]


def test_the_generator_reaches_the_whole_grammar(bases):
    rng = random.Random(7)
    seen = {f["kind"] for _ in range(400) for f in explore.swarm(rng, bases[1])}
    assert seen == set(KINDS) - explore.NOT_SEARCHED


def _share_of_failovers_with(bases, seed: int, covers) -> tuple[int, float]:
    """Over 400 drawn schedules: how many have a primary crash or pause, and the share of those with a
    fault for which `covers(fault, at)` holds (`at`: the first failover's time)."""
    rng = random.Random(seed)
    with_failover = spanned = 0
    for _ in range(400):
        faults = explore.swarm(rng, bases[1])
        failovers = [f for f in faults if f["kind"] in ("primary_crash", "primary_pause")]
        if not failovers:
            continue
        with_failover += 1
        spanned += any(covers(f, failovers[0]["after_s"]) for f in faults)
    return with_failover, spanned / max(with_failover, 1)


def test_a_drawn_failover_often_comes_with_the_standby_behind(bases):
    """About half the schedules with a primary crash or pause also cut or delay replication across it."""
    n, share = _share_of_failovers_with(
        bases,
        11,
        lambda f, at: f["kind"] in ("replication_cut", "replication_delay") and f["after_s"] <= at < f["until_s"],
    )
    assert n >= 50 and 0.35 <= share <= 0.7


def test_a_drawn_failover_sometimes_finds_the_standby_down(bases):
    """About a quarter of the schedules with a primary crash or pause also crash the standby before
    it, down until after it: the primary restarts alone, its lease and journal carrying the desk."""
    n, share = _share_of_failovers_with(
        bases,
        13,
        lambda f, at: f["kind"] == "standby_crash" and f["after_s"] <= at < f["after_s"] + f["delay_ms"] / 1e3,
    )
    assert n >= 50 and 0.15 <= share <= 0.45


def _primary_failure(faults: list[dict]) -> dict | None:
    return next(
        (
            f
            for f in faults
            if f["kind"] in ("primary_crash", "primary_pause") or (f["kind"] == "lease_cut" and f["node"] == "primary")
        ),
        None,
    )


def test_a_primary_failure_sometimes_finds_the_standby_frozen_or_cut_off(bases):
    """About a quarter of the schedules whose primary crashes, freezes or is cut off from the lease
    service also freeze the standby or cut it off from the service from before that failure until
    after it (both kinds drawn), so the two race for the lease once the standby can take over."""
    rng = random.Random(17)
    failing = impaired = 0
    kinds = set()
    for _ in range(600):
        faults = explore.swarm(rng, bases[1])
        first = _primary_failure(faults)
        if first is None:
            continue
        failing += 1
        at = first["after_s"]
        for f in faults:
            if f["kind"] == "standby_pause" and f["after_s"] <= at < f["after_s"] + f["delay_ms"] / 1e3:
                kinds.add(f["kind"])
                impaired += 1
                break
            if f["kind"] == "lease_cut" and f["node"] == "standby" and f["after_s"] <= at < f["until_s"]:
                kinds.add(f["kind"])
                impaired += 1
                break
    assert failing >= 100 and 0.15 <= impaired / failing <= 0.45, (failing, impaired)
    assert kinds == {"standby_pause", "lease_cut"}


def test_the_impaired_standby_is_drawn_without_changing_the_schedules_other_draws(bases, monkeypatch):
    """The standby frozen or cut off is drawn from the failure's own stream: with it switched off,
    every schedule is the same but for that one fault at its end (searches, budgets and corpora of
    the other draws stay what they were)."""
    with_it = [explore.swarm(random.Random(23 + i), bases[1]) for i in range(300)]
    monkeypatch.setattr(explore, "STANDBY_IMPAIRED_SHARE", 0.0)
    without = [explore.swarm(random.Random(23 + i), bases[1]) for i in range(300)]
    extra = 0
    for a, b in zip(with_it, without, strict=True):
        if a != b:
            assert a[:-1] == b and a[-1]["kind"] in ("standby_pause", "lease_cut")
            extra += 1
    assert extra > 0


def test_the_same_seed_gives_the_same_search_on_any_number_of_workers(bases):
    one = explore.search(bases, explore.serial_mapper(), seed=5, max_runs=12)
    pool = explore.ProcessMapper(2)
    try:
        two = explore.search(bases, pool, seed=5, max_runs=12)
    finally:
        pool.close()
    assert one.corpus == two.corpus and one.seen == two.seen and one.runs == two.runs == 12
    assert [c["reached"] for c in one.coverage_over_time] == [c["reached"] for c in two.coverage_over_time]
    assert [c["reached"] for c in one.coverage_over_time] == sorted(c["reached"] for c in one.coverage_over_time)


# defect (the concern it plants in) -> (bases, runs within which explore must find it); 120 s runs
FIND_BUDGET = {
    "far_leg_sized_one_lot_over": ([SPREAD], 8),  # sizing
    "unwind_one_lot_too_many": ([SPREAD], 128),  # recovery
    # seed 1 found it at run 373 once the pair bases drew lease_cut and standby_pause too (seeds 2 and 3:
    # 263, and not in 384; before those kinds, seed 2 did not find it in 384 either): a takeover defect
    # needs a drawn primary failure, the rarer the more pair kinds there are. With the standby frozen or
    # cut off across a primary failure drawn too (standby_impaired): seeds 1/2/3 at runs 374/170/96
    "takeover_skips_reconciliation": ([FAILOVER], 384),  # reconciliation
    "position_limit_ignored": ([ROOT / "scenarios" / "f41_risk_limits_at_their_edges.toml"], 16),  # risk
    # seed 1: run 132 with the two new pair kinds (seeds 2 and 3: 26 and 115); with standby_impaired 132/26/45
    "resend_fenced_orders": ([ROOT / "scenarios" / "f34_failover_fenced_resend.toml"], 192),  # fencing
}


@pytest.mark.parametrize("defect", sorted(FIND_BUDGET))
def test_explore_finds_and_shrinks_a_planted_defect(defect, tmp_path):
    paths, budget = FIND_BUDGET[defect]
    bases = [explore.load_base(p, 120) for p in paths]
    with getattr(planted, defect)():
        state = explore.search(bases, explore.serial_mapper(), seed=1, max_runs=budget)
        assert state.failures, f"{defect}: not found in {budget} runs"
        failure = min(state.failures.values(), key=lambda f: f.found_at_run)
        base = next(b for b in bases if str(b.path) == failure.base)
        explore.shrink(base, failure, explore.serial_mapper(), budget=60)
        explore.write_failure(base, failure, tmp_path, 1)
        assert len(failure.shrunk) <= 3, failure.shrunk
        replayed = runner.run(scenario.load(failure.file), failure.seed).report
        assert replayed["verdict"] == "fail"
    clean = runner.run(scenario.load(failure.file), failure.seed).report  # the defect, not the schedule, fails
    assert clean["verdict"] == "pass", [x for x in clean["expectations"] if x["verdict"] != "pass"]
    print(
        f"{defect}: found at run {failure.found_at_run} ({failure.found_after_s:.1f} s), "
        f"shrunk {len(failure.faults)} -> {len(failure.shrunk)} faults in {failure.shrink_runs} runs"
    )


def test_explore_command_writes_its_summary(tmp_path, capsys):
    assert main(["explore", str(SPREAD), "--runs", "8", "-j", "1", "--duration", "60", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "explore.json").read_text())
    assert data["runs"] == 8 and data["coverage_over_time"][-1]["reached"] == len(data["reached"]) > 0
    assert "no violation found" in capsys.readouterr().out


def test_a_failure_is_exit_1_with_a_replayable_scenario(tmp_path, capsys):
    with planted.far_leg_sized_one_lot_over():
        assert (
            main(
                [
                    "explore",
                    str(SPREAD),
                    "--runs",
                    "8",
                    "-j",
                    "1",
                    "--duration",
                    "60",
                    "--out",
                    str(tmp_path),
                    "--shrink-budget",
                    "20",
                ]
            )
            == 1
        )
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "explore.json").read_text())
    failure = data["failures"][0]
    assert "invariant W3" in failure["signature"] and failure["replay"] in out
    assert failure["faults_shrunk"] <= 3 and (tmp_path / "failures").is_dir()
    with planted.far_leg_sized_one_lot_over():
        assert main(failure["replay"].split()[1:]) == 1


def _ctrl_c_at_call(n: int):
    """A serial mapper whose n-th call is interrupted as Ctrl-C would interrupt it."""
    calls = 0

    def mapper(jobs):
        nonlocal calls
        calls += 1
        if calls == n:
            raise KeyboardInterrupt
        return [explore.run_job(j) for j in jobs]

    return mapper


def test_ctrl_c_ends_a_search_with_what_the_finished_batches_found():
    base = explore.load_base(SPREAD, 60)
    with planted.far_leg_sized_one_lot_over():
        state = explore.search([base], _ctrl_c_at_call(2), seed=1, max_runs=10 * explore.BATCH)
    assert state.interrupted and state.runs == explore.BATCH  # the second batch was dropped whole
    assert state.failures and len(state.run_hashes) == explore.BATCH


@pytest.mark.parametrize(
    "interrupt_at,code",
    [
        (1, 130),  # in the first batch: nothing found, nothing failed
        (2, 1),  # in the second: the first batch's failure is kept (shrinking is skipped)
    ],
)
def test_an_interrupted_explore_writes_its_summary_and_the_failures_found(
    monkeypatch, tmp_path, capsys, interrupt_at, code
):
    monkeypatch.setattr(explore, "serial_mapper", lambda: _ctrl_c_at_call(interrupt_at))
    argv = ["explore", str(SPREAD), "--runs", "80", "-j", "1", "--duration", "60", "--out", str(tmp_path)]
    with planted.far_leg_sized_one_lot_over():
        assert main(argv) == code
    data = json.loads((tmp_path / "explore.json").read_text())
    assert data["interrupted"] and data["runs"] == (interrupt_at - 1) * explore.BATCH
    assert "interrupted" in capsys.readouterr().out
    if code == 1:
        failure = data["failures"][0]
        assert failure["faults_shrunk"] is None and Path(failure["file"]).is_file()
        with planted.far_leg_sized_one_lot_over():
            assert main(failure["replay"].split()[1:]) == 1  # written as found, and it still fails


def test_ctrl_c_while_shrinking_writes_the_failure_as_found(monkeypatch, tmp_path):
    monkeypatch.setattr(explore, "serial_mapper", lambda: _ctrl_c_at_call(2))  # the search is one batch
    argv = ["explore", str(SPREAD), "--runs", str(explore.BATCH), "-j", "1", "--duration", "60"]
    with planted.far_leg_sized_one_lot_over():
        assert main([*argv, "--out", str(tmp_path)]) == 1
    data = json.loads((tmp_path / "explore.json").read_text())
    assert data["interrupted"] and data["runs"] == explore.BATCH
    assert data["failures"] and all(f["faults_shrunk"] is None and f["file"] for f in data["failures"])


@pytest.mark.parametrize(
    "argv,says",
    [
        (["--runs", "0"], "--runs 0"),
        (["--runs", "1000001"], "--runs 1000001: give a whole number in 1..1,000,000"),  # was searched for ever
        (["--runs", "9" * 30], "--runs 999"),
        (["--time", "0"], "--time 0"),
        (["--time", ""], "--time : give a duration"),  # was the default five minutes
        (["--time", "soon"], "--time soon"),
        (["-j", "0"], "-j 0"),
        (["--duration", "0.1"], "--duration"),
    ],
)
def test_bad_explore_arguments_are_exit_2(tmp_path, capsys, argv, says):
    assert main(["explore", str(SPREAD), "--out", str(tmp_path), *argv]) == 2
    assert says in capsys.readouterr().err


def test_a_bad_base_is_exit_2(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "absent.toml"), "--runs", "1"]) == 2
    assert "absent.toml" in capsys.readouterr().err


def _need_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        import os

        how = "scripts/bootstrap installs it (.venv/bin/pip install -e '.[ray]')"
        if os.environ.get("CI"):
            pytest.fail(f"Ray is missing in CI: {how}")
        pytest.skip(f"Ray not installed: {how}")


def test_on_a_local_ray_cluster_of_two_workers_explore_and_certify_give_the_local_results(bases, tmp_path):
    _need_ray()
    mapper = explore.RayMapper(None, 2)
    try:
        on_ray = explore.search(bases, mapper, seed=5, max_runs=8)
        assert mapper.pool.ray.cluster_resources().get("CPU") == 2
    finally:
        mapper.close()
    local = explore.search(bases, explore.serial_mapper(), seed=5, max_runs=8)
    assert on_ray.run_hashes == local.run_hashes and on_ray.corpus == local.corpus
    scenarios = [str(ROOT / "scenarios" / "f01_reject_far_leg_retry.toml")]
    assert main(["certify", *scenarios, "--seeds", "2", "-j", "2", "--ray", "--out", str(tmp_path / "ray")]) == 0
    assert main(["certify", *scenarios, "--seeds", "2", "-j", "1", "--out", str(tmp_path / "local")]) == 0
    hashes = [
        [r["run_hash"] for r in json.loads((tmp_path / d / "report.json").read_text())["runs"]]
        for d in ("ray", "local")
    ]
    assert hashes[0] == hashes[1]


def test_a_worker_process_is_capped_in_memory():
    """A run that grows without bound meets the worker's address-space cap as a MemoryError (a finding
    run_job reports), not the OS's out-of-memory killer, which took the whole search down."""
    pool = explore.ProcessMapper(1, memory=1 << 30, fn=processes.allocate)
    try:
        assert pool([{"bytes": 2 << 30}, {"bytes": 1 << 20}]) == [{"took": False}, {"took": True}]
    finally:
        pool.close()


def test_a_schedule_whose_worker_dies_is_a_finding_and_the_search_goes_on():
    """A worker killed mid-batch (by the OS, or a crash in C) broke the pool and ended explore with a
    traceback, losing every failure found: now the batch runs again one job per fresh process, the one
    that dies is reported as `worker died`, the others keep their results, and the next batch runs."""
    pool = explore.ProcessMapper(2, fn=processes.die_if_asked)
    try:
        jobs = [{"n": 1}, {"n": 2, "die": True}, {"n": 3}]
        first = pool(jobs)
        assert [r.get("n") for r in first] == [1, None, 3]
        assert first[1]["signature"] == ["worker died"] and "terminated" in first[1]["first"]["worker died"]["detail"]
        assert pool([{"n": 4}, {"n": 5}]) == [{"n": 4}, {"n": 5}]
    finally:
        pool.close()
