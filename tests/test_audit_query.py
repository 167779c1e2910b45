"""`xmc audit` and the typed audit.parquet: a decision's stages and latencies, an order's life, an
episode's orders and fills, filtered listings over one run or a whole certification, real nulls, and
clear exit-2 errors for bad input. Answers are checked against the run's own report."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import audit_query as q
from engine.report import PARQUET_SCHEMA
from simulator import runner, scenario
from tests.conftest import ROOT, SPREAD, short, variant
from xmc.cli import main

LEGGED = ROOT / "scenarios" / "f25_failover_primary_crash_mid_chase.toml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    result = runner.run(scenario.load(LEGGED), 7)
    runner.write_artifacts(result, out)
    return out, result.report


def _json(capsys) -> list[dict]:
    return json.loads(capsys.readouterr().out)


def test_the_parquet_has_typed_columns_and_real_nulls(run_dir):
    out, report = run_dir
    df = pl.read_parquet(out / "audit.parquet")
    assert list(df.columns) == list(PARQUET_SCHEMA)
    assert df.schema["seed"] == pl.Int64 and df.schema["last_qty"] == pl.Float64 and df.schema["venue"] == pl.Utf8
    for name, dtype in df.schema.items():
        if dtype == pl.Utf8:
            assert df.filter(pl.col(name) == "").is_empty(), name
    assert df.filter(pl.col("stage") == "signal")["price"].null_count() == df.filter(pl.col("stage") == "signal").height
    fills = df.filter(pl.col("stage") == "fill")
    assert fills["exec_id"].null_count() == 0 and fills["last_qty"].min() > 0 and fills["cum_qty"].min() > 0
    assert set(df["role"].drop_nulls()) <= {"entry", "chase", "unwind", "hedge"}
    assert set(df["venue"].drop_nulls()) <= {"SHFE", "COMEX", "FX"}
    assert set(df["run"]) == {report["scenario"]} and set(df["seed"]) == {7}
    terminal = df.filter(pl.col("stage") == "terminal")
    assert sorted(terminal["outcome"]) == sorted(e["outcome"] for e in report["episodes"])


def test_a_decision_timeline_matches_the_report(run_dir, capsys):
    out, report = run_dir
    legged = next(e for e in report["episodes"] if e["recovery"])
    assert main(["audit", str(out), "--decision", legged["decision_id"], "--json"]) == 0
    rows = _json(capsys)
    assert rows[0]["stage"] == "signal" and rows[0]["since_signal_ms"] == 0
    terminal = next(r for r in rows if r["stage"] == "terminal")
    assert terminal["since_signal_ms"] == pytest.approx(legged["signal_to_terminal_ms"], abs=1e-3)
    assert sum(r["since_prev_ms"] for r in rows[: rows.index(terminal) + 1]) == pytest.approx(
        terminal["since_signal_ms"], abs=1e-2
    )
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    assert {"send", "ack", "legged"} <= {r["stage"] for r in rows}


def test_an_episode_lists_its_orders_with_what_filled(run_dir, capsys):
    out, report = run_dir
    ep = next(e for e in report["episodes"] if e["recovery"])
    assert main(["audit", str(out), "--episode", ep["decision_id"], "--json"]) == 0
    orders = {r["cl_ord_id"]: r for r in _json(capsys)}
    for leg in ep["legs"].values():
        assert sum(orders[c]["filled"] for c in leg["orders"]) == pytest.approx(leg["filled"])
        assert orders[leg["orders"][0]]["role"] == "entry"
    assert any(r["role"] == "chase" for r in orders.values())


def test_an_orders_life_ends_at_its_cumulative_quantity(run_dir, capsys):
    out, report = run_dir
    ep = report["episodes"][0]
    cl = ep["legs"]["A"]["orders"][0]
    assert main(["audit", str(out), "--order", cl, "--json"]) == 0
    rows = _json(capsys)
    assert rows[0]["stage"] == "send"
    fills = [r for r in rows if r["stage"] == "fill"]
    assert fills and fills[-1]["cum_qty"] == ep["legs"]["A"]["filled"] == sum(r["last_qty"] for r in fills)


def test_listing_filters_by_outcome_venue_and_time(run_dir, capsys):
    out, report = run_dir
    assert main(["audit", str(out), "--json"]) == 0
    every = _json(capsys)
    assert sorted(r["decision_id"] for r in every) == sorted(e["decision_id"] for e in report["episodes"])
    for outcome, n in report["outcomes"].items():
        assert main(["audit", str(out), "--outcome", outcome, "--json"]) == 0
        assert len(_json(capsys)) == n
    assert main(["audit", str(out), "--venue", "COMEX", "--json"]) == 0
    assert all("COMEX" in r["venues"] for r in _json(capsys))
    middle = sorted(r["at"] for r in every)[len(every) // 2]
    assert main(["audit", str(out), "--from", str(middle), "--json"]) == 0
    later = _json(capsys)
    assert later and all(r["at"] >= middle for r in later) and len(later) < len(every)
    assert main(["audit", str(out), "--to", str(middle), "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # header, rule, one decision


def test_a_whole_certification_is_one_trail_with_run_and_seed(tmp_path, capsys):
    assert (
        main(
            [
                "certify",
                str(ROOT / "scenarios" / "f01_reject_far_leg_retry.toml"),
                "--seeds",
                "2",
                "-j",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    reports = json.loads((tmp_path / "report.json").read_text())["runs"]
    capsys.readouterr()
    assert len(q.files_of(tmp_path)) == 2
    assert main(["audit", str(tmp_path), "--json"]) == 0
    rows = _json(capsys)
    assert {(r["run"], r["seed"]) for r in rows} == {(r["scenario"], r["seed"]) for r in reports}
    assert len(rows) == sum(len(r["episodes"]) for r in reports)
    assert main(["audit", str(tmp_path), "--decision", "E1-000001", "--seed", "2", "--json"]) == 0
    assert {r["seed"] for r in _json(capsys)} == {2}


def test_bad_input_is_exit_2_and_nothing_found_is_exit_1(run_dir, tmp_path, capsys):
    out, _ = run_dir
    assert main(["audit", str(tmp_path / "nowhere")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    junk = tmp_path / "audit.parquet"
    junk.write_text("not parquet")
    assert main(["audit", str(junk)]) == 2
    assert "not a readable parquet file" in capsys.readouterr().err
    assert main(["audit", str(out), "--outcome", "HAPPY"]) == 2
    assert "BALANCED" in capsys.readouterr().err
    assert main(["audit", str(out), "--from", "10", "--to", "5"]) == 2
    assert main(["audit", str(out), "--limit", "0"]) == 2
    assert main(["audit", str(out), "--limit", "9" * 30]) == 2  # was polars' OverflowError, a traceback
    assert "--limit 999" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["audit", str(empty)]) == 2
    assert "no audit.parquet" in capsys.readouterr().err
    assert main(["audit", str(out), "--decision", "E9-999999"]) == 1
    assert "nothing in" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--decision", "--order", "--episode"])
@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_id_is_exit_2_not_the_list_of_every_decision(run_dir, capsys, option, value):
    """`--order ""` was read as no --order at all: the command listed every decision, exit 0."""
    out, _ = run_dir
    assert main(["audit", str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert f"{option} {value!r}: empty" in err and "Traceback" not in err


@pytest.mark.parametrize("option", ["--run", "--instrument", "--venue"])
@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_name_filter_is_exit_2_not_an_empty_listing(run_dir, capsys, option, value):
    """`--run ""` answered "(no rows)" and exit 0: a filter no run can match is a mistyped argument."""
    out, _ = run_dir
    assert main(["audit", str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert f"{option} {value!r}: empty" in err and "Traceback" not in err


def test_one_decision_order_or_episode_takes_run_and_seed_filters_and_refuses_the_list_filters(run_dir, capsys):
    """With --decision, --order or --episode the list filters (--venue, --instrument, --outcome, --from,
    --to, --limit) were silently ignored: `--decision E1-000001 --venue NOWHERE` showed the decision.
    They are refused, naming them; --run and --seed still narrow (and --seed 0 is a filter too)."""
    out, _ = run_dir
    lists = (["--venue", "NOWHERE"], ["--instrument", "CU"], ["--outcome", "BALANCED"], ["--from", "1"], ["--to", "1"])
    for option in (*lists, ["--limit", "3"]):
        for asked in ("--decision", "--order", "--episode"):
            assert main(["audit", str(out), asked, "E1-000001", *option]) == 2, (asked, option)
            err = capsys.readouterr().err
            assert f"{option[0]}: filter the list of decisions" in err and "Traceback" not in err, err
    assert main(["audit", str(out), "--decision", "E1-000001", "--seed", "0"]) == 1
    assert "with these filters" in capsys.readouterr().err
    assert main(["audit", str(out), "--decision", "E9-999999"]) == 1
    assert "with these filters" not in capsys.readouterr().err


_QUERIES = (
    ["--decision", "E1-000001"],
    ["--order", "E1-000001A1"],
    ["--episode", "E1-000001"],
    [],
    ["--venue", "SHFE"],
    ["--outcome", "BALANCED"],
    ["--instrument", "CU"],
    ["--from", "10", "--to", "100"],
    ["--json"],
)


@st.composite
def _damaged_columns(draw):
    """One to three columns of an audit trail dropped, or replaced by another type's values or nulls."""
    edits = draw(
        st.lists(
            st.tuples(
                st.sampled_from(list(PARQUET_SCHEMA)),
                st.sampled_from(["drop", "text", "int", "float", "bool", "null"]),
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda e: e[0],
        )
    )
    return edits, draw(st.sampled_from(_QUERIES))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_damaged_columns())
