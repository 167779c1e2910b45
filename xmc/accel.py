"""Compiled twins of the simulation's hot modules: mypyc builds them from the very same source, and a
process runs them only when the build matches every engine and simulator source it would otherwise
run, so an edit falls back to the Python modules until `python -m xmc.accel build` runs again.

The build lives in build/accel/<key>/, the key a digest of the Python and mypy versions and of every
.py file under engine/ and simulator/. `enable()` (called by the xmc command before it imports any
of them, and by the benchmarks) puts a finder in front of the import system that loads each compiled
module from there; it does nothing when XMC_PURE is set, when no build matches, or when one of the
modules was already imported as Python (one process never mixes the two copies of a class).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / "build" / "accel"
PACKAGES = ("engine", "simulator")
# The modules a simulated run spends its time in (profiled on the library): the venues, their books
# and market data, the links and sessions, the checkers, the run loop and failover model, the journal,
# the FIX codec, the run's report (episode rows, statistics) and the engine core's state machines. Not
# here: the fault reader (annotations its values do not meet), the events (their records must read
# back as written) and the action dispatcher (xmc live's quickfix Application inherits it): README,
# "Compiled hot modules".
MODULES = (
    "simulator.book",
    "simulator.checkers",
    "simulator.link",
    "simulator.failover",
    "simulator.prices",
    "simulator.rng",
    "simulator.runner",
    "simulator.shell",
    "simulator.stepping",
    "simulator.transport",
    "simulator.venue",
    "simulator.wire_checker",
    "engine.fix.codec",
    "engine.report",
    "engine.core.ack_watch",
    "engine.core.amending",
    "engine.core.engine_core",
    "engine.core.episode",
    "engine.core.ids",
    "engine.core.order",
    "engine.core.reconciliation",
    "engine.core.recovery",
    "engine.core.registry",
    "engine.core.risk",
    "engine.core.sizing",
    "engine.core.trigger",
    "engine.shell.journal",
)
COMPLETE = "complete"  # written last: a build cut short is never used

ENABLED: Path | None = None  # the build this process loads its compiled modules from, if any


def _sources(root: Path) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))


def key(root: Path = ROOT) -> str:
    """The digest a build must carry to stand in for the sources under `root`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        mypyc = version("mypy")
    except PackageNotFoundError:  # no compiler here: no build can match (an install without the test extra)
        mypyc = "none"
    h = hashlib.sha256()
    h.update(f"{sys.version}\0{mypyc}\0{','.join(MODULES)}\0".encode())
    for path in _sources(root):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def _compiled(build: Path) -> dict[str, Path]:
    """Module name -> extension file, for every compiled module of a build and its shared library."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    files = {}
    for path in build.rglob(f"*{suffix}"):
        parts = path.relative_to(build).with_name(path.name[: -len(suffix)]).parts
        files[".".join(parts)] = path
    return files


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, files: dict[str, Path]):
        self.files = files

    def find_spec(self, fullname, path=None, target=None):
        found = self.files.get(fullname)
        return None if found is None else importlib.util.spec_from_file_location(fullname, found)


def enable() -> bool:
    """Load the compiled modules from the build that matches the sources, when there is one."""
    global ENABLED
    if ENABLED is not None:
        return True
    if os.environ.get("XMC_PURE") or any(m in sys.modules for m in MODULES):
        return False
    build = BUILD_DIR / key()
    if not (build / COMPLETE).is_file():
        return False
    files = _compiled(build)
    if not set(MODULES) <= set(files):
        return False
    sys.meta_path.insert(0, _Finder(files))
    ENABLED = build
    return True


def build(root: Path = ROOT, quiet: bool = False) -> Path:
    """Compile MODULES with mypyc (unless a build for these sources exists) and return its directory."""
    target = root / "build" / "accel" / key(root)
    if (target / COMPLETE).is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="xmc-accel-") as tmp:
        work = Path(tmp)
        for path in _sources(root):  # mypyc writes beside what it compiles: a copy, never the checkout
            dest = work / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        shutil.copyfile(root / "pyproject.toml", work / "pyproject.toml")  # the same mypy settings
        paths = [m.replace(".", "/") + ".py" for m in MODULES]
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", *paths],
            cwd=work,
            capture_output=True,
            text=True,
            # a fixed hash seed: mypyc compiles a cycle of modules in set order, so the same sources
            # gave different C from build to build (mypy < 2.0 borrowed a cross-module property's
            # result in some orders and leaked it: every finished run stayed alive); one seed, one C
            env={**os.environ, "MYPYC_OPT_LEVEL": "3", "PYTHONHASHSEED": "0"},
        )
        if done.returncode != 0:
            raise RuntimeError(f"mypyc failed ({done.returncode}):\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
        shutil.rmtree(work / "build", ignore_errors=True)  # its C sources and objects
        files = _compiled(work)
        if not set(MODULES) <= set(files):
            raise RuntimeError(f"mypyc left no extension for {sorted(set(MODULES) - set(files))}")
        if target.parent.exists():
            shutil.rmtree(target.parent)  # older builds: no source matches them any more
        for path in files.values():
            dest = target / path.relative_to(work)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        (target / COMPLETE).write_text(key(root) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["build"], ["status"]):
        print("usage: python -m xmc.accel build|status", file=sys.stderr)
        return 2
    if args == ["status"]:
        current = BUILD_DIR / key()
        print(f"{'built' if (current / COMPLETE).is_file() else 'not built'}: {current}")
        return 0
    try:
        print(f"compiled modules: {build()}")
    except (RuntimeError, OSError) as exc:
        print(f"xmc.accel: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
