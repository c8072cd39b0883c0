"""Search and paging as every format does them: `select(entries, query)` is the page of
entries the query asks for, with how many matched in all.

The gateway hands formats a `Directory`, whose `search` uses the index built once per
composition over every contact before the cap (names by word prefix, case and accents
ignored; the company; numbers by digits, raw and in E.164 form). A plain sequence (a
third-party test, say) is searched by a linear scan with the same name rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.entry import Entry
from gateway.formats import Query
from gateway.text import fold, words_of

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
            entries.search(query.q) if isinstance(entries, Searchable) else scan(entries, query.q)
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


def scan(entries: Sequence[Entry], term: str) -> list[Entry]:
    """A linear search: every word of the term starts a word of the name or company; or,
    for a term of digits, the digits appear in a number."""
    words = words_of(term)
    digits = "".join(c for c in term if c.isdigit())
    numeric = not any(c.isalpha() for c in term)

    def matches(entry: Entry) -> bool:
        if numeric and digits:
            for kind in ("business_number", "mobile_number", "home_number"):
                for number in entry.get(kind):
                    if digits in "".join(c for c in number if c.isdigit()):
                        return True
        names = words_of(f"{entry.display_name} {entry.get('company') or ''}")
        return bool(words) and all(any(n.startswith(w) for n in names) for w in words)

    return [entry for entry in entries if matches(entry)]


__all__ = ["Page", "Searchable", "fold", "matching", "scan", "select"]
