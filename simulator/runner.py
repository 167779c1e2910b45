"""Runs one scenario with one seed in virtual time and produces its report, wire log and audit trail
(the report's rows, statistics and artefacts are engine/report.py's, shared with production)."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import simpy

from engine.config import ConfigError, Problem
from engine.core.engine_core import EngineCore
from engine.core.events import AuditRow, Command, SendOrder, SessionDown, Takeover
from engine.core.ids import purpose_tag
from engine.provenance import sha256_of
from engine.report import (
    RunResult,
    anomaly_summary,
    count_outcomes,
    distribution,
    episode_row,
    percentile,
    venue_of,
    wilson,
    write_artifacts,
)
from engine.shell.journal import Journal, JournalError
from engine.shell.journal import read as read_journal
from engine.shell.journal import replay as replay_journal
from engine.shell.lease import LeaseServiceUnreachable
from simulator.checkers import InvariantChecker
from simulator.failover import Cluster
from simulator.failover import timings as failover_timings
from simulator.faults import FaultPlan, NothingToDamage, damage_journal
from simulator.link import Link
from simulator.prices import PriceModelError, PriceProcess, market, price_problem
from simulator.rng import fork
from simulator.scenario import FAULT_PATHS, RISK_LIMITS, Scenario
from simulator.scratch import Scratch
from simulator.shell import SimEngineShell
from simulator.stepping import run_until
from simulator.transport import WireLog
from simulator.venue import Venue
from simulator.wire_checker import WireChecker


@dataclass
class _Node:
    journal: Journal | None
    restarts: list
    refused: list = field(default_factory=list)  # restarts that refused a damaged journal (journal_damage)
    skipped: list = field(default_factory=list)  # crashes that found the process already down


def _restart_timings(restarts: list[dict], audit: Sequence[AuditRow]) -> list[dict]:
    """Per restart: crash -> restart -> reconciled (every working order answered) -> first new order."""
    out = []
    for r in restarts:
        later = [row for row in audit if row.ts >= r["restart_s"]]
        reconciled = next((row.ts for row in later if row.stage == "reconciled"), None)
        queried = any(row.stage == "status_query" for row in later)
        first_order = next((row.ts for row in later if row.stage == "send"), None)
        out.append(
            {
                **r,
                "down_ms": round((r["restart_s"] - r["crash_s"]) * 1e3, 6),
                "reconciled_ms": round(((reconciled if queried else r["restart_s"]) - r["crash_s"]) * 1e3, 6)
                if (reconciled or not queried)
                else None,
                "first_order_ms": round((first_order - r["crash_s"]) * 1e3, 6) if first_order else None,
            }
        )
    return out


class Simulation:
    """One virtual-time run of a scenario with one seed: the world (venues, links, prices, the engine
    node or a primary/standby pair) is built at construction, each fault kind is a method attached to
    it, `run()` drives it to the end of the drain, and the report and its verdict are computed once.
    With `journal` (an engine.shell.journal.Journal) every event the core consumes is journaled.
    With `strict_fix` the engine's sessions also parse and validate with quickfix what the simulated
    venues built (simulator.transport: by default those bytes are vouched for by the venue end)."""

    def __init__(self, scenario: Scenario, seed: int | None = None, journal=None, strict_fix: bool = False):
        self.scratch = Scratch()  # the run's own journals, removed when it ends (see run())
        try:
            self._build(scenario, seed, journal, strict_fix)
        except BaseException:
            self.scratch.remove()
            raise

    def _build(self, scenario: Scenario, seed: int | None, journal, strict_fix: bool) -> None:
        self.scenario = scenario
        self.seed = seed = scenario.seed if seed is None else seed
        self.env = env = simpy.Environment()
        self.log = WireLog()
        self.shell = shell = SimEngineShell(env, EngineCore(scenario.engine), scenario.venues, self.log)
        shell.journal = journal
        self.checker = checker = shell.checker = InvariantChecker(shell.core)
        self.wire = wire = WireChecker(
            scenario.engine, {(i.venue, i.symbol): i.name for i in scenario.engine.instruments.values()}
        )
        self.node = _Node(journal, [])
        self.draining = False  # the run is in its drain: a process that starts from here on drains too
        kinds = {f.kind for f in scenario.faults}
        # a process that may restart journals: a crash fault's, a primary that may die with its standby
        # dead (Cluster.crash_primary restarts it then), or one that may lose its lease in a pause or a
        # lease cut (Cluster._lost_lease: it stops and restarts); a standby that took over journals always
        if journal is None and (
            kinds & {"crash_restart", "crash_on_order", "crash_mid_batch"}
            or (scenario.failover and "standby_crash" in kinds and "primary_crash" in kinds)
            or (scenario.failover and kinds & {"primary_pause", "lease_cut"})
        ):
            self.node.journal = shell.journal = self.scratch.journal("engine", scenario.engine)
        try:
            self.prices = prices = PriceProcess(scenario.prices, fork(seed, "prices"))
        except PriceModelError as exc:
            raise price_problem(str(scenario.path), exc, 0.0, seed) from None
        self.faults = faults = FaultPlan(
            [dataclasses.replace(f) for f in scenario.faults], lambda name: fork(seed, name)
        )
        self.cluster: Cluster | None = None
        self.venues: dict[str, Venue] = {}
        for name, vcfg in scenario.venues.items():
            insts = [i for i in scenario.engine.instruments.values() if i.venue == name]
            venue = Venue(env, vcfg, insts, fork(seed, f"venue:{name}"), self.log)
            venue.faults = faults
            venue.checker = checker
            venue.wire = wire
            venue.sim_end.observer = lambda raw, t, n=name: wire.venue_sent(n, raw, t)
            shell.sessions[name].observer = lambda raw, t, n=name: wire.engine_sent(n, raw, t)
            if not strict_fix:
                venue.sim_end.vouched = set()
                shell.sessions[name].peer = venue.sim_end
            venue.sim_end.link = Link(
                env,
                f"{name}:down",
                vcfg.down,
                fork(seed, f"link:{name}:down"),
                partial(self._to_active_node, name),
                name,
                "down",
                faults,
            )
            shell.sessions[name].link = Link(
                env, f"{name}:up", vcfg.up, fork(seed, f"link:{name}:up"), venue.receive, name, "up", faults
            )
            self.venues[name] = venue
            names = [i.name for i in insts]
            for link in (venue.sim_end.link, shell.sessions[name].link):
                link.volatility = partial(_largest_move, prices, names)
        if scenario.failover:
            self.cluster = Cluster(env, scenario.failover, scenario, shell, self.venues, faults, self.scratch)
            self.cluster.restart_alone = lambda fault: env.process(self._crash_restart(fault, now=True, killed=True))
            checker.lease = wire.lease = self.cluster.lease
            checker.fence_window = self.cluster.fence_window()
        self._attach_faults()

    def _to_active_node(self, venue: str, raw: str) -> None:
        """What a venue's link delivers reaches the engine node in charge when it arrives."""
        self.active.receive(venue, raw)

    @property
    def active(self) -> SimEngineShell:
        """The engine node in charge now: the only one, or the active node of the pair."""
        return self.cluster.active if self.cluster is not None else self.shell

    # ---- the faults -------------------------------------------------------------------------------
    def _attach_faults(self) -> None:
        env, faults, cluster = self.env, self.faults, self.cluster
        if cluster is not None:
            for f in faults.faults:
                if (
                    f.kind in ("primary_crash", "primary_pause", "standby_crash", "standby_pause", "lease_cut")
                    and not f.on_order
                ):
                    env.process(self._node_fault(f))
            for v in self.venues.values():
                v.on_node_fault = lambda f: env.process(self._node_fault(f, now=True))
        starts = {
            "disconnect": self._disconnect,
            "kill_switch": self._kill_switch,
            "crash_restart": self._crash_restart,
            "desk_trade": self._desk_trade,
        }
        for f in faults.faults:
            if f.kind in starts:
                env.process(starts[f.kind](f))
        for v in self.venues.values():
            v.on_crash_fault = self._crash_on_order
        if any(f.kind == "crash_mid_batch" for f in faults.faults):
            self.shell.batch_crash, self.shell.crash_now = self._batch_crash, self._crash_now
        for v in self.venues.values():
            v.on_disconnect_fault = lambda f, _member: env.process(self._disconnect(f, env.now, f.delay))

    def _disconnect(self, fault, start: float | None = None, length: float | None = None):
        """A session drop at `after` for the fault's window, or now for `length` (disconnect_on_order)."""
        env, shell = self.env, self.shell
        yield env.timeout(fault.after if start is None else 0.0)
        venue = self.venues[fault.venue]
        links = (venue.sim_end.link, shell.sessions[fault.venue].link)
        for link in links:
            link.down = True
        if start is None:
            fault.hits += 1
        venue.disconnect(fault.cancel_on_disconnect, reports_lost=fault.reports_lost)
        shell.disconnected(fault.venue)
        yield env.timeout(fault.until - fault.after if length is None else length)
        for link in links:
            link.down = False
        shell.reconnect(fault.venue)

    def _crash_restart(self, fault, now: bool = False, killed: bool = False):
        """Kill the engine (at `after`, or now), restart it from its journal after `delay`, reconcile.
        With a standby pair it is the active node that dies, once no standby is left to take over.
        `killed`: the caller has just killed it (it only needs the restart); any other fault that finds
        it down already is skipped, as its restart is still to come."""
        env, cluster, venues, scenario = self.env, self.cluster, self.venues, self.scenario
        yield env.timeout(0.0 if now else fault.after)
        target = self.active
        if not killed and not target.alive:
            self._skip_crash(fault)  # down already, its restart (or the standby's takeover) still to come
            return
        if cluster is not None and cluster.standby_core is not None and not killed:
            cluster.events.append(
                {"event": "crash_restart_skipped", "at_s": env.now, "why": "a standby is alive (that is primary_crash)"}
            )
            return
        if not now:
            fault.hits += 1
        journal = target.journal
        assert journal is not None  # a run with a crash_* fault journals every node (_build, Cluster)
        # nobody reads the dead process's sockets; what it had already written still reaches the venues
        links = [v.sim_end.link for v in venues.values()]
        target.crash()
        for link in links:
            link.down = True
        for v in venues.values():
            v.disconnect(fault.cancel_on_disconnect)
        crash_at = env.now
        torn = 0
        if fault.torn_write:  # it died while writing the record of what it was about to handle
            torn = journal.torn_append(SessionDown(next(iter(venues))), env.now)
        yield env.timeout(fault.delay)
        revision = None
        while cluster is not None and revision is None:
            # the restarted process of a pair must hold the lease before it trades: the dead process's
            # grant lives until it expires (no keep-alive comes), then this process gets the next epoch
            if cluster.active is not target:  # a standby took over meanwhile: this process is refused
                cluster.events.append({"event": "restart_refused_lease_held", "at_s": env.now, "node": target.node})
                return
            try:
                revision = cluster.lease.acquire(target.node, env.now)
            except LeaseServiceUnreachable:  # cut off from the service: it asks again a heartbeat later
                yield env.timeout(cluster.cfg.heartbeat)
                continue
            if revision is None:
                yield env.timeout(max(cluster.lease.expires - env.now, 1e-6))
        journal.sync()
        if fault.journal_damage:  # the disk (or a hand) damaged the journal while the process was down
            try:
                damage_journal(journal.path, fault.journal_damage)
            except NothingToDamage:  # the scenario's to answer for (Simulation._run): plain args cross simpy
                raise NothingToDamage(fault.index, crash_at) from None
        before = sha256_of(journal.path)
        try:
            recovered = read_journal(journal.path, journal.fingerprint, scenario.engine)
        except JournalError as exc:  # the new process refuses to trade on it (xmc live: exit 2)
            self.node.refused.append(
                {
                    "crash_s": crash_at,
                    "refused_s": env.now,
                    "node": target.node,
                    "damage": fault.journal_damage,
                    "error": str(exc),
                    "journal_untouched": sha256_of(journal.path) == before,
                }
            )
            return
        if recovered.truncated_bytes:  # the restarted process cuts the torn tail before appending again
            journal.close()
            reopened = target.journal = Journal(journal.path, scenario.engine, durability="none", flush_each=False)
            self.scratch.reopened(journal, reopened)
            journal = reopened
            if target is self.shell:
                self.node.journal = journal
        rebuilt = EngineCore(scenario.engine)
        target.restart(rebuilt, replay_journal(rebuilt, recovered.records))  # state rebuilt, timers re-armed
        self.node.restarts.append(
            {
                "crash_s": crash_at,
                "restart_s": env.now,
                "replayed": len(recovered.records),
                "torn_bytes_cut": recovered.truncated_bytes,
                "torn_reason": recovered.reason,
                "torn_written": torn,
                "node": target.node,
            }
        )
        if cluster is not None and revision is not None:  # it trades under the epoch of its own grant
            cluster.events.append({"event": "active_restarted", "at_s": env.now, "epoch": revision})
            if revision > rebuilt.epoch:
                target.dispatch(Takeover(revision))
        if self.draining:  # the drain was ordered while this process was down: it is told again
            target.dispatch(Command("drain"))
        for name in venues:
            target.dispatch(SessionDown(name))  # the new process knows the sessions dropped: it will query
        target.dispatch(Command("reconcile"))  # and asks each trading venue for all its orders: positions
        for link in links:
            link.down = False
        for name in venues:
            target.reconnect(name)

    def _node_fault(self, fault, now: bool = False):
        """A fault of the pair: the primary dies or freezes, the standby dies or freezes, or the lease
        service is cut off from a node (at `after`, or now)."""
        cluster = self.cluster
        assert cluster is not None  # node faults are started only for a scenario with [failover]
        if not now:
            yield self.env.timeout(fault.after)
        if fault.kind == "primary_crash":
            cluster.crash_primary(fault)
        elif fault.kind == "primary_pause":
            yield self.env.process(cluster.pause_primary(fault))
        elif fault.kind == "standby_crash":
            yield self.env.process(cluster.crash_standby(fault))
        elif fault.kind == "standby_pause":
            yield self.env.process(cluster.pause_standby(fault))
        elif fault.kind == "lease_cut":
            yield self.env.process(cluster.cut_lease(fault, struck=now))

    def _kill_switch(self, fault):
        yield self.env.timeout(fault.after)
        fault.hits += 1
        self.shell.dispatch(Command("kill"))

    def _desk_trade(self, fault):
        """A trade on the engine's account at the fault's venue, done away from its session."""
        yield self.env.timeout(fault.after)
        fault.hits += 1
        venue = self.venues[fault.venue]
        venue.book_desk_trade(next(iter(venue.instruments)), "1" if fault.side == "buy" else "2", fault.lots)

    def _batch_crash(self, actions: list):
        """Where a crash_mid_batch fault kills the process in this batch: between the two legs'
        NewOrderSingles, or after an order is handed to the session but before its audit row."""
        if self.cluster is not None and self.cluster.active is not self.cluster.primary:
            return None  # one crash of the primary per run: the standby has no standby
        sends = [i for i, a in enumerate(actions) if type(a) is SendOrder]
        if not sends:
            return None
        for f in self.faults.faults:
            if f.kind != "crash_mid_batch" or (f.point == "between_legs" and len(sends) < 2):
                continue
            if self.faults.for_order("crash_mid_batch", "", actions[sends[0]].cl_ord_id, self.env.now) is f:
                return (sends[1] if f.point == "between_legs" else sends[0] + 1), f
        return None

    def _crash_now(self, fault) -> None:
        if self.cluster is not None:
            self.cluster.crash_primary(fault)
        elif not self.shell.alive:  # an order the dead process had sent reached its venue: no second death
            self._skip_crash(fault)
        else:
            self.shell.crash()
            self.env.process(self._crash_restart(fault, now=True, killed=True))

    def _crash_on_order(self, fault) -> None:
        """A crash_on_order fault struck as its order reached the venue; the order may have been sent
        by a process that has died since (what it wrote still reaches the venues): then it is skipped,
        single node or pair (a restarted standby in charge alone dies once, restarts once)."""
        if not self.active.alive:
            self._skip_crash(fault)
        else:
            self.env.process(self._crash_restart(fault, now=True))

    def _skip_crash(self, fault) -> None:
        """A crash fault that found the engine process already down (its restart still to come): a
        second restart would rebuild from a journal the first may have replaced (a torn tail cut), and
        a dead process cannot die again."""
        self.node.skipped.append({"fault": fault.kind, "at_s": self.env.now, "why": "the engine process is down"})

    # ---- running and judging ------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Drive the run to the end of its drain and judge it; its temporary files go, however it ends."""
        try:
            return self._run()
        finally:
            self.scratch.remove()

    def _run(self) -> RunResult:
        scenario, env, cluster, checker = self.scenario, self.env, self.cluster, self.checker
        env.process(
            market(
                env,
                self.prices,
                list(self.venues.values()),
                scenario.prices.step,
                self.faults.faults,
                lambda t, f: checker.jumps.append(t),
            )
        )
        self.shell.start()
        try:
            run_until(env, scenario.duration)
            if cluster is not None:  # the node active now drains, and so does any that takes over later
                cluster.draining = True
            self.draining = True
            self.active.dispatch(Command("drain"))
            if scenario.drain > 0:  # drain_s = 0: the run ends as the drain starts (simpy runs nothing until now)
                run_until(env, scenario.duration + scenario.drain)
        except PriceModelError as exc:  # the scenario's prices cannot be simulated: its file is at fault
            raise price_problem(str(scenario.path), exc, env.now, self.seed) from None
        # (its own name: mypyc types a name by its first binding, here the PriceModelError above)
        except NothingToDamage as damage:  # a journal_damage fault that came before any record
            index, crash_at = damage.args
            raise ConfigError(
                str(scenario.path),
                [
                    Problem(
                        f"faults[{index}].journal_damage",
                        f"at {crash_at:g} s (seed {self.seed}) the engine crashed before it had journaled any "
                        f"record: there is none to damage",
                        "let the engine journal first: a later after_s, or on_order = true",
                    )
                ],
            ) from None
        if self.node.journal is not None:
            self.node.journal.sync()
        shell = self.active  # after a failover: shares the audit trail and logs of the node it took over from
        core = shell.core  # after a restart, the rebuilt one
        report = build_report(
            scenario,
            self.seed,
            core,
            shell,
            self.venues,
            self.log,
            checker,
            self.faults,
            self.wire,
            self._node_report(shell),
        )
        return RunResult(report, self.log.lines, shell.audit, venue_of(core))

    def _node_report(self, shell: SimEngineShell) -> dict:
        """What the node's own history adds to the report: restarts, failovers, and the rare paths they
        reached (coverage), all known before the expectations are judged."""
        out: dict = {"restarts": _restart_timings(self.node.restarts, shell.audit), "coverage": set()}
        if self.node.skipped:
            out["crashes_skipped"] = self.node.skipped
        if self.node.refused:
            out["restarts_refused"] = self.node.refused
            if all(r["journal_untouched"] for r in self.node.refused):  # refused, and nothing was cut
                out["coverage"].add("journal_refused")
        cluster = self.cluster
        if cluster is not None:
            out["failover"] = {
                "failovers": failover_timings(cluster.failovers, shell.audit),
                "node_events": cluster.events,
                "lease_grants": [{"at_s": t, "node": n, "epoch": r} for t, n, r in cluster.lease.grants],
                "fenced_attempts": sum(1 for row in shell.audit if row.stage == "fenced"),
            }
            if any("active_s" in f for f in cluster.failovers):
                out["coverage"].add("failover")
            out["coverage"] |= {"fenced_attempt"} & set(self.checker.coverage)
        if self.node.restarts:
            out["coverage"].add("engine_restart")
            if any(r["torn_bytes_cut"] for r in self.node.restarts):
                out["coverage"].add("journal_torn")
        return out


