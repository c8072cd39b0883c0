"""One contract for both state databases: every test here runs unchanged against SQLite
and against a real PostgreSQL — snapshots and tokens, the outbox, served versions, stored
XCAP documents, migrations, transactions and locks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway import outbox_rows, versions_rows
from gateway.entry import Entry
from gateway.model import Contact
from gateway.outbox_rows import Item
from gateway.store import Store
from gateway.store_postgres import MIGRATIONS as PG_MIGRATIONS
from gateway.store_postgres import PostgresStore
from gateway.store_sqlite import FILE_NAME, SqliteStore
from gateway.store_sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from gateway.xcap import storage
from tests.test_store import ANNA

#: What upstreams and phones may put into stored text: quotes, a NUL, control
#: characters, a lone surrogate, SQL, 5,000 characters.
HOSTILE = "O'Brien \"x\" \x00\x01\x1f \ud800 '); DROP TABLE contacts; -- " + "é" * 5000


class Opened:
    """Opens the store under test again (as a restarted process, or another replica)."""

    def __init__(self, kind: str, tmp_path: Path, url: str) -> None:
        self.kind, self.tmp_path, self.url = kind, tmp_path, url
        self.opened: list[Store] = []

    def __call__(self) -> Store:
        store: Store
        if self.kind == "sqlite":
            store = SqliteStore(self.tmp_path / FILE_NAME)
        else:
            store = PostgresStore(self.url, connect_timeout=5)
        self.opened.append(store)
        return store

    def replica(self, store: Store) -> Store:
        """What another process sharing `store`'s database has: PostgreSQL's replicas each
        open their own; SQLite's file belongs to one process, whose transactions share
        one connection."""
        return store if self.kind == "sqlite" else self()

    @property
    def migrations(self) -> int:
        return len(SQLITE_MIGRATIONS if self.kind == "sqlite" else PG_MIGRATIONS)


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    opened = Opened(request.param, tmp_path, url)
    yield opened
    for store in opened.opened:
        store.close()


@pytest.fixture
def store(open_store: Opened) -> Store:
    return open_store()


# --- snapshots and tokens ----------------------------------------------------------------


def test_snapshots_and_tokens_survive_reopening(open_store: Opened) -> None:
    store = open_store()
    store.save("people", "", "fp", "token-1", 100.0, [ANNA, ANNA.replace(href="b.vcf", uid="u2")])
    store.save("people", "", "fp", "token-2", 200.0, [ANNA.replace(etag="e2")], ["b.vcf"])
    store.save("people", "bob@example.com", "fp", None, 50.0, [ANNA])
    store.close()
    again = open_store()
    snapshot = again.load("people", "", "fp")
    assert snapshot is not None
    assert snapshot.token == "token-2" and snapshot.synced_at == 200.0
    assert snapshot.contacts == {"a.vcf": ANNA.replace(etag="e2")}
    bob = again.load("people", "bob@example.com", "fp")
    assert bob is not None and bob.contacts == {"a.vcf": ANNA} and bob.token is None
    assert again.load("people", "carol@example.com", "fp") is None
    assert again.synced_at("people", "") == 200.0
    assert again.synced_at("nobody", "") is None


def test_replace_all_keeps_only_the_new_contacts(store: Store) -> None:
    store.save("people", "", "fp", "t1", 1.0, [ANNA, ANNA.replace(href="b.vcf", uid="u2")])
    store.save("people", "", "fp", "t2", 2.0, replace_all={"c.vcf": ANNA.replace(href="c.vcf")})
    snapshot = store.load("people", "", "fp")
    assert snapshot is not None and list(snapshot.contacts) == ["c.vcf"]


def test_a_changed_configuration_drops_the_snapshot(store: Store) -> None:
    phone_made = Contact(uid="u2", source="s", href="b.vcf", entry_id="AB" * 16)
    store.save("people", "", "old", "t", 1.0, [ANNA, phone_made])
    dropped = store.load("people", "", "new")
    assert dropped is not None and dropped.contacts == {} and dropped.token is None
    assert dropped.synced_at is None and dropped.dropped_phone_ids == {"u2": "AB" * 16}
    assert store.load("people", "", "old") is None  # gone for good


def test_hostile_text_round_trips_and_names_stay_apart(store: Store) -> None:
    odd = ANNA.replace(
        href="x" * 5000, display_name=HOSTILE, comment=HOSTILE, extra=(("X-" + HOSTILE, HOSTILE),)
    )
    store.save("people", "o'brien\"@example.com", "fp", "token", 1.0, [odd])
    snapshot = store.load("people", "o'brien\"@example.com", "fp")
    assert snapshot is not None and snapshot.contacts == {odd.href: odd}
    assert store.load("people", "", "fp") is None  # another user's name did not match
    assert store.load("people", "%", "fp") is None  # a LIKE wildcard is just a character


def test_a_failed_transaction_changes_nothing(store: Store) -> None:
    store.save("people", "", "fp", "t1", 1.0, [ANNA])
    with pytest.raises(ZeroDivisionError), store.transaction() as db:
        db.execute('DELETE FROM contacts WHERE source=? AND "user"=?', ("people", ""))
        raise ZeroDivisionError
    snapshot = store.load("people", "", "fp")
    assert snapshot is not None and list(snapshot.contacts) == ["a.vcf"]
    with store.transaction() as db:  # and the next transaction starts cleanly
        assert db.execute("SELECT count(*) FROM contacts").fetchone()[0] == 1


# --- the outbox ----------------------------------------------------------------------------


def item(entry_id: str, kind: outbox_rows.Kind = "update") -> Item:
    before = Entry(entry_id, "Before", {"mobile_number": ("1",)})
    after = Entry(entry_id, HOSTILE, {"mobile_number": ("1", "2"), "comment": "it's"})
    return Item(
        document="tbook",
        user="alice@example.com",
        source="people",
        source_user="",
        kind=kind,
        entry_id=entry_id,
        href="a.vcf",
        before=None if kind == "create" else before,
        after=None if kind == "delete" else after,
        etag='"e1"',
    )


def test_outbox_items_are_kept_in_order_until_applied(store: Store) -> None:
    items = [item("A" * 32), item("B" * 32, "create"), item("C" * 32, "delete")]
    outbox_rows.insert(store, items)
    assert [i.id for i in items] == sorted({i.id for i in items}) and items[0].id > 0
    loaded = outbox_rows.load(store, "pending")
    assert [(i.id, i.kind, i.before, i.after) for i in loaded] == [
        (i.id, i.kind, i.before, i.after) for i in items
    ]
    assert outbox_rows.load(store, "pending", newest=1)[0].id == items[-1].id
    items[0].attempts, items[0].error = 3, "upstream said no"
    outbox_rows.update(store, items[0], "failed")
    outbox_rows.update(store, items[1], "applied")
    assert outbox_rows.count(store, "pending") == 1
    assert outbox_rows.count(store, "failed") == 1
    failed = outbox_rows.load(store, "failed")[0]
    assert (failed.attempts, failed.error) == (3, "upstream said no")
    assert outbox_rows.archive(store, time.time() + 1) == 1
    assert outbox_rows.count(store, "failed") == 0
    with store.transaction() as db:
        (archived,) = db.execute("SELECT entry_id FROM outbox_archive").fetchone()
    assert archived == "A" * 32


def test_outbox_ids_are_never_reused(open_store: Opened) -> None:
    store = open_store()
    first = [item("A" * 32)]
    outbox_rows.insert(store, first)
    outbox_rows.update(store, first[0], "applied")
    store.close()
    again = open_store()
    second = [item("B" * 32)]
    outbox_rows.insert(again, second)
    assert second[0].id > first[0].id


# --- served versions -------------------------------------------------------------------------


def test_served_versions_are_written_read_and_pruned(store: Store) -> None:
    entries = {"A" * 32: Entry("A" * 32, HOSTILE, {"mobile_number": ("1",)})}
    now = time.time()
    batch = versions_rows.Batch(
        served=[
            ("tbook", "alice@example.com", [("snom|10.0.0.1", '"v1"', now - 100, False)]),
            ("tbook", "bob@example.com", [("bria|10.0.0.2", '"v2"', now, True)]),
        ],
        versions=[(("tbook", '"v1"'), entries), (("tbook", '"v2"'), {})],
        forgotten=[],
    )
    versions_rows.write_batch(store, batch)
    versions_rows.write_batch(store, batch)  # again: no duplicate keys
    history, contents = versions_rows.read_history(store, ("tbook", "alice@example.com"), 0)
    assert [(s.etag, s.device, s.sent) for s in history] == [('"v1"', "snom|10.0.0.1", False)]
    assert contents == {'"v1"': entries}
    history, _ = versions_rows.read_history(store, ("tbook", "bob@example.com"), 0)
    assert [s.sent for s in history] == [True]
    pruned = versions_rows.prune_rows(store, now, {}, 50.0, 0.0, [], [])
    assert pruned == 1  # alice's record is older than 50 s
    assert versions_rows.read_history(store, ("tbook", "alice@example.com"), 0) == ([], {})
    # Pruning twice in one process (temporary tables left from the first) works too.
    assert versions_rows.prune_rows(store, now, {}, 50.0, 0.0, [("tbook", "x")], []) == 0


# --- stored XCAP documents ---------------------------------------------------------------------


def test_stored_documents_are_compare_and_swap(store: Store) -> None:
    body = b"<resource-lists>\x00\xff'\"</resource-lists>"
    first = storage.save(store, "resource-lists", "alice@example.com", "index", body, None)
    assert storage.load(store, "resource-lists", "alice@example.com", "index") == first
    with pytest.raises(storage.StaleVersion):  # already there
        storage.save(store, "resource-lists", "alice@example.com", "index", b"x", None)
    with pytest.raises(storage.StaleVersion):  # not the stored version
        storage.save(store, "resource-lists", "alice@example.com", "index", b"x", '"other"')
    second = storage.save(store, "resource-lists", "alice@example.com", "index", b"y", first.etag)
    assert storage.load(store, "resource-lists", "alice@example.com", "index") == second
    assert storage.load(store, "resource-lists", "bob@example.com", "index") is None
    with pytest.raises(storage.StaleVersion):
        storage.delete(store, "resource-lists", "alice@example.com", "index", first.etag)
    storage.delete(store, "resource-lists", "alice@example.com", "index", second.etag)
    assert storage.load(store, "resource-lists", "alice@example.com", "index") is None


def test_an_owner_gets_no_more_documents_than_allowed(store: Store) -> None:
    storage.save(store, "rls", "alice@example.com", "a", b"1", None, max_documents=1)
    with pytest.raises(storage.TooManyDocuments):
        storage.save(store, "rls", "alice@example.com", "b", b"2", None, max_documents=1)
    storage.save(store, "rls", "bob@example.com", "b", b"2", None, max_documents=1)


def test_of_two_writers_holding_the_same_version_one_wins(open_store: Opened) -> None:
    """Two processes (replicas) change the same stored version at once: exactly one."""
    first = open_store()
    second = open_store.replica(first)
    stored = storage.save(first, "rls", "alice@example.com", "index", b"0", None)
    start = threading.Barrier(2)

    def change(store: Store, body: bytes) -> bool:
        start.wait()
        try:
            storage.save(store, "rls", "alice@example.com", "index", body, stored.etag)
        except storage.StaleVersion:
            return False
        return True

    for round in range(20):
        stored = storage.load(first, "rls", "alice@example.com", "index") or stored
        bodies = [f"a{round}".encode(), f"b{round}".encode()]  # each a new version
        with ThreadPoolExecutor(2) as pool:
            won = list(pool.map(change, [first, second], bodies))
        assert sorted(won) == [False, True]


# --- migrations and locks -------------------------------------------------------------------


def test_migrations_run_once_and_are_versioned(open_store: Opened) -> None:
    store = open_store()
    assert store.schema_version == open_store.migrations
    store.save("people", "", "fp", None, 1.0, [ANNA])
    store.close()
    again = open_store()  # migrating again would fail (tables exist) or lose data
    assert again.schema_version == open_store.migrations
    assert again.load("people", "", "fp") is not None


def test_a_lock_serializes_transactions_on_the_same_key(open_store: Opened) -> None:
    first = open_store()
    second = open_store.replica(first)
    order: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with first.transaction() as db:
            first.lock(db, "tbook|alice")
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def wait_for_it() -> None:
        inside.wait(10)
        with second.transaction() as db:
            second.lock(db, "tbook|alice")
            order.append("second in")

    with ThreadPoolExecutor(2) as pool:
        holder = pool.submit(hold)
        waiter = pool.submit(wait_for_it)
        inside.wait(10)
        # The second may or may not have asked yet; either way it is not in before release.
        assert "second in" not in order
        release.set()
        holder.result(10)
        waiter.result(10)
    assert order == ["first in", "first out", "second in"]
