"""The command line: exit codes, and bad scenario files reported with file, key and remedy (exit 2)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, SPREAD
from xmc.cli import main

BASE = SPREAD.read_text()
SHORT = (
    BASE.replace("duration_s = 300", "duration_s = 60")
    .replace("min_episodes = 3", "min_episodes = 1")
    .replace("outcomes_at_least = { BALANCED = 3 }", "outcomes_at_least = { BALANCED = 1 }")
)


def write(tmp_path, text: str):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "edit,key,hint",
    [
        (lambda s: s.replace("[risk]", "[risk]\nmax_leverage = 3"), "risk.max_leverage", "not a known key"),
        (lambda s: s.replace("tick = 10\n", "tick = 0\n"), "instruments.CU.tick", "tick size >= 1e-9"),
        (lambda s: s.replace("lot_ratio = [5, 2]", "lot_ratio = [5, 0]"), "strategy.lot_ratio", "whole numbers > 0"),
        (
            lambda s: s.replace(
                'latency_up = { dist = "constant", ms = 1.0 }', 'latency_up = { dist = "constant", ms = -1.0 }'
            ),
            "venues.FX.latency_up.ms",
            "in [0, 60000]",
        ),
        (lambda s: s.replace("duration_s = 300", 'duration_s = "long"'), "scenario.duration_s", "a number"),
        (lambda s: s.replace("clip_lots_a = 5\n", ""), "strategy.clip_lots_a", "is missing"),
        (lambda s: s.replace('venue = "COMEX"', 'venue = "LME"'), "instruments.HG.venue", "unknown venue"),
        (lambda s: s.replace('dictionary = "COMEX"', 'dictionary = "NOPE"'), "venues.COMEX.dictionary", "fix_specs"),
        (lambda s: s.replace('kind = "spread"', 'kind = "magic"'), "strategy.trigger.kind", "counter_price"),
        (
            lambda s: s.replace("outcomes_at_least = { BALANCED = 3 }", "outcomes_at_least = { HAPPY = 1 }"),
            "expect.outcomes_at_least.HAPPY",
            "BALANCED",
        ),
    ],
)
def test_bad_scenario_is_exit_2_naming_file_key_and_fix(tmp_path, capsys, edit, key, hint):
    path = write(tmp_path, edit(BASE))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and key in err and hint in err and "Traceback" not in err


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    path = write(tmp_path, BASE.replace("tick = 10\n", "tick = 0\n").replace("[risk]", "[risk]\nfoo = 1"))
    assert main(["run", str(path)]) == 2
    assert re.search(r"2 problem\(s\)", capsys.readouterr().err)


def test_invalid_toml_and_missing_file(tmp_path, capsys):
    assert main(["run", str(write(tmp_path, "[scenario\n"))]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "absent.toml")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["certify", str(tmp_path / "nowhere")]) == 2


def test_bad_cli_arguments_are_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(SPREAD), "--seed", "abc"])
    assert exc.value.code == 2
    assert main(["certify", str(SPREAD), "--seeds", "0"]) == 2


@pytest.mark.parametrize(
    "command", [["certify", str(SPREAD)], ["regress", "--baseline", "b.json"], ["explore", str(SPREAD)]]
)
def test_more_local_processes_than_8_per_core_is_exit_2_before_any_starts(tmp_path, capsys, command):
    """-j 100000 once spawned a Python process per job up to that many (each ~150 MB): exit 2 at once."""
    from xmc.cli import local_jobs_limit

    limit = local_jobs_limit()
    assert main([*command, "-j", str(limit + 1), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"-j {limit + 1}: give at most {limit} processes" in err and "Traceback" not in err
    assert ("--ray" in err) == (command[0] != "regress")  # regress has no cluster to offer
    assert not (tmp_path / "o").exists()


def test_run_passes_with_exit_0_and_fails_with_exit_1(tmp_path, capsys):
    assert main(["run", str(write(tmp_path, SHORT)), "--seed", "1", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "audit.parquet").exists()
    impossible = SHORT.replace("min_episodes = 1", "min_episodes = 10000")
    assert main(["run", str(write(tmp_path, impossible)), "--seed", "1"]) == 1


def test_certify_prints_a_table_and_writes_a_report(tmp_path, capsys):
    short = write(tmp_path, SHORT)
    assert main(["certify", str(short), "--seeds", "2", "-j", "1", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "run_hash" in out and "2/2 runs pass" in out
    assert (tmp_path / "c" / "report.json").exists() and (tmp_path / "c" / "runs" / "bad-s2" / "messages.log").exists()


@pytest.mark.slow
def test_certify_in_parallel_processes_matches_serial_hashes(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    short = write(tmp_path, SHORT)
    hashes = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}"
        subprocess.run(
            [sys.executable, "-m", "xmc.cli", "certify", str(short), "--seeds", "2", "-j", jobs, "--out", str(out)],
            check=True,
            capture_output=True,
            cwd=ROOT,
            timeout=300,
        )
        hashes[jobs] = [r["run_hash"] for r in json.loads((out / "report.json").read_text())["runs"]]
    assert hashes["1"] == hashes["2"]


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["run", "{spread}", "--out", "{file}"], "--out {file}: is a file"),
        (["run", "{spread}", "--out", "{file}/below"], "--out {file}/below: cannot be written"),
        (["certify", "{spread}", "--out", "{file}"], "--out {file}: is a file"),
        (["parity", "{spread}", "--duration", "1", "--out", "{file}"], "--out {file}: is a file"),
        (["venue", "--scenario", "{spread}", "--state", "{dir}"], "--state {dir}: is a directory"),
        (["venue", "--scenario", "{spread}", "--state-dir", "{file}"], "--state-dir {file}: is a file"),
    ],
)
def test_output_paths_are_checked_before_any_work(tmp_path, capsys, argv, fragment):
    """Once a traceback after the whole run (one per worker under certify -j 2); now exit 2 at once."""
    (tmp_path / "f").write_text("x")
    values = {"spread": str(SPREAD), "file": str(tmp_path / "f"), "dir": str(tmp_path)}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert fragment.format(**values) in err and "Traceback" not in err


def test_version_and_the_provenance_of_every_report(tmp_path, capsys):
    import hashlib
    import json

    from tests.conftest import ROOT

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("xmc ")
    child = ROOT / "scenarios" / "f32_chase_refused_unwinds.toml"
    assert main(["run", str(child), "--out", str(tmp_path / "run")]) in (0, 1)
    prov = json.loads((tmp_path / "run" / "report.json").read_text())["provenance"]
    digests = {v["sha256"] for v in prov["inputs"].values()}
    for f in (child, ROOT / "scenarios" / "cu_hg_spread.toml"):  # the file and the base it extends
        assert hashlib.sha256(f.read_bytes()).hexdigest() in digests
    assert prov["schema_version"] == 1 and prov["quickfix"] and prov["simpy"] and prov["python"]
    assert prov["command"][1:3] == ["run", str(child)] and prov["started_at"].endswith("+00:00")


@pytest.mark.slow
def test_certify_writes_junit_that_an_independent_reader_parses(tmp_path, capsys):
    """One testcase per scenario and seed; a failing run carries its failed expectations and the replay
    command; timings are properties. Read back with junitparser, not with our own code."""
    import junitparser

    from tests.conftest import ROOT

    bad = tmp_path / "demanding.toml"
    bad.write_text(
        (ROOT / "scenarios" / "f03_reject_fatal_unwind.toml")
        .read_text()
        .replace('extends = "cu_hg_spread.toml"', f'extends = "{ROOT / "scenarios" / "cu_hg_spread.toml"}"')
        .replace('name = "f03_reject_fatal_unwind"', 'name = "demanding"')
        .replace("min_legged = 1", "min_legged = 1000")
    )
    junit = tmp_path / "junit.xml"
    code = main(
        [
            "certify",
            str(ROOT / "scenarios" / "f32_chase_refused_unwinds.toml"),
            str(bad),
            "--seeds",
            "2",
            "-j",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--junit",
            str(junit),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err  # not a terminal: one line per finished run, for CI logs
    assert "f32_chase_refused_unwinds seed 2: pass" in err and "demanding seed 1: fail" in err
    xml = junitparser.JUnitXml.fromfile(str(junit))
    cases = [case for suite in xml for case in suite]
    assert len(cases) == 4
    failing = [c for c in cases if not c.is_passed]
    assert {c.classname for c in failing} == {"xmc.demanding"} and len(failing) == 2
    failure = failing[0].result[0]
    assert "min_legged" in failure.message and "replay: xmc run" in failure.text
    passing = next(c for c in cases if c.is_passed)
    props = {
        p.name: p.value
        for group in passing.iterchildren(junitparser.Properties)
        for p in group.iterchildren(junitparser.Property)
    }
    assert len(props["run_hash"]) == 64 and "signal_to_acks_ms_p99" in props and float(passing.time) > 0


def test_progress_names_the_running_scenarios_and_an_eta_on_a_terminal():
    from xmc.cli import _Progress

    jobs = [(f"scenarios/s{i}.toml", seed, None) for i in range(3) for seed in (1, 2)]
    bar = _Progress(jobs, workers=2, tty=True)
    bar.done = 2
    bar.started -= 10.0  # two runs took 10 s: four left, about 20 s
    text = bar.line()
    assert text.startswith("\r[") and "2/6 runs" in text and "ETA 0m2" in text
    assert "running: s1 s1, s1 s2" in text
    log = _Progress(jobs, workers=2, tty=False)
    log.done = 6
    line = log.line({"scenario": "s2", "seed": 2, "verdict": "pass", "wall": {"run_s": 0.8}})
    assert line.startswith("[6/6] s2 seed 2: pass (0.8 s)") and line.endswith("6/6 runs done")


def _options_of_type(parse) -> list[tuple[str, str]]:
    """Every (subcommand, option) of the CLI whose value is read by `parse` (an argparse type)."""
    import argparse

    from xmc.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [
        (name, action.option_strings[0])
        for name, parser in sub.choices.items()
        for action in parser._actions
        if action.type is parse
    ]


def _number_options() -> list[tuple[str, str]]:
    """Every (subcommand, option) of the CLI that takes a number with a fraction (type finite)."""
    from xmc.cli import finite

    return _options_of_type(finite)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "NaN", "twelve"])
def test_no_number_option_takes_nan_infinity_or_text(capsys, value):
    """float() takes nan and inf, which pass any range check written as a comparison: `parity --duration
    nan` ran forever and `audit --from nan` answered "(no rows)". Every number option of every
    subcommand is parsed by one type that refuses them: exit 2 naming the option and the value."""
    options = _number_options()
    assert len(options) >= 13 and ("parity", "--duration") in options and ("audit", "--from") in options
    for command, option in options:
        with pytest.raises(SystemExit) as done:
            main([command, f"{option}={value}", "x.toml"])
        err = capsys.readouterr().err
        assert done.value.code == 2, (command, option)
        assert f"argument {option}" in err and repr(value) in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["certify", "{spread}", "--seeds", "100000000000"], "--seeds 100000000000: give a whole number in 1..100,000"),
        (["parity", "{spread}", "--duration", "1e9"], "--duration 1e+09: give seconds in (0, 86400]"),
        (["run", "{spread}", "--mode", "wire", "--duration", "1e9"], "--duration 1e+09: give seconds in (0, 86400]"),
    ],
)
def test_sweeps_and_durations_beyond_their_domain_are_refused_before_any_work(capsys, argv, fragment):
    """A hundred billion seeds made certify build its job list until memory ran out."""
    assert main([a.format(spread=SPREAD) for a in argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_ctrl_c_reaches_python_after_quickfix_is_imported():
    """quickfix's import sets SIGINT back to the OS default under Python's feet: Ctrl-C then killed xmc
    at once (no finally: temporary journals left, an explore's findings lost). engine.fix puts
    Python's handler back, so the interrupt arrives as KeyboardInterrupt."""
    code = (
        "import os, signal, engine.fix, simulator.runner\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    __import__('threading').Event().wait(5)  # the interrupt arrives first\n"
        "except KeyboardInterrupt:\n"
        "    print('caught')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "caught"), done


def test_an_interrupted_command_is_exit_130_without_a_traceback(monkeypatch, tmp_path, capsys):
    from simulator import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    assert main(["run", str(SPREAD), "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "xmc: interrupted" in err and "Traceback" not in err


def _seed_options() -> list[tuple[str, str]]:
    """Every (subcommand, option) of the CLI that takes a seed (type seed_number)."""
    from xmc.cli import seed_number

    return _options_of_type(seed_number)


@given(
    seed=st.one_of(
        st.integers(), st.integers(-(2**70), 2**70), st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1])
    )
)
@settings(max_examples=200, deadline=None)
def test_every_seed_option_takes_exactly_the_seed_domain(seed):
    """`run --seed 99999999999999999999999` traded for five minutes of virtual time and then died in a
    traceback writing audit.parquet (its seed column is signed 64-bit). Every --seed of every subcommand
    reads one domain, the one scenario files and baselines are held to: a signed 64-bit whole number."""
    import argparse

    from simulator.scenario import SEED_MAX, SEED_MIN, seed_in_domain
    from xmc.cli import seed_number

    assert seed_in_domain(seed) == (SEED_MIN <= seed <= SEED_MAX)
    if seed_in_domain(seed):
        assert seed_number(str(seed)) == seed
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="signed 64-bit"):
            seed_number(str(seed))


def test_a_seed_beyond_the_domain_is_exit_2_on_every_subcommand_and_its_edge_runs_and_is_queried(tmp_path, capsys):
    options = _seed_options()
    assert {c for c, _ in options} >= {"run", "parity", "explore", "audit", "venue"}, options
    for command, option in options:
        for value in (str(2**63), "99999999999999999999999", "1.5", "seven"):
            with pytest.raises(SystemExit) as done:
                main([command, f"{option}={value}", "x.toml"])
            err = capsys.readouterr().err
            assert done.value.code == 2 and f"argument {option}" in err and "Traceback" not in err, (command, err)
    # the largest seed runs, writes its audit trail and is found again by it
    out = tmp_path / "edge"
    assert main(["run", str(SPREAD), "--seed", str(2**63 - 1), "--duration", "20", "--out", str(out)]) in (0, 1)
    capsys.readouterr()
    assert main(["audit", str(out), "--seed", str(2**63 - 1), "--json"]) == 0
    assert str(2**63 - 1) in capsys.readouterr().out


def test_run_duration_sets_the_virtual_run_and_wire_only_options_are_refused_in_virtual_time(tmp_path, capsys):
    """`run --duration` used to be read in wire mode only: in virtual time `--duration -5` (or 20) ran
    the scenario's full five minutes and said nothing. It now runs that many virtual seconds (as parity
    does), inside the same domain as wire mode; the options only wire mode reads are refused there."""
    import json

    assert main(["run", str(SPREAD), "--duration", "20", "--out", str(tmp_path)]) in (0, 1)
    report = json.loads((tmp_path / "report.json").read_text())
    signals = [e["signal_at_s"] for e in report["episodes"]]
    assert report["duration_s"] == 20.0 and all(t <= 20.0 for t in signals), signals
    capsys.readouterr()
    for argv, says in [
        (["--duration", "-5"], "--duration -5: give seconds in (0, 86400]"),
        (["--duration", "0"], "--duration 0: give seconds in (0, 86400]"),
        (["--link-latency"], "--link-latency: only for --mode wire"),
        (["--kill-venues-at", "3"], "--kill-venues-at: only for --mode wire"),
        (["--venues-down", "2", "--link-latency"], "--link-latency, --venues-down: only for --mode wire"),
    ]:
        assert main(["run", str(SPREAD), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err


def test_certify_refuses_two_files_whose_runs_would_overwrite_each_other_and_runs_a_file_named_twice_once(
    tmp_path, capsys
):
    """Two scenario files sharing a scenario name (the key of report.json and the baseline) or a file
    name (runs/<stem>-s<seed>): certify ran both, kept one run of the two in the baseline ("2 runs"
    written, one held) and one set of artefacts. Refused before any work, naming both files."""
    import json

    text = SPREAD.read_text().replace("duration_s = 300", "duration_s = 20")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same_stem = tmp_path / "a" / "spread.toml"
    same_stem.write_text(text.replace('name = "cu_hg_spread"', 'name = "one"'))
    (tmp_path / "b" / "spread.toml").write_text(text.replace('name = "cu_hg_spread"', 'name = "two"'))
    same_name = tmp_path / "b" / "other.toml"
    same_name.write_text(text.replace('name = "cu_hg_spread"', 'name = "one"'))
    for second, says in [
        (tmp_path / "b" / "spread.toml", "its file name 'spread' is also"),
        (same_name, "its scenario name 'one' is also"),
    ]:
        assert main(["certify", str(same_stem), str(second), "--seeds", "1", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert says in err and str(same_stem) in err and str(second) in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()  # nothing ran
    # the same file twice, by two spellings of its path: one run per seed
    twice = [str(same_stem), str(tmp_path / "b" / ".." / "a" / "spread.toml")]
    code = main(["certify", *twice, "--seeds", "2", "--out", str(tmp_path / "t"), "-j", "1"])
    assert code in (0, 1)
    runs = json.loads((tmp_path / "t" / "report.json").read_text())["runs"]
    assert sorted((r["scenario"], r["seed"]) for r in runs) == [("one", 1), ("one", 2)]


def test_junit_is_well_formed_xml_whatever_text_a_run_carries_and_a_name_is_printable(tmp_path, capsys):
    """A scenario named with a control character (or a venue's reject text, a path carrying one) made
    `--junit` write XML no reader parses. A name or description with one is refused at the front door,
    and the JUnit writer turns any character XML 1.0 cannot hold into U+FFFD."""
    import dataclasses
    from xml.etree import ElementTree as ET

    from engine.report import junit_xml
    from simulator import runner, scenario

    sc = dataclasses.replace(scenario.load(SPREAD), duration=20.0)
    report = runner.run(sc).report
    report = {**report, "verdict": "fail", "replay": "xmc run /tmp/a\x01b\x1b[31m.toml\udcff --seed 7"}
    report["expectations"] = [{"key": "k\x02", "expected": 1, "actual": 0, "verdict": "fail"}]
    root = ET.fromstring(junit_xml([report]).encode("utf-8", "surrogatepass"))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and "\ufffd" in (failure.text or "")
    text = SPREAD.read_text()
    for key in ("name", "description"):
        path = tmp_path / f"{key}.toml"
        path.write_text(text.replace(f'\n{key} = "', f'\n{key} = "x\\u001b[31m', 1))
        assert main(["run", str(path)]) == 2, key
        err = capsys.readouterr().err
        assert f"scenario.{key}:" in err and "no control characters" in err, err


def test_a_ray_address_where_nothing_listens_and_a_venue_host_that_is_no_address_are_exit_2(tmp_path, capsys):
    """`certify --ray 127.0.0.1:1` waited on Ray's own connection timeout (over a minute) before failing;
    `venue --host 999.1.1.1` served and announced an address no engine can have. Both are exit 2 at once."""
    import socket

    with socket.socket() as kept:  # a port the OS assigned, held and never listened on: refused
        kept.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{kept.getsockname()[1]}"
        for command in (["certify", str(SPREAD), "--seeds", "1"], ["explore", str(SPREAD), "--runs", "1"]):
            assert main([*command, "--ray", address, "--out", str(tmp_path / command[0])]) == 2, command
            err = capsys.readouterr().err
            assert f"--ray: nothing answers at {address}" in err and "Traceback" not in err, err
    # a port in digits str.isdigit takes but int() does not: no address, said at once (not left to Ray)
    assert main(["certify", str(SPREAD), "--seeds", "1", "--ray", "127.0.0.1:²", "--out", str(tmp_path / "s")]) == 2
    assert "--ray: nothing answers at 127.0.0.1:²" in capsys.readouterr().err
    # no address at all (Ray's own ValueError was a traceback): named, with the forms Ray reads
    for command in (["certify", str(SPREAD), "--seeds", "1"], ["explore", str(SPREAD), "--runs", "1"]):
        assert main([*command, "--ray", "abc", "--out", str(tmp_path / "abc")]) == 2, command
        err = capsys.readouterr().err
        assert "--ray: 'abc' is no Ray address" in err and "HOST:PORT" in err and "Traceback" not in err, err
    assert main(["venue", "--scenario", str(SPREAD), "--host", "999.1.1.1", "--duration", "1"]) == 2
    assert "--host 999.1.1.1: not an IP address" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["run", "{f}"], ["live", "--config", "{f}"], ["regress", "--baseline", "{f}"], ["certify", "{f}", "--seeds", "1"]],
)
def test_an_input_that_is_no_regular_file_is_exit_2_not_a_read_forever(tmp_path, capsys, argv):
    """`xmc run /dev/zero` read until memory ran out, and a named pipe waited for a writer: a scenario,
    config or baseline must be a regular file (of at most 64 MiB), else exit 2 naming it."""
    import os

    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    for f in ("/dev/zero", str(fifo)):
        assert main([a.format(f=f) for a in argv]) == 2, (argv, f)
        err = capsys.readouterr().err
        assert f"{f} is not a regular file" in err and "Traceback" not in err, err


def test_an_input_larger_than_its_limit_is_refused_before_it_is_read(tmp_path):
    from engine.config import UnreadableInput, read_input

    path = tmp_path / "big.toml"
    path.write_text("x" * 11)
    assert read_input(path, limit=11) == "x" * 11
    with pytest.raises(UnreadableInput, match="larger than"):
        read_input(path, limit=10)


def _password_file_cannot_be_read(tmp_path, password_file) -> None:
    """The test live config with its password read from `password_file` is refused naming that key."""
    from engine.config import ConfigError
    from engine.shell.live_config import load

    text = (ROOT / "tests" / "live_broker.toml").read_text().replace("PORT", "9999")
    text = text.replace("OUT_DIR", str(tmp_path / "out")).replace(
        'password_env = "XMC_BROKER_PASSWORD"', f'password_file = "{password_file}"'
    )
    config = tmp_path / "live.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(config)
    assert any(p.key == "sessions.BROKER.password_file" and "cannot be read" in p.what for p in err.value.problems)


def test_a_credential_file_that_cannot_be_read_is_named_not_a_traceback(tmp_path, monkeypatch):
    """A live config's password_file (or XMC_<NAME>_FILE) holding bytes that are not UTF-8, or naming
    /dev/zero, raised UnicodeDecodeError or read forever; now a problem naming the key or variable."""
    from engine.config import ConfigError
    from engine.shell.live import credential

    bad = tmp_path / "pw"
    bad.write_bytes(b"\xff\xfe secret")
    _password_file_cannot_be_read(tmp_path, bad)
    for path in (str(bad), "/dev/zero"):
        monkeypatch.setenv("XMC_T_PASSWORD_FILE", path)
        monkeypatch.delenv("XMC_T_PASSWORD", raising=False)
        with pytest.raises(ConfigError, match="XMC_T_PASSWORD_FILE"):
            credential("T_PASSWORD")


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["run", "{p}"], "{p}: 1 problem(s)"),
        (["run", str(SPREAD), "--out", "{p}"], "--out {p}: cannot be written"),
        (["certify", "{p}", "--seeds", "1"], "{p}: cannot be looked at"),
        (["certify", str(SPREAD), "--seeds", "1", "--junit", "{p}"], "--junit {p}: cannot be looked at"),
        (["regress", "--baseline", "{p}"], "{p}: 1 problem(s)"),
        (["live", "--config", "{p}"], "{p}"),
        (["audit", "{p}"], "{p}: cannot be looked at"),
    ],
)
def test_a_path_that_cannot_be_looked_at_is_exit_2_naming_it(tmp_path, capsys, argv, fragment):
    """Path.exists() and is_dir() raise for a name longer than the file system's limit, for a path
    through a file (and for a directory without search permission): `xmc run --out <300 x's>` ended in
    a traceback. Every check of a user's path goes through engine.config.path_kind."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for p in (str(tmp_path / ("y" * 300)), str(a_file / "x")):
        assert main([a.format(p=p) for a in argv]) == 2, (argv, p)
        err = capsys.readouterr().err
        assert fragment.format(p=p) in err and "Traceback" not in err, err
        if "looked at" in fragment:
            assert "each name at most 255 bytes" in err, err


def test_an_extends_or_a_credential_path_that_cannot_be_looked_at_is_a_problem_of_its_key(tmp_path):
    from engine.config import ConfigError
    from simulator import scenario

    long = tmp_path / ("y" * 300)
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{long}"\n[scenario]\nname = "child"\ndescription = "d"\n')
    with pytest.raises(ConfigError) as err:
        scenario.load(child)
    assert [p.key for p in err.value.problems] == ["extends"]
    assert "cannot be looked at (File name too long)" in err.value.problems[0].what
    _password_file_cannot_be_read(tmp_path, long)


def test_audit_finds_its_files_past_a_directory_that_vanishes_or_loops(tmp_path, monkeypatch):
    """`xmc audit /tmp` walked into a run's scratch directory as it was removed and ended in a traceback
    (Path.rglob raises FileNotFoundError there); a directory that vanishes or cannot be read is passed by."""
    import os

    from engine.audit_query import files_of

    run = tmp_path / "deep" / "run"
    run.mkdir(parents=True)
    (run / "audit.parquet").write_bytes(b"")  # only listed here, never read
    (tmp_path / "gone").mkdir()
    (tmp_path / "loop").symlink_to(tmp_path)  # a symlinked directory: not followed
    real_scandir = os.scandir

    def vanishing(path="."):
        if os.fspath(path).endswith("gone"):
            raise FileNotFoundError(2, "No such file or directory", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", vanishing)
    assert files_of(tmp_path) == [run / "audit.parquet"]


@pytest.mark.parametrize("client", ["", "A B", "a=b", "x|y", "\u00e9", "x" * 65])
def test_a_venue_client_compid_is_printable_ascii_without_separators(capsys, client):
    """A CompID goes into every header (49/56), which carries no MessageEncoding: `--client é` was
    served (str.isprintable() takes it), and an engine logging on with it would put non-ASCII on the wire."""
    argv = ["venue", "--scenario", str(SPREAD), "--duration", "1", "--client", client]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--client {client!r}: a CompID is 1-64 printable ASCII characters" in err, err


def _spread_live_config(tmp_path) -> Path:
    """A live config for the spread scenario's venues (ports 1-3, nothing listens), state under tmp_path."""
    from simulator.localnet import live_config

    config = tmp_path / "live.toml"
    config.write_text(live_config(SPREAD.read_text(), {"SHFE": 1, "COMEX": 2, "FX": 3}, tmp_path / "state"))
    return config


