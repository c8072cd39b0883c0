"""Splitting an XCAP request URI into the document and node it addresses (RFC 4825 §6).

    [xcap-root]/{auid}/users/{xui}/{document…}[/~~/{node-selector}][?xmlns(p=ns)…]
    [xcap-root]/{auid}/global/{document…}[/~~/…]

Phones configured with an empty AUID ask `/users/{xui}/{document}`: that form is accepted
too (auid ""). Segments are percent-decoded one by one, so an encoded "/" cannot add a
segment, and the result is only ever looked up, never joined onto a file-system path.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web

from gateway.model import UserRef

#: The value is stripped after matching: `\s*([^)]*?)\s*\)` backtracked cubically over a
#: run of whitespace with no ")" (2,700 encoded spaces, within the request line: ~13 s of
#: CPU, before authentication).
_XMLNS = re.compile(r"xmlns\(\s*([A-Za-z_][\w.-]*)\s*=([^)]*)\)")


#: The longest document path below the xui (characters).
MAX_DOCUMENT_NAME = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class XcapPath:
    auid: str
    scope: str  # "users" or "global"
    user: UserRef | None  # None for global documents
    document: str  # the document path below the xui (or global/), "/"-separated
    selector: str | None = None  # the node selector, percent-decoded
    namespaces: dict[str, str] = field(default_factory=dict)  # prefix -> URI from ?xmlns()

    @property
    def name(self) -> str:
        return self.document


def parse_xcap_path(raw_path: str, xcap_root: str) -> XcapPath | None:
    """The XcapPath of a request's raw (still percent-encoded) path; None if it is not one."""
    path, _, query = raw_path.partition("?")
    if xcap_root:
        if not (path == xcap_root or path.startswith(xcap_root + "/")):
            return None
        path = path[len(xcap_root) :]
    path, separator, selector = path.partition("/~~/")
    segments = (
        [unquote(s, errors="strict") for s in path.strip("/").split("/")] if path.strip("/") else []
    )
    if len(segments) >= 3 and segments[0] == "users":  # the phones' empty AUID
        segments = ["", *segments]
    if len(segments) < 3 or segments[1] not in ("users", "global"):
        return None
    auid, scope = segments[0], segments[1]
    user = None
    if scope == "users":
        if len(segments) < 4:
            return None
        user = UserRef.parse(segments[2])
        # Per-user sources put the xui's parts into paths, URLs and DNs: `.`, `..`, an
        # empty part, a slash or a NUL (even percent-encoded) would name another's book.
        if not user.names_one_user():
            return None
        document = segments[3:]
    else:
        document = segments[2:]
    if not all(document) or any(part in (".", "..") for part in document):
        return None
    # A document name is a key in the state database: no control characters (PostgreSQL
    # text holds no NUL at all), and no longer than a database index takes.
    name = "/".join(document)
    if len(name) > MAX_DOCUMENT_NAME or _CONTROL.search(name):
        return None
    # Decoded once: a namespace name may hold "%" ("urn:x%20y" is sent as urn:x%2520y).
    namespaces = {m[1]: m[2].strip() for m in _XMLNS.finditer(unquote(query))}
    return XcapPath(
        auid,
        scope,
        user,
        name,
        unquote(selector, errors="strict") if separator else None,
        namespaces,
    )


_PATH = web.RequestKey[XcapPath | None]("xcap_path")


def request_path(request: web.Request, xcap_root: str) -> XcapPath | None:
    """The request's XcapPath, parsed once per request (the logging and authentication
    middlewares and the views all ask)."""
    if _PATH not in request:
        raw = request.rel_url.raw_path
        if request.rel_url.raw_query_string:
            raw += "?" + request.rel_url.raw_query_string
        # A phone's URL is short; a long one (a client's junk) is parsed, not remembered.
        short = len(raw) <= CACHED_PATH_LENGTH
        request[_PATH] = _parsed(raw, xcap_root) if short else _parse(raw, xcap_root)
    return request[_PATH]


#: The longest URL whose parse is remembered.
CACHED_PATH_LENGTH = 256


def _parse(raw: str, xcap_root: str) -> XcapPath | None:
    try:
        return parse_xcap_path(raw, xcap_root)
    except UnicodeDecodeError:
        return None


@functools.lru_cache(maxsize=4096)
def _parsed(raw: str, xcap_root: str) -> XcapPath | None:
    """parse_xcap_path, remembered: phones poll the same few URLs over and over (an
    XcapPath is immutable; a client sending ever new paths only cycles the cache)."""
    return _parse(raw, xcap_root)
