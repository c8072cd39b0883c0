"""The console's pages and actions. Pages read the engine's state; actions (POST, with
the CSRF token the middleware checks) answer 303 to the page that shows their outcome."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway import keys, outbox_rows
from gateway.admin import outbox_actions
from gateway.admin.keys import CSRF, RECENT, TEMPLATES
from gateway.admin.phone_urls import phone_endpoint, settings_for
from gateway.admin.status import source_rows
from gateway.auth.middleware import LOGIN
from gateway.compose import NotReady, Rendered
from gateway.connector import UnsafeTemplateValue
from gateway.control import sync_now
from gateway.entry import Entry
from gateway.formats import Query, load_format
from gateway.logs import event
from gateway.model import UserRef
from gateway.outbox import Item


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", overview)
    app.router.add_post("/sources/{name}/sync", sync_source)
    app.router.add_get("/outbox", outbox_page)
    # At most 18 digits: an int, never int()'s refusal of 4,300 digits (a 500).
    app.router.add_post("/outbox/{id:[0-9]{1,18}}/retry", retry_change)
    app.router.add_post("/outbox/{id:[0-9]{1,18}}/discard", discard_change)
    app.router.add_get("/conflicts", conflicts)
    app.router.add_get("/user", user_view)
    app.router.add_get("/user/raw", user_raw)


def _page(
    request: web.Request, template: str, here: str, title: str, **values: Any
) -> web.Response:
    login = request[LOGIN]
    html = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(here=here, title=title, login=login, csrf=request.app[CSRF].token(login), **values)
    )
    return web.Response(text=html, content_type="text/html")


# --- overview -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentRow:
    key: str
    config: Any
    served: int
    settings: list[Any]


async def overview(request: web.Request) -> web.Response:
    engine = request.app[keys.ENGINE]
    config = engine.config
    endpoint = phone_endpoint(config.server, request.url.host or "")
    served = engine.versions.served_counts()
    documents = [
        DocumentRow(key, doc, served.get(key, 0), settings_for(config.server, endpoint, key, doc))
        for key, doc in config.documents.items()
    ]
    return _page(
        request,
        "overview.html",
        "/",
        "Overview",
        sources=source_rows(engine),
        documents=documents,
    )


async def sync_source(request: web.Request) -> web.StreamResponse:
    engine = request.app[keys.ENGINE]
    name = request.match_info["name"]
    if name not in engine.config.sources or engine.sources.is_per_user(name):
        raise web.HTTPNotFound(text="no such shared source\n")
    # Only from the button shown while a shrink is held back: the administrator's decision.
    accept_shrink = (await request.post()).get("accept_shrink") == "1"
    report = await sync_now(engine, [name], accept_shrink=accept_shrink)
    event(
        "admin_sync",
        user=request[LOGIN],
        source=name,
        accept_shrink=accept_shrink or None,
        ok=report[name]["ok"],
        entries=report[name]["entries"],
    )
    raise web.HTTPSeeOther(f"/#source-{name}")


# --- outbox -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeRow:
    item: Item
    name: str
    parked: str | None = None


def _entry_name(item: Item) -> str:
    entry = item.after or item.before
    return entry.display_name if entry is not None else ""


async def outbox_page(request: web.Request) -> web.Response:
    outbox = request.app[keys.ENGINE].outbox
    parked = {item.id: reason for item, reason in outbox.parked()}
    pending: list[Item] = []
    if outbox.store is not None:
        pending = await asyncio.to_thread(outbox_rows.load, outbox.store, "pending")
    return _page(
        request,
        "outbox.html",
        "/outbox",
        "Outbox",
        pending=[ChangeRow(i, _entry_name(i), parked.get(i.id)) for i in pending],
        failed=[ChangeRow(i, _entry_name(i)) for i in reversed(outbox.failed)],
        failed_count=outbox.failed_count,
    )


def _claimed(request: web.Request) -> Item:
    """The failed change named, taken out of the failed list before anything is awaited:
    a second request for it (another admin, a double click) finds it gone (404), never
    queues it twice nor retries what the other discards."""
    outbox = request.app[keys.ENGINE].outbox
    item = outbox_actions.claim(outbox, int(request.match_info["id"]))
    if item is None:
        raise web.HTTPNotFound(text="no such failed change (retried or discarded already?)\n")
    return item


async def retry_change(request: web.Request) -> web.StreamResponse:
    item = _claimed(request)
    again = await outbox_actions.retry(request.app[keys.ENGINE].outbox, item)
    event("admin_retry", admin=request[LOGIN], change=item.id, queued_as=again.id, **item.context())
    raise web.HTTPSeeOther("/outbox")


async def discard_change(request: web.Request) -> web.StreamResponse:
    item = _claimed(request)
    await outbox_actions.discard(request.app[keys.ENGINE].outbox, item)
    event("admin_discard", admin=request[LOGIN], change=item.id, **item.context())
    raise web.HTTPSeeOther("/outbox")


# --- conflicts ----------------------------------------------------------------------------


async def conflicts(request: web.Request) -> web.Response:
    return _page(
        request, "conflicts.html", "/conflicts", "Conflicts", events=request.app[RECENT].newest()
    )


# --- one user's document ------------------------------------------------------------------


@dataclass(frozen=True)
class EntryRow:
    name: str
    given: str
    surname: str
    company: str
    title: str
    email: str
    business: tuple[str, ...]
    mobile: tuple[str, ...]
    home: tuple[str, ...]
    sip: tuple[str, ...]
    category: str
    source: str


def _text(entry: Entry, name: str) -> str:
    value = entry.get(name)
    return value if isinstance(value, str) else ", ".join(value)


def _numbers(entry: Entry, name: str) -> tuple[str, ...]:
    value = entry.get(name)
    return (value,) if isinstance(value, str) and value else tuple(value)


def _rows(rendered: Rendered) -> list[EntryRow]:
    rows = []
    for entry_id, entry in rendered.entries.items():
        origin = rendered.origins.get(entry_id)
        category = ", ".join(
            part for part in (_text(entry, "category"), _text(entry, "category#1")) if part
        )
        rows.append(
            EntryRow(
                name=entry.display_name,
                given=_text(entry, "given_name"),
                surname=_text(entry, "surname"),
                company=_text(entry, "company"),
                title=_text(entry, "profession"),
                email=_text(entry, "email_address"),
                business=_numbers(entry, "business_number"),
                mobile=_numbers(entry, "mobile_number"),
                home=_numbers(entry, "home_number"),
                sip=_numbers(entry, "sip_address"),
                category=category,
                source=origin.source if origin is not None else "",
            )
        )
    return rows


@dataclass(frozen=True)
class Asked:
    xui: str
    document: str
    format: str


def _asked(request: web.Request) -> Asked:
    config = request.app[keys.ENGINE].config
    query = request.rel_url.query
    document = query.get("document", "")
    if document not in config.documents:
        document = next(iter(config.documents), "")
    formats = config.documents[document].formats if document else []
    fmt = query.get("format", "")
    if fmt not in formats:
        fmt = formats[0] if formats else ""
    return Asked(query.get("xui", "").strip(), document, fmt)


async def _compose(request: web.Request, asked: Asked) -> tuple[Rendered | None, str | None]:
    """The document the user gets, or why there is none."""
    user = UserRef.parse(asked.xui)
    if not user.names_one_user():
        return None, f"{asked.xui!r} is not one user's xui (like alice@example.com)"
    domains = request.app[keys.ENGINE].config.auth.domains
    if domains and user.domain not in domains:
        return None, f"{user.domain!r} is not among the [auth] domains: phones get 404"
    try:
        return await request.app[keys.ENGINE].document(asked.document, user), None
    except UnsafeTemplateValue as exc:
        return None, f"no source can take this xui: {exc}"
    except NotReady as exc:
        return None, f"{exc}: phones get 503 until it has"


def _bytes(rendered: Rendered, fmt: str) -> bytes:
    """What a phone fetching the whole list in `fmt` gets."""
    return load_format(fmt).render(rendered.directory, Query())


async def user_view(request: web.Request) -> web.Response:
    engine = request.app[keys.ENGINE]
    config = engine.config
    asked = _asked(request)
    values: dict[str, Any] = {
        "xui": asked.xui,
        "document": asked.document,
        "format": asked.format,
        "documents": list(config.documents),
        "formats": config.documents[asked.document].formats if asked.document else [],
        "rows": None,
        "problem": None,
    }
    if asked.xui and asked.document:
        rendered, problem = await _compose(request, asked)
        values["problem"] = problem
        if rendered is not None:
            body = await asyncio.to_thread(_bytes, rendered, asked.format)
            endpoint = phone_endpoint(config.server, request.url.host or "")
            values |= {
                "rows": _rows(rendered),
                "hidden": len(rendered.hidden),
                "size": len(body),
                "raw_query": urlencode(
                    {"xui": asked.xui, "document": asked.document, "format": asked.format}
                ),
                "settings": settings_for(
                    config.server,
                    endpoint,
                    asked.document,
                    config.documents[asked.document],
                    asked.xui,
                ),
            }
    return _page(request, "user.html", "/user", "User view", **values)


async def user_raw(request: web.Request) -> web.Response:
    """The bytes as the phone gets them, shown as text (never interpreted by the browser)."""
    asked = _asked(request)
    if not asked.xui or not asked.document:
        raise web.HTTPBadRequest(text="give xui and document\n")
    rendered, problem = await _compose(request, asked)
    if rendered is None:
        raise web.HTTPNotFound(text=f"{problem}\n")
    body = await asyncio.to_thread(_bytes, rendered, asked.format)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
