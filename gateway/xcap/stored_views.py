"""Documents stored as clients send them (the resource-lists application usage, RFC 4826),
owner-only under users/{xui}/: whole documents and their elements and attributes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.model import UserRef
from gateway.store import Store
from gateway.xcap import resourcelists, storage
from gateway.xcap.errors import XcapConflict
from gateway.xcap.http import (
    change_node,
    check_preconditions,
    content_type,
    read_body,
    read_node_response,
)
from gateway.xcap.selector import Selector
from gateway.xcap.xml import parse_document, serialize

ALLOWED = ["GET", "HEAD", "PUT", "DELETE"]


async def document(
    request: web.Request, store: Store, user: UserRef, path: str
) -> web.StreamResponse:
    owner = user.xui
    current = await asyncio.to_thread(storage.load, store, resourcelists.AUID, owner, path)
    if (answer := check_preconditions(request, current.etag if current else None)) is not None:
        return answer
    if request.method in ("GET", "HEAD"):
        if current is None:
            raise web.HTTPNotFound(text="no such document\n")
        return web.Response(
            body=current.body, content_type=resourcelists.MIME_TYPE, headers={"ETag": current.etag}
        )
    if request.method == "PUT":
        if content_type(request) != resourcelists.MIME_TYPE:
            raise web.HTTPUnsupportedMediaType(text=f"send {resourcelists.MIME_TYPE}\n")
        body = await read_body(request)
        resourcelists.validate(parse_document(body, keep_comments=True))
        saved = await asyncio.to_thread(storage.save, store, resourcelists.AUID, owner, path, body)
        return web.Response(status=200 if current else 201, headers={"ETag": saved.etag})
    if request.method == "DELETE":
        if current is None:
            raise web.HTTPNotFound(text="no such document\n")
        await asyncio.to_thread(storage.delete, store, resourcelists.AUID, owner, path)
        return web.Response(status=200)
    raise web.HTTPMethodNotAllowed(request.method, ALLOWED)


async def node(
    request: web.Request, store: Store, user: UserRef, path: str, selector: Selector
) -> web.StreamResponse:
    owner = user.xui
    current = await asyncio.to_thread(storage.load, store, resourcelists.AUID, owner, path)
    if (answer := check_preconditions(request, current.etag if current else None)) is not None:
        return answer
    if current is None:
        if request.method == "PUT":
            raise XcapConflict("no-parent", "the document does not exist", ancestor="")
        raise web.HTTPNotFound(text="no such document\n")
    root = parse_document(current.body, keep_comments=True)
    if request.method in ("GET", "HEAD"):
        return read_node_response(root, selector, current.etag, current.body)
    created = await change_node(request, root, selector)
    resourcelists.validate(root)
    saved = await asyncio.to_thread(
        storage.save, store, resourcelists.AUID, owner, path, serialize(root, current.body)
    )
    return web.Response(status=201 if created else 200, headers={"ETag": saved.etag})
