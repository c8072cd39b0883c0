"""The state database in SQLite: one file under `state_dir`, the embedded default (see
gateway.store for what it keeps).

The schema is versioned with PRAGMA user_version; `MIGRATIONS[n]` takes version n to n+1.
"""

from __future__ import annotations

import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Literal

from gateway.heap import bulk, give_back
from gateway.model import Contact
from gateway.private_files import private_dir, private_file
from gateway.process_pool import map_batches, usable_cores
from gateway.store import (
    Claim,
    ClaimState,
    Db,
    Snapshot,
    Store,
    StoreTooNew,
    StoreUnavailable,
    _State,
    read_snapshot,
)

#: An xui with its domain lower-cased and trailing dots stripped, as UserRef spells it.
_NORMALIZED_XUI = (
    "CASE WHEN instr({c}, '@') > 0 THEN substr({c}, 1, instr({c}, '@'))"
    " || rtrim(lower(substr({c}, instr({c}, '@') + 1)), '.') ELSE {c} END"
)

MIGRATIONS: list[str] = [
    """
    CREATE TABLE source_state (
        source TEXT NOT NULL,
        user TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        token TEXT,
        synced_at REAL,
        PRIMARY KEY (source, user)
    );
    CREATE TABLE contacts (
        source TEXT NOT NULL,
        user TEXT NOT NULL,
        href TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (source, user, href)
    );
    """,
    # 2: the durable outbox of phones' changes, and the versions served to phones.
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created REAL NOT NULL,
        document TEXT NOT NULL,
        user TEXT NOT NULL,
        source TEXT NOT NULL,
        source_user TEXT NOT NULL,
        kind TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        href TEXT NOT NULL,
        before TEXT,
        after TEXT,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX outbox_by_state ON outbox (state, source, source_user, id);
    CREATE TABLE versions (
        document TEXT NOT NULL,
        etag TEXT NOT NULL,
        entries TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (document, etag)
    );
    CREATE TABLE served (
        document TEXT NOT NULL,
        user TEXT NOT NULL,
        device TEXT NOT NULL,
        etag TEXT NOT NULL,
        served_at REAL NOT NULL,
        PRIMARY KEY (document, user, device, etag)
    );
    """,
    # 3: XCAP documents stored as the clients sent them (not bound to a directory).
    """
    CREATE TABLE documents (
        auid TEXT NOT NULL,
        owner TEXT NOT NULL,
        path TEXT NOT NULL,
        body BLOB NOT NULL,
        etag TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (auid, owner, path)
    );
    """,
    # 4: the upstream ETag each change was merged against (a change made upstream since is
    # a conflict, never overwritten blindly), and failed changes archived after a while.
    """
    ALTER TABLE outbox ADD COLUMN etag TEXT NOT NULL DEFAULT '';
    CREATE TABLE outbox_archive (
        id INTEGER PRIMARY KEY,
        created REAL NOT NULL,
        archived REAL NOT NULL,
        document TEXT NOT NULL,
        user TEXT NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        error TEXT,
        item TEXT NOT NULL
    );
    """,
    # 5: domains are spelled one way (lower case, no trailing dot) in every xui kept.
    ";".join(
        f"UPDATE OR REPLACE {table} SET {column} = {_NORMALIZED_XUI.format(c=column)}"
        for table, column in [
            ("source_state", "user"),
            ("contacts", "user"),
            ("outbox", "user"),
            ("outbox", "source_user"),
            ("outbox_archive", "user"),
            ("served", "user"),
            ("documents", "owner"),
        ]
    )
    + ";",
    # 6: which served versions a device sent itself (a PUT body: surely held).
    "ALTER TABLE served ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;",
    # 7: each snapshot counts its saves (what replicas sharing PostgreSQL compare; the
    # same tables everywhere).
    "ALTER TABLE source_state ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;",
]
FILE_NAME = "xcap-gateway.sqlite3"

#: SQLite's errors that mean the database cannot take a write now (not a bad statement).
_UNAVAILABLE = {
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
}

#: Snapshots of at least this many contacts are decoded in a worker process (load).
LOAD_ELSEWHERE_FROM = 5000
#: Contacts per pickled piece from the worker: each piece holds the GIL here only briefly.
_PIECE = 20000


def _snapshot_part(path: str, source: str, user: str, parts: int, part: int) -> list[bytes]:
    """In a worker process: the state and a part of the snapshot's contacts (those whose
    rowid is `part` modulo `parts`), read in one transaction, pickled in pieces (the state
    first, then lists of contacts)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")
        state, contacts = read_snapshot(db, source, user, " AND rowid % ? = ?", (parts, part))
        db.execute("COMMIT")
    finally:
        db.close()
    found = list(contacts.values())
    pieces = [pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)]
    pieces += [
        pickle.dumps(found[i : i + _PIECE], protocol=pickle.HIGHEST_PROTOCOL)
        for i in range(0, len(found), _PIECE)
    ]
    return pieces


