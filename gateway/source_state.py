"""One source instance: its last good snapshot, how it is refreshed, and where it is kept.

A snapshot is replaced only by a complete, successful sync. A failed sync keeps the last
good data; so does a sync that would suddenly drop more than `max_shrink` of the entries
(held back and reported until it is accepted). Every accepted change is written to the
store with the sync token, so a restart serves at once and resumes incrementally.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.config import SourceConfig
from gateway.connector import Connector, ConnectorError, InvalidToken
from gateway.logs import event
from gateway.model import Contact, UserRef, effective_entry_id
from gateway.store import Store

if TYPE_CHECKING:
    from gateway.metrics import Metrics

#: Below this many entries a shrink is not suspicious (a small book emptied on purpose).
SHRINK_MIN_ENTRIES = 10
#: Numbers every instance once: what a render cache keys on (an id() is reused after an
#: instance is dropped, and a new instance of the same user starts at the same version).
_SERIALS = itertools.count(1)


def fingerprint(config: SourceConfig) -> str:
    """Changes when anything that decides which contacts a source yields changes."""
    settings = config.settings.model_dump(mode="json")  # secrets come out masked
    text = json.dumps({"type": config.type, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SourceState:
    """One connector instance and its contacts by href. `version` changes with the contacts."""

    def __init__(
        self, name: str, config: SourceConfig, connector: Connector[Any], store: Store | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.connector = connector
        self.store = store
        self.fingerprint = fingerprint(config)
        self.contacts: dict[str, Contact] = {}
        self.version = 0
        self.synced_at: float | None = None
        self.last_error: str | None = None
        self.failures = 0
        self.attempted_at = 0.0
        #: synced_at as the store has it (None: never stored).
        self._stored_synced_at: float | None = None
        #: The stored snapshot's revision this state holds (what other replicas' saves
        #: are compared with); `behind`: a save of another came between two of ours.
        self.stored_revision = 0
        self.behind = False
        #: The incremental sync position, for connectors that offer one.
        self.token: str | None = None
        #: Set while a suspicious shrink is held back: (entries now, entries the sync found).
        self.held_back: tuple[int, int] | None = None
        self.accept_shrink = False
        self.metrics: Metrics | None = None
        self.loaded = False
        self._unsaved = False
        #: entry_id phones know -> href; built on first use, then kept in step with changes.
        self._ids: dict[str, str] | None = None
        #: Phones' entry_ids of a snapshot dropped for another configuration (uid -> id).
        self._dropped_phone_ids: dict[str, str] = {}
        #: Held by a sync and by writes, so a sync never drops a contact just written.
        self.lock = asyncio.Lock()
        #: One follow of another replica's saves at a time.
        self._following = asyncio.Lock()
        #: The first sync requests wait for (Sources.ready), while it runs.
        self.first_sync: asyncio.Task[None] | None = None
        self.serial = next(_SERIALS)
        #: Requests and background syncs using the instance now (it is not dropped then).
        self.in_use = 0
        #: Set when the instance was dropped from memory (an idle user's): whoever still
        #: holds it may read its contacts, but nothing caches what it composed.
        self.evicted = False

    def href_of(self, entry_id: str) -> str | None:
        """The href of the contact phones know as `entry_id` (a stored phone id, or the
        one derived from the uid). The index hashes every contact once, on first use;
        after that each change costs what it changed, not the size of the book."""
        if self._ids is None:
            self._ids = {effective_entry_id(c): href for href, c in self.contacts.items()}
        return self._ids.get(entry_id)

    def _reindex(self, old: Mapping[str, Contact], hrefs: Iterable[str]) -> None:
        """Keep the entry_id index in step after the contacts at `hrefs` changed."""
        if self._ids is None:
            return
        for href in hrefs:
            before = old.get(href)
            if before is not None and self._ids.get(effective_entry_id(before)) == href:
                del self._ids[effective_entry_id(before)]
            if (now := self.contacts.get(href)) is not None:
                self._ids[effective_entry_id(now)] = href

    @property
    def user(self) -> UserRef | None:
        return self.connector.user

    @property
    def user_key(self) -> str:
        return self.user.xui if self.user else ""

    @property
    def has_data(self) -> bool:
        return self.synced_at is not None

    @property
    def droppable(self) -> bool:
        """Whether the instance may be dropped from memory now: nobody uses it, and the
        store holds everything it knows (a reload from there serves the same contacts)."""
        return not (
            self.in_use
            or self.lock.locked()
            or self._unsaved  # the store missed a change: memory has the only copy
            or self._dropped_phone_ids  # only memory has them, until the next sync
            or self.accept_shrink  # an administrator's decision, waiting for the next sync
        )

    async def load(self) -> None:
        """Take the stored snapshot, if any, as the last good data (once)."""
        if self.loaded or self.store is None:
            return
        # Shared with replicas, a snapshot saved for another configuration of the source is
        # another replica's (a rolling change of the configuration): left alone, and this
        # one's first save replaces it whole rather than mixing the two.
        shared = self.store.dialect == "postgresql"
        snapshot = await asyncio.to_thread(
            self.store.load, self.name, self.user_key, self.fingerprint, shared
        )
        self.loaded = True
        if snapshot is None and shared:
            self._unsaved = True
        if snapshot is not None and snapshot.dropped_phone_ids is not None:
            self._dropped_phone_ids = snapshot.dropped_phone_ids
            return
        if snapshot is not None and not self.has_data:
            self.contacts, self.token, self.synced_at = (
                snapshot.contacts,
                snapshot.token,
                snapshot.synced_at,
            )
            self._stored_synced_at = snapshot.synced_at
            self.stored_revision = snapshot.revision
            self._ids = None
            self.version += 1
            event(
                "snapshot_loaded",
                source=self.name,
                user=self.user.xui if self.user else None,
                entries=len(self.contacts),
            )

    async def refresh(self) -> bool:
        """Sync from upstream (one run at a time); True when the contacts changed."""
        await self.load()
        async with self.lock:
            started = time.monotonic()
            self.attempted_at = time.time()
            token = self.token
            try:
                if self.connector.capabilities.incremental:
                    contacts = await self._pull_changes()
                else:
                    contacts = await self._pull_listing()
            except Exception as exc:
                # A connector's typed error, or anything else it let through (a library's
                # decoding error on a non-LDAP answer): a failed sync either way, retried with
                # backoff — never a scheduler task that dies and leaves the source unsynced.
                self._count("failed", started)
                self.token = token
                self.failures += 1
                detail = str(exc) or type(exc).__name__
                if not isinstance(exc, ConnectorError):
                    detail = f"unexpected {type(exc).__name__} from the connector: {detail}"
                self.last_error = detail
                event(
                    "sync_failed",
                    logging.ERROR,
                    source=self.name,
                    user=self._xui,
                    error=type(exc).__name__,
                    detail=detail,
                    failures=self.failures,
                )
                return False
            if contacts is not self.contacts and self._suspicious_shrink(len(contacts)):
                self._count("held_back", started)
                self.token = token  # resume from before this result next time
                return False
            self._count("ok", started)
            self.failures, self.last_error, self.held_back = 0, None, None
            return await self._accept(contacts, token, started)

    def _count(self, result: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.syncs.labels(self.name, result).inc()
            self.metrics.sync_seconds.labels(self.name).observe(time.monotonic() - started)

    def _suspicious_shrink(self, found: int) -> bool:
        had = len(self.contacts)
        limit = self.config.max_shrink
        if self.accept_shrink or had < SHRINK_MIN_ENTRIES or found >= had * (1 - limit):
            self.accept_shrink = False
            return False
        self.held_back = (had, found)
        self.last_error = (
            f"held back: the source now has {found} entries instead of {had}; "
            f"run `xcap-gateway sync --source {self.name} --accept-shrink` if that is right"
        )
        event(
            "sync_held_back",
            logging.WARNING,
            source=self.name,
            user=self._xui,
            entries=had,
            found=found,
            max_shrink=limit,
        )
        return True

    async def _accept(
        self, contacts: dict[str, Contact], token: str | None, started: float
    ) -> bool:
        # Also when nothing changed, now and then: an instance made again (after a restart,
        # or after its idle user was evicted) must know the data is fresh, or it syncs again.
        changed_token = self.token != token or _older_than(
            self._stored_synced_at, self.config.interval / 2
        )
        # A source's first sync has its line at INFO even when it finds nothing (an empty
        # folder or filter): at INFO a source that never logged would look dead.
        quiet = logging.INFO if self.synced_at is None else logging.DEBUG
        self.synced_at = time.time()
        if contacts is self.contacts:  # nothing changed: cost independent of size
            if changed_token:
                await self._persist([], [])
            self._log_sync(started, quiet)
            return False
        old = self.contacts
        _keep_phone_ids(contacts, old, self._dropped_phone_ids)
        self._dropped_phone_ids = {}
        upserts = [c for href, c in contacts.items() if old.get(href) != c]
        deletes = [href for href in old if href not in contacts]
        added = sum(1 for c in upserts if c.href not in old)
        if self.version and not upserts and not deletes:
            if changed_token:
                await self._persist([], [])
            self._log_sync(started, quiet)
            return False
        self.contacts = contacts
        self._reindex(old, [c.href for c in upserts] + deletes)
        self.version += 1
        await self._persist(upserts, deletes)
        self._log_sync(started, logging.INFO, added, len(upserts) - added, len(deletes))
        return True

    def _log_sync(
        self, started: float, level: int, added: int = 0, changed: int = 0, deleted: int = 0
    ) -> None:
        """One line per successful sync: INFO when it changed the contacts (and for a
        source's first), DEBUG when it found nothing new — a quiet source synced every few
        minutes, or thousands of per-user books, would fill the log with nothing."""
        event(
            "sync",
            level,
            source=self.name,
            user=self._xui,
            entries=len(self.contacts),
            added=added,
            changed=changed,
            deleted=deleted,
            ms=round((time.monotonic() - started) * 1000),
        )

    async def _persist(self, upserts: list[Contact], deletes: list[str]) -> None:
        """Write the change to the store. A failing store (a full disk) is logged, not
        raised: the contacts in memory are right and keep being served; after a restart
        the older snapshot is served and the next sync catches up."""
        if self.store is None:
            return
        # After a failed save the stored snapshot misses a change its token has passed:
        # the next save writes the whole snapshot.
        whole = dict(self.contacts) if self._unsaved else None
        try:
            revision = await asyncio.to_thread(
                self.store.save,
                self.name,
                self.user_key,
                self.fingerprint,
                self.token,
                self.synced_at,
                upserts,
                deletes,
                whole,
            )
            self._unsaved = False
            self._stored_synced_at = self.synced_at
            # Another process sharing the database saved in between: what it saved is not
            # here yet (the next follow takes the whole snapshot).
            self.behind = self.behind or revision != self.stored_revision + 1
            self.stored_revision = revision
        except Exception as exc:
            self._unsaved = True
            self.last_error = f"cannot save the snapshot: {exc}"
            event(
                "snapshot_save_failed",
                logging.ERROR,
                source=self.name,
                user=self._xui,
                error=type(exc).__name__,
                detail=str(exc),
            )

    async def _pull_listing(self) -> dict[str, Contact]:
        """List (href, etag) and fetch only what is new or changed."""
        listing = {href: etag async for href, etag in self.connector.list()}
        stale = [
            h for h, e in listing.items() if (c := self.contacts.get(h)) is None or c.etag != e
        ]
        fetched = {c.href: c for c in await self.connector.get_many(stale)}
        if not fetched and listing.keys() == self.contacts.keys():
            return self.contacts
        contacts = {h: self.contacts[h] for h in listing if h in self.contacts and h not in fetched}
        contacts.update(fetched)
        return contacts

    async def _pull_changes(self) -> dict[str, Contact]:
        """Ask for what changed since the last token; a whole new pull when it expired."""
        try:
            result = await self.connector.changes(self.token)
        except InvalidToken:
            event("sync_token_expired", logging.WARNING, source=self.name, user=self._xui)
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

    async def follow(self, revision: int | None = None, hrefs: Sequence[str] | None = None) -> bool:
        """Take what another process sharing the database saved (a replica that syncs, or
        applied a phone's change): the contacts at `hrefs` when that save named them and
        it is the next revision after ours, else the whole snapshot. True when the
        contacts here changed."""
        if self.store is None:
            return False
        # Not under `lock`: a write holds it while its upstream answers (up to its timeout),
        # and a replica must not serve, or merge PUTs against, an old snapshot meanwhile.
        # What a write or a sync does next goes into whichever dict is `contacts` then.
        async with self._following:
            if revision is None:  # what is stored now? (one row: a whole load may not be due)
                found = await asyncio.to_thread(
                    self.store.contacts_at, self.name, self.user_key, ()
                )
                if found is None:
                    return False  # nothing saved yet
                revision = found[0]
            if revision <= self.stored_revision and not self.behind and self.has_data:
                return False  # ours, or older than what is here
            if (
                hrefs is not None
                and revision == self.stored_revision + 1
                and self.has_data
                and not self.behind
            ):
                found = await asyncio.to_thread(
                    self.store.contacts_at, self.name, self.user_key, hrefs
                )
                if found is not None and found[0] == revision:
                    old = {href: c for href in hrefs if (c := self.contacts.get(href))}
                    for href, contact in found[1].items():
                        if contact is None:
                            self.contacts.pop(href, None)
                        else:
                            self.contacts[href] = contact
                    self._reindex(old, hrefs)
                    self.stored_revision = revision
                    self.version += 1
                    return True
            snapshot = await asyncio.to_thread(
                self.store.load, self.name, self.user_key, self.fingerprint, True
            )
            if snapshot is None or snapshot.revision == self.stored_revision and self.has_data:
                self.behind = False
                return False
            self.contacts, self.token = snapshot.contacts, snapshot.token
            self.synced_at = self._stored_synced_at = snapshot.synced_at
            self.stored_revision, self.behind, self.loaded = snapshot.revision, False, True
            self._unsaved = False  # memory is what the database has
            self._ids = None
            self.version += 1
            event(
                "snapshot_followed",
                logging.DEBUG,
                source=self.name,
                user=self._xui,
                entries=len(self.contacts),
                revision=snapshot.revision,
            )
            return True

    async def stored(self, contact: Contact) -> None:
        """Take a contact just written upstream into the snapshot (and the store)."""
        previous = self.contacts.get(contact.href)
        if not contact.entry_id and previous is not None and previous.uid == contact.uid:
            contact = contact.replace(entry_id=previous.entry_id)  # see _keep_phone_ids
        self.contacts[contact.href] = contact
        self._reindex({contact.href: previous} if previous else {}, [contact.href])
        self.version += 1
        await self._persist([contact], [])

    async def removed(self, href: str) -> None:
        if (previous := self.contacts.pop(href, None)) is not None:
            self._reindex({href: previous}, [href])
            self.version += 1
            await self._persist([], [href])

    @property
    def _xui(self) -> str | None:
        return self.user.xui if self.user else None


def _keep_phone_ids(
    contacts: dict[str, Contact], old: dict[str, Contact], dropped: dict[str, str]
) -> None:
    """A contact created from a phone keeps the phone's entry_id even where the upstream
    cannot store it (LDAP without entry_id_attribute): a sync that reads it back without
    one takes it over by uid — from the contacts before, or from a snapshot dropped for a
    changed configuration — so the phone's entry does not turn into another."""
    phone_ids = {**dropped, **{c.uid: c.entry_id for c in old.values() if c.entry_id}}
    if not phone_ids:
        return
    for href, contact in contacts.items():
        if not contact.entry_id and (entry_id := phone_ids.get(contact.uid)):
            contacts[href] = contact.replace(entry_id=entry_id)


def _older_than(moment: float | None, seconds: float) -> bool:
    return moment is None or time.time() - moment > seconds
