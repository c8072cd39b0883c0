"""The counterpath dialect of resource-lists that Snom phones and Bria read and write.

Rendering is deterministic: the same entries always give the same bytes. Parsing is strict
about well-formedness and structure, lenient about content: unknown props and category
values are kept, empty values are dropped, extra numbers may come in any order.
"""

from __future__ import annotations

import re

from lxml import etree

from gateway.entry import NUMBER_FIELDS, Entry, FieldValue
from gateway.formats.counterpath import CP_NS, LIST_NAME, MIME_TYPE, RL_NS, render
from gateway.xcap.errors import schema_violation
from gateway.xcap.xml import parse_document

_RL = f"{{{RL_NS}}}"
_CP = f"{{{CP_NS}}}"
#: An extra number: `mobile_number#2`. The index only orders the numbers; more than six
#: digits (int() refuses 4,300 and more) is not an index a phone writes, and such a name is
#: kept like any unknown prop.
_NUMBERED = re.compile(r"^(?P<base>[a-z_]+)#(?P<n>[0-9]{1,6})$")

__all__ = ["CP_NS", "LIST_NAME", "MIME_TYPE", "RL_NS", "parse", "render"]


def parse(body: bytes) -> list[Entry]:
    """Entries of a document a phone sent, in document order (entry_id "" where absent).
    Raises XcapConflict for a body that is not a resource-lists document."""
    root = parse_document(body)
    if root.tag != f"{_RL}resource-lists":
        raise schema_violation(f'the root element must be <resource-lists xmlns="{RL_NS}">')
    return [_parse_entry(element) for element in root.iter(f"{_RL}entry")]


def _parse_entry(element: etree._Element) -> Entry:
    display_name = ""
    entry_id = ""
    plain: dict[str, str] = {}
    numbers: dict[str, list[tuple[int, str]]] = {}
    for child in element:
        if child.tag == f"{_RL}display-name":
            display_name = (child.text or "").strip()
            continue
        if child.tag != f"{_CP}prop":
            continue
        name = child.get("name")
        if not name:
            raise schema_violation("every <cp:prop> needs a name attribute")
        value = (child.get("value") or "").strip()
        if not value:
            continue
        if name == "entry_id":
            entry_id = entry_id or value
        elif name in NUMBER_FIELDS:
            numbers.setdefault(name, []).append((0, value))
        elif (match := _NUMBERED.match(name)) and match["base"] in NUMBER_FIELDS:
            numbers.setdefault(match["base"], []).append((int(match["n"]), value))
        else:
            plain.setdefault(name, value)
    fields: dict[str, FieldValue] = dict(plain)
    for name, values in numbers.items():
        fields[name] = tuple(value for _, value in sorted(values, key=lambda item: item[0]))
    return Entry(entry_id, display_name, fields)
