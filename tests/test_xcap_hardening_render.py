"""Issue 12, item 10: one odd upstream card never breaks serving, and whatever goes into
XML is escaped: characters XML 1.0 cannot carry are left out, namespace URIs and values are
quoted wherever a document or fragment is built from strings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from lxml import etree

from gateway.app import create_app
from gateway.entry import Entry
from gateway.xcap import counterpath
from gateway.xcap.errors import XcapConflict
from tests.conftest import ConfigFactory
from tests.xcap.support import ALICE_DOC, ATT_TYPE, EL_TYPE, RL, RL_TYPE, Client

ClientMaker = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
DIRECTORY = "/users/sip:alice@example.com/tbook.xml"
#: What XML 1.0 cannot carry: C0 controls (but tab, LF, CR), U+FFFE, U+FFFF.
ODD_CARD = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "UID:odd-card-1\r\n"
    "FN:Zed\x01 Od\x1fd\r\n"
    "N:Od\x08d;Zed;;;\r\n"
    "ORG:Acme\ufffe Widgets\uffff\r\n"
    "TEL;TYPE=CELL:+49 171 000\x02111\r\n"
    "X-XCAP-PROP;X-NAME=pet\x03name:Rex\x04y\r\n"
    "X-XCAP-PROP;X-NAME=\x05:only a control character for a name\r\n"
    "END:VCARD\r\n"
)


async def test_a_card_with_control_characters_does_not_break_the_directory(
    aiohttp_client: ClientMaker, make_config: ConfigFactory, contacts_dir: Path
) -> None:
    (contacts_dir / "odd.vcf").write_text(ODD_CARD, encoding="utf-8", newline="")
    client = await aiohttp_client(create_app(make_config()))
    response = await client.get(DIRECTORY)
    assert response.status == 200, await response.text()
    body = await response.read()
    root = etree.fromstring(body)  # well-formed XML 1.0, strictly parsed
    entries = list(root.iter(f"{{{RL}}}entry"))
    (entry,) = [e for e in entries if e.findtext(f"{{{RL}}}display-name") == "Zed Odd"]
    props = {p.get("name"): p.get("value") for p in entry.iter(f"{{{counterpath.CP_NS}}}prop")}
    assert props["company"] == "Acme Widgets"
    assert (props["mobile_number"] or "").replace(" ", "").endswith("000111")
    assert props["petname"] == "Rexy"
    assert "" not in props  # a name of nothing but control characters is left out
    # The other contacts are still served.
    assert "Anna Müller" in [e.text for e in root.iter(f"{{{RL}}}display-name")]
    # An element of that document is served too.
    position = entries.index(entry) + 1
    element = await client.get(f"{DIRECTORY}/~~/resource-lists/list/entry[{position}]")
    assert element.status == 200
    assert b"<display-name>Zed Odd</display-name>" in await element.read()


def test_rendering_drops_what_xml_cannot_carry() -> None:
    odd = "a\x00b\x0bc\x1fd\ud800e\udfffg\ufffeh\uffffi"
    body = counterpath.render(
        [Entry("A" * 32, odd, {"comment": odd, f"x{odd}": odd, "\x01\x02": "lost"})]
    )
    (entry,) = counterpath.parse(body)
    assert entry.display_name == "abcdeghi"
    assert dict(entry.fields) == {"comment": "abcdeghi", "xabcdeghi": "abcdeghi"}


def test_rendering_keeps_what_xml_can_carry() -> None:
    text = "tab\there, \x7f\x85\u2028 \U0001f600 \ufffd"
    (entry,) = counterpath.parse(counterpath.render([Entry("A" * 32, "Name", {"comment": text})]))
    assert entry.fields["comment"] == text


def test_an_error_document_renders_whatever_a_phrase_quotes() -> None:
    body = XcapConflict("not-well-formed", "bad \x01 byte \ud800", ancestor="a\x02b").body()
    element = etree.fromstring(body)[0]
    assert element.get("phrase") == "bad  byte "


async def test_a_namespace_uri_with_an_ampersand_does_not_break_element_puts(
    xcap_client: Client,
) -> None:
    # The fragment is read in the namespace context of the document: its URIs must be
    # quoted, not pasted, into the wrapper the fragment is parsed in.
    document = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="{RL}"'
        ' xmlns:n="urn:example:notes?a=1&amp;b=2">\n'
        '  <list name="friends">\n    <entry uri="sip:bill@example.com"/>\n  </list>\n'
        "</resource-lists>\n"
    ).encode()
    created = await xcap_client.put(ALICE_DOC, data=document, headers={"Content-Type": RL_TYPE})
    assert created.status == 201, await created.text()
    url = f"{ALICE_DOC}/~~/resource-lists/list/entry[@uri=%22sip:ann@example.com%22]"
    body = b'<entry uri="sip:ann@example.com" n:note="x"/>'
    response = await xcap_client.put(url, data=body, headers={"Content-Type": EL_TYPE})
    assert response.status == 201, await response.text()
    assert await (await xcap_client.get(url)).read() == body


async def test_an_attribute_value_is_given_escaped_so_that_it_reads_back_the_same(
    xcap_client: Client,
) -> None:
    document = (
        f'<resource-lists xmlns="{RL}"><list name="a&amp;b &lt;&quot;&gt;&#9;x&#10;y&#13;z"/>'
        "</resource-lists>"
    ).encode()
    assert (
        await xcap_client.put(ALICE_DOC, data=document, headers={"Content-Type": RL_TYPE})
    ).status == 201
    url = f"{ALICE_DOC}/~~/resource-lists/list/@name"
    value = await (await xcap_client.get(url)).read()
    assert value == b"a&amp;b &lt;&quot;&gt;&#9;x&#10;y&#13;z"
    # Put back as it came, it is the same value, not one with spaces for tab, LF and CR.
    again = await xcap_client.put(url, data=value, headers={"Content-Type": ATT_TYPE})
    assert again.status == 200
    stored = etree.fromstring(await (await xcap_client.get(ALICE_DOC)).read())
    assert stored[0].get("name") == 'a&b <">\tx\ny\rz'
