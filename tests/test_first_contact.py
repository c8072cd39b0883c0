"""A per-user book's first phones: they wait (within [server] first_sync_wait) for its first
sync instead of getting 503 and an empty list until their next poll, hours later on Snom's
default; one sync serves them all, and one slower than the wait still ends in the book."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import load_config
from tests.conftest import write_config
from tests.dav.proxy import WeakeningProxy
from tests.dav.servers import DavServer, vcard

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
URL = "/users/sip:alice@example.com/tbook.xml"
PHONES = 10


@pytest.fixture
async def held(
    radicale: DavServer,
) -> AsyncIterator[tuple[WeakeningProxy, asyncio.Event, asyncio.Event]]:
    """Radicale behind a proxy that holds the first request of a sync (PROPFIND or REPORT)
    until the test releases it: (proxy, reached, release)."""
    radicale.put_card("/alice/contacts/omar.vcf", vcard("omar", "Omar", "TEL:+1 555 0200"), "alice")
    proxy = WeakeningProxy(radicale.origin)
    await proxy.start()
    reached, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        proxy.before.clear()  # only the first one
        reached.set()
        await release.wait()

    proxy.before["PROPFIND"] = proxy.before["REPORT"] = hold
    yield proxy, reached, release
    release.set()
    await proxy.close()


async def client_for(
    aiohttp_client: ClientFactory, tmp_path: Path, origin: str, wait: str
) -> Client:
    config = write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"
first_sync_wait = "{wait}"
[sources.personal]
type = "carddav"
url = "{origin}/{{user}}/contacts/"
username = "svc"
password = "svc-pw"
[documents.tbook]
name = "tbook.xml"
sources = ["personal"]
""",
    )
    return await aiohttp_client(create_app(load_config(config)))


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(600):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


def waiting(caplog: pytest.LogCaptureFixture) -> int:
    return sum(getattr(r, "event", None) == "first_sync_wait" for r in caplog.records)


async def test_the_first_phones_of_a_book_wait_for_its_first_sync(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    held: tuple[WeakeningProxy, asyncio.Event, asyncio.Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, reached, release = held
    caplog.set_level(logging.DEBUG, logger="xcap_gateway")
    client = await client_for(aiohttp_client, tmp_path, proxy.origin, "60s")
    gets: list[asyncio.Future[ClientResponse]] = [
        asyncio.ensure_future(client.get(URL)) for _ in range(PHONES)
    ]
    await until(reached.is_set, "the book's first sync starts")
    await until(lambda: waiting(caplog) >= PHONES, "every phone waits for it")
    release.set()
    answers = await asyncio.gather(*gets)
    assert [a.status for a in answers] == [200] * PHONES
    bodies = [await answer.read() for answer in answers]
    assert all(b"Omar" in body for body in bodies)
    syncs = [m for m, _ in proxy.seen if m in ("PROPFIND", "REPORT")]
    assert syncs[0] in ("PROPFIND", "REPORT") and len(syncs) <= 3, "one sync for all of them"


async def test_a_first_sync_slower_than_the_wait_answers_503_and_still_lands(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    held: tuple[WeakeningProxy, asyncio.Event, asyncio.Event],
) -> None:
    proxy, reached, release = held
    client = await client_for(aiohttp_client, tmp_path, proxy.origin, "0.2s")
    first = await client.get(URL)
    assert first.status == 503 and first.headers["Retry-After"]
    assert reached.is_set()
    release.set()  # the sync goes on after its first phone stopped waiting

    async def served() -> bool:
        return (await client.get(URL)).status == 200

    for _ in range(600):
        if await served():
            break
        await asyncio.sleep(0.05)
    answer = await client.get(URL)
    assert answer.status == 200 and b"Omar" in await answer.read()
