"""The regression gate of certification: a baseline records, per scenario and seed, the run's
behaviour (run_hash, outcomes, fills) and every recovery timing the report has; a later
certification is compared with it metric by metric (`xmc certify --save-baseline/--baseline`,
`xmc regress`).

Rules (README, "Regression gate"):
- a safety invariant violated or an expectation failed in the new run: regression;
- behaviour changed (a seed's outcomes or fills differ): "changed", a regression unless accepted;
- virtual-time timings are deterministic per seed, so they are compared across seeds, paired: per
  scenario and metric the seeds' changes (new - baseline, signed so that positive is worse) are
  computed; the metric regresses when the median change exceeds its tolerance (absolute plus
  relative to the baseline's median) *and* more than half of the seeds moved beyond it. One noisy
  seed moves neither, a shift of the whole distribution moves both. A one-sided sign test's
  p-value is reported beside it;
- wall-clock figures are noisy: each run's time is divided by its baseline's, scaled by a machine
  calibration measured in the same command, and the geometric mean of those ratios with its 95%
  interval is reported; it fails only when the interval's lower end is beyond `wall_margin`.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import ConfigError, Problem, read_input
from engine.provenance import provenance, sha256_of
from simulator.scenario import SEED_MAX, seed_in_domain

SCHEMA = 1
KIND = "xmc-certification-baseline"
DEFAULT_WALL_MARGIN = 3.0


FIX = "record one with `xmc certify ... --save-baseline FILE`"


class BaselineError(ConfigError):
    """A baseline file that cannot be used: each problem names its key, what is wrong and the fix."""

    def __init__(self, path: Path, problems: list[Problem]):
        super().__init__(str(path), problems)


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    worse: int  # +1: larger is worse (a time); -1: smaller is worse (a success share)
    abs_tol: float
    rel_tol: float
    get: Callable[[dict], float | None]


def _timing(key: str, q: str) -> Callable[[dict], float | None]:
    return lambda r: r["timings"][key][q]


def _rate(key: str) -> Callable[[dict], float | None]:
    return lambda r: r["recovery"][key]["rate"]


def _mean_of(section: str, key: str) -> Callable[[dict], float | None]:
    def get(r: dict) -> float | None:
        rows = r.get("failover", {}).get("failovers", []) if section == "failover" else r.get("restarts", [])
        values = [x[key] for x in rows if x.get(key) is not None]
        return statistics.fmean(values) if values else None

    return get


METRICS: tuple[Metric, ...] = (
    Metric("signal_to_acks_ms.p50", "ms", +1, 5.0, 0.10, _timing("signal_to_acks_ms", "p50")),
    Metric("signal_to_acks_ms.p99", "ms", +1, 5.0, 0.10, _timing("signal_to_acks_ms", "p99")),
    Metric("signal_to_terminal_ms.p50", "ms", +1, 5.0, 0.10, _timing("signal_to_terminal_ms", "p50")),
    Metric("signal_to_terminal_ms.p99", "ms", +1, 5.0, 0.10, _timing("signal_to_terminal_ms", "p99")),
    Metric("legged_ms.p50", "ms", +1, 10.0, 0.10, _timing("legged_ms", "p50")),
    Metric("legged_ms.p99", "ms", +1, 10.0, 0.10, _timing("legged_ms", "p99")),
    Metric("reaction_ms.p99", "ms", +1, 5.0, 0.10, _timing("reaction_ms", "p99")),
    Metric("reorder_success", "share", -1, 0.05, 0.0, _rate("reorder_success")),
    Metric("rollback_success", "share", -1, 0.05, 0.0, _rate("rollback_success")),
    Metric("repaired_in_budget", "share", -1, 0.05, 0.0, _rate("repaired_in_budget")),
    Metric("failover.detect_ms", "ms", +1, 10.0, 0.10, _mean_of("failover", "detect_ms")),
    Metric("failover.active_ms", "ms", +1, 10.0, 0.10, _mean_of("failover", "active_ms")),
    Metric("failover.reconciled_ms", "ms", +1, 10.0, 0.10, _mean_of("failover", "reconciled_ms")),
    Metric("failover.first_new_order_ms", "ms", +1, 10.0, 0.10, _mean_of("failover", "first_new_order_ms")),
    Metric("restart.reconciled_ms", "ms", +1, 10.0, 0.10, _mean_of("restart", "reconciled_ms")),
    Metric("restart.first_order_ms", "ms", +1, 10.0, 0.10, _mean_of("restart", "first_order_ms")),
)
BY_NAME = {m.name: m for m in METRICS}
WALL = {
    "run_s": lambda r: r["wall"].get("run_s"),
    "engine_compute_us.p50": lambda r: r["wall"]["engine_compute_us"]["p50"],
}


def calibrate(repeat: int = 5) -> float:
    """Seconds this machine takes, now, for a fixed pure-Python workload (the fastest of `repeat`):
    wall figures are compared in units of it, so a slower CI machine is not a regression."""
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        acc, book = 0.0, dict[int, float]()
        for i in range(200_000):
            book[i & 1023] = book.get(i & 1023, 0.0) + i * 1e-3
            acc += book[i & 1023] / (1 + (i & 7))
        best = min(best, time.perf_counter() - started)
    return best


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# the parts of a run's record the gate reads, each with the shape `run_record` writes
RECORD_KEYS = ("run_hash", "outcomes", "fills", "positions", "metrics", "wall")
_RECORD_SHAPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "run_hash": ("is not a hash (text)", lambda v: isinstance(v, str)),
    "outcomes": (
        "is not a table of outcome -> episode count",
        lambda v: isinstance(v, dict) and all(isinstance(n, int) and not isinstance(n, bool) for n in v.values()),
    ),
    "fills": (
        "is not a table of decision -> {leg: lots, outcome: text}",
        lambda v: (
            isinstance(v, dict)
            and all(
                isinstance(e, dict) and all(isinstance(x, str) if k == "outcome" else _number(x) for k, x in e.items())
                for e in v.values()
            )
        ),
    ),
    "positions": (
        "is not a table of instrument -> lots",
        lambda v: isinstance(v, dict) and all(map(_number, v.values())),
    ),
    "metrics": (
        "is not a table of metric -> number or null",
        lambda v: isinstance(v, dict) and all(x is None or _number(x) for x in v.values()),
    ),
    "wall": (
        "is not a table of timing -> number, null or {p50, p99...}",
        lambda v: (
            isinstance(v, dict)
            and all(
                x is None or _number(x) or (isinstance(x, dict) and all(y is None or _number(y) for y in x.values()))
                for x in v.values()
            )
        ),
    ),
}


def _record_problems(rec: dict) -> list[tuple[str, str]]:
    """(key, what is wrong) for each part of a baseline's run record missing or not of its shape."""
    out = []
    for key in RECORD_KEYS:
        what, fits = _RECORD_SHAPES[key]
        if key not in rec:
            out.append((key, "is missing"))
        elif not fits(rec[key]):
            out.append((key, what))
    return out


