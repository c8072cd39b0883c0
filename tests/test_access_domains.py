"""The domain is normalized once, and an unauthenticated domain never chooses a book
(issue 12, items 14 and 15).

Over a real socket with digest clients (aiohttp's DigestAuthMiddleware), realms per
domain, and real per-user sources: a slapd whose per-user base DNs are case-insensitive,
as directories are, and a vcard-dir folder per domain and user.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config, load_config
from tests.conftest import write_config
from tests.ldap.server import CONTACTS, READER_DN, SERVICE_PASSWORD, Slapd

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
MakeSlapd = Callable[..., Slapd]
FRIENDS = {"a.com": "Aaron Friend", "b.com": "Berta Friend", "c.com": "Carla Friend"}


def htdigest(path: Path, *lines: tuple[str, str, str]) -> Path:
    """An htdigest file of (login, realm, password), with MD5 and SHA-256 lines."""
    text = ""
    for login, realm, password in lines:
        secret = f"{login}:{realm}:{password}".encode()
        text += f"{login}:{realm}:{hashlib.md5(secret).hexdigest()}\n"
        text += f"{login}:{realm}:{hashlib.sha256(secret).hexdigest()}\n"
    path.write_text(text)
    return path


def books_ldif() -> str:
    """ou=<domain> > ou=alice > one friend, for each domain: alice has a book in each."""
    ldif = ""
    for domain, friend in FRIENDS.items():
        ou = f"ou={domain},{CONTACTS}"
        given, surname = friend.split()
        ldif += f"dn: {ou}\nobjectClass: organizationalUnit\nou: {domain}\n\n"
        ldif += f"dn: ou=alice,{ou}\nobjectClass: organizationalUnit\nou: alice\n\n"
        ldif += (
            f"dn: cn={friend},ou=alice,{ou}\nobjectClass: inetOrgPerson\ncn: {friend}\n"
            f"displayName: {friend}\ngivenName: {given}\nsn: {surname}\n"
            "telephoneNumber: +49 30 1234567\n\n"
        )
    return ldif


def gateway_config(tmp_path: Path, source: str, auth: str, mode: str = "digest") -> Config:
    users = htdigest(
        tmp_path / "users.htdigest",
        ("alice", "a-realm", "a-pw"),
        ("alice", "b-realm", "b-pw"),
        ("alice@A.COM", "a-realm", "a-pw"),  # as an administrator may have typed it
    )
    text = f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"

[auth]
mode = "{mode}"
users_file = "{users}"
realm = "a-realm"
realms = {{ "b.com" = "b-realm" }}
{auth}

[sources.book]
{source}

[documents.tbook]
name = "tbook.xml"
sources = ["book"]
"""
    return load_config(write_config(tmp_path, text))


def ldap_source(server: Slapd) -> str:
    return f"""type = "ldap"
url = "{server.url}"
bind_dn = "{READER_DN}"
password = "{SERVICE_PASSWORD}"
base_dn = "ou={{user}},ou={{domain}},{CONTACTS}"
filter = "(objectClass=inetOrgPerson)"
"""


def vcard_source(tmp_path: Path) -> str:
    root = tmp_path / "upstream"
    for domain, friend in FRIENDS.items():
        folder = root / domain / "alice"
        folder.mkdir(parents=True)
        (folder / "friend.vcf").write_text(
            f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{domain}\r\nFN:{friend}\r\n"
            "TEL;TYPE=CELL:+49 171 1\r\nEND:VCARD\r\n"
        )
    return f'type = "vcard-dir"\npath = "{root}/{{domain}}/{{user}}"\n'


async def fetch(
    client: Client, path: str, login: str | None = None, password: str = ""
) -> tuple[int, str, list[str]]:
    """(status, body, WWW-Authenticate challenges) of a GET, as a digest client sees it."""
    middlewares = (aiohttp.DigestAuthMiddleware(login, password),) if login else ()
    async with (
        aiohttp.ClientSession(middlewares=middlewares) as session,
        session.get(str(client.make_url(path))) as response,
    ):
        return (
            response.status,
            await response.text(),
            response.headers.getall("WWW-Authenticate", []),
        )


