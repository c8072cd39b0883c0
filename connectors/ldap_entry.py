"""LDAP entries <-> Contact, and the modifications that change only what changed.

Reads take each field from the first of its attributes that has a value; list fields take
the values of all of them. Writes are conditional by construction: a changed value is a
delete of the old value plus an add of the new one, which the server refuses (and the
engine re-reads) when someone else changed that value meanwhile.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_DELETE

from connectors.ldap_settings import LIST_FIELDS, TEXT_FIELDS
from gateway.model import Contact

RawAttributes = Mapping[str, Sequence[bytes]]
Modifications = dict[str, list[tuple[str, list[str]]]]


def _values(raw: RawAttributes, attribute: str) -> list[str]:
    # Attribute names come back in the server's case: look them up without regard to it.
    for name, values in raw.items():
        if name.lower() == attribute.lower():
            return [v.decode("utf-8", "replace") for v in values]
    return []


class EntryMapper:
    """Entries -> Contacts for one source: which attributes feed which field is worked out
    once, so a 100k-entry pull does one pass over each entry's attributes, not one per field."""

    def __init__(
        self,
        source: str,
        mapping: Mapping[str, list[str]],
        uid_attribute: str,
        entry_id_attribute: str | None,
    ) -> None:
        self.source = source
        self._text = [(n, [a.lower() for a in mapping.get(n, [])]) for n in TEXT_FIELDS]
        self._lists = [(n, [a.lower() for a in mapping.get(n, [])]) for n in LIST_FIELDS]
        self._uid = uid_attribute.lower()
        self._entry_id = entry_id_attribute.lower() if entry_id_attribute else None

    def __call__(self, dn: str, raw: RawAttributes) -> Contact:
        # Attribute names come back in the server's case; the first spelling wins.
        values: dict[str, Sequence[bytes]] = {}
        for name, given in raw.items():
            values.setdefault(name.lower(), given)
        get = values.get
        fields: dict[str, Any] = {}
        for name, attributes in self._text:
            for attribute in attributes:
                if text := _first_text(get(attribute)):
                    fields[name] = text
                    break
        for name, attributes in self._lists:
            listed = [
                t
                for a in attributes
                for v in get(a, ())
                if (t := v.decode("utf-8", "replace").strip())
            ]
            if listed and name == "sip":
                listed = [v[4:] if v.lower().startswith("sip:") else v for v in listed]
            fields[name] = tuple(dict.fromkeys(listed))
        entry_id = ""
        if self._entry_id and (stored := get(self._entry_id)):
            entry_id = stored[0].decode("utf-8", "replace")
        uid = _uid_text(get(self._uid), self._uid, dn)
        # What etag_of hashes, built without the two copies it would make.
        etag = _digest(Contact(uid=uid, entry_id=entry_id, **fields))
        return Contact(uid=uid, source=self.source, href=dn, etag=etag, entry_id=entry_id, **fields)


def _first_text(values: Sequence[bytes] | None) -> str:
    """The first value that is not blank, decoded and stripped; "" when there is none."""
    for value in values or ():
        if text := value.decode("utf-8", "replace").strip():
            return text
    return ""


def _uid_text(values: Sequence[bytes] | None, attribute: str, dn: str) -> str:
    if not values:
        return dn  # no stable id readable: the DN is the identity
    value = values[0]
    if attribute == "objectguid" and len(value) == 16:
        return str(uuid.UUID(bytes_le=bytes(value)))
    return value.decode("utf-8", "replace")


def etag_of(contact: Contact) -> str:
    """A hash of the mapped values: changes exactly when something the phone sees changes."""
    return _digest(contact.replace(etag="", source="", href=""))


def _digest(contact: Contact) -> str:
    return hashlib.sha256(repr(contact).encode()).hexdigest()[:32]


