"""Authenticated CPU amplification (issue 13, item 3): work an authenticated client can
make the gateway do must grow with what a phone legitimately needs, not with what it sends.

- A node selector is at most MAX_SELECTOR_LENGTH characters and MAX_STEPS steps (400
  beyond), and is evaluated in one walk: the work grows with its steps, never with their
  square (counted, not timed).
- A PUT creates at most max_creations_per_put entries, and a user at most
  max_creations_per_user within creation_window; the rest is kept out (logged once per
  PUT), and the PUT's other changes are applied.
- Hostile selectors are clean 4xx answers, never a 500.

Everything goes over a real socket with a real client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import edit_budget
from gateway.app import create_app
from gateway.entry import Entry, FieldValue
from gateway.xcap import counterpath, selector
from tests.conftest import ConfigFactory, drained
from tests.xcap.support import EL_TYPE, RL, conflict, put_index

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
DIRECTORY = "/users/sip:alice@example.com/tbook.xml"
STORED = "/resource-lists/users/sip:alice@example.com/index"
SNOM = {"User-Agent": "snomD785/10.1.54.13"}
#: The limits these tests were written for (the module states them; the README too).
LENGTH, STEPS = 6000, 32


def nested(depth: int, chains: int = 1) -> bytes:
    """A resource-lists document with `chains` lists at the top, each holding lists
    nested `depth` deep in all."""
    chain = "<list>" * (depth - 1) + "</list>" * (depth - 1)
    top = "".join(f'<list name="c{i}">{chain}</list>' for i in range(chains))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="{RL}">{top}</resource-lists>'.encode()


def test_the_limits_are_the_documented_ones() -> None:
    assert (selector.MAX_SELECTOR_LENGTH, selector.MAX_STEPS) == (LENGTH, STEPS)


# --- node selectors ---------------------------------------------------------------------


@pytest.mark.parametrize("document", [DIRECTORY, STORED])
async def test_a_selector_longer_than_the_limit_is_400(xcap_client: Client, document: str) -> None:
    assert (await put_index(xcap_client)).status == 201
    value = "x" * (LENGTH - len('resource-lists/list[@name=""]') + 1)
    response = await xcap_client.get(f'{document}/~~/resource-lists/list[@name="{value}"]')
    assert response.status == 400
    assert response.content_type == "text/plain"
    assert f"at most {LENGTH} characters" in await response.text()
    # One character less is a selector like any other (it selects nothing here).
    response = await xcap_client.get(f'{document}/~~/resource-lists/list[@name="{value[1:]}"]')
    assert response.status == 404


async def test_a_selector_of_33_steps_is_400_and_one_of_32_steps_selects(
    xcap_client: Client,
) -> None:
    body = nested(STEPS)  # resource-lists and 32 lists: 33 levels
    assert (await put_index(xcap_client, body)).status == 201
    thirty_two = "resource-lists" + "/list" * (STEPS - 1)
    response = await xcap_client.get(f"{STORED}/~~/{thirty_two}")
    assert response.status == 200, await response.text()
    assert response.content_type == EL_TYPE
    assert await response.read() == b"<list><list></list></list>"  # the 31st of 32
    # With a terminal attribute it is still 32 steps.
    assert (await xcap_client.get(f"{STORED}/~~/{thirty_two}/@name")).status == 404
    for method in ("GET", "DELETE", "PUT"):
        response = await xcap_client.request(
            method,
            f"{STORED}/~~/{thirty_two}/list",  # 33 steps: it would select the innermost list
            data=b"<list/>" if method == "PUT" else None,
            headers={"Content-Type": EL_TYPE} if method == "PUT" else {},
        )
        assert response.status == 400, (method, await response.text())
        assert f"at most {STEPS} steps, not {STEPS + 1}" in await response.text()
    assert await (await xcap_client.get(STORED)).read() == body  # nothing changed


async def test_33_steps_on_the_directory_are_400(xcap_client: Client) -> None:
    before = await (await xcap_client.get(DIRECTORY)).read()
    response = await xcap_client.put(
        f"{DIRECTORY}/~~/resource-lists" + "/*" * STEPS,
        data=b"<entry/>",
        headers={"Content-Type": EL_TYPE},
    )
    assert response.status == 400
    assert await (await xcap_client.get(DIRECTORY)).read() == before


async def test_a_selector_is_evaluated_in_one_walk_not_once_per_prefix(
    xcap_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An element PUT whose parent is missing names the deepest existing ancestor: that
    used to select every prefix again (quadratic in the steps; 4,000 steps cost seconds).
    Counted: the candidate lookups grow with the steps, not with their square."""
    calls = 0
    candidates = selector._candidates

    def counted(parent: Any, step: Any) -> Any:
        nonlocal calls
        calls += 1
        return candidates(parent, step)

    monkeypatch.setattr(selector, "_candidates", counted)
    # Two chains, so every prefix but the root selects two elements: the ancestor named
    # is the root, found only after looking at every prefix.
    assert (await put_index(xcap_client, nested(STEPS, chains=2))).status == 201
    counts = {}
    for steps in (16, 31):
        calls = 0
        node = "resource-lists" + "/list" * (steps - 3) + "/missing/entry"
        response = await xcap_client.put(
            f"{STORED}/~~/{node}", data=b"<entry/>", headers={"Content-Type": EL_TYPE}
        )
        (ancestor,) = await conflict(response, "no-parent")
        assert (ancestor.text or "").endswith("/index/~~/resource-lists")
        counts[steps] = calls
    # Two elements per step and walk; a few walks (the parent, the ancestor), not one per prefix.
    for steps, count in counts.items():
        assert count <= 3 * 2 * steps, counts
    assert counts[31] < 2.5 * counts[16], counts


