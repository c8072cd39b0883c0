"""The xcap-caps application usage (RFC 4825 §12): what this server serves."""

from __future__ import annotations

from lxml import etree

from gateway.config import Config
from gateway.xcap import counterpath, resourcelists
from gateway.xcap.storage import etag_of

AUID = "xcap-caps"
NAMESPACE = "urn:ietf:params:xml:ns:xcap-caps"
MIME_TYPE = "application/xcap-caps+xml"


def document(config: Config) -> tuple[bytes, str]:
    """(body, ETag) of /xcap-caps/global/index for this configuration."""
    auids = [AUID, resourcelists.AUID]
    auids += sorted({d.auid for d in config.documents.values() if d.auid and d.auid not in auids})
    namespaces = [NAMESPACE, resourcelists.NAMESPACE, counterpath.CP_NS]
    root = etree.Element(f"{{{NAMESPACE}}}xcap-caps", nsmap={None: NAMESPACE})  # type: ignore[dict-item]
    listed = etree.SubElement(root, f"{{{NAMESPACE}}}auids")
    for auid in auids:
        etree.SubElement(listed, f"{{{NAMESPACE}}}auid").text = auid
    etree.SubElement(root, f"{{{NAMESPACE}}}extensions")
    listed = etree.SubElement(root, f"{{{NAMESPACE}}}namespaces")
    for namespace in namespaces:
        etree.SubElement(listed, f"{{{NAMESPACE}}}namespace").text = namespace
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return body, etag_of(body)
