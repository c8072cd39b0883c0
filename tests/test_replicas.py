"""Several gateway processes on one real PostgreSQL: every replica serves, one leads the
syncs and another takes over when it is killed, a phone's requests may alternate between
replicas, each change is applied once whichever replica took it (and whichever died), a
database restart under load loses nothing, and preconditions hold across replicas. At the
end, what a red-team run broke, each kept as a regression test."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiohttp
import psycopg
import pytest
from aiohttp import web

from gateway.entry import Entry
from gateway.xcap import counterpath
from tests.dav.proxy import WeakeningProxy
from tests.dav.servers import DavServer, vcard
from tests.pg.server import Postgres
from tests.support import free_port, start_gateway
from tests.xcap.support import INDEX, RL_TYPE

DOCUMENT = "/users/sip:alice@example.com/tbook.xml"
STORED = "/resource-lists/users/sip:alice@example.com/index"
SNOM = {"User-Agent": "snomD785/10.1.54.13"}
#: What a replica of these tests shares with every other (the document and its source).
VCARD_DIR = """
[sources.demo]
type = "vcard-dir"
path = "{folder}"
interval = "1s"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
require_number = false
{document_extra}
"""


@dataclass
class Replica:
    index: int
    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def leads(self) -> bool:
        """Whether its log says it leads now (its last word on the lead)."""
        text = self.log_text()
        return text.rfind("event=replica_leads ") > text.rfind("event=replica_leads_no_more")


@dataclass
class Fleet:
    folder: Path
    database: str
    body: str
    replicas: list[Replica] = field(default_factory=list)
    #: More keys of each replica's [store] table.
    store: str = ""

    def add(self) -> Replica:
        index = len(self.replicas)
        port = free_port()
        config = self.folder / f"gateway-{index}.toml"
        config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
state_dir = "{self.folder}/var-{index}"
put_wait = 0
[store]
url = "{self.database}"
connect_timeout = "2s"
{self.store}
{self.body}
""")
        replica = Replica(index, port, config, self.folder / f"gateway-{index}.log")
        self.replicas.append(replica)
        return replica

    def start(self, replica: Replica) -> Replica:
        replica.process = start_gateway(replica.config, replica.log)
        return replica

    def kill(self, replica: Replica) -> None:
        assert replica.process is not None
        os.kill(replica.process.pid, signal.SIGKILL)
        replica.process.wait()
        replica.process = None

    def logs(self) -> str:
        return "\n".join(f"--- replica {r.index}\n{r.log_text()}" for r in self.replicas)

    def stop(self) -> None:
        for replica in self.replicas:
            if replica.process is not None:
                replica.process.terminate()
        for replica in self.replicas:
            if replica.process is not None:
                try:
                    replica.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    replica.process.kill()
                    replica.process.wait()
                replica.process = None


async def until(
    check: Callable[[], Awaitable[bool] | bool],
    what: str,
    seconds: float = 30,
    fleet: Fleet | None = None,
) -> None:
    """Wait for `check` to hold (an observable condition), or fail saying what did not
    (with the replicas' logs)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} (after {seconds} s)\n{fleet.logs() if fleet else ''}")


async def status(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def fetch(
    session: aiohttp.ClientSession, replica: Replica, headers: dict[str, str] = SNOM
) -> tuple[str, list[Entry]]:
    async with session.get(replica.url(DOCUMENT), headers=headers) as response:
        assert response.status == 200, await response.text()
        return response.headers["ETag"], counterpath.parse(await response.read())


async def put(
    session: aiohttp.ClientSession,
    replica: Replica,
    entries: list[Entry],
    headers: dict[str, str] = SNOM,
) -> tuple[int, str]:
    async with session.put(
        replica.url(DOCUMENT), data=counterpath.render(entries), headers=headers
    ) as response:
        return response.status, await response.text()


def book(origin: str, interval: str, extra: str = "") -> str:
    """Alice's Radicale book, through `origin` (a proxy a test can hold requests in)."""
    return f"""
[sources.book]
type = "carddav"
url = "{origin}/alice/contacts/"
username = "svc"
password = "svc-pw"
interval = "{interval}"
retry_interval = "0.2s"
[documents.tbook]
name = "tbook.xml"
sources = ["book"]
{extra}
"""


Hook = Callable[[], Awaitable[None]]


