"""A phone's life over real HTTP: fetch, poll, edit, add, remove; the .vcf files follow."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway import keys
from gateway.app import create_app
from gateway.compose import render_entries
from gateway.entry import Entry
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory, drained

URL = "/users/sip:alice@example.com/tbook.xml"
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(aiohttp_client: ClientFactory, make_config: ConfigFactory) -> Client:
    return await aiohttp_client(create_app(make_config()))


def by_name(body: bytes) -> dict[str, Entry]:
    return {entry.display_name: entry for entry in counterpath.parse(body)}


async def test_get_serves_the_directory_with_a_strong_etag(client: Client) -> None:
    response = await client.get(URL, headers={"Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/resource-lists+xml"
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    entries = by_name(await response.read())
    assert len(entries) == 28
    assert entries["Björn Lindqvist"].fields["category#1"] == "vip"
    assert entries["Thomas Wagner"].fields["business_number"] == (
        "+49 711 555 0120",
        "+49 711 555 0121",
    )
    # The same request gives the same bytes and ETag.
    again = await client.get(URL, headers={"Accept-Encoding": "identity"})
    assert again.headers["ETag"] == etag


async def test_poll_with_the_etag_is_a_304(client: Client) -> None:
    etag = (await client.get(URL)).headers["ETag"]
    response = await client.get(URL, headers={"If-None-Match": etag})
    assert response.status == 304
    assert response.headers["ETag"] == etag
    assert await response.read() == b""
    assert (await client.get(URL, headers={"If-None-Match": '"other"'})).status == 200


async def test_gzip_when_asked_and_head_without_a_body(client: Client) -> None:
    plain = await (await client.get(URL, headers={"Accept-Encoding": "identity"})).read()
    response = await client.get(URL, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await response.read()) == plain
    head = await client.head(URL, headers={"Accept-Encoding": "identity"})
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(plain)
    assert await head.read() == b""


@pytest.mark.parametrize(
    "path",
    [
        "/users/alice@example.com/tbook.xml",  # xui without sip:
        "/users/sip%3Aalice%40example.com/tbook.xml",  # percent-encoded
        "/users/SIP:alice@example.com/tbook.xml",
    ],
)
async def test_the_xui_may_come_in_every_spelling(client: Client, path: str) -> None:
    assert (await client.get(path)).status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/users/sip:alice@example.com/other.xml",
        "/resource-lists/users/sip:alice@example.com/tbook.xml",  # wrong AUID
        "/users/tbook.xml",
        "/global/tbook.xml",
        "/users/sip:alice@example.com%2F..%2F/tbook.xml",
        "/users//tbook.xml",
    ],
)
async def test_unknown_documents_are_404(client: Client, path: str) -> None:
    assert (await client.get(path)).status == 404


async def test_other_methods_are_405_with_allow(client: Client) -> None:
    for method in ("DELETE", "POST", "PATCH"):
        response = await client.request(method, URL)
        assert response.status == 405
        assert {m.strip() for m in response.headers["Allow"].split(",")} == {"GET", "HEAD", "PUT"}


async def test_phone_edits_adds_and_removes_and_the_files_follow(
    client: Client, contacts_dir: Path
) -> None:
    photo_card_before = (contacts_dir / "vera.hoffmann.vcf").read_bytes()
    first = await client.get(URL)
    entries = counterpath.parse(await first.read())
    named = {e.display_name: e for e in entries}

    # Edit Vera (the card with PHOTO and ADR), remove Lars, add a new contact.
    vera = named["Vera Hoffmann"]
    vera_edit = Entry(
        vera.entry_id,
        vera.display_name,
        {
            **vera.fields,
            "mobile_number": ("+49 175 555 0999",),
            "comment": "Neue Nummer",
        },
    )
    new = Entry(
        "534BB0BC2DDA09E2567C5D8D5B2C0120",
        "Max Mustermann",
        {
            "given_name": "Max",
            "surname": "Mustermann",
            "home_number": ("0042/3", "0042/4"),
            "category": "friend",
        },
    )
    sent = [vera_edit if e is vera else e for e in entries if e.display_name != "Lars Petersen"]
    sent.append(new)
    body = counterpath.render(sent)
    put = await client.put(URL, data=body, headers={"Content-Type": counterpath.MIME_TYPE})
    assert put.status == 200, await put.text()
    await drained(client)
    put_etag = put.headers["ETag"]
    assert put_etag != first.headers["ETag"]

    # The next GET shows what the phone sent, in canonical order, under the PUT's ETag.
    after = await client.get(URL)
    assert after.headers["ETag"] == put_etag
    assert await after.read() == render_entries(
        {e.entry_id: e for e in sent}, client.app[keys.ENGINE].config.documents["tbook"]
    )
    assert (await client.get(URL, headers={"If-None-Match": put_etag})).status == 304

    # The files changed accordingly.
    assert not (contacts_dir / "lars.petersen.vcf").exists()
    created = (contacts_dir / "534BB0BC2DDA09E2567C5D8D5B2C0120.vcf").read_text()
    assert "FN:Max Mustermann" in created and "TEL;TYPE=home:0042/4" in created
    vera_text = (contacts_dir / "vera.hoffmann.vcf").read_bytes()
    assert b"TEL;TYPE=CELL:+49 175 555 0999\r\n" in vera_text
    assert b"NOTE:Neue Nummer\r\n" in vera_text
    changed = {
        b"TEL;TYPE=CELL:+49 175 555 0151\r\n",
        "NOTE:Bereitschaftsdienst über die Zentrale\r\n".encode(),
    }
    for line in photo_card_before.splitlines(keepends=True):
        if line not in changed:
            assert line in vera_text  # PHOTO (every folded line), ADR, BDAY, URL, X-ABLABEL
    untouched = [
        p
        for p in contacts_dir.iterdir()
        if p.name not in {"vera.hoffmann.vcf", "534BB0BC2DDA09E2567C5D8D5B2C0120.vcf"}
    ]
    assert all(
        p.read_bytes() == (Path(__file__).parent.parent / "config/contacts" / p.name).read_bytes()
        for p in untouched
    )


async def test_put_without_content_type_or_with_xml_types_is_accepted(client: Client) -> None:
    body = await (await client.get(URL, headers={"Accept-Encoding": "identity"})).read()
    for content_type in (None, "application/xml", "text/xml; charset=utf-8"):
        headers = {"Content-Type": content_type} if content_type else {}
        response = await client.put(
            URL, data=body, headers=headers, skip_auto_headers=["Content-Type"]
        )
        assert response.status == 200


async def test_put_with_no_content_type_header_at_all(client: Client) -> None:
    body = await (await client.get(URL, headers={"Accept-Encoding": "identity"})).read()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"PUT {URL} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 200")


async def test_put_of_another_type_is_415(client: Client) -> None:
    response = await client.put(URL, data=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 415


async def test_a_malformed_put_is_409_and_changes_nothing(
    client: Client, contacts_dir: Path
) -> None:
    before = sorted((p.name, p.read_bytes()) for p in contacts_dir.iterdir())
    etag = (await client.get(URL)).headers["ETag"]
    response = await client.put(
        URL, data=b"<resource-lists><list>", headers={"Content-Type": counterpath.MIME_TYPE}
    )
    assert response.status == 409
    assert response.headers["Content-Type"] == "application/xcap-error+xml"
    error = etree.fromstring(await response.read())
    assert error[0].tag == "{urn:ietf:params:xml:ns:xcap-error}not-well-formed"
    assert sorted((p.name, p.read_bytes()) for p in contacts_dir.iterdir()) == before
    assert (await client.get(URL)).headers["ETag"] == etag


async def test_an_empty_put_from_a_phone_deletes_only_what_it_was_shown(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    config = make_config(document="max_entries = 5")
    client = await aiohttp_client(create_app(config))
    shown = counterpath.parse(await (await client.get(URL)).read())
    assert len(shown) == 5
    empty = counterpath.render([])
    assert (await client.put(URL, data=empty)).status == 200
    await drained(client)
    # The five shown were deleted; the 23 the phone never saw are still there.
    after = counterpath.parse(await (await client.get(URL)).read())
    assert len(after) == 5 and not {e.entry_id for e in after} & {e.entry_id for e in shown}
    assert sum(1 for p in contacts_dir.glob("*.vcf")) + 2 == 28 - 5


async def test_read_only_source_ignores_edits_and_the_phone_refetches(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(source="read_only = true", write_to=None)))
    before = sorted((p.name, p.read_bytes()) for p in contacts_dir.iterdir())
    entries = counterpath.parse(await (await client.get(URL)).read())
    merged_etag = (await client.get(URL)).headers["ETag"]
    edited = [
        Entry(e.entry_id, e.display_name + " (edited)", e.fields) for e in entries[:1]
    ] + entries[1:-1]
    edited.append(Entry("", "Created on phone", {"mobile_number": ("1",)}))
    response = await client.put(URL, data=counterpath.render(edited))
    assert response.status == 200  # never a 4xx the phone would retry forever
    # Nothing was written, and the ETag differs so the phone fetches the real document.
    assert sorted((p.name, p.read_bytes()) for p in contacts_dir.iterdir()) == before
    assert response.headers["ETag"] != merged_etag
    refetch = await client.get(URL, headers={"If-None-Match": response.headers["ETag"]})
    assert refetch.status == 200 and refetch.headers["ETag"] == merged_etag


async def test_no_data_yet_is_a_503_not_an_empty_directory(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    hidden = contacts_dir.rename(contacts_dir.with_name("later"))
    client = await aiohttp_client(create_app(make_config(source='retry_interval = "0.1s"')))
    for method in ("GET", "PUT"):
        response = await client.request(method, URL, data=counterpath.render([]))
        assert response.status == 503 and response.headers["Retry-After"] == "30"
    hidden.rename(contacts_dir)
    for _ in range(100):  # the next retry comes after retry_interval
        if (response := await client.get(URL)).status == 200:
            break
        await asyncio.sleep(0.05)
    assert response.status == 200 and len(counterpath.parse(await response.read())) == 28


async def test_liveness_endpoint(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200 and await response.text() == "ok\n"


async def test_a_card_edited_upstream_meanwhile_keeps_both_changes(
    client: Client, contacts_dir: Path
) -> None:
    entries = counterpath.parse(await (await client.get(URL)).read())
    # Upstream changes Anna's title after the gateway last read the folder...
    card = contacts_dir / "anna.mueller.vcf"
    card.write_bytes(card.read_bytes().replace(b"TITLE:Leiterin Einkauf", b"TITLE:Prokuristin"))
    # ...while the phone changes her mobile number.
    sent = [
        Entry(e.entry_id, e.display_name, {**e.fields, "mobile_number": ("+49 171 0000000",)})
        if e.display_name == "Anna Müller"
        else e
        for e in entries
    ]
    response = await client.put(URL, data=counterpath.render(sent))
    assert response.status == 200
    await drained(client)
    text = card.read_text()
    assert "TITLE:Prokuristin" in text and "TEL;TYPE=CELL:+49 171 0000000" in text
    # The phone did not see the new title: its ETag must not match the merged document.
    merged = await client.get(URL)
    assert merged.headers["ETag"] != response.headers["ETag"]
    anna = by_name(await merged.read())["Anna Müller"]
    assert anna.fields["profession"] == "Prokuristin"