def _largest_move(prices: PriceProcess, names: list[str]) -> float:
    """The largest of the last price step's moves (basis points) of a venue's instruments: its links slow
    down with it (Latency.vol_coupling)."""
    return max((prices.moves_bp.get(n, 0.0) for n in names), default=0.0)


def run(scenario: Scenario, seed: int | None = None, journal=None, strict_fix: bool = False) -> RunResult:
    """One run (a Simulation built and run)."""
    return Simulation(scenario, seed, journal, strict_fix).run()


PART_DONE = re.compile(r"cum=([\d.]+)/([\d.]+)")
RISK_LIMIT = re.compile(r"\b(" + "|".join(RISK_LIMITS) + r")\b")  # which limit a risk_breach row names


def coverage(core: EngineCore, shell: SimEngineShell, checker: InvariantChecker) -> list[str]:
    """Which rare paths the run really reached, so a green run proves its scenario happened."""
    seen = set(checker.coverage)
    stages = {row.stage for row in shell.audit}
    kinds = {a.kind for a in shell.anomalies}
    for ep in core.episodes.values():
        orders = [o for leg in ep.legs.values() for o in leg.orders]
        if "legged" in ep.stages:
            seen.add("legged")
        if ep.state.value == "ESCALATED":
            seen.add("escalated")
        seen.update(o.purpose for o in orders if o.purpose in ("chase", "unwind", "overfill_hedge"))
        rejected = [o for o in orders if o.state.name == "REJECTED"]
        if any(o.purpose == "entry" for o in rejected):
            seen.add("reject_entry")
        if any(o.purpose == "chase" for o in rejected):
            seen.add("reject_during_chase")
        partial = [o for o in orders if 0 < o.cum_qty < o.qty]
        if partial:
            seen.add("partial_fill")
            if any(o.leg != p.leg for o in rejected for p in partial):
                seen.add("partial_and_reject")
    # a late acknowledgement that reached the engine: the venue processed the order late and the
    # engine applied its report (the order has the venue's OrderID)
    if any(o.order_id and o.cl_ord_id in checker.late_acks for o in core.orders.values()):
        seen.add("late_ack")
    if any(o.cum_qty and o.cl_ord_id in checker.reordered for o in core.orders.values()):
        seen.add("fill_before_ack")  # a fill overtook its order's acknowledgement and was applied
    # a price jump that landed while an episode was open (priced before it), or that fired a signal
    # within half a second (the far leg's quote still stale): either way legs met a market that moved
    for t in checker.jumps:
        if any(
            ep.stages["signal"] <= t + 0.5 and t <= ep.stages.get("terminal", math.inf) for ep in core.episodes.values()
        ):
            seen.add("price_jump")
            break
    # a node that died or stepped down reached its paths too: its rejects are in the shared audit
    # trail; so is every fill that left its order part-done ("cum=1/2"), even if the rest filled later
    for row in shell.audit:
        if row.stage == "rejected" and (tag := purpose_tag(row.cl_ord_id)) is not None:
            seen.add({"": "reject_entry", "R": "reject_during_chase"}.get(tag, "reject_entry"))
        elif row.stage == "fill" and (m := PART_DONE.search(row.detail)) is not None and float(m[1]) < float(m[2]):
            seen.add("partial_fill")
    recovery_ids = {o.cl_ord_id for o in core.orders.values() if o.purpose != "entry"}
    for a in shell.anomalies:
        if a.kind == "duplicate_exec_id":
            seen.add("duplicate_report")
            if a.cl_ord_id in recovery_ids:
                seen.add("duplicate_during_recovery")
    if "sequence_gap" in kinds:
        seen.add("sequence_gap")
    if "session_down" in stages:
        seen.add("session_down")
    if core.trigger.stale_skips:
        seen.add("stale_skip")
    if "cancel_rejected" in stages:
        seen.add("cancel_reject")
    if "timeout" in stages:
        seen.add("timeout_cancel")
    if "kill_switch" in stages:
        seen.add("kill_switch")
    if "status_query" in stages:
        seen.add("status_query")
    if "mass_status_unsupported" in stages:  # a venue refused the AF: per-order answers had to do
        seen.add("mass_status_unsupported")
    if "status_reasked" in stages:  # a drop left a logon's questions unanswered: asked again at the next
        seen.add("status_reasked")
    if "positions_unsupported" in stages:  # a venue gave no position reports: its orders' CumQty had to do
        seen.add("positions_unsupported")
    if "positions_reconciled" in stages:
        seen.add("positions_reconciled")
    if "position_mismatch" in stages:
        seen.add("position_mismatch")
    if "foreign_cancel" in stages:  # a working order this node never sent, found by its status query
        seen.add("foreign_cancel")
    if "fill_from_status" in kinds:
        seen.add("fill_from_status")
    if "late_fill" in kinds:  # a fill reported after the venue ended its order reached the engine
        seen.add("late_fill")
    if any(a.kind == "overfill" and not a.cl_ord_id for a in shell.anomalies):  # an episode's excess kept on record
        seen.add("overfill_recorded")
    if "unknown_order" in kinds:  # a venue reported an order this node never sent: the desk was told
        seen.add("unknown_order")
    if "adopted" in stages:  # an order of an earlier node for an episode this one knows joined its leg
        seen.add("adopted")
    for row in shell.audit:
        if row.stage == "risk_breach":
            if row.detail.startswith(("chase", "unwind")):
                seen.add("risk_refused_recovery")
            if (m := RISK_LIMIT.search(row.detail)) is not None:
                seen.add(f"risk:{m[1]}")
    return sorted(seen)


