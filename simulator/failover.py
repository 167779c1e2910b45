"""Primary and hot standby in virtual time: journal streaming, heartbeats, a lease, fenced takeover.

The primary's shell streams every event its core consumes (the write-ahead journal's records) to
the standby over a replication link; the standby's own core applies them as they arrive, so it
holds the same orders, episodes and timers (hot). Heartbeats travel the same stream every
`heartbeat` seconds and keep the primary's lease alive. When `misses` heartbeats are missing the
standby detects the failure, takes the lease once it has expired (its revision is the new fencing
epoch), becomes active with that epoch (engine.core.events.Takeover), logs on to every venue with the
replicated FIX session state, queries every order it knows was working and only then takes new
risk. A paused primary that wakes up runs into the fence where orders leave it (the lease check),
and, superseded, steps down at its next keep-alive; one still in charge without its lease stops and is
restarted from its journal, under the next epoch unless the standby took over first. A node cut off from the lease service (lease_cut) decides
each keep-alive by production's rule (engine.shell.lease.renew): it trades on its last grant while
its own clock says that lasts, then stops like a node whose lease is gone. A frozen standby
(standby_pause) reads what its socket held when it wakes, before its detector judges the heartbeats.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from engine.core.engine_core import EngineCore
from engine.core.events import AuditRow, Command, Takeover, track_timers
from engine.shell.journal import Journal
from engine.shell.lease import FENCE_MARGIN, LeaseServiceUnreachable, may_send, renew
from simulator.faults import Fault
from simulator.scratch import Scratch


@dataclass(frozen=True, slots=True)
class FailoverConfig:
    heartbeat: float = 0.1  # seconds between heartbeats (and lease keep-alives)
    misses: int = 3  # heartbeats missed before the standby declares the primary dead
    lease_ttl: float = 0.3  # seconds a lease lives without keep-alive
    replication_latency: float = 0.0002  # seconds for a journal record or heartbeat to reach the standby
    fencing: bool = True  # check the lease where orders leave a node (off only to prove the checker)


class SimulatedLease:
    """etcd's lease semantics in virtual time: one leader key under a TTL lease, kept alive by its
    holder; granting it to a new holder bumps the revision (the fencing epoch)."""

    def __init__(self, ttl: float, holder: str, revision: int, now: float = 0.0):
        self.ttl = ttl
        self.holder: str | None = holder
        self.revision = revision
        self.expires = now + ttl
        self.grants = [(now, holder, revision)]
        self.cut: set[str] = set()  # the nodes the service cannot be reached from now (lease_cut)

    def _reach(self, node: str) -> None:
        """A request from `node` fails unanswered while it is cut off from the service."""
        if node in self.cut:
            raise LeaseServiceUnreachable(f"the lease service does not answer {node}")

    def acquire(self, node: str, now: float) -> int | None:
        """A new grant to `node` (the next revision), or None while the lease lives. Also when its holder
        is `node` itself: the grant belonged to a process of that node that has died since, and the
        service cannot tell a restarted process from a stranger (production's leases are sessions:
        etcd's lease id and ZooKeeper's session die with the process), so it waits for the expiry."""
        self._reach(node)
        if self.holder is not None and now < self.expires:
            return None
        self.revision += 1
        self.holder, self.expires = node, now + self.ttl
        self.grants.append((now, node, self.revision))
        return self.revision

    def keep_alive(self, node: str, now: float) -> bool:
        self._reach(node)
        if self.holder == node and now < self.expires:
            self.expires = now + self.ttl
            return True
        return False

    def holds(self, node: str, epoch: int, now: float) -> bool:
        """The fence, as production's (engine.shell.lease.EtcdLease): the holder stops sending FENCE_MARGIN
        of the TTL before expiry, so a node that wakes from a pause near the end of its lease cannot
        put an order on the wire that arrives after the standby took the lease."""
        return self.holder == node and self.revision == epoch and now < self.expires - self.ttl * FENCE_MARGIN

    def release(self, node: str, now: float) -> None:
        self._reach(node)
        if self.holder == node:
            self.holder = None

    def held_by(self, now: float) -> str | None:
        return self.holder if now < self.expires else None

    def grant_outlives(self) -> float:
        return self.ttl


class Cluster:
    """The two engine nodes of one run: which is active, the replication stream, the lease."""

    def __init__(self, env, cfg: FailoverConfig, scenario, primary, venues: dict, faults, scratch: Scratch):
        self.env = env
        self.scratch = scratch  # where the standby's journals go: the run removes them when it ends
        self.cfg = cfg
        self.scenario = scenario
        self.primary = primary
        self.active = primary
        self.draining = False  # the run is draining: a node that takes over opens nothing new either
        self.venues = venues
        self.faults = faults
        self.lease = SimulatedLease(cfg.lease_ttl, "primary", scenario.engine.epoch, env.now)
        primary.node = "primary"
        primary.fence = self._fence("primary") if cfg.fencing else None
        primary.replicate = self._replicate
        self.standby_core: EngineCore | None = EngineCore(scenario.engine)
        self.standby_journal = self._new_journal()  # the standby writes what it applies: its own cold restart
        self.standby_timers: dict[str, float] = {}
        self.history: list[tuple[float, object]] = []  # what the primary streamed (a resync source)
        # how the primary restarts when it dies with no standby alive (set by the runner)
        self.restart_alone: Callable[[Any], object] = lambda fault: None
        self.applied = 0
        self.stream_gen = 0  # bumped when the primary dies: what is still on the wire is lost
        self.last_delivery = 0.0
        # what is on the replication wire, in stream order: each delivery's timeout takes the head, so
        # deliveries due at the same time keep their order (a timeout's time is now + (at - now) in
        # floating point, which can land a hair either side of `at`: events held by a replication cut
        # all fall due at its end and came out shuffled, so the standby's core read its quotes out of
        # order, opened an episode the primary never did and took over with the wrong positions)
        self.on_wire: deque[tuple[int, Callable[[], None]]] = deque()
        self.last_heartbeat = env.now
        # a paused standby (standby_pause) reads nothing: what reaches its socket waits there, in order
        self.standby_paused = False
        self.held: list[Callable[[], None]] = []
        self.detected: float | None = None
        self.lost_at: float | None = None  # when the fence began to stop a node that then lost its lease
        self.failovers: list[dict] = []
        self.events: list[dict] = []  # node faults as they happened
        env.process(self._heartbeats())
        env.process(self._monitor())

    # ---- the replication stream ------------------------------------------------------------------
    def _fence(self, node: str):
        return lambda epoch: may_send(self.lease, node, epoch, self.env.now)

    def _delivery_time(self) -> float:
        now = self.env.now
        at = now + self.cfg.replication_latency
        delay = self.faults.window("replication_delay", "", now)
        if delay is not None:
            at += delay.delay
        cut = self.faults.window("replication_cut", "", now)
        if cut is not None:
            at = max(at, cut.until + self.cfg.replication_latency)
        at = max(at, self.last_delivery)  # one ordered stream
        self.last_delivery = at
        return at

    def _send(self, deliver: Callable[[], None]) -> None:
        self.on_wire.append((self.stream_gen, deliver))
        ev = self.env.timeout(self._delivery_time() - self.env.now)
        ev.callbacks.append(self._deliver_next)

    def _deliver_next(self, _event: object) -> None:
        gen, deliver = self.on_wire.popleft()
        if gen != self.stream_gen:  # sent by a primary that has died since: lost on the wire
            return
        if self.standby_paused:
            self.held.append(deliver)  # in the frozen standby's socket: read when it wakes
        else:
            deliver()

    def _replicate(self, event, t: float) -> None:
        self.history.append((t, event))
        self._send(lambda: self._apply(event, t))

    def _new_journal(self) -> Journal:
        return self.scratch.journal("standby", self.scenario.engine)

    def _apply(self, event, t: float) -> None:
        if self.standby_core is None:
            return
        self.standby_journal.append(event, t)
        self.applied += 1
        # the same state; actions are the primary's to do, but for the timers it would arm on a takeover
        track_timers(self.standby_timers, event, self.standby_core.handle(event, t))

    # ---- heartbeats, lease, detection --------------------------------------------------------------
    def _heartbeats(self):
        while True:
            yield self.env.timeout(self.cfg.heartbeat)
            if self.active is not self.primary and self.active.alive:
                if self._renew(self.active.node) is False:  # the new active node keeps its lease
                    self._lost_lease(self.active)
            p = self.primary
            if not p.alive or p.paused:
                continue
            if self._renew("primary") is False:
                if p is not self.active:  # fenced and superseded: step down for good
                    p.alive = False
                    self.events.append({"event": "primary_stepped_down", "at_s": self.env.now})
                else:
                    self._lost_lease(p)
                continue
            self._send(partial(self._heard, self.env.now))

    def _renew(self, node: str) -> bool | None:
        """A keep-alive of `node` by production's rule (engine.shell.lease.renew): True when renewed,
        False when its lease is gone, None when the service did not answer (a lease_cut) while the
        node's own clock still gives its last grant time: it trades on and asks again next beat."""
        return renew(self.lease, node, lambda: self.env.now, (LeaseServiceUnreachable,))[0]

    def cut_lease(self, fault, struck: bool = False):
        """The lease service cannot be reached from one node: from now for the fault's window, or for
        its delay when an order `struck` it (the venue counted that hit)."""
        if not struck:
            fault.hits += 1
        self.lease.cut.add(fault.node)
        self.events.append({"event": "lease_cut", "at_s": self.env.now, "node": fault.node})
        yield self.env.timeout(fault.delay if struck else fault.until - fault.after)
        self.lease.cut.discard(fault.node)
        self.events.append({"event": "lease_reachable", "at_s": self.env.now, "node": fault.node})

    def _lost_lease(self, p) -> None:
        """The node in charge found its lease gone (it woke from a pause longer than the TTL, or could
        not reach the lease service for as long as its grant lasted). It stops, as production's node
        does (it logs out: its sessions drop), and its supervisor starts the process again
        (`restart_alone`): from its journal, under the next epoch once the lease is free and the
        service answers. A live standby races it for the lease from the heartbeats it misses; the
        restarted process gives up if the standby took over first (production's is refused, exit 2).
        A node left in charge fenced would trade nothing, however long the standby is frozen or cut
        off from the service, and fail invariant 5."""
        now = self.env.now
        event = f"{p.node}_lost_lease"
        if not self.events or self.events[-1]["event"] != event:
            self.events.append({"event": event, "at_s": now})
        # should the standby take over, the failover counts from when the fence began to stop this node
        self.lost_at = min(self.lease.expires - self.lease.ttl * FENCE_MARGIN, now)
        p.crash()  # the restart is reported as one (`restarts`)
        relaunch = Fault(index=-1, kind="lease_lost", venue="", after=now, until=now, orders="any", rate=1.0, count=1)
        self.restart_alone(relaunch)

    def fence_window(self) -> float:
        """The longest a node the fence stops may go on trying (invariant 5): the standby's detector
        (`misses` heartbeats, each late by the slowest replication), then the next keep-alive, at which
        a node without its lease steps down or restarts, or the standby's next ask for the lease."""
        slowest = max((f.delay for f in self.faults.faults if f.kind == "replication_delay"), default=0.0)
        return (self.cfg.misses + 1) * self.cfg.heartbeat + slowest + self.cfg.replication_latency

    def _heard(self, sent: float) -> None:
        """A heartbeat the primary sent at `sent` reaches the standby."""
        self.last_heartbeat = max(self.last_heartbeat, sent)

    def _monitor(self):
        """The failure detector: it wakes when the last heartbeat would be `misses` intervals old
        (not on a polling tick), then asks for the lease every interval until it gets it."""
        limit = self.cfg.misses * self.cfg.heartbeat
        while True:
            if self.standby_core is None or self.active is not self.primary or self.standby_paused:
                yield self.env.timeout(self.cfg.heartbeat)  # nobody stands by, or its detector is frozen
                continue
            deadline = self.last_heartbeat + limit
            if self.env.now <= deadline:
                self.detected = None  # heartbeats are arriving: no suspicion
                yield self.env.timeout(deadline - self.env.now + 1e-6)
                continue
            if self.detected is None:
                self.detected = self.env.now
                self.events.append({"event": "standby_suspects_primary", "at_s": self.env.now})
            try:
                revision = self.lease.acquire("standby", self.env.now)
            except LeaseServiceUnreachable:  # proof of nothing: ask again at the next heartbeat
                if not self.events or self.events[-1]["event"] != "takeover_lease_unreachable":
                    self.events.append({"event": "takeover_lease_unreachable", "at_s": self.env.now})
                yield self.env.timeout(self.cfg.heartbeat)
                continue
            if revision is not None:
                self._take_over(revision)
                continue
            if not self.events or self.events[-1]["event"] != "takeover_refused_lease_held":
                # missed heartbeats alone are not proof: the primary still keeps its lease alive
                self.events.append({"event": "takeover_refused_lease_held", "at_s": self.env.now})
            yield self.env.timeout(self.cfg.heartbeat)

    def _take_over(self, revision: int) -> None:
        now = self.env.now
        old = self.primary
        new = old.successor()  # shares the replicated FIX session state, the audit trail and the checker
        # the superseded process keeps its own memory from here on: if it wakes (a pause) and reads what
        # its sockets had buffered, that must not move the new node's view of the book
        old.own_codecs = {name: session.codec.fork() for name, session in old.sessions.items()}
        new.core, new.node, new.timers, new.alive, new.paused, new.backlog = (
            self.standby_core,
            "standby",
            {},
            True,
            False,
            [],
        )
        new.fence = self._fence("standby") if self.cfg.fencing else None
        new.replicate = None
        new.journal = self.standby_journal
        if new.checker is not None:
            new.checker.core = self.standby_core
        self.active = new
        for link in self._links():
            link.down = False
        new.dispatch(Takeover(revision))
        if self.draining:
            new.dispatch(Command("drain"))
        for key, at in self.standby_timers.items():
            new.set_timer(key, max(at, now))
        for name in self.venues:
            # what the superseded process had asked to be resent was answered to it (a paused primary
            # reads it when it wakes): the new one asks again for whatever it still misses
            new.sessions[name].forget_resend_request()
            new.reconnect(name)  # log on with the replicated sequence numbers; status queries follow
        record = self.failovers[-1] if self.failovers and "active_s" not in self.failovers[-1] else {}
        if not record:  # no crash or pause began it: the node in charge lost its lease (a lease cut)
            record = {"fault": "lease_lost", "crash_s": self.lost_at if self.lost_at is not None else now}
            self.failovers.append(record)
        self.lost_at = None
        record.update(
            detected_s=self.detected,
            active_s=now,
            epoch=revision,
            replicated_events=self.applied,
            streamed_events=len(self.history),
        )
        self.standby_core = None  # the standby is the active node now; nobody stands by

    def _links(self):
        return [lk for v in self.venues.values() for lk in (v.sim_end.link, self.primary.sessions[v.cfg.name].link)]

    # ---- node faults ------------------------------------------------------------------------------
    def crash_primary(self, fault) -> None:
        """The primary dies: the standby takes over once it misses the heartbeats and the lease is free.
        With no standby alive (it died and could not resync yet) the process is restarted from its own
        journal, as a single node's is (`restart_alone`, the runner's crash restart): else nothing
        would trade again for the rest of the run."""
        p = self.primary
        if not p.alive or self.active is not p:
            return
        fault.hits += 1
        if self.standby_core is None:
            self.events.append({"event": "primary_crash_no_standby", "at_s": self.env.now})
            p.crash()
            self.restart_alone(fault)
            return
        self.failovers.append({"fault": "primary_crash", "crash_s": self.env.now})
        self.events.append({"event": "primary_crash", "at_s": self.env.now})
        p.crash()
        self.stream_gen += 1  # what the dead node had not yet streamed never arrives
        for link in self._links():
            link.down = True
        for v in self.venues.values():  # with reports_lost, what they report meanwhile reaches no node
            v.disconnect(fault.cancel_on_disconnect, reports_lost=fault.reports_lost)

    def pause_primary(self, fault):
        p = self.primary
        if not p.alive or p.paused or self.active is not p:
            return
        fault.hits += 1
        self.failovers.append({"fault": "primary_pause", "crash_s": self.env.now})
        self.events.append({"event": "primary_pause", "at_s": self.env.now, "for_ms": fault.delay * 1e3})
        p.pause()
        yield self.env.timeout(fault.delay)
        self.events.append({"event": "primary_wake", "at_s": self.env.now})
        p.wake()  # the split-brain attempt: whatever it does now must be fenced

    def pause_standby(self, fault):
        """The standby's process freezes for `delay` (a long GC, SIGSTOP): it reads nothing of the stream
        and its failure detector stands still. On waking it reads what its socket held, in order, and
        only then judges the heartbeats' age, with the ones it has just read: a pause alone is no
        failover. Should the primary fail meanwhile, the standby finds out only once it wakes."""
        core = self.standby_core
        if core is None or self.standby_paused:
            return
        fault.hits += 1
        self.standby_paused = True
        self.events.append({"event": "standby_pause", "at_s": self.env.now, "for_ms": fault.delay * 1e3})
        yield self.env.timeout(fault.delay)
        if self.standby_core is not core:  # killed while frozen (crash_standby said so)
            return
        self.standby_paused = False
        held, self.held = self.held, []
        self.events.append({"event": "standby_wake", "at_s": self.env.now, "read": len(held)})
        for deliver in held:
            deliver()

    def crash_standby(self, fault):
        """The standby dies; after `delay` it restarts and resyncs from the primary's stream."""
        if self.standby_core is None:
            return
        fault.hits += 1
        self.events.append({"event": "standby_crash", "at_s": self.env.now})
        self.standby_core, self.standby_timers = None, {}
        self.standby_paused, self.held = False, []  # a frozen process killed: its socket's content is gone
        yield self.env.timeout(fault.delay)
        if self.active is not self.primary or not self.primary.alive:
            self.events.append(
                {"event": "standby_not_restarted", "at_s": self.env.now, "why": "no live primary to resync from"}
            )
            return
        core = EngineCore(self.scenario.engine)
        self.standby_core, self.applied, self.standby_journal = core, 0, self._new_journal()
        # the stream to the dead process is gone with its connection: what was still on the wire (held
        # by a replication cut, say) is in the history it resyncs from, and must not be applied twice
        self.stream_gen += 1
        for t, event in list(self.history):
            self._apply(event, t)
        self.events.append({"event": "standby_resynced", "at_s": self.env.now, "events": self.applied})


