"""Retry or discard a failed change, for the console's Outbox page.

A failed change (the upstream refused it for good, or it kept failing unexpectedly) is
no longer pending: its entry shows the upstream value again. Retry queues it anew (a
fresh, durable outbox row through `Outbox.commit`, then the failed row goes); discard
moves the failed row to the archive table, where the outbox's own housekeeping would
have moved it after FAILED_KEEP.

The outbox has no public way to take a change out of its in-memory `failed` list; both
actions keep that list and `failed_count` in step here."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from gateway.entry import entry_to_json
from gateway.outbox import Item, Outbox
from gateway.outbox_rows import ARCHIVE_UPDATE
from gateway.store import Store, json_text


def failed_item(outbox: Outbox, item_id: int) -> Item | None:
    """The failed change with this id, among those the outbox keeps in memory."""
    return next((item for item in outbox.failed if item.id == item_id), None)


def claim(outbox: Outbox, item_id: int) -> Item | None:
    """The failed change with this id, out of the failed list at once (no await between
    the look-up and the removal): one retry or discard per change, whoever clicks."""
    item = failed_item(outbox, item_id)
    if item is not None:
        outbox.failed.remove(item)
        outbox.failed_count = max(0, outbox.failed_count - 1)
    return item


def _unclaim(outbox: Outbox, item: Item) -> None:
    outbox.failed.append(item)
    outbox.failed_count += 1


async def retry(outbox: Outbox, item: Item) -> Item:
    """Queue the claimed `item` again (as a new change); the failed record goes. The new
    change. If it cannot be queued (the database refuses), it is failed as before."""
    again = replace(item, id=0, attempts=0, next_attempt=0.0, error=None)
    try:
        await outbox.commit([again])  # durable before the failed row goes: never lost
    except BaseException:
        _unclaim(outbox, item)
        raise
    # Queued now: even if archiving the failed row fails, it is not offered again here.
    await _archive(outbox, item, "retried")
    return again


async def discard(outbox: Outbox, item: Item) -> None:
    """Give up on the claimed `item`: archived with why (failed as before if that fails)."""
    try:
        await _archive(outbox, item, "discarded")
    except BaseException:
        _unclaim(outbox, item)
        raise


async def _archive(outbox: Outbox, item: Item, why: str) -> None:
    if outbox.store is not None:
        await asyncio.to_thread(_archive_one, outbox.store, item, why)


def _archive_one(store: Store, item: Item, why: str) -> None:
    record = {
        "id": item.id,
        "created": item.created,
        "document": item.document,
        "user": item.user,
        "source": item.source,
        "source_user": item.source_user,
        "kind": item.kind,
        "entry_id": item.entry_id,
        "href": item.href,
        "before": entry_to_json(item.before) if item.before else None,
        "after": entry_to_json(item.after) if item.after else None,
        "attempts": item.attempts,
        "error": item.error,
        "etag": item.etag,
        "admin": why,
    }
    with store.transaction() as db:
        db.execute(
            'INSERT INTO outbox_archive (id, created, archived, document, "user",'
            " source, kind, entry_id, error, item) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" ON CONFLICT (id) DO UPDATE SET {ARCHIVE_UPDATE}",
            (
                item.id,
                item.created,
                time.time(),
                item.document,
                item.user,
                item.source,
                item.kind,
                item.entry_id,
                item.error,
                json_text(record),
            ),
        )
        db.execute("DELETE FROM outbox WHERE id=? AND state='failed'", (item.id,))
