"""The acknowledgement watch: each venue's recent order round trips, and the deadline past which a new
order's silence means it (or its answer) may be lost and the venue is asked for its status."""

from __future__ import annotations

from collections import deque

# how many of a venue's latest round trips (order sent -> its first answer) the deadline is drawn from
WINDOW = 32
# round trips measured on a venue before its own record sets the deadline: until then four times the
# floor. One is enough: a venue's round trips spread far less than fourfold (the multiple), and waiting
# for three kept a venue's first orders on 1.2 s: an unwind lost on a venue that had answered one order
# held an episode legged 1.43 s against 1.3 (xmc explore seed 20261215 on f37); a question asked too
# soon costs one status round trip, an answer a lost order never gets costs seconds
MIN_SAMPLES = 1
# a venue that has just lost an order silently (its status question found it refused or unknown, never
# answered) may well lose the next one: its next orders are asked about once an answer as slow as its
# slowest recent one is overdue by half, never sooner than the floor, never later than usual, until an
# order is answered on time again. Three unwinds lost in turn had each waited four median round trips
# (465 ms at COMEX's 116 ms) and a status round trip: legged 1,740 ms against an allowance of 1,540
# (xmc explore seed 20261204 on f67); a question asked too soon costs one status round trip
LOSING_MULTIPLE = 1.5


class AckWatch:
    """What each venue's new orders took to be answered lately, and which are still unanswered.

    A venue that loses an order inside its gateway never says so: without a watch, the order's only
    deadline is the episode's order timeout (seconds), the longest a leg may work, which a legged
    episode cannot afford. The deadline here is relative to what the venue has shown: `multiple`
    times its median recent round trip, never less than `floor` (the answer timeout of cancels), so
    a venue 300 ms away is not questioned on every order, and one 1 ms away is asked after `floor`;
    never less than the slowest recent trip plus `floor` either (an answer as slow as one already
    seen is not questioned), nor more than `multiple` times that slowest.
    Deterministic in its inputs (the core's events and times), like the rest of the core.
    """

    def __init__(self, multiple: float, floor: float) -> None:
        self.multiple = multiple  # 0: no watch
        self.floor = floor
        self.unanswered: dict[str, tuple[str, float]] = {}  # ClOrdID -> (venue, sent at)
        self.recent: dict[str, deque[float]] = {}  # venue -> its latest round trips (s)
        self.asked: set[str] = set()  # ClOrdIDs past their deadline whose status was asked
        self.losing: set[str] = set()  # venues that lost an order since they last answered one on time

    def deadline(self, venue: str) -> float | None:
        """Seconds a new order on `venue` may go unanswered; None when the watch is off. Until MIN_SAMPLES
        round trips are measured there, `multiple` times the floor, whatever was measured: a venue's
        first orders are watched too (a lost one would otherwise wait out the order timeout, which for
        resting limit orders may be minutes), on a deadline no faster venue misses."""
        if self.multiple <= 0:
            return None
        trips = self.recent.get(venue)
        if trips is None or len(trips) < MIN_SAMPLES:
            return max(self.floor, self.multiple * self.floor, self.multiple * max(trips or (0.0,)))
        ordered = sorted(trips)
        slowest = ordered[-1]
        median = ordered[(len(ordered) - 1) // 2]  # the lower one of an even count
        # not `multiple` times the slowest: a single 573 ms trip among 115 ms ones set a 2.29 s deadline,
        # and an unwind the venue lost then waited out the order timeout (legged 1,732 ms against 1,300:
        # xmc explore seed 20261203 on f29). An answer as slow as the slowest seen is still never asked
        # about; one slower than that by more than the floor costs one status question.
        usual = min(self.multiple * slowest, max(self.multiple * median, slowest + self.floor))
        if venue in self.losing:
            usual = min(usual, LOSING_MULTIPLE * slowest)
        return max(self.floor, usual)

    def answer_due(self, venue: str) -> float | None:
        """Seconds within which `venue` answers a new order as it has lately: its slowest recent round
        trip plus the floor, never more than `deadline`; the deadline itself until the venue has a
        record. None when the watch is off. What a cancel must wait for not to race an order's first
        answer: past it, the answer is late by the venue's own record, whatever the multiple leaves the
        status question to wait (a venue 300 ms away has a 1.2 s deadline, which a legged budget
        cannot wait out: explore seed 3904 on f62)."""
        due = self.deadline(venue)
        trips = self.recent.get(venue)
        if due is None or trips is None or len(trips) < MIN_SAMPLES:
            return due
        return min(due, max(trips) + self.floor)

    def sent(self, cl_ord_id: str, venue: str, now: float) -> float | None:
        """A new order left for `venue`: when its answer is due (None: not watched)."""
        self.unanswered[cl_ord_id] = (venue, now)
        due = self.deadline(venue)
        return None if due is None else now + due

    def answered(self, cl_ord_id: str, now: float) -> bool:
        """The venue's first answer to a new order (acknowledgement, fill or reject) arrived: its round
        trip joins the venue's record. True when the order was awaiting it (its watch can go)."""
        waiting = self.unanswered.pop(cl_ord_id, None)
        if waiting is None:
            return False
        if cl_ord_id in self.asked:
            # answered only after its deadline and the question: a lost order the question's sequence
            # number had resent looks the same as a slow one, and learning its wait would stretch the
            # deadline fourfold for every loss (a ratchet: 300 ms became 1.26 s, and a lost unwind
            # then kept an episode legged that long). Slow answers under the deadline still teach it.
            self.asked.discard(cl_ord_id)
            return True
        venue, at = waiting
        self.recent.setdefault(venue, deque(maxlen=WINDOW)).append(now - at)
        self.losing.discard(venue)  # answered on time: the venue's usual deadline again
        return True

    def lost(self, cl_ord_id: str) -> None:
        """The status question about an unanswered order found the venue does not hold it working and
        it never traded (unknown, or refused with the refusal lost): the venue, or the way to it, loses
        messages, so its next orders are watched closer (LOSING_MULTIPLE) until one is answered on time."""
        waiting = self.unanswered.get(cl_ord_id)
        if waiting is not None and cl_ord_id in self.asked:
            self.losing.add(waiting[0])

    def ask(self, cl_ord_id: str) -> None:
        """The order's status was asked because it passed its deadline: its answer teaches nothing."""
        if cl_ord_id in self.unanswered:
            self.asked.add(cl_ord_id)

    def forget(self, cl_ord_id: str) -> None:
        """The order ended without a first answer of its own (its status answer settled it): no round
        trip to learn from."""
        self.unanswered.pop(cl_ord_id, None)
        self.asked.discard(cl_ord_id)

    def session_down(self, venue: str) -> None:
        """The session to `venue` dropped: its unanswered orders' answers, if any come, come after the
        outage (or the next logon's status questions settle them), so their waits are no round trips:
        an outage taken for one would stretch the venue's deadline for its next WINDOW orders."""
        for cl_ord_id in [c for c, (v, _at) in self.unanswered.items() if v == venue]:
            del self.unanswered[cl_ord_id]
            self.asked.discard(cl_ord_id)
