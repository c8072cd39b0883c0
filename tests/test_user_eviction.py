"""Per-user state is bounded (issue 13, item 4): idle users' source instances, renderings
and served-version histories leave memory, their upstream sessions are closed, and what
they knew comes back from the database, so a phone never notices.

Every request goes over a real socket to the gateway; the upstreams are a real folder of
vCards per user and a real Radicale server. Time moves by passing `now` to the
housekeeping step, never by sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from connectors.carddav import CardDavConnector
from gateway import keys
from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.engine import Engine
from gateway.eviction import evict_idle
from gateway.model import UserRef
from gateway.xcap import counterpath
from tests.conftest import drained, write_config
from tests.dav.servers import DavServer, vcard

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
SNOM = {"User-Agent": "snom D785"}
#: Far enough ahead that every user counts as idle (user_idle_timeout is 1 s here).
LATER = 60.0


def card(uid: str, name: str, number: str) -> str:
    return (
        f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\n"
        f"TEL;TYPE=CELL:{number}\r\nEND:VCARD\r\n"
    )


def books_config(tmp_path: Path, users: int, server: str = "", document: str = "") -> Config:
    """A per-user vcard-dir book for u0 … u{users-1}, each with two cards."""
    root = tmp_path / "books"
    for index in range(users):
        folder = root / f"u{index}"
        folder.mkdir(parents=True)
        (folder / "anna.vcf").write_text(card("anna", f"Anna {index}", "+49 171 100"))
        (folder / "bert.vcf").write_text(card("bert", f"Bert {index}", "+49 171 200"))
    text = f"""
[server]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/var"
user_idle_timeout = "1s"
put_wait = 0
{server}

[sources.mine]
type = "vcard-dir"
path = "{root}/{{user}}"

