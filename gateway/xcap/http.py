"""Small HTTP helpers shared by the XCAP views: preconditions, content types, errors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from lxml import etree

from gateway import keys
from gateway.engine import PreconditionFailed
from gateway.xcap.errors import XCAP_ERROR_TYPE, XcapConflict
from gateway.xcap.nodes import delete_node, read_node, write_node
from gateway.xcap.selector import Selector
from gateway.xcap.xml import ElementIndex

__all__ = [
    "PreconditionFailed",
    "check_preconditions",
    "conflict_response",
    "if_match_holds",
    "if_none_match_holds",
    "named_etags",
]


@dataclass(frozen=True)
class EntityTag:
    opaque: str  # with its quotes: '"abc"'
    weak: bool = False


def entity_tags(header: str) -> list[EntityTag] | None:
    """The entity-tags of an If-Match / If-None-Match value (RFC 9110 §8.8.3), in order;
    None for "*". A quoted tag may hold commas. A bare token, as some clients send, is
    read as the strong tag it names; anything else that cannot be read is skipped."""
    if header.strip() == "*":
        return None
    tags: list[EntityTag] = []
    position, size = 0, len(header)
    while position < size:
        if header[position] in " \t,":
            position += 1
            continue
        weak = header.startswith("W/", position)
        if weak:
            position += 2
        if header.startswith('"', position):
            close = header.find('"', position + 1)
            if close < 0:
                break  # an unterminated tag names nothing
            tags.append(EntityTag(header[position : close + 1], weak))
            position = close + 1
        else:
            end = position
            while end < size and header[end] not in " \t,":
                end += 1
            token = header[position:end]
            if token and '"' not in token:
                tags.append(EntityTag(f'"{token}"', weak))
            position = end
    return tags


def _tag(etag: str) -> EntityTag:
    weak = etag.startswith("W/")
    return EntityTag(etag[2:] if weak else etag, weak)


def if_match_holds(header: str | None, etag: str | None) -> bool:
    """Whether an If-Match header lets a request on the version `etag` proceed (RFC 9110
    §13.1.1): no header; "*" and the resource exists (`etag` not None); or a listed tag
    equals `etag` by the strong comparison: a weak tag on either side never matches."""
    if header is None:
        return True
    if etag is None:
        return False
    tags = entity_tags(header)
    if tags is None:
        return True
    current = _tag(etag)
    return not current.weak and any(not t.weak and t.opaque == current.opaque for t in tags)


def if_none_match_holds(header: str | None, etag: str | None) -> bool:
    """Whether an If-None-Match header lets a request on the version `etag` proceed (RFC
    9110 §13.1.2): no header; "*" and the resource does not exist; or no listed tag equals
    `etag` by the weak comparison (W/ ignored on both sides). When it does not hold, a GET
    or HEAD is answered 304 and any other method 412."""
    if header is None:
        return True
    tags = entity_tags(header)
    if tags is None:
        return etag is None
    if etag is None:
        return True
    current = _tag(etag).opaque
    return all(t.opaque != current for t in tags)


def named_etags(header: str | None) -> list[str]:
    """The strong entity-tags an If-Match / If-None-Match header names, with their quotes, in
    order ([] for no header, "*", or weak tags only): the versions a client says it holds."""
    tags = entity_tags(header) if header is not None else None
    return [t.opaque for t in tags or [] if not t.weak]


def check_preconditions(request: web.Request, etag: str | None) -> web.Response | None:
    """RFC 9110 §13.2.2 as RFC 4825 uses it, before anything else: a 304 for a GET or HEAD
    whose If-None-Match does not hold; PreconditionFailed (412) for the rest that do not."""
    if not if_match_holds(request.headers.get("If-Match"), etag):
        raise PreconditionFailed("If-Match does not name the current version")
    if not if_none_match_holds(request.headers.get("If-None-Match"), etag):
        if request.method in ("GET", "HEAD"):
            return web.Response(status=304, headers={"ETag": etag or ""})
        raise PreconditionFailed("If-None-Match names the current version")
    return None


def conditional(request: web.Request) -> bool:
    """Whether the request names the version it expects (If-Match or If-None-Match)."""
    return "If-Match" in request.headers or "If-None-Match" in request.headers


def content_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


def conflict_response(conflict: XcapConflict, document_uri: str) -> web.Response:
    if conflict.ancestor is not None:
        # The ancestor is a node selector within the document (empty: the document itself).
        conflict.ancestor = document_uri + (f"/~~/{conflict.ancestor}" if conflict.ancestor else "")
    return web.Response(status=409, body=conflict.body(), content_type=XCAP_ERROR_TYPE)


def representation(
    request: web.Request,
    body: bytes,
    gzipped: bytes,
    etag: str,
    content_type: str,
    charset: str | None = None,
) -> web.Response:
    """A generated document as a poll gets it: 304 when If-None-Match names `etag`, else
    the bytes, gzipped when asked (one ETag for both encodings: it names the version)."""
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if not if_none_match_holds(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        body = gzipped
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers, content_type=content_type, charset=charset)


def accepts_gzip(header: str) -> bool:
    for part in header.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def read_body(request: web.Request) -> bytes:
    """The request body, if it arrives within `body_timeout` (else 408: slow senders must
    not hold connections open)."""
    timeout = request.app[keys.ENGINE].config.server.body_timeout
    try:
        return await asyncio.wait_for(request.read(), timeout)
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout(text="the request body did not arrive in time\n") from exc


NODE_METHODS = ["GET", "HEAD", "PUT", "DELETE"]


def read_node_response(
    root: etree._Element,
    selector: Selector,
    etag: str,
    source: bytes,
    index: ElementIndex | None = None,
) -> web.Response:
    """The GET answer for the node `selector` names in `root`, parsed from `source` (404
    when none)."""
    try:
        kind, body = read_node(root, selector, source, index)
    except LookupError as exc:
        raise web.HTTPNotFound(text="the node selector selects nothing\n") from exc
    return web.Response(body=body, content_type=kind, headers={"ETag": etag})


async def node_body(request: web.Request) -> bytes:
    """The body a node PUT brings (b"" for other methods), read once: a request may be
    applied again to a newer version of its document."""
    return await read_body(request) if request.method == "PUT" else b""


def apply_node_change(
    request: web.Request, root: etree._Element, selector: Selector, body: bytes
) -> bool:
    """Apply the request's PUT (of `body`) or DELETE to `root`; True when a PUT created
    the node."""
    if request.method == "PUT":
        return write_node(root, selector, content_type(request), body)
    if request.method == "DELETE":
        try:
            delete_node(root, selector)
        except LookupError as exc:
            raise web.HTTPNotFound(text="the node selector selects nothing\n") from exc
        return False
    raise web.HTTPMethodNotAllowed(request.method, NODE_METHODS)


async def change_node(request: web.Request, root: etree._Element, selector: Selector) -> bool:
    """Apply the request's PUT or DELETE to `root`; True when a PUT created the node."""
    if request.method not in ("PUT", "DELETE"):
        raise web.HTTPMethodNotAllowed(request.method, NODE_METHODS)
    return apply_node_change(request, root, selector, await node_body(request))