def modifications(
    current: Contact, wanted: Contact, raw: RawAttributes, mapping: Mapping[str, list[str]]
) -> Modifications:
    """ldap3 `changes` that turn `current` into `wanted`, touching only mapped attributes
    whose values differ. Old values are deleted by value, so a concurrent change fails."""
    changes: Modifications = {}

    def add(attribute: str, operation: str, values: list[str]) -> None:
        if values:
            changes.setdefault(attribute, []).append((operation, values))

    for name in TEXT_FIELDS:
        attributes = mapping.get(name, [])
        old, new = getattr(current, name), getattr(wanted, name)
        if old == new or not attributes:
            continue
        # New values go to the first attribute; a value read from a fallback (cn for the
        # display name, often the RDN) stays where it is.
        first = attributes[0]
        add(first, MODIFY_DELETE, [v for v in _values(raw, first) if v.strip() == old])
        add(first, MODIFY_ADD, [new] if new else [])
    for name in LIST_FIELDS:
        attributes = mapping.get(name, [])
        old_values, new_values = list(getattr(current, name)), list(getattr(wanted, name))
        if old_values == new_values or not attributes:
            continue
        removed = set(old_values) - set(new_values)
        for attribute in attributes:
            stored = _values(raw, attribute)
            add(
                attribute,
                MODIFY_DELETE,
                [v for v in stored if _strip_sip(name, v.strip()) in removed],
            )
        # The primary attribute (often single-valued, like AD's telephoneNumber) takes the
        # first new value when it is or becomes empty; the others go to the last ("other…").
        primary_free = all(
            _strip_sip(name, v.strip()) in removed for v in _values(raw, attributes[0])
        )
        added = [v for v in new_values if v not in old_values]
        for index, value in enumerate(added):
            target = attributes[0] if index == 0 and primary_free else attributes[-1]
            add(
                target,
                MODIFY_ADD,
                [f"sip:{value}" if name == "sip" and ":" not in value else value],
            )
    return changes


def _strip_sip(name: str, value: str) -> str:
    return value[4:] if name == "sip" and value.lower().startswith("sip:") else value


def new_entry_attributes(
    contact: Contact,
    mapping: Mapping[str, list[str]],
    object_classes: list[str],
    entry_id_attribute: str | None,
) -> dict[str, list[str]]:
    attributes: dict[str, list[str]] = {"objectClass": list(object_classes)}
    for name in TEXT_FIELDS:
        if (value := getattr(contact, name)) and mapping.get(name):
            attributes.setdefault(mapping[name][0], []).append(value)
    for name in LIST_FIELDS:
        targets = mapping.get(name, [])
        for index, value in enumerate(getattr(contact, name)):
            if not targets:
                break
            stored = f"sip:{value}" if name == "sip" and ":" not in value else value
            attributes.setdefault(targets[0] if index == 0 else targets[-1], []).append(stored)
    display = contact.display_name or f"{contact.given_name} {contact.surname}".strip() or "Contact"
    # person and its subclasses require cn and sn.
    attributes.setdefault("cn", [display])
    if {"person", "organizationalperson", "inetorgperson"} & {c.lower() for c in object_classes}:
        attributes.setdefault("sn", [contact.surname or display])
    if entry_id_attribute and contact.entry_id:
        attributes[entry_id_attribute] = [contact.entry_id]
    return attributes


def holds_exactly(
    raw: RawAttributes, written: Mapping[str, Sequence[str]], mapped: Sequence[str]
) -> bool:
    """Whether an entry read as `raw` (with every attribute in `written` and `mapped`)
    holds just what an add of `written` stores: the same values (in any order) in each
    attribute it writes, and nothing in the other mapped attributes. So an entry is
    recognised as a create's own earlier result, never another person's of the same name."""
    names = {name.lower(): name for name in [*mapped, *written]}
    values = {name.lower(): list(given) for name, given in written.items()}
    for lowered, name in names.items():
        stored = _values(raw, name)
        wanted = values.get(lowered, [])
        if lowered == "objectclass":  # object class names match without regard to case
            stored, wanted = [v.lower() for v in stored], [v.lower() for v in wanted]
        if sorted(stored) != sorted(wanted):
            return False
    return True
