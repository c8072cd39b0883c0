"""The `xcap-gateway` command: serve, check-config, render, sync, status."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway import __version__, keys, logs, preflight
from gateway.admin import admin_runner
from gateway.app import create_app, create_metrics_app, reload
from gateway.compose import NotReady
from gateway.config import Config, ConfigError, load_config
from gateway.connector import UnsafeTemplateValue
from gateway.control import socket_path, status, sync_now
from gateway.engine import Engine
from gateway.listeners import Listeners, quiet_accept_errors
from gateway.model import UserRef
from gateway.store import StoreTooNew, StoreUnavailable

DEFAULT_CONFIG = Path("config/gateway.toml")

#: Every subcommand and its one line in `--help`.
COMMANDS = (
    ("serve", "serve the configured documents to phones (the default command)"),
    ("check-config", "validate the configuration, list every problem; --connect tries each source"),
    ("render", "print the document one user would get"),
    ("sync", "sync sources now (through the running server, when there is one)"),
    ("status", "show each source's last sync, entries and errors, and the outbox"),
)


def _help_text() -> str:
    """The top-level help's text: what the program is, then every command on its line
    (argparse's own listing wraps a long command name onto a line of its own)."""
    width = max(len(name) for name, _ in COMMANDS) + 3
    lines = "\n".join(f"  {name:<{width}}{text}" for name, text in COMMANDS)
    return (
        "Serves SIP phones their contact directories, composed from LDAP, CardDAV and\n"
        "vCard folders (XCAP, and the desk phones' XML phonebook formats).\n\n"
        f"commands:\n{lines}\n\n"
        "`xcap-gateway COMMAND --help` shows a command's options."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="xcap-gateway",
        usage="%(prog)s [-h] [--version] COMMAND [--config PATH] [options]",
        description=_help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)
    for name, help_text in COMMANDS:
        # prog named here: else each command's usage and errors begin with the
        # top-level usage line.
        command = commands.add_parser(name, description=help_text, prog=f"xcap-gateway {name}")
        command.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG,
            help=f"configuration file (default {DEFAULT_CONFIG})",
        )
        command.add_argument(
            "--log-level",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="overrides [logging] level",
        )
        if name == "sync":
            command.add_argument(
                "--source",
                action="append",
                default=[],
                help="a [sources.NAME] key (repeatable; default: every shared source)",
            )
            command.add_argument(
                "--accept-shrink",
                action="store_true",
                help="apply a sync that was held back for dropping many entries",
            )
        if name == "render":
            command.add_argument("--document", required=True, help="a [documents.NAME] key")
            command.add_argument(
                "--user", required=True, help="the xui, e.g. sip:alice@example.com"
            )
        if name == "check-config":
            command.add_argument(
                "--connect",
                action="store_true",
                help="also list every source once and report each one's outcome "
                "(exit 1 when one fails)",
            )
            command.add_argument(
                "--user",
                help="with --connect: try the per-user sources as this xui's "
                "(else they are skipped)",
            )
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or (words[0].startswith("-") and words[0] not in ("-h", "--help", "--version")):
        words.insert(0, "serve")  # `xcap-gateway [--config PATH]` serves, like a container's CMD
    args = parser.parse_args(words)
    if args.command == "check-config" and args.user is not None and not args.connect:
        parser.error("check-config: --user is for --connect (the per-user sources to try)")
    logs.setup(args.log_level or "INFO")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    logs.setup(args.log_level or config.logging.level, config.logging.format)
    try:
        return _run(config, args)
    except StoreUnavailable as exc:
        # PostgreSQL cannot be reached at start: say where and why, not a traceback (a
        # container then restarts and tries again).
        print(f"{config.path}: [store] url: {exc}", file=sys.stderr)
        return 1
    except StoreTooNew as exc:
        print(f"{config.path}: [store]: {exc}", file=sys.stderr)
        return 1


