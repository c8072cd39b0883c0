"""Several replicas sharing one PostgreSQL store: who syncs, and how the others keep up.

Each replica keeps one control connection to PostgreSQL. On it:
- it tries for the leader's advisory lock (session-level): the replica holding it runs the
  scheduled syncs of shared sources; when it dies its session ends, the lock is free, and
  another replica takes it at its next try (every POLL_SECONDS);
- it LISTENs for the others' news: a snapshot saved (with its revision and, for small
  changes, the hrefs) and outbox items queued or settled;
- every POLL_SECONDS it compares revisions and the outbox anyway, so a notification lost
  with a connection costs at most that long.

Losing the control connection means leading no more (the lock went with the session) and
reconnecting with backoff; serving goes on from memory all the while.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import psycopg

from gateway.logs import event
from gateway.store import StoreUnavailable
from gateway.store_postgres import OUTBOX_CHANNEL, SNAPSHOT_CHANNEL, PostgresStore

if TYPE_CHECKING:
    from gateway.outbox import Outbox
    from gateway.source_state import SourceState
    from gateway.sync import Sources

#: The leader's advisory lock key ("xc" + "ap" + 2, see store_postgres.MIGRATION_LOCK).
LEADER_LOCK = 0x7863_6170_0000_0002
#: How often a replica tries to lead, checks its connection, and compares revisions.
POLL_SECONDS = 1.0
#: A control connection that does not answer within this long is taken as lost.
SILENT_SECONDS = 5.0
#: Reconnection backoff: from the first to the last delay, doubling.
RETRY_FIRST = 0.5
RETRY_MAX = 5.0


class Replicas:
    def __init__(self, store: PostgresStore, sources: Sources, outbox: Outbox) -> None:
        self.store = store
        self.sources = sources
        self.outbox = outbox
        self.leader = False
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        self._first_try = asyncio.Event()
        self._followers: set[asyncio.Task[Any]] = set()
        self._outbox_news = asyncio.Event()
        self._outbox_task: asyncio.Task[None] | None = None
        self._last_poll = 0.0
        self._following: set[tuple[SourceState, int | None]] = set()

    async def start(self, wait: float) -> None:
        """Connect and try for the lead once (up to `wait` seconds) before the first syncs
        are scheduled: a lone replica leads from its first sync on."""
        self._task = asyncio.create_task(self._run())
        self._outbox_task = asyncio.create_task(self._follow_outbox())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_try.wait(), timeout=wait)

    async def stop(self) -> None:
        for task in (self._task, self._outbox_task, *self._followers):
            if task is not None:
                task.cancel()
        for task in (self._task, self._outbox_task, *self._followers):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.leader = False

    # --- the control connection -------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self.store.url, autocommit=True, **self.store.connect_options
                )
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self._first_try.set()
                self._lost(exc)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                continue
            delay = RETRY_FIRST
            try:
                async with connection:
                    await self._serve(connection)
            except Exception as exc:  # psycopg's, the pool's StoreUnavailable, or a bug:
                self._lost(exc)  # never the end of following the others
                await asyncio.sleep(RETRY_FIRST)

    async def _serve(self, connection: psycopg.AsyncConnection[Any]) -> None:
        await connection.execute(f"LISTEN {SNAPSHOT_CHANNEL}")
        await connection.execute(f"LISTEN {OUTBOX_CHANNEL}")
        if not self.connected:
            self.connected = True
            event("replica_connected", where=self.store.where)
        # Whatever was saved or queued while this replica was not listening.
        await self._poll(force=True)
        while True:
            await self._try_to_lead(connection)
            self._first_try.set()
            async for note in connection.notifies(timeout=POLL_SECONDS):
                self._heard(note.channel, note.payload)
            await self._poll()

    async def _try_to_lead(self, connection: psycopg.AsyncConnection[Any]) -> None:
        # A connection that does not answer within SILENT_SECONDS is as good as lost: the
        # lead is given up (PostgreSQL frees the lock when it notices, see keepalives) and
        # the connection made again, rather than waiting for TCP to give up.
        if self.leader:
            await asyncio.wait_for(connection.execute("SELECT 1"), SILENT_SECONDS)
            return
        cursor = await asyncio.wait_for(
            connection.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)), SILENT_SECONDS
        )
        row = await cursor.fetchone()
        if row is not None and row[0]:
            self.leader = True
            event("replica_leads", where=self.store.where)
            # The last leader may have died mid-sync: every shared source syncs now.
            self.sources.sync_soon()

    def _lost(self, exc: BaseException) -> None:
        if self.leader:
            event("replica_leads_no_more", logging.WARNING, detail=str(exc).strip())
        elif self.connected:
            event(
                "replica_disconnected",
                logging.WARNING,
                where=self.store.where,
                detail=str(exc).strip() or type(exc).__name__,
            )
        self.leader = False
        self.connected = False

    # --- news from the others -----------------------------------------------------------

    def _heard(self, channel: str, payload: str) -> None:
        if channel == OUTBOX_CHANNEL:
            self._outbox_news.set()
            return
        try:
            source, user, revision, hrefs = json.loads(payload)
        except (ValueError, TypeError):
            self._last_poll = 0.0  # a payload too big to name it: compare all soon
            return
        state = self.sources.loaded_state(str(source), str(user))
        if state is not None:
            named = tuple(str(href) for href in hrefs) if isinstance(hrefs, list) else None
            self._spawn(self._follow(state, int(revision), named))

    async def _poll(self, force: bool = False) -> None:
        """Compare every snapshot held here with the store's revision; catch up with the
        outbox now and then (notifications cover the rest)."""
        if not force and time.monotonic() - self._last_poll < POLL_SECONDS:
            return
        self._last_poll = time.monotonic()
        try:
            revisions = await asyncio.to_thread(self.store.revisions)
        except StoreUnavailable:
            return  # the pool's connections are down (this one may not be yet): next time

        for state in self.sources.states():
            stored = revisions.get((state.name, state.user_key))
            if stored is not None and (stored != state.stored_revision or state.behind):
                self._spawn(self._follow(state, stored, None))
        if force or self.outbox.behind:
            self._outbox_news.set()

    async def _follow(
        self, state: SourceState, revision: int | None, hrefs: tuple[str, ...] | None
    ) -> None:
        if (state, revision) in self._following:
            return  # already under way (a poll and a notification of one save)
        self._following.add((state, revision))
        try:
            await state.follow(revision, hrefs)
        except Exception as exc:  # the store went away meanwhile: the next poll retries
            event(
                "snapshot_follow_failed",
                logging.WARNING,
                source=state.name,
                user=state.user_key or None,
                detail=str(exc) or type(exc).__name__,
            )
        finally:
            self._following.discard((state, revision))

    async def _follow_outbox(self) -> None:
        """Catch up with the outbox after news of it, at most once per moment (a burst of
        notifications is one read)."""
        while True:
            await self._outbox_news.wait()
            self._outbox_news.clear()
            try:
                await self.outbox.catch_up()
            except Exception as exc:
                event(
                    "outbox_follow_failed", logging.WARNING, detail=str(exc) or type(exc).__name__
                )
                await asyncio.sleep(RETRY_FIRST)
                self._outbox_news.set()
            await asyncio.sleep(0.05)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)
