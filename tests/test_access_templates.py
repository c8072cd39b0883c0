"""Per-user templates never name anything outside their own root (issue 12, item 13).

A real vcard-dir layout with one folder per user (books/alice, books/bob) and one per
domain (domains/example.com, domains/other.org), plus cards in the folders around them that
a climbing xui would reach: books/ itself and the parent of books/ and domains/. Every
request goes over a real socket with its path sent exactly as written (percent-encoding
and dots untouched by the client).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.connector import Connector, ConnectorSettings, UnsafeTemplateValue, fill_template
from gateway.model import UserRef
from gateway.xcap.uri import parse_xcap_path
from tests.conftest import drained, write_config

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]

#: Card names by the folder they are in; a response may only show its own user's.
CARDS = {
    "": "Root Secret",  # the parent of books/ and domains/
    "books": "Everyone Index",
    "books/alice": "Alice Friend",
    "books/bob": "Bob Friend",
    "domains": "Domains Index",
    "domains/example.com": "Example Colleague",
    "domains/other.org": "Other Colleague",
}


def card(name: str) -> str:
    uid = name.lower().replace(" ", "-")
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nTEL;TYPE=CELL:+49 171 1\r\nEND:VCARD\r\n"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    root = tmp_path / "upstream"
    for folder, name in CARDS.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{name.split()[0].lower()}.vcf").write_text(card(name))
    text = f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"

[sources.mine]
type = "vcard-dir"
path = "{root}/books/{{user}}"

[sources.team]
type = "vcard-dir"
path = "{root}/domains/{{domain}}"

[documents.tbook]
name = "tbook.xml"
sources = ["mine"]
write_to = "mine"

[documents.team]
name = "team.xml"
sources = ["team"]
"""
    return load_config(write_config(tmp_path, text))


async def get_raw(client: Client, path: str) -> tuple[int, str]:
    """GET `path` byte for byte: the test client would otherwise resolve dot segments
    and decode %2E before the request leaves."""
    url = URL(f"http://{client.host}:{client.port}{path}", encoded=True)
    async with client.session.get(url) as response:
        return response.status, await response.text()


def cards_in(body: str) -> set[str]:
    return {name for name in CARDS.values() if name in body}


async def test_each_user_reads_only_their_own_folder(
    aiohttp_client: ClientFactory, config: Config
) -> None:
    client = await aiohttp_client(create_app(config))
    status, body = await get_raw(client, "/users/sip:alice@example.com/tbook.xml")
    assert (status, cards_in(body)) == (200, {"Alice Friend"})
    status, body = await get_raw(client, "/users/sip:alice@example.com/team.xml")
    assert (status, cards_in(body)) == (200, {"Example Colleague"})


CLIMBING_USERS = [
    "sip:.@example.com",
    "sip:..@example.com",
    "sip:@example.com",
    "sip:%2E%2E@example.com",
    "sip:%2e@example.com",
    "%2E%2E@example.com",
    "%2E%2E",
    "sip:..%2Fbob@example.com",
    "sip:..%5Cbob@example.com",
    "sip:alice%00@example.com",
    "sip:%00@example.com",
]


@pytest.mark.parametrize("xui", CLIMBING_USERS)
async def test_a_user_part_that_would_climb_is_404(
    aiohttp_client: ClientFactory, config: Config, xui: str
) -> None:
    client = await aiohttp_client(create_app(config))
    status, body = await get_raw(client, f"/users/{xui}/tbook.xml")
    assert (status, cards_in(body)) == (404, set())


CLIMBING_DOMAINS = [
    "sip:alice@.",
    "sip:alice@..",
    "sip:alice@",
    "sip:alice@%2E%2E",
    "sip:alice@example.com%2F..%2Fother.org",
    "sip:alice@%5C",
    "sip:alice@example.com%00",
    "sip:alice",  # no domain at all: {domain} would be empty, the domains/ folder itself
]


