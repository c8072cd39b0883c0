"""Issue 12, items 16 and 17, as an independent client's test suite reads RFC 4825: an
element is given exactly as it stands in the document (§8.3: no namespace declarations added
from its ancestors), a replaced element keeps the whitespace around it, and not-xml-frag
errors point into the client's own fragment."""

from __future__ import annotations

from lxml import etree

from gateway.xcap.xml import element_span, parse_document
from tests.xcap.support import ALICE_DOC, EL_TYPE, INDEX, RL, Client, conflict, put_index

DIRECTORY = "/users/sip:alice@example.com/tbook.xml"
LIST1 = f"{ALICE_DOC}/~~/resource-lists/list[1]"
BILL = b'<entry uri="sip:bill@example.com"><display-name>Bill</display-name></entry>'
#: A prefix declared on the root and used inside the elements; non-ASCII text, character
#: references, single quotes and a quoted ">" before and inside them; a comment that looks
#: like an element.
DOCUMENT = f"""<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="{RL}" xmlns:n="urn:example:notes">
  <!-- <entry uri="sip:not-an-element@example.com"/> -->
  <list name="Müller – Grüße 😀">
    <display-name>Ünïcödé ✓ 日本語</display-name>
    <entry uri="sip:bill@example.com" n:note='a > b'><display-name>Bill &amp; Båd &#233;</display-name><n:extra n:x="1"/></entry>
    <entry uri="sip:jöe@example.com"/>
  </list>
  <list name="work"><entry uri="sip:boss@example.com" ></entry ></list>
</resource-lists>
""".encode()


async def _get(client: Client, selector: str) -> bytes:
    response = await client.get(f"{ALICE_DOC}/~~/{selector}")
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == EL_TYPE
    return await response.read()


async def test_an_element_is_given_as_it_stands_in_the_stored_document(
    xcap_client: Client,
) -> None:
    assert (await put_index(xcap_client, DOCUMENT)).status == 201
    bill = await _get(xcap_client, "resource-lists/list[1]/entry[1]")
    assert (
        bill
        == (
            "<entry uri=\"sip:bill@example.com\" n:note='a > b'><display-name>Bill &amp; Båd"
            ' &#233;</display-name><n:extra n:x="1"/></entry>'
        ).encode()
    )
    assert await _get(xcap_client, "resource-lists/list[1]/entry[2]") == (
        '<entry uri="sip:jöe@example.com"/>'.encode()
    )
    extra = await _get(
        xcap_client, "resource-lists/list[1]/entry[1]/n:extra?xmlns(n=urn:example:notes)"
    )
    assert extra == b'<n:extra n:x="1"/>'
    assert await _get(xcap_client, "resource-lists/list[2]/entry") == (
        b'<entry uri="sip:boss@example.com" ></entry >'
    )
    assert await _get(xcap_client, "resource-lists/list[1]/display-name") == (
        "<display-name>Ünïcödé ✓ 日本語</display-name>".encode()
    )


async def test_an_element_of_the_directory_is_given_as_it_stands_in_the_document(
    xcap_client: Client,
) -> None:
    document = await (await xcap_client.get(DIRECTORY)).read()
    assert "Anna Müller".encode() in document  # non-ASCII before the element below
    entries = document.count(b"<entry>")
    for position in (1, entries):
        response = await xcap_client.get(f"{DIRECTORY}/~~/resource-lists/list/entry[{position}]")
        assert response.status == 200
        element = await response.read()
        assert element.startswith(b"<entry>") and element.endswith(b"</entry>")
        assert b"xmlns" not in element  # the cp prefix is declared on the root only
        assert b'<cp:prop name="entry_id"' in element
        assert document.count(element) == 1


async def test_a_replaced_element_keeps_the_whitespace_around_it(xcap_client: Client) -> None:
    await put_index(xcap_client)
    replacements = {
        # the first child: the text before it is its parent's
        "list[1]/display-name": (
            b"<display-name>Friends</display-name>",
            b"<display-name>Pals</display-name>",
        ),
        # in the middle
        "list[1]/entry[1]": (BILL, BILL.replace(b"Bill", b"William")),
        # the last child: the whitespace after it comes before the parent's end tag
        "list[2]/entry": (
            b'<entry uri="sip:boss@example.com"/>',
            b'<entry uri="sip:boss@example.com"><display-name>Boss</display-name></entry>',
        ),
    }
    expected = INDEX
    for selector, (old, new) in replacements.items():
        response = await xcap_client.put(
            f"{ALICE_DOC}/~~/resource-lists/{selector}", data=new, headers={"Content-Type": EL_TYPE}
        )
        assert response.status == 200, await response.text()
        expected = expected.replace(old, new)
    stored = await (await xcap_client.get(ALICE_DOC)).read()
    # Everything else as it was, to the XML declaration and the final newline.
    assert stored == expected