def build_report(
    scenario: Scenario,
    seed: int,
    core: EngineCore,
    shell: SimEngineShell,
    venues: dict[str, Venue],
    log: WireLog,
    checker: InvariantChecker,
    faults,
    wire: WireChecker | None = None,
    node: dict | None = None,
) -> dict:
    """The run's report, judged once: `node` (Simulation._node_report) adds restarts, failovers and the
    rare paths they reached before the expectations are evaluated."""
    node = node or {"coverage": set()}
    episodes = [episode_row(ep, core) for ep in core.episodes.values()]
    outcomes = count_outcomes(episodes)
    venue_pos: dict[str, float] = {}
    for v in venues.values():
        for symbol, lots in v.engine_positions().items():
            inst = next(i for i in core.instruments.values() if i.symbol == symbol and i.venue == v.cfg.name)
            venue_pos[inst.name] = venue_pos.get(inst.name, 0.0) + lots
    engine_pos = {k: v for k, v in core.positions.items() if v}
    compute_us = [n / 1e3 for n in shell.compute_ns]
    legged = [e for e in episodes if e["recovery"] is not None]
    budget_ms = core.strategy.recovery.legged_budget * 1e3
    in_budget = [
        e
        for e in legged
        if e["outcome"] in ("BALANCED", "UNWOUND") and (e["recovery"]["legged_ms"] or 0.0) <= budget_ms
    ]
    chased = [e for e in legged if e["recovery"]["chase_attempts"]]
    unwound = [e for e in legged if e["recovery"]["unwind_attempts"]]
    if shell.core is not None:  # every run: the engine's view of its orders must be the venues' at the end
        venue_orders = {
            cl: (co.status, float(co.cum), co.notional / co.cum if co.cum else 0.0)
            for v in venues.values()
            for cl, co in v.orders.items()
        }
        venue_orders.update({cl: ("A", 0.0, 0.0) for v in venues.values() for cl in v.pending_new})
        # a NewOrderSingle the venue answered Rejected is an order it saw and reported on, dead with
        # nothing filled (a standby that takes over behind its primary may hear of it as unknown)
        for v in venues.values():
            venue_orders.update({cl: ("8", 0.0, 0.0) for cl in v.rejected if cl not in venue_orders})
        checker.reconcile_check(
            scenario.duration + scenario.drain,
            venue_orders,
            {a.cl_ord_id for a in shell.anomalies if a.kind == "unknown_order"},
        )
    invariants = checker.finish(scenario.duration + scenario.drain, shell.anomalies, venue_pos)
    if wire is not None:
        # when each episode was ended: every window from an end to its reopening by a late fill, and
        # from its last end on
        closed = {
            d: [*ep.reopened, *([(ep.stages["terminal"], math.inf)] if ep.terminal else [])]
            for d, ep in core.episodes.items()
        }
        invariants.update(wire.finish(core.positions, closed, {d: ep.state.value for d, ep in core.episodes.items()}))
    report = {
        "scenario": scenario.name,
        "file": str(scenario.path),
        "scenario_files": [str(f) for f in scenario.files],
        "seed": seed,
        "duration_s": scenario.duration,
        "run_hash": log.digest(),
        "episodes": episodes,
        "outcomes": outcomes,
        "timings": {
            "signal_to_acks_ms": distribution(
                [e["signal_to_acks_ms"] for e in episodes if e["signal_to_acks_ms"] is not None]
            ),
            "signal_to_terminal_ms": distribution(
                [e["signal_to_terminal_ms"] for e in episodes if e["signal_to_terminal_ms"] is not None]
            ),
            "reaction_ms": distribution(
                [e["recovery"]["reaction_ms"] for e in legged if e["recovery"]["reaction_ms"] is not None]
            ),
            "legged_ms": distribution(
                [e["recovery"]["legged_ms"] for e in legged if e["recovery"]["legged_ms"] is not None]
            ),
        },
        "recovery": {
            "legged": len(legged),
            "legged_budget_ms": budget_ms,
            "repaired_in_budget": wilson(len(in_budget), len(legged)),
            "reorder_success": wilson(sum(1 for e in chased if e["outcome"] == "BALANCED"), len(chased)),
            "rollback_success": wilson(sum(1 for e in unwound if e["outcome"] == "UNWOUND"), len(unwound)),
        },
        "invariants": invariants,
        "coverage": sorted({*coverage(core, shell, checker), *node["coverage"]}),
        "faults": faults.hits(),
        "fault_windows": [
            {
                "index": f.index,
                "kind": f.kind,
                "venue": f.venue,
                "orders": f.orders,
                "after_s": f.after,
                "until_s": None if math.isinf(f.until) else f.until,
                "hits": f.hits,
                **({"journal_damage": f.journal_damage} if f.journal_damage else {}),
            }
            for f in faults.faults
        ],
        "positions": {"engine": engine_pos, "venues": {k: v for k, v in venue_pos.items() if v}},
        "fills_match_positions": engine_pos == {k: v for k, v in venue_pos.items() if v},
        "anomalies": anomaly_summary(shell.anomalies),
        "alerts": [a.text for a in shell.alerts[:50]],
        "counters": {
            "messages": len(log.lines),
            "orders_sent": shell.orders_sent,
            "alerts": len(shell.alerts),
            "stale_skips": core.trigger.stale_skips,
            "venue_rejects": sum(v.rejects_sent for v in venues.values()),
        },
        # wall-clock figures: informative only, never part of run_hash or a verdict
        "wall": {
            "engine_compute_us": distribution(compute_us),
            "engine_compute_s": round(sum(compute_us) / 1e6, 6),
            "recovery_decision_us": distribution([n / 1e3 for n in shell.recovery_ns]),
            # the venues' module came from mypyc's build of the hot modules (xmc/accel.py), not the .py
            "compiled": not str(sys.modules["simulator.venue"].__file__).endswith(".py"),
        },
    }
    report.update({k: v for k, v in node.items() if k != "coverage"})
    report["expectations"] = evaluate(scenario.expect, report)
    report["verdict"] = "pass" if all(x["verdict"] == "pass" for x in report["expectations"]) else "fail"
    report["replay"] = f"xmc run {scenario.path} --seed {seed}"
    return report


