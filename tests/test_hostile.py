"""Hostile requests: every one in tests/hostile/corpus.json is replayed over a raw socket
against a running gateway and must get its status; afterwards the gateway still answers,
and replaying the corpus again does not make it grow."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_config
from tests.support import free_port, start_gateway

CORPUS = json.loads((Path(__file__).parent / "hostile" / "corpus.json").read_text())
PLACEHOLDERS = {
    "{long20000}": "a" * 20000,
    "{long8000}": "A" * 8000,
    "{headers300}": "".join(f"X-Header-{i}: v\r\n" for i in range(300)),
}


def body_of(case: dict[str, Any]) -> bytes:
    if "body_hex" in case:
        return bytes.fromhex(case["body_hex"])
    if "body_repeat" in case:
        spec = case["body_repeat"]
        return (spec["prefix"] + spec["unit"] * spec["count"] + spec["suffix"]).encode()
    return str(case.get("body", "")).encode()


def request_bytes(case: dict[str, Any], port: int) -> bytes:
    if "raw" in case:
        text = case["raw"]
        for name, value in PLACEHOLDERS.items():
            text = text.replace(name, value)
        return text.encode()
    body = body_of(case)
    headers = {"Host": f"127.0.0.1:{port}", "Connection": "close", **case.get("headers", {})}
    for name, value in list(headers.items()):
        for placeholder, text in PLACEHOLDERS.items():
            headers[name] = value.replace(placeholder, text)
    auth = case.get("auth", "alice")
    if auth != "none":
        password = "alice-pw" if auth == "alice" else "not-her-password"
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()
        )
    if case["method"] in ("PUT", "POST") or body:
        headers["Content-Length"] = str(1000 if case.get("slow") else len(body))
    head = f"{case['method']} {case['path']} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + (b"<resource-lists" if case.get("slow") else body)


async def replay(case: dict[str, Any], port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(case, port))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=30)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return int(line.split()[1]) if line.startswith(b"HTTP/") else 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 40
    assert len({case["name"] for case in CORPUS}) == len(CORPUS)


@pytest.fixture
def hostile_gateway(tmp_path: Path, contacts_dir: Path) -> Any:
    sha = base64.b64encode(hashlib.sha1(b"alice-pw").digest()).decode()
    (tmp_path / "users.htpasswd").write_text(f"alice:{{SHA}}{sha}\n")
    port = free_port()
    config = write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:{port}"
body_timeout = "1s"
[auth]
mode = "basic"
users_file = "users.htpasswd"
allow_insecure_basic = true
max_failures = 100000
[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
""",
    )
    process = start_gateway(config, tmp_path / "serve.log")
    yield process, port
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


async def test_hostile_requests_get_their_status_and_change_nothing(hostile_gateway: Any) -> None:
    process, port = hostile_gateway
    healthy = {"method": "GET", "path": "/healthz", "status": 200}
    for _ in range(100):
        try:
            if await replay(healthy, port) == 200:
                break
        except OSError:
            await asyncio.sleep(0.1)
    # A stored list for alice, so element requests have something to aim at.
    index = {
        "method": "PUT",
        "path": "/resource-lists/users/sip:alice@example.com/index",
        "headers": {"Content-Type": "application/resource-lists+xml"},
        "body": '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="a"/></resource-lists>',
    }
    assert await replay(index, port) == 201
    wrong = []
    for case in CORPUS:
        status = await replay(case, port)
        if status != case["status"]:
            wrong.append(f"{case['name']}: {status}, expected {case['status']}")
    assert not wrong, "\n".join(wrong)
    before = rss_kib(process.pid)
    for _ in range(3):
        for case in CORPUS:
            await replay(case, port)
    after = rss_kib(process.pid)
    assert await replay(healthy, port) == 200
    document = {"method": "GET", "path": "/users/sip:alice@example.com/tbook.xml", "status": 200}
    assert await replay(document, port) == 200
    assert after - before < 20 * 1024, f"grew from {before} KiB to {after} KiB"
