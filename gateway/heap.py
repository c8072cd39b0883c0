"""Handing freed memory back to the system after a big one-off piece of work.

Python frees objects to its allocator, and glibc keeps freed heap pages for reuse; after a
start-up read of 100,000 contacts that is tens of MB the process holds but no longer
uses. glibc's malloc_trim returns them (elsewhere, e.g. musl, there is nothing to do).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
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
