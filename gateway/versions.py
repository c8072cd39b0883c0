"""The versions of a document each device was served: the bases of three-way merges.

Per (document, user) the last `keep` versions served are remembered with the device that
fetched each (User-Agent and client address), for at most `keep_for` seconds. A version's
entries are shared by everyone who got the same ETag.

The first time a device gets a version, that is written to the state database before the
answer goes out (`record_durably`; concurrent ones share one transaction), so a crash
never leaves a phone holding a version the gateway cannot name: a PUT merged against a
forgotten base could delete what the phone never saw. A poll that finds the same version
again only moves its timestamp, which is written lazily (`flush`).

Memory holds the histories of the users being served, not every user ever served: once
the database is attached (`load`), a history is read from it the first time it is needed,
and `evict` drops histories unused for a while (or the least recently used beyond a
number), only ever ones the database holds exactly: none with a change or poll time not
yet written, none in a write under way. `prune` deletes the database's served records
older than `keep_for` of users not in memory, and the versions nobody names any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence

from gateway.entry import Entry
from gateway.logs import event
from gateway.store import Store
from gateway.versions_rows import (
    Batch,
    Entries,
    Found,
    Key,
    Served,
    prune_rows,
    read_history,
    write_batch,
)

#: Devices per user and document whose versions are kept (the most recently served).
MAX_DEVICES = 50
#: Entries held in the versions of one user and document together, newest versions
#: first: a client changing its User-Agent at every PUT must not hold devices x versions
#: whole books in memory. The newest version is always kept; an older one dropped only
#: weakens base selection (a PUT without a base deletes nothing).
MAX_HELD_ENTRIES = 10_000
#: How long versions are kept for a document without keep_versions_for (30 days).
DEFAULT_KEEP_FOR = 30 * 86400.0
#: Served records are pruned from the database this much later than keep_for says: poll
#: times reach it within the hour (POLL_TIMES_SECONDS in the engine), so a record whose
#: stored time is this old is expired in memory too.
PRUNE_MARGIN = 2 * 3600.0
#: How often `prune_due` prunes.
PRUNE_SECONDS = 3600.0


class Versions:
    def __init__(self, keep: Mapping[str, int], keep_for: Mapping[str, float]) -> None:
        self.keep = keep  # per document key
        self.keep_for = keep_for
        self._contents: dict[Key, Entries] = {}
        self._served: dict[Key, list[Served]] = {}
        #: How many histories name each version; at zero its entries are forgotten.
        self._refs: Counter[Key] = Counter()
        #: Versions whose entries are in the database already (written once).
        self._saved: set[Key] = set()
        #: Versions no history names any more, to delete from the database.
        self._forgotten: set[Key] = set()
        #: Histories changed since they were last written.
        self._dirty: set[Key] = set()
        #: Histories whose poll times moved (written now and then: they only age versions).
        self._touched: set[Key] = set()
        self._next_write: asyncio.Future[bool] | None = None
        self._writing = False
        self._writer: asyncio.Task[None] | None = None
        #: Histories in memory -> when last used (time.monotonic()), least recently first.
        self._used: dict[Key, float] = {}
        #: Histories taken by writes under way (kept in memory until those are done).
        self._in_flight: Counter[Key] = Counter()
        #: Where histories not in memory are read from (`load`); None: memory is all.
        self._store: Store | None = None
        #: Other processes (replicas) share the database and serve the same devices.
        self.shared = False
        #: Most histories in memory (given by `evict`); a new one beyond drops the oldest.
        self.max_histories: int | None = None
        #: Histories being read in a worker thread -> [readers, drops meanwhile].
        self._reading: dict[Key, list[int]] = {}
        self._prune_due = 0.0

    def configure(self, keep: Mapping[str, int], keep_for: Mapping[str, float]) -> None:
        """New limits from a reloaded configuration; what was served is kept."""
        self.keep, self.keep_for = keep, keep_for

    # --- recording ----------------------------------------------------------------------

    def record(
        self,
        document: str,
        user: str,
        device: str,
        etag: str,
        entries: Entries,
        sent: bool = False,
        fetched: bool = False,
    ) -> bool:
        """`device` of `user` now holds version `etag` of `document` (`sent`: the body of
        its PUT; `fetched`: answered with the body, not a 304). True when that is news
        (the device held another version), i.e. something to write durably. With replicas
        (`shared`) every fetch is: another replica may have served the device a newer
        version since, which this one's memory does not know."""
        history = self._history(document, user)
        now = time.time()
        mine = [s for s in history if s.device == device]
        for served in mine:
            if served.etag == etag:
                served.at = now
                self._touched.add((document, user))
                news = sent and not served.sent
                served.sent = served.sent or sent
                if mine[-1] is not served:  # back to an older version: newest again
                    history.remove(served)
                    history.append(served)
                    news = True
                news = news or (fetched and self.shared)
                if news:  # a poll of the version it holds is never news: no write
                    self._dirty.add((document, user))
                return news
        self._contents.setdefault((document, etag), entries)
        history.append(Served(etag, device, now, sent))
        self._refs[(document, etag)] += 1
        self._trim(document, history)
        self._dirty.add((document, user))
        return True

    async def record_durably(
        self,
        store: Store | None,
        document: str,
        user: str,
        device: str,
        etag: str,
        entries: Entries,
        sent: bool = False,
        fetched: bool = False,
    ) -> None:
        """`record`, and when it is news, written before returning. A failing database is
        logged, not raised: the phone is served all the same, and a PUT without a known
        base deletes nothing."""
        await self._ensure(document, user)
        if self.record(document, user, device, etag, entries, sent, fetched) and store is not None:
            if not store.available:
                return  # down: housekeeping writes it later; phones are served meanwhile
            await self._write_soon(store)

    def _trim(self, document: str, history: list[Served]) -> None:
        """Per device, its last `keep` versions younger than `keep_for`; per user, the
        MAX_DEVICES devices served most recently (a shared account's many phones must not
        push each other's bases out)."""
        oldest = time.time() - self.keep_for.get(document, 30 * 86400)
        keep = self.keep.get(document, 5)
        by_device: dict[str, list[Served]] = {}
        for served in history:
            if served.at >= oldest:
                by_device.setdefault(served.device, []).append(served)
        recent = sorted(by_device, key=lambda device: by_device[device][-1].at)[-MAX_DEVICES:]
        kept_ids = {id(s) for device in recent for s in by_device[device][-keep:]}
        held: set[str] = set()
        budget = MAX_HELD_ENTRIES
        for served in sorted(
            (s for s in history if id(s) in kept_ids), key=lambda s: s.at, reverse=True
        ):
            if served.etag not in held:
                size = len(self._contents.get((document, served.etag), ()))
                if held and size > budget:
                    kept_ids.discard(id(served))
                    continue
                held.add(served.etag)
                budget -= size
        for dropped in [s for s in history if id(s) not in kept_ids]:
            self._release((document, dropped.etag))
        history[:] = [s for s in history if id(s) in kept_ids]

    def _release(self, version: Key) -> None:
        self._refs[version] -= 1
        if self._refs[version] <= 0:
            del self._refs[version]
            self._contents.pop(version, None)
            if version in self._saved:
                self._saved.discard(version)
                self._forgotten.add(version)

    # --- choosing a base ----------------------------------------------------------------

    def base_for(
        self,
        document: str,
        user: str,
        device: str,
        if_match: Sequence[str] | None,
        theirs: Sequence[Entry] = (),
    ) -> Entries | None:
        """The version the phone edited: the one If-Match names (among those served to
        this user; `if_match` None: no If-Match, or "*"), else of the versions served to
        this device the one the body matches best (a GET whose answer never arrived, or
        two phones behind one address, must not make a newer version the base: its new
        entries would read as deleted). None when it cannot be named (nothing served to
        this device, or an ETag never issued or no longer kept): the merge then deletes
        nothing."""
        history = self._history(document, user)
        if if_match is not None:
            named = {s.etag for s in history}
            for etag in if_match:
                if etag in named and (found := self._contents.get((document, etag))) is not None:
                    return found
            return None
        served = [s for s in history if s.device == device and (document, s.etag) in self._contents]
        # What the device sent itself it surely held; only what it was served since is in
        # doubt (an answer may have been lost on the way).
        sent = [index for index, s in enumerate(served) if s.sent]
        mine = [self._contents[(document, s.etag)] for s in served[sent[-1] if sent else 0 :]]
        if not mine:
            return None
        # Most of the body's entries (an entry only a newer version has shows the phone got
        # that one); then fewest the body lacks; then most entries equal to the body's (of
        # versions with the same entries, the phone holds the one its unchanged entries
        # equal: an older one would read fields changed upstream since as the phone's
        # edits, and bring back what another phone deleted); then the oldest. Taking a
        # version older than the phone's costs at most a delete not carried out; a newer
        # one would read its new entries as deleted and its stale fields as edits.
        best = max(range(len(mine)), key=lambda index: (*_fit(mine[index], theirs), -index))
        return mine[best]

    def held_by(self, document: str, user: str, device: str) -> dict[str, Entry]:
        """Every entry of the versions this device holds or held (newest wins): where an
        entry the phone sent without its id finds the id it was given."""
        held: dict[str, Entry] = {}
        for served in self._history(document, user):
            if served.device == device:
                held.update(self._contents.get((document, served.etag), {}))
        return held

    def served_counts(self) -> dict[str, int]:
        """Per document, how many users were served it (in memory or in the database)."""
        users = {key for key, history in self._served.items() if history}
        if self._store is not None:
            with contextlib.suppress(Exception), self._store.transaction() as db:
                users.update(db.execute('SELECT DISTINCT document, "user" FROM served'))
        counts: dict[str, int] = {}
        for document, _ in users:
            counts[document] = counts.get(document, 0) + 1
        return counts

    # --- memory: histories read when needed, dropped when idle ---------------------------

    def _history(self, document: str, user: str) -> list[Served]:
        """The history of (document, user), read from the database if not in memory (on
        the event loop: `_ensure` reads it in a worker thread first where it can)."""
        key = (document, user)
        history = self._served.get(key)
        if history is None:
            if self._store is None:
                history = self._served[key] = []
            else:
                history = self._install(key, self._read_or_log(self._store, key))
        self._use(key)
        return history

    async def _ensure(self, document: str, user: str) -> None:
        """Read the history of (document, user) into memory if it is not there."""
        key = (document, user)
        if key in self._served or self._store is None:
            return
        # [readers, drops]: a history read, written and dropped again while this read
        # ran is read once more (what this one found may miss the write).
        reading = self._reading.setdefault(key, [0, 0])
        reading[0] += 1
        try:
            while key not in self._served:
                drops = reading[1]
                found = await asyncio.to_thread(self._read_or_log, self._store, key)
                if key not in self._served and reading[1] == drops:
                    self._install(key, found)
                    self._use(key)
        finally:
            reading[0] -= 1
            if not reading[0]:
                del self._reading[key]

    async def reread(self, document: str, user: str) -> None:
        """Merge into memory what the database has of the history of (document, user):
        other processes sharing it may have served this user since (a phone whose requests
        alternate between replicas), and a PUT must merge against the version the phone
        holds. Each record keeps its latest time and whether the device sent it, from
        either side; what only memory knows (a poll not written yet) counts too."""
        key = (document, user)
        if self._store is None:
            return
        if key not in self._served:
            await self._ensure(document, user)
            return
        rows, contents = await asyncio.to_thread(self._read_or_log, self._store, key)
        history = self._served.get(key)
        if history is None:  # dropped from memory while it was read
            await self._ensure(document, user)
            return
        mine = {(s.device, s.etag): s for s in history}
        for row in rows:
            record = mine.get((row.device, row.etag))
            if record is not None:
                record.at, record.sent = max(record.at, row.at), record.sent or row.sent
                continue
            version = (document, row.etag)
            if version not in self._contents:
                if row.etag not in contents:
                    continue  # its entries are gone: no use as a base
                self._contents[version] = contents[row.etag]
                self._saved.add(version)
            self._refs[version] += 1
            history.append(row)
            mine[(row.device, row.etag)] = row
        history.sort(key=lambda served: served.at)
        self._trim(document, history)

    def _read_or_log(self, store: Store, key: Key) -> Found:
        """A failing database reads as no history: merges then delete nothing."""
        try:
            return read_history(
                store, key, time.time() - self.keep_for.get(key[0], DEFAULT_KEEP_FOR)
            )
        except Exception as exc:
            event("versions_read_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc))
            return [], {}

    def _install(self, key: Key, found: Found) -> list[Served]:
        history, contents = found
        document = key[0]
        for served in history:
            version = (document, served.etag)
            if version not in self._contents and served.etag in contents:
                self._contents[version] = contents[served.etag]
                self._saved.add(version)
            self._refs[version] += 1
        self._served[key] = history
        return history

    def _use(self, key: Key) -> None:
        known = self._used.pop(key, None) is not None
        self._used[key] = time.monotonic()
        if not known and self.max_histories is not None and len(self._used) > self.max_histories:
            self._evict(math.inf, self.max_histories, time.monotonic(), keep=key)

    def evict(self, idle: float, max_histories: int, now: float | None = None) -> int:
        """Drop from memory the histories unused for `idle` seconds (at `now`, a
        time.monotonic() value), and the least recently used beyond `max_histories` (a
        bound also kept as new ones come). Only histories the database holds exactly go:
        one with poll times not yet written is written by the next flush, then dropped.
        Returns how many were dropped."""
        self.max_histories = max_histories
        return self._evict(idle, max_histories, time.monotonic() if now is None else now)

    def _evict(self, idle: float, max_histories: int, now: float, keep: Key | None = None) -> int:
        if self._store is None:  # nowhere to read them back from
            return 0
        over = len(self._used) - max_histories
        dropped = 0
        for key, used in list(self._used.items()):  # least recently used first
            if over <= 0 and now - used < idle:
                break
            if key == keep or key in self._dirty or self._in_flight[key]:
                continue
            if key in self._touched:  # its poll times go with the next flush
                self._touched.discard(key)
                self._dirty.add(key)
                continue
            self._drop(key)
            dropped += 1
            over -= 1
        if dropped > len(self._used):  # a dict never shrinks by itself: copies do
            self._used, self._served = dict(self._used), dict(self._served)
            self._contents, self._refs = dict(self._contents), Counter(self._refs)
        return dropped

    def _drop(self, key: Key) -> None:
        del self._used[key]
        if (reading := self._reading.get(key)) is not None:
            reading[1] += 1
        for served in self._served.pop(key, []):
            version = (key[0], served.etag)
            self._refs[version] -= 1
            if self._refs[version] <= 0:  # named by histories in the database only
                del self._refs[version]
                self._contents.pop(version, None)
                self._saved.discard(version)

    @property
    def histories(self) -> int:
        """Histories in memory."""
        return len(self._served)

    def users_in_memory(self) -> set[str]:
        return {user for _, user in self._served}

    # --- persistence ------------------------------------------------------------------------

    async def _write_soon(self, store: Store) -> None:
        """Wait until a transaction that started after this call wrote the dirty histories
        (group commit: whoever arrives while one is written shares the next one)."""
        if self._next_write is None:
            self._next_write = asyncio.get_running_loop().create_future()
        waiting = self._next_write
        if not self._writing:
            self._writing = True
            self._writer = asyncio.create_task(self._write_loop(store))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(waiting)

    async def idle(self) -> None:
        """Wait for a write under way (before the database is closed)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)

    async def _write_loop(self, store: Store) -> None:
        done: asyncio.Future[bool] | None = None
        try:
            while self._next_write is not None:
                done, self._next_write = self._next_write, None
                done.set_result(await self.flush_soon(store))
        finally:
            self._writing = False
            # Cancelled (the engine stops): nobody may wait for a write that never comes.
            for waiting in (done, self._next_write):
                if waiting is not None and not waiting.done():
                    waiting.set_result(False)
            self._next_write = None

    def flush(self, store: Store) -> bool:
        """Write what changed since the last write (blocking); False when it failed."""
        batch = self._take()
        try:
            write_batch(store, batch)
        except Exception as exc:
            return self._failed(batch, exc)
        return self._written(batch)

    async def flush_soon(self, store: Store) -> bool:
        """`flush`, with the writing in a worker thread. What it writes is taken on the
        event loop (the tables change under requests) and marked saved only once written."""
        batch = self._take()
        try:
            await asyncio.to_thread(write_batch, store, batch)
        except Exception as exc:
            return self._failed(batch, exc)
        return self._written(batch)

    def _written(self, batch: Batch) -> bool:
        self._saved |= {key for key, _ in batch.versions}
        self._in_flight -= Counter((document, user) for document, user, _ in batch.served)
        return True

    def _failed(self, batch: Batch, exc: Exception) -> bool:
        """What was not written goes back for the next write; the failure is logged."""
        self._in_flight -= Counter((document, user) for document, user, _ in batch.served)
        self._dirty |= {(document, user) for document, user, _ in batch.served}
        self._forgotten |= {key for key in batch.forgotten if key not in self._refs}
        event("versions_write_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc))
        return False

    def include_poll_times(self) -> None:
        """Let the next flush write the poll times that moved too."""
        self._dirty |= self._touched
        self._touched = set()

    def _take(self) -> Batch:
        dirty, self._dirty = self._dirty, set()
        forgotten, self._forgotten = self._forgotten, set()
        served = [
            (
                document,
                user,
                [(s.device, s.etag, s.at, s.sent) for s in self._served.get((document, user), [])],
            )
            for document, user in dirty
        ]
        self._in_flight.update(dirty)
        wanted = {(document, row[1]) for document, _, rows in served for row in rows}
        versions = [
            (key, self._contents[key]) for key in wanted - self._saved if key in self._contents
        ]
        return Batch(served, versions, sorted(forgotten), dict(self.keep))

    def load(self, store: Store) -> None:
        """Read histories from `store` from now on, each when first needed; delete the
        versions no served record names (blocking)."""
        with store.transaction() as db:
            db.execute(
                "DELETE FROM versions WHERE (document, etag) NOT IN"
                " (SELECT document, etag FROM served)"
            )
        self._store = store

    async def prune_due(self) -> int:
        """`prune`, once every PRUNE_SECONDS (housekeeping)."""
        if time.monotonic() < self._prune_due:
            return 0
        self._prune_due = time.monotonic() + PRUNE_SECONDS
        return await self.prune()

    async def prune(self, now: float | None = None) -> int:
        """Delete from the database the served records older than their document's
        `keep_for` (plus PRUNE_MARGIN) of histories not in memory (those in memory are
        written as they are, and age out there), then the versions nobody names. Returns
        how many records were deleted."""
        if self._store is None:
            return 0
        keep_for = dict(self.keep_for)
        resident = list(self._served)
        named = list(self._refs)
        when = time.time() if now is None else now
        try:
            return await asyncio.to_thread(
                prune_rows,
                self._store,
                when,
                keep_for,
                DEFAULT_KEEP_FOR,
                PRUNE_MARGIN,
                resident,
                named,
            )
        except Exception as exc:
            event("versions_prune_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc))
            return 0


def _fit(version: Entries, theirs: Sequence[Entry]) -> tuple[int, int, int]:
    """How well a version explains a phone's body: how many of the body's entries it has,
    then minus how many of its entries the body lacks, then how many of the body's entries
    it has exactly as sent (two versions with the same entries differ in their fields: the
    one the phone holds is the one its unchanged entries equal)."""
    ids = {entry.entry_id for entry in theirs}
    present = sum(1 for entry in theirs if entry.entry_id in version)
    same = sum(1 for entry in theirs if version.get(entry.entry_id) == entry)
    return present, -sum(1 for entry_id in version if entry_id not in ids), same
