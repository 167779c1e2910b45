"""Local worker processes for simulated runs (`xmc certify`, `regress`, `explore`): spawned, each capped
in address space, so a run that grows without bound is a MemoryError, not the OS killing the worker."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

# The address space one worker may take: a run of a 300 s scenario needs a few hundred MB; one that
# grows without bound meets this cap as a MemoryError (a finding) instead of the OS's out-of-memory
# killer taking the worker, and with it the whole search, down.
RUN_MEMORY = 4 << 30


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


def local_pool(workers: int, memory: int = RUN_MEMORY) -> ProcessPoolExecutor:
    """`workers` spawned processes (spawn, not fork: forking a process that has threads, quickfix's or a
    test runner's, can deadlock), each capped at `memory` bytes. Not replaced after some runs: Python 3.11's
    max_tasks_per_child left `xmc regress` waiting with no worker alive (CI, 400 of 525 runs)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=cap_memory,
        initargs=(memory,),
    )
