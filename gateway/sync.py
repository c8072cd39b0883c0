"""Source instances: the last good snapshot of each source, and keeping it fresh.

A snapshot is replaced only by a complete, successful sync; a failed one keeps the last
good data and is logged. A per-user source gets one instance per user, made on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

from gateway.config import Config, SourceConfig
from gateway.connector import Connector, ConnectorError, InvalidToken
from gateway.logs import event
from gateway.model import Contact, UserRef


class SourceState:
    """One connector instance and its contacts by href. `version` changes with the contacts."""

    def __init__(self, name: str, config: SourceConfig, connector: Connector[Any]) -> None:
        self.name = name
        self.config = config
        self.connector = connector
        self.contacts: dict[str, Contact] = {}
        self.version = 0
        self.synced_at: float | None = None
        self.last_error: str | None = None
        #: The incremental sync position, for connectors that offer one.
        self.token: str | None = None
        #: Held by a sync and by writes, so a sync never drops a contact just written.
        self.lock = asyncio.Lock()

    @property
    def user(self) -> UserRef | None:
        return self.connector.user

    @property
    def has_data(self) -> bool:
        return self.synced_at is not None

    async def refresh(self) -> bool:
        """Sync from upstream (one run at a time); True when the contacts changed."""
        async with self.lock:
            started = time.monotonic()
            try:
                if self.connector.capabilities.incremental:
                    contacts = await self._pull_changes()
                else:
                    contacts = await self._pull_listing()
            except ConnectorError as exc:
                self.last_error = str(exc)
                event(
                    "sync_failed",
                    logging.ERROR,
                    source=self.name,
                    user=self._user_xui,
                    error=type(exc).__name__,
                    detail=str(exc),
                )
                return False
            if contacts is self.contacts:  # nothing changed: cost independent of size
                self.synced_at, self.last_error = time.time(), None
                return False
            added = len(contacts.keys() - self.contacts.keys())
            deleted = len(self.contacts.keys() - contacts.keys())
            changed = sum(
                1
                for href, c in contacts.items()
                if (old := self.contacts.get(href)) is not None and old != c
            )
            unchanged = self.version > 0 and not (added or deleted or changed)
            self.synced_at, self.last_error = time.time(), None
            if unchanged:
                return False
            self.contacts = contacts
            self.version += 1
            event(
                "sync",
                source=self.name,
                user=self._user_xui,
                entries=len(contacts),
                added=added,
                changed=changed,
                deleted=deleted,
                ms=round((time.monotonic() - started) * 1000),
            )
            return True

    async def _pull_listing(self) -> dict[str, Contact]:
        """List (href, etag) and fetch only what is new or changed."""
        listing = {href: etag async for href, etag in self.connector.list()}
        stale = [
            h for h, e in listing.items() if (c := self.contacts.get(h)) is None or c.etag != e
        ]
        fetched = {c.href: c for c in await self.connector.get_many(stale)}
        contacts = {h: self.contacts[h] for h in listing if h in self.contacts and h not in fetched}
        contacts.update(fetched)
        return contacts

    async def _pull_changes(self) -> dict[str, Contact]:
        """Ask for what changed since the last token; a whole new pull when it expired."""
        try:
            result = await self.connector.changes(self.token)
        except InvalidToken:
            event("sync_token_expired", logging.WARNING, source=self.name, user=self._user_xui)
            result = await self.connector.changes(None)
        self.token = result.token
        if result.complete:
            return {c.href: c for c in result.changed}
        # Sources may send again what did not change (a timestamp filter includes its bound).
        changed = [c for c in result.changed if self.contacts.get(c.href) != c]
        if not (changed or result.deleted or result.deleted_hrefs or result.present is not None):
            return self.contacts
        gone = set(result.deleted) | {c.uid for c in changed}
        contacts = {
            href: c
            for href, c in self.contacts.items()
            if c.uid not in gone
            and href not in result.deleted_hrefs
            and (result.present is None or c.uid in result.present)
        }
        contacts.update((c.href, c) for c in changed)
        return contacts

    def stored(self, contact: Contact) -> None:
        """Take a contact just written upstream into the snapshot."""
        self.contacts[contact.href] = contact
        self.version += 1

    def removed(self, href: str) -> None:
        if self.contacts.pop(href, None) is not None:
            self.version += 1

    @property
    def _user_xui(self) -> str | None:
        return self.user.xui if self.user else None


class Sources:
    """Every source instance of a configuration, shared or per user, and their refresh."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._per_user = {
            name: source.connector_class.is_per_user(source.settings)
            for name, source in config.sources.items()
        }
        self._states: dict[tuple[str, str], SourceState] = {}
        self._tasks: list[asyncio.Task[None]] = []

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
            state = self._states[key] = SourceState(name, source, connector)
        return state

    async def ready(self, state: SourceState) -> SourceState:
        """The state, synced once if it never was; a stale per-user one refreshes in the background."""
        if not state.has_data:
            if state.lock.locked():
                return state  # its first sync is under way: not ready yet, don't queue up
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
        """Sync every shared source, then keep each fresh on its interval. Waits up to
        `wait` seconds for the first syncs; a slower source goes on in the background
        (its documents answer 503 until it has data) so serving never waits on it."""
        first = [asyncio.create_task(state.refresh()) for state in self.shared_states()]
        for state, task in zip(self.shared_states(), first, strict=True):
            self._tasks.append(asyncio.create_task(self._every_interval(state, after=task)))
        if first:
            await asyncio.wait(first, timeout=wait)

    async def _every_interval(self, state: SourceState, after: asyncio.Task[bool]) -> None:
        await after
        while True:
            # Jitter spreads many sources with one interval over time.
            await asyncio.sleep(state.config.interval * random.uniform(0.9, 1.1))
            await state.refresh()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for state in self._states.values():
            await state.connector.close()


def _older_than(moment: float | None, seconds: float) -> bool:
    return moment is not None and time.time() - moment > seconds
