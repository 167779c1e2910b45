"""benchmarks/compare.py's refusals: a bad argument is exit 2 naming it, before any run or callgrind starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPARE = ROOT / "benchmarks" / "compare.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(COMPARE), *args], capture_output=True, text=True, timeout=60)


def test_an_other_checkout_that_is_not_one_is_refused(tmp_path):
    out = _run(str(tmp_path), "--instructions")
    assert out.returncode == 2
    assert f"{tmp_path}: not an xmc checkout" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_repeat_below_one_is_refused_in_both_modes():
    for mode in ([], ["--instructions"]):
        out = _run(str(ROOT), "--repeat", "0", *mode)
        assert out.returncode == 2
        assert "--repeat 0: must be at least 1" in out.stderr
        assert out.stdout == ""
