"""The admin console without a browser: who may use it, CSRF, escaping, the outbox
actions, the configuration checks and `serve` starting its listener. The browser tests
(tests/test_admin_browser.py) use the helpers here."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway import keys, outbox_rows
from gateway.admin import create_admin_app
from gateway.admin.csrf import CsrfTokens
from gateway.admin.keys import CSRF
from gateway.admin.outbox_actions import claim, discard, failed_item
from gateway.app import create_app
from gateway.config import Config, ConfigError, load_config
from gateway.engine import Engine
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.outbox import Item
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory, write_config
from tests.support import free_port, start_gateway, stop_process, wait_listening
from tests.test_auth import htdigest

SCRIPT_NAME = "<script>alert(1)</script>"
PASSWORDS = {"admin": "admin-pw", "alice": "alice-pw"}


def script_card(folder: Path) -> None:
    """A contact whose name is markup: the console must show it as text."""
    (folder / "script.vcf").write_text(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:script-1\r\n"
        f"FN:{SCRIPT_NAME}\r\nN:Script;Evil;;;\r\nTEL;TYPE=WORK:+49 30 5550000\r\n"
        "END:VCARD\r\n",
        encoding="utf-8",
    )


def auth_toml(tmp_path: Path) -> str:
    htdigest(tmp_path / "users.htdigest", **PASSWORDS)
    return (
        f'[auth]\nmode = "digest"\nusers_file = "{tmp_path}/users.htdigest"\nadmins = ["admin"]\n'
    )


@dataclass
class Running:
    """The gateway (XCAP listener) and its console, each on a port of 127.0.0.1."""

    main: web.Application
    console: web.Application
    xcap: str
    admin: str

    @property
    def engine(self) -> Engine:
        return self.main[keys.ENGINE]


def _url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Running]:
    main = create_app(config)
    console = create_admin_app(main)
    runners = [web.AppRunner(main), web.AppRunner(console)]
    try:
        for runner in runners:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield Running(main, console, _url(runners[0]), _url(runners[1]))
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


@contextlib.asynccontextmanager
async def session_as(login: str | None) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that answers digest challenges as `login` (None: no credentials), and
    follows no redirects by default (a test looks at the 303)."""
    middlewares = (
        (aiohttp.DigestAuthMiddleware(login, PASSWORDS[login]),) if login is not None else ()
    )
    async with aiohttp.ClientSession(middlewares=middlewares) as session:
        yield session


