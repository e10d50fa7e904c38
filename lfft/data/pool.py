"""Worker processes for the data stages: how many, and an in-order map with bounded memory.

Stages hand whole batches or partitions to workers (pure functions of Arrow tables, so nothing
is shared but what is pickled), and take results back in input order, so the output is the same
with any number of workers. Workers are spawned, not forked: a fork of a process holding
pyarrow's thread pools can hang, and spawn behaves the same on every platform.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

MAX_AUTO_WORKERS = 8


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_workers(requested: int, size: int, threshold: int) -> int:
    """``requested`` processes, or with 0 (auto) one per core (at most 8) once ``size``
    reaches ``threshold`` (below it, starting workers costs more than it saves)."""
    if requested > 0:
        return requested
    if size < threshold:
        return 1
    return max(1, min(cores(), MAX_AUTO_WORKERS))


def process_pool(workers: int, initializer: Callable[[], Any] | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes (shut it down with ``cancel_futures=True``)."""
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer)


def ordered(pool: ProcessPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """``pool.map(fn, items)`` in order, with at most ``window`` items in flight (bounded
    memory: ``items`` is consumed only as results are taken)."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """``map(fn, items)`` in ``workers`` processes (in this one when ``workers <= 1``), results
    in input order; ``fn`` and the items must pickle."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = process_pool(workers)
    try:
        yield from ordered(pool, fn, items, workers + 1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
