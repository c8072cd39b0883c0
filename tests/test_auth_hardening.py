"""Issue 13, Hardening II, authentication items, each as a pen-tester found it: the
limiter race and the scopes of a block, basic-auth timing, long passwords, the digest edge
cases (shared nonce counts, realm binding, nc syntax, opaque, amortized pruning, node
selectors in `uri`, directory outages), basic challenges on plain HTTP, htpasswd hashes,
and hostile credentials. Everything goes over a real socket: aiohttp's client, or raw
bytes where a client would refuse to send them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from passlib.hash import apr_md5_crypt, sha256_crypt, sha512_crypt

from gateway.app import create_app
from gateway.auth import limits, users
from gateway.auth.digest import Digest, DigestFailed
from gateway.config import Config
from tests.conftest import ConfigFactory
from tests.support import free_port
from tests.test_auth import ALICE_URL, BOB_URL, basic, digest_config, htdigest, status_from

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


def basic_config(
    make_config: ConfigFactory, users: Path, extra: str = "", secure_only: bool = False
) -> Config:
    config = make_config(
        extra=f'[auth]\nmode = "basic"\nusers_file = "{users}"\nallow_insecure_basic = true\n'
        f"{extra}"
    )
    if secure_only:  # what `serve` refuses to start with, but a TLS listener beside it allows
        auth = config.auth.model_copy(update={"allow_insecure_basic": False})
        config = config.model_copy(update={"auth": auth})
    return config


def bcrypt_line(user: str, password: bytes, rounds: int = 4) -> str:
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=rounds)).decode()
    return f"{user}:{hashed.replace('$2b$', '$2y$', 1)}"


def challenge_params(challenge: str) -> dict[str, str]:
    params = dict(part.strip().split("=", 1) for part in challenge[len("Digest ") :].split(", "))
    return {k: v.strip('"') for k, v in params.items()}


def digest_header(
    challenge: str,
    user: str,
    password: str,
    uri: str,
    nc: str = "00000001",
    method: str = "GET",
    realm: str | None = None,
    opaque: str | None = "<challenge>",
) -> str:
    """An MD5 answer to `challenge` (a WWW-Authenticate value), computed over `uri` as given
    (quotes in it are escaped in the header only)."""
    params = challenge_params(challenge)
    realm = realm or params["realm"]
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{params['nonce']}:{nc}:c0ffee:auth:{ha2}".encode()).hexdigest()
    quoted_uri = uri.replace("\\", "\\\\").replace('"', '\\"')
    header = (
        f'Digest username="{user}", realm="{realm}", nonce="{params["nonce"]}", '
        f'uri="{quoted_uri}", algorithm=MD5, response="{response}", qop=auth, nc={nc}, '
        f'cnonce="c0ffee"'
    )
    if opaque == "<challenge>":
        opaque = params["opaque"]
    return header + (f', opaque="{opaque}"' if opaque is not None else "")


async def md5_challenge(client: Client, url: str = ALICE_URL) -> str:
    response = await client.get(url)
    assert response.status == 401
    return next(h for h in response.headers.getall("WWW-Authenticate") if "MD5" in h)


async def raw_request(client: Client, head: bytes) -> tuple[int, bytes]:
    """Send `head` (a request without body, Connection: close added) as bytes; the status and
    the whole answer."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(head.rstrip(b"\r\n") + b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1]), answer


def raw_get(target: str, authorization: bytes | None = None, method: str = "GET") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\n".encode()
    if authorization is not None:
        head += b"Authorization: " + authorization + b"\r\n"
    return head


# --- 5. the limiter race ------------------------------------------------------------------


