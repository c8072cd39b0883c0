"""Grandstream's XML phonebook (GXP, GRP, WP and the Avaya E129): an `AddressBook` with
`<version>1</version>`, then a `Contact` per person with `FirstName` and/or `LastName`,
optional `Company` and `JobTitle`, and a `Phone` per number. The phone GETs
`<P331>/phonebook.xml` and downloads the whole book (no search on the phone's side).

`accountindex` is 0 (the first account) as in the newer guides; older GXP21xx firmware
counted accounts 1-6. The WP820 keeps at most 1000 records (reported as the hard limit on
the GRP2612, too): contacts past that are left out, as are contacts without a number."""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from gateway.entry import Entry
from gateway.formats import XML_TYPE, Query
from gateway.formats.search import matching
from gateway.formats.xmlout import child, document, first_last, numbers

#: The file name the phone appends to the URL it is given (P331).
FILE_NAME = "phonebook.xml"
#: The most contacts the phones keep.
MAX_CONTACTS = 1000
#: The account a number is dialled from: the first one (newer firmware counts from 0).
ACCOUNT_INDEX = "0"
#: Our number kinds as Grandstream's `Phone@type`.
TYPES = {
    "business_number": "Work",
    "home_number": "Home",
    "mobile_number": "Mobile",
    "sip_address": "Other",
}


class GrandstreamPhonebook:
    name = "grandstream"
    content_type = XML_TYPE
    #: The phone downloads the whole list and keeps it: no search, no pages.
    searchable = False

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        root = etree.Element("AddressBook")
        child(root, "version", "1")
        written = 0
        for entry in matching(entries, query):
            listed = list(numbers(entry))
            if not listed:
                continue  # nothing to dial
            if written == MAX_CONTACTS:
                break
            written += 1
            contact = child(root, "Contact")
            given, surname = first_last(entry)
            if not given and not surname:
                surname = listed[0][1]  # a card with no name at all: at least one is needed
            if given:
                child(contact, "FirstName", given)
            if surname:
                child(contact, "LastName", surname)
            for field, tag in (("company", "Company"), ("profession", "JobTitle")):
                if value := str(entry.get(field) or ""):
                    child(contact, tag, value)
            for kind, number in listed:
                phone = child(contact, "Phone", type=TYPES[kind])
                child(phone, "phonenumber", number)
                child(phone, "accountindex", ACCOUNT_INDEX)
        return document(root)


FORMAT = GrandstreamPhonebook()
