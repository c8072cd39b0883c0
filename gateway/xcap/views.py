"""HTTP handlers for directory documents: GET / HEAD from memory, PUT into write-back."""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway.compose import NotReady, Rendered
from gateway.engine import PreconditionFailed
from gateway.model import UserRef
from gateway.xcap import counterpath
from gateway.xcap.errors import XCAP_ERROR_TYPE, XcapConflict
from gateway.xcap.uri import parse_document_path

ALLOWED = "GET, HEAD, PUT"
RETRY_AFTER = 30
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


async def xcap_handler(request: web.Request) -> web.StreamResponse:
    config = request.app[keys.CONFIG]
    engine = request.app[keys.ENGINE]
    try:
        path = parse_document_path(request.rel_url.raw_path, config.server.xcap_root)
    except UnicodeDecodeError:
        path = None
    found = path and engine.find_document(path.auid, path.name)
    if not path or not found:
        raise web.HTTPNotFound(text="no such document\n")
    key, _ = found
    if request.method not in ("GET", "HEAD", "PUT"):
        raise web.HTTPMethodNotAllowed(request.method, ALLOWED.split(", "))
    try:
        if request.method == "PUT":
            return await _put(request, key, path.user)
        rendered = await engine.document(key, path.user)
        engine.served(key, path.user, device_of(request), rendered)
        return _serve(request, rendered)
    except NotReady as exc:
        # The phone keeps what it has and asks again; a PUT stays on its flash meanwhile.
        raise web.HTTPServiceUnavailable(
            text=f"{exc}; try again shortly\n", headers={"Retry-After": str(RETRY_AFTER)}
        ) from exc


def _serve(request: web.Request, rendered: Rendered) -> web.Response:
    headers = {"ETag": rendered.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if _matches(request.headers.get("If-None-Match"), rendered.etag):
        return web.Response(status=304, headers=headers)
    body = rendered.body
    # One ETag for both encodings: it names the document version, which is what
    # XCAP clients send back in If-Match.
    if _accepts_gzip(request.headers.get("Accept-Encoding", "")):
        body = rendered.gzipped
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers, content_type=counterpath.MIME_TYPE)


async def _put(request: web.Request, key: str, user: UserRef) -> web.Response:
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type not in PUT_TYPES and not content_type.endswith("+xml"):
        raise web.HTTPUnsupportedMediaType(text=f"send the document as {counterpath.MIME_TYPE}\n")
    body = await request.read()
    try:
        entries = counterpath.parse(body)
    except XcapConflict as conflict:
        return web.Response(status=409, body=conflict.body(), content_type=XCAP_ERROR_TYPE)
    try:
        result = await request.app[keys.ENGINE].put(
            key,
            user,
            entries,
            device_of(request),
            request.headers.get("If-Match"),
            request.headers.get("If-None-Match"),
        )
    except PreconditionFailed as exc:
        raise web.HTTPPreconditionFailed(text=f"{exc}\n") from exc
    return web.Response(status=200, headers={"ETag": result.etag})


def device_of(request: web.Request) -> str:
    """Which device asks: a user often has a desk phone and a softphone."""
    return f"{request.headers.get('User-Agent', '')}|{request.remote or ''}"


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


def _accepts_gzip(header: str) -> bool:
    for part in header.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False