async def test_concurrent_basic_logins_cannot_outrun_the_failure_limit(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """300 logins at once, the right password at attempt 250: attempts in flight count
    toward the limit, so at most that many passwords are ever checked and the right one
    waits like the rest. Once against the address limit (made-up names), once against the
    limit of one address and user name."""
    users = tmp_path / "users.htpasswd"
    users.write_text(bcrypt_line("alice", b"alice-pw", rounds=12) + "\n")
    config = basic_config(make_config, users, "max_failures_per_address = 10")
    client = await aiohttp_client(create_app(config))
    url = str(client.make_url(ALICE_URL))

    async def storm(address: str, name: Callable[[int], str]) -> list[int]:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, local_addr=(address, 0))
        ) as session:

            async def attempt(number: int) -> int:
                login = ("alice", "alice-pw") if number == 250 else (name(number), "guess")
                async with session.get(url, headers=basic(*login)) as response:
                    await response.read()
                    if response.status == 429:
                        assert int(response.headers["Retry-After"]) > 0
                    return response.status

            return await asyncio.gather(*(attempt(n) for n in range(300)))

    for address, name in (("127.0.0.2", lambda n: f"name-{n}"), ("127.0.0.3", lambda n: "alice")):
        statuses = await storm(address, name)
        assert set(statuses) <= {401, 429}, (address, statuses)
        assert statuses.count(401) <= 10, address  # only that many were checked
        assert statuses[250] == 429, address


# --- 6. block scopes --------------------------------------------------------------------


