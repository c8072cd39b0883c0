"""The counterpath dialect of resource-lists (Snom's XCAP directory, Bria): the XCAP
document's bytes, also served at the phonebook URL. Rendering is deterministic: the same
entries always give the same bytes. (Parsing a phone's PUT is the XCAP side's:
gateway.xcap.counterpath.)"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lxml import etree

from gateway.entry import FIELD_ORDER, Entry
from gateway.formats import Query
from gateway.xcap.xml import xml_text

RL_NS = "urn:ietf:params:xml:ns:resource-lists"
CP_NS = "counterpath:properties"
MIME_TYPE = "application/resource-lists+xml"
LIST_NAME = "Contact List"

_RL = f"{{{RL_NS}}}"
_CP = f"{{{CP_NS}}}"
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def render(entries: Iterable[Entry]) -> bytes:
    """The whole document, in the layout of the vendor's example."""
    root = etree.Element(
        f"{_RL}resource-lists",
        nsmap={None: RL_NS, "cp": CP_NS},  # type: ignore[dict-item]
    )
    contact_list = etree.SubElement(root, f"{_RL}list", name=LIST_NAME)
    for entry in entries:
        element = etree.SubElement(contact_list, f"{_RL}entry")
        # Upstream text may hold what XML cannot carry (a control character in a vCard):
        # leave it out rather than fail the document for every user.
        etree.SubElement(element, f"{_RL}display-name").text = xml_text(entry.display_name)
        for name, value in _props(entry):
            if safe_name := xml_text(name):
                etree.SubElement(element, f"{_CP}prop", name=safe_name, value=xml_text(value))
    return _DECLARATION + etree.tostring(root, encoding="UTF-8", pretty_print=True)


def _props(entry: Entry) -> Iterable[tuple[str, str]]:
    yield "entry_id", entry.entry_id
    ordered = [name for name in FIELD_ORDER if name in entry.fields]
    ordered += sorted(set(entry.fields) - set(FIELD_ORDER))
    for name in ordered:
        value = entry.fields[name]
        if isinstance(value, tuple):
            for index, number in enumerate(value):
                yield (f"{name}#{index}" if index else name), number
        else:
            yield name, value


class Counterpath:
    name = "counterpath"
    #: The phone keeps the whole list: no search, no pages.
    searchable = False
    content_type = MIME_TYPE

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        return render(entries)


FORMAT = Counterpath()
