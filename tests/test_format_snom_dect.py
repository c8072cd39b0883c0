"""Snom's DECT central directory (M300/M700/M900), read as the base reads it: an
`IPPhoneDirectory` without attributes, every `DirectoryEntry` exactly `Name`, `Telephone`,
`Office`, `Mobile` with explicit end tags, names of at most 23 characters and numbers of at
most 21 digits and `+`. The base drops what breaks a rule (or blanks the whole book), so
the reader refuses any other shape."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway.entry import Entry
from gateway.formats import Query, load_format
from gateway.formats.snom_dect import MAX_ENTRIES, dect_number
from tests.format_contract import FormatContract

Client = TestClient[web.Request, web.Application]
FIELDS = ["Name", "Telephone", "Office", "Mobile"]
NUMBER = re.compile(r"\+?[0-9]{1,21}")


def shaped(body: bytes) -> etree._Element:
    """The parsed body, after checking every rule of the base on the bytes and the tree."""
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<IPPhoneDirectory')
    assert b"/>" not in body  # no self-closed element anywhere: `<Office></Office>`
    assert b"clearlight" not in body
    root = etree.fromstring(body)
    assert root.tag == "IPPhoneDirectory" and not root.attrib
    assert len(root) <= MAX_ENTRIES
    for entry in root:
        assert entry.tag == "DirectoryEntry" and not entry.attrib
        assert [field.tag for field in entry] == FIELDS
        assert all(len(field) == 0 and not field.attrib for field in entry)
        assert 0 < len(entry[0].text or "") <= 23
        numbers = [field.text or "" for field in entry[1:]]
        assert all(NUMBER.fullmatch(n) and len(n) <= 21 for n in numbers if n)
        assert any(numbers)
    return root


def render(*entries: Entry, query: Query | None = None) -> bytes:
    return load_format("snom-dect").render(entries, query or Query())


def person(name: str, **numbers: tuple[str, ...]) -> Entry:
    return Entry(f"id-{name}", name, numbers)


class TestSnomDect(FormatContract):
    format = "snom-dect"

    def read(self, body: bytes) -> list[tuple[str, list[str]]]:
        return [
            (entry.findtext("Name") or "", [f.text for f in entry[1:] if f.text])
            for entry in shaped(body)
        ]

    async def test_served_as_text_xml_with_explicit_end_tags(self, client: Client) -> None:
        response = await client.get(self.url())
        assert response.content_type == "text/xml"
        body = await response.read()
        shaped(body)
        assert b"<Office></Office>" in body or b"<Telephone></Telephone>" in body


def test_the_exact_bytes_of_an_entry() -> None:
    body = render(person("Jane Doe", business_number=("+49 (30) 1234-5678",)))
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<IPPhoneDirectory>\n"
        b"  <DirectoryEntry>\n"
        b"    <Name>Jane Doe</Name>\n"
        b"    <Telephone></Telephone>\n"
        b"    <Office>+493012345678</Office>\n"
        b"    <Mobile></Mobile>\n"
        b"  </DirectoryEntry>\n"
        b"</IPPhoneDirectory>\n"
    )


def test_an_empty_book_has_an_explicit_end_tag_too() -> None:
    body = render(person("Nobody"))
    assert (
        body == b'<?xml version="1.0" encoding="UTF-8"?>\n<IPPhoneDirectory></IPPhoneDirectory>\n'
    )


def test_a_long_name_is_cut_to_23_characters() -> None:
    name = "Maximilian Alexander von Hohenzollern-Si"
    assert len(name) == 40
    root = shaped(render(person(name, mobile_number=("+491711234",))))
    assert root[0].findtext("Name") == name[:23]
    spaced = shaped(render(person("Anna  Maria\nBerg" + " " * 20 + "x", home_number=("1",))))
    assert spaced[0].findtext("Name") == "Anna Maria Berg x"


def test_ampersand_and_angle_brackets_are_escaped_and_read_back() -> None:
    body = render(person("Smith & <Sons>", business_number=("+4930",)))
    assert b"<Name>Smith &amp; &lt;Sons&gt;</Name>" in body
    assert shaped(body)[0].findtext("Name") == "Smith & <Sons>"


def test_numbers_keep_digits_and_plus_only() -> None:
    assert dect_number("+49 (30) 1234-5678") == "+493012345678"
    assert dect_number(" 030/1234.56 ") == "030123456"
    assert dect_number("+" + "1" * 20) == "+" + "1" * 20  # 21 characters: kept
    assert dect_number("1" * 22) == ""  # too long after cleaning: left out
    assert dect_number("+49 (30) 1234-5678-9012-34567") == ""  # 22 characters
    for unusable in ("", " - ", "+", "0800-FLOWERS", "sip:bob@example.com", "+49+30", "*21#"):
        assert dect_number(unusable) == "", unusable


def test_each_field_holds_the_first_usable_number_of_its_kind() -> None:
    entry = person(
        "Many Numbers",
        business_number=("+49 30 1111", "+49 30 2222"),
        mobile_number=("0800-FLOWERS", "+49 171 3333"),
        home_number=("+49 89 4444",),
        sip_address=("sip:many@example.com",),
    )
    fields = [(f.tag, f.text) for f in shaped(render(entry))[0]]
    assert fields == [
        ("Name", "Many Numbers"),
        ("Telephone", "+49894444"),
        ("Office", "+49301111"),
        ("Mobile", "+491713333"),
    ]


def test_entries_without_a_usable_number_are_left_out() -> None:
    root = shaped(
        render(
            person("Only SIP", sip_address=("sip:a@example.com",)),
            person("Too Long", home_number=("1" * 30,)),
            person("Fine", home_number=("110",)),
        )
    )
    assert [e.findtext("Name") for e in root] == ["Fine"]


def test_at_most_1000_entries() -> None:
    many = [person(f"P{i}", mobile_number=(f"+49171{i:06d}",)) for i in range(MAX_ENTRIES + 5)]
    root = shaped(render(*many))
    assert len(root) == MAX_ENTRIES
    assert root[-1].findtext("Name") == f"P{MAX_ENTRIES - 1}"


def test_search_and_paging_apply_before_the_cap() -> None:
    entries = [person("Jürgen Müller", home_number=("1",)), person("Bob", home_number=("2",))]
    assert [e.findtext("Name") for e in shaped(render(*entries, query=Query(q="mull")))] == [
        "Jürgen Müller"
    ]
    assert [e.findtext("Name") for e in shaped(render(*entries, query=Query(offset=1)))] == ["Bob"]
