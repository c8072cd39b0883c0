"""The PostgreSQL fixtures: fresh databases per test, an instance of one's own that survives
restart and crash, and advisory locks (the gateway's leader election) between sessions."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg.rows import TupleRow

from tests.pg.server import Postgres

SEEN_DATABASES: list[str] = []


def current_database(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_a_fresh_database(pg_url: str, postgres_server: Postgres, run: int) -> None:
    name = current_database(pg_url)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('marker')").fetchone() == (None,)
        conn.execute("CREATE TABLE marker (run int)")
        conn.execute("INSERT INTO marker VALUES (%s)", [run])
    # The previous run's database is another one, and gone (dropped at its teardown).
    with psycopg.connect(postgres_server.url) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert name in existing
    assert name not in SEEN_DATABASES
    assert not existing & set(SEEN_DATABASES)
    SEEN_DATABASES.append(name)

    other = postgres_server.create_database(f"other_{run}")
    try:
        assert current_database(other) == f"other_{run}"
        with psycopg.connect(other) as conn:
            assert conn.execute("SELECT to_regclass('marker')").fetchone() == (None,)
    finally:
        postgres_server.drop_database(f"other_{run}")


def test_drop_ends_open_connections(postgres_server: Postgres) -> None:
    url = postgres_server.create_database("left_open")
    with psycopg.connect(url) as conn:
        postgres_server.drop_database("left_open")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")


def test_own_instance_keeps_data_over_restart_and_crash(
    make_postgres: Callable[..., Postgres],
) -> None:
    server = make_postgres()
    assert server.url == f"postgresql://xcap@127.0.0.1:{server.port}/xcap"
    with psycopg.connect(server.url) as conn:
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('before restart')")

    server.restart()
    with psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT value FROM kept").fetchall() == [("before restart",)]
        conn.execute("INSERT INTO kept VALUES ('before crash')")

    with psycopg.connect(server.url) as survivor:
        server.kill()
        with pytest.raises(psycopg.OperationalError):
            survivor.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url, connect_timeout=2).close()

    server.start()
    with psycopg.connect(server.url) as conn:
        rows = conn.execute("SELECT value FROM kept ORDER BY value").fetchall()
    assert rows == [("before crash",), ("before restart",)]


def try_lock(conn: psycopg.Connection[TupleRow], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
    assert row is not None
    return bool(row[0])


def test_advisory_lock_is_held_by_one_session_until_it_ends(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as second:
        with psycopg.connect(pg_url, autocommit=True) as first:
            assert try_lock(first, 4825)
            assert not try_lock(second, 4825)
            assert try_lock(second, 4826)  # another key is free
        # The first session's backend releases the lock once it sees the client go.
        deadline = time.monotonic() + 10
        while not try_lock(second, 4825):
            assert time.monotonic() < deadline, "the lock outlived the session holding it"
            time.sleep(0.01)
