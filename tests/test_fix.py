"""FIX in virtual time: venue dictionaries, codec round trips, and malformed input answered as FIX says."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.config import Instrument
from engine.core.events import SendCancel, SendOrder, Subscribe
from engine.fix.codec import VIRTUAL_EPOCH, FixCodec, FixParseError, fix_time, fmt_px, fmt_qty, msg_type_of
from engine.fix.dictionary import DictionaryError, load

ORDER = SendOrder("SHFE", "E1-000001A1", "CU", "cu2603", "1", 5, 70010.0, "2", "3", "SHFE-ARB-01", "E1-000001")


def codec(name: str, sender="XMC", target="VENUE") -> FixCodec:
    return FixCodec(load(name), sender, target, {"CU": "cu2603", "HG": "HGH6"})


def wire(c: FixCodec, action, seq: int = 1) -> str:
    return c.frame(c.encode(action, 1.8e9), seq, 1.8e9)


def test_order_round_trip_carries_venue_fields():
    c = codec("SHFE")
    msg = c.parse(wire(c, ORDER))
    assert msg.get(11) == ORDER.cl_ord_id and msg.get(1) == "SHFE-ARB-01" and msg.get(20001) == "2"


def test_shfe_requires_account():
    c = codec("SHFE")
    with pytest.raises(FixParseError) as err:
        c.parse(wire(c, SendOrder("SHFE", "C1", "CU", "cu2603", "1", 5, 70010.0, "2", "3", "", "D1")))
    assert err.value.kind == "session" and err.value.reason == 1 and err.value.ref_tag == 1


def test_comex_requires_its_own_tags_that_the_engine_adds():
    c = codec("COMEX")
    order = SendOrder("COMEX", "C2", "HG", "HGH6", "2", 2, 4.5, "2", "3", "", "D1")
    msg = c.parse(wire(c, order))
    assert msg.get(1028) == "N" and msg.get(9702) == "2"
    cancel = SendCancel("COMEX", "C2C1", "C2", "HG", "HGH6", "2", 2, "D1")
    assert c.parse(wire(c, cancel, 2)).get(41) == "C2"
    shfe = codec("SHFE")
    with pytest.raises(FixParseError) as err:  # an SHFE-shaped order fails COMEX's dictionary
        c.parse(wire(shfe, ORDER))
    assert err.value.reason == 1


def test_market_data_request_and_refresh_round_trip():
    c = codec("SHFE")
    assert c.parse(wire(c, Subscribe("SHFE", "CU", "cu2603", "MD1"))).get(262) == "MD1"
    w = c.message(
        "W",
        [(262, "MD1"), (55, "cu2603")],
        ((268, [[(269, "0"), (270, "70000"), (271, "9")], [(269, "1"), (270, "70010"), (271, "3")]]),),
    )
    (q,) = c.decode(c.parse(c.frame(w, 2, 1.8e9)), "SHFE")
    assert (q.instrument, q.bid, q.bid_size, q.ask, q.ask_size) == ("CU", 70000, 9, 70010, 3)
    x = c.message("X", [(262, "MD1")], ((268, [[(279, "2"), (269, "1"), (55, "cu2603")]]),))
    (q,) = c.decode(c.parse(c.frame(x, 3, 1.8e9)), "SHFE")
    assert q.ask is None and q.bid == 70000


def _market_data_by_group(c: FixCodec, msg, snapshot: bool):
    """The reading `FixCodec._market_data` must give, made the plain way: the NoMDEntries entries as
    `Parsed.group` reads them, a tag's first value for the symbol and the resend flags, then each entry
    applied to the book in turn (a snapshot clears a symbol's sides first); a message with an entry it
    cannot read leaves the book as it was."""
    members = (269, 270, 271) if snapshot else (279, 269, 55, 270, 271)
    first: dict[str, str] = {}
    for tag, value in msg._pairs:
        first.setdefault(tag, value)
    touched: list[str] = []
    book = {symbol: list(top) for symbol, top in c._md_top.items()}
    if snapshot and first.get("55") and not msg.group(268, members):  # no entries: the symbol's book is empty
        book[first["55"]] = [None, 0.0, None, 0.0]
        touched.append(first["55"])
    for entry in msg.group(268, members):
        symbol = entry.get(55) or first.get("55") or ""
        top = book.setdefault(symbol, [None, 0.0, None, 0.0])
        if snapshot and symbol not in touched:
            top[:] = [None, 0.0, None, 0.0]
        idx = {"0": 0, "1": 2}.get(entry.get(269, ""))
        if idx is None:
            continue
        if entry.get(279, "0") == "2":
            top[idx], top[idx + 1] = None, 0.0
        else:
            try:
                top[idx] = float(entry[270])
            except ValueError:
                raise ValueError("270") from None
            try:
                top[idx + 1] = float(entry.get(271, "0"))
            except ValueError:
                raise ValueError("271") from None
            if top[idx + 1] < 0:
                raise ValueError("271")
        if symbol not in touched:
            touched.append(symbol)
    c._md_top.clear()
    c._md_top.update(book)
    quotes = [(c.symbol_to_instrument.get(s, s), *c._md_top[s]) for s in touched]
    return quotes, first.get("43") == "Y" or first.get("97") == "Y"


_MD_MEMBERS = st.sampled_from(["279", "269", "55", "270", "271"])
_MD_OTHERS = st.sampled_from(["268", "43", "97", "262", "290", "83"])
_MD_VALUES = st.sampled_from(["0", "1", "2", "Y", "", "70010", "4.5", "9", "cu2603", "HGH6"])
_MD_ENTRY = st.lists(st.tuples(st.one_of(_MD_MEMBERS, _MD_MEMBERS, _MD_MEMBERS, _MD_OTHERS), _MD_VALUES), max_size=6)
_MD_MESSAGE = st.builds(
    lambda head, group, entries, tail: [*head, *group, *(pair for entry in entries for pair in entry), *tail],
    st.lists(st.tuples(_MD_OTHERS, _MD_VALUES), max_size=3),
    st.sampled_from([[("268", "2")], []]),
    st.lists(
        st.builds(
            lambda first, rest: [first, *rest], st.tuples(st.sampled_from(["279", "269"]), _MD_VALUES), _MD_ENTRY
        ),
        max_size=4,
    ),
    st.lists(st.tuples(_MD_OTHERS, _MD_VALUES), max_size=2),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_MD_MESSAGE, min_size=1, max_size=3), st.booleans())
def test_market_data_is_read_as_its_entries_read_by_group(messages, snapshot):
    """Any sequence of refreshes (members repeated, missing, out of place, odd values, resend flags,
    fields after the group) leaves the same quotes, resend flag and book, or the same error, as the
    entries `Parsed.group` reads applied one by one: the one-pass reading is only faster."""
    from engine.fix.codec import Parsed, _Unreadable

    fast, plain = codec("SHFE"), codec("SHFE")
    for pairs in messages:
        msg = Parsed("".join(f"{t}={v}\x01" for t, v in [("35", "W" if snapshot else "X"), *pairs]))
        try:
            quotes, resend = fast._market_data(msg, snapshot)
            got = ([(q.instrument, q.bid, q.bid_size, q.ask, q.ask_size) for q in quotes], resend)
        except _Unreadable as e:  # a price missing (270) or not a number (270, 271): the tag it names
            got = ("unreadable", e.tag)
        try:
            want = _market_data_by_group(plain, msg, snapshot)
        except KeyError as e:
            want = ("unreadable", int(e.args[0]))
        except ValueError as e:
            want = ("unreadable", 270 if "270" in str(e) else 271)
        assert got == want
        assert fast._md_top == plain._md_top


def _shfe_with_a_snapshot() -> FixCodec:
    """An SHFE session's codec that has read a snapshot (W): bid 70000 x 9, offer 70010 x 3."""
    c = codec("SHFE")
    w = c.message(
        "W",
        [(262, "MD1"), (55, "cu2603")],
        ((268, [[(269, "0"), (270, "70000"), (271, "9")], [(269, "1"), (270, "70010"), (271, "3")]]),),
    )
    c.decode(c.parse(c.frame(w, 2, 1.8e9)), "SHFE")
    return c


def test_resent_market_data_keeps_the_book_in_sequence_but_is_never_priced_from():
    """A PossDup resend of a refresh (a gap filled after a reconnect) is history: no quote comes of
    it, yet the next live refresh carries its change, as the incremental stream says."""
    c = _shfe_with_a_snapshot()
    old_bid = [(279, "1"), (269, "0"), (55, "cu2603"), (270, "69990"), (271, "4")]
    resent = c.frame(c.message("X", [(262, "MD1")], ((268, [old_bid]),)), 3, 1.8e9, poss_dup=True)
    assert c.decode(c.parse(resent), "SHFE") == []
    new_ask = [(279, "1"), (269, "1"), (55, "cu2603"), (270, "70020"), (271, "5")]
    (q,) = c.decode(c.parse(c.frame(c.message("X", [(262, "MD1")], ((268, [new_ask]),)), 4, 1.8e9)), "SHFE")
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (69990, 4, 70020, 5)
    again = c.message("X", [(262, "MD1")], ((268, [new_ask]),))
    again.getHeader().setField(97, "Y")  # an application-level resend (PossResend) is history too
    assert c.decode(c.parse(c.frame(again, 5, 1.8e9)), "SHFE") == []


def test_after_a_gap_a_side_is_unknown_until_a_refresh_names_it_again():
    """Refreshes were lost (a sequence gap): one of them withdrew the bids (the market locked
    limit-down). The next refresh names only the offer: the bid the lost refresh removed must not stand
    as if quoted (found by explore: an SHFE buy priced against a crossed book of a stale bid and the
    lock's offer, 2.6% from the venue's last two-sided mid)."""
    c = _shfe_with_a_snapshot()
    offer = [(279, "1"), (269, "1"), (55, "cu2603"), (270, "68330"), (271, "40")]
    refresh = c.frame(c.message("X", [(262, "MD1")], ((268, [offer]),)), 4, 1.8e9)
    twin = c.fork()
    (stale,) = twin.decode(twin.parse(refresh), "SHFE")  # without forgetting: the old bid stands
    assert stale.bid == 70000
    c.forget_book()
    (q,) = c.decode(c.parse(refresh), "SHFE")
    assert (q.bid, q.ask, q.ask_size) == (None, 68330, 40)


def test_the_live_shell_forgets_a_venues_book_when_its_session_reports_a_gap(config):
    """Live shell: the SessionGap queued by toAdmin resets that venue's codec on the engine thread,
    in order with the messages around it, before the core hears of the gap."""
    import threading

    from engine.core.engine_core import EngineCore
    from engine.core.events import SessionGap
    from engine.shell.live import LiveEngine

    engine = LiveEngine(EngineCore(config), [], quiet_gc=False, session_events=False)
    engine.codecs["SHFE"] = c = codec("SHFE")
    c._md_top["cu2603"] = [70000.0, 9.0, 70010.0, 3.0]
    seen: list = []
    done = threading.Event()

    def dispatch(event) -> None:
        seen.append((event, dict(c._md_top)))
        done.set()

    engine._dispatch = dispatch  # type: ignore[method-assign]
    engine.submit(SessionGap("SHFE"))
    _engine_thread_until(engine, done)
    assert seen == [(SessionGap("SHFE"), {})]


def _engine_thread_until(engine, done) -> None:
    """Run a LiveEngine's engine thread until `done` is set (at most 10 s), then stop it."""
    import threading

    thread = threading.Thread(target=engine._run, daemon=True)
    thread.start()
    try:
        assert done.wait(10)
    finally:
        engine._stop.set()
        thread.join(10)


@pytest.mark.parametrize(
    "mutate,kind,reason",
    [
        (lambda s: s.replace("\x0154=1\x01", "\x0154=Z\x01"), "session", 5),  # value out of range
        (lambda s: s.replace("\x0138=5\x01", "\x0138=five\x01"), "session", 6),  # bad data format
        (lambda s: s.replace("\x0135=D\x01", "\x0135=ZZ\x01"), "business", 3),  # unsupported MsgType
        (lambda s: s[:-4] + "000\x01", "garbled", 0),  # bad CheckSum
        (lambda s: s.replace("\x019=", "\x019=1"), "garbled", 0),  # bad BodyLength
    ],
)
def test_malformed_messages_get_the_fix_answer(mutate, kind, reason):
    c = codec("SHFE")
    raw = wire(c, ORDER)
    bad = mutate(raw)
    if kind != "garbled":  # keep framing valid so that the content is what fails
        body = bad[bad.index("\x0135=") : bad.rindex("\x0110=") + 1].lstrip("\x01")
        head = f"8=FIX.4.4\x019={len(body)}\x01"
        bad = head + body + f"10={sum((head + body).encode()) % 256:03d}\x01"
    with pytest.raises(FixParseError) as err:
        c.parse(bad)
    assert err.value.kind == kind and err.value.reason == reason


def test_unknown_venue_dictionary_is_a_clear_error():
    with pytest.raises(DictionaryError, match="no such venue dictionary"):
        load("NYMEX_DOES_NOT_EXIST")


def test_venue_answers_a_malformed_order_with_session_reject_and_engine_maps_it(spread_scenario):
    """Through the simulator: a garbage field reaches the venue, which answers 3; the engine audits it."""
    import simpy

    from simulator.link import Latency, Link
    from simulator.rng import fork
    from simulator.transport import WireLog
    from simulator.venue import Venue

    env = simpy.Environment()
    log = WireLog()
    vcfg = spread_scenario.venues["SHFE"]
    venue = Venue(env, vcfg, [spread_scenario.engine.instruments["CU"]], fork(1, "v"), log)
    replies: list[str] = []
    venue.session.link = Link(env, "down", Latency("constant", 0.001), fork(1, "l"), replies.append)
    c = FixCodec(load("SHFE"), "XMC", vcfg.comp_id, {"CU": "cu2603"})
    raw = wire(c, SendOrder("SHFE", "C1", "CU", "cu2603", "1", 5, 70010.0, "2", "3", "", "D1"))
    venue.receive(raw)
    env.run(until=1)
    (answer,) = replies
    msg = c.parse(answer)
    assert msg.msg_type == "3" and msg.get(373) == "1" and msg.get(371) == "1"
    assert venue.rejects_sent == 1


@pytest.mark.parametrize(
    "qty,expected,filled",
    [
        (5, [("8", "0")], 0),
        (15, [("8", "0"), ("8", "F")], 15),
        (25, [("8", "0"), ("8", "F"), ("8", "F")], 25),
        (35, [("8", "0"), ("8", "F"), ("8", "4")], 17),
        (45, [("8", "8")], 0),
    ],
)
def test_certification_mode_behaviour_follows_the_quantity_band(spread_scenario, qty, expected, filled):
    replies, send = _cert_venue(spread_scenario)
    send(SendOrder("SHFE", f"C{qty}", "CU", "cu2603", "1", qty, 70010.0, "2", "0", "ACC", "D1"))
    answers = replies()
    assert [(m.msg_type, m.get(150)) for m in answers] == expected
    # the fills add up to what each report says traded, never more than the order, at its limit
    fills = [float(m.get(32)) for m in answers if m.get(150) == "F"]
    assert all(float(m.get(31)) == 70010.0 for m in answers if m.get(150) == "F")
    assert float(answers[-1].get(14)) == sum(fills) == filled


def test_certification_cancel_race_is_answered_as_fix_requires(spread_scenario):
    replies, send = _cert_venue(spread_scenario)
    send(SendOrder("SHFE", "R1", "CU", "cu2603", "2", 55, 70010.0, "2", "0", "ACC", "D1"))
    send(SendCancel("SHFE", "R1C1", "R1", "CU", "cu2603", "2", 55, "D1", "ACC"))
    got = [(m.msg_type, m.get(150) or m.get(102)) for m in replies()]
    assert got == [("8", "0"), ("9", "0"), ("8", "F")]  # too late to cancel (102=0), then the fill


def _cert_venue(sc):
    import dataclasses

    import simpy

    from simulator.link import Latency, Link
    from simulator.rng import fork
    from simulator.transport import WireLog
    from simulator.venue import Venue

    env = simpy.Environment()
    cfg = dataclasses.replace(sc.venues["SHFE"], certification=True)
    venue = Venue(env, cfg, [sc.engine.instruments["CU"]], fork(1, "v"), WireLog())
    raw: list[str] = []
    venue.session.link = Link(env, "down", Latency("constant", 0.001), fork(1, "l"), raw.append)
    c = FixCodec(load("SHFE"), "XMC", cfg.comp_id, {"CU": "cu2603"})
    seq = iter(range(1, 100))

    def send(action) -> None:
        venue.receive(wire(c, action, next(seq)))
        env.run(until=env.now + cfg.mass_status_delay + 0.01)  # an AF or AN is answered after the venue's lookup

    def replies():
        return [c.parse(r) for r in raw]

    return replies, send


def test_a_status_query_or_cancel_for_an_order_received_but_not_processed(spread_scenario):
    """late_ack: the venue holds a NewOrderSingle before processing it. A status query meanwhile says
    PendingNew (39=A), never unknown; a cancel meanwhile cancels it and it is never processed."""
    import dataclasses

    import simpy

    from engine.core.events import SendStatusRequest
    from simulator.faults import Fault, FaultPlan
    from simulator.link import Latency, Link
    from simulator.rng import fork
    from simulator.transport import WireLog
    from simulator.venue import Venue

    env = simpy.Environment()
    cfg = spread_scenario.venues["SHFE"]
    venue = Venue(env, cfg, [spread_scenario.engine.instruments["CU"]], fork(1, "v"), WireLog())
    venue.on_fair({"CU": 70000.0})
    venue.logged_on = True  # as after a Logon
    late = Fault(0, "late_ack", "SHFE", 0.0, 1e9, "any", 1.0, 0, delay=1.0)
    venue.faults = FaultPlan([dataclasses.replace(late)], lambda n: fork(1, n))
    raw: list[str] = []
    venue.session.link = Link(env, "down", Latency("constant", 0.001), fork(1, "l"), raw.append)
    c = FixCodec(load("SHFE"), "XMC", cfg.comp_id, {"CU": "cu2603"})
    seq = iter(range(1, 100))

    def send(action, dt: float = 0.01) -> None:
        venue.receive(wire(c, action, next(seq)))
        env.run(until=env.now + dt)

    send(SendOrder("SHFE", "L1", "CU", "cu2603", "1", 5, 70010.0, "2", "0", "ACC", "D1"))
    send(SendStatusRequest("SHFE", "L1", "", "cu2603", "1"))
    send(SendOrder("SHFE", "L2", "CU", "cu2603", "1", 5, 70010.0, "2", "0", "ACC", "D2"))
    send(SendCancel("SHFE", "L2C1", "L2", "CU", "cu2603", "1", 5, "D2", "ACC"), dt=2.0)
    got = [(m.get(11), m.get(150), m.get(39)) for m in map(c.parse, raw) if m.msg_type == "8"]
    assert ("L1", "I", "A") in got  # PendingNew while held
    (held,) = [m for m in map(c.parse, raw) if m.msg_type == "8" and m.get(39) == "A"]
    assert (held.get(38), held.get(151), held.get(14)) == ("5", "5", "0")  # all of it still to trade
    assert ("L2C1", "4", "4") in got and not any(cl == "L2" for cl, _, _ in got)  # cancelled, never processed
    assert any(cl == "L1" and et == "0" for cl, et, _ in got)  # L1 processed after its delay


def test_quickfix_resends_of_a_fenced_epoch_become_gap_fills(config):
    """Issue 10, defect 4 (live shell): after a takeover, a PossDup resend of an older epoch's order
    raises DoNotSend, which quickfix turns into SequenceReset-GapFill; this epoch's resends go out."""
    import dataclasses

    import quickfix as fix

    from engine.core.engine_core import EngineCore
    from engine.shell.live import LiveEngine

    engine = LiveEngine(EngineCore(dataclasses.replace(config, epoch=2)), [], quiet_gc=False, session_events=False)

    def resend(cl_ord_id: str) -> fix.Message:
        m = fix.Message()
        m.getHeader().setField(35, "D")
        m.getHeader().setField(43, "Y")
        m.setField(11, cl_ord_id)
        return m

    with pytest.raises(fix.DoNotSend):
        engine.toApp(resend("E1-000001B1"), None)
    engine.toApp(resend("E2-000004B1"), None)
    engine.toApp(resend("E1-000001B2R-E2"), None)  # an old decision's order sent under this epoch
    assert engine.fenced_resends == 1 and len(engine.messages) == 2


def test_quickfix_asking_for_a_gap_again_tells_the_core_of_the_gap(config):
    """Live shell: quickfix answers a sequence gap itself; the ResendRequest it sends (toAdmin) is the
    engine's one sign of it, and becomes a SessionGap for the venue (its books are not fresh)."""
    import quickfix as fix

    from engine.core.engine_core import EngineCore
    from engine.core.events import SessionGap
    from engine.shell.live import LiveEngine

    engine = LiveEngine(EngineCore(config), [], quiet_gc=False, session_events=False)
    engine.by_target["SHFE-GW"] = "SHFE"
    ask = fix.Message()
    ask.getHeader().setField(35, "2")
    engine.toAdmin(ask, fix.SessionID("FIX.4.4", "XMC", "SHFE-GW"))
    heartbeat = fix.Message()
    heartbeat.getHeader().setField(35, "0")
    engine.toAdmin(heartbeat, fix.SessionID("FIX.4.4", "XMC", "SHFE-GW"))
    assert engine.events.get_nowait() == SessionGap("SHFE") and engine.events.empty()


@pytest.mark.parametrize("symbol,side", [("cu2604", "1"), ("cu2603", "2")])
def test_a_cancel_or_replace_that_does_not_name_the_order_is_refused(spread_scenario, symbol, side):
    """As exchanges do: a cancel or replace whose Symbol or Side is not the order's is refused
    (OrderCancelReject, 102=99) and the order keeps working; with the order's own, it is cancelled."""
    from engine.core.events import SendReplace

    replies, send = _cert_venue(spread_scenario)
    send(SendOrder("SHFE", "K1", "CU", "cu2603", "1", 1, 69000.0, "2", "0", "ACC", "D1"))  # rests (far from touch)
    send(SendCancel("SHFE", "K1C1", "K1", "CU", symbol, side, 1, "D1", "ACC"))
    send(SendReplace("SHFE", "K1M1", "K1", "CU", symbol, side, 1, 69010.0, "0", "D1", "ACC"))
    send(SendCancel("SHFE", "K1C2", "K1", "CU", "cu2603", "1", 1, "D1", "ACC"))
    got = [(m.msg_type, m.get(150) or m.get(102)) for m in replies()]
    assert got == [("8", "0"), ("9", "99"), ("9", "99"), ("8", "4")]


@pytest.mark.parametrize("venue_name", ["SHFE", "COMEX"])
def test_a_position_request_is_answered_with_position_reports_the_engine_reads(spread_scenario, venue_name):
    """RequestForPositions (AN) passes each venue's dictionary; the venue answers one PositionReport
    (AP) per instrument, trades booked to the account away from the session included, and the
    engine's codec reads its net position (LongQty - ShortQty)."""
    from engine.core.events import SendPositionRequest

    c = codec(venue_name)
    an = c.parse(wire(c, SendPositionRequest(venue_name, "PR-1", "ACC")))
    assert (an.get(710), an.get(724), an.get(1), an.get(715)) == ("PR-1", "0", "ACC", "20270115")
    replies, send = _cert_venue(spread_scenario)  # an SHFE venue
    send(SendOrder("SHFE", "P1", "CU", "cu2603", "2", 10, 70010.0, "2", "0", "ACC", "D1"))  # fills in certification
    send(SendPositionRequest("SHFE", "PR-2", "SHFE-ARB-01"))  # the account the scenario registers there
    ap = [m for m in replies() if m.msg_type == "AP"]
    assert len(ap) == 1 and ap[0].get(727) == "1"
    (pos,) = codec("SHFE").decode(ap[0], "SHFE")
    assert (pos.req_id, pos.instrument, pos.net_qty, pos.total, pos.result) == ("PR-2", "CU", -10.0, 1, "0")


def test_a_venue_without_position_reports_refuses_the_request_and_the_engine_sees_whose(spread_scenario):
    import dataclasses

    from engine.core.events import SendPositionRequest

    sc = dataclasses.replace(
        spread_scenario,
        venues={
            **spread_scenario.venues,
            "SHFE": dataclasses.replace(spread_scenario.venues["SHFE"], position_requests=False),
        },
    )
    replies, send = _cert_venue(sc)
    send(SendPositionRequest("SHFE", "PR-3", "ACC"))
    (j,) = [m for m in replies() if m.msg_type == "j"]
    (rej,) = codec("SHFE").decode(j, "SHFE")
    assert (rej.ref_msg_type, rej.reason) == ("AN", 3)


@pytest.mark.parametrize("account", ["CME-ARB-01", "XXXX", ""])
def test_a_position_request_for_an_account_not_registered_at_the_venue_is_not_authorised(spread_scenario, account):
    """Only the member's accounts at that venue may be asked about: any other (another venue's, an
    unknown one, none) gets an AO with PosReqResult 3 and no report, which the engine reads as a refusal."""
    from engine.core.events import SendPositionRequest

    replies, send = _cert_venue(spread_scenario)
    send(SendPositionRequest("SHFE", "PR-4", account))
    got = replies()
    assert not [m for m in got if m.msg_type == "AP"]
    (ao,) = [m for m in got if m.msg_type == "AO"]
    assert (ao.get(728), ao.get(729)) == ("3", "2")
    (pos,) = codec("SHFE").decode(ao, "SHFE")
    assert (pos.req_id, pos.total, pos.result) == ("PR-4", 0, "3")


def _fix_time_by_datetime(t: float) -> str:
    import datetime as dt

    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d.strftime("%Y%m%d-%H:%M:%S.") + f"{d.microsecond // 1000:03d}"


@given(
    st.one_of(
        st.floats(min_value=0.0, max_value=4.1e9, allow_nan=False, allow_infinity=False),
        # around the virtual epoch, at and beside the rounding edges of microseconds and of the second
        st.builds(
            lambda s, us, eps: VIRTUAL_EPOCH + s + us / 1e6 + eps,
            st.integers(0, 10**6),
            st.sampled_from([0, 500, 999_499, 999_500, 999_999]),
            st.sampled_from([0.0, 5e-7, -5e-7, 4.9e-7, 1e-9]),
        ),
    )
)
@settings(max_examples=500, deadline=None)
def test_fix_time_is_the_datetime_text_for_every_time(t):
    """fix_time formats each whole second once and adds the milliseconds itself: byte for byte what
    datetime gives, rounding and the carry into the next second included."""
    assert fix_time(t) == _fix_time_by_datetime(t)


# ticks the configuration allows (engine.config: >= 1e-9), as written in scenarios: a digit and a power of ten
TICK = st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 9), st.integers(-9, 2))


