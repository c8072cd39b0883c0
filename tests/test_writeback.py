"""Write-back over HTTP: merge bases, conflicts, devices, the outbox surviving an upstream
outage and a killed gateway, and permanent failures that revert."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import keys
from gateway.app import create_app
from gateway.config import load_config
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory, drained, write_config
from tests.dav.servers import DavServer, vcard
from tests.ldap.server import PEOPLE, SERVICE_PASSWORD, WRITER_DN, Slapd
from tests.support import free_port, start_gateway

URL = "/users/sip:alice@example.com/tbook.xml"
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
SNOM = {"User-Agent": "snomD785/10.1.54.13"}
BRIA = {"User-Agent": "Bria 6 release 6.5.3"}


def edit(entries: list[Entry], name: str, **fields: object) -> list[Entry]:
    return [
        Entry(x.entry_id, x.display_name, {**x.fields, **fields}) if x.display_name == name else x  # type: ignore[dict-item]
        for x in entries
    ]


async def fetch(client: Client, headers: dict[str, str] | None = None) -> tuple[str, list[Entry]]:
    response = await client.get(URL, headers=headers)
    return response.headers["ETag"], counterpath.parse(await response.read())


def by_name(entries: list[Entry]) -> dict[str, Entry]:
    return {x.display_name: x for x in entries}


async def test_two_devices_editing_from_the_same_base_both_keep_their_edits(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    _, desk = await fetch(client, SNOM)
    _, soft = await fetch(client, BRIA)
    desk_sent = edit(desk, "Anna Müller", company="Brandt AG")
    soft_sent = edit(
        edit(soft, "Anna Müller", comment="call after 3"), "Emma Thompson", profession="VP Sales"
    )
    assert (await client.put(URL, data=counterpath.render(desk_sent), headers=SNOM)).status == 200
    assert (await client.put(URL, data=counterpath.render(soft_sent), headers=BRIA)).status == 200
    await drained(client)
    _, now = await fetch(client)
    anna, emma = by_name(now)["Anna Müller"], by_name(now)["Emma Thompson"]
    assert anna.fields["company"] == "Brandt AG" and anna.fields["comment"] == "call after 3"
    assert emma.fields["profession"] == "VP Sales"


async def test_a_stale_if_match_still_merges_and_keeps_the_upstream_change(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    etag, entries = await fetch(client)
    card = contacts_dir / "lars.petersen.vcf"
    card.write_bytes(card.read_bytes().replace(b"Ejer", b"Direktor"))
    await client.app[keys.ENGINE].sources.state("demo", UserRef("")).refresh()
    sent = edit(entries, "Anna Müller", company="Brandt AG")
    response = await client.put(URL, data=counterpath.render(sent), headers={"If-Match": etag})
    assert response.status == 200
    await drained(client)
    _, now = await fetch(client)
    assert by_name(now)["Lars Petersen"].fields["profession"] == "Direktor"  # not reverted
    assert by_name(now)["Anna Müller"].fields["company"] == "Brandt AG"


async def test_strict_etags_answer_412_to_a_stale_if_match(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(document="strict_etags = true")))
    etag, entries = await fetch(client)
    sent = counterpath.render(edit(entries, "Anna Müller", company="X"))
    assert (await client.put(URL, data=sent, headers={"If-Match": '"stale"'})).status == 412
    assert (await client.put(URL, data=sent, headers={"If-None-Match": "*"})).status == 412
    assert (await client.put(URL, data=sent, headers={"If-Match": etag})).status == 200
    await drained(client)
    assert "ORG:X" in (contacts_dir / "anna.mueller.vcf").read_text()


@pytest.mark.parametrize(
    ("policy", "expect_back"), [("phone-wins", True), ("upstream-wins", False)]
)
async def test_an_entry_deleted_upstream_comes_back_only_if_edited_and_phone_wins(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    policy: str,
    expect_back: bool,
) -> None:
    client = await aiohttp_client(create_app(make_config(document=f'conflict_policy = "{policy}"')))
    _, entries = await fetch(client, SNOM)
    (contacts_dir / "jan.kowalski.vcf").unlink()
    (contacts_dir / "quinn.obrien.vcf").unlink()
    await client.app[keys.ENGINE].sources.state("demo", UserRef("")).refresh()
    sent = edit(entries, "Jan Kowalski", comment="still here")
    assert (await client.put(URL, data=counterpath.render(sent), headers=SNOM)).status == 200
    await drained(client)
    names = {x.display_name for x in (await fetch(client))[1]}
    assert ("Jan Kowalski" in names) is expect_back
    assert "Quinn O'Brien" not in names  # unedited: not resurrected


def dav_config_text(server: DavServer, port: int = 0) -> str:
    return f"""
