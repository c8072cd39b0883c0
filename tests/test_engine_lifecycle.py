"""The engine over time: restarts serve the stored snapshot at once and resume incremental
sync; failures back off; a sudden shrink is held back; operators can sync by hand."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from ldap3 import MODIFY_REPLACE

from gateway import keys
from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.engine import Engine
from gateway.model import UserRef
from tests.conftest import ConfigFactory, write_config
from tests.ldap.server import PEOPLE, READER_DN, SERVICE_PASSWORD, Slapd, admin_connection

ALICE = UserRef("alice@example.com")
Client = TestClient[web.Request, web.Application]


async def started(config: Config) -> Engine:
    engine = Engine(config)
    await engine.start()
    return engine


async def test_a_restart_serves_the_stored_snapshot_at_once(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    config = make_config()
    engine = await started(config)
    before = await engine.document("tbook", ALICE)
    await engine.stop()
    contacts_dir.rename(contacts_dir.with_name("unreachable"))  # the upstream is down now
    engine = await started(config)
    try:
        after = await engine.document("tbook", ALICE)
        assert after.etag == before.etag and len(after.entries) == 28
        assert engine.sources.state("demo", ALICE).last_error  # the sync did fail
    finally:
        await engine.stop()


def ldap_text(server: Slapd, extra: str = "") -> str:
    return f"""
[server]
listen = "127.0.0.1:0"
[sources.people]
type = "ldap"
url = "{server.url}"
bind_dn = "{READER_DN}"
password = "{SERVICE_PASSWORD}"
base_dn = "{PEOPLE}"
interval = "1h"
{extra}
[documents.tbook]
name = "tbook.xml"
sources = ["people"]
"""


async def test_a_restart_resumes_incremental_sync_from_the_stored_token(
    make_slapd: Callable[..., Slapd], tmp_path: Path
) -> None:
    server = make_slapd(people=20)
    config = load_config(write_config(tmp_path, ldap_text(server)))
    engine = await started(config)
    await engine.stop()
    admin = admin_connection(server)
    admin.delete(f"uid=user000004,{PEOPLE}")  # while the gateway is down
    admin.modify(f"uid=user000005,{PEOPLE}", {"title": [(MODIFY_REPLACE, ["Boss"])]})
    admin.unbind()
    engine = Engine(config)
    tokens: list[str | None] = []
    state = engine.sources.state("people", ALICE)
    original = state.connector.changes

    async def recording(token: str | None) -> Any:
        tokens.append(token)
        return await original(token)

    state.connector.changes = recording  # type: ignore[method-assign]
    await engine.start()
    try:
        document = await engine.document("tbook", ALICE)
        names = {e.display_name: e for e in document.entries.values()}
        assert len(names) == 19 and "Person 000004" not in names
        assert names["Person 000005"].fields["profession"] == "Boss"
        assert tokens and tokens[0] is not None  # resumed, not a full pull
    finally:
        await engine.stop()


async def test_a_changed_source_configuration_starts_from_scratch(
    make_slapd: Callable[..., Slapd], tmp_path: Path
) -> None:
    server = make_slapd(people=5)
    engine = await started(load_config(write_config(tmp_path, ldap_text(server))))
    await engine.stop()
    narrower = ldap_text(server, 'filter = "(uid=user000001)"')
    engine = await started(load_config(write_config(tmp_path, narrower)))
    try:
        assert len((await engine.document("tbook", ALICE)).entries) == 1
    finally:
        await engine.stop()


async def test_a_failing_source_is_retried_with_growing_delays(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    hidden = contacts_dir.rename(contacts_dir.with_name("later"))
    engine = await started(make_config(source='interval = "1h"\nretry_interval = "0.05s"'))
    try:
        state = engine.sources.state("demo", ALICE)
        for _ in range(100):
            if state.failures >= 3:
                break
            await asyncio.sleep(0.05)
        assert state.failures >= 3  # retried long before the hour is up
        hidden.rename(contacts_dir)
        for _ in range(100):
            if state.has_data:
                break
            await asyncio.sleep(0.05)
        assert state.has_data and state.failures == 0
    finally:
        await engine.stop()


async def test_a_sudden_shrink_is_held_back_until_accepted(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    engine = await started(make_config())
    try:
        state = engine.sources.state("demo", ALICE)
        for card in sorted(contacts_dir.glob("*.vcf"))[:20]:
            card.unlink()
        assert await state.refresh() is False
        assert state.held_back == (28, 6)
        assert "--accept-shrink" in (state.last_error or "")
        assert len((await engine.document("tbook", ALICE)).entries) == 28
        state.accept_shrink = True
        assert await state.refresh() is True
        assert len((await engine.document("tbook", ALICE)).entries) == 6
    finally:
        await engine.stop()


async def test_readiness_waits_for_every_shared_source(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    make_config: ConfigFactory,
    contacts_dir: Path,
) -> None:
    hidden = contacts_dir.rename(contacts_dir.with_name("later"))
    client = await aiohttp_client(create_app(make_config(source='retry_interval = "0.05s"')))
    response = await client.get("/readyz")
    assert response.status == 503 and (await response.json())["waiting_for"] == ["demo"]
    assert (await client.get("/healthz")).status == 200
    hidden.rename(contacts_dir)
    for _ in range(100):
        if (response := await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.05)
    assert response.status == 200


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sync_command_without_a_running_server(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    config = make_config()
    result = run_cli("sync", "--config", str(config.path))
    assert result.returncode == 0, result.stderr
    assert "demo: ok (28 entries)" in result.stdout
    (contacts_dir / "lars.petersen.vcf").unlink()
    result = run_cli("sync", "--config", str(config.path), "--source", "demo")
    assert "demo: ok (27 entries)" in result.stdout
    assert run_cli("sync", "--config", str(config.path), "--source", "nope").returncode == 2


async def test_sync_command_asks_the_running_server(
    tmp_path_factory: pytest.TempPathFactory, contacts_dir: Path
) -> None:
    # A short state_dir: a Unix socket path must stay under 108 bytes.
    folder = tmp_path_factory.mktemp("s")
    config = load_config(
        write_config(
            folder,
            f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"
[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
interval = "1h"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
""",
        )
    )
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        engine = app[keys.ENGINE]
        state = engine.sources.state("demo", ALICE)
        for card in sorted(contacts_dir.glob("*.vcf"))[:20]:
            card.unlink()
        result = await asyncio.to_thread(run_cli, "sync", "--config", str(config.path))
        assert result.returncode == 1 and "held back" in result.stdout
        assert len(state.contacts) == 28  # the running server's snapshot, untouched
        result = await asyncio.to_thread(
            run_cli, "sync", "--config", str(config.path), "--accept-shrink"
        )
        assert result.returncode == 0 and "demo: ok (6 entries)" in result.stdout
        assert len(state.contacts) == 6  # the running server synced, not a second process
    finally:
        await runner.cleanup()


