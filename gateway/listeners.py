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
import ssl
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.config import ServerConfig, split_address
from gateway.connection_guard import (
    BACKLOG,
    METRICS_CONNECTIONS,
    SERVER_NAME,
    ConnectionGuard,
    RateLimitedLog,
    connection_budget,
    raw_response,
)
from gateway.logs import event

_HEADER_TOO_LARGE = raw_response(
    "431 Request Header Fields Too Large", "the request header is too large\n"
)


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
    the metrics listeners and the admin console's (`metrics=True`) have their own, so a
    flood of phones' port never starves the health checks or locks administrators out."""

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
