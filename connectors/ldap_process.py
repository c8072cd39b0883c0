"""LDAP pulls in a separate process. Decoding and mapping 100k entries is seconds of
Python: in a worker thread it would hold the GIL against the event loop.

The contacts come back as rows of plain values, not as Contacts: pickle rebuilds a frozen
dataclass field by field through its __setstate__, about a second per 100k contacts, where
plain tuples load in a tenth of that and Contact(*row) is the rest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import gc
import multiprocessing
import operator
import os
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from gateway.connector import Changes, Unavailable, die_with_parent
from gateway.model import Contact

Row = tuple[Any, ...]

_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(Contact)))
_POOL: concurrent.futures.ProcessPoolExecutor | None = None


async def changes_in_process(work: Callable[..., Changes], *args: Any) -> Changes:
    """`work(*args)` in the pull process. `work` and its arguments must pickle: a
    module-level function and plain values."""
    loop = asyncio.get_running_loop()
    try:
        shell, rows = await loop.run_in_executor(_processes(), _packed, work, *args)
    except BrokenProcessPool as exc:
        # Killed (the OOM killer, an operator): a broken pool stays broken, and every
        # later pull would fail until a restart. The next sync starts a new process.
        _discard_pool()
        raise Unavailable(
            "the LDAP pull process ended abruptly (killed, or out of memory); "
            "the next sync starts a new one"
        ) from exc
    # Off the loop: 100k Contacts take a quarter of a second to build.
    return await asyncio.to_thread(unpack, shell, rows)


def _processes() -> concurrent.futures.ProcessPoolExecutor:
    global _POOL
    if _POOL is None:
        # spawn, not fork: the gateway's process has threads and an event loop. Made on
        # the event loop's thread (which lives as long as the gateway): its workers die
        # with the gateway, even when it is SIGKILLed.
        _POOL = concurrent.futures.ProcessPoolExecutor(
            max_workers=2,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )
    return _POOL


def _discard_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=False, cancel_futures=True)
        _POOL = None


def _packed(work: Callable[..., Changes], *args: Any) -> tuple[Changes, list[Row]]:
    # A pull allocates millions of objects and frees few: the cyclic collector would walk
    # the growing heap again and again for nothing, a quarter of a 100k-entry pull's time.
    # This process does nothing else meanwhile.
    gc.disable()
    try:
        return pack(work(*args))
    finally:
        gc.enable()


def pack(changes: Changes) -> tuple[Changes, list[Row]]:
    """`changes` without its contacts, and the contacts as rows of field values."""
    return dataclasses.replace(changes, changed=()), [_FIELDS(c) for c in changes.changed]


def unpack(shell: Changes, rows: list[Row]) -> Changes:
    return dataclasses.replace(shell, changed=tuple(Contact(*row) for row in rows))