@given(TICK, st.one_of(st.integers(1, 10**7), st.integers(1, 10**12)), st.booleans())
@settings(max_examples=800, deadline=None)
def test_a_price_on_any_allowed_tick_grid_is_written_on_its_grid(tick, n, negative):
    """fmt_px writes a tick count times the tick (as the engine and the venues compute prices) as plain
    decimal text that reads back to the same count on the same grid, however fine the tick: six
    decimals alone wrote a price on a 3e-7 grid off it (every such order refused by the venue) and one
    on a 1e-7 grid up to half a tick away. Read back, the venue finds it on its grid (Instrument.on_grid:
    a millionth of a tick alone refused a quarter of the prices up to 1e5 on a 5e-7 grid, below their
    float resolution) and rounding it to the grid either way leaves it where it is."""
    assume(n * tick <= 1e12)  # the domain's largest number
    price = -n * tick if negative else n * tick
    text = fmt_px(price)
    assert re.fullmatch(r"-?[0-9]+(\.[0-9]*[1-9])?", text), text
    back = float(text)
    assert round(back / tick) == (-n if negative else n) and abs(back - price) <= 1e-9 * max(1.0, abs(price)), text
    inst = Instrument("X", "V", "X1", "USD", "t", 1.0, "t", tick)
    assert inst.on_grid(back), text
    assert inst.round_to_tick(back, 1) == inst.round_to_tick(back, -1) == inst.round_to_tick(back), text
    assert round(inst.round_to_tick(back, 1) / tick) == round(back / tick), text
    if 0.5 * tick > 64 * math.ulp(price):  # half a tick off, where a float can tell it from noise
        assert not inst.on_grid(back + 0.5 * tick), text


