"""RFC 4825 error conditions (§11), raised by codecs and operations and answered as 409
with an application/xcap-error+xml body."""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

XCAP_ERROR_NS = "urn:ietf:params:xml:ns:xcap-error"
XCAP_ERROR_TYPE = "application/xcap-error+xml"
CONDITIONS = (
    "not-well-formed",
    "not-xml-frag",
    "not-xml-att-value",
    "no-parent",
    "schema-validation-error",
    "uniqueness-failure",
    "constraint-failure",
    "cannot-insert",
    "cannot-delete",
    "not-utf-8",
)


class XcapConflict(Exception):
    """A 409 condition: `condition` is the element name of RFC 4825 §11."""

    def __init__(
        self,
        condition: str,
        phrase: str = "",
        ancestor: str | None = None,
        exists: Sequence[tuple[str, Sequence[str]]] = (),
    ) -> None:
        assert condition in CONDITIONS, condition
        super().__init__(f"{condition}: {phrase}")
        self.condition = condition
        self.phrase = phrase
        #: no-parent: the deepest existing ancestor, as a node selector (the view makes it a URI).
        self.ancestor = ancestor
        #: uniqueness-failure: (field selector, suggested alternative values) pairs.
        self.exists = list(exists)

    def body(self) -> bytes:
        # Phrases quote what clients sent; the error must render whatever that was.
        from gateway.xcap.xml import xml_text  # gateway.xcap.xml raises these errors

        root = etree.Element(f"{{{XCAP_ERROR_NS}}}xcap-error", nsmap={None: XCAP_ERROR_NS})  # type: ignore[dict-item]
        element = etree.SubElement(root, f"{{{XCAP_ERROR_NS}}}{self.condition}")
        if self.phrase:
            element.set("phrase", xml_text(self.phrase))
        if self.ancestor is not None:
            etree.SubElement(element, f"{{{XCAP_ERROR_NS}}}ancestor").text = xml_text(self.ancestor)
        for field, alternatives in self.exists:
            exists = etree.SubElement(element, f"{{{XCAP_ERROR_NS}}}exists", field=xml_text(field))
            for value in alternatives:
                etree.SubElement(exists, f"{{{XCAP_ERROR_NS}}}alt-value").text = xml_text(value)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def not_well_formed(detail: str) -> XcapConflict:
    return XcapConflict("not-well-formed", detail)


def schema_violation(detail: str) -> XcapConflict:
    return XcapConflict("schema-validation-error", detail)


def not_utf8(detail: str) -> XcapConflict:
    return XcapConflict("not-utf-8", detail)
