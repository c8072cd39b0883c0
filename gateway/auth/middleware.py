"""The aiohttp middleware that authenticates every XCAP request and lets a user reach only
the documents under their own xui (admins: everything; global documents: read-only)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from gateway.auth.digest import Digest, DigestFailed, UriMismatch, parse_params
from gateway.auth.limits import Attempt, FailureLimiter
from gateway.auth.users import UserFile
from gateway.config import AuthConfig, Config
from gateway.formats.urls import phonebook_path
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
#: Retry-After when the directory that checks passwords cannot be reached.
UNAVAILABLE_RETRY_SECONDS = 30
#: Log no more of a user name sent by a client than this.
LOGGED_NAME_CHARS = 100


class PasswordCheckUnavailable(Exception):
    """A password check could not be made (the directory is down): not a wrong password."""


def _loggable(name: str | None) -> str | None:
    """A client-sent name for the log: control characters escaped, length bounded."""
    if name is None:
        return None
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name[:LOGGED_NAME_CHARS])
    return shown + ("…" if len(name) > LOGGED_NAME_CHARS else "")


def _too_many(wait: float) -> web.HTTPTooManyRequests:
    return web.HTTPTooManyRequests(
        text="too many failed logins; try later\n", headers={"Retry-After": str(int(wait) + 1)}
    )


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
        self.limiter = FailureLimiter(
            self.auth.failure_window,
            self.auth.max_failures,
            self.auth.max_failures_per_user,
            self.auth.max_failures_per_address,
        )
        self.ldap_check = ldap_check

    def reload(self, config: Config) -> None:
        """New users file, realms, admins, limits; nonces and failure counts carry over."""
        self.config, self.auth = config, config.auth
        self.users = UserFile(self.auth.users_file) if self.auth.users_file else None
        self.digest.lifetime = self.auth.nonce_lifetime
        self.limiter.configure(
            self.auth.failure_window,
            self.auth.max_failures,
            self.auth.max_failures_per_user,
            self.auth.max_failures_per_address,
        )

    def realm_for(self, path: XcapPath | None) -> str:
        domain = path.user.domain if path is not None and path.user is not None else ""
        return self.auth.realms.get(domain, self.auth.realm)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.auth.mode == "none" or (request.path in OPEN_PATHS and not self._guarded(request)):
            return await handler(request)
        if self.auth.mode == "basic" and not request.secure and not self.auth.allow_insecure_basic:
            # No challenge here: a client that got one would send its password in clear.
            raise web.HTTPForbidden(text="basic authentication needs HTTPS\n")
        server = self.config.server
        # A phonebook URL names its owner as an XCAP URL does: the same rules apply. Under
        # phonebook_root the phonebook handler answers, so its reading of the URL counts.
        if request.path.startswith(server.phonebook_root + "/"):
            path = phonebook_path(request, server.phonebook_root)
        else:
            path = request_path(request, server.xcap_root)
        realm = self.realm_for(path)
        address = request.remote or "-"
        if wait := self.limiter.blocked(address):
            raise _too_many(wait)
        scheme, _, credentials = request.headers.get(hdrs.AUTHORIZATION, "").strip().partition(" ")
        if self.auth.mode == "digest" and scheme.lower() == "digest" and self.users is not None:
            login = await self._digest(request, credentials, realm, address)
        elif self.auth.mode == "basic" and scheme.lower() == "basic":
            login = await self._basic(request, credentials, realm, address)
        else:
            login = None  # no credentials (of the scheme asked for): a challenge, not a failure
        if login is None:
            return self._challenge(realm, stale=False)
        if isinstance(login, web.Response):
            return login
        if not self._allowed(login, path, request.method):
            event(
                "forbidden", logging.WARNING, user=login, method=request.method, path=request.path
            )
            raise web.HTTPForbidden(text="you may only reach your own documents\n")
        request[LOGIN] = login
        return await handler(request)

    def _guarded(self, request: web.Request) -> bool:
        """/metrics under [server] metrics = "admins" (and no metrics_listen): its handler
        needs the login, so the request is authenticated like a document's."""
        server = self.config.server
        return (
            request.path == "/metrics" and server.metrics == "admins" and not server.metrics_listen
        )

    async def _begin(self, address: str, user: str | None) -> Attempt:
        """The attempt, counted as in flight; 429 if a block holds (for every attempt while
        it lasts, the right password included: else a guesser would learn when it hit)."""
        attempt = await self.limiter.begin(address, user)
        if not isinstance(attempt, Attempt):
            raise _too_many(attempt)
        return attempt

    async def _digest(
        self, request: web.Request, credentials: str, realm: str, address: str
    ) -> str | web.Response:
        assert self.users is not None
        try:
            user: str | None = parse_params(credentials).get("username")
        except DigestFailed:
            user = None
        attempt = await self._begin(address, user)
        try:
            login = self.digest.verify(
                credentials, request.method, request.raw_path, realm, self.users.digest_ha1
            )
        except UriMismatch:
            attempt.abandoned()
            raise web.HTTPBadRequest(text="the digest uri is not this request's target\n") from None
        except DigestFailed as exc:
            if exc.stale:
                attempt.abandoned()  # the right password, an old nonce: fetch a new one
                return self._challenge(realm, stale=True)
            return self._failed(request, attempt, realm, exc.user, str(exc))
        attempt.succeeded()
        return login

    async def _basic(
        self, request: web.Request, credentials: str, realm: str, address: str
    ) -> str | web.Response:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            attempt = await self._begin(address, None)
            return self._failed(request, attempt, realm, None, "malformed basic credentials")
        login, _, password = decoded.partition(":")
        attempt = await self._begin(address, login)
        try:
            right = await self._check_password(login, password)
        except PasswordCheckUnavailable as exc:
            attempt.abandoned()
            event("auth_unavailable", logging.ERROR, user=_loggable(login), detail=str(exc))
            raise web.HTTPServiceUnavailable(
                text="the password check is unavailable; try later\n",
                headers={"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
            ) from None
        except BaseException:
            attempt.abandoned()  # cancelled: the answer is never sent, so nothing is learnt
            raise
        if not right:
            return self._failed(request, attempt, realm, login, "wrong password")
        attempt.succeeded()
        return login

    async def _check_password(self, login: str, password: str) -> bool:
        if self.users is not None and await asyncio.to_thread(
            self.users.check_password, login, password
        ):
            return True
        return self.ldap_check is not None and await self.ldap_check(login, password)

    def _failed(
        self, request: web.Request, attempt: Attempt, realm: str, user: str | None, reason: str
    ) -> web.Response:
        attempt.failed()
        if self.metrics is not None:
            self.metrics.auth_failures.inc()
        event(
            "auth_failed",
            logging.WARNING,
            client=request.remote,
            user=_loggable(user),
            reason=reason,
        )
        return self._challenge(realm, stale=False)

    def _challenge(self, realm: str, stale: bool) -> web.Response:
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