@given(st.integers(1, 9), st.integers(-6, 2), st.integers(1, 10**7))
@settings(max_examples=300, deadline=None)
def test_a_price_on_a_grid_of_a_millionth_or_coarser_keeps_its_six_decimal_text(m, e, n):
    """The bytes the library's runs hash are unchanged for every tick of 1e-6 or coarser."""
    price = n * float(f"{m}e{e}")
    assert fmt_px(price) == f"{price:.6f}".rstrip("0").rstrip(".")


def test_a_value_on_no_fine_grid_is_written_to_six_decimals():
    """An average price or a settlement reference that no tick grid of 1e-9 or coarser holds."""
    assert fmt_px(210037 / 3) == "70012.333333" and fmt_px(7 / 3) == "2.333333" and fmt_px(0.0) == "0"
    assert fmt_px(4.5008125) == "4.5008125" and fmt_px(3.5e-7) == "0.00000035"


def test_a_quantity_is_written_whole_when_it_is_whole_and_exactly_when_not():
    assert [fmt_qty(q) for q in (5.0, 5, 1e12, 2.5, 0.125)] == ["5", "5", "1000000000000", "2.5", "0.125"]


VALUE = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="="), min_size=1, max_size=8)
ENTRY = st.lists(st.sampled_from([279, 269, 55, 270, 271]), min_size=1, max_size=5, unique=True).map(
    lambda tags: [269] + [t for t in tags if t != 269]
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["SHFE", "COMEX", "FXFEED"]),
    st.sampled_from(["D", "F", "8", "X", "3", "j"]),
    st.lists(st.tuples(st.sampled_from([11, 55, 54, 38, 44, 58, 262, 1, 45, 372, 97]), VALUE), max_size=8),
    st.lists(st.tuples(ENTRY, st.lists(VALUE, min_size=5, max_size=5)), max_size=3),
    st.integers(1, 10**6),
    st.booleans(),
)
def test_a_draft_frames_to_the_bytes_of_its_message_built_field_by_field(name, msg_type, fields, entries, seq, dup):
    """Framing a draft builds it with its header in one quickfix call: the bytes are those of the
    quickfix Message with the header set field by field (the way quickfix's own session layer gets it)."""
    c = codec(name)
    groups = ((268, [[(t, v) for t, v in zip(tags, values)] for tags, values in entries]),) if msg_type == "X" else ()
    draft = c.draft(msg_type, fields, groups)
    assert c.frame(draft, seq, 1.8e9 + seq / 7, dup) == c.frame(
        c.message(msg_type, fields, groups), seq, 1.8e9 + seq / 7, dup
    )
    assert draft.cl_ord_id == dict(fields).get(11)


def test_a_body_never_sets_what_framing_sets():
    with pytest.raises(ValueError, match=r"D body sets \[34, 43\]: framing sets those"):
        codec("SHFE").draft("D", [(11, "C1"), (43, "N"), (34, "7")])


def test_a_value_that_carries_the_delimiter_is_built_field_by_field():
    c = codec("SHFE")
    built = c.draft("D", [(11, "A\x01B"), (55, "cu2603")])
    assert not hasattr(built, "body") and built.getField(11) == "A\x01B"
    assert msg_type_of(built) == "D" and msg_type_of(c.draft("F", [(11, "C")])) == "F"  # either kind's type


# ---- what a simulated venue vouches for ------------------------------------------------------------
def _vouching_pair():
    import simpy

    from simulator.transport import SessionEnd, WireLog

    env = simpy.Environment()
    log = WireLog()
    venue_end = SessionEnd(env, codec("SHFE", "SHFE", "XMC"), log)
    engine_end = SessionEnd(env, codec("SHFE", "XMC", "SHFE"), log)
    venue_end.vouched = set()
    engine_end.peer = venue_end
    sent: list[str] = []
    venue_end.link = type("Wire", (), {"send": staticmethod(sent.append)})()
    return venue_end, engine_end, sent


def test_the_engine_reads_a_vouched_message_once_and_parses_anything_else_in_full():
    venue_end, engine_end, sent = _vouching_pair()
    x = venue_end.codec.draft(
        "X", [(262, "MD1")], ((268, [[(279, "0"), (269, "0"), (55, "cu2603"), (270, "70000"), (271, "5")]]),)
    )
    venue_end.send(x)
    (raw,) = sent
    assert raw in venue_end.vouched
    (msg,) = engine_end.receive(raw)
    assert msg.msg_type == "X" and raw not in venue_end.vouched  # read once as vouched
    # bytes the venue did not frame (a fault, a hand-made message) are validated: a wrong tag is refused
    bad = raw.replace("\x01262=MD1\x01", "\x01263=MD1\x01")
    body = bad[bad.index("\x0135=") : bad.rindex("\x0110=") + 1].lstrip("\x01").replace("34=1\x01", "34=2\x01")
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    bad = head + body + f"10={sum((head + body).encode()) % 256:03d}\x01"
    with pytest.raises(FixParseError) as err:
        engine_end.receive(bad)
    assert err.value.kind == "session" and err.value.ref_tag == 263
    # the same vouched bytes a second time (a duplicate delivery) go through quickfix again: seen, ignored
    assert engine_end.receive(raw) == []


def test_a_gap_fill_ahead_of_a_gap_waits_its_turn_and_a_dropped_connection_asks_the_whole_gap_again():
    """Found by the answer timeout under f63's drops: a GapFill that arrived while a hole lay below it
    moved the expected number past the hole, so the fill it held was never asked for (engine and venue
    positions then differed); and a ResendRequest whose answer was lost with the connection was never
    asked again, the next one starting above it."""
    venue_end, engine_end, _ = _vouching_pair()
    asked: list[str] = []
    engine_end.link = type("Wire", (), {"send": staticmethod(asked.append)})()
    c = venue_end.codec

    def heartbeat(seq: int) -> str:
        return c.frame(c.draft("0"), seq, 0.0)

    def gap_fill(seq: int, new_seq: int) -> str:
        return c.frame(c.draft("4", [(123, "Y"), (36, str(new_seq))]), seq, 0.0, poss_dup=True)

    assert [m.seq for m in engine_end.receive(heartbeat(1))] == [1]
    assert engine_end.receive(gap_fill(4, 7)) == []  # 2 and 3 are missing: held, and they are asked for
    assert engine_end.next_in == 2 and "\x017=2\x01" in asked[-1] and "\x0116=3\x01" in asked[-1]
    engine_end.drop()  # the connection goes before the answer comes
    engine_end.reconnect()
    assert engine_end.receive(heartbeat(7)) == []
    assert "\x017=2\x01" in asked[-1] and "\x0116=6\x01" in asked[-1]  # the whole hole, again
    assert [m.seq for m in engine_end.receive(heartbeat(2))] == [2]
    assert [m.seq for m in engine_end.receive(heartbeat(3))] == [3, 7]  # through the held GapFill (4-6), then 7
    assert engine_end.next_in == 8


# Together these reach every kind of message the library's venues send to the engine (market data
# snapshot and refresh, logon, resend request, gap fill, execution reports of every ExecType the
# venues use, cancel reject, position report, business reject); measured over the library at seed 1.
STRICT_SAMPLE = (
    "f63_two_episodes_wait_for_one_reconciliation",
    "f77_no_status_picture_no_false_alarm",
    "cu_hg_limit_amend",
)