async def held_proxy(
    radicale: DavServer, omar: bool = True
) -> tuple[WeakeningProxy, str, asyncio.Event, asyncio.Event, Hook]:
    """Radicale (with Omar's card in alice's book) behind a started proxy, and a hook
    that holds a request there: (proxy, its origin, reached, release, hold). Close the
    proxy at the end."""
    if omar:
        radicale.put_card(
            "/alice/contacts/omar.vcf", vcard("omar", "Omar", "TEL:+1 555 0200"), "alice"
        )
    proxy = WeakeningProxy(radicale.origin)
    origin = await proxy.start()
    reached, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        reached.set()
        await release.wait()

    return proxy, origin, reached, release, hold


def named(entries: list[Entry], name: str) -> Entry:
    return next(entry for entry in entries if entry.display_name == name)


@pytest.fixture
def contacts(contacts_dir: Path) -> Path:
    return contacts_dir


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str, contacts: Path) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(body: str | None = None, document_extra: str = "", store: str = "") -> Fleet:
        text = body or VCARD_DIR.format(folder=contacts, document_extra=document_extra)
        folder = tmp_path / f"fleet-{len(made)}"
        folder.mkdir()
        made.append(Fleet(folder, pg_url, text, store=store))
        return made[-1]

    yield make
    for each in made:
        each.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def started(fleet: Fleet, session: aiohttp.ClientSession, count: int) -> list[Replica]:
    replicas = [fleet.start(fleet.add()) for _ in range(count)]
    for replica in replicas:
        await until(partial(_ok, session, replica), f"replica {replica.index} serves", fleet=fleet)
    return replicas


async def _ok(session: aiohttp.ClientSession, replica: Replica) -> bool:
    return await status(session, replica.url(DOCUMENT)) == 200


# --- serving and leading ------------------------------------------------------------------


async def test_every_replica_serves_the_same_document_and_exactly_one_leads(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession
) -> None:
    replicas_of = fleet()
    replicas = await started(replicas_of, session, 3)
    etags = {(await fetch(session, replica))[0] for replica in replicas}
    assert len(etags) == 1, "the replicas serve different versions"
    await until(lambda: sum(r.leads for r in replicas) == 1, "one replica leads", fleet=replicas_of)
    # Only the leader syncs: the others take its snapshots.
    followers = [r for r in replicas if not r.leads]
    assert all("event=sync " not in r.log_text() for r in followers), replicas_of.logs()


async def test_a_change_upstream_reaches_every_replica(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, contacts: Path
) -> None:
    replicas_of = fleet()
    replicas = await started(replicas_of, session, 2)
    (contacts / "new.vcf").write_text(vcard("new", "Newly Added", "TEL:+1 555 0100"))

    async def everywhere() -> bool:
        for replica in replicas:
            _, entries = await fetch(session, replica)
            if "Newly Added" not in {entry.display_name for entry in entries}:
                return False
        return True

    await until(everywhere, "every replica serves the new card", fleet=replicas_of)


async def test_when_the_leader_is_killed_another_replica_leads_and_syncs(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, contacts: Path
) -> None:
    replicas_of = fleet()
    replicas = await started(replicas_of, session, 3)
    await until(lambda: any(r.leads for r in replicas), "a leader", fleet=replicas_of)
    leader = next(r for r in replicas if r.leads)
    # A change upstream the killed leader never synced.
    (contacts / "late.vcf").write_text(vcard("late", "After The Leader", "TEL:+1 555 0101"))
    replicas_of.kill(leader)
    survivors = [r for r in replicas if r is not leader]
    await until(lambda: sum(r.leads for r in survivors) == 1, "a survivor leads", fleet=replicas_of)

    async def synced() -> bool:
        for replica in survivors:
            _, entries = await fetch(session, replica)
            if "After The Leader" not in {entry.display_name for entry in entries}:
                return False
        return True

    await until(synced, "the new leader syncs", fleet=replicas_of)


