"""RFC 4825 error conditions, raised by codecs and rendered as application/xcap-error+xml."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

XCAP_ERROR_NS = "urn:ietf:params:xml:ns:xcap-error"
XCAP_ERROR_TYPE = "application/xcap-error+xml"


class XcapConflict(Exception):
    """A 409 condition (RFC 4825 section 11): `condition` is the element name."""

    def __init__(self, condition: str, phrase: str) -> None:
        super().__init__(f"{condition}: {phrase}")
        self.condition = condition
        self.phrase = phrase

    def body(self) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<xcap-error xmlns="{XCAP_ERROR_NS}">'
            f"<{self.condition} phrase={quoteattr(self.phrase)}/>"
            "</xcap-error>\n"
        ).encode()


def not_well_formed(detail: str) -> XcapConflict:
    return XcapConflict("not-well-formed", detail)


def schema_violation(detail: str) -> XcapConflict:
    return XcapConflict("schema-validation-error", detail)


def not_utf8(detail: str) -> XcapConflict:
    return XcapConflict("not-utf-8", detail)
