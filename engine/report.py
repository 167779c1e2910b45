"""Report building shared by every shell, production included: episode rows, statistics (Wilson
intervals, percentiles) and the artefacts (report.json, messages.log, audit.parquet). It imports no
simulator and no simpy, so `xmc live` builds its report without either."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.engine_core import EngineCore
from engine.core.episode import Episode
from engine.core.events import Anomaly, AuditRow
from engine.core.ids import PURPOSE_TAG, purpose_tag
from engine.provenance import provenance

AUDIT_COLUMNS = (
    "seq",
    "ts",
    "stage",
    "decision_id",
    "cl_ord_id",
    "instrument",
    "account",
    "side",
    "qty",
    "price",
    "detail",
)  # the in-memory audit row (engine.core.dispatch), in this order
# audit.parquet: typed columns, real nulls (no "" or 0.0 standing for "none")
PARQUET_SCHEMA = {
    "run": "str",
    "seed": "i64",
    "seq": "i64",
    "ts": "f64",
    "stage": "str",
    "decision_id": "str",
    "cl_ord_id": "str",
    "role": "str",
    "instrument": "str",
    "venue": "str",
    "account": "str",
    "side": "str",
    "qty": "f64",
    "price": "f64",
    "exec_id": "str",
    "last_qty": "f64",
    "last_px": "f64",
    "cum_qty": "f64",
    "outcome": "str",
    "detail": "str",
}
ROLE_OF_TAG = {tag: ("hedge" if purpose == "overfill_hedge" else purpose) for purpose, tag in PURPOSE_TAG.items()}
EXEC_ID = re.compile(r"ExecID (\S+)")
CUM = re.compile(r"cum=([\d.]+)/")
FILL_STAGES = ("fill", "fill_from_status")
OUTCOMES = ("BALANCED", "UNWOUND", "ESCALATED", "ABORTED")


@dataclass
class RunResult:
    report: dict[str, Any]
    messages: list[str]
    audit: list[AuditRow]
    venue_of: dict[str, str] = field(default_factory=dict)  # instrument -> venue, for audit.parquet


def venue_of(core: EngineCore) -> dict[str, str]:
    return {name: inst.venue for name, inst in core.instruments.items()}


def anomaly_summary(anomalies: list[Anomaly]) -> dict[str, Any]:
    """A run's anomalies for its report: how many, how many of each kind, and the first twenty."""
    by_kind: dict[str, int] = {}
    for a in anomalies:
        by_kind[a.kind] = by_kind.get(a.kind, 0) + 1
    return {
        "count": len(anomalies),
        "by_kind": dict(sorted(by_kind.items())),
        "first": [f"{a.kind}: {a.detail}" for a in anomalies[:20]],
    }


def count_outcomes(episodes: list[dict[str, Any]]) -> dict[str, int]:
    """Episodes per outcome (BALANCED, UNWOUND, ...), from their rows: the one place outcomes are counted."""
    out: dict[str, int] = {}
    for e in episodes:
        out[e["outcome"]] = out.get(e["outcome"], 0) + 1
    return out


def audit_columns(
    rows: list[AuditRow], venue_of: dict[str, str], run: str | None, seed: int | None
) -> dict[str, list[Any]]:
    """The audit rows as typed columns (PARQUET_SCHEMA): the order's role from its ClOrdID, the venue
    from the instrument, ExecID / last qty / last price / cumulative qty of fills parsed out of the
    free text, the outcome of terminal rows; None wherever a field does not apply."""
    cols: dict[str, list[Any]] = {name: [] for name in PARQUET_SCHEMA}
    for seq, ts, stage, decision_id, cl_ord_id, instrument, account, side, qty, price, detail in rows:
        tag = purpose_tag(cl_ord_id) if cl_ord_id else None  # an amended order's rows keep their role
        is_fill = stage in FILL_STAGES
        exec_m = EXEC_ID.search(detail) if is_fill else None
        cum_m = CUM.search(detail) if is_fill else None
        values = {
            "run": run,
            "seed": seed,
            "seq": seq,
            "ts": ts,
            "stage": stage,
            "decision_id": decision_id or None,
            "cl_ord_id": cl_ord_id or None,
            "role": ROLE_OF_TAG.get(tag) if tag is not None else None,
            "instrument": instrument or None,
            "venue": venue_of.get(instrument) if instrument else None,
            "account": account or None,
            "side": side or None,
            "qty": qty if qty else None,
            "price": price if price else None,
            "exec_id": exec_m[1] if exec_m else None,
            "last_qty": qty if is_fill and qty else None,
            "last_px": price if is_fill and price else None,
            "cum_qty": float(cum_m[1]) if cum_m else None,
            "outcome": detail if stage == "terminal" and detail in OUTCOMES else None,
            "detail": detail or None,
        }
        for name, value in values.items():
            cols[name].append(value)
    return cols


