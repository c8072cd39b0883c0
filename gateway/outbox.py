"""The durable outbox: a phone's changes are committed here before the PUT is answered,
then applied to their sources by one worker per source instance, in order, with retry
and backoff while the upstream is unreachable. A change the upstream refuses for good
(schema, permission) is recorded as failed and reported; its entry shows the upstream
value again. Until a change is applied, composed documents show it (`pending`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from gateway import writeback
from gateway.connector import ConnectorError, ReadOnly, Rejected, Unavailable
from gateway.entry import Entry, entry_from_json, entry_to_json
from gateway.logs import event
from gateway.model import UserRef
from gateway.numbers import NumberFormat
from gateway.store import Store
from gateway.sync import Sources

if TYPE_CHECKING:
    from gateway.metrics import Metrics

Kind = Literal["create", "update", "delete"]
#: Retry delays after an upstream failure: RETRY_FIRST seconds, doubling, up to RETRY_MAX.
RETRY_FIRST = 2.0
RETRY_MAX = 300.0


@dataclass
class Item:
    document: str
    user: str  # the xui that PUT it
    source: str
    source_user: str  # "" for a shared source instance
    kind: Kind
    entry_id: str
    href: str = ""
    before: Entry | None = None
    after: Entry | None = None
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


class Outbox:
    def __init__(self, sources: Sources, numbers_for: Callable[[str], NumberFormat]) -> None:
        self.sources = sources
        self.numbers_for = numbers_for
        self.store: Store | None = None
        #: Changes not yet applied, per source instance, in the order they came.
        self._pending: dict[tuple[str, str], list[Item]] = {}
        self.failed: list[Item] = []
        #: Changes whenever `pending` does: part of every composed document's inputs.
        self.version = 0
        self._next_id = 1
        self.metrics: Metrics | None = None
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._wake: dict[tuple[str, str], asyncio.Event] = {}

    def pending(self, source: str, source_user: str) -> list[Item]:
        return self._pending.get((source, source_user), [])

    @property
    def depth(self) -> int:
        return sum(len(items) for items in self._pending.values())

    def oldest(self) -> float | None:
        return min((items[0].created for items in self._pending.values() if items), default=None)

    # --- committing ---------------------------------------------------------------------

    async def commit(self, items: list[Item]) -> None:
        """Make `items` durable (one transaction, fsynced), then start applying them."""
        if not items:
            return
        if self.store is not None:
            await asyncio.to_thread(self._insert, self.store, items)
        else:
            for item in items:
                item.id, self._next_id = self._next_id, self._next_id + 1
        for item in items:
            self._pending.setdefault(item.instance, []).append(item)
        self.version += 1
        for instance in {item.instance for item in items}:
            self._kick(instance)

    @staticmethod
    def _insert(store: Store, items: list[Item]) -> None:
        with store.transaction() as db:
            for item in items:
                cursor = db.execute(
                    "INSERT INTO outbox (created, document, user, source, source_user, kind,"
                    " entry_id, href, before, after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    ),
                )
                item.id = int(cursor.lastrowid or 0)

    # --- running ------------------------------------------------------------------------

    async def start(self, store: Store) -> None:
        """Take up what an earlier run left pending (after a crash too)."""
        self.store = store
        for item in await asyncio.to_thread(_load, store, "pending"):
            self._pending.setdefault(item.instance, []).append(item)
        self.failed = await asyncio.to_thread(_load, store, "failed")
        if self._pending:
            self.version += 1
            event("outbox_resumed", pending=self.depth)
        for instance in self._pending:
            self._kick(instance)

    def _kick(self, instance: tuple[str, str]) -> None:
        self._wake.setdefault(instance, asyncio.Event()).set()
        worker = self._workers.get(instance)
        if worker is None or worker.done():
            self._workers[instance] = asyncio.create_task(self._work(instance))

    async def _work(self, instance: tuple[str, str]) -> None:
        wake = self._wake.setdefault(instance, asyncio.Event())
        while items := self._pending.get(instance):
            item = items[0]
            delay = item.next_attempt - time.time()
            if delay > 0:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=delay)
                continue
            outcome = await self._apply(item)
            if self.metrics is not None:
                self.metrics.writes.labels(item.source, outcome).inc()
            if outcome == "retry":
                item.attempts += 1
                item.next_attempt = time.time() + min(
                    RETRY_MAX, RETRY_FIRST * 2 ** (item.attempts - 1)
                )
                await self._record(item, "pending")
                continue
            items.pop(0)
            self.version += 1
            await self._record(item, "failed" if outcome == "failed" else "applied")

    async def _apply(self, item: Item) -> str:
        context = item.context()
        user = UserRef(item.source_user) if item.source_user else UserRef(item.user)
        state = self.sources.state(item.source, user)
        numbers = self.numbers_for(item.document)
        try:
            await self.sources.ready(state)
            if not state.has_data:
                raise Unavailable(state.last_error or "the source has no data yet")
            if item.kind == "create":
                assert item.after is not None
                return await writeback.create(state, item.after, numbers, context)
            if item.kind == "update":
                assert item.before is not None and item.after is not None
                outcome = await writeback.update(
                    state, item.href, item.before, item.after, numbers, context
                )
                if outcome == "gone":
                    item.error = "the entry was deleted upstream before the change could be applied"
                    event(
                        "write_failed",
                        logging.WARNING,
                        **context,
                        source=item.source,
                        detail=item.error,
                    )
                    return "failed"
                return outcome
            return await writeback.delete(state, item.href, item.entry_id, context)
        except (Rejected, ReadOnly) as exc:
            item.error = str(exc)
            event(
                "write_failed",
                logging.ERROR,
                **context,
                source=item.source,
                change=item.kind,
                error=type(exc).__name__,
                detail=str(exc),
            )
            return "failed"
        except ConnectorError as exc:
            item.error = str(exc)
            event(
                "write_retry",
                logging.WARNING,
                **context,
                source=item.source,
                change=item.kind,
                attempts=item.attempts + 1,
                error=type(exc).__name__,
                detail=str(exc),
            )
            return "retry"

    async def _record(self, item: Item, state: str) -> None:
        if state == "failed":
            self.failed.append(item)
        if self.store is not None:
            await asyncio.to_thread(_update_row, self.store, item, state)

    async def settled(self, items: list[Item], timeout: float) -> None:
        """Wait until `items` left the queue (applied or failed), at most `timeout`."""
        deadline = time.monotonic() + timeout
        waiting = {id(item) for item in items}
        while time.monotonic() < deadline and any(
            id(item) in waiting for queue in self._pending.values() for item in queue
        ):
            await asyncio.sleep(0.01)

    async def drained(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is pending (or `timeout`); True when drained."""
        deadline = time.monotonic() + timeout
        while self.depth and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self.depth

    async def stop(self) -> None:
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()