def _run(config: Config, args: argparse.Namespace) -> int:
    if args.command == "check-config":
        return asyncio.run(_check_config(config, args.connect, args.user))
    if args.command == "render":
        return asyncio.run(_render(config, args.document, args.user))
    if args.command == "sync":
        return asyncio.run(_sync(config, args.source, args.accept_shrink))
    if args.command == "status":
        return asyncio.run(_status(config))
    return asyncio.run(_serve(config))


async def _check_config(config: Config, connect: bool, xui: str | None) -> int:
    user = None
    if xui is not None:
        user = UserRef.parse(xui)
        if not user.names_one_user():
            print(f"{xui!r} is not one user's xui (like alice@example.com)", file=sys.stderr)
            return 2
    problems = preflight.serving_problems(config)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(
            f"{config.path}: OK ({len(config.sources)} sources, {len(config.documents)} documents)"
        )
    failed = False
    if connect:
        if config.store.url:
            store = await preflight.connect_store(config)
            print(store)
            failed = failed or store.error is not None
        for outcome in await preflight.connect(config, user):
            print(outcome)
            failed = failed or outcome.error is not None
    return 2 if problems else 1 if failed else 0


async def _render(config: Config, document: str, xui: str) -> int:
    if document not in config.documents:
        known = ", ".join(config.documents) or "none"
        print(f"no [documents.{document}] in {config.path} (known: {known})", file=sys.stderr)
        return 2
    user = UserRef.parse(xui)
    if not user.names_one_user():
        print(f"{xui!r} is not one user's xui (like alice@example.com)", file=sys.stderr)
        return 2
    engine = Engine(config)
    try:
        rendered = await engine.document(document, user)
    except UnsafeTemplateValue as exc:
        print(f"{xui!r}: {exc}", file=sys.stderr)
        return 2
    except NotReady as exc:
        for name in exc.sources:
            print(f"source {name}: {engine.sources.state(name, user).last_error}", file=sys.stderr)
        return 1
    finally:
        await engine.stop()
    sys.stdout.buffer.write(rendered.body)
    return 0


async def _sync(config: Config, names: list[str], accept_shrink: bool) -> int:
    if unknown := [name for name in names if name not in config.sources]:
        print(
            f"no [sources.{unknown[0]}] in {config.path} (known: {', '.join(config.sources)})",
            file=sys.stderr,
        )
        return 2
    report = await _sync_through_server(config, names, accept_shrink)
    if report is None:  # no server running: sync here, into the same state database
        engine = Engine(config)
        engine.open_store()
        try:
            report = await sync_now(engine, names, accept_shrink)
        finally:
            await engine.stop()
    for name, outcome in report.items():
        state = "ok" if outcome["ok"] else f"FAILED: {outcome['error']}"
        print(f"{name}: {state} ({outcome['entries']} entries)")
    return 0 if all(outcome["ok"] for outcome in report.values()) else 1


async def _status(config: Config) -> int:
    report = await _ask_server(config, "GET", "/status", [])
    if report is None:  # no server running: what the state database says
        engine = Engine(config)
        engine.open_store()
        try:
            for state in engine.sources.shared_states():
                await state.load()
            await engine.outbox.load(engine.store)  # type: ignore[arg-type]
            report = status(engine)
        finally:
            await engine.stop()
        print("(no gateway is running on this state_dir; from the state database)")
    for name, source in sorted(report["sources"].items()):
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(source["last_sync"]))
            if source["last_sync"]
            else "never"
        )
        line = f"source {name}: {source['entries']} entries, last sync {when}"
        if source["last_error"]:
            line += f", last error: {source['last_error']}"
        print(line)
    outbox = report["outbox"]
    age = f", oldest {outbox['oldest_seconds']} s" if outbox["oldest_seconds"] else ""
    parked = f", {outbox['parked_count']} parked" if outbox["parked_count"] else ""
    print(f"outbox: {outbox['pending']} pending{age}{parked}, {outbox['failed_count']} failed")
    for item in outbox["parked"]:
        print(f"  parked {item['change']} of {item['entry']} for {item['user']}: {item['reason']}")
    for failure in outbox["failed"]:
        print(
            f"  failed {failure['change']} of {failure['entry']} in {failure['source']} "
            f"(from {failure['user']}): {failure['error']}"
        )
    for document, users in sorted(report["documents"].items()):
        print(f"document {document}: served to {users} users")
    return 0


