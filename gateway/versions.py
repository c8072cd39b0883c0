"""The versions of a document each device was served: the bases of three-way merges.

Per (document, user) the last `keep` versions served are remembered with the device that
fetched each (User-Agent and client address), for at most `keep_for` seconds. A version's
entries are shared by everyone who got the same ETag. Recording a poll is a dictionary
update; the table is written to the state database lazily (`flush`), since losing it only
weakens base selection to the best-match rule.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.entry import Entry, changed_fields, entry_from_json, entry_to_json
from gateway.store import Store

Entries = Mapping[str, Entry]


@dataclass(frozen=True)
class _Batch:
    served: list[tuple[str, str, list[tuple[str, str, float]]]]
    versions: list[tuple[tuple[str, str], Entries]]


@dataclass
class Served:
    etag: str
    device: str
    at: float


class Versions:
    def __init__(self, keep: Mapping[str, int], keep_for: Mapping[str, float]) -> None:
        self.keep = keep  # per document key
        self.keep_for = keep_for
        self._contents: dict[tuple[str, str], Entries] = {}
        self._served: dict[tuple[str, str], list[Served]] = {}
        self._unsaved: set[tuple[str, str]] = set()
        #: Versions already in the database (their entries are written once).
        self._saved: set[tuple[str, str]] = set()

    def record(self, document: str, user: str, device: str, etag: str, entries: Entries) -> None:
        """`device` of `user` now holds version `etag` of `document`."""
        self._contents.setdefault((document, etag), entries)
        history = self._served.setdefault((document, user), [])
        if history and history[-1].etag == etag and history[-1].device == device:
            history[-1].at = time.time()
            return
        history[:] = [s for s in history if not (s.etag == etag and s.device == device)]
        history.append(Served(etag, device, time.time()))
        self._trim(document, history)
        self._unsaved.add((document, user))

    def _trim(self, document: str, history: list[Served]) -> None:
        oldest = time.time() - self.keep_for.get(document, 30 * 86400)
        kept = [s for s in history if s.at >= oldest][-self.keep.get(document, 5) :]
        history[:] = kept

    def base_for(
        self, document: str, user: str, device: str, if_match: str | None, theirs: Sequence[Entry]
    ) -> Entries | None:
        """If-Match's version; else the newest served to this device; else the served
        version the body matches best; None when nothing was served to this user."""
        history = self._served.get((document, user), [])
        if if_match and (found := self._contents.get((document, if_match))) is not None:
            return found
        for served in reversed(history):
            if served.device == device:
                return self._contents.get((document, served.etag))
        candidates = [
            self._contents[(document, s.etag)]
            for s in history
            if (document, s.etag) in self._contents
        ]
        if not candidates:
            return None
        return max(candidates, key=lambda version: _likeness(version, theirs))

    def served_counts(self) -> dict[str, int]:
        """Per document, how many users were served it."""
        counts: dict[str, int] = {}
        for document, _ in self._served:
            counts[document] = counts.get(document, 0) + 1
        return counts

    # --- persistence ------------------------------------------------------------------------

    def flush(self, store: Store) -> None:
        """Write what changed since the last flush (blocking)."""
        self.write(store, self.take_unsaved())

    async def flush_soon(self, store: Store) -> None:
        """`flush`, with the writing in a worker thread."""
        batch = self.take_unsaved()  # on the event loop: the tables change under requests
        await asyncio.to_thread(self.write, store, batch)

    def take_unsaved(self) -> _Batch:
        """What to write, copied; and versions nobody holds any more forgotten."""
        pending, self._unsaved = self._unsaved, set()
        served = [
            (
                document,
                user,
                [(s.device, s.etag, s.at) for s in self._served.get((document, user), [])],
            )
            for document, user in pending
        ]
        wanted = {(document, etag) for document, _, rows in served for _, etag, _ in rows}
        versions = [
            (key, self._contents[key]) for key in wanted - self._saved if key in self._contents
        ]
        self._saved |= {key for key, _ in versions}
        referenced = {(doc, s.etag) for (doc, _), history in self._served.items() for s in history}
        for key in [key for key in self._contents if key not in referenced]:
            del self._contents[key]
        self._saved &= referenced
        return _Batch(served, versions)

    @staticmethod
    def write(store: Store, batch: _Batch) -> None:
        """Blocking: one transaction; each version's entries are encoded once."""
        with store.transaction() as db:
            for document, user, rows in batch.served:
                db.execute("DELETE FROM served WHERE document=? AND user=?", (document, user))
                db.executemany(
                    "INSERT OR REPLACE INTO served (document, user, device, etag, served_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(document, user, device, etag, at) for device, etag, at in rows],
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
            db.execute(
                "DELETE FROM versions WHERE NOT EXISTS (SELECT 1 FROM served s WHERE"
                " s.document = versions.document AND s.etag = versions.etag)"
            )

    def load(self, store: Store) -> None:
        with store.transaction() as db:
            rows = db.execute(
                "SELECT document, user, device, etag, served_at FROM served ORDER BY served_at"
            ).fetchall()
            contents = db.execute("SELECT document, etag, entries FROM versions").fetchall()
        for document, etag, text in contents:
            entries = [entry_from_json(item) for item in json.loads(text)]
            self._contents[(document, etag)] = {e.entry_id: e for e in entries}
            self._saved.add((document, etag))
        for document, user, device, etag, at in rows:
            self._served.setdefault((document, user), []).append(Served(etag, device, at))


def _likeness(version: Entries, theirs: Sequence[Entry]) -> int:
    """How many of the phone's entries the version has exactly."""
    return sum(
        1
        for entry in theirs
        if (seen := version.get(entry.entry_id)) is not None and not changed_fields(seen, entry)
    )
