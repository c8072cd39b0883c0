"""Shared fixtures: a private copy of the demo cards and a config that serves them."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import keys
from gateway.app import create_app
from gateway.config import Config, load_config
from tests.dav.servers import DavServer, start_radicale, start_xandikos
from tests.ldap import server as ldap_server
from tests.ldap.server import Slapd
from tests.pg import server as pg_server
from tests.pg.server import Postgres
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONTACTS = ROOT / "config" / "contacts"

ConfigFactory = Callable[..., Config]


@pytest.fixture
def contacts_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "contacts"
    shutil.copytree(DEMO_CONTACTS, folder)
    return folder


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def make_config(tmp_path: Path, contacts_dir: Path) -> ConfigFactory:
    """A loaded config serving `contacts_dir` as /users/{xui}/tbook.xml; `extra` is
    appended TOML, `source` replaces keys of [sources.demo]."""

    def make(
        source: str = "",
        extra: str = "",
        document: str = "",
        write_to: str | None = "demo",
        sources: str = '["demo"]',
    ) -> Config:
        write = f'write_to = "{write_to}"' if write_to else ""
        text = f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"

[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
category = "work"
{source}

[documents.tbook]
name = "tbook.xml"
sources = {sources}
{write}
{document}
{extra}
"""
        return load_config(write_config(tmp_path, text))

    return make


@pytest.fixture(scope="session")
def ldap_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def make_slapd(
    tmp_path_factory: pytest.TempPathFactory, ldap_ca: trustme.CA
) -> Iterator[Callable[..., Slapd]]:
    """Start a private slapd seeded with `people` inetOrgPersons (plus `extra_ldif`)."""
    started: list[Slapd] = []

    def make(people: int = 0, extra_ldif: str = "", reader_prtotal: str = "unlimited") -> Slapd:
        ldap_server.ensure_installed()
        folder = tmp_path_factory.mktemp("slapd")
        ldap_server.write_config(folder, ldap_ca, reader_prtotal)
        ldif = ldap_server.base_ldif()
        ldif += "".join(ldap_server.person_ldif(i) for i in range(people)) + extra_ldif
        ldap_server.seed(folder, ldif)
        for attempt in range(3):
            # A port found free can be taken by a client socket before slapd binds it.
            server = Slapd(folder, free_port(), free_port(), ldap_ca)
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def dav_servers() -> Iterator[list[DavServer]]:
    """Servers a test started through `start_radicale` / `start_xandikos`, stopped after."""
    started: list[DavServer] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def radicale(tmp_path_factory: pytest.TempPathFactory, dav_servers: list[DavServer]) -> DavServer:
    """Radicale with alice (an empty book at /alice/contacts/), bob and a service account."""
    server = start_radicale(
        tmp_path_factory.mktemp("radicale"),
        {"alice": "alice-pw", "bob": "bob-pw", "svc": "svc-pw"},
        "from_file",
    )
    dav_servers.append(server)
    server.make_book("/alice/contacts/", "alice")
    return server


@pytest.fixture
def xandikos(tmp_path_factory: pytest.TempPathFactory, dav_servers: list[DavServer]) -> DavServer:
    server = start_xandikos(tmp_path_factory.mktemp("xandikos"))
    dav_servers.append(server)
    return server


async def drained(client: TestClient[web.Request, web.Application]) -> None:
    """Wait until the gateway behind `client` applied every queued change upstream."""
    assert await client.app[keys.ENGINE].outbox.drained(), "changes still pending"


@pytest.fixture
async def xcap_client(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    make_config: ConfigFactory,
) -> TestClient[web.Request, web.Application]:
    """The gateway with the demo directory at /users/{xui}/tbook.xml and the
    resource-lists application at /resource-lists/users/{xui}/…."""
    return await aiohttp_client(create_app(make_config()))


def require_postgres() -> None:
    """Skip when PostgreSQL is missing and we are not root; as root `make test` installs
    it, so there its absence fails the test."""
    if pg_server.find_bindir() is None and os.geteuid() != 0:
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql; make test does it as root)"
        )
    pg_server.ensure_installed()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One private PostgreSQL for the whole session, started when a test first needs it;
    tests take a fresh database each from `pg_url`, and do not stop or kill it."""
    require_postgres()
    server = pg_server.launch(tmp_path_factory.mktemp("postgres"))
    yield server
    server.close()


@pytest.fixture
def pg_url(postgres_server: Postgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """postgresql://xcap@127.0.0.1:PORT/NAME: a fresh database on `postgres_server`,
    dropped after the test (its connections terminated)."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"{slug}_{uuid.uuid4().hex[:8]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def make_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Postgres]]:
    """Start a PostgreSQL of the test's own, to stop, kill or restart (url: the `xcap`
    database); `fsync=True` for durability tests. Stopped and removed after the test."""
    started: list[Postgres] = []

    def make(fsync: bool = False) -> Postgres:
        require_postgres()
        server = pg_server.launch(tmp_path_factory.mktemp("postgres"), fsync)
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()
