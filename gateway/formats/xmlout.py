"""What every XML format needs: a serializer (never string templates), text XML can carry,
a contact's name parts and its numbers in a stable order."""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from gateway.entry import Entry
from gateway.xcap.xml import xml_text

#: Number kinds in the order phones list them, with the names vendors give them.
NUMBER_KINDS = ("business_number", "mobile_number", "home_number", "sip_address")


def child(
    parent: etree._Element, tag: str, text: str | None = None, **attributes: str
) -> etree._Element:
    """A sub-element; text and attribute values cleaned of what XML cannot carry (a
    control character in a card must not break the whole book)."""
    element = etree.SubElement(parent, tag, {k: xml_text(v) for k, v in attributes.items()})
    if text is not None:
        element.text = xml_text(text)
    return element


#: Double quotes, as every vendor's examples write it (lxml's own uses single ones).
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def document(root: etree._Element) -> bytes:
    return DECLARATION + etree.tostring(root, encoding="UTF-8", pretty_print=True)


def first_last(entry: Entry) -> tuple[str, str]:
    """Given name and surname; the display name as surname when the card has neither."""
    given = str(entry.get("given_name") or "")
    surname = str(entry.get("surname") or "")
    if not given and not surname:
        return "", entry.display_name
    return given, surname


def numbers(entry: Entry) -> Iterator[tuple[str, str]]:
    """(kind, number) for every number of the entry: business, mobile, home, then SIP
    addresses; each number once, surrounding spaces trimmed."""
    seen: set[str] = set()
    for kind in NUMBER_KINDS:
        value = entry.get(kind)
        for number in value if isinstance(value, tuple) else ():
            number = number.strip()
            if number and number not in seen:
                seen.add(number)
                yield kind, number
