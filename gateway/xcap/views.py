"""The XCAP front end's one handler: which document a URI names, then the view for it."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway import keys
from gateway.compose import NotReady
from gateway.connector import UnsafeTemplateValue
from gateway.logs import event
from gateway.store import StoreUnavailable
from gateway.xcap import caps, directory_views, resourcelists, stored_views
from gateway.xcap.errors import XcapConflict
from gateway.xcap.http import PreconditionFailed, check_preconditions, conflict_response
from gateway.xcap.nodes import NotAllowed, WrongType
from gateway.xcap.selector import BadSelector, Selector, SelectorTooLarge, parse_selector
from gateway.xcap.uri import XcapPath, request_path

RETRY_AFTER = 30
#: The database comes back (or another replica answers) sooner than a source's first sync.
STORE_RETRY_AFTER = 10


async def xcap_handler(request: web.Request) -> web.StreamResponse:
    config = request.app[keys.ENGINE].config
    path = request_path(request, config.server.xcap_root)
    if path is None:
        raise web.HTTPNotFound(text="not an XCAP document URI\n")
    if not _domain_served(config.auth.domains, path):
        raise web.HTTPNotFound(text="no such user\n")
    try:
        return await _dispatch(request, path)
    except UnsafeTemplateValue as exc:
        # A value a per-user source cannot be filled with names no user: not a server error.
        raise web.HTTPNotFound(text="no such user\n") from exc
    except XcapConflict as conflict:
        return conflict_response(conflict, _document_uri(request, path))
    except BadSelector as exc:
        raise web.HTTPNotFound(text=f"not a node selector: {exc}\n") from exc
    except SelectorTooLarge as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from exc
    except PreconditionFailed as exc:
        raise web.HTTPPreconditionFailed(text=f"{exc}\n") from exc
    except WrongType as exc:
        raise web.HTTPUnsupportedMediaType(text=f"send {exc.args[0]}\n") from exc
    except NotAllowed as exc:
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"], text=f"{exc}\n") from exc
    except NotReady as exc:
        # The phone keeps what it has and asks again; a PUT stays on its flash meanwhile.
        raise web.HTTPServiceUnavailable(
            text=f"{exc}; try again shortly\n", headers={"Retry-After": str(RETRY_AFTER)}
        ) from exc
    except StoreUnavailable as exc:
        # Nothing was acknowledged that is not durable: the phone keeps its change and
        # sends it again.
        event("store_unavailable", logging.WARNING, method=request.method, detail=str(exc))
        raise web.HTTPServiceUnavailable(
            text="the state database cannot be reached; nothing was changed, try again\n",
            headers={"Retry-After": str(STORE_RETRY_AFTER)},
        ) from exc


async def _dispatch(request: web.Request, path: XcapPath) -> web.StreamResponse:
    engine = request.app[keys.ENGINE]
    if path.auid == caps.AUID:
        if path.scope != "global" or path.document != "index" or path.selector is not None:
            raise web.HTTPNotFound(text="xcap-caps has one document: global/index\n")
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        body, etag = caps.document(engine.config)
        if (answer := check_preconditions(request, etag)) is not None:
            return answer
        return web.Response(body=body, content_type=caps.MIME_TYPE, headers={"ETag": etag})
    if path.user is None:
        raise web.HTTPNotFound(text="no such global document\n")
    if (found := engine.find_document(path.auid, path.document)) is not None:
        key = found[0]
        if path.selector is None:
            return await directory_views.document(request, key, path.user)
        selector = _selector(path)
        return await directory_views.node(request, key, path.user, selector)
    if path.auid == resourcelists.AUID and engine.store is not None:
        if path.selector is None:
            return await stored_views.document(request, engine.store, path.user, path.document)
        return await stored_views.node(
            request,
            engine.store,
            path.user,
            path.document,
            _selector(path),
        )
    raise web.HTTPNotFound(text="no such document\n")


def _domain_served(domains: list[str], path: XcapPath) -> bool:
    """With [auth] domains set, users of other domains do not exist here, whoever asks."""
    return path.user is None or not domains or path.user.domain in domains


def _selector(path: XcapPath) -> Selector:
    assert path.selector is not None
    # Both the directory dialect and resource-lists default to the resource-lists namespace.
    return parse_selector(path.selector, path.namespaces, resourcelists.NAMESPACE)


def _document_uri(request: web.Request, path: XcapPath) -> str:
    raw = request.rel_url.raw_path.split("?", 1)[0]
    return f"{request.scheme}://{request.host}{raw.split('/~~/', 1)[0]}"