HOSTILE_SELECTORS = [
    "resource-lists/list/" + "a" * 5000,
    'resource-lists/list[@name="' + "a" * 5000 + '"]',
    "resource-lists/list%00",
    "resource-lists/list[@name=%22a%00b%22]",
    "resource-lists/list[1",
    "resource-lists/list]1[",
    'resource-lists/list[@name="a]',
    "resource-lists/list[[1]]",
    "resource-lists/list" + "[1]" * 1000,
    "resource-lists/list" + "[" * 2000,
    "resource-lists/list[@name=%22" + "%22]" * 500,
    "resource-lists/" + "/" * 3000 + "nolist",
    "resource-lists/" + "*/" * 31 + "@name",
    "resource-lists/p:nolist?" + "xmlns(p=urn:ietf:params:xml:ns:resource-lists)" * 150,
    "resource-lists/p299:list?" + "".join(f"xmlns(p{i}=urn:x:{i})" for i in range(300)),
    "resource-lists/q:list?" + "xmlns(p=urn:x)" * 500,
    "resource-lists/" + "namespace::*/" * 20,
    "namespace::*",
    "@name",
]


@pytest.mark.parametrize("node", HOSTILE_SELECTORS, ids=range(len(HOSTILE_SELECTORS)))
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_hostile_selectors_are_a_clean_4xx(
    xcap_client: Client, method: str, node: str
) -> None:
    assert (await put_index(xcap_client)).status == 201
    before = {doc: await (await xcap_client.get(doc)).read() for doc in (DIRECTORY, STORED)}
    for document in (DIRECTORY, STORED):
        response = await xcap_client.request(
            method,
            f"{document}/~~/{node}",
            data=b"<nomatch/>" if method == "PUT" else None,
            headers={"Content-Type": EL_TYPE} if method == "PUT" else {},
        )
        assert 400 <= response.status < 500, (document, response.status, await response.text())
    for document, body in before.items():
        assert await (await xcap_client.get(document)).read() == body


# --- creations --------------------------------------------------------------------------


