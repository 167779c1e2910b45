"""Job functions for tests of explore's process pool: importable by name in a spawned worker."""

from __future__ import annotations

import os


def allocate(job: dict) -> dict:
    """Try to take `job["bytes"]` of memory at once: what a worker's address-space cap allows."""
    try:
        block = bytearray(job["bytes"])
    except MemoryError:
        return {"took": False}
    return {"took": len(block) == job["bytes"]}


def die_if_asked(job: dict) -> dict:
    """End the worker process abruptly (as the OS's out-of-memory killer does) when the job says so."""
    if job.get("die"):
        os._exit(9)
    return {"n": job["n"]}
