"""A shared/exclusive gate for asyncio tasks: many holders at once, or one alone.

PUTs hold it shared; a reload holds it alone, waiting for PUTs under way to finish and
keeping new ones waiting until the new configuration is in place. A waiting reload goes
before PUTs that arrive after it, so a stream of PUTs cannot starve it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Gate:
    def __init__(self) -> None:
        self._shared = 0
        self._alone = False
        self._waiting_alone = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._alone and not self._waiting_alone)
            self._shared += 1
        try:
            yield
        finally:
            async with self._changed:
                self._shared -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def alone(self) -> AsyncIterator[None]:
        async with self._changed:
            self._waiting_alone += 1
            try:
                await self._changed.wait_for(lambda: not self._alone and not self._shared)
            finally:
                self._waiting_alone -= 1
                self._changed.notify_all()  # a cancelled wait must not block PUTs
            self._alone = True
        try:
            yield
        finally:
            async with self._changed:
                self._alone = False
                self._changed.notify_all()
