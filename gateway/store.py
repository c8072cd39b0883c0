"""The state database: each source instance's last good contacts and its incremental sync
token (so a restart serves at once and resumes where it stopped), the outbox of phones'
changes, the versions served to phones, and stored XCAP documents.

`Store` is the interface; two implementations keep the same tables:
- `gateway.store_sqlite.SqliteStore`: one file in `state_dir`, the embedded default;
- `gateway.store_postgres.PostgresStore`: `[store] url = "postgresql://…"`, shared by
  several replicas.

Callers write one SQL for both: `?` placeholders, `"user"` quoted (a reserved word in
PostgreSQL, where a bare `user` is the session's role), upserts as `ON CONFLICT … DO`.
Blocking: callers on the event loop go through asyncio.to_thread.

A snapshot is kept with a fingerprint of its source's configuration: when the
configuration changes (another base_dn, another URL), the old snapshot is dropped.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gateway.heap import bulk
from gateway.model import Contact
from gateway.private_files import private_dir

if TYPE_CHECKING:
    from gateway.config import Config


class Rows(Protocol):
    """What `Db.execute` answers: the rows of a query, or how many a change touched."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Any: ...


class Db(Protocol):
    """One transaction's connection (`with store.transaction() as db:`)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


class StoreUnavailable(Exception):
    """The database cannot be reached (PostgreSQL down, the network cut): nothing was
    written. The caller answers 503 and the phone sends its change again."""


class StoreTooNew(RuntimeError):
    """The database was written by a newer xcap-gateway (a newer schema): nothing here
    touches it."""


@dataclass(frozen=True)
class Snapshot:
    contacts: dict[str, Contact]
    token: str | None
    synced_at: float | None
    #: Set when the stored snapshot was for another configuration and was dropped: the
    #: entry_ids phones gave its contacts (uid -> entry_id), which only the snapshot kept.
    dropped_phone_ids: dict[str, str] | None = None
    #: Counts the snapshot's saves (by any process sharing the database).
    revision: int = 0


@dataclass(frozen=True)
class Saved:
    """What one save of a snapshot changed, as other processes sharing the database learn
    it: the instance, its revision after the save, and the hrefs it changed (None: too
    many to name, or all of them)."""

    source: str
    user: str
    revision: int
    hrefs: tuple[str, ...] | None


#: A claim on an outbox item: held by this process (CLAIMED), held by another or behind
#: an earlier item of its source instance (BUSY), or applied/removed already (GONE).
ClaimState = Literal["claimed", "busy", "gone"]


class Claim(ABC):
    """An outbox item this process applies; no other process sharing the database takes
    it until `finish` or `release` (or this process dies)."""

    #: The item's row as stored when claimed (attempts may have moved elsewhere).
    row: Any = None

    @abstractmethod
    def finish(self, record: Callable[[Db], None]) -> None:
        """Record the outcome (`record` writes it) and let the item go, in one commit."""

    @abstractmethod
    def release(self) -> None:
        """Let the item go without recording anything (safe after finish)."""


_FIELDS = tuple(field.name for field in dataclasses.fields(Contact))


#: A save that changed at most this many contacts names them to other processes.
NAMED_HREFS = 64


def json_text(value: object) -> str:
    """`value` as JSON text both databases can store: UTF-8 as it is, except that a lone
    surrogate (which UTF-8 cannot encode: the database would refuse the whole write) is
    written as a \\u escape, which decodes back to it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text


def encode(contact: Contact) -> str:
    """`contact` as JSON text SQLite can store. A lone surrogate (which UTF-8 cannot encode,
    so SQLite would refuse the whole snapshot) is written as a \\u escape instead, and
    decode gives it back as it was."""
    # The fields as they are (json writes tuples as lists): dataclasses.asdict copies
    # every tuple deeply first, most of a 100,000-contact save's time.
    return json_text({name: getattr(contact, name) for name in _FIELDS})


