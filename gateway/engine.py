"""The engine behind the front end: sources, composition and write-back for one config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.changeset import outbox_items
from gateway.compose import Composer, Rendered, etag_of, render_entries
from gateway.config import Config, DocumentConfig
from gateway.creations import CreationLimiter
from gateway.edit_budget import bounded
from gateway.entry import Entry
from gateway.eviction import evict_idle
from gateway.gate import Gate
from gateway.gc_pauses import thaw
from gateway.logs import event
from gateway.merge import Plan, Policy, merge, with_entry_ids
from gateway.metrics import Metrics
from gateway.model import UserRef
from gateway.outbox import Outbox
from gateway.store import Store, open_store
from gateway.sync import Sources
from gateway.versions import Versions

if TYPE_CHECKING:
    from gateway.replicas import Replicas


class PreconditionFailed(Exception):
    """If-Match / If-None-Match do not hold (RFC 4825: 412)."""


class DocumentGone(LookupError):
    """The document was removed by a reload while the request waited (404)."""


@dataclass(frozen=True)
class PutResult:
    etag: str
    queued: int
    ignored: int
    conflicts: int


#: How often unwritten served records are retried and old failed changes archived.
HOUSEKEEPING_SECONDS = 30.0
#: How often poll times are written (they only age versions out after keep_versions_for).
POLL_TIMES_SECONDS = 3600.0


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.sources = Sources(config)
        self.composer = Composer(self.sources)
        self.outbox = Outbox(self.sources, config, self.composer.numbers_for)
        self.composer.outbox = self.outbox
        self.versions = Versions(*_version_limits(config))
        self.store: Store | None = None
        self.metrics = Metrics()
        self.metrics.attach(self)
        self.sources.metrics = self.outbox.metrics = self.metrics
        self._housekeeper: asyncio.Task[None] | None = None
        #: PUTs hold it shared; a reload holds it alone, so no PUT straddles two configs.
        self._gate = Gate()
        self._reloading = asyncio.Lock()
        #: One PUT at a time per (document, user); locks go when nobody holds them.
        self._put_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        #: Held by a PUT from its check of the current version until its changes are
        #: committed, per source instance it merges with: (source, xui or "" if shared).
        self._instance_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        #: Entries created on phones per (document, user): max_creations_per_put / _per_user.
        self.creations = CreationLimiter()
        #: With PostgreSQL: this replica among the others (who leads, what they saved).
        self.replicas: Replicas | None = None
        #: PUTs holding locks in PostgreSQL at once: each holds a pooled connection while
        #: it needs another to commit, so a quarter of the pool (half its connections).
        self._replica_locks = asyncio.Semaphore(max(1, config.store.pool_size // 4))

    async def start(self) -> None:
        """Open the state database, take up pending changes and start syncing (render and
        some tests skip this)."""
        store = self.open_store()
        await asyncio.to_thread(self.versions.load, store)
        if store.dialect == "postgresql":
            # Imported here: psycopg takes ~0.2 s to import, and SQLite's users never need it.
            from gateway.replicas import Replicas
            from gateway.store_postgres import PostgresStore

            assert isinstance(store, PostgresStore)
            self.replicas = Replicas(store, self.sources, self.outbox)
            self.versions.shared = True
            self.outbox.bounded_claims(store.claim_connections)
            self.sources.leads = self._leads
            await self.replicas.start(self.config.store.connect_timeout)
        await self.sources.start(self.config.server.startup_sync_wait)
        await self.outbox.start(store)
        self._housekeeper = asyncio.create_task(self._housekeeping())

    async def reload(self, config: Config) -> None:
        """Take a new configuration's sources and documents without dropping connections:
        requests under way finish with the old ones. The state database stays open, so
        snapshots whose source did not change are served at once. Reloads run one at a
        time; PUTs wait while one swaps the configuration, and changes being applied
        finish first (none is cut off and applied twice)."""
        async with self._reloading:
            async with self._gate.alone():
                await self.outbox.pause()
                await self.sources.stop()
                self.config = config
                self.sources = Sources(config)
                self.composer = Composer(self.sources)
                self.composer.outbox = self.outbox
                self.sources.metrics = self.metrics
                if self.replicas is not None:
                    self.replicas.sources = self.sources
                    self.sources.leads = self._leads
                self.versions.configure(*_version_limits(config))
                if self.store is not None:
                    self.sources.attach_store(self.store)
                self.outbox.resume(self.sources, config, self.composer.numbers_for)
            # Outside the gate: PUTs need not wait for the first syncs (sources sync on
            # demand, and their stored snapshots serve at once).
            if self.store is not None:
                await self.sources.start(config.server.startup_sync_wait)

    def _leads(self) -> bool:
        return self.replicas is not None and self.replicas.leader

    def open_store(self) -> Store:
        self.store = open_store(self.config)
        self.sources.attach_store(self.store)
        return self.store

    async def _housekeeping(self) -> None:
        poll_times_due = time.monotonic() + POLL_TIMES_SECONDS
        while self.store is not None:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            try:
                if time.monotonic() >= poll_times_due:
                    poll_times_due = time.monotonic() + POLL_TIMES_SECONDS
                    self.versions.include_poll_times()
                    thaw()  # cycles frozen with a big composition are collected again
                await self.versions.flush_soon(self.store)
                await self.outbox.archive_old()
                await evict_idle(self)  # idle users' state leaves memory
            except Exception as exc:  # a failing database must not end housekeeping
                event(
                    "housekeeping_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc)
                )

    async def stop(self) -> None:
        if self.replicas is not None:
            await self.replicas.stop()  # the lead goes to another replica at once
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
        await self.outbox.stop()
        await self.sources.stop()
        if self.store is not None:
            await self.versions.idle()
            self.versions.include_poll_times()
            self.versions.flush(self.store)
            self.store.close()

    def find_document(self, auid: str, name: str) -> tuple[str, DocumentConfig] | None:
        return self.config.document_at(auid, name)

    async def document(self, key: str, user: UserRef, current: bool = False) -> Rendered:
        """The document as `user` gets it: while a big one is composed anew, the one before
        (phones' polls must not wait seconds for it); `current`: the composition of what
        the sources hold now (what a change is merged with)."""
        return await self.composer.document(key, self.config.documents[key], user, current)

    async def served(
        self, key: str, user: UserRef, device: str, rendered: Rendered, fetched: bool = True
    ) -> None:
        """`device` now holds `rendered` (`fetched`: a 200, else a 304); recorded durably the
        first time (with replicas: at every 200, which another replica may not know of)."""
        await self.versions.record_durably(
            self.store, key, user.xui, device, rendered.etag, rendered.entries, fetched=fetched
        )

    async def put(
        self,
        key: str,
        user: UserRef,
        theirs: list[Entry],
        device: str = "",
        if_match: Sequence[str] | None = None,
        precondition: Callable[[str], None] | None = None,
        base: Mapping[str, Entry] | None = None,
    ) -> PutResult:
        """Merge a phone's whole document and commit what it changed to the outbox.

        `if_match`: the strong entity-tags If-Match names (None: no If-Match, or "*"),
        the versions the phone says it edited. `precondition` is called with the current
        version's ETag and raises PreconditionFailed when the request's must not proceed.
        `base`: the version the body was made from, when the caller knows it (an element
        or attribute operation on the document as it is now).
        PUTs of one user's document are merged one at a time, so each sees the changes
        of the one before (pending or applied) and its preconditions hold for what it
        commits; so are PUTs of other users and documents from their check of the current
        version to their commit, where they write to the same source instances.
        The answer's ETag names what the device now holds, its own body: the merged
        document's ETag when that is exactly what it sent, else another one, so its next
        poll fetches what the merge added or reverted."""
        async with self._gate.shared():
            lock = self._put_locks.setdefault((key, user.xui), asyncio.Lock())
            async with lock:
                return await self._put(key, user, theirs, device, if_match, precondition, base)

    @contextlib.asynccontextmanager
    async def _instances_locked(
        self, document: DocumentConfig, user: UserRef
    ) -> AsyncIterator[None]:
        """The locks of the document's source instances, taken in one order (no two PUTs
        wait for each other's)."""
        instances = sorted(
            {
                (name, user.xui if self.sources.is_per_user(name) else "")
                for name in document.sources
            }
        )
        async with contextlib.AsyncExitStack() as stack:
            for instance in instances:
                lock = self._instance_locks.setdefault(instance, asyncio.Lock())
                await stack.enter_async_context(lock)
            yield

    @contextlib.asynccontextmanager
    async def _replicas_locked(self, key: str, user: UserRef) -> AsyncIterator[None]:
        """With replicas: the same locks in PostgreSQL (other replicas' PUTs to these
        instances wait), then what they committed before: their pending changes, the
        snapshots they saved, the versions they served this user."""
        if self.replicas is None or self.store is None:
            yield
            return
        document = self.config.documents[key]
        names = [
            f"instance|{name}|{user.xui if self.sources.is_per_user(name) else ''}"
            for name in document.sources
        ]
        async with self._replica_locks:
            release = await asyncio.to_thread(self.store.hold, names)
            try:
                await self.outbox.catch_up()
                await self._follow_sources(document, user)
                await self.versions.reread(key, user.xui)
                yield
            finally:
                await asyncio.to_thread(release)

    async def _follow_sources(self, document: DocumentConfig, user: UserRef) -> None:
        for name in document.sources:
            state = self.sources.loaded_state(
                name, user.xui if self.sources.is_per_user(name) else ""
            )
            if state is not None:
                await state.follow()

    async def _put(
        self,
        key: str,
        user: UserRef,
        theirs: list[Entry],
        device: str,
        if_match: Sequence[str] | None,
        precondition: Callable[[str], None] | None,
        known_base: Mapping[str, Entry] | None,
    ) -> PutResult:
        if key not in self.config.documents:
            raise DocumentGone(key)
        document = self.config.documents[key]
        async with self._instances_locked(document, user), self._replicas_locked(key, user):
            # Until this PUT's changes are committed, no other PUT that writes to these
            # source instances (another user's, of this or another document) merges: it
            # waits, then merges with what this one committed, and its If-Match is checked
            # against the document with this one's changes (strict_etags: 412).
            ours = await self.document(key, user, current=True)
            if precondition is not None:
                precondition(ours.etag)
            held = known_base or self.versions.held_by(key, user.xui, device)
            # Off the event loop: a 100k-entry composition's merge view and a 1,000-entry
            # body take milliseconds each to compare.
            current, theirs = await asyncio.to_thread(_identified, ours, theirs, held)
            base = known_base
            if base is None:
                base = self.versions.base_for(key, user.xui, device, if_match, theirs)
            theirs, plan = await asyncio.to_thread(
                _planned, theirs, base, current, document.conflict_policy, key, user.xui
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
            # Counted per login: under match = "user" alice@a and alice@b are one person (the
            # login says nothing of the domain), so each spelling must not bring a new window.
            creator = user.user if self.config.auth.match == "user" else user.xui
            plan, capped = self.creations.cap(key, document, creator, plan)
            if capped:
                self.metrics.creations_capped.labels(key).inc(capped)
            items, ignored = outbox_items(plan, key, self.config, user, ours, self.sources)
            ignored += capped
            await self.outbox.commit(items)
            self.creations.created(key, document, creator, items)
        # Durable now; a moment more lets a reachable upstream apply it before the answer,
        # so whoever looks upstream right after the phone's PUT sees the change.
        await self.outbox.settled(items, self.config.server.put_wait)
        merged = await self.document(key, user, current=True)
        held = {entry.entry_id: entry for entry in theirs}
        if held == dict(merged.entries):
            etag, holds = merged.etag, merged.entries
        else:
            body = await asyncio.to_thread(render_entries, held, document)
            etag, holds = etag_of(body), held
        await self.versions.record_durably(
            self.store, key, user.xui, device, etag, holds, sent=True
        )
        event(
            "put",
            document=key,
            user=user.xui,
            device=device or None,
            entries=len(theirs),
            base=(
                "given"
                if known_base is not None
                else ("if-match" if if_match else "served")
                if base is not None
                else "unknown"
            ),
            queued=len(items),
            ignored=ignored,
            conflicts=len(plan.conflicts),
        )
        return PutResult(etag, len(items), ignored, len(plan.conflicts))


def _identified(
    ours: Rendered, theirs: list[Entry], held: Mapping[str, Entry]
) -> tuple[Mapping[str, Entry], list[Entry]]:
    """(every entry of the composition, the phone's entries with their ids). Ids the phone
    may send without (an entry it made, sent again before it fetched): only of entries
    that still exist, so one re-entered after a delete is new."""
    current = ours.merge_view
    return current, with_entry_ids(theirs, known={i: e for i, e in held.items() if i in current})


def _planned(
    theirs: list[Entry],
    base: Mapping[str, Entry] | None,
    current: Mapping[str, Entry],
    policy: Policy,
    key: str,
    xui: str,
) -> tuple[list[Entry], Plan]:
    """The phone's entries held to the edit budget, and the merge's plan."""
    # What one entry may change is bounded; what it left as it was costs nothing.
    theirs = bounded(theirs, base, current, key, xui)
    # Entries the cap or de-duplication keep out of the document are still there:
    # an edit of one the phone holds is an edit, not a resurrection.
    return theirs, merge(base, theirs, current, policy)


def _version_limits(config: Config) -> tuple[dict[str, int], dict[str, float]]:
    return (
        {key: doc.keep_versions for key, doc in config.documents.items()},
        {key: doc.keep_versions_for for key, doc in config.documents.items()},
    )
