"""What the first soak runs (bench/soak.py) found, each kept as a regression test: a PUT
while the state database is full answered 500, a reload crashed when a new user's request
came during it, and a SIGHUP during a slow start ended the process."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import keys
from gateway.app import create_app
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.sync import Sources
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory, write_config
from tests.support import free_port, start_gateway, stop_process

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
URL = "/users/sip:alice@example.com/tbook.xml"


async def test_a_put_while_the_state_database_is_full_is_503_and_changes_nothing(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    engine = client.app[keys.ENGINE]
    entries = counterpath.parse(await (await client.get(URL)).read())
    store = engine.store
    assert store is not None
    database = store._db  # type: ignore[attr-defined]
    pages = database.execute("PRAGMA page_count").fetchone()[0]
    database.execute(f"PRAGMA max_page_count = {pages}")  # full, as a full disk is
    before = sorted(p.name for p in contacts_dir.iterdir())
    new = Entry("", "Nina", {"home_number": ("+1 555 0300",)})
    body = counterpath.render(
        [*entries, *[Entry("", f"N{i}", {"comment": "x" * 2000}) for i in range(20)], new]
    )
    response = await client.put(URL, data=body)
    assert response.status == 503, await response.text()
    assert response.headers["Retry-After"]
    assert engine.outbox.depth == 0
    database.execute("PRAGMA max_page_count = 1073741823")
    assert sorted(p.name for p in contacts_dir.iterdir()) == before


async def test_instances_made_while_a_reload_stops_the_old_ones_do_not_break_it(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    books = tmp_path / "books"
    for user in ("alice", "bob"):
        (books / user).mkdir(parents=True)
    config = make_config(extra=f'[sources.mine]\ntype = "vcard-dir"\npath = "{books}/{{user}}"\n')
    sources = Sources(config)
    alice = sources.state("mine", UserRef("alice@example.com"))
    closing = alice.connector.close

    async def close_while_a_request_comes() -> None:
        sources.state("mine", UserRef("bob@example.com"))  # bob's first request, meanwhile
        await closing()

    alice.connector.close = close_while_a_request_comes  # type: ignore[method-assign]
    await sources.stop()


def test_a_sighup_during_a_slow_start_does_not_end_the_process(tmp_path: Path) -> None:
    """`systemctl reload` while the first syncs still run: the default action of SIGHUP
    would end the process before its reload handler is in place."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never answers: the first sync takes its time
    port = free_port()
    config = write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:{port}"
state_dir = "var"
startup_sync_wait = "3s"
[sources.book]
type = "carddav"
url = "http://127.0.0.1:{silent.getsockname()[1]}/book/"
timeout = "60s"
[documents.tbook]
name = "tbook.xml"
sources = ["book"]
""",
    )
    process = start_gateway(config, tmp_path / "serve.log")
    try:
        database = tmp_path / "var" / "xcap-gateway.sqlite3"
        for _ in range(400):  # started: the state database is open, the syncs begin
            if database.exists() or process.poll() is not None:
                break
            time.sleep(0.05)
        assert database.exists(), (tmp_path / "serve.log").read_text()
        os.kill(process.pid, signal.SIGHUP)
        for _ in range(400):  # it goes on to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, "the SIGHUP ended the gateway"
                time.sleep(0.05)
        assert process.poll() is None
    finally:
        stop_process(process)
        silent.close()
