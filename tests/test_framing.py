"""What a simulated venue frames without quickfix's build (engine.fix.codec.laid_out: its market data,
and every message of its own without groups) is, byte for byte, what quickfix frames from the same fields."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.fix.codec import _FRAMING_TAGS, VIRTUAL_EPOCH, Draft, FixCodec
from engine.fix.dictionary import load

plain = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\x01"), min_size=1, max_size=9)
odd = st.sampled_from(["", "é", "a=b", " "])  # empty and non-ASCII go to quickfix; '=' and spaces do not


@st.composite
def refresh(draw):
    """The entries of an incremental refresh as a venue writes them: a change (279=1) or a deletion (279=2)."""
    value = plain | odd if draw(st.booleans()) else plain
    entries = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            entries.append(
                [
                    (279, "1"),
                    (269, draw(st.sampled_from("01"))),
                    (55, draw(value)),
                    (270, draw(value)),
                    (271, draw(value)),
                ]
            )
        else:
            entries.append([(279, "2"), (269, draw(st.sampled_from("01"))), (55, draw(value))])
    return draw(value), entries


@given(
    venue=st.sampled_from(["SHFE", "COMEX", "FXFEED"]),
    message=refresh(),
    seq=st.integers(1, 10**7),
    t=st.floats(0, 1e6, allow_nan=False),
)
@settings(max_examples=400, deadline=None)
def test_a_laid_out_refresh_is_what_quickfix_frames(venue, message, seq, t):
    """The venue's laid-out refresh (simulator.venue.Venue._refresh_draft's body) against quickfix's build
    of the same fields: header order, BodyLength and CheckSum included; values quickfix must see
    (empty, non-ASCII) are framed by quickfix."""
    req_id, entries = message
    codec = FixCodec(load(venue), venue, "XMC")
    body = "".join(f"{tag}={value}\x01" for entry in entries for tag, value in entry)
    laid = Draft("X", f"262={req_id}\x01268={len(entries)}\x01{body}", True, None, True)
    built = codec.draft("X", [(262, req_id)], ((268, entries),))
    assert codec.frame(laid, seq, VIRTUAL_EPOCH + t) == codec.frame(built, seq, VIRTUAL_EPOCH + t)


# any tag but the ones framing sets: the header and trailer tags quickfix moves out of a body (115, 97,
# 89, ...) and tags above the laid-out range included
body_tag = st.integers(1, 12_000).filter(lambda t: t not in _FRAMING_TAGS) | st.sampled_from(
    [1, 6, 11, 14, 17, 31, 32, 37, 38, 39, 54, 55, 58, 60, 89, 93, 97, 115, 122, 150, 151, 9999, 10_000]
)


@given(
    venue=st.sampled_from(["SHFE", "COMEX", "FXFEED"]),
    msg_type=st.sampled_from(["8", "9", "j", "AP", "3"]),
    fields=st.lists(st.tuples(body_tag, plain | odd), max_size=14),
    seq=st.integers(1, 10**7),
    t=st.floats(0, 1e6, allow_nan=False),
)
@settings(max_examples=400, deadline=None)
def test_a_laid_out_venue_message_is_what_quickfix_frames(venue, msg_type, fields, seq, t):
    """A venue's own message without groups (simulator.venue.Member.send lays it out) against quickfix's
    build of the same fields, in any order, with any tag: the same bytes, or quickfix frames it."""
    codec = FixCodec(load(venue), venue, "XMC")
    laid = codec.draft(msg_type, fields, lay_out=True)
    built = codec.draft(msg_type, fields)
    assert not isinstance(built, Draft) or not built.laid_out
    assert codec.frame(laid, seq, VIRTUAL_EPOCH + t) == codec.frame(built, seq, VIRTUAL_EPOCH + t)


def test_a_venue_execution_report_is_laid_out():
    """The common case takes the fast path: an execution report's fields, in the venue's order."""
    codec = FixCodec(load("SHFE"), "SHFE", "XMC")
    fields = [(37, "SH1"), (11, "c1"), (17, "SHE2"), (150, "0"), (39, "0"), (55, "cu2603"), (54, "1"), (38, "5")]
    draft = codec.draft("8", fields, lay_out=True)
    assert isinstance(draft, Draft) and draft.laid_out
    assert draft.body.startswith("11=c1\x0117=SHE2\x0137=SH1\x01")


@pytest.mark.parametrize(
    "name", ["cu_hg_spread", "f15_market_data_gap", "f16_price_limit_lock", "f84_partial_leaves_one_lot_short"]
)
def test_a_run_is_the_same_with_refreshes_built_by_quickfix(name, monkeypatch):
    """A library run whose venues frame their refreshes and reports themselves is the run where quickfix
    builds them: the same wire, message for message (and most messages were laid out)."""
    from engine.fix import codec as codec_module
    from simulator import runner, scenario
    from tests.conftest import ROOT

    sc = scenario.load(ROOT / "scenarios" / f"{name}.toml")
    calls = [0]
    real = codec_module.laid_out

    def counting(*args):
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(codec_module, "laid_out", counting)
    fast = runner.run(sc, 1)
    assert calls[0] > 0.5 * len(fast.messages), (calls[0], len(fast.messages))
    monkeypatch.setattr(codec_module, "laid_out", lambda *args: None)  # quickfix frames every message
    slow = runner.run(sc, 1)
    assert fast.messages == slow.messages
    assert fast.report["run_hash"] == slow.report["run_hash"]


@pytest.mark.parametrize("filler", ["~", "\x7f", "0"])
def test_checksum_of_refreshes_around_the_adler_bound(filler):
    """laid_out takes the byte sum from Adler-32 up to 515 bytes and sums the bytes beyond: messages of
    every length across that bound, of the heaviest ASCII bytes, checksum as quickfix's."""
    codec = FixCodec(load("COMEX"), "COMEX", "XMC")
    entries = [[(279, "2"), (269, "0"), (55, "HG")]]
    lengths = set()
    for n in range(380, 480):
        req_id = filler * n
        laid = Draft("X", f"262={req_id}\x01268=1\x01279=2\x01269=0\x0155=HG\x01", True, None, True)
        built = codec.draft("X", [(262, req_id)], ((268, entries),))
        wire = codec.frame(laid, 12345, VIRTUAL_EPOCH + 1.5)
        assert wire == codec.frame(built, 12345, VIRTUAL_EPOCH + 1.5)
        lengths.add(len(wire.rsplit("10=", 1)[0]))
    assert min(lengths) < 500 and max(lengths) > 530
