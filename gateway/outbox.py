"""The durable outbox: a phone's changes are committed here before the PUT is answered,
then applied to their sources by one worker per source instance, in order, with retry
and backoff while the upstream is unreachable. A change the upstream refuses for good
(schema, permission), or one that keeps failing unexpectedly, is recorded as failed and
reported; its entry shows the upstream value again. Until a change is applied, composed
documents show it (`pending`).

One outbox lives as long as the engine: a reload pauses it (changes being applied finish
first), gives it the new sources and configuration, and resumes it. A change whose source
or document is no longer configured is parked: kept on disk, reported, applied when the
source comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Literal

from gateway import outbox_rows
from gateway.config import Config
from gateway.connector import ConnectorError, ReadOnly, Rejected, Unavailable
from gateway.logs import event
from gateway.merge import Conflict
from gateway.model import UserRef
from gateway.numbers import NumberFormat
from gateway.outbox_rows import Item, Kind
from gateway.store import Claim, Db, Store
from gateway.sync import Sources
from gateway.writeback import apply_change, create

if TYPE_CHECKING:
    from gateway.metrics import Metrics

__all__ = ["Item", "Kind", "Outbox"]

#: Retry delays after an upstream failure: RETRY_FIRST seconds, doubling, up to RETRY_MAX.
RETRY_FIRST = 2.0
RETRY_MAX = 300.0
#: An unexpected error (a bug, odd data) is retried this often, then the change fails.
UNEXPECTED_ATTEMPTS = 3
#: Failed changes stay listed this long, then move to the archive table.
FAILED_KEEP = 30 * 86400.0
#: Failed changes kept in memory for status and metrics (the database has them all).
FAILED_IN_MEMORY = 200
#: How long a reload or stop lets a change being applied finish before cancelling it.
PAUSE_TIMEOUT = 10.0
#: Changes applied at once, over all source instances: not bounded by a SQLite store;
#: `Outbox.bounded_claims` makes it the size of PostgreSQL's pool for claims (each claim
#: holds a connection while its upstream answers).
CLAIMS_AT_ONCE = 1_000_000
#: When another process holds a change (or one before it), ask again after this long.
CLAIM_RETRY = 0.5


class Outbox:
    def __init__(
        self, sources: Sources, config: Config, numbers_for: Callable[[str], NumberFormat]
    ) -> None:
        self.sources = sources
        self.config = config
        self.numbers_for = numbers_for
        self.store: Store | None = None
        #: Changes not yet applied, per source instance, in the order they came.
        self._pending: dict[tuple[str, str], list[Item]] = {}
        self.failed: deque[Item] = deque(maxlen=FAILED_IN_MEMORY)
        #: Failed changes not archived yet (in the database; `failed` holds the newest).
        self.failed_count = 0
        #: Changes whenever `pending` does (anywhere).
        self.version = 0
        #: Per source instance: changes whenever its pending changes do. A document's
        #: inputs hold those of its sources only, so a PUT re-composes the documents
        #: that show the change, not every document of every user.
        self._instance_versions: dict[tuple[str, str], int] = {}
        #: Changes when every instance's pending changes may have (load, reload).
        self._generation = 0
        self._next_id = 1
        self.metrics: Metrics | None = None
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._wake: dict[tuple[str, str], asyncio.Event] = {}
        self._paused = False
        #: Changes applied at once (each claim holds a database connection meanwhile).
        self._claim_slots = asyncio.Semaphore(CLAIMS_AT_ONCE)
        #: Items being applied here now (by id()): a catch-up leaves them to their worker.
        self._applying: set[int] = set()
        #: Commits made here (a count), and by which one each pending item was committed:
        #: a catch-up keeps what was committed while it read the database.
        self._commits = 0
        self._committed_in: dict[int, int] = {}
        #: Set when a claim found an earlier change this process does not know: the next
        #: catch-up is due at once.
        self.behind = False

    def pending(self, source: str, source_user: str) -> list[Item]:
        return self._pending.get((source, source_user), [])

    def version_of(self, source: str, source_user: str) -> tuple[int, int]:
        """Changes whenever the pending changes of this source instance do."""
        return self._generation, self._instance_versions.get((source, source_user), 0)

    def _changed(self, instances: set[tuple[str, str]] | None = None) -> None:
        """Pending changes of `instances` (all of them, when None) changed."""
        self.version += 1
        if instances is None:
            self._generation += 1
            return
        for instance in instances:
            # The global count: an instance never sees a number twice.
            self._instance_versions[instance] = self.version

    def users_waiting(self) -> set[str]:
        """Users with changes not yet applied: the xui they were made for and the one of the
        source instance they go to."""
        return {
            xui
            for items in self._pending.values()
            for item in items
            for xui in (item.user, item.source_user)
        }

    @property
    def depth(self) -> int:
        return sum(len(items) for items in self._pending.values())

    def oldest(self) -> float | None:
        return min((items[0].created for items in self._pending.values() if items), default=None)

    def parked(self) -> list[tuple[Item, str]]:
        """Pending changes that cannot run now, with why (their source or document was
        removed from the configuration)."""
        return [
            (item, reason)
            for items in self._pending.values()
            for item in items
            if (reason := self._parked_reason(item)) is not None
        ]

    def _parked_reason(self, item: Item) -> str | None:
        if item.source not in self.config.sources:
            return f"source {item.source!r} is not configured"
        if item.document not in self.config.documents:
            return f"document {item.document!r} is not configured"
        return None

    # --- committing ---------------------------------------------------------------------

    async def commit(self, items: list[Item]) -> None:
        """Make `items` durable (one transaction, fsynced), then start applying them."""
        if not items:
            return
        if self.store is not None:
            await asyncio.to_thread(outbox_rows.insert, self.store, items)
        else:
            for item in items:
                item.id, self._next_id = self._next_id, self._next_id + 1
        self._commits += 1
        for item in items:
            self._committed_in[item.id] = self._commits
        known = {item.id for queue in self._pending.values() for item in queue}
        for item in items:
            if item.id not in known:  # a catch-up may have taken it from the database first
                self._pending.setdefault(item.instance, []).append(item)
        self._changed({item.instance for item in items})
        for instance in {item.instance for item in items}:
            self._kick(instance)

    # --- running ------------------------------------------------------------------------

    def bounded_claims(self, connections: int) -> None:
        """At most `connections` (the database's pool for claims) changes applied at once."""
        self._claim_slots = asyncio.Semaphore(max(1, min(CLAIMS_AT_ONCE, connections)))

    async def start(self, store: Store) -> None:
        """Take up what an earlier run left pending (after a crash too)."""
        await self.load(store)
        for instance in list(self._pending):
            self._kick(instance)

    async def load(self, store: Store) -> None:
        """Read pending and failed changes from the database, without applying any."""
        self.store = store
        archived = await asyncio.to_thread(outbox_rows.archive, store, time.time() - FAILED_KEEP)
        for item in await asyncio.to_thread(outbox_rows.load, store, "pending"):
            self._pending.setdefault(item.instance, []).append(item)
        self.failed.extend(
            await asyncio.to_thread(outbox_rows.load, store, "failed", FAILED_IN_MEMORY)
        )
        self.failed_count = await asyncio.to_thread(outbox_rows.count, store, "failed")
        if self._pending:
            self._changed()
            event("outbox_resumed", pending=self.depth, archived=archived or None)
        self._report_parked()

    async def archive_old(self) -> None:
        """Move failed changes older than FAILED_KEEP to the archive (housekeeping)."""
        if self.store is None:
            return
        moved = await asyncio.to_thread(outbox_rows.archive, self.store, time.time() - FAILED_KEEP)
        if moved:
            self.failed_count = max(0, self.failed_count - moved)
            cutoff = time.time() - FAILED_KEEP
            kept = [item for item in self.failed if item.created >= cutoff]
            self.failed.clear()
            self.failed.extend(kept)
            event("outbox_archived", failed=moved)

    async def pause(self, timeout: float = PAUSE_TIMEOUT) -> None:
        """Stop taking up changes; a change being applied may finish (up to `timeout`,
        then it is cancelled and, its steps being idempotent, redone after `resume`)."""
        self._paused = True
        for wake in self._wake.values():
            wake.set()
        workers = [task for task in self._workers.values() if not task.done()]
        if workers:
            _, late = await asyncio.wait(workers, timeout=timeout)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._workers.clear()

    def resume(
        self, sources: Sources, config: Config, numbers_for: Callable[[str], NumberFormat]
    ) -> None:
        """Go on with a (reloaded) configuration: parked changes whose source is back run."""
        self.sources, self.config, self.numbers_for = sources, config, numbers_for
        self._paused = False
        self._changed()  # documents compose with the new sources' pending changes
        self._report_parked()
        for instance in list(self._pending):
            self._kick(instance)

    async def stop(self) -> None:
        await self.pause()

    def _report_parked(self) -> None:
        for item, reason in self.parked():
            event(
                "change_parked",
                logging.WARNING,
                **item.context(),
                source=item.source,
                change=item.kind,
                reason=reason,
            )

    def _kick(self, instance: tuple[str, str]) -> None:
        if self._paused:
            return
        self._wake.setdefault(instance, asyncio.Event()).set()
        worker = self._workers.get(instance)
        if worker is None or worker.done():
            self._workers[instance] = asyncio.create_task(self._work(instance))

    def _next_item(self, instance: tuple[str, str]) -> Item | None:
        """The first change of the instance that can run (parked ones are passed over)."""
        for item in self._pending.get(instance, []):
            if self._parked_reason(item) is None:
                return item
        return None

    async def _work(self, instance: tuple[str, str]) -> None:
        wake = self._wake.setdefault(instance, asyncio.Event())
        while not self._paused and (item := self._next_item(instance)) is not None:
            delay = item.next_attempt - time.time()
            if delay > 0:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=delay)
                continue
            async with self._claim_slots:
                await self._apply_claimed(instance, item)

    async def _apply_claimed(self, instance: tuple[str, str], item: Item) -> None:
        """Claim the item, apply it, record the outcome, let it go. Claims are bounded
        (`claim_slots`): each holds a database connection while its upstream answers, and
        PUTs need the pool too."""
        claim = await self._claim(instance, item)
        if claim is None:
            return
        try:
            outcome = await self._apply(item)
            await self._settle(instance, item, outcome, claim)
        except Exception as exc:  # the state database failed: keep the change, retry
            event(
                "outbox_record_failed",
                logging.ERROR,
                **item.context(),
                error=type(exc).__name__,
                detail=str(exc),
            )
            item.next_attempt = time.time() + RETRY_FIRST
        finally:
            await _released(claim)

    async def _claim(self, instance: tuple[str, str], item: Item) -> Claim | None:
        """The item, claimed for this process to apply (replicas sharing the database
        never apply one change twice at once); None when it is not this process's turn:
        another holds it, an earlier change of the instance is pending (learnt by the next
        catch-up), or it was applied meanwhile (then it leaves the queue)."""
        if self.store is None:
            return _Unclaimed()
        try:
            state, claim = await asyncio.to_thread(
                self.store.claim, item.id, item.source, item.source_user
            )
        except Exception as exc:  # the database is unreachable: try again later
            event("outbox_claim_failed", logging.WARNING, **item.context(), detail=str(exc))
            item.next_attempt = time.time() + RETRY_FIRST
            return None
        if state == "gone":
            self._forget(instance, item)
            self._changed({instance})
            return None
        if claim is None:
            # Another replica applies it (or an earlier change this one has not learnt).
            event("outbox_claim_busy", logging.DEBUG, **item.context(), source=item.source)
            item.next_attempt = time.time() + CLAIM_RETRY
            self.behind = True
            return None
        if claim.row is not None:  # another process may have tried it meanwhile
            attempts, next_attempt, error = claim.row
            if attempts > item.attempts:
                item.attempts, item.error = attempts, error
            if next_attempt > time.time():  # and backs off from it: so does this one
                item.next_attempt = next_attempt
                await _released(claim)
                return None
        return claim

    def _forget(self, instance: tuple[str, str], item: Item) -> None:
        self._committed_in.pop(item.id, None)
        queue = self._pending.get(instance, [])
        if item in queue:
            queue.remove(item)
        if not queue:
            self._pending.pop(instance, None)

    async def _settle(
        self, instance: tuple[str, str], item: Item, outcome: str, claim: Claim
    ) -> None:
        if self.metrics is not None:
            self.metrics.writes.labels(item.source, outcome).inc()
        if outcome == "retry":
            item.attempts += 1
            item.next_attempt = time.time() + min(RETRY_MAX, RETRY_FIRST * 2 ** (item.attempts - 1))
            await self._record(claim, item, "pending")
            return
        state = "failed" if outcome == "failed" else "applied"
        await self._record(claim, item, state)  # first on disk: a failure keeps it pending
        self._forget(instance, item)
        self._changed({instance})
        if state == "failed":
            self.failed.append(item)
            self.failed_count += 1

    async def catch_up(self) -> None:
        """Take the pending changes other processes sharing the database queued, and let
        go of those they applied: documents here show the same pending changes as there,
        and a PUT merges with them."""
        if self.store is None:
            return
        self.behind = False
        # Items this process commits while the database is read are not in what is read:
        # they are not "applied elsewhere".
        read_after = self._commits
        stored = await asyncio.to_thread(outbox_rows.load, self.store, "pending")
        failed = await asyncio.to_thread(outbox_rows.count, self.store, "failed")
        stored_ids = {item.id for item in stored}
        known = {item.id: item for items in self._pending.values() for item in items}
        changed: set[tuple[str, str]] = set()
        for item in stored:
            if item.id not in known:
                self._pending.setdefault(item.instance, []).append(item)
                changed.add(item.instance)
        for item_id, item in known.items():
            if (
                item_id not in stored_ids
                and item_id > 0
                and id(item) not in self._applying
                and self._committed_in.get(item_id, 0) <= read_after
            ):
                self._forget(item.instance, item)
                changed.add(item.instance)
        for instance in changed:
            if instance in self._pending:
                self._pending[instance].sort(key=lambda item: item.id)
        self.failed_count = failed
        if changed:
            self._changed(changed)
            for instance in changed:
                self._kick(instance)

    async def _apply(self, item: Item) -> str:
        self._applying.add(id(item))
        try:
            return await self._apply_or_raise(item)
        except (Rejected, ReadOnly) as exc:
            _failed_write(item, exc, "write_failed", logging.ERROR)
            return "failed"
        except ConnectorError as exc:
            _failed_write(item, exc, "write_retry", logging.WARNING, attempts=item.attempts + 1)
            return "retry"
        except Exception as exc:
            # Not a connector's typed error: a bug or data nobody foresaw. It must not stop
            # the source's later changes: retried a few times, then recorded as failed.
            _failed_write(
                item, exc, "write_error", logging.ERROR, attempts=item.attempts + 1, exc_info=True
            )
            item.error = _printable(f"{type(exc).__name__}: {exc}")
            return "failed" if item.attempts + 1 >= UNEXPECTED_ATTEMPTS else "retry"
        finally:
            self._applying.discard(id(item))

    async def _apply_or_raise(self, item: Item) -> str:
        source = self.config.sources[item.source]
        if item.kind != "create" and source.read_only:
            raise ReadOnly(f"source {item.source!r} is read_only now")
        if item.kind == "delete" and not source.deletes_allowed:
            raise ReadOnly(f"source {item.source!r} does not allow deletes now")
        user = UserRef(item.source_user) if item.source_user else UserRef(item.user)
        state = self.sources.state(item.source, user)
        await self.sources.ready(state)
        if not state.has_data:
            raise Unavailable(state.last_error or "the source has no data yet")
        document = self.config.documents[item.document]
        outcome = await apply_change(
            state,
            item,
            self.numbers_for(item.document),
            document.conflict_policy,
            self._conflicted,
        )
        if outcome == "gone" and item.kind == "update":
            return await self._edited_but_deleted(item, user)
        return outcome

    async def _edited_but_deleted(self, item: Item, user: UserRef) -> str:
        """The phone edited an entry deleted upstream before the edit could be applied:
        the same conflict the merge settles when it sees the delete first. phone-wins
        creates it again, with the edit, where the document's new entries go;
        upstream-wins lets the delete stand. Both are logged."""
        assert item.after is not None
        document = self.config.documents[item.document]
        phone_wins = document.conflict_policy == "phone-wins"
        target = document.write_to if phone_wins else None
        winner: Literal["phone", "upstream"] = "phone" if target else "upstream"
        self._conflicted(item, Conflict(item.entry_id, "*", "edited", "deleted", winner))
        if target is None:
            return "unchanged"
        state = self.sources.state(target, UserRef(item.user))
        await self.sources.ready(state)
        if not state.has_data:
            raise Unavailable(state.last_error or "the source has no data yet")
        return await create(
            state, item, item.after, self.numbers_for(item.document), self._conflicted
        )

    def _conflicted(self, item: Item, conflict: Conflict) -> None:
        if self.metrics is not None:
            self.metrics.conflicts.labels(item.document).inc()
        event(
            "conflict",
            logging.WARNING,
            **item.context(),
            source=item.source,
            field=conflict.field,
            winner=conflict.winner,
            detail="settled while the change was applied upstream",
        )

    async def _record(self, claim: Claim, item: Item, state: str) -> None:
        await asyncio.to_thread(claim.finish, partial(outbox_rows.record, item=item, state=state))

    async def settled(self, items: list[Item], timeout: float) -> None:
        """Wait until `items` left the queue (applied or failed), at most `timeout`."""
        deadline = time.monotonic() + timeout
        waiting = {id(item) for item in items}
        while time.monotonic() < deadline and any(
            id(item) in waiting for queue in self._pending.values() for item in queue
        ):
            await asyncio.sleep(0.01)

    async def drained(self, timeout: float = 30.0) -> bool:
        """Wait until nothing runnable is pending (or `timeout`); True when drained."""
        deadline = time.monotonic() + timeout
        while self._runnable() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self._runnable()

    def _runnable(self) -> int:
        return self.depth - len(self.parked())


class _Unclaimed(Claim):
    """No database (tests, `render`): nothing to hold, nothing to record."""

    def finish(self, record: Callable[[Db], None]) -> None:
        pass

    def release(self) -> None:
        pass


def _printable(text: str) -> str:
    """An upstream's words, as both databases can keep them (PostgreSQL text holds no NUL;
    an error text that could not be recorded would hold its change, and every later one of
    its source, in the outbox for good)."""
    return text.replace("\x00", "\ufffd")


async def _released(claim: Claim) -> None:
    try:
        await asyncio.to_thread(claim.release)
    except asyncio.CancelledError:
        claim.release()  # the outbox stops: give the connection back all the same
        raise


def _failed_write(item: Item, exc: Exception, name: str, level: int, **fields: object) -> None:
    """Note on the item and in the log why applying it failed."""
    item.error = _printable(str(exc))
    event(
        name,
        level,
        **item.context(),
        source=item.source,
        change=item.kind,
        **fields,
        error=type(exc).__name__,
        detail=str(exc),
    )
