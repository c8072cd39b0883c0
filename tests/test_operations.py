"""Running the gateway: metrics, log lines, the status command, SIGTERM and SIGHUP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.app import create_app
from gateway.xcap import counterpath
from tests.conftest import ConfigFactory, drained, write_config
from tests.support import free_port, start_gateway
from tests.xcap.support import ClientFactory

URL = "/users/sip:alice@example.com/tbook.xml"


async def test_metrics_count_requests_syncs_and_the_outbox(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    first = await client.get(URL)
    etag = first.headers["ETag"]
    for _ in range(3):
        assert (await client.get(URL, headers={"If-None-Match": etag})).status == 304
    entries = counterpath.parse(await first.read())
    assert (await client.put(URL, data=counterpath.render(entries[1:]))).status == 200
    await drained(client)
    text = await (await client.get("/metrics")).text()
    assert 'xcap_requests_total{document="tbook",method="GET",status="304"} 3.0' in text
    assert 'xcap_requests_total{document="tbook",method="PUT",status="200"} 1.0' in text
    assert "xcap_not_modified_ratio 0.75" in text
    assert 'xcap_syncs_total{result="ok",source="demo"} 1.0' in text
    assert 'xcap_sync_duration_seconds_count{source="demo"} 1.0' in text
    assert 'xcap_source_entries{source="demo"} 27.0' in text
    assert "xcap_outbox_depth 0.0" in text and "xcap_outbox_oldest_seconds 0.0" in text
    assert 'xcap_writes_total{outcome="applied",source="demo"} 1.0' in text
    assert "xcap_conflicts_total" in text and "xcap_auth_failures_total 0.0" in text


async def test_metrics_label_phonebook_and_lookup_requests_by_document(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    config = make_config(document='formats = ["counterpath", "yealink"]')
    client = await aiohttp_client(create_app(config))
    book = "/phonebook/yealink/users/sip:alice@example.com/tbook"
    assert (await client.get(book)).status == 200
    lookup = "/phonebook/lookup/users/sip:alice@example.com/tbook?number=999"
    assert (await client.get(lookup)).status == 404
    assert (await client.get("/phonebook/yealink/users/sip:alice@example.com/nope")).status == 404
    text = await (await client.get("/metrics")).text()
    assert 'xcap_requests_total{document="tbook",method="GET",status="200"} 1.0' in text
    assert 'xcap_requests_total{document="tbook",method="GET",status="404"} 1.0' in text
    assert 'xcap_requests_total{document="-",method="GET",status="404"} 1.0' in text
    # Methods no phone uses share one label (the label set stays small).
    for method in ("PROPFIND", "MKCOL", "LOCK"):
        response = await client.request(method, book)
        assert response.status == 405
    text = await (await client.get("/metrics")).text()
    assert "PROPFIND" not in text
    assert 'xcap_requests_total{document="tbook",method="OTHER",status="405"} 3.0' in text


def serve_config(tmp_path: Path, contacts_dir: Path, port: int, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:{port}"
shutdown_grace = "10s"
[logging]
format = "json"
[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
interval = "1h"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
{extra}
""",
    )


@pytest.fixture
async def served(
    tmp_path: Path, contacts_dir: Path
) -> AsyncIterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    config = serve_config(tmp_path, contacts_dir, port)
    log = tmp_path / "serve.log"
    process = start_gateway(config, log)
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    yield process, port, config
    if process.poll() is None:
        process.kill()
        process.wait()


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_json_log_lines_for_requests_and_syncs_and_a_clean_sigterm(
    served: tuple[subprocess.Popen[bytes], int, Path], contacts_dir: Path, tmp_path: Path
) -> None:
    process, port, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{URL}") as response:
            entries = counterpath.parse(await response.read())
        # A change, then SIGTERM at once: the outbox is drained before the process exits.
        async with session.put(
            f"http://127.0.0.1:{port}{URL}", data=counterpath.render(entries[1:])
        ) as response:
            assert response.status == 200
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0
    assert len(list(contacts_dir.glob("*.vcf"))) == 25
    lines = json_lines(tmp_path / "serve.log")
    request = next(x for x in lines if x.get("event") == "request" and x.get("method") == "GET")
    assert request["document"] == "tbook" and request["status"] == 200 and request["bytes"] > 0
    assert "ms" in request
    sync = next(x for x in lines if x.get("event") == "sync")
    assert sync["source"] == "demo" and sync["added"] == 28 and "ms" in sync
    stopped = next(x for x in lines if x.get("event") == "stopped")
    assert stopped["pending"] == 0


async def test_sighup_reloads_and_an_invalid_file_keeps_the_running_config(
    served: tuple[subprocess.Popen[bytes], int, Path], contacts_dir: Path, tmp_path: Path
) -> None:
    process, port, config = served
    base = f"http://127.0.0.1:{port}/users/sip:alice@example.com"
    async with aiohttp.ClientSession() as session:  # one keep-alive connection throughout
        async with session.get(f"{base}/other.xml") as response:
            assert response.status == 404
        config.write_text(
            config.read_text() + '\n[documents.other]\nname = "other.xml"\nsources = ["demo"]\n'
        )
        process.send_signal(signal.SIGHUP)
        for _ in range(100):
            async with session.get(f"{base}/other.xml") as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.05)
        assert response.status == 200
        config.write_text(config.read_text() + "\n[documents.broken]\nname = 1\n")
        process.send_signal(signal.SIGHUP)
        for _ in range(200):  # until the gateway has looked at the broken file
            if "reload_rejected" in (tmp_path / "serve.log").read_text():
                break
            await asyncio.sleep(0.05)
        async with session.get(f"{base}/other.xml") as response:
            assert response.status == 200  # still the last good configuration
        async with session.get(f"{base}/tbook.xml") as response:
            assert response.status == 200
    assert process.poll() is None
    rejected = [
        x for x in json_lines(tmp_path / "serve.log") if x.get("event") == "reload_rejected"
    ]
    assert rejected and "[documents.broken] name" in str(rejected[0]["problem"])


async def test_status_command_with_and_without_a_running_gateway(
    served: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, config = served
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{URL}") as response,
    ):
        assert response.status == 200

    def status() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "TZ": "UTC"},
        )

    running = await asyncio.to_thread(status)
    assert running.returncode == 0, running.stderr
    assert "source demo: 28 entries, last sync 20" in running.stdout
    assert "outbox: 0 pending, 0 failed" in running.stdout
    assert "document tbook: served to 1 users" in running.stdout
    process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(process.wait, 30)
    stopped = await asyncio.to_thread(status)
    assert "no gateway is running" in stopped.stdout and "source demo: 28 entries" in stopped.stdout
