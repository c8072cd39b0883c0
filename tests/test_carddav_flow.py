"""A CardDAV address book behind the gateway: phones read it, and their edits reach the
server card by card, without losing an edit made on the server meanwhile."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.engine import Engine
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.xcap import counterpath
from tests.conftest import drained, write_config
from tests.dav.servers import DavServer, vcard

URL = "/users/sip:alice@example.com/tbook.xml"
ALICE = UserRef("alice@example.com")
Client = TestClient[web.Request, web.Application]
PHOTO = (
    "PHOTO;ENCODING=b;TYPE=PNG:iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDw"
    "ADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def dav_config(tmp_path: Path, server: DavServer, url: str = "/{user}/contacts/") -> Config:
    return load_config(
        write_config(
            tmp_path,
            f"""
[server]
listen = "127.0.0.1:0"

[sources.personal]
type = "carddav"
url = "{server.origin}{url}"
username = "svc"
password = "svc-pw"
interval = "1h"

[documents.tbook]
name = "tbook.xml"
sources = ["personal"]
write_to = "personal"
""",
        )
    )


def seed(server: DavServer) -> None:
    server.put_card(
        "/alice/contacts/paula.vcf",
        vcard(
            "paula",
            "Paula Smith",
            "N:Smith;Paula;;;",
            "TITLE:Engineer",
            "TEL;TYPE=CELL:+1 555 0100",
            "ADR;TYPE=home:;;1 Main St;Town;;1;US",
            PHOTO,
            "X-CUSTOM:keep",
        ),
        "alice",
    )
    server.put_card("/alice/contacts/omar.vcf", vcard("omar", "Omar", "TEL:+1 555 0200"), "alice")


async def test_a_phones_edits_reach_the_address_book_with_photo_intact(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    radicale: DavServer,
    tmp_path: Path,
) -> None:
    seed(radicale)
    client = await aiohttp_client(create_app(dav_config(tmp_path, radicale)))
    entries = {e.display_name: e for e in counterpath.parse(await (await client.get(URL)).read())}
    assert set(entries) == {"Paula Smith", "Omar"}
    paula = entries["Paula Smith"]
    sent = [
        Entry(
            paula.entry_id, paula.display_name, {**paula.fields, "mobile_number": ("+1 555 0199",)}
        ),
        Entry(
            "534BB0BC2DDA09E2567C5D8D5B2C0120", "New From Phone", {"home_number": ("+1 555 0300",)}
        ),
    ]
    assert (await client.put(URL, data=counterpath.render(sent))).status == 200
    await drained(client)
    status, body, _ = radicale.request("GET", "/alice/contacts/paula.vcf", user="alice")
    stored = body.decode().replace("\r\n ", "")
    assert "TEL;TYPE=CELL:+1 555 0199" in stored
    for kept in (PHOTO, "ADR;TYPE=home:;;1 Main St;Town;;1;US", "X-CUSTOM:keep", "TITLE:Engineer"):
        assert kept in stored
    assert radicale.request("GET", "/alice/contacts/omar.vcf", user="alice")[0] == 404
    created = radicale.request(
        "GET", "/alice/contacts/534BB0BC2DDA09E2567C5D8D5B2C0120.vcf", user="alice"
    )
    assert created[0] == 200 and b"FN:New From Phone" in created[1]


async def test_an_edit_made_on_the_server_meanwhile_is_kept(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    radicale: DavServer,
    tmp_path: Path,
) -> None:
    seed(radicale)
    client = await aiohttp_client(create_app(dav_config(tmp_path, radicale)))
    entries = counterpath.parse(await (await client.get(URL)).read())
    # Someone changes Paula's title on the server after the gateway read the book...
    radicale.put_card(
        "/alice/contacts/paula.vcf",
        vcard(
            "paula",
            "Paula Smith",
            "N:Smith;Paula;;;",
            "TITLE:Director",
            "TEL;TYPE=CELL:+1 555 0100",
            PHOTO,
        ),
        "alice",
    )
    # ...while the phone changes her mobile number: the If-Match PUT gets a 412, the gateway
    # re-reads the card and applies the phone's field to the new version.
    sent = [
        Entry(e.entry_id, e.display_name, {**e.fields, "mobile_number": ("+1 555 0142",)})
        if e.display_name == "Paula Smith"
        else e
        for e in entries
    ]
    response = await client.put(URL, data=counterpath.render(sent))
    assert response.status == 200
    await drained(client)
    stored = radicale.request("GET", "/alice/contacts/paula.vcf", user="alice")[1].decode()
    assert "TITLE:Director" in stored and "TEL;TYPE=CELL:+1 555 0142" in stored
    merged = await client.get(URL)
    assert merged.headers["ETag"] != response.headers["ETag"]  # the phone must refetch


async def test_an_invalid_sync_token_causes_one_full_resync(
    radicale: DavServer, tmp_path: Path
) -> None:
    seed(radicale)
    engine = Engine(dav_config(tmp_path, radicale))
    await engine.start()
    try:
        before = await engine.document("tbook", ALICE)
        state = engine.sources.state("personal", ALICE)
        state.token = '{"/alice/contacts/": {"sync": "http://radicale.org/ns/sync/bogus"}}'
        radicale.put_card(
            "/alice/contacts/new.vcf", vcard("new", "Nia", "TEL;TYPE=CELL:+49 171 5550199"), "alice"
        )
        assert await state.refresh() is True
        assert state.last_error is None and "bogus" not in (state.token or "")
        after = await engine.document("tbook", ALICE)
        assert {e.display_name for e in after.entries.values()} == {"Paula Smith", "Omar", "Nia"}
        assert after.etag != before.etag
    finally:
        await engine.stop()
