"""create_admin_app(main_app): the console as an aiohttp application beside the XCAP one,
sharing its engine and authenticator (the same users file, realms, failure limits and
admins, reloads included)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway import keys
from gateway.admin import views
from gateway.admin.csrf import FIELD, CsrfTokens
from gateway.admin.keys import CSRF, RECENT, TEMPLATES
from gateway.admin.recent import RecentEvents
from gateway.admin.templates import environment
from gateway.auth.middleware import LOGIN
from gateway.connection_guard import SERVER_NAME
from gateway.logs import event

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Form bodies are a token and a button: nothing bigger is read.
MAX_BODY = 4096
#: No script runs on these pages, styles are inline, forms post only here, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_admin_app(main: web.Application) -> web.Application:
    """The console for the gateway `main` (made by gateway.app.create_app)."""
    authenticator = main[keys.AUTHENTICATOR]
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[authenticator.middleware, _admins_only, _csrf_checked],
    )
    app[keys.CONFIG] = main[keys.CONFIG]
    app[keys.ENGINE] = main[keys.ENGINE]
    app[keys.AUTHENTICATOR] = authenticator
    app[TEMPLATES] = environment()
    app[CSRF] = CsrfTokens()
    app[RECENT] = RecentEvents()
    app.on_response_prepare.append(_headers)
    app.cleanup_ctx.append(_recent_events)
    views.add_routes(app)
    return app


async def admin_runner(main: web.Application) -> web.AppRunner | None:
    """The console's runner, set up, when [server] admin_listen names listeners."""
    if not main[keys.CONFIG].server.admin_listen:
        return None
    runner = web.AppRunner(create_admin_app(main), access_log=None)
    await runner.setup()
    return runner


async def _recent_events(app: web.Application) -> AsyncIterator[None]:
    app[RECENT].attach()
    try:
        yield
    finally:
        app[RECENT].detach()


@web.middleware
async def _admins_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After the authenticator: only [auth] admins (read at each request, so a reload
    that removes one takes effect at once)."""
    login = request.get(LOGIN)
    if login is None or login not in request.app[keys.ENGINE].config.auth.admins:
        event("admin_forbidden", user=login, method=request.method, path=request.path)
        raise web.HTTPForbidden(text="the admin console is for [auth] admins\n")
    return await handler(request)


@web.middleware
async def _csrf_checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request that may change something carries the login's token, or is refused
    before its handler runs."""
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        token = form.get(FIELD)
        if not isinstance(token, str) or not request.app[CSRF].valid(request[LOGIN], token):
            event("admin_csrf_refused", user=request[LOGIN], path=request.path)
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page\n")
    return await handler(request)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
