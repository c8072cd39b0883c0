"""CPU-bound batches in worker processes, where threads would take turns on the GIL.

A pool lives only for the call that needs it: a first read of a large source happens at
start and rarely after, and idle workers would hold their memory for nothing. Workers are
forked from a fork server, a fresh interpreter of its own, never from this (threaded)
process: no worker inherits a lock some other thread held at the fork.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar, TypeVarTuple

from gateway.logs import event

Batch = TypeVar("Batch")
Result = TypeVar("Result")
Args = TypeVarTuple("Args")


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as `taskset` or a container's
    cpuset sets it), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_batches(func: Callable[[Batch], Result], batches: Sequence[Batch]) -> list[Result]:
    """`func` over each batch, in order: in worker processes (one per usable core) when
    there is more than one batch, else here. `func` and the batches must pickle: a
    module-level function and plain data."""
    if len(batches) <= 1:
        return [func(batch) for batch in batches]
    # One worker even on one core: the work's Python then never holds this process's
    # GIL (the event loop's), and its garbage stays out of this process's heap.
    workers = min(usable_cores(), len(batches))
    context = _context(func)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            return list(pool.map(func, batches))
    except (BrokenProcessPool, OSError) as exc:
        # A worker killed (the OOM killer) or none could start (no /dev/shm, a process
        # limit): the work is still done, here, only slower.
        event("process_pool_failed", logging.WARNING, error=type(exc).__name__, detail=str(exc))
        return [func(batch) for batch in batches]


def run_elsewhere(func: Callable[[*Args], Result], *args: *Args) -> Result:
    """`func(*args)` in a worker process of its own (here if none can start): for one big
    piece of work whose garbage should not stay in this process's heap, nor its Python
    hold this process's GIL."""
    context = _context(func)
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(func, *args).result()
    except (BrokenProcessPool, OSError) as exc:
        event("process_pool_failed", logging.WARNING, error=type(exc).__name__, detail=str(exc))
        return func(*args)


def _context(func: Callable[..., object]) -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    # The fork server imports the work's module once (when it starts): workers forked
    # from it then start at once instead of each importing it again.
    module = getattr(func, "func", func).__module__
    context.set_forkserver_preload([module])
    return context
