"""An LDAP directory behind the gateway: phones read it, their edits reach slapd, and
changes in the directory reach the phones through incremental sync."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from ldap3 import MODIFY_REPLACE

from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.engine import Engine
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.xcap import counterpath
from tests.conftest import drained, write_config
from tests.ldap.server import (
    CONTACTS,
    PEOPLE,
    SERVICE_PASSWORD,
    WRITER_DN,
    Slapd,
    admin_connection,
)

URL = "/users/sip:alice@example.com/tbook.xml"
ALICE = UserRef("alice@example.com")
Client = TestClient[web.Request, web.Application]
MakeSlapd = Callable[..., Slapd]


def ldap_config(
    tmp_path: Path, server: Slapd, source: str = "", write_to: str = 'write_to = "people"'
) -> Config:
    (tmp_path / "ldap.password").write_text(SERVICE_PASSWORD + "\n")
    return load_config(
        write_config(
            tmp_path,
            f"""
[server]
listen = "127.0.0.1:0"

[sources.people]
type = "ldap"
url = "{server.url}"
bind_dn = "{WRITER_DN}"
password_file = "ldap.password"
base_dn = "dc=example,dc=com"
filter = "(objectClass=inetOrgPerson)"
create_base_dn = "{CONTACTS}"
allow_delete = true
interval = "1h"
{source}

[documents.tbook]
name = "tbook.xml"
sources = ["people"]
{write_to}
""",
        )
    )


async def test_a_phones_edit_create_and_delete_reach_slapd(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_slapd: MakeSlapd,
    tmp_path: Path,
) -> None:
    server = make_slapd(people=30)
    client = await aiohttp_client(create_app(ldap_config(tmp_path, server)))
    response = await client.get(URL)
    assert response.status == 200
    entries = {e.display_name: e for e in counterpath.parse(await response.read())}
    assert len(entries) == 30
    edited = entries["Person 000002"]
    sent = [
        Entry(
            edited.entry_id,
            edited.display_name,
            {**edited.fields, "mobile_number": ("+49 170 2222222",), "profession": "Lead"},
        ),
        *[e for name, e in entries.items() if name not in ("Person 000002", "Person 000003")],
        Entry(
            "534BB0BC2DDA09E2567C5D8D5B2C0120",
            "Erika Mustermann",
            {"given_name": "Erika", "surname": "Mustermann", "business_number": ("+49 30 123",)},
        ),
    ]
    put = await client.put(URL, data=counterpath.render(sent))
    assert put.status == 200
    await drained(client)
    admin = admin_connection(server)
    admin.search(f"uid=user000002,{PEOPLE}", "(objectClass=*)", attributes=["*"])
    person = admin.entries[0]
    assert person.mobile.value == "+49 170 2222222" and person.title.value == "Lead"
    assert person.mail.value == "user000002@example.com"  # untouched
    assert not admin.search(f"uid=user000003,{PEOPLE}", "(objectClass=*)")
    admin.search(CONTACTS, "(cn=Erika Mustermann)", attributes=["sn", "telephoneNumber"])
    assert admin.entries[0].telephoneNumber.value == "+49 30 123"
    admin.unbind()
    after = {e.display_name: e for e in counterpath.parse(await (await client.get(URL)).read())}
    assert after["Person 000002"].fields["mobile_number"] == ("+49 170 2222222",)
    assert "Person 000003" not in after and "Erika Mustermann" in after


async def test_read_only_ldap_ignores_edits(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_slapd: MakeSlapd,
    tmp_path: Path,
) -> None:
    server = make_slapd(people=3)
    client = await aiohttp_client(
        create_app(ldap_config(tmp_path, server, "read_only = true", write_to=""))
    )
    entries = counterpath.parse(await (await client.get(URL)).read())
    changed = [Entry(e.entry_id, "Renamed", e.fields) for e in entries[:1]]
    assert (await client.put(URL, data=counterpath.render(changed))).status == 200
    await drained(client)
    admin = admin_connection(server)
    admin.search(PEOPLE, "(objectClass=inetOrgPerson)", attributes=["displayName"])
    assert sorted(e.displayName.value for e in admin.entries) == [
        "Person 000000",
        "Person 000001",
        "Person 000002",
    ]
    admin.unbind()


async def test_directory_changes_reach_the_document_incrementally(
    make_slapd: MakeSlapd, tmp_path: Path
) -> None:
    server = make_slapd(people=10)
    engine = Engine(ldap_config(tmp_path, server))
    await engine.start()
    try:
        before = await engine.document("tbook", ALICE)
        state = engine.sources.state("people", ALICE)
        assert '"mode": "syncrepl"' in (state.token or "")
        assert await state.refresh() is False  # nothing changed: nothing re-rendered
        admin = admin_connection(server)
        admin.modify(f"uid=user000001,{PEOPLE}", {"displayName": [(MODIFY_REPLACE, ["Renamed"])]})
        admin.delete(f"uid=user000002,{PEOPLE}")
        admin.unbind()
        assert await state.refresh() is True
        after = await engine.document("tbook", ALICE)
        names = {e.display_name for e in after.entries.values()}
        assert "Renamed" in names and "Person 000002" not in names and len(names) == 9
        assert after.etag != before.etag
        # The directory goes away: the last good data keeps being served.
        server.stop()
        assert await state.refresh() is False
        assert state.last_error and "no LDAP server could be used" in state.last_error
        assert await engine.document("tbook", ALICE) is after
    finally:
        await engine.stop()


async def test_a_slow_first_pull_does_not_hold_up_serving(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_slapd: MakeSlapd,
    tmp_path: Path,
) -> None:
    server = make_slapd(people=5000)
    config = ldap_config(tmp_path, server)
    config = config.model_copy(
        update={
            "server": config.server.model_copy(
                # Neither the start nor a request waits for the pull (first_sync_wait: see
                # test_first_contact for the wait).
                update={"startup_sync_wait": 0.001, "first_sync_wait": 0.001}
            )
        }
    )
    client = await aiohttp_client(create_app(config))
    first = await client.get(URL)  # the 5,000-entry pull takes far longer than this
    assert first.status == 503 and first.headers["Retry-After"]
    for _ in range(600):
        response = await client.get(URL)
        if response.status == 200:
            break
        await asyncio.sleep(0.05)
    assert response.status == 200
    assert len(counterpath.parse(await response.read())) == 1000  # capped at max_entries


async def test_by_default_a_phone_cannot_delete_people_from_ldap(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_slapd: MakeSlapd,
    tmp_path: Path,
) -> None:
    server = make_slapd(people=3)
    config = ldap_config(tmp_path, server)
    source = config.sources["people"].model_copy(update={"allow_delete": None})
    client = await aiohttp_client(
        create_app(config.model_copy(update={"sources": {"people": source}}))
    )
    entries = counterpath.parse(await (await client.get(URL)).read())
    response = await client.put(URL, data=counterpath.render(entries[1:]))
    assert response.status == 200
    await drained(client)
    admin = admin_connection(server)
    admin.search(PEOPLE, "(objectClass=inetOrgPerson)", attributes=["uid"])
    assert len(admin.entries) == 3
    admin.unbind()
    # The entry the phone dropped comes back at its next fetch.
    refetched = counterpath.parse(
        await (await client.get(URL, headers={"If-None-Match": response.headers["ETag"]})).read()
    )
    assert len(refetched) == 3
