"""The phonebook URLs follow the XCAP document's authentication and owner rules: alice
reads her own book in every format, bob gets 403 on hers, nobody gets in without
credentials; an unknown format in the configuration is an error naming the key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import ConfigError
from tests.conftest import ConfigFactory
from tests.test_auth import basic, htpasswd

Client = TestClient[web.Request, web.Application]
ALICE = "/phonebook/snom/users/sip:alice@example.com/tbook"


async def test_owner_rules_hold_for_phonebook_urls(
    aiohttp_client: Callable[..., Awaitable[Client]],
    make_config: ConfigFactory,
    tmp_path: Path,
) -> None:
    users = htpasswd(tmp_path / "users.htpasswd")
    config = make_config(
        document='formats = ["counterpath", "snom", "yealink"]',
        extra=f'[auth]\nmode = "basic"\nusers_file = "{users}"\nallow_insecure_basic = true\n',
    )
    client = await aiohttp_client(create_app(config))
    assert (await client.get(ALICE)).status == 401
    assert (await client.get(ALICE, headers=basic("alice", "alice-pw"))).status == 200
    assert (await client.get(ALICE, headers=basic("bob", "bob-pw"))).status == 403
    percent = "/phonebook/yealink/users/sip%3Aalice%40example.com/tbook"
    assert (await client.get(percent, headers=basic("alice", "alice-pw"))).status == 200
    assert (await client.get(percent, headers=basic("bob", "bob-pw"))).status == 403
    not_listed = "/phonebook/counterpath/users/sip:alice@example.com/tbook"
    assert (await client.get(not_listed, headers=basic("alice", "alice-pw"))).status == 200
    # Caller-ID lookup and search: the same rules (nobody reads a neighbour's book).
    lookup = "/phonebook/lookup/users/sip:alice@example.com/tbook?number=%2B49302094110"
    assert (await client.get(lookup)).status == 401
    assert (await client.get(lookup, headers=basic("bob", "bob-pw"))).status == 403
    assert (await client.get(lookup, headers=basic("alice", "alice-pw"))).status in (200, 404)
    search = ALICE.replace("/snom/", "/yealink/") + "?q=anna"
    assert (await client.get(search, headers=basic("bob", "bob-pw"))).status == 403


def test_an_unknown_format_is_a_config_error_naming_the_key(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError) as error:
        make_config(document='formats = ["snom", "no-such-phone"]')
    assert "[documents.tbook] formats" in str(error.value)
    assert "no-such-phone" in str(error.value)


@pytest.mark.parametrize(
    ("server", "document"),
    [
        ('phonebook_root = "/xcap"\nxcap_root = "/xcap"', ""),
        ('phonebook_root = "/resource-lists"', ""),
    ],
)
def test_a_phonebook_root_that_would_hide_xcap_urls_is_a_config_error(
    tmp_path: Path, contacts_dir: Path, server: str, document: str
) -> None:
    from gateway.config import load_config
    from tests.conftest import write_config

    text = f"""
[server]
{server}
[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
{document}
"""
    with pytest.raises(ConfigError) as error:
        load_config(write_config(tmp_path, text))
    assert "[server] phonebook_root" in str(error.value)


async def test_formats_list_in_the_xcap_documents_order_and_whole_lists_ignore_paging(
    aiohttp_client: Callable[..., Awaitable[Client]],
    make_config: ConfigFactory,
    contacts_dir: Path,
) -> None:
    """Equal ETags mean equal lists: every format lists entries as the XCAP document does
    (display name, case ignored), so a cached rendering never depends on who asked first.
    A format the phone keeps whole (snom) answers a paged URL with its one rendering."""
    from lxml import etree

    # File names in the other order than the names: "a" holds Zed, "b" Amy.
    for file, name in (("a.vcf", "Zed Zulu"), ("b.vcf", "Amy Alpha")):
        (contacts_dir / file).write_text(
            f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{file}\r\nFN:{name}\r\n"
            "TEL;TYPE=WORK:+49 30 5550\r\nEND:VCARD\r\n"
        )
    client = await aiohttp_client(
        create_app(make_config(document='formats = ["counterpath", "snom", "yealink"]'))
    )
    yealink = etree.fromstring(
        await (await client.get("/phonebook/yealink/users/alice@example.com/tbook")).read()
    )
    names = [e.findtext("Name") or "" for e in yealink.iter("DirectoryEntry")]
    assert names == sorted(names, key=str.casefold)
    whole = await client.get(ALICE)
    paged = await client.get(ALICE + "?limit=1&q=anna")
    assert await paged.read() == await whole.read()
    assert paged.headers["ETag"] == whole.headers["ETag"]


async def test_a_page_number_of_thousands_of_digits_is_400(
    aiohttp_client: Callable[..., Awaitable[Client]], make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(document='formats = ["yealink"]')))
    url = "/phonebook/yealink/users/alice@example.com/tbook"
    for query in ("limit=" + "1" * 4301, "offset=" + "0" * 5000, "limit=00000001"):
        assert (await client.get(f"{url}?{query}")).status == 400, query[:20]
