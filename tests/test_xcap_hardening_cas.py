"""Issue 12, item 6: a stored document changes by compare-and-swap on the version a
request's preconditions were checked against. Two requests holding the same version never
both change it, even when their bodies arrive slowly and interleave.

The slow bodies are sent in chunks over real sockets: each request sends a first chunk, and
the rest only once every request of the race is reading its body, that is, has passed its
precondition check. The tests wait on that condition, never on a clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import pytest
from aiohttp import ClientResponse, web

from gateway.xcap import http, stored_views
from tests.xcap.support import ALICE_DOC, ATT_TYPE, EL_TYPE, INDEX, RL_TYPE, Client, put_index

#: Only a guard against a hang: the tests proceed on events.
TIMEOUT = 30
LIST1 = f"{ALICE_DOC}/~~/resource-lists/list[1]"
BILL = f"{LIST1}/entry[@uri=%22sip:bill@example.com%22]"


class Gate:
    """Counts the requests that passed their precondition check and read their body, and
    holds the bodies' last chunks until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, readers: int) -> None:
        self.expected = readers
        self.readers = 0
        self.reading = asyncio.Event()
        self.release = asyncio.Event()
        original = http.read_body

        async def read_body(request: web.Request) -> bytes:
            self.readers += 1
            if self.readers >= self.expected:
                self.reading.set()
            return await original(request)

        # Both names: stored documents read through the view's import, nodes through http.
        monkeypatch.setattr(http, "read_body", read_body)
        monkeypatch.setattr(stored_views, "read_body", read_body)

    async def release_when_all_read(self) -> None:
        await asyncio.wait_for(self.reading.wait(), TIMEOUT)
        self.release.set()

    async def body(self, data: bytes) -> AsyncIterator[bytes]:
        yield data[:1]
        await asyncio.wait_for(self.release.wait(), TIMEOUT)
        yield data[1:]


async def race(gate: Gate, *requests: Awaitable[ClientResponse]) -> list[int]:
    """The statuses of `requests` run at once, their bodies released together."""
    release = asyncio.ensure_future(gate.release_when_all_read())
    responses = await asyncio.gather(*requests)
    await release
    return sorted(r.status for r in responses)


def slow_put(
    client: Client, gate: Gate, url: str, body: bytes, kind: str, **headers: str
) -> Awaitable[ClientResponse]:
    return client.put(url, data=gate.body(body), headers={"Content-Type": kind, **headers})


async def current(client: Client) -> tuple[bytes, str]:
    response = await client.get(ALICE_DOC)
    return await response.read(), response.headers.get("ETag", "")