@pytest.mark.parametrize("xui", CLIMBING_DOMAINS)
async def test_a_domain_that_would_climb_or_is_missing_is_404(
    aiohttp_client: ClientFactory, config: Config, xui: str
) -> None:
    client = await aiohttp_client(create_app(config))
    status, body = await get_raw(client, f"/users/{xui}/team.xml")
    assert (status, cards_in(body)) == (404, set())


async def test_a_write_for_a_climbing_user_is_404_and_writes_nothing(
    aiohttp_client: ClientFactory, config: Config, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(config))
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "upstream").rglob("*"))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" '
        'xmlns:cp="counterpath:properties"><list name="Contact List"><entry>'
        "<display-name>Planted</display-name></entry></list></resource-lists>"
    )
    headers = {"Content-Type": "application/resource-lists+xml"}
    for xui in ("sip:%2E%2E@example.com", "sip:@example.com"):
        url = URL(f"http://{client.host}:{client.port}/users/{xui}/tbook.xml", encoded=True)
        async with client.session.put(url, data=body, headers=headers) as response:
            assert response.status == 404, xui
    await drained(client)
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "upstream").rglob("*"))
    assert after == before


async def test_documents_without_templates_refuse_a_climbing_xui_too(
    aiohttp_client: ClientFactory, config: Config
) -> None:
    """Stored resource-lists documents are looked up, never joined onto a path; a name
    like `..` is still nobody's."""
    client = await aiohttp_client(create_app(config))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>'
    )
    headers = {"Content-Type": "application/resource-lists+xml"}
    for xui in ("sip:..@example.com", "sip:alice@.."):
        url = URL(
            f"http://{client.host}:{client.port}/resource-lists/users/{xui}/index", encoded=True
        )
        async with client.session.put(url, data=body, headers=headers) as response:
            assert response.status == 404, xui


@pytest.mark.parametrize(
    "raw",
    [
        "/users/sip:..@example.com/tbook.xml",
        "/users/sip:alice@../tbook.xml",
        "/users/sip:alice@/tbook.xml",
        "/users/sip:alice%7F@example.com/tbook.xml",
    ],
)
def test_the_uri_parser_refuses_a_climbing_xui(raw: str) -> None:
    assert parse_xcap_path(raw, "") is None


class _Settings(ConnectorSettings):
    path: str


@pytest.mark.parametrize(
    ("template", "xui"),
    [
        ("books/{user}", ".."),
        ("books/{user}", ".@example.com"),
        ("books/{user}", "@example.com"),
        ("books/{user}", "a/b@example.com"),
        ("books/{user}", "a\\b@example.com"),
        ("books/{user}", "a\x00@example.com"),
        ("books/{domain}", "alice@.."),
        ("books/{domain}", "alice"),  # an empty domain
        ("books/{xui}", "alice"),  # every domain's alice would share it
        ("books/{xui}", "..@example.com"),
    ],
)
def test_filling_a_template_refuses_a_value_that_is_not_one_name(template: str, xui: str) -> None:
    """Defence in depth: whichever way a value arrives, filling it in raises the typed
    error the front end answers with 404."""
    values = {"user": "", "domain": "", "xui": xui}
    values.update(dict(zip(("user", "domain"), xui.split("@", 1), strict=False)))
    with pytest.raises(UnsafeTemplateValue):
        fill_template(template, values)
    with pytest.raises(UnsafeTemplateValue):
        Connector.settings_for_user(_Settings(path=template), values)


def test_filling_a_template_with_one_name_works() -> None:
    values = UserRef("Alice@Example.COM.").template_values()
    assert fill_template("books/{domain}/{user}/{xui}", values) == (
        "books/example.com/Alice/Alice@example.com"
    )
    # A domainless xui is fine where no template needs the domain.
    assert fill_template("books/{user}", UserRef("alice").template_values()) == "books/alice"