def friends_in(body: str) -> set[str]:
    return {friend for friend in FRIENDS.values() if friend in body}


async def test_a_case_shifted_domain_has_its_own_realm_and_book(
    aiohttp_client: ClientFactory, make_slapd: MakeSlapd, tmp_path: Path
) -> None:
    """alice@B.COM. is alice@b.com: b.com's realm, so a.com's password does not open
    b.com's book (today it fell to the default realm, a.com's, and LDAP's case-insensitive
    DN `ou=B.COM` served b.com's book)."""
    server = make_slapd(extra_ldif=books_ldif())
    config = gateway_config(tmp_path, ldap_source(server), 'domains = ["a.com", "b.com"]')
    client = await aiohttp_client(create_app(config))
    for spelling in ("B.COM", "b.com.", "B.Com."):
        url = f"/users/sip:alice@{spelling}/tbook.xml"
        status, _, challenges = await fetch(client, url)
        assert status == 401 and all('realm="b-realm"' in c for c in challenges), spelling
        status, body, _ = await fetch(client, url, "alice", "a-pw")
        assert (status, friends_in(body)) == (401, set()), spelling
        status, body, _ = await fetch(client, url, "alice", "b-pw")
        assert (status, friends_in(body)) == (200, {"Berta Friend"}), spelling
    status, body, _ = await fetch(client, "/users/sip:alice@A.com/tbook.xml", "alice", "a-pw")
    assert (status, friends_in(body)) == (200, {"Aaron Friend"})


async def test_with_match_xui_logins_compare_by_the_normalized_domain(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    config = gateway_config(tmp_path, vcard_source(tmp_path), 'match = "xui"')
    client = await aiohttp_client(create_app(config))
    for spelling in ("a.com", "A.COM", "a.com."):
        url = f"/users/sip:alice@{spelling}/tbook.xml"
        status, body, _ = await fetch(client, url, "alice@A.COM", "a-pw")
        assert (status, friends_in(body)) == (200, {"Aaron Friend"}), spelling
    # The login's domain is a.com, whatever its case: it does not reach b.com's alice.
    status, body, _ = await fetch(client, "/users/sip:alice@b.com/tbook.xml", "alice@A.COM", "a-pw")
    assert (status, friends_in(body)) == (401, set())


async def test_with_match_user_an_unlisted_domain_has_no_books(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """alice logs in as `alice` (match = "user"): the domain of the xui is hers to choose,
    so only the listed domains have books (today alice read alice@c.com's)."""
    config = gateway_config(tmp_path, vcard_source(tmp_path), 'domains = ["a.com", "b.com"]')
    client = await aiohttp_client(create_app(config))
    status, body, _ = await fetch(client, "/users/sip:alice@a.com/tbook.xml", "alice", "a-pw")
    assert (status, friends_in(body)) == (200, {"Aaron Friend"})
    for xui in ("alice@c.com", "alice@C.COM.", "alice"):
        status, body, _ = await fetch(client, f"/users/sip:{xui}/tbook.xml", "alice", "a-pw")
        assert (status, friends_in(body)) == (404, set()), xui


async def test_an_unlisted_domain_is_404_without_authentication_too(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    config = gateway_config(tmp_path, vcard_source(tmp_path), 'domains = ["A.com."]', "none")
    client = await aiohttp_client(create_app(config))
    status, body, _ = await fetch(client, "/users/sip:alice@a.com/tbook.xml")
    assert (status, friends_in(body)) == (200, {"Aaron Friend"})
    status, body, _ = await fetch(client, "/users/sip:alice@c.com/tbook.xml")
    assert (status, friends_in(body)) == (404, set())
    # Stored documents too: there is no alice@c.com here.
    response = await client.put(
        "/resource-lists/users/sip:alice@c.com/index",
        data='<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>',
        headers={"Content-Type": "application/resource-lists+xml"},
    )
    assert response.status == 404
