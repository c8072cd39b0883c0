"""One hardened XML parser for everything a client sends: no DTD, no entities, no network."""

from __future__ import annotations

from lxml import etree

from gateway.xcap.errors import not_utf8, not_well_formed


def parse_document(body: bytes, keep_comments: bool = False) -> etree._Element:
    """The root element of a client's UTF-8 XML body; XcapConflict when it is not one."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise not_well_formed("a DOCTYPE or entity declaration is not allowed")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(f"the body is not UTF-8 (byte {exc.start})") from exc
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=not keep_comments,
        remove_pis=not keep_comments,
    )
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise not_well_formed(str(exc.msg)) from exc
    if root is None:
        raise not_well_formed("empty document")
    encoding = (root.getroottree().docinfo.encoding or "UTF-8").upper()
    if encoding not in ("UTF-8", "UTF8"):
        raise not_utf8(f"documents must be UTF-8, not {encoding}")
    return root


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