def test_validating_what_the_venues_built_changes_nothing(monkeypatch):
    """Vouched messages skip the engine side's quickfix validation; run with it they must give the same
    run (the venues build only what their dictionary allows), and the sample must reach every kind.
    strict_fix really validates them: every message either side receives goes through quickfix."""
    import re

    from engine.fix.codec import FixCodec
    from simulator import runner, scenario
    from tests.conftest import ROOT

    parsed = [0]
    real_parse = FixCodec.parse

    def counting_parse(self, raw):
        parsed[0] += 1
        return real_parse(self, raw)

    monkeypatch.setattr(FixCodec, "parse", counting_parse)

    def run(sc, strict: bool):
        parsed[0] = 0
        return runner.run(sc, strict_fix=strict), parsed[0]

    kinds: set[str] = set()
    for name in STRICT_SAMPLE:
        sc = scenario.load(ROOT / "scenarios" / f"{name}.toml")
        (fast, fast_parses), (strict, strict_parses) = run(sc, False), run(sc, True)
        assert fast.report["run_hash"] == strict.report["run_hash"], name
        to_engine = sum("\x0156=XMC\x01" in raw for raw in fast.messages)
        # strict parses what the engine received from the venues too; the vouched run did not (a few are
        # resends or never arrive: a cut, a drop, a dead node)
        assert strict_parses - fast_parses >= 0.9 * to_engine, (name, strict_parses, fast_parses, to_engine)
        assert not [k for k in strict.report["anomalies"]["by_kind"] if k.startswith("fix_")], name
        for raw in fast.messages:
            if "\x0156=XMC\x01" in raw:
                mt = re.search("\x0135=([^\x01]*)", raw).group(1)
                et = re.search("\x01150=([^\x01]*)", raw)
                kinds.add(mt + (":" + et.group(1) if et else ""))
    expected = {"2", "4", "8:0", "8:4", "8:5", "8:8", "8:F", "8:I", "9", "A", "AP", "W", "X", "j"}
    assert expected <= kinds, sorted(expected - kinds)


def test_inherited_timers_fire_after_the_takeover_not_before_it(config):
    """Live shell: a standby that takes over inherits the old primary's timers, some already due. They
    are armed on the engine thread after the Takeover is handled: fired before it, in the old primary's
    replicated view (its sessions logged on), an ack watch's status question went into a session that
    was not up (send_failed, found by the wire failover tests)."""
    import threading

    from engine.core.engine_core import EngineCore
    from engine.core.events import Takeover, TimerFired
    from engine.shell.live import LiveEngine

    engine = LiveEngine(EngineCore(config), [], quiet_gc=False, session_events=False)
    handled: list = []
    both = threading.Event()

    def dispatch(event) -> None:
        handled.append(event)
        if len(handled) == 2:
            both.set()

    engine._dispatch = dispatch  # type: ignore[method-assign]
    engine.submit(Takeover(3))
    engine.arm_after({"ack:E1-000001B1": engine.now() - 1.0})  # overdue when inherited
    thread = threading.Thread(target=engine._run, daemon=True)
    thread.start()
    try:
        assert both.wait(10), handled
    finally:
        engine._stop.set()
        thread.join(10)
    assert handled == [Takeover(3), TimerFired("ack:E1-000001B1")]


_FIELD_TEXT = st.tuples(st.text("0123456789", min_size=1, max_size=4), st.text("ab=9 ²\x7f", max_size=5)).map(
    lambda tv: f"{tv[0]}={tv[1]}\x01"
)


@given(
    st.lists(_FIELD_TEXT, max_size=12).map("".join)
    | st.text("0123456789=\x01a²", max_size=40)
    | st.lists(_FIELD_TEXT | st.text("0123456789=\x01a²", max_size=6), max_size=8).map("".join)
)
@settings(max_examples=1000, deadline=None)
def test_fields_are_read_as_the_regular_expression_reads_them(raw):
    """codec.fields_of (what `Parsed` reads a message with) gives the pairs the regular expression gives,
    and so does its reading by splitting, which the compiled build uses: for well-formed fields and for
    anything else (a missing '=', a tag not of ASCII digits, text after the last delimiter, an empty field)."""
    from engine.fix.codec import _FIELD, fields_of, split_fields

    assert split_fields(raw) == fields_of(raw) == _FIELD.findall(raw)


# ---- what the engine receives: any value inside it is read or answered, never raised -----------------
def _received_messages() -> tuple[list[tuple[str, str]], dict[str, tuple[str, FixCodec]]]:
    """The messages venues sent the engine in a short run with partial fills and market data (W, X, 8,
    9, 3, j...), each with its sender, and the engine's codec per sender."""
    import dataclasses
    import functools

    @functools.cache
    def collect():
        from simulator import runner, scenario
        from simulator.venue import ENGINE_COMP_ID
        from tests.conftest import ROOT

        sc = scenario.load(ROOT / "scenarios" / "f05_partial_fill_split_reports.toml")
        sc = dataclasses.replace(sc, duration=30.0)
        received = [
            (m.split("\x0149=", 1)[1].split("\x01", 1)[0], m)
            for m in runner.run(sc, 3).messages
            if f"\x0156={ENGINE_COMP_ID}\x01" in m
        ]
        codecs = {
            v.comp_id: (
                name,
                FixCodec(
                    load(v.dictionary),
                    ENGINE_COMP_ID,
                    v.comp_id,
                    {i.name: i.symbol for i in sc.engine.instruments.values() if i.venue == name},
                ),
            )
            for name, v in sc.venues.items()
        }
        return received, codecs

    return collect()


_ODD_VALUES = st.sampled_from(
    ["", "0", "-1", "nan", "NaN", "inf", "-inf", "1e400", "abc", "9" * 30, "Y", "2", "1.5", "²", "0x10", " 5"]
)
_RECEIVED_TAGS = st.sampled_from(
    [6, 11, 14, 17, 31, 32, 37, 38, 39, 41, 55, 58, 102, 103, 150, 151, 268, 269, 270, 271, 279, 380, 434]
    + [702, 703, 704, 705, 710, 727, 728, 912]
)


