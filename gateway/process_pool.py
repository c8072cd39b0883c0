"""CPU-bound batches in worker processes, where threads would take turns on the GIL.

A pool lives only for the call that needs it: a first read of a large source happens at
start and rarely after, and idle workers would hold their memory for nothing. Workers are
fresh interpreters (spawned), never forks of this (threaded) process: no worker inherits a
lock some other thread held at the fork. On Linux each worker is killed when this process
dies, even by SIGKILL: a gateway that crashed mid-scan leaves no worker behind, blocked on a
pipe nobody reads, holding its memory (a fork server outlived the gateway that way).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
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
    try:
        with _pool(workers) as pool:
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
    try:
        with _pool(1) as pool:
            return pool.submit(func, *args).result()
    except (BrokenProcessPool, OSError) as exc:
        event("process_pool_failed", logging.WARNING, error=type(exc).__name__, detail=str(exc))
        return func(*args)


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )


#: prctl(2): the signal a process gets when its parent (the thread that made it) ends.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a worker: be killed when `parent` dies (Linux; elsewhere nothing). The pool is
    made and shut down by one thread, which outlives its workers."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)
