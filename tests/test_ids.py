"""The ClOrdID scheme (engine/core/ids.py): what a child order's id says, and the epoch any id carries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.core.ids import CHILD_ID, PURPOSE_TAG, child_id, decision_of, epoch_of, purpose_tag, stamp

decisions = st.builds(lambda e, n: f"E{e}-{n:06d}", st.integers(1, 999), st.integers(1, 999_999))
purposes = st.sampled_from(sorted(PURPOSE_TAG))


@given(decisions, st.sampled_from("AB"), st.integers(1, 99), purposes, st.integers(1, 999))
def test_a_child_orders_id_names_its_decision_leg_and_purpose_however_it_is_stamped(decision, leg, n, purpose, epoch):
    """A child order's id, stamped by the node that sends it (its decision's own epoch, or a later one
    as a suffix), reads back as its decision, leg and purpose: what `Reconciliation.adopt` matches a
    report of an earlier node's order with."""
    cl = stamp(child_id(decision, leg, n, purpose), epoch)
    m = CHILD_ID.match(cl)
    assert m is not None and m.group(1) == decision and m.group(2) == leg and m.group(3) == PURPOSE_TAG[purpose]


@given(decisions, st.sampled_from("AB"), st.integers(1, 99), purposes, st.integers(1, 999), st.integers(1, 9))
def test_a_cancel_or_replace_id_is_never_taken_for_a_child_order(decision, leg, n, purpose, epoch, k):
    """Found by mutation (the pattern without its end anchor passed the suite): the id of a cancel
    (<ClOrdID>C<n>) or of a replace (<first ClOrdID>M<n>), stamped or not, is no child order's id, so an
    earlier node's cancel answer is never adopted as an order of its own."""
    cl = stamp(child_id(decision, leg, n, purpose), epoch)
    for request in (f"{cl}C{k}", f"{cl}M{k}"):
        assert CHILD_ID.match(request) is None
        assert CHILD_ID.match(stamp(request, epoch + 1)) is None


@given(
    decisions,
    st.sampled_from("AB"),
    st.integers(1, 99),
    purposes,
    st.lists(st.integers(1, 999), min_size=1, max_size=6),
)
def test_an_id_carries_the_epoch_of_the_node_that_sent_it_last(decision, leg, n, purpose, epochs):
    """An order stamped by one node and cancelled by the next (each cancel stamped by its sender) carries
    the epoch of its own sender, the last stamp, not one met earlier in the id (found by mutation: a
    suffix pattern without its end anchor read the first)."""
    cl = child_id(decision, leg, n, purpose)
    own = int(decision[1:].split("-")[0])
    assert epoch_of(cl) == own
    for k, epoch in enumerate(epochs, 1):
        cl = stamp(cl, epoch)  # the decision's own epoch stamps nothing: its prefix says it
        assert epoch_of(cl) == epoch, cl
        cl = f"{cl}C{k}"  # the next node's request about it, stamped by that node next round
    assert epoch_of(stamp(cl, own)) == own  # a request of the decision's own node: its prefix
    assert epoch_of("ORDER-1") is None


@given(
    decisions,
    st.sampled_from("AB"),
    st.integers(1, 99),
    purposes,
    st.lists(st.tuples(st.sampled_from("CM"), st.integers(1, 9), st.integers(1, 999) | st.none()), max_size=3),
    st.integers(1, 999),
)
def test_every_id_that_names_an_order_reads_back_its_purpose(decision, leg, n, purpose, requests, epoch):
    """The order's own id, a replace's, a cancel of a replaced order, each stamped or not: the same purpose
    (the audit trail's role and the fault filters read it; an amended order had none)."""
    cl = stamp(child_id(decision, leg, n, purpose), epoch)
    for kind, k, later in requests:
        cl = f"{cl}{kind}{k}"
        if later is not None:
            cl = stamp(cl, later)
        assert purpose_tag(cl) == PURPOSE_TAG[purpose], cl
    assert purpose_tag("MD-CU-1") is None and purpose_tag(f"X{cl}") is None


@given(
    decisions,
    st.sampled_from("AB"),
    st.integers(1, 99),
    purposes,
    st.integers(1, 999),
    st.sampled_from(["", "C1", "M2"]),
)
def test_every_id_of_ours_reads_back_its_decision_whatever_the_epochs_digits(decision, leg, n, purpose, epoch, request):
    """An order, its cancel or its replace, however stamped, names its decision (what invariant 5's
    failures report); an id not of ours is its own name."""
    cl = child_id(decision, leg, n, purpose) + request
    assert decision_of(stamp(cl, epoch)) == decision
    assert decision_of("FOREIGN-1") == "FOREIGN-1"
