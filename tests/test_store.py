"""The state database: snapshots and tokens survive, schema versions are checked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway import store as store_module
from gateway import store_sqlite
from gateway.model import Contact
from gateway.store import decode, encode
from gateway.store_sqlite import MIGRATIONS
from gateway.store_sqlite import SqliteStore as Store

ANNA = Contact(
    uid="u1",
    source="s",
    href="a.vcf",
    etag="e1",
    display_name="Anna",
    mobile=("1", "2"),
    extra=(("nick", "An"),),
    vip=True,
)


@pytest.fixture(params=["here", "in a worker process"])
def loading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots loaded here, and as a big one is, decoded in a worker process."""
    if request.param != "here":
        monkeypatch.setattr(store_sqlite, "LOAD_ELSEWHERE_FROM", 0)
        # The worker's are its own.
        monkeypatch.setattr(store_module, "read_snapshot", not_here)
        monkeypatch.setattr(store_sqlite, "read_snapshot", not_here)


def not_here(*args: object) -> None:
    raise AssertionError("read in this process, not in a worker")


def test_contacts_round_trip_through_json() -> None:
    assert decode(encode(ANNA)) == ANNA


@pytest.mark.usefixtures("loading")
def test_snapshots_and_tokens_survive_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.save("people", "", "fp", "token-1", 100.0, [ANNA, ANNA.replace(href="b.vcf", uid="u2")])
    store.save("people", "", "fp", "token-2", 200.0, [ANNA.replace(etag="e2")], ["b.vcf"])
    store.save("people", "bob@example.com", "fp", None, 50.0, [ANNA])
    store.close()
    again = Store(tmp_path / "state.sqlite3")
    snapshot = again.load("people", "", "fp")
    assert snapshot is not None
    assert snapshot.token == "token-2" and snapshot.synced_at == 200.0
    assert snapshot.contacts == {"a.vcf": ANNA.replace(etag="e2")}
    assert again.load("people", "bob@example.com", "fp") is not None
    assert again.schema_version == len(MIGRATIONS)


@pytest.mark.usefixtures("loading")
def test_a_changed_configuration_drops_the_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    phone_made = Contact(uid="u2", source="s", href="b.vcf", entry_id="AB" * 16)
    store.save("people", "", "old", "t", 1.0, [ANNA, phone_made])
    dropped = store.load("people", "", "new")
    # No contacts and no token: only the ids phones gave, which nothing else keeps.
    assert dropped is not None and dropped.contacts == {} and dropped.token is None
    assert dropped.synced_at is None and dropped.dropped_phone_ids == {"u2": "AB" * 16}
    assert store.load("people", "", "old") is None  # gone for good


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer xcap-gateway"):
        Store(path)


def test_kept_xuis_get_the_one_spelling_of_their_domain(tmp_path: Path) -> None:
    """Migration 5: what was kept under `alice@B.COM.` is found as `alice@b.com`."""
    path = tmp_path / "state.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:4]):
        db.executescript(f"BEGIN; {script} PRAGMA user_version = {number + 1}; COMMIT;")
    db.execute("INSERT INTO served VALUES ('tbook', 'Alice@B.COM.', 'd', '\"e\"', 1)")
    db.execute(
        "INSERT INTO documents VALUES ('resource-lists', 'bob@X.org', 'index', x'00', 'e', 1)"
    )
    db.execute("INSERT INTO source_state VALUES ('shared', '', 'f', NULL, NULL)")
    db.close()
    store = Store(path)
    with store.transaction() as tx:
        assert tx.execute("SELECT user FROM served").fetchall() == [("Alice@b.com",)]
        assert tx.execute("SELECT owner FROM documents").fetchall() == [("bob@x.org",)]
        assert tx.execute("SELECT user FROM source_state").fetchall() == [("",)]
    store.close()


@pytest.mark.parametrize("stored", ["../escaped", "x" * 5000, "", "A" * 31])
def test_an_odd_entry_id_kept_upstream_is_not_what_phones_see(stored: str) -> None:
    from gateway.model import effective_entry_id, entry_id_for

    contact = Contact(uid="u1", source="s", entry_id=stored)
    assert effective_entry_id(contact) == entry_id_for("s", "u1")
    assert effective_entry_id(Contact(uid="u1", source="s", entry_id="ab" * 16)) == "AB" * 16
