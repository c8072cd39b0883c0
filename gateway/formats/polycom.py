"""Polycom/Poly's local directory file (`<MAC>-directory.xml`, `000000000000-directory.xml`):
`directory/item_list/item`, each with `fn`, `ln`, the number to dial in `ct` and a label in
`lb`. The phone reads the whole file and overwrites its own copy; it is not a search.

The phone's rules: `fn`, `ln` and `lb` are at most 40 bytes of UTF-8 (cut here on a
character boundary); `ct` is digits or a SIP URL, never empty and never twice in the file,
so a contact with several numbers is one item per number and a number already listed is
skipped; the file stays within 200 KB (items stop before it would grow past that)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lxml import etree

from gateway.entry import Entry, number_key
from gateway.formats import XML_TYPE, Query
from gateway.formats.lines import dialable_number
from gateway.formats.search import matching
from gateway.formats.xmlout import child, document, first_last, numbers
from gateway.xcap.xml import xml_text

#: The most bytes of UTF-8 in `fn`, `ln` and `lb`.
MAX_FIELD_BYTES = 40
#: The largest file the phones take (200 KB, read as 200,000 bytes to be safe; phones
#: with 4 MB of flash take only 50 KB).
MAX_FILE_BYTES = 200_000
#: Our number kinds as the label shown beside the number.
LABELS = {
    "business_number": "Work",
    "mobile_number": "Mobile",
    "home_number": "Home",
    "sip_address": "SIP",
}
#: Each level of pretty-printing indents by two spaces; an item sits two levels deep.
_ITEM_INDENT = 4


def cut(text: str, limit: int = MAX_FIELD_BYTES) -> str:
    """`text` (cleaned for XML) in at most `limit` bytes of UTF-8, cut between characters."""
    encoded = xml_text(text).encode("utf-8")
    if len(encoded) <= limit:
        return xml_text(text)
    return encoded[:limit].decode("utf-8", errors="ignore").rstrip()


def dial_string(kind: str, number: str) -> str:
    """What goes into `ct`: a SIP address as it is, a phone number as digits (`*`, `#`
    and a leading `+` too) without spaces, dashes, dots, slashes and brackets; "" for a
    number the phone cannot dial (`ext12`), which is left out."""
    return number if kind == "sip_address" else dialable_number(kind, number)


def _items(entries: Sequence[Entry], query: Query) -> Iterator[tuple[str, str, str, str]]:
    """(fn, ln, ct, lb) for every number not listed before, in the document's order."""
    seen: set[str] = set()
    for entry in matching(entries, query):
        given, surname = first_last(entry)
        for kind, number in numbers(entry):
            contact = xml_text(dial_string(kind, number))
            key = number_key(contact)
            if not key or key in seen:
                continue
            seen.add(key)
            yield cut(given), cut(surname), contact, LABELS[kind]  # see first_last


def _size_in_place(item: etree._Element) -> int:
    """The bytes `item` adds to the pretty-printed file: its own lines, each indented."""
    alone = etree.tostring(item, encoding="UTF-8", pretty_print=True)
    return len(alone) + _ITEM_INDENT * (len(item) + 2)


class PolycomDirectory:
    name = "polycom"
    content_type = XML_TYPE
    #: The phone downloads the whole list and keeps it: no search, no pages.
    searchable = False

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        root = etree.Element("directory")
        item_list = child(root, "item_list")
        # The file without items, as it is once items open and close the list.
        size = len(document(root)) - len("<item_list/>") + len("<item_list>\n  </item_list>")
        for given, surname, contact, label in _items(entries, query):
            item = etree.Element("item")
            if given:
                child(item, "fn", given)
            if surname:
                child(item, "ln", surname)
            child(item, "ct", contact)
            child(item, "lb", label)
            size += _size_in_place(item)
            if size > MAX_FILE_BYTES:
                break
            item_list.append(item)
        body = document(root)
        while len(body) > MAX_FILE_BYTES and len(item_list):  # the estimate is exact; if not
            item_list.remove(item_list[-1])
            body = document(root)
        return body


FORMAT = PolycomDirectory()