def _snapshot_from(parts: list[list[bytes]]) -> tuple[_State | None, dict[str, Contact]]:
    states = {pickle.loads(pieces[0]) for pieces in parts}
    if len(states) != 1:  # a save came between the parts' reads: not one snapshot
        raise sqlite3.OperationalError("the snapshot changed while it was read")
    contacts: dict[str, Contact] = {}
    for pieces in parts:
        for piece in pieces[1:]:
            contacts.update((contact.href, contact) for contact in pickle.loads(piece))
    return states.pop(), contacts


class SqliteStore(Store):
    """One connection, serialized by a lock: SQLite has one writer anyway."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        # SQLite gives the -wal and -shm files the database file's permissions.
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if file == path or file.exists():
                private_file(file)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a PUT is answered only once its changes are on disk (the outbox).
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreTooNew(
                f"{self.path} was written by a newer xcap-gateway (schema {version}); "
                "upgrade, or move the file away to start from scratch"
            )
        for number in range(version, len(MIGRATIONS)):
            self._db.executescript(
                f"BEGIN; {MIGRATIONS[number]} PRAGMA user_version = {number + 1}; COMMIT;"
            )

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def load(
        self, source: str, user: str, fingerprint: str, keep_other: bool = False
    ) -> Snapshot | None:
        """A big snapshot is decoded in worker processes: decoding 100,000 contacts here
        left the JSON parser's garbage scattered through this process's heap (~100 MB more
        resident after a restart than after a first sync), and held the interpreter lock
        for seconds."""
        with self._lock:
            count = self._db.execute(
                'SELECT count(*) FROM contacts WHERE source=? AND "user"=?', (source, user)
            ).fetchone()[0]
        if count < LOAD_ELSEWHERE_FROM:
            return super().load(source, user, fingerprint, keep_other)
        parts = max(2, usable_cores())
        read = partial(_snapshot_part, str(self.path), source, user, parts)
        pieces = map_batches(read, list(range(parts)))
        with bulk():
            state, contacts = _snapshot_from(pieces)
        del pieces
        give_back()
        return self._snapshot(source, user, fingerprint, state, contacts, keep_other)

    @contextmanager
    def transaction(self) -> Iterator[Db]:
        try:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    yield self._db
                except BaseException:
                    _rollback(self._db)
                    raise
                _commit(self._db)
        except sqlite3.OperationalError as exc:
            # A full disk, an I/O error, a database locked by another program: nothing
            # was written, and a PUT is answered 503 (its phone sends it again) — not 500.
            if (exc.sqlite_errorcode & 0xFF) in _UNAVAILABLE:  # extended codes too
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
            raise

    def claim(self, item_id: int, source: str, source_user: str) -> tuple[ClaimState, Claim | None]:
        """This process is the only one: an item still pending is its own to apply."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT attempts, next_attempt, error FROM outbox WHERE id=? AND state='pending'",
                (item_id,),
            ).fetchone()
        if row is None:
            return "gone", None
        claim = _LocalClaim(self)
        claim.row = row
        return "claimed", claim

    def lock(self, db: Db, key: str) -> None:
        """Nothing to do: this process's transactions are serialized already, and no other
        process shares the file."""

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _LocalClaim(Claim):
    """No transaction is held while the change is applied (SQLite's one connection is
    everybody's): the outcome is recorded in a transaction of its own."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def finish(self, record: Callable[[Db], None]) -> None:
        with self._store.transaction() as db:
            record(db)

    def release(self) -> None:
        pass


def _commit(db: sqlite3.Connection) -> None:
    """COMMIT; when it fails (a deferred constraint, a busy or full disk) SQLite may leave
    the transaction open, and every later BEGIN would fail: roll it back, then raise."""
    try:
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite rolls back by itself after some errors (I/O): then there is nothing to undo.
    if db.in_transaction:
        db.execute("ROLLBACK")