def parquet_dtypes() -> dict[str, Any]:
    """PARQUET_SCHEMA as polars types: what audit.parquet is written with, and what `xmc audit` reads."""
    import polars as pl

    kinds = {"str": pl.String, "i64": pl.Int64, "f64": pl.Float64}
    return {name: kinds[kind] for name, kind in PARQUET_SCHEMA.items()}


def write_audit_parquet(result: RunResult, path: Path, row_group_size: int = 65_536) -> None:
    """audit.parquet with typed columns; row groups of `row_group_size` keep their min/max statistics,
    so a query for one decision reads only the groups that can hold it (ids rise with time)."""
    import polars as pl

    schema = parquet_dtypes()
    report = result.report
    cols = audit_columns(
        result.audit, result.venue_of, report.get("scenario") or report.get("mode"), report.get("seed")
    )
    pl.DataFrame(cols, schema=schema).write_parquet(path, statistics=True, row_group_size=row_group_size)


def wilson(successes: int, n: int, z: float = 1.96) -> dict[str, Any]:
    """Observed share with its Wilson score interval (95% by default); None bounds for n = 0."""
    if n == 0:
        return {"n": 0, "successes": 0, "rate": None, "low": None, "high": None}
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return {"n": n, "successes": successes, "rate": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half)}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def distribution(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def episode_row(ep: Episode, core: EngineCore) -> dict[str, Any]:
    st = ep.stages
    ms = {k: round((v - st["signal"]) * 1e3, 6) for k, v in st.items()}
    acks = [st[k] for k in ("ack_A", "ack_B") if k in st]
    slippage = {}
    for name, leg in ep.legs.items():
        inst = core.instruments[leg.instrument]
        entry = [o for o in leg.orders if o.purpose == "entry" and o.cum_qty > 0]
        if entry:
            avg = sum((o.avg_px * o.cum_qty for o in entry), 0.0) / sum((o.cum_qty for o in entry), 0.0)
            slippage[name] = round((avg - ep.trigger_prices[name]) * leg.sign / inst.tick, 6)
    return {
        "decision_id": ep.decision_id,
        "side": ep.side,
        "signal_value": ep.signal_value,
        "outcome": ep.state.value,
        "signal_at_s": round(st["signal"], 6),
        "reason": ep.reason,
        "stages_ms": ms,
        "signal_to_acks_ms": round((max(acks) - st["signal"]) * 1e3, 6) if len(acks) == 2 else None,
        "signal_to_terminal_ms": ms.get("terminal"),
        "legs": {
            n: {
                "instrument": leg.instrument,
                "side": leg.side,
                "target": leg.target,
                "filled": leg.filled,
                "orders": [o.cl_ord_id for o in leg.orders],
            }
            for n, leg in ep.legs.items()
        },
        "residual_t": round(ep.residual_tonnes, 6),
        "naked_t": round(ep.naked_tonnes(), 6),
        "slippage_ticks": slippage,
        "recovery": {
            "mode": ep.mode,
            "chase_attempts": ep.chase_attempts,
            "unwind_attempts": ep.unwind_attempts,
            "reaction_ms": _ms(st, "legged", "recovery_send"),
            "legged_ms": _ms(st, "legged", "terminal"),
        }
        if "legged" in st
        else None,
    }


def _ms(stages: dict[str, float], start: str, end: str) -> float | None:
    if start in stages and end in stages:
        return round((stages[end] - stages[start]) * 1e3, 6)
    return None


def write_artifacts(result: RunResult, out: Path) -> None:
    """messages.log (one wire message per line, as sent), audit.parquet and report.json in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    # byte-exact: quickfix hands Python the wire's bytes decoded as UTF-8 (invalid bytes as surrogates)
    with open(out / "messages.log", "w", encoding="utf-8", errors="surrogateescape", newline="\n") as fh:
        if result.messages:  # one write, not one per message
            fh.write("\n".join(result.messages) + "\n")
    write_audit_parquet(result, out / "audit.parquet")
    report = result.report
    if "provenance" not in report:  # which code, inputs and libraries made it (not part of the run itself)
        files = report.get("scenario_files") or ([report["file"]] if report.get("file") else [])
        report = {**report, "provenance": provenance({f"scenario:{Path(f).name}": f for f in files})}
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))


def junit_xml(reports: list[dict[str, Any]], suite: str = "xmc certify") -> str:
    """JUnit XML for CI systems: one testcase per scenario and seed (its wall time), the failed
    expectations and safety invariants with the replay command as the failure, timings as properties."""
    from xml.etree import ElementTree as ET

    failures = sum(1 for r in reports if r["verdict"] != "pass")
    total_time = sum(r.get("wall", {}).get("run_s", 0.0) for r in reports)
    root = ET.Element(
        "testsuites", name=suite, tests=str(len(reports)), failures=str(failures), time=f"{total_time:.3f}"
    )
    ts = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(reports)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{total_time:.3f}",
    )
    for r in reports:
        case = ET.SubElement(
            ts,
            "testcase",
            classname=f"xmc.{r['scenario']}",
            name=f"seed {r['seed']}",
            time=f"{r.get('wall', {}).get('run_s', 0.0):.3f}",
        )
        props = ET.SubElement(case, "properties")
        timings = r.get("timings", {})
        values = {
            "run_hash": r["run_hash"],
            "episodes": len(r["episodes"]),
            "legged": r["recovery"]["legged"],
            "replay": r["replay"],
        }
        for name in ("signal_to_acks_ms", "reaction_ms", "legged_ms", "signal_to_terminal_ms"):
            for q in ("p50", "p99"):
                value = timings.get(name, {}).get(q)
                if value is not None:
                    values[f"{name}_{q}"] = value
        for key in ("repaired_in_budget", "reorder_success", "rollback_success"):
            rate = r["recovery"][key]["rate"]
            if rate is not None:
                values[key] = rate
        for k, v in values.items():
            ET.SubElement(props, "property", name=k, value=str(v))
        if r["verdict"] != "pass":
            bad = [x for x in r["expectations"] if x["verdict"] != "pass"]
            invariants = [
                f"#{k} {v['name']}: {v.get('first', {}).get('detail', '')}"
                for k, v in r["invariants"].items()
                if v["status"] == "fail"
            ]
            text = "\n".join(
                [
                    *(f"{x['key']}: expected {x['expected']}, got {x['actual']}" for x in bad),
                    *invariants,
                    f"replay: {r['replay']}",
                ]
            )
            failure = ET.SubElement(case, "failure", message="; ".join(x["key"] for x in bad)[:500], type="expectation")
            failure.text = text
    # XML 1.0 holds no control character but tab and newlines, and no lone surrogate: a venue's reject
    # text or a file path can carry one; each becomes U+FFFD (the markup itself never has any)
    return _NOT_XML.sub("\ufffd", ET.tostring(root, encoding="unicode", xml_declaration=True)) + "\n"


# (the surrogate range written through chr: mypyc takes no surrogate in a string literal)
_NOT_XML = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f{chr(0xD800)}-{chr(0xDFFF)}\ufffe\uffff]")
