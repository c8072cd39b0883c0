"""create_app(config): the aiohttp application, with the engine as a cleanup context."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import control, keys
from gateway.config import Config
from gateway.engine import Engine
from gateway.xcap.views import xcap_handler


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=config.server.max_body_size)
    app[keys.CONFIG] = config
    app[keys.ENGINE] = Engine(config)
    app.cleanup_ctx.append(_engine_lifetime)
    app.cleanup_ctx.append(control.control_socket)
    # Outside any XCAP path: a document URI always has at least three segments.
    app.router.add_get("/healthz", control.alive)
    app.router.add_get("/readyz", control.ready)
    app.router.add_route("*", "/{tail:.*}", xcap_handler)
    return app


async def _engine_lifetime(app: web.Application) -> AsyncIterator[None]:
    engine = app[keys.ENGINE]
    await engine.start()
    try:
        yield
    finally:
        await engine.stop()
