"""Base selection between versions that hold the same entries: the phone holds the one
its unchanged entries equal, not the oldest (found by a red-team pass: a phone re-sending
what it fetched brought back a contact another phone had deleted)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import keys
from gateway.app import create_app
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory, drained

Client = TestClient[web.Request, web.Application]
URL = "/users/sip:alice@example.com/tbook.xml"
BRIA = {"User-Agent": "Bria 6.5.2"}
SNOM = {"User-Agent": "snomD785/10.1.54.13"}


async def fetch(client: Client, device: dict[str, str]) -> list[Entry]:
    response = await client.get(URL, headers=device)
    assert response.status == 200
    return counterpath.parse(await response.read())


async def send(client: Client, device: dict[str, str], entries: list[Entry]) -> None:
    response = await client.put(URL, data=counterpath.render(entries), headers=device)
    assert response.status == 200, await response.text()
    await drained(client)


def with_number(entries: list[Entry], name: str, number: str) -> list[Entry]:
    return [
        Entry(e.entry_id, e.display_name, {**e.fields, "mobile_number": (number,)})
        if e.display_name == name
        else e
        for e in entries
    ]


async def test_resending_a_fetched_copy_does_not_bring_back_a_deleted_contact(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_config: ConfigFactory,
    contacts_dir: Path,
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    first = await fetch(client, BRIA)
    victim, other = first[0].display_name, first[1].display_name
    await send(client, BRIA, with_number(first, other, "+49 160 111111"))  # Bria edits
    snom = await fetch(client, SNOM)
    await send(client, SNOM, with_number(snom, victim, "+49 160 222222"))  # snom edits X
    held_by_bria = await fetch(client, BRIA)  # Bria now holds snom's edit of X
    snom = await fetch(client, SNOM)
    await send(client, SNOM, [e for e in snom if e.display_name != victim])  # snom deletes X
    await send(client, BRIA, held_by_bria)  # Bria re-sends, unchanged, what it fetched
    names = {e.display_name for e in await fetch(client, SNOM)}
    assert victim not in names, "a contact deleted on one phone came back from another"
    assert other in names
    assert not any(victim in card.read_text() for card in contacts_dir.glob("*.vcf"))


async def test_a_create_that_landed_before_a_crash_is_served_at_once(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_config: ConfigFactory,
    contacts_dir: Path,
) -> None:
    """A create applied again after a crash finds its card already there (AlreadyExists):
    the card is read back into the snapshot, so phones see the contact now, not after the
    next sync."""
    client = await aiohttp_client(create_app(make_config()))
    entries = await fetch(client, SNOM)
    entry_id = "0123456789ABCDEF0123456789ABCDEF"
    # What the first try wrote before the process died (the snapshot never learnt of it).
    (contacts_dir / f"{entry_id}.vcf").write_text(
        "BEGIN:VCARD\r\nVERSION:3.0\r\n"
        f"UID:{entry_id}\r\nX-XCAP-ENTRY-ID:{entry_id}\r\nFN:Landed Before\r\n"
        "TEL;TYPE=CELL:+49 170 5550100\r\n"
        "END:VCARD\r\n"
    )
    created = Entry(entry_id, "Landed Before", {"mobile_number": ("+49 170 5550100",)})
    await send(client, SNOM, [*entries, created])
    names = {e.display_name for e in await fetch(client, BRIA)}
    assert "Landed Before" in names
    assert len(list(contacts_dir.glob(f"{entry_id}*.vcf"))) == 1


def card(name: str, number: str) -> str:
    return (
        f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{name.lower().replace(' ', '-')}\r\nFN:{name}\r\n"
        f"TEL;TYPE=CELL:{number}\r\nEND:VCARD\r\n"
    )


async def test_two_phones_under_one_name_never_delete_what_one_of_them_was_not_shown(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_config: ConfigFactory,
    contacts_dir: Path,
) -> None:
    """Two phones of one model behind one NAT are one device to the gateway. Dora was
    added after P1's fetch and only P2 got her: P1's PUTs, however many, keep her (a
    remembered-doubt scheme once deleted her at P1's second PUT)."""
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    p1 = await fetch(client, SNOM)
    (contacts_dir / "dora.vcf").write_text(card("Dora New", "+49 170 7770"))
    await engine.sources.state("demo", UserRef("")).refresh()
    await fetch(client, SNOM)  # P2
    await send(client, SNOM, with_number(p1, "Anna Müller", "+49 3"))  # P1
    await fetch(client, SNOM)  # P2 polls again
    p1 = [e for e in p1 if e.display_name != "Dora New"]
    await send(client, SNOM, with_number(p1, "Anna Müller", "+49 4"))  # P1 again
    assert (contacts_dir / "dora.vcf").exists()
    assert "Dora New" in {e.display_name for e in await fetch(client, BRIA)}


async def test_a_phone_chosen_id_that_names_another_card_does_not_take_it_over(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_config: ConfigFactory,
    contacts_dir: Path,
) -> None:
    """The card 0123…CDEF.vcf is Barbara Boss's (her own UID, no entry id of ours). A
    phone creating "Evil New" under that id must not adopt her card under its id."""
    entry_id = "0123456789ABCDEF0123456789ABCDEF"
    (contacts_dir / f"{entry_id}.vcf").write_text(card("Barbara Boss", "+49 170 4440"))
    client = await aiohttp_client(create_app(make_config()))
    before = {e.display_name: e.entry_id for e in await fetch(client, BRIA)}
    entries = await fetch(client, SNOM)
    evil = Entry(entry_id, "Evil New", {"mobile_number": ("+49 170 6660",)})
    await send(client, SNOM, [*entries, evil])
    after = {e.display_name: e.entry_id for e in await fetch(client, BRIA)}
    assert after["Barbara Boss"] == before["Barbara Boss"]
    assert "Barbara Boss" in (contacts_dir / f"{entry_id}.vcf").read_text()
    assert list(after.values()).count(entry_id) <= 1
