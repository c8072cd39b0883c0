"""Caller-ID lookup for PBXs: `GET {phonebook_root}/lookup/users/{xui}/{document}?number=…`
answers the contact the number belongs to, as JSON, or just its display name as
`text/plain` when asked (`Accept: text/plain`, or `format=text` where a client cannot set
headers) for Asterisk's `CURL()`; 404 when nobody matches (an empty body in text, so a
PBX that reads the body regardless sets no name). Same authentication and owner rules as
the document's other URLs; the index is the one search uses, built once per composition.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.compose import Rendered
from gateway.search_index import MAX_NUMBER

#: The "format" segment of lookup URLs (no format may take the name).
LOOKUP = "lookup"
METHODS = ("GET", "HEAD")
_TEXT = "text/plain"


def _wants_text(request: web.Request) -> bool:
    if request.rel_url.query.get("format") == "text":
        return True
    accept = request.headers.get("Accept", "")
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    # Asked for text by name (and not for JSON before it).
    return _TEXT in kinds and (
        "application/json" not in kinds or kinds.index(_TEXT) < kinds.index("application/json")
    )


def _number(request: web.Request) -> str:
    number = request.rel_url.query.get("number", "").strip()
    if not number:
        raise web.HTTPBadRequest(text="give the caller's number: ?number=…\n")
    if len(number) > MAX_NUMBER or any(ord(c) < 32 for c in number):
        raise web.HTTPBadRequest(text=f"number is at most {MAX_NUMBER} printable characters\n")
    return number


async def lookup_answer(
    request: web.Request, composed: Callable[[], Awaitable[Rendered]]
) -> web.Response:
    """The answer to a lookup; `composed` gives the document's Rendered."""
    if request.method not in METHODS:
        raise web.HTTPMethodNotAllowed(request.method, list(METHODS))
    number = _number(request)
    rendered = await composed()
    directory = rendered.directory
    if not directory.indexed:
        # Built once per composition, off the event loop: a big book takes a moment.
        await asyncio.to_thread(directory.search_index)
    match = directory.lookup(number)
    text = _wants_text(request)
    if match is None:
        if text:
            return web.Response(status=404, text="", content_type=_TEXT)
        return web.json_response({"error": "no contact has this number"}, status=404)
    entry = match.entry
    if text:
        # One line: a PBX puts this into a SIP header (a newline in a card's FN must not
        # become a header of its own).
        return web.Response(text=" ".join(entry.display_name.split()), content_type=_TEXT)
    company = entry.get("company")
    answer = {
        "name": entry.display_name,
        "number": match.number,
        "kind": match.kind,
        "company": company if isinstance(company, str) else "",
        "entry_id": entry.entry_id,
    }
    return web.Response(
        text=json.dumps(answer, ensure_ascii=False), content_type="application/json"
    )
