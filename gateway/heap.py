"""Bulk work on the heap: building 100,000 objects without the cyclic collector walking
them again and again, and handing freed memory back to the system afterwards.

Python frees objects to its allocator, and glibc keeps freed heap pages for reuse; after a
start-up read of 100,000 contacts that is tens of MB the process holds but no longer
uses. glibc's malloc_trim returns them (elsewhere, e.g. musl, there is nothing to do).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from collections.abc import Callable, Iterator
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def give_back() -> None:
    """Return the heap's free pages to the system, where the C library can."""
    if (trim := _malloc_trim()) is not None:
        trim(0)


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """No cyclic garbage collection while the block makes many objects that live on
    (contacts, an index: no cycles among them). Each collection walks every object made
    so far: loading a 100,000-contact snapshot spent most of its time in them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
