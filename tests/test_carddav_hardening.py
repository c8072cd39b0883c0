"""The carddav connector against hostile phone data and a compressing proxy, on real
Radicale and Xandikos servers: a phone's entry_id never names a URL outside the book, odd
property names and values make cards the servers accept, and weak ETags never loop."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.carddav import CardDavConnector
from connectors.carddav_settings import CardDavSettings
from connectors.vcard_lines import clean_text
from gateway.connector import WrongEtag
from gateway.model import Contact
from tests.connector_contract import SAMPLE, listing
from tests.dav.proxy import WeakeningProxy
from tests.dav.servers import DavServer, vcard

BOOK = "/alice/contacts/"
HEX32_CARD = re.compile(r"[0-9A-F]{32}\.vcf")


def connect(origin: str, url: str, server: DavServer, user: str | None = "alice") -> Any:
    values: dict[str, Any] = {"url": origin + url}
    if user is not None:
        values |= {"username": user, "password": server.users[user]}
    return CardDavConnector("book", CardDavSettings.model_validate(values))


def stored_files(server: DavServer) -> set[Path]:
    """Every card file the server keeps on disk, wherever it is."""
    return {p for p in server.folder.rglob("*.vcf") if ".Radicale" not in str(p)}


# --- an entry_id is data, never a path (issue 12, item 1) -----------------------------------


@pytest.mark.parametrize(
    "entry_id",
    ["../escaped", "../../../escaped", "..", "a/b", "%2e%2e%2fx", "x\r\nHost: evil", "é" * 32],
)
async def test_an_entry_id_that_is_a_path_names_no_url(radicale: DavServer, entry_id: str) -> None:
    instance = connect(radicale.origin, BOOK, radicale)
    try:
        before = stored_files(radicale)
        stored = await instance.create(SAMPLE.replace(entry_id=entry_id))
        new = stored_files(radicale) - before
        assert len(new) == 1
        (path,) = new
        assert path.parent.name == "contacts" and path.parent.parent.name == "alice"
        assert HEX32_CARD.fullmatch(path.name)
        assert stored.href == BOOK + path.name
        assert stored.entry_id == path.name.removesuffix(".vcf")  # the fresh id is kept
        assert await listing(instance) == {stored.href: stored.etag}
        assert (await instance.get(stored.href)).display_name == SAMPLE.display_name
    finally:
        await instance.close()


async def test_a_lower_case_hex_entry_id_is_upper_cased(radicale: DavServer) -> None:
    instance = connect(radicale.origin, BOOK, radicale)
    try:
        stored = await instance.create(SAMPLE.replace(entry_id=SAMPLE.entry_id.lower()))
        assert stored.href == f"{BOOK}{SAMPLE.entry_id}.vcf"
        assert stored.entry_id == SAMPLE.entry_id
    finally:
        await instance.close()


# --- whatever a phone invents, the servers accept the card (issue 12, item 4) ---------------

ODD_EXTRA = (
    ('say "hi"', 'a "quoted" value'),
    ("semi;colon:comma,", "x;y:z,w"),
    ("new\nline", "line 1\nline 2\r\nline 3"),
    ("", "no name at all"),
    ("ctrl\x01\x7f", "bell\x07 and \x1b escape, del\x7f, nel\x85"),
    ("ünïcødé ☎", "Grüße, 日本語 ☎ \U0001f600"),
    ("long", "x" * 5000),
    ("back\\slash", "trailing backslash \\"),
)
ODD = SAMPLE.replace(
    extra=tuple(sorted(ODD_EXTRA)),
    comment="tab\there; bell\x07; \u2028 line separator",
    given_name='O"Neil;\x00',
)


def as_read(contact: Contact) -> Contact:
    """What a card can hold of `contact`: the values cleaned, the names exactly."""
    return contact.replace(
        extra=tuple(sorted((name, clean_text(value)) for name, value in contact.extra)),
        comment=clean_text(contact.comment),
        given_name=clean_text(contact.given_name),
    )


@pytest.fixture(params=["radicale", "xandikos"])
async def book(request: pytest.FixtureRequest) -> AsyncIterator[CardDavConnector]:
    server: DavServer = request.getfixturevalue(request.param)
    if request.param == "radicale":
        instance = connect(server.origin, BOOK, server)
    else:
        instance = connect(server.origin, "/user/contacts/", server, user=None)
    yield instance
    await instance.close()


async def test_odd_names_and_values_make_cards_the_server_accepts(book: CardDavConnector) -> None:
    stored = await book.create(ODD)
    assert (await book.get(stored.href)).same_content(as_read(ODD))
    # The card also takes an edit of another field, and an edit of the odd ones.
    edited = stored.replace(surname="Other", extra=(*stored.extra, ('new "one"', "v;\n")))
    updated = await book.update(stored.href, edited, stored.etag)
    assert (await book.get(stored.href)).same_content(as_read(edited))
    again = updated.replace(extra=(), comment="plain")
    await book.update(updated.href, again, updated.etag)
    assert (await book.get(stored.href)).same_content(again)


# --- weak ETags are compared weakly and never sent as strong If-Match (issue 12, item 3) ----


@pytest.fixture
async def gzip_proxy(radicale: DavServer) -> AsyncIterator[WeakeningProxy]:
    proxy = WeakeningProxy(radicale.origin)
    await proxy.start()
    yield proxy
    await proxy.close()


def seed(server: DavServer, name: str = "p1") -> str:
    href = f"{BOOK}{name}.vcf"
    server.put_card(href, vcard(name, "Paula", "TEL;TYPE=CELL:+1 555 0100"), "alice")
    return href


def change_on_server(server: DavServer, href: str) -> Any:
    """A hook: another client edits the card (through its own connection)."""

    async def hook() -> None:
        text = vcard("p1", "Paula (changed elsewhere)", "TEL;TYPE=CELL:+1 555 0100")
        await asyncio.to_thread(server.put_card, href, text, "alice")

    return hook


async def test_behind_a_compressing_proxy_update_and_delete_succeed(
    radicale: DavServer, gzip_proxy: WeakeningProxy
) -> None:
    href = seed(radicale)
    instance = connect(gzip_proxy.origin, BOOK, radicale)
    try:
        current = await instance.get(href)
        assert current.etag.startswith('W/"')  # what the proxy does to a gzipped answer
        updated = await instance.update(
            href, current.replace(mobile=("+1 555 0199",)), current.etag
        )
        assert updated.mobile == ("+1 555 0199",)
        again = await instance.get(href)
        assert again.etag.startswith('W/"')
        await instance.delete(href, again.etag)
        assert await listing(instance) == {}
    finally:
        await instance.close()


async def test_a_change_since_the_weak_etag_is_wrong_etag(
    radicale: DavServer, gzip_proxy: WeakeningProxy
) -> None:
    href = seed(radicale)
    instance = connect(gzip_proxy.origin, BOOK, radicale)
    try:
        current = await instance.get(href)
        await change_on_server(radicale, href)()
        with pytest.raises(WrongEtag):
            await instance.update(href, current.replace(comment="lost?"), current.etag)
        with pytest.raises(WrongEtag):
            await instance.delete(href, current.etag)
        assert (await instance.get(href)).display_name == "Paula (changed elsewhere)"
    finally:
        await instance.close()


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_a_change_between_read_and_write_is_wrong_etag(
    radicale: DavServer, gzip_proxy: WeakeningProxy, method: str
) -> None:
    """The connector reads the card uncompressed, so the server's strong ETag goes with the
    write and the server itself refuses it when the card changed in between."""
    href = seed(radicale)
    instance = connect(gzip_proxy.origin, BOOK, radicale)
    try:
        current = await instance.get(href)
        gzip_proxy.before[method] = change_on_server(radicale, href)
        with pytest.raises(WrongEtag):
            if method == "PUT":
                await instance.update(href, current.replace(comment="lost?"), current.etag)
            else:
                await instance.delete(href, current.etag)
        assert not gzip_proxy.before  # the change did land in between
        assert (await instance.get(href)).display_name == "Paula (changed elsewhere)"
    finally:
        await instance.close()


@pytest.mark.parametrize("operation", ["update", "delete"])
async def test_a_server_with_only_weak_etags_is_written_without_if_match(
    radicale: DavServer, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    """Such a server answers any If-Match 412: sending one would fail the change forever."""
    proxy = WeakeningProxy(radicale.origin, weak_always=True)
    await proxy.start()
    href = seed(radicale)
    instance = connect(proxy.origin, BOOK, radicale)
    try:
        (etag,) = (await listing(instance)).values()
        assert etag.startswith('W/"')
        current = await instance.get(href)
        with caplog.at_level(logging.WARNING, logger="xcap_gateway"):
            if operation == "update":
                changed = current.replace(comment="new")
                assert (await instance.update(href, changed, current.etag)).comment == "new"
            else:
                await instance.delete(href, current.etag)
                assert await listing(instance) == {}
        assert "event=carddav_unconditional_write" in caplog.text
        # A change since the weak ETag is still seen, by comparing the ETags weakly.
        if operation == "update":
            await change_on_server(radicale, href)()
            with pytest.raises(WrongEtag):
                await instance.update(href, current.replace(comment="lost?"), current.etag)
    finally:
        await instance.close()
        await proxy.close()
