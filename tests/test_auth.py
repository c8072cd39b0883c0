"""Authentication and authorization with real clients: digest (MD5 and SHA-256, stale
nonces, replays) from aiohttp and curl, basic from htpasswd (bcrypt, SHA) and by an LDAP
bind, owner-only access, admins, rate limiting, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.auth.digest import Digest, DigestFailed
from gateway.config import Config
from tests.conftest import ConfigFactory
from tests.ldap.server import PEOPLE, READER_DN, SERVICE_PASSWORD, Slapd

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
ALICE_URL = "/users/sip:alice@example.com/tbook.xml"
BOB_URL = "/users/sip:bob@example.com/tbook.xml"


def htdigest(path: Path, realm: str = "xcap", **users: str) -> Path:
    lines = []
    for user, password in users.items():
        text = f"{user}:{realm}:{password}".encode()
        lines += [
            f"{user}:{realm}:{hashlib.md5(text).hexdigest()}",
            f"{user}:{realm}:{hashlib.sha256(text).hexdigest()}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def digest_config(make_config: ConfigFactory, tmp_path: Path, extra: str = "") -> Config:
    htdigest(tmp_path / "users.htdigest", alice="alice-pw", bob="bob-pw", admin="admin-pw")
    return make_config(
        extra=f'[auth]\nmode = "digest"\nusers_file = "{tmp_path}/users.htdigest"\n'
        f'admins = ["admin"]\n{extra}'
    )


async def session_get(
    client: Client, path: str, user: str, password: str
) -> aiohttp.ClientResponse:
    url = str(client.make_url(path))
    async with (
        aiohttp.ClientSession(
            middlewares=(aiohttp.DigestAuthMiddleware(user, password),)
        ) as session,
        session.get(url) as response,
    ):
        await response.read()
        return response


async def test_digest_with_aiohttps_client(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(digest_config(make_config, tmp_path)))
    challenge = await client.get(ALICE_URL)
    assert challenge.status == 401
    offered = challenge.headers.getall("WWW-Authenticate")
    assert [h.split("algorithm=")[1].split(",")[0] for h in offered] == ["SHA-256", "MD5"]
    assert all('qop="auth"' in h and 'realm="xcap"' in h for h in offered)
    assert (await session_get(client, ALICE_URL, "alice", "alice-pw")).status == 200
    assert (await session_get(client, ALICE_URL, "alice", "wrong")).status == 401
    # Owner-only: alice may not read bob's document; an admin may.
    assert (await session_get(client, BOB_URL, "alice", "alice-pw")).status == 403
    assert (await session_get(client, BOB_URL, "admin", "admin-pw")).status == 200
    assert (await client.get("/healthz")).status == 200  # operations stay open


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_digest_with_curl(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(digest_config(make_config, tmp_path)))
    url = str(client.make_url(ALICE_URL))

    def curl(user: str) -> str:
        result = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--digest", "-u", user, url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.stdout

    assert await asyncio.to_thread(curl, "alice:alice-pw") == "200"
    assert await asyncio.to_thread(curl, "alice:nope") == "401"


def answer(
    challenge: str, user: str, password: str, method: str, uri: str, nc: str = "00000001"
) -> str:
    params = dict(part.strip().split("=", 1) for part in challenge[len("Digest ") :].split(", "))
    nonce, realm = params["nonce"].strip('"'), params["realm"].strip('"')
    algorithm = params["algorithm"]
    h = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5
    ha1 = h(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = h(f"{method}:{uri}".encode()).hexdigest()
    response = h(f"{ha1}:{nonce}:{nc}:abc:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'algorithm={algorithm}, response="{response}", qop=auth, nc={nc}, cnonce="abc", '
        f"opaque={params['opaque']}"
    )


async def test_a_replayed_nonce_count_is_refused_and_an_expired_nonce_is_stale(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(
        create_app(digest_config(make_config, tmp_path, 'nonce_lifetime = "1s"'))
    )
    challenge = (await client.get(ALICE_URL)).headers.getall("WWW-Authenticate")[1]  # MD5
    header = answer(challenge, "alice", "alice-pw", "GET", ALICE_URL)
    assert (await client.get(ALICE_URL, headers={"Authorization": header})).status == 200
    assert (await client.get(ALICE_URL, headers={"Authorization": header})).status == 401  # replay
    following = answer(challenge, "alice", "alice-pw", "GET", ALICE_URL, nc="00000002")
    assert (await client.get(ALICE_URL, headers={"Authorization": following})).status == 200
    # The nonce keeps working, each use with the next count, until its second is up.
    deadline = time.monotonic() + 10
    for count in range(3, 1000):
        late = answer(challenge, "alice", "alice-pw", "GET", ALICE_URL, nc=f"{count:08x}")
        response = await client.get(ALICE_URL, headers={"Authorization": late})
        if response.status != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert response.status == 401 and "stale=true" in response.headers["WWW-Authenticate"]


def test_forged_nonces_are_refused() -> None:
    digest = Digest(60)
    nonce = digest.nonce("r")
    forged = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")
    header = f'username="a", realm="r", nonce="{forged}", uri="/", response="x", qop=auth, nc=1, cnonce="c"'
    with pytest.raises(DigestFailed, match="forged"):
        digest.verify(header, "GET", "/", "r", lambda *_: "0" * 32)


async def status_from(
    client: Client, address: str, user: str, password: str, path: str = ALICE_URL
) -> int:
    """The status of a digest GET made from the local address `address` (any of 127/8)."""
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0)),
            middlewares=(aiohttp.DigestAuthMiddleware(user, password),),
        ) as session,
        session.get(str(client.make_url(path))) as response,
    ):
        await response.read()
        return response.status


async def test_failures_from_one_address_block_that_address(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(
        create_app(digest_config(make_config, tmp_path, "max_failures_per_address = 3"))
    )
    # One failure per user name: no user reaches the limit, the address does.
    for user in ("alice", "bob", "nobody"):
        assert await status_from(client, "127.0.0.2", user, "guess") == 401
    # Even the right password waits there; from another address it gets in.
    blocked = await client.get(ALICE_URL)
    assert blocked.status == 401  # the test client's own 127.0.0.1 is not blocked
    assert await status_from(client, "127.0.0.2", "bob", "bob-pw", BOB_URL) == 429
    assert await status_from(client, "127.0.0.3", "bob", "bob-pw", BOB_URL) == 200


async def test_failures_for_one_user_from_many_addresses_block_that_user(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """A guesser spreading over addresses: each address stays under the limit, the user
    does not, and then not even the right password gets in until the window is over."""
    client = await aiohttp_client(
        create_app(digest_config(make_config, tmp_path, "max_failures_per_user = 3"))
    )
    for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        assert await status_from(client, address, "alice", "guess") == 401
    # The next address is not blocked: bob gets in from it...
    assert await status_from(client, "127.0.0.5", "bob", "bob-pw", BOB_URL) == 200
    # ...but alice waits there, guessing or not.
    assert await status_from(client, "127.0.0.5", "alice", "guess-4") == 429
    assert await status_from(client, "127.0.0.5", "alice", "alice-pw") == 429


def htpasswd(path: Path) -> Path:
    hashed = (
        bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)
    )
    sha = base64.b64encode(hashlib.sha1(b"bob-pw").digest()).decode()
    path.write_text(f"alice:{hashed}\nbob:{{SHA}}{sha}\n")
    return path


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


async def test_basic_from_htpasswd_with_bcrypt_and_sha(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    users = htpasswd(tmp_path / "users.htpasswd")
    config = make_config(
        extra=f'[auth]\nmode = "basic"\nusers_file = "{users}"\nallow_insecure_basic = true\n'
        'match = "xui"\nmax_failures = 1000\n'  # the wait below fails until the file is read
    )
    client = await aiohttp_client(create_app(config))
    assert (
        (await client.get(ALICE_URL)).headers["WWW-Authenticate"].startswith('Basic realm="xcap"')
    )
    assert (
        await client.get(ALICE_URL, headers=basic("alice@example.com", "alice-pw"))
    ).status == 401
    users.write_text(
        users.read_text()
        .replace("alice:", "alice@example.com:")
        .replace("bob:", "bob@example.com:")
    )
    # The user file is looked at again every 2 s: alice gets in once it has been.
    for _ in range(100):
        response = await client.get(ALICE_URL, headers=basic("alice@example.com", "alice-pw"))
        if response.status != 401:
            break
        await asyncio.sleep(0.1)
    assert response.status == 200
    assert (await client.get(BOB_URL, headers=basic("bob@example.com", "bob-pw"))).status == 200
    assert (await client.get(BOB_URL, headers=basic("alice@example.com", "alice-pw"))).status == 403


async def test_basic_needs_https_unless_allowed(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    users = htpasswd(tmp_path / "users.htpasswd")
    config = make_config(
        extra=f'[auth]\nmode = "basic"\nusers_file = "{users}"\nallow_insecure_basic = true\n'
    )
    strict = config.model_copy(
        update={"auth": config.auth.model_copy(update={"allow_insecure_basic": False})}
    )
    client = await aiohttp_client(create_app(strict))
    assert (await client.get(ALICE_URL, headers=basic("alice", "alice-pw"))).status == 403


async def test_basic_by_an_ldap_bind(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, make_slapd: Callable[..., Slapd]
) -> None:
    server = make_slapd(
        people=2,
        extra_ldif=f"""dn: uid=alice,{PEOPLE}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
