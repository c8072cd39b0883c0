"""The aiohttp middleware that authenticates every XCAP request and lets a user reach only
the documents under their own xui (admins: everything; global documents: read-only)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from gateway.auth.digest import Digest, DigestFailed
from gateway.auth.limits import FailureLimiter
from gateway.auth.users import UserFile
from gateway.config import AuthConfig, Config
from gateway.logs import event
from gateway.metrics import Metrics
from gateway.model import normalize_xui
from gateway.xcap.uri import XcapPath, request_path

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PasswordCheck = Callable[[str, str], Awaitable[bool]]
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}
#: The authenticated login name, for handlers that need it.
LOGIN = web.RequestKey("login", str)
READS = {"GET", "HEAD"}


class Authenticator:
    def __init__(
        self,
        config: Config,
        ldap_check: PasswordCheck | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.auth: AuthConfig = config.auth
        self.users = UserFile(self.auth.users_file) if self.auth.users_file else None
        self.digest = Digest(self.auth.nonce_lifetime)
        self.limiter = FailureLimiter(self.auth.max_failures, self.auth.failure_window)
        self.ldap_check = ldap_check

    def reload(self, config: Config) -> None:
        """New users file, realms, admins; nonces and failure counts carry over."""
        self.config, self.auth = config, config.auth
        self.users = UserFile(self.auth.users_file) if self.auth.users_file else None

    def realm_for(self, path: XcapPath | None) -> str:
        domain = path.user.domain if path is not None and path.user is not None else ""
        return self.auth.realms.get(domain, self.auth.realm)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.auth.mode == "none" or request.path in OPEN_PATHS:
            return await handler(request)
        path = request_path(request, self.config.server.xcap_root)
        realm = self.realm_for(path)
        client = f"addr:{request.remote}"
        if wait := self.limiter.blocked(client):
            raise web.HTTPTooManyRequests(
                text="too many failed logins; try later\n",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        try:
            login = await self._login(request, header, realm)
        except DigestFailed as exc:
            return self._refuse(request, realm, client, exc.user, str(exc), exc.stale)
        if login is None:
            return self._refuse(request, realm, client, None, "no credentials", False)
        if wait := self.limiter.blocked(f"user:{login}"):
            # A block holds for every attempt while it lasts, the right password included:
            # else a guesser spread over many addresses would learn when it hit.
            raise web.HTTPTooManyRequests(
                text="too many failed logins; try later\n",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        self.limiter.succeeded(f"user:{login}")
        if not self._allowed(login, path, request.method):
            event(
                "forbidden", logging.WARNING, user=login, method=request.method, path=request.path
            )
            raise web.HTTPForbidden(text="you may only reach your own documents\n")
        request[LOGIN] = login
        return await handler(request)

    async def _login(self, request: web.Request, header: str, realm: str) -> str | None:
        scheme, _, credentials = header.partition(" ")
        if self.auth.mode == "digest" and scheme.lower() == "digest":
            if self.users is None:
                return None
            return self.digest.verify(
                credentials, request.method, request.raw_path, realm, self.users.digest_ha1
            )
        if self.auth.mode == "basic" and scheme.lower() == "basic":
            if not request.secure and not self.auth.allow_insecure_basic:
                raise web.HTTPForbidden(text="basic authentication needs HTTPS\n")
            try:
                login, _, password = (
                    base64.b64decode(credentials, validate=True).decode().partition(":")
                )
            except (ValueError, UnicodeDecodeError):
                raise DigestFailed("malformed basic credentials") from None
            if await self._check_password(login, password):
                return login
            raise DigestFailed("wrong password", user=login)
        return None

    async def _check_password(self, login: str, password: str) -> bool:
        if self.users is not None and await asyncio.to_thread(
            self.users.check_password, login, password
        ):
            return True
        return self.ldap_check is not None and await self.ldap_check(login, password)

    def _refuse(
        self,
        request: web.Request,
        realm: str,
        client: str,
        user: str | None,
        reason: str,
        stale: bool,
    ) -> web.Response:
        if user and (wait := self.limiter.blocked(f"user:{user}")):
            raise web.HTTPTooManyRequests(
                text="too many failed logins; try later\n",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        if reason != "no credentials" and not stale:
            if self.metrics is not None:
                self.metrics.auth_failures.inc()
            self.limiter.failed(client, *([f"user:{user}"] if user else []))
            event("auth_failed", logging.WARNING, client=request.remote, user=user, reason=reason)
        if self.auth.mode == "digest":
            algorithms = self.users.algorithms() if self.users else ["MD5"]
            challenges = self.digest.challenges(realm, algorithms, stale)
        else:
            challenges = [f'Basic realm="{realm}", charset="UTF-8"']
        response = web.Response(status=401, text="authentication required\n")
        for challenge in challenges:
            response.headers.add(hdrs.WWW_AUTHENTICATE, challenge)
        return response

    def _allowed(self, login: str, path: XcapPath | None, method: str) -> bool:
        if login in self.auth.admins:
            return True
        if path is None:
            return True  # not a document URI: the handler answers 404 to anyone
        if path.user is None:  # global documents (xcap-caps): everyone reads, nobody writes
            return method in READS
        if self.auth.match == "xui":
            # The xui's domain is normalized: so is the login's, or `alice@A.COM` never matches.
            return normalize_xui(login) == path.user.xui
        return login == path.user.user