async def test_an_inserted_element_is_laid_out_as_its_siblings(xcap_client: Client) -> None:
    await put_index(xcap_client)
    new = b'<entry uri="sip:ann@example.com"/>'
    # Whitespace around the element in the body is not part of it.
    response = await xcap_client.put(
        f"{LIST1}/entry[3]", data=b"\n  " + new + b"\n", headers={"Content-Type": EL_TYPE}
    )
    assert response.status == 201, await response.text()
    stored = await (await xcap_client.get(ALICE_DOC)).read()
    joe = b'<entry uri="sip:joe@example.com"><display-name>Joe</display-name></entry>'
    assert joe + b"\n    " + new + b"\n  </list>" in stored


async def test_not_xml_frag_gives_positions_in_the_clients_fragment(xcap_client: Client) -> None:
    await put_index(xcap_client)
    cases = {
        b'<entry uri="sip:a@x"><display-name>A</display-name></entry': "(line 1, column 52)",
        '<entry uri="sip:ä@x"><display-name>Ä</display-name></entri>'.encode(): (
            "(line 1, column 54)"
        ),
        b'<entry uri="sip:a@x"/><entry uri="sip:b@x"/>': "(line 1, column 23)",
        b'<entry uri="sip:a@x">\n  <display-name>A</display-name>\n</entry>\n<entry/>': (
            "(line 4, column 1)"
        ),
        b'<entry uri="sip:a@x" x:note="1"/>': "(line 1, column 32)",
        b'<entry uri="sip:a@x">\n\n  <x:b/></entry>': "(line 3, column 7)",
    }
    for body, position in cases.items():
        response = await xcap_client.put(
            f"{LIST1}/entry[3]", data=body, headers={"Content-Type": EL_TYPE}
        )
        phrase = (await conflict(response, "not-xml-frag")).get("phrase", "")
        assert phrase.endswith(position), (body, phrase)
        assert "xcap-fragment" not in phrase


async def test_the_namespace_context_of_a_fragment_is_its_parents(xcap_client: Client) -> None:
    assert (await put_index(xcap_client, DOCUMENT)).status == 201
    url = f"{ALICE_DOC}/~~/resource-lists/list[2]/entry[@uri=%22sip:x@example.com%22]"
    body = b'<entry uri="sip:x@example.com" n:note="uses the root\'s prefix"/>'
    response = await xcap_client.put(url, data=body, headers={"Content-Type": EL_TYPE})
    assert response.status == 201, await response.text()
    assert await (await xcap_client.get(url)).read() == body
    stored = etree.fromstring(await (await xcap_client.get(ALICE_DOC)).read())
    assert stored[2][1].get("{urn:example:notes}note") == "uses the root's prefix"


def test_every_element_slice_is_that_element() -> None:
    """Each element's bytes, read in its ancestors' namespace context, are the element."""
    root = parse_document(DOCUMENT, keep_comments=True)
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    for index, element in enumerate(elements):
        start, end = element_span(DOCUMENT, index)
        parent = element.getparent()
        context = parent.nsmap if parent is not None else {}
        declarations = "".join(
            f' xmlns{":" + p if p else ""}="{uri}"' for p, uri in context.items()
        ).encode()
        (sliced,) = etree.fromstring(b"<w" + declarations + b">" + DOCUMENT[start:end] + b"</w>")
        assert _same(sliced, element)


def _same(a: etree._Element, b: etree._Element) -> bool:
    """Same name, attributes, text and children (tails inside), by value."""
    return (
        (a.tag, dict(a.attrib), a.text) == (b.tag, dict(b.attrib), b.text)
        and len(a) == len(b)
        and all(_same(x, y) and x.tail == y.tail for x, y in zip(a, b, strict=True))
    )
