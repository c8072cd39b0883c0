"""The versions of a document each device was served: the bases of three-way merges.

Per (document, user) the last `keep` versions served are remembered with the device that
fetched each (User-Agent and client address), for at most `keep_for` seconds. A version's
entries are shared by everyone who got the same ETag.

The first time a device gets a version, that is written to the state database before the
answer goes out (`record_durably`; concurrent ones share one transaction), so a crash
never leaves a phone holding a version the gateway cannot name: a PUT merged against a
forgotten base could delete what the phone never saw. A poll that finds the same version
again only moves its timestamp, which is written lazily (`flush`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.entry import Entry, entry_from_json, entry_to_json
from gateway.logs import event
from gateway.store import Store

Entries = Mapping[str, Entry]
#: Devices per user and document whose versions are kept (the most recently served).
MAX_DEVICES = 50
Key = tuple[str, str]  # (document, user) or (document, etag)


@dataclass(frozen=True)
class _Batch:
    served: list[tuple[str, str, list[tuple[str, str, float, bool]]]]
    versions: list[tuple[Key, Entries]]
    forgotten: list[Key]


@dataclass
class Served:
    etag: str
    device: str
    at: float
    #: The device sent this version itself (a PUT body): it surely holds it.
    sent: bool = False


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
    ) -> bool:
        """`device` of `user` now holds version `etag` of `document` (`sent`: the body of
        its PUT). True when that is news (the device held another version), i.e.
        something to write durably."""
        history = self._served.setdefault((document, user), [])
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
    ) -> None:
        """`record`, and when it is news, written before returning. A failing database is
        logged, not raised: the phone is served all the same, and a PUT without a known
        base deletes nothing."""
        if self.record(document, user, device, etag, entries, sent) and store is not None:
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
        history = self._served.get((document, user), [])
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
        # that one); then fewest the body lacks; then the oldest. Taking a version older
        # than the phone's costs at most a delete not carried out; a newer one would read
        # its new entries as deleted and its stale fields as edits.
        best = max(range(len(mine)), key=lambda index: (*_fit(mine[index], theirs), -index))
        return mine[best]

    def held_by(self, document: str, user: str, device: str) -> dict[str, Entry]:
        """Every entry of the versions this device holds or held (newest wins): where an
        entry the phone sent without its id finds the id it was given."""
        held: dict[str, Entry] = {}
        for served in self._served.get((document, user), []):
            if served.device == device:
                held.update(self._contents.get((document, served.etag), {}))
        return held

    def served_counts(self) -> dict[str, int]:
        """Per document, how many users were served it."""
        counts: dict[str, int] = {}
        for document, _ in self._served:
            counts[document] = counts.get(document, 0) + 1
        return counts

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
            self.write(store, batch)
        except Exception as exc:
            return self._failed(batch, exc)
        return self._written(batch)

    async def flush_soon(self, store: Store) -> bool:
        """`flush`, with the writing in a worker thread. What it writes is taken on the
        event loop (the tables change under requests) and marked saved only once written."""
        batch = self._take()
        try:
            await asyncio.to_thread(self.write, store, batch)
        except Exception as exc:
            return self._failed(batch, exc)
        return self._written(batch)

    def _written(self, batch: _Batch) -> bool:
        self._saved |= {key for key, _ in batch.versions}
        return True

    def _failed(self, batch: _Batch, exc: Exception) -> bool:
        """What was not written goes back for the next write; the failure is logged."""
        self._dirty |= {(document, user) for document, user, _ in batch.served}
        self._forgotten |= {key for key in batch.forgotten if key not in self._refs}
        event("versions_write_failed", logging.ERROR, error=type(exc).__name__, detail=str(exc))
        return False

    def include_poll_times(self) -> None:
        """Let the next flush write the poll times that moved too."""
        self._dirty |= self._touched
        self._touched = set()

    def _take(self) -> _Batch:
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
        wanted = {(document, row[1]) for document, _, rows in served for row in rows}
        versions = [
            (key, self._contents[key]) for key in wanted - self._saved if key in self._contents
        ]
        return _Batch(served, versions, sorted(forgotten))

    @staticmethod
    def write(store: Store, batch: _Batch) -> None:
        """Blocking: one transaction; each version's entries are encoded once."""
        with store.transaction() as db:
            for document, user, rows in batch.served:
                db.execute("DELETE FROM served WHERE document=? AND user=?", (document, user))
                db.executemany(
                    "INSERT OR REPLACE INTO served (document, user, device, etag, served_at,"
                    " sent) VALUES (?, ?, ?, ?, ?, ?)",
                    [(document, user, *row) for row in rows],
                )
            for (document, etag), entries in batch.versions:
                db.execute(
                    "INSERT OR IGNORE INTO versions (document, etag, entries, created)"
                    " VALUES (?, ?, ?, ?)",
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

    def load(self, store: Store) -> None:
        with store.transaction() as db:
            rows = db.execute(
                "SELECT document, user, device, etag, served_at, sent FROM served"
                " ORDER BY served_at"
            ).fetchall()
            contents = db.execute("SELECT document, etag, entries FROM versions").fetchall()
        for document, etag, text in contents:
            entries = [entry_from_json(item) for item in json.loads(text)]
            self._contents[(document, etag)] = {e.entry_id: e for e in entries}
            self._saved.add((document, etag))
        for document, user, device, etag, at, sent in rows:
            self._served.setdefault((document, user), []).append(
                Served(etag, device, at, bool(sent))
            )
            self._refs[(document, etag)] += 1
        for key in [key for key in self._contents if key not in self._refs]:
            del self._contents[key]
            self._saved.discard(key)
            self._forgotten.add(key)


def _fit(version: Entries, theirs: Sequence[Entry]) -> tuple[int, int]:
    """How well a version explains a phone's body: how many of the body's entries it has,
    then minus how many of its entries the body lacks."""
    ids = {entry.entry_id for entry in theirs}
    present = sum(1 for entry in theirs if entry.entry_id in version)
    return present, -sum(1 for entry_id in version if entry_id not in ids)