def _edited(fields: list[str], edits, keep: int) -> str:
    """The message of `fields` (MsgType first, no BodyLength or CheckSum) after each edit (set a field's
    value, delete, repeat or swap it with the last, insert a field), the first `keep` fields untouched;
    framed with a right BodyLength and CheckSum, so that what it carries is what is tested."""
    fields = list(fields)
    for op, at, tag, value in edits:
        i = keep + at % (len(fields) - keep)
        if op == "set":
            fields[i] = f"{fields[i].split('=', 1)[0]}={value}"
        elif op == "delete" and len(fields) > keep + 1:
            del fields[i]
        elif op == "repeat":
            fields.insert(i, fields[i])
        elif op == "insert":
            fields.insert(i, f"{tag}={value}")
        elif op == "swap":
            fields[i], fields[-1] = fields[-1], fields[i]
    body = "\x01".join(fields) + "\x01"
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    return head + body + f"10={sum((head + body).encode()) % 256:03d}\x01"


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10**6),
    st.lists(
        st.tuples(
            st.sampled_from(["set", "delete", "repeat", "insert", "swap"]),
            st.integers(0, 40),
            _RECEIVED_TAGS,
            _ODD_VALUES,
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_whatever_a_venue_sends_is_read_or_answered_with_a_fix_reject_never_raised(pick, edits):
    """A market-data entry priced `abc` (or `nan`, or without its price) passed quickfix's validation,
    which does not read the values inside groups, and `decode` raised ValueError/KeyError: in xmc live
    that ended the engine thread. Now every value the engine reads is a finite number or a session
    Reject (3) naming its tag, and no NaN or infinity reaches the core."""
    import math

    received, codecs = _received_messages()
    sender, raw = received[pick % len(received)]
    venue, c = codecs[sender]
    fields = [f for f in raw[raw.index("\x0135=") + 1 : raw.rindex("\x0110=")].split("\x01") if f]
    text = _edited(fields, edits, keep=1)  # never MsgType
    try:
        events = c.decode(c.parse(text), venue)
    except FixParseError as err:
        answer = c.reject_draft(err)
        assert err.kind == "garbled" or answer is not None
        if err.kind == "session" and answer is not None:
            assert answer.msg_type == "3" and f"373={err.reason}\x01" in answer.body
        return
    for event in events:
        for name in (
            "bid",
            "ask",
            "bid_size",
            "ask_size",
            "order_qty",
            "cum_qty",
            "leaves_qty",
            "last_qty",
            "last_px",
            "avg_px",
            "qty",
        ):
            value = getattr(event, name, None)
            assert value is None or math.isfinite(value), (name, event, text)


@pytest.mark.parametrize(
    "px,size,reason,tag",
    [
        ("abc", "12", 6, 270),  # no number: incorrect data format
        # a level of -1 lots is no quantity: quickfix's check does not read inside the group, and the book
        # would have carried it as the size a chase's payup reads (out of range)
        ("70000", "-1", 5, 271),
    ],
)
def test_an_entry_the_engine_cannot_read_is_answered_by_a_session_reject_naming_its_tag(px, size, reason, tag):
    c = codec("SHFE", "XMC", "SHFE")
    body = (
        "35=X\x0134=9\x0149=SHFE\x0152=20260105-01:00:01.750\x0156=XMC\x01262=MD-CU\x01268=1\x01279=1\x01269=0\x01"
        f"55=cu2603\x01270={px}\x01271={size}\x01"
    )
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    raw = head + body + f"10={sum((head + body).encode()) % 256:03d}\x01"
    with pytest.raises(FixParseError) as err:
        c.decode(c.parse(raw), "SHFE")
    assert (err.value.kind, err.value.reason, err.value.ref_tag, err.value.seq) == ("session", reason, tag, 9)
    answer = c.reject_draft(err.value)
    assert (
        answer is not None
        and "45=9\x01" in answer.body
        and f"371={tag}\x01" in answer.body
        and "372=X\x01" in answer.body
    )


def test_a_snapshot_of_no_entries_empties_the_symbols_book():
    """A full refresh (W) with NoMDEntries=0 says the symbol's book is empty: its old top must not stay
    priced from."""
    c = _shfe_with_a_snapshot()
    w = c.message("W", [(262, "MD1"), (55, "cu2603"), (268, "0")])
    (q,) = c.decode(c.parse(c.frame(w, 3, 1.8e9)), "SHFE")
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (None, 0.0, None, 0.0)


def test_a_refresh_refused_half_way_leaves_the_book_as_it_was():
    """A refresh whose first entry moves the bid and whose second cannot be read is refused whole (a
    session Reject): the bid it carried must not reach the next quote, priced from a message refused."""
    c = codec("SHFE", "XMC", "SHFE")

    def refresh(seq: int, entries: str) -> str:
        body = f"35=X\x0134={seq}\x0149=SHFE\x0152=20260105-01:00:01.750\x0156=XMC\x01262=MD-CU\x01{entries}"
        head = f"8=FIX.4.4\x019={len(body)}\x01"
        return head + body + f"10={sum((head + body).encode()) % 256:03d}\x01"

    def entry(etype: str, px: str) -> str:
        return f"279=1\x01269={etype}\x0155=cu2603\x01270={px}\x01271=3\x01"

    (q,) = c.decode(c.parse(refresh(1, "268=2\x01" + entry("0", "70000") + entry("1", "70010"))), "SHFE")
    assert (q.bid, q.ask) == (70000.0, 70010.0)
    with pytest.raises(FixParseError):
        c.decode(c.parse(refresh(2, "268=2\x01" + entry("0", "69990") + entry("1", "abc"))), "SHFE")
    (q,) = c.decode(c.parse(refresh(3, "268=1\x01" + entry("1", "70020"))), "SHFE")
    assert (q.bid, q.ask) == (70000.0, 70020.0)


def test_the_live_shell_keeps_the_newest_sequence_numbers_a_session_reject_may_name(config, monkeypatch):
    """xmc live maps each application message quickfix numbers (toApp) to its ClOrdID, so that a venue's
    session Reject (45 = that MsgSeqNum) reaches its order; a day of orders keeps only the newest
    SENT_KEPT per session, and a session Reject naming one of them names its order."""
    import quickfix as fix

    from engine.core.engine_core import EngineCore
    from engine.core.events import BusinessReject
    from engine.shell import live

    monkeypatch.setattr(live, "SENT_KEPT", 3)
    engine = live.LiveEngine(EngineCore(config), [], quiet_gc=False, session_events=False)
    engine.by_target, engine.sent = {"SHFE": "SHFE"}, {"SHFE": {}}
    engine.codecs["SHFE"] = codec("SHFE", "XMC", "SHFE")
    sid = fix.SessionID("FIX.4.4", "XMC", "SHFE")
    for seq in range(1, 6):
        msg = fix.Message()
        msg.getHeader().setField(35, "D")
        msg.getHeader().setField(34, str(seq))
        msg.setField(11, f"E1-00000{seq}A1")
        engine.toApp(msg, sid)
    assert engine.sent["SHFE"] == {3: "E1-000003A1", 4: "E1-000004A1", 5: "E1-000005A1"}
    body = "35=3\x0134=7\x0149=SHFE\x0152=20260105-01:00:01.750\x0156=XMC\x0145=4\x01372=D\x01373=99\x0158=no\x01"
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    (event,) = engine._decode("SHFE", head + body + f"10={sum((head + body).encode()) % 256:03d}\x01")
    assert event == BusinessReject("SHFE", "D", "E1-000004A1", 99, "no", True)


def test_the_live_shell_answers_an_unreadable_value_and_keeps_its_engine_thread(config):
    """xmc live: quickfix hands fromApp a refresh whose entry is priced `nan`; the engine thread records
    the anomaly, answers a session Reject (here no session is up: that failure is recorded too) and goes
    on, where the ValueError used to end the thread."""
    from engine.core.engine_core import EngineCore
    from engine.shell.live import LiveEngine

    engine = LiveEngine(EngineCore(config), [], quiet_gc=False, session_events=False)
    engine.codecs["SHFE"] = codec("SHFE", "XMC", "SHFE")
    body = "35=X\x0134=9\x0149=SHFE\x0152=20260105-01:00:01.750\x0156=XMC\x01262=M\x01268=1\x01279=0\x01269=1\x01270=nan\x01"
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    raw = head + body + f"10={sum((head + body).encode()) % 256:03d}\x01"
    assert engine._decode("SHFE", raw) == []
    kinds = [a.kind for a in engine.anomalies]
    assert kinds == ["fix_session", "send_failed"], engine.anomalies
    assert "270" in engine.anomalies[0].detail and "'nan' is not a number" in engine.anomalies[0].detail
    assert any(row.stage == "anomaly" and "fix_session" in row.detail for row in engine.audit)


def _sim_shell(scenario):
    """The virtual-time engine shell of `scenario`, what it sends SHFE captured in a list, and a framer of
    messages from SHFE: framed(seq, "35=T\\x01<body fields>")."""
    import simpy

    from engine.core.engine_core import EngineCore
    from simulator.shell import SimEngineShell
    from simulator.transport import WireLog

    shell = SimEngineShell(simpy.Environment(), EngineCore(scenario.engine), scenario.venues, WireLog())
    sent: list = []
    session = shell.sessions["SHFE"]
    session.send = sent.append  # type: ignore[method-assign]
    sender, target = session.codec.target, session.codec.sender

    def framed(seq: int, rest: str) -> str:
        msg_type, fields = rest.split("\x01", 1)
        body = f"{msg_type}\x0134={seq}\x0149={sender}\x0152=20260105-01:00:01.750\x0156={target}\x01{fields}"
        head = f"8=FIX.4.4\x019={len(body)}\x01"
        return head + body + f"10={sum((head + body).encode()) % 256:03d}\x01"

    return shell, sent, framed


def test_the_simulated_engine_answers_an_unreadable_refresh_with_a_session_reject(spread_scenario):
    """Virtual time: the same refresh reaches the simulated engine; it is answered with 3 (RefTagID
    270, RefSeqNum its MsgSeqNum) on the wire and recorded, and the run goes on."""
    shell, sent, framed = _sim_shell(spread_scenario)
    shell.receive("SHFE", framed(1, "35=X\x01262=M\x01268=1\x01279=0\x01269=1\x0155=cu2603\x01270=abc\x01271=3\x01"))
    (answer,) = sent
    assert answer.msg_type == "3" and "45=1\x01" in answer.body and "371=270\x01" in answer.body
    assert [a.kind for a in shell.anomalies] == ["fix_session"]


def test_the_simulated_engine_answers_a_message_type_it_does_not_serve_and_records_a_refused_subscription(
    spread_scenario,
):
    """Virtual time: a valid News (B) from a venue was dropped unanswered by the decoder; it is answered
    with BusinessMessageReject j (380=3, RefMsgType B, RefSeqNum its MsgSeqNum) and recorded, as over
    quickfix (tests/test_wire.py), while the session's own messages still need no answer."""
    shell, sent, framed = _sim_shell(spread_scenario)
    shell.receive("SHFE", framed(1, "35=0\x01"))  # a Heartbeat: the session's, nothing to answer
    shell.receive("SHFE", framed(2, "35=B\x01148=hello\x0133=1\x0158=line one\x01"))
    (answer,) = sent
    assert answer.msg_type == "j" and all(f in answer.body for f in ("45=2\x01", "372=B\x01", "380=3\x01"))
    assert [a.kind for a in shell.anomalies] == ["fix_business"]
    assert any(row.stage == "anomaly" and "not served" in row.detail for row in shell.audit)
    # a refused subscription needs no answer: it is recorded, naming the instrument, and alerted
    shell.receive("SHFE", framed(3, "35=Y\x01262=MD-CU\x01281=0\x0158=unknown symbol\x01"))
    assert len(sent) == 1 and [a.kind for a in shell.anomalies] == ["fix_business", "md_refused"]
    assert "market data for CU refused (MDReqRejReason 0) unknown symbol" in shell.anomalies[-1].detail
    assert [a.level for a in shell.alerts] == ["critical"]


@pytest.mark.parametrize("superseded", [False, True], ids=["in-charge", "superseded"])
def test_an_unreadable_message_buffered_while_the_engine_was_paused_is_recorded_when_it_wakes(
    spread_scenario, superseded
):
    """Virtual time: a frozen process reads what reached it on waking. Still in charge, through its session
    layer: a message it cannot read is answered with a session Reject, as at any other time. Superseded by a
    takeover (the venue closed its socket), on its own: there is no session to answer on, and the message
    is kept as an anomaly read on waking. Either way an anomaly with an audit row, never dropped unseen."""
    shell, sent, framed = _sim_shell(spread_scenario)
    if superseded:  # what simulator.failover gives the process a takeover supersedes
        shell.own_codecs = {name: session.codec.fork() for name, session in shell.sessions.items()}
    shell.pause()
    shell.receive("SHFE", framed(1, "35=X\x01262=M\x01268=1\x01279=0\x01269=1\x0155=cu2603\x01270=abc\x01271=3\x01"))
    assert shell.anomalies == []  # buffered, not read
    shell.wake()
    assert [a.kind for a in shell.anomalies] == ["fix_session"]
    assert "270" in shell.anomalies[0].detail
    assert ("waking" in shell.anomalies[0].detail) is superseded
    assert [msg_type_of(m) for m in sent] == ([] if superseded else ["3"])
    assert any(row.stage == "anomaly" and "fix_session" in row.detail for row in shell.audit)


def _engine_sent() -> tuple[list[str], object]:
    """What the engine sent the venues in a short run with amends and cancels (D, F, G, H), and its scenario."""
    import dataclasses
    import functools

    @functools.cache
    def collect():
        from simulator import runner, scenario
        from simulator.venue import ENGINE_COMP_ID
        from tests.conftest import ROOT

        sc = scenario.load(ROOT / "scenarios" / "cu_hg_limit_amend.toml")
        sc = dataclasses.replace(sc, duration=60.0)
        sent = [
            m
            for m in runner.run(sc, 3).messages
            if f"\x0149={ENGINE_COMP_ID}\x01" in m
            and m.split("\x0135=", 1)[1][:2] in ("D\x01", "F\x01", "G\x01", "H\x01")
        ]
        return sent, sc

    return collect()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10**6),
    st.lists(
        st.tuples(
            st.sampled_from(["set", "delete", "repeat", "insert"]),
            st.integers(0, 40),
            st.sampled_from([1, 11, 38, 40, 41, 44, 54, 55, 59, 60, 18, 126, 432]),
            _ODD_VALUES | st.sampled_from(["3", "4", "5", "6", "7", "8", "9", "A", "B", "C"]),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_whatever_a_member_sends_a_simulated_venue_is_answered_never_raised(pick, edits):
    """`xmc venue` serves any FIX engine: a NewOrderSingle with Side 5 (sell short, in the dictionary)
    reached the two-sided book and raised KeyError there. Any order, cancel, replace or status question,
    its values changed, dropped, repeated or joined by others, is answered (a report, a reject) and
    leaves the venue working."""
    import simpy

    from simulator.link import Latency, Link
    from simulator.rng import fork
    from simulator.transport import WireLog
    from simulator.venue import Venue

    sent, sc = _engine_sent()
    raw = sent[pick % len(sent)]
    target = raw.split("\x0156=", 1)[1].split("\x01", 1)[0]
    name, vcfg = next((n, v) for n, v in sc.venues.items() if v.comp_id == target)
    env = simpy.Environment()
    venue = Venue(env, vcfg, [i for i in sc.engine.instruments.values() if i.venue == name], fork(1, "v"), WireLog())
    answers: list[str] = []
    venue.session.link = Link(env, "down", Latency("constant", 0.001), fork(1, "l"), answers.append)
    fields = [
        ("34=1" if f.startswith("34=") else f)
        for f in raw[raw.index("\x0135=") + 1 : raw.rindex("\x0110=")].split("\x01")
        if f
    ]
    text = _edited(fields, edits, keep=5)  # never the header (35, 34, 49, 52, 56)
    venue.receive(text)
    env.run(until=5)
    kinds = {a.split("\x0135=", 1)[1].split("\x01", 1)[0] for a in answers}
    assert kinds <= {"8", "9", "3", "j"}, kinds


def test_a_simulated_venue_rejects_a_side_its_book_does_not_have(spread_scenario):
    import simpy

    from simulator.link import Latency, Link
    from simulator.rng import fork
    from simulator.transport import WireLog
    from simulator.venue import Venue

    env = simpy.Environment()
    vcfg = spread_scenario.venues["SHFE"]
    venue = Venue(env, vcfg, [spread_scenario.engine.instruments["CU"]], fork(1, "v"), WireLog())
    answers: list[str] = []
    venue.session.link = Link(env, "down", Latency("constant", 0.001), fork(1, "l"), answers.append)
    c = codec("SHFE", "XMC", vcfg.comp_id)
    raw = wire(c, SendOrder("SHFE", "S5", "CU", "cu2603", "2", 5, 70010.0, "2", "3", "SHFE-ARB-01", "D1"))
    body = raw[raw.index("\x0135=") + 1 : raw.rindex("\x0110=") + 1].replace("\x0154=2\x01", "\x0154=5\x01")
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    venue.receive(head + body + f"10={sum((head + body).encode()) % 256:03d}\x01")
    env.run(until=1)
    (answer,) = answers
    msg = c.parse(answer)
    assert (msg.msg_type, msg.get(150), msg.get(103), msg.get(11)) == ("8", "8", "11", "S5")
    assert "Side 5 not supported" in msg.get(58)


def test_a_defect_of_the_live_shell_throws_the_kill_switch_and_the_engine_thread_lives_on(config):
    """Whatever raises on the engine thread outside the core (which has its own fail-safe) used to end the
    thread: sessions up, nobody deciding. Now: anomaly engine_error, a critical alert, the kill switch
    thrown, and the thread still serves the next event."""
    import threading

    from engine.core.engine_core import EngineCore
    from engine.core.events import SessionGap
    from engine.shell.live import LiveEngine

    engine = LiveEngine(EngineCore(config), [], quiet_gc=False, session_events=False)
    engine.codecs["SHFE"] = c = codec("SHFE")
    seen: list = []
    done = threading.Event()

    def broken(msg, venue):
        raise RuntimeError("a defect in decoding")

    c.decode = broken  # type: ignore[method-assign]
    original = engine._dispatch

    def dispatch(event) -> None:
        original(event)
        seen.append(event)
        if isinstance(event, SessionGap):
            done.set()

    engine._dispatch = dispatch  # type: ignore[method-assign]
    engine.submit(("fix", "SHFE", "8=FIX.4.4\x019=5\x0135=8\x0110=000\x01"))  # type: ignore[arg-type]
    engine.submit(SessionGap("SHFE"))
    _engine_thread_until(engine, done)
    assert engine.core.killed
    assert [a.kind for a in engine.anomalies][:1] == ["engine_error"] and "a defect in decoding" in engine.anomalies[
        0
    ].detail
    assert any(a.level == "critical" and "kill switch thrown" in a.text for a in engine.alerts)
    assert [type(e).__name__ for e in seen] == ["Command", "SessionGap"]


def _overlay_edits():
    """Edits of a venue overlay's XML: an attribute set to a value of the wrong kind or removed, an
    element removed or given twice (what a desk adding or changing a venue's overlay can get wrong)."""
    values = st.sampled_from(["", "abc", "-1", "0", "99999999999", "35", "1028", "FOO", "Y", "X", "1.5", " ", "é"])
    return st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["set", "drop", "remove", "twice"]), values),
        min_size=1,
        max_size=3,
    )


