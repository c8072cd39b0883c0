"""The TCP listeners and what guards them: a connection cap below the descriptor limit, a
request-header timeout, short keep-alive, no request-body decompression, quiet accept
errors and parse-error logs that never carry header values.

aiohttp has no header timeout and no connection cap; both hook into its RequestHandler
(the per-connection protocol). The hooks use two of its attributes (`_waiter`: the
handler waits for a complete request header; `_request_count`); tests/test_listeners.py
fails if an aiohttp upgrade changes them.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.config import ServerConfig, split_address
from gateway.logs import event

#: What the `Server` header says: no versions to look vulnerabilities up by.
SERVER_NAME = "xcap-gateway"
#: Connections the kernel queues for us, and asyncio accepts in one go before any of them
#: reaches the guard: the descriptor reserve must hold them.
BACKLOG = 128
#: Descriptors kept free beyond the backlog: the database, sources, logs, control socket.
MIN_RESERVE = 64
#: Connections the metrics listeners (Prometheus, health probes) may hold together.
METRICS_CONNECTIONS = 16
#: Raising the soft limit beyond this buys nothing for a directory server.
MAX_DESCRIPTORS = 65536


def _raw_response(status: str, text: str, extra: str = "") -> bytes:
    """A whole response for moments when aiohttp has no request to answer."""
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\nServer: {SERVER_NAME}\r\n{extra}"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


_REFUSED = _raw_response(
    "503 Service Unavailable", "too many connections now\n", "Retry-After: 5\r\n"
)
_HEADER_TOO_LARGE = _raw_response(
    "431 Request Header Fields Too Large", "the request header is too large\n"
)


def connection_budget(wanted: int) -> int:
    """The connection cap: `wanted`, but never closer than a reserve to the descriptor
    limit (whose soft value is raised to the hard one first, as servers do)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = MAX_DESCRIPTORS if hard == resource.RLIM_INFINITY else min(hard, MAX_DESCRIPTORS)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = MAX_DESCRIPTORS
    reserve = max(BACKLOG + MIN_RESERVE, soft // 10)
    return max(1, min(wanted, soft - reserve))


class RateLimitedLog:
    """At most `burst` events per `period` seconds; the next one after a quiet spell says
    how many were left out."""

    def __init__(self, burst: int = 10, period: float = 60.0) -> None:
        self.burst, self.period = burst, period
        self._started = float("-inf")
        self._count = 0
        self._suppressed = 0

    def allow(self) -> tuple[bool, int]:
        """(log this one?, how many were suppressed before it)."""
        now = time.monotonic()
        if now - self._started >= self.period:
            self._started, self._count = now, 0
        if self._count >= self.burst:
            self._suppressed += 1
            return False, 0
        self._count += 1
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed


@dataclass
class ConnectionGuard:
    """Counts the connections of every listener together and refuses those above `limit`.

    A connection counts from the moment it is accepted. One that never reaches
    connection_made (a TLS handshake that failed or timed out, a transport that could not
    be set up) is released by a sweep once `grace` seconds have passed: the handshake
    timeout has closed its socket by then.
    """

    limit: int
    per_address: int = 100
    grace: float = 11.0
    open: int = 0
    #: Connections made, by client address.
    by_address: dict[str, int] = field(default_factory=dict)
    #: Connections admitted and made, oldest first.
    live: dict[GuardedRequestHandler, None] = field(default_factory=dict)
    refused: int = 0
    parse_errors: RateLimitedLog = field(default_factory=RateLimitedLog)
    refusals: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(1, 60.0))
    #: Accepted, not yet made, in the order accepted, with the time they are given up.
    _pending: dict[GuardedRequestHandler, float] = field(default_factory=dict)

    def accepted(self, handler: GuardedRequestHandler) -> bool:
        """Count `handler`'s connection; False when it is over the limit."""
        now = time.monotonic()
        while self._pending:  # the oldest first: stop at the first still in time
            oldest, deadline = next(iter(self._pending.items()))
            if deadline > now:
                break
            del self._pending[oldest]
            oldest.release()
        admitted = self.open < self.limit
        self.open += 1
        self._pending[handler] = now + self.grace
        return admitted

    def made(self, handler: GuardedRequestHandler) -> None:
        self._pending.pop(handler, None)

    def admit_address(self, address: str) -> bool:
        """Count one more connection from `address`; False (not counted) when it has
        as many as it may and none of them is idle (an idle one is closed to make room)."""
        count = self.by_address.get(address, 0)
        if count >= self.per_address and not self.close_idle(address):
            return False
        self.by_address[address] = count + 1
        return True

    def close_idle(self, address: str | None = None) -> bool:
        """Close the oldest idle connection (of `address`, if given) to make room: a
        keep-alive connection between requests. Phones
        behind one NAT, each leaving its keep-alive open, must not lock each other out;
        a request under way is never cut."""
        for handler in self.live:
            if handler.idle and (address is None or handler.address == address):
                handler.force_close()
                return True
        return False

    def leave_address(self, address: str) -> None:
        count = self.by_address.pop(address, 0) - 1
        if count > 0:
            self.by_address[address] = count

    def refuse(self, transport: asyncio.BaseTransport, reason: str) -> None:
        self.refused += 1
        allowed, suppressed = self.refusals.allow()
        if allowed:
            event(
                "connections_capped",
                logging.WARNING,
                reason=reason,
                limit=self.limit,
                per_address=self.per_address,
                refused_before=suppressed or None,
            )
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REFUSED)
        transport.close()


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol, plus: counted against the cap from the moment the
    socket is accepted (TLS handshakes included), a deadline for each request header, and
    parse errors answered and logged without echoing the request."""

    __slots__ = (
        "_guard",
        "_header_timeout",
        "_header_timer",
        "_header_budget",
        "_header_bytes",
        "_counted",
        "_admitted",
        "_address",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        guard: ConnectionGuard,
        header_timeout: float,
        header_budget: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_budget = header_budget
        self._header_bytes = 0
        self._address: str | None = None
        self._counted = True
        self._admitted = guard.accepted(self)

    def release(self) -> None:
        """Give the slot back (once)."""
        if self._counted:
            self._counted = False
            self._guard.open -= 1

    @property
    def idle(self) -> bool:
        """Between requests, with no byte of the next one (a connection that has not yet
        sent its first request is left to header_timeout)."""
        return self._request_count > 0 and self._header_bytes == 0 and self._waiting_for_header()

    @property
    def address(self) -> str | None:
        return self._address

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._guard.made(self)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        # The address's own allowance first: a newcomer refused for it must not have
        # closed anyone else's connection on the way.
        if not self._guard.admit_address(address):
            self._admitted = False
            self._guard.refuse(transport, "max_connections_per_address")
            return
        if not self._admitted and not self._guard.close_idle():
            self._guard.leave_address(address)
            self._guard.refuse(transport, "max_connections")
            return
        self._admitted = True
        self._address = address
        self._guard.live[self] = None
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.made(self)
        self.release()
        self._cancel_header_timer()
        self._guard.live.pop(self, None)
        if self._address is not None:
            self._guard.leave_address(self._address)
            self._address = None
        if self._admitted:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Before the first request the handler task may not wait yet: all is header then.
        waiting_before = self._waiting_for_header() or self._request_count == 0
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._cancel_header_timer()  # a whole header arrived
            self._header_bytes = 0
        elif waiting_before:
            # aiohttp keeps an unfinished header in memory: bound it in bytes, as
            # header_timeout bounds it in time.
            self._header_bytes += len(data)
            if self._header_bytes > self._header_budget and self.transport is not None:
                self.transport.write(_HEADER_TOO_LARGE)
                self.force_close()
                return
        if self._waiting_for_header():
            self._arm_header_timer()

    def _waiting_for_header(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._force_close

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            count = self._request_count
            self._header_timer = self._loop.call_later(
                self._header_timeout, self._header_deadline, count
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self, count: int) -> None:
        self._header_timer = None
        if self._request_count == count and self._waiting_for_header():
            self.force_close()
        elif not self._force_close and self.transport is not None:
            # Requests arrived meanwhile: the deadline starts over for the next header.
            self._arm_header_timer()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # aiohttp would log the raw line (an Authorization header included) with a
        # traceback: log what kind of error it was, from whom, at most a few per minute.
        allowed, suppressed = self._guard.parse_errors.allow()
        if allowed:
            event(
                "bad_request",
                logging.WARNING,
                client=request.remote,
                error=type(exc).__name__,
                suppressed_before=suppressed or None,
            )
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        response = web.Response(
            status=status,
            text=f"{status} {phrase}: the request could not be parsed\n",
            headers={"Server": SERVER_NAME},
        )
        response.force_close()
        return response


def handler_settings(server: ServerConfig) -> dict[str, Any]:
    """RequestHandler keyword arguments for every listener."""
    return {
        "keepalive_timeout": server.keepalive_timeout,
        # Phones never compress request bodies, and an inflating body costs the event
        # loop seconds before any handler could refuse it: bodies stay as sent.
        "auto_decompress": False,
        "access_log": None,
        # An unread body is drained at most this long before the connection is closed.
        "lingering_time": min(5.0, server.body_timeout),
    }


class Listeners:
    """The asyncio servers of one or more AppRunners. The XCAP listeners share one guard;
    the metrics listeners have their own, so a flood of phones' port never starves the
    health checks."""

    def __init__(self, server: ServerConfig) -> None:
        self.config = server
        limit = connection_budget(server.max_connections + METRICS_CONNECTIONS)
        # A handshake is closed after header_timeout; a second more and its slot is free.
        grace = server.header_timeout + 1.0
        per_address = server.max_connections_per_address
        self.guard = ConnectionGuard(
            max(1, limit - METRICS_CONNECTIONS), per_address=per_address, grace=grace
        )
        self.metrics_guard = ConnectionGuard(
            min(limit, METRICS_CONNECTIONS), per_address=METRICS_CONNECTIONS, grace=grace
        )
        self._servers: list[asyncio.Server] = []

    def _factory(
        self, runner: web.AppRunner, guard: ConnectionGuard
    ) -> Callable[[], GuardedRequestHandler]:
        loop = asyncio.get_running_loop()
        assert runner.server is not None
        manager, settings = runner.server, handler_settings(self.config)

        def make() -> GuardedRequestHandler:
            return GuardedRequestHandler(
                manager,
                loop=loop,
                guard=guard,
                header_timeout=self.config.header_timeout,
                header_budget=self.config.max_header_size,
                **settings,
            )

        return make

    async def listen(
        self,
        runner: web.AppRunner,
        address: str,
        context: ssl.SSLContext | None,
        metrics: bool = False,
    ) -> asyncio.Server:
        host, port = split_address(address)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self._factory(runner, self.metrics_guard if metrics else self.guard),
            host,
            port,
            ssl=context,
            ssl_handshake_timeout=self.config.header_timeout if context else None,
            backlog=BACKLOG,
            reuse_address=True,
        )
        self._servers.append(server)
        return server

    def close(self) -> None:
        """Stop accepting (connections under way go on until the runner's cleanup)."""
        for server in self._servers:
            server.close()
        self._servers.clear()


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Out of descriptors, asyncio pauses accepting for a second and reports each failure
    with a traceback: log one line a minute instead."""
    previous = loop.get_exception_handler()
    accept_log = RateLimitedLog(1, 60.0)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            allowed, suppressed = accept_log.allow()
            if allowed:
                error = context.get("exception")
                event(
                    "accept_paused",
                    logging.WARNING,
                    detail=getattr(error, "strerror", None) or str(error),
                    hint="raise the descriptor limit (ulimit -n) or lower [server] max_connections",
                    suppressed_before=suppressed or None,
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