def _json(entry: Entry | None) -> str | None:
    return json.dumps(entry_to_json(entry), ensure_ascii=False) if entry is not None else None


def _update_row(store: Store, item: Item, state: str) -> None:
    with store.transaction() as db:
        if state == "applied":
            db.execute("DELETE FROM outbox WHERE id=?", (item.id,))
        else:
            db.execute(
                "UPDATE outbox SET state=?, attempts=?, next_attempt=?, error=? WHERE id=?",
                (state, item.attempts, item.next_attempt, item.error, item.id),
            )


def _load(store: Store, state: str) -> list[Item]:
    with store.transaction() as db:
        rows = db.execute(
            "SELECT id, created, document, user, source, source_user, kind, entry_id, href,"
            " before, after, attempts, next_attempt, error FROM outbox WHERE state=? ORDER BY id",
            (state,),
        ).fetchall()
    items = []
    for row in rows:
        before = entry_from_json(json.loads(row[9])) if row[9] else None
        after = entry_from_json(json.loads(row[10])) if row[10] else None
        items.append(
            Item(
                document=row[2],
                user=row[3],
                source=row[4],
                source_user=row[5],
                kind=row[6],
                entry_id=row[7],
                href=row[8],
                before=before,
                after=after,
                id=row[0],
                created=row[1],
                attempts=row[11],
                next_attempt=row[12],
                error=row[13],
            )
        )
    return items
