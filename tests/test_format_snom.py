"""Snom's Remote XML Directory, read as the phone reads it: `tbook/contact`, name fields,
`numbers/number@no` with a type."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from tests.format_contract import FormatContract

Client = TestClient[web.Request, web.Application]


class TestSnomRemoteXml(FormatContract):
    format = "snom"

    def read(self, body: bytes) -> list[tuple[str, list[str]]]:
        root = etree.fromstring(body)
        assert root.tag == "tbook" and root.get("version") == "2.0"
        assert root.get("complete") == "true" and root.get("e") == "2"
        found = []
        for contact in root.iter("contact"):
            name = f"{contact.findtext('first_name')} {contact.findtext('last_name')}".strip()
            numbers = [n.get("no") for n in contact.iter("number")]
            assert all(
                n.get("type") in ("business", "mobile", "home", "sip")
                for n in contact.iter("number")
            )
            found.append((name, [n for n in numbers if n]))
        return found

    async def test_post_is_a_fetch_and_its_body_is_ignored(self, client: Client) -> None:
        got = await client.get(self.url())
        posted = await client.post(self.url(), data=b"ignored=1")
        assert posted.status == 200
        assert await posted.read() == await got.read()


class TestYealink(FormatContract):
    format = "yealink"

    def read(self, body: bytes) -> list[tuple[str, list[str]]]:
        root = etree.fromstring(body)
        assert root.tag.endswith("IPPhoneDirectory")
        return [
            (entry.findtext("Name") or "", [t.text or "" for t in entry.findall("Telephone")])
            for entry in root.iter("DirectoryEntry")
        ]


def test_a_vip_card_is_marked_vip_and_others_are_not() -> None:
    from gateway.entry import Entry
    from gateway.formats import Query, load_format

    vip = Entry("v", "Victor", {"business_number": ("+49 30 1",), "category#1": "vip"})
    plain = Entry("p", "Paula", {"business_number": ("+49 30 2",)})
    root = etree.fromstring(load_format("snom").render([vip, plain], Query()))
    assert [c.get("vip") for c in root.iter("contact")] == ["true", "false"]
