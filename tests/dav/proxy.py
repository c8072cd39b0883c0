"""A small real reverse proxy for tests: it gzips what it can, as nginx with `gzip on`
does, and marks the ETag of every response it compresses weak (`W/"…"`), since the bytes
sent are no longer the server's.

With `weak_always` it stands for a server that only has weak ETags: every ETag, in headers
and in DAV:getetag, is weak, and If-Match is evaluated as RFC 9110 (13.1.1) says such a
server must: with the strong comparison, which a weak tag never passes, so any If-Match
but `*` is answered 412 Precondition Failed."""

from __future__ import annotations

import gzip
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

# Hop-by-hop and length headers: the proxy speaks its own connection to each side.
_NOT_FORWARDED = {
    "connection",
    "content-encoding",
    "content-length",
    "host",
    "keep-alive",
    "transfer-encoding",
}
_GETETAG = re.compile(rb'(getetag>\s*)(")')

Hook = Callable[[], Awaitable[None]]


def weak(etag: str) -> str:
    return etag if etag.startswith("W/") or not etag else "W/" + etag


@dataclass
class WeakeningProxy:
    upstream: str
    weak_always: bool = False
    #: Run once, just before the next request of that method is forwarded: a change
    #: another client makes between what the connector read and what it writes.
    before: dict[str, Hook] = field(default_factory=dict)
    origin: str = ""
    #: Every request's method and path, in the order they came.
    seen: list[tuple[str, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.origin = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self.origin

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path))
        if hook := self.before.pop(request.method, None):
            await hook()
        if self.weak_always and request.headers.get("If-Match", "*").strip() != "*":
            return web.Response(status=412)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        # Upstream answers uncompressed; compressing is this proxy's job.
        headers["Accept-Encoding"] = "identity"
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=await request.read(),
            headers=headers,
            allow_redirects=False,
        ) as answer:
            body = await answer.read()
            out = CIMultiDict(
                (k, v) for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED
            )
            status = answer.status
        if self.weak_always:
            body = _GETETAG.sub(rb"\1W/\2", body)
        if body and status in (200, 207) and "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            out["Content-Encoding"] = "gzip"
            out["Vary"] = "Accept-Encoding"
            if "ETag" in out:
                out["ETag"] = weak(out["ETag"])
        elif self.weak_always and "ETag" in out:
            out["ETag"] = weak(out["ETag"])
        return web.Response(status=status, body=body, headers=out)
