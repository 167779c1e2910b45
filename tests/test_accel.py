"""The compiled build of the hot modules (xmc/accel.py): used only when it matches the sources, and a
run on it is the same run, byte for byte, as on the Python modules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simulator import runner, scenario
from xmc import accel

ROOT = Path(__file__).resolve().parents[1]
XMC = ROOT / ".venv" / "bin" / "xmc"


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for pkg in accel.PACKAGES:
        shutil.copytree(ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_a_build_stands_in_only_for_the_sources_it_was_built_from(tmp_path):
    root = _tree(tmp_path)
    built = accel.key(root)
    assert built == accel.key(ROOT)
    engine_core = root / "engine" / "core" / "engine_core.py"
    engine_core.write_text(engine_core.read_text() + "\n# an edit\n")
    assert accel.key(root) != built, "an edit to a compiled module must retire the build"
    engine_core.write_text(engine_core.read_text().removesuffix("\n# an edit\n"))
    assert accel.key(root) == built
    config = root / "engine" / "config.py"  # not compiled, but the compiled modules were typed against it
    config.write_text(config.read_text() + "\n")
    assert accel.key(root) != built
    config.write_text(config.read_text()[:-1])
    (root / "simulator" / "new_module.py").write_text('"""new"""\n')
    assert accel.key(root) != built


def _enabled_in_child(env: dict[str, str], build_dir: Path | None = None) -> str:
    code = "from pathlib import Path; from xmc import accel\n"
    if build_dir is not None:
        code += f"accel.BUILD_DIR = Path({str(build_dir)!r})\n"
    code += "print(accel.enable())\nimport simulator.venue as v\nprint(v.__file__)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def test_without_a_matching_build_the_python_modules_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XMC_PURE"}
    out = _enabled_in_child(env, tmp_path / "no-build-here")
    assert out.splitlines() == ["False", str(ROOT / "simulator" / "venue.py")]
    stale = tmp_path / "accel" / ("0" * 24)  # a build for other sources is never picked
    stale.mkdir(parents=True)
    (stale / accel.COMPLETE).write_text("0" * 24 + "\n")
    assert _enabled_in_child(env, tmp_path / "accel").splitlines()[0] == "False"


def _require_build() -> None:
    if not (accel.BUILD_DIR / accel.key() / accel.COMPLETE).is_file():
        if os.environ.get("CI"):
            pytest.fail("the compiled build is missing in CI: scripts/bootstrap runs `python -m xmc.accel build`")
        pytest.skip("no compiled build for these sources: run .venv/bin/python -m xmc.accel build")


def test_xmc_pure_keeps_the_python_modules_even_with_a_build():
    _require_build()
    env = {k: v for k, v in os.environ.items() if k != "XMC_PURE"}
    first = _enabled_in_child(env).splitlines()
    assert first[0] == "True" and first[1].startswith(str(accel.BUILD_DIR)), first
    assert _enabled_in_child({**env, "XMC_PURE": "1"}).splitlines()[0] == "False"


# Runs that between them pass every compiled module's paths the library takes: a takeover (the shell's
# successor), a crash and journal replay, partial fills and chases, lost messages and status questions,
# a disconnect, the ratio trigger with FX, and a market locked at its limit.
SAMPLE = (
    ("f25_failover_primary_crash_mid_chase", 2),
    ("f30_engine_crash_torn_journal", 1),
    ("f06_partial_fill_rest_working", 3),
    ("f11_dropped_messages", 4),
    ("f13_disconnect_no_cancel", 5),
    ("cu_hg_ratio", 1),
    ("f33_far_leg_locks_limit_up", 2),
    ("f46_disconnect_reports_lost", 1),
)


def test_a_run_on_the_compiled_build_is_the_run_on_the_python_modules(tmp_path):
    """Every message, fill, audit row and verdict the same (run_hash covers them): mypyc compiled the
    same source, and nothing it does differently (float arithmetic, int and float coercions at typed
    boundaries) may show."""
    _require_build()
    env = {k: v for k, v in os.environ.items() if k != "XMC_PURE"}
    for name, seed in SAMPLE:
        out = tmp_path / name
        subprocess.run(
            [str(XMC), "run", str(ROOT / "scenarios" / f"{name}.toml"), "--seed", str(seed), "--out", str(out)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        compiled = json.loads((out / "report.json").read_text())
        assert compiled["wall"]["compiled"] is True, f"{name}: the xmc command did not load the compiled build"
        pure = runner.run(scenario.load(ROOT / "scenarios" / f"{name}.toml"), seed).report
        assert compiled["run_hash"] == pure["run_hash"], name
        for part in ("counters", "episodes", "invariants", "expectations"):
            assert compiled.get(part) == json.loads(json.dumps(pure.get(part))), f"{name}: {part}"


def test_each_build_reads_fields_the_faster_way():
    """The codec reads a message's fields by splitting when compiled and by the regular expression as
    Python bytecode (`xmc live`'s modules), each the faster there; both give the same pairs (test_fix)."""
    from engine.fix import codec

    assert codec._SPLIT_IS_FASTER is (not codec.__file__.endswith(".py"))  # by where it was loaded from
    _require_build()
    code = "from xmc import accel\nassert accel.enable()\nfrom engine.fix import codec\nprint(codec._SPLIT_IS_FASTER)\n"
    env = {k: v for k, v in os.environ.items() if k != "XMC_PURE"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "True", done.stderr[-2000:]


def test_every_module_imports_beside_the_compiled_build():
    """A Python class may not inherit from a compiled one (mypyc refuses at import): every module of
    engine, simulator and xmc must load in a process that runs the build, `xmc live`'s shell included."""
    _require_build()
    code = (
        "import importlib, pkgutil\n"
        "from xmc import accel\n"
        "assert accel.enable()\n"
        "import engine, simulator, xmc\n"
        "for pkg in (engine, simulator, xmc):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XMC_PURE"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_only_the_commands_that_simulate_load_the_build():
    from xmc.cli import _simulates

    for argv in (["certify"], ["regress", "--baseline", "b.json"], ["explore", "s.toml"], ["run", "s.toml"]):
        assert _simulates(argv), argv
    for argv in (
        [],
        ["live", "--config", "c.toml"],
        ["venue", "s.toml"],
        ["parity", "s.toml"],
        ["run", "s.toml", "--mode", "wire"],
        ["run", "s.toml", "--mode=wire"],
    ):
        assert not _simulates(argv), argv


# A run that keeps nothing alive once it returns: objects the collector tracks after three more runs,
# beyond those after two warm-up runs (interned strings, caches, the dictionaries loaded once)
_KEPT_AFTER_RUNS = """
import gc, sys
from xmc import accel
compiled = accel.enable() if sys.argv[1] == "compiled" else False
from simulator import runner, scenario
sc = scenario.load(sys.argv[2])
for seed in (1, 2):
    runner.run(sc, seed)
gc.collect()
before = len(gc.get_objects())
for seed in (1, 2, 3):
    runner.run(sc, seed)
gc.collect()
print(compiled, len(gc.get_objects()) - before)
"""


@pytest.mark.parametrize("build", ["compiled", "python"])
def test_a_finished_run_keeps_nothing_alive(build):
    """A worker runs hundreds of runs (certify, explore): each must leave nothing behind. Half the mypyc
    builds before mypy 2.0 kept every finished run's objects (~2,000 of them, ~2.6 MB): a venue's session
    end reached through a cross-module @property was borrowed and never released (python/mypy#21230),
    in the module orders some builds happened to take. This fails on such a build."""
    if build == "compiled":
        _require_build()
    env = {k: v for k, v in os.environ.items() if k != "XMC_PURE"}
    sample = ROOT / "scenarios" / "f31_failover_both_nodes_crash_in_turn.toml"  # failover, restarts, drops
    done = subprocess.run(
        [sys.executable, "-c", _KEPT_AFTER_RUNS, build, str(sample)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    compiled, kept = done.stdout.split()
    assert compiled == str(build == "compiled"), done.stderr[-2000:]
    assert int(kept) < 100, f"{kept} objects still alive after three finished runs ({build})"