async def test_two_document_puts_with_the_same_if_match_one_wins(
    xcap_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    etag = (await put_index(xcap_client)).headers["ETag"]
    gate = Gate(monkeypatch, 2)
    ours, theirs = INDEX.replace(b"Bill", b"Ours"), INDEX.replace(b"Bill", b"Theirs")
    statuses = await race(
        gate,
        slow_put(xcap_client, gate, ALICE_DOC, ours, RL_TYPE, **{"If-Match": etag}),
        slow_put(xcap_client, gate, ALICE_DOC, theirs, RL_TYPE, **{"If-Match": etag}),
    )
    assert statuses == [200, 412]
    body, _ = await current(xcap_client)
    assert body in (ours, theirs)


async def test_two_element_puts_with_the_same_if_match_one_wins(
    xcap_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    etag = (await put_index(xcap_client)).headers["ETag"]
    gate = Gate(monkeypatch, 2)
    bodies = [
        f'<entry uri="sip:bill@example.com"><display-name>{name}</display-name></entry>'.encode()
        for name in ("Ours", "Theirs")
    ]
    statuses = await race(
        gate,
        *(slow_put(xcap_client, gate, BILL, b, EL_TYPE, **{"If-Match": etag}) for b in bodies),
    )
    assert statuses == [200, 412]
    assert await (await xcap_client.get(BILL)).read() in bodies


async def test_two_attribute_puts_with_the_same_if_match_one_wins(
    xcap_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    etag = (await put_index(xcap_client)).headers["ETag"]
    gate = Gate(monkeypatch, 2)
    url = f"{LIST1}/@name"
    statuses = await race(
        gate,
        *(
            slow_put(xcap_client, gate, url, name, ATT_TYPE, **{"If-Match": etag})
            for name in (b"ours", b"theirs")
        ),
    )
    assert statuses == [200, 412]


async def test_a_delete_while_a_put_of_the_same_version_reads_its_body(
    xcap_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The element PUT passed its check on the version the DELETE then changes: saving it
    would bring back the deleted element."""
    etag = (await put_index(xcap_client)).headers["ETag"]
    gate = Gate(monkeypatch, 1)
    body = b'<entry uri="sip:bill@example.com"><display-name>Ours</display-name></entry>'
    put = asyncio.ensure_future(
        slow_put(xcap_client, gate, BILL, body, EL_TYPE, **{"If-Match": etag})
    )
    await asyncio.wait_for(gate.reading.wait(), TIMEOUT)
    joe = f"{LIST1}/entry[@uri=%22sip:joe@example.com%22]"
    assert (await xcap_client.delete(joe, headers={"If-Match": etag})).status == 200
    gate.release.set()
    assert (await put).status == 412
    assert (await xcap_client.get(joe)).status == 404
    assert b"Ours" not in (await current(xcap_client))[0]


async def test_a_document_delete_while_a_put_of_the_same_version_reads_its_body(
    xcap_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    etag = (await put_index(xcap_client)).headers["ETag"]
    gate = Gate(monkeypatch, 1)
    put = asyncio.ensure_future(
        slow_put(
            xcap_client,
            gate,
            ALICE_DOC,
            INDEX.replace(b"Bill", b"B"),
            RL_TYPE,
            **{"If-Match": etag},
        )
    )
    await asyncio.wait_for(gate.reading.wait(), TIMEOUT)
    assert (await xcap_client.delete(ALICE_DOC, headers={"If-Match": etag})).status == 200
    gate.release.set()
    assert (await put).status == 412
    assert (await xcap_client.get(ALICE_DOC)).status == 404  # not brought back


async def test_unconditional_element_puts_are_both_applied(
    xcap_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without preconditions the later request is made again on the newer version: the last
    writer wins, but nobody's change is lost."""
    await put_index(xcap_client)
    gate = Gate(monkeypatch, 2)
    names = ("ann", "zoe")
    statuses = await race(
        gate,
        *(
            slow_put(
                xcap_client,
                gate,
                f"{LIST1}/entry[@uri=%22sip:{name}@example.com%22]",
                f'<entry uri="sip:{name}@example.com"/>'.encode(),
                EL_TYPE,
            )
            for name in names
        ),
    )
    assert statuses == [201, 201]
    body, _ = await current(xcap_client)
    for name in names:
        assert f'<entry uri="sip:{name}@example.com"/>'.encode() in body


async def test_unconditional_creating_puts_answer_201_then_200(
    xcap_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch, 2)
    ours, theirs = INDEX.replace(b"Bill", b"Ours"), INDEX.replace(b"Bill", b"Theirs")
    statuses = await race(
        gate,
        slow_put(xcap_client, gate, ALICE_DOC, ours, RL_TYPE),
        slow_put(xcap_client, gate, ALICE_DOC, theirs, RL_TYPE),
    )
    assert statuses == [200, 201]


async def test_two_creates_with_if_none_match_star_one_wins(
    xcap_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch, 2)
    statuses = await race(
        gate,
        *(
            slow_put(xcap_client, gate, ALICE_DOC, body, RL_TYPE, **{"If-None-Match": "*"})
            for body in (INDEX, INDEX.replace(b"Bill", b"Theirs"))
        ),
    )
    assert statuses == [201, 412]
