"""An LDAP source whose URL reaches something else (an HTTP server, a proxy): its sync fails
with a message that says so and is retried, instead of a traceback and a source that
stops syncing."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.vcard_dir import VcardDirConnector
from gateway.engine import Engine
from gateway.model import UserRef
from tests.conftest import ConfigFactory, write_config
from tests.test_cli import gateway

#: What an egress proxy answered (long enough for ldap3 to try to decode it as a message).
HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n"
    b"date: Fri, 27 Nov 2026 09:57:59 GMT\r\n\r\n"
)


@pytest.fixture
def http_port() -> Iterator[int]:
    """A server that answers every connection as an HTTP server (or an egress proxy) does."""
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client:
                client.settimeout(5)
                try:
                    client.recv(4096)
                    client.sendall(HTTP_ANSWER)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stopping.set()
    listener.close()
    thread.join(timeout=5)


@pytest.mark.parametrize("client", ["ldap3", "auto"])
def test_a_sync_of_an_ldap_url_answered_by_http_fails_and_says_why(
    tmp_path: Path, http_port: int, client: str
) -> None:
    config = write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"

[sources.people]
type = "ldap"
url = "ldap://127.0.0.1:{http_port}"
base_dn = "ou=people,dc=example,dc=com"
timeout = "3s"
client = "{client}"

[documents.people]
name = "people.xml"
sources = ["people"]
""",
    )
    done = gateway("sync", "--config", str(config))
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 1, output
    assert "not LDAP" in output and "Traceback" not in output
    checked = gateway("check-config", "--config", str(config), "--connect")
    output = (checked.stdout + checked.stderr).decode()
    assert checked.returncode == 1 and "not LDAP" in output, output


async def test_an_unexpected_error_from_a_connector_is_a_failed_sync(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a connector lets through is counted, logged and retried like its own
    errors; it used to end the scheduler's task for the source, which then never synced."""
    engine = Engine(make_config())
    state = engine.sources.state("demo", UserRef(""))

    def broken(self: object) -> list[tuple[str, str]]:
        raise KeyError((1, 20))

    monkeypatch.setattr(VcardDirConnector, "_scan", broken)
    assert await state.refresh() is False
    assert state.failures == 1 and not state.has_data
    assert state.last_error == "unexpected KeyError from the connector: (1, 20)"