def run_record(report: dict) -> dict:
    """What a baseline keeps of one scenario x seed run."""
    failed = sorted(k for k, v in report["invariants"].items() if v["status"] == "fail")
    return {
        "run_hash": report["run_hash"],
        "replay": report["replay"],
        "verdict": report["verdict"],
        "outcomes": dict(sorted(report["outcomes"].items())),
        "fills": {
            e["decision_id"]: {n: leg["filled"] for n, leg in sorted(e["legs"].items())} | {"outcome": e["outcome"]}
            for e in report["episodes"]
        },
        "positions": report["positions"]["venues"],
        "metrics": {m.name: m.get(report) for m in METRICS},
        "wall": {k: get(report) for k, get in WALL.items()},
        "failed_expectations": [x["key"] for x in report["expectations"] if x["verdict"] != "pass"],
        "failed_invariants": failed,
    }


def build(
    reports: list[dict],
    files: dict[str, Path],
    calibration_s: float,
    where: Path,
    tolerances: dict | None = None,
    wall_margin: float = DEFAULT_WALL_MARGIN,
) -> dict:
    """A baseline document from a certification's reports; `files` maps scenario name -> its file,
    recorded relative to `where`, the baseline's directory (a committed baseline names files in the
    checkout, wherever it is cloned)."""
    scenarios: dict[str, dict] = {}
    for r in sorted(reports, key=lambda r: (r["scenario"], r["seed"])):
        path = files[r["scenario"]]
        try:
            shown = os.path.relpath(Path(path).resolve(), Path(where).resolve())
        except ValueError:  # another drive: keep it absolute
            shown = str(Path(path).resolve())
        entry = scenarios.setdefault(r["scenario"], {"file": shown, "sha256": sha256_of(path), "seeds": {}})
        entry["seeds"][str(r["seed"])] = run_record(r)
    tol = {m.name: {"abs": m.abs_tol, "rel": m.rel_tol} for m in METRICS}
    for name, given in (tolerances or {}).items():
        tol[name] = given
    return {
        "kind": KIND,
        "schema": SCHEMA,
        "provenance": provenance({f"scenario:{n}": f for n, f in files.items()}),
        "calibration_s": calibration_s,
        "wall_margin": wall_margin,
        "tolerances": tol,
        "scenarios": scenarios,
    }