async def test_the_leader_killed_in_the_middle_of_a_sync_hands_over(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, radicale: DavServer
) -> None:
    """The leader is killed while its sync's request is at the CardDAV server."""
    proxy, origin, reached, release, hold = await held_proxy(radicale)
    try:
        replicas_of = fleet(book(origin, interval="1s"))
        replicas = await started(replicas_of, session, 2)
        await until(lambda: any(r.leads for r in replicas), "a leader", fleet=replicas_of)
        leader = next(r for r in replicas if r.leads)
        radicale.put_card(
            "/alice/contacts/nina.vcf", vcard("nina", "Nina", "TEL:+1 555 0300"), "alice"
        )
        proxy.before["REPORT"] = hold  # the leader's next sync stops at the server
        await until(reached.is_set, "the leader's sync reaches the server", fleet=replicas_of)
        replicas_of.kill(leader)
        release.set()
        survivor = next(r for r in replicas if r is not leader)
        await until(lambda: survivor.leads, "the survivor leads", fleet=replicas_of)

        async def synced() -> bool:
            _, entries = await fetch(session, survivor)
            return "Nina" in {entry.display_name for entry in entries}

        await until(synced, "the survivor syncs what the leader did not", fleet=replicas_of)
    finally:
        await proxy.close()


# --- a phone between replicas -------------------------------------------------------------


async def test_a_phones_requests_alternating_between_replicas_merge_against_what_it_holds(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, contacts: Path
) -> None:
    replicas_of = fleet()
    first, second = await started(replicas_of, session, 2)
    # The phone got a version from the second replica, then a newer one from the first.
    older, _ = await fetch(session, second)
    (contacts / "new.vcf").write_text(vcard("new", "Newly Added", "TEL:+1 555 0100"))

    async def newer_there() -> bool:
        return (await fetch(session, first))[0] != older

    await until(newer_there, "the first replica serves a newer version", fleet=replicas_of)
    # That one, edited, goes to the second replica (If-Match: the version from the first).
    etag, entries = await fetch(session, first)
    anna = named(entries, "Anna Müller")
    sent = [
        Entry(anna.entry_id, anna.display_name, {**anna.fields, "company": "Brandt AG"})
        if entry is anna
        else entry
        for entry in entries
        if entry.display_name != "Lars Petersen"
    ]
    answer = await put(session, second, sent, {**SNOM, "If-Match": etag})
    assert answer[0] == 200, answer
    await until(
        lambda: not (contacts / "lars.petersen.vcf").exists(), "the delete reaches the folder"
    )
    await until(
        lambda: "Brandt AG" in (contacts / "anna.mueller.vcf").read_text(),
        "the edit reaches the folder",
        fleet=replicas_of,
    )
    # The first replica shows it too; fetched from the second, a delete sent to the first
    # without If-Match is merged against the version the phone got there.
    for replica in (first, second):

        async def shows(replica: Replica = replica) -> bool:
            _, now = await fetch(session, replica)
            names = {entry.display_name for entry in now}
            return "Lars Petersen" not in names and (
                named(now, "Anna Müller").fields.get("company") == "Brandt AG"
            )

        await until(shows, f"replica {replica.index} shows the change", fleet=replicas_of)
    _, entries = await fetch(session, second)
    without = [entry for entry in entries if entry.display_name != "Emma Thompson"]
    answer = await put(session, first, without)
    assert answer[0] == 200, answer
    await until(
        lambda: not (contacts / "emma.thompson.vcf").exists(),
        "a delete against the version served by the other replica",
        fleet=replicas_of,
    )
    assert (contacts / "anna.mueller.vcf").exists()


async def test_a_phone_that_fetched_an_older_version_elsewhere_deletes_nothing_it_never_saw(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, contacts: Path
) -> None:
    """Found by a red-team run: a phone's PUT through the first replica, then a GET from the
    second one that had not caught up yet (the older version, one the phone had once sent
    itself), then a PUT there: its base was the first replica's newer version, and the
    entry the phone had just created read as deleted."""
    replicas_of = fleet()
    first, second = await started(replicas_of, session, 2)
    acknowledged = []
    for round in range(30):
        phone = {"User-Agent": f"phone-{round}"}
        _, entries = await fetch(session, second, phone)
        mine = Entry("", f"W {round}", {"home_number": ("+1 555 0100",)})
        assert (await put(session, second, [*entries, mine], phone))[0] == 200
        _, entries = await fetch(session, first, phone)
        created = Entry("", f"X {round}", {"home_number": ("+1 555 0101",)})
        assert (await put(session, first, [*entries, created], phone))[0] == 200
        acknowledged.append(created.display_name)
        _, entries = await fetch(session, second, phone)  # may not show X yet
        more = Entry("", f"Y {round}", {"home_number": ("+1 555 0102",)})
        assert (await put(session, second, [*entries, more], phone))[0] == 200

    def folder() -> set[str]:
        return {
            line[3:].strip()
            for card in contacts.glob("*.vcf")
            for line in card.read_text().splitlines()
            if line.startswith("FN:")
        }

    await until(lambda: f"Y {round}" in folder(), "the last change lands", fleet=replicas_of)
    lost = [name for name in acknowledged if name not in folder()]
    assert not lost, f"acknowledged and then deleted: {lost}\n{replicas_of.logs()}"


