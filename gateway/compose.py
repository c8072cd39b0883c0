"""(user, document) -> the entries a phone gets, rendered once per change of the inputs."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from gateway.compose_inputs import (
    Derived,
    Listed,
    Memo,
    MemoKey,
    Origin,
    Row,
    SourceInput,
    ordered_hrefs,
)
from gateway.config import DocumentConfig
from gateway.directory import Directory
from gateway.entry import FLAG_FIELD, Entry, apply_category, contact_to_entry, number_key
from gateway.formats import Format, Query, load_format
from gateway.gc_pauses import freeze_survivors
from gateway.index_builds import IndexBuilds
from gateway.listing import admitted, diallable, formatted_name, order_key, ordered
from gateway.logs import event
from gateway.model import Contact, UserRef
from gateway.numbers import NumberFormat
from gateway.source_state import SourceState
from gateway.sync import Sources
from gateway.text import carriable

if TYPE_CHECKING:
    from gateway.outbox import Outbox
    from gateway.outbox_rows import Item

#: Compositions of at least this many contacts get their search index built at once.
PREBUILT_INDEX = 5000
#: The format of the XCAP document (the resource-lists dialect Snom and Bria read).
XCAP_FORMAT = "counterpath"


@dataclass(frozen=True)
class Rendered:
    """A composed document: its entries by entry_id (in the order they are listed), where
    each came from, and its bytes."""

    entries: Mapping[str, Entry]
    origins: Mapping[str, Origin]
    body: bytes
    gzipped: bytes
    etag: str
    inputs: Inputs
    #: How numbers were shown, so a phone's edit can be mapped back to stored numbers.
    numbers: NumberFormat
    #: Entries the cap, de-duplication or the document's filters left out (their
    #: origins are in `origins` too).
    hidden: Mapping[str, Entry] = field(default_factory=dict)
    #: What formats read: the entries listed, and search over the composition before the cap.
    directory: Directory = field(default_factory=lambda: Directory((), (), NumberFormat()))

    @property
    def merge_view(self) -> Mapping[str, Entry]:
        """Every entry of the composition, shown or not: what a phone's PUT merges with
        (a phone may hold an entry the cap pushed out since)."""
        return {**self.hidden, **self.entries} if self.hidden else self.entries


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def render_entries(entries: Mapping[str, Entry], document: DocumentConfig) -> bytes:
    """The XCAP document's bytes for `entries`, in the document's order."""
    return xcap_format().render(ordered(entries, document.sort, document.sort_locale), Query())


def xcap_format() -> Format:
    """The XCAP document's format, found like every other (the engine imports none)."""
    return load_format(XCAP_FORMAT)


class NotReady(Exception):
    """A source of the document has no data yet: serving without it would show phones
    a shortened list, and diffing a PUT against it would duplicate its contacts."""

    def __init__(self, sources: list[str]) -> None:
        super().__init__(f"no data yet from source {', '.join(sources)}")
        self.sources = sources


#: Compositions of at least this many contacts (seconds of work) are answered from the
#: one before while they are made (`Composer.document`).
ANSWERED_WHILE_COMPOSED = PREBUILT_INDEX


