"""PUTs of different users merging with the same source instances: from the check of the
version a PUT edited to the commit of its changes, no other such PUT merges (the merge
and the compositions it reads run off the event loop, so requests interleave there)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.entry import Entry
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory, drained

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
USERS = ("alice", "bob")


def url(user: str) -> str:
    return f"/users/sip:{user}@example.com/tbook.xml"


def edit(entries: list[Entry], name: str, **fields: str) -> list[Entry]:
    return [
        Entry(x.entry_id, x.display_name, {**x.fields, **fields}) if x.display_name == name else x
        for x in entries
    ]


async def test_two_users_putting_with_the_same_if_match_on_a_shared_document_one_gets_412(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    """The document is shared (one composition for everyone): after the first PUT, the
    ETag both users named is no longer the current one."""
    client = await aiohttp_client(create_app(make_config(document="strict_etags = true")))

    async def put(user: str, body: bytes, etag: str) -> int:
        headers = {"If-Match": etag, "User-Agent": f"phone of {user}"}
        async with client.put(url(user), data=body, headers=headers) as response:
            return response.status

    for round_ in range(10):  # a race: each round must give exactly one 200
        fetched = [await client.get(url(user)) for user in USERS]
        etags = {response.headers["ETag"] for response in fetched}
        assert len(etags) == 1  # one composition for both
        etag = etags.pop()
        held = counterpath.parse(await fetched[0].read())
        bodies = [
            counterpath.render(edit(held, name, comment=f"round {round_}"))
            for name in ("Anna Müller", "Emma Thompson")
        ]
        answers = await asyncio.gather(
            *(put(user, body, etag) for user, body in zip(USERS, bodies, strict=True))
        )
        assert sorted(answers) == [200, 412], round_
        await drained(client)


async def test_two_users_putting_at_once_both_keep_their_edits(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    """Without strict_etags both merge, the second with what the first committed."""
    client = await aiohttp_client(create_app(make_config()))
    fetched = [await client.get(url(user)) for user in USERS]
    held = counterpath.parse(await fetched[0].read())
    edits = {"alice": ("Anna Müller", "from alice"), "bob": ("Emma Thompson", "from bob")}

    async def put(user: str) -> int:
        name, comment = edits[user]
        body = counterpath.render(edit(held, name, comment=comment))
        headers = {"If-Match": fetched[0].headers["ETag"], "User-Agent": f"phone of {user}"}
        async with client.put(url(user), data=body, headers=headers) as response:
            return response.status

    assert await asyncio.gather(*(put(user) for user in USERS)) == [200, 200]
    await drained(client)
    now = {
        e.display_name: e for e in counterpath.parse(await (await client.get(url("carol"))).read())
    }
    assert now["Anna Müller"].fields["comment"] == "from alice"
    assert now["Emma Thompson"].fields["comment"] == "from bob"
