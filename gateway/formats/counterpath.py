"""The counterpath dialect of resource-lists, as the XCAP document serves it (Snom's XCAP
directory, Bria): the same bytes at the phonebook URL."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.entry import Entry
from gateway.formats import Query
from gateway.xcap import counterpath


class Counterpath:
    name = "counterpath"
    #: The phone keeps the whole list: no search, no pages.
    searchable = False
    content_type = counterpath.MIME_TYPE

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        return counterpath.render(entries)


FORMAT = Counterpath()
