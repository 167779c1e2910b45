"""Provenance of a report: which code, inputs and libraries produced it, and when (report.json)."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parents[1]
PROCESS_STARTED = datetime.now(UTC)  # imported as the command starts
COMMAND: list[str] = [Path(sys.argv[0]).name, *sys.argv[1:]]  # the CLI sets the arguments it parsed


@functools.cache  # installed packages do not change under a running process: looked up once
def version() -> str:
    try:
        return metadata.version("xmc")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def git_commit() -> str | None:
    """The commit of the source tree xmc runs from, when it is a git checkout (else None)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or len(commit) != 40:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def sha256_of(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


@functools.cache
def _lib(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def provenance(inputs: dict[str, str | Path] | None = None, started_at: datetime | None = None) -> dict[str, Any]:
    """Schema and xmc version, git commit, sha256 of each input file, library versions, command line
    and start time (UTC)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "xmc_version": version(),
        "git_commit": git_commit(),
        "inputs": {str(k): {"path": str(v), "sha256": sha256_of(v)} for k, v in (inputs or {}).items()},
        "python": platform.python_version(),
        "quickfix": _lib("quickfix"),
        "simpy": _lib("simpy"),
        "polars": _lib("polars"),
        "command": list(COMMAND),
        "started_at": (started_at or PROCESS_STARTED).isoformat(timespec="seconds"),
    }
