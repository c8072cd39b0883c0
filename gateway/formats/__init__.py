"""Phone directory formats: each renders a document's entries as one vendor's phones read
them. The engine produces entries and knows no format; built-in formats and third-party
ones are found the same way, through the entry-point group `xcap_gateway.formats`.

A format is an object with a `name`, a `content_type` and `render(entries, query)`, which
returns the bytes to serve; one with `searchable = False` (a list the phone keeps whole)
is given no query, and its one rendering per document version is cached. A format whose
phones send parameters of their own (Gigaset's `command=get_list`) names them in
`parameters`; they reach it in `Query.params` (a name of ours listed there, like `limit`,
is the format's then). A format whose bytes hold the URL it was fetched from (paging and
search links) sets `uses_url = True`, so its cached rendering is kept per URL. Every format is read-only: edits come back
only through XCAP.

`entries` is a sequence in the document's order; the one the gateway passes is a
`gateway.directory.Directory`, which also searches the whole composition (before the
cap) through an index built once per composition. Formats page and search through
`gateway.formats.search.select`, which uses that index when it is there.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from gateway.entry import Entry

ENTRY_POINT_GROUP = "xcap_gateway.formats"
#: What phones read when nobody says otherwise: XML in UTF-8 (Polycom's browser aside).
XML_TYPE = "text/xml"
#: A search term longer than this names nobody: refused before any work (400).
MAX_QUERY = 100
#: The most entries one page may ask for.
MAX_LIMIT = 1000


class BadQuery(ValueError):
    """A query parameter no phone sends: answered 400."""


class UnknownFormat(LookupError):
    """No format is registered under the name."""


#: Names a format may not take: they are other URLs under phonebook_root.
RESERVED_NAMES = frozenset({"lookup"})


@dataclass(frozen=True)
class Query:
    """What a request asks of a format: a search term (`q`), a page (`offset`, `limit`),
    and the URL the request came to (for paging links), and the parameters of the
    format's own protocol it named in `parameters` (first value of each)."""

    q: str = ""
    offset: int = 0
    limit: int | None = None
    url: str = ""
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def plain(self) -> bool:
        """The whole list, as every phone fetching the same URL gets it (cacheable)."""
        return not self.q and not self.offset and self.limit is None and not self.params


@runtime_checkable
class Format(Protocol):
    name: str
    content_type: str

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        """The bytes a phone reads for `entries` (in the document's order)."""
        ...


def available_formats() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


@functools.cache
def load_format(name: str) -> Format:
    """The format registered under `name`; UnknownFormat when there is none."""
    if name in RESERVED_NAMES:
        raise UnknownFormat(f"{name!r} is not a format name ({name} is a URL of its own)")
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        found = ep.load()
        if not isinstance(found, Format):
            raise UnknownFormat(f"entry point {ep.value!r} for format {name!r} is not a Format")
        return found
    known = ", ".join(available_formats()) or "none installed"
    raise UnknownFormat(f"unknown format {name!r} (known: {known})")