async def test_two_puts_with_the_same_if_match_on_two_replicas_one_wins(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession
) -> None:
    replicas_of = fleet(document_extra="strict_etags = true")
    first, second = await started(replicas_of, session, 2)
    for round in range(5):
        etag, entries = await fetch(session, first)
        anna = named(entries, "Anna Müller")

        def edited(text: str, entries: list[Entry] = entries, anna: Entry = anna) -> list[Entry]:
            return [
                Entry(anna.entry_id, anna.display_name, {**anna.fields, "comment": text})
                if entry is anna
                else entry
                for entry in entries
            ]

        answers = await asyncio.gather(
            put(session, first, edited(f"first {round}"), {**SNOM, "If-Match": etag}),
            put(session, second, edited(f"second {round}"), {**SNOM, "If-Match": etag}),
        )
        assert sorted(code for code, _ in answers) == [200, 412], answers
    # Stored resource-lists documents: compare-and-swap in SQL.
    async with session.put(
        first.url(STORED), data=INDEX, headers={"Content-Type": RL_TYPE}
    ) as response:
        assert response.status == 201
        stored = response.headers["ETag"]
    bodies = [INDEX.replace(b"Friends", name.encode()) for name in ("One", "Two")]

    async def replace(replica: Replica, body: bytes) -> int:
        async with session.put(
            replica.url(STORED), data=body, headers={"Content-Type": RL_TYPE, "If-Match": stored}
        ) as response:
            return response.status

    codes = await asyncio.gather(replace(first, bodies[0]), replace(second, bodies[1]))
    assert sorted(codes) == [200, 412]


# --- the outbox across replicas -------------------------------------------------------------


async def test_a_replica_killed_while_applying_a_change_leaves_it_to_another_once(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, radicale: DavServer
) -> None:
    proxy, origin, reached, release, hold = await held_proxy(radicale)
    try:
        # DEBUG: the log says when a replica finds the change held by another.
        replicas_of = fleet(
            book(origin, interval="1h", extra='write_to = "book"\n[logging]\nlevel = "DEBUG"')
        )
        (first,) = await started(replicas_of, session, 1)
        proxy.before["PUT"] = hold  # the first replica's write stops at the server
        _, entries = await fetch(session, first)
        nina = Entry("534BB0BC2DDA09E2567C5D8D5B2C0120", "Nina", {"home_number": ("+1 555 0300",)})
        answer = await put(session, first, [*entries, nina])
        assert answer[0] == 200, answer  # durable: committed to the shared outbox
        await until(reached.is_set, "the first replica applies it", fleet=replicas_of)
        second = replicas_of.start(replicas_of.add())
        await until(lambda: _ok(session, second), "the second replica serves")

        async def pending_there() -> bool:  # it knows the change (it shows it)
            _, now = await fetch(session, second)
            return "Nina" in {entry.display_name for entry in now}

        await until(pending_there, "the second replica knows the change", fleet=replicas_of)
        # It tries, finds the change held by the first, and leaves it alone.
        await until(
            lambda: "event=outbox_claim_busy" in second.log_text(),
            "the second replica finds the change claimed",
            fleet=replicas_of,
        )
        assert [method for method, _ in proxy.seen].count("PUT") == 1, proxy.seen
        replicas_of.kill(first)
        release.set()  # the dead replica's write lands upstream after all

        def cards() -> list[bytes]:
            listing = radicale.request(
                "PROPFIND", "/alice/contacts/", b"", "alice", {"Depth": "1"}
            )[1]
            return [line for line in listing.split(b"<") if line.endswith(b".vcf")]

        async def applied() -> bool:
            return "event=created" in second.log_text() or "event=create_exists" in (
                second.log_text()
            )

        await until(applied, "the second replica applies the change", fleet=replicas_of)
        nina_cards = [
            radicale.request(
                "GET", "/alice/contacts/" + href.decode().rsplit("/", 1)[-1], user="alice"
            )[1]
            for href in cards()
        ]
        assert sum(b"FN:Nina" in card for card in nina_cards) == 1, replicas_of.logs()
    finally:
        await proxy.close()


