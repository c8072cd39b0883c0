"""Operator endpoints: /healthz and /readyz on the main listener, and a control socket
(a Unix socket in state_dir, reachable only by the gateway's own user) that
`xcap-gateway sync` uses to make a running server sync now."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.engine import Engine
from gateway.logs import event
from gateway.private_files import private_dir
from gateway.source_state import SourceState

SOCKET_NAME = "control.sock"
#: The private folders the socket is bound in before it is moved into place.
STAGING_PREFIX = ".control-"
#: sun_path is 108 bytes on Linux; a longer state_dir gets no control socket (the socket
#: is first bound at state_dir/.control-XXXXXXXX/s, a few bytes longer than its name).
MAX_SOCKET_PATH = 94


async def alive(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP."""
    return web.Response(text="ok\n")


async def ready(request: web.Request) -> web.Response:
    """Readiness: every shared source has data (from the store or a sync)."""
    engine = request.app[keys.ENGINE]
    states = engine.sources.shared_states()
    waiting = sorted(state.name for state in states if not state.has_data)
    body = {"ready": not waiting, "waiting_for": waiting}
    return web.json_response(body, status=503 if waiting else 200)


def source_report(state: SourceState) -> dict[str, Any]:
    return {
        "ok": state.last_error is None and state.has_data,
        "entries": len(state.contacts),
        "synced_at": state.synced_at,
        "error": state.last_error,
        "held_back": list(state.held_back) if state.held_back else None,
    }


async def sync_now(engine: Engine, names: list[str], accept_shrink: bool) -> dict[str, Any]:
    """Sync the named shared sources (all when empty) now, and report each."""
    unknown = [name for name in names if name not in engine.config.sources]
    if unknown:
        raise KeyError(", ".join(unknown))
    report = {}
    for state in engine.sources.shared_states():
        if names and state.name not in names:
            continue
        await state.load()
        state.accept_shrink = accept_shrink
        await state.refresh()
        report[state.name] = source_report(state)
    return report


async def _sync(request: web.Request) -> web.Response:
    engine = request.app[keys.ENGINE]
    names = request.query.getall("source", [])
    try:
        report = await sync_now(engine, names, request.query.get("accept_shrink") == "1")
    except KeyError as exc:
        raise web.HTTPNotFound(text=f"no such source: {exc.args[0]}\n") from exc
    return web.json_response(report)


def status(engine: Engine) -> dict[str, Any]:
    """What `xcap-gateway status` shows: sources, outbox, documents served."""
    sources: dict[str, Any] = {}
    for state in engine.sources.states():
        entry = sources.setdefault(
            state.name,
            {
                "instances": 0,
                "entries": 0,
                "last_sync": None,
                "last_error": None,
                "held_back": None,
            },
        )
        entry["instances"] += 1
        entry["entries"] += len(state.contacts)
        if state.synced_at and (entry["last_sync"] is None or state.synced_at > entry["last_sync"]):
            entry["last_sync"] = state.synced_at
        entry["last_error"] = entry["last_error"] or state.last_error
        entry["held_back"] = entry["held_back"] or (
            list(state.held_back) if state.held_back else None
        )
    outbox = engine.outbox
    oldest = outbox.oldest()
    return {
        "sources": sources,
        "outbox": {
            "pending": outbox.depth,
            "oldest_seconds": round(time.time() - oldest, 1) if oldest else None,
            # Waiting for a source or document a reload removed: kept, applied if it returns.
            "parked": [
                {
                    "document": i.document,
                    "user": i.user,
                    "source": i.source,
                    "change": i.kind,
                    "entry": i.entry_id,
                    "reason": reason,
                }
                for i, reason in outbox.parked()[:20]
            ],
            "parked_count": len(outbox.parked()),
            "failed_count": outbox.failed_count,
            "failed": [
                {
                    "document": i.document,
                    "user": i.user,
                    "source": i.source,
                    "change": i.kind,
                    "entry": i.entry_id,
                    "error": i.error,
                }
                for i in list(outbox.failed)[-20:]
            ],
        },
        "documents": engine.versions.served_counts(),
    }


async def _status(request: web.Request) -> web.Response:
    return web.json_response(status(request.app[keys.ENGINE]))


def control_app(engine: Engine) -> web.Application:
    app = web.Application()
    app[keys.ENGINE] = engine
    app.router.add_post("/sync", _sync)
    app.router.add_get("/status", _status)
    return app


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


async def _listen_privately(runner: web.AppRunner, path: Path) -> None:
    """Bind in a fresh owner-only folder, make the socket 0600, then move it into place:
    at no moment can another user connect to it (a bind follows the umask, not us)."""
    private_dir(path.parent)
    for stale in path.parent.glob(STAGING_PREFIX + "*"):  # a server killed mid-start
        shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=path.parent))
    try:
        staged = folder / "s"
        await web.UnixSite(runner, str(staged)).start()
        staged.chmod(0o600)
        os.replace(staged, path)  # replaces a socket left behind by a killed server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def control_socket(app: web.Application) -> AsyncIterator[None]:
    """Serve `control_app` on state_dir/control.sock while the gateway runs."""
    config = app[keys.CONFIG]
    path = socket_path(config.server.state_dir.resolve())
    runner: web.AppRunner | None = None
    if len(str(path)) > MAX_SOCKET_PATH:
        event("control_socket_skipped", logging.WARNING, path=path, reason="path too long")
    else:
        runner = web.AppRunner(control_app(app[keys.ENGINE]), access_log=None)
        await runner.setup()
        await _listen_privately(runner, path)
    try:
        yield
    finally:
        if runner is not None:
            await runner.cleanup()
            path.unlink(missing_ok=True)
