"""vCards against what phones and other tools bring: entry_ids and UIDs that are not
what they should be, invented property names and values, line separators inside a NOTE,
and Apple Contacts labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.vcard import card_to_contact, for_new_card, new_card, write_contact
from connectors.vcard_dir import VcardDirConnector, VcardDirSettings
from connectors.vcard_lines import Card, clean_text, decode_param, encode_param, split_cards
from gateway.model import Contact
from tests.connector_contract import SAMPLE


def make(folder: Path) -> VcardDirConnector:
    return VcardDirConnector("book", VcardDirSettings(path=folder))  # type: ignore[arg-type]


def read(card_text: str) -> Contact:
    return card_to_contact(Card.parse(card_text), "s", "x.vcf")


# --- an entry_id is data, never a path (the folder side: test_vcard_dir) (issue 12, item 1) ---


@pytest.mark.parametrize(
    ("entry_id", "safe"),
    [
        ("0a1b2c3d4e5f60718293a4b5c6d7e8f9", "0A1B2C3D4E5F60718293A4B5C6D7E8F9"),
        ("0A1B2C3D4E5F60718293A4B5C6D7E8F9", "0A1B2C3D4E5F60718293A4B5C6D7E8F9"),
        ("", ""),  # none given: none invented (the connector names the card at random)
    ],
)
def test_a_hex_entry_id_is_kept_upper_cased(entry_id: str, safe: str) -> None:
    assert for_new_card(Contact(uid="", entry_id=entry_id)).entry_id == safe


@pytest.mark.parametrize("entry_id", ["../x", "0A1B2C3D4E5F60718293A4B5C6D7E8F9\n", "é" * 32])
def test_any_other_entry_id_is_replaced_by_a_fresh_one(entry_id: str) -> None:
    fresh = {for_new_card(Contact(uid="", entry_id=entry_id)).entry_id for _ in range(2)}
    assert len(fresh) == 2 and all(re.fullmatch("[0-9A-F]{32}", f) for f in fresh)


@pytest.mark.parametrize("entry_id", ["../x", "{0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9}", "a\nUID:b"])
def test_the_uid_of_a_new_card_is_safe_for_any_entry_id(entry_id: str) -> None:
    text = new_card(Contact(uid="", entry_id=entry_id), "3.0").text()
    assert len(re.findall(r"^UID:urn:uuid:[0-9a-f-]{36}\r$", text, re.MULTILINE)) == 1
    assert read(text).entry_id == entry_id  # kept as data, escaped


def test_a_uid_is_written_as_data() -> None:
    text = new_card(Contact(uid="a\r\nTEL;TYPE=cell:666"), "3.0").text()
    contact = read(text)
    assert contact.uid == "a\nTEL;TYPE=cell:666" and contact.mobile == ()


# --- invented property names and values (issue 12, item 4) ----------------------------------

# Any character at all, lone surrogates and controls included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
EXTRA = st.dictionaries(ANY_TEXT, ANY_TEXT | st.text(max_size=3000), max_size=5)


def stored_form(extra: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Names come back exactly when they are text (a lone surrogate, which no phone can
    send, comes back percent-encoded); values as a vCard can hold them."""
    return tuple(
        sorted(
            (decode_param(encode_param(name)), clean_text(value)) for name, value in extra.items()
        )
    )


def assert_well_formed(text: str) -> None:
    text.encode("utf-8")  # no lone surrogate made it in
    for line in text.split("\r\n")[:-1]:
        assert len(line.encode()) <= 75
        assert not re.search("[\x00-\x08\x0a-\x1f]", line), line


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=EXTRA, comment=ANY_TEXT)
def test_any_prop_name_and_value_round_trip(extra: dict[str, str], comment: str) -> None:
    contact = Contact(uid="", display_name="P", extra=tuple(sorted(extra.items())), comment=comment)
    text = new_card(contact, "3.0").text()
    assert_well_formed(text)
    back = read(text)
    assert back.extra == stored_form(extra)
    assert back.comment == clean_text(comment).strip()


@settings(max_examples=100, deadline=None)
@given(before=EXTRA, after=EXTRA)
def test_any_prop_edit_of_an_existing_card_round_trips(
    before: dict[str, str], after: dict[str, str]
) -> None:
    card = new_card(Contact(uid="u", display_name="P", extra=tuple(sorted(before.items()))), "4.0")
    edited = read(card.text()).replace(extra=tuple(sorted(after.items())))
    text = write_contact(Card.parse(card.text()), edited).text()
    assert_well_formed(text)
    assert read(text).extra == stored_form(after)


def test_plain_prop_names_written_before_still_read() -> None:
    text = (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:P\r\n"
        "X-XCAP-PROP;X-NAME=nick#1:a\r\n"
        'X-XCAP-PROP;X-NAME="a,b":b\r\n'
        "X-XCAP-PROP;X-NAME=50%:c\r\n"
        "END:VCARD\r\n"
    )
    assert read(text).extra == (("50%", "c"), ("a,b", "b"), ("nick#1", "a"))


