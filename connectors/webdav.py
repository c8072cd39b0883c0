"""WebDAV / CardDAV request bodies and multistatus parsing, as pure functions.

Servers differ in what they send back: absolute URLs or paths, relative hrefs, trailing
slashes, percent-encoding, weak ETags, per-item errors inside a 207. Everything is
normalized here, so the connector compares hrefs in one canonical form.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urljoin, urlsplit

from lxml import etree

DAV = "DAV:"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
NSMAP = {"d": DAV, "c": CARDDAV}
_SAFE = "/:@!$&'()*+,;=-._~"


def dav(name: str) -> str:
    return f"{{{DAV}}}{name}"


def carddav(name: str) -> str:
    return f"{{{CARDDAV}}}{name}"


def canonical_path(base: str, href: str) -> str:
    """The absolute, percent-encoded path of `href` as seen from `base` (a URL)."""
    path = urlsplit(urljoin(base, href.strip())).path or "/"
    return quote(unquote(path), safe=_SAFE)


def as_collection(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def is_weak(etag: str) -> bool:
    return etag.strip().startswith("W/")


def weak_match(first: str, second: str) -> bool:
    """RFC 9110 weak comparison: the same opaque tag, whether either is weak or not."""
    opaque = [tag.strip().removeprefix("W/") for tag in (first, second)]
    return bool(opaque[0]) and opaque[0] == opaque[1]


@dataclass
class DavResponse:
    href: str
    #: The response-level status (sync-collection reports deletions as 404 here).
    status: int | None = None
    #: Properties that came with status 200, by Clark name.
    props: dict[str, etree._Element] = field(default_factory=dict)

    def text(self, name: str) -> str:
        element = self.props.get(name)
        return (element.text or "").strip() if element is not None else ""

    def hrefs(self, name: str, base: str) -> list[str]:
        """The DAV:href children of property `name`, canonical."""
        element = self.props.get(name)
        if element is None:
            return []
        return [canonical_path(base, h.text or "") for h in element.iter(dav("href")) if h.text]

    def has_type(self, name: str) -> bool:
        element = self.props.get(dav("resourcetype"))
        return element is not None and element.find(name) is not None


@dataclass
class Multistatus:
    responses: list[DavResponse]
    sync_token: str = ""


def _status_code(text: str | None) -> int | None:
    # "HTTP/1.1 404 Not Found"
    parts = (text or "").split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def parse_xml(body: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(body, parser)


def parse_multistatus(body: bytes, base: str) -> Multistatus:
    """Every DAV:response, with hrefs canonical relative to `base` (the request URL)."""
    root = parse_xml(body)
    responses = []
    for element in root.iter(dav("response")):
        status = _status_code(element.findtext(dav("status")))
        props: dict[str, etree._Element] = {}
        for propstat in element.iter(dav("propstat")):
            if _status_code(propstat.findtext(dav("status"))) == 200:
                for prop in propstat.iter(dav("prop")):
                    props.update((child.tag, child) for child in prop)
        for href in element.findall(dav("href")):
            responses.append(DavResponse(canonical_path(base, href.text or ""), status, props))
    token = root.findtext(dav("sync-token")) or ""
    return Multistatus(responses, token.strip())


def error_conditions(body: bytes) -> set[str]:
    """Clark names of the conditions in a DAV:error body (empty when it is not one)."""
    try:
        root = parse_xml(body)
    except etree.XMLSyntaxError:
        return set()
    return {child.tag for child in root} if root.tag == dav("error") else set()


def _body(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def propfind(*names: str) -> bytes:
    root = etree.Element(dav("propfind"), nsmap=NSMAP)
    prop = etree.SubElement(root, dav("prop"))
    for name in names:
        etree.SubElement(prop, name)
    return _body(root)


def sync_collection(token: str) -> bytes:
    root = etree.Element(dav("sync-collection"), nsmap=NSMAP)
    etree.SubElement(root, dav("sync-token")).text = token
    etree.SubElement(root, dav("sync-level")).text = "1"
    etree.SubElement(etree.SubElement(root, dav("prop")), dav("getetag"))
    return _body(root)


def multiget(hrefs: Iterable[str]) -> bytes:
    root = etree.Element(carddav("addressbook-multiget"), nsmap=NSMAP)
    prop = etree.SubElement(root, dav("prop"))
    etree.SubElement(prop, dav("getetag"))
    etree.SubElement(prop, carddav("address-data"))
    for href in hrefs:
        etree.SubElement(root, dav("href")).text = href
    return _body(root)
