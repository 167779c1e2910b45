"""Questions asked of the audit trail (`xmc audit`): one decision's stages with the latency between
them, one order's life, one episode's orders and fills, and the decisions matching filters; polars
over audit.parquet files, reading only the row groups whose statistics can hold the answer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.config import UnusablePath, path_kind
from engine.report import OUTCOMES, PARQUET_SCHEMA, parquet_dtypes


class AuditQueryError(ValueError):
    """A question that cannot be asked of these files; the message says which input and what to do."""


@dataclass(frozen=True, slots=True)
class Filters:
    run: str | None = None
    seed: int | None = None
    instrument: str | None = None
    venue: str | None = None
    outcome: str | None = None
    start: float | None = None  # virtual (or epoch) seconds, inclusive
    end: float | None = None

    def check(self) -> None:
        for option, value in (("--run", self.run), ("--instrument", self.instrument), ("--venue", self.venue)):
            if value is not None and not value.strip():
                raise AuditQueryError(f"{option} {value!r}: empty, so it matches nothing; give a name or leave it out")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise AuditQueryError(f"--outcome {self.outcome}: not an outcome; use one of {', '.join(OUTCOMES)}")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise AuditQueryError(f"--from {self.start} is after --to {self.end}; give a window that starts first")


def _audit_files_below(top: Path) -> list[Path]:
    """Every audit.parquet file under `top`, sorted. os.walk skips a directory that cannot be read or
    that vanishes while it passes (Path.rglob raised: a run's scratch directory removed mid-walk ended
    `xmc audit /tmp` in a traceback), and follows no symlinked directory (no loops)."""
    return sorted(Path(d) / "audit.parquet" for d, _, names in os.walk(top) if "audit.parquet" in names)


def files_of(path: str | Path) -> list[Path]:
    """The audit.parquet files under `path`: the file itself, a run's directory, or a certify output
    (runs/<scenario>-s<seed>/audit.parquet)."""
    p = Path(path)
    try:
        kind = path_kind(p)
        own = kind == "dir" and path_kind(p / "audit.parquet") == "file"
    except UnusablePath as exc:
        raise AuditQueryError(str(exc)) from None
    if kind == "file":
        return [p]
    if kind == "dir":
        below = [] if own else _audit_files_below(p)
        found = [p / "audit.parquet"] if own else [f for f in below if f.parent.parent == p / "runs"] or below
        if found:
            return found
        raise AuditQueryError(
            f"{p}: no audit.parquet in this directory, its runs/ or below; give the --out "
            f"directory of xmc run, certify or live"
        )
    raise AuditQueryError(f"{p}: no such file or directory; give an audit.parquet or the --out directory of a run")


def scan(path: str | Path) -> pl.LazyFrame:
    files = files_of(path)
    frames = []
    for f in files:
        try:
            names = pl.read_parquet_schema(f)
        except Exception as exc:  # polars raises several kinds for a file that is not parquet
            raise AuditQueryError(
                f"{f}: not a readable parquet file ({type(exc).__name__}); it is not an xmc audit trail"
            ) from None
        missing = [c for c in PARQUET_SCHEMA if c not in names]
        if missing:
            raise AuditQueryError(
                f"{f}: lacks the columns {', '.join(missing)}: written by an older xmc or another program; "
                f"run it again with this version"
            )
        wrong = [f"{c} is {names[c]}, not {dtype}" for c, dtype in parquet_dtypes().items() if names[c] != dtype]
        if wrong:  # every query compares and subtracts these columns as their own types
            raise AuditQueryError(
                f"{f}: {'; '.join(wrong)}: not an xmc audit trail as this version writes it; run it again with this version"
            )
        frames.append(pl.scan_parquet(f))
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def _where(lf: pl.LazyFrame, f: Filters) -> pl.LazyFrame:
    if f.run is not None:
        lf = lf.filter(pl.col("run") == f.run)
    if f.seed is not None:
        lf = lf.filter(pl.col("seed") == f.seed)
    return lf


def decision(lf: pl.LazyFrame, decision_id: str, f: Filters = Filters()) -> pl.DataFrame:
    """Every row of one decision in order, with the milliseconds since its signal and since the row before."""
    rows = _where(lf.filter(pl.col("decision_id") == decision_id), f).sort("run", "seed", "seq").collect()
    if rows.is_empty():
        return rows
    first = pl.col("ts").first().over("run", "seed")
    return rows.with_columns(
        ((pl.col("ts") - first) * 1e3).round(3).alias("since_signal_ms"),
        ((pl.col("ts") - pl.col("ts").shift(1).over("run", "seed")) * 1e3)
        .round(3)
        .fill_null(0.0)
        .alias("since_prev_ms"),
    ).select(
        "run",
        "seed",
        "ts",
        "since_signal_ms",
        "since_prev_ms",
        "stage",
        "cl_ord_id",
        "role",
        "venue",
        "side",
        "qty",
        "price",
        "detail",
    )


def order(lf: pl.LazyFrame, cl_ord_id: str, f: Filters = Filters()) -> pl.DataFrame:
    """One order's life: every row that names it (send, acks, fills with cumulative quantity, cancels)."""
    return (
        _where(lf.filter(pl.col("cl_ord_id") == cl_ord_id), f)
        .sort("run", "seed", "seq")
        .select(
            "run",
            "seed",
            "ts",
            "stage",
            "role",
            "venue",
            "side",
            "qty",
            "price",
            "exec_id",
            "last_qty",
            "last_px",
            "cum_qty",
            "detail",
        )
        .collect()
    )


