"""RFC 4825 §6 (URIs, node selectors and namespace bindings) and §12 (xcap-caps)."""

from __future__ import annotations

import pytest
from lxml import etree

from gateway.app import create_app
from tests.conftest import ConfigFactory
from tests.xcap.support import ALICE_DOC, RL, Client, ClientFactory, put_index

pytestmark = pytest.mark.usefixtures("xcap_client")


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("resource-lists/list[@name=%22friends%22]/entry[2]", b'uri="sip:joe@example.com"'),
        ("resource-lists/list[2]/entry", b'uri="sip:boss@example.com"'),
        ("resource-lists/*[1]/entry[@uri=%22sip:bill@example.com%22]", b"<display-name>Bill"),
        ("resource-lists/list[1][@name=%22friends%22]/display-name", b">Friends</"),
        ("resource-lists/list[@name='work']/*", b'uri="sip:boss@example.com"'),
    ],
)
async def test_element_selectors(xcap_client: Client, selector: str, expected: bytes) -> None:
    await put_index(xcap_client)
    response = await xcap_client.get(f"{ALICE_DOC}/~~/{selector}")
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "application/xcap-el+xml"
    assert expected in await response.read()


async def test_terminal_attribute_and_namespace_selectors(xcap_client: Client) -> None:
    await put_index(xcap_client)
    attribute = await xcap_client.get(f"{ALICE_DOC}/~~/resource-lists/list[2]/@name")
    assert attribute.headers["Content-Type"] == "application/xcap-att+xml"
    assert await attribute.read() == b"work"
    namespaces = await xcap_client.get(f"{ALICE_DOC}/~~/resource-lists/list[1]/namespace::*")
    assert namespaces.headers["Content-Type"] == "application/xcap-ns+xml"
    assert etree.fromstring(await namespaces.read()).nsmap == {None: RL}


async def test_prefixes_are_bound_by_xmlns_in_the_query(xcap_client: Client) -> None:
    await put_index(xcap_client)
    url = f"{ALICE_DOC}/~~/r:resource-lists/r:list[@name=%22work%22]/r:entry?xmlns(r={RL})"
    assert (await xcap_client.get(url)).status == 200
    unbound = f"{ALICE_DOC}/~~/q:resource-lists"
    assert (await xcap_client.get(unbound)).status == 404


@pytest.mark.parametrize(
    "selector",
    [
        "resource-lists/list[3]",
        "resource-lists/list/entry",
        "resource-lists/list[1]/@nope",
        "foo",
        "resource-lists/list[0]",
    ],
)
async def test_a_selector_that_selects_nothing_or_many_is_404(
    xcap_client: Client, selector: str
) -> None:
    await put_index(xcap_client)
    assert (await xcap_client.get(f"{ALICE_DOC}/~~/{selector}")).status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/resource-lists/users/alice@example.com/index",  # xui without sip:
        "/resource-lists/users/sip%3Aalice%40example.com/index",  # percent-encoded
    ],
)
async def test_the_xui_in_every_spelling(xcap_client: Client, path: str) -> None:
    await put_index(xcap_client)
    assert (await xcap_client.get(path)).status == 200


async def test_documents_are_per_user(xcap_client: Client) -> None:
    await put_index(xcap_client)
    assert (await xcap_client.get("/resource-lists/users/sip:bob@example.com/index")).status == 404


async def test_a_configured_xcap_root(
    aiohttp_client: ClientFactory, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(extra="")))
    assert (await client.get("/xcap/users/sip:alice@example.com/tbook.xml")).status == 404
    config = make_config()
    rooted = config.model_copy(
        update={"server": config.server.model_copy(update={"xcap_root": "/xcap"})}
    )
    client = await aiohttp_client(create_app(rooted))
    assert (await client.get("/xcap/users/sip:alice@example.com/tbook.xml")).status == 200
    assert (await client.get("/xcap/xcap-caps/global/index")).status == 200
    assert (await client.get("/users/sip:alice@example.com/tbook.xml")).status == 404


async def test_xcap_caps_lists_what_is_served(xcap_client: Client) -> None:
    response = await xcap_client.get("/xcap-caps/global/index")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/xcap-caps+xml"
    assert response.headers["ETag"]
    caps = etree.fromstring(await response.read())
    ns = {"c": "urn:ietf:params:xml:ns:xcap-caps"}
    assert caps.xpath("c:auids/c:auid/text()", namespaces=ns) == ["xcap-caps", "resource-lists"]
    assert "counterpath:properties" in caps.xpath("c:namespaces/c:namespace/text()", namespaces=ns)
    assert (await xcap_client.put("/xcap-caps/global/index", data=b"x")).status == 405
    assert (await xcap_client.get("/xcap-caps/global/other")).status == 404
    assert (await xcap_client.get("/resource-lists/global/index")).status == 404


def test_an_xui_longer_than_any_sip_uri_names_no_user() -> None:
    """It would be part of database keys (PostgreSQL refuses index rows over ~2,700 bytes:
    every served-version write of the replica then failed)."""
    from gateway.model import MAX_XUI
    from gateway.xcap.uri import parse_xcap_path

    long_user = "a" * MAX_XUI
    assert parse_xcap_path(f"/users/sip:{long_user}@example.com/tbook.xml", "") is None
    assert parse_xcap_path("/users/sip:alice@example.com/tbook.xml", "") is not None