async def test_restarting_postgresql_under_load_loses_nothing_and_doubles_nothing(
    fleet: Callable[..., Fleet],
    session: aiohttp.ClientSession,
    contacts: Path,
    make_postgres: Callable[..., Postgres],
    tmp_path: Path,
) -> None:
    database = make_postgres()
    replicas_of = Fleet(tmp_path, database.create_database("restarts"), "")
    replicas_of.body = VCARD_DIR.format(folder=contacts, document_extra="")
    try:
        replicas = await started(replicas_of, session, 2)
        acknowledged: list[str] = []
        refused: list[str] = []
        polls: list[int] = []

        async def phone(number: int) -> None:
            headers = {"User-Agent": f"snomD785/load-{number}"}
            for step in range(8):
                replica = replicas[(number + step) % 2]
                async with session.get(replica.url(DOCUMENT), headers=headers) as response:
                    polls.append(response.status)
                    if response.status != 200:
                        continue
                    entries = counterpath.parse(await response.read())
                name = f"Load {number}-{step}"
                new = Entry("", name, {"home_number": (f"+1 555 {number:02d}{step:02d}",)})
                code, _ = await put(session, replica, [*entries, new], headers)
                assert code in (200, 503), code
                (acknowledged if code == 200 else refused).append(name)
                await asyncio.sleep(0.05)

        async def restart() -> None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(database.stop)
            await asyncio.sleep(1.5)  # phones keep polling and sending meanwhile
            await asyncio.to_thread(database.start)

        await asyncio.gather(restart(), *(phone(n) for n in range(4)))
        assert refused, "no PUT met the database down: the test did not test"
        assert set(polls) <= {200}, f"a poll failed while the database was down: {polls}"

        def names() -> list[str]:
            return [
                line[3:].strip()
                for card in contacts.glob("*.vcf")
                for line in card.read_text().splitlines()
                if line.startswith("FN:")
            ]

        await until(
            lambda: set(acknowledged) <= set(names()),
            "every acknowledged change reaches the folder",
            fleet=replicas_of,
        )
        doubled = [name for name in set(names()) if names().count(name) > 1]
        assert not doubled, f"applied twice: {doubled}"
        # Both replicas reconnected by themselves: a PUT through each succeeds.
        for replica in replicas:
            _, entries = await fetch(session, replica)
            extra = Entry("", f"After {replica.index}", {"home_number": ("+1 555 0999",)})
            await until(
                partial(_put_ok, session, replica, [*entries, extra]),
                f"replica {replica.index} takes PUTs again",
                fleet=replicas_of,
            )
    finally:
        replicas_of.stop()


async def _put_ok(session: aiohttp.ClientSession, replica: Replica, entries: list[Entry]) -> bool:
    code, _ = await put(session, replica, entries)
    return code == 200


# --- found by a red-team run ------------------------------------------------------------


def names(entries: list[Entry]) -> set[str]:
    return {entry.display_name for entry in entries}


async def test_a_replica_with_another_configuration_of_a_source_wipes_nothing(
    fleet: Callable[..., Fleet],
    session: aiohttp.ClientSession,
    contacts: Path,
    tmp_path: Path,
    pg_url: str,
) -> None:
    replicas_of = fleet()
    first, second = await started(replicas_of, session, 2)
    # A third replica, mid-way through a rolling change: the same source, another folder.
    other = tmp_path / "other-contacts"
    shutil.copytree(contacts, other)
    changed = fleet(VCARD_DIR.format(folder=other, document_extra=""))
    third = changed.start(changed.add())
    await until(lambda: "event=listening" in third.log_text(), "the third replica serves")
    with psycopg.connect(pg_url) as db:
        (stored,) = db.execute("SELECT count(*) FROM contacts").fetchone() or (0,)
    assert stored == 28, "the shared snapshot was dropped"
    (contacts / "new.vcf").write_text(vcard("new", "Newly Added", "TEL:+1 555 0100"))

    async def everywhere() -> bool:
        for replica in (first, second):
            if "Newly Added" not in names((await fetch(session, replica))[1]):
                return False
        return True

    await until(everywhere, "the others still sync and follow", fleet=replicas_of)


