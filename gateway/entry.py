"""Entries: contacts as a phone sees them, and how a phone's edit maps back onto a contact.

An entry's fields are named like the counterpath `cp:prop`s, with the `#N` extra numbers
grouped into one tuple per kind, plus `display_name`. Write-back compares the entry a phone
was served with the one it sent and applies only the fields that differ.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.model import KNOWN_CATEGORIES, Contact, effective_entry_id
from gateway.numbers import NumberFormat
from gateway.text import carriable

FieldValue = str | tuple[str, ...]

TEXT_FIELDS: dict[str, str] = {
    "given_name": "given_name",
    "surname": "surname",
    "profession": "profession",
    "company": "company",
    "comment": "comment",
}
NUMBER_FIELDS: dict[str, str] = {
    "sip_address": "sip",
    "mobile_number": "mobile",
    "home_number": "home",
    "business_number": "business",
}
#: Rendering order of the props after entry_id; anything else follows, sorted by name.
FIELD_ORDER: tuple[str, ...] = (
    "given_name",
    "surname",
    "profession",
    "company",
    "email_address",
    "comment",
    *NUMBER_FIELDS,
    "category",
    "category#1",
)
FLAG_FIELD = "category#1"
_NUMBER_NOISE = re.compile(r"[\s\-./()]")


@dataclass(frozen=True, slots=True)
class Entry:
    """One `<entry>`: its entry_id, display name and props (numbers grouped per kind)."""

    entry_id: str
    display_name: str = ""
    fields: Mapping[str, FieldValue] = field(default_factory=dict)

    def get(self, name: str) -> FieldValue:
        if name == "display_name":
            return self.display_name
        return self.fields.get(name, () if name in NUMBER_FIELDS else "")

    def names(self) -> set[str]:
        return {"display_name", *self.fields}


def without_separators(number: str) -> str:
    """`number` without the spaces, dashes, dots, slashes and brackets people write in it."""
    return _NUMBER_NOISE.sub("", number)


def number_key(number: str) -> str:
    """What makes two spellings of a number the same for de-duplication."""
    return without_separators(number).lower()


def display_name_of(contact: Contact) -> str:
    if contact.display_name:
        return contact.display_name
    name = f"{contact.given_name} {contact.surname}".strip()
    if name:
        return name
    if contact.company:
        return contact.company
    for kind in ("business", "mobile", "home", "sip"):
        if numbers := contact.numbers(kind):
            return numbers[0]
    return contact.emails[0] if contact.emails else ""


AS_STORED = NumberFormat()


def contact_to_entry(
    contact: Contact, default_category: str | None = None, numbers: NumberFormat = AS_STORED
) -> Entry:
    fields: dict[str, FieldValue] = {}
    for prop, attr in TEXT_FIELDS.items():
        if value := getattr(contact, attr):
            fields[prop] = value
    if contact.emails:
        fields["email_address"] = contact.emails[0]
    seen: set[str] = set()
    for prop, kind in NUMBER_FIELDS.items():
        # A number repeated inside one entry makes phones slow and shows twice: keep the first.
        unique = []
        for stored in contact.numbers(kind):
            # SIP addresses are shown as they are; telephone numbers in the document's format.
            number = stored if kind == "sip" else numbers(stored)
            key = number_key(number)
            if key and key not in seen:
                seen.add(key)
                unique.append(number)
        if unique:
            stored_numbers = contact.numbers(kind)
            # The contact's own tuple when nothing changed: one copy per number list.
            same = len(unique) == len(stored_numbers) and all(
                a is b for a, b in zip(unique, stored_numbers, strict=True)
            )
            fields[prop] = stored_numbers if same else tuple(unique)
    if category := _shown_category(contact, default_category):
        fields["category"] = category
    extra = dict(contact.extra)
    if contact.vip:
        fields[FLAG_FIELD] = "vip"
    elif contact.dnd:
        fields[FLAG_FIELD] = "dnd"
    elif FLAG_FIELD in extra:
        fields[FLAG_FIELD] = extra[FLAG_FIELD]
    for name, value in extra.items():
        fields.setdefault(name, value)
    return Entry(
        effective_entry_id(contact), carriable(display_name_of(contact)), _carriable(fields)
    )


def _carriable(fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
    """The fields as a phone receives them: without characters no format can carry (so
    the version recorded as served is what the phone got, and sending it back is no edit)."""
    clean: dict[str, FieldValue] = {}
    for name, value in fields.items():
        if isinstance(value, tuple):
            cleaned = tuple(carriable(v) for v in value)
            # The same tuple when nothing was dropped: no copy per entry.
            shown: FieldValue = value if cleaned == value else cleaned
        else:
            shown = carriable(value)
        if (name := carriable(name)) and shown:
            clean.setdefault(name, shown)
    return clean


def _shown_category(contact: Contact, default: str | None) -> str:
    for category in contact.categories:
        if (known := category.lower()) in KNOWN_CATEGORIES:
            return sys.intern(known)  # one copy, not one per entry
    if contact.categories:
        return contact.categories[0]
    return default or ""


def changed_fields(before: Entry, after: Entry) -> set[str]:
    """Names of the fields a phone changed, added or removed."""
    return {name for name in before.names() | after.names() if before.get(name) != after.get(name)}


def apply_entry(
    contact: Contact,
    before: Entry | None,
    after: Entry,
    default_category: str | None = None,
    numbers: NumberFormat = AS_STORED,
) -> Contact:
    """`contact` with the fields that differ between `before` (what the phone was served;
    None for a new entry) and `after` (what it sent) applied; other fields untouched."""
    base = before or Entry(after.entry_id)
    changes: dict[str, object] = {}
    extra = dict(contact.extra)
    for name in changed_fields(base, after):
        old, new = base.get(name), after.get(name)
        if name == "display_name":
            changes["display_name"] = new
        elif name in TEXT_FIELDS:
            changes[TEXT_FIELDS[name]] = new
        elif name == "email_address":
            changes["emails"] = _apply_email(contact.emails, str(old), str(new))
        elif name in NUMBER_FIELDS:
            attr = NUMBER_FIELDS[name]
            view = AS_STORED if attr == "sip" else numbers
            changes[attr] = _apply_numbers(contact.numbers(attr), _tuple(old), _tuple(new), view)
        elif name == "category":
            changes["categories"] = apply_category(
                contact.categories, str(old), str(new), default_category
            )
        elif name == FLAG_FIELD:
            flag = str(new).lower()
            changes["vip"], changes["dnd"] = flag == "vip", flag == "dnd"
            extra.pop(name, None)
            if new and flag not in ("vip", "dnd"):
                extra[name] = str(new)
        elif new:
            extra[name] = str(new)
        else:
            extra.pop(name, None)
    changes["extra"] = tuple(sorted(extra.items()))
    return contact.replace(**changes)


def _tuple(value: FieldValue) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else value


def _apply_numbers(
    stored: tuple[str, ...], before: tuple[str, ...], after: tuple[str, ...], view: NumberFormat
) -> tuple[str, ...]:
    # A list diff, not a replace: numbers the phone was never shown (hidden as duplicates)
    # stay where they are upstream. Stored numbers are compared in the form the phone saw.
    removed = {number_key(n) for n in before} - {number_key(n) for n in after}
    kept = [n for n in stored if number_key(view(n)) not in removed]
    present = {number_key(view(n)) for n in kept}
    added = [view.stored(n) for n in after if number_key(n) not in present]
    return tuple(kept + added)


def _apply_email(stored: tuple[str, ...], before: str, after: str) -> tuple[str, ...]:
    """Only the first address is shown: the one the phone replaced (or cleared) goes, by
    value, and the new one comes first. By value, so applying it twice changes nothing
    more (an address the phone never saw is never the one removed)."""
    rest = tuple(e for e in stored if e.lower() not in (before.lower(), after.lower()))
    return ((after,) if after else ()) + rest


def apply_category(
    stored: tuple[str, ...], before: str, after: str, default: str | None
) -> tuple[str, ...]:
    """A contact's categories once a phone changed the one it shows from `before` to
    `after` (the source's `default` is shown for none and never written)."""
    lowered = [c.lower() for c in stored]
    if after and after.lower() in lowered and not (before and before.lower() in lowered):
        return stored  # already there (a change applied again)
    if before and before.lower() in lowered:
        index = lowered.index(before.lower())
        rest = stored[:index] + stored[index + 1 :]
        return (after, *rest) if after else rest
    if after and after != default:
        return (after, *stored)
    return stored


def entry_to_json(entry: Entry) -> dict[str, object]:
    return {
        "entry_id": entry.entry_id,
        "display_name": entry.display_name,
        "fields": {k: list(v) if isinstance(v, tuple) else v for k, v in entry.fields.items()},
    }


def entry_from_json(data: Mapping[str, Any]) -> Entry:
    fields: dict[str, FieldValue] = {
        k: tuple(v) if isinstance(v, list) else str(v) for k, v in data["fields"].items()
    }
    return Entry(str(data["entry_id"]), str(data["display_name"]), fields)
