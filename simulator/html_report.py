"""The certification report for people (`xmc certify --html FILE`): one self-contained HTML file,
no network, plots as inline SVG: verdicts, per-scenario distributions of the recovery timings across
seeds, the timelines of one run's legged episodes and failovers, the seed's claims against what was
measured (Wilson intervals), rare-path coverage, and every failure with its replay command."""

from __future__ import annotations

import html
import math
import re
import time
from collections import Counter
from pathlib import Path

from engine.report import distribution, wilson

# the vendor article's claims (shared/seed): xmc measures each per certification, never assumes it
CLAIM_REORDER_MS = 300.0
CLAIM_TAKEOVER_MS = 500.0
CLAIM_RECOVERY = (0.95, 0.97)
CLAIM_AUDIT_MS = 2000.0
TIMINGS = (
    ("legged_ms", "legged time"),
    ("signal_to_acks_ms", "signal to both acks"),
    ("signal_to_terminal_ms", "signal to terminal"),
)
FAILOVER_STEPS = (
    ("detect_ms", "detected"),
    ("active_ms", "standby active"),
    ("reconciled_ms", "reconciled"),
    ("first_new_order_ms", "first new order"),
)
COLOURS = {
    "BALANCED": "#2e7d32",
    "UNWOUND": "#f9a825",
    "ESCALATED": "#c62828",
    "ABORTED": "#757575",
    "send": "#1565c0",
    "ack": "#2e7d32",
    "fill": "#6a1b9a",
    "rejected": "#c62828",
    "cancel": "#ef6c00",
    "legged": "#c62828",
    "terminal": "#000000",
    "signal": "#1565c0",
}
ORDER_STAGES = ("send", "ack", "fill", "rejected", "cancel", "cancel_rejected", "expired", "canceled")

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#212121}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0} th,td{padding:3px 8px;border-bottom:1px solid #e0e0e0;text-align:right}
th:first-child,td:first-child{text-align:left} .pass{color:#2e7d32;font-weight:600} .fail{color:#c62828;font-weight:600}
code{background:#f5f5f5;padding:1px 4px} svg.plot{display:block;margin:6px 0 14px;background:#fafafa}
.small{color:#616161;font-size:12px}
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _axis_max(values: list[float]) -> float:
    top = max(values) if values else 1.0
    if top <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(top))
    return math.ceil(top / step) * step


def strip_plot(title: str, rows: list[tuple[str, list[float]]], unit: str = "ms") -> str:
    """One row per label: every value as a dot, the range as a line, the median as a bar (SVG)."""
    rows = [(label, vals) for label, vals in rows if vals]
    if not rows:
        return ""
    left, width, row_h = 300, 820, 22
    top = _axis_max([v for _, vals in rows for v in vals])
    height = 40 + row_h * len(rows)
    x = lambda v: left + (width - left - 20) * (v / top)  # noqa: E731
    parts = [
        f'<svg class="plot" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
    ]
    for i in range(6):
        v = top * i / 5
        parts.append(
            f'<line x1="{x(v):.1f}" y1="20" x2="{x(v):.1f}" y2="{height - 18}" stroke="#e0e0e0"/>'
            f'<text x="{x(v):.1f}" y="{height - 4}" font-size="11" text-anchor="middle">{v:g}</text>'
        )
    parts.append(f'<text x="{left}" y="13" font-size="12" font-weight="600">{_e(title)} ({unit})</text>')
    for r, (label, vals) in enumerate(rows):
        y = 30 + r * row_h
        d = distribution(vals)
        parts.append(f'<text x="{left - 8}" y="{y + 4}" font-size="11" text-anchor="end">{_e(label[:44])}</text>')
        parts.append(
            f'<line class="range" x1="{x(min(vals)):.1f}" y1="{y}" x2="{x(max(vals)):.1f}" y2="{y}" '
            f'stroke="#90a4ae" stroke-width="2"/>'
        )
        for j, v in enumerate(sorted(vals)[:400]):
            jitter = ((j * 7) % 9 - 4) * 1.2
            parts.append(
                f'<circle class="dot" cx="{x(v):.1f}" cy="{y + jitter:.1f}" r="2.4" fill="#1565c0" '
                f'fill-opacity="0.55"><title>{v:.1f}</title></circle>'
            )
        parts.append(
            f'<line class="median" x1="{x(d["p50"]):.1f}" y1="{y - 8}" x2="{x(d["p50"]):.1f}" y2="{y + 8}" '
            f'stroke="#c62828" stroke-width="2"><title>p50 {d["p50"]:.1f}</title></line>'
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline(title: str, lanes: list[tuple[str, list[tuple[float, str, str]]]], span_ms: float) -> str:
    """A lane per order (or step): marks at milliseconds from the start, coloured by kind (SVG)."""
    left, width, lane_h = 200, 820, 20
    top = _axis_max([span_ms, *(t for _, marks in lanes for t, _, _ in marks)])
    height = 36 + lane_h * len(lanes)
    x = lambda v: left + (width - left - 20) * (v / top)  # noqa: E731
    parts = [
        f'<svg class="plot timeline" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
        f'<text x="{left}" y="12" font-size="12" font-weight="600">{_e(title)}</text>'
    ]
    for i in range(6):
        v = top * i / 5
        parts.append(
            f'<line x1="{x(v):.1f}" y1="18" x2="{x(v):.1f}" y2="{height - 16}" stroke="#eeeeee"/>'
            f'<text x="{x(v):.1f}" y="{height - 3}" font-size="10" text-anchor="middle">{v:g} ms</text>'
        )
    for r, (label, marks) in enumerate(lanes):
        y = 28 + r * lane_h
        parts.append(f'<text x="{left - 8}" y="{y + 4}" font-size="11" text-anchor="end">{_e(label)}</text>')
        if marks:
            xs = [x(t) for t, _, _ in marks]
            parts.append(f'<line x1="{min(xs):.1f}" y1="{y}" x2="{max(xs):.1f}" y2="{y}" stroke="#b0bec5"/>')
        for t, kind, note in marks:
            colour = COLOURS.get(kind, "#455a64")
            parts.append(
                f'<rect class="mark" x="{x(t) - 3:.1f}" y="{y - 6}" width="6" height="12" fill="{colour}">'
                f"<title>{_e(kind)} at {t:.3f} ms{(': ' + _e(note)) if note else ''}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _episode_lanes(rows: list[dict]) -> tuple[list[tuple[str, list[tuple[float, str, str]]]], float]:
    """Lanes of one decision's audit rows (engine.audit_query.decision records): the decision's own
    stages, then one lane per order."""
    decision_marks = [(r["since_signal_ms"], r["stage"], r.get("detail") or "") for r in rows if not r.get("cl_ord_id")]
    lanes = [("decision", decision_marks)]
    orders: dict[str, list] = {}
    for r in rows:
        if r.get("cl_ord_id") and r["stage"] in ORDER_STAGES:
            name = f"{r['cl_ord_id']} {r.get('role') or ''}".strip()
            orders.setdefault(name, []).append((r["since_signal_ms"], r["stage"], r.get("detail") or ""))
    lanes += list(orders.items())
    return lanes, max((r["since_signal_ms"] for r in rows), default=1.0)


def claims(reports: list[dict], audit_ms: float | None) -> list[tuple[str, str, str, str]]:
    """(claim, measured, interval, verdict) for each of the seed's figures."""
    out = []
    chased = [e for r in reports for e in r["episodes"] if e["recovery"] and e["recovery"]["chase_attempts"]]
    fast = sum(
        1
        for e in chased
        if e["outcome"] == "BALANCED"
        and e["recovery"]["legged_ms"] is not None
        and e["recovery"]["legged_ms"] <= CLAIM_REORDER_MS
    )
    w = wilson(fast, len(chased))
    legged = [e["recovery"]["legged_ms"] for e in chased if e["recovery"]["legged_ms"] is not None]
    out.append(
        (
            f"re-order within {CLAIM_REORDER_MS:g} ms",
            f"{fast}/{len(chased)} chased episodes balanced "
            f"within it ({_pct(w['rate'])}); legged p50 {_ms(distribution(legged)['p50'])} ms",
            f"[{_pct(w['low'])}, {_pct(w['high'])}]",
            "measured" if chased else "not exercised",
        )
    )
    fos = [f for r in reports for f in r.get("failover", {}).get("failovers", []) if f.get("active_ms") is not None]
    ok = sum(1 for f in fos if f["active_ms"] <= CLAIM_TAKEOVER_MS)
    w = wilson(ok, len(fos))
    out.append(
        (
            f"takeover within {CLAIM_TAKEOVER_MS:g} ms",
            f"{ok}/{len(fos)} failovers active within it; "
            f"p99 {_ms(distribution([f['active_ms'] for f in fos])['p99'])} ms",
            f"[{_pct(w['low'])}, {_pct(w['high'])}]",
            "measured" if fos else "not exercised",
        )
    )
    n = sum(r["recovery"]["legged"] for r in reports)
    s = sum(r["recovery"]["repaired_in_budget"]["successes"] for r in reports)
    w = wilson(s, n)
    verdict = (
        "not exercised"
        if not n
        else (
            "above the claim"
            if w["low"] >= CLAIM_RECOVERY[0]
            else "claim inside the interval"
            if w["high"] >= CLAIM_RECOVERY[0]
            else "below the claim"
        )
    )
    out.append(
        (
            f"recovery success {CLAIM_RECOVERY[0]:.0%}-{CLAIM_RECOVERY[1]:.0%}",
            f"{s}/{n} legged episodes repaired in budget ({_pct(w['rate'])})",
            f"[{_pct(w['low'])}, {_pct(w['high'])}]",
            verdict,
        )
    )
    out.append(
        (
            f"audit query < {CLAIM_AUDIT_MS / 1e3:g} s",
            "-"
            if audit_ms is None
            else f"one decision's timeline over this certification's audit trails: {audit_ms:.1f} ms",
            "",
            "-" if audit_ms is None else ("within" if audit_ms < CLAIM_AUDIT_MS else "beyond"),
        )
    )
    return out


def _table(head: list[str], rows: list[list[str]]) -> str:
    return (
        "<table><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
        + "</table>"
    )


def _anchor(r: dict) -> str:
    """The id of a failed run's section: its scenario name with every character but letters, digits, `_`,
    `.` and `-` written as ~<hex>~ (one name, one id; nothing of a name can leave the attribute it is in)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"~{ord(m.group()):x}~", str(r["scenario"]))
    return f"fail-{name}-s{r['seed']}"


def chosen_run(reports: list[dict], choice: str | None) -> dict | None:
    """The run whose timelines are drawn: `scenario:seed` when given, else the first failed run, else
    the run with the most legged episodes (failovers break ties)."""
    if choice:
        name, _, seed = choice.rpartition(":")
        return next((r for r in reports if r["scenario"] == name and str(r["seed"]) == seed), None)
    failed = [r for r in reports if r["verdict"] != "pass"]
    if failed:
        return failed[0]
    return max(
        reports, key=lambda r: (r["recovery"]["legged"], len(r.get("failover", {}).get("failovers", []))), default=None
    )


def render(summary: dict, out_dir: Path, choice: str | None = None) -> str:
    """The whole report for a certification's summary (its report.json) whose runs are under `out_dir`."""
    from engine import audit_query as q

    reports = summary["runs"]
    failed = [r for r in reports if r["verdict"] != "pass"]
    audit_ms = None
    run = chosen_run(reports, choice)
    episode_rows: dict[str, list[dict]] = {}
    try:
        lf = q.scan(out_dir)
        if run is not None:
            f = q.Filters(run=run["scenario"], seed=run["seed"])
            for e in run["episodes"]:
                if e["recovery"]:
                    started = time.perf_counter()
                    episode_rows[e["decision_id"]] = q.decision(lf, e["decision_id"], f).to_dicts()
                    audit_ms = (time.perf_counter() - started) * 1e3 if audit_ms is None else audit_ms
    except q.AuditQueryError:
        pass
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>xmc certification</title>"
        f"<style>{CSS}</style></head><body>"
    ]
    verdict = "pass" if not failed else "fail"
    prov = summary.get("provenance", {})
    parts.append(
        f"<h1>xmc certification: <span class='{verdict}' id='verdict'>{verdict.upper()}</span></h1>"
        f"<p>{len(reports) - len(failed)}/{len(reports)} runs pass over {summary['scenarios']} scenario(s); "
        f"safety-invariant violations: {summary['aggregate']['invariant_violations']}.</p>"
        f"<p class='small'>xmc {_e(prov.get('xmc_version'))}, commit {_e(prov.get('git_commit') or 'unknown')}, "
        f"started {_e(prov.get('started_at'))}; command <code>{_e(' '.join(prov.get('command') or []))}</code></p>"
    )
    # verdicts per scenario
    by: dict[str, list[dict]] = {}
    for r in reports:
        by.setdefault(r["scenario"], []).append(r)
    rows = []
    for name, runs in by.items():
        bad = [r for r in runs if r["verdict"] != "pass"]
        outcomes: Counter[str] = Counter()
        for r in runs:
            outcomes.update(r["outcomes"])
        legged = sum(r["recovery"]["legged"] for r in runs)
        ok = sum(r["recovery"]["repaired_in_budget"]["successes"] for r in runs)
        w = wilson(ok, legged)
        cell = (
            "<span class='pass'>pass</span>"
            if not bad
            else "<span class='fail'>fail</span> "
            + " ".join(f"<a href='#{_anchor(r)}'>seed {r['seed']}</a>" for r in bad)
        )
        rows.append(
            [
                _e(name),
                str(len(runs)),
                " ".join(f"{k[:3]} {v}" for k, v in sorted(outcomes.items())),
                str(legged),
                f"{_pct(w['rate'])} [{_pct(w['low'])}, {_pct(w['high'])}]",
                cell,
            ]
        )
    parts.append(
        "<h2>Verdicts</h2>"
        + _table(["scenario", "runs", "outcomes", "legged", "repaired in budget (Wilson 95%)", "verdict"], rows)
    )
    # claims
    parts.append(
        "<h2>The seed's claims against what was measured</h2>"
        + _table(
            ["claim", "measured", "95% interval", "verdict"],
            [[_e(a), _e(b), _e(c), _e(d)] for a, b, c, d in claims(reports, audit_ms)],
        )
    )
    by_budget = summary["aggregate"].get("repaired_by_budget", {})
    if by_budget:
        parts.append(
            "<p>Repaired in budget, per legged-time budget: "
            + "; ".join(
                f"{_e(b)} ms: {v['successes']}/{v['n']} = {_pct(v['rate'])} [{_pct(v['low'])}, {_pct(v['high'])}]"
                for b, v in by_budget.items()
            )
            + "</p>"
        )
    # distributions
    parts.append(
        "<h2>Recovery timings across seeds, per scenario</h2>"
        "<p class='small'>Each dot an episode (or failover) of any seed; the line its range; the red bar the median.</p>"
    )
    for key, label in TIMINGS:
        plot_rows = []
        for name, runs in by.items():
            vals = [
                e[key] if key != "legged_ms" else (e["recovery"] or {}).get("legged_ms")
                for r in runs
                for e in r["episodes"]
            ]
            plot_rows.append((name, [v for v in vals if v is not None]))
        parts.append(strip_plot(label, plot_rows))
    for key, label in FAILOVER_STEPS:
        plot_rows = [
            (name, [f[key] for r in runs for f in r.get("failover", {}).get("failovers", []) if f.get(key) is not None])
            for name, runs in by.items()
        ]
        parts.append(strip_plot(f"failover: crash to {label}", plot_rows))
    # one run's timelines
    if run is not None:
        legend = " ".join(
            f"<span style='color:{COLOURS[k]}'>&#9632;</span> {k}"
            for k in ("signal", "send", "ack", "fill", "rejected", "cancel", "legged", "terminal")
        )
        parts.append(
            f"<h2>Timelines of {_e(run['scenario'])} seed {run['seed']}</h2>"
            f"<p>Replay: <code>{_e(run['replay'])}</code></p><p class='small'>Milliseconds from the "
            f"signal (from the crash for failovers); one lane per order; hover a mark for its detail. "
            f"{legend}</p>"
        )
        for e in run["episodes"]:
            if not e["recovery"]:
                continue
            rows_ = episode_rows.get(e["decision_id"])
            if rows_:
                lanes, span = _episode_lanes(rows_)
            else:
                lanes = [("decision", [(v, k, "") for k, v in e["stages_ms"].items()])]
                span = max(e["stages_ms"].values(), default=1.0)
            parts.append(
                timeline(
                    f"episode {e['decision_id']}: {e['outcome']}, legged {_ms(e['recovery']['legged_ms'])} ms",
                    lanes,
                    span,
                )
            )
        for i, f in enumerate(run.get("failover", {}).get("failovers", []), 1):
            marks = [(0.0, "crash", f.get("fault", ""))] + [
                (f[k], label, "") for k, label in FAILOVER_STEPS if f.get(k) is not None
            ]
            parts.append(
                timeline(
                    f"failover {i} (epoch {f.get('epoch')}), from the crash",
                    [(label, [(t, label, note)]) for t, label, note in marks],
                    max(t for t, _, _ in marks),
                )
            )
    # coverage
    reached = Counter(tag for r in reports for tag in r.get("coverage", []))
    parts.append(
        "<h2>Rare paths reached</h2>"
        + _table(["path", "runs reaching it"], [[_e(k), str(v)] for k, v in sorted(reached.items())])
    )
    # failures
    parts.append("<h2>Failures</h2>")
    if not failed:
        parts.append("<p>None.</p>")
    for r in failed:
        problems = [
            f"{x['key']}: expected {x['expected']}, got {x['actual']}"
            for x in r["expectations"]
            if x["verdict"] != "pass"
        ]
        problems += [
            f"invariant #{k} {v['name']}: {v.get('first', {}).get('detail', '')}"
            for k, v in r["invariants"].items()
            if v["status"] == "fail"
        ]
        parts.append(
            f"<h3 id='{_anchor(r)}'>{_e(r['scenario'])} seed {r['seed']}</h3><ul>"
            + "".join(f"<li>{_e(b)}</li>" for b in problems)
            + f"</ul><p>Replay: <code>{_e(r['replay'])}</code></p>"
        )
    parts.append("</body></html>")
    return "".join(parts)
