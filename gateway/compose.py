"""(user, document) -> the entries a phone gets, rendered once per change of the inputs."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from gateway.config import DocumentConfig
from gateway.directory import Directory
from gateway.entry import FLAG_FIELD, Entry, apply_category, contact_to_entry, number_key
from gateway.formats import Format, Query, load_format
from gateway.listing import admitted, diallable, formatted_name, order_key, ordered
from gateway.logs import event
from gateway.model import UserRef
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
class Origin:
    source: str
    href: str
    #: The upstream ETag of the contact as composed ("" for a create not applied yet).
    etag: str = ""


@dataclass(frozen=True)
class Rendered:
    """A composed document: its entries by entry_id (in the order they are listed), where
    each came from, and its bytes."""

    entries: Mapping[str, Entry]
    origins: Mapping[str, Origin]
    body: bytes
    gzipped: bytes
    etag: str
    inputs: tuple[tuple[int, int], ...]
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


class Composer:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        #: (document, xui) -> its rendering; xui "" for documents of shared sources only.
        #: Least recently rendered or served first. A user's entries go with the user's
        #: source instances (`forget`); the size is bounded besides (`_bound`).
        self._cache: dict[tuple[str, str], Rendered] = {}
        self._formats: dict[str, NumberFormat] = {}
        #: Changes from phones not yet applied upstream, shown as if they were.
        self.outbox: Outbox | None = None
        sources.on_evict.append(self.forget)
        sources.pins.append(self._writing_users)

    def forget(self, users: set[str]) -> None:
        """Drop the renderings of `users` (their per-user source instances were dropped)."""
        for key in self.sources.config.documents:
            for xui in users:
                self._cache.pop((key, xui), None)

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

    async def document(self, key: str, document: DocumentConfig, user: UserRef) -> Rendered:
        """The rendered document for `user`; re-rendered only when a source changed."""
        states = await self.states(document, user)
        if missing := [state.name for state in states if not state.has_data]:
            raise NotReady(missing)
        inputs = tuple((state.serial, state.version) for state in states)
        if self.outbox is not None:  # the pending changes of these sources only
            inputs += tuple(self.outbox.version_of(s.name, s.user_key) for s in states)
        per_user = any(self.sources.is_per_user(name) for name in document.sources)
        cache_key = (key, user.xui if per_user else "")
        cached = self._cache.pop(cache_key, None)
        if cached is not None and cached.inputs == inputs:
            self._cache[cache_key] = cached  # now the most recently used
            return cached
        previous = cached.directory if cached is not None else None
        rendered = self._compose(key, document, states, inputs, user, previous)
        if not any(state.evicted for state in states):  # else the user is gone: keep none
            self._cache[cache_key] = rendered
            self._bound()
        if rendered.directory.size >= PREBUILT_INDEX:
            # A big book's index takes seconds: build it now, off the event loop, rather
            # than when the first phone searches (the previous one answers meanwhile).
            asyncio.get_running_loop().run_in_executor(None, rendered.directory.build_ahead())
        return rendered

    def _bound(self) -> None:
        """At most one rendering per document and active user (`forget` keeps it so;
        this is the backstop): the least recently used go."""
        limit = (self.sources.config.server.max_active_users + 1) * len(
            self.sources.config.documents
        )
        while len(self._cache) > limit:
            del self._cache[next(iter(self._cache))]

    def _source_entries(
        self, state: SourceState, numbers: NumberFormat, document: DocumentConfig
    ) -> list[tuple[Entry, Origin, bool]]:
        """(entry, origin, listed): `listed` is False for what the document's category
        filters or `require_number` leave out."""
        listed: dict[str, Listed] = {}
        default = state.config.category or ""
        for contact in sorted(state.contacts.values(), key=lambda c: c.href):
            entry = contact_to_entry(contact, state.config.category, numbers)
            if document.name_format is not None:
                name = formatted_name(document.name_format, contact, entry.display_name)
                entry = replace(entry, display_name=carriable(name))
            origin = Origin(state.name, contact.href, contact.etag)
            flags = ("vip",) * contact.vip + ("dnd",) * contact.dnd
            listed.setdefault(entry.entry_id, (entry, origin, contact.categories, flags))
        if self.outbox is not None:
            pending = self.outbox.pending(state.name, state.user_key)
            _overlay(listed, pending, state.name, state.config.category)
        include, exclude = document.include_categories, document.exclude_categories
        return [
            (
                entry,
                origin,
                # VIP and DND are categories upstream (vCard CATEGORIES), flags here; a
                # contact with no category is in the source's default one.
                admitted((stored or (default,)) + flags, include, exclude)
                and (diallable(entry) or not document.require_number),
            )
            for entry, origin, stored, flags in listed.values()
        ]

    def _compose(
        self,
        key: str,
        document: DocumentConfig,
        states: list[SourceState],
        inputs: tuple[tuple[int, int], ...],
        user: UserRef,
        previous: Directory | None = None,
    ) -> Rendered:
        entries: dict[str, Entry] = {}
        origins: dict[str, Origin] = {}
        numbers = self.numbers_for(key)
        seen_keys: set[str] = set()  # dedupe keys of the sources already composed
        hidden: dict[str, Entry] = {}
        capped: dict[str, Entry] = {}  # left out by the cap alone: search still finds them
        left_out = folded = filtered = 0
        # Sources in priority order: duplicates and the cap keep the earlier sources' entries.
        for state in states:
            keys_here: set[str] = set()
            for entry, origin, wanted in self._source_entries(state, numbers, document):
                if not wanted:  # a filter of the document: never listed, never searched
                    filtered += 1
                    hidden.setdefault(entry.entry_id, entry)
                    origins.setdefault(entry.entry_id, origin)
                    continue
                keys = dedupe_keys(entry, document.dedupe_by)
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
        return Rendered(
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


#: (entry, origin, its contact's stored categories, its VIP/DND flags)
Listed = tuple[Entry, Origin, tuple[str, ...], tuple[str, ...]]


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


def dedupe_keys(entry: Entry, by: Sequence[str]) -> set[str]:
    """What makes two entries of different sources the same person: the first email, and
    the first number (mobile, else business, else home), as shown."""
    keys = set()
    if "email" in by and (email := entry.get("email_address")):
        keys.add("email:" + str(email).strip().lower())
    if "number" in by:
        for field in ("mobile_number", "business_number", "home_number"):
            if numbers := entry.get(field):
                keys.add("number:" + number_key(numbers[0]))
                break
    return keys
