"""The byte offsets kept for element GETs are the ones the one-off parse finds, for every
element of awkward documents: empty-element tags, `>` inside quoted attributes, comments,
CDATA, namespace prefixes, character references, non-ASCII text."""

from __future__ import annotations

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