def load(path: str | Path) -> dict:
    """A baseline file, checked; a bad one is a BaselineError naming the file and the fix."""
    path = Path(path)
    try:
        doc = json.loads(read_input(path))
    except FileNotFoundError:
        raise BaselineError(path, [Problem("(file)", "baseline file not found", FIX)]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(path, [Problem("(file)", f"not a readable JSON baseline ({exc})", FIX)]) from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise BaselineError(path, [Problem("kind", f'not an xmc certification baseline (no "kind": "{KIND}")', FIX)])
    if doc.get("schema") != SCHEMA:
        raise BaselineError(
            path,
            [
                Problem(
                    "schema",
                    f"baseline schema {doc.get('schema')!r}, this xmc reads schema {SCHEMA}",
                    f"record it again with this version: {FIX}",
                )
            ],
        )
    problems = []
    if not _number(doc.get("calibration_s")) or not doc["calibration_s"] > 0:
        problems.append(Problem("calibration_s", "missing or not a number > 0", "give the calibration in seconds, > 0"))
    if not _number(doc.get("wall_margin")) or not doc["wall_margin"] >= 1:  # infinite: a gate that cannot fail
        problems.append(Problem("wall_margin", "missing, infinite or below 1", "give a factor >= 1, e.g. 3"))
    tolerances = doc.get("tolerances")
    if not isinstance(tolerances, dict):
        problems.append(Problem("tolerances", "missing", 'give a table of metric -> {"abs": x, "rel": y}'))
    else:
        for name, t in tolerances.items():
            if name not in BY_NAME:
                problems.append(Problem(f"tolerances.{name}", "not a known metric", f"use one of {', '.join(BY_NAME)}"))
            elif (
                not isinstance(t, dict)
                or set(t) != {"abs", "rel"}
                or not all(isinstance(v, (int, float)) and v >= 0 for v in t.values())
            ):
                problems.append(
                    Problem(
                        f"tolerances.{name}", f"{t!r} is not a tolerance", 'give {"abs": x, "rel": y} with numbers >= 0'
                    )
                )
    scenarios = doc.get("scenarios")
    if not isinstance(scenarios, dict) or not scenarios:
        problems.append(Problem("scenarios", "missing or empty", FIX))
    else:
        for name, entry in scenarios.items():
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("file"), str)
                or not isinstance(entry.get("seeds"), dict)
                or not entry["seeds"]
            ):
                problems.append(Problem(f"scenarios.{name}", "needs file and seeds", FIX))
                continue
            for seed, rec in entry["seeds"].items():
                if not (seed.isascii() and seed.isdigit() and seed_in_domain(int(seed))) or not isinstance(rec, dict):
                    problems.append(
                        Problem(
                            f"scenarios.{name}.seeds.{seed}",
                            "not a recorded run",
                            f"a whole-number seed (0 to {SEED_MAX}) with {', '.join(RECORD_KEYS)}; {FIX}",
                        )
                    )
                    continue
                problems += [
                    Problem(f"scenarios.{name}.seeds.{seed}.{key}", what, FIX) for key, what in _record_problems(rec)
                ]
    if problems:
        raise BaselineError(path, problems)
    return doc


