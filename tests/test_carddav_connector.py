"""The carddav connector against real Radicale and Xandikos servers: the contract,
discovery, incremental sync, and writes that keep everything they do not map."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.carddav import CardDavConnector
from connectors.carddav_settings import CardDavSettings
from gateway.connector import (
    AlreadyExists,
    InvalidToken,
    NotFound,
    ReadOnly,
    Unavailable,
    UnsafeTemplateValue,
    WrongEtag,
    load_connector_class,
)
from gateway.model import UserRef
from tests.connector_contract import SAMPLE, ConnectorContract, listing
from tests.dav.servers import DavServer, vcard

PHOTO = "PHOTO;ENCODING=b;TYPE=PNG:iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def connector(
    server: DavServer,
    url: str,
    user: str | None = "alice",
    for_user: UserRef | None = None,
    **overrides: Any,
) -> CardDavConnector:
    values: dict[str, Any] = {"url": server.origin + url, **overrides}
    if user is not None:
        values.setdefault("username", user)
        values.setdefault("password", server.users[user])
    settings = CardDavSettings.model_validate(values)
    if for_user is not None:
        settings = CardDavConnector.settings_for_user(settings, for_user.template_values())
    return CardDavConnector("book", settings, for_user)


class TestRadicaleContract(ConnectorContract):
    @pytest.fixture
    async def connector(self, radicale: DavServer) -> Any:
        instance = connector(radicale, "/alice/contacts/")
        yield instance
        await instance.close()

    missing_href = "/alice/contacts/no-such-card.vcf"


class TestXandikosContract(ConnectorContract):
    @pytest.fixture
    async def connector(self, xandikos: DavServer) -> Any:
        instance = connector(xandikos, "/user/contacts/", user=None)
        yield instance
        await instance.close()

    missing_href = "/user/contacts/no-such-card.vcf"


def test_registered_as_an_entry_point() -> None:
    assert load_connector_class("carddav") is CardDavConnector


@pytest.mark.parametrize("url", ["/", "/alice/", "/alice/contacts", "/.well-known/carddav"])
async def test_discovery_from_server_principal_or_book(radicale: DavServer, url: str) -> None:
    instance = connector(radicale, url)
    try:
        assert await instance.books() == ["/alice/contacts/"]
    finally:
        await instance.close()


async def test_several_books_are_chosen_by_name(radicale: DavServer) -> None:
    radicale.make_book("/alice/work/", "alice", name="Work")
    everything = connector(radicale, "/alice/")
    work = connector(radicale, "/alice/", addressbooks=["work"])
    wrong = connector(radicale, "/alice/", addressbooks=["Private"])
    try:
        assert sorted(await everything.books()) == ["/alice/contacts/", "/alice/work/"]
        assert await work.books() == ["/alice/work/"]
        with pytest.raises(Unavailable, match="no address book named 'Private' .found: "):
            await wrong.books()
    finally:
        for instance in (everything, work, wrong):
            await instance.close()


async def test_wrong_password_and_unreachable_server_say_what_to_fix(radicale: DavServer) -> None:
    bad = connector(radicale, "/alice/contacts/", password="wrong")
    gone = CardDavConnector("book", CardDavSettings(url="http://127.0.0.1:9/x/", timeout=3))
    try:
        with pytest.raises(
            Unavailable, match="rejected the credentials: check username and password"
        ):
            await listing(bad)
        with pytest.raises(Unavailable, match="cannot connect"):
            await listing(gone)
    finally:
        await bad.close()
        await gone.close()


async def test_full_and_incremental_sync(radicale: DavServer) -> None:
    for index in range(3):
        radicale.put_card(
            f"/alice/contacts/c{index}.vcf",
            vcard(f"c{index}", f"Card {index}", f"TEL;TYPE=CELL:+1 555 000{index}"),
            "alice",
        )
    instance = connector(radicale, "/alice/contacts/")
    try:
        full = await instance.changes(None)
        assert full.complete and sorted(c.display_name for c in full.changed) == [
            "Card 0",
            "Card 1",
            "Card 2",
        ]
        quiet = await instance.changes(full.token)
        assert quiet.changed == () and quiet.deleted_hrefs == frozenset()
        radicale.put_card("/alice/contacts/c1.vcf", vcard("c1", "Card One"), "alice")
        radicale.put_card("/alice/contacts/c3.vcf", vcard("c3", "Card 3"), "alice")
        radicale.request("DELETE", "/alice/contacts/c2.vcf", user="alice")
        delta = await instance.changes(quiet.token)
        assert not delta.complete
        assert sorted(c.display_name for c in delta.changed) == ["Card 3", "Card One"]
        assert delta.deleted_hrefs == {"/alice/contacts/c2.vcf"}
        with pytest.raises(InvalidToken):
            await instance.changes(
                '{"/alice/contacts/": {"sync": "http://radicale.org/ns/sync/bogus"}}'
            )
    finally:
        await instance.close()


async def test_etag_comparison_where_there_is_no_sync_token(radicale: DavServer) -> None:
    radicale.put_card("/alice/contacts/a.vcf", vcard("a", "A"), "alice")
    etag_b = radicale.put_card("/alice/contacts/b.vcf", vcard("b", "B"), "alice")
    instance = connector(radicale, "/alice/contacts/")
    try:
        # The state a server without sync-collection leaves: the ETags last seen.
        etags = {
            "/alice/contacts/a.vcf": '"old"',
            "/alice/contacts/b.vcf": etag_b,
            "/alice/contacts/gone.vcf": '"x"',
        }
        token = json.dumps({"/alice/contacts/": {"etags": etags}})
        delta = await instance.changes(token)
        assert [c.href for c in delta.changed] == ["/alice/contacts/a.vcf"]
        assert delta.deleted_hrefs == {"/alice/contacts/gone.vcf"}
    finally:
        await instance.close()


async def test_update_edits_the_card_in_place_and_keeps_photo(radicale: DavServer) -> None:
    text = vcard(
        "p1",
        "Paula",
        "N:Smith;Paula;;;",
        PHOTO,
        "ADR;TYPE=home:;;1 Main St;Town;;1;US",
        "X-CUSTOM;X-P=1:keep",
        "TEL;TYPE=CELL:+1 555 0100",
        "CATEGORIES:friend",
    )
    radicale.put_card("/alice/contacts/p1.vcf", text, "alice")
    instance = connector(radicale, "/alice/contacts/")
    try:
        current = await instance.get("/alice/contacts/p1.vcf")
        updated = await instance.update(
            current.href, current.replace(mobile=("+1 555 0199",), vip=True), current.etag
        )
        assert updated.mobile == ("+1 555 0199",) and updated.vip and updated.etag != current.etag
        _, body, _ = radicale.request("GET", "/alice/contacts/p1.vcf", user="alice")
        stored = body.decode()
        for kept in (
            PHOTO,
            "ADR;TYPE=home:;;1 Main St;Town;;1;US",
            "X-CUSTOM;X-P=1:keep",
            "N:Smith;Paula;;;",
        ):
            assert kept in stored.replace("\r\n ", "")
        assert "CATEGORIES:friend,VIP" in stored
        # A stale ETag: the server answers 412, the connector says WrongEtag.
        with pytest.raises(WrongEtag):
            await instance.update(current.href, current.replace(comment="x"), current.etag)
    finally:
        await instance.close()


async def test_create_is_idempotent_and_named_after_the_entry_id(radicale: DavServer) -> None:
    instance = connector(radicale, "/alice/contacts/")
    try:
        stored = await instance.create(SAMPLE)
        assert stored.href == f"/alice/contacts/{SAMPLE.entry_id}.vcf"
        assert stored.uid.startswith("urn:uuid:0a1b2c3d-")
        with pytest.raises(AlreadyExists):
            await instance.create(SAMPLE)
    finally:
        await instance.close()


async def test_per_user_books_with_a_service_account(radicale: DavServer) -> None:
    radicale.make_book("/bob/contacts/", "bob")
    radicale.put_card("/bob/contacts/b.vcf", vcard("b", "Bob's friend"), "bob")
    bob = connector(radicale, "/{user}/contacts/", user="svc", for_user=UserRef("bob@example.com"))
    try:
        assert bob.settings.url.endswith("/bob/contacts/")
        assert [c.display_name for c in (await bob.changes(None)).changed] == ["Bob's friend"]
    finally:
        await bob.close()


@pytest.mark.parametrize("user", ["..", ".", "%2e%2e", "a/b"])
async def test_a_user_name_that_is_a_path_reaches_no_book(radicale: DavServer, user: str) -> None:
    """Refused when the URL is filled in; or, where escaping made it one plain segment, it
    names a book of its own that does not exist: never one around it."""
    try:
        climber = connector(
            radicale, "/{user}/contacts/", user="svc", for_user=UserRef(f"{user}@example.com")
        )
    except UnsafeTemplateValue:
        return
    try:
        with pytest.raises((NotFound, ReadOnly, Unavailable)):
            await climber.changes(None)
    finally:
        await climber.close()
