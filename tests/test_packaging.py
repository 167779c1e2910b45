"""A non-editable install works without the checkout: fix_specs/, the bundled scenarios and the
baseline travel as package data, and `xmc certify` runs from anywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_a_non_editable_install_certifies_without_the_checkout(tmp_path):
    wheels, site, out = tmp_path / "wheels", tmp_path / "site", tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("xmc-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    installed = site / "xmc" / "scenarios" / "f01_reject_far_leg_retry.toml"
    assert installed.exists() and (site / "engine" / "fix" / "specs" / "SHFE.xml").exists()
    # the installed copy first on the path, run from a directory that is not the checkout
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import engine.fix.dictionary as d, xmc.cli as c; "
        "print(d.SPEC_DIR, c.SCENARIO_DIR, c.BASELINE, sep='\\n', flush=True); sys.argv = ['xmc'] + sys.argv[2:]; "
        "sys.exit(c.main())"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(site), "certify", str(installed), "--seeds", "1", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    spec_dir, scenario_dir, baseline = run.stdout.splitlines()[:3]
    assert spec_dir.startswith(str(site)) and scenario_dir.startswith(str(site)) and baseline.startswith(str(site))
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "pass" and report["runs"][0]["scenario"] == "f01_reject_far_leg_retry"
