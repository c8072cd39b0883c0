"""The `xcap-gateway` command as an administrator runs it: render, and serve as a process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from gateway.xcap import counterpath
from tests.conftest import write_config
from tests.support import free_port


def config_text(contacts_dir: Path, port: int) -> str:
    return f"""
[server]
listen = "127.0.0.1:{port}"
state_dir = "var"

[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"

[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
"""


def gateway(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, timeout=60, check=False
    )


def test_render_prints_what_a_user_would_get(tmp_path: Path, contacts_dir: Path) -> None:
    path = write_config(tmp_path, config_text(contacts_dir, 8080))
    result = gateway(
        "render", "--config", str(path), "--document", "tbook", "--user", "sip:alice@example.com"
    )
    assert result.returncode == 0, result.stderr
    names = {entry.display_name for entry in counterpath.parse(result.stdout)}
    assert {"Anna Müller", "张伟", "Pizzeria Da Mario"} <= names and len(names) == 28


def test_render_of_an_unreadable_source_fails_and_says_why(tmp_path: Path) -> None:
    path = write_config(tmp_path, config_text(tmp_path / "missing", 8080))
    result = gateway(
        "render", "--config", str(path), "--document", "tbook", "--user", "alice@example.com"
    )
    assert result.returncode == 1
    assert b"source demo:" in result.stderr and b"does not exist" in result.stderr
    assert result.stdout == b""


async def test_serve_answers_phones_and_stops_cleanly_on_sigterm(
    tmp_path: Path, contacts_dir: Path
) -> None:
    port = free_port()
    path = write_config(tmp_path, config_text(contacts_dir, port))
    url = f"http://127.0.0.1:{port}/users/sip:alice@example.com/tbook.xml"
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(100):
                    try:
                        async with session.get(url) as response:
                            body = await response.read()
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
                else:
                    raise AssertionError((tmp_path / "serve.log").read_text())
                assert response.status == 200 and len(counterpath.parse(body)) == 28
                entries = counterpath.parse(body)[1:]
                async with session.put(url, data=counterpath.render(entries)) as response:
                    assert response.status == 200
                # The change is applied from the outbox right after the answer.
                for _ in range(200):
                    if len(list(contacts_dir.glob("*.vcf"))) == 25:
                        break
                    await asyncio.sleep(0.05)
                assert len(list(contacts_dir.glob("*.vcf"))) == 25
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=20)
    assert code == 0
    assert "event=listening" in (tmp_path / "serve.log").read_text()


def test_serve_says_which_address_it_cannot_listen_on(tmp_path: Path, contacts_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, config_text(contacts_dir, port))
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"[server] listen: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_options_without_a_command_mean_serve(tmp_path: Path, contacts_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, config_text(contacts_dir, port))
        result = gateway("--config", str(path))
    # It tried to serve (and said why it could not listen).
    assert result.returncode == 1 and b"cannot listen on" in result.stderr
