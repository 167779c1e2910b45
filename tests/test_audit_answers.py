"""`xmc audit`'s answers on a trail written by hand, so each is known exactly: two runs, two seeds, one
decision id in both seeds, a decision without a signal row, rows after the terminal one, a row seq
puts before a row with an earlier time. Each query reads real parquet files through `audit_query.scan`.
(tests/test_audit_query.py checks the answers against a real run's report.)"""

from __future__ import annotations

import polars as pl
import pytest

from engine import audit_query as q
from engine.report import parquet_dtypes

# the columns each row below gives, in its order; the trail's other columns are null
NAMES = (
    "run",
    "seed",
    "seq",
    "ts",
    "stage",
    "decision_id",
    "cl_ord_id",
    "role",
    "instrument",
    "venue",
    "side",
    "qty",
    "price",
    "exec_id",
    "last_qty",
    "last_px",
    "outcome",
)
ROWS = [
    ("r1", 1, 1, 8.0, "send", "D2", "D2A1", "entry", "CU", "SHFE", "1", 5.0, 100.0, None, None, None, None),
    ("r1", 1, 2, 8.3, "terminal", "D2", None, None, None, None, None, None, None, None, None, None, "UNWOUND"),
    ("r1", 1, 3, 9.9, "risk", "D1", None, None, "CU", None, None, None, None, None, None, None, None),
    ("r1", 1, 4, 10.0, "signal", "D1", None, None, None, None, None, None, None, None, None, None, None),
    ("r1", 1, 5, 10.01, "send", "D1", "D1A1", "entry", "CU", "SHFE", "1", 5.0, 100.0, None, None, None, None),
    ("r1", 1, 6, 10.02, "send", "D1", "D1B1", "entry", "HG", "COMEX", "2", 2.0, 4.5, None, None, None, None),
    ("r1", 1, 7, 10.03, "fill", "D1", "D1A1", None, "CU", "SHFE", None, None, None, "e1", 2.0, 100.0, None),
    ("r1", 1, 8, 10.04, "fill", "D1", "D1A1", None, "CU", "SHFE", None, None, None, "e2", 3.0, 110.0, None),
    ("r1", 1, 9, 10.2, "legged", "D1", None, None, None, None, None, None, None, None, None, None, None),
    ("r1", 1, 10, 10.15, "fill", "D1", "D1B1", None, "HG", "COMEX", None, None, None, "e3", 2.0, 4.5, None),
    ("r1", 1, 11, 10.5, "terminal", "D1", None, None, None, None, None, None, None, None, None, None, "BALANCED"),
    ("r1", 1, 12, 11.0, "late_report", "D1", "D1B1", None, "HG", "COMEX", None, None, None, None, None, None, None),
    ("r1", 2, 1, 5.0, "signal", "D1", None, None, None, None, None, None, None, None, None, None, None),
    ("r1", 2, 2, 5.02, "send", "D1", "D1B1", "entry", "HG", "COMEX", "2", 2.0, 4.6, None, None, None, None),
    ("r1", 2, 3, 5.1, "terminal", "D1", None, None, None, None, None, None, None, None, None, None, "ESCALATED"),
    ("r2", 1, 1, 1.0, "signal", "D9", None, None, None, None, None, None, None, None, None, None, None),
    ("r2", 1, 2, 1.2, "terminal", "D9", None, None, None, None, None, None, None, None, None, None, "ABORTED"),
]


@pytest.fixture(scope="module")
def trail(tmp_path_factory) -> pl.LazyFrame:
    """Two runs' audit.parquet files in one certification directory, read back as `xmc audit DIR` reads them."""
    top = tmp_path_factory.mktemp("cert")
    dtypes = parquet_dtypes()
    for run in ("r1", "r2"):
        rows = [dict(zip(NAMES, r, strict=True)) for r in ROWS if r[0] == run]
        frame = pl.DataFrame({c: [row.get(c) for row in rows] for c in dtypes}, schema=dtypes)
        (top / run).mkdir()
        frame.write_parquet(top / run / "audit.parquet")
    return q.scan(top)