def evaluate(expect: dict, report: dict) -> list[dict]:
    out = []

    def check(key: str, expected, actual, ok: bool) -> None:
        out.append({"key": key, "expected": expected, "actual": actual, "verdict": "pass" if ok else "fail"})

    outcomes, episodes = report["outcomes"], report["episodes"]
    if "min_episodes" in expect:
        check("min_episodes", expect["min_episodes"], len(episodes), len(episodes) >= expect["min_episodes"])
    if expect.get("all_terminal"):
        open_ = sum(n for k, n in outcomes.items() if k in ("NEW", "WORKING", "LEGGED"))
        check("all_terminal", 0, open_, open_ == 0)
    for outcome, n in expect.get("outcomes_at_least", {}).items():
        check(f"outcomes_at_least.{outcome}", n, outcomes.get(outcome, 0), outcomes.get(outcome, 0) >= n)
    for outcome, n in expect.get("outcomes_at_most", {}).items():
        check(f"outcomes_at_most.{outcome}", n, outcomes.get(outcome, 0), outcomes.get(outcome, 0) <= n)
    if "max_p99_signal_to_acks_ms" in expect:
        p99 = report["timings"]["signal_to_acks_ms"]["p99"]
        check(
            "max_p99_signal_to_acks_ms",
            expect["max_p99_signal_to_acks_ms"],
            p99,
            p99 is not None and p99 <= expect["max_p99_signal_to_acks_ms"],
        )
    if "max_orders_sent" in expect:
        n = report["counters"]["orders_sent"]
        check("max_orders_sent", expect["max_orders_sent"], n, n <= expect["max_orders_sent"])
    if "max_anomalies" in expect:
        n = report["anomalies"]["count"]
        check("max_anomalies", expect["max_anomalies"], n, n <= expect["max_anomalies"])
    kinds = report["anomalies"]["by_kind"] if "anomalies_at_least" in expect or "anomalies_at_most" in expect else {}
    for kind, n in expect.get("anomalies_at_least", {}).items():
        check(f"anomalies_at_least.{kind}", n, kinds.get(kind, 0), kinds.get(kind, 0) >= n)
    for kind, n in expect.get("anomalies_at_most", {}).items():
        check(f"anomalies_at_most.{kind}", n, kinds.get(kind, 0), kinds.get(kind, 0) <= n)
    if "max_alerts" in expect:  # a critical alert pages the desk: one the scenario does not call for is a false alarm
        n = report["counters"]["alerts"]
        check("max_alerts", expect["max_alerts"], n, n <= expect["max_alerts"])
    if expect.get("invariants_hold", True):
        failed = {k: v for k, v in report["invariants"].items() if v["status"] == "fail"}
        detail = "none"
        if failed:
            number, first = next(iter(failed.items()))
            detail = f"#{number} {first['name']}: {first['first']}"
        check("invariants_hold", "no violation", detail, not failed)
    if "min_legged" in expect:
        n = report["recovery"]["legged"]
        check("min_legged", expect["min_legged"], n, n >= expect["min_legged"])
    if "min_recovery_success" in expect:
        r = report["recovery"]["repaired_in_budget"]
        ok = r["rate"] is not None and r["rate"] >= expect["min_recovery_success"]
        check("min_recovery_success", expect["min_recovery_success"], r["rate"], ok)
    for path in expect.get("coverage", []):
        check(
            f"coverage.{path}",
            "reached",
            "reached" if path in report["coverage"] else "not reached",
            path in report["coverage"],
        )
    n_eps = len(episodes)
    for key, at_least in (("outcome_share_at_least", True), ("outcome_share_at_most", False)):
        for outcome, share in expect.get(key, {}).items():
            actual = outcomes.get(outcome, 0) / n_eps if n_eps else None
            ok = actual is not None and (actual >= share - 1e-12 if at_least else actual <= share + 1e-12)
            check(f"{key}.{outcome}", share, None if actual is None else round(actual, 6), ok)
    for key, name in (("min_reorder_success", "reorder_success"), ("min_rollback_success", "rollback_success")):
        if key in expect:
            r = report["recovery"][name]
            check(key, expect[key], r["rate"], r["rate"] is not None and r["rate"] >= expect[key] - 1e-12)
    if "max_legged_ms" in expect:
        worst = max(
            (
                e["recovery"]["legged_ms"] if e["recovery"]["legged_ms"] is not None else math.inf
                for e in episodes
                if e["recovery"] is not None
            ),
            default=0.0,
        )
        check("max_legged_ms", expect["max_legged_ms"], worst, worst <= expect["max_legged_ms"])
    if "leg_lots" in expect:
        want = list(expect["leg_lots"])
        off = [e["decision_id"] for e in episodes if [e["legs"]["A"]["target"], e["legs"]["B"]["target"]] != want]
        check(
            "leg_lots", want, "every episode" if not off else f"{len(off)} episode(s) differ, first {off[0]}", not off
        )
    if "max_residual_t" in expect:
        worst = max((abs(e["residual_t"]) for e in episodes if e["outcome"] == "BALANCED"), default=0.0)
        check("max_residual_t", expect["max_residual_t"], worst, worst <= expect["max_residual_t"] + 1e-9)
    windows = [
        (
            f"{w['kind']} fault {w['index']}",
            w["after_s"],
            math.inf if w["kind"] == "kill_switch" else w["until_s"] if w["until_s"] is not None else math.inf,
        )
        for w in report.get("fault_windows", [])
        if w["kind"] in expect.get("no_episode_during", [])
    ]
    windows += [(f"window {a:g}-{b:g} s", a, b) for a, b in expect.get("no_episode_between", [])]
    for label, start, end in windows:
        inside = [e["decision_id"] for e in episodes if start <= e["signal_at_s"] < end]
        check(f"no_episode_during.{label}", 0, len(inside), not inside)
    if expect.get("faults_reach_paths", True):
        reached = set(report["coverage"])
        for w in report.get("fault_windows", []):
            paths = FAULT_PATHS.get(w["kind"], ())
            if w["kind"] == "reject" and w["orders"] == "entry":
                paths = ("reject_entry",)
            elif w["kind"] == "reject" and w["orders"] in ("chase", "recovery"):
                paths = ("reject_during_chase",)
            if w.get("journal_damage"):  # the restart must refuse the damaged journal and leave it as it was
                paths = ("journal_refused",)
            if not w["hits"] or not paths:
                continue
            ok = bool(reached & set(paths))
            check(
                f"faults_reach_paths.{w['index']}:{w['kind']}",
                " or ".join(paths),
                "reached" if ok else f"fired {w['hits']} time(s), path not reached",
                ok,
            )
    if expect.get("fills_match_positions", True):
        check("fills_match_positions", True, report["fills_match_positions"], report["fills_match_positions"])
    return out


# report building lives in engine/report.py (production uses it too); these names stay importable here
__all__ = [
    "RunResult",
    "distribution",
    "percentile",
    "wilson",
    "write_artifacts",
    "episode_row",
    "run",
    "evaluate",
    "build_report",
    "coverage",
]