def _load_overlay(tmp_path, name: str, text: str):
    """Load venue dictionary `name` from an overlay with `text`, through everything a run does with it."""
    from engine.fix import codec, dictionary

    spec = tmp_path / "spec"
    spec.mkdir(exist_ok=True)
    (spec / f"{name}.xml").write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dictionary, "SPEC_DIR", spec)
        mp.setenv("XMC_CACHE", str(tmp_path / "cache"))
        dictionary.load.cache_clear()
        codec._ENGINE_MESSAGES_CHECKED.clear()
        try:
            return FixCodec(dictionary.load(name), "ENGINE", name)
        finally:
            dictionary.load.cache_clear()  # the next test loads the project's own overlays again
            codec._ENGINE_MESSAGES_CHECKED.clear()


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["COMEX", "SHFE"]), edits=_overlay_edits())
def test_any_damaged_venue_overlay_is_loaded_and_speaks_for_the_engine_or_is_refused_naming_it(
    tmp_path_factory, name, edits
):
    """A damaged overlay (fix_specs/NAME.xml) raised KeyError (an <outbound> field never defined), IsADirectoryError
    (base=""), quickfix's ConfigError (a <value> without enum=, a field type it does not know) or InvalidMessage
    (a tag number beyond an int); one whose <outbound> value its field refuses loaded, and every order of the
    run was then rejected by the venue. Now each is a DictionaryError naming the overlay, or the dictionary
    accepts every message the engine sends."""
    import copy
    import xml.etree.ElementTree as ET

    from tests.conftest import ROOT

    root = ET.parse(ROOT / "fix_specs" / f"{name}.xml").getroot()
    for pick, op, value in edits:
        elements = list(root.iter())
        parents = {child: parent for parent in elements for child in parent}
        element = elements[pick % len(elements)]
        if op == "set" and element.attrib:
            element.set(sorted(element.attrib)[pick % len(element.attrib)], value)
        elif op == "drop" and element.attrib:
            del element.attrib[sorted(element.attrib)[pick % len(element.attrib)]]
        elif op in ("remove", "twice") and element in parents:
            parents[element].remove(element) if op == "remove" else parents[element].append(copy.deepcopy(element))
    tmp_path = tmp_path_factory.mktemp("overlay")
    try:
        codec = _load_overlay(tmp_path, name, ET.tostring(root, encoding="unicode"))
    except DictionaryError as exc:
        assert f"{name}" in str(exc) and "Traceback" not in str(exc)
        return
    order = SendOrder(name, "C1", "CU", "CU", "1", 1, 70000.0, "2", "3", "ACCT", "D1")
    raw = codec.frame(codec.draft_of(order, VIRTUAL_EPOCH), 1, VIRTUAL_EPOCH)
    assert codec.parse(raw).msg_type == "D"  # what the venue's own validation will do with it


@pytest.mark.parametrize(
    "edit,fragment",
    [
        (('name="ManualOrderIndicator" value="N"', 'name="ManualOrderIndicator" value="X"'), "NewOrderSingle (D)"),
        (
            (
                '<field name="CtiCode" required="Y"/>',
                '<field name="CtiCode" required="Y"/><field name="Text" required="Y"/>',
            ),
            "RequiredTagMissing",
        ),
        (('name="CtiCode" value="2"', 'name="Nope" value="2"'), "sends field 'Nope', which is not defined"),
        (('base="FIX44.xml"', 'base=""'), "base='' is no quickfix dictionary"),
        (('<value enum="0" description="CUSTOMER"/>', '<value description="CUSTOMER"/>'), "quickfix refuses"),
        (('number="204"', 'number="99999999999"'), "give a tag number in 1..2147483647"),
        (('number="9702"', 'number="58"'), "field 58 is Text in the base dictionary; pick another tag number"),
        (
            ('<field name="CtiCode" required="Y"/>', '<field name="CtiCod" required="Y"/>'),
            "field 'CtiCod' is not defined; add it under <fields>",
        ),
        (('<outbound message="OrderCancelRequest">', '<outbound message="CancelOrder">'), "names no message"),
    ],
)
def test_a_venue_overlay_the_engine_cannot_trade_through_is_refused_at_load(tmp_path, edit, fragment):
    """Each refusal names the overlay and says what to change (the last three were found by mutation: a
    field number taken from another base field, a message requiring a field nobody defined, and an
    <outbound> for no message each loaded without them); quickfix's own refusal is given in its words,
    without the path of the merged cache file it read."""
    from tests.conftest import ROOT

    text = (ROOT / "fix_specs" / "COMEX.xml").read_text()
    assert edit[0] in text
    with pytest.raises(DictionaryError, match=re.escape(fragment)) as err:
        _load_overlay(tmp_path, "COMEX", text.replace(edit[0], edit[1], 1))
    assert "COMEX.xml" in str(err.value) and str(tmp_path / "cache") not in str(err.value)
    assert "Configuration failed" not in str(err.value)


def test_a_run_over_an_overlay_the_engine_cannot_trade_through_is_exit_2_naming_it(monkeypatch, tmp_path, capsys):
    from engine.fix import codec, dictionary
    from tests.conftest import ROOT, SPREAD
    from xmc.cli import main

    spec = tmp_path / "spec"
    spec.mkdir()
    for overlay in (ROOT / "fix_specs").glob("*.xml"):
        (spec / overlay.name).write_text(overlay.read_text())
    comex = spec / "COMEX.xml"
    comex.write_text(comex.read_text().replace('name="CustomerOrFirm" value="1"', 'name="CustomerOrFirm" value="7"'))
    monkeypatch.setattr(dictionary, "SPEC_DIR", spec)
    monkeypatch.setenv("XMC_CACHE", str(tmp_path / "cache"))
    dictionary.load.cache_clear()
    codec._ENGINE_MESSAGES_CHECKED.clear()
    try:
        assert main(["run", str(SPREAD), "--duration", "5", "--out", str(tmp_path / "out")]) == 2
    finally:
        dictionary.load.cache_clear()
        codec._ENGINE_MESSAGES_CHECKED.clear()
    err = capsys.readouterr().err
    assert "COMEX: the venue dictionary refuses the engine's own NewOrderSingle (D) message" in err, err
    assert "Traceback" not in err


def test_a_snapshot_replaces_the_whole_book_of_its_symbol():
    """A MarketDataSnapshotFullRefresh (W) is the whole book: a side it does not name is empty, not the
    side of an earlier refresh (planted: a decoder that kept the old side, survived every other test)."""
    c = _shfe_with_a_snapshot()
    bids_only = c.message("W", [(262, "MD1"), (55, "cu2603")], ((268, [[(269, "0"), (270, "69980"), (271, "2")]]),))
    (q,) = c.decode(c.parse(c.frame(bids_only, 3, 1.8e9)), "SHFE")
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (69980, 2, None, 0.0)


def test_an_execution_report_resent_by_the_application_is_marked_as_a_resend():
    """PossResend (97=Y) on an execution report says the venue's application sent it before, as
    PossDupFlag (43=Y) says its session layer did: either is a resend the core must not count twice
    (planted: a decoder reading only 43 survived every other test)."""
    c = FixCodec(load("SHFE"), "XMC", "SHFE", {"CU": "cu2603"})
    fields = [(37, "O1"), (17, "X1"), (150, "F"), (39, "1"), (11, "C1"), (55, "cu2603"), (54, "1")]
    fields += [(38, "5"), (14, "3"), (151, "2"), (32, "1"), (31, "70010"), (6, "70005"), (1, "ACC")]
    for flag, expected in ((None, False), (43, True), (97, True)):
        report = c.message("8", fields)
        if flag is not None:
            report.getHeader().setField(flag, "Y")  # both are header fields
        (er,) = c.decode(c.parse(c.frame(report, 2, 1.8e9)), "SHFE")
        assert er.poss_dup is expected, flag
        # and each quantity and price from its own tag (a decoder reading LeavesQty from OrderQty survived)
        assert (er.order_qty, er.cum_qty, er.leaves_qty, er.last_qty) == (5, 3, 2, 1)
        assert (er.last_px, er.avg_px, er.order_id, er.exec_id, er.instrument) == (70010, 70005, "O1", "X1", "CU")


def test_a_session_reject_names_the_message_by_its_sequence_number():
    """A session Reject (3) refers to the refused message by RefSeqNum (45): the decoder marks it
    session-level, so the shell looks the order up by the sequence number it was sent under (planted:
    a decoder that marked it a business reject survived every other test, and the order then waited
    for its timeout as 'reject_unmatched')."""
    c = FixCodec(load("SHFE"), "XMC", "SHFE", {"CU": "cu2603"})
    reject = c.message("3", [(45, "24"), (372, "D"), (373, "1"), (371, "1"), (58, "Required tag missing")])
    (br,) = c.decode(c.parse(c.frame(reject, 2, 1.8e9)), "SHFE")
    assert br.session_level and br.ref_id == "24" and br.ref_msg_type == "D" and br.reason == 1


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="="), max_size=600))
def test_a_venues_text_is_carried_whole_when_short_and_cut_with_its_length_when_long(text):
    """Text (58) goes into events, and from them into audit rows, anomalies and alerts: a venue writing
    kilobytes there must not make every record carry them (the message log keeps the whole message)."""
    from engine.fix.codec import TEXT_KEPT, Parsed, venue_text

    shown = venue_text(Parsed(f"8=FIX.4.4\x0135=j\x0158={text}\x01"))
    if len(text) <= TEXT_KEPT:
        assert shown == text
    else:
        assert shown.startswith(text[:TEXT_KEPT]) and f"({len(text)} characters" in shown
        assert len(shown) < TEXT_KEPT + 80


def test_the_simulated_engine_records_a_long_venue_text_and_an_unreadable_long_value_cut(spread_scenario):
    """Virtual time: a BusinessMessageReject carrying 50,000 characters of Text and a refresh priced with a
    50,000-character value reach the engine: each is recorded (the anomaly and its audit row) with the
    start of what the venue wrote and its length, not the whole of it."""
    shell, sent, framed = _sim_shell(spread_scenario)
    long = "x" * 50_000
    shell.receive("SHFE", framed(1, f"35=j\x0145=1\x01372=D\x01380=0\x0158={long}\x01"))
    shell.receive(
        "SHFE", framed(2, f"35=X\x01262=M\x01268=1\x01279=0\x01269=1\x0155=cu2603\x01270={long}\x01271=3\x01")
    )
    details = [a.detail for a in shell.anomalies] + [row.detail or "" for row in shell.audit]
    assert len(shell.anomalies) == 2 and details
    assert all(len(d) < 1_000 for d in details), max(len(d) for d in details)
    rejected, unreadable = shell.anomalies
    assert "x" * 200 in rejected.detail and "50000 characters" in rejected.detail
    assert "tag 270" in unreadable.detail and "50000 characters" in unreadable.detail


def test_a_cancel_reject_says_which_request_was_refused_and_why():
    """CxlRejResponseTo (434) tells a refused cancel from a refused cancel/replace: the amend machine
    acts on "2" and the cancel machine on "1" (planted: a decoder that called every refusal a cancel's
    survived every test of this module)."""
    c = FixCodec(load("SHFE"), "XMC", "SHFE", {"CU": "cu2603"})
    for to in ("1", "2"):
        fields = [(37, "O1"), (11, "C2"), (41, "C1"), (39, "0"), (434, to), (102, "1"), (58, "too late")]
        (cr,) = c.decode(c.parse(c.frame(c.message("9", fields), 2, 1.8e9)), "SHFE")
        assert (cr.response_to, cr.cl_ord_id, cr.orig_cl_ord_id, cr.ord_status, cr.reason) == (to, "C2", "C1", "0", 1)


