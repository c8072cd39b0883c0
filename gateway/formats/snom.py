"""Snom's Remote XML Directory (firmware >= 10.1.178): `<tbook e="2" version="2.0"
complete="true">`, a `<contact>` per person with name fields and typed `<numbers>`. The
phone downloads it into its local directory (POST, too) and deletes what is not in it."""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from gateway.entry import FLAG_FIELD, Entry
from gateway.formats import XML_TYPE, Query
from gateway.formats.xmlout import child, document, first_last, numbers

#: Our number kinds as Snom's `type` values.
TYPES = {
    "business_number": "business",
    "mobile_number": "mobile",
    "home_number": "home",
    "sip_address": "sip",
}


class SnomRemoteXml:
    name = "snom"
    #: The phone keeps the whole list: no search, no pages.
    searchable = False
    content_type = XML_TYPE

    def render(self, entries: Sequence[Entry], query: Query) -> bytes:
        root = etree.Element("tbook", e="2", version="2.0", complete="true")
        for entry in entries:
            # The card's VIP flag (vCard CATEGORIES:VIP, the XCAP document's category#1).
            vip = "true" if entry.get(FLAG_FIELD) == "vip" else "false"
            contact = child(root, "contact", fav="false", vip=vip, blocked="false")
            given, surname = first_last(entry)
            child(contact, "first_name", given)
            child(contact, "last_name", surname)
            for field, tag in (("company", "organization"), ("profession", "title")):
                if value := str(entry.get(field) or ""):
                    child(contact, tag, value)
            if email := str(entry.get("email_address") or ""):
                child(contact, "email", email)
            listed = child(contact, "numbers")
            for kind, number in numbers(entry):
                child(listed, "number", no=number, type=TYPES[kind], outgoing_id="0")
        return document(root)


FORMAT = SnomRemoteXml()
