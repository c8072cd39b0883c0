"""vCard 3.0 / 4.0 cards <-> the normalized Contact, preserving everything we do not map.

A card is kept as its original content lines (folded, with their line endings). Reading
parses each line with vobject; writing changes only the lines of the properties whose
values differ and leaves every other line byte for byte as it was, so PHOTO, ADR, X-
properties, groups and parameters survive a write-back untouched. (Round-tripping a card
through vobject's objects would not: it drops vCard 4 data: URIs and reorders lines.)
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Sequence
from functools import partial

from vobject.base import backslashEscape

from connectors.vcard_lines import (
    Card,
    Line,
    clean_text,
    decode_param,
    encode_param,
    text_values,
)
from gateway.model import Contact

_FLAGS = ("vip", "dnd")  # CATEGORIES values that are flags on the phone
XPROP = "X-XCAP-PROP"
XENTRY = "X-XCAP-ENTRY-ID"
_ENTRY_ID = re.compile(r"[0-9A-F]{32}")


# --- the mapped properties, each read as a list of (line, value) "slots" -------------

Value = str | tuple[str, ...]
Slots = list[tuple[Line, Value]]


#: Apple Contacts' built-in labels (`item1.X-ABLabel:_$!<Mobile>!$_`); any other label
#: text is a custom one, read as business. Fax and pager labels are not dialable.
_LABEL_KINDS: dict[str, str | None] = {
    "mobile": "mobile",
    "iphone": "mobile",
    "home": "home",
    "work": "business",
    "main": "business",
    "pager": None,
}
_BUILT_IN_LABEL = re.compile(r"_\$!<(.*)>!\$_")


def _labels(card: Card) -> dict[str, str]:
    """The X-ABLabel text of each group (lower-cased group name -> label)."""
    labels = {}
    for line in card.lines:
        if line.name == "X-ABLABEL" and line.group:
            text = line.text().strip()
            built_in = _BUILT_IN_LABEL.fullmatch(text)
            labels[line.group.lower()] = built_in.group(1) if built_in else text
    return labels


def _label_kind(label: str) -> str | None:
    key = label.strip().lower()
    if "fax" in key:
        return None
    return _LABEL_KINDS.get(key, "business")


def _tel_kind(line: Line, labels: dict[str, str]) -> str | None:
    # A label is what the user picked in Apple Contacts: it decides over the TYPEs,
    # which Apple writes loosely (`type=pref` alone, or `CELL` on an "iPhone" number).
    if line.group and (label := labels.get(line.group.lower())) is not None:
        return _label_kind(label)
    types = line.types()
    if "cell" in types:
        return "mobile"
    if types & {"fax", "pager"}:
        return None  # not dialable from a phone directory: left alone upstream
    if "home" in types:
        return "home"
    return "business"


def _strip_scheme(value: str, scheme: str) -> str:
    return value[len(scheme) :] if value[: len(scheme)].lower() == scheme else value


def _number(line: Line) -> str:
    return _strip_scheme(line.text().strip(), "tel:")


def read_slots(card: Card) -> dict[str, Slots]:
    slots: dict[str, Slots] = {}
    labels = _labels(card)

    def add(kind: str, line: Line, value: Value) -> None:
        slots.setdefault(kind, []).append((line, value))

    for line in card.lines:
        name = line.name
        if name in ("FN", "TITLE", "NOTE", "EMAIL", XENTRY):
            if text := line.text().strip():
                add(name, line, text)
        elif name == "N":
            add(name, line, tuple(line.components(5)))
        elif name == "ORG":
            add(name, line, tuple(line.components(1)))
        elif name == "TEL" and (kind := _tel_kind(line, labels)) and (number := _number(line)):
            add(kind, line, number)
        elif (name == "IMPP" and line.value.lower().startswith("sip:")) or name == "X-SIP":
            add("sip", line, _strip_scheme(line.text().strip(), "sip:"))
        elif name == "CATEGORIES":
            for category in text_values(line.value):
                if category.strip():
                    add(name, line, category.strip())
        elif name == XPROP:
            add(name, line, (decode_param(line.param_text("X-NAME") or ""), line.text()))
    return slots


def card_to_contact(card: Card, source: str, href: str) -> Contact:
    slots = read_slots(card)

    def values(kind: str) -> list[Value]:
        return [value for _, value in slots.get(kind, [])]

    def one(kind: str) -> str:
        found = values(kind)
        return str(found[0]) if found else ""

    name = values("N")[0] if values("N") else ("", "", "", "", "")
    org = values("ORG")[0] if values("ORG") else ("",)
    categories = [str(c) for c in values("CATEGORIES")]
    flags = {c.lower() for c in categories if c.lower() in _FLAGS}
    extra = tuple(sorted((str(p[0]), str(p[1])) for p in values(XPROP) if isinstance(p, tuple)))
    return Contact(
        uid=card.uid or href,
        source=source,
        href=href,
        etag=card.etag(),
        display_name=one("FN"),
        given_name=str(name[1]).strip(),
        surname=str(name[0]).strip(),
        profession=one("TITLE"),
        company=str(org[0]).strip(),
        comment=one("NOTE"),
        emails=tuple(str(v) for v in values("EMAIL")),
        sip=tuple(str(v) for v in values("sip")),
        mobile=tuple(str(v) for v in values("mobile")),
        home=tuple(str(v) for v in values("home")),
        business=tuple(str(v) for v in values("business")),
        categories=tuple(c for c in categories if c.lower() not in _FLAGS),
        vip="vip" in flags,
        dnd="dnd" in flags,
        extra=extra,
        entry_id=one(XENTRY),
    )


# --- writing: change only the kinds whose values differ ------------------------------

LineMaker = Callable[[Card, Value, Line | None], Line]


def _text_line(name: str) -> LineMaker:
    def make(card: Card, value: Value, template: Line | None) -> Line:
        params, group = (template.params, template.group) if template else ([], None)
        return card.make_line(name, params, backslashEscape(str(value)), group)

    return make


def _structured_line(name: str) -> LineMaker:
    def make(card: Card, value: Value, template: Line | None) -> Line:
        params, group = (template.params, template.group) if template else ([], None)
        return card.make_line(name, params, ";".join(backslashEscape(v) for v in value), group)

    return make


_NEW_TEL_TYPE = {"mobile": "cell", "home": "home", "business": "work"}


def _tel_line(kind: str) -> LineMaker:
    def make(card: Card, value: Value, template: Line | None) -> Line:
        number = str(value)
        if template is None:
            return card.make_line(
                "TEL", [["TYPE", _NEW_TEL_TYPE[kind]]], backslashEscape(number), None
            )
        if "uri" in {v.lower() for v in template.param("VALUE")}:
            number = "tel:" + re.sub(r"\s+", "-", number)
        return card.make_line("TEL", template.params, backslashEscape(number), template.group)

    return make


def _sip_line(card: Card, value: Value, template: Line | None) -> Line:
    address = str(value)
    if template is not None and template.name == "X-SIP":
        if template.value.lower().startswith("sip:"):
            address = "sip:" + address
        return card.make_line("X-SIP", template.params, backslashEscape(address), template.group)
    if not address.lower().startswith("sip:"):
        address = "sip:" + address
    params, group = (template.params, template.group) if template else ([], None)
    # Escaped like text, as it is read: a newline a phone put in must not end the line.
    return card.make_line("IMPP", params, backslashEscape(address), group)


def _xprop_line(card: Card, value: Value, template: Line | None) -> Line:
    assert isinstance(value, tuple)
    prop, text = value
    # An empty name goes without X-NAME: servers drop an empty parameter anyway.
    params = [["X-NAME", encode_param(prop)]] if prop else []
    return card.make_line(XPROP, params, backslashEscape(text), None)


def _categories_line(card: Card, values: Sequence[Value], template: Line | None) -> Line:
    params, group = (template.params, template.group) if template else ([], None)
    return card.make_line(
        "CATEGORIES", params, ",".join(backslashEscape(str(v)) for v in values), group
    )


_MAKERS: dict[str, LineMaker] = {
    "FN": _text_line("FN"),
    "TITLE": _text_line("TITLE"),
    "NOTE": _text_line("NOTE"),
    "EMAIL": _text_line("EMAIL"),
    XENTRY: _text_line(XENTRY),
    "N": _structured_line("N"),
    "ORG": _structured_line("ORG"),
    "sip": _sip_line,
    "mobile": _tel_line("mobile"),
    "home": _tel_line("home"),
    "business": _tel_line("business"),
    XPROP: _xprop_line,
}


def desired_values(contact: Contact, current: dict[str, Slots]) -> dict[str, list[Value]]:
    """What each mapped property should hold for `contact`; N and ORG keep the
    components the model has no field for (prefixes, departments)."""
    name = list(current["N"][0][1]) if current.get("N") else ["", "", "", "", ""]
    name[0], name[1] = contact.surname, contact.given_name
    org = list(current["ORG"][0][1]) if current.get("ORG") else [""]
    org[0] = contact.company
    display = (
        contact.display_name or f"{contact.given_name} {contact.surname}".strip() or contact.company
    )
    categories = list(contact.categories) + ["VIP"] * contact.vip + ["DND"] * contact.dnd
    return {
        "FN": [display] if display else [v for _, v in current.get("FN", [])[:1]],
        "N": [tuple(name)] if current.get("N") or any(name) else [],
        "TITLE": [contact.profession] if contact.profession else [],
        "NOTE": [contact.comment] if contact.comment else [],
        "ORG": [tuple(org)] if any(org) else [],
        "EMAIL": list(contact.emails),
        "sip": list(contact.sip),
        "mobile": list(contact.mobile),
        "home": list(contact.home),
        "business": list(contact.business),
        "CATEGORIES": list(categories),
        XPROP: [tuple(item) for item in contact.extra],
        XENTRY: [contact.entry_id] if contact.entry_id else [],
    }


def write_contact(card: Card, contact: Contact) -> Card:
    """`card` changed to hold `contact`'s mapped values; untouched lines stay as they were.
    Values are written as clean_text leaves them, and compared in that form on both sides:
    a NOTE holding a control character stays byte for byte when a phone that could not
    be sent that character edits another field."""
    current = {
        kind: [(line, _clean(kind, value)) for line, value in slots]
        for kind, slots in read_slots(card).items()
    }
    for kind, values in desired_values(contact, current).items():
        wanted = [_clean(kind, value) for value in values]
        slots = current.get(kind, [])
        if [value for _, value in slots] == wanted:
            continue
        if kind == "CATEGORIES":
            _replace_categories(card, slots, wanted)
        else:
            _splice(card, slots, wanted, partial(_MAKERS[kind], card))
    return card


def _clean(kind: str, value: Value) -> Value:
    if isinstance(value, str):
        return clean_text(value)
    if kind == XPROP:  # (name, text): the name is percent-encoded, so carried exactly
        return (value[0], clean_text(value[1]))
    return tuple(clean_text(part) for part in value)


def safe_entry_id(entry_id: str) -> str:
    """An entry_id fit to name a new card's file or URL: a phone's own when it is 32 hex
    digits (upper-cased), else a fresh random one. A phone's entry_id is data and must
    never become a path (`../x`), a URL segment or a line of the card."""
    upper = entry_id.upper()
    return upper if _ENTRY_ID.fullmatch(upper) else os.urandom(16).hex().upper()


def for_new_card(contact: Contact) -> Contact:
    """`contact` as a new card stores it: its entry_id made safe (see safe_entry_id). A
    contact without one keeps none; its card gets a random name."""
    return (
        contact.replace(entry_id=safe_entry_id(contact.entry_id)) if contact.entry_id else contact
    )


def new_card(contact: Contact, version: str) -> Card:
    """A new card for `contact` (pass it through for_new_card first). Its UID is derived
    from the entry_id when that is safe, so a retried create writes the same card."""
    if contact.uid:
        uid = contact.uid
    elif _ENTRY_ID.fullmatch(contact.entry_id):
        uid = f"urn:uuid:{uuid.UUID(hex=contact.entry_id)}"
    else:
        uid = f"urn:uuid:{uuid.uuid4()}"
    return write_contact(Card.new(version, uid), contact)


def _splice(
    card: Card,
    slots: Slots,
    wanted: list[Value],
    make: Callable[[Value, Line | None], Line],
) -> None:
    """Keep lines whose value is still wanted, reuse the lines of removed values (and
    their parameters) for new values, drop what is left, append the rest."""
    kept = [value for _, value in slots if value in wanted]
    freed = [line for line, value in slots if value not in wanted]
    added = [value for value in wanted if value not in kept]
    for line in freed:
        index = card.lines.index(line)
        if added:
            card.lines[index] = make(added.pop(0), line)  # keeps its group, so its label
        else:
            del card.lines[index]
            _drop_orphan_labels(card, line.group)
    anchor = _insert_at(card, slots)
    for offset, value in enumerate(added):
        card.lines.insert(anchor + offset, make(value, None))


def _drop_orphan_labels(card: Card, group: str | None) -> None:
    """Remove the X-AB* lines (label, …) of `group` once no property of it is left: a
    label with nothing to label would only confuse the next number put in that group."""
    if group is None:
        return
    members = [line for line in card.lines if (line.group or "").lower() == group.lower()]
    if all(line.name.startswith("X-AB") for line in members):
        card.lines[:] = [line for line in card.lines if line not in members]


def _replace_categories(card: Card, slots: Slots, wanted: list[Value]) -> None:
    lines = list(dict.fromkeys(line for line, _ in slots))
    template = lines[0] if lines else None
    for line in lines[1:]:
        card.lines.remove(line)
    if template is not None:
        index = card.lines.index(template)
        if wanted:
            card.lines[index] = _categories_line(card, wanted, template)
        else:
            del card.lines[index]
    elif wanted:
        card.lines.insert(_insert_at(card, []), _categories_line(card, wanted, None))


def _after_group(card: Card, index: int) -> int:
    """The index after line `index` and the lines of its group that follow it: a new line
    put between `item3.TEL` and `item3.X-ABLabel` would split the pair."""
    group = (card.lines[index].group or "").lower()
    index += 1
    while group and index < len(card.lines) and (card.lines[index].group or "").lower() == group:
        index += 1
    return index


def _insert_at(card: Card, slots: Slots) -> int:
    present = [card.lines.index(line) for line, _ in slots if line in card.lines]
    if present:
        return _after_group(card, max(present))
    for index in range(len(card.lines) - 1, -1, -1):
        if card.lines[index].name == "END":
            return index
    return len(card.lines)
