"""Fanvil's XML phonebook: a `FanvilIPPhoneDirectory` of `DirectoryEntry`s, each `Name`,
`Telephone`, `Mobile` and `Other`.

What is assumed, since Fanvil's own XML guide was not read (facts M/L: the field names come
from community tools, a 3CX exporter and a Fanvil script; Wazo's v2 "cloud phonebook"
uses the same four under `<PhoneBook>`):

- `Telephone` is the business number, `Mobile` the mobile number, `Other` the home number
  or, without one, the next number left over (a second business or mobile number, then a
  SIP address); the first number of each kind. A card's further numbers are not listed.
- Every entry carries all four fields (empty ones as `<Other></Other>`); an entry with no
  number at all is left out (nothing to dial).
- No `clearlight` attribute (it only concerns the XML browser's backlight).
- `&` and `<` are written escaped (`&amp;`, `&lt;`), as XML requires. One community tool
  claims Fanvil phones reject `&` (one source, L); dropping or replacing the character
  would change names for every phone on a single unconfirmed report, so we keep valid XML.
- Search through `q` like Yealink (`…?q=` with whatever the phone puts there); no
  placeholder is confirmed for Fanvil, so a phone that sends none downloads the whole list.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from gateway.entry import Entry
from gateway.formats import XML_TYPE, Query
from gateway.formats.search import matching
from gateway.formats.xmlout import child, document, numbers

#: The fields after `Name`, with the number kind each one prefers.
FIELDS = (("Telephone", "business_number"), ("Mobile", "mobile_number"), ("Other", "home_number"))


def fanvil_numbers(entry: Entry) -> dict[str, str]:
    """Field -> number: the first of each field's kind; `Other`, without a home number,
    the first number not already listed."""
    listed = list(numbers(entry))
    chosen: dict[str, str] = {}
    for tag, kind in FIELDS:
        found = next((number for k, number in listed if k == kind), None)
        if found is not None:
            chosen[tag] = found
    if "Other" not in chosen:
        used = set(chosen.values())
        spare = next((number for _, number in listed if number not in used), None)
        if spare is not None:
            chosen["Other"] = spare
    return chosen


class FanvilDirectory:
    name = "fanvil"
    content_type = XML_TYPE

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        root = etree.Element("FanvilIPPhoneDirectory")
        for entry in matching(entries, query):
            chosen = fanvil_numbers(entry)
            if not chosen:
                continue  # nothing to dial
            item = child(root, "DirectoryEntry")
            child(item, "Name", entry.display_name)
            for tag, _ in FIELDS:
                child(item, tag, chosen.get(tag, ""))
        return document(root)


FORMAT = FanvilDirectory()
