"""Fault injection: what can go wrong at a venue or on a link, when, to which orders, how often.

A scenario lists faults as [[faults]] tables. Each has a kind, a venue, a window in virtual time
(after_s .. until_s), an order filter (any / entry / recovery orders, told apart by their ClOrdID),
a rate (probability per matching order or message, drawn from the fault's own generator) and a
count (at most that many hits; 0 = unlimited). Kind-specific keys say how it fails.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

from engine.config import FIX_TEXT, Section, non_negative, positive
from engine.core.events import SessionDown
from engine.core.ids import purpose_tag
from engine.shell.journal import FRAME as _FRAME
from engine.shell.journal import encode as encode_record

ORDER_KINDS = (
    "reject",
    "partial_fill",
    "late_ack",
    "no_ack",
    "duplicate_report",
    "disconnect_on_order",
    "crash_on_order",
    "fill_before_ack",
    "cancel_race",
    "late_fill",
)
# late_fill: delay_ms after the venue reports a matching order Canceled (an IOC's unfilled rest, or a
# cancel it granted), it reports a Fill of that rest at the order's price: a trade made before the
# cancel and reported late (a trade correction)
# reject: how the venue refuses the order, and the field its `reason` travels in: "order" an
# ExecutionReport Rejected (39=8, OrdRejReason 103), "session" a session Reject (3, SessionRejectReason
# 373, naming the order only by its MsgSeqNum), "business" a BusinessMessageReject (j,
# BusinessRejectReason 380, naming its ClOrdID); level -> (tag, its name, the default reason)
REJECT_LEVELS = {
    "order": (103, "OrdRejReason", 99),
    "session": (373, "SessionRejectReason", 99),
    "business": (380, "BusinessRejectReason", 0),
}
# the world metal price or USD/CNY jumps by jump_bp: once at after_s, or at rate_per_s (Poisson) in the window
MARKET_KINDS = ("price_jump",)
LINK_KINDS = ("latency_spike", "drop")
VENUE_KINDS = ("disconnect", "md_stale", "md_gap", "price_limit_lock", "clock_offset")
# the session drops for delay_ms the moment the venue receives the engine's question `on_message`
# (AF all orders, AN positions, H one order), before it answers; with reports_lost the answer is lost
STATUS_KINDS = ("disconnect_on_status",)
STATUS_MESSAGES = ("AF", "AN", "H")
# an operator action at after_s: the kill switch (venue names where it is pressed: any), or a trade of
# `lots` on `side` booked to the engine's account at `venue` away from its session (by phone, on a
# screen): the engine never hears of it; only a position report after a restart or takeover shows it
DESK_KINDS = ("kill_switch", "desk_trade")
# the engine process dies (at after_s, or the moment a matching order reaches its venue) and
# restarts from its journal after delay_ms
NODE_KINDS = ("crash_restart", "crash_on_order", "crash_mid_batch")
# primary and hot standby (a scenario with [failover]): the primary dies or freezes for delay_ms (at
# after_s, or with on_order = true the moment a matching order reaches `venue`), the standby dies
# and resyncs after delay_ms or freezes for delay_ms (reading nothing of the stream, its failure
# detector still), the replication stream is cut for a window or slowed by delay_ms, or the
# lease service cannot be reached from one node (`node`: the primary's process or the standby's) for a
# window while everything else still works (a partition between them): its keep-alives and asks fail,
# it trades on its last grant only as long as its own clock says the grant lasts (with on_order = true
# the cut begins the moment a matching order reaches `venue`, which processes it, and lasts delay_ms)
FAILOVER_KINDS = (
    "primary_crash",
    "primary_pause",
    "standby_crash",
    "standby_pause",
    "replication_cut",
    "replication_delay",
    "lease_cut",
)
LEASE_NODES = ("primary", "standby")
KINDS = tuple(
    dict.fromkeys(
        ORDER_KINDS + LINK_KINDS + VENUE_KINDS + DESK_KINDS + NODE_KINDS + FAILOVER_KINDS + MARKET_KINDS + STATUS_KINDS
    )
)
# kinds that can strike the moment a matching order reaches `venue` (on_order = true) instead of at after_s
# kinds whose cut can leave the venues' gateways keeping nothing for the session (reports_lost)
LOSING_KINDS = ("disconnect_on_order", "disconnect_on_status", "primary_crash")
ON_ORDER_KINDS = ("primary_crash", "primary_pause", "price_limit_lock", "lease_cut")
# kinds that change nothing without a delay_ms > 0 (and a price_limit_lock or lease_cut struck on_order: how
# long it holds)
NEEDS_DELAY = frozenset(
    {
        "late_ack",
        "latency_spike",
        "clock_offset",
        "disconnect_on_order",
        "disconnect_on_status",
        "crash_restart",
        "crash_on_order",
        "primary_pause",
        "standby_crash",
        "standby_pause",
        "replication_delay",
        "crash_mid_batch",
    }
)
# window kinds that need an end (until_s), unless struck on_order
NEEDS_UNTIL = frozenset(
    {"disconnect", "md_stale", "price_limit_lock", "replication_cut", "replication_delay", "lease_cut"}
)
# crash_restart / crash_on_order: how the journal is damaged while the process is down; the restart
# must refuse it (exit 2 in production) and leave it byte for byte as it was
JOURNAL_DAMAGE = ("checksum", "undecodable", "bad_content", "unknown_venue", "not_a_journal")
# crash_mid_batch: where in one batch of the core's actions the process dies
BATCH_POINTS = ("between_legs", "before_audit")
# a drop loses one transmission of an application message (with an order filter, one naming a matching
# order: see FaultPlan.drops); session messages and PossDup resends go through, so every gap can be
# filled (the same rule in virtual time and at the wire)
DROP_EXEMPT = ("A", "0", "1", "2", "4", "5")
ORDER_FILTERS = ("any", "entry", "recovery", "chase", "unwind")
_FILTER_TAGS = {"entry": ("",), "recovery": ("R", "U", "H"), "chase": ("R",), "unwind": ("U",)}


@dataclass(slots=True)
class Fault:
    index: int
    kind: str
    venue: str
    after: float
    until: float
    orders: str
    rate: float
    count: int
    reason: int = 99
    level: str = "order"  # reject: see REJECT_LEVELS
    text: str = ""
    fill_ratio: float = 0.5
    reports: int = 1
    rest: str = "cancel"
    delay: float = 0.0
    direction: str = "both"
    cancel_on_disconnect: bool | None = None  # None: the venue's own cancel_on_disconnect
    # disconnect_on_order: the venue's gateway keeps nothing for a session that is down: the reports of
    # what happened meanwhile are never sent, and only a status query tells the engine
    reports_lost: bool = False
    cut_after: float = 0.0  # disconnect_on_order: the session drops this long after the order arrives
    # (after_ms; 0: as it arrives), the order working meanwhile and its first reports delivered
    on_message: str = "AF"  # disconnect_on_status: the question whose arrival cuts the session
    side: str = "buy"  # price_limit_lock: "buy" locks limit-up (no offers), "sell" limit-down; with
    # on_order, "against" locks the side the arriving order needs (a buy finds no offers, a sell no bids)
    on_order: bool = False  # failover kinds: strike when a matching order reaches `venue`, not at after_s
    torn_write: bool = False  # crash_restart / crash_on_order: the process dies while writing a journal record
    journal_damage: str = ""  # crash_restart / crash_on_order: one of JOURNAL_DAMAGE done to the journal meanwhile
    target: str = "world"  # price_jump: "world" (the metal price every venue follows) or "fx" (USD/CNY)
    jump_bp: float = 0.0  # price_jump: signed size in basis points
    rate_per_s: float = 0.0  # price_jump: jumps per second inside the window (0: one jump at after_s)
    point: str = "between_legs"  # crash_mid_batch: see BATCH_POINTS
    lots: int = 1  # desk_trade: lots traded on the venue's instrument
    node: str = "primary"  # lease_cut: the node (see LEASE_NODES) the lease service cannot be reached from
    stream: str = ""  # names the fault's random stream (default: its index), so it keeps its draws when
    # faults before it are removed (xmc explore's shrinking does)
    rng: random.Random | None = None
    hits: int = 0

    def active(self, now: float) -> bool:
        return self.after <= now < self.until and (self.count == 0 or self.hits < self.count)

    def matches_order(self, cl_ord_id: str) -> bool:
        if self.orders == "any":
            return True
        tag = purpose_tag(cl_ord_id)  # the order's own, its cancel's or its replace's: engine.core.ids
        return tag is not None and tag in _FILTER_TAGS[self.orders]

    def fire(self) -> bool:
        """Draw against the rate and count the hit."""
        if self.rate < 1.0:
            assert self.rng is not None  # the FaultPlan gives every fault its own generator
            if self.rng.random() >= self.rate:
                return False
        self.hits += 1
        return True


class FaultPlan:
    """The scenario's faults, each with its own generator forked from the run seed."""

    def __init__(self, faults: list[Fault], fork):
        self.faults = faults
        self.of_kind: dict[str, list[Fault]] = {}  # the faults of each kind, in scenario order (most asks find none)
        for f in faults:
            f.rng = fork(f"fault:{f.stream or f.index}:{f.kind}")
            self.of_kind.setdefault(f.kind, []).append(f)

    def has(self, kind: str) -> bool:
        """Does the scenario have a fault of this kind at all?"""
        return kind in self.of_kind

    def for_order(self, kind: str, venue: str, cl_ord_id: str, now: float) -> Fault | None:
        for f in self.of_kind.get(kind, ()):
            if (
                f.venue == venue
                and f.active(now)
                and f.matches_order(cl_ord_id)
                and (f.on_order or kind not in ON_ORDER_KINDS)
                and f.fire()
            ):
                return f
        return None

    def window(self, kind: str, venue: str, now: float) -> Fault | None:
        """An active window fault of `kind` (no draw: the window itself is the fault); each use is a hit."""
        for f in self.of_kind.get(kind, ()):
            if f.venue == venue and f.after <= now < f.until and not f.on_order:
                f.hits += 1
                return f
        return None

    def for_message(self, kind: str, venue: str, direction: str, now: float) -> Fault | None:
        for f in self.of_kind.get(kind, ()):
            if f.venue == venue and f.direction in (direction, "both") and f.active(now) and f.fire():
                return f
        return None

    def on_question(self, venue: str, msg_type: str, now: float) -> Fault | None:
        """The disconnect_on_status fault that cuts the session as this status question arrives."""
        for f in self.of_kind.get("disconnect_on_status", ()):
            if f.venue == venue and f.on_message == msg_type and f.active(now) and f.fire():
                return f
        return None

    def drops(
        self, msg_type: str, poss_dup: bool, venue: str, direction: str, now: float, order_ids: tuple[str, ...] = ()
    ) -> Fault | None:
        """The drop fault that loses this message, if any (see DROP_EXEMPT). `order_ids` are the ClOrdIDs
        the message names (OrigClOrdID 41, ClOrdID 11): a drop with an order filter loses only messages
        about a matching order (the order, its cancel or replace, its status question, their reports);
        one naming no order (market data, AF, AN) only a drop of `orders = "any"` loses."""
        if msg_type in DROP_EXEMPT or poss_dup:
            return None
        for f in self.of_kind.get("drop", ()):
            if (
                f.venue == venue
                and f.direction in (direction, "both")
                and f.active(now)
                and (f.orders == "any" or any(f.matches_order(i) for i in order_ids))
                and f.fire()
            ):
                return f
        return None

    def hits(self) -> dict[str, int]:
        return {f"{f.index}:{f.kind}@{f.venue}": f.hits for f in self.faults}


