"""LDAP entry -> Contact mapping (EntryMapper), on entries as either client returns them."""

from __future__ import annotations

import uuid

from connectors.ldap_entry import EntryMapper, etag_of
from connectors.ldap_settings import PRESET_ATTRIBUTES
from gateway.model import Contact

GUID = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
AD = EntryMapper("people", PRESET_ATTRIBUTES["active-directory"], "objectGUID", "employeeNumber")


def test_names_match_in_any_case_and_blank_values_are_skipped() -> None:
    contact = AD(
        "cn=Jane,o=x",
        {
            "DISPLAYNAME": [b"  "],  # blank: the display name falls back to cn
            "cn": [b"Jane Roe "],
            "TelephoneNumber": [b"+1 100"],
            "othertelephone": [b"+1 101", b" ", b"+1 100"],  # a repeated number once
            "msRTCSIP-PrimaryUserAddress": [b"SIP:jane@contoso.example"],
            "objectGUID": [GUID.bytes_le],
            "employeeNumber": [b"AB" * 16],
            "company": [b"Caf\xc3\xa9 \xff"],  # not UTF-8 at the end: replaced, not an error
        },
    )
    assert contact == Contact(
        uid=str(GUID),
        source="people",
        href="cn=Jane,o=x",
        etag=contact.etag,
        display_name="Jane Roe",
        company="Café \ufffd",
        business=("+1 100", "+1 101"),
        sip=("jane@contoso.example",),
        entry_id="AB" * 16,
    )


def test_the_etag_is_the_hash_etag_of_defines() -> None:
    """ETags stored by earlier versions (in tokens, in the outbox) stay valid: the mapper
    builds its ETag without etag_of's copies, but of the same values."""
    contact = AD("cn=Jane,o=x", {"cn": [b"Jane"], "mobile": [b"+1 2"]})
    assert contact.etag == etag_of(contact) == "1bfe2e387a33516b0ab6cbad6365336d"
    assert contact.uid == "cn=Jane,o=x"  # no objectGUID: the DN is the identity


def test_an_attribute_mapped_to_nothing_leaves_the_field_empty() -> None:
    mapper = EntryMapper("people", {"display_name": ["cn"]}, "entryUUID", None)
    contact = mapper("cn=A,o=x", {"cn": [b"A"], "mail": [b"a@x"], "entryUUID": [b"u-1"]})
    assert (contact.display_name, contact.emails, contact.uid) == ("A", (), "u-1")