def new_entries(count: int, start: int = 0) -> list[Entry]:
    return [
        Entry("", f"Caller {i:04d}", {"business_number": f"+49 30 555 {i:04d}"})
        for i in range(start, start + count)
    ]


def edited(entries: list[Entry], name: str, **fields: str) -> list[Entry]:
    return [
        Entry(x.entry_id, x.display_name, {**x.fields, **fields}) if x.display_name == name else x
        for x in entries
    ]


def cards(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.vcf")}


def capped_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        r.__dict__["fields"]
        for r in caplog.records
        if getattr(r, "event", "") == "creations_capped"
    ]


async def put_with(client: Client, add: list[Entry], **fields: str) -> tuple[int, list[Entry]]:
    """Fetch the document, edit Anna Müller's entry with `fields`, add `add`, PUT it."""
    response = await client.get(DIRECTORY, headers=SNOM)
    etag, entries = response.headers["ETag"], counterpath.parse(await response.read())
    body = counterpath.render(edited(entries, "Anna Müller", **fields) + add)
    answer = await client.put(DIRECTORY, data=body, headers={**SNOM, "If-Match": etag})
    await drained(client)
    now = counterpath.parse(await (await client.get(DIRECTORY)).read())
    return answer.status, now


async def test_a_put_creates_at_most_max_creations_per_put_and_applies_its_edits(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="xcap_gateway")
    client = await aiohttp_client(create_app(make_config()))  # default: 100 per PUT
    before = cards(contacts_dir)
    status, now = await put_with(client, new_entries(150), company="Brandt AG")
    assert status == 200  # never refused: the phone could not fix it
    created = cards(contacts_dir) - before
    assert len(created) == 100
    names = {x.display_name for x in now}
    # The first 100 in the body's order are created; the rest is gone at the next fetch.
    assert {f"Caller {i:04d}" for i in range(150)} & names == {
        f"Caller {i:04d}" for i in range(100)
    }
    assert {x.display_name: x for x in now}["Anna Müller"].fields["company"] == "Brandt AG"
    assert "ORG:Brandt AG" in (contacts_dir / "anna.mueller.vcf").read_text()
    (capped,) = capped_events(caplog)
    assert capped["kept_out"] == 50 and capped["limit"] == 100 and capped["scope"] == "put"
    assert capped["user"] == "alice" and capped["document"] == "tbook"  # the login (match=user)
    # One line for the PUT, not one per entry kept out; one create event per card written.
    assert not [r for r in caplog.records if getattr(r, "event", "") == "create_ignored"]
    assert len([r for r in caplog.records if getattr(r, "event", "") == "created"]) == 100
    metrics = await (await client.get("/metrics")).text()
    assert 'xcap_creations_capped_total{document="tbook"} 50.0' in metrics


async def test_a_second_put_within_the_window_stops_at_max_creations_per_user(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="xcap_gateway")
    config = make_config(document="max_creations_per_put = 100\nmax_creations_per_user = 130")
    client = await aiohttp_client(create_app(config))
    before = cards(contacts_dir)
    status, _ = await put_with(client, new_entries(100))
    assert status == 200 and len(cards(contacts_dir) - before) == 100
    assert capped_events(caplog) == []
    # The same PUT again (its answer lost): nothing created twice, no budget spent.
    response = await client.get(DIRECTORY, headers=SNOM)
    again = await client.put(DIRECTORY, data=await response.read(), headers=SNOM)
    assert again.status == 200
    status, now = await put_with(client, new_entries(50, start=100), comment="second put")
    assert status == 200
    assert len(cards(contacts_dir) - before) == 130
    assert {x.display_name for x in now} >= {f"Caller {i:04d}" for i in range(130)}
    assert "Caller 0130" not in {x.display_name for x in now}
    assert {x.display_name: x for x in now}["Anna Müller"].fields["comment"] == "second put"
    (capped,) = capped_events(caplog)
    assert capped["kept_out"] == 20 and capped["limit"] == 130 and capped["scope"] == "user"
    # A user's budget is their own.
    bob = counterpath.render(new_entries(5, start=500))
    assert (await client.put("/users/sip:bob@example.com/tbook.xml", data=bob)).status == 200
    await drained(client)
    assert len(cards(contacts_dir) - before) == 135


