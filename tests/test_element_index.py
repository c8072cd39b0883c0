"""The byte offsets kept for element GETs are the ones the one-off parse finds, for every
element of awkward documents: empty-element tags, `>` inside quoted attributes, comments,
CDATA, namespace prefixes, character references, non-ASCII text."""

from __future__ import annotations

import uuid

import pytest

from gateway.xcap.xml import ElementIndex, element_span, parse_document

DOCUMENTS = [
    b'<?xml version="1.0" encoding="UTF-8"?>\n<a><b/><c x="1>2" y=\'a"b\'>t<d/></c><!-- <e/> --></a>\n',
    b'<r:list xmlns:r="urn:x" xmlns="urn:y"><r:entry uri="sip:a@b"><name>M\xc3\xbcller &amp; '
    b"&#x3c;Sons&#62;</name></r:entry><r:entry uri='sip:c'/><![CDATA[<not/>]]></r:list>",
    b"<root>\n  <empty></empty>\n  <self />\n  <deep><er><est a='&gt;'/></er></deep>\n</root>",
]


@pytest.mark.parametrize("body", DOCUMENTS)
def test_every_elements_span_is_the_one_parse_finds(body: bytes) -> None:
    root = parse_document(body)
    index = ElementIndex(root, body)
    elements = [node for node in root.iter() if isinstance(node.tag, str)]
    for position, element in enumerate(elements):
        assert index.span(element) == element_span(body, position)


async def test_long_urls_are_parsed_but_not_remembered() -> None:
    from aiohttp.test_utils import make_mocked_request

    from gateway.xcap import uri

    before = uri._parsed.cache_info().currsize
    for i in range(20):
        long = "/users/sip:alice@example.com/tbook.xml/~~/" + f"{i}" + "a" * 8000
        path = uri.request_path(make_mocked_request("GET", long), "")
        assert path is not None and path.user is not None
    assert uri._parsed.cache_info().currsize == before
    fresh = f"/users/sip:bob@example.com/{uuid.uuid4().hex}.xml"  # in no earlier test
    short = uri.request_path(make_mocked_request("GET", fresh), "")
    assert short is not None and uri._parsed.cache_info().currsize == before + 1