def decode(text: str) -> Contact:
    fields = json.loads(text)
    for name, value in fields.items():
        if isinstance(value, list):
            fields[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return Contact(**fields)


_State = tuple[str, str | None, float | None, int]  # fingerprint, token, synced_at, revision


class Store(ABC):
    """The state database. `transaction()` is one atomic unit of work."""

    dialect: Literal["sqlite", "postgresql"]

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Db]:
        """`with store.transaction() as db:` — committed at the end, rolled back on error."""

    @property
    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def lock(self, db: Db, key: str) -> None:
        """Serialize, until `db`'s transaction ends, with every other transaction (of any
        process sharing the database) that locks the same `key`."""

    def load(
        self, source: str, user: str, fingerprint: str, keep_other: bool = False
    ) -> Snapshot | None:
        """The stored snapshot; None when never stored. One stored for another
        configuration is dropped: what comes back then has no contacts, only the entry_ids
        phones gave them (`dropped_phone_ids`), so a contact a phone made keeps its id.
        `keep_other`: one for another configuration is left alone and None comes back (a
        replica following another, whose configuration may be newer or older)."""
        with self.transaction() as db:
            state, contacts = read_snapshot(db, source, user)
        return self._snapshot(source, user, fingerprint, state, contacts, keep_other)

    def _snapshot(
        self,
        source: str,
        user: str,
        fingerprint: str,
        state: _State | None,
        contacts: dict[str, Contact],
        keep_other: bool = False,
    ) -> Snapshot | None:
        if state is None or (keep_other and state[0] != fingerprint):
            return None
        if state[0] != fingerprint:
            with self.transaction() as db:
                db.execute('DELETE FROM contacts WHERE source=? AND "user"=?', (source, user))
                db.execute('DELETE FROM source_state WHERE source=? AND "user"=?', (source, user))
            ids = {c.uid: c.entry_id for c in contacts.values() if c.entry_id}
            return Snapshot({}, None, None, dropped_phone_ids=ids)
        return Snapshot(contacts, state[1], state[2], revision=state[3])

    def synced_at(self, source: str, user: str) -> float | None:
        """When the stored snapshot was last saved by a sync (None: never): how a replica
        that does not sync sees that another one did."""
        with self.transaction() as db:
            row = db.execute(
                'SELECT synced_at FROM source_state WHERE source=? AND "user"=?', (source, user)
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

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
    ) -> int:
        """Record a sync's outcome in one transaction: changed contacts, removed hrefs (or
        every contact, with `replace_all`), and the token to resume from. Returns the
        snapshot's revision after this save."""
        upserts, deletes = list(upserts), list(deletes)
        with self.transaction() as db:
            if replace_all is not None:
                db.execute('DELETE FROM contacts WHERE source=? AND "user"=?', (source, user))
                upserts = list(replace_all.values())
            db.executemany(
                'DELETE FROM contacts WHERE source=? AND "user"=? AND href=?',
                [(source, user, href) for href in deletes],
            )
            db.executemany(
                'INSERT INTO contacts (source, "user", href, data) VALUES (?, ?, ?, ?)'
                ' ON CONFLICT (source, "user", href) DO UPDATE SET data = excluded.data',
                [(source, user, c.href, encode(c)) for c in upserts],
            )
            (revision,) = db.execute(
                'INSERT INTO source_state (source, "user", fingerprint, token, synced_at,'
                ' revision) VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (source, "user") DO UPDATE SET'
                " fingerprint = excluded.fingerprint, token = excluded.token,"
                " synced_at = excluded.synced_at, revision = source_state.revision + 1"
                " RETURNING revision",
                (source, user, fingerprint, token, synced_at),
            ).fetchone()
            hrefs = None
            if replace_all is None and len(upserts) + len(deletes) <= NAMED_HREFS:
                hrefs = (*(c.href for c in upserts), *deletes)
            self.notify_saved(db, Saved(source, user, int(revision), hrefs))
        return int(revision)

    def revisions(self) -> dict[tuple[str, str], int]:
        """Every stored snapshot's revision, by (source, user)."""
        with self.transaction() as db:
            rows = db.execute('SELECT source, "user", revision FROM source_state').fetchall()
        return {(source, user): int(revision) for source, user, revision in rows}

    def contacts_at(
        self, source: str, user: str, hrefs: Iterable[str]
    ) -> tuple[int, dict[str, Contact | None]] | None:
        """The snapshot's revision and its contacts at `hrefs` (None where there is none),
        read together; None when there is no snapshot."""
        with self.transaction() as db:
            row = db.execute(
                'SELECT revision FROM source_state WHERE source=? AND "user"=?', (source, user)
            ).fetchone()
            if row is None:
                return None
            found: dict[str, Contact | None] = {}
            for href in hrefs:
                data = db.execute(
                    'SELECT data FROM contacts WHERE source=? AND "user"=? AND href=?',
                    (source, user, href),
                ).fetchone()
                found[href] = decode(data[0]) if data else None
        return int(row[0]), found

    @property
    def available(self) -> bool:
        """False while the database is known to be unreachable (requests then fail at
        once instead of each waiting for a connection)."""
        return True

    def hold(self, keys: Iterable[str]) -> Callable[[], None]:
        """Take the locks named `keys` (in sorted order: no two holders wait for each
        other) until the returned function is called; other processes sharing the
        database wait for them. One process alone has its own locks already."""
        return _nothing

    @abstractmethod
    def claim(self, item_id: int, source: str, source_user: str) -> tuple[ClaimState, Claim | None]:
        """Take outbox item `item_id` for this process to apply, if it is pending, no other
        process holds it, and no earlier item of its source instance is pending."""

    def notify_outbox(self, db: Db) -> None:  # noqa: B027
        """Tell other processes sharing the database that outbox items were queued."""

    def notify_saved(self, db: Db, saved: Saved) -> None:  # noqa: B027
        """Tell other processes sharing the database that a snapshot changed (with the
        transaction's commit). One process alone has nobody to tell."""


def _nothing() -> None:
    pass


def open_store(config: Config) -> Store:
    """The state database `config` names: PostgreSQL for [store] url, else SQLite in
    [server] state_dir. Raises StoreUnavailable when PostgreSQL cannot be reached.
    state_dir is made owner-only either way (the control socket is there)."""
    private_dir(config.server.state_dir)
    if config.store.url:
        from gateway.store_postgres import PostgresStore  # psycopg: only when configured

        secret = config.store.password
        password = secret.get_secret_value() if secret is not None else None
        return PostgresStore(
            config.store.url, password, config.store.connect_timeout, config.store.pool_size
        )
    from gateway.store_sqlite import FILE_NAME, SqliteStore

    return SqliteStore(config.server.state_dir / FILE_NAME)


def read_snapshot(
    db: Db, source: str, user: str, where: str = "", parameters: tuple[Any, ...] = ()
) -> tuple[_State | None, dict[str, Contact]]:
    """The state and the contacts of one snapshot (`where`: more conditions on contacts)."""
    row = db.execute(
        "SELECT fingerprint, token, synced_at, revision FROM source_state WHERE source=?"
        ' AND "user"=?',
        (source, user),
    ).fetchone()
    if row is None:
        return None, {}
    with bulk():
        contacts = {
            href: decode(data)
            for href, data in db.execute(
                f'SELECT href, data FROM contacts WHERE source=? AND "user"=?{where}',
                (source, user, *parameters),
            )
        }
    return (row[0], row[1], row[2], int(row[3])), contacts
