"""A simulated exchange: order books with matching, background liquidity that follows the fair value,
a market-data publisher, and a FIX session to the engine in which every message is real FIX 4.4
built and parsed by quickfix against the venue's dictionary."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import simpy

from engine.config import Instrument
from engine.fix import dictionary
from engine.fix.codec import (
    SOH,
    VIRTUAL_EPOCH,
    Draft,
    FixCodec,
    FixParseError,
    Parsed,
    fix_time,
    fmt_px,
    fmt_qty,
    msg_type_of,
)
from simulator.book import BUY, SELL, BookOrder, OrderBook
from simulator.scenario import VenueConfig
from simulator.transport import SessionEnd, WireLog

if TYPE_CHECKING:
    from simulator.checkers import InvariantChecker
    from simulator.faults import FaultPlan
    from simulator.venue_state import VenueState
    from simulator.wire_checker import WireChecker

ENGINE_COMP_ID: Final = "XMC"
SESSION_TYPES: Final = ("0", "1", "2", "4", "5")  # the session layer's messages (the Logon is answered apart)
MARKET_MAKER: Final = "mm"  # owner of the background liquidity's book orders
# Certification mode, as broker certification suites do it: the order's quantity picks the behaviour.
CERTIFICATION_BANDS = (
    (1, 9, "accept"),  # New, then rests untouched
    (10, 19, "fill"),  # New, Fill
    (20, 29, "partial_then_fill"),  # New, partial (half), Fill
    (30, 39, "partial_then_cancel"),  # New, partial (half), Canceled
    (40, 49, "reject"),  # Rejected (OrdRejReason 99)
    (50, 59, "cancel_race"),  # New; a cancel or replace loses the race: OrderCancelReject 102=0, then the Fill
    (60, 69, "replace_reject"),  # New, rests; a replace is refused: OrderCancelReject 434=2 102=99
)


def certification_behaviour(qty: int) -> str:
    for low, high, behaviour in CERTIFICATION_BANDS:
        if low <= qty <= high:
            return behaviour
    return "accept"


class ClientOrder:
    __slots__ = (
        "cl_ord_id",
        "order_id",
        "symbol",
        "side",
        "qty",
        "price",
        "account",
        "book_order",
        "cum",
        "notional",
        "status",
        "member",
    )

    def __init__(self, cl_ord_id, order_id, symbol, side, qty, price, account, book_order, member):
        self.cl_ord_id, self.order_id, self.symbol, self.side = cl_ord_id, order_id, symbol, side
        self.qty, self.price, self.account, self.book_order = qty, price, account, book_order
        self.cum, self.notional, self.status = 0, 0.0, "0"
        self.member = member


class VenueSession(Protocol):
    """The venue's end of a member's FIX session, as the venue model uses it: SessionEnd in virtual
    time, simulator.wire.WireSession over quickfix."""

    connected: bool
    queued: list[Any]  # application messages held while the session is down

    def send(self, msg: Any) -> object: ...
    def reject(self, err: FixParseError) -> None: ...
    def skip(self) -> None: ...  # lost after sequencing: the receiver sees a gap
    def drop(self) -> None: ...
    def reconnect(self) -> None: ...


class Member:
    """One client of the venue: a FIX session whose TargetCompID is `name`. ClOrdIDs are unique
    within a member; its orders rest in the venue's shared books and trade against anyone's."""

    def __init__(self, name: str, codec: FixCodec, session: VenueSession):
        self.name = name
        self.codec = codec
        self.session = session
        self.logged_on = False
        self.orders: dict[str, ClientOrder] = {}  # by ClOrdID
        self.certifying: dict[str, str] = {}  # ClOrdID -> certification behaviour
        self.pending_new: dict[str, Parsed] = {}  # ClOrdID -> NewOrderSingle received but not processed yet
        self.rejected: set[str] = set()  # ClOrdIDs of NewOrderSingles answered Rejected: never in the book
        self.swallowed: set[str] = set()  # ClOrdIDs lost to a no_ack fault
        self.duplicates: set[str] = set()  # ClOrdIDs whose reports are sent twice
        self.subscriptions: dict[str, str] = {}  # symbol -> MDReqID
        self.published: dict[str, tuple] = {}  # symbol -> top of book last sent to this member
        self.fills: list[tuple[str, str, str, int, float]] = []  # (ClOrdID, symbol, side, qty, px)
        # trades booked to the member's account away from this session (a desk_trade fault: a trade
        # done by phone or on a screen): in its positions, never in an ExecutionReport to it
        self.booked: list[tuple[str, str, str, int, float]] = []
        self.reports_lost = False  # the session is down and the gateway keeps nothing for it (fault reports_lost)
        self.lost_from = 0  # the first MsgSeqNum the gateway did not keep for resending
        self.lost: int = 0  # application messages never delivered because the gateway kept nothing

    def begin_losing(self) -> None:
        """From now until the next logon the gateway keeps nothing for this session (fault reports_lost)."""
        if not self.reports_lost:
            self.reports_lost = True
            self.lost_from = getattr(self.session, "next_out", 0)

    def forget_held(self) -> None:
        """At the logon after a reports_lost cut: what the gateway held for the session is gone, and
        what it had sent into the dead connection is not kept for resending (a ResendRequest for it
        is answered with SequenceReset-GapFill, as FIX has a gateway without a store answer)."""
        if self.reports_lost:
            # the session layer's own messages stay: a ResendRequest for the engine's messages the cut
            # lost is raised as the logon arrives, before this, and must follow the logon's answer
            kept = [msg for msg in self.session.queued if msg_type_of(msg) in SESSION_TYPES]
            self.lost += len(self.session.queued) - len(kept)
            self.session.queued = kept
            history = getattr(self.session, "history", None)  # virtual time; quickfix keeps its own store
            if history is not None:
                gone = [seq for seq in history if seq >= self.lost_from]
                for seq in gone:
                    del history[seq]
                self.lost += len(gone)
            self.reports_lost = False

    def send(self, msg_type: str, fields: list, groups: tuple = ()) -> None:
        self.session.send(self.codec.draft(msg_type, fields, groups, lay_out=True))

    def positions(self, instruments: dict[str, Instrument]) -> dict[str, float]:
        """Signed lots this member traded here, per instrument name, from the venue's own fills."""
        out: dict[str, float] = {}
        for _, symbol, side, qty, _ in self.fills:
            name = instruments[symbol].name
            out[name] = out.get(name, 0.0) + (qty if side == BUY else -qty)
        return out


def _draw(sizes: tuple[int, int]) -> tuple[int, int, int]:
    """(low, count, bits) of a size in [low, high] drawn as random.Random.randint(low, high) draws it."""
    low, high = sizes
    n = high - low + 1
    return low, n, n.bit_length()


