"""Base selection between versions that hold the same entries: the phone holds the one
its unchanged entries equal, not the oldest (found by a red-team pass: a phone re-sending
what it fetched brought back a contact another phone had deleted)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.entry import Entry
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
        f"UID:{entry_id}\r\nFN:Landed Before\r\nTEL;TYPE=CELL:+49 170 5550100\r\n"
        "END:VCARD\r\n"
    )
    created = Entry(entry_id, "Landed Before", {"mobile_number": ("+49 170 5550100",)})
    await send(client, SNOM, [*entries, created])
    names = {e.display_name for e in await fetch(client, BRIA)}
    assert "Landed Before" in names
    assert len(list(contacts_dir.glob(f"{entry_id}*.vcf"))) == 1
