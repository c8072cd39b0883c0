"""The search every format shares: any word of the name by prefix (case and accents
ignored), the company, and numbers by their digits; then the page asked for.

A first version: it looks at the entries the format is given. (The index over the whole
composition before the cap, with numbers matched on their E.164 form, comes with the
search endpoints.)"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence

from gateway.entry import Entry
from gateway.formats import Query
from gateway.formats.xmlout import numbers

_WORD = re.compile(r"\w+")
_NOT_DIGIT = re.compile(r"\D")


def fold(text: str) -> str:
    """Lower case without accents: "Müller" and "muller" are one."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _matches(entry: Entry, words: list[str], digits: str) -> bool:
    if digits and any(digits in _NOT_DIGIT.sub("", number) for _, number in numbers(entry)):
        return True
    if not words:
        return False
    names = _WORD.findall(fold(f"{entry.display_name} {entry.get('company') or ''}"))
    return all(any(name.startswith(word) for name in names) for word in words)


def matching(entries: Sequence[Entry], query: Query) -> Iterator[Entry]:
    """The entries `query` asks for, in the document's order, paged."""
    found: Iterator[Entry] = iter(entries)
    if query.q:
        words = _WORD.findall(fold(query.q))
        digits = _NOT_DIGIT.sub("", query.q) if not any(c.isalpha() for c in query.q) else ""
        found = (entry for entry in entries if _matches(entry, words, digits))
    skipped = 0
    given = 0
    for entry in found:
        if skipped < query.offset:
            skipped += 1
            continue
        if query.limit is not None and given >= query.limit:
            return
        given += 1
        yield entry
