"""What only the PostgreSQL store does: outbox claims between processes, locks that give up,
an unreachable database failing fast and coming back by itself."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from gateway import outbox_rows
from gateway import store_postgres as store_module
from gateway.entry import Entry
from gateway.outbox_rows import Item
from gateway.store import StoreUnavailable
from gateway.store_postgres import PostgresStore
from tests.pg.server import Postgres


def item(entry_id: str, source_user: str = "") -> Item:
    return Item(
        document="tbook",
        user="alice@example.com",
        source="people",
        source_user=source_user,
        kind="create",
        entry_id=entry_id,
        after=Entry(entry_id, "New"),
    )


@pytest.fixture
def stores(pg_url: str) -> Iterator[Callable[[], PostgresStore]]:
    opened: list[PostgresStore] = []

    def open_one() -> PostgresStore:
        opened.append(PostgresStore(pg_url, connect_timeout=2))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


def test_an_item_claimed_by_one_process_is_busy_for_another_until_let_go(
    stores: Callable[[], PostgresStore],
) -> None:
    first, second = stores(), stores()
    items = [item("A" * 32), item("B" * 32), item("C" * 32, source_user="bob@example.com")]
    outbox_rows.insert(first, items)
    state, claim = first.claim(items[0].id, "people", "")
    assert state == "claimed" and claim is not None
    assert second.claim(items[0].id, "people", "")[0] == "busy"
    # The next change of the same instance waits for the first; another instance's does not.
    assert second.claim(items[1].id, "people", "")[0] == "busy"
    other, other_claim = second.claim(items[2].id, "people", "bob@example.com")
    assert other == "claimed" and other_claim is not None
    other_claim.release()
    claim.finish(lambda db: outbox_rows.record(db, items[0], "applied"))
    assert second.claim(items[0].id, "people", "")[0] == "gone"
    state, claim = second.claim(items[1].id, "people", "")
    assert state == "claimed" and claim is not None
    claim.release()  # nothing recorded: still pending, free for anyone
    assert first.claim(items[1].id, "people", "")[0] == "claimed"


def test_a_claim_dies_with_its_process(
    make_postgres: Callable[..., Postgres],
) -> None:
    """The row lock is the session's: a process that dies (its connections closed by the
    kernel) leaves the item to the others."""
    import subprocess
    import sys

    server = make_postgres()
    url = server.create_database("claims")
    store = PostgresStore(url, connect_timeout=2)
    try:
        items = [item("A" * 32)]
        outbox_rows.insert(store, items)
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time\n"
                "from gateway.store_postgres import PostgresStore\n"
                f"s = PostgresStore({url!r})\n"
                f"state, claim = s.claim({items[0].id}, 'people', '')\n"
                "print(state, flush=True)\n"
                "time.sleep(60)\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"
        assert store.claim(items[0].id, "people", "")[0] == "busy"
        holder.kill()
        holder.wait()
        holder.stdout.close()
        deadline = time.monotonic() + 20
        while store.claim(items[0].id, "people", "")[0] != "claimed":
            assert time.monotonic() < deadline, "the dead process's claim never went"
            time.sleep(0.05)
    finally:
        store.close()


def test_a_lock_held_too_long_elsewhere_gives_up_with_store_unavailable(
    stores: Callable[[], PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "LOCK_WAIT", 0.3)
    first, second = stores(), stores()
    release = first.hold(["instance|people|"])
    try:
        with pytest.raises(StoreUnavailable, match="another replica has held a lock"):
            second.hold(["instance|people|", "instance|other|"])
        assert second.available, "a lock held elsewhere is not the database down"
    finally:
        release()
    second.hold(["instance|people|"])()  # free again


def test_a_database_that_goes_away_fails_fast_and_comes_back_by_itself(
    make_postgres: Callable[..., Postgres],
) -> None:
    server = make_postgres()
    store = PostgresStore(server.create_database("outage"), connect_timeout=2)
    try:
        store.save("people", "", "fp", None, 1.0)
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.save("people", "", "fp", None, 2.0)
        assert not store.available  # requests now fail at once (see PostgresStore._wait)
        with pytest.raises(StoreUnavailable):
            store.revisions()
        server.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                store.save("people", "", "fp", None, 3.0)
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the pool never reconnected"
                time.sleep(0.1)
        assert store.available and store.synced_at("people", "") == 3.0
    finally:
        store.close()


def test_text_postgresql_cannot_hold_is_refused_before_it_reaches_the_database(
    stores: Callable[[], PostgresStore],
) -> None:
    store = stores()
    with pytest.raises(ValueError, match="NUL"):
        store.save("people", "alice\x00@example.com", "fp", None, 1.0)
    assert store.available  # a value error, not an outage
    assert store.revisions() == {}