def test_a_position_ack_is_an_answer_only_when_no_report_follows():
    """A RequestForPositionsAck (AO) saying TotalNumPosReports (727) > 0 announces the reports to come:
    taken as an answer, it would close the request with a flat position before they arrive (planted: a
    decoder turning every AO into an answer survived)."""
    c = FixCodec(load("SHFE"), "XMC", "SHFE", {"CU": "cu2603"})
    for total, result, expected in (("0", "2", 1), ("3", "0", 0)):
        fields = [(721, "P1"), (710, "R1"), (727, total), (728, result), (729, "0"), (1, "ACC"), (581, "1")]
        ack = c.message("AO", fields)
        events = c.decode(c.parse(c.frame(ack, 2, 1.8e9)), "SHFE")
        assert len(events) == expected, total
        if events:
            (pr,) = events
            assert (pr.req_id, pr.total, pr.result, pr.instrument, pr.net_qty) == ("R1", 0, "2", "", 0.0)


def test_an_execution_report_carries_its_reject_reason_and_whether_it_ends_a_mass_status():
    """OrdRejReason (103) and LastRptRequested (912) reach the core: the reason goes into the audit, and
    only the report marked last ends a mass-status tally (planted: a decoder calling every report the last,
    or dropping the reason, survived every test of this module)."""
    c = FixCodec(load("SHFE"), "XMC", "SHFE", {"CU": "cu2603"})
    fields = [(37, "O1"), (17, "X1"), (150, "8"), (39, "8"), (11, "C1"), (55, "cu2603"), (54, "1")]
    fields += [(38, "5"), (14, "0"), (151, "0"), (32, "0"), (31, "0"), (6, "0"), (1, "ACC"), (103, "3")]
    (er,) = c.decode(c.parse(c.frame(c.message("8", fields), 2, 1.8e9)), "SHFE")
    assert er.ord_rej_reason == 3 and er.last_report is False and not er.mass_status_id
    status = [(f if f[0] != 150 else (150, "I")) for f in fields if f[0] != 103] + [(584, "M1"), (912, "Y")]
    (last,) = c.decode(c.parse(c.frame(c.message("8", status), 3, 1.8e9)), "SHFE")
    assert last.ord_rej_reason is None and last.last_report is True and last.mass_status_id == "M1"
    not_last = [f if f[0] != 912 else (912, "N") for f in status]
    (more,) = c.decode(c.parse(c.frame(c.message("8", not_last), 4, 1.8e9)), "SHFE")
    assert more.last_report is False


def test_a_business_reject_names_the_refused_messages_id():
    """The BusinessMessageReject (j) xmc answers with names the refused message's ClOrdID in
    BusinessRejectRefID (379), so the venue can tell which order it was (planted: an answer without it
    survived); the session Reject (3) names the tag and message type."""
    c = codec("SHFE")

    def answer(err: FixParseError):
        draft = c.reject_draft(err)
        assert draft is not None
        return c.parse(c.frame(draft, 5, 1.8e9))

    j = answer(FixParseError("business", 3, "not served", "AB", 7, ref_id="C9"))
    assert (j.msg_type, j.get(45), j.get(372), j.get(380), j.get(379)) == ("j", "7", "AB", "3", "C9")
    r = answer(FixParseError("session", 5, "bad value", "D", 8, ref_tag=44, ref_id="C9"))
    assert (r.msg_type, r.get(45), r.get(373), r.get(371), r.get(372), r.get(379)) == ("3", "8", "5", "44", "D", "")
    assert c.reject_draft(FixParseError("garbled", 0, "checksum")) is None
    # Text (58) is cut to its first 120 characters; a refused message whose type is unknown is named "?"
    long = answer(FixParseError("business", 3, "x" * 130, "", 9))
    assert (long.get(372), long.get(58)) == ("?", "x" * 120)
    assert answer(FixParseError("session", 5, "y" * 130, "D", 10, ref_tag=44)).get(58) == "y" * 120


@pytest.mark.parametrize("value", ["1.5", "abc", ""])
def test_a_whole_number_field_that_is_none_is_an_incorrect_data_format(value):
    """A field the engine reads as a whole number (a reject reason, a report count) that is not one is
    SessionRejectReason 6, incorrect data format, naming the tag."""
    from engine.fix.codec import _fix_int, _Unreadable

    with pytest.raises(_Unreadable) as err:
        _fix_int(value, 102)
    assert (err.value.tag, err.value.reason) == (102, 6) and "102" in err.value.text
    assert _fix_int("7", 102) == 7


# ---- what decode takes from each field, field by field (found by mutating the codec) ------------------
def _read(c: FixCodec, body: str, venue: str) -> list:
    """The events codec `c` reads from a venue message with this body ("MsgType\x01fields..."), framed
    with its header, BodyLength and CheckSum, as the engine reads a message the venue vouched for."""
    from engine.fix.codec import Parsed

    msg_type, fields = body.split("\x01", 1)
    text = f"35={msg_type}\x0134=9\x0149={venue}\x0152=20260105-01:00:01.750\x0156=XMC\x01{fields}"
    frame = f"8=FIX.4.4\x019={len(text)}\x01{text}"
    return c.decode(Parsed(frame + f"10={sum(frame.encode()) % 256:03d}\x01"), venue)


def _decoded(body: str, venue: str = "SHFE"):
    """A fresh codec of `venue` and the events it reads from a message with this body."""
    c = codec(venue, "XMC", venue)
    return c, _read(c, body, venue)


def test_a_cancel_reject_without_its_optional_fields_reads_as_no_reason_and_a_cancel():
    _, (r,) = _decoded("9\x0111=C2\x0141=C1\x0137=O1\x0139=0\x01")
    assert (r.cl_ord_id, r.orig_cl_ord_id, r.reason, r.response_to, r.text) == ("C2", "C1", None, "1", "")
    _, (r,) = _decoded("9\x0111=C2\x0141=C1\x0137=O1\x0139=0\x01434=2\x01102=1\x0158=too late\x01")
    assert (r.reason, r.response_to, r.text) == (1, "2", "too late")


@pytest.mark.parametrize("msg_type,tag", [("9", 102), ("8", 103)])
def test_an_unreadable_reason_is_answered_naming_its_own_tag_and_the_orders_clordid(msg_type, tag):
    body = {
        "9": "9\x0111=C2\x0141=C1\x0137=O1\x0139=0\x01434=1\x01102=x\x01",
        "8": "8\x0137=O1\x0111=C2\x0117=X1\x01150=8\x0139=8\x0155=cu2603\x0154=1\x0138=5\x0114=0\x01151=0\x01103=x\x01",
    }[msg_type]
    with pytest.raises(FixParseError) as err:
        _decoded(body)
    e = err.value
    assert (e.kind, e.reason, e.ref_tag, e.ref_id, e.msg_type, e.seq) == ("session", 6, tag, "C2", msg_type, 9)


def test_a_report_without_its_optional_figures_reads_them_as_zero_and_keeps_the_venues_text():
    body = "8\x0137=O1\x0111=C1\x0117=X1\x01150=0\x0139=0\x0155=cu2603\x0154=1\x0138=5\x0114=0\x01151=5\x01"
    _, (r,) = _decoded(body + "58=accepted\x01")
    assert (r.last_qty, r.last_px, r.avg_px, r.ord_rej_reason, r.text) == (0.0, 0.0, 0.0, None, "accepted")


@pytest.mark.parametrize("length,kept", [(200, True), (201, False)])
def test_a_venues_text_is_kept_whole_up_to_200_characters(length, kept):
    from engine.fix.codec import Parsed, venue_text

    text = "t" * length
    got = venue_text(Parsed(f"35=9\x0158={text}\x01"))
    assert (got == text) is kept and got.startswith("t" * 200)
    assert kept or got.endswith("(201 characters; the whole message is in the message log)")


def test_a_session_reject_naming_a_message_that_carried_no_clordid_names_none():
    from engine.core.events import BusinessReject
    from engine.fix.codec import naming_its_order

    sent = {4: "C1"}
    named = naming_its_order(BusinessReject("SHFE", "D", "4", 1, "x", session_level=True), sent)
    unknown = naming_its_order(BusinessReject("SHFE", "0", "5", 1, "x", session_level=True), sent)
    assert (named.ref_id, unknown.ref_id) == ("C1", "")
    for odd in ("²", "٤"):  # digits str.isdigit takes: no MsgSeqNum of ours, left as the venue wrote it
        kept = BusinessReject("SHFE", "D", odd, 1, "x", session_level=True)
        assert naming_its_order(kept, sent) is kept


def test_a_position_report_nets_every_entry_long_less_short_an_absent_side_read_as_zero():
    """PositionReport (AP): the net over its NoPositions (702) entries, each LongQty (704) less ShortQty
    (705), a side the entry leaves out read as 0, whatever else the entry carries (PosType 703 leads it,
    PosQtyStatus 706 may close it); PosReqResult (728) absent reads as 0 (valid)."""
    head = "AP\x01710=R1\x01721=P1\x01727=2\x0155=HGH6\x01"
    entries = "702=3\x01703=TQ\x01704=3\x01705=1\x01706=0\x01703=XM\x01705=1\x01703=SD\x01704=4\x01"
    _, (p,) = _decoded(head + entries, "COMEX")
    assert (p.req_id, p.instrument, p.net_qty, p.total, p.result) == ("R1", "HG", 5.0, 2, "0")


@pytest.mark.parametrize("tag", [704, 705])
def test_an_unreadable_position_quantity_is_answered_naming_its_tag(tag):
    value = {704: "704=x\x01705=1\x01", 705: "704=1\x01705=x\x01"}[tag]
    with pytest.raises(FixParseError) as err:
        _decoded(f"AP\x01710=R1\x01721=P1\x01727=1\x0155=HGH6\x01702=1\x01703=TQ\x01{value}", "COMEX")
    assert (err.value.reason, err.value.ref_tag) == (6, tag)


def test_a_business_reject_and_a_session_reject_read_field_by_field():
    _, (j,) = _decoded("j\x0145=7\x01372=D\x01379=C1\x01380=4\x0158=no\x01")
    assert (j.ref_msg_type, j.ref_id, j.reason, j.text, j.session_level) == ("D", "C1", 4, "no", False)
    _, (j,) = _decoded("j\x0145=7\x01372=D\x01379=C1\x01")
    assert j.reason is None
    _, (r,) = _decoded("3\x0145=7\x01372=D\x01379=C1\x01373=1\x01371=44\x0158=bad\x01")
    assert (r.ref_msg_type, r.ref_id, r.reason, r.text, r.session_level) == ("D", "C1", 1, "bad", True)
    _, (r,) = _decoded("3\x0145=7\x01372=D\x01")  # no reference id: the refused message's MsgSeqNum
    assert (r.ref_id, r.reason) == ("7", None)
    for body, tag in (("j\x0145=7\x01372=D\x01380=x\x01", 380), ("3\x0145=7\x01372=D\x01373=x\x01", 373)):
        with pytest.raises(FixParseError) as err:
            _decoded(body)
        assert (err.value.reason, err.value.ref_tag) == (6, tag)


def test_position_answers_read_their_counts_and_results_and_an_unserved_type_is_refused_naming_its_order():
    """AP: TotalNumPosReports (727) absent is one report, PosReqResult (728) as sent; AO: no 727 is no
    report to follow (an answer), 727 unreadable names its tag; a message type the engine does not
    serve is a BusinessMessageReject (reason 3) naming the message's ClOrdID."""
    _, (p,) = _decoded("AP\x01710=R1\x01721=P1\x01728=2\x0155=HGH6\x01702=1\x01703=TQ\x01704=1\x01", "COMEX")
    assert (p.total, p.result, p.net_qty) == (1, "2", 1.0)
    _, (ao,) = _decoded("AO\x01710=R2\x01721=P2\x01728=4\x01", "COMEX")
    assert (ao.req_id, ao.instrument, ao.net_qty, ao.total, ao.result) == ("R2", "", 0.0, 0, "4")
    _, more = _decoded("AO\x01710=R3\x01721=P3\x01727=2\x01728=0\x01", "COMEX")
    assert more == []  # reports follow: the AO itself answers nothing
    for body in ("AO\x01710=R4\x01727=x\x01", "AP\x01710=R5\x01727=x\x0155=HGH6\x01"):
        with pytest.raises(FixParseError) as err:
            _decoded(body, "COMEX")
        assert (err.value.reason, err.value.ref_tag) == (6, 727)
    with pytest.raises(FixParseError) as err:
        _decoded("D\x0111=C7\x0155=cu2603\x0154=1\x01")  # a NewOrderSingle sent to the engine
    assert (err.value.kind, err.value.reason, err.value.msg_type, err.value.ref_id) == ("business", 3, "D", "C7")