userPassword: alice-ldap-pw

""",
    )
    extra = (
        f'[sources.people]\ntype = "ldap"\nurl = "{server.url}"\nbind_dn = "{READER_DN}"\n'
        f'password = "{SERVICE_PASSWORD}"\nbase_dn = "{PEOPLE}"\n'
        '[auth]\nmode = "basic"\nldap_source = "people"\nallow_insecure_basic = true\n'
    )
    client = await aiohttp_client(create_app(make_config(extra=extra)))
    assert (await client.get(ALICE_URL, headers=basic("alice", "alice-ldap-pw"))).status == 200
    assert (await client.get(ALICE_URL, headers=basic("alice", "wrong"))).status == 401
    assert (
        await client.get(ALICE_URL, headers=basic("alice", ""))
    ).status == 401  # no anonymous bind
    assert (await client.get(ALICE_URL, headers=basic("*", "alice-ldap-pw"))).status == 401


async def test_global_documents_are_read_only(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    # Passwords kept out of logs: tests/test_tls.py, under basic, where they are sent.
    client = await aiohttp_client(create_app(digest_config(make_config, tmp_path)))
    assert (await session_get(client, "/xcap-caps/global/index", "alice", "alice-pw")).status == 200
    url = str(client.make_url("/xcap-caps/global/index"))
    async with (
        aiohttp.ClientSession(
            middlewares=(aiohttp.DigestAuthMiddleware("alice", "alice-pw"),)
        ) as session,
        session.put(url, data=b"x") as response,
    ):
        assert response.status == 403