async def test_a_long_user_agent_keeps_no_phone_from_its_base(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, contacts: Path
) -> None:
    replicas_of = fleet()
    first, second = await started(replicas_of, session, 2)
    junk = {"User-Agent": secrets.token_hex(2500)}  # 5,000 characters that do not compress
    async with session.get(first.url("/users/sip:alice@example.com/tbook.xml"), headers=junk) as r:
        assert r.status == 200
    _, entries = await fetch(session, first)
    without = [entry for entry in entries if entry.display_name != "Emma Thompson"]
    assert (await put(session, second, without))[0] == 200
    await until(
        lambda: not (contacts / "emma.thompson.vcf").exists(),
        "the delete is merged against the version served by the other replica",
        fleet=replicas_of,
    )
    assert "versions_write_failed" not in first.log_text()


async def test_an_upstream_error_text_with_a_nul_holds_back_no_later_change(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, radicale: DavServer
) -> None:
    proxy, origin, reached, release, hold = await held_proxy(radicale)

    async def refuse() -> None:
        raise web.HTTPUnprocessableEntity(text="invalid card\x00here")

    try:
        replicas_of = fleet(book(origin, interval="1h", extra='write_to = "book"'))
        (replica,) = await started(replicas_of, session, 1)
        proxy.before["PUT"] = refuse  # the first write is refused, in those words
        _, entries = await fetch(session, replica)
        nina = Entry("", "Nina", {"home_number": ("+1 555 0300",)})
        assert (await put(session, replica, [*entries, nina]))[0] == 200
        await until(lambda: "event=write_failed" in replica.log_text(), "the refusal is recorded")
        _, entries = await fetch(session, replica)
        oscar = Entry("", "Oscar", {"home_number": ("+1 555 0400",)})
        assert (await put(session, replica, [*entries, oscar]))[0] == 200

        def upstream() -> bytes:
            return radicale.request("PROPFIND", "/alice/contacts/", b"", "alice", {"Depth": "1"})[1]

        async def oscar_there() -> bool:
            listing = await asyncio.to_thread(upstream)
            cards = [
                part.decode().rsplit("/", 1)[-1]
                for part in listing.split(b"<")
                if part.endswith(b".vcf")
            ]
            for card in cards:
                text = radicale.request("GET", f"/alice/contacts/{card}", user="alice")[1]
                if b"FN:Oscar" in text:
                    return True
            return False

        await until(oscar_there, "the next change is applied", fleet=replicas_of)
        assert "outbox_record_failed" not in replica.log_text()
    finally:
        await proxy.close()


async def test_a_put_does_not_wait_for_another_changes_upstream_write(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, radicale: DavServer
) -> None:
    proxy, origin, reached, release, hold = await held_proxy(radicale)
    try:
        # The held write would time out after 30 s and free the source: not before the
        # test's own bound (60 s) ends, with 300.
        replicas_of = fleet(
            book(origin, interval="1h", extra='write_to = "book"').replace(
                'retry_interval = "0.2s"', 'retry_interval = "0.2s"\ntimeout = "300s"'
            ),
            store="pool_size = 4",
        )
        (replica,) = await started(replicas_of, session, 1)
        proxy.before["PUT"] = hold
        _, entries = await fetch(session, replica)
        nina = Entry("", "Nina", {"home_number": ("+1 555 0300",)})
        assert (await put(session, replica, [*entries, nina]))[0] == 200
        await until(reached.is_set, "the first change is at the server")
        _, entries = await fetch(session, replica)
        oscar = Entry("", "Oscar", {"home_number": ("+1 555 0400",)})
        # Answered while the first write is still held (it never ends otherwise: the
        # bound only turns a hang into a failure).
        code, text = await asyncio.wait_for(put(session, replica, [*entries, oscar]), 60)
        assert code == 200, text
        assert not release.is_set()
        release.set()
    finally:
        release.set()
        await proxy.close()