class Venue:
    def __init__(
        self, env: simpy.Environment, cfg: VenueConfig, instruments: list[Instrument], rng: random.Random, log: WireLog
    ):
        self.env = env
        self.cfg = cfg
        self.rng = rng
        self.log = log
        self.instruments = {i.symbol: i for i in instruments}
        liq = cfg.liquidity
        # the market maker's ladder: each level's distance from the centre, in ticks, best first
        self._offsets = [liq.half_spread_ticks + k * liq.level_gap_ticks for k in range(liq.levels)]
        # each side's size draw (low, count, bits): what random.Random.randint(low, high) consumes
        self._draws = {side: _draw(sizes) for side, sizes in ((BUY, liq.bid_sizes), (SELL, liq.ask_sizes))}
        # the member's accounts registered here: a position request for any other is not authorised
        self.accounts = {i.account for i in instruments if i.account}
        self.vd = dictionary.load(cfg.dictionary)
        self.codec = self._codec(ENGINE_COMP_ID)
        # the clients, by CompID; the engine's is always there (the only one in virtual time)
        self.members: dict[str, Member] = {}
        self.engine = self.add_member(ENGINE_COMP_ID, lambda _codec: SessionEnd(env, self.codec, log))
        self.books = {s: OrderBook(s) for s in self.instruments}
        self.reference: dict[str, float] = {}  # price-band reference per symbol (the first fair value)
        self.mm_orders: dict[str, list[str]] = {s: [] for s in self.instruments}
        self.by_order_id: dict[str, ClientOrder] = {}  # every member's orders (OrderIDs are the venue's)
        self.dirty: set[str] = set()
        self.ids = 0
        self.rejects_sent = 0
        self.faults: FaultPlan | None = None  # the run's FaultPlan, set by the runner
        self.checker: InvariantChecker | None = (
            None  # the run's InvariantChecker (observes, never changes what happens)
        )
        self.wire: WireChecker | None = (
            None  # the run's WireChecker: what this venue applied, and its book (observes only)
        )
        self.on_disconnect_fault: Callable[[Any, Member], Any] | None = (
            None  # shell callback (fault, member): start a disconnect window now
        )
        self.on_crash_fault: Callable[[Any], Any] | None = None  # runner callback: kill the engine process now
        self.on_node_fault: Callable[[Any], Any] | None = (
            None  # runner callback (failover): crash or pause the primary node now
        )
        self.recorder: VenueState | None = (
            None  # wire mode with --state-dir: a VenueState, written before each report leaves
        )
        self.fair: dict[str, float] = {}  # the last fair values the market maker quoted around
        # the venue clock's time 0 (epoch seconds): virtual time's fixed epoch; in wire mode the wall
        # time the market opened, so TransactTime and the session layer's SendingTime share a clock
        self.clock_base = VIRTUAL_EPOCH
        self.lock_until: tuple[object, float] | None = None  # a price_limit_lock struck by an order: (fault, end)
        self._price_texts: dict[str, dict[int, str]] = {}  # symbol -> price in ticks -> its FIX text
        if cfg.md_interval > 0:
            env.process(self._publisher())

    def _codec(self, client: str) -> FixCodec:
        return FixCodec(self.vd, self.cfg.comp_id, client, {i.name: i.symbol for i in self.instruments.values()})

    def add_member(self, name: str, session: Callable[[FixCodec], VenueSession]) -> Member:
        """A client allowed to trade here, over the session `session` makes from the member's codec."""
        codec = self._codec(name)
        member = self.members[name] = Member(name, codec, session(codec))
        return member

    # the engine's member, as the virtual-time harness and its checkers see the venue
    @property
    def session(self) -> VenueSession:
        return self.engine.session

    @session.setter
    def session(self, value: VenueSession) -> None:
        self.engine.session = value

    @property
    def sim_end(self) -> SessionEnd:
        """The engine's session end in virtual time (its link, observer, vouched messages)."""
        end = self.engine.session
        assert isinstance(end, SessionEnd), "the engine's session is served by quickfix, not virtual time"
        return end

    @property
    def orders(self) -> dict[str, ClientOrder]:
        return self.engine.orders

    @property
    def pending_new(self) -> dict[str, Parsed]:
        return self.engine.pending_new

    @property
    def rejected(self) -> set[str]:
        return self.engine.rejected

    @property
    def fills(self) -> list[tuple[str, str, str, int, float]]:
        return self.engine.fills

    @property
    def logged_on(self) -> bool:
        return self.engine.logged_on

    @logged_on.setter
    def logged_on(self, value: bool) -> None:
        self.engine.logged_on = value

    def _clock(self) -> float:
        """The venue's own clock (virtual time, plus any clock-offset fault) for its timestamps."""
        faults = self._plan_with("clock_offset")
        f = faults.window("clock_offset", self.cfg.name, self.env.now) if faults is not None else None
        return self.clock_base + self.env.now + (f.delay if f else 0.0)

    def _plan_with(self, kind: str) -> FaultPlan | None:
        """The run's fault plan when it has a fault of `kind`, else None: most runs have none of a kind,
        and asking the plan (Python, simulator.faults) costs a call per message or price step."""
        faults = self.faults
        return faults if faults is not None and kind in faults.of_kind else None

    def _fault(self, kind: str, cl_ord_id: str):
        faults = self._plan_with(kind)
        return faults.for_order(kind, self.cfg.name, cl_ord_id, self.env.now) if faults is not None else None

    def _id(self, prefix: str) -> str:
        self.ids += 1
        return f"{self.cfg.name[:2]}{prefix}{self.ids}"

    # ---- background liquidity ---------------------------------------------------------------
    def on_fair(self, fair: dict[str, float]) -> None:
        """Re-quote the background market maker around the new fair values."""
        liq = self.cfg.liquidity
        self.fair = fair
        lock = self._lock()
        for symbol, inst in self.instruments.items():
            value = fair.get(inst.name)
            if value is None:
                continue
            self.reference.setdefault(symbol, value)
            book = self.books[symbol]
            book.withdraw_staged()
            book.cancel_all(self.mm_orders[symbol])
            mm: list[str] = []
            self.mm_orders[symbol] = mm
            center = round(value / inst.tick)
            ref = self.reference[symbol]
            quotes: list[tuple[str, int]] = []
            if lock is None:
                for offset in self._offsets:
                    if center > offset:  # a bid, unless the ladder reaches below a price of one tick
                        quotes.append((BUY, center - offset))
                    quotes.append((SELL, center + offset))
            else:  # locked at the limit: one side only, everything at the limit price
                band = self.cfg.price_band_pct / 100.0
                limit = (
                    math.floor(ref * (1 + band) / inst.tick)
                    if lock.side == "buy"
                    else math.ceil(ref * (1 - band) / inst.tick)
                )
                quotes = [(BUY, limit) if lock.side == "buy" else (SELL, limit)] * liq.levels
            if not book.orders and (lock is not None or liq.half_spread_ticks > 0):
                # nothing else rests and the quotes cannot meet: staged, the same ids and sizes drawn now
                staged = self._sized(quotes)
                book.stage(MARKET_MAKER, f"{self.cfg.name[:2]}M", self.ids + 1, staged)
                self.ids += len(staged)
            else:
                for side, ticks in quotes:
                    order = BookOrder(
                        self._id("M"),
                        MARKET_MAKER,
                        side,
                        ticks,
                        self._size(liq.bid_sizes if side == BUY else liq.ask_sizes),
                    )
                    if not book.rest_if_apart(order):  # it trades with a member's resting order
                        self._match(symbol, order)
                    if order.live:
                        mm.append(order.order_id)
            self.dirty.add(symbol)
            if self.wire is not None:
                self._show_top(symbol)
        if self.cfg.md_interval == 0:
            self.publish()

    def _sized(self, quotes: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
        """Each quote with its size drawn, in quote order: the draws `_size` makes, without its call."""
        bits = self.rng.getrandbits
        draws = self._draws
        out = []
        for side, ticks in quotes:
            low, n, k = draws[side]
            r = bits(k)
            while r >= n:
                r = bits(k)
            out.append((side, ticks, low + r))
        return out

    def _size(self, sizes: tuple[int, int]) -> int:
        """A market maker's order size in [low, high]: the draw random.Random.randint(low, high) makes
        (the same bits from the same generator, so runs keep their hashes), without its call layers."""
        low, high = sizes
        n = high - low + 1
        k = n.bit_length()
        r = self.rng.getrandbits(k)
        while r >= n:
            r = self.rng.getrandbits(k)
        return low + r

    def _lock(self):
        """The price_limit_lock in force now: a window fault, or one an order struck (on_order)."""
        if self.lock_until is not None and self.env.now < self.lock_until[1]:
            return self.lock_until[0]
        faults = self._plan_with("price_limit_lock")
        return faults.window("price_limit_lock", self.cfg.name, self.env.now) if faults is not None else None

    def _show_top(self, symbol: str) -> None:
        if self.wire is None:
            return
        tick = self.instruments[symbol].tick
        bid, ask = self._top(symbol)
        self.wire.on_top(
            self.cfg.name,
            symbol,
            None if bid is None else bid[0] * tick,
            None if ask is None else ask[0] * tick,
            self.env.now,
        )

    # ---- inbound FIX ------------------------------------------------------------------------
    def receive(self, raw: str) -> None:
        """A raw message from the engine's simulated session (virtual time)."""
        try:
            ready = self.sim_end.receive(raw)
        except FixParseError as err:
            self.rejects_sent += 1
            self.log.event(self.env.now, f"{self.cfg.name} rejects: {err}")
            self.session.reject(err)
            return
        for msg in ready:
            self._apply(msg)
        if self.cfg.md_interval == 0 and self.dirty:
            self.publish()

    def _apply(self, msg, member: Member | None = None) -> None:
        """One parsed message from `member` (the engine's when not given)."""
        m = member or self.engine
        if self.wire is not None and m is self.engine:
            if msg.msg_type in ("D", "G") and msg.get(55) in self.instruments:
                self._show_top(msg.get(55))
            self.wire.received(self.cfg.name, msg, self.env.now)
        handler = {
            "A": self._on_logon,
            "D": self._on_new_order,
            "F": self._on_cancel,
            "G": self._on_replace,
            "V": self._on_md_request,
            "H": self._on_status_request,
            "AF": self._on_mass_status,
            "AN": self._on_position_request,
            "0": _ignore,
            "1": _answer_test_request,
            "5": _ignore,
            "3": _ignore,
        }.get(msg.msg_type)
        if handler is None:
            m.session.reject(
                FixParseError(
                    "business", 3, f"MsgType {msg.msg_type} not supported by this venue", msg.msg_type, msg.seq
                )
            )
            return
        if msg.msg_type in ("AF", "AN", "H") and m is self.engine and self.on_disconnect_fault is not None:
            cut = self.faults.on_question(self.cfg.name, msg.msg_type, self.env.now) if self.faults else None
            if cut is not None:  # the session drops as the question arrives, before any answer
                self._cut(cut, m)
        delay = self.cfg.mass_status_delay
        if msg.msg_type == "AN" and self.cfg.position_delay is not None:
            delay = self.cfg.position_delay  # a position service of its own (position_delay_ms)
        if msg.msg_type in ("AF", "AN") and delay > 0:
            # a query over every order or position of the account is answered after the venue's
            # lookup time (mass_status_delay_ms, position_delay_ms), from the state they are in then;
            # an order's own status (H) is answered at once
            ev = self.env.timeout(delay)
            ev.callbacks.append(lambda _e: handler(msg, m))
            return
        handler(msg, m)

    def _on_logon(self, msg, m: Member) -> None:
        m.logged_on = True
        m.session.connected = True
        m.send("A", [(98, "0"), (108, msg.get(108, "30"))])
        m.forget_held()
        m.session.reconnect()  # what was held while disconnected follows the logon
        self.refresh(m)  # then where the market is now, once

    def _reject_order(self, msg, m: Member, reason: int, text: str) -> None:
        m.rejected.add(msg.get(11))
        m.send(
            "8",
            [
                (37, "NONE"),
                (11, msg.get(11)),
                (17, self._id("X")),
                (150, "8"),
                (39, "8"),
                (55, msg.get(55)),
                (54, msg.get(54)),
                (38, msg.get(38, "0")),
                (151, "0"),
                (14, "0"),
                (6, "0"),
                (103, str(reason)),
                (58, text),
                (60, fix_time(self._clock())),
            ],
        )

    def _on_new_order(self, msg, m: Member) -> None:
        cl_ord_id = msg.get(11)
        if not self.cfg.trading:
            m.session.reject(
                FixParseError("business", 4, "this venue publishes market data only", "D", msg.seq, ref_id=cl_ord_id)
            )
            return
        if self.checker is not None:
            self.checker.on_venue_order(self.env.now, cl_ord_id)
        lock = self._fault("price_limit_lock", cl_ord_id)
        if lock is not None and self.fair:  # the market locks at its limit as this order arrives
            if lock.side == "against":
                lock = dataclasses.replace(lock, side="buy" if msg.get(54) == BUY else "sell")
            self.lock_until = (lock, self.env.now + lock.delay)
            self.on_fair(self.fair)
            unlock = self.env.timeout(lock.delay)
            unlock.callbacks.append(lambda _e: self.on_fair(self.fair))
        node_fault = self.on_node_fault
        cut = self._fault("lease_cut", cl_ord_id) if node_fault is not None else None
        if node_fault is not None and cut is not None:
            node_fault(cut)  # the lease service is cut off from a node now; this order goes on as usual
        for kind in ("primary_crash", "primary_pause"):
            node = self._fault(kind, cl_ord_id) if node_fault is not None else None
            if node_fault is not None and node is not None:
                if node.reports_lost:
                    m.begin_losing()  # its own reports are the first the gateway will not keep
                self._accept(msg, m)  # the order is processed; its node fails before hearing back
                node_fault(node)
                return
        crash = self._fault("crash_on_order", cl_ord_id)
        if crash is not None and self.on_crash_fault is not None:
            self._accept(msg, m)  # the order is processed; the engine dies before hearing about it
            self.on_crash_fault(crash)
            return
        cut = self._fault("disconnect_on_order", cl_ord_id)
        if cut is not None and self.on_disconnect_fault is not None and cut.cut_after > 0:
            self._accept(msg, m)  # the order works and its first reports leave; the session drops later
            later = self.env.timeout(cut.cut_after)
            later.callbacks.append(lambda _e: self._cut(cut, m, unless_down=True))
            return
        if cut is not None and self.on_disconnect_fault is not None:
            self._cut(cut, m)  # the session drops as the order arrives (its own reports the first lost):
            self._accept(msg, m)  # it is processed; its reports wait for the next logon
            return
        if self._fault("no_ack", cl_ord_id):
            m.swallowed.add(cl_ord_id)  # lost inside the venue: never acknowledged, never in the book
            return
        late = self._fault("late_ack", cl_ord_id)
        if late is not None:
            m.pending_new[cl_ord_id] = msg  # received, not yet processed: a status query says PendingNew
            ev = self.env.timeout(late.delay)
            ev.callbacks.append(lambda _e: self._late(msg, m))
            return
        self._accept(msg, m)

    def _late(self, msg, m: Member) -> None:
        if m.pending_new.pop(msg.get(11), None) is not None and m.logged_on:  # not cancelled meanwhile
            if self.checker is not None and m is self.engine:
                self.checker.late_acks.add(msg.get(11))
            self._accept(msg, m)

    def _cut(self, cut, m: Member, unless_down: bool = False) -> None:
        """A disconnect fault strikes now: with reports_lost the gateway keeps nothing from here on.
        unless_down: not if the session is down already (a cut that comes some time after its order)."""
        if unless_down and not m.logged_on:
            return
        assert self.on_disconnect_fault is not None  # a cut is struck only when the shell listens
        if cut.reports_lost:
            m.begin_losing()
        self.on_disconnect_fault(cut, m)

    def _accept(self, msg, m: Member) -> None:
        cl_ord_id, symbol = msg.get(11), msg.get(55)
        fault = self._fault("reject", cl_ord_id)
        if fault is not None:
            if fault.level == "order":
                return self._reject_order(msg, m, fault.reason, fault.text or f"rejected (OrdRejReason {fault.reason})")
            # refused before the venue processed it: a session Reject names its MsgSeqNum, a BusinessMessageReject
            # its ClOrdID; the order never existed here (a status question about it finds none)
            kind, name = (
                ("session", "SessionRejectReason") if fault.level == "session" else ("business", "BusinessRejectReason")
            )
            text = fault.text or f"refused ({name} {fault.reason})"
            m.session.reject(FixParseError(kind, fault.reason, text, "D", msg.seq, ref_id=cl_ord_id))
            return None
        side = msg.get(54)
        if side != BUY and side != SELL:  # the dictionary allows sell short and the rest; the book has two sides
            return self._reject_order(msg, m, 11, f"Side {side} not supported: buy (1) or sell (2)")
        if self.cfg.certification and symbol in self.instruments and cl_ord_id not in m.orders:
            return self._certify(msg, m)
        inst = self.instruments.get(symbol)
        if inst is None:
            return self._reject_order(msg, m, 1, f"unknown symbol {symbol}")
        if cl_ord_id in m.orders:
            return self._reject_order(msg, m, 6, f"duplicate ClOrdID {cl_ord_id}")
        qty = float(msg.get(38, "0"))
        if qty <= 0 or not qty.is_integer():
            return self._reject_order(msg, m, 99, f"OrderQty {msg.get(38)} must be a whole number of lots > 0")
        ord_type = msg.get(40)
        price = float(msg.get(44)) if msg.has(44) else None
        ticks = None
        if ord_type == "2":
            if price is None:
                return self._reject_order(msg, m, 99, "limit order without Price (44)")
            ticks = round(price / inst.tick)
            if not inst.on_grid(price):
                return self._reject_order(msg, m, 99, f"price {price} is not on the tick grid of {inst.tick}")
            ref = self.reference.get(symbol)
            if ref and abs(price - ref) / ref * 100 > self.cfg.price_band_pct:
                return self._reject_order(
                    msg, m, 99, f"price {price} outside the daily limit band +/-{self.cfg.price_band_pct}% of {ref:.4f}"
                )
        elif ord_type != "1":
            return self._reject_order(msg, m, 11, f"OrdType {ord_type} not supported")
        order_id = self._id("O")
        book_order = BookOrder(order_id, m.name, msg.get(54), ticks, int(qty), msg.get(59, "0"))
        co = ClientOrder(cl_ord_id, order_id, symbol, book_order.side, int(qty), price, msg.get(1), book_order, m)
        m.orders[cl_ord_id] = co
        self.by_order_id[order_id] = co
        if self._fault("duplicate_report", cl_ord_id):
            m.duplicates.add(cl_ord_id)
        # fill_before_ack: the acknowledgement is built first but overtaken on the way by the fills
        held = self._exec(co, "0", "0", send=not (m is self.engine and self._fault("fill_before_ack", cl_ord_id)))
        partial = self._fault("partial_fill", cl_ord_id)
        if partial is not None:
            self._partial(co, book_order, partial)
        else:
            self._match(symbol, book_order)
            if not book_order.live and co.cum < co.qty:  # IOC/FOK/market remainder
                co.status = "4"
                self._exec(co, "4", "4")
                self._late_fill_after(co)
        if held is not None:
            if self.checker is not None and co.cum:
                self.checker.reordered.add(cl_ord_id)
            m.send("8", held)

    def _partial(self, co: ClientOrder, order: BookOrder, fault) -> None:
        """Fill only `fill_ratio` of the order, in `reports` executions; cancel the rest or leave it working."""
        cap = max(1, math.floor(co.qty * fault.fill_ratio))
        probe = BookOrder(order.order_id, co.member.name, order.side, order.ticks, cap, "3")
        trades, _ = self.books[co.symbol].submit(probe)
        self.dirty.add(co.symbol)
        inst = self.instruments[co.symbol]
        done = sum(t.qty for t in trades)
        for t in trades:  # the other side of each trade is told as well when it is a member
            if t.resting.owner != MARKET_MAKER:
                self._member_fill(self.by_order_id[t.resting.order_id], t.qty, round(t.ticks * inst.tick, 10))
        if done:
            px = round(sum(t.qty * t.ticks for t in trades) / done) * inst.tick
            chunks = [done // fault.reports + (1 if i < done % fault.reports else 0) for i in range(fault.reports)]
            for q in (c for c in chunks if c):
                self._member_fill(co, q, px)
        if co.cum >= co.qty:
            return  # a one-lot order cannot be filled in part: it filled, and nothing is left to cancel
        if fault.rest == "cancel" or order.tif in ("3", "4") or order.ticks is None:
            co.status = "4"
            self._exec(co, "4", "4")
            self._late_fill_after(co)
        # rest == "work": the remainder stays working at the venue (not in the book) until cancelled;
        # with delay_ms the market trades it then, at the order's price, if it still works
        if fault.delay > 0:
            later = self.env.timeout(fault.delay)
            later.callbacks.append(lambda _e: self._trade_working_rest(co))

    def _trade_working_rest(self, co: ClientOrder) -> None:
        """A partial_fill's delay is up: the market trades what is left of the order at its price, if
        the order still works (not if it was cancelled, replaced to its fills or filled meanwhile)."""
        if co.status in ("0", "1") and co.cum < co.qty and co.price is not None:
            self._member_fill(co, co.qty - co.cum, co.price)

    def _match(self, symbol: str, order: BookOrder) -> None:
        inst = self.instruments[symbol]
        trades, _ = self.books[symbol].submit(order)
        for t in trades:
            px = round(t.ticks * inst.tick, 10)
            for side_order in (t.resting, t.aggressor):
                if side_order.owner != MARKET_MAKER:
                    self._member_fill(self.by_order_id[side_order.order_id], t.qty, px)
        if trades:
            self.dirty.add(symbol)
        elif order.live:
            self.dirty.add(symbol)

    def _member_fill(self, co: ClientOrder, qty: int, px: float) -> None:
        co.cum += qty
        co.notional += qty * px
        co.status = "2" if co.cum >= co.qty else "1"
        self._record_fill(co, qty, px)
        self._exec(co, "F", co.status, qty, px)

    def _exec(
        self,
        co: ClientOrder,
        exec_type: str,
        status: str,
        last_qty: int = 0,
        last_px: float = 0.0,
        cl_ord_id: str = "",
        orig: str = "",
        extra: tuple = (),
        send: bool = True,
    ) -> list | None:
        """An ExecutionReport for `co`; with send=False its fields are returned to be sent later."""
        leaves = 0 if status in ("2", "4", "8", "C") else co.qty - co.cum
        avg = co.notional / co.cum if co.cum else 0.0
        cl = cl_ord_id or co.cl_ord_id
        exec_id = self._id("X")
        at = fix_time(self._clock())
        if self.recorder is not None and exec_type != "I":
            self.recorder.order(self, co)
        m = co.member
        if send and not extra and co.cl_ord_id not in m.duplicates:
            # most reports: the body written at once in quickfix's order (`report_draft`), not drafted
            draft = report_draft(m.codec, co, cl, exec_id, exec_type, status, leaves, avg, last_qty, last_px, orig, at)
            if draft is not None:
                m.session.send(draft)
                return None
        fields = [
            (37, co.order_id),
            (11, cl),
            (17, exec_id),
            (150, exec_type),
            (39, status),
            (55, co.symbol),
            (54, co.side),
            (38, fmt_qty(co.qty)),
            (151, fmt_qty(leaves)),
            (14, fmt_qty(co.cum)),
            (6, fmt_px(avg)),
            (60, at),
        ]
        if co.price is not None:
            fields.append((44, fmt_px(co.price)))
        if orig:
            fields.append((41, orig))
        if co.account:
            fields.append((1, co.account))
        if exec_type == "F":
            fields += [(32, fmt_qty(last_qty)), (31, fmt_px(last_px))]
        fields += list(extra)
        if not send:
            return fields
        m.send("8", fields)
        if co.cl_ord_id in m.duplicates:
            # the same report again under a new MsgSeqNum, same ExecID: a PossResend (97=Y), as FIX
            # marks an application message sent again by the application (PossDup, 43=Y, is the
            # session layer's resend under the original MsgSeqNum, with OrigSendingTime)
            dup = m.codec.message("8", fields)
            dup.getHeader().setField(97, "Y")
            m.session.send(dup)
        return None

    def _on_status_request(self, msg, m: Member) -> None:
        """OrderStatusRequest (H): an ExecutionReport with ExecType I and the order's state now. The
        order is found by its ClOrdID, else by its OrderID (a question asked with the ClOrdID a replace
        has just superseded still finds it, answered under its current one)."""
        co = m.orders.get(msg.get(11))
        if co is None and msg.has(37):
            co = next((o for o in m.orders.values() if o.order_id == msg.get(37)), None)
        if co is None and msg.get(11) in m.pending_new:
            new = m.pending_new[msg.get(11)]
            m.send(
                "8",
                [
                    (37, "NONE"),
                    (11, msg.get(11)),
                    (17, self._id("X")),
                    (150, "I"),
                    (39, "A"),
                    (55, new.get(55)),
                    (54, new.get(54)),
                    (38, new.get(38)),
                    (151, new.get(38)),
                    (14, "0"),
                    (6, "0"),
                    (58, "received, not yet processed"),
                    (60, fix_time(self._clock())),
                ],
            )
            return
        if co is None:
            m.send(
                "8",
                [
                    (37, "NONE"),
                    (11, msg.get(11)),
                    (17, self._id("X")),
                    (150, "I"),
                    (39, "8"),
                    (55, msg.get(55)),
                    (54, msg.get(54)),
                    (151, "0"),
                    (14, "0"),
                    (6, "0"),
                    (58, "unknown order"),
                    (60, fix_time(self._clock())),
                ],
            )
            return
        self._exec(co, "I", co.status)

    def _on_mass_status(self, msg, m: Member) -> None:
        """OrderMassStatusRequest (AF), all orders: one status report (ExecType I) per order of this
        member today, the last with LastRptRequested=Y; with none, one report saying so."""
        if not self.cfg.mass_status:  # venue key mass_status = false: per-order status (H) must do
            m.session.reject(
                FixParseError(
                    "business", 3, "OrderMassStatusRequest not supported by this venue", msg.msg_type, msg.seq
                )
            )
            return
        req = msg.get(584)
        orders = list(m.orders.values())
        if not orders:
            symbol = next(iter(self.instruments))
            m.send(
                "8",
                [
                    (37, "NONE"),
                    (17, self._id("X")),
                    (150, "I"),
                    (39, "8"),
                    (55, symbol),
                    (54, "1"),
                    (151, "0"),
                    (14, "0"),
                    (6, "0"),
                    (58, "no orders"),
                    (584, req),
                    (911, "0"),
                    (912, "Y"),
                    (60, fix_time(self._clock())),
                ],
            )
            return
        for i, co in enumerate(orders, 1):
            self._exec(
                co, "I", co.status, extra=((584, req), (911, str(len(orders))), (912, "Y" if i == len(orders) else "N"))
            )

    def _on_position_request(self, msg, m: Member) -> None:
        """RequestForPositions (AN): one PositionReport (AP) per instrument of this venue, the member's
        net position from all its account's trades (those booked away from the session included),
        TotalNumPosReports on each. A venue configured without position reports refuses the AN as
        an unsupported message type (BusinessMessageReject, 380=3); a request for an account not
        registered here is answered by an AO, PosReqResult 3 (not authorised), PosReqStatus rejected."""
        if not self.cfg.position_requests:
            m.session.reject(
                FixParseError("business", 3, "RequestForPositions not supported by this venue", msg.msg_type, msg.seq)
            )
            return
        if self.accounts and msg.get(1) not in self.accounts:  # not an account of this member here
            m.send(
                "AO",
                [
                    (721, self._id("P")),
                    (710, msg.get(710)),
                    (727, "0"),
                    (728, "3"),
                    (729, "2"),
                    (1, msg.get(1) or "?"),
                    (581, msg.get(581) or "1"),
                    (58, f"account {msg.get(1)!r} is not registered for this member"),
                ],
            )
            return
        held: dict[str, int] = {}
        for _, symbol, side, qty, _ in m.fills + m.booked:
            held[symbol] = held.get(symbol, 0) + (qty if side == BUY else -qty)
        symbols = list(self.instruments)
        today = fix_time(self._clock())[:8]
        for symbol in symbols:
            net = held.get(symbol, 0)
            settle = fmt_px(self.reference.get(symbol, 0.0))
            m.send(
                "AP",
                [
                    (721, self._id("P")),
                    (710, msg.get(710)),
                    (724, "0"),
                    (727, str(len(symbols))),
                    (728, "0"),
                    (715, today),
                    (1, msg.get(1)),
                    (581, msg.get(581) or "1"),
                    (55, symbol),
                    (730, settle),
                    (731, "2"),
                    (734, settle),
                ],
                ((702, [[(703, "TOT"), (704, str(max(net, 0))), (705, str(max(-net, 0)))]]),),
            )

    def book_desk_trade(self, symbol: str, side: str, qty: int) -> None:
        """A trade on the engine's account done away from its session (fault desk_trade), at the touch."""
        touch = self.books[symbol].best(SELL if side == BUY else BUY)
        px = touch[0] * self.instruments[symbol].tick if touch else self.reference.get(symbol, 0.0)
        self.engine.booked.append((f"DESK{len(self.engine.booked) + 1}", symbol, side, qty, px))

    def _record_fill(self, co: ClientOrder, qty: int, px: float) -> None:
        co.member.fills.append((co.cl_ord_id, co.symbol, co.side, qty, px))
        if self.recorder is not None:
            self.recorder.fill(self, co, qty, px)
        if self.checker is not None and co.member is self.engine:
            inst = self.instruments[co.symbol]
            self.checker.on_venue_fill(inst.name, qty if co.side == BUY else -qty, self.env.now, co.cl_ord_id)

    def _certify(self, msg, m: Member) -> None:
        """Certification mode: the behaviour comes from the OrderQty band, not from the book."""
        qty = int(float(msg.get(38, "0") or 0))
        behaviour = certification_behaviour(qty)
        if behaviour == "reject":
            return self._reject_order(msg, m, 99, f"certification: OrderQty {qty} means reject")
        price = float(msg.get(44)) if msg.has(44) else self.reference.get(msg.get(55), 0.0)
        co = ClientOrder(msg.get(11), self._id("O"), msg.get(55), msg.get(54), qty, price, msg.get(1), None, m)
        co.status = "0"
        m.orders[co.cl_ord_id] = co
        self.by_order_id[co.order_id] = co
        m.certifying[co.cl_ord_id] = behaviour
        self._exec(co, "0", "0")
        half = qty // 2
        if behaviour == "fill":
            self._member_fill(co, qty, price)
        elif behaviour in ("partial_then_fill", "partial_then_cancel"):
            self._member_fill(co, half, price)
            if behaviour == "partial_then_fill":
                self._member_fill(co, qty - half, price)
            else:
                co.status = "4"
                self._exec(co, "4", "4")

    def _on_cancel(self, msg, m: Member) -> None:
        cl_ord_id, orig = msg.get(11), msg.get(41)
        new = m.pending_new.pop(orig, None)
        if new is not None:  # received, not processed yet: it never reaches the book; cancelled as it is
            m.send(
                "8",
                [
                    (37, "NONE"),
                    (11, cl_ord_id),
                    (41, orig),
                    (17, self._id("X")),
                    (150, "4"),
                    (39, "4"),
                    (55, new.get(55)),
                    (54, new.get(54)),
                    (38, new.get(38)),
                    (151, "0"),
                    (14, "0"),
                    (6, "0"),
                    (58, "cancelled before it was processed"),
                    (60, fix_time(self._clock())),
                ],
            )
            return
        co = m.orders.get(orig)
        if co is not None and self._loses_race(co, m):
            # too late to cancel: the reject says so (102=0) and the fill follows, as FIX requires
            m.send(
                "9",
                [
                    (37, co.order_id),
                    (11, cl_ord_id),
                    (41, orig),
                    (39, "2"),
                    (434, "1"),
                    (102, "0"),
                    (58, "too late to cancel"),
                ],
            )
            self._fill_rest(co)
            return
        if co is None or co.status in ("2", "4", "8", "C"):
            reason, status = ("1", "8") if co is None else ("0", co.status)
            m.send(
                "9",
                [
                    (37, co.order_id if co else "NONE"),
                    (11, cl_ord_id),
                    (41, orig),
                    (39, status),
                    (434, "1"),
                    (102, reason),
                    (58, "unknown order" if co is None else "too late to cancel"),
                ],
            )
            return
        if msg.get(55) != co.symbol or msg.get(54) != co.side:  # as exchanges do: the request must name the order
            m.send(
                "9",
                [
                    (37, co.order_id),
                    (11, cl_ord_id),
                    (41, orig),
                    (39, co.status),
                    (434, "1"),
                    (102, "99"),
                    (58, "Symbol and Side must be the order's"),
                ],
            )
            return
        self.books[co.symbol].cancel(co.order_id)
        co.status = "4"
        self.dirty.add(co.symbol)
        self._exec(co, "4", "4", cl_ord_id=cl_ord_id, orig=orig)
        self._late_fill_after(co)

    def _late_fill_after(self, co: ClientOrder) -> None:
        """Fault late_fill: delay_ms after reporting the order Canceled, the venue reports a Fill of its
        unfilled rest at the order's price (a trade made before the cancel, reported late)."""
        if co.member is not self.engine:
            return
        fault = self._fault("late_fill", co.cl_ord_id)
        if fault is None:
            return
        later = self.env.timeout(fault.delay)
        later.callbacks.append(lambda _e: self._late_fill(co))

    def _late_fill(self, co: ClientOrder) -> None:
        rest = co.qty - co.cum
        if rest <= 0 or co.status != "4":
            return
        if self.checker is not None:
            self.checker.late_fills.add(co.cl_ord_id)
        self._member_fill(co, rest, co.price if co.price is not None else self.reference.get(co.symbol, 0.0))

    def _loses_race(self, co: ClientOrder, m: Member) -> bool:
        """Does this cancel or replace arrive too late (the order fills first)? In certification mode
        by the order's OrderQty band; otherwise when a cancel_race fault fires for the order."""
        if co.status not in ("0", "1"):
            return False
        return m.certifying.get(co.cl_ord_id) == "cancel_race" or (
            m is self.engine and self._fault("cancel_race", co.cl_ord_id) is not None
        )

    def _fill_rest(self, co: ClientOrder) -> None:
        """The rest of a working order trades (at its limit) just before the cancel or replace arrives."""
        if co.book_order is not None and co.book_order.live:
            self.books[co.symbol].cancel(co.order_id)
            self.dirty.add(co.symbol)
        price = co.price if co.price is not None else self.reference.get(co.symbol, 0.0)
        self._member_fill(co, co.qty - co.cum, price)

    def _refuse_replace(self, msg, m: Member, co: ClientOrder | None, reason: str, text: str) -> None:
        m.send(
            "9",
            [
                (37, co.order_id if co else "NONE"),
                (11, msg.get(11)),
                (41, msg.get(41)),
                (39, co.status if co else "8"),
                (434, "2"),
                (102, reason),
                (58, text),
            ],
        )

    def _on_replace(self, msg, m: Member) -> None:
        """OrderCancelReplaceRequest (G): a new price and/or quantity for a working order. The order
        loses its time priority, keeps its fills, and may trade at once at the new price."""
        cl_ord_id, orig = msg.get(11), msg.get(41)
        if self.checker is not None:
            self.checker.on_venue_order(self.env.now, cl_ord_id)
        co = m.orders.get(orig)
        if co is None:
            return self._refuse_replace(msg, m, None, "1", "unknown order")
        behaviour = m.certifying.get(orig)
        if self._loses_race(co, m):
            self._refuse_replace(msg, m, co, "0", "too late to replace")
            return self._fill_rest(co)
        if co.status in ("2", "4", "8", "C"):
            return self._refuse_replace(msg, m, co, "0", "too late to replace: the order is done")
        if behaviour == "replace_reject":
            return self._refuse_replace(msg, m, co, "99", "certification: replace refused")
        if cl_ord_id in m.orders:
            return self._refuse_replace(msg, m, co, "6", f"duplicate ClOrdID {cl_ord_id}")
        if msg.get(55) != co.symbol or msg.get(54) != co.side:  # as exchanges do: the request must name the order
            return self._refuse_replace(msg, m, co, "99", "Symbol and Side must be the order's")
        inst = self.instruments[co.symbol]
        qty = float(msg.get(38, "0"))
        if not qty.is_integer() or qty < co.cum or qty <= 0:
            return self._refuse_replace(
                msg, m, co, "99", f"OrderQty {msg.get(38)} must be whole lots >= CumQty {co.cum}"
            )
        price = float(msg.get(44)) if msg.has(44) else co.price
        if price is None or not inst.on_grid(price):
            return self._refuse_replace(msg, m, co, "99", f"price {price} is not on the tick grid of {inst.tick}")
        ref = self.reference.get(co.symbol)
        if ref and abs(price - ref) / ref * 100 > self.cfg.price_band_pct:
            return self._refuse_replace(msg, m, co, "99", f"price {price} outside the daily limit band")
        del m.orders[orig]
        co.cl_ord_id, co.qty, co.price = cl_ord_id, int(qty), price
        m.orders[cl_ord_id] = co
        co.status = "2" if co.cum >= co.qty else ("1" if co.cum else "0")
        if behaviour is not None:  # certification orders do not rest in the book
            m.certifying[cl_ord_id] = m.certifying.pop(orig)
            self._exec(co, "5", co.status, orig=orig)
            return
        old = co.book_order
        if old is not None:
            self.books[co.symbol].cancel(old.order_id)
        book_order = BookOrder(
            co.order_id, m.name, co.side, round(price / inst.tick), co.qty - co.cum, old.tif if old is not None else "0"
        )
        co.book_order = book_order
        self.dirty.add(co.symbol)
        self._exec(co, "5", co.status, orig=orig)
        if co.status in ("0", "1"):
            self._match(co.symbol, book_order)

    def _on_md_request(self, msg, m: Member) -> None:
        req_id = msg.get(262)
        for entry in msg.group(146, (55,)):
            symbol = entry[55]
            if symbol not in self.instruments:
                m.send("Y", [(262, req_id), (281, "0"), (58, f"unknown symbol {symbol}")])
                continue
            m.subscriptions[symbol] = req_id
            m.send("W", [(262, req_id), (55, symbol)], ((268, self._entries(symbol, snapshot=True)),))
            m.published[symbol] = self._top(symbol)

    # ---- market data ------------------------------------------------------------------------
    def _top(self, symbol: str) -> tuple:
        book = self.books[symbol]
        return book.best(BUY), book.best("2")

    def _entries(self, symbol: str, snapshot: bool, previous: tuple = (None, None)) -> list:
        entries = []
        for etype, level, before in zip(("0", "1"), self._top(symbol), previous):
            if snapshot:
                if level is not None:
                    entries.append([(269, etype), (270, self._price_text(symbol, level[0])), (271, str(level[1]))])
            elif level != before:
                if level is None:
                    entries.append([(279, "2"), (269, etype), (55, symbol)])
                else:
                    px = self._price_text(symbol, level[0])
                    entries.append([(279, "1"), (269, etype), (55, symbol), (270, px), (271, str(level[1]))])
        return entries

    def _price_text(self, symbol: str, ticks: int) -> str:
        """The FIX text of a price of `symbol` given in ticks, formatted once per price level."""
        texts = self._price_texts.setdefault(symbol, {})
        text = texts.get(ticks)
        if text is None:
            text = texts[ticks] = fmt_px(ticks * self.instruments[symbol].tick)
        return text

    def publish(self) -> None:
        """Incremental refreshes (X) of what changed since each subscriber was last told."""
        faults = self._plan_with("md_stale")
        if faults is not None and faults.window("md_stale", self.cfg.name, self.env.now):
            return  # the feed has stopped; changes pile up until it resumes
        for m in self.members.values():
            if not m.logged_on:
                continue  # nothing is queued for a session that is down: its logon brings it up to date
            self._refresh(m, sorted(self.dirty))
        self.dirty.clear()

    def refresh(self, m: Member) -> None:
        """A member that logged on again: told once what changed in its subscriptions while it was away."""
        self._refresh(m, sorted(m.subscriptions))

    def _refresh(self, m: Member, symbols: list[str]) -> None:
        """Send `m` what changed in `symbols` since it was last told, one refresh per symbol.

        A gateway keeps execution reports for a session that is down, never a backlog of quotes: those
        would arrive after the logon as if they were the market now. At the logon the subscriber is
        told once what changed while it was away (`_on_logon`), and asks again for a snapshot."""
        faults = self._plan_with("md_gap")
        for symbol in symbols:
            req_id = m.subscriptions.get(symbol)
            if req_id is None:
                continue
            top = self._top(symbol)
            before = m.published.get(symbol, (None, None))
            if top[0] == before[0] and top[1] == before[1]:
                continue  # nothing this member was told changed
            m.published[symbol] = top
            if faults is not None and faults.for_message("md_gap", self.cfg.name, "down", self.env.now):
                m.session.skip()  # lost after sequencing: the subscriber sees a gap
                continue
            m.session.send(self._refresh_draft(m, req_id, symbol, top, before))

    def _refresh_draft(self, m: Member, req_id: str, symbol: str, top: tuple, before: tuple) -> Draft | Any:
        """An incremental refresh of the sides of `symbol` whose best level moved from `before` to `top`,
        with its body in the order quickfix puts it (MDReqID, NoMDEntries, the entries as `_entries`
        writes them: the dictionary's order), written as text so the session frames it without
        quickfix's build (engine.fix.codec.laid_out: ~10 us a message, most of a run's messages). A
        dictionary that adds its own fields to refreshes has them built by quickfix."""
        if "X" in m.codec.vd.outbound:
            return m.codec.draft("X", [(262, req_id)], ((268, self._entries(symbol, False, before)),))
        count = 0
        body = ""
        for etype, level, was in (("0", top[0], before[0]), ("1", top[1], before[1])):
            if level == was:
                continue
            count += 1
            if level is None:
                body += f"279=2{SOH}269={etype}{SOH}55={symbol}{SOH}"
            else:
                body += f"279=1{SOH}269={etype}{SOH}55={symbol}{SOH}270={self._price_text(symbol, level[0])}{SOH}271={level[1]}{SOH}"
        return Draft("X", f"262={req_id}{SOH}268={count}{SOH}{body}", True, None, True)

    def _publisher(self):
        while True:
            yield self.env.timeout(self.cfg.md_interval)
            if self.dirty:
                self.publish()

    def disconnect(
        self, cancel_resting: bool | None = None, member: Member | None = None, reports_lost: bool = False
    ) -> None:
        """A member's session drops (the engine's when not given): cancel its resting orders if this
        venue does (its cancel_on_disconnect, unless the fault that cut it says otherwise); with
        reports_lost the gateway keeps none of the reports meant for the session until it logs on again."""
        m = member or self.engine
        m.logged_on = False
        if reports_lost:
            m.begin_losing()
        m.session.drop()
        if self.cfg.cancel_on_disconnect if cancel_resting is None else cancel_resting:
            for co in m.orders.values():
                if co.status in ("0", "1"):
                    if co.book_order is not None:
                        self.books[co.symbol].cancel(co.order_id)
                    co.status = "4"
                    self.dirty.add(co.symbol)
                    self._exec(co, "4", "4")  # queued: delivered after the next logon

    def engine_positions(self) -> dict[str, float]:
        """Signed lots the engine traded here, per symbol, from the venue's own fills."""
        out: dict[str, float] = {}
        for _, symbol, side, qty, _ in self.engine.fills:
            out[symbol] = out.get(symbol, 0.0) + (qty if side == BUY else -qty)
        return out


def report_draft(
    codec: FixCodec,
    co: ClientOrder,
    cl_ord_id: str,
    exec_id: str,
    exec_type: str,
    status: str,
    leaves: float,
    avg: float,
    last_qty: float,
    last_px: float,
    orig: str,
    at: str,
) -> Draft | None:
    """An ExecutionReport of `co` without extra fields, its body written in quickfix's order (by tag
    number) in one piece: the very draft `codec.draft("8", fields, lay_out=True)` makes of the report's
    fields (tests/test_venue_fills.py holds them equal), without building, sorting and joining them one by one.
    None when that draft would differ: the dictionary adds fields of its own to reports, or a value
    carries the field delimiter (quickfix builds those)."""
    if "8" in codec.vd.outbound:
        return None
    account = co.account
    price = co.price
    text = (
        (f"1={account}{SOH}" if account else "")
        + f"6={fmt_px(avg)}{SOH}11={cl_ord_id}{SOH}14={fmt_qty(co.cum)}{SOH}17={exec_id}{SOH}"
        + (f"31={fmt_px(last_px)}{SOH}32={fmt_qty(last_qty)}{SOH}" if exec_type == "F" else "")
        + f"37={co.order_id}{SOH}38={fmt_qty(co.qty)}{SOH}39={status}{SOH}"
        + (f"41={orig}{SOH}" if orig else "")
        + (f"44={fmt_px(price)}{SOH}" if price is not None else "")
        + f"54={co.side}{SOH}55={co.symbol}{SOH}60={at}{SOH}150={exec_type}{SOH}151={fmt_qty(leaves)}{SOH}"
    )
    fields = 12 + (1 if account else 0) + (2 if exec_type == "F" else 0) + (1 if orig else 0) + (price is not None)
    if text.count(SOH) != fields:
        return None
    return Draft("8", text, False, cl_ord_id, True)


def _answer_test_request(msg, m: Member) -> None:
    """TestRequest (1): a Heartbeat naming its TestReqID, as a FIX session must answer (quickfix does
    at the wire)."""
    m.send("0", [(112, msg.get(112, ""))])


def _ignore(msg, m: Member) -> None:
    """Heartbeat, Logout and session Reject need nothing from the venue model."""
