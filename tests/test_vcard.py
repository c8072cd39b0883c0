"""vCard <-> Contact: every mapped property read, and writes that touch nothing else."""

from __future__ import annotations

import pytest

from connectors.vcard import card_to_contact, new_card, write_contact
from connectors.vcard_lines import Card, split_cards
from gateway.model import Contact

V4 = (
    "BEGIN:VCARD\r\n"
    "VERSION:4.0\r\n"
    "UID:urn:uuid:4a1b\r\n"
    "FN:Jürgen Müller\r\n"
    "N:Müller;Jürgen;Karl;Dr.;\r\n"
    "ORG:Müller AG;Vertrieb\r\n"
    "TITLE:Leiter\\, Vertrieb\r\n"
    'item1.TEL;TYPE="voice,work";VALUE=uri:tel:+49-30-1234\r\n'
    "TEL;TYPE=cell:+49 171 555\r\n"
    "TEL;TYPE=home:+49 30 999\r\n"
    "TEL;TYPE=fax:+49 30 998\r\n"
    "EMAIL;TYPE=work:j@example.de\r\n"
    "IMPP;PREF=1:sip:juergen@example.de\r\n"
    "IMPP:xmpp:juergen@example.de\r\n"
    "CATEGORIES:work,VIP\r\n"
    "NOTE:Zeile 1\\nZeile 2\r\n"
    "ADR;TYPE=work:;;Hauptstr. 1;Berlin;;10115;Germany\r\n"
    "X-CUSTOM;X-PARAM=a:foo\r\n"
    "PHOTO:data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk\r\n"
    " +M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\r\n"
    "END:VCARD\r\n"
)
V3 = """BEGIN:VCARD
VERSION:3.0
FN:Ann Lee
TEL;CELL:+1 555 0100
TEL:+1 555 0101
X-SIP:ann@example.com
CATEGORIES:friend
CATEGORIES:DND
END:VCARD
"""


def test_vcard4_maps_every_field() -> None:
    contact = card_to_contact(Card.parse(V4), "s", "a.vcf")
    assert contact.uid == "urn:uuid:4a1b"
    assert (contact.display_name, contact.given_name, contact.surname) == (
        "Jürgen Müller",
        "Jürgen",
        "Müller",
    )
    assert (contact.company, contact.profession) == ("Müller AG", "Leiter, Vertrieb")
    assert contact.comment == "Zeile 1\nZeile 2"
    assert contact.business == ("+49-30-1234",)
    assert contact.mobile == ("+49 171 555",) and contact.home == ("+49 30 999",)
    assert contact.sip == ("juergen@example.de",)  # xmpp is not a SIP address
    assert contact.emails == ("j@example.de",)
    assert contact.categories == ("work",) and contact.vip and not contact.dnd


def test_vcard3_bare_types_untyped_numbers_and_x_sip() -> None:
    contact = card_to_contact(Card.parse(V3), "s", "b.vcf")
    assert contact.uid == "b.vcf"  # no UID: the href is the identity
    assert contact.mobile == ("+1 555 0100",) and contact.business == ("+1 555 0101",)
    assert contact.sip == ("ann@example.com",)
    assert contact.categories == ("friend",) and contact.dnd


def test_an_unchanged_contact_writes_the_same_bytes() -> None:
    for text in (V4, V3):
        contact = card_to_contact(Card.parse(text), "s", "x.vcf")
        assert write_contact(Card.parse(text), contact).text() == text


def test_an_edit_rewrites_only_the_lines_it_changed() -> None:
    card = Card.parse(V4)
    contact = card_to_contact(card, "s", "a.vcf")
    edited = contact.replace(
        given_name="Jürg",
        mobile=("+49 171 777",),
        business=("+49-30-1234", "+49 30 5555"),
        vip=False,
        comment="",
    )
    text = write_contact(Card.parse(V4), edited).text()
    before, after = V4.splitlines(keepends=True), text.splitlines(keepends=True)
    assert "N:Müller;Jürg;Karl;Dr.;\r\n" in after  # prefix and middle name kept
    assert "TEL;TYPE=cell:+49 171 777\r\n" in after  # params of the replaced line kept
    assert "TEL;TYPE=work:+49 30 5555\r\n" in after
    assert "CATEGORIES:work\r\n" in after
    assert not any(line.startswith("NOTE") for line in after)
    untouched = [
        line
        for line in before
        if not line.startswith(("N:", "TEL;TYPE=cell", "CATEGORIES", "NOTE"))
    ]
    assert all(line in after for line in untouched)  # PHOTO, ADR, X-, fax, groups: verbatim
    reread = card_to_contact(Card.parse(text), "s", "a.vcf")
    assert reread.same_content(edited)


def test_uri_valued_tel_stays_a_uri_when_its_number_changes() -> None:
    card = Card.parse(V4)
    contact = card_to_contact(card, "s", "a.vcf").replace(business=("+49 30 4321",))
    text = write_contact(card, contact).text()
    assert 'item1.TEL;TYPE="voice,work";VALUE=uri:tel:+49-30-4321\r\n' in text


def test_new_card_is_complete_and_reads_back_the_same() -> None:
    contact = Contact(
        uid="",
        entry_id="534BB0BC2DDA09E2567C5D8D5B2C0120",
        display_name="Max, der Erste",
        given_name="Max",
        surname="Muster",
        sip=("0042/1",),
        home=("1", "2"),
        comment="a;b\nc",
        categories=("family",),
        vip=True,
        extra=(("nick#1", "M, M"),),
    )
    card = new_card(contact, "3.0")
    text = card.text()
    assert text.startswith("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:urn:uuid:534bb0bc-")
    assert "X-XCAP-ENTRY-ID:534BB0BC2DDA09E2567C5D8D5B2C0120\r\n" in text
    assert card_to_contact(Card.parse(text), "s", "n.vcf").same_content(contact)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_split_cards_keeps_every_byte(newline: str) -> None:
    text = ("junk" + newline + V3.replace("\n", newline)) * 2 + "trailer"
    segments = split_cards(text)
    assert "".join(part for _, part in segments) == text
    assert [is_card for is_card, _ in segments] == [False, True, False, True, False]


def test_long_values_are_folded_at_75_octets() -> None:
    contact = card_to_contact(Card.parse(V3), "s", "b.vcf").replace(comment="ü" * 100)
    text = write_contact(Card.parse(V3), contact).text()
    assert all(len(line.encode()) <= 75 for line in text.splitlines())
    assert card_to_contact(Card.parse(text), "s", "b.vcf").comment == "ü" * 100
