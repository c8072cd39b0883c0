"""Source instances: one per shared source, one per user for per-user sources (made on
first use), loaded from the store, synced at start and then on their schedule."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from gateway.config import Config
from gateway.model import UserRef
from gateway.scheduler import SyncScheduler, retry_delay
from gateway.source_state import SourceState
from gateway.store import Store

if TYPE_CHECKING:
    from gateway.metrics import Metrics


class Sources:
    """Every source instance of a configuration, shared or per user, and their refresh."""

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store
        self.metrics: Metrics | None = None
        self.scheduler = SyncScheduler()
        self._per_user = {
            name: source.connector_class.is_per_user(source.settings)
            for name, source in config.sources.items()
        }
        self._states: dict[tuple[str, str], SourceState] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def attach_store(self, store: Store) -> None:
        """Keep snapshots in `store` from now on (instances made earlier included)."""
        self.store = store
        for state in self._states.values():
            state.store = store

    def is_per_user(self, name: str) -> bool:
        return self._per_user[name]

    def state(self, name: str, user: UserRef) -> SourceState:
        """The instance of `name` that serves `user` (made on first use, not yet synced)."""
        key = (name, user.xui if self._per_user[name] else "")
        if (state := self._states.get(key)) is None:
            source = self.config.sources[name]
            cls = source.connector_class
            if self._per_user[name]:
                settings = cls.settings_for_user(source.settings, user.template_values())
                connector = cls(name, settings, user)
            else:
                connector = cls(name, source.settings)
            state = self._states[key] = SourceState(name, source, connector, self.store)
            state.metrics = self.metrics
        return state

    def states(self) -> list[SourceState]:
        return list(self._states.values())

    async def ready(self, state: SourceState) -> SourceState:
        """The state with its stored snapshot, synced once if it never was; a stale
        per-user one refreshes in the background."""
        await state.load()
        if not state.has_data:
            if state.lock.locked():
                return state  # its first sync is under way: not ready yet, don't queue up
            if state.failures and time.time() - state.attempted_at < retry_delay(state):
                return state  # failed a moment ago: phones polling must not hammer upstream
            await state.refresh()
        elif state.user is not None and _older_than(state.synced_at, state.config.interval):
            state.synced_at = time.time()  # one background refresh at a time
            self._spawn(state.refresh())
        return state

    def shared_states(self) -> list[SourceState]:
        anyone = UserRef("")
        return [
            self.state(name, anyone) for name, per_user in self._per_user.items() if not per_user
        ]

    async def start(self, wait: float) -> None:
        """Load the stored snapshots, sync every shared source, then keep each fresh on its
        schedule. Waits up to `wait` seconds for the first syncs; a slower source goes on in
        the background (its documents answer 503 until it has data, unless the store had
        some) so serving never waits on it."""
        states = self.shared_states()
        await asyncio.gather(*(state.load() for state in states))
        self.scheduler.start(states)
        first = [self._spawn(self.scheduler.run(state)) for state in states]
        if first:
            await asyncio.wait(first, timeout=wait)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        self.scheduler.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for state in self._states.values():
            await state.connector.close()


def _older_than(moment: float | None, seconds: float) -> bool:
    return moment is not None and time.time() - moment > seconds
