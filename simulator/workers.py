"""Local worker processes for simulated runs (`xmc certify`, `regress`, `explore`): spawned, each capped
in address space and replaced after a number of runs, so a long sweep's memory stays bounded."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

# The address space one worker may take: a run of a 300 s scenario needs a few hundred MB; one that
# grows without bound meets this cap as a MemoryError (a finding) instead of the OS's out-of-memory
# killer taking the worker, and with it the whole search, down.
RUN_MEMORY = 4 << 30
# Runs a worker makes before a fresh process replaces it. A compiled build (xmc/accel.py) may keep each
# finished run's objects alive (about 3 MB a 300 s run; the Python modules free them; mypyc's builds of
# the same sources differ, and two of four such builds leaked, two did not), so a worker that
# lived for a whole sweep grew without bound: explore's workers reached 12 GB in 11 minutes. A fresh
# worker costs its start-up (~0.35 s: imports, dictionaries) once per this many runs.
RUNS_PER_WORKER = 200


def cap_memory(limit: int) -> None:
    """Cap this process's address space at `limit` bytes (no-op where the OS has no such limit)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft == resource.RLIM_INFINITY or soft > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass


def local_pool(workers: int, memory: int = RUN_MEMORY, runs_per_worker: int = RUNS_PER_WORKER) -> ProcessPoolExecutor:
    """`workers` spawned processes (spawn, not fork: forking a process that has threads, quickfix's or a
    test runner's, can deadlock), each capped at `memory` bytes and replaced after `runs_per_worker` runs."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=cap_memory,
        initargs=(memory,),
        max_tasks_per_child=runs_per_worker,
    )