@pytest.mark.parametrize("digit", ["²", "٣"])
def test_a_port_in_other_digits_than_ascii_is_exit_2_naming_the_flag(tmp_path, capsys, digit):
    """str.isdigit takes '²' (which int() then refuses: a traceback) and '٣' (which int() reads as 3):
    a port is ASCII digits, and anything else is the flag's usage error."""
    assert main(["venue", "--scenario", str(SPREAD), "--port", f"SHFE={digit}", "--duration", "0.1"]) == 2
    assert f"--port SHFE={digit}: write VENUE=PORT" in capsys.readouterr().err
    config = _spread_live_config(tmp_path)
    argv = ["live", "--config", str(config), "--role", "primary", "--peer", f"127.0.0.1:{digit}", "--duration", "0.1"]
    assert main(argv) == 2
    assert f"--peer 127.0.0.1:{digit}: write HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("node", ["a/b", "../up", ".hidden", "é", "x" * 65, "a b"])
def test_a_node_name_that_cannot_name_a_journal_file_is_exit_2(tmp_path, capsys, node):
    """`--node a/b` reached the journal's open (out_dir/engine-a/b.journal) and ended in a traceback; a
    node name is ASCII letters, digits, '.', '_' and '-', for every role, said before anything starts."""
    config = _spread_live_config(tmp_path)
    assert main(["live", "--config", str(config), "--node", node, "--duration", "0.1"]) == 2
    err = capsys.readouterr().err
    assert f"--node {node!r}: write a name of letters, digits" in err and "Traceback" not in err, err
    assert not list((tmp_path / "state").glob("*.journal"))