@dataclass
class Row:
    scenario: str
    metric: str
    baseline: str
    now: str
    change: str
    verdict: str  # regressed, changed, failed, improved, new, not run
    replay: str = ""


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    compared: int = 0  # metric x scenario pairs compared
    identical_runs: int = 0
    runs: int = 0
    accepted: bool = False  # --accept-changes: behaviour and timing moves are accepted, failures never

    @property
    def regressions(self) -> list[Row]:
        blocking = {"failed"} | (set() if self.accepted else {"changed", "regressed"})
        return [r for r in self.rows if r.verdict in blocking]


def sign_test_p(worse: int, better: int) -> float:
    """One-sided sign test: the chance of `worse` or more of `worse + better` moves being worse if
    a move were as likely either way."""
    n = worse + better
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(worse, n + 1)) / 2**n


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.0f}%" if unit == "share" else f"{v:.1f}"


def _behaviour(rec: dict) -> tuple:
    return rec["outcomes"], rec["fills"], rec["positions"]


def _outcomes_text(outcomes: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(outcomes.items())) or "no episodes"


def _compare_metric(
    name: str, metric: Metric, tol: dict, pairs: list[tuple[str, float, float]], comp: Comparison
) -> None:
    """One scenario's metric across its seeds, paired."""
    if not pairs:
        return
    comp.compared += 1
    base_median = statistics.median(b for _, b, _ in pairs)
    now_median = statistics.median(n for _, _, n in pairs)
    limit = tol["abs"] + tol["rel"] * abs(base_median)
    moves = [(metric.worse * (n - b), replay) for replay, b, n in pairs]
    median_move = statistics.median(d for d, _ in moves)
    worse = sum(1 for d, _ in moves if d > limit)
    better = sum(1 for d, _ in moves if d < -limit)
    half = len(moves) / 2
    verdict = ""
    if median_move > limit and worse > half:
        verdict = "regressed"
    elif median_move < -limit and better > half:
        verdict = "improved"
    if not verdict:
        return
    up = sum(1 for d, _ in moves if d > 0)
    down = sum(1 for d, _ in moves if d < 0)
    p = sign_test_p(up, down) if verdict == "regressed" else sign_test_p(down, up)
    moved_most = max(moves, key=lambda m: m[0] if verdict == "regressed" else -m[0])[1]
    delta = now_median - base_median
    change = f"{100 * delta:+.0f} pp" if metric.unit == "share" else f"{delta:+.1f} ms"
    comp.rows.append(
        Row(
            name,
            metric.name,
            _fmt(base_median, metric.unit),
            _fmt(now_median, metric.unit),
            f"{change} (median of {len(moves)} seeds; {worse if verdict == 'regressed' else better} "
            f"beyond ±{limit:.3g}; sign test p={p:.3f})",
            verdict,
            moved_most,
        )
    )


def _compare_wall(baseline: dict, pairs: list[tuple[dict, dict]], calibration_now: float, comp: Comparison) -> None:
    scale = calibration_now / baseline["calibration_s"]
    margin = baseline["wall_margin"]
    for key in WALL:
        logs = [
            math.log(n[key] / b[key] / scale)
            for b, n in pairs
            if isinstance(b.get(key), (int, float))
            and isinstance(n.get(key), (int, float))
            and b[key] > 0
            and n[key] > 0
        ]
        if len(logs) < 2:
            continue
        mean = statistics.fmean(logs)
        half = 1.96 * statistics.stdev(logs) / math.sqrt(len(logs))
        low, ratio, high = math.exp(mean - half), math.exp(mean), math.exp(mean + half)
        verdict = "regressed" if low > margin else "info"
        comp.rows.append(
            Row(
                "(all)",
                f"wall.{key}",
                "x1",
                f"x{ratio:.2f}",
                f"95% [{low:.2f}, {high:.2f}] over {len(logs)} runs, machine speed x{1 / scale:.2f} of the "
                f"baseline's; fails beyond x{margin:g}",
                verdict,
            )
        )


