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
from collections.abc import Callable
from typing import Any

from gateway.connector import Changes
from gateway.model import Contact

Row = tuple[Any, ...]

_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(Contact)))
_POOL: concurrent.futures.ProcessPoolExecutor | None = None


async def changes_in_process(work: Callable[..., Changes], *args: Any) -> Changes:
    """`work(*args)` in the pull process. `work` and its arguments must pickle: a
    module-level function and plain values."""
    loop = asyncio.get_running_loop()
    shell, rows = await loop.run_in_executor(_processes(), _packed, work, *args)
    # Off the loop: 100k Contacts take a quarter of a second to build.
    return await asyncio.to_thread(unpack, shell, rows)


def _processes() -> concurrent.futures.ProcessPoolExecutor:
    global _POOL
    if _POOL is None:
        # spawn, not fork: the gateway's process has threads and an event loop.
        _POOL = concurrent.futures.ProcessPoolExecutor(
            max_workers=2, mp_context=multiprocessing.get_context("spawn")
        )
    return _POOL


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
