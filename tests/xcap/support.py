"""Shared by the RFC 4825 conformance modules: a gateway with a directory document and
the resource-lists application, a real HTTP client, and the error-document schema."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from lxml import etree

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
RL = "urn:ietf:params:xml:ns:resource-lists"
RL_TYPE = "application/resource-lists+xml"
EL_TYPE = "application/xcap-el+xml"
ATT_TYPE = "application/xcap-att+xml"
ALICE_DOC = "/resource-lists/users/sip:alice@example.com/index"
INDEX = f"""<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="{RL}">
  <list name="friends">
    <display-name>Friends</display-name>
    <entry uri="sip:bill@example.com"><display-name>Bill</display-name></entry>
    <entry uri="sip:joe@example.com"><display-name>Joe</display-name></entry>
  </list>
  <list name="work">
    <entry uri="sip:boss@example.com"/>
  </list>
</resource-lists>
""".encode()


@cache
def error_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(Path(__file__).with_name("xcap-error.xsd"))))


async def conflict(response: ClientResponse, condition: str) -> etree._Element:
    """Assert a 409 whose body is a valid xcap-error document for `condition`."""
    assert response.status == 409, (response.status, await response.text())
    assert response.headers["Content-Type"] == "application/xcap-error+xml"
    document = etree.fromstring(await response.read())
    schema = error_schema()
    assert schema.validate(document), schema.error_log
    (element,) = document
    assert element.tag == f"{{urn:ietf:params:xml:ns:xcap-error}}{condition}"
    return element


async def put_index(client: Client, body: bytes = INDEX, **headers: str) -> ClientResponse:
    return await client.put(ALICE_DOC, data=body, headers={"Content-Type": RL_TYPE, **headers})