def compare(
    baseline: dict,
    reports: list[dict],
    calibration_now: float,
    accept_changes: bool = False,
    files: dict[str, Path] | None = None,
) -> Comparison:
    """The new certification's reports against the baseline (see the module's rules); `files` (scenario
    name -> file run) lets a scenario file edited since the baseline show as a behaviour change."""
    comp = Comparison(accepted=accept_changes)
    for name, path in sorted((files or {}).items()):
        entry = baseline["scenarios"].get(name)
        if entry is not None and entry.get("sha256") and sha256_of(path) != entry["sha256"]:
            comp.rows.append(
                Row(
                    name,
                    "scenario file",
                    entry["sha256"][:12],
                    (sha256_of(path) or "-")[:12],
                    f"{path} edited since the baseline",
                    "changed",
                )
            )
    tolerances = baseline["tolerances"]
    by_scenario: dict[str, list[dict]] = {}
    for r in reports:
        by_scenario.setdefault(r["scenario"], []).append(r)
    wall_pairs = []
    for name in sorted(set(by_scenario) | set(baseline["scenarios"])):
        entry = baseline["scenarios"].get(name)
        runs = sorted(by_scenario.get(name, []), key=lambda r: r["seed"])
        if entry is None:
            comp.rows.append(Row(name, "scenario", "-", f"{len(runs)} runs", "not in the baseline", "new"))
            continue
        if not runs:
            comp.rows.append(Row(name, "scenario", f"{len(entry['seeds'])} runs", "-", "not run this time", "not run"))
            continue
        paired: list[tuple[dict, dict, dict]] = []
        for r in runs:
            comp.runs += 1
            now = run_record(r)
            if now["failed_expectations"] or now["failed_invariants"]:
                what = [f"invariant {k}" for k in now["failed_invariants"]] + now["failed_expectations"]
                comp.rows.append(
                    Row(
                        name,
                        "verdict",
                        "pass" if entry["seeds"].get(str(r["seed"]), {}).get("verdict") == "pass" else "-",
                        "fail",
                        "; ".join(what),
                        "failed",
                        r["replay"],
                    )
                )
            base = entry["seeds"].get(str(r["seed"]))
            if base is None:
                continue
            paired.append((base, now, r))
            wall_pairs.append((base["wall"], now["wall"]))
            if base["run_hash"] == now["run_hash"]:
                comp.identical_runs += 1
            elif _behaviour(base) != _behaviour(now):
                fills = (
                    "fills differ"
                    if base["fills"] != now["fills"] or base["positions"] != now["positions"]
                    else "same fills"
                )
                comp.rows.append(
                    Row(
                        name,
                        f"behaviour (seed {r['seed']})",
                        _outcomes_text(base["outcomes"]),
                        _outcomes_text(now["outcomes"]),
                        fills,
                        "changed",
                        r["replay"],
                    )
                )
        for metric in METRICS:
            tol = tolerances.get(metric.name, {"abs": metric.abs_tol, "rel": metric.rel_tol})
            pairs = [(r["replay"], b["metrics"].get(metric.name), n["metrics"][metric.name]) for b, n, r in paired]
            _compare_metric(
                name, metric, tol, [(p, b, n) for p, b, n in pairs if b is not None and n is not None], comp
            )
    _compare_wall(baseline, wall_pairs, calibration_now, comp)
    return comp


def table(comp: Comparison) -> str:
    """The comparison for people: every row that is not 'the same', then the verdict."""
    head = f"{'scenario':<34} {'metric':<28} {'baseline':>12} {'now':>12}  {'verdict':<9} change"
    lines = [head, "-" * len(head)]
    order = {"failed": 0, "regressed": 1, "changed": 2, "improved": 3, "new": 4, "not run": 5, "info": 6}
    for r in sorted(comp.rows, key=lambda r: (order.get(r.verdict, 9), r.scenario, r.metric)):
        lines.append(
            f"{r.scenario[:34]:<34} {r.metric[:28]:<28} {r.baseline[:12]:>12} {r.now[:12]:>12}  "
            f"{r.verdict:<9} {r.change}" + (f"  (replay: {r.replay})" if r.replay else "")
        )
    lines.append(
        f"{comp.runs} runs compared ({comp.identical_runs} identical to the baseline, same run_hash), "
        f"{comp.compared} scenario x metric distributions"
    )
    regressions = comp.regressions
    if regressions:
        lines.append(
            f"REGRESSION: {len(regressions)} finding(s): "
            + ", ".join(sorted({f"{r.scenario} {r.metric}" for r in regressions})[:8])
            + (" ..." if len(regressions) > 8 else "")
        )
    else:
        accepted = sum(1 for r in comp.rows if r.verdict == "changed")
        lines.append("no regression" + (f" ({accepted} behaviour change(s) accepted)" if accepted else ""))
    return "\n".join(lines)
