"""Runs on a Ray cluster (`--ray [ADDRESS]` of xmc certify and explore): the same functions the
local process pool runs, as Ray tasks; without an address a local Ray is started for the command.
Workers import xmc from this checkout (PYTHONPATH in the job's runtime environment)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "install Ray with: .venv/bin/pip install -e '.[ray]'"


def _reachable(address: str, timeout: float = 3.0) -> None:
    """Raise RuntimeError unless something accepts a connection at a host:port (or ray://host:port)
    address: Ray itself waits a minute and more on an address where nothing listens."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the other forms Ray reads: left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError, OverflowError) as exc:
        raise RuntimeError(
            f"nothing answers at {address} ({exc}); start a Ray head there (ray start --head) or give --ray "
            f"without an address for a local Ray"
        ) from None


class RayPool:
    def __init__(self, address: str | None, cpus: int | None = None):
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError(f"Ray is not installed; {INSTALL}") from exc
        env = {"env_vars": {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}}
        if address:
            _reachable(address)
            try:
                ray.init(address=address, runtime_env=env, log_to_driver=False, ignore_reinit_error=True)
            except ValueError as exc:  # an address Ray cannot read ("Invalid address format: ...")
                raise RuntimeError(
                    f"{address!r} is no Ray address ({exc}); give HOST:PORT or ray://HOST:PORT of a Ray head, "
                    f"auto for the one this machine runs, or --ray without an address for a local Ray"
                ) from None
        else:
            ray.init(
                num_cpus=cpus, include_dashboard=False, runtime_env=env, log_to_driver=False, ignore_reinit_error=True
            )
        self.ray = ray
        self._remote: dict[Callable, Any] = {}

    def map(self, fn: Callable, calls: list[tuple]) -> list:
        """fn(*args) for each args, as Ray tasks; results in the order of `calls`."""
        remote = self._remote.setdefault(fn, self.ray.remote(fn))
        return self.ray.get([remote.remote(*args) for args in calls])

    def close(self) -> None:
        self.ray.shutdown()
