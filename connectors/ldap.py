"""`ldap`: people from Active Directory, OpenLDAP or FreeIPA, synced incrementally,
with conditional write-back.

ldap3 blocks, so every operation runs in a worker thread on its own connection (which also
gives failover across `url` for free); pulls run in a separate process (ldap_process), and
page with python-ldap where it is installed (ldap_fast, `client`). Incremental sync uses
RFC 4533 content sync where the server offers it (deletions included), else a
modifyTimestamp filter with a full pull every `full_sync_interval` to notice deletions.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ldap3 import DEREF_NEVER, Connection
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn
from pydantic import SecretStr

from connectors import ldap_syncrepl as syncrepl
from connectors.ldap_client import SCOPES, Entry, InvalidCredentials, LdapClient, check
from connectors.ldap_entry import (
    EntryMapper,
    holds_exactly,
    modifications,
    new_entry_attributes,
)
from connectors.ldap_fast import PagedSearch
from connectors.ldap_process import changes_in_process
from connectors.ldap_settings import LdapSettings
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
    fill_template,
    has_template,
)
from gateway.model import Contact, UserRef

_DN_KEYS = {"base_dn", "create_base_dn"}
#: A filter that matches nothing: asks a content-sync server for its current cookie only.
_NOTHING = "(&(objectClass=*)(!(objectClass=*)))"


class LdapConnector(Connector[LdapSettings]):
    settings_model = LdapSettings
    default_allow_delete = False

    def __init__(self, source: str, settings: LdapSettings, user: UserRef | None = None) -> None:
        super().__init__(source, settings, user)
        self.client = LdapClient(settings)
        self.paged_search = PagedSearch(source, settings, self.client)
        self.mapping = settings.attribute_map()
        self.mapper = EntryMapper(source, self.mapping, settings.uid, settings.entry_id_attribute)
        wanted = {a for attributes in self.mapping.values() for a in attributes}
        wanted |= {settings.uid, "modifyTimestamp"}
        if settings.entry_id_attribute:
            wanted.add(settings.entry_id_attribute)
        self.attributes = sorted(wanted, key=str.lower)
        self._write_lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(incremental=self.settings.incremental != "off")

    @classmethod
    def settings_for_user(cls, settings: LdapSettings, values: Mapping[str, str]) -> LdapSettings:
        """Values go into filters escaped per RFC 4515 and into DNs per RFC 4514, so a
        user named `*)(uid=*` cannot widen a search."""
        updates: dict[str, Any] = {}
        for key in ("base_dn", "filter", "create_base_dn"):
            text = getattr(settings, key)
            if text and has_template(text):
                escape = escape_rdn if key in _DN_KEYS else escape_filter_chars
                updates[key] = fill_template(text, values, escape)
        return settings.model_copy(update=updates)

    # --- the interface --------------------------------------------------------------

    async def list(self) -> AsyncIterator[tuple[str, str]]:
        result = await asyncio.to_thread(self._full_pull)
        for contact in result.changed:
            yield contact.href, contact.etag

    async def get(self, href: str) -> Contact:
        return await asyncio.to_thread(self._with_connection, self._read_contact, href)

    async def get_many(self, hrefs: Iterable[str]) -> builtins.list[Contact]:
        return await asyncio.to_thread(self._with_connection, self._read_many, builtins.list(hrefs))

    async def changes(self, token: str | None) -> Changes:
        return await changes_in_process(
            _changes_in_process, self.source, self.settings, self.user, token
        )

    async def check_password(self, login: str, password: str) -> bool:
        if not password:
            return False  # an empty password would be an anonymous bind, which "succeeds"
        return bool(await asyncio.to_thread(self._check_password, login, password))

    def _check_password(self, login: str, password: str) -> bool:
        search = (
            f"(&{self.settings.search_filter}({self.settings.login}={escape_filter_chars(login)}))"
        )
        conn = self.client.open()
        try:
            found = list(
                self.client.paged(conn, self.settings.base_dn, search, self.settings.scope, ["1.1"])
            )
        finally:
            conn.unbind()
        if len(found) != 1:
            return False
        user = LdapClient(
            self.settings.model_copy(
                update={"bind_dn": found[0][0], "password": SecretStr(password)}
            )
        )
        try:
            user.open().unbind()
        except InvalidCredentials:
            return False  # any other Unavailable is an outage: the caller answers 503
        return True

    async def create(self, contact: Contact) -> Contact:
        return await asyncio.to_thread(self._with_connection, self._create, contact)

    async def update(self, href: str, contact: Contact, etag: str) -> Contact:
        return await asyncio.to_thread(self._with_connection, self._update, href, contact, etag)

    async def delete(self, href: str, etag: str) -> None:
        await asyncio.to_thread(self._with_connection, self._delete, href, etag)

    # --- reading ----------------------------------------------------------------------

    def _with_connection(self, work: Any, *args: Any) -> Any:
        conn = self.client.open()
        try:
            return work(conn, *args)
        finally:
            conn.unbind()

    def _contact(self, entry: Entry) -> Contact:
        return self.mapper(*entry)

    def _read_contact(self, conn: Connection, dn: str) -> Contact:
        return self._contact(self.client.read(conn, dn, self.attributes))

    def _read_many(self, conn: Connection, dns: builtins.list[str]) -> builtins.list[Contact]:
        found = []
        for dn in dns:
            try:
                found.append(self._read_contact(conn, dn))
            except NotFound:
                continue
        return found

    def _search(self, conn: Connection, search_filter: str) -> tuple[builtins.list[Contact], str]:
        """Contacts matching `search_filter`, and the newest modifyTimestamp among them."""
        contacts, newest = [], ""
        for entry in self.paged_search(conn, search_filter, self.attributes):
            contacts.append(self._contact(entry))
            newest = max(newest, _timestamp(entry))
        return contacts, newest

    def _mode(self, conn: Connection) -> str:
        mode = self.settings.incremental
        if mode != "auto":
            return mode
        dse = self.client.root_dse(conn, ["supportedControl"])
        controls = {
            v.decode()
            for k, values in dse.items()
            if k.lower() == "supportedcontrol"
            for v in values
        }
        # Content sync names deletions by entryUUID: only usable when that is the uid.
        if syncrepl.SYNC_REQUEST in controls and self.settings.uid.lower() == "entryuuid":
            return "syncrepl"
        return "timestamp"

    def _full_pull(self) -> Changes:
        conn = self.client.open()
        try:
            mode = self._mode(conn)
            # Taken before the pull, so a change made during it is seen again next time.
            cookie = self._current_cookie(conn) if mode == "syncrepl" else None
            contacts, newest = self._search(conn, self.settings.search_filter)
        finally:
            conn.unbind()
        token: dict[str, Any] = {"mode": mode, "full_at": time.time()}
        if cookie is not None:
            token["cookie"] = base64.b64encode(cookie).decode()
        if mode == "timestamp":
            token["since"] = newest
        return Changes(json.dumps(token), tuple(contacts), complete=True)

    def _current_cookie(self, conn: Connection) -> bytes:
        changes = self._sync_search(conn, _NOTHING, None)
        return base64.b64decode(json.loads(changes.token)["cookie"])

    def _changes_since(self, token: dict[str, Any]) -> Changes:
        mode = token.get("mode")
        if mode == "syncrepl" and "cookie" in token:
            conn = self.client.open()
            try:
                return self._sync_search(
                    conn, self.settings.search_filter, base64.b64decode(token["cookie"])
                )
            finally:
                conn.unbind()
        if mode == "timestamp" and token.get("since"):
            if time.time() - float(token.get("full_at", 0)) > self.settings.full_sync_interval:
                return self._full_pull()  # the periodic pass that notices deletions
            conn = self.client.open()
            try:
                since = token["since"]
                contacts, newest = self._search(
                    conn, f"(&{self.settings.search_filter}(modifyTimestamp>={since}))"
                )
            finally:
                conn.unbind()
            return Changes(json.dumps({**token, "since": max(since, newest)}), tuple(contacts))
        raise InvalidToken(f"token of mode {mode!r} cannot be resumed")

    def _sync_search(self, conn: Connection, search_filter: str, cookie: bytes | None) -> Changes:
        """One RFC 4533 refreshOnly search: changed entries, deleted / present UUIDs."""
        self.client.call(
            conn.search,
            self.settings.base_dn,
            search_filter,
            search_scope=SCOPES[self.settings.scope],
            attributes=self.attributes,
            controls=[syncrepl.request_control(cookie)],
            dereference_aliases=DEREF_NEVER,
        )
        result = conn.result
        if result.get("result") in (syncrepl.SYNC_REFRESH_REQUIRED, 4):
            raise InvalidToken("the server asks for a full refresh")
        if result.get("result") == 32:
            raise Unavailable(f"base_dn {self.settings.base_dn!r} does not exist on the server")
        check(result, f"content sync of {self.settings.base_dn}")
        info = syncrepl.SyncInfo()
        changed: builtins.list[Contact] = []
        for item in conn.response or []:
            if item.get("type") == "intermediateResponse":
                if item.get("responseName") == syncrepl.SYNC_INFO:
                    syncrepl.decode_info(item["responseValue"], info)
                continue
            if item.get("type") != "searchResEntry":
                continue
            control = (item.get("controls") or {}).get(syncrepl.SYNC_STATE)
            if control is None:
                continue
            state, entry_uuid = syncrepl.decode_state(control["value"])
            if state == "present":
                info.present.add(entry_uuid)
            elif state == "delete":
                info.deleted.add(entry_uuid)
            else:
                changed.append(self._contact((item["dn"], item["raw_attributes"])))
        done = (result.get("controls") or {}).get(syncrepl.SYNC_DONE)
        if done is None:
            raise InvalidToken("the server ended content sync without a cookie")
        done_cookie, refresh_deletes = syncrepl.decode_done(done["value"])
        new_cookie = done_cookie or info.cookie or cookie or b""
        token = json.dumps({"mode": "syncrepl", "cookie": base64.b64encode(new_cookie).decode()})
        # Without refreshDeletes the server used the present phase: what it did not
        # name as present (or send as changed) is gone.
        present = None if refresh_deletes else frozenset(info.present | {c.uid for c in changed})
        return Changes(token, tuple(changed), frozenset(info.deleted), present)

    # --- writing ------------------------------------------------------------------------

    def _update(self, conn: Connection, dn: str, wanted: Contact, etag: str) -> Contact:
        with self._write_lock:
            entry = self.client.read(conn, dn, self.attributes)
            current = self._contact(entry)
            if current.etag != etag:
                raise WrongEtag(dn)
            changes = modifications(current, wanted, entry[1], self.mapping)
            if not changes:
                return current
            self.client.call(conn.modify, dn, changes)
            check(conn.result, f"modify of {dn}")
            return self._read_contact(conn, dn)

    def _delete(self, conn: Connection, dn: str, etag: str) -> None:
        with self._write_lock:
            if self._read_contact(conn, dn).etag != etag:
                raise WrongEtag(dn)
            self.client.call(conn.delete, dn)
            check(conn.result, f"delete of {dn}")

    def _create(self, conn: Connection, contact: Contact) -> Contact:
        base = self.settings.create_base_dn
        if not base:
            raise ReadOnly("no create_base_dn is set: phones cannot add contacts to this source")
        marker = self.settings.entry_id_attribute
        if marker and contact.entry_id:
            found = list(
                self.client.paged(
                    conn,
                    base,
                    f"({marker}={escape_filter_chars(contact.entry_id)})",
                    "sub",
                    ["1.1"],
                )
            )
            if found:
                raise AlreadyExists(found[0][0], href=found[0][0])
        attributes = new_entry_attributes(
            contact, self.mapping, self.settings.object_classes, marker
        )
        rdn_attribute = self.settings.create_rdn_attribute
        rdn_value = (attributes.get(rdn_attribute) or [contact.entry_id or "contact"])[0]
        # A name taken by someone else gets the entry_id as a suffix (the first 8 digits,
        # then all of them). A name taken by an entry holding exactly what this create
        # writes is this very create, landed before a crash or a lost answer: a retry
        # finds it there instead of adding a second entry, with or without a marker.
        suffix = contact.entry_id or "new"
        candidates = dict.fromkeys(
            [rdn_value, f"{rdn_value} ({suffix[:8]})", f"{rdn_value} ({suffix})"]
        )
        with self._write_lock:
            for value in candidates:
                dn = f"{rdn_attribute}={escape_rdn(value)},{base}"
                written = {**attributes, rdn_attribute: [value]}
                self.client.call(conn.add, dn, attributes=written)
                if conn.result.get("result") != 68:
                    check(conn.result, f"add of {dn}")
                    return self._read_contact(conn, dn)
                if self._holds_exactly(conn, dn, written):
                    raise AlreadyExists(f"add of {dn}: already there, from an earlier try", href=dn)
        raise Rejected(
            f"add of {rdn_attribute}={rdn_value} under {base}: that name and its suffixed "
            "forms are taken by other entries"
        )

    def _holds_exactly(
        self, conn: Connection, dn: str, written: dict[str, builtins.list[str]]
    ) -> bool:
        mapped = [a for attributes in self.mapping.values() for a in attributes]
        if self.settings.entry_id_attribute:
            mapped.append(self.settings.entry_id_attribute)
        try:
            _, raw = self.client.read(conn, dn, sorted({*mapped, *written}, key=str.lower))
        except NotFound:
            return False  # deleted since the add found it: not ours to claim
        return holds_exactly(raw, written, mapped)


def _changes_in_process(
    source: str, settings: LdapSettings, user: UserRef | None, token: str | None
) -> Changes:
    connector = LdapConnector(source, settings, user)
    if token is None:
        return connector._full_pull()
    return connector._changes_since(decode_token(token))


def _timestamp(entry: Entry) -> str:
    for name, values in entry[1].items():
        if name.lower() == "modifytimestamp" and values:
            return values[0].decode()
    return ""
