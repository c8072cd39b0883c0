"""Every typed application key, in one place."""

from __future__ import annotations

from aiohttp import web

from gateway.auth.middleware import Authenticator
from gateway.config import Config
from gateway.engine import Engine

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", Engine)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
