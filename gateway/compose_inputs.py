"""What a composition reads and what it keeps for the next one: the sources' contacts
and pending changes as taken on the event loop (the composition itself runs in a worker
thread), and per source instance what each contact was made into."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.entry import Entry
from gateway.model import Contact

if TYPE_CHECKING:
    from gateway.outbox_rows import Item


@dataclass(frozen=True, slots=True)
class Origin:
    source: str
    href: str
    #: The upstream ETag of the contact as composed ("" for a create not applied yet).
    etag: str = ""


#: (entry, origin, its contact's stored categories, its VIP/DND flags)
Listed = tuple[Entry, Origin, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True)
class SourceInput:
    """What a composition reads of one source instance, taken on the event loop in one
    go (the instance's contacts and pending changes change under requests), so that the
    composition itself can run in a worker thread."""

    name: str
    user_key: str
    category: str | None
    contacts: dict[str, Contact]  # by href
    pending: list[Item]


@dataclass(frozen=True, slots=True)
class Derived:
    """What a composition makes of one upstream contact, kept for the next composition of
    the same document: while the contact object is the same (the snapshot replaces a
    contact that changed), so is all of this. A 100k-contact book is derived once, not at
    every change of one contact."""

    contact: Contact
    entry_id: str
    listed: Listed
    row: Row


#: (entry, origin, wanted, dedupe keys): `wanted` is False for what the document's
#: category filters or `require_number` leave out.
Row = tuple[Entry, Origin, bool, frozenset[str]]


@dataclass(frozen=True)
class Memo:
    """What the last composition made of one source instance's contacts, by href, and
    their hrefs in order (sorting 100k hrefs holds the interpreter lock for a while)."""

    derived: dict[str, Derived]
    order: list[str]


#: (document, source, instance user)
MemoKey = tuple[str, str, str]
#: More hrefs added or removed than this, and the order is sorted anew.
ORDER_PATCHED = 256


def ordered_hrefs(contacts: Mapping[str, Contact], memo: Memo | None) -> list[str]:
    """The hrefs of `contacts`, sorted: the last composition's order, patched where a few
    were added or removed (a sort of 100k strings holds the interpreter lock: the event
    loop would wait for it)."""
    if memo is None:
        return sorted(contacts)
    added = contacts.keys() - memo.derived.keys()
    removed = memo.derived.keys() - contacts.keys()
    if not added and not removed:
        return memo.order
    if len(added) + len(removed) > ORDER_PATCHED:
        return sorted(contacts)
    order = list(memo.order)
    for href in removed:
        del order[bisect.bisect_left(order, href)]
    for href in added:
        bisect.insort(order, href)
    return order
