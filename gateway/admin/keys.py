"""The console's application keys (beside gateway.keys, which it shares with the XCAP
application: CONFIG, ENGINE, AUTHENTICATOR)."""

from __future__ import annotations

from aiohttp import web
from jinja2 import Environment

from gateway.admin.csrf import CsrfTokens
from gateway.admin.recent import RecentEvents

TEMPLATES = web.AppKey("admin_templates", Environment)
CSRF = web.AppKey("admin_csrf", CsrfTokens)
RECENT = web.AppKey("admin_recent", RecentEvents)
