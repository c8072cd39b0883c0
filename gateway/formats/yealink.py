"""Yealink's remote phonebook: a `YealinkIPPhoneDirectory` of `DirectoryEntry`s, each a
`Name` and one `Telephone` per number. Search through `q`: the URL on the phone ends in
`?q=#SEARCH`, and the phone puts what the user typed in place of `#SEARCH`."""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from gateway.entry import Entry
from gateway.formats import XML_TYPE, Query
from gateway.formats.search import matching
from gateway.formats.xmlout import child, document, numbers


class YealinkDirectory:
    name = "yealink"
    content_type = XML_TYPE

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        root = etree.Element("YealinkIPPhoneDirectory")
        for entry in matching(entries, query):
            listed = list(numbers(entry))
            if not listed:
                continue  # nothing to dial
            item = child(root, "DirectoryEntry")
            child(item, "Name", entry.display_name)
            for _, number in listed:
                child(item, "Telephone", number)
        return document(root)


FORMAT = YealinkDirectory()