async def token_of(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        assert response.status == 200
        found = re.search(r'name="csrf" value="([^"]+)"', await response.text())
    assert found is not None
    return found.group(1)


async def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Until `condition()` holds; fails naming `what` after `seconds` (a bound on a hang,
    not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
def console_config(make_config: ConfigFactory, tmp_path: Path, contacts_dir: Path) -> Config:
    script_card(contacts_dir)
    return make_config(
        document='formats = ["counterpath", "yealink", "cisco"]', extra=auth_toml(tmp_path)
    )


async def test_only_admins_may_use_it(console_config: Config) -> None:
    async with running(console_config) as gateway:
        async with session_as(None) as anonymous, anonymous.get(gateway.admin + "/") as response:
            assert response.status == 401
            assert "Digest" in response.headers["WWW-Authenticate"]
        async with session_as("alice") as alice:
            for path in ("/", "/outbox", "/conflicts", "/user?xui=bob@example.com"):
                async with alice.get(gateway.admin + path) as response:
                    assert response.status == 403, path
            async with alice.post(gateway.admin + "/sources/demo/sync") as response:
                assert response.status == 403
        async with session_as("admin") as admin, admin.get(gateway.admin + "/") as response:
            assert response.status == 200
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
            page = await response.text()
            assert 'id="source-demo"' in page and "Sync now" in page


async def test_a_post_without_its_token_changes_nothing(
    console_config: Config, contacts_dir: Path
) -> None:
    async with running(console_config) as gateway:
        state = gateway.engine.sources.shared_states()[0]
        assert state.last_error is None
        contacts_dir.rename(contacts_dir.with_name("away"))  # a sync now would fail
        url = gateway.admin + "/sources/demo/sync"
        async with session_as("admin") as admin:
            other = CsrfTokens().token("admin")  # another process's secret
            alices = gateway.console[CSRF].token("alice")  # good for alice only
            for data in ({}, {"csrf": ""}, {"csrf": "x" * 43}, {"csrf": other}, {"csrf": alices}):
                async with admin.post(url, data=data, allow_redirects=False) as response:
                    assert response.status == 403, data
            assert state.last_error is None  # no sync ran
            token = await token_of(admin, gateway.admin + "/")
            async with admin.post(url, data={"csrf": token}, allow_redirects=False) as response:
                assert response.status == 303
                assert response.headers["Location"] == "/#source-demo"
            assert state.last_error is not None and "does not exist" in state.last_error


async def test_upstream_text_is_escaped(console_config: Config) -> None:
    async with running(console_config) as gateway, session_as("admin") as admin:
        async with admin.get(
            gateway.admin + "/user", params={"xui": "alice@example.com", "format": "yealink"}
        ) as response:
            page = await response.text()
        assert SCRIPT_NAME not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<script" not in page
        # A query parameter is text too.
        async with admin.get(
            gateway.admin + "/user", params={"xui": '"><script>alert(2)</script>'}
        ) as response:
            assert "<script" not in await response.text()
        async with admin.get(
            gateway.admin + "/user/raw",
            params={"xui": "alice@example.com", "format": "yealink"},
        ) as response:
            assert response.content_type == "text/plain"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert b"YealinkIPPhoneDirectory" in await response.read()


async def test_overview_names_every_phones_url(console_config: Config) -> None:
    async with running(console_config) as gateway, session_as("admin") as admin:
        async with admin.get(gateway.admin + "/") as response:
            page = await response.text()
        host = gateway.engine.config.server.listen[0]
        assert f"http://{host}/users/sip:{{xui}}/tbook.xml" in page
        assert f"http://{host}/phonebook/yealink/users/{{xui}}/tbook?q=#SEARCH" in page
        assert f"http://{host}/phonebook/cisco/users/{{xui}}/tbook?form=menu" in page
        async with admin.get(
            gateway.admin + "/user", params={"xui": "sip:alice@example.com"}
        ) as response:
            page = await response.text()
        assert f"http://{host}/users/sip:alice@example.com/tbook.xml" in page
        assert f"http://{host}/phonebook/yealink/users/alice@example.com/tbook?q=#SEARCH" in page


def _failed_change(engine: Engine, number: int) -> Item:
    return Item(
        "tbook",
        "alice@example.com",
        "demo",
        "",
        "update",
        f"{number:032X}",
        after=Entry(f"{number:032X}", f"Changed {number}"),
    )


async def _fail(engine: Engine, item: Item) -> None:
    """Record `item` as failed, as the outbox does when an upstream refuses it."""
    store = engine.outbox.store
    assert store is not None
    await asyncio.to_thread(outbox_rows.insert, store, [item])
    item.error = "refused by the directory's schema"
    await asyncio.to_thread(outbox_rows.update, store, item, "failed")
    engine.outbox.failed.append(item)
    engine.outbox.failed_count += 1


async def test_discard_and_retry_a_failed_change(
    console_config: Config, contacts_dir: Path
) -> None:
    async with running(console_config) as gateway:
        engine = gateway.engine
        store = engine.outbox.store
        assert store is not None
        first, second = _failed_change(engine, 1), _failed_change(engine, 2)
        await _fail(engine, first)
        await _fail(engine, second)
        async with session_as("admin") as admin:
            async with admin.get(gateway.admin + "/outbox") as response:
                page = await response.text()
            assert f'id="failed-{first.id}"' in page and "refused by the directory" in page
            # Without the token: nothing happens.
            url = f"{gateway.admin}/outbox/{first.id}/discard"
            async with admin.post(url, allow_redirects=False) as response:
                assert response.status == 403
            assert failed_item(engine.outbox, first.id) is first
            token = await token_of(admin, gateway.admin + "/outbox")
            async with admin.post(url, data={"csrf": token}, allow_redirects=False) as response:
                assert response.status == 303
            async with admin.post(url, data={"csrf": token}, allow_redirects=False) as response:
                assert response.status == 404  # discarded already
        assert failed_item(engine.outbox, first.id) is None
        assert engine.outbox.failed_count == 1
        assert await asyncio.to_thread(outbox_rows.count, store, "failed") == 1
        with store.transaction() as db:
            archived = db.execute("SELECT id, error FROM outbox_archive").fetchall()
        assert archived == [(first.id, "refused by the directory's schema")]
        # Retry: queued again as a new change, the failed record gone, and applied.
        real = await _real_edit(engine)
        await _fail(engine, real)
        assert await asyncio.to_thread(outbox_rows.count, store, "failed") == 2
        claimed = claim(engine.outbox, second.id)
        assert claimed is second
        await discard(engine.outbox, claimed)
        async with (
            session_as("admin") as admin,
            admin.post(
                f"{gateway.admin}/outbox/{real.id}/retry",
                data={"csrf": await token_of(admin, gateway.admin + "/outbox")},
                allow_redirects=False,
            ) as response,
        ):
            assert response.status == 303
        assert engine.outbox.failed_count == 0 and not engine.outbox.failed
        await wait_for(lambda: engine.outbox.depth == 0, "the retried change applied")
        assert await asyncio.to_thread(outbox_rows.count, store, "failed") == 0
        assert "FN:Anna Retried" in (contacts_dir / "anna.mueller.vcf").read_text()


@pytest.mark.parametrize(
    "actions", [("retry", "retry"), ("retry", "discard"), ("discard", "retry")]
)
async def test_two_actions_on_one_failed_change_at_once_take_effect_once(
    console_config: Config, actions: tuple[str, str]
) -> None:
    """Two admins (or a double click): the first request takes the change, the second
    finds it gone. Before, both got past the look-up: a change was queued twice, or
    retried while the other admin was told it was discarded."""
    async with running(console_config) as gateway:
        engine = gateway.engine
        store = engine.outbox.store
        assert store is not None
        change = _failed_change(engine, 1)
        await _fail(engine, change)
        pending_before = await asyncio.to_thread(outbox_rows.count, store, "pending")
        async with session_as("admin") as admin:
            token = await token_of(admin, gateway.admin + "/outbox")

            async def act(action: str) -> int:
                url = f"{gateway.admin}/outbox/{change.id}/{action}"
                async with admin.post(url, data={"csrf": token}, allow_redirects=False) as answer:
                    return answer.status

            statuses = await asyncio.gather(*(act(action) for action in actions))
            too_long = f"{gateway.admin}/outbox/{'9' * 4301}/retry"
            async with admin.post(too_long, data={"csrf": token}) as response:
                assert response.status == 404  # not a 500 from int()
        assert sorted(statuses) == [303, 404]
        assert not engine.outbox.failed and engine.outbox.failed_count == 0
        retried = actions[statuses.index(303)] == "retry"
        pending = await asyncio.to_thread(outbox_rows.count, store, "pending")
        assert pending - pending_before <= (1 if retried else 0)
        with store.transaction() as db:
            archived = db.execute("SELECT id FROM outbox_archive").fetchall()
        assert archived == [(change.id,)]


async def _real_edit(engine: Engine) -> Item:
    """A change the phone could have sent: Anna Müller renamed."""
    rendered = await engine.document("tbook", UserRef("alice@example.com"), current=True)
    entry_id, entry = next(
        (i, e) for i, e in rendered.entries.items() if e.display_name == "Anna Müller"
    )
    origin = rendered.origins[entry_id]
    return Item(
        "tbook",
        "alice@example.com",
        "demo",
        "",
        "update",
        entry_id,
        href=origin.href,
        before=entry,
        after=Entry(entry_id, "Anna Retried", entry.fields),
        etag=origin.etag,
    )


async def test_discard_outlives_a_restart(console_config: Config) -> None:
    """A discarded change is gone from the database, not only from memory: it does not
    come back when the outbox loads again."""
    engine = Engine(console_config)
    store = engine.open_store()
    await engine.outbox.load(store)
    item = _failed_change(engine, 3)
    await _fail(engine, item)
    await discard(engine.outbox, item)
    await engine.stop()
    engine = Engine(console_config)
    await engine.outbox.load(engine.open_store())
    try:
        assert engine.outbox.failed_count == 0 and not engine.outbox.failed
    finally:
        await engine.stop()


def test_admin_listen_needs_admins_and_authentication(tmp_path: Path) -> None:
    base = '[server]\nadmin_listen = "127.0.0.1:9999"\n'
    for auth in ("", '[auth]\nmode = "none"\nadmins = ["admin"]\n'):
        with pytest.raises(ConfigError) as caught:
            load_config(write_config(tmp_path, base + auth))
        assert any(p.key == "admin_listen" for p in caught.value.problems), auth
    config = load_config(write_config(tmp_path, base + auth_toml(tmp_path)))
    assert config.server.admin_listen == ["127.0.0.1:9999"]
    assert load_config(write_config(tmp_path, "")).server.admin_listen == []


def test_serve_starts_the_console_listener(tmp_path: Path, contacts_dir: Path) -> None:
    xcap, admin = free_port(), free_port()
    config = write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:{xcap}"
admin_listen = "127.0.0.1:{admin}"
state_dir = "var"

[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"

[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
{auth_toml(tmp_path)}
""",
    )
    log = tmp_path / "serve.log"
    process = start_gateway(config, log)
    try:
        wait_listening(process, admin, log)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/", timeout=10)
        caught.value.close()
        assert caught.value.code == 401  # the console's own listener, asking who
        assert "admin_console=True" in log.read_text()
    finally:
        stop_process(process)


async def test_the_conflicts_page_lists_a_merge_conflict(
    console_config: Config, contacts_dir: Path
) -> None:
    """A phone and the upstream change the same field: the merge's conflict is listed."""
    url = "/users/sip:alice@example.com/tbook.xml"
    phone = {"User-Agent": "snomD785/10.1.54.13"}
    async with running(console_config) as gateway:
        async with (
            session_as("alice") as alice,
            alice.get(gateway.xcap + url, headers=phone) as got,
        ):
            entries = counterpath.parse(await got.read())
        card = contacts_dir / "lars.petersen.vcf"
        card.write_bytes(card.read_bytes().replace(b"TITLE:Ejer", b"TITLE:Upstream title"))
        await gateway.engine.sources.state("demo", UserRef("")).refresh()
        sent = [
            Entry(e.entry_id, e.display_name, {**e.fields, "profession": "Phone title"})
            if e.display_name == "Lars Petersen"
            else e
            for e in entries
        ]
        async with (
            session_as("alice") as alice,
            alice.put(gateway.xcap + url, data=counterpath.render(sent), headers=phone) as put,
        ):
            assert put.status == 200
        async with session_as("admin") as admin, admin.get(gateway.admin + "/conflicts") as page:
            text = await page.text()
        assert "<td>conflict</td>" in text
        assert "field=profession" in text and "alice@example.com" in text


async def test_a_held_back_shrink_is_accepted_from_the_overview(
    console_config: Config, contacts_dir: Path
) -> None:
    async with running(console_config) as gateway, session_as("admin") as admin:
        state = gateway.engine.sources.shared_states()[0]
        had = len(state.contacts)
        for card in sorted(contacts_dir.glob("*.vcf"))[2:]:
            card.unlink()
        url = gateway.admin + "/sources/demo/sync"
        token = await token_of(admin, gateway.admin + "/")
        async with admin.post(url, data={"csrf": token}, allow_redirects=False) as response:
            assert response.status == 303
        assert state.held_back is not None and len(state.contacts) == had
        async with admin.get(gateway.admin + "/") as response:
            assert "Accept the shrink and sync" in await response.text()
        form = {"csrf": token, "accept_shrink": "1"}
        async with admin.post(url, data=form, allow_redirects=False) as response:
            assert response.status == 303
        assert state.held_back is None and len(state.contacts) == 2
        async with admin.get(gateway.admin + "/") as response:
            assert "Accept the shrink and sync" not in await response.text()