def test_any_damaged_audit_trail_is_answered_or_refused_naming_the_column(run_dir, tmp_path_factory, capsys, case):
    """A parquet file with the trail's column names but another type in one (ts as text, seed as a
    float), a column of nulls or a column missing passed the check of seven names and then raised
    polars' ColumnNotFoundError, ComputeError or InvalidOperationError out of the query: every column
    of PARQUET_SCHEMA is checked for its name and type when the file is opened."""
    edits, query = case
    out, _ = run_dir
    df = pl.read_parquet(out / "audit.parquet")
    values = {"text": pl.lit("x"), "int": pl.lit(3), "float": pl.lit(1.5), "bool": pl.lit(True), "null": pl.lit(None)}
    for column, op in edits:
        df = df.drop(column) if op == "drop" else df.with_columns(values[op].alias(column))
    damaged = tmp_path_factory.mktemp("damaged")
    df.write_parquet(damaged / "audit.parquet")
    code = main(["audit", str(damaged), *query])
    err = capsys.readouterr().err
    unchanged = df.schema == pl.read_parquet(out / "audit.parquet").schema  # a text column replaced by text
    assert code in ((0, 1) if unchanged else (2,)), (edits, query, err)
    if not unchanged:
        assert str(damaged / "audit.parquet") in err, err
        assert "not an xmc audit trail" in err or "lacks the columns" in err, err


