"""The state database's side of the served versions (see gateway.versions): reading a
history, writing a batch of records and versions in one transaction, pruning. Blocking:
called through asyncio.to_thread."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.entry import Entry, entry_from_json, entry_to_json
from gateway.store import Store

Entries = Mapping[str, Entry]
Key = tuple[str, str]  # (document, user) or (document, etag)


#: A history read from the database: its records, and the entries of their versions.
Found = tuple[list["Served"], dict[str, Entries]]


@dataclass(frozen=True)
class Batch:
    served: list[tuple[str, str, list[tuple[str, str, float, bool]]]]
    versions: list[tuple[Key, Entries]]
    forgotten: list[Key]
    #: Versions kept per device, by document (the database keeps each device's newest).
    keep: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Served:
    etag: str
    device: str
    at: float
    #: The device sent this version itself (a PUT body): it surely holds it.
    sent: bool = False


def read_history(store: Store, key: Key, oldest: float) -> Found:
    """Blocking: a history's records served since `oldest`, and their versions."""
    document, user = key
    with store.transaction() as db:
        rows = db.execute(
            'SELECT device, etag, served_at, sent FROM served WHERE document=? AND "user"=?'
            " AND served_at >= ? ORDER BY served_at",
            (document, user, oldest),
        ).fetchall()
        etags = sorted({row[1] for row in rows})
        texts = [
            db.execute(
                "SELECT entries FROM versions WHERE document=? AND etag=?", (document, etag)
            ).fetchone()
            for etag in etags
        ]
    contents: dict[str, Entries] = {
        etag: decode(text[0]) for etag, text in zip(etags, texts, strict=True) if text
    }
    history = [Served(etag, device, at, bool(sent)) for device, etag, at, sent in rows]
    return history, contents


def write_batch(store: Store, batch: Batch) -> None:
    """Blocking: one transaction; each version's entries are encoded once."""
    with store.transaction() as db:
        for document, user, rows in batch.served:
            # Merged into what is stored, never replacing it: another process sharing the
            # database may have served this user's other requests (a phone whose requests
            # alternate between replicas), and its records must stay.
            db.executemany(
                'INSERT INTO served (document, "user", device, etag, served_at, sent)'
                ' VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (document, "user", device, etag)'
                # Another process's record of the same version: the later time, and sent
                # if either saw the device send it.
                " DO UPDATE SET served_at = CASE WHEN excluded.served_at > served.served_at"
                " THEN excluded.served_at ELSE served.served_at END,"
                " sent = (served.sent OR excluded.sent)",
                [(document, user, *row) for row in rows],
            )
            for device in sorted({row[0] for row in rows}):
                db.execute(
                    'DELETE FROM served WHERE document=? AND "user"=? AND device=? AND etag NOT IN'
                    ' (SELECT etag FROM served WHERE document=? AND "user"=? AND device=?'
                    " ORDER BY served_at DESC LIMIT ?)",
                    (document, user, device, document, user, device, batch.keep.get(document, 5)),
                )
        for (document, etag), entries in batch.versions:
            db.execute(
                "INSERT INTO versions (document, etag, entries, created)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (document, etag) DO NOTHING",
                (
                    document,
                    etag,
                    json.dumps([entry_to_json(e) for e in entries.values()]),
                    time.time(),
                ),
            )
        db.executemany(
            "DELETE FROM versions WHERE document=? AND etag=? AND NOT EXISTS (SELECT 1 FROM"
            " served s WHERE s.document = versions.document AND s.etag = versions.etag)",
            batch.forgotten,
        )


def prune_rows(
    store: Store,
    now: float,
    keep_for: Mapping[str, float],
    default_keep_for: float,
    margin: float,
    resident: list[Key],
    named: list[Key],
) -> int:
    pruned = 0
    with store.transaction() as db:
        db.execute(
            'CREATE TEMP TABLE IF NOT EXISTS resident (document TEXT, "user" TEXT,'
            ' PRIMARY KEY (document, "user"))'
        )
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS named (document TEXT, etag TEXT,"
            " PRIMARY KEY (document, etag))"
        )
        db.executemany("INSERT INTO resident VALUES (?, ?) ON CONFLICT DO NOTHING", resident)
        db.executemany("INSERT INTO named VALUES (?, ?) ON CONFLICT DO NOTHING", named)
        documents = [row[0] for row in db.execute("SELECT DISTINCT document FROM served")]
        for document in documents:
            oldest = now - keep_for.get(document, default_keep_for) - margin
            pruned += db.execute(
                'DELETE FROM served WHERE document=? AND served_at < ? AND (document, "user")'
                ' NOT IN (SELECT document, "user" FROM resident)',
                (document, oldest),
            ).rowcount
        db.execute(
            "DELETE FROM versions WHERE (document, etag) NOT IN"
            " (SELECT document, etag FROM served) AND (document, etag) NOT IN"
            " (SELECT document, etag FROM named)"
        )
        db.execute("DELETE FROM resident")
        db.execute("DELETE FROM named")
    return pruned


def decode(text: str) -> dict[str, Entry]:
    entries = [entry_from_json(item) for item in json.loads(text)]
    return {e.entry_id: e for e in entries}
