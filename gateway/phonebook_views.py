"""The phone formats besides XCAP: `{phonebook_root}/{format}/users/{xui}/{document}`,
where `{document}` is the `[documents.NAME]` key (and caller-ID lookup at
`{phonebook_root}/lookup/users/{xui}/{document}`, gateway.lookup_views). GET, HEAD and
POST (Snom's Remote XML Directory fetches with POST; a body is ignored) answer the same
bytes, with a strong ETag, 304 on If-None-Match and gzip when asked. Authentication and owner rules are the
XCAP document's (the authenticator reads the xui through `phonebook_path`)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

from gateway import keys
from gateway.compose import NotReady, Rendered
from gateway.connector import UnsafeTemplateValue
from gateway.formats import MAX_LIMIT, MAX_QUERY, BadQuery, Format, Query, load_format
from gateway.formats.urls import phonebook_path
from gateway.lookup_views import LOOKUP, lookup_answer
from gateway.store import StoreUnavailable
from gateway.xcap.http import accepts_gzip, representation
from gateway.xcap.uri import XcapPath

METHODS = ("GET", "HEAD", "POST")
RETRY_AFTER = 30
#: A host name or address, with a port: what may go into a link on a page.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::[0-9]{1,5})?"
)
#: Renderings of the whole list kept per (format, composition version): phones polling
#: the same book get the same bytes without rendering them again.
CACHED_RENDERINGS = 256


@dataclass(frozen=True)
class Rendering:
    body: bytes
    gzipped: bytes
    etag: str


def query_of(request: web.Request, fmt: Format) -> Query:
    """`q`, `offset` and `limit`, and the parameters of the format's own protocol;
    BadQuery for what no phone sends."""
    params = request.rel_url.query
    term = params.get("q", "").strip()
    if len(term) > MAX_QUERY or any(ord(c) < 32 for c in term):
        raise BadQuery(f"q is at most {MAX_QUERY} printable characters")
    # A format may claim one of our names for its own protocol (Gigaset's handsets send
    # limit=2048): then the format reads it, and we do not.
    own = {name: params[name] for name in getattr(fmt, "parameters", ()) if name in params}
    for name, value in own.items():
        if len(value) > MAX_QUERY or any(ord(c) < 32 for c in value):
            raise BadQuery(f"{name} is at most {MAX_QUERY} printable characters")
    return Query(
        q="" if "q" in own else term,
        offset=0 if "offset" in own else _number(params.get("offset"), "offset", 0, 10**6) or 0,
        limit=None if "limit" in own else _number(params.get("limit"), "limit", 1, MAX_LIMIT),
        # Only a format that links to itself needs the absolute URL (built per request).
        url=_own_url(request) if getattr(fmt, "uses_url", False) else request.rel_url.path,
        params=own,
    )


def _own_url(request: web.Request) -> str:
    """The URL the phone asked for, without its query: an absolute URL (Cisco's phones
    want them in soft keys) from the `Host` it sent and the scheme (`X-Forwarded-Proto`
    from a TLS-terminating proxy), or just the path when the Host is no host name. Either
    goes only into this requester's own page (cached pages are kept per URL)."""
    path = request.rel_url.with_query(None).raw_path
    host = request.headers.get("Host", "")
    if not _HOST.fullmatch(host):
        return path
    scheme = request.headers.get("X-Forwarded-Proto", "").strip().lower()
    if scheme not in ("http", "https"):
        scheme = request.scheme
    return f"{scheme}://{host}{path}"