async def _sync_through_server(
    config: Config, names: list[str], accept_shrink: bool
) -> dict[str, Any] | None:
    query = [("source", name) for name in names]
    query.append(("accept_shrink", "1" if accept_shrink else "0"))
    return await _ask_server(config, "POST", "/sync", query)


async def _ask_server(
    config: Config, method: str, path: str, query: list[tuple[str, str]]
) -> dict[str, Any] | None:
    """The running gateway's answer on its control socket; None when none runs."""
    socket = socket_path(config.server.state_dir.resolve())
    if not socket.exists():
        return None
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as session,
            session.request(method, f"http://gateway{path}", params=query) as response,
        ):
            report: dict[str, Any] = await response.json()
            return report
    except aiohttp.ClientConnectionError:
        return None  # a socket left behind by a server that is gone


async def _serve(config: Config) -> int:
    # Until the reload handler is in place (after the first syncs and the listeners), a
    # SIGHUP (`systemctl reload` during a slow start) must not end the process, which is
    # what it does by default: the configuration is read at start anyway.
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(
        signal.SIGHUP, lambda: logs.event("reload_ignored", reason="still starting")
    )
    app = create_app(config)
    quiet_accept_errors(asyncio.get_running_loop())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    runners = [runner]
    listeners = Listeners(config.server)
    tls = _tls_context(config)
    plain_tls = None if config.server.tls_listen else tls
    addresses = [(a, plain_tls, runner) for a in config.server.listen]
    addresses += [(a, tls, runner) for a in config.server.tls_listen]
    if config.server.metrics_listen:
        metrics_runner = web.AppRunner(create_metrics_app(app[keys.ENGINE]), access_log=None)
        await metrics_runner.setup()
        runners.append(metrics_runner)
        addresses += [(a, None, metrics_runner) for a in config.server.metrics_listen]
    # The admin console: its own runner, on the small connection budget of the metrics
    # listeners (a flood on the phones' port never locks the administrators out).
    admin = await admin_runner(app)
    if admin is not None:
        runners.append(admin)
        addresses += [(a, tls, admin) for a in config.server.admin_listen]
    for address, context, owner in addresses:
        try:
            await listeners.listen(owner, address, context, metrics=owner is not runner)
        except OSError as exc:
            print(
                f"{config.path}: [server] listen: cannot listen on {address}: {exc.strerror}",
                file=sys.stderr,
            )
            listeners.close()
            for each in reversed(runners):
                await each.cleanup()
            return 1
        logs.event(
            "listening",
            address=address,
            tls=context is not None,
            metrics_only=owner not in (runner, admin) or None,
            admin_console=owner is admin or None,
        )
    if listeners.guard.limit < config.server.max_connections:
        logs.event(
            "connections_limited",
            logging.WARNING,
            max_connections=listeners.guard.limit,
            configured=config.server.max_connections,
            reason="descriptor limit (ulimit -n) minus a reserve",
        )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def reload_soon() -> None:
        task = asyncio.create_task(reload(app, config.path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_soon)
    await stop.wait()
    # Stop accepting, let requests under way finish, and give the outbox a moment to
    # apply what it holds (the rest is applied after the next start).
    logs.event("stopping", pending=app[keys.ENGINE].outbox.depth)
    listeners.close()
    await app[keys.ENGINE].outbox.drained(timeout=config.server.shutdown_grace)
    for each in reversed(runners):
        await each.cleanup()
    logs.event("stopped", pending=app[keys.ENGINE].outbox.depth)
    return 0


def _tls_context(config: Config) -> ssl.SSLContext | None:
    if config.server.tls_cert is None or config.server.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.server.tls_cert, config.server.tls_key)
    return context
