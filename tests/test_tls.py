"""HTTPS natively, beside plain HTTP on its own listener, with a test CA from trustme."""

from __future__ import annotations

import asyncio
import signal
import ssl
import warnings
from pathlib import Path

import aiohttp
import trustme

from tests.conftest import write_config
from tests.support import free_port, start_gateway
from tests.test_auth import basic, htpasswd

URL = "/users/sip:alice@example.com/tbook.xml"


async def test_https_and_http_side_by_side(tmp_path: Path, contacts_dir: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(tmp_path / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    users = htpasswd(tmp_path / "users.htpasswd")
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
""",
    )
    process = start_gateway(config, tmp_path / "serve.log")
    try:
        trusted = ssl.create_default_context(cafile=None)
        ca.configure_trust(trusted)
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"https://127.0.0.1:{secure}/healthz", ssl=trusted) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            async with session.get(
                f"https://127.0.0.1:{secure}{URL}", ssl=trusted, headers=basic("alice", "alice-pw")
            ) as response:
                assert response.status == 200
            # The same credentials over the plain listener are refused: they would travel in clear.
            async with session.get(
                f"http://127.0.0.1:{plain}{URL}", headers=basic("alice", "alice-pw")
            ) as response:
                assert response.status == 403
            # No TLS below 1.2.
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ca.configure_trust(old)
            with warnings.catch_warnings():  # asking for TLS 1.1 on purpose
                warnings.simplefilter("ignore", DeprecationWarning)
                old.minimum_version = ssl.TLSVersion.TLSv1
                old.maximum_version = ssl.TLSVersion.TLSv1_1
            try:
                async with session.get(f"https://127.0.0.1:{secure}/healthz", ssl=old) as response:
                    raise AssertionError(f"TLS 1.1 was accepted ({response.status})")
            except aiohttp.ClientError:
                pass
            # A client that does not trust the CA is refused by its own TLS check.
            try:
                async with session.get(f"https://127.0.0.1:{secure}/healthz") as response:
                    raise AssertionError("an untrusted certificate was accepted")
            except aiohttp.ClientConnectorCertificateError:
                pass
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