def _refresh(c: FixCodec, entries: str) -> list:
    """The quotes an incremental refresh (X) with these NoMDEntries entries leaves in codec `c`."""
    return _read(c, f"X\x01262=MD-CU\x01268={entries.count('279=')}\x01{entries}", "SHFE")


def test_an_incremental_refresh_changes_only_the_side_it_names():
    """Deleting the bid (279=2) leaves the offer and its size as they were; an entry without a size
    (271) is a level of size 0; a member tag seen twice in one entry ends the group (the second price is
    not the entry's)."""
    c = codec("SHFE", "XMC", "SHFE")
    bid, ask = (
        "279=0\x01269=0\x0155=cu2603\x01270=70000\x01271=5\x01",
        "279=0\x01269=1\x0155=cu2603\x01270=70010\x01271=7\x01",
    )
    (q,) = _refresh(c, bid + ask)
    assert (q.instrument, q.bid, q.bid_size, q.ask, q.ask_size) == ("CU", 70000.0, 5.0, 70010.0, 7.0)
    (q,) = _refresh(c, "279=2\x01269=0\x0155=cu2603\x01")
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (None, 0.0, 70010.0, 7.0)
    (q,) = _refresh(c, "279=1\x01269=1\x0155=cu2603\x01270=70020\x01")
    assert (q.ask, q.ask_size) == (70020.0, 0.0)
    (q,) = _refresh(c, "279=1\x01269=0\x0155=cu2603\x01270=69990\x01271=2\x01270=1\x01")
    assert (q.bid, q.bid_size) == (69990.0, 2.0)


@pytest.mark.parametrize(
    "entry,reason,tag",
    [("271=2\x01", 1, 270), ("270=\x01271=2\x01", 6, 270), ("270=70000\x01271=x\x01", 6, 271)],
)
def test_a_refresh_entry_without_its_price_or_with_an_unreadable_size_is_answered(entry, reason, tag):
    """An entry that adds or changes a level without MDEntryPx (270) is a required tag missing (1); a
    price or size that is no number is an incorrect data format (6): a session Reject naming the tag."""
    c = codec("SHFE", "XMC", "SHFE")
    with pytest.raises(FixParseError) as err:
        _refresh(c, f"279=0\x01269=0\x0155=cu2603\x01{entry}")
    assert (err.value.kind, err.value.reason, err.value.ref_tag) == ("session", reason, tag)


def test_a_level_of_size_zero_is_read_and_a_price_that_is_no_finite_number_is_an_incorrect_format():
    c = codec("SHFE", "XMC", "SHFE")
    (q,) = _refresh(c, "279=0\x01269=0\x0155=cu2603\x01270=70000\x01271=0\x01")
    assert (q.bid, q.bid_size) == (70000.0, 0.0)
    for value, says in (
        ("nan", "not a number"),
        ("inf", "not a number"),
        ("-inf", "not a number"),
        ("9" * 400, "finite"),
    ):
        with pytest.raises(FixParseError) as err:
            _refresh(c, f"279=1\x01269=0\x0155=cu2603\x01270={value}\x01271=1\x01")
        assert (err.value.reason, err.value.ref_tag) == (6, 270) and says in err.value.text


@pytest.mark.parametrize("raw", ["garbage", "8=FIX.4.4\x019=5\x0135=0\x0110=000\x01"])
def test_what_quickfix_cannot_read_as_a_message_is_garbled_never_answered(raw):
    """A text that is no FIX message (no header, a wrong BodyLength or CheckSum) is dropped as garbled,
    with quickfix's reason, and never answered (FIX session rules)."""
    c = codec("SHFE", "XMC", "SHFE")
    with pytest.raises(FixParseError) as err:
        c.parse(raw)
    assert err.value.kind == "garbled" and err.value.text and err.value.text != "None"
    assert c.reject_draft(err.value) is None


_NOT_FIX_NUMBERS = ["1e5", "+5", " 5", "5 ", "1_000", "٥", "0x10", "nan", "inf", "1.2.3", "-", ".", "--5"]


@pytest.mark.parametrize("value", _NOT_FIX_NUMBERS)
@pytest.mark.parametrize(
    "tag,body,venue",
    [
        (270, "X\x01262=MD-CU\x01268=1\x01279=0\x01269=0\x0155=cu2603\x01270={v}\x01271=5\x01", "SHFE"),
        (271, "X\x01262=MD-CU\x01268=1\x01279=0\x01269=0\x0155=cu2603\x01270=70000\x01271={v}\x01", "SHFE"),
        (
            31,
            "8\x0111=C1\x0137=O1\x0117=E1\x01150=F\x0139=2\x0155=cu2603\x0154=1\x0138=5\x0114=5\x01151=0\x016=70000\x0131={v}\x0132=5\x01",
            "SHFE",
        ),
        (704, "AP\x01710=R1\x01721=P1\x01727=1\x0155=HGH6\x01702=1\x01703=TQ\x01704={v}\x01", "COMEX"),
        (727, "AP\x01710=R1\x01721=P1\x01727={v}\x0155=HGH6\x01702=1\x01703=TQ\x01704=1\x01", "COMEX"),
        (380, "j\x0145=7\x01372=D\x01379=C1\x01380={v}\x01", "SHFE"),
    ],
)
def test_a_number_fix_does_not_write_is_answered_naming_its_tag(tag, body, venue, value):
    """FIX writes a number as ASCII digits, at most one '.' (a float) and an optional leading '-'.
    Python's float() and int() read '1e5', '+5', ' 5', '1_000' and other scripts' digits, which quickfix's
    validation let through: the engine took a broker's '1_000' for 1000. Each is a session Reject (373=6)
    naming its tag, whether the field is a float or a whole number."""
    if tag in (727, 380) and value in ("1.2.3", "."):
        value = "1.5"  # a whole-number field: a '.' is as wrong
    with pytest.raises(FixParseError) as err:
        _decoded(body.format(v=value), venue)
    assert (err.value.kind, err.value.reason, err.value.ref_tag) == ("session", 6, tag)


@pytest.mark.parametrize("value,number", [("5.", 5.0), (".5", 0.5), ("-0.25", -0.25), ("007", 7.0), ("70010", 70010.0)])
def test_every_number_fix_writes_is_read(value, number):
    _, (q,) = _decoded(f"X\x01262=MD-CU\x01268=1\x01279=0\x01269=0\x0155=cu2603\x01270={value}\x01271=5\x01")
    assert q.bid == number


def test_every_whole_number_fix_writes_is_read():
    """FIX's int: ASCII digits with an optional leading '-' (a reason code of -1 means nothing to the
    engine, which records it as given)."""
    for value, number in (("-1", -1), ("007", 7), ("4", 4)):
        _, (j,) = _decoded(f"j\x0145=7\x01372=D\x01379=C1\x01380={value}\x01")
        assert j.reason == number


def test_a_group_reads_the_same_entries_with_its_tag_texts_cached_or_not():
    """Parsed.group keeps each group's tag texts once made: the first read (nothing kept) and every later
    one give the same entries."""
    from engine.fix import codec as fix_codec
    from engine.fix.codec import Parsed

    body = "35=AP\x01702=2\x01703=TQ\x01704=3\x01703=SD\x01705=1\x0155=HGH6\x01"
    msg = Parsed(f"8=FIX.4.4\x019={len(body)}\x01{body}10=000\x01")
    fix_codec._GROUP_TEXT.clear()
    first = msg.group(702, (703, 704, 705))
    assert first == msg.group(702, (703, 704, 705)) == [{703: "TQ", 704: "3"}, {703: "SD", 705: "1"}]


def test_what_the_engine_asks_for_when_it_names_no_account_or_a_book_and_what_it_cannot_send():
    """A position request without an account asks for Account NONE (a venue's sessions without an
    account); a market data request asks for the bid (269=0) and the offer (269=1) of its symbol; an
    action that is no message is a TypeError naming it, never a message."""
    from engine.core.events import SendPositionRequest, SetTimer

    c = codec("COMEX")
    assert c.parse(wire(c, SendPositionRequest("COMEX", "PR-9", ""))).get(1) == "NONE"
    v = c.draft_of(Subscribe("COMEX", "HG", "HGH6", "MD9"), 1.8e9)
    assert "\x01267=2\x01269=0\x01269=1\x01146=1\x0155=HGH6\x01" in f"\x01{v.body}"
    with pytest.raises(TypeError, match=r"no FIX message for SetTimer\("):
        c.draft_of(SetTimer(1.0, "t"), 1.8e9)  # type: ignore[arg-type]


def test_a_message_built_field_by_field_is_framed_with_its_whole_header():
    """The fallback for a value that carries the delimiter: quickfix frames the built Message with
    BeginString, BodyLength and the session fields, as it frames a draft."""
    c = codec("SHFE")
    wire_text = c.frame(c.draft("D", [(11, "A\x01B"), (55, "cu2603")]), 3, 1.8e9, poss_dup=True)
    assert wire_text.startswith("8=FIX.4.4\x019=") and "\x0135=D\x01" in wire_text
    for field in ("34=3", "49=XMC", "56=VENUE", "43=Y", f"52={fix_time(1.8e9)}"):
        assert f"\x01{field}\x01" in wire_text


def test_fix_time_is_utc_whatever_the_machines_time_zone(monkeypatch):
    """A desk's machine in Shanghai or Chicago: SendingTime and TransactTime stay UTC (FIX's
    UTCTimestamp), formatted afresh (nothing cached from another zone)."""
    import time

    from engine.fix import codec as fix_codec

    for zone in ("Asia/Shanghai", "America/Chicago"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        fix_codec._SECOND_TEXT.clear()
        fix_codec._LAST_TIME = (-1.0, "")
        try:
            assert fix_time(VIRTUAL_EPOCH + 3600.25) == _fix_time_by_datetime(VIRTUAL_EPOCH + 3600.25), zone
        finally:
            monkeypatch.delenv("TZ")
            time.tzset()


def test_a_message_with_groups_built_field_by_field_keeps_every_entry():
    """The fallback for a value that carries the delimiter, in a message with groups: each entry is
    built in its group, with its members, in quickfix's order."""
    c = codec("SHFE")
    built = c.draft(
        "V",
        [(262, "MD\x019"), (263, "1"), (264, "1"), (265, "1")],
        ((267, [[(269, "0")], [(269, "1")]]), (146, [[(55, "cu2603")]])),
    )
    text = c.frame(built, 4, 1.8e9)
    assert "\x01267=2\x01269=0\x01269=1\x01" in text and "\x01146=1\x0155=cu2603\x01" in text


@pytest.mark.parametrize(("text", "seq"), [("7", 7), ("²", 0), ("٣", 0), ("", 0), ("-1", 0)])
def test_a_messages_sequence_number_is_read_from_fix_digits_only(text, seq):
    """MsgSeqNum as FIX writes it (ASCII digits); anything else is no sequence number (0), neither an
    exception ('²' passes str.isdigit but not int()) nor another script's digits read as a number."""
    from engine.fix.codec import Parsed

    assert Parsed(f"8=FIX.4.4\x019=5\x0135=0\x0134={text}\x0110=000\x01").seq == seq


def test_a_messages_type_and_sequence_number_are_read_whatever_their_order_and_none_is_empty():
    """MsgType (35) and MsgSeqNum (34) are read from their own fields, the first of each, in whichever
    order they stand (a header field before MsgType is not taken for it); a message without MsgType has
    none ("")."""
    from engine.fix.codec import Parsed

    swapped = Parsed("8=FIX.4.4\x019=5\x0134=7\x0135=D\x0135=8\x0134=9\x0110=000\x01")
    assert (swapped.msg_type, swapped.seq) == ("D", 7)
    assert Parsed("8=FIX.4.4\x019=5\x0134=7\x0110=000\x01").msg_type == ""
