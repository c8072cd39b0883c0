"""Source instances: one per shared source, one per user for per-user sources (made on
first use), loaded from the store, synced at start and then on their schedule.

Per-user instances are dropped from memory when their user has been idle for
`user_idle_timeout`, and the least recently used go first beyond `max_active_users`;
their connectors are closed (an upstream session each). What they knew stays in the
store: the next request makes a new instance that serves the stored snapshot at once.
An instance in use is never dropped: a request or sync under way, a failed save, or
(asked through `pins`) changes from phones still waiting in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gateway.config import Config
from gateway.logs import event
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
        self.scheduler.runs_here = lambda state: not self.follows(state)
        self._per_user = {
            name: source.connector_class.is_per_user(source.settings)
            for name, source in config.sources.items()
        }
        self._states: dict[tuple[str, str], SourceState] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Users with per-user instances -> when last used (time.monotonic), oldest first.
        self._users: dict[str, float] = {}
        #: Connectors of dropped instances being closed (awaited by `stop`).
        self._closing: set[asyncio.Task[None]] = set()
        #: Told which users' instances were dropped (the render cache forgets them).
        self.on_evict: list[Callable[[set[str]], None]] = []
        #: Asked which users must keep their instances (changes pending in the outbox).
        self.pins: list[Callable[[], set[str]]] = []
        self.evicted_total = 0
        #: Failing per-user instances dropped from memory -> (failures, attempted_at): a
        #: new instance takes them over, so an outage keeps its retry backoff.
        self._failed: dict[tuple[str, str], tuple[int, float]] = {}
        #: With replicas sharing the database: whether this one leads (runs the syncs of
        #: shared sources; the others follow the snapshots it saves). None: alone.
        self.leads: Callable[[], bool] | None = None

    def attach_store(self, store: Store) -> None:
        """Keep snapshots in `store` from now on (instances made earlier included)."""
        self.store = store
        for state in self._states.values():
            state.store = store

    def loaded_state(self, name: str, user: str) -> SourceState | None:
        """The instance of `name` for the xui `user` ("" for a shared one), if it is in
        memory; never makes one."""
        return self._states.get((name, user))

    def follows(self, state: SourceState) -> bool:
        """Whether `state` takes its contacts from another replica's syncs."""
        return self.leads is not None and state.user is None and not self.leads()

    def sync_soon(self) -> None:
        """Every shared source syncs now (this replica just began to lead)."""
        for state in self.shared_states():
            with contextlib.suppress(Exception):  # not scheduled (yet): its first run comes
                self.scheduler.run_soon(state)

    def is_per_user(self, name: str) -> bool:
        return self._per_user[name]

    def state(self, name: str, user: UserRef) -> SourceState:
        """The instance of `name` that serves `user` (made on first use, not yet synced).
        A per-user one counts as a use of its user's state; a user new beyond
        `max_active_users` makes the least recently used idle users' instances go."""
        per_user = self._per_user[name]
        key = (name, user.xui if per_user else "")
        if (state := self._states.get(key)) is None:
            source = self.config.sources[name]
            cls = source.connector_class
            if per_user:
                settings = cls.settings_for_user(source.settings, user.template_values())
                connector = cls(name, settings, user)
            else:
                connector = cls(name, source.settings)
            state = self._states[key] = SourceState(name, source, connector, self.store)
            state.metrics = self.metrics
            if (failed := self._failed.pop(key, None)) is not None:
                state.failures, state.attempted_at = failed
        if per_user:
            known = self._users.pop(user.xui, None) is not None
            self._users[user.xui] = time.monotonic()
            if not known and len(self._users) > self.config.server.max_active_users:
                self.evict(keep=user.xui)
        return state

    @property
    def active_users(self) -> int:
        """Users whose per-user instances are in memory."""
        return len(self._users)

    def evict(self, now: float | None = None, keep: str = "") -> set[str]:
        """Drop the per-user instances of users idle for `user_idle_timeout` (at `now`, a
        time.monotonic() value) and of the least recently used beyond `max_active_users`,
        and close their connectors; `keep`: a user about to be served. Users whose
        instances are in use stay. Returns the users dropped."""
        now = time.monotonic() if now is None else now
        server = self.config.server
        over = len(self._users) - server.max_active_users
        pinned: set[str] | None = None
        dropped: set[str] = set()
        for xui, used in list(self._users.items()):  # least recently used first
            if over <= 0 and now - used < server.user_idle_timeout:
                break  # the rest were used later still
            if xui == keep:
                continue
            if pinned is None:
                pinned = set().union(*(pin() for pin in self.pins))
            states = [
                state
                for name, per_user in self._per_user.items()
                if per_user and (state := self._states.get((name, xui))) is not None
            ]
            if xui in pinned or not all(state.droppable for state in states):
                continue
            del self._users[xui]
            for state in states:
                del self._states[(state.name, xui)]
                state.evicted = True
                if state.failures:
                    self._remember_failure(state, xui)
                self._close_later(state)
            dropped.add(xui)
            over -= 1
        if dropped:
            self.evicted_total += len(dropped)
            for hook in self.on_evict:
                hook(dropped)
            event("users_evicted", logging.DEBUG, users=len(dropped), active=len(self._users))
        return dropped

    def _remember_failure(self, state: SourceState, xui: str) -> None:
        """Keep a dropped instance's failures while its backoff lasts (at most a source
        interval), for as many users as may be in memory."""
        now = time.time()
        self._failed.pop((state.name, xui), None)  # to the end: newest last
        self._failed[(state.name, xui)] = (state.failures, state.attempted_at)
        limit = self.config.server.max_active_users
        for key, (_, attempted) in list(self._failed.items()):
            source = self.config.sources.get(key[0])
            if len(self._failed) > limit or source is None or now - attempted > source.interval:
                del self._failed[key]  # oldest first; expired backoffs, then the surplus
            else:
                break

    def _close_later(self, state: SourceState) -> None:
        """Close a dropped instance's connector; requests coming meanwhile have made a new
        instance already (the old one is out of the table before this runs)."""
        try:
            task = asyncio.get_running_loop().create_task(_close(state))
        except RuntimeError:  # no event loop (a synchronous caller): nothing is open then
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def states(self) -> list[SourceState]:
        return list(self._states.values())

    async def ready(self, state: SourceState) -> SourceState:
        """The state with its stored snapshot, synced once if it never was; a stale
        per-user one refreshes in the background."""
        state.in_use += 1  # not dropped while it loads or syncs for this request
        try:
            await state.load()
            if self.follows(state):
                if not state.has_data:
                    await state.follow()  # the leader may have saved one since
                return state
            if not state.has_data:
                if state.failures and time.time() - state.attempted_at < retry_delay(state):
                    return state  # failed a moment ago: phones polling must not hammer upstream
                await self._first_data(state)
            elif state.user is not None and _older_than(state.synced_at, state.config.interval):
                state.synced_at = time.time()  # one background refresh at a time
                state.in_use += 1  # until the refresh is done (it takes the lock later)
                self._spawn(_refresh_in_background(state))
        finally:
            state.in_use -= 1
        return state

    async def _first_data(self, state: SourceState) -> None:
        """Wait up to `first_sync_wait` for the instance's first sync (one for all the
        requests that wait: a book's first phones arrive together). The sync goes on when
        the wait ends; those requests get 503 and the next ones find the data."""
        if state.first_sync is None or state.first_sync.done():
            state.first_sync = self._spawn(_first_sync(state))
        event("first_sync_wait", logging.DEBUG, source=state.name, user=state.user_key or None)
        await asyncio.wait([state.first_sync], timeout=self.config.server.first_sync_wait)

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
        # A copy: a request during a reload makes new instances while these close.
        for state in list(self._states.values()):
            await state.connector.close()
        if self._closing:
            await asyncio.gather(*list(self._closing))


async def _first_sync(state: SourceState) -> None:
    """The instance's first sync, unless one under way (the scheduler's first) brings the
    data. Keeps the instance in memory until done."""
    state.in_use += 1
    try:
        if state.lock.locked():
            async with state.lock:
                pass
        if not state.has_data:
            await state.refresh()
    finally:
        state.in_use -= 1


async def _refresh_in_background(state: SourceState) -> None:
    try:
        await state.refresh()
    finally:
        state.in_use -= 1


async def _close(state: SourceState) -> None:
    try:
        await state.connector.close()
    except Exception as exc:  # a close that fails must not keep anything else open
        event(
            "connector_close_failed",
            logging.WARNING,
            source=state.name,
            user=state.user_key or None,
            error=type(exc).__name__,
            detail=str(exc),
        )


def _older_than(moment: float | None, seconds: float) -> bool:
    return moment is not None and time.time() - moment > seconds