@pytest.mark.parametrize(
    "flag, value", [("--misses", "0"), ("--misses", "-3"), ("--heartbeat-ms", "0"), ("--lease-ttl-s", "0")]
)
def test_failover_numbers_out_of_range_are_exit_2_whatever_the_role(tmp_path, capsys, flag, value):
    """They were checked only for --role primary/standby: a single node took `--misses -3` silently."""
    config = _spread_live_config(tmp_path)
    assert main(["live", "--config", str(config), flag, value, "--duration", "0.1"]) == 2
    assert "--heartbeat-ms > 0, --misses >= 1 and --lease-ttl-s >= 1" in capsys.readouterr().err


def test_a_wire_credential_comes_from_its_variable_or_its_file_never_both(tmp_path, monkeypatch):
    """Found by mutation (the variable's default, the file read when the variable is set too): XMC_<NAME>
    alone, a file named by XMC_<NAME>_FILE alone (its line end cut), '' with neither; both set is an
    error naming the two variables, as both keys are in a live config."""
    from engine.config import ConfigError
    from engine.shell.live import credential

    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    monkeypatch.delenv("XMC_T_PASSWORD", raising=False)
    monkeypatch.delenv("XMC_T_PASSWORD_FILE", raising=False)
    assert credential("T_PASSWORD") == ""
    monkeypatch.setenv("XMC_T_PASSWORD", "from-env")
    assert credential("T_PASSWORD") == "from-env"
    monkeypatch.setenv("XMC_T_PASSWORD_FILE", str(secret))
    with pytest.raises(ConfigError) as err:
        credential("T_PASSWORD")
    assert "XMC_T_PASSWORD and XMC_T_PASSWORD_FILE" in str(err.value) and "from-" not in str(err.value)
    monkeypatch.delenv("XMC_T_PASSWORD")
    assert credential("T_PASSWORD") == "from-file"
    secret.write_text("p" * (64 * 1024 + 1))  # the same 64 KiB limit as every input file
    with pytest.raises(ConfigError, match="larger than"):
        credential("T_PASSWORD")