async def test_a_follower_follows_and_merges_correctly_while_one_of_its_writes_is_held(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, radicale: DavServer
) -> None:
    """A follower whose source had a write at the upstream kept its old snapshot until the
    write ended: a PUT there merged against it, so a delete was dropped and an edit made a
    second card."""
    proxy, origin, reached, release, hold = await held_proxy(radicale)
    try:
        body = book(origin, interval="1s", extra='write_to = "book"').replace(
            'retry_interval = "0.2s"', 'retry_interval = "0.2s"\ntimeout = "300s"'
        )
        # The leader has the source but not the phones' document: it parks their change,
        # so the write held at the server is the follower's (whichever replica claimed it
        # first would hold it otherwise, and a held write stops its replica's syncs).
        leaders = fleet(
            body.replace("[documents.tbook]", "[documents.lists]").replace(
                'name = "tbook.xml"', 'name = "lists.xml"'
            )
        )
        leader = leaders.start(leaders.add())
        await until(lambda: leader.leads, "the first replica leads", fleet=leaders)
        replicas_of = fleet(body)
        (follower,) = await started(replicas_of, session, 1)
        proxy.before["PUT"] = hold
        _, entries = await fetch(session, follower)
        nina = Entry("", "Nina", {"home_number": ("+1 555 0300",)})
        assert (await put(session, follower, [*entries, nina]))[0] == 200
        await until(reached.is_set, "the follower's write is at the server", fleet=replicas_of)
        for uid, name, number in (("zed", "Zed", "0500"), ("yara", "Yara", "0600")):
            radicale.put_card(
                f"/alice/contacts/{uid}.vcf", vcard(uid, name, f"TEL:+1 555 {number}"), "alice"
            )

        async def shown_by_follower() -> bool:  # the leader synced them; it follows
            return {"Zed", "Yara"} <= names((await fetch(session, follower))[1])

        await until(shown_by_follower, "the follower follows meanwhile", fleet=replicas_of)
        phone = {"User-Agent": "Bria 6 release 6.5.3"}
        _, entries = await fetch(session, follower, phone)
        sent = [
            Entry(e.entry_id, e.display_name, {"home_number": ("+1 555 0666",)})
            if e.display_name == "Yara"
            else e
            for e in entries
            if e.display_name != "Zed"
        ]
        assert (await put(session, follower, sent, phone))[0] == 200
        release.set()

        def upstream() -> list[bytes]:
            listing = radicale.request("PROPFIND", "/alice/contacts/", b"", "alice", {"Depth": "1"})
            hrefs = [p.decode() for p in listing[1].split(b"<") if p.endswith(b".vcf")]
            return [
                radicale.request("GET", "/alice/contacts/" + h.rsplit("/", 1)[-1], user="alice")[1]
                for h in hrefs
            ]

        async def merged() -> bool:
            cards = await asyncio.to_thread(upstream)
            yaras = [card for card in cards if b"FN:Yara" in card]
            return (
                not any(b"FN:Zed" in card for card in cards)
                and len(yaras) == 1
                and b"0666" in yaras[0]
            )

        await until(merged, "Zed deleted, Yara edited in place", fleet=replicas_of)
    finally:
        release.set()
        await proxy.close()


async def test_one_users_held_write_holds_back_no_other_users_change(
    fleet: Callable[..., Fleet], session: aiohttp.ClientSession, radicale: DavServer
) -> None:
    radicale.make_book("/bob/contacts/", "bob")
    proxy, origin, reached, release, hold = await held_proxy(radicale, omar=False)
    try:
        per_user = book(origin, interval="1h", extra='write_to = "book"')
        per_user = per_user.replace("/alice/contacts/", "/{user}/contacts/").replace(
            'retry_interval = "0.2s"', 'retry_interval = "0.2s"\ntimeout = "300s"'
        )
        replicas_of = fleet(per_user, store="pool_size = 4")
        (replica,) = await started(replicas_of, session, 1)
        proxy.before["PUT"] = hold  # alice's write stays at her server
        alice = Entry("", "For Alice", {"home_number": ("+1 555 0700",)})
        _, entries = await fetch(session, replica)
        assert (await put(session, replica, [*entries, alice]))[0] == 200
        await until(reached.is_set, "alice's write is at the server", fleet=replicas_of)
        bob_url = "/users/sip:bob@example.com/tbook.xml"
        async with session.get(replica.url(bob_url)) as response:
            assert response.status == 200
            entries = counterpath.parse(await response.read())
        for_bob = Entry("", "For Bob", {"home_number": ("+1 555 0800",)})
        async with session.put(
            replica.url(bob_url), data=counterpath.render([*entries, for_bob])
        ) as response:
            assert response.status == 200

        def bobs() -> bytes:
            return radicale.request("PROPFIND", "/bob/contacts/", b"", "bob", {"Depth": "1"})[1]

        await until(
            lambda: b".vcf" in bobs(), "bob's change lands while alice's waits", fleet=replicas_of
        )
        assert not release.is_set()
    finally:
        release.set()
        await proxy.close()
