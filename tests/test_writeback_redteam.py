"""What a review that tried to break write-back found, each kept as a regression test:
versions a phone never held, devices that share a name, node operations without a GET,
changes applied twice, entries the cap hides, entries without an id sent twice, a store
that fails, LDAP entries made from a phone, and strict ETags under concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import keys
from gateway.app import create_app, reload
from gateway.engine import Engine
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.outbox_rows import Item
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory, drained
from tests.ldap.server import CONTACTS, Slapd, admin_connection
from tests.test_ldap_flow import ldap_config
from tests.test_writeback import SNOM, URL, by_name, edit, fetch
from tests.test_writeback_hardening import CARD

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
SHARED = UserRef("")


def add_card(folder: Path, name: str) -> None:
    stem = name.lower().replace(" ", ".")
    (folder / f"{stem}.vcf").write_text(CARD.format(uid=stem, name=name, tel="+1 555 0400"))


async def test_a_head_is_not_a_version_the_phone_holds(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    _, held = await fetch(client, SNOM)
    add_card(contacts_dir, "New Person")
    await client.app[keys.ENGINE].sources.state("demo", SHARED).refresh()
    assert (await client.head(URL, headers=SNOM)).status == 200
    sent = edit(held, "Anna Müller", comment="edited")
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    await drained(client)
    assert (contacts_dir / "new.person.vcf").exists()


async def test_a_get_whose_answer_never_arrived_does_not_become_the_base(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    _, held = await fetch(client, SNOM)
    add_card(contacts_dir, "New Person")
    await client.app[keys.ENGINE].sources.state("demo", SHARED).refresh()
    await fetch(client, SNOM)  # served and recorded, but think of it as lost on the way
    sent = edit(held, "Anna Müller", comment="edited")
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    await drained(client)
    assert (contacts_dir / "new.person.vcf").exists()
    assert "NOTE:edited" in (contacts_dir / "anna.mueller.vcf").read_text()


async def test_many_devices_of_one_user_keep_their_own_bases(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    devices = [{"User-Agent": f"snomD785/{n}"} for n in range(8)]
    held = {}
    for device in devices:
        held[device["User-Agent"]] = (await fetch(client, device))[1]
    first = devices[0]
    sent = [e for e in held[first["User-Agent"]] if e.display_name != "Lars Petersen"]
    assert (await client.put(URL, data=counterpath.render(sent), headers=first)).status == 200
    await drained(client)
    assert not (contacts_dir / "lars.petersen.vcf").exists()


async def test_an_element_delete_without_a_get_deletes_that_entry(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    rendered = await engine.document("tbook", UserRef("bob@example.com"))
    order = [e.display_name for e in counterpath.parse(rendered.body)]
    last = order[-1]  # deleting the last one makes the selector select nothing else
    cards = len(list(contacts_dir.glob("*.vcf")))
    url = f"/users/sip:bob@example.com/tbook.xml/~~/resource-lists/list/entry[{len(order)}]"
    async with client.delete(url) as response:
        assert response.status == 200, await response.text()
    await drained(client)
    assert len(list(contacts_dir.glob("*.vcf"))) == cards - 1
    now = await engine.document("tbook", UserRef("bob@example.com"))
    assert last not in {e.display_name for e in now.entries.values()}


async def test_a_change_applied_twice_changes_categories_and_emails_once(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    card = contacts_dir / "two.mails.vcf"
    card.write_text(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:two\r\nFN:Two Mails\r\nEMAIL:first@example.com\r\n"
        "EMAIL:second@example.com\r\nCATEGORIES:work\r\nEND:VCARD\r\n"
    )
    engine = Engine(make_config(document="require_number = false"))
    await engine.start()
    try:
        rendered = await engine.document("tbook", UserRef("a@b"))
        before = by_name(list(rendered.entries.values()))["Two Mails"]
        fields = {k: v for k, v in before.fields.items() if k != "email_address"}
        after = Entry(before.entry_id, before.display_name, {**fields, "category": "friend"})
        origin = rendered.origins[before.entry_id]

        def item() -> Item:
            return Item(
                "tbook",
                "a@b",
                "demo",
                "",
                "update",
                before.entry_id,
                origin.href,
                before,
                after,
                origin.etag,
            )

        await engine.outbox.commit([item()])
        assert await engine.outbox.drained()
        # As if the gateway died after the write but before recording it: once more.
        await engine.outbox.commit([item()])
        assert await engine.outbox.drained()
        text = card.read_text()
        assert "CATEGORIES:friend\n" in text and "work" not in text
        assert "first@example.com" not in text and "EMAIL:second@example.com" in text
        assert not engine.outbox.failed
    finally:
        await engine.stop()


async def test_an_entry_the_cap_pushed_out_is_edited_not_created_again(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(document="max_entries = 28")))
    _, held = await fetch(client, SNOM)
    assert "Zoë Martin" in by_name(held)
    add_card(contacts_dir, "Aaron Early")  # sorts first: Zoë no longer fits
    await client.app[keys.ENGINE].sources.state("demo", SHARED).refresh()
    files = set(contacts_dir.glob("*.vcf"))
    sent = edit(held, "Zoë Martin", comment="still mine")
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    await drained(client)
    assert set(contacts_dir.glob("*.vcf")) == files  # no copy of Zoë
    assert "NOTE:still mine" in (contacts_dir / "zoe.martin.vcf").read_text()


async def test_a_new_entry_without_an_id_sent_twice_is_created_once(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    _, held = await fetch(client, SNOM)
    sent = [*held, Entry("", "Phone Made", {"mobile_number": ("+1 555 0999",)})]
    for _ in range(2):  # the phone did not fetch in between: it still has no id for it
        assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
        await drained(client)
    made = [p for p in contacts_dir.glob("*.vcf") if "FN:Phone Made" in p.read_text()]
    assert len(made) == 1


async def test_a_failing_snapshot_save_is_logged_and_the_next_save_catches_up(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    engine = Engine(make_config())
    store = engine.open_store()
    state = engine.sources.state("demo", SHARED)
    try:
        assert await state.refresh()
        with store.transaction() as db:
            db.execute("ALTER TABLE contacts RENAME TO contacts_away")
        add_card(contacts_dir, "First Added")
        assert await state.refresh()  # no exception escapes; served from memory
        assert "cannot save the snapshot" in (state.last_error or "")
        with store.transaction() as db:
            db.execute("ALTER TABLE contacts_away RENAME TO contacts")
        add_card(contacts_dir, "Second Added")
        assert await state.refresh()
        rows = sqlite3.connect(store.path).execute("SELECT href FROM contacts").fetchall()
        assert {"first.added.vcf", "second.added.vcf"} <= {href for (href,) in rows}
    finally:
        await engine.sources.stop()
        store.close()


async def test_an_ldap_entry_made_from_a_phone_keeps_the_phones_id(
    aiohttp_client: ClientFactory, make_slapd: Callable[..., Slapd], tmp_path: Path
) -> None:
    """Default settings (no entry_id_attribute): the phone creates, then edits at once."""
    server = make_slapd(people=3)
    client = await aiohttp_client(create_app(ldap_config(tmp_path, server)))
    sync = client.app[keys.ENGINE].sources.state("people", SHARED).refresh
    await create_then_edit_erika(client, server, sync)
    _, now = await fetch(client, SNOM)
    assert by_name(now)["Erika Mustermann"].entry_id == ERIKA.entry_id


ERIKA = Entry(
    "534BB0BC2DDA09E2567C5D8D5B2C0120",
    "Erika Mustermann",
    {"surname": "Mustermann", "business_number": ("+49 30 5550100",)},
)


async def create_then_edit_erika(
    client: Client, server: Slapd, between: Callable[[], Awaitable[object]]
) -> None:
    """The phone creates Erika, `between` happens, the phone edits her before it polls:
    the directory holds one Erika, edited."""
    _, held = await fetch(client, SNOM)
    sent = [*held, ERIKA]
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    await drained(client)
    await between()
    again = edit(sent, "Erika Mustermann", profession="Chefin")
    assert (await client.put(URL, data=counterpath.render(again), headers=SNOM)).status == 200
    await drained(client)
    admin = admin_connection(server)
    try:
        admin.search(CONTACTS, "(cn=Erika*)", attributes=["cn", "title"])
        assert [str(e.cn) for e in admin.entries] == ["Erika Mustermann"]
        assert str(admin.entries[0].title) == "Chefin"
    finally:
        admin.unbind()


async def test_strict_etags_let_one_of_two_concurrent_puts_with_the_same_if_match_through(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(document="strict_etags = true")))

    async def put(n: int, body: bytes, etag: str) -> int:
        headers = {"User-Agent": f"dev{n}", "If-Match": etag}
        async with client.put(URL, data=body, headers=headers) as response:
            return response.status

    for round_ in range(10):  # a race: each round must give exactly one 200
        etag, held = await fetch(client, SNOM)
        bodies = [
            counterpath.render(edit(held, "Anna Müller", company=f"{name} {round_}"))
            for name in ("One", "Two")
        ]
        answers = await asyncio.gather(*(put(n, b, etag) for n, b in enumerate(bodies)))
        assert sorted(answers) == [200, 412], round_
        await drained(client)


# --- a second round -------------------------------------------------------------------


async def test_a_contact_re_entered_after_its_delete_is_created_again(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    _, held = await fetch(client, SNOM)
    anna = by_name(held)["Anna Müller"]
    without = [e for e in held if e is not anna]
    assert (await client.put(URL, data=counterpath.render(without), headers=SNOM)).status == 200
    await drained(client)
    assert not (contacts_dir / "anna.mueller.vcf").exists()
    _, now = await fetch(client, SNOM)
    # The user types her in again, exactly as she was; the phone has no id for her.
    again = [*now, Entry("", anna.display_name, dict(anna.fields))]
    assert (await client.put(URL, data=counterpath.render(again), headers=SNOM)).status == 200
    await drained(client)
    assert [p for p in contacts_dir.glob("*.vcf") if "FN:Anna Müller" in p.read_text()]


async def test_a_version_served_but_not_received_does_not_revert_upstream_edits(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    _, held = await fetch(client, SNOM)
    card = contacts_dir / "anna.mueller.vcf"
    title = next(line for line in card.read_text().splitlines() if line.startswith("TITLE:"))
    card.write_text(card.read_text().replace(title, "TITLE:Head of Everything"))
    await client.app[keys.ENGINE].sources.state("demo", SHARED).refresh()
    await fetch(client, SNOM)  # served, but the phone never got it
    sent = edit(held, "Anna Müller", company="Brandt AG")  # her old title, as the phone has it
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    await drained(client)
    text = card.read_text()
    assert "TITLE:Head of Everything" in text and "ORG:Brandt AG" in text


async def test_a_contact_replaced_upstream_is_not_deleted_by_a_phone_that_never_saw_it(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    _, held = await fetch(client, SNOM)
    (contacts_dir / "lars.petersen.vcf").unlink()
    add_card(contacts_dir, "Nina Neu")  # the admin replaced Lars by Nina
    await client.app[keys.ENGINE].sources.state("demo", SHARED).refresh()
    await fetch(client, SNOM)  # served, but the phone never got it
    sent = [e for e in held if e.display_name != "Lars Petersen"]  # the user deletes Lars
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    await drained(client)
    assert (contacts_dir / "nina.neu.vcf").exists()


async def test_a_create_redone_after_a_crash_keeps_edits_made_upstream_since(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    engine = Engine(make_config())
    await engine.start()
    try:
        new = Entry("534BB0BC2DDA09E2567C5D8D5B2C0120", "Jon Smiht", {"surname": "Smiht"})
        create = Item("tbook", "a@b", "demo", "", "create", new.entry_id, after=new)
        await engine.outbox.commit([create])
        assert await engine.outbox.drained()
        card = contacts_dir / f"{new.entry_id}.vcf"
        card.write_text(card.read_text().replace("Smiht", "Smith"))  # a colleague's fix
        await engine.sources.state("demo", SHARED).refresh()
        # As if the gateway died after the write but before recording it: once more.
        await engine.outbox.commit(
            [Item("tbook", "a@b", "demo", "", "create", new.entry_id, after=new)]
        )
        assert await engine.outbox.drained()
        assert "Smiht" not in card.read_text()
    finally:
        await engine.stop()


async def test_an_ldap_entry_made_from_a_phone_keeps_its_id_when_the_source_settings_change(
    aiohttp_client: ClientFactory, make_slapd: Callable[..., Slapd], tmp_path: Path
) -> None:
    """Default settings: only the snapshot keeps the phone's id, and a changed setting drops
    the snapshot; the id must survive that too."""
    server = make_slapd(people=3)
    client = await aiohttp_client(create_app(ldap_config(tmp_path, server)))
    changed = ldap_config(tmp_path, server, source='timeout = "15s"')
    await create_then_edit_erika(client, server, lambda: reload(client.app, changed.path))


async def test_the_entry_id_index_follows_every_change_without_rebuilding(
    make_config: ConfigFactory, contacts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding a queued create's entry hashed every contact after each change; the index
    now follows writes and syncs at the cost of what changed, and stays exact."""
    from gateway import source_state
    from gateway.model import effective_entry_id

    engine = Engine(make_config())
    store = engine.open_store()
    state = engine.sources.state("demo", SHARED)
    try:
        await state.refresh()
        anna = next(c for c in state.contacts.values() if c.display_name == "Anna Müller")
        assert state.href_of(effective_entry_id(anna)) == anna.href  # built once here
        hashed: list[str] = []
        counted = source_state.effective_entry_id

        def counting(contact: object) -> str:
            hashed.append("x")
            return counted(contact)  # type: ignore[arg-type]

        monkeypatch.setattr(source_state, "effective_entry_id", counting)
        (contacts_dir / "anna.mueller.vcf").rename(contacts_dir / "anna.renamed.vcf")
        add_card(contacts_dir, "New Person")
        await state.refresh()
        await state.removed("lars.petersen.vcf")
        assert state.href_of(effective_entry_id(anna)) == "anna.renamed.vcf"  # as a create asks
        assert len(hashed) < 10  # the changes, not the 28 contacts
        fresh = {counted(c): href for href, c in state.contacts.items()}
        assert {i: state.href_of(i) for i in fresh} == fresh
    finally:
        await engine.sources.stop()
        store.close()
