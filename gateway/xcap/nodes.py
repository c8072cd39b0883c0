"""Element, attribute and namespace resources inside a document (RFC 4825 §7, §8):
reading the node a selector names, and putting or deleting it. Pure: bytes and trees in,
bytes and trees out; the views decide where documents come from and go to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.parsers import expat

from lxml import etree

from gateway.xcap.errors import XcapConflict, not_utf8
from gateway.xcap.selector import (
    Selector,
    attribute_of,
    delete_element,
    no_parent,
    put_element,
    select_one,
)
from gateway.xcap.xml import (
    ElementIndex,
    element_span,
    escape_attribute,
    parse_document,
    parser,
    quote_attribute,
)

ELEMENT_TYPE = "application/xcap-el+xml"
ATTRIBUTE_TYPE = "application/xcap-att+xml"
NAMESPACE_TYPE = "application/xcap-ns+xml"


class NotAllowed(Exception):
    """The method does not apply to this kind of node (405)."""


class WrongType(Exception):
    """The body's Content-Type is not the node's (415)."""


def read_node(
    root: etree._Element, selector: Selector, source: bytes, index: ElementIndex | None = None
) -> tuple[str, bytes]:
    """(content type, body) of the selected node of `root`, parsed from `source` (with
    its `index` when one is kept); LookupError when it selects nothing."""
    element = select_one(root, selector)
    if element is None:
        raise LookupError("nothing selected")
    if selector.namespaces:
        holder = etree.Element(element.tag, nsmap=element.nsmap)  # type: ignore[arg-type]
        return NAMESPACE_TYPE, etree.tostring(holder, encoding="UTF-8")
    if selector.attribute is not None:
        value = attribute_of(element, selector.attribute)
        if value is None:
            raise LookupError("no such attribute")
        return ATTRIBUTE_TYPE, escape_attribute(value).encode()
    # The element's own bytes: serializing it would add the ancestors' namespace
    # declarations, which RFC 4825 §8.3 forbids.
    if index is not None:
        start, end = index.span(element)
    else:
        start, end = element_span(source, _document_index(root, element))
    return ELEMENT_TYPE, source[start:end]


def _document_index(root: etree._Element, element: etree._Element) -> int:
    """The position of `element` among the elements of `root`'s document, in document order."""
    elements = (node for node in root.iter() if isinstance(node.tag, str))
    return next(index for index, node in enumerate(elements) if node is element)


def write_node(root: etree._Element, selector: Selector, content_type: str, body: bytes) -> bool:
    """Put the node; True when it was created (201), False when replaced (200)."""
    if selector.namespaces:
        raise NotAllowed("namespace bindings are read-only")
    if selector.attribute is not None:
        if content_type != ATTRIBUTE_TYPE:
            raise WrongType(ATTRIBUTE_TYPE)
        element = select_one(root, selector)
        if element is None:
            raise no_parent(root, selector)
        value = attribute_value(body)
        created = attribute_of(element, selector.attribute) is None
        try:
            element.set(selector.attribute, value)
        except ValueError as exc:  # a name lxml refuses (parse_selector lets none through)
            raise XcapConflict("cannot-insert", "XML cannot hold this attribute") from exc
        return created
    if content_type != ELEMENT_TYPE:
        raise WrongType(ELEMENT_TYPE)
    parents = [select_one(root, selector.parent)] if len(selector.steps) > 1 else [root.getparent()]
    context = parents[0].nsmap if parents[0] is not None else root.nsmap
    return put_element(root, selector, fragment(body, context))


def delete_node(root: etree._Element, selector: Selector) -> None:
    """Remove the node; LookupError when it selects nothing."""
    if selector.namespaces:
        raise NotAllowed("namespace bindings are read-only")
    if selector.attribute is not None:
        element = select_one(root, selector)
        if element is None or attribute_of(element, selector.attribute) is None:
            raise LookupError("no such attribute")
        del element.attrib[selector.attribute]
        return
    delete_element(root, selector)


def fragment(body: bytes, nsmap: Mapping[str | None, str]) -> etree._Element:
    """The single element of an application/xcap-el+xml body, read in the namespace
    context of where it goes. Errors name positions in the body as the client sent it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(f"the body is not UTF-8 (byte {exc.start})") from exc
    _check_well_formed(body)
    declarations = "".join(
        f" xmlns={quote_attribute(uri)}"
        if prefix is None
        else f" xmlns:{prefix}={quote_attribute(uri)}"
        for prefix, uri in nsmap.items()
    )
    # The body starts on the wrapper's second line, so that positions in it are the
    # body's own but for the line number.
    wrapped = f"<xcap-fragment{declarations}>\n{text.removeprefix(BOM)}</xcap-fragment>"
    try:
        holder = etree.fromstring(wrapped.encode(), parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        message = _POSITION.sub("", str(exc.msg))
        raise XcapConflict("not-xml-frag", f"{message} (line {line - 1}, column {column})") from exc
    elements = [child for child in holder if isinstance(child.tag, str)]
    loose_text = (holder.text or "").strip() or any((child.tail or "").strip() for child in holder)
    if len(elements) != 1 or loose_text:
        raise XcapConflict("not-xml-frag", "the body must be exactly one XML element")
    element = elements[0]
    holder.remove(element)
    # Whitespace around the element in the body is not part of it.
    element.tail = None
    return element


BOM = "\ufeff"
_POSITION = re.compile(r", line \d+, column \d+$")


def _check_well_formed(body: bytes) -> None:
    """not-xml-frag unless `body` is one element (with comments or whitespace around it),
    positions counted in the body: line from 1, column (characters) from 1."""

    def refuse(what: str) -> None:
        raise XcapConflict("not-xml-frag", f"{what} is not allowed in an element body")

    checker = expat.ParserCreate()
    checker.XmlDeclHandler = lambda *_: refuse("an XML declaration")
    checker.StartDoctypeDeclHandler = lambda *_: refuse("a DOCTYPE")
    try:
        checker.Parse(body, True)
    except expat.ExpatError as exc:
        code = exc.code
        if code == expat.errors.codes[expat.errors.XML_ERROR_JUNK_AFTER_DOC_ELEMENT]:
            what = "the body must be exactly one XML element; more follows"
        elif code == expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS]:
            what = "the body must be exactly one XML element; there is none"
        else:
            what = expat.ErrorString(code)
        raise XcapConflict(
            "not-xml-frag", f"{what} (line {exc.lineno}, column {exc.offset + 1})"
        ) from exc


def attribute_value(body: bytes) -> str:
    """The value of an application/xcap-att+xml body (an XML attribute value, unquoted)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(f"the body is not UTF-8 (byte {exc.start})") from exc
    if '"' in text or "<" in text:
        raise XcapConflict("not-xml-att-value", "not a valid attribute value")
    try:
        holder = parse_document(f'<a v="{text}"/>'.encode())  # quotes refused above
    except XcapConflict as exc:
        raise XcapConflict("not-xml-att-value", exc.phrase) from exc
    return holder.get("v", "")