[documents.tbook]
name = "tbook.xml"
sources = ["mine"]
write_to = "mine"
{document}
"""
    return load_config(write_config(tmp_path, text))


def url(index: int) -> str:
    return f"/users/sip:u{index}@example.com/tbook.xml"


def user(index: int) -> UserRef:
    return UserRef(f"u{index}@example.com")


def per_user_states(engine: Engine) -> set[str]:
    return {state.user_key for state in engine.sources.states() if state.user_key}


def in_memory(engine: Engine, index: int) -> bool:
    xui = user(index).xui
    return (
        xui in per_user_states(engine)
        or xui in engine.composer.cached_users()
        or xui in engine.versions.users_in_memory()
    )


def syncs(engine: Engine) -> float:
    value = engine.metrics.registry.get_sample_value(
        "xcap_syncs_total", {"source": "mine", "result": "ok"}
    )
    return value or 0.0


async def fetch(client: Client, index: int) -> tuple[str, bytes]:
    response = await client.get(url(index), headers=SNOM)
    assert response.status == 200, await response.text()
    return response.headers["ETag"], await response.read()


async def test_fifty_users_leave_at_most_max_active_users_in_memory(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(
        create_app(books_config(tmp_path, 50, server="max_active_users = 10"))
    )
    engine = client.app[keys.ENGINE]
    for index in range(50):
        etag, body = await fetch(client, index)
        assert f"Anna {index}".encode() in body
        assert len(per_user_states(engine)) <= 10
        assert len(engine.composer.cached_users()) <= 10
    # The most recent users stay; the first ones went as the later ones came.
    assert per_user_states(engine) == {user(index).xui for index in range(40, 50)}
    assert engine.composer.cached_users() == per_user_states(engine)
    await evict_idle(engine)  # housekeeping bounds the served-version histories too
    assert engine.versions.histories <= 10
    assert engine.metrics.registry.get_sample_value("xcap_active_users") == 10


async def test_housekeeping_drops_users_idle_longer_than_user_idle_timeout(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(books_config(tmp_path, 2)))
    engine = client.app[keys.ENGINE]
    await fetch(client, 0)
    await fetch(client, 1)
    assert in_memory(engine, 0) and in_memory(engine, 1)
    await evict_idle(engine, now=time.monotonic())  # nobody idle yet
    assert in_memory(engine, 0) and in_memory(engine, 1)
    await evict_idle(engine, now=time.monotonic() + LATER)
    assert not in_memory(engine, 0) and not in_memory(engine, 1)
    assert engine.sources.active_users == 0 and engine.versions.histories == 0


async def test_after_eviction_a_get_returns_the_same_bytes_and_etag_without_a_sync(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(books_config(tmp_path, 1)))
    engine = client.app[keys.ENGINE]
    etag, body = await fetch(client, 0)
    synced = syncs(engine)
    before = engine.sources.state("mine", user(0))
    await evict_idle(engine, now=time.monotonic() + LATER)
    assert not in_memory(engine, 0)
    assert await fetch(client, 0) == (etag, body)  # from the stored snapshot
    assert syncs(engine) == synced  # the snapshot was fresh: no upstream sync
    assert engine.sources.state("mine", user(0)) is not before
    # A poll with the ETag it holds is a 304, as before the eviction.
    await evict_idle(engine, now=time.monotonic() + 2 * LATER)
    response = await client.get(url(0), headers={**SNOM, "If-None-Match": etag})
    assert response.status == 304 and response.headers["ETag"] == etag


async def test_a_put_after_eviction_merges_against_the_version_the_phone_holds(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """The phone got Anna and Bert; Carla arrived upstream since. Evicted, then the phone
    PUTs (no If-Match) with Anna edited and Bert deleted: the base read back from the
    database is the version it holds, so Bert is deleted, Anna edited, Carla (never seen
    by the phone) kept."""
    client = await aiohttp_client(create_app(books_config(tmp_path, 1)))
    engine = client.app[keys.ENGINE]
    _, body = await fetch(client, 0)
    folder = tmp_path / "books" / "u0"
    (folder / "carla.vcf").write_text(card("carla", "Carla 0", "+49 171 300"))
    assert await engine.sources.state("mine", user(0)).refresh()  # the snapshot has Carla
    await evict_idle(engine, now=time.monotonic() + LATER)
    assert not in_memory(engine, 0)
    entries = {entry.display_name: entry for entry in counterpath.parse(body)}
    anna = entries["Anna 0"]
    sent = [type(anna)(anna.entry_id, anna.display_name, {**anna.fields, "comment": "edited"})]
    response = await client.put(url(0), data=counterpath.render(sent), headers=SNOM)
    assert response.status == 200
    await drained(client)
    assert "NOTE:edited" in (folder / "anna.vcf").read_text()
    assert not (folder / "bert.vcf").exists()
    assert (folder / "carla.vcf").exists()
    _, now = await fetch(client, 0)
    assert b"Carla 0" in now and b"Bert 0" not in now


async def test_a_history_not_yet_written_stays_in_memory(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """A version served but not yet in the database (the write failed) is not evicted:
    only once written does the history leave memory, and it is read back whole."""
    client = await aiohttp_client(create_app(books_config(tmp_path, 1)))
    engine = client.app[keys.ENGINE]
    store = engine.store
    assert store is not None
    with store.transaction() as db:
        db.execute("ALTER TABLE served RENAME TO served_away")
    etag, _ = await fetch(client, 0)  # recorded in memory; its write fails
    with store.transaction() as db:
        db.execute("ALTER TABLE served_away RENAME TO served")
    await evict_idle(engine, now=time.monotonic() + LATER)
    assert user(0).xui in engine.versions.users_in_memory()
    assert await engine.versions.flush_soon(store)
    await evict_idle(engine, now=time.monotonic() + 2 * LATER)
    assert user(0).xui not in engine.versions.users_in_memory()
    base = engine.versions.base_for("tbook", user(0).xui, f"{SNOM['User-Agent']}|127.0.0.1", [etag])
    assert base is not None and {e.display_name for e in base.values()} == {"Anna 0", "Bert 0"}


async def test_a_user_with_changes_pending_or_a_sync_under_way_is_not_evicted(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(books_config(tmp_path, 2)))
    engine = client.app[keys.ENGINE]
    _, body = await fetch(client, 0)
    await fetch(client, 1)
    await engine.outbox.pause()  # the change waits in the outbox
    anna = next(e for e in counterpath.parse(body) if e.display_name == "Anna 0")
    sent = [
        type(anna)(anna.entry_id, anna.display_name, {**anna.fields, "comment": "later"}),
        *(e for e in counterpath.parse(body) if e is not anna and e.display_name != "Anna 0"),
    ]
    assert (await client.put(url(0), data=counterpath.render(sent), headers=SNOM)).status == 200
    busy = engine.sources.state("mine", user(1))
    async with busy.lock:  # a sync of u1 under way
        await evict_idle(engine, now=time.monotonic() + LATER)
        assert user(0).xui in per_user_states(engine)
        assert engine.sources.state("mine", user(1)) is busy
    engine.outbox.resume(engine.sources, engine.config, engine.composer.numbers_for)
    await drained(client)
    assert "NOTE:later" in (tmp_path / "books" / "u0" / "anna.vcf").read_text()
    await evict_idle(engine, now=time.monotonic() + 2 * LATER)
    assert per_user_states(engine) == set()
    # A write after eviction lands too (the outbox gets a fresh instance).
    _, body = await fetch(client, 0)
    sent = [
        type(e)(e.entry_id, e.display_name, {**e.fields, "comment": "again"})
        if e.display_name == "Anna 0"
        else e
        for e in counterpath.parse(body)
    ]
    await evict_idle(engine, now=time.monotonic() + 3 * LATER)
    assert (await client.put(url(0), data=counterpath.render(sent), headers=SNOM)).status == 200
    await drained(client)
    assert "NOTE:again" in (tmp_path / "books" / "u0" / "anna.vcf").read_text()


async def test_prune_forgets_served_records_of_idle_users_after_keep_versions_for(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(
        create_app(books_config(tmp_path, 2, document='keep_versions_for = "1h"'))
    )
    engine = client.app[keys.ENGINE]
    store = engine.store
    assert store is not None
    await fetch(client, 0)
    await fetch(client, 1)
    await evict_idle(engine, now=time.monotonic() + LATER)  # both leave memory
    await fetch(client, 1)  # u1 is back: its records are written as memory has them
    assert await engine.versions.prune(now=time.time() + 86400) == 1  # u0's, a day later
    with store.transaction() as db:
        users = {row[0] for row in db.execute("SELECT user FROM served")}
        versions = db.execute("SELECT count(*) FROM versions").fetchone()[0]
    assert users == {user(1).xui} and versions == 1


# --- CardDAV: the upstream session of an evicted user is closed ---------------------------


def dav_config(tmp_path: Path, server: DavServer) -> Config:
    return load_config(
        write_config(
            tmp_path,
            f"""