async def test_a_failing_per_user_source_is_not_retried_on_every_poll(
    make_config: ConfigFactory,
) -> None:
    extra = '[sources.mine]\ntype = "ldap"\nurl = "ldap://127.0.0.1:9"\nbase_dn = "ou={user}"\ntimeout = "2s"\nretry_interval = "1h"\n'
    engine = await started(make_config(extra=extra, sources='["mine", "demo"]'))
    try:
        for _ in range(3):
            with pytest.raises(Exception, match="no data yet from source mine"):
                await engine.document("tbook", ALICE)
        assert engine.sources.state("mine", ALICE).failures == 1  # tried once, then backed off
    finally:
        await engine.stop()


async def test_served_versions_survive_a_restart_as_merge_bases(
    make_config: ConfigFactory, contacts_dir: Path
) -> None:
    config = make_config()
    engine = await started(config)
    served = await engine.document("tbook", ALICE)
    await engine.served("tbook", ALICE, "snom|10.0.0.7", served)
    await engine.stop()
    card = contacts_dir / "lars.petersen.vcf"
    card.write_bytes(card.read_bytes().replace(b"Ejer", b"Direktor"))
    engine = await started(config)
    try:
        now = await engine.document("tbook", ALICE)
        assert now.etag != served.etag
        base = engine.versions.base_for("tbook", ALICE.xui, "snom|10.0.0.7", None)
        assert base is not None and dict(base) == dict(served.entries)
        # The phone, still holding the old version, edits Anna: Lars's new title survives.
        anna = next(e for e in served.entries.values() if e.display_name == "Anna Müller")
        sent = [
            e
            if e is not anna
            else type(e)(e.entry_id, e.display_name, {**e.fields, "comment": "x"})
            for e in served.entries.values()
        ]
        await engine.put("tbook", ALICE, sent, "snom|10.0.0.7")
        assert await engine.outbox.drained()
        assert "TITLE:Direktor" in card.read_text()
        assert "NOTE:x" in (contacts_dir / "anna.mueller.vcf").read_text()
    finally:
        await engine.stop()
