"""Write-back never loses or invents (issue 12): no known base deletes nothing, what was
served is recorded durably, outbox changes stay conditional on what the merge saw, one
bad change never blocks its source, reloads strand nothing, and a failed COMMIT heals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import keys, outbox
from gateway.app import create_app, reload
from gateway.config import load_config
from gateway.engine import Engine
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.outbox_rows import Item
from gateway.store_sqlite import FILE_NAME
from gateway.store_sqlite import SqliteStore as Store
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory, drained, write_config
from tests.support import free_port, start_gateway, stop_process
from tests.test_cli import config_text
from tests.test_writeback import BRIA, SNOM, URL, by_name, edit, fetch

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
NEW_ID = "534BB0BC2DDA09E2567C5D8D5B2C0120"
CARD = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\nTEL;TYPE=CELL:{tel}\r\nEND:VCARD\r\n"


def cards(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.vcf"))}


async def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    """Wait for an observable condition (the loop only paces the polling)."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


# --- no known base -> delete nothing ---------------------------------------------------


async def test_a_first_put_without_a_get_deletes_nothing_and_still_applies_edits(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    everything = list(
        (await engine.document("tbook", UserRef("alice@example.com"))).entries.values()
    )
    before = cards(contacts_dir)
    # What a phone with a book on its flash sends after a factory reset of the gateway:
    # two entries, one edited, and one it made itself. It was never served anything.
    anna = by_name(everything)["Anna Müller"]
    lars = by_name(everything)["Lars Petersen"]
    sent = [
        Entry(anna.entry_id, anna.display_name, {**anna.fields, "comment": "no base"}),
        lars,
        Entry(NEW_ID, "Nina", {"home_number": ("+1 555 0300",)}),
    ]
    response = await client.put(URL, data=counterpath.render(sent), headers=SNOM)
    assert response.status == 200
    await drained(client)
    after = cards(contacts_dir)
    assert set(before) <= set(after)  # every card is still there
    assert len(after) == len(before) + 1 and "NOTE:no base" in after["anna.mueller.vcf"].decode()
    assert b"FN:Nina" in after[f"{NEW_ID}.vcf"]


async def test_an_if_match_the_gateway_never_issued_deletes_nothing(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    served, entries = await fetch(client, SNOM)
    before = cards(contacts_dir)
    sent = [x for x in entries if x.display_name != "Lars Petersen"]
    headers = {**SNOM, "If-Match": '"0123456789abcdef0123456789abcdef"'}
    assert (await client.put(URL, data=counterpath.render(sent), headers=headers)).status == 200
    await drained(client)
    assert cards(contacts_dir) == before
    # The same delete against the version it was served is carried out.
    headers = {**SNOM, "If-Match": served}
    assert (await client.put(URL, data=counterpath.render(sent), headers=headers)).status == 200
    await drained(client)
    assert "lars.petersen.vcf" not in cards(contacts_dir)


async def test_a_device_never_served_deletes_nothing_even_when_another_device_was(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    _, entries = await fetch(client, SNOM)  # the desk phone fetched; Bria never did
    before = cards(contacts_dir)
    sent = [x for x in entries if x.display_name not in ("Lars Petersen", "Zoe Martin")]
    assert (await client.put(URL, data=counterpath.render(sent), headers=BRIA)).status == 200
    await drained(client)
    assert cards(contacts_dir) == before


async def test_polls_of_the_same_version_write_nothing_new(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    etag, _ = await fetch(client, SNOM)
    assert engine.store is not None
    database = sqlite3.connect(engine.store.path)
    rows = database.execute("SELECT device, etag, served_at FROM served").fetchall()
    assert [(r[0].split("|")[0], r[1]) for r in rows] == [(SNOM["User-Agent"], etag)]
    for _ in range(20):
        response = await client.get(URL, headers={**SNOM, "If-None-Match": etag})
        assert response.status == 304
    # Still the first record: a poll that finds the same version writes nothing.
    assert database.execute("SELECT device, etag, served_at FROM served").fetchall() == rows
    database.close()


async def test_a_gateway_killed_after_a_get_still_knows_what_the_phone_holds(
    tmp_path: Path, contacts_dir: Path
) -> None:
    """GET -> SIGKILL -> a card added upstream -> restart -> the phone's PUT (an edit,
    without the new card it never saw) keeps the new card."""
    port = free_port()
    config = write_config(tmp_path, config_text(contacts_dir, port))
    url = f"http://127.0.0.1:{port}{URL}"
    log = tmp_path / "serve.log"

    async def wait_ok(session: aiohttp.ClientSession) -> tuple[str, bytes]:
        for _ in range(400):
            try:
                async with session.get(url, headers=SNOM) as response:
                    if response.status == 200:
                        return response.headers["ETag"], await response.read()
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(log.read_text())

    process = start_gateway(config, log)
    try:
        async with aiohttp.ClientSession() as session:
            etag, body = await wait_ok(session)
        os.kill(process.pid, signal.SIGKILL)  # no clean stop: nothing flushed at exit
        process.wait()
        (contacts_dir / "new.person.vcf").write_text(
            CARD.format(uid="new-person", name="New Person", tel="+1 555 0400")
        )
        process = start_gateway(config, log)
        async with aiohttp.ClientSession() as session:
            await wait_ok_without_recording(session, url, log)
            sent = edit(counterpath.parse(body), "Anna Müller", comment="after the crash")
            async with session.put(
                url, data=counterpath.render(sent), headers={**SNOM, "If-Match": etag}
            ) as response:
                assert response.status == 200
            await until(
                lambda: b"NOTE:after the crash" in (contacts_dir / "anna.mueller.vcf").read_bytes()
            )
        assert (contacts_dir / "new.person.vcf").exists()
    finally:
        stop_process(process)


async def wait_ok_without_recording(session: aiohttp.ClientSession, url: str, log: Path) -> None:
    """Wait until the gateway answers, as a client that is not the phone (so the phone's
    own record stays the one from before the crash)."""
    for _ in range(400):
        try:
            async with session.get(url, headers={"User-Agent": "probe"}) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(log.read_text())


# --- outbox changes stay conditional on what the merge saw ---------------------------


@pytest.mark.parametrize(
    ("policy", "phone_value_kept"), [("phone-wins", True), ("upstream-wins", False)]
)
async def test_a_field_changed_upstream_after_the_merge_is_a_conflict_under_the_policy(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    policy: str,
    phone_value_kept: bool,
) -> None:
    client = await aiohttp_client(
        create_app(make_config(document=f'conflict_policy = "{policy}"', extra=""))
    )
    engine = client.app[keys.ENGINE]
    _, entries = await fetch(client, SNOM)
    await engine.outbox.pause()  # the change waits in the outbox, as behind a slow upstream
    sent = edit(entries, "Lars Petersen", profession="Phone title", comment="phone note")
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    card = contacts_dir / "lars.petersen.vcf"
    card.write_bytes(card.read_bytes().replace(b"TITLE:Ejer", b"TITLE:Upstream title"))
    await engine.sources.state("demo", UserRef("")).refresh()
    engine.outbox.resume(engine.sources, engine.config, engine.composer.numbers_for)
    await drained(client)
    text = card.read_text()
    assert "NOTE:phone note" in text  # the field only the phone changed lands either way
    assert ("TITLE:Phone title" in text) is phone_value_kept
    assert ("TITLE:Upstream title" in text) is not phone_value_kept


async def test_a_delete_of_an_entry_edited_upstream_after_the_merge_keeps_it(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    _, entries = await fetch(client, SNOM)
    await engine.outbox.pause()
    sent = [x for x in entries if x.display_name != "Lars Petersen"]
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    card = contacts_dir / "lars.petersen.vcf"
    card.write_bytes(card.read_bytes().replace(b"TITLE:Ejer", b"TITLE:Promoted"))
    await engine.sources.state("demo", UserRef("")).refresh()
    engine.outbox.resume(engine.sources, engine.config, engine.composer.numbers_for)
    await drained(client)
    assert "TITLE:Promoted" in card.read_text()


# --- one bad change never blocks its source ------------------------------------------


async def test_an_unexpected_error_fails_one_change_and_later_changes_still_apply(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox, "RETRY_FIRST", 0.01)
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    connector = engine.sources.state("demo", UserRef("")).connector
    real_update = connector.update

    async def broken_for_anna(href: str, contact: object, etag: str) -> object:
        if href == "anna.mueller.vcf":
            raise ValueError("a bug nobody foresaw")
        return await real_update(href, contact, etag)  # type: ignore[arg-type]

    monkeypatch.setattr(connector, "update", broken_for_anna)
    _, entries = await fetch(client, SNOM)
    first = edit(entries, "Anna Müller", comment="never lands")
    assert (await client.put(URL, data=counterpath.render(first), headers=SNOM)).status == 200
    second = edit(first, "Lars Petersen", comment="lands")
    assert (await client.put(URL, data=counterpath.render(second), headers=SNOM)).status == 200
    await drained(client)
    assert "NOTE:lands" in (contacts_dir / "lars.petersen.vcf").read_text()
    (failed,) = engine.outbox.failed
    assert failed.entry_id == by_name(entries)["Anna Müller"].entry_id
    assert failed.attempts == outbox.UNEXPECTED_ATTEMPTS - 1
    assert "ValueError: a bug nobody foresaw" in (failed.error or "")


async def test_a_property_name_with_quotes_does_not_stop_later_edits(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    _, entries = await fetch(client, SNOM)
    odd = edit(entries, "Anna Müller", **{'a"b;c:d,e': 'v"1;2:3\n4', "x" * 300: "y" * 5000})
    assert (await client.put(URL, data=counterpath.render(odd), headers=SNOM)).status == 200
    later = edit(odd, "Lars Petersen", comment="later edit")
    assert (await client.put(URL, data=counterpath.render(later), headers=SNOM)).status == 200
    await drained(client)
    assert "NOTE:later edit" in (contacts_dir / "lars.petersen.vcf").read_text()
    _, now = await fetch(client, SNOM)
    assert by_name(now)["Anna Müller"].fields['a"b;c:d,e'] == 'v"1;2:3\n4'


async def test_failed_changes_are_bounded_in_memory_and_archived_after_a_while(
    make_config: ConfigFactory,
) -> None:
    engine = Engine(make_config())
    store = engine.open_store()
    old = 1.0  # long before FAILED_KEEP
    rows = [
        Item("tbook", "a@b", "demo", "", "delete", f"{i:032X}", created=old if i < 10 else 2e9)
        for i in range(outbox.FAILED_IN_MEMORY + 50)
    ]
    from gateway import outbox_rows

    outbox_rows.insert(store, rows)
    for item in rows:
        item.error = "refused"
        outbox_rows.update(store, item, "failed")
    await engine.outbox.load(store)
    # The old ones were archived on the way in; memory holds only the newest.
    assert engine.outbox.failed_count == outbox.FAILED_IN_MEMORY + 40
    assert len(engine.outbox.failed) == outbox.FAILED_IN_MEMORY
    database = sqlite3.connect(store.path)
    assert database.execute("SELECT count(*) FROM outbox_archive").fetchone() == (10,)
    assert database.execute("SELECT count(*) FROM outbox").fetchone() == (
        outbox.FAILED_IN_MEMORY + 40,
    )
    database.close()
    store.close()


# --- a reload never strands changes ------------------------------------------------------


def two_source_config(
    tmp_path: Path, contacts_dir: Path, personal: Path, with_personal: bool
) -> Path:
    personal_table = (
        f"""
[sources.personal]
type = "vcard-dir"
path = "{personal}"
"""
        if with_personal
        else ""
    )
    sources = '["personal", "demo"]' if with_personal else '["demo"]'
    write = 'write_to = "personal"' if with_personal else ""
    return write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"
[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
{personal_table}
[documents.tbook]
name = "tbook.xml"
sources = {sources}
{write}
""",
    )


async def test_a_reload_that_removes_a_source_parks_its_changes_until_it_returns(
    aiohttp_client: ClientFactory, tmp_path: Path, contacts_dir: Path
) -> None:
    personal = tmp_path / "personal"
    personal.mkdir()
    path = two_source_config(tmp_path, contacts_dir, personal, with_personal=True)
    client = await aiohttp_client(create_app(load_config(path)))
    engine = client.app[keys.ENGINE]
    _, entries = await fetch(client, SNOM)
    await engine.outbox.pause()  # the create waits, as behind a slow upstream
    sent = [*entries, Entry(NEW_ID, "Nina", {"home_number": ("+1 555 0300",)})]
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    engine.outbox.resume(engine.sources, engine.config, engine.composer.numbers_for)
    await engine.outbox.pause()
    path = two_source_config(tmp_path, contacts_dir, personal, with_personal=False)
    assert await reload(client.app, path)
    # Kept and reported, not applied, no crash; other documents go on serving.
    assert engine.outbox.depth == 1 and len(engine.outbox.parked()) == 1
    metrics = await (await client.get("/metrics")).text()
    assert "xcap_outbox_parked 1.0" in metrics
    assert (await client.get(URL)).status == 200
    assert engine.store is not None
    pending = (
        sqlite3.connect(engine.store.path)
        .execute("SELECT kind, source, state FROM outbox")
        .fetchall()
    )
    assert pending == [("create", "personal", "pending")]
    assert not list(personal.glob("*.vcf"))
    path = two_source_config(tmp_path, contacts_dir, personal, with_personal=True)
    assert await reload(client.app, path)
    await drained(client)
    assert [p.name for p in personal.glob("*.vcf")] == [f"{NEW_ID}.vcf"]
    assert engine.outbox.depth == 0


async def test_puts_during_concurrent_reloads_are_applied_once(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    config = make_config()
    client = await aiohttp_client(create_app(config))
    _, entries = await fetch(client, SNOM)
    puts = []
    reloads = []
    for index in range(5):
        sent = [
            *entries,
            Entry(f"{index:032X}", f"New {index}", {"home_number": (f"+1 555 03{index}0",)}),
        ]
        puts.append(
            client.put(URL, data=counterpath.render(sent), headers={"User-Agent": f"dev{index}"})
        )
        reloads.append(reload(client.app, config.path))
    results = await asyncio.gather(*puts, *reloads)
    assert [r.status for r in results[:5]] == [200] * 5  # type: ignore[attr-defined]
    assert all(results[5:])
    await drained(client)
    created = [p for p in contacts_dir.glob("*.vcf") if p.stem.startswith("0000")]
    assert len(created) == 5
    for card in created:
        assert card.read_text().count("BEGIN:VCARD") == 1


async def test_sighups_in_a_row_are_serialized_and_a_put_between_them_lands_once(
    tmp_path: Path, contacts_dir: Path
) -> None:
    port = free_port()
    config = write_config(tmp_path, config_text(contacts_dir, port))
    url = f"http://127.0.0.1:{port}{URL}"
    log = tmp_path / "serve.log"
    process = start_gateway(config, log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ok_without_recording(session, url, log)
            async with session.get(url, headers=SNOM) as response:
                entries = counterpath.parse(await response.read())
            sent = [*entries, Entry(NEW_ID, "Nina", {"home_number": ("+1 555 0300",)})]
            for _ in range(3):
                process.send_signal(signal.SIGHUP)
            async with session.put(url, data=counterpath.render(sent), headers=SNOM) as response:
                assert response.status == 200
            for _ in range(3):
                process.send_signal(signal.SIGHUP)
            # Signals sent in a row may arrive as one: at least one reload per burst.
            await until(lambda: log.read_text().count("event=reloaded") >= 2)
            await until(lambda: (contacts_dir / f"{NEW_ID}.vcf").exists())
        text = log.read_text()
        assert "Traceback" not in text and "reload_rejected" not in text
        assert (contacts_dir / f"{NEW_ID}.vcf").read_text().count("BEGIN:VCARD") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert process.returncode == 0


# --- the state database recovers from a failed COMMIT ----------------------------------


def test_a_failed_commit_is_rolled_back_and_the_next_transaction_works(tmp_path: Path) -> None:
    store = Store(tmp_path / FILE_NAME)
    with store.transaction() as db:
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute(
            "CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
        )
    store._db.execute("PRAGMA foreign_keys=ON")  # only outside a transaction
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as db:
        db.execute("INSERT INTO child VALUES (42)")  # fails only at COMMIT (deferred)
    with store.transaction() as db:  # would be "cannot start a transaction within a transaction"
        db.execute("INSERT INTO parent VALUES (1)")
    with store.transaction() as db:
        assert db.execute("SELECT count(*) FROM child").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM parent").fetchone() == (1,)
    store.close()


async def test_a_failing_versions_write_is_retried_and_marks_nothing_saved(
    make_config: ConfigFactory,
) -> None:
    engine = Engine(make_config())
    store = engine.open_store()
    await engine.sources.start(5)
    try:
        rendered = await engine.document("tbook", UserRef("alice@example.com"))
        with store.transaction() as db:
            db.execute("ALTER TABLE versions RENAME TO versions_away")
        await engine.served("tbook", UserRef("alice@example.com"), "snom|1", rendered)
        with store.transaction() as db:
            db.execute("ALTER TABLE versions_away RENAME TO versions")
            assert db.execute("SELECT count(*) FROM versions").fetchone() == (0,)
        assert await engine.versions.flush_soon(store)  # the next write carries it
        with store.transaction() as db:
            assert db.execute("SELECT etag FROM versions").fetchall() == [(rendered.etag,)]
            assert db.execute("SELECT etag FROM served").fetchall() == [(rendered.etag,)]
    finally:
        await engine.sources.stop()
        store.close()


# --- directory PUT preconditions -------------------------------------------------------


async def test_a_directory_put_honours_if_none_match_with_an_etag(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    etag, entries = await fetch(client, SNOM)
    body = counterpath.render(edit(entries, "Anna Müller", comment="x"))
    for header in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        response = await client.put(URL, data=body, headers={**SNOM, "If-None-Match": header})
        assert response.status == 412, header
    assert "NOTE:x" not in (contacts_dir / "anna.mueller.vcf").read_text()
    response = await client.put(URL, data=body, headers={**SNOM, "If-None-Match": '"other"'})
    assert response.status == 200


async def test_strict_etags_compare_entity_tags_not_header_text(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(document="strict_etags = true")))
    etag, entries = await fetch(client, SNOM)
    body = counterpath.render(edit(entries, "Anna Müller", comment="x"))
    weak = await client.put(URL, data=body, headers={**SNOM, "If-Match": f"W/{etag}"})
    assert weak.status == 412  # If-Match compares strongly
    listed = await client.put(URL, data=body, headers={**SNOM, "If-Match": f' "old" , {etag} '})
    assert listed.status == 200


async def test_a_control_character_upstream_is_no_edit_when_the_phone_sends_it_back(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    card = contacts_dir / "odd.vcf"
    card.write_bytes(
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:odd\r\nFN:Odd\x01Name\r\nN:Name;Odd\x0b;;;\r\n"
        b"NOTE:bell\x07 here\r\nTEL;TYPE=CELL:+1 555 0111\r\nEND:VCARD\r\n"
    )
    before = card.read_bytes()
    caplog.set_level(logging.INFO, logger="xcap_gateway")
    client = await aiohttp_client(create_app(make_config()))
    _, entries = await fetch(client, SNOM)
    odd = by_name(entries)["OddName"]
    assert odd.fields["given_name"] == "Odd" and odd.fields["comment"] == "bell here"
    sent = edit(entries, "Anna Müller", comment="only this")
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    await drained(client)
    # The cleaned text coming back is what the phone was served: no change to write.
    written = [
        r.__dict__["fields"].get("href")
        for r in caplog.records
        if getattr(r, "event", "") == "updated"
    ]
    assert written == ["anna.mueller.vcf"]
    assert card.read_bytes() == before
    assert "NOTE:only this" in (contacts_dir / "anna.mueller.vcf").read_text()


async def test_a_poll_writes_nothing_even_while_an_earlier_write_is_owed(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    """A failed write of what a device was served is retried by housekeeping, never by
    that device's polls (each poll would otherwise wait for a write)."""
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    assert engine.store is not None
    with engine.store.transaction() as db:
        db.execute("ALTER TABLE served RENAME TO served_away")
    etag, _ = await fetch(client, SNOM)  # recorded in memory; the write fails
    with engine.store.transaction() as db:
        db.execute("ALTER TABLE served_away RENAME TO served")
    for _ in range(5):
        response = await client.get(URL, headers={**SNOM, "If-None-Match": etag})
        assert response.status == 304
    with engine.store.transaction() as db:
        assert db.execute("SELECT count(*) FROM served").fetchone() == (0,)
    assert await engine.versions.flush_soon(engine.store)  # housekeeping's retry
    with engine.store.transaction() as db:
        assert db.execute("SELECT etag FROM served").fetchall() == [(etag,)]