def _number(value: str | None, name: str, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    # The length first: int() of thousands of digits is slow, and past 4,300 it raises.
    if len(value) > len(str(high)) or not value.isascii() or not value.isdigit():
        raise BadQuery(f"{name} is a whole number from {low} to {high}")
    if not low <= int(value) <= high:
        raise BadQuery(f"{name} is a whole number from {low} to {high}")
    return int(value)


async def phonebook_handler(request: web.Request) -> web.StreamResponse:
    engine = request.app[keys.ENGINE]
    config = engine.config
    path = phonebook_path(request, config.server.phonebook_root)
    if path is None or path.user is None:
        raise web.HTTPNotFound(text="not a phonebook URL: {root}/{format}/users/{xui}/{doc}\n")
    document = config.documents.get(path.document)
    domains = config.auth.domains
    if document is None or (domains and path.user.domain not in domains):
        raise web.HTTPNotFound(text="no such document\n")
    if path.auid == LOOKUP:
        return await lookup_answer(request, lambda: composed(request, path))
    if path.auid not in document.formats:
        raise web.HTTPNotFound(text=f"{path.document} is not served as {path.auid}\n")
    if request.method not in METHODS:
        raise web.HTTPMethodNotAllowed(request.method, list(METHODS))
    fmt = load_format(path.auid)
    try:
        query = query_of(request, fmt)
    except BadQuery as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from exc
    rendered = await composed(request, path)
    if not getattr(fmt, "searchable", True):
        query = Query()  # the format lists everything (a phone's local copy): one rendering
    if query.plain:
        rendering = await _cached(request.app, fmt, rendered, query)
    else:
        # Off the event loop: a search over a big book must not stall everyone's polls.
        # Gzipped only when asked (once per answer, unlike the cached lists).
        zipped = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        try:
            rendering = await asyncio.to_thread(_render, fmt, rendered, query, zipped)
        except BadQuery as exc:  # a format's own parameters, read by the format
            raise web.HTTPBadRequest(text=f"{exc}\n") from exc
    return _answer(request, fmt, rendering)


async def composed(request: web.Request, path: XcapPath) -> Rendered:
    """The document the path names, composed for its user; 404 for an xui no source
    template can take, 503 while a source has no data yet."""
    assert path.user is not None
    try:
        return await request.app[keys.ENGINE].document(path.document, path.user)
    except UnsafeTemplateValue as exc:
        raise web.HTTPNotFound(text="no such user\n") from exc
    except NotReady as exc:
        raise web.HTTPServiceUnavailable(
            text=f"{exc}; try again shortly\n", headers={"Retry-After": str(RETRY_AFTER)}
        ) from exc
    except StoreUnavailable as exc:  # a book not in memory, and the database is down
        raise web.HTTPServiceUnavailable(
            text="the state database cannot be reached; try again shortly\n",
            headers={"Retry-After": str(RETRY_AFTER)},
        ) from exc


def _render(fmt: Format, rendered: Rendered, query: Query, zipped: bool = True) -> Rendering:
    body = fmt.render(rendered.directory, query)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    # The cached lists are compressed hard once; an answer to one search, quickly.
    packed = gzip.compress(body, compresslevel=9 if query.plain else 6, mtime=0) if zipped else body
    return Rendering(body, packed, etag)


class Renderings(OrderedDict[tuple[str, str, str], Rendering]):
    """(format, composition ETag, URL where the format links to it) -> its rendering,
    least recently used first."""


_CACHE = web.AppKey("phonebook_renderings", Renderings)
#: Pages that link to their own URL, kept apart: each Host a client sends is a URL of its
#: own, and must not push the lists every phone polls out of the cache.
_URL_CACHE = web.AppKey("phonebook_url_renderings", Renderings)


def add_routes(app: web.Application, root: str) -> None:
    """The phonebook URLs, before the XCAP catch-all."""
    app[_CACHE] = Renderings()
    app[_URL_CACHE] = Renderings()
    app.router.add_route("*", root + "/{tail:.*}", phonebook_handler)


async def _cached(app: web.Application, fmt: Format, rendered: Rendered, query: Query) -> Rendering:
    """The rendering of the whole list; made (off the event loop) only when this version
    of the document has none in this format yet."""
    # A format that links to its own URL (paging, search) renders per URL: two users
    # with the same book each get links to theirs.
    per_url = bool(getattr(fmt, "uses_url", False))
    cache = app[_URL_CACHE] if per_url else app[_CACHE]
    key = (fmt.name, rendered.etag, query.url if per_url else "")
    if (found := cache.get(key)) is not None:
        cache.move_to_end(key)
        return found
    rendering = await asyncio.to_thread(_render, fmt, rendered, query)
    cache[key] = rendering
    while len(cache) > CACHED_RENDERINGS:
        cache.popitem(last=False)
    return rendering


def _answer(request: web.Request, fmt: Format, rendering: Rendering) -> web.Response:
    return representation(
        request, rendering.body, rendering.gzipped, rendering.etag, fmt.content_type, "utf-8"
    )
