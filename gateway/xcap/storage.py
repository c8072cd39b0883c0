"""XCAP documents kept verbatim in the state database, per application usage and owner.

GET(PUT(x)) == x byte for byte. Every change is a compare-and-swap on the ETag the request
was checked against, in one SQL statement, so that two clients holding the same version
cannot both change it. Blocking: call through asyncio.to_thread.
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


class TooManyDocuments(Exception):
    """The owner has as many stored documents as allowed; nothing was written."""


class StaleVersion(Exception):
    """The stored document is no longer the version the change was made against (another
    request changed, created or deleted it meanwhile). Nothing was written."""


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def load(store: Store, auid: str, owner: str, path: str) -> StoredDocument | None:
    """The stored document, or None when there is none."""
    with store.transaction() as db:
        row = db.execute(
            "SELECT body, etag FROM documents WHERE auid=? AND owner=? AND path=?",
            (auid, owner, path),
        ).fetchone()
    return StoredDocument(bytes(row[0]), row[1]) if row else None


def save(
    store: Store,
    auid: str,
    owner: str,
    path: str,
    body: bytes,
    expected: str | None,
    max_documents: int | None = None,
) -> StoredDocument:
    """Store `body` in place of the version `expected` (None: there must be no document
    yet) and return it. Raises StaleVersion when the stored version is another, and
    TooManyDocuments when a new document would give the owner more than `max_documents`."""
    document = StoredDocument(body, etag_of(body))
    with store.transaction() as db:
        if expected is None:
            if max_documents is not None:
                (count,) = db.execute(
                    "SELECT count(*) FROM documents WHERE auid=? AND owner=?", (auid, owner)
                ).fetchone()
                if count >= max_documents:
                    raise TooManyDocuments(owner)
            cursor = db.execute(
                "INSERT INTO documents (auid, owner, path, body, etag, updated)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (auid, owner, path) DO NOTHING",
                (auid, owner, path, body, document.etag, time.time()),
            )
        else:
            cursor = db.execute(
                "UPDATE documents SET body=?, etag=?, updated=?"
                " WHERE auid=? AND owner=? AND path=? AND etag=?",
                (body, document.etag, time.time(), auid, owner, path, expected),
            )
        if cursor.rowcount != 1:
            raise StaleVersion(path)
    return document


def delete(store: Store, auid: str, owner: str, path: str, expected: str) -> None:
    """Delete the version `expected` of the document. Raises StaleVersion when the stored
    version is another, or there is none."""
    with store.transaction() as db:
        cursor = db.execute(
            "DELETE FROM documents WHERE auid=? AND owner=? AND path=? AND etag=?",
            (auid, owner, path, expected),
        )
        if cursor.rowcount != 1:
            raise StaleVersion(path)
