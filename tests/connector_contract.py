"""The contract every connector keeps: subclass `ConnectorContract` once per connector and
provide a `connector` fixture that gives an empty, writable instance on a real upstream."""

from __future__ import annotations

import pytest

from gateway.connector import AlreadyExists, Connector, NotFound, WrongEtag
from gateway.model import Contact

SAMPLE = Contact(
    uid="",
    entry_id="0A1B2C3D4E5F60718293A4B5C6D7E8F9",
    display_name="Łukasz Nowak-Øberg",
    given_name="Łukasz",
    surname="Nowak-Øberg",
    profession="Ingénieur",
    company="Nowak; Partners, Ltd",
    comment="first line\nsecond line",
    emails=("lukasz@example.com",),
    sip=("lukasz@pbx.example.com",),
    mobile=("+48 601 000 001", "+48 601 000 002"),
    home=("+48 22 000 003",),
    business=("+48 22 000 004",),
    categories=("colleague",),
    vip=True,
)


async def listing(connector: Connector) -> dict[str, str]:  # type: ignore[type-arg]
    return {href: etag async for href, etag in connector.list()}


class ConnectorContract:
    #: A contact using every field the connector maps (override where it maps fewer).
    sample: Contact = SAMPLE
    #: An href of the connector's form that does not exist.
    missing_href = "no-such-card.vcf"
    #: Whether a created contact reads back with the entry_id it was created with (an
    #: LDAP source without `entry_id_attribute` has nowhere to keep it).
    keeps_entry_id = True

    def as_stored(self, contact: Contact) -> Contact:
        """`contact` as the connector reads it back after creating it."""
        return contact if self.keeps_entry_id else contact.replace(entry_id="")

    @pytest.fixture
    def connector(self) -> Connector:  # type: ignore[type-arg]
        raise NotImplementedError("subclasses provide an empty, writable connector")

    async def test_a_new_connector_lists_nothing(self, connector: Connector) -> None:  # type: ignore[type-arg]
        assert await listing(connector) == {}

    async def test_create_then_list_and_get(self, connector: Connector) -> None:  # type: ignore[type-arg]
        stored = await connector.create(self.sample)
        assert stored.href and stored.etag and stored.uid
        assert await listing(connector) == {stored.href: stored.etag}
        fetched = await connector.get(stored.href)
        assert fetched == stored
        assert fetched.same_content(self.as_stored(self.sample))
        assert fetched.source == connector.source

    async def test_a_retried_create_does_not_duplicate(self, connector: Connector) -> None:  # type: ignore[type-arg]
        await connector.create(self.sample)
        with pytest.raises(AlreadyExists):
            await connector.create(self.sample)
        assert len(await listing(connector)) == 1

    async def test_update_changes_fields_and_etag(self, connector: Connector) -> None:  # type: ignore[type-arg]
        stored = await connector.create(self.sample)
        wanted = stored.replace(mobile=("+48 601 999 999",), vip=False, comment="")
        updated = await connector.update(stored.href, wanted, stored.etag)
        assert updated.etag != stored.etag and updated.href == stored.href
        assert updated.same_content(wanted)
        assert (await connector.get(stored.href)).same_content(wanted)

    async def test_update_with_a_stale_etag_fails(self, connector: Connector) -> None:  # type: ignore[type-arg]
        stored = await connector.create(self.sample)
        await connector.update(stored.href, stored.replace(comment="new"), stored.etag)
        with pytest.raises(WrongEtag):
            await connector.update(stored.href, stored.replace(comment="lost"), stored.etag)
        assert (await connector.get(stored.href)).comment == "new"

    async def test_delete_then_the_href_is_gone(self, connector: Connector) -> None:  # type: ignore[type-arg]
        stored = await connector.create(self.sample)
        await connector.delete(stored.href, stored.etag)
        assert await listing(connector) == {}
        with pytest.raises(NotFound):
            await connector.get(stored.href)
        with pytest.raises(NotFound):
            await connector.delete(stored.href, stored.etag)

    async def test_delete_with_a_stale_etag_fails(self, connector: Connector) -> None:  # type: ignore[type-arg]
        stored = await connector.create(self.sample)
        await connector.update(stored.href, stored.replace(comment="new"), stored.etag)
        with pytest.raises(WrongEtag):
            await connector.delete(stored.href, stored.etag)
        assert len(await listing(connector)) == 1

    async def test_unknown_hrefs(self, connector: Connector) -> None:  # type: ignore[type-arg]
        stored = await connector.create(self.sample)
        with pytest.raises(NotFound):
            await connector.get(self.missing_href)
        with pytest.raises(NotFound):
            await connector.update(self.missing_href, self.sample, "x")
        found = await connector.get_many([stored.href, self.missing_href])
        assert [c.href for c in found] == [stored.href]