async def test_a_card_with_odd_props_keeps_taking_edits(tmp_path: Path) -> None:
    connector = make(tmp_path)
    odd = SAMPLE.replace(extra=(('say "hi"', 'v;"\n'), ("x" * 300, "\x01" + "y" * 5000)))
    stored = await connector.create(odd)
    assert stored.extra == (('say "hi"', 'v;"\n'), ("x" * 300, "y" * 5000))
    for surname in ("One", "Two"):
        stored = await connector.update(stored.href, stored.replace(surname=surname), stored.etag)
    assert (await connector.get(stored.href)).surname == "Two"


# --- lines end at LF only (issue 12, item 11) -----------------------------------------------

SEPARATORS = "\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e"
NOTE = f"NOTE:one{SEPARATORS}two\u2028END:VCARD\u2028BEGIN:VCARD\x85x"


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_a_note_with_unicode_line_separators_round_trips(newline: str) -> None:
    text = newline.join(["BEGIN:VCARD", "VERSION:3.0", "FN:A", NOTE, "END:VCARD", ""])
    assert [is_card for is_card, _ in split_cards(text)] == [True]
    contact = read(text)
    assert contact.comment == f"one{SEPARATORS}two\u2028END:VCARD\u2028BEGIN:VCARD\x85x"
    written = write_contact(Card.parse(text), contact.replace(display_name="B")).text()
    assert written == text.replace("FN:A", "FN:B")


async def test_a_note_with_line_separators_survives_a_write_back(tmp_path: Path) -> None:
    body = f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u\r\nFN:A\r\n{NOTE}\r\nEND:VCARD\r\n"
    (tmp_path / "a.vcf").write_bytes(body.encode())
    connector = make(tmp_path)
    current = await connector.get("a.vcf")
    # What a phone sends back: XML cannot carry VT, FF or FS/GS/RS, so they are missing.
    from_phone = current.replace(given_name="Ann", comment=clean_text(current.comment))
    await connector.update("a.vcf", from_phone, current.etag)
    assert f"\r\n{NOTE}\r\n".encode() in (tmp_path / "a.vcf").read_bytes()


# --- Apple Contacts labels (issue 12, item 12) ----------------------------------------------

APPLE = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "FN:Apple\r\n"
    "item1.TEL;type=pref:+1 100\r\n"
    "item1.X-ABLabel:_$!<Mobile>!$_\r\n"
    "item2.TEL:+1 200\r\n"
    "item2.X-ABLabel:_$!<iPhone>!$_\r\n"
    "ITEM3.TEL;type=CELL:+1 300\r\n"
    "item3.X-ABLabel:_$!<Home>!$_\r\n"
    "item4.TEL;type=HOME:+1 400\r\n"
    "item4.X-ABLabel:_$!<Work>!$_\r\n"
    "item5.TEL:+1 500\r\n"
    "item5.X-ABLabel:_$!<Main>!$_\r\n"
    "item6.TEL;type=CELL:+1 600\r\n"
    "item6.X-ABLabel:Büro\r\n"
    "item7.TEL:+1 700\r\n"
    "item7.X-ABLabel:_$!<HomeFAX>!$_\r\n"
    "item8.TEL;type=CELL:+1 800\r\n"
    "item8.X-ABLabel:Fax (shared)\r\n"
    "item9.EMAIL:a@example.com\r\n"
    "item9.X-ABLabel:_$!<Mobile>!$_\r\n"
    "TEL;type=CELL:+1 900\r\n"
    "END:VCARD\r\n"
)


def test_apple_labels_decide_the_number_kind() -> None:
    contact = read(APPLE)
    assert contact.mobile == ("+1 100", "+1 200", "+1 900")
    assert contact.home == ("+1 300",)  # the label wins over type=CELL
    assert contact.business == ("+1 400", "+1 500", "+1 600")  # Work, Main, custom
    # Fax labels are not dialable, like TYPE=FAX: not read, and kept as they are.
    assert "+1 700" not in str(contact) and "+1 800" not in str(contact)


def test_a_write_keeps_groups_and_labels() -> None:
    contact = read(APPLE)
    edited = contact.replace(
        mobile=("+1 111", "+1 200", "+1 900"),  # item1's number changed
        home=("+1 300", "+1 333"),  # a new number
        business=("+1 400", "+1 600"),  # item5 (Main) removed
    )
    text = write_contact(Card.parse(APPLE), edited).text()
    assert "item1.TEL;TYPE=pref:+1 111\r\nitem1.X-ABLabel:_$!<Mobile>!$_\r\n" in text
    # The new number takes no label, and does not come between a number and its label.
    assert "item3.X-ABLabel:_$!<Home>!$_\r\nTEL;TYPE=home:+1 333\r\n" in text
    assert "item5." not in text  # the label left with its number
    for kept in ("item2", "ITEM3", "item4", "item6", "item7", "item8", "item9"):
        assert all(line in text for line in APPLE.splitlines() if line.startswith(kept))
    assert read(text).same_content(edited)