def test_an_amended_orders_rows_keep_its_role(tmp_path):
    """Found when the fault filters were fixed the same way: every row of an amended order (its replaces,
    their answers, its fills after them) had no role in audit.parquet."""
    result = runner.run(scenario.load(ROOT / "scenarios" / "cu_hg_limit_amend.toml"), 1)
    runner.write_artifacts(result, tmp_path)
    rows = pl.read_parquet(tmp_path / "audit.parquet").filter(pl.col("cl_ord_id").is_not_null())
    amended = rows.filter(pl.col("cl_ord_id").str.contains("M"))
    assert amended.height > 0 and amended["role"].null_count() == 0 and rows["role"].null_count() == 0


def test_a_price_on_a_fine_tick_is_shown_as_it_went_on_the_wire(tmp_path, capsys):
    """HG on a 3e-7 grid: an order's price needs 7 decimals; the table shows it so, not cut to 6."""
    sc = variant(tmp_path, SPREAD, "fine_tick", "tick = 0.0005", "tick = 0.0000003")
    result = runner.run(short(sc, 120), 1)
    runner.write_artifacts(result, tmp_path / "out")
    orders = [m for m in result.messages if "\x0135=D\x01" in m and "\x0155=HGH6\x01" in m]
    sent = {m.split("\x0111=")[1].split("\x01")[0]: m.split("\x0144=")[1].split("\x01")[0] for m in orders}
    cl_ord_id, price = next((c, p) for c, p in sent.items() if len(p.partition(".")[2]) > 6)
    assert main(["audit", str(tmp_path / "out"), "--order", cl_ord_id]) == 0
    assert f" {price} " in capsys.readouterr().out