class Composer:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        #: (document, xui) -> its rendering; xui "" for documents of shared sources only.
        #: Least recently rendered or served first. A user's entries go with the user's
        #: source instances (`forget`); the size is bounded besides (`_bound`). With each
        #: its serial: when it was begun (a composition begun later replaces it).
        self._cache: dict[tuple[str, str], tuple[int, Rendered]] = {}
        self._serials = itertools.count(1)
        self._formats: dict[str, NumberFormat] = {}
        #: Changes from phones not yet applied upstream, shown as if they were.
        self.outbox: Outbox | None = None
        #: Compositions under way in worker threads, by cache key, with their inputs: a
        #: request for the same inputs waits for that one instead of composing again.
        self._composing: dict[tuple[str, str], tuple[Inputs, asyncio.Future[Rendered]]] = {}
        self._memos: dict[MemoKey, Memo] = {}
        self.index_builds = IndexBuilds()
        sources.on_evict.append(self.forget)
        sources.pins.append(self._writing_users)

    def forget(self, users: set[str]) -> None:
        """Drop the renderings of `users` (their per-user source instances were dropped)."""
        for key in self.sources.config.documents:
            for xui in users:
                self._cache.pop((key, xui), None)
        self._forget_memos(users)

    def _forget_memos(self, users: set[str]) -> None:
        for memo_key in [k for k in self._memos if k[2] and k[2] in users]:
            del self._memos[memo_key]

    def cached_users(self) -> set[str]:
        """Users with a rendering of their own in the cache."""
        return {xui for _, xui in self._cache if xui}

    def _writing_users(self) -> set[str]:
        """Users with changes still pending in the outbox: the instances their changes are
        applied to (by source instance, and for a re-create, the user's `write_to`) and
        composed with must stay."""
        return set() if self.outbox is None else self.outbox.users_waiting()

    def numbers_for(self, key: str) -> NumberFormat:
        """The document's number format (one instance, so its cache is shared)."""
        if key not in self._formats:
            self._formats[key] = self.sources.config.documents[key].numbers()
        return self._formats[key]

    async def states(self, document: DocumentConfig, user: UserRef) -> list[SourceState]:
        return [
            await self.sources.ready(self.sources.state(name, user)) for name in document.sources
        ]

    def _inputs(self, states: list[SourceState]) -> Inputs:
        inputs = tuple((state.serial, state.version) for state in states)
        if self.outbox is not None:  # the pending changes of these sources only
            inputs += tuple(self.outbox.version_of(s.name, s.user_key) for s in states)
        return inputs

    async def document(
        self, key: str, document: DocumentConfig, user: UserRef, current: bool = True
    ) -> Rendered:
        """The rendered document for `user`; re-rendered only when a source changed, in a
        worker thread (composing a big book takes long enough to stall every request).

        `current` False (serving a phone): a big composition's previous rendering answers
        while the new one is made, so a phone's poll never waits seconds for it; the next
        poll gets the new one. True (a PUT's merge, its answer): the composition of what
        the sources hold now."""
        states = await self.states(document, user)
        if missing := [state.name for state in states if not state.has_data]:
            raise NotReady(missing)
        inputs = self._inputs(states)
        per_user = any(self.sources.is_per_user(name) for name in document.sources)
        cache_key = (key, user.xui if per_user else "")
        cached = self._cache.get(cache_key)
        if cached is not None and cached[1].inputs == inputs:
            self._cache[cache_key] = self._cache.pop(cache_key)  # now the most recently used
            return cached[1]
        running = self._composing.get(cache_key)
        answered = (
            not current
            and cached is not None
            and cached[1].directory.size >= ANSWERED_WHILE_COMPOSED
        )
        if answered and running is not None:
            # A composition is under way (of these inputs or older ones): one at a time,
            # the next poll after it asks for the next.
            assert cached is not None
            return cached[1]
        if running is None or running[0] != inputs:
            # What the sources hold now, taken before anything is awaited: the result is
            # the composition of exactly `inputs`.
            taken = [self._input(state) for state in states]
            previous = cached[1].directory if cached is not None else None
            future = asyncio.ensure_future(
                self._composed(
                    cache_key,
                    next(self._serials),
                    key,
                    document,
                    states,
                    taken,
                    inputs,
                    user,
                    previous,
                )
            )
            # Nobody may be waiting for it (polls answered meanwhile): its failure is logged.
            future.add_done_callback(_failure_logged)
            running = self._composing[cache_key] = (inputs, future)
        if answered:
            assert cached is not None
            return cached[1]
        # Shielded: a request that goes away must not cancel what others wait for.
        return await asyncio.shield(running[1])

    def _input(self, state: SourceState) -> SourceInput:
        pending = [] if self.outbox is None else self.outbox.pending(state.name, state.user_key)
        return SourceInput(
            state.name,
            state.user_key,
            state.config.category,
            state.contacts.copy(),  # a copy of the table, not of 100k items
            list(pending),
        )

    async def _composed(
        self,
        cache_key: tuple[str, str],
        serial: int,
        key: str,
        document: DocumentConfig,
        states: list[SourceState],
        taken: list[SourceInput],
        inputs: Inputs,
        user: UserRef,
        previous: Directory | None,
    ) -> Rendered:
        memos = {
            (key, i.name, i.user_key): self._memos.get((key, i.name, i.user_key)) for i in taken
        }
        try:
            rendered, memos_now = await asyncio.to_thread(
                self._compose, key, document, taken, inputs, user, memos, previous
            )
        finally:
            if (running := self._composing.get(cache_key)) is not None and running[0] == inputs:
                del self._composing[cache_key]
        if any(state.evicted for state in states):  # the user is gone: keep none
            return rendered
        self._memos.update(memos_now)
        # Compositions may finish out of order: one begun before the cached one is served
        # to whoever asked for it, not cached.
        cached = self._cache.get(cache_key)
        newest = cached is None or cached[0] < serial
        if newest:
            self._cache.pop(cache_key, None)
            self._cache[cache_key] = (serial, rendered)
            self._bound()
        # Only the cached composition's index is built ahead: a late, older one's would
        # take the place of the build queued for the newer one, whose searches would then
        # read an older index until the next change (its own builds when first searched).
        if newest and rendered.directory.size >= PREBUILT_INDEX:
            # A big book's index takes seconds: build it now, off the event loop, rather
            # than when the first phone searches (the previous one answers meanwhile).
            self.index_builds.soon(cache_key, rendered.directory)
            # Else full collections walk the book's objects again and again, pausing
            # every request for a large fraction of a second.
            freeze_survivors()
        return rendered

    def _bound(self) -> None:
        """At most one rendering per document and active user (`forget` keeps it so;
        this is the backstop): the least recently used go."""
        limit = (self.sources.config.server.max_active_users + 1) * len(
            self.sources.config.documents
        )
        dropped = set()
        while len(self._cache) > limit:
            dropped.add(next(iter(self._cache))[1])
            del self._cache[next(iter(self._cache))]
        if dropped - self.cached_users():
            self._forget_memos(dropped - self.cached_users())

    def _source_entries(
        self,
        taken: SourceInput,
        numbers: NumberFormat,
        document: DocumentConfig,
        memo: Memo | None,
    ) -> tuple[list[Row], Memo]:
        """The source's rows, in the order of their hrefs, pending changes shown; and the
        memo for the next composition."""
        rows: dict[str, Derived] = {}
        contacts = taken.contacts
        before: dict[str, Derived] = memo.derived if memo is not None else {}
        derived: dict[str, Derived] = {}
        for href in (order := ordered_hrefs(contacts, memo)):
            contact = contacts[href]
            known = before.get(href)
            if known is None or known.contact is not contact:
                known = self._derive(taken, contact, numbers, document)
            derived[href] = known
            rows.setdefault(known.entry_id, known)
        memo_now = Memo(derived, order)
        if not taken.pending:
            return [known.row for known in rows.values()], memo_now
        listed = {entry_id: known.listed for entry_id, known in rows.items()}
        _overlay(listed, taken.pending, taken.name, taken.category)
        shown = [
            was.row
            if (was := rows.get(entry_id)) is not None and was.listed is now
            else self._row(now, taken.category, document)
            for entry_id, now in listed.items()
        ]
        return shown, memo_now

    def _derive(
        self, taken: SourceInput, contact: Contact, numbers: NumberFormat, document: DocumentConfig
    ) -> Derived:
        entry = contact_to_entry(contact, taken.category, numbers)
        if document.name_format is not None:
            name = formatted_name(document.name_format, contact, entry.display_name)
            entry = replace(entry, display_name=carriable(name))
        origin = Origin(taken.name, contact.href, contact.etag)
        flags = ("vip",) * contact.vip + ("dnd",) * contact.dnd
        listed = (entry, origin, contact.categories, flags)
        return Derived(contact, entry.entry_id, listed, self._row(listed, taken.category, document))

    @staticmethod
    def _row(listed: Listed, category: str | None, document: DocumentConfig) -> Row:
        entry, origin, stored, flags = listed
        # VIP and DND are categories upstream (vCard CATEGORIES), flags here; a contact
        # with no category is in the source's default one.
        wanted = admitted(
            (stored or (category or "",)) + flags,
            document.include_categories,
            document.exclude_categories,
        ) and (diallable(entry) or not document.require_number)
        # Keys only fold entries of different sources: a one-source document needs none
        # (two strings and a set per contact, a fifth of a 100k composition's memory).
        by = document.dedupe_by if len(document.sources) > 1 else ()
        return entry, origin, wanted, dedupe_keys(entry, by)

    def _compose(
        self,
        key: str,
        document: DocumentConfig,
        taken: list[SourceInput],
        inputs: Inputs,
        user: UserRef,
        memos: Mapping[MemoKey, Memo | None],
        previous: Directory | None = None,
    ) -> tuple[Rendered, dict[MemoKey, Memo]]:
        """The composition of `taken` (run in a worker thread: it reads nothing that
        changes under requests), and the memos for the next one."""
        entries: dict[str, Entry] = {}
        origins: dict[str, Origin] = {}
        numbers = self.numbers_for(key)
        seen_keys: set[str] = set()  # dedupe keys of the sources already composed
        hidden: dict[str, Entry] = {}
        capped: dict[str, Entry] = {}  # left out by the cap alone: search still finds them
        memos_now: dict[MemoKey, Memo] = {}
        left_out = folded = filtered = 0
        # Sources in priority order: duplicates and the cap keep the earlier sources' entries.
        for source in taken:
            keys_here: set[str] = set()
            memo_key = (key, source.name, source.user_key)
            found, memos_now[memo_key] = self._source_entries(
                source, numbers, document, memos.get(memo_key)
            )
            for entry, origin, wanted, keys in found:
                if not wanted:  # a filter of the document: never listed, never searched
                    filtered += 1
                    hidden.setdefault(entry.entry_id, entry)
                    origins.setdefault(entry.entry_id, origin)
                    continue
                if entry.entry_id in entries or keys & seen_keys:
                    if entry.entry_id not in entries:
                        folded += 1
                        hidden.setdefault(entry.entry_id, entry)
                        origins.setdefault(entry.entry_id, origin)
                    continue
                if len(entries) >= document.max_entries:
                    left_out += 1
                    hidden.setdefault(entry.entry_id, entry)
                    capped.setdefault(entry.entry_id, entry)
                    keys_here |= keys
                    origins.setdefault(entry.entry_id, origin)
                    continue
                keys_here |= keys
                entries[entry.entry_id] = entry
                origins[entry.entry_id] = origin
            seen_keys |= keys_here
        if left_out:
            event(
                "document_capped",
                logging.WARNING,
                document=key,
                user=user.xui or None,
                served=len(entries),
                left_out=left_out,
                max_entries=document.max_entries,
            )
        # In the order every format lists them: sorted once here, not per request.
        order = (document.sort, document.sort_locale)
        # Sources' order for search (sorted per search, by the index's matches only);
        # the listed entries, at most max_entries, in the document's order.
        everyone = [*entries.values(), *capped.values()]
        entries = {entry.entry_id: entry for entry in ordered(entries, *order)}
        body = xcap_format().render(list(entries.values()), Query())
        event(
            "document_rendered",
            logging.DEBUG,
            document=key,
            user=user.xui or None,
            entries=len(entries),
            folded=folded,
            filtered=filtered,
        )
        rendered = Rendered(
            entries,
            origins,
            body,
            gzip.compress(body, mtime=0),
            etag_of(body),
            inputs,
            numbers,
            hidden,
            Directory(list(entries.values()), everyone, numbers, previous, order_key(*order)),
        )
        return rendered, memos_now


