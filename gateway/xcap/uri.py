"""Splitting an XCAP request path into the document it addresses (RFC 4825 section 6)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from gateway.model import UserRef


@dataclass(frozen=True)
class DocumentPath:
    auid: str
    user: UserRef
    name: str


def parse_document_path(raw_path: str, xcap_root: str) -> DocumentPath | None:
    """`[root]/[auid/]users/{xui}/{name}` -> DocumentPath; None when it is not one.

    Segments are percent-decoded one by one, so an encoded "/" inside the xui cannot
    add a segment; the result is only ever looked up, never joined onto a path.
    """
    path = raw_path.split("?", 1)[0]
    if xcap_root:
        if not (path == xcap_root or path.startswith(xcap_root + "/")):
            return None
        path = path[len(xcap_root) :]
    segments = path.strip("/").split("/") if path.strip("/") else []
    if len(segments) == 3:
        auid, rest = "", segments
    elif len(segments) == 4:
        auid, rest = segments[0], segments[1:]
    else:
        return None
    scope, xui, name = (unquote(segment, errors="strict") for segment in rest)
    user = UserRef.parse(xui)
    if scope != "users" or not user.xui or not name or not _plain(user.xui):
        return None
    return DocumentPath(unquote(auid), user, name)


def _plain(xui: str) -> bool:
    """An xui is one name: no slash or control character, even percent-encoded."""
    return "/" not in xui and "\\" not in xui and all(ch >= " " for ch in xui)
