"""The resource-lists application usage (RFC 4826) for documents stored as they are sent:
schema validation, and the uniqueness and URI constraints of §3.4."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

from gateway.xcap.errors import XcapConflict

AUID = "resource-lists"
NAMESPACE = "urn:ietf:params:xml:ns:resource-lists"
MIME_TYPE = "application/resource-lists+xml"
_RL = f"{{{NAMESPACE}}}"
SCHEMA_FILE = Path(__file__).with_name("schemas") / "resource-lists.xsd"


@cache
def _schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA_FILE), parser))


def validate(root: etree._Element) -> None:
    """Raise XcapConflict unless `root` is a valid resource-lists document."""
    schema = _schema()
    if not schema.validate(root):
        errors = [error.message for error in schema.error_log]  # type: ignore[attr-defined]
        raise XcapConflict("schema-validation-error", errors[-1] if errors else "invalid")
    _unique(root)
    _uris(root)


def _unique(root: etree._Element) -> None:
    """§3.4.5: list names, entry URIs, entry-ref refs and external anchors are unique
    among their siblings."""
    for parent in [root, *root.iter(f"{_RL}list")]:
        for tag, attribute in (
            ("list", "name"),
            ("entry", "uri"),
            ("entry-ref", "ref"),
            ("external", "anchor"),
        ):
            seen: set[str] = set()
            for child in parent.findall(f"{_RL}{tag}"):
                value = child.get(attribute)
                if value is None:
                    continue
                if value in seen:
                    field = f"{_path(child.getparent())}/{tag}/@{attribute}"
                    raise XcapConflict(
                        "uniqueness-failure",
                        f"another {tag} has {attribute}={value!r}",
                        exists=[(field, [_alternative(value, seen)])],
                    )
                seen.add(value)


def _alternative(value: str, taken: set[str]) -> str:
    number = 2
    while f"{value}-{number}" in taken:
        number += 1
    return f"{value}-{number}"


def _uris(root: etree._Element) -> None:
    for external in root.iter(f"{_RL}external"):
        anchor = external.get("anchor", "")
        if anchor and urlsplit(anchor).scheme.lower() not in ("http", "https"):
            raise XcapConflict(
                "constraint-failure", f"external anchor {anchor!r} must be an HTTP URI"
            )
    for ref in root.iter(f"{_RL}entry-ref"):
        target = ref.get("ref", "")
        if urlsplit(target).scheme or target.startswith("/"):
            raise XcapConflict(
                "constraint-failure", f"entry-ref {target!r} must be relative to the XCAP root"
            )


def _path(element: etree._Element | None) -> str:
    """A node selector of `element` (for uniqueness-failure's field)."""
    steps: list[str] = []
    while element is not None:
        name = etree.QName(element).localname
        if element.get("name") is not None and name == "list":
            steps.append(f'{name}[@name="{element.get("name")}"]')
        else:
            steps.append(name)
        element = element.getparent()
    return "/".join(reversed(steps))
