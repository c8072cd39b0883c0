"""Grandstream's XML phonebook, read as the phone reads it: `AddressBook` with
`<version>1</version>`, a `Contact` per person with `FirstName`/`LastName` and typed
`Phone`s; fetched at `<P331>/phonebook.xml`; at most 1000 contacts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway.app import create_app
from gateway.formats.grandstream import MAX_CONTACTS
from gateway.formats.urls import parse_phonebook_path
from gateway.model import UserRef
from tests.conftest import ConfigFactory
from tests.format_contract import USER, FormatContract, card

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
TYPES = {"Work", "Home", "Mobile", "Other"}


def contacts(body: bytes) -> list[etree._Element]:
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == "AddressBook"
    assert root[0].tag == "version" and root[0].text == "1"
    found = root.findall("Contact")
    assert len(root) == len(found) + 1
    return found


class TestGrandstream(FormatContract):
    format = "grandstream"

    def read(self, body: bytes) -> list[tuple[str, list[str]]]:
        found = []
        for contact in contacts(body):
            first, last = contact.findtext("FirstName"), contact.findtext("LastName")
            assert first or last  # the phone needs at least one
            phones = contact.findall("Phone")
            assert phones  # a contact without numbers is left out
            for phone in phones:
                assert phone.get("type") in TYPES
                assert phone.findtext("accountindex") == "0"
            name = f"{first or ''} {last or ''}".strip()
            found.append((name, [p.findtext("phonenumber") or "" for p in phones]))
        return found

    async def test_the_phone_appends_phonebook_xml_and_gets_the_same_book(
        self, client: Client
    ) -> None:
        plain = await client.get(self.url())
        appended = await client.get(self.url() + "/phonebook.xml")
        assert appended.status == 200
        assert appended.headers["Content-Type"].startswith("text/xml")
        assert await appended.read() == await plain.read()
        assert (await client.get(self.url() + "/other.xml")).status == 404
        assert (await client.get(self.url() + "/phonebook.xml/")).status == 404

    async def test_names_company_title_and_typed_numbers(self, client: Client) -> None:
        body = await (await client.get(self.url())).read()
        by_name = {(c.findtext("FirstName"), c.findtext("LastName")): c for c in contacts(body)}
        anna = by_name[("Anna", "Müller")]
        assert anna.findtext("Company") == "Brandt & Söhne GmbH"
        assert anna.findtext("JobTitle") == "Leiterin Einkauf"
        phones = [(p.get("type"), p.findtext("phonenumber")) for p in anna.findall("Phone")]
        assert ("Work", "+49 30 2094 1100") in phones
        assert ("Mobile", "+49 171 3344556") in phones
        assert ("Other", "anna.mueller@brandt-soehne.de") in phones
        assert [t for t, _ in phones if t == "Home"] == []
        # A card with a display name only: that name as LastName, no FirstName.
        smith = [c for c in contacts(body) if "Smith" in (c.findtext("LastName") or "")]
        assert len(smith) == 1 and smith[0].find("FirstName") is None
        assert smith[0].findtext("LastName") == "Smith & <Sons> \"Ltd\" 'x'"
        assert not any("Nobody" in (c.findtext("LastName") or "") for c in contacts(body))


async def test_at_most_1000_contacts(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    for i in range(MAX_CONTACTS + 100):
        (contacts_dir / f"bulk{i}.vcf").write_text(
            card(f"bulk{i}", f"Bulk Person {i}", ("WORK", f"+49 30 9{i:05d}")), encoding="utf-8"
        )
    config = make_config(document='formats = ["grandstream"]\nmax_entries = 5000')
    client = await aiohttp_client(create_app(config))
    response = await client.get(f"/phonebook/grandstream/users/{USER}/tbook/phonebook.xml")
    assert response.status == 200
    assert len(contacts(await response.read())) == MAX_CONTACTS


@pytest.mark.parametrize(
    ("path", "document"),
    [
        (f"/phonebook/grandstream/users/{USER}/tbook", "tbook"),
        (f"/phonebook/grandstream/users/{USER}/tbook/phonebook.xml", "tbook"),
        (f"/phonebook/grandstream/users/{USER}/tbook/phonebook%2Exml", "tbook"),
        (f"/phonebook/grandstream/users/{USER}/phonebook.xml", "phonebook.xml"),
        (f"/phonebook/yealink/users/{USER}/tbook/phonebook.xml", None),
        (f"/phonebook/snom/users/{USER}/tbook/phonebook.xml", None),
        (f"/phonebook/grandstream/users/{USER}/tbook/directory.xml", None),
        (f"/phonebook/grandstream/users/{USER}/tbook/phonebook.xml/", None),
        (f"/phonebook/grandstream/users/{USER}/tbook/x/phonebook.xml", None),
        (f"/phonebook/grandstream/users/{USER}//phonebook.xml", None),
        (f"/phonebook/grandstream/groups/{USER}/tbook/phonebook.xml", None),
        ("/phonebook/grandstream/users/sip:..%2F..@example.com/tbook/phonebook.xml", None),
    ],
)
def test_only_grandstream_urls_may_end_in_phonebook_xml(path: str, document: str | None) -> None:
    parsed = parse_phonebook_path(path, "/phonebook")
    assert (parsed.document if parsed else None) == document
    if parsed is not None:
        assert parsed.auid == "grandstream" and parsed.user == UserRef.parse(USER)
