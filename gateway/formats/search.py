"""Search and paging as every format does them: `select(entries, query)` is the page of
entries the query asks for, with how many matched in all.

The gateway hands formats a `Directory`, whose `search` uses the index built once per
composition over every contact before the cap (names by word prefix, case and accents
ignored; the company; numbers by digits, raw and in E.164 form). A plain sequence (a
third-party format's own test, say) gets an index of its own, made for the one search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.entry import Entry
from gateway.formats import Query
from gateway.numbers import NumberFormat
from gateway.search_index import SearchIndex

#: The matches a search answers when it asks for no `limit`.
SEARCH_PAGE = 200


@runtime_checkable
class Searchable(Protocol):
    def search(self, term: str) -> Sequence[Entry]:
        """Every entry matching `term`, in the document's order."""
        ...


@dataclass(frozen=True)
class Page:
    """The entries of one page, where it starts (0-based) and how many matched in all."""

    entries: Sequence[Entry]
    offset: int
    total: int

    @property
    def more(self) -> bool:
        """Entries follow this page."""
        return self.offset + len(self.entries) < self.total


def select(entries: Sequence[Entry], query: Query, page_size: int | None = None) -> Page:
    """The entries `query` asks for (`q`, then `offset` and `limit`; a search without a
    `limit` gives at most SEARCH_PAGE); a format with a page size of its own (Cisco's 32)
    passes it, and `limit` cannot exceed it."""
    found: Sequence[Entry] = entries
    if query.q:
        found = (
            entries.search(query.q)
            if isinstance(entries, Searchable)
            else SearchIndex(entries, NumberFormat()).search(query.q)
        )
    limit = query.limit
    if query.q and limit is None:
        # A search of a big book may match most of it: a phone shows a screenful, and
        # gets the first SEARCH_PAGE matches (the user types on to narrow it).
        limit = SEARCH_PAGE
    if page_size is not None:
        limit = page_size if limit is None else min(limit, page_size)
    offset = min(query.offset, len(found))
    end = len(found) if limit is None else offset + limit
    return Page(found[offset:end], offset, len(found))


def matching(entries: Sequence[Entry], query: Query) -> Sequence[Entry]:
    """Just the entries of the page `query` asks for."""
    return select(entries, query).entries


__all__ = ["Page", "Searchable", "matching", "select"]