async def test_a_cap_of_zero_creates_nothing_and_still_applies_edits_and_deletes(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="xcap_gateway")
    client = await aiohttp_client(create_app(make_config(document="max_creations_per_put = 0")))
    before = cards(contacts_dir)
    response = await client.get(DIRECTORY, headers=SNOM)
    etag, entries = response.headers["ETag"], counterpath.parse(await response.read())
    sent = [
        x
        for x in edited(entries, "Anna Müller", comment="zero")
        if x.display_name != "Jan Kowalski"
    ]
    body = counterpath.render(sent + new_entries(3))
    answer = await client.put(DIRECTORY, data=body, headers={**SNOM, "If-Match": etag})
    assert answer.status == 200
    await drained(client)
    assert cards(contacts_dir) == before - {"jan.kowalski.vcf"}
    assert "NOTE:zero" in (contacts_dir / "anna.mueller.vcf").read_text()
    (capped,) = capped_events(caplog)
    assert capped["kept_out"] == 3 and capped["limit"] == 0
    # The phone's next poll fetches the document without them (its ETag was not the merged one).
    poll = await client.get(DIRECTORY, headers={**SNOM, "If-None-Match": answer.headers["ETag"]})
    assert poll.status == 200


def test_the_window_slides_counts_an_entry_once_and_forgets_idle_users() -> None:
    from gateway.config import DocumentConfig  # noqa: PLC0415
    from gateway.creations import SWEEP_SECONDS, CreationLimiter  # noqa: PLC0415
    from gateway.merge import Create, Plan, Update  # noqa: PLC0415
    from gateway.outbox_rows import Item  # noqa: PLC0415

    now = [1000.0]
    limiter = CreationLimiter(clock=lambda: now[0])
    document = DocumentConfig(
        name="tbook.xml",
        sources=["demo"],
        write_to="demo",
        max_creations_per_put=10,
        max_creations_per_user=15,
        creation_window=3600,
    )

    def put(user: str, ids: list[str]) -> int:
        """Creates `ids` (and one edit) for `user`; how many were kept out."""
        edit = Update(Entry("E" * 32, "x"), Entry("E" * 32, "y"))
        plan = Plan([edit, *(Create(Entry(i, i)) for i in ids)])
        capped, out = limiter.cap("tbook", document, user, plan)
        assert edit in capped.changes  # never kept out
        items = [
            Item("tbook", user, "demo", "", "create", c.entry.entry_id)
            for c in capped.changes
            if isinstance(c, Create)
        ]
        limiter.created("tbook", document, user, items)
        return out

    ids = [f"{i:032X}" for i in range(40)]
    assert put("alice", ids[:12]) == 2  # per PUT
    assert put("alice", ids[:10]) == 0  # created before: not counted twice
    assert put("alice", ids[10:20]) == 5  # 10 + 5 = 15 per user
    now[0] += 1800
    assert put("alice", ids[20:25]) == 5  # the first 15 are still in the window
    now[0] += 1801
    assert put("alice", ids[25:35]) == 0  # they left it
    assert put("bob", ids[:3]) == 0
    assert len(limiter) == 2
    now[0] += 3600 + SWEEP_SECONDS
    assert put("carol", []) == 0  # any later PUT prunes every expired window
    assert len(limiter) == 0


