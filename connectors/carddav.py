"""`carddav`: personal or shared address books on a CardDAV server, synced incrementally
(RFC 6578 sync-collection, else ETag comparison) and written back card by card.

Writes edit the existing card in place (only the mapped properties that changed) and are
conditional: PUT with If-Match, creates with If-None-Match: * under a name derived from the
entry_id, DELETE with If-Match.

A weak ETag (`W/"…"`, as a compressing proxy makes of the server's strong one) is never
sent as If-Match: it can never match strongly, and the write would fail 412 forever. The
card is read first, uncompressed; if it is no longer the version we were given (weak
comparison), that is WrongEtag; else the write carries the strong ETag that read returned,
or, from a server that only gives weak ones, no If-Match (a narrow race, logged).
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from multidict import CIMultiDict

from connectors import webdav
from connectors.carddav_settings import CardDavSettings
from connectors.vcard import card_to_contact, for_new_card, new_card, write_contact
from connectors.vcard_lines import Card, split_cards
from gateway.connector import (
    AlreadyExists,
    Capabilities,
    Changes,
    Connector,
    InvalidToken,
    NotFound,
    ReadOnly,
    Rejected,
    Unavailable,
    WrongEtag,
    decode_token,
    event,
    fill_template,
)
from gateway.model import Contact, UserRef

VCARD_TYPE = "text/vcard; charset=utf-8"


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]
    url: str


class CardDavConnector(Connector[CardDavSettings]):
    settings_model = CardDavSettings

    def __init__(self, source: str, settings: CardDavSettings, user: UserRef | None = None) -> None:
        super().__init__(source, settings, user)
        parts = urlsplit(settings.url)
        self.origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self._session: aiohttp.ClientSession | None = None
        self._books: builtins.list[str] | None = None

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(incremental=True)

    @classmethod
    def settings_for_user(
        cls, settings: CardDavSettings, values: Mapping[str, str]
    ) -> CardDavSettings:
        """Values go into the URL percent-encoded, so a user name cannot add a path segment."""
        updates: dict[str, Any] = {"url": fill_template(settings.url, values, _path_segment)}
        if settings.username:
            updates["username"] = fill_template(settings.username, values)
        return settings.model_copy(update=updates)

    # --- HTTP -----------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            settings = self.settings
            headers = {}
            middlewares: builtins.list[Any] = []
            if settings.username is not None:
                password = settings.password.get_secret_value() if settings.password else ""
                if settings.auth == "digest":
                    middlewares.append(aiohttp.DigestAuthMiddleware(settings.username, password))
                else:
                    headers["Authorization"] = aiohttp.encode_basic_auth(
                        settings.username, password
                    )
            context: ssl.SSLContext | bool = True
            if not settings.tls_verify:
                context = False
            elif settings.tls_ca_file is not None:
                context = ssl.create_default_context(cafile=str(settings.tls_ca_file))
            self._session = aiohttp.ClientSession(
                headers=headers,
                middlewares=tuple(middlewares),
                timeout=aiohttp.ClientTimeout(total=settings.timeout),
                connector=aiohttp.TCPConnector(ssl=context),
            )
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Reply:
        url = path if path.startswith(("http://", "https://")) else self.origin + path
        try:
            async with self._client().request(method, url, data=body, headers=headers) as response:
                reply = _Reply(
                    response.status,
                    await response.read(),
                    CIMultiDict(response.headers),
                    str(response.url),
                )
        except aiohttp.ClientSSLError as exc:
            raise Unavailable(
                f"{url}: TLS certificate not trusted or not for this host; "
                f"set tls_ca_file to the CA that issued it ({exc})"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # str(): an exception is true even when its message is empty (a timeout's).
            raise Unavailable(f"{url}: cannot connect ({str(exc) or type(exc).__name__})") from exc
        if reply.status == 401:
            raise Unavailable(
                f"{url}: the server rejected the credentials: check username and "
                'password (and auth = "digest" for servers that need it)'
            )
        if reply.status >= 500:
            raise Unavailable(f"{url}: server error {reply.status}")
        return reply

    async def _dav(self, method: str, path: str, body: bytes, depth: str) -> webdav.Multistatus:
        reply = await self._request(
            method,
            path,
            body,
            {
                "Depth": depth,
                "Content-Type": "application/xml; charset=utf-8",
            },
        )
        if reply.status != 207:
            raise _status_error(reply, f"{method} {path}")
        return webdav.parse_multistatus(reply.body, reply.url)

    # --- discovery ------------------------------------------------------------------------

    async def books(self) -> builtins.list[str]:
        """The address books this source reads (paths), discovered once."""
        if self._books is None:
            self._books = await self._discover()
        return self._books

    async def _discover(self) -> builtins.list[str]:
        start = webdav.as_collection(webdav.canonical_path(self.settings.url, self.settings.url))
        found = await self._dav(
            "PROPFIND",
            start,
            webdav.propfind(
                webdav.dav("resourcetype"),
                webdav.dav("current-user-principal"),
                webdav.carddav("addressbook-home-set"),
            ),
            "0",
        )
        here = found.responses[0] if found.responses else webdav.DavResponse(start)
        if here.has_type(webdav.carddav("addressbook")):
            return [start]
        homes = here.hrefs(webdav.carddav("addressbook-home-set"), self.settings.url)
        if not homes:
            principals = here.hrefs(webdav.dav("current-user-principal"), self.settings.url)
            if not principals:
                principals = await self._well_known_principal()
            for principal in principals:
                answer = await self._dav(
                    "PROPFIND",
                    principal,
                    webdav.propfind(webdav.carddav("addressbook-home-set")),
                    "0",
                )
                for response in answer.responses:
                    homes += response.hrefs(
                        webdav.carddav("addressbook-home-set"), self.origin + principal
                    )
        books: builtins.list[tuple[str, str]] = []
        for home in dict.fromkeys(homes):
            listing = await self._dav(
                "PROPFIND",
                webdav.as_collection(home),
                webdav.propfind(webdav.dav("resourcetype"), webdav.dav("displayname")),
                "1",
            )
            books += [
                (r.href, r.text(webdav.dav("displayname")))
                for r in listing.responses
                if r.has_type(webdav.carddav("addressbook"))
            ]
        if not books:
            raise Unavailable(
                f"{self.settings.url}: no address book found (url may point at an "
                "address book, a principal or the server)"
            )
        return _choose(books, self.settings.addressbooks, self.settings.url)

    async def _well_known_principal(self) -> builtins.list[str]:
        found = await self._dav(
            "PROPFIND",
            "/.well-known/carddav",
            webdav.propfind(webdav.dav("current-user-principal")),
            "0",
        )
        hrefs: builtins.list[str] = []
        for response in found.responses:
            hrefs += response.hrefs(webdav.dav("current-user-principal"), self.origin)
        return hrefs

    # --- reading --------------------------------------------------------------------------

    async def list(self) -> AsyncIterator[tuple[str, str]]:
        for book in await self.books():
            for href, etag in (await self._etags(book)).items():
                yield href, etag

    async def _etags(self, book: str) -> dict[str, str]:
        found = await self._dav("PROPFIND", book, webdav.propfind(webdav.dav("getetag")), "1")
        return {
            r.href: r.text(webdav.dav("getetag"))
            for r in found.responses
            if r.href != book and r.text(webdav.dav("getetag"))
        }

    async def get(self, href: str) -> Contact:
        reply = await self._request("GET", href)
        if reply.status == 404:
            raise NotFound(href)
        if reply.status != 200:
            raise _status_error(reply, f"GET {href}")
        return self._contact(
            href, reply.body.decode("utf-8", "replace"), reply.headers.get("ETag", "")
        )

    async def get_many(self, hrefs: Iterable[str]) -> builtins.list[Contact]:
        wanted = builtins.list(hrefs)
        contacts: builtins.list[Contact] = []
        for book in await self.books():
            mine = [h for h in wanted if h.startswith(book)]
            contacts += await self._multiget(book, mine)
        return contacts

    async def _multiget(self, book: str, hrefs: builtins.list[str]) -> builtins.list[Contact]:
        contacts = []
        size = self.settings.batch_size
        for start in range(0, len(hrefs), size):
            found = await self._dav(
                "REPORT", book, webdav.multiget(hrefs[start : start + size]), "1"
            )
            for response in found.responses:
                data = response.text(webdav.carddav("address-data"))
                if data:  # a per-item 404 inside the 207: gone meanwhile
                    contacts.append(
                        self._contact(response.href, data, response.text(webdav.dav("getetag")))
                    )
        return contacts

    def _contact(self, href: str, text: str, etag: str) -> Contact:
        return card_to_contact(_one_card(text), self.source, href).replace(etag=etag)

    async def changes(self, token: str | None) -> Changes:
        if token is None:
            self._books = None  # a full pull also rediscovers the address books
            states: dict[str, Any] = {}
        else:
            states = decode_token(token)
        books = await self.books()
        if token is not None and set(states) != set(books):
            raise InvalidToken("the address books changed")
        changed: builtins.list[Contact] = []
        deleted: set[str] = set()
        new_states: dict[str, Any] = {}
        for book in books:
            state = states.get(book, {})
            hrefs, gone, new_states[book] = await self._book_changes(book, state)
            changed += await self._multiget(book, hrefs)
            deleted |= gone
        return Changes(
            json.dumps(new_states),
            tuple(changed),
            complete=token is None,
            deleted_hrefs=frozenset(deleted),
        )

    async def _book_changes(
        self, book: str, state: dict[str, Any]
    ) -> tuple[builtins.list[str], set[str], dict[str, Any]]:
        """(hrefs to fetch, hrefs deleted, the book's next state) since `state`."""
        if "etags" not in state:
            reply = await self._request(
                "REPORT",
                book,
                webdav.sync_collection(state.get("sync", "")),
                {
                    "Depth": "1",
                    "Content-Type": "application/xml; charset=utf-8",
                },
            )
            if reply.status == 207:
                found = webdav.parse_multistatus(reply.body, reply.url)
                fetch = [r.href for r in found.responses if r.status != 404 and r.href != book]
                gone = {r.href for r in found.responses if r.status == 404}
                return fetch, gone, {"sync": found.sync_token}
            if state.get("sync") and (
                reply.status in (403, 409)
                or webdav.dav("valid-sync-token") in webdav.error_conditions(reply.body)
            ):
                raise InvalidToken(f"{book}: the server no longer accepts the sync token")
            # No sync-collection on this server: compare ETags instead.
        etags = await self._etags(book)
        known: dict[str, str] = state.get("etags", {})
        fetch = [href for href, etag in etags.items() if known.get(href) != etag]
        return fetch, set(known) - set(etags), {"etags": etags}

    # --- writing --------------------------------------------------------------------------

    async def create(self, contact: Contact) -> Contact:
        book = (await self.books())[0]
        # Named after the entry_id, as the card's UID is: a retried create finds its twin.
        # for_new_card makes it 32 hex digits: a phone's text never becomes a URL path.
        contact = for_new_card(contact)
        name = contact.entry_id or os.urandom(16).hex().upper()
        href = book + quote(name, safe="") + ".vcf"
        text = new_card(contact, self.settings.version).text()
        reply = await self._request(
            "PUT",
            href,
            text.encode(),
            {
                "Content-Type": VCARD_TYPE,
                "If-None-Match": "*",
            },
        )
        if reply.status == 412:
            raise AlreadyExists(href, href=href)  # a retried create: the first one landed
        if reply.status not in (200, 201, 204):
            raise _status_error(reply, f"PUT {href}")
        return await self._stored(href, text, reply)

    async def update(self, href: str, contact: Contact, etag: str) -> Contact:
        reply = await self._read(href)
        card = write_contact(_one_card(reply.body.decode("utf-8", "replace")), contact)
        text = card.text()
        # The server decides: if the card changed since `etag`, it answers 412 and nothing
        # is overwritten.
        put = await self._request(
            "PUT",
            href,
            text.encode(),
            {"Content-Type": VCARD_TYPE, **self._if_match(href, etag, reply)},
        )
        if put.status == 412:
            raise WrongEtag(href)
        if put.status == 404:
            raise NotFound(href)
        if put.status not in (200, 201, 204):
            raise _status_error(put, f"PUT {href}")
        return await self._stored(href, text, put)

    async def _read(self, href: str) -> _Reply:
        """The card at `href` as the server has it, with the server's own ETag: asked for
        uncompressed, since a compressing proxy weakens the ETag of what it compresses."""
        reply = await self._request("GET", href, headers={"Accept-Encoding": "identity"})
        if reply.status == 404:
            raise NotFound(href)
        if reply.status != 200:
            raise _status_error(reply, f"GET {href}")
        return reply

    def _if_match(self, href: str, etag: str, current: _Reply) -> dict[str, str]:
        """The precondition for writing over `current` (just read) when we were given
        `etag`. Raises WrongEtag when `current` is not that version."""
        now = current.headers.get("ETag", "")
        if not webdav.is_weak(etag):
            return {"If-Match": etag}
        if not webdav.weak_match(now, etag):
            raise WrongEtag(href)
        if not webdav.is_weak(now):
            return {"If-Match": now}
        # Nothing strong to send: a change landing between our read and this write
        # would be overwritten. Accepted (the window is one round trip), but told.
        event(
            "carddav_unconditional_write",
            logging.WARNING,
            source=self.source,
            href=href,
            reason="the server gives only weak ETags",
        )
        return {}

    async def _stored(self, href: str, text: str, reply: _Reply) -> Contact:
        etag = reply.headers.get("ETag", "")
        # Servers that change the card (or do not return a strong ETag) are read back.
        if not etag or etag.startswith("W/"):
            return await self.get(href)
        return self._contact(href, text, etag)

    async def delete(self, href: str, etag: str) -> None:
        condition = {"If-Match": etag}
        if webdav.is_weak(etag):
            condition = self._if_match(href, etag, await self._read(href))
        reply = await self._request("DELETE", href, headers=condition)
        if reply.status == 412:
            raise WrongEtag(href)
        if reply.status == 404:
            raise NotFound(href)
        if reply.status not in (200, 204):
            raise _status_error(reply, f"DELETE {href}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _path_segment(value: str) -> str:
    """`value` as one URL path segment: "/" is encoded, and "." or ".." cannot climb."""
    segment = quote(value, safe="@")
    return segment.replace(".", "%2E") if set(value) <= {"."} else segment


def _one_card(text: str) -> Card:
    cards = [part for is_card, part in split_cards(text) if is_card]
    return Card.parse(cards[0] if cards else text)


def _choose(
    books: builtins.list[tuple[str, str]], wanted: builtins.list[str], url: str
) -> builtins.list[str]:
    if not wanted:
        return [href for href, _ in books]
    chosen = []
    for name in wanted:
        match = [
            href
            for href, display in books
            if name.lower() in (display.lower(), href.rstrip("/").rsplit("/", 1)[-1].lower())
        ]
        if not match:
            names = ", ".join(display or href for href, display in books)
            raise Unavailable(f"{url}: no address book named {name!r} (found: {names})")
        chosen += match
    return builtins.list(dict.fromkeys(chosen))


def _status_error(reply: _Reply, action: str) -> Exception:
    if reply.status == 403:
        return ReadOnly(f"{action}: forbidden (403): the account may not do this")
    if reply.status == 404:
        return NotFound(f"{action}: not found (404)")
    if reply.status in (400, 409, 415, 422):
        return Rejected(
            f"{action}: the server refused the card ({reply.status}): "
            f"{reply.body[:200].decode('utf-8', 'replace')}"
        )
    return Unavailable(f"{action}: unexpected answer {reply.status}")
