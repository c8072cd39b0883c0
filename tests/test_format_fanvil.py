"""Fanvil's XML phonebook, read as the community tools' phones read it: a
`FanvilIPPhoneDirectory` without `clearlight`, every `DirectoryEntry` exactly `Name`,
`Telephone` (business), `Mobile`, `Other` (home, else a number left over)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway.entry import Entry
from gateway.formats import Query, load_format
from tests.format_contract import FormatContract

Client = TestClient[web.Request, web.Application]
FIELDS = ["Name", "Telephone", "Mobile", "Other"]


def shaped(body: bytes) -> etree._Element:
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = etree.fromstring(body)
    assert root.tag == "FanvilIPPhoneDirectory" and not root.attrib
    for entry in root:
        assert entry.tag == "DirectoryEntry"
        assert [field.tag for field in entry] == FIELDS
        assert any(field.text for field in entry[1:])
    return root


def render(*entries: Entry, query: Query | None = None) -> bytes:
    return load_format("fanvil").render(entries, query or Query())


def fields(body: bytes) -> list[dict[str, str]]:
    return [{f.tag: f.text or "" for f in entry} for entry in shaped(body)]


class TestFanvil(FormatContract):
    format = "fanvil"

    def read(self, body: bytes) -> list[tuple[str, list[str]]]:
        return [
            (entry.findtext("Name") or "", [f.text for f in entry[1:] if f.text])
            for entry in shaped(body)
        ]

    async def test_served_as_text_xml(self, client: Client) -> None:
        response = await client.get(self.url())
        assert response.content_type == "text/xml"
        assert b"clearlight" not in await response.read()


def test_the_exact_bytes_of_an_entry() -> None:
    entry = Entry("1", "Jane Doe", {"business_number": ("+49 30 1234",)})
    assert render(entry) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<FanvilIPPhoneDirectory>\n"
        b"  <DirectoryEntry>\n"
        b"    <Name>Jane Doe</Name>\n"
        b"    <Telephone>+49 30 1234</Telephone>\n"
        b"    <Mobile></Mobile>\n"
        b"    <Other></Other>\n"
        b"  </DirectoryEntry>\n"
        b"</FanvilIPPhoneDirectory>\n"
    )


def test_business_mobile_and_home_go_to_their_fields() -> None:
    entry = Entry(
        "1",
        "All Kinds",
        {
            "business_number": ("+49 30 1111", "+49 30 2222"),
            "mobile_number": ("+49 171 3333",),
            "home_number": ("+49 89 4444",),
        },
    )
    assert fields(render(entry)) == [
        {"Name": "All Kinds", "Telephone": "+49 30 1111", "Mobile": "+49 171 3333",
         "Other": "+49 89 4444"}
    ]  # fmt: skip


def test_other_takes_the_next_number_without_a_home_number() -> None:
    two_mobiles = Entry("1", "A", {"mobile_number": ("+49 171 1", "+49 171 2")})
    assert fields(render(two_mobiles)) == [
        {"Name": "A", "Telephone": "", "Mobile": "+49 171 1", "Other": "+49 171 2"}
    ]
    sip_only = Entry("2", "B", {"sip_address": ("sip:b@example.com",)})
    assert fields(render(sip_only))[0]["Other"] == "sip:b@example.com"
    assert fields(render(Entry("3", "Nobody"))) == []


def test_ampersand_stays_valid_xml() -> None:
    body = render(Entry("1", "Smith & <Sons>", {"business_number": ("1",)}))
    assert b"<Name>Smith &amp; &lt;Sons&gt;</Name>" in body
    assert fields(body)[0]["Name"] == "Smith & <Sons>"
