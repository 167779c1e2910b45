"""The parity check: a wire-mode run and the virtual-time run of the same scenario and seed must
reach the same episode outcomes and fill quantities, with timings inside a stated tolerance.

Both runs share one clock origin: the venues' market opens when the sessions are logged on (t=0 in
virtual time, ``market_open_s`` of the wire report). Episodes are paired by side and signal time;
every difference is listed with what differs, none is dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.report import distribution


@dataclass(frozen=True)
class Tolerance:
    signal_ms: float = 250.0  # the same decision fires this close on the two clocks
    terminal_ms: float = 250.0  # signal -> terminal may differ by this much (wire adds real latency)
    edge_s: float = 1.0  # a decision this close to the end of trading may fire in one run only
    # an episode a session cut falls into may end up to one reconnect interval apart: virtual time
    # logs on again the instant the cut ends, quickfix retries its logon every ReconnectInterval (1 s)
    reconnect_s: float = 1.0


def compare(virtual: dict, wire: dict, tol: Tolerance = Tolerance()) -> dict:
    """Pair the two reports' episodes and list every difference; `identical` when none counts."""
    duration = min(virtual["duration_s"], wire["duration_s"])
    shift = wire.get("market_open_s", 0.0)
    wire_eps = [dict(e, t=e["signal_at_s"] - shift) for e in wire["episodes"]]
    virt_eps = [dict(e, t=e["signal_at_s"]) for e in virtual["episodes"]]
    unmatched = list(wire_eps)
    pairs, differences = [], []
    for v in sorted(virt_eps, key=lambda e: e["t"]):
        near = [w for w in unmatched if w["side"] == v["side"] and abs(w["t"] - v["t"]) * 1e3 <= tol.signal_ms]
        if not near:
            differences.append(_one_sided("virtual", v, duration, tol))
            continue
        w = min(near, key=lambda e: abs(e["t"] - v["t"]))
        unmatched.remove(w)
        pairs.append((v, w))
    differences += [_one_sided("wire", w, duration, tol) for w in unmatched]
    cuts = [f["at_s"] for f in wire.get("wire_faults", []) if f.get("fault") in ("disconnect", "disconnect_on_order")]
    offsets, terminal_deltas = [], []
    for v, w in pairs:
        where = f"virtual {v['decision_id']} at {v['t']:.3f} s / wire {w['decision_id']} at {w['t']:.3f} s"
        offsets.append((w["t"] - v["t"]) * 1e3)
        if v["outcome"] != w["outcome"]:
            differences.append(
                {
                    "kind": "outcome",
                    "counts": True,
                    "where": where,
                    "detail": f"virtual {v['outcome']}, wire {w['outcome']}",
                }
            )
        for leg in sorted(set(v["legs"]) | set(w["legs"])):
            fv, fw = v["legs"].get(leg, {}).get("filled"), w["legs"].get(leg, {}).get("filled")
            if fv != fw:
                differences.append(
                    {
                        "kind": "fill",
                        "counts": True,
                        "where": where,
                        "detail": f"leg {leg} filled {fv} lots in virtual, {fw} in wire",
                    }
                )
        tv, tw = v.get("signal_to_terminal_ms"), w.get("signal_to_terminal_ms")
        if tv is not None and tw is not None:
            terminal_deltas.append(tw - tv)
            cut = any(w["t"] - 0.001 <= at <= w["t"] + max(tv, tw) / 1e3 for at in cuts)
            allowed = tol.terminal_ms + (tol.reconnect_s * 1e3 if cut else 0.0)
            if abs(tw - tv) > allowed:
                differences.append(
                    {
                        "kind": "timing",
                        "counts": True,
                        "where": where,
                        "detail": f"signal->terminal {tv:.1f} ms in virtual, {tw:.1f} ms in wire "
                        f"(tolerance {allowed:g} ms{' with a session cut' if cut else ''})",
                    }
                )
    counted = [d for d in differences if d["counts"]]
    return {
        "scenario": virtual["scenario"],
        "seed": virtual["seed"],
        "duration_s": duration,
        "tolerance": asdict(tol),
        "episodes": {"virtual": len(virt_eps), "wire": len(wire_eps), "paired": len(pairs)},
        "outcomes": {"virtual": virtual["outcomes"], "wire": wire["outcomes"]},
        "timing_ms": {
            "signal_offset_wire_minus_virtual": distribution(offsets),
            "signal_to_terminal_wire_minus_virtual": distribution(terminal_deltas),
        },
        "differences": sorted(differences, key=lambda d: (not d["counts"], d["where"])),
        "identical": not counted,
        "verdict": "pass" if not counted else "fail",
    }


def _one_sided(run: str, ep: dict, duration: float, tol: Tolerance) -> dict:
    at_edge = ep["t"] >= duration - tol.edge_s or ep["t"] <= tol.edge_s
    return {
        "kind": "edge" if at_edge else "missing",
        "counts": not at_edge,
        "where": f"{run} {ep['decision_id']} at {ep['t']:.3f} s",
        "detail": f"{ep['side']} {ep['outcome']} fired in the {run} run only"
        + (f" (within {tol.edge_s:g} s of the start or end of trading)" if at_edge else ""),
    }


def summary(result: dict) -> str:
    """The parity result as the lines `xmc parity` prints."""
    e = result["episodes"]
    lines = [
        f"parity {result['scenario']} seed {result['seed']} over {result['duration_s']:g} s: "
        f"{e['paired']} episodes paired of {e['virtual']} virtual / {e['wire']} wire",
        f"  outcomes virtual {result['outcomes']['virtual']}  wire {result['outcomes']['wire']}",
    ]
    off = result["timing_ms"]["signal_offset_wire_minus_virtual"]
    term = result["timing_ms"]["signal_to_terminal_wire_minus_virtual"]
    if off.get("n"):
        lines.append(
            f"  signal time wire-virtual p50 {off['p50']:.1f} ms p99 {off['p99']:.1f} ms; "
            f"signal->terminal wire-virtual p50 {term.get('p50', 0):.1f} ms p99 {term.get('p99', 0):.1f} ms "
            f"(tolerances {result['tolerance']['signal_ms']:g} / {result['tolerance']['terminal_ms']:g} ms)"
        )
    for d in result["differences"]:
        lines.append(f"  {'DIFF' if d['counts'] else 'note'} {d['kind']}: {d['where']}: {d['detail']}")
    lines.append(
        f"parity: {'identical outcomes and fills' if result['identical'] else 'DIFFERENT'} -> {result['verdict']}"
    )
    return "\n".join(lines)
