"""Snom's DECT central directory (M300/M700/M900, "list type 2"): an `IPPhoneDirectory` of
`DirectoryEntry`s, each exactly `Name`, `Telephone` (home), `Office` (business) and
`Mobile`, in that order, the first of each kind.

The base is strict: it silently drops an entry that breaks its rules, and one wrong
detail blanks the whole book. So every entry has the same shape:

- all four fields, each with an explicit end tag even when empty (`<Office></Office>`,
  never `<Office/>`); no `clearlight` attribute on the root (it breaks the M300);
- a name of at most 23 characters (white space runs made one space, then cut);
- numbers of at most 21 characters, digits and a leading `+` only: spaces, dashes, dots,
  slashes and parentheses are taken out; a number with anything else in it (letters,
  `*`, `#`, a `+` inside, a SIP address) or longer than 21 after that is left out, and
  the next number of its kind is used;
- an entry with no usable home, business or mobile number is left out;
- at most 1000 entries (the M100/M500 limit, applied to every base).

`q`, `offset` and `limit` work as for every format (the base itself fetches the list).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lxml import etree

from gateway.entry import Entry, without_separators
from gateway.formats import XML_TYPE, Query
from gateway.formats.lines import ascii_digits
from gateway.formats.search import matching
from gateway.formats.xmlout import child, document

#: The base's limits.
MAX_NAME = 23
MAX_NUMBER = 21
MAX_ENTRIES = 1000
#: The fields of an entry, in the base's order, with the number kind each one carries.
FIELDS = (("Telephone", "home_number"), ("Office", "business_number"), ("Mobile", "mobile_number"))

_DIALABLE = re.compile(r"\+?[0-9]+")


def dect_number(number: str) -> str:
    """`number` as the base takes it (digits and a leading `+`, at most 21 characters),
    or "" when it cannot be written so."""
    cleaned = without_separators(ascii_digits(number))
    return cleaned if _DIALABLE.fullmatch(cleaned) and len(cleaned) <= MAX_NUMBER else ""


def dect_name(name: str) -> str:
    """`name` on one line, cut to the base's 23 characters."""
    return " ".join(name.split())[:MAX_NAME].rstrip()


def first_of_kind(entry: Entry, kind: str) -> str:
    value = entry.get(kind)
    for number in value if isinstance(value, tuple) else ():
        if cleaned := dect_number(number):
            return cleaned
    return ""


class SnomDectDirectory:
    name = "snom-dect"
    content_type = XML_TYPE
    #: The phone downloads the whole list and keeps it: no search, no pages.
    searchable = False

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        root = etree.Element("IPPhoneDirectory")
        written = 0
        for entry in matching(entries, query):
            listed = [(tag, first_of_kind(entry, kind)) for tag, kind in FIELDS]
            if not any(number for _, number in listed):
                continue  # nothing the base can dial
            if written == MAX_ENTRIES:
                break
            written += 1
            item = child(root, "DirectoryEntry")
            # Text "" (not None) makes lxml write an explicit end tag: `<Office></Office>`.
            child(item, "Name", dect_name(entry.display_name) or next(n for _, n in listed if n))
            for tag, number in listed:
                child(item, tag, number)
        if not written:
            root.text = ""  # `<IPPhoneDirectory></IPPhoneDirectory>`, like every element
        return document(root)


FORMAT = SnomDectDirectory()