async def test_no_write_to_keeps_creations_out_per_entry_as_before(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    contacts_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without write_to the caps do not apply (nothing is created anyway)."""
    caplog.set_level(logging.INFO, logger="xcap_gateway")
    client = await aiohttp_client(create_app(make_config(write_to=None)))
    before = cards(contacts_dir)
    status, _ = await put_with(client, new_entries(3))
    assert status == 200 and cards(contacts_dir) == before
    assert capped_events(caplog) == []
    assert len([r for r in caplog.records if getattr(r, "event", "") == "create_ignored"]) == 3


def test_a_body_of_id_less_entries_finds_its_twins_without_a_search() -> None:
    """An entry sent again without its id takes it back: looked up, so thousands of
    id-less entries against a large held version cost no comparison of every pair (work
    done on every entry of a PUT before the creation cap applies)."""
    from gateway.merge import with_entry_ids  # noqa: PLC0415

    reads = 0

    class Fields(Mapping[str, FieldValue]):
        """A entry's fields, counting how often they are gone through."""

        def __init__(self, **values: FieldValue) -> None:
            self.data = values

        def __getitem__(self, name: str) -> FieldValue:
            return self.data[name]

        def __len__(self) -> int:
            return len(self.data)

        def __iter__(self) -> Iterator[str]:
            nonlocal reads
            reads += 1
            return iter(self.data)

    known = {
        f"{i:032X}": Entry(f"{i:032X}", "Same", Fields(business_number=f"+{i}")) for i in range(300)
    }
    fresh = [Entry("", "Same", Fields(business_number=f"+1 555 {i}")) for i in range(600)]
    again = [Entry("", "Same", Fields(business_number=f"+{i}")) for i in range(300)]
    result = with_entry_ids(fresh + again, known=known)
    assert [x.entry_id for x in result[600:]] == list(known)  # their ids back
    assert len({x.entry_id for x in result}) == 900
    assert reads <= 3 * (len(known) + len(fresh) + len(again)), reads


def test_an_unclosed_namespace_binding_is_parsed_in_linear_time() -> None:
    """`?xmlns(a=` and thousands of spaces without a ")" made the binding pattern backtrack
    cubically: about 13 s of CPU per request, before authentication. Counted in CPU time
    with a bound a hundred times above what linear parsing takes."""
    from gateway.xcap.uri import parse_xcap_path

    query = "xmlns(a=" + "%20" * 2700
    started = time.process_time()
    path = parse_xcap_path(
        "/resource-lists/users/sip:alice@example.com/index/~~/a:resource-lists?" + query, ""
    )
    assert time.process_time() - started < 1.0
    assert path is not None and "a" not in path.namespaces
    bound = parse_xcap_path("/resource-lists/users/sip:a@b/index/~~/x?xmlns(a=%20urn:x%20)", "")
    assert bound is not None and bound.namespaces == {"a": "urn:x"}


async def test_spellings_of_the_domain_share_one_creation_window(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    """Under match = "user" the login is alice whatever domain the URL names: PUTs to
    alice@example.com and alice@other.test draw on one allowance."""
    config = make_config(document="max_creations_per_user = 5")
    client = await aiohttp_client(create_app(config))
    before = cards(contacts_dir)
    for domain, start in (("example.com", 0), ("other.test", 5), ("third.test", 10)):
        url = f"/users/sip:alice@{domain}/tbook.xml"
        response = await client.get(url, headers=SNOM)
        entries = counterpath.parse(await response.read())
        body = counterpath.render(entries + new_entries(5, start))
        answer = await client.put(
            url, data=body, headers={**SNOM, "If-Match": response.headers["ETag"]}
        )
        assert answer.status == 200
        await drained(client)
    assert len(cards(contacts_dir) - before) == 5


async def test_a_phone_cannot_inflate_an_entry(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    """100 made-up props of 100 characters and a 5,000-character name on one entry: what
    is kept stays within the per-entry budget, so every served document still fits a PUT."""
    client = await aiohttp_client(create_app(make_config()))
    response = await client.get(DIRECTORY, headers=SNOM)
    entries = counterpath.parse(await response.read())
    padding = {f"x_pad_{i:03d}": "p" * 100 for i in range(100)}
    anna = next(x for x in entries if x.display_name == "Anna Müller")
    fat = Entry(anna.entry_id, "N" * 5000, {**anna.fields, **padding})
    body = counterpath.render([fat if x is anna else x for x in entries])
    answer = await client.put(
        DIRECTORY, data=body, headers={**SNOM, "If-Match": response.headers["ETag"]}
    )
    assert answer.status == 200
    await drained(client)
    now = counterpath.parse(await (await client.get(DIRECTORY)).read())
    kept = next(x for x in now if x.entry_id == anna.entry_id)
    assert kept.display_name == "Anna Müller"  # a 5,000-character rename is kept out
    text = sum(
        len(name) + sum(map(len, value)) if isinstance(value, tuple) else len(name) + len(value)
        for name, value in kept.fields.items()
        if anna.fields.get(name) != value  # what the PUT changed
    )
    assert text <= edit_budget.MAX_EDIT_TEXT
    assert kept.fields.get("business_number") == anna.fields.get("business_number")
    assert len((contacts_dir / "anna.mueller.vcf").read_bytes()) < 8 * 1024


def test_versions_held_for_one_user_are_bounded_in_entries() -> None:
    """A client with a new User-Agent at every PUT: the versions held for it stop at
    MAX_HELD_ENTRIES entries, the newest kept."""
    from gateway import versions as versions_module

    held = versions_module.Versions({"tbook": 5}, {"tbook": 86400.0})
    book = {f"{i:032X}": Entry(f"{i:032X}", f"N{i}") for i in range(2000)}
    for device in range(40):
        entries = {**book, "X": Entry("X", f"device {device}")}
        held.record("tbook", "alice", f"ua-{device}", f'"v{device}"', entries, sent=True)
    kept = [key for key in held._contents if key[0] == "tbook"]
    assert len(kept) * 2001 <= versions_module.MAX_HELD_ENTRIES + 2001
    assert ("tbook", '"v39"') in held._contents  # the newest


async def test_stored_documents_per_user_are_limited(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    config = make_config()
    server = config.server.model_copy(update={"max_stored_documents": 3})
    client = await aiohttp_client(create_app(config.model_copy(update={"server": server})))
    body = b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="a"/></resource-lists>'
    headers = {"Content-Type": "application/resource-lists+xml"}
    base = "/resource-lists/users/sip:alice@example.com/"
    for name in ("one", "two", "three"):
        assert (await client.put(base + name, data=body, headers=headers)).status == 201
    refused = await client.put(base + "four", data=body, headers=headers)
    assert refused.status == 409
    assert b"constraint-failure" in await refused.read()
    assert (await client.get(base + "four")).status == 404
    assert (await client.put(base + "one", data=body, headers=headers)).status == 200
    other = "/resource-lists/users/sip:bob@example.com/one"
    assert (await client.put(other, data=body, headers=headers)).status == 201


async def test_a_long_value_from_the_directory_goes_back_unchanged(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    """Only what a phone changes counts against the budget: a 3,000-character note that
    came from upstream survives a PUT of the entry with another field edited."""
    note = "n" * 3000
    (contacts_dir / "long.vcf").write_text(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:long-note\r\nFN:Long Note\r\n"
        f"NOTE:{note}\r\nTEL;TYPE=CELL:+49 170 1000\r\nEND:VCARD\r\n"
    )
    client = await aiohttp_client(create_app(make_config()))
    response = await client.get(DIRECTORY, headers=SNOM)
    entries = counterpath.parse(await response.read())
    long = next(x for x in entries if x.display_name == "Long Note")
    assert note in str(long.fields)
    body = counterpath.render(edited(entries, "Long Note", company="Acme"))
    for headers in ({**SNOM, "If-Match": response.headers["ETag"]}, SNOM):
        answer = await client.put(DIRECTORY, data=body, headers=headers)
        assert answer.status == 200
        await drained(client)
    card = (contacts_dir / "long.vcf").read_text()
    assert "ORG:Acme" in card
    assert "n" * 2000 in card.replace("\r\n ", "")  # folded lines, not a cut note
