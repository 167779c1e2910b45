"""Reconciliation with the venues: sessions up and down, takeovers, status, mass-status and position
answers, foreign reports, position comparison; no new risk on a venue until it is reconciled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.core.episode import EpisodeState
from engine.core.events import (
    Action,
    Alert,
    Audit,
    CancelReject,
    ExecReport,
    PositionReport,
    SendCancel,
    SendMassStatusRequest,
    SendPositionRequest,
    SendStatusRequest,
    SendTestRequest,
    SessionDown,
    SessionUp,
    SetTimer,
    Subscribe,
    Takeover,
    TimerKind,
    timer_key,
)
from engine.core.ids import ALL_ORDERS_QUESTION, CHILD_ID, POSITIONS_QUESTION, PURPOSE_OF_TAG, side_sign
from engine.core.order import ChildOrder, OrdStatus

if TYPE_CHECKING:
    from engine.core.engine_core import EngineCore


class Reconciliation:
    """The core's part that knows what each venue has seen: which sessions are up and reconciled,
    which status questions are open, which orders of other nodes were found, and which venues are
    held because their positions disagree with ours. It acts on the core it belongs to."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.sessions: set[str] = set()
        self.status_pending: dict[str, set[str]] = {}
        self.mass_status_due: set[str] = set()  # venues to ask for all their orders (AF) at next logon
        self.foreign_filled: dict[str, float] = {}  # ClOrdIDs this node never sent -> CumQty applied
        self.mass_tally: dict[str, dict[str, tuple[str, float]]] = {}
        # venue -> (PosReqID of our RequestForPositions, the net positions its reports gave so far, how
        # many reports came): the venue's own position figures, compared with ours once all are in
        self.position_asked: dict[str, tuple[str, dict[str, float], int]] = {}
        self.position_hold: dict[str, str] = {}  # venue -> why; lifted by the desk ("resume")
        # venue -> the venue's position figures (its position reports), or None for "its orders' CumQty",
        # to compare with ours once every question of the logon is answered: a position answer may
        # overtake the order answers whose fills it already counts
        self.compare_due: dict[str, dict[str, float] | None] = {}
        # venues whose position answer is in (compare_due) and which have since reported a fill live (an
        # execution after the answer was drawn up: it came behind it), and how many times each venue's
        # positions were asked again for that this logon
        self.filled_after_answer: set[str] = set()
        self.position_reasks: dict[str, int] = {}
        self.dropped: set[str] = set()
        self.ack_questions: set[str] = set()  # ClOrdIDs asked about because unacknowledged (ask_unacknowledged)
        # ClOrdID -> venue of the orders asked about because a cancel or replace went unanswered
        # (ask_unanswered) in a session still up: what a final report of theirs may answer
        self.cancel_questions: dict[str, str] = {}
        self.took_over = False  # this node became active by a takeover: its replica may have lagged the stream
        # venues whose list of all orders (AF) the status timeout found unanswered: recovery waits no more
        self.order_list_overdue: set[str] = set()

    def on_session_up(self, ev: SessionUp, now: float) -> list[Action]:
        self.sessions.add(ev.venue)
        out: list[Action] = [Audit(now, "session_up", detail=ev.venue)]
        if ev.venue in self.dropped:
            self.dropped.discard(ev.venue)
            # questions of an earlier logon that the drop left unanswered are asked again below (the
            # orders still working, and the mass status if it was outstanding); a stale one must not
            # hold the venue for good once what it asked about is settled
            stale = self.status_pending.pop(ev.venue, set())
            # a question for all orders or for positions left unanswered: both are asked again
            if any(k.startswith((ALL_ORDERS_QUESTION, POSITIONS_QUESTION)) for k in stale):
                self.mass_status_due.add(ev.venue)
            if stale:
                out.append(
                    Audit(
                        now,
                        "status_reasked",
                        detail=f"{ev.venue}: the drop left {', '.join(sorted(stale))} "
                        f"unanswered; what is still open is asked again",
                    )
                )
            working = [
                o
                for ep in self.core.active.values()
                for leg in ep.legs.values()
                for o in leg.orders
                if o.venue == ev.venue and not o.done
            ]
            pending = {o.cl_ord_id for o in working}
            if ev.venue in self.mass_status_due:  # after a restart or takeover: what did the venue see that we did not?
                self.mass_status_due.discard(ev.venue)
                # a question's id is this logon's own (epoch and time): an answer to an earlier logon's
                # question, delivered late, is never taken for this one's
                ask = f"{ev.venue}-E{self.core.epoch}-T{now * 1e3:.0f}"
                req = f"{ALL_ORDERS_QUESTION}{ask}"
                pending.add(req)
                self.order_list_overdue.discard(ev.venue)
                self.mass_tally.pop(ev.venue, None)  # what an earlier logon's answers counted is asked afresh
                self.compare_due.pop(ev.venue, None)
                self.filled_after_answer.discard(ev.venue)
                out.append(SendMassStatusRequest(ev.venue, req))
                # and what does it hold for us? Asked after the orders, so every report the venue
                # sent before its positions is applied before they are compared with ours
                pos_req = f"{POSITIONS_QUESTION}{ask}"
                pending.add(pos_req)
                self.position_reasks.pop(ev.venue, None)
                self.position_asked[ev.venue] = (pos_req, {}, 0)
                account = next(
                    (i.account for i in self.core.instruments.values() if i.venue == ev.venue and i.account), ""
                )
                out.append(SendPositionRequest(ev.venue, pos_req, account))
            if pending:
                self.status_pending[ev.venue] = pending
                out.append(
                    SetTimer(now + self.core.strategy.recovery.status_timeout, timer_key(TimerKind.STATUS, ev.venue))
                )
                out.append(
                    Audit(
                        now,
                        "status_query",
                        detail=f"{ev.venue}: {len(working)} working order(s) queried"
                        f"{' and all orders (AF)' if len(pending) > len(working) else ''}"
                        f" before new risk",
                    )
                )
                out += [
                    SendStatusRequest(
                        ev.venue, o.cl_ord_id, o.order_id, self.core.instruments[o.instrument].symbol, o.side
                    )
                    for o in working
                ]
            else:
                out.append(Audit(now, "reconciled", detail=f"{ev.venue}: nothing was working there"))
        for inst in self.core.instruments.values():
            if inst.venue == ev.venue:
                out.append(Subscribe(ev.venue, inst.name, inst.symbol, f"MD-{inst.name}"))
        return out + self.resume_waiting(now)  # recovery that waited for this session goes on

    def ask_unanswered(self, request_id: str, now: float) -> list[Action]:
        """A cancel or replace (`request_id`) still unanswered after the answer timeout: it, or its
        answer, may be lost without the session noticing (a sequence gap shows only when a later
        message arrives, and nothing else may be sent there for a long time). Ask the venue for the
        order's status: the question itself carries the next sequence number, so a lost request is
        resent, and the answer settles the order. Asked like the questions of a logon: the venue is
        held (no new risk there) until it answers, and the STATUS timer alerts if it stays silent."""
        order = self.core.orders.get(self.core.orders.key(request_id))
        if order is None or order.done:
            return []
        unanswered = order.state is OrdStatus.PENDING_CANCEL or (
            order.pending_replace is not None and order.pending_replace[0] == request_id
        )
        if not unanswered:
            return []
        timeout = self.core.strategy.execution.answer_timeout
        out = self._ask_status(order, now, f"{order.venue}: {request_id} unanswered after {timeout:g} s")
        if out:
            self.cancel_questions[order.cl_ord_id] = order.venue
        return out

    def ask_unacknowledged(self, cl_ord_id: str, now: float) -> list[Action]:
        """A new order the venue has not answered at all by its acknowledgement deadline (AckWatch): it
        may be lost inside the venue, which never says so, or its answer lost on the way. Asked as
        ask_unanswered asks: the answer is its acknowledgement, or "unknown order", which ends it (the
        session delivers in order, so the venue had it before the question if it ever will) and lets
        the recovery send again at once instead of after the order timeout."""
        order = self.core.orders.get(cl_ord_id)
        sent = self.core.ack_watch.unanswered.get(cl_ord_id)
        if order is None or sent is None or order.state is not OrdStatus.PENDING_NEW:
            self.core.ack_watch.forget(cl_ord_id)
            return []  # answered, cancelled (its cancel is watched), or ended meanwhile
        waited = 1e3 * (now - sent[1])
        out = self._ask_status(order, now, f"{order.venue}: new order unanswered after {waited:.0f} ms")
        if out:
            self.ack_questions.add(cl_ord_id)
        return out

    def answered_by_its_report(self, order: ChildOrder, now: float) -> list[Action]:
        """The first report of an order asked about because it went unacknowledged: it says what the
        question asked (the order reached the venue, in this state), so the venue is no longer held
        for the answer, which a slow venue sends a round trip later. The session keeps order: the
        venue answers the question before it reads any order sent after this report arrived."""
        if order.cl_ord_id not in self.ack_questions:
            return []
        self.ack_questions.discard(order.cl_ord_id)
        return self.answered(order.venue, order.cl_ord_id, now)

    def answered_by_a_final_report(self, order: ChildOrder, r: ExecReport, now: float) -> list[Action]:
        """A report that ended an order we asked the venue about (filled, cancelled, rejected, expired)
        with the CumQty we hold tells all the status answer would: an ended order trades no more and
        no fill of ours is missing. So the venue is no longer held for that answer, which a slow venue
        sends a round trip later while a legged episode waits for the venue to be ready (an IOC chase
        whose cancel was slow to answer: the unwind waited for the answer about an order already
        ended). A report whose CumQty is not ours leaves the question open: its answer brings the
        fill we missed. Only such questions: those of a logon are answered as they come, and the
        wait for them also lets the books catch up with the market after the drop."""
        key = self.core.orders.key(order.cl_ord_id)
        question = next((q for q in self.cancel_questions if self.core.orders.key(q) == key), None)
        if question is None or abs(r.cum_qty - order.cum_qty) > 1e-9:
            return []
        del self.cancel_questions[question]
        return self.answered(order.venue, question, now)

    def _ask_status(self, order: ChildOrder, now: float, why: str) -> list[Action]:
        """Ask `order`'s venue for its status, holding the venue until it answers (STATUS alerts)."""
        asked = self.status_pending.get(order.venue, set())
        if order.venue in self.dropped or order.cl_ord_id in asked:
            return []  # the next logon asks about every working order; or asked already
        self.status_pending[order.venue] = asked | {order.cl_ord_id}
        self.core.ack_watch.ask(order.cl_ord_id)  # a first answer after this question teaches no round trip
        inst = self.core.instruments[order.instrument]
        return [
            SetTimer(now + self.core.strategy.recovery.status_timeout, timer_key(TimerKind.STATUS, order.venue)),
            Audit(
                now,
                "status_query",
                order.decision_id,
                order.cl_ord_id,
                inst.name,
                inst.account,
                order.side,
                order.qty,
                order.price or 0.0,
                f"{why}: the order's status asked",
            ),
            SendStatusRequest(order.venue, order.cl_ord_id, order.order_id, inst.symbol, order.side),
            *self.probe(order.venue, now),
        ]

    def probe(self, venue: str, now: float) -> list[Action]:
        """Follow a status question asked mid-session at once with a TestRequest. The question is asked
        because an answer is overdue: what was lost may be the order, its cancel and the question
        itself, and a lost question shows the venue no gap while nothing else is sent there (every
        message about an order lost, `tests/regressions/lost_status_question_probed_by_a_test_request.toml`).
        The TestRequest carries the next MsgSeqNum: the venue sees the gap and asks for the lost
        messages again (session messages are never dropped by our faults; over TCP a loss takes the
        session with it), and the Heartbeat it answers with carries the venue's own next MsgSeqNum,
        which shows us any answer of the venue's that was lost. Sent with the question, not a wait
        later: that wait (once the venue's acknowledgement deadline) kept a desk legged 500 ms more
        (`tests/regressions/lost_chase_cancel_and_question_probed_at_once.toml`). Its Heartbeat needs
        nothing from the core; the STATUS timer still alerts if the questions stay unanswered. Also
        the handler of the PROBE timer a journal of an earlier version may hold."""
        unanswered = sorted(self.status_pending.get(venue, ()))
        if not unanswered or venue not in self.sessions or venue in self.dropped:
            return []  # answered meanwhile; or the session is down and its logon asks afresh
        req = f"TR-{venue}-E{self.core.epoch}-T{now * 1e3:.0f}"
        return [
            Audit(
                now,
                "session_probe",
                detail=f"{venue}: {len(unanswered)} status question(s) unanswered "
                f"({', '.join(unanswered[:5])}): TestRequest {req} shows the venue any gap",
            ),
            SendTestRequest(venue, req),
        ]

    def resume_waiting(self, now: float) -> list[Action]:
        """Every legged episode with nothing working goes on with its recovery: called when a venue
        becomes ready (logged on with nothing to ask, or its last status question answered). The one
        path by which an episode that waited for a venue resumes; one whose venues are still not
        ready records that it waits."""
        out: list[Action] = []
        for ep in list(self.core.active.values()):
            if ep.state is EpisodeState.LEGGED and not ep.working:
                out += self.core.recovery.on_legged(self.core, ep, now)
        return out

    def on_takeover(self, ev: Takeover, now: float) -> list[Action]:
        """This node is active now, under a new fencing epoch: what the old one left working is
        unknown until each venue answers, so every venue is treated as dropped (queried on logon)."""
        if ev.epoch <= self.core.epoch:
            return [
                self.core.anomaly(
                    now, "stale_takeover", "", f"takeover epoch {ev.epoch} is not above {self.core.epoch}"
                )
            ]
        self.core.epoch = ev.epoch
        self.took_over = True
        # every venue it knows is unknown ground now; a standby never logged on, so nothing else is due
        self.dropped = {i.venue for i in self.core.instruments.values()}
        self.mass_status_due = {
            self.core.instruments[n].venue for n in (self.core.strategy.leg_a, self.core.strategy.leg_b)
        }
        self.sessions.clear()
        self.cancel_questions.clear()  # every venue is asked afresh at its logon
        return [
            Audit(now, "takeover", detail=f"active under epoch {ev.epoch}; every venue reconciles before new risk"),
        ]

    def on_session_down(self, ev: SessionDown, now: float) -> list[Action]:
        self.sessions.discard(ev.venue)
        self.dropped.add(ev.venue)
        self.core.ack_watch.session_down(ev.venue)
        # the logon asks again about every working order: those questions are the logon's now
        self.cancel_questions = {k: v for k, v in self.cancel_questions.items() if v != ev.venue}
        return [Audit(now, "session_down", detail=ev.venue)]

    def venue_ready(self, venue: str) -> bool:
        """Logged on and reconciled, its positions agreeing with ours: orders may go there."""
        return venue in self.sessions and not self.status_pending.get(venue) and venue not in self.position_hold

    def order_list_due(self, venue: str) -> bool:
        """Whether `venue`, logged on, is still to list all its orders (the AF answer) after a takeover,
        within the status timeout: until then it may hold orders of ours this node never heard of (the
        old node's, sent after the replication stream last reached this one), which recovery waits
        for, as the answer is one round trip away. A venue not logged on, or past the timeout (the desk
        is alerted), holds no recovery: its answer, whenever it comes, adopts such an order into its
        episode (`adopt`), reopening one that ended. After a restart nothing is waited for: the node
        replayed its own write-ahead journal, which holds every event it acted on before it sent an
        order, so it knows every order it sent (with fsync off, an operating-system crash may cost the
        journal's last records: a risk that setting takes)."""
        return (
            self.took_over
            and venue in self.sessions
            and venue not in self.order_list_overdue
            and any(k.startswith(ALL_ORDERS_QUESTION) for k in self.status_pending.get(venue, ()))
        )

    def status_overdue(self, venue: str, now: float) -> list[Action]:
        """The status timeout passed with questions of `venue` unanswered: if the list of all its
        orders is one of them, recovery stops waiting for it (`order_list_due`) and goes on."""
        if venue in self.order_list_overdue or not any(
            k.startswith(ALL_ORDERS_QUESTION) for k in self.status_pending.get(venue, ())
        ):
            return []
        self.order_list_overdue.add(venue)
        return self.resume_waiting(now)

    def adopt(self, r: ExecReport, now: float) -> list[Action] | None:
        """A report for an order this node never sent but whose ClOrdID names one of its episodes
        (a takeover node that missed the end of the stream: the old node's chase or unwind of a
        decision both knew). The order joins its leg with the venue's CumQty and AvgPx, so the episode
        sees what really traded and never repairs an exposure that is not there; if it still works,
        it is cancelled and recovery decides afresh. An episode that ended before the venue listed
        the order (the venue was down, or slower than this node's own repair) is reopened by a fill
        there as by any late fill (`EngineCore._after_end`): its outcome must be what the venues hold.
        None: not an order of an episode this node knows."""
        m = CHILD_ID.match(r.cl_ord_id)
        ep = self.core.episodes.get(m.group(1)) if m else None
        leg = ep.legs.get(m.group(2)) if ep is not None and m is not None else None
        if m is None or ep is None or leg is None or leg.instrument != r.instrument:
            return None
        inst = self.core.instruments[leg.instrument]
        filled = r.cum_qty  # CumQty and AvgPx are required on every ExecutionReport (the dictionary checks)
        order = ChildOrder.from_venue(
            r.cl_ord_id,
            ep.decision_id,
            leg.name,
            inst.venue,
            inst.name,
            r.side,
            int(round(r.order_qty)) or int(round(r.cum_qty)),
            PURPOSE_OF_TAG[m.group(3)],
            r.ord_status,
            filled,
            r.avg_px,
        )
        self.core.orders.add(order)
        leg.orders.append(order)
        out: list[Action] = [
            Audit(
                now,
                "adopted",
                ep.decision_id,
                order.cl_ord_id,
                inst.name,
                inst.account,
                r.side,
                order.qty,
                r.avg_px,
                f"sent by an earlier node for this episode: venue OrdStatus={r.ord_status} CumQty={r.cum_qty:g}",
            )
        ]
        if filled:
            self.core.positions[inst.name] += side_sign(r.side) * r.cum_qty
            ep.fills.append((now, leg.name, r.cum_qty, order.avg_px))
            out.append(
                Audit(
                    now,
                    "fill",
                    ep.decision_id,
                    order.cl_ord_id,
                    inst.name,
                    inst.account,
                    r.side,
                    r.cum_qty,
                    order.avg_px,
                    f"ExecID {r.exec_id} cum={r.cum_qty:g}/{order.qty} (adopted)",
                )
            )
        order.exec_ids.add(r.exec_id)
        order.order_id = r.order_id
        if not order.done:
            out += self.core.cancel(order, now)  # what the old node left working is not this node's plan
        out += self.core._settle(ep, now)
        if r.mass_status_id and r.last_report:
            out += self.answered(r.venue, r.mass_status_id, now)
        return out

    def on_foreign_report(self, r: ExecReport, now: float) -> list[Action]:
        """A report for an order this node never sent (another node's, or nobody's): adopted when its
        ClOrdID names an episode of this node (`adopt`), else never adopted and never lost: its
        fills move the position once (by CumQty), it is cancelled if still working, and the desk is
        told; an answer to our mass status query also counts as answered."""
        adopted = self.adopt(r, now)
        if adopted is not None:
            return adopted
        cl = r.cl_ord_id
        if cl not in self.foreign_filled and r.orig_cl_ord_id in self.foreign_filled:
            cl = r.orig_cl_ord_id  # the answer to our cancel of a foreign order: a report of that order
        out: list[Action] = []
        if cl and cl != "NONE":
            if cl not in self.foreign_filled:
                out.append(
                    self.core.anomaly(
                        now,
                        "unknown_order",
                        cl,
                        f"ExecType={r.exec_type} OrdStatus={r.ord_status} for an order this node did not send",
                        exec_id=r.exec_id,
                    )
                )
            done = self.foreign_filled.get(cl, 0.0)
            # every report of the order (a fill, a status answer, the answer to our cancel, redirected to
            # the order above) carries its CumQty, the venue's count (required on every ExecutionReport):
            # a resent fill, or a report older than one applied, adds nothing; a fill whose own report
            # never came shows in the next report's CumQty
            cum = max(done, r.cum_qty)
            if cum > done and r.instrument in self.core.positions:
                # never lose a fill: the venue says we traded, so the position moves
                self.core.positions[r.instrument] += side_sign(r.side) * (cum - done)
                out.append(
                    Audit(
                        now,
                        "foreign_fill",
                        cl_ord_id=cl,
                        instrument=r.instrument,
                        side=r.side,
                        qty=cum - done,
                        price=r.last_px or r.avg_px,
                        detail=f"ExecID {r.exec_id}",
                    )
                )
            self.foreign_filled[cl] = cum
            if r.mass_status_id and r.ord_status in ("0", "1", "A") and r.instrument in self.core.instruments:
                inst = self.core.instruments[r.instrument]
                out += [
                    SendCancel(
                        r.venue,
                        self.core.stamp(f"{cl}X1"),
                        cl,
                        inst.name,
                        inst.symbol,
                        r.side,
                        int(r.order_qty),
                        "",
                        inst.account,
                    ),
                    Alert(
                        now,
                        "critical",
                        f"{r.venue} reports order {cl} working that this node never sent: "
                        f"cancelled; {cum:g} lots filled are in the position; desk to review",
                    ),
                    Audit(
                        now,
                        "foreign_cancel",
                        cl_ord_id=cl,
                        instrument=inst.name,
                        side=r.side,
                        qty=r.leaves_qty,
                        detail="unknown to this node: cancelled, never adopted",
                    ),
                ]
        if r.mass_status_id and r.last_report:
            out += self.answered(r.venue, r.mass_status_id, now)
        return out

    def on_foreign_cancel_reject(self, r: CancelReject, now: float) -> list[Action]:
        """An OrderCancelReject for no order of this node: the venue's refusal of our cancel of a foreign
        order (it had filled or ended first; its reports move the position, not this) is on record,
        anything else is an unknown order."""
        if r.orig_cl_ord_id in self.foreign_filled:  # its keys are ClOrdIDs, never empty
            return [
                Audit(
                    now,
                    "foreign_cancel_rejected",
                    cl_ord_id=r.orig_cl_ord_id,
                    detail=f"{r.venue}: our cancel {r.cl_ord_id} refused (OrdStatus {r.ord_status}): {r.text}",
                )
            ]
        return [self.core.anomaly(now, "unknown_order", r.cl_ord_id, "OrderCancelReject for an unknown order")]

    def answered(self, venue: str, key: str, now: float) -> list[Action]:
        """One status question (an order's H, the AF, or the AN) answered; all answered: the venue is
        reconciled: its positions are compared with the figures the AN's answer left in `compare_due`
        (once every answer is in, so no fill an order answer carries is missed), then what waited for
        the venue resumes."""
        out: list[Action] = []
        pending = self.status_pending.get(venue)
        if pending is not None:
            pending.discard(key)
            if not pending and self._answer_predates_a_fill(venue):
                return self._ask_positions_again(venue, now)
            if not pending:
                del self.status_pending[venue]
                if venue in self.compare_due:
                    theirs = self.compare_due.pop(venue)
                    if theirs is not None:
                        self.mass_tally.pop(venue, None)
                        out += self.compare_positions(venue, now, theirs, "its position reports")
                    elif venue in self.mass_tally:
                        out += self.compare_positions(venue, now)
                out.append(Audit(now, "reconciled", detail=f"{venue}: every working order answered"))
                out += self.resume_waiting(now)
        return out

    def after_live_fill(self, venue: str) -> None:
        """A fill the venue reported as it happened (not a status answer): if its position answer is
        already in, the answer predates this fill."""
        if self.compare_due.get(venue) is not None:
            self.filled_after_answer.add(venue)

    def _answer_predates_a_fill(self, venue: str) -> bool:
        """The venue's position figures disagree with ours, and it reported a fill live after it drew them
        up (an order still working at a takeover that filled meanwhile): that fill may be all the
        difference. Asked again (at most twice a logon) before a mismatch is called. Fills that status
        answers bring are not such a reason: those the venue made before it answered (its position
        answer may overtake its order answers), and its figures count them."""
        theirs = self.compare_due.get(venue)
        if theirs is None or venue not in self.filled_after_answer or self.position_reasks.get(venue, 0) >= 2:
            return False
        return any(
            abs(self.core.positions[n] - theirs.get(n, 0.0)) > 1e-9
            for n, inst in self.core.instruments.items()
            if inst.venue == venue
        )

    def _ask_positions_again(self, venue: str, now: float) -> list[Action]:
        """A new RequestForPositions; the venue stays unreconciled until its answer is in and compared."""
        self.position_reasks[venue] = n = self.position_reasks.get(venue, 0) + 1
        del self.compare_due[venue]
        self.filled_after_answer.discard(venue)
        req = f"{POSITIONS_QUESTION}{venue}-E{self.core.epoch}-T{now * 1e3:.0f}-R{n}"
        self.position_asked[venue] = (req, {}, 0)
        self.status_pending[venue] = {req}
        account = next((i.account for i in self.core.instruments.values() if i.venue == venue and i.account), "")
        return [
            SendPositionRequest(venue, req, account),
            SetTimer(now + self.core.strategy.recovery.status_timeout, timer_key(TimerKind.STATUS, venue)),
            Audit(
                now,
                "positions_reasked",
                detail=f"{venue}: a fill reported after its position answer, which disagrees with ours: "
                f"asked again ({n})",
            ),
        ]

    def on_position_report(self, r: PositionReport, now: float) -> list[Action]:
        """One answer to our RequestForPositions: once all have come, the venue's positions are
        compared with ours. A venue that cannot answer (AO with a failed result, or a reject of the
        AN: `position_request_refused`) leaves the comparison to the positions its orders imply."""
        asked = self.position_asked.get(r.venue)
        if asked is None or asked[0] != r.req_id:
            return [
                Audit(now, "stale_answer", detail=f"{r.venue}: position report {r.req_id!r} answers no open request")
            ]
        if r.result not in ("0", "2"):
            return self.position_request_refused(r.venue, now, f"PosReqResult={r.result}")
        req, theirs, count = asked
        if r.instrument:
            theirs[r.instrument] = theirs.get(r.instrument, 0.0) + r.net_qty
            count += 1
        self.position_asked[r.venue] = (req, theirs, count)
        if count < r.total:
            return []
        del self.position_asked[r.venue]
        self.compare_due[r.venue] = theirs  # compared once every answer of this logon is in (answered)
        self.filled_after_answer.discard(r.venue)
        return self.answered(r.venue, req, now)

    def position_request_refused(self, venue: str, now: float, why: str) -> list[Action]:
        """The venue does not answer RequestForPositions: the orders' CumQty (the AF answers) must do."""
        asked = self.position_asked.pop(venue, None)
        if asked is None:
            return []
        self.compare_due[venue] = None  # the AF answers' CumQty, once they are all in
        return [Audit(now, "positions_unsupported", detail=f"{venue}: {why}")] + self.answered(venue, asked[0], now)

    def compare_positions(
        self, venue: str, now: float, theirs: dict[str, float] | None = None, source: str = "its orders' CumQty"
    ) -> list[Action]:
        """The venue's picture is complete: its positions (its position reports, or every order's
        CumQty signed when it has no position reports) must be ours, instrument by instrument. A
        mismatch is a critical alert, on record, and holds new risk on that venue until the desk has
        looked (Command "resume")."""
        if theirs is None:
            theirs = {}
            for instrument, signed in self.mass_tally.pop(venue, {}).values():
                theirs[instrument] = theirs.get(instrument, 0.0) + signed
        off = {
            name: (self.core.positions[name], theirs.get(name, 0.0))
            for name, inst in self.core.instruments.items()
            if inst.venue == venue and abs(self.core.positions[name] - theirs.get(name, 0.0)) > 1e-9
        }
        if not off:
            return [Audit(now, "positions_reconciled", detail=f"{venue}: positions agree with {source}")]
        text = (
            f"{venue} positions ({source}) disagree with ours after reconciliation: "
            + ", ".join(f"{n} ours {a:+g} venue {b:+g}" for n, (a, b) in sorted(off.items()))
            + "; no new risk there until the desk resumes"
        )
        self.position_hold[venue] = text
        return [
            self.core.anomaly(now, "position_mismatch", "", text),
            Alert(now, "critical", text),
            Audit(now, "position_mismatch", detail=text),
        ]

    def on_status(self, order: ChildOrder, r: ExecReport, now: float) -> list[Action]:
        """An order-status answer: adopt the venue's truth (a fill we never heard of is applied once,
        flagged), then lift the venue's hold once every queried order has answered."""
        ep = self.core.episodes[order.decision_id]
        out: list[Action] = [
            Audit(
                now,
                "status",
                order.decision_id,
                order.cl_ord_id,
                order.instrument,
                self.core.instruments[order.instrument].account,
                order.side,
                r.cum_qty,
                r.avg_px,
                f"venue OrdStatus={r.ord_status} CumQty={r.cum_qty:g}; engine {order.state.name} "
                f"CumQty={order.cum_qty:g}",
            )
        ]
        missed = r.cum_qty - order.cum_qty  # whole lots; AvgPx is required on every ExecutionReport
        if missed > 0:
            px = (r.avg_px * r.cum_qty - order.avg_px * order.cum_qty) / missed
            order.avg_px = (order.avg_px * order.cum_qty + px * missed) / r.cum_qty
            order.cum_qty = r.cum_qty
            self.core.positions[order.instrument] += side_sign(order.side) * missed
            ep.fills.append((now, order.leg, missed, px))
            out.append(
                self.core.anomaly(
                    now,
                    "fill_from_status",
                    order.cl_ord_id,
                    f"{missed:g} lots filled while disconnected, learned from the status report",
                )
            )
        order.adopt_status(r.ord_status)  # the venue's terminal status, through the order's adoption table
        # a status answer settles what the watch asks (does the venue hold it?); the order's own first
        # report, if it comes later, measures the question's wait, not a round trip. "Not there, never
        # traded" about an order never answered: the venue lost it (or its refusal), and may lose more
        if r.ord_status == "8" and r.cum_qty == 0:
            self.core.ack_watch.lost(order.cl_ord_id)
        self.core.ack_watch.forget(order.cl_ord_id)
        self.ack_questions.discard(order.cl_ord_id)
        self.cancel_questions.pop(order.cl_ord_id, None)
        if order.pending_replace is not None:  # the venue read the open replace before this question
            out += self.core.replace_settled_by_status(order, r, now)
        out += self.core._settle(ep, now)  # legged by this answer: waits below until the venue is ready
        # the question may have named the order by a ClOrdID a replace has superseded since
        key = self.core.orders.key(order.cl_ord_id)
        asked = self.status_pending.get(order.venue, ())
        out += self.answered(order.venue, next((q for q in asked if self.core.orders.key(q) == key), key), now)
        if r.mass_status_id and r.last_report:
            out += self.answered(order.venue, r.mass_status_id, now)
        return out
