"""Directory documents (bound to sources): GET from memory, whole-document PUT into
write-back, and element / attribute operations applied to the document and written back
through the same merge."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web
from lxml import etree

from gateway import keys
from gateway.compose import Rendered
from gateway.engine import Engine
from gateway.entry import Entry
from gateway.model import UserRef
from gateway.xcap import counterpath
from gateway.xcap.errors import XcapConflict
from gateway.xcap.http import (
    PreconditionFailed,
    change_node,
    content_type,
    entity_tags,
    if_match_holds,
    if_none_match_holds,
    named_etags,
    read_body,
    read_node_response,
    representation,
)
from gateway.xcap.selector import Selector
from gateway.xcap.xml import ElementIndex, parse_document, serialize

#: Phones differ in what they send, and a 415 would make them retry forever: besides the
#: XML types, accept the defaults HTTP libraries (and curl) send when nobody chose a type.
PUT_TYPES = {
    "",
    counterpath.MIME_TYPE,
    "application/xml",
    "text/xml",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
}


#: A User-Agent longer than this is kept as its start and a digest of the whole: the device
#: name is part of a database key (PostgreSQL's indexes take ~2,700 bytes at most).
DEVICE_AGENT_MAX = 200


def device_of(request: web.Request) -> str:
    """Which device asks: a user often has a desk phone and a softphone."""
    agent = request.headers.get("User-Agent", "")
    if len(agent) > DEVICE_AGENT_MAX:
        digest = hashlib.sha256(agent.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        agent = f"{agent[:DEVICE_AGENT_MAX]}…{digest}"
    return f"{agent}|{request.remote or ''}"


async def document(request: web.Request, key: str, user: UserRef) -> web.StreamResponse:
    engine = request.app[keys.ENGINE]
    if request.method == "PUT":
        return await _put_document(request, engine, key, user)
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "PUT"])
    rendered = await engine.document(key, user)
    if request.method == "GET":  # a HEAD delivers no document: the device holds none
        fetched = if_none_match_holds(request.headers.get("If-None-Match"), rendered.etag)
        await engine.served(key, user, device_of(request), rendered, fetched)
    return serve(request, rendered)


def serve(request: web.Request, rendered: Rendered) -> web.Response:
    return representation(
        request, rendered.body, rendered.gzipped, rendered.etag, counterpath.MIME_TYPE
    )


async def _put_document(
    request: web.Request, engine: Engine, key: str, user: UserRef
) -> web.Response:
    kind = content_type(request)
    if kind not in PUT_TYPES and not kind.endswith("+xml"):
        raise web.HTTPUnsupportedMediaType(text=f"send the document as {counterpath.MIME_TYPE}\n")
    body = await read_body(request)
    # Off the event loop: a 1,000-entry document takes milliseconds to parse.
    entries = await asyncio.to_thread(counterpath.parse, body)
    limit = 2 * engine.config.documents[key].max_entries
    if len(entries) > limit:
        # No phone holds this many (Snom: 1,000); creating them all would flood the source.
        raise XcapConflict("constraint-failure", f"more than {limit} entries")
    if_match = request.headers.get("If-Match")
    named = None if if_match is None or entity_tags(if_match) is None else named_etags(if_match)
    precondition = _precondition(request, engine.config.documents[key].strict_etags)
    result = await engine.put(key, user, entries, device_of(request), named, precondition)
    return web.Response(status=200, headers={"ETag": result.etag})


async def node(
    request: web.Request, key: str, user: UserRef, selector: Selector
) -> web.StreamResponse:
    """GET / PUT / DELETE of an element or attribute of the directory document."""
    engine = request.app[keys.ENGINE]
    # The version as it is now: preconditions are checked and changes made against it.
    rendered = await engine.document(key, user, current=True)
    strict = engine.config.documents[key].strict_etags
    if not if_match_holds(request.headers.get("If-Match"), rendered.etag) and (
        strict or request.method in ("GET", "HEAD")
    ):
        raise PreconditionFailed("If-Match does not name the current version")
    if not if_none_match_holds(request.headers.get("If-None-Match"), rendered.etag):
        if request.method in ("GET", "HEAD"):
            return web.Response(status=304, headers={"ETag": rendered.etag})
        raise PreconditionFailed("If-None-Match names the current version")
    if request.method in ("GET", "HEAD"):
        index = await _index(rendered)
        return read_node_response(index.root, selector, rendered.etag, rendered.body, index)
    # A copy of its own: the change is made to it.
    root = await asyncio.to_thread(parse_document, rendered.body)
    created = await change_node(request, root, selector)
    # The changed document goes through the same merge as a phone's whole-document PUT,
    # with the version it was made from as its base.
    entries = await asyncio.to_thread(_reparsed, root)
    result = await engine.put(
        key,
        user,
        entries,
        device_of(request),
        precondition=_precondition(request, strict),
        base=rendered.entries,  # the operation was made on the document as it is now
    )
    return web.Response(status=201 if created else 200, headers={"ETag": result.etag})


#: Parsed trees of recently read document versions with their elements' byte offsets,
#: by ETag, for element GETs: a 1,000-entry document takes milliseconds to parse, a node
#: selector microseconds to follow. Only read from (a change parses a copy of its own).
_INDEXES: OrderedDict[str, ElementIndex] = OrderedDict()
CACHED_INDEXES = 4


def _reparsed(root: etree._Element) -> list[Entry]:
    return counterpath.parse(serialize(root))


async def _index(rendered: Rendered) -> ElementIndex:
    index = _INDEXES.pop(rendered.etag, None)
    if index is None:
        root = await asyncio.to_thread(parse_document, rendered.body)
        index = ElementIndex(root, rendered.body)
    _INDEXES[rendered.etag] = index  # now the most recently used
    while len(_INDEXES) > CACHED_INDEXES:
        _INDEXES.popitem(last=False)
    return index


def _precondition(request: web.Request, strict: bool) -> Callable[[str], None]:
    """The request's If-Match / If-None-Match, checked by the engine against the version
    current when it merges (the document may change while the request waits). Merging
    against the version If-Match names is the default; strict_etags asks for RFC 4825's
    412 when it is not the current one."""
    if_match = request.headers.get("If-Match")
    if_none_match = request.headers.get("If-None-Match")

    def check(current: str) -> None:
        if strict and not if_match_holds(if_match, current):
            raise PreconditionFailed("If-Match does not name the current version")
        if not if_none_match_holds(if_none_match, current):
            raise PreconditionFailed("If-None-Match names the current version")

    return check
