"""One `xmc live` process in its role (single, primary or standby): its write-ahead journal and the
restart from it, a standby's following and takeover, the lease and its keep-alive, and the
LiveEngine that trades until told to stop. The CLI only parses arguments and writes the report."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.core.engine_core import EngineCore
from engine.core.events import Command, SessionDown, Takeover
from engine.fix.session_templates import in_schedule
from engine.shell import journal
from engine.shell.journal import Journal, JournalError, Recovered
from engine.shell.lease import Lease, may_send, renew
from engine.shell.live import LiveEngine, drained, settings_text, wait_for
from engine.shell.live_config import LiveConfig
from engine.shell.node import NodeError, PrimaryStream, StandbyNode
from engine.shell.reconnect import Backoff


class SetupError(Exception):
    """This node cannot start as asked; the message says why and what to do (exit 2 at the CLI)."""


@dataclass(frozen=True)
class NodeOptions:
    role: str = "single"  # single | primary | standby
    node: str = "single"  # this node's name (journal file, lease holder)
    heartbeat: float = 0.1  # seconds between heartbeats (and the standby's checks)
    misses: int = 3  # heartbeats missed before a standby suspects the primary
    duration: float | None = None  # seconds to run; None: until stopped
    trace: bool = False  # print every audit row as it happens
    lease: Lease | None = None  # for primary/standby
    peer: tuple[str, int] | None = None  # the replication stream's address
    etcd: str = ""  # where the lease lives (etcd or ZooKeeper address), for messages


LOGON_GRACE_S = 5.0  # a session not logged on after this plus one reconnect interval is said on stderr


def _say(text: str) -> None:
    print(f"xmc live: {text}", file=sys.stderr, flush=True)


class LiveNode:
    def __init__(self, cfg: LiveConfig, opts: NodeOptions, stop: threading.Event):
        self.cfg = cfg
        self.opts = opts
        self.stop = stop
        self.core = EngineCore(cfg.engine)
        self.engine: LiveEngine | None = None
        self.report: dict[str, Any] = {"role": opts.role, "node": opts.node}
        self.logged_on_at_end: list[str] = []
        self.timers: dict[str, float] = {}  # pending timers from the journal or the replicated stream
        self.journal: Journal | None = None
        self.stream: PrimaryStream | None = None
        self._begun = time.monotonic()
        self._kill_asked = False
        self._attaching: threading.Thread | None = None

    # ---- what exists once the process has set it up (a defect if asked for before) -----------------
    @property
    def live(self) -> LiveEngine:
        if self.engine is None:
            raise RuntimeError("the engine is not started yet")
        return self.engine

    @property
    def log(self) -> Journal:
        if self.journal is None:
            raise RuntimeError("the journal is not open yet")
        return self.journal

    @property
    def lease(self) -> Lease:
        if self.opts.lease is None:
            raise RuntimeError(f"--role {self.opts.role} needs a lease")
        return self.opts.lease

    @property
    def peer(self) -> tuple[str, int]:
        if self.opts.peer is None:
            raise RuntimeError(f"--role {self.opts.role} needs the replication stream's address")
        return self.opts.peer

    def kill(self) -> None:
        """The kill switch (SIGUSR1): cancel every working order, no new episodes; remembered if
        the engine is not trading yet (a standby still following)."""
        self._kill_asked = True
        if self.engine is not None:
            self.engine.command("kill")

    # ---- the whole life of the process --------------------------------------------------------
    def run(self) -> bool:
        """Run until the duration passes or `stop` is set; False if a standby never took over."""
        recovered = self._open_journal()
        try:
            epoch = None
            if self.opts.role == "standby":
                epoch = self._follow()
                if epoch is None:
                    return False
            engine = self.engine = self._engine(recovered)
            if self.opts.role == "primary":
                self._become_primary()
            elif epoch is not None:
                engine.submit(Takeover(epoch))
                engine.arm_after(self.timers)
            self._trade()
        finally:
            self.log.close()
        return True

    def _open_journal(self) -> Recovered:
        """The write-ahead journal: a process killed and started again with the same out_dir rebuilds
        its core from it (a standby journals the stream it follows, so after a takeover it can too)."""
        cfg, node = self.cfg, self.opts.node
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.journal = Journal(cfg.out_dir / f"engine-{node}.journal", cfg.engine, durability=cfg.journal)
        except JournalError as exc:
            raise SetupError(f"{exc} (journal under [live].out_dir of {cfg.path})") from None
        recovered = self.journal.recovered
        if recovered.records and self.opts.role == "standby":
            # a standby starts from the primary's stream, not from its own past: keep the old journal aside
            self.journal.close()
            stamp = f"{self.journal.path.name}.{int(time.time())}"
            kept, n = self.journal.path.with_name(stamp), 1
            while kept.exists():  # set aside twice in one second: rename would overwrite the first
                kept, n = self.journal.path.with_name(f"{stamp}-{n}"), n + 1
            self.journal.path.rename(kept)
            _say(f"standby {node}: previous journal kept as {kept}")
            self.journal = Journal(self.journal.path, cfg.engine, durability=cfg.journal)
            recovered = self.journal.recovered
        if recovered.records and self.opts.role != "standby":
            self.timers = journal.replay(self.core, recovered.records)  # the state, not the actions, of the dead
            self.report["restarted_from_journal"] = {
                "records": len(recovered.records),
                "torn_bytes_cut": recovered.truncated_bytes,
                "torn_bytes_kept_in": recovered.kept,
            }
            cut = recovered.truncated_bytes
            _say(
                f"rebuilt from {len(recovered.records)} journal records"
                f"{f' ({cut} torn bytes of an incomplete final record cut, kept in {recovered.kept})' if cut else ''}"
            )
        return recovered

    def _follow(self) -> int | None:
        """Standby: follow the primary's stream until it is dead and the lease is ours; its epoch."""
        opts = self.opts
        standby = StandbyNode(opts.node, self.core, self.peer, opts.heartbeat, opts.misses, self.journal)
        self.report["stream"] = standby.log  # whom it followed, whom it turned away and why, each lost stream
        print(f"xmc live: standby {opts.node} following on {self.peer[0]}:{standby.address[1]}", flush=True)
        started = time.monotonic()
        # ZooKeeper: `changed` is set the moment the leader node goes (the primary's session expired, so
        # its fence has already stopped it); that ends the primary's term sooner than missed heartbeats
        changed = getattr(opts.lease, "changed", None)
        watch = getattr(opts.lease, "watch", None)
        watching = False

        def lease_gone() -> bool:
            return watching and changed is not None and changed.is_set()

        def pause() -> bool:
            """Wait a heartbeat, or less when the primary's lease ends meanwhile."""
            if watching and changed is not None and not changed.is_set():
                changed.wait(opts.heartbeat)
                return self.stop.is_set()
            return self.stop.wait(opts.heartbeat)

        said_unfollowable = False
        while not pause():
            if opts.duration is not None and time.monotonic() - started > opts.duration:
                break
            if standby.unfollowable and not said_unfollowable:  # a hot standby no more: say it once, loudly
                said_unfollowable = True
                _say(f"standby {opts.node}: {standby.unfollowable}")
            if changed is not None and watch is not None and not watching and standby.last_beat is not None:
                try:  # the primary is heard: watch its leader node from now on
                    watch()
                    watching = True
                except Exception as exc:  # noqa: BLE001 - the lease service failed: heartbeats still tell
                    self.report.setdefault("lease_errors", []).append({"at": time.time(), "error": repr(exc)[:300]})
            if not standby.primary_dead() and not lease_gone():
                self.report.pop("detected_at", None)  # heard again (a stream cut healed): not dead after all
                continue
            detected = self.report.setdefault("detected_at", time.time())
            try:
                epoch = self.lease.acquire(opts.node, time.monotonic())
            except Exception as exc:  # noqa: BLE001 - the lease service failed: record it, ask again next beat
                if changed is not None:
                    changed.clear()  # not proof the lease is free: ask again after a heartbeat, not at once
                self.report.setdefault("lease_errors", []).append({"at": time.time(), "error": repr(exc)[:300]})
                _say(f"standby {opts.node}: the lease service failed ({type(exc).__name__}: {exc}); asking again")
                continue
            if epoch is not None:
                heard = standby.last_beat if standby.last_beat is not None else time.monotonic()
                self.report.update(
                    primary=standby.primary,
                    primary_last_heard_at=time.time() - (time.monotonic() - heard),
                    detected_at=detected,
                    lease_at=time.time(),
                    epoch=epoch,
                    replicated_events=standby.applied,
                )
                self.timers = standby.take_over(epoch, time.time())
                return int(epoch)
            refused = self.report.setdefault("takeovers_refused", [])
            if not refused or refused[-1]["detected_at"] != detected:  # once per silence: the lease is held
                refused.append({"detected_at": detected, "why": "the lease is held: the primary is alive"})
                _say(f"standby {opts.node}: the primary is silent but holds the lease; not taking over")
        print(f"xmc live: standby {opts.node} never took over ({standby.applied} events followed)", flush=True)
        self.report["replicated_events"] = standby.applied
        return None

    def _engine(self, recovered: Recovered) -> LiveEngine:
        cfg, opts = self.cfg, self.opts
        engine = LiveEngine(self.core, cfg.sessions, absolute_time=True, session_events=cfg.session_events)
        engine.node = opts.node
        if opts.role != "standby" and recovered.records:
            for venue in {s.venue for s in cfg.sessions}:
                engine.submit(SessionDown(venue))  # the sessions dropped with the process: query on logon
            engine.submit(Command("reconcile"))  # and every trading venue's orders (AF): positions compared
            engine.arm_after(self.timers)
        engine.on_event = self.log.append
        # quickfix retries every second inside an attempt window; between windows the wait doubles
        engine.backoff = Backoff(cfg.reconnect, cfg.reconnect_max, window=2.5)
        if opts.trace:
            engine.trace = lambda row: print("audit " + "|".join(map(str, row[1:])), flush=True)
        if self._kill_asked:
            engine.command("kill")
        return engine

    def _become_primary(self) -> None:
        opts, engine = self.opts, self.live
        epoch = self._first_grant()
        if epoch is None:
            raise SetupError(
                f"--role primary: the lease at {opts.etcd} is held by another node "
                f"({self._holder() or 'gone since'}); start this one as --role standby"
            )
        try:  # a restarted primary hands its journal's history to the standby first
            self.stream = PrimaryStream(opts.node, self.peer, journal.fingerprint(self.cfg.engine), self.log)
        except NodeError as exc:
            self.lease.release(opts.node, time.monotonic())
            raise SetupError(str(exc)) from None
        engine.on_event = self.stream.record  # journaled and streamed under one lock
        engine.submit(Takeover(epoch))  # the first event: both cores take the lease's epoch
        self.report.update(epoch=epoch, standby=self.stream.standby, stream=self.stream.log)

    def _holder(self) -> str | None:
        """Who holds the lease, for a message; None when nobody does or the service cannot say."""
        try:
            return self.lease.held_by(time.monotonic())
        except Exception:  # noqa: BLE001 - the lease service failed: the message goes without the name
            return None

    def _first_grant(self) -> int | None:
        """The lease for a primary starting: its epoch, or None when another node holds it. A grant under
        this node's own name is an earlier process's that died (killed, crashed: it never released it):
        the coordination service keeps it until it expires, so a process restarted at once waits for
        that, at most the service's bound, and takes the next epoch; it is refused only if the grant
        is still kept alive past the bound (a second live process under the same name)."""
        opts, lease = self.opts, self.lease

        def ask() -> int | None:
            try:
                return lease.acquire(opts.node, time.monotonic())
            except Exception as exc:  # noqa: BLE001 - the lease service failed: no lease, no trading
                raise SetupError(
                    f"--role primary: the lease service failed when {opts.node} asked for the lease "
                    f"({type(exc).__name__}: {exc}); check that it runs and answers, then start this node again"
                ) from None

        epoch = ask()
        if epoch is not None or self._holder() != opts.node:
            return epoch
        bound = lease.grant_outlives()
        _say(
            f"primary {opts.node}: the lease is still held under this node's name by an earlier process; "
            f"waiting up to {bound:g} s for it to expire"
        )
        deadline = time.monotonic() + bound
        while epoch is None and time.monotonic() < deadline and not self.stop.wait(opts.heartbeat):
            epoch = ask()
            if epoch is None and self._holder() not in (opts.node, None):
                return None  # another node took it meanwhile
        if epoch is None and self.stop.is_set():
            raise SetupError(f"--role primary: stopped while waiting for the lease of {opts.node}'s earlier process")
        if epoch is None and self._holder() == opts.node:
            raise SetupError(
                f"--role primary: the lease is still kept alive under this node's name ({opts.node}) after "
                f"{bound:g} s: another live process runs as {opts.node}; stop it, or give this one another --node"
            )
        return epoch

    def _trade(self) -> None:
        cfg, opts, engine = self.cfg, self.opts, self.live
        if opts.lease is not None:
            lease = opts.lease
            engine.fence = lambda e: may_send(lease, opts.node, e, time.monotonic())
            threading.Thread(target=self._keep_lease, daemon=True).start()
        store = cfg.out_dir / "store"
        store.mkdir(parents=True, exist_ok=True)
        # a standby's sessions start afresh (the primary's FIX stores are not here), then reconcile
        engine.start(settings_text(cfg.sessions, store, force_reset=opts.role == "standby"))
        _say(f"{opts.role} {opts.node} connecting {', '.join(f'{s.venue}@{s.host}:{s.port}' for s in cfg.sessions)}")
        now = datetime.now(UTC)
        closed = [s for s in cfg.sessions if not in_schedule(dict(s.settings), now)]
        self.report["sessions_closed_by_schedule_at_start"] = [s.venue for s in closed]
        for s in closed:
            window = dict(s.settings)
            days = f" {window['StartDay']}-{window['EndDay']}" if "StartDay" in window else ""
            _say(
                f"session {s.venue} is closed by its schedule now ({window.get('StartTime', '00:00:00')}-"
                f"{window.get('EndTime', '00:00:00')} UTC{days}): it logs on when the schedule opens"
            )
        threading.Thread(target=self._watch_logons, args=(LOGON_GRACE_S + cfg.reconnect,), daemon=True).start()
        try:
            left = None if opts.duration is None else max(opts.duration - (time.monotonic() - self._begun), 0.0)
            self.stop.wait(left)
            if "lease_lost_at" in self.report:
                # fenced: no order or cancel can leave, so a drain could only hold the sessions (and the
                # CompIDs the node taking over logs on with) for nothing; they close at once
                self.report["drain"] = "skipped: the lease is lost"
            else:
                engine.command("drain")
                # once the engine thread has taken the drain (a quote queued before it may still open an
                # episode, whose orders are then out), every open episode finishes before the sessions close
                wait_for(lambda: drained(self.core), 10)
            self.logged_on_at_end = sorted(engine.logged_on)
        finally:
            self.stop.set()  # ends the keep-alive thread before the lease is given up
            engine.stop()
            if opts.lease is not None:
                opts.lease.release(opts.node, time.monotonic())  # stopping on purpose: the lease is free at once
        if opts.role == "standby":
            self.report["active_at"] = self.report.get("lease_at")
            rec = [row.ts for row in engine.audit if row.stage == "reconciled"]
            self.report["reconciled_at"] = max(rec) if rec else None

    def _watch_logons(self, window: float) -> None:
        """A session that has not logged on `window` seconds after start is said on stderr at once,
        with the reason quickfix last gave for it (a Logout's text, a refused connection, the
        session's schedule); it keeps retrying, and the run's exit code says it never logged on."""
        engine = self.live
        if wait_for(lambda: self.stop.is_set() or len(engine.logged_on) == len(self.cfg.sessions), window):
            return
        for s in self.cfg.sessions:
            if s.venue in engine.logged_on or s.venue in engine.logon_at:
                continue
            _say(
                f"session {s.venue} ({s.host}:{s.port}, TargetCompID {s.target_comp_id}) has not logged on "
                f"{window:g} s after start: {self.logon_failure(s.target_comp_id)}"
            )

    def logon_failure(self, target: str) -> str:
        """The last things quickfix said about the session with `target`, secrets masked."""
        events = self.live.session_events.events if self.live.session_events is not None else []
        said = [text for _, session, text in events if session.endswith(f"->{target}")][-3:]
        session = next((s for s in self.cfg.sessions if s.target_comp_id == target), None)
        if session is not None and not in_schedule(dict(session.settings), datetime.now(UTC)):
            said.append("the session is outside its schedule")
        return "; ".join(said) if said else "no answer from the counterparty (is it up and inside its schedule?)"

    @property
    def never_logged_on(self) -> list[str]:
        return sorted(s.venue for s in self.cfg.sessions if s.venue not in self.live.logon_at)

    def _keep_lease(self) -> None:
        """Keep the lease alive and beat to the standby; a lost lease stops this node sending at once
        (the fence checks it on every order) and ends the process's trading (exit 4). A keep-alive the
        service does not answer (a partition, the service down or electing) proves nothing: the node
        trades on its last grant while its own clock says the grant lasts (the fence's `holds`), asks
        again at each heartbeat, and steps down once that time has run out, so a blip of the service
        costs no failover and a lasting cut lets the standby take over."""
        opts, lease = self.opts, self.lease
        unanswered: float | None = None  # since when the service has not answered (monotonic)
        while not self.stop.wait(opts.heartbeat):
            kept, error = renew(lease, opts.node, time.monotonic)
            why = "the lease service says another node holds it or it expired"
            if error:
                if unanswered is None:  # one record per silence (the first 100), not one per keep-alive
                    unanswered = time.monotonic()
                    errors = self.report.setdefault("lease_errors", [])
                    if len(errors) < 100:
                        errors.append({"at": time.time(), "error": error})
                    _say(f"{opts.node}: the lease service does not answer ({error}); trading on the last grant")
                why = f"the lease service has not answered for {1e3 * (time.monotonic() - unanswered):.0f} ms"
            elif kept and unanswered is not None:
                _say(f"{opts.node}: the lease service answers again; the lease is kept")
                unanswered = None
            if kept is False:
                self.report["lease_lost_at"] = time.time()
                _say(f"{opts.node} lost the lease: fenced, stepping down ({why})")
                self.stop.set()
                return
            if self.stream is not None:
                if not self.stream.alive and (self._attaching is None or not self._attaching.is_alive()):
                    # a (restarted) standby may listen again: attach it off this thread, which must keep
                    # the lease alive while the history is sent
                    self._attaching = threading.Thread(target=self._reattach, name="xmc-reattach", daemon=True)
                    self._attaching.start()
                self.stream.heartbeat(time.time())

    def _reattach(self) -> None:
        stream = self.stream
        if stream is None:
            return
        lost = stream.log[-1] if stream.log and stream.log[-1].get("event") == "lost" else None
        if lost is not None and not lost.get("said"):
            lost["said"] = True
            _say(f"{self.opts.node}: the standby's stream is lost ({lost.get('why')}); trading on alone, re-attaching")
        if stream.reattach():
            _say(f"{self.opts.node}: standby {stream.standby} attached again")
