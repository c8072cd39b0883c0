"""Outbox items and their rows in the state database (blocking: call through
asyncio.to_thread)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.entry import Entry, entry_from_json, entry_to_json
from gateway.store import Db, Store, json_text

Kind = Literal["create", "update", "delete"]


@dataclass
class Item:
    document: str
    user: str  # the xui that PUT it
    source: str
    source_user: str  # "" for a shared source instance
    kind: Kind
    entry_id: str
    href: str = ""
    before: Entry | None = None  # the entry as the merge saw it (ours)
    after: Entry | None = None
    #: The upstream ETag of the contact the merge compared against ("" for a create):
    #: a contact changed upstream since is merged again, never overwritten blindly.
    etag: str = ""
    id: int = 0
    created: float = field(default_factory=time.time)
    attempts: int = 0
    next_attempt: float = 0.0
    error: str | None = None

    @property
    def instance(self) -> tuple[str, str]:
        return self.source, self.source_user

    def context(self) -> dict[str, str]:
        return {"document": self.document, "user": self.user, "entry": self.entry_id}


_COLUMNS = (
    'id, created, document, "user", source, source_user, kind, entry_id, href, before, after,'
    " attempts, next_attempt, error, etag"
)


_COLUMN_NAMES = _COLUMNS.replace(" ", "").replace('"', "").split(",")
#: Archiving an id again (a retry's second failure) keeps the newest record.
ARCHIVE_UPDATE = ", ".join(
    f"{column} = excluded.{column}"
    for column in (
        "created",
        "archived",
        "document",
        '"user"',
        "source",
        "kind",
        "entry_id",
        "error",
        "item",
    )
)


def _json(entry: Entry | None) -> str | None:
    return json_text(entry_to_json(entry)) if entry is not None else None


def insert(store: Store, items: list[Item]) -> None:
    """One transaction for all of a PUT's changes; sets each item's id."""
    with store.transaction() as db:
        for item in items:
            cursor = db.execute(
                'INSERT INTO outbox (created, document, "user", source, source_user, kind,'
                " entry_id, href, before, after, etag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (
                    item.created,
                    item.document,
                    item.user,
                    item.source,
                    item.source_user,
                    item.kind,
                    item.entry_id,
                    item.href,
                    _json(item.before),
                    _json(item.after),
                    item.etag,
                ),
            )
            item.id = int(cursor.fetchone()[0])
        store.notify_outbox(db)


def update(store: Store, item: Item, state: str) -> None:
    with store.transaction() as db:
        record(db, item, state)


def record(db: Db, item: Item, state: str) -> None:
    """The item's outcome: gone when applied, else its state and attempts."""
    if state == "applied":
        db.execute("DELETE FROM outbox WHERE id=?", (item.id,))
    else:
        db.execute(
            "UPDATE outbox SET state=?, attempts=?, next_attempt=?, error=? WHERE id=?",
            (state, item.attempts, item.next_attempt, item.error, item.id),
        )


def load(store: Store, state: str, newest: int | None = None) -> list[Item]:
    """Items in `state`, oldest first (only the `newest` ones when given)."""
    with store.transaction() as db:
        if newest is None:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE state=? ORDER BY id", (state,)
            ).fetchall()
        else:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE state=? ORDER BY id DESC LIMIT ?",
                (state, newest),
            ).fetchall()[::-1]
    return [_item(row) for row in rows]


def count(store: Store, state: str) -> int:
    with store.transaction() as db:
        return int(db.execute("SELECT count(*) FROM outbox WHERE state=?", (state,)).fetchone()[0])


def archive(store: Store, before: float) -> int:
    """Move failed items created before `before` to outbox_archive; how many moved."""
    with store.transaction() as db:
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE state='failed' AND created < ?", (before,)
        ).fetchall()
        now = time.time()
        db.executemany(
            'INSERT INTO outbox_archive (id, created, archived, document, "user",'
            " source, kind, entry_id, error, item) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" ON CONFLICT (id) DO UPDATE SET {ARCHIVE_UPDATE}",
            [
                (
                    row[0],
                    row[1],
                    now,
                    row[2],
                    row[3],
                    row[4],
                    row[6],
                    row[7],
                    row[13],
                    json.dumps(dict(zip(_COLUMN_NAMES, row, strict=True))),
                )
                for row in rows
            ],
        )
        db.executemany("DELETE FROM outbox WHERE id=?", [(row[0],) for row in rows])
    return len(rows)


def _item(row: Any) -> Item:
    return Item(
        document=row[2],
        user=row[3],
        source=row[4],
        source_user=row[5],
        kind=row[6],
        entry_id=row[7],
        href=row[8],
        before=entry_from_json(json.loads(row[9])) if row[9] else None,
        after=entry_from_json(json.loads(row[10])) if row[10] else None,
        id=row[0],
        created=row[1],
        attempts=row[11],
        next_attempt=row[12],
        error=row[13],
        etag=row[14],
    )
