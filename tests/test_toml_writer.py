"""The scenario document writer (`xmc run --print-scenario`, explore's reproducers): whatever TOML document it
is given, what it writes reads back as the same document."""

from __future__ import annotations

import datetime
import tomllib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from simulator.scenario import to_toml

keys = st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), st.text(min_size=0, max_size=6))
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.dates(),
    st.times(),
    st.datetimes(),
    st.datetimes(
        timezones=st.sampled_from([datetime.UTC, datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))])
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
tables = st.recursive(
    st.dictionaries(keys, values, max_size=4),
    lambda inner: st.dictionaries(keys, inner | values | st.lists(inner, min_size=1, max_size=2), max_size=4),
    max_leaves=8,
)


@given(doc=st.dictionaries(keys, tables | values, max_size=5))
@example(doc={"faults": [{"kind": "reject", "stream": "x\x01", "text": 'say "no" \\ \x7f'}]})
@example(doc={"expect": {"outcomes_at_least": {"HAPPY DAY": 1, "": 2, "a.b": 3}}})
@example(doc={"empty": {}, "scenario": {"failover": {}}})
@example(doc={"prices": {"world": {"start": float("inf"), "vol_bp": -0.0}}, "seed": -(2**63)})
@settings(max_examples=300, deadline=None)
def test_what_the_writer_writes_reads_back_as_the_same_document(doc):
    assert tomllib.loads(to_toml(doc)) == doc