def episode(lf: pl.LazyFrame, decision_id: str, f: Filters = Filters()) -> pl.DataFrame:
    """One episode's orders: role, side, quantity, price, what filled and at what average, when it was
    sent and when last heard of, and its last stage."""
    rows = _where(lf.filter(pl.col("decision_id") == decision_id), f).filter(pl.col("cl_ord_id").is_not_null())
    return (
        rows.sort("run", "seed", "seq")
        .group_by("run", "seed", "cl_ord_id", maintain_order=True)
        .agg(
            pl.col("role").drop_nulls().first(),
            pl.col("venue").drop_nulls().first(),
            pl.col("side").drop_nulls().first(),
            pl.col("qty").filter(pl.col("stage") == "send").first().alias("qty"),
            pl.col("price").filter(pl.col("stage") == "send").first().alias("price"),
            pl.col("last_qty").sum().alias("filled"),
            pl.when(pl.col("last_qty").sum() > 0)
            .then((pl.col("last_qty") * pl.col("last_px")).sum() / pl.col("last_qty").sum())
            .alias("avg_px"),
            pl.col("exec_id").drop_nulls().len().alias("fills"),
            pl.col("ts").first().alias("first_ts"),
            pl.col("ts").last().alias("last_ts"),
            pl.col("stage").last().alias("last_stage"),
        )
        .collect()
    )


def decisions(lf: pl.LazyFrame, f: Filters = Filters(), limit: int | None = None) -> pl.DataFrame:
    """One row per decision: signal time, outcome, milliseconds to terminal, orders and fills, the
    instruments and venues it traded; filtered by run, seed, time window, instrument, venue, outcome."""
    base = _where(lf.filter(pl.col("decision_id").is_not_null()), f)
    per = (
        base.group_by("run", "seed", "decision_id")
        .agg(
            pl.col("ts").filter(pl.col("stage") == "signal").first().alias("signal_ts"),
            pl.col("ts").min().alias("first_ts"),
            pl.col("ts").filter(pl.col("stage") == "terminal").first().alias("terminal_ts"),
            pl.col("outcome").drop_nulls().first().alias("outcome"),
            (pl.col("stage") == "legged").any().alias("legged"),
            (pl.col("stage") == "send").sum().alias("orders"),
            pl.col("exec_id").drop_nulls().len().alias("fills"),
            pl.col("instrument").drop_nulls().unique().sort().alias("instruments"),
            pl.col("venue").drop_nulls().unique().sort().alias("venues"),
        )
        .with_columns(pl.coalesce("signal_ts", "first_ts").alias("at"))
        .with_columns(((pl.col("terminal_ts") - pl.col("at")) * 1e3).round(3).alias("to_terminal_ms"))
    )
    if f.start is not None:
        per = per.filter(pl.col("at") >= f.start)
    if f.end is not None:
        per = per.filter(pl.col("at") <= f.end)
    if f.instrument is not None:
        per = per.filter(pl.col("instruments").list.contains(f.instrument))
    if f.venue is not None:
        per = per.filter(pl.col("venues").list.contains(f.venue))
    if f.outcome is not None:
        per = per.filter(pl.col("outcome") == f.outcome)
    per = per.sort("run", "seed", "at").select(
        "run",
        "seed",
        "decision_id",
        "at",
        "outcome",
        "to_terminal_ms",
        "legged",
        "orders",
        "fills",
        "instruments",
        "venues",
    )
    if limit is not None:
        per = per.head(limit)
    return per.collect()


def render(df: pl.DataFrame, as_json: bool) -> str:
    """A table for people (every value, no truncation) or JSON records (nulls as null)."""
    if as_json:
        return json.dumps(df.to_dicts(), default=str, indent=1)
    if df.is_empty():
        return "(no rows)"
    cells = [[_cell(v) for v in row] for row in df.iter_rows()]
    widths = [max(len(name), *(len(r[i]) for r in cells)) for i, name in enumerate(df.columns)]
    widths = [min(w, 60) for w in widths]

    def line(values: list[str]) -> str:
        return "  ".join(v[:w].ljust(w) for v, w in zip(values, widths)).rstrip()

    return "\n".join([line(df.columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _cell(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1e6:
            return f"{v:.3f}"
        from engine.fix.codec import fmt_px  # imported once the table has a number: quickfix is slow to load

        return fmt_px(v)  # a price to as many decimals as its tick needs (6 to 9), as it went on the wire
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)


__all__ = [
    "AuditQueryError",
    "Filters",
    "PARQUET_SCHEMA",
    "decision",
    "decisions",
    "episode",
    "files_of",
    "order",
    "render",
    "scan",
]
