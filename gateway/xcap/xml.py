"""One hardened XML parser for everything a client sends: no DTD, no entities, no network;
and what every writer of XML needs: text XML 1.0 can carry, attribute values quoted."""

from __future__ import annotations

from xml.parsers import expat

from lxml import etree

from gateway.text import carriable
from gateway.xcap.errors import not_utf8, not_well_formed


def xml_text(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry, so that one odd upstream value
    cannot make a document unrenderable."""
    return carriable(text)


def quote_attribute(value: str) -> str:
    """`value` as a double-quoted XML attribute value that reads back as exactly `value`
    (tab, LF and CR as character references: attribute-value normalization would turn them
    into spaces)."""
    return '"' + escape_attribute(value) + '"'


def escape_attribute(value: str) -> str:
    """The content of a double-quoted attribute value (without the quotes)."""
    return (
        xml_text(value)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def parser(keep_comments: bool = False) -> etree.XMLParser:
    """The hardened parser (a new one each time: lxml parsers are not thread-safe)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=not keep_comments,
        remove_pis=not keep_comments,
    )


def parse_document(body: bytes, keep_comments: bool = False) -> etree._Element:
    """The root element of a client's UTF-8 XML body; XcapConflict when it is not one."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise not_well_formed("a DOCTYPE or entity declaration is not allowed")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(f"the body is not UTF-8 (byte {exc.start})") from exc
    try:
        root = etree.fromstring(body, parser(keep_comments))
    except etree.XMLSyntaxError as exc:
        raise not_well_formed(str(exc.msg)) from exc
    if root is None:
        raise not_well_formed("empty document")
    encoding = (root.getroottree().docinfo.encoding or "UTF-8").upper()
    if encoding not in ("UTF-8", "UTF8"):
        raise not_utf8(f"documents must be UTF-8, not {encoding}")
    return root


def serialize(root: etree._Element, source: bytes | None = None) -> bytes:
    """The document of `root`. Given the `source` it was parsed from, everything outside the
    root element (the XML declaration as written, comments, the final newline) is kept."""
    if source is None:
        return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
    start, end = element_span(source, 0)
    element = etree.tostring(root, encoding="UTF-8", xml_declaration=False, with_tail=False)
    return source[:start] + element + source[end:]


class _Found(Exception):
    pass


def element_span(body: bytes, index: int) -> tuple[int, int]:
    """Byte offsets [start, end) of the `index`-th element of `body` in document order (0 is
    the root), so the element can be given exactly as it stands: with no namespace
    declarations added from its ancestors (RFC 4825 §8.3), character references and
    attribute quotes as written. `body` must be well-formed (parsed before)."""
    parser = expat.ParserCreate()
    seen = -1
    depth = 0
    target_depth: int | None = None
    start = 0

    def on_start(name: str, attributes: object) -> None:
        nonlocal seen, depth, target_depth, start
        seen += 1
        depth += 1
        if seen == index:
            target_depth, start = depth, parser.CurrentByteIndex

    def on_end(name: str) -> None:
        nonlocal depth
        if depth == target_depth:
            raise _Found(parser.CurrentByteIndex)
        depth -= 1

    parser.StartElementHandler = on_start
    parser.EndElementHandler = on_end
    try:
        parser.Parse(body, True)
    except _Found as found:
        start_tag_end = _tag_end(body, start)
        if body[start_tag_end - 2 : start_tag_end] == b"/>":
            return start, start_tag_end
        return start, _tag_end(body, found.args[0])
    raise LookupError(f"the document has no element {index}")


def _tag_end(body: bytes, at: int) -> int:
    """The offset just after the tag that starts at `at` (a ">" may be quoted inside it)."""
    quote = 0
    for position in range(at, len(body)):
        byte = body[position]
        if quote:
            if byte == quote:
                quote = 0
        elif byte in b"\"'":
            quote = byte
        elif byte == ord(">"):
            return position + 1
    raise ValueError("unterminated tag")


class ElementIndex:
    """Where each element of a parsed document stands in its bytes, found in one pass
    (expat) and kept, so an element GET is a lookup instead of a parse of the document
    up to the element (milliseconds on a 1,000-entry directory)."""

    def __init__(self, root: etree._Element, body: bytes) -> None:
        self.root = root
        self.body = body
        self._offsets: list[tuple[int, int]] | None = None

    def span(self, element: etree._Element) -> tuple[int, int]:
        """Byte offsets [start, end) of `element`, as element_span gives them."""
        if self._offsets is None:
            self._offsets = _element_offsets(self.body)
        # Its place in document order, counted by libxml2: the elements before it.
        counted = element.xpath("count(preceding::*) + count(ancestor::*)")
        assert isinstance(counted, float)  # what XPath's count() gives
        position = int(counted)
        start, end_tag = self._offsets[position]
        start_tag_end = _tag_end(self.body, start)
        if self.body[start_tag_end - 2 : start_tag_end] == b"/>":  # `<x/>`: no end tag
            return start, start_tag_end
        return start, _tag_end(self.body, end_tag)


def _element_offsets(body: bytes) -> list[tuple[int, int]]:
    """(offset of its start tag, offset of its end tag) of every element in document
    order (for an empty-element tag, the second is meaningless: see ElementIndex.span)."""
    parser = expat.ParserCreate()
    offsets: list[list[int]] = []
    open_elements: list[int] = []

    def on_start(name: str, attributes: object) -> None:
        open_elements.append(len(offsets))
        at = parser.CurrentByteIndex
        offsets.append([at, at])

    def on_end(name: str) -> None:
        offsets[open_elements.pop()][1] = parser.CurrentByteIndex

    parser.StartElementHandler = on_start
    parser.EndElementHandler = on_end
    parser.Parse(body, True)
    return [(start, end) for start, end in offsets]
