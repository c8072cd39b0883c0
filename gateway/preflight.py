"""`check-config`'s checks beyond loading: what the machine must have for the file to
serve (folders, CA files, usable users), and with `--connect` one try of every source.

Loading refuses what keeps the gateway from serving at all. What may be missing only for
a while — a vCard folder on a mount that comes back, an LDAP server down for maintenance —
does not stop `serve` (that source waits and retries); `check-config` reports it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gateway.config import Config, Problem, auth_realms
from gateway.config_files import users_file_report
from gateway.connector import Connector, UnsafeTemplateValue
from gateway.model import UserRef


@runtime_checkable
class HasPreflight(Protocol):
    """A connector's settings model may offer this: (key, problem) pairs about the
    machine (a folder, a CA file) that `check-config` reports."""

    def preflight_problems(self) -> list[tuple[str, str]]: ...


def serving_problems(config: Config) -> list[Problem]:
    """Problems the machine would cause at run time (empty: none found)."""
    problems: list[Problem] = []
    for name, source in config.sources.items():
        if isinstance(source.settings, HasPreflight):
            for key, message in source.settings.preflight_problems():
                problems.append(Problem(config.path, f"sources.{name}", key, message))
    auth = config.auth
    if auth.mode != "none" and auth.users_file is not None and auth.users_file.is_file():
        report = users_file_report(
            auth.users_file, auth.mode, auth_realms(auth), auth.ldap_source is not None
        )
        for line in report.lines:
            problems.append(Problem(config.path, "auth", "users_file", line))
    return problems


@dataclass(frozen=True)
class Outcome:
    """One source's try: `error` None means it answered; `skipped` says why it was not tried."""

    source: str
    type: str
    entries: int = 0
    error: str | None = None
    skipped: str | None = None

    def __str__(self) -> str:
        head = f"source {self.source} ({self.type}): "
        if self.skipped:
            return head + f"skipped: {self.skipped}"
        if self.error:
            return head + f"FAILED: {self.error}"
        return head + f"ok ({self.entries} entries)"


async def connect(config: Config, user: UserRef | None = None) -> list[Outcome]:
    """List every source once, as a sync's first step does (each connector keeps to its
    own `timeout`); per-user sources as `user`'s, or skipped without one."""
    return list(await asyncio.gather(*(_try(config, name, user) for name in config.sources)))


async def _try(config: Config, name: str, user: UserRef | None) -> Outcome:
    source = config.sources[name]
    cls = source.connector_class
    connector: Connector[Any]
    if cls.is_per_user(source.settings):
        if user is None:
            return Outcome(
                name, source.type, skipped="per-user source: add --user XUI to try one user's"
            )
        try:
            settings = cls.settings_for_user(source.settings, user.template_values())
        except UnsafeTemplateValue as exc:
            return Outcome(name, source.type, error=str(exc))
        connector = cls(name, settings, user)
    else:
        connector = cls(name, source.settings)
    entries = 0
    try:
        async for _ in connector.list():
            entries += 1
        outcome = Outcome(name, source.type, entries=entries)
    # Any failure is the answer here (a check must not end in a traceback).
    except Exception as exc:
        outcome = Outcome(name, source.type, error=str(exc) or type(exc).__name__)
    finally:
        await connector.close()
    return outcome


@dataclass(frozen=True)
class StoreOutcome:
    """Whether the PostgreSQL of [store] url answers, and at which schema."""

    where: str
    schema: int | None = None
    error: str | None = None

    def __str__(self) -> str:
        head = f"store ({self.where}): "
        if self.error:
            return head + f"FAILED: {self.error}"
        if self.schema is None:
            return head + "ok (empty: the first replica to start creates the tables)"
        return head + f"ok (schema {self.schema})"


async def connect_store(config: Config) -> StoreOutcome:
    """One connection to [store] url, as serving makes it; nothing is created or changed."""
    # Imported here: psycopg takes ~0.2 s to import, and SQLite's users never need it.
    import psycopg

    from gateway.store_postgres import describe

    store = config.store
    where = describe(store.url)
    options: dict[str, Any] = {"connect_timeout": max(1, round(store.connect_timeout))}
    if store.password is not None:
        options["password"] = store.password.get_secret_value()
    try:
        async with await psycopg.AsyncConnection.connect(
            store.url, autocommit=True, **options
        ) as connection:
            cursor = await connection.execute("SELECT to_regclass('xcap_schema') IS NOT NULL")
            row = await cursor.fetchone()
            if not row or not row[0]:
                return StoreOutcome(where)
            cursor = await connection.execute("SELECT max(version) FROM xcap_schema")
            row = await cursor.fetchone()
            return StoreOutcome(where, schema=int(row[0] or 0) if row else 0)
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines()
        return StoreOutcome(where, error=lines[-1] if lines else type(exc).__name__)