[server]
listen = "127.0.0.1:{port}"
state_dir = "var"
[sources.personal]
type = "carddav"
url = "{server.origin}/{{user}}/contacts/"
username = "svc"
password = "svc-pw"
interval = "1h"
retry_interval = "0.2s"
[documents.tbook]
name = "tbook.xml"
sources = ["personal"]
write_to = "personal"
"""


async def test_an_upstream_outage_during_the_put_loses_nothing(
    aiohttp_client: ClientFactory, radicale: DavServer, tmp_path: Path
) -> None:
    radicale.put_card(
        "/alice/contacts/omar.vcf", vcard("omar", "Omar", "TEL;TYPE=CELL:+1 555 0200"), "alice"
    )
    client = await aiohttp_client(
        create_app(load_config(write_config(tmp_path, dav_config_text(radicale))))
    )
    _, entries = await fetch(client)
    radicale.stop()  # the address book goes down
    sent = [
        *edit(entries, "Omar", mobile_number=("+1 555 0299",)),
        Entry("534BB0BC2DDA09E2567C5D8D5B2C0120", "Nina", {"home_number": ("+1 555 0300",)}),
    ]
    response = await client.put(URL, data=counterpath.render(sent))
    assert response.status == 200
    engine = client.app[keys.ENGINE]
    assert engine.outbox.depth == 2
    # Phones already see what they sent, while it waits for the server.
    _, shown = await fetch(client)
    assert by_name(shown)["Omar"].fields["mobile_number"] == ("+1 555 0299",) and "Nina" in by_name(
        shown
    )
    # Tried against the stopped server, failed, and still waiting for it.
    for _ in range(500):
        queue = engine.outbox.pending("personal", "alice@example.com")
        if queue and queue[0].attempts >= 1:
            break
        await asyncio.sleep(0.02)
    assert engine.outbox.pending("personal", "alice@example.com")[0].attempts >= 1
    assert engine.outbox.depth == 2
    radicale.start()
    await drained(client)
    stored = radicale.request("GET", "/alice/contacts/omar.vcf", user="alice")[1].decode()
    assert "TEL;TYPE=CELL:+1 555 0299" in stored
    assert (
        radicale.request(
            "GET", "/alice/contacts/534BB0BC2DDA09E2567C5D8D5B2C0120.vcf", user="alice"
        )[0]
        == 200
    )


async def test_a_gateway_killed_with_changes_pending_applies_them_once_after_restart(
    radicale: DavServer, tmp_path: Path
) -> None:
    radicale.put_card(
        "/alice/contacts/omar.vcf", vcard("omar", "Omar", "TEL;TYPE=CELL:+1 555 0200"), "alice"
    )
    port = free_port()
    config = write_config(tmp_path, dav_config_text(radicale, port))
    url = f"http://127.0.0.1:{port}{URL}"

    def serve() -> subprocess.Popen[bytes]:
        return start_gateway(config, tmp_path / "serve.log")

    async def wait_ok(session: aiohttp.ClientSession) -> bytes:
        for _ in range(200):
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return await response.read()
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError((tmp_path / "serve.log").read_text())

    process = serve()
    try:
        async with aiohttp.ClientSession() as session:
            entries = counterpath.parse(await wait_ok(session))
            radicale.stop()
            sent = [
                *edit(entries, "Omar", comment="edited"),
                Entry(
                    "534BB0BC2DDA09E2567C5D8D5B2C0120", "Nina", {"home_number": ("+1 555 0300",)}
                ),
            ]
            async with session.put(url, data=counterpath.render(sent)) as response:
                assert response.status == 200
        os.kill(process.pid, signal.SIGKILL)  # committed, not applied
        process.wait()
        radicale.start()
        process = serve()
        async with aiohttp.ClientSession() as session:
            await wait_ok(session)
            for _ in range(200):
                listing = radicale.request(
                    "PROPFIND", "/alice/contacts/", b"", "alice", {"Depth": "1"}
                )[1]
                omar = radicale.request("GET", "/alice/contacts/omar.vcf", user="alice")[1]
                if listing.count(b".vcf</") == 2 and b"NOTE:edited" in omar:
                    break
                await asyncio.sleep(0.1)
        listing = radicale.request("PROPFIND", "/alice/contacts/", b"", "alice", {"Depth": "1"})[1]
        assert listing.count(b".vcf</") == 2  # Omar and Nina, no duplicate of Nina
        assert (
            b"NOTE:edited" in radicale.request("GET", "/alice/contacts/omar.vcf", user="alice")[1]
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


async def test_a_change_the_directory_refuses_is_recorded_and_reverts(
    aiohttp_client: ClientFactory, make_slapd: Callable[..., Slapd], tmp_path: Path
) -> None:
    server = make_slapd(people=2)
    config = load_config(
        write_config(
            tmp_path,
            f"""
