"""Runs the mutation oracle's scenarios in the order test_oracle.SELECTED lists them (mutmut passes a
mutant's tests as a set, so they would otherwise run in an arbitrary order): the strictest and
broadest scenarios come first, so a mutant they kill (-x stops at the first failure) costs one or two
runs instead of a random prefix of the library."""

from __future__ import annotations


def pytest_collection_modifyitems(config, items):
    scenarios = next((item.module.SCENARIOS for item in items if hasattr(item.module, "SCENARIOS")), [])
    rank = {f"{path.stem}@{seed}": i for i, (path, seed) in enumerate(scenarios)}
    items.sort(key=lambda item: rank.get(getattr(getattr(item, "callspec", None), "id", ""), len(rank)))
