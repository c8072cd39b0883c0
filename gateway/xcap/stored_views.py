"""Documents stored as clients send them (the resource-lists application usage, RFC 4826),
owner-only under users/{xui}/: whole documents and their elements and attributes.

Each change is made against the version its preconditions were checked on and saved only
if that is still the stored version (storage.save is a compare-and-swap). When another
request got there first, a conditional request (If-Match / If-None-Match) is answered 412;
an unconditional one is made again against the new version: the last writer wins, but
never over a change it did not see."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway import keys
from gateway.model import UserRef
from gateway.store import Store
from gateway.xcap import resourcelists, storage
from gateway.xcap.errors import XcapConflict
from gateway.xcap.http import (
    PreconditionFailed,
    apply_node_change,
    check_preconditions,
    conditional,
    content_type,
    node_body,
    read_body,
    read_node_response,
)
from gateway.xcap.selector import Selector
from gateway.xcap.storage import StaleVersion, StoredDocument
from gateway.xcap.xml import parse_document, serialize

ALLOWED = ["GET", "HEAD", "PUT", "DELETE"]
#: An unconditional request that keeps losing the race to others gives up (503) rather than
#: looping for as long as they write.
ATTEMPTS = 20
RETRY_AFTER = 1

Change = Callable[[StoredDocument | None], Awaitable[web.StreamResponse]]


async def _against_current(
    request: web.Request, store: Store, owner: str, path: str, change: Change
) -> web.StreamResponse:
    """`change` made against the current version, after its preconditions were checked on
    that version; again on the newer version when the swap found another (unconditional
    requests only)."""
    for _ in range(ATTEMPTS):
        current = await asyncio.to_thread(storage.load, store, resourcelists.AUID, owner, path)
        if (answer := check_preconditions(request, current.etag if current else None)) is not None:
            return answer
        try:
            return await change(current)
        except StaleVersion as exc:
            if conditional(request):
                raise PreconditionFailed(
                    "the document changed while the request was being processed"
                ) from exc
    raise web.HTTPServiceUnavailable(
        text="the document keeps changing; try again\n", headers={"Retry-After": str(RETRY_AFTER)}
    )


async def document(
    request: web.Request, store: Store, user: UserRef, path: str
) -> web.StreamResponse:
    owner = user.xui
    if request.method not in ALLOWED:
        raise web.HTTPMethodNotAllowed(request.method, ALLOWED)
    body: bytes | None = None

    async def change(current: StoredDocument | None) -> web.StreamResponse:
        nonlocal body
        if request.method in ("GET", "HEAD"):
            if current is None:
                raise web.HTTPNotFound(text="no such document\n")
            return web.Response(
                body=current.body,
                content_type=resourcelists.MIME_TYPE,
                headers={"ETag": current.etag},
            )
        expected = current.etag if current else None
        if request.method == "DELETE":
            if current is None:
                raise web.HTTPNotFound(text="no such document\n")
            await asyncio.to_thread(
                storage.delete, store, resourcelists.AUID, owner, path, current.etag
            )
            return web.Response(status=200)
        if body is None:
            if content_type(request) != resourcelists.MIME_TYPE:
                raise web.HTTPUnsupportedMediaType(text=f"send {resourcelists.MIME_TYPE}\n")
            body = await read_body(request)
            resourcelists.validate(parse_document(body, keep_comments=True))
        limit = request.app[keys.ENGINE].config.server.max_stored_documents
        try:
            saved = await asyncio.to_thread(
                storage.save, store, resourcelists.AUID, owner, path, body, expected, limit
            )
        except storage.TooManyDocuments:
            raise XcapConflict(
                "constraint-failure", f"at most {limit} stored documents per user"
            ) from None
        return web.Response(status=200 if current else 201, headers={"ETag": saved.etag})

    return await _against_current(request, store, owner, path, change)


async def node(
    request: web.Request, store: Store, user: UserRef, path: str, selector: Selector
) -> web.StreamResponse:
    owner = user.xui
    body: bytes | None = None

    async def change(current: StoredDocument | None) -> web.StreamResponse:
        nonlocal body
        if current is None:
            if request.method == "PUT":
                raise XcapConflict("no-parent", "the document does not exist", ancestor="")
            raise web.HTTPNotFound(text="no such document\n")
        root = parse_document(current.body, keep_comments=True)
        if request.method in ("GET", "HEAD"):
            return read_node_response(root, selector, current.etag, current.body)
        if body is None:
            body = await node_body(request)
        created = apply_node_change(request, root, selector, body)
        resourcelists.validate(root)
        changed = serialize(root, current.body)
        _reads_back(changed, request.method)
        saved = await asyncio.to_thread(
            storage.save, store, resourcelists.AUID, owner, path, changed, current.etag
        )
        return web.Response(status=201 if created else 200, headers={"ETag": saved.etag})

    return await _against_current(request, store, owner, path, change)


def _reads_back(document: bytes, method: str) -> None:
    """Refuse to store a document the gateway could not read again: lxml writes what
    libxml2 will not parse back (a namespace name like "urn:x y"), and one such save would
    make every later request on the document a 409. RFC 4825 §11 cannot-insert (a GET
    after the PUT would not give what was put) or cannot-delete."""
    try:
        parse_document(document, keep_comments=True)
    except XcapConflict as exc:
        condition = "cannot-insert" if method == "PUT" else "cannot-delete"
        raise XcapConflict(condition, f"the document would not read back: {exc.phrase}") from exc
