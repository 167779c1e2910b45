"""The oracle of the mutation run (scripts/mutate): the certification library itself.

Every bundled scenario at its own seed must hold its expectations and every safety invariant; a
mutant of the engine core that still passes all of them survived the library. The scenarios run
in their full virtual duration: the oracle is the library as certification runs it, not a summary.
Not part of the default test run (pytest collects tests/ only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import runner, scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_the_library_holds(path):
    rep = runner.run(scenario.load(path)).report
    failed = [f"{x['key']}: expected {x['expected']}, got {x['actual']}" for x in rep["expectations"]
              if x["verdict"] != "pass"]
    assert not failed, f"{rep['replay']}: {failed}"
