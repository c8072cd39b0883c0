"""The engine behind the front end: sources, composition and write-back for one config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from gateway.changeset import outbox_items
from gateway.compose import Composer, Rendered, etag_of, render_entries
from gateway.config import Config, DocumentConfig
from gateway.entry import Entry
from gateway.logs import event
from gateway.merge import merge, with_entry_ids
from gateway.metrics import Metrics
from gateway.model import UserRef
from gateway.outbox import Outbox
from gateway.store import FILE_NAME as STORE_FILE
from gateway.store import Store
from gateway.sync import Sources
from gateway.versions import Versions


class PreconditionFailed(Exception):
    """If-Match / If-None-Match do not hold (RFC 4825: 412)."""


@dataclass(frozen=True)
class PutResult:
    etag: str
    queued: int
    ignored: int
    conflicts: int


#: How often the record of served versions is written to the state database.
VERSIONS_FLUSH_SECONDS = 30.0


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.sources = Sources(config)
        self.composer = Composer(self.sources)
        self.outbox = Outbox(self.sources, self.composer.numbers_for)
        self.composer.outbox = self.outbox
        self.versions = Versions(
            {key: doc.keep_versions for key, doc in config.documents.items()},
            {key: doc.keep_versions_for for key, doc in config.documents.items()},
        )
        self.store: Store | None = None
        self.metrics = Metrics()
        self.metrics.attach(self)
        self.sources.metrics = self.outbox.metrics = self.metrics
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the state database, take up pending changes and start syncing (render and
        some tests skip this)."""
        store = self.open_store()
        await asyncio.to_thread(self.versions.load, store)
        await self.sources.start(self.config.server.startup_sync_wait)
        await self.outbox.start(store)
        self._flusher = asyncio.create_task(self._flush_versions())

    async def reload(self, config: Config) -> None:
        """Take a new configuration's sources and documents without dropping connections:
        requests under way finish with the old ones. The state database stays open, so
        snapshots whose source did not change are served at once."""
        await self.outbox.stop()
        await self.sources.stop()
        if self.store is not None:
            self.versions.flush(self.store)
        self.config = config
        self.sources = Sources(config)
        self.composer = Composer(self.sources)
        self.outbox = Outbox(self.sources, self.composer.numbers_for)
        self.composer.outbox = self.outbox
        self.sources.metrics = self.outbox.metrics = self.metrics
        self.versions = Versions(
            {key: doc.keep_versions for key, doc in config.documents.items()},
            {key: doc.keep_versions_for for key, doc in config.documents.items()},
        )
        if self.store is not None:
            self.sources.attach_store(self.store)
            await asyncio.to_thread(self.versions.load, self.store)
            await self.sources.start(config.server.startup_sync_wait)
            await self.outbox.start(self.store)

    def open_store(self) -> Store:
        self.config.server.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.config.server.state_dir / STORE_FILE)
        self.sources.attach_store(self.store)
        return self.store

    async def _flush_versions(self) -> None:
        while self.store is not None:
            await asyncio.sleep(VERSIONS_FLUSH_SECONDS)
            await self.versions.flush_soon(self.store)

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.outbox.stop()
        await self.sources.stop()
        if self.store is not None:
            self.versions.flush(self.store)
            self.store.close()

    def find_document(self, auid: str, name: str) -> tuple[str, DocumentConfig] | None:
        return self.config.document_at(auid, name)

    async def document(self, key: str, user: UserRef) -> Rendered:
        return await self.composer.document(key, self.config.documents[key], user)

    def served(self, key: str, user: UserRef, device: str, rendered: Rendered) -> None:
        """`device` now holds `rendered` (a 200 or a 304)."""
        self.versions.record(key, user.xui, device, rendered.etag, rendered.entries)

    async def put(
        self,
        key: str,
        user: UserRef,
        theirs: list[Entry],
        device: str = "",
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> PutResult:
        """Merge a phone's whole document and commit what it changed to the outbox.

        The answer's ETag names what the device now holds, its own body: the merged
        document's ETag when that is exactly what it sent, else another one, so its next
        poll fetches what the merge added or reverted."""
        document = self.config.documents[key]
        ours = await self.document(key, user)
        if if_none_match is not None and if_none_match.strip() == "*":
            raise PreconditionFailed("the document exists")
        if document.strict_etags and if_match and if_match.strip() not in ("*", ours.etag):
            raise PreconditionFailed("If-Match does not name the current version")
        theirs = with_entry_ids(theirs)
        base = self.versions.base_for(key, user.xui, device, if_match, theirs)
        plan = merge(
            ours.entries if base is None else base, theirs, ours.entries, document.conflict_policy
        )
        if plan.conflicts:
            self.metrics.conflicts.labels(key).inc(len(plan.conflicts))
        for conflict in plan.conflicts:
            event(
                "conflict",
                logging.WARNING,
                document=key,
                user=user.xui,
                entry=conflict.entry_id,
                field=conflict.field,
                winner=conflict.winner,
            )
        items, ignored = outbox_items(plan, key, self.config, user, ours, self.sources)
        await self.outbox.commit(items)
        # Durable now; a moment more lets a reachable upstream apply it before the answer,
        # so whoever looks upstream right after the phone's PUT sees the change.
        await self.outbox.settled(items, self.config.server.put_wait)
        merged = await self.document(key, user)
        held = {entry.entry_id: entry for entry in theirs}
        if held == dict(merged.entries):
            etag, holds = merged.etag, merged.entries
        else:
            etag, holds = etag_of(render_entries(held)), held
        self.versions.record(key, user.xui, device, etag, holds)
        event(
            "put",
            document=key,
            user=user.xui,
            device=device or None,
            entries=len(theirs),
            base="if-match" if if_match and base is not None else ("served" if base else "current"),
            queued=len(items),
            ignored=ignored,
            conflicts=len(plan.conflicts),
        )
        return PutResult(etag, len(items), ignored, len(plan.conflicts))