def test_a_wire_run_with_a_credential_set_twice_is_exit_2_before_any_venue_starts(tmp_path, capsys, monkeypatch):
    """`xmc run --mode wire` reads the engine's logon credentials (XMC_<VENUE>_USERNAME, _PASSWORD, each
    or its _FILE) first: one set both ways is exit 2 naming the two variables, before a venue process
    is started (none is left behind, and nothing waits on a logon)."""
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    monkeypatch.setenv("XMC_SHFE_PASSWORD", "pw")
    monkeypatch.setenv("XMC_SHFE_PASSWORD_FILE", str(secret))
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or pytest.fail("a venue started"))
    argv = ["run", str(SPREAD), "--mode", "wire", "--duration", "1", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "XMC_SHFE_PASSWORD and XMC_SHFE_PASSWORD_FILE" in err and "Traceback" not in err, err
    assert not started


def test_a_venue_given_two_ports_is_exit_2_naming_both(capsys):
    """`xmc venue --port SHFE=1 --port SHFE=2 ...` took the last port silently."""
    argv = ["venue", "--scenario", str(SPREAD), "--duration", "0.1"]
    ports = ["--port", "SHFE=1", "--port", "COMEX=3", "--port", "FX=4", "--port", "SHFE=2"]
    assert main(argv + ports) == 2
    assert "--port: SHFE given twice (1 and 2); give each venue one port" in capsys.readouterr().err


def test_a_directory_path_holding_a_nul_character_is_a_usage_error_not_a_traceback(tmp_path):
    """A path from a config file (argv cannot carry one) with a NUL character: os.mkdir raised ValueError
    out of writable_dir, a traceback for `xmc live`; now the usage error names it."""
    from xmc.cli import UsageError, writable_dir

    with pytest.raises(UsageError, match=r"\[live\] out_dir of c.toml: '.*\\x00x': holds a NUL character"):
        writable_dir(tmp_path / "out\0x", "[live] out_dir of c.toml:")
    assert writable_dir(tmp_path / "out", "--out") == tmp_path / "out"
