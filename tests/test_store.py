"""The state database: snapshots and tokens survive, schema versions are checked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.model import Contact
from gateway.store import MIGRATIONS, Store, decode, encode

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


def test_contacts_round_trip_through_json() -> None:
    assert decode(encode(ANNA)) == ANNA


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


def test_a_changed_configuration_drops_the_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.save("people", "", "old", "t", 1.0, [ANNA])
    assert store.load("people", "", "new") is None
    assert store.load("people", "", "old") is None  # gone for good


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer xcap-gateway"):
        Store(path)
