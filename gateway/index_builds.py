"""Search indexes of big compositions, built ahead in a worker thread, one at a time per
document (and user): while one is built, only the newest composition made meanwhile
waits for its turn. A phone PUTting edit after edit makes a composition each time, and
building an index of 100k contacts for every one of them (seconds each) would keep a
core busy and the event loop waiting for the interpreter lock; until its own is built,
a composition's searches read the index of the one before (`Directory.build_ahead`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable

from gateway.directory import Directory
from gateway.logs import event


class IndexBuilds:
    def __init__(self) -> None:
        #: Keys with a build under way -> the build to run after it (None: none).
        self._next: dict[Hashable, Callable[[], None] | None] = {}

    def soon(self, key: Hashable, directory: Directory) -> None:
        """Build `directory`'s index in a worker thread now, or after the build under way
        for `key` (replacing a build waiting there: that composition is superseded)."""
        build = directory.build_ahead()  # from now on its searches read the stand-in
        if key in self._next:
            self._next[key] = build
            return
        self._start(key, build)

    def _start(self, key: Hashable, build: Callable[[], None]) -> None:
        self._next[key] = None
        future = asyncio.get_running_loop().run_in_executor(None, build)
        future.add_done_callback(lambda done: self._done(key, done))

    def _done(self, key: Hashable, done: asyncio.Future[None]) -> None:
        if not done.cancelled() and (exc := done.exception()) is not None:
            event("index_build_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc))
        following = self._next.pop(key, None)
        if following is not None:
            self._start(key, following)

    @property
    def running(self) -> int:
        """How many builds are under way."""
        return len(self._next)
