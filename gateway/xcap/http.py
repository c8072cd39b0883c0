"""Small HTTP helpers shared by the XCAP views: preconditions, content types, errors."""

from __future__ import annotations

import asyncio

from aiohttp import web
from lxml import etree

from gateway import keys
from gateway.engine import PreconditionFailed
from gateway.xcap.errors import XCAP_ERROR_TYPE, XcapConflict
from gateway.xcap.nodes import delete_node, read_node, write_node
from gateway.xcap.selector import Selector

__all__ = ["PreconditionFailed", "check_preconditions", "conflict_response", "matches"]


def matches(header: str | None, etag: str | None) -> bool:
    """Whether an If-Match / If-None-Match list names `etag` ("*": any existing)."""
    if not header or etag is None:
        return False
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


def check_preconditions(request: web.Request, etag: str | None) -> web.Response | None:
    """RFC 7232 as RFC 4825 uses it, before anything else: a 304 for a GET whose
    If-None-Match matches; PreconditionFailed (412) for the rest that do not hold."""
    if_match = request.headers.get("If-Match")
    if if_match is not None and not matches(if_match, etag):
        raise PreconditionFailed("If-Match does not name the current version")
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and matches(if_none_match, etag):
        if request.method in ("GET", "HEAD"):
            return web.Response(status=304, headers={"ETag": etag or ""})
        raise PreconditionFailed("If-None-Match names the current version")
    return None


def content_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


def conflict_response(conflict: XcapConflict, document_uri: str) -> web.Response:
    if conflict.ancestor is not None:
        # The ancestor is a node selector within the document (empty: the document itself).
        conflict.ancestor = document_uri + (f"/~~/{conflict.ancestor}" if conflict.ancestor else "")
    return web.Response(status=409, body=conflict.body(), content_type=XCAP_ERROR_TYPE)


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


def read_node_response(root: etree._Element, selector: Selector, etag: str) -> web.Response:
    """The GET answer for the node `selector` names in `root` (404 when none)."""
    try:
        kind, body = read_node(root, selector)
    except LookupError as exc:
        raise web.HTTPNotFound(text="the node selector selects nothing\n") from exc
    return web.Response(body=body, content_type=kind, headers={"ETag": etag})


async def change_node(request: web.Request, root: etree._Element, selector: Selector) -> bool:
    """Apply the request's PUT or DELETE to `root`; True when a PUT created the node."""
    if request.method == "PUT":
        return write_node(root, selector, content_type(request), await read_body(request))
    if request.method == "DELETE":
        try:
            delete_node(root, selector)
        except LookupError as exc:
            raise web.HTTPNotFound(text="the node selector selects nothing\n") from exc
        return False
    raise web.HTTPMethodNotAllowed(request.method, NODE_METHODS)