def timings(failovers: list[dict], audit: Sequence[AuditRow]) -> list[dict]:
    """Per failover, from the crash (or pause): detection, standby active, every venue reconciled
    (from then on new orders are allowed), the first new order sent; milliseconds."""
    out = []
    for f in failovers:
        row = dict(f)
        crash = f["crash_s"]
        active = f.get("active_s")

        def ms(t, crash=crash):
            return round((t - crash) * 1e3, 6) if t is not None else None

        reconciled = first_order = None
        if active is not None:
            later = [r for r in audit if r.ts >= active]
            first: dict[str, float] = {}  # each venue's first reconciliation after the takeover
            for r in later:
                if r.stage == "reconciled":
                    first.setdefault(r.detail.split(":")[0], r.ts)
            expected = {r.detail for r in later if r.stage == "session_up"}
            if first and expected <= set(first):
                reconciled = max(first.values())
            first_order = next((r.ts for r in later if r.stage == "send"), None)
        # new risk is allowed once every venue is reconciled: that is crash -> first new order allowed
        detected = f.get("detected_s")
        if detected is not None:
            detected = max(detected, crash)  # suspected before (a replication cut): detected at the crash
        row.update(
            detect_ms=ms(detected),
            active_ms=ms(active),
            reconciled_ms=ms(reconciled),
            first_new_order_ms=ms(first_order),
        )
        out.append(row)
    return out