def listed(trail, **filters) -> list[tuple]:
    df = q.decisions(trail, q.Filters(**filters))
    return list(zip(df["run"], df["seed"], df["decision_id"], strict=True))


def test_the_listing_is_one_row_per_decision_ordered_by_its_signal(trail):
    df = q.decisions(trail)
    assert list(zip(df["run"], df["seed"], df["decision_id"], df["at"], strict=True)) == [
        ("r1", 1, "D2", 8.0),  # no signal row: its first row
        ("r1", 1, "D1", 10.0),  # its signal, not the risk row before it
        ("r1", 2, "D1", 5.0),
        ("r2", 1, "D9", 1.0),
    ]
    d1 = df.row(1, named=True)
    assert d1["to_terminal_ms"] == pytest.approx(500.0)  # to its terminal row, not to the late report after it
    assert (d1["legged"], d1["orders"], d1["fills"], d1["outcome"]) == (True, 2, 3, "BALANCED")
    assert d1["instruments"] == ["CU", "HG"] and d1["venues"] == ["COMEX", "SHFE"]
    assert df.row(0, named=True)["legged"] is False and df.row(0, named=True)["fills"] == 0
    assert q.decisions(trail, limit=1)["decision_id"].to_list() == ["D2"]


@pytest.mark.parametrize(
    "filters,expected",
    [
        ({"run": "r2"}, [("r2", 1, "D9")]),
        ({"seed": 2}, [("r1", 2, "D1")]),
        ({"start": 8.0}, [("r1", 1, "D2"), ("r1", 1, "D1")]),  # from and to are inclusive
        ({"end": 5.0}, [("r1", 2, "D1"), ("r2", 1, "D9")]),
        ({"start": 8.0, "end": 8.0}, [("r1", 1, "D2")]),
        ({"instrument": "HG"}, [("r1", 1, "D1"), ("r1", 2, "D1")]),
        ({"venue": "SHFE"}, [("r1", 1, "D2"), ("r1", 1, "D1")]),
        ({"outcome": "UNWOUND"}, [("r1", 1, "D2")]),
        ({"run": "r1", "venue": "COMEX", "outcome": "ESCALATED"}, [("r1", 2, "D1")]),
    ],
)
def test_each_filter_keeps_exactly_the_decisions_it_names(trail, filters, expected):
    assert listed(trail, **filters) == expected


def test_a_decision_timeline_runs_in_seq_order_with_latencies_per_run_and_seed(trail):
    df = q.decision(trail, "D1")
    s1, s2 = df.filter(pl.col("seed") == 1), df.filter(pl.col("seed") == 2)
    assert s1["stage"].to_list()[-4:] == ["legged", "fill", "terminal", "late_report"]  # seq, not ts
    assert s1["since_signal_ms"][0] == 0 and s2["since_signal_ms"].to_list() == pytest.approx([0.0, 20.0, 100.0])
    assert s2["since_prev_ms"].to_list() == pytest.approx([0.0, 20.0, 80.0])  # not measured from seed 1's rows
    assert q.decision(trail, "D1", q.Filters(seed=2)).height == 3


def test_an_episode_lists_its_orders_with_what_filled_at_the_volume_weighted_price(trail):
    df = q.episode(trail, "D1", q.Filters(seed=1))
    a = df.filter(pl.col("cl_ord_id") == "D1A1").row(0, named=True)
    assert (a["role"], a["venue"], a["side"], a["qty"], a["price"]) == ("entry", "SHFE", "1", 5.0, 100.0)
    assert (a["filled"], a["fills"]) == (5.0, 2) and a["avg_px"] == pytest.approx(106.0)  # (2x100 + 3x110) / 5
    b = df.filter(pl.col("cl_ord_id") == "D1B1").row(0, named=True)
    assert (b["filled"], b["last_stage"], b["first_ts"], b["last_ts"]) == (2.0, "late_report", 10.02, 11.0)
    assert q.order(trail, "D1B1")["seed"].to_list() == [1, 1, 1, 2]
