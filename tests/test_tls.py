"""HTTPS natively, beside plain HTTP on its own listener, with a test CA from trustme:
no TLS below 1.2 (asked for by a client that really offers TLS 1.1), and basic
credentials, which do travel to the server over TLS, kept out of every log line."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme

from gateway.cli import _tls_context
from gateway.config import load_config
from tests.conftest import write_config
from tests.support import free_port, start_gateway
from tests.test_auth import basic, htpasswd

URL = "/users/sip:alice@example.com/tbook.xml"


@dataclass
class TlsGateway:
    process: subprocess.Popen[bytes]
    config: Path
    log: Path
    ca: trustme.CA
    plain: int
    secure: int

    def trusting(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


StartTls = Callable[..., Awaitable[TlsGateway]]


def write_cert(tmp_path: Path, ca: trustme.CA) -> trustme.LeafCert:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(tmp_path / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    return cert


@pytest.fixture
async def tls_gateway(tmp_path: Path, contacts_dir: Path) -> AsyncIterator[StartTls]:
    """Start `xcap-gateway serve` with a plain and a TLS listener, basic auth from an
    htpasswd file (alice, bob) and the demo cards; `extra` is appended TOML."""
    started: list[subprocess.Popen[bytes]] = []

    async def start(extra: str = "", users: Path | None = None) -> TlsGateway:
        ca = trustme.CA()
        write_cert(tmp_path, ca)
        users = users or htpasswd(tmp_path / "users.htpasswd")
        plain, secure = free_port(), free_port()
        config = write_config(
            tmp_path,
            f"""
[server]
listen = "127.0.0.1:{plain}"
tls_listen = "127.0.0.1:{secure}"
tls_cert = "cert.pem"
tls_key = "key.pem"
[auth]
mode = "basic"
users_file = "{users}"
[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
{extra}
""",
        )
        log = tmp_path / "serve.log"
        process = start_gateway(config, log)
        started.append(process)
        gateway = TlsGateway(process, config, log, ca, plain, secure)
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(
                        f"https://127.0.0.1:{secure}/readyz", ssl=gateway.trusting()
                    ) as response:
                        if response.status == 200:
                            return gateway
                except aiohttp.ClientError:
                    pass
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
        raise AssertionError("the gateway did not get ready:\n" + log.read_text())

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


async def test_https_and_http_side_by_side(tls_gateway: StartTls) -> None:
    gateway = await tls_gateway("")
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"https://127.0.0.1:{gateway.secure}{URL}",
            ssl=gateway.trusting(),
            headers=basic("alice", "alice-pw"),
        ) as response:
            assert response.status == 200
        # The same credentials over the plain listener are refused: they would travel in clear.
        async with session.get(
            f"http://127.0.0.1:{gateway.plain}{URL}", headers=basic("alice", "alice-pw")
        ) as response:
            assert response.status == 403
        # A client that does not trust the CA is refused by its own TLS check.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(f"https://127.0.0.1:{gateway.secure}/healthz"):
                pass


def tls_1_1_client(ca: trustme.CA) -> ssl.SSLContext:
    """A client that offers TLS 1.1 and nothing else. OpenSSL 3 refuses 1.1 at its default
    security level on its own side, so the level is lowered: any refusal is the server's."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # asking for TLS 1.1 on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


async def handshake(port: int, context: ssl.SSLContext) -> str | None:
    """The TLS version agreed with 127.0.0.1:port, or None when the handshake fails."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), timeout=20
        )
    except (ssl.SSLError, ConnectionError):
        return None
    version = writer.get_extra_info("ssl_object").version()
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return str(version)


async def test_tls_1_1_is_refused_by_the_server(tls_gateway: StartTls, tmp_path: Path) -> None:
    gateway = await tls_gateway("")
    client = tls_1_1_client(gateway.ca)
    # The control: this client does get TLS 1.1 from a server that allows it.
    lenient = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lenient.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    lenient.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lenient.minimum_version = ssl.TLSVersion.TLSv1_1

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    control = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=lenient)
    try:
        assert await handshake(control.sockets[0].getsockname()[1], client) == "TLSv1.1"
    finally:
        control.close()
        await control.wait_closed()
    assert await handshake(gateway.secure, client) is None, "the gateway accepted TLS 1.1"
    modern = gateway.trusting()
    assert await handshake(gateway.secure, modern) in ("TLSv1.2", "TLSv1.3")
    # And the server's own context says so, whatever the local OpenSSL's default level.
    context = _tls_context(load_config(gateway.config))
    assert context is not None and context.minimum_version >= ssl.TLSVersion.TLSv1_2


RIGHT = "Corr3ct-H0rse-Battery"
WRONG = "S3cret-Guess-4711"
STRANGER = "Str4nger-Passw0rd"


async def test_basic_credentials_over_tls_never_reach_a_log(
    tls_gateway: StartTls, tmp_path: Path
) -> None:
    """Under basic the password does arrive at the server (unlike digest): right, wrong,
    for an unknown user, in a request that is refused later, at the most verbose level."""
    users = tmp_path / "users.htpasswd"
    hashed = bcrypt.hashpw(RIGHT.encode(), bcrypt.gensalt(rounds=4)).decode()
    users.write_text(f"alice:{hashed}\n")
    gateway = await tls_gateway('[logging]\nlevel = "DEBUG"\n', users)
    base = f"https://127.0.0.1:{gateway.secure}"
    trusted = gateway.trusting()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}{URL}", ssl=trusted, headers=basic("alice", RIGHT)) as r:
            assert r.status == 200
            body = await r.read()
        attempts = [
            ("GET", URL, basic("alice", WRONG), 401),
            ("GET", URL, basic("nobody", STRANGER), 401),
            ("GET", "/users/sip:bob@example.com/tbook.xml", basic("alice", RIGHT), 403),
            ("PUT", URL, basic("alice", RIGHT), 200),
            ("GET", URL, {"Authorization": f"Basic {RIGHT}"}, 401),  # not even base64
        ]
        for method, path, headers, status in attempts:
            async with session.request(
                method,
                f"{base}{path}",
                ssl=trusted,
                headers=headers,
                data=body if method == "PUT" else None,
            ) as response:
                assert (method, path, response.status) == (method, path, status)
        # Over plain HTTP the server refuses, after the password already came in clear.
        async with session.get(
            f"http://127.0.0.1:{gateway.plain}{URL}", headers=basic("alice", RIGHT)
        ) as response:
            assert response.status == 403
    gateway.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(gateway.process.wait, 30) == 0
    log = gateway.log.read_text()
    assert "event=auth_failed" in log and "level=DEBUG" in log  # the log did see all this
    secrets = [RIGHT, WRONG, STRANGER]
    secrets += [
        base64.b64encode(f"{u}:{p}".encode()).decode()
        for u, p in (("alice", RIGHT), ("alice", WRONG), ("nobody", STRANGER))
    ]
    for written in [gateway.log, *sorted((tmp_path / "var").rglob("*"))]:
        if written.is_file():
            data = written.read_bytes()
            leaked = [s for s in secrets if s.encode() in data]
            assert not leaked, f"{written} holds {leaked}"
