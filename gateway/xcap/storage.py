"""XCAP documents kept verbatim in the state database, per application usage and owner.

GET(PUT(x)) == x byte for byte. Blocking: call through asyncio.to_thread.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from gateway.store import Store


@dataclass(frozen=True)
class StoredDocument:
    body: bytes
    etag: str


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def load(store: Store, auid: str, owner: str, path: str) -> StoredDocument | None:
    with store.transaction() as db:
        row = db.execute(
            "SELECT body, etag FROM documents WHERE auid=? AND owner=? AND path=?",
            (auid, owner, path),
        ).fetchone()
    return StoredDocument(bytes(row[0]), row[1]) if row else None


def save(store: Store, auid: str, owner: str, path: str, body: bytes) -> StoredDocument:
    document = StoredDocument(body, etag_of(body))
    with store.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO documents (auid, owner, path, body, etag, updated)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (auid, owner, path, body, document.etag, time.time()),
        )
    return document


def delete(store: Store, auid: str, owner: str, path: str) -> bool:
    with store.transaction() as db:
        cursor = db.execute(
            "DELETE FROM documents WHERE auid=? AND owner=? AND path=?", (auid, owner, path)
        )
    return cursor.rowcount > 0
