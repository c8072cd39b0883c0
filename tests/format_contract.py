"""The contract every phone format keeps, subclassed once per format (like the connector
contract): well-formed output over HTTP, escaping, ETag/304, gzip, owner rules, hostile
parameters, read-only. A subclass names the format and says how a phone reads its output
(`read`: the (name, numbers) of every entry); the contract feeds it awkward data.
"""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway.app import create_app
from tests.conftest import ConfigFactory

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
USER = "sip:alice@example.com"


def card(uid: str, fn: str, *numbers: tuple[str, str], extra: str = "") -> str:
    lines = [f"TEL;TYPE={kind}:{number}" for kind, number in numbers]
    return (
        f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{fn}\r\n"
        + "".join(line + "\r\n" for line in lines)
        + extra
        + "END:VCARD\r\n"
    )


AWKWARD = {
    "ampersand.vcf": card(
        "amp",
        "Smith & <Sons> \"Ltd\" 'x'",
        ("WORK", "+49 30 1111"),
        ("CELL", "+49 171 2222"),
        extra="ORG:Ben & Jerry's <Ice>\r\n",
    ),
    "umlaut.vcf": card("uml", "Jürgen Müller-Straße", ("WORK", "+49 89 3333")),
    "nonumber.vcf": card("none", "Nobody Without Number"),
}


class FormatContract:
    """Subclass with `format` and `read(body) -> list[(name, [numbers])]`."""

    format: str = ""

    def read(self, body: bytes) -> list[tuple[str, list[str]]]:
        raise NotImplementedError

    def url(self, document: str = "tbook", user: str = USER) -> str:
        return f"/phonebook/{self.format}/users/{user}/{document}"

    @pytest.fixture
    async def client(
        self, aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
    ) -> Client:
        for name, text in AWKWARD.items():
            (contacts_dir / name).write_text(text, encoding="utf-8")
        config = make_config(document=f'formats = ["counterpath", "{self.format}"]')
        return await aiohttp_client(create_app(config))

    async def read_all(self, client: Client, url: str) -> list[tuple[str, list[str]]]:
        """Every entry the phone ends up with from `url`: one GET, or for a format that
        pages, every page (a subclass follows its links)."""
        response = await client.get(url)
        assert response.status == 200
        body = await response.read()
        etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
        return self.read(body)

    async def test_the_output_is_well_formed_and_holds_everyone_with_a_number(
        self, client: Client
    ) -> None:
        entries = await self.read_all(client, self.url())
        names = " ".join(name for name, _ in entries)
        assert "Smith & <Sons>" in names  # escaped on the wire, intact when read
        assert "Jürgen" in names or "Müller" in names
        numbers = {number for _, listed in entries for number in listed}
        assert "+49 30 1111" in numbers or "+4930 1111" in numbers or "+49301111" in numbers
        assert len(entries) >= 20

    async def test_etag_304_and_gzip(self, client: Client) -> None:
        first = await client.get(self.url())
        etag = first.headers["ETag"]
        assert etag.startswith('"')  # strong
        again = await client.get(self.url(), headers={"If-None-Match": etag})
        assert again.status == 304
        zipped = await client.get(
            self.url(), headers={"Accept-Encoding": "gzip"}, auto_decompress=False
        )
        assert zipped.headers.get("Content-Encoding") == "gzip"
        assert gzip.decompress(await zipped.read()) == await first.read()

    async def test_read_only_and_unknown_things_are_refused(self, client: Client) -> None:
        assert (await client.put(self.url(), data=b"<x/>")).status == 405
        assert (await client.delete(self.url())).status == 405
        assert (await client.get(f"/phonebook/no-such-format/users/{USER}/tbook")).status == 404
        assert (await client.get(self.url(document="nope"))).status == 404
        assert (await client.get(self.url(user="sip:..%2F..@example.com"))).status == 404

    @pytest.mark.parametrize(
        "query",
        [
            "q=%00",
            "q=" + "x" * 5000,
            "offset=-1",
            "limit=0",
            "limit=99999999999999999999",
            "offset=abc",
            "q=%ZZ",
        ],
    )
    async def test_hostile_parameters_are_400_or_empty_never_5xx(
        self, client: Client, query: str
    ) -> None:
        response = await client.get(self.url() + "?" + query)
        assert response.status in (200, 400), query

    @property
    def searchable(self) -> bool:
        from gateway.formats import load_format

        return bool(getattr(load_format(self.format), "searchable", True))

    async def test_search_finds_by_name_prefix_without_accents_and_by_digits(
        self, client: Client
    ) -> None:
        everyone = self.read(await (await client.get(self.url())).read())
        found = self.read(await (await client.get(self.url(), params={"q": "jurg"})).read())
        by_digits = self.read(await (await client.get(self.url(), params={"q": "30 1111"})).read())
        if not self.searchable:  # a list the phone keeps whole: the same list
            assert found == everyone and by_digits == everyone
            return
        assert found and all("Jürgen" in name for name, _ in found)
        assert by_digits and all("Smith & <Sons>" in name for name, _ in by_digits)
        nobody = await (await client.get(self.url(), params={"q": "zzzqqq"})).read()
        assert self.read(nobody) == []

    async def test_the_cap_holds_and_search_looks_past_it(
        self, aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
    ) -> None:
        for name, text in AWKWARD.items():
            (contacts_dir / name).write_text(text, encoding="utf-8")
        config = make_config(document=f'formats = ["{self.format}"]\nmax_entries = 5')
        client = await aiohttp_client(create_app(config))
        listed = self.read(await (await client.get(self.url())).read())
        # Cards are taken in file-name order up to the cap: zoe.martin.vcf is past it.
        assert listed and not any("Zoë" in name for name, _ in listed)
        found = self.read(await (await client.get(self.url(), params={"q": "zoe"})).read())
        if self.searchable:
            assert found and all("Zoë" in name for name, _ in found)

    async def test_a_page_holds_what_limit_asks(self, client: Client) -> None:
        everyone = self.read(await (await client.get(self.url())).read())
        one = self.read(await (await client.get(self.url(), params={"limit": "1"})).read())
        later = self.read(
            await (await client.get(self.url(), params={"limit": "1", "offset": "1"})).read()
        )
        if not self.searchable:
            assert one == everyone
            return
        assert len(one) == 1 and len(later) == 1 and one != later
        assert one[0] == everyone[0]

    async def test_the_declaration_is_the_one_vendors_show(self, client: Client) -> None:
        body = await (await client.get(self.url())).read()
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
        assert (
            (await client.get(self.url()))
            .headers["Content-Type"]
            .startswith(("text/xml", "application/"))
        )