async def test_made_up_names_from_one_address_do_not_lock_it_out(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """One NAT, ten made-up names, one failure each: under max_failures_per_address (200)
    the address keeps working; only the pair that reached max_failures waits."""
    client = await aiohttp_client(
        create_app(digest_config(make_config, tmp_path, "max_failures = 3"))
    )
    for number in range(10):
        assert await status_from(client, "127.0.0.2", f"made-up-{number}", "guess") == 401
    assert await status_from(client, "127.0.0.2", "bob", "bob-pw", BOB_URL) == 200
    for _ in range(3):
        assert await status_from(client, "127.0.0.2", "alice", "guess") == 401
    # alice from there waits, the right password included; bob there and alice elsewhere not.
    assert await status_from(client, "127.0.0.2", "alice", "alice-pw") == 429
    assert await status_from(client, "127.0.0.2", "bob", "bob-pw", BOB_URL) == 200
    assert await status_from(client, "127.0.0.3", "alice", "alice-pw") == 200


async def test_a_user_name_guessed_from_many_addresses_is_blocked_everywhere(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(
        create_app(digest_config(make_config, tmp_path, "max_failures_per_user = 4"))
    )
    for number in range(2, 6):
        assert await status_from(client, f"127.0.0.{number}", "alice", "guess") == 401
    assert await status_from(client, "127.0.0.9", "alice", "alice-pw") == 429
    assert await status_from(client, "127.0.0.9", "bob", "bob-pw", BOB_URL) == 200


async def test_many_names_from_one_address_block_the_address_at_its_own_limit(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(
        create_app(digest_config(make_config, tmp_path, "max_failures_per_address = 5"))
    )
    for number in range(5):
        assert await status_from(client, "127.0.0.2", f"name-{number}", "guess") == 401
    assert await status_from(client, "127.0.0.2", "bob", "bob-pw", BOB_URL) == 429
    assert await status_from(client, "127.0.0.3", "bob", "bob-pw", BOB_URL) == 200


async def test_a_request_without_credentials_is_a_challenge_not_a_failure(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(
        create_app(
            digest_config(make_config, tmp_path, "max_failures = 1\nmax_failures_per_address = 1")
        )
    )
    for _ in range(5):
        response = await client.get(ALICE_URL)
        assert response.status == 401 and response.headers.getall("WWW-Authenticate")
    assert await status_from(client, "127.0.0.1", "alice", "alice-pw") == 200


# --- 7. basic-auth timing -----------------------------------------------------------------


async def test_basic_answers_unknown_users_as_slowly_as_known_ones(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    users = tmp_path / "users.htpasswd"
    users.write_text(bcrypt_line("alice", b"alice-pw", rounds=10) + "\n")
    client = await aiohttp_client(create_app(basic_config(make_config, users)))

    async def seconds(user: str) -> float:
        started = time.perf_counter()
        response = await client.get(ALICE_URL, headers=basic(user, "guess"))
        assert response.status == 401
        return time.perf_counter() - started

    known, unknown = [], []
    for _ in range(5):  # interleaved, so a slow moment hits both
        known.append(await seconds("alice"))
        unknown.append(await seconds("nobody"))
    assert statistics.median(unknown) >= statistics.median(known) / 5, (known, unknown)


# --- 8. passwords over 72 bytes -------------------------------------------------------------


async def test_passwords_over_72_bytes_are_truncated_like_apache_never_a_500(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    long_password = "p" * 72 + "-and-the-rest-apache-ignores"
    users = tmp_path / "users.htpasswd"
    # What `htpasswd -B` writes for it: bcrypt of the first 72 bytes.
    users.write_text(bcrypt_line("alice", long_password.encode()[:72]) + "\n")
    client = await aiohttp_client(create_app(basic_config(make_config, users)))
    assert (await client.get(ALICE_URL, headers=basic("alice", long_password))).status == 200
    assert (await client.get(ALICE_URL, headers=basic("nobody", "q" * 100))).status == 401
    for _ in range(10):  # counted like any wrong password
        assert (await client.get(ALICE_URL, headers=basic("alice", "q" * 100))).status == 401
    assert (await client.get(ALICE_URL, headers=basic("alice", long_password))).status == 429


# --- 9. digest edge cases -----------------------------------------------------------------


async def test_nonce_counts_are_kept_per_user(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """bob answering alice's nonce with nc=ff must not make alice's next request a replay."""
    client = await aiohttp_client(create_app(digest_config(make_config, tmp_path)))
    challenge = await md5_challenge(client)
    bob = digest_header(challenge, "bob", "bob-pw", BOB_URL, nc="000000ff")
    assert (await client.get(BOB_URL, headers={"Authorization": bob})).status == 200
    alice = digest_header(challenge, "alice", "alice-pw", ALICE_URL)
    assert (await client.get(ALICE_URL, headers={"Authorization": alice})).status == 200
    # Each still refuses its own replays.
    assert (await client.get(ALICE_URL, headers={"Authorization": alice})).status == 401
    assert (await client.get(BOB_URL, headers={"Authorization": bob})).status == 401


async def test_a_nonce_is_bound_to_its_realm(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    users = tmp_path / "users.htdigest"
    one = htdigest(tmp_path / "a", "Example", alice="alice-pw").read_text()
    two = htdigest(tmp_path / "b", "Other", alice="alice-pw").read_text()
    users.write_text(one + two)
    config = make_config(
        extra=f'[auth]\nmode = "digest"\nusers_file = "{users}"\n'
        'realms = { "example.com" = "Example", "example.org" = "Other" }\n'
    )
    client = await aiohttp_client(create_app(config))
    other_url = "/users/sip:alice@example.org/tbook.xml"
    example_nonce = await md5_challenge(client)
    assert challenge_params(example_nonce)["realm"] == "Example"
    crossed = digest_header(example_nonce, "alice", "alice-pw", other_url, realm="Other")
    response = await client.get(other_url, headers={"Authorization": crossed})
    assert response.status == 401
    fresh = digest_header(await md5_challenge(client, other_url), "alice", "alice-pw", other_url)
    assert (await client.get(other_url, headers={"Authorization": fresh})).status == 200


@pytest.mark.parametrize("nc", ["0x000003", "4_0", "3", "000000003", "+0000003", "0000003g"])
async def test_a_nonce_count_is_exactly_eight_hex_digits(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path, nc: str
) -> None:
    client = await aiohttp_client(create_app(digest_config(make_config, tmp_path)))
    challenge = await md5_challenge(client)
    # The response is right for that nc as sent: only its syntax is wrong.
    odd = digest_header(challenge, "alice", "alice-pw", ALICE_URL, nc=nc)
    assert (await client.get(ALICE_URL, headers={"Authorization": odd})).status == 401
    good = digest_header(challenge, "alice", "alice-pw", ALICE_URL, nc="00000004")
    assert (await client.get(ALICE_URL, headers={"Authorization": good})).status == 200


async def test_opaque_is_required_and_checked(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(digest_config(make_config, tmp_path)))
    challenge = await md5_challenge(client)
    for opaque, expected in ((None, 401), ("0123456789abcdef", 401), ("<challenge>", 200)):
        header = digest_header(challenge, "alice", "alice-pw", ALICE_URL, opaque=opaque)
        assert (await client.get(ALICE_URL, headers={"Authorization": header})).status == expected


def test_nonce_pruning_is_amortized() -> None:
    """Past 100,000 live nonces a request must not rebuild the table: recording a use with
    the table full costs about what it costs with it empty. And no live count is lost."""
    digest = Digest(3600)
    ha1 = hashlib.md5(b"alice:r:pw").hexdigest()
    opaque = challenge_params(digest.challenges("r", ["MD5"])[0])["opaque"]

    def use(nonce: str, nc: str = "00000001") -> None:
        ha2 = hashlib.md5(b"GET:/").hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{nc}:c:auth:{ha2}".encode()).hexdigest()
        header = (
            f'username="alice", realm="r", nonce="{nonce}", uri="/", response="{response}", '
            f'qop=auth, nc={nc}, cnonce="c", opaque="{opaque}"'
        )
        digest.verify(header, "GET", "/", "r", lambda *_: ha1)

    def timed(count: int) -> float:
        nonces = [digest.nonce("r") for _ in range(count)]
        started = time.perf_counter()
        for nonce in nonces:
            use(nonce)
        return time.perf_counter() - started

    first = digest.nonce("r")
    use(first)
    empty = timed(50)
    for _ in range(100_000):
        use(digest.nonce("r"))
    full = timed(50)
    assert full < 20 * empty + 0.05, (empty, full)
    recent = digest.nonce("r")
    use(recent)
    with pytest.raises(DigestFailed, match="replay"):
        use(recent)
    # The oldest count may be forgotten past the table's size, but then its nonce is stale:
    # a replay is refused either way.
    with pytest.raises(DigestFailed, match="replay|expired"):
        use(first)


async def test_a_node_selector_left_unescaped_in_uri_is_accepted(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """python3-xcaplib sends `"`, `[` and `]` percent-encoded in the request line but as they
    are in the digest `uri` (with `"` escaped as `\\"` in the header)."""
    client = await aiohttp_client(create_app(digest_config(make_config, tmp_path)))
    challenge = await md5_challenge(client)
    selector = '/~~/resource-lists/list[@name="x"]'
    target = ALICE_URL + selector.replace("[", "%5B").replace("]", "%5D").replace('"', "%22")
    header = digest_header(challenge, "alice", "alice-pw", ALICE_URL + selector)
    status, answer = await raw_request(client, raw_get(target, header.encode()))
    assert status not in (400, 401, 500), answer
    # Encoded the same way in both, and lower-case escapes, work too.
    lower = target.replace("%5B", "%5b")
    header = digest_header(challenge, "alice", "alice-pw", lower, nc="00000002")
    status, answer = await raw_request(client, raw_get(target, header.encode()))
    assert status not in (400, 401, 500), answer


async def test_a_digest_uri_for_another_resource_is_a_bad_request_not_a_failure(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(digest_config(make_config, tmp_path)))
    challenge = await md5_challenge(client)
    others = [
        BOB_URL,
        ALICE_URL + "/~~/resource-lists",
        ALICE_URL.replace("tbook", "%74book"),  # an escape where the target has none
        ALICE_URL.replace("/tbook", "%2Ftbook"),
    ]
    for number in range(15):  # past max_failures: none of them counted
        uri = others[number % len(others)]
        header = digest_header(challenge, "alice", "alice-pw", uri, nc=f"{number + 1:08x}")
        response = await client.get(ALICE_URL, headers={"Authorization": header})
        assert response.status == 400
        assert "WWW-Authenticate" not in response.headers
    header = digest_header(challenge, "alice", "alice-pw", ALICE_URL, nc="00000100")
    assert (await client.get(ALICE_URL, headers={"Authorization": header})).status == 200


async def test_a_directory_outage_is_503_not_a_wrong_password(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    extra = (
        f'[sources.people]\ntype = "ldap"\nurl = "ldap://127.0.0.1:{free_port()}"\n'
        'bind_dn = "cn=reader,dc=example,dc=com"\npassword = "x"\n'
        'base_dn = "dc=example,dc=com"\ntimeout = "2s"\n'
        '[auth]\nmode = "basic"\nldap_source = "people"\nallow_insecure_basic = true\n'
    )
    client = await aiohttp_client(create_app(make_config(extra=extra)))
    for _ in range(12):  # past max_failures: an outage is not counted
        response = await client.get(ALICE_URL, headers=basic("alice", "alice-pw"))
        assert response.status == 503
        assert int(response.headers["Retry-After"]) > 0
        assert "WWW-Authenticate" not in response.headers


# --- 10. no basic challenge on plain HTTP ---------------------------------------------------


async def test_no_basic_challenge_on_a_plain_listener(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    users = tmp_path / "users.htpasswd"
    users.write_text(bcrypt_line("alice", b"alice-pw") + "\n")
    client = await aiohttp_client(create_app(basic_config(make_config, users, secure_only=True)))
    for headers in ({}, basic("alice", "alice-pw"), basic("alice", "wrong")):
        response = await client.get(ALICE_URL, headers=headers)
        assert response.status == 403
        assert "WWW-Authenticate" not in response.headers
        assert "HTTPS" in await response.text()
    assert (await client.get("/healthz")).status == 200


# --- 14. htpasswd hashes ----------------------------------------------------------------


async def test_htpasswd_hashes_apache_writes(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    sha = base64.b64encode(hashlib.sha1(b"sha-pw").digest()).decode()
    bcrypt_2a = bcrypt.hashpw(b"bc2a-pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2a$", 1)
    users = tmp_path / "users.htpasswd"
    users.write_text(
        "\n".join(
            [
                f"apr:{apr_md5_crypt.hash('apr-pw')}",
                f"sha:{{SHA}}{sha}",
                bcrypt_line("bc2y", b"bc2y-pw"),
                f"bc2a:{bcrypt_2a}",
                f"sha256:{sha256_crypt.using(rounds=5000).hash('sha256-pw')}",
                f"sha512:{sha512_crypt.using(rounds=5000).hash('sha512-pw')}",
                "broken:$2y$10$not-a-bcrypt-hash",
                "brokenapr:$apr1$zz",
                "odd:neither-hash-nor-anything",
                "",
            ]
        )
    )
    client = await aiohttp_client(create_app(basic_config(make_config, users)))
    for user in ("apr", "sha", "bc2y", "bc2a", "sha256", "sha512"):
        url = f"/users/sip:{user}@example.com/tbook.xml"
        assert (await client.get(url, headers=basic(user, f"{user}-pw"))).status == 200, user
        assert (await client.get(url, headers=basic(user, "wrong"))).status == 401, user
    for user in ("broken", "brokenapr", "odd"):
        url = f"/users/sip:{user}@example.com/tbook.xml"
        statuses = [
            (await client.get(url, headers=basic(user, "anything"))).status for _ in range(11)
        ]
        assert statuses == [401] * 10 + [429], (user, statuses)  # counted, never a 500


# --- hostile credentials ------------------------------------------------------------------


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


async def test_hostile_basic_credentials_get_a_clean_401(
    aiohttp_client: ClientFactory,
    make_config: ConfigFactory,
    tmp_path: Path,
    contacts_dir: Path,
) -> None:
    users = tmp_path / "users.htpasswd"
    users.write_text(bcrypt_line("alice", b"alice-pw") + "\n")
    limits = "max_failures = 1000\nmax_failures_per_user = 1000\nmax_failures_per_address = 1000"
    client = await aiohttp_client(create_app(basic_config(make_config, users, limits)))
    before = {p.name: p.read_bytes() for p in contacts_dir.iterdir()}
    hostile = [
        b"Basic " + b64(b"al\x00ice:alice-pw"),
        b"Basic " + b64(b"alice:alice-pw\x00"),
        b"Basic " + b64(b"alice\r\nevent=forged:x"),
        b"Basic " + b64(b"\x1b[31malice:x"),
        b"Basic " + b64(b"a" * 5000 + b":x"),
        b"Basic " + b64(b"\xff\xfe\xfd:\xc3\x28"),
        b"Basic " + b64(b"alice:\xff"),
        b"Basic " + b64(b"no-colon-at-all"),
        b"Basic " + b64(b":"),
        b"Basic !!!not base64!!!",
        b"Basic " + b64(b"alice:alice-pw")[:-2],
        b"Basic",
        b"Basic ",
        b"basic " + b64(b"alice:wrong"),
        b"Basic " + b64(b"alice:" + b"x" * 4000),
        b"Basic \xff\xfe",
    ]
    for method in ("GET", "PUT", "DELETE"):
        for authorization in hostile:
            status, answer = await raw_request(
                client, raw_get(ALICE_URL, authorization, method=method)
            )
            assert status in (400, 401), (authorization, answer)
    assert (await client.get(ALICE_URL, headers=basic("alice", "alice-pw"))).status == 200
    assert {p.name: p.read_bytes() for p in contacts_dir.iterdir()} == before


async def test_hostile_digest_credentials_get_a_clean_401_and_change_nothing(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    limits = "max_failures = 1000\nmax_failures_per_user = 1000\nmax_failures_per_address = 1000"
    client = await aiohttp_client(create_app(digest_config(make_config, tmp_path, limits)))
    challenge = await md5_challenge(client)
    good = digest_header(challenge, "alice", "alice-pw", ALICE_URL)
    assert (await client.get(ALICE_URL, headers={"Authorization": good})).status == 200
    nonce = challenge_params(challenge)["nonce"]
    right = digest_header(challenge, "alice", "alice-pw", ALICE_URL, nc="00000002")
    hostile = [
        right.replace('username="alice"', 'username="alice", username="bob"'),
        right.replace("qop=auth", "qop=auth, QOP=auth-int"),
        right + f', nonce="{nonce}"',
        right.replace("nc=00000002", "nc=" + "f" * 100),
        right.replace("nc=00000002", "nc=ffffffff").replace('response="', 'response="0'),
        right.replace(", qop=auth", ""),
        right.replace(', cnonce="c0ffee"', ""),
        right.replace('uri="', 'urx="'),
        right.replace("algorithm=MD5", "algorithm=MD4"),
        right.replace('realm="xcap"', 'realm="other"'),
        right.replace(nonce, nonce + "-x"),
        right.replace(nonce, "nan-00-" + "0" * 32),
        right.replace(nonce, "a-b"),
        right.replace(nonce, nonce[:-1] + "\u00e9"),
        right.replace('response="', 'response="\u00e9'),
        right.replace('username="alice"', 'username="' + "a" * 5000 + '"'),
        right.replace('username="alice"', 'username="al\\"ice"'),
        right.replace('username="alice"', 'username="alice\\'),
        'Digest username="alice',
        "Digest",
        "Digest ,,,,====",
        'Digest username="alice", realm="xcap", nonce="' + nonce + '"',
    ]
    for method in ("GET", "PUT"):
        for header in hostile:
            raw = header.encode("utf-8")
            status, answer = await raw_request(client, raw_get(ALICE_URL, raw, method=method))
            assert status in (400, 401), (header[:200], answer[:300])
    for raw in (b'Digest username="al\x01ice"', b'Digest username="\xff\xfe"', b"Digest \x00"):
        status, answer = await raw_request(client, raw_get(ALICE_URL, raw))
        assert status in (400, 401), (raw, answer[:300])
    # None of it moved alice's nonce count: her next request in sequence still works.
    assert (await client.get(ALICE_URL, headers={"Authorization": right})).status == 200


async def test_other_spellings_of_a_blocked_name_are_blocked_too(
    aiohttp_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """An LDAP directory takes `ALICE` and ` alice` for alice: so does the count, or each
    spelling would get its own allowance of guesses."""
    client = await aiohttp_client(
        create_app(digest_config(make_config, tmp_path, "max_failures_per_user = 4"))
    )
    for number in range(2, 6):
        assert await status_from(client, f"127.0.0.{number}", "alice", "guess") == 401
    for spelling in ("ALICE", "Alice ", " alice", "aLiCe"):
        assert await status_from(client, "127.0.0.9", spelling, "guess") == 429, spelling


def test_a_flood_of_made_up_names_does_not_lift_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Filling the table used to drop its oldest half, blocks included."""
    monkeypatch.setattr(limits, "MAX_KEYS", 60)
    monkeypatch.setattr(limits, "HARD_MAX_KEYS", 10_000)
    limiter = limits.FailureLimiter(300.0, 3, 10, 1000)

    async def fail(address: str, user: str) -> None:
        attempt = await limiter.begin(address, user)
        assert isinstance(attempt, limits.Attempt)
        attempt.failed()

    async def scenario() -> None:
        for _ in range(3):
            await fail("10.0.0.1", "alice")
        assert limiter.blocked("10.0.0.1", "alice")
        for number in range(2000):
            await fail(f"10.1.{number // 250}.{number % 250}", f"made-up-{number}")
        assert limiter.blocked("10.0.0.1", "alice"), "the flood lifted the block"
        assert len(limiter._records) < 2000 * 3  # the non-blocking records were swept

    asyncio.run(scenario())


def test_a_long_user_name_is_counted_under_a_bounded_key() -> None:
    long_a, long_b = "a" * 6000, "a" * 5999 + "b"
    assert len(limits.user_key(long_a)) <= limits.MAX_NAME
    assert limits.user_key(long_a) != limits.user_key(long_b)
    assert limits.user_key(" Alice ") == "alice"


def test_every_basic_check_costs_one_check_of_the_slowest_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of fast {SHA} users and a bcrypt admin: unknown users, SHA users and the
    admin all pay for one bcrypt check, so the time tells neither who exists nor who has
    the stronger hash."""
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"alice-pw").digest()).decode()
    admin = bcrypt_line("admin", b"admin-pw", rounds=5)
    path = tmp_path / "users.htpasswd"
    path.write_text(f"alice:{sha}\n{admin}\n")
    checked: list[str] = []
    real_verify = users._verify

    def counting(password: str, stored: str) -> bool:
        checked.append(stored[:4])
        return real_verify(password, stored)

    monkeypatch.setattr(users, "_verify", counting)
    users_file = users.UserFile(path)
    for login, password in (("alice", "alice-pw"), ("nobody", "x"), ("admin", "admin-pw")):
        checked.clear()
        users_file.check_password(login, password)
        assert "$2y$" in checked, (login, checked)
    assert users_file.check_password("alice", "alice-pw")
    assert users_file.check_password("admin", "admin-pw")


def test_a_byte_order_mark_and_an_empty_name_in_the_users_file(tmp_path: Path) -> None:
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
    path = tmp_path / "users.htpasswd"
    path.write_text(f"\ufeffalice:{sha}\n:{sha}\n", encoding="utf-8")
    users_file = users.UserFile(path)
    assert users_file.check_password("alice", "pw")
    assert not users_file.check_password("", "pw")
