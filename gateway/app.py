"""create_app(config): the aiohttp application, with the engine as a cleanup context."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import control, keys
from gateway.auth.middleware import Authenticator, PasswordCheck
from gateway.config import Config
from gateway.connector import ConnectorError
from gateway.engine import Engine
from gateway.model import UserRef
from gateway.xcap.views import xcap_handler


def create_app(config: Config) -> web.Application:
    engine = Engine(config)
    authenticator = Authenticator(config, _directory_password_check(config, engine))
    app = web.Application(
        client_max_size=config.server.max_body_size, middlewares=[authenticator.middleware]
    )
    app[keys.CONFIG] = config
    app[keys.ENGINE] = engine
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


def _directory_password_check(config: Config, engine: Engine) -> PasswordCheck | None:
    """Basic authentication against the directory of [auth] ldap_source, if set."""
    name = config.auth.ldap_source
    if name is None:
        return None

    async def check(login: str, password: str) -> bool:
        connector = engine.sources.state(name, UserRef("")).connector
        try:
            return await connector.check_password(login, password)
        except ConnectorError:
            return False

    return check