#: What a composition was made of: per source, its serial and version; then per source,
#: the version of its pending changes.
Inputs = tuple[tuple[int, int], ...]


def _overlay(
    listed: dict[str, Listed], pending: list[Item], source: str, default: str | None
) -> None:
    """Show changes not yet applied upstream as if they were, in the order they came,
    each with the categories write-back will give its contact (what the filters read)."""
    for item in pending:
        if item.kind in ("create", "update") and item.after is not None:
            if item.kind == "update":
                if item.entry_id not in listed:
                    continue
                _, origin, stored, _ = listed[item.entry_id]
            else:
                origin, stored = Origin(source, ""), ()
            before = str(item.before.get("category") or "") if item.before else ""
            after = str(item.after.get("category") or "")
            stored = apply_category(stored, before, after, default)
            flag = str(item.after.get(FLAG_FIELD) or "").casefold()
            flags = (flag,) if flag in ("vip", "dnd") else ()
            listed[item.entry_id] = (item.after, origin, stored, flags)
        elif item.kind == "delete":
            listed.pop(item.entry_id, None)


def _failure_logged(future: asyncio.Future[Rendered]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        event("compose_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc))


_NO_KEYS: frozenset[str] = frozenset()


def dedupe_keys(entry: Entry, by: Sequence[str]) -> frozenset[str]:
    """What makes two entries of different sources the same person: the first email, and
    the first number (mobile, else business, else home), as shown."""
    if not by:
        return _NO_KEYS
    keys: set[str] = set()
    if "email" in by and (email := entry.get("email_address")):
        keys.add("email:" + str(email).strip().lower())
    if "number" in by:
        for field in ("mobile_number", "business_number", "home_number"):
            if numbers := entry.get(field):
                keys.add("number:" + number_key(numbers[0]))
                break
    return frozenset(keys)