[server]
listen = "127.0.0.1:0"
state_dir = "{tmp_path}/var"
user_idle_timeout = "1s"

[sources.personal]
type = "carddav"
url = "{server.origin}/{{user}}/contacts/"
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


async def test_an_evicted_carddav_users_session_is_closed(
    aiohttp_client: ClientFactory, radicale: DavServer, tmp_path: Path
) -> None:
    radicale.put_card("/alice/contacts/omar.vcf", vcard("omar", "Omar", "TEL:+1 555 0200"), "alice")
    client = await aiohttp_client(create_app(dav_config(tmp_path, radicale)))
    engine = client.app[keys.ENGINE]
    path = "/users/sip:alice@example.com/tbook.xml"
    first = await client.get(path)
    assert first.status == 200 and b"Omar" in await first.read()
    state = engine.sources.state("personal", UserRef("alice@example.com"))
    connector = state.connector
    assert isinstance(connector, CardDavConnector)
    session = connector._session
    assert session is not None and not session.closed
    await evict_idle(engine, now=time.monotonic() + LATER)
    # A request right after the decision gets a working instance of its own, whether the
    # old session is closed yet or not.
    again = await client.get(path)
    assert again.status == 200 and again.headers["ETag"] == first.headers["ETag"]
    assert engine.sources.state("personal", UserRef("alice@example.com")) is not state
    await engine.sources.stop()  # waits for closes under way
    assert session.closed and connector._session is None


@pytest.mark.parametrize("users", [3])
async def test_a_new_user_beyond_the_limit_never_evicts_one_being_served(
    aiohttp_client: ClientFactory, tmp_path: Path, users: int
) -> None:
    """With max_active_users = 1 every new user evicts the last one; requests of the
    users in turn all succeed with their own contacts."""
    client = await aiohttp_client(
        create_app(books_config(tmp_path, users, server="max_active_users = 1"))
    )
    engine = client.app[keys.ENGINE]
    seen = {index: await fetch(client, index) for index in range(users)}
    for index in range(users):
        assert await fetch(client, index) == seen[index]
        assert engine.sources.active_users == 1


def failed_syncs(engine: Engine) -> float:
    value = engine.metrics.registry.get_sample_value(
        "xcap_syncs_total", {"source": "mine", "result": "failed"}
    )
    return value or 0.0


async def settled(engine: Engine) -> None:
    """Until the background refreshes the requests started are done."""
    for _ in range(500):
        if not engine.sources._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("background refreshes still running")


async def test_an_unchanged_sync_keeps_the_stored_snapshot_fresh(
    aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync that finds nothing new still tells the store when it ran: an instance made
    again after eviction must not take a fresh snapshot for a stale one and sync again
    at every request (found with max_active_users = 1: 62 syncs instead of 8)."""
    client = await aiohttp_client(create_app(books_config(tmp_path, 1)))
    engine = client.app[keys.ENGINE]
    await fetch(client, 0)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 1000)  # past the 15 m interval
    await fetch(client, 0)  # stale: a background refresh, which finds nothing new
    await settled(engine)
    synced = syncs(engine)
    await evict_idle(engine, now=time.monotonic() + LATER)
    assert user(0).xui not in per_user_states(engine)
    await fetch(client, 0)
    await settled(engine)
    assert syncs(engine) == synced, "the reloaded snapshot was taken for a stale one"


async def test_an_evicted_failing_user_keeps_its_retry_backoff(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """u7's folder is a file: its source fails. Evicting it must not let the next request try
    the upstream again at once (an outage hammered: 60 failed syncs instead of 3)."""
    client = await aiohttp_client(create_app(books_config(tmp_path, 1)))
    engine = client.app[keys.ENGINE]
    (tmp_path / "books" / "u7").write_text("a file where the folder should be")
    response = await client.get(url(7), headers=SNOM)
    assert response.status == 503
    assert failed_syncs(engine) == 1
    for round_ in range(3):
        await evict_idle(engine, now=time.monotonic() + LATER * (round_ + 1))
        assert engine.sources.active_users == 0
        response = await client.get(url(7), headers=SNOM)
        assert response.status == 503
    assert failed_syncs(engine) == 1
