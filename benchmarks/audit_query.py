"""`xmc audit` on a large trail: one decision's timeline out of 10 M audit rows (wall clock), beside
a full read of the same file filtered in memory (the floor without row-group pruning), measured in
the same run. The trail is a real run's audit repeated with fresh decision ids and later times.
Run: .venv/bin/python benchmarks/audit_query.py [--rows N] [--repeat K]

Target (issue 13): one decision's timeline in < 50 ms over 10 M rows (the seed claims < 2 s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from engine import audit_query as q  # noqa: E402
from engine.report import write_audit_parquet  # noqa: E402
from simulator import runner, scenario  # noqa: E402
from simulator.runner import percentile  # noqa: E402


def trail(rows: int, path: Path) -> tuple[int, list[str]]:
    """Write a trail of at least `rows` rows to `path`: copies of one run's audit, each with its own
    decision ids (E<copy>-<n>) and times after the copy before. Returns the rows and some ids."""
    result = runner.run(scenario.load(ROOT / "scenarios" / "cu_hg_spread.toml"), 7)
    one = Path(path.parent / "one.parquet")
    write_audit_parquet(result, one)
    base = pl.read_parquet(one)
    span = float(base["ts"].max()) + 1.0
    copies = -(-rows // base.height)
    frames = []
    for c in range(copies):
        frames.append(
            base.with_columns(
                (pl.col("seq") + c * base.height).alias("seq"),
                (pl.col("ts") + c * span).alias("ts"),
                pl.col("decision_id").str.replace(r"^E\d+-", f"C{c:06d}-"),
                pl.col("cl_ord_id").str.replace(r"^E\d+-", f"C{c:06d}-"),
            )
        )
    big = pl.concat(frames)
    big.write_parquet(path, statistics=True, row_group_size=65_536)
    ids = [f"C{c:06d}-000003" for c in (copies // 7, copies // 2, copies - 1)]
    return big.height, ids


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="audit rows in the trail (default 10 M)")
    ap.add_argument("--repeat", type=int, default=20, help="queries timed per measure")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audit.parquet"
        t0 = time.perf_counter()
        n, ids = trail(args.rows, path)
        print(f"trail: {n:,} rows, {path.stat().st_size / 1e6:.0f} MB, written in {time.perf_counter() - t0:.1f} s")
        print(f"{'measure':<52} {'n':>4} {'p50 ms':>8} {'max ms':>8}")
        floor = timed(lambda: pl.read_parquet(path).filter(pl.col("decision_id") == ids[1]), max(args.repeat // 4, 3))
        print(
            f"{'floor: read everything, filter in memory':<52} {len(floor):>4} {percentile(floor, 50):>8.1f} "
            f"{max(floor):>8.1f}"
        )
        for i in ids:
            got = q.decision(q.scan(path), i)
            assert got.height > 0, i
            ms = timed(lambda i=i: q.decision(q.scan(path), i), args.repeat)
            print(f"{'xmc audit --decision ' + i:<52} {len(ms):>4} {percentile(ms, 50):>8.1f} {max(ms):>8.1f}")
        ms = timed(lambda: q.order(q.scan(path), ids[1] + "B1"), args.repeat)
        print(f"{'xmc audit --order ' + ids[1] + 'B1':<52} {len(ms):>4} {percentile(ms, 50):>8.1f} {max(ms):>8.1f}")
    print("target: one decision's timeline < 50 ms over 10 M rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
