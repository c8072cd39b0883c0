"""create_app(config): the aiohttp application, with the engine as a cleanup context."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import hdrs, web

from gateway import control, keys, phonebook_views
from gateway.auth.directory import directory_password_check
from gateway.auth.middleware import LOGIN, Authenticator
from gateway.config import Config, ConfigError, load_config
from gateway.connection_guard import SERVER_NAME
from gateway.engine import Engine
from gateway.formats.urls import phonebook_path
from gateway.logs import event, flush_requests, request_line
from gateway.metrics import CONTENT_TYPE as METRICS_TYPE
from gateway.xcap.uri import request_path
from gateway.xcap.views import xcap_handler

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(config: Config) -> web.Application:
    engine = Engine(config)
    authenticator = Authenticator(config, directory_password_check(config, engine), engine.metrics)
    app = web.Application(
        client_max_size=config.server.max_body_size,
        middlewares=[_request_log, _unencoded_bodies, authenticator.middleware],
    )
    app.on_response_prepare.append(_server_header)
    app[keys.CONFIG] = config
    app[keys.ENGINE] = engine
    app[keys.AUTHENTICATOR] = authenticator
    app.cleanup_ctx.append(_engine_lifetime)
    app.cleanup_ctx.append(control.control_socket)
    # Outside any XCAP path: a document URI always has at least three segments.
    app.router.add_get("/healthz", control.alive)
    app.router.add_get("/readyz", control.ready)
    app.router.add_get("/metrics", _metrics)
    phonebook_views.add_routes(app, config.server.phonebook_root)
    app.router.add_route("*", "/{tail:.*}", xcap_handler)
    return app


#: How long a thread may hold the interpreter lock while another waits for it (CPython's
#: default is 5 ms). Compositions, merges and index hand-offs run in worker threads; the
#: event loop waited up to a switch interval at each hand-over, several per request: with
#: 1 ms, another phone's GETs while PUTs land on a 100k document took half as long at p99
#: (bench.put_latency). With no other thread wanting the lock (plain serving) it changes
#: nothing.
SWITCH_INTERVAL = 0.001


async def _engine_lifetime(app: web.Application) -> AsyncIterator[None]:
    engine = app[keys.ENGINE]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    await engine.start()
    flusher = asyncio.create_task(_flush_request_lines())
    try:
        yield
    finally:
        flusher.cancel()
        await engine.stop()
        flush_requests()
        sys.setswitchinterval(switch_interval)


#: How long a request line may wait in the buffer before it is written.
FLUSH_EVERY = 0.25


async def _flush_request_lines() -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY)
        flush_requests()


def create_metrics_app(engine: Engine) -> web.Application:
    """What [server] metrics_listen serves: /metrics, /healthz and /readyz, to anyone."""
    app = web.Application(client_max_size=1024, middlewares=[_unencoded_bodies])
    app.on_response_prepare.append(_server_header)
    app[keys.ENGINE] = engine
    app.router.add_get("/healthz", control.alive)
    app.router.add_get("/readyz", control.ready)
    app.router.add_get("/metrics", _exposition)
    return app


async def _metrics(request: web.Request) -> web.Response:
    """/metrics on the XCAP listeners, as [server] metrics and metrics_listen allow."""
    server = request.app[keys.ENGINE].config.server
    if server.metrics == "off" or server.metrics_listen:
        raise web.HTTPNotFound(text="not here\n")
    if server.metrics == "admins":
        # The authenticator let the request through; only an admin reads the figures.
        login = request.get(LOGIN)
        if login is None or login not in request.app[keys.ENGINE].config.auth.admins:
            raise web.HTTPForbidden(text="/metrics is for [auth] admins\n")
    return await _exposition(request)


async def _exposition(request: web.Request) -> web.Response:
    body = request.app[keys.ENGINE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


@web.middleware
async def _unencoded_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request bodies come as sent: a coded one is refused before anything reads it
    (RFC 7694: 415 with the codings accepted; phones never compress what they PUT)."""
    codings = {
        coding.strip().lower()
        for value in request.headers.getall(hdrs.CONTENT_ENCODING, [])
        for coding in value.split(",")
    }
    if codings - {"", "identity"}:
        raise web.HTTPUnsupportedMediaType(
            text="request bodies are accepted without Content-Encoding\n",
            headers={"Accept-Encoding": "identity"},
        )
    return await handler(request)


@web.middleware
async def _request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One line and one counter per request: user, document, status, bytes, milliseconds."""
    started = time.monotonic()
    status, size = 500, 0
    try:
        response = await handler(request)
        status, size = response.status, response.content_length or 0
        return response
    except web.HTTPException as exc:
        status, size = exc.status, len(exc.text or "")
        raise
    finally:
        engine = request.app[keys.ENGINE]
        document = _document_label(request, engine)
        engine.metrics.request_counter(request.method, status, document).inc()
        if request.path not in ("/healthz", "/readyz", "/metrics"):
            request_line(
                method=request.method,
                path=request.path,
                user=request.get(LOGIN),
                document=document,
                status=status,
                bytes=size,
                ms=round((time.monotonic() - started) * 1000, 1),
            )


def _document_label(request: web.Request, engine: Engine) -> str:
    """The configured document key, the application usage, or "-" (bounded cardinality)."""
    server = engine.config.server
    if request.path.startswith(server.phonebook_root + "/"):
        book = phonebook_path(request, server.phonebook_root)
        document = book.document if book is not None and book.user else ""
        return document if document in engine.config.documents else "-"
    path = request_path(request, server.xcap_root)
    if path is None:
        return "-"
    found = engine.find_document(path.auid, path.document) if path.user else None
    return (
        found[0] if found else (path.auid if path.auid in ("resource-lists", "xcap-caps") else "-")
    )


async def reload(app: web.Application, path: Path) -> bool:
    """Re-read the configuration file and take its sources, documents and users without
    dropping connections; an invalid file is logged and the running configuration kept."""
    engine = app[keys.ENGINE]
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            event("reload_rejected", logging.ERROR, problem=str(problem))
        return False
    if config.server.model_dump() != engine.config.server.model_dump():
        event(
            "reload_partial",
            logging.WARNING,
            detail="[server] changes (listeners, TLS, limits) take effect after a restart",
        )
        config = config.model_copy(update={"server": engine.config.server})
    await engine.reload(config)
    authenticator = app[keys.AUTHENTICATOR]
    authenticator.reload(config)
    authenticator.ldap_check = directory_password_check(config, engine)
    event("reloaded", path=path, sources=len(config.sources), documents=len(config.documents))
    return True