[server]
listen = "127.0.0.1:0"
[sources.people]
type = "ldap"
url = "{server.url}"
bind_dn = "{WRITER_DN}"
password = "{SERVICE_PASSWORD}"
base_dn = "{PEOPLE}"
attributes = {{ sip = ["noSuchAttribute"] }}
[documents.tbook]
name = "tbook.xml"
sources = ["people"]
""",
        )
    )
    client = await aiohttp_client(create_app(config))
    _, entries = await fetch(client)
    sent = edit(entries, "Person 000001", sip_address=("100",))
    assert (await client.put(URL, data=counterpath.render(sent))).status == 200
    engine = client.app[keys.ENGINE]
    await drained(client)
    (failed,) = engine.outbox.failed
    assert failed.kind == "update" and "refused by the directory's schema" in (failed.error or "")
    _, now = await fetch(client)
    assert "sip_address" not in by_name(now)["Person 000001"].fields  # back to upstream


async def test_a_change_applied_again_after_a_crash_lands_once(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    from gateway.engine import Engine
    from gateway.outbox import Item

    engine = Engine(make_config())
    await engine.start()
    try:
        new = Entry("534BB0BC2DDA09E2567C5D8D5B2C0120", "Nina", {"home_number": ("+1 555 0300",)})
        anna = by_name(list((await engine.document("tbook", UserRef("a@b"))).entries.values()))[
            "Anna Müller"
        ]
        changed = Entry(anna.entry_id, anna.display_name, {**anna.fields, "comment": "once"})
        origin = (await engine.document("tbook", UserRef("a@b"))).origins[anna.entry_id]

        def items() -> list[Item]:
            return [
                Item("tbook", "a@b", "demo", "", "create", new.entry_id, after=new),
                Item(
                    "tbook", "a@b", "demo", "", "update", anna.entry_id, origin.href, anna, changed
                ),
            ]

        await engine.outbox.commit(items())
        assert await engine.outbox.drained()
        # As if the gateway died after applying but before recording: the same changes again.
        await engine.outbox.commit(items())
        assert await engine.outbox.drained()
        assert not engine.outbox.failed
        cards = [p.read_text() for p in contacts_dir.glob("*.vcf")]
        assert sum("FN:Nina" in text for text in cards) == 1
        assert (contacts_dir / "anna.mueller.vcf").read_text().count("NOTE:once") == 1
    finally:
        await engine.stop()