def order_ids(raw: str) -> tuple[str, ...]:
    """The ClOrdIDs a FIX message names: OrigClOrdID (41) first (a cancel's or replace's order), then
    ClOrdID (11)."""
    out = []
    for tag in ("\x0141=", "\x0111="):
        if tag in raw:
            out.append(raw.split(tag, 1)[1].split("\x01", 1)[0])
    return tuple(out)


def read_faults(root: Section, venues: set[str], duration: float) -> list[Fault]:
    """Validate [[faults]]; every impossible value or unmatched condition is a problem on `root`."""
    if not root.has("faults"):
        return []
    items = root.get("faults", list, hint="an array of [[faults]] tables")
    out = []
    for i, item in enumerate(items):
        sec = Section(item, f"faults[{i}]", root.problems)
        kind = sec.get("kind", str, choices=KINDS)
        on_order = sec.get("on_order", bool, False) if kind in ON_ORDER_KINDS else False
        venue = (
            sec.get("venue", str, "" if kind in DESK_KINDS else None, hint="the name of a venue table")
            if kind in DESK_KINDS + ("crash_restart",)
            else sec.get("venue", str, hint="the name of a venue table")
            if kind not in FAILOVER_KINDS + MARKET_KINDS + ("crash_mid_batch",) or on_order
            else ""
        )
        if kind in MARKET_KINDS + ("crash_mid_batch",) and sec.has("venue"):
            sec.problem("venue", f"is set but a {kind} does not happen at one venue", "drop venue")
        if kind in FAILOVER_KINDS and not on_order and sec.has("venue"):
            sec.problem(
                "venue",
                f"is set but a {kind} at after_s happens to a node, not at a venue",
                "drop venue, or add on_order = true to strike when a matching order reaches it",
            )
        if sec.has("on_order") and kind not in ON_ORDER_KINDS:
            sec.problem("on_order", f"is not supported for {kind}", f"use it with {', '.join(ON_ORDER_KINDS)}")
        if sec.has("journal_damage") and kind not in ("crash_restart", "crash_on_order"):
            sec.problem("journal_damage", f"is not supported for {kind}", "use it with crash_restart or crash_on_order")
        if sec.has("reports_lost") and kind not in LOSING_KINDS:
            sec.problem("reports_lost", f"is not supported for {kind}", f"use it with {', '.join(LOSING_KINDS)}")
        if sec.has("after_ms") and kind != "disconnect_on_order":
            sec.seen.add("after_ms")
            sec.problem(
                "after_ms",
                f"is not supported for {kind}",
                "use it with disconnect_on_order (for a window fault, after_s and until_s)",
            )
        if kind == "partial_fill" and sec.has("delay_ms") and sec.data.get("rest", "cancel") != "work":
            sec.problem(
                "delay_ms",
                "is set on a partial_fill whose rest is cancelled: there is no rest to trade later",
                'add rest = "work", or remove delay_ms',
            )
        if sec.has("level") and kind != "reject":
            sec.seen.add("level")
            sec.problem("level", f"is not supported for {kind}", "use it with reject")
        level = sec.get("level", str, "order", choices=tuple(REJECT_LEVELS)) if kind == "reject" else "order"
        reason_tag, reason_name, reason_default = REJECT_LEVELS[level if level in REJECT_LEVELS else "order"]
        if sec.has("on_message") and kind not in STATUS_KINDS:
            sec.problem("on_message", f"is not supported for {kind}", "use it with disconnect_on_status")
        if venue and venue not in venues:
            sec.problem("venue", f"names unknown venue {venue!r}", f"write one of {', '.join(sorted(venues))}")
        after = sec.get("after_s", float, 0.0, check=non_negative, hint="virtual seconds >= 0")
        until = sec.get("until_s", float, math.inf, check=positive, hint="virtual seconds > after_s")
        if sec.ok("after_s", "until_s") and until <= after:
            sec.problem(
                "until_s",
                f"({until}) is not after after_s ({after}): the fault can never happen",
                "set until_s > after_s",
            )
        if sec.ok("after_s") and root.ok("scenario.duration_s") and after >= duration:
            sec.problem(
                "after_s",
                f"({after}) is at or past the scenario's end ({duration} s): it can never happen",
                "start the fault inside the run",
            )
        f = Fault(
            index=i,
            kind=kind,
            venue=venue,
            after=after,
            until=until,
            orders=sec.get("orders", str, "any", choices=ORDER_FILTERS),
            rate=sec.get("rate", float, 1.0, check=lambda r: 0.0 < r <= 1.0, hint="a probability in (0, 1]"),
            count=sec.get("count", int, 0, check=non_negative, hint="a whole number >= 0 (0: unlimited)"),
            reason=sec.get(
                "reason",
                int,
                reason_default,
                check=non_negative,
                hint=f"a {reason_name} ({reason_tag}), e.g. {reason_default}",
            ),
            level=level,
            text=sec.get("text", str, ""),  # becomes Text (58): checked below
            fill_ratio=sec.get(
                "fill_ratio", float, 0.5, check=lambda r: 0.0 < r < 1.0, hint="a fraction strictly between 0 and 1"
            ),
            reports=sec.get(
                "reports",
                int,
                1,
                check=lambda n: 1 <= n <= 1000,
                hint="a whole number of execution reports in [1, 1000]",
            ),
            rest=sec.get("rest", str, "cancel", choices=("cancel", "work")),
            delay=sec.get("delay_ms", float, 0.0, check=non_negative, hint="milliseconds >= 0") / 1e3,
            direction=sec.get("direction", str, "both", choices=("up", "down", "both")),
            cancel_on_disconnect=sec.get("cancel_on_disconnect", bool, None),
            reports_lost=sec.get("reports_lost", bool, False) if kind in LOSING_KINDS else False,
            cut_after=sec.get("after_ms", float, 0.0, check=non_negative, hint="milliseconds >= 0") / 1e3
            if kind == "disconnect_on_order"
            else 0.0,
            on_message=sec.get("on_message", str, "AF", choices=STATUS_MESSAGES) if kind in STATUS_KINDS else "AF",
            side=sec.get("side", str, "buy", choices=("buy", "sell", "against")),
            on_order=on_order,
            torn_write=sec.get("torn_write", bool, False) if kind in NODE_KINDS else False,
            journal_damage=sec.get("journal_damage", str, "", choices=("", *JOURNAL_DAMAGE))
            if kind in ("crash_restart", "crash_on_order")
            else "",
            target=sec.get("target", str, "world", choices=("world", "fx")) if kind == "price_jump" else "world",
            jump_bp=sec.get(
                "jump_bp",
                float,
                check=lambda b: 0 < abs(b) <= 2000,
                hint="signed basis points, 0 < |jump_bp| <= 2000 (20%)",
            )
            if kind == "price_jump"
            else 0.0,
            rate_per_s=sec.get(
                "rate_per_s",
                float,
                0.0,
                check=lambda r: 0 <= r <= 10,
                hint="jumps per second in [0, 10] (0: one jump at after_s)",
            )
            if kind == "price_jump"
            else 0.0,
            point=sec.get("point", str, "between_legs", choices=BATCH_POINTS)
            if kind == "crash_mid_batch"
            else "between_legs",
            stream=sec.get("stream", str, ""),
            lots=sec.get("lots", int, 1, check=lambda n: 1 <= n <= 1000, hint="a whole number of lots in [1, 1000]")
            if kind == "desk_trade"
            else 1,
            node=sec.get("node", str, "primary", choices=LEASE_NODES) if kind == "lease_cut" else "primary",
        )
        if kind == "desk_trade" and not venue and sec.ok("venue"):
            sec.problem("venue", "is missing: a desk trade is booked at one venue", 'write venue = "<a venue table>"')
        if kind == "desk_trade" and f.side == "against" and sec.ok("side"):
            sec.problem("side", 'is "against", which a desk trade cannot be', 'write side = "buy" or "sell"')
        if f.stream and not FIX_TEXT.fullmatch(f.stream):
            sec.problem("stream", f"is {f.stream!r}", 'write a short printable ASCII name, e.g. "x3"')
        if f.text and not FIX_TEXT.fullmatch(f.text):
            sec.problem(
                "text",
                f"is {f.text!r}, which Text (58) cannot carry without a MessageEncoding",
                "write printable ASCII",
            )
        if f.side == "against" and not on_order and kind != "desk_trade" and sec.ok("side", "on_order"):
            sec.problem(
                "side",
                'is "against" but the lock is not struck by an order',
                'add on_order = true, or write side = "buy" or "sell"',
            )
        if kind == "price_jump" and f.rate_per_s > 0 and math.isinf(until) and sec.ok("until_s"):
            sec.problem("until_s", "is missing: jumps at a rate need a window's end", "write until_s > after_s")
        if (
            (kind in NEEDS_DELAY or (kind in ("price_limit_lock", "lease_cut") and on_order))
            and f.delay == 0.0
            and sec.ok("delay_ms")
        ):
            sec.problem("delay_ms", "is missing or 0, so the fault changes nothing", "write delay_ms > 0")
        if kind in NEEDS_UNTIL and math.isinf(until) and not on_order and sec.ok("until_s", "on_order"):
            sec.problem("until_s", "is missing: a window fault needs an end", "write until_s > after_s")
        sec.finish()
        out.append(f)
    return out


