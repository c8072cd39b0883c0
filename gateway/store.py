"""The state database (SQLite under `state_dir`): each source instance's last good contacts
and its incremental sync token, so a restart serves at once and resumes where it stopped.

The schema is versioned with PRAGMA user_version; `MIGRATIONS[n]` takes version n to n+1.
A snapshot is kept with a fingerprint of its source's configuration: when the
configuration changes (another base_dn, another URL), the old snapshot is dropped.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gateway.heap import bulk, give_back
from gateway.model import Contact
from gateway.private_files import private_dir, private_file
from gateway.process_pool import map_batches, usable_cores

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
]
FILE_NAME = "xcap-gateway.sqlite3"


@dataclass(frozen=True)
class Snapshot:
    contacts: dict[str, Contact]
    token: str | None
    synced_at: float | None
    #: Set when the stored snapshot was for another configuration and was dropped: the
    #: entry_ids phones gave its contacts (uid -> entry_id), which only the snapshot kept.
    dropped_phone_ids: dict[str, str] | None = None


_FIELDS = tuple(field.name for field in dataclasses.fields(Contact))


def encode(contact: Contact) -> str:
    """`contact` as JSON text SQLite can store. A lone surrogate (which UTF-8 cannot encode,
    so SQLite would refuse the whole snapshot) is written as a \\u escape instead, and
    decode gives it back as it was."""
    # The fields as they are (json writes tuples as lists): dataclasses.asdict copies
    # every tuple deeply first, most of a 100,000-contact save's time.
    fields = {name: getattr(contact, name) for name in _FIELDS}
    text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(fields, ensure_ascii=True, separators=(",", ":"))
    return text


def decode(text: str) -> Contact:
    fields = json.loads(text)
    for name, value in fields.items():
        if isinstance(value, list):
            fields[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return Contact(**fields)


#: Snapshots of at least this many contacts are decoded in a worker process (Store.load).
LOAD_ELSEWHERE_FROM = 5000
#: Contacts per pickled piece from the worker: each piece holds the GIL here only briefly.
_PIECE = 20000
_State = tuple[str, str | None, float | None]  # fingerprint, token, synced_at


def _read_snapshot(
    db: sqlite3.Connection, source: str, user: str, part: int = 0, parts: int = 1
) -> tuple[_State | None, dict[str, Contact]]:
    """The state and the contacts of one snapshot (those whose rowid is `part` modulo
    `parts`: workers decode a big one in parts side by side)."""
    row = db.execute(
        "SELECT fingerprint, token, synced_at FROM source_state WHERE source=? AND user=?",
        (source, user),
    ).fetchone()
    if row is None:
        return None, {}
    with bulk():
        contacts = {
            href: decode(data)
            for href, data in db.execute(
                "SELECT href, data FROM contacts WHERE source=? AND user=? AND rowid % ? = ?",
                (source, user, parts, part),
            )
        }
    return (row[0], row[1], row[2]), contacts


def _snapshot_part(path: str, source: str, user: str, parts: int, part: int) -> list[bytes]:
    """In a worker process: the state and a part of the snapshot's contacts, read in one
    transaction, pickled in pieces (the state first, then lists of contacts)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")
        state, contacts = _read_snapshot(db, source, user, part, parts)
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


class Store:
    """Blocking SQLite access; callers on the event loop go through asyncio.to_thread."""

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
            raise RuntimeError(
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

    def load(self, source: str, user: str, fingerprint: str) -> Snapshot | None:
        """The stored snapshot; None when never stored. One stored for another
        configuration is dropped: what comes back then has no contacts, only the entry_ids
        phones gave them (`dropped_phone_ids`), so a contact a phone made keeps its id.

        A big one is decoded in a worker process: decoding 100,000 contacts here left the
        JSON parser's garbage scattered through this process's heap (~100 MB more resident
        after a restart than after a first sync), and held the interpreter lock for seconds."""
        with self._lock:
            count = self._db.execute(
                "SELECT count(*) FROM contacts WHERE source=? AND user=?", (source, user)
            ).fetchone()[0]
            if count < LOAD_ELSEWHERE_FROM:
                state, contacts = _read_snapshot(self._db, source, user)
        if count >= LOAD_ELSEWHERE_FROM:
            parts = max(2, usable_cores())
            read = partial(_snapshot_part, str(self.path), source, user, parts)
            pieces = map_batches(read, list(range(parts)))
            with bulk():
                state, contacts = _snapshot_from(pieces)
            del pieces
            give_back()
        if state is None:
            return None
        if state[0] != fingerprint:
            with self._lock:
                self._forget(source, user)
            ids = {c.uid: c.entry_id for c in contacts.values() if c.entry_id}
            return Snapshot({}, None, None, dropped_phone_ids=ids)
        return Snapshot(contacts, state[1], state[2])

    def save(
        self,
        source: str,
        user: str,
        fingerprint: str,
        token: str | None,
        synced_at: float | None,
        upserts: Iterable[Contact] = (),
        deletes: Iterable[str] = (),
        replace_all: Mapping[str, Contact] | None = None,
    ) -> None:
        """Record a sync's outcome in one transaction: changed contacts, removed hrefs (or
        every contact, with `replace_all`), and the token to resume from."""
        with self.transaction() as db:
            if replace_all is not None:
                db.execute("DELETE FROM contacts WHERE source=? AND user=?", (source, user))
                upserts = replace_all.values()
            db.executemany(
                "DELETE FROM contacts WHERE source=? AND user=? AND href=?",
                ((source, user, href) for href in deletes),
            )
            db.executemany(
                "INSERT OR REPLACE INTO contacts (source, user, href, data) VALUES (?, ?, ?, ?)",
                ((source, user, c.href, encode(c)) for c in upserts),
            )
            db.execute(
                "INSERT OR REPLACE INTO source_state (source, user, fingerprint, token, synced_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (source, user, fingerprint, token, synced_at),
            )

    def transaction(self) -> _Transaction:
        """`with store.transaction() as db:` — one atomic unit of work, serialized."""
        return _Transaction(self)

    def _forget(self, source: str, user: str) -> None:
        self._db.execute("DELETE FROM contacts WHERE source=? AND user=?", (source, user))
        self._db.execute("DELETE FROM source_state WHERE source=? AND user=?", (source, user))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        try:
            self.store._db.execute("BEGIN")
        except BaseException:
            self.store._lock.release()
            raise
        return self.store._db

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        try:
            if kind is None:
                _commit(self.store._db)
            else:
                _rollback(self.store._db)
        finally:
            self.store._lock.release()


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