class NothingToDamage(ValueError):
    """A journal_damage fault met a journal with no record yet (the engine crashed before it journaled
    anything): the damage the scenario asks for cannot be done; the runner reports it as a problem of
    the scenario file (raised again there with the fault's index and the crash time as its args)."""


def damage_journal(path: Path, how: str) -> None:
    """Damage the journal at `path` as a failing disk or a careless hand would (a journal_damage
    fault): the middle record's bytes flipped under their checksum (checksum), replaced by bytes that
    are not a record but carry a valid checksum (undecodable), by a record of a known event with a
    field of the wrong type (bad_content) or naming a venue the config does not have (unknown_venue);
    or the whole file replaced by bytes that are not a journal (not_a_journal)."""
    data = path.read_bytes()
    if how == "not_a_journal":
        path.write_bytes(b"PK\x03\x04 this is a zip archive, not a journal\n")
        return
    start = data.find(b"\n") + 1
    frames, pos = [], start
    while pos + _FRAME.size <= len(data):
        length, _ = _FRAME.unpack_from(data, pos)
        frames.append((pos, _FRAME.size + length))
        pos += _FRAME.size + length
    if not frames:
        raise NothingToDamage(f"{path}: no record to damage")
    at, size = frames[len(frames) // 2]
    if how == "checksum":
        flipped = bytearray(data[at + _FRAME.size : at + size])
        flipped[len(flipped) // 2] ^= 0x01  # one bit flipped, the checksum left as it was
        record = data[at : at + _FRAME.size] + bytes(flipped)
    else:
        if how == "undecodable":
            body = b"\x00\xff not json at all \x00"
        elif how == "bad_content":
            # a number where the venue's name goes: the damage (no event can be made holding one)
            body = encode_record(SessionDown("SHFE"), 1.0).replace(b'"SHFE"', b"7")
        else:  # unknown_venue
            body = encode_record(SessionDown("LME"), 1.0)
        record = _FRAME.pack(len(body), zlib.crc32(body)) + body
    path.write_bytes(data[:at] + record + data[at + size :])
