"""Opening, binding and searching with ldap3, with server failover and errors that say
what an administrator should change. Everything here blocks: call it from a worker thread."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ldap3 import BASE, DEREF_NEVER, LEVEL, NONE, SUBTREE, SYNC, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError
from ldap3.utils.conv import to_unicode

from connectors.ldap_settings import LdapSettings
from gateway.connector import (
    AlreadyExists,
    ConnectorError,
    NotFound,
    ReadOnly,
    Rejected,
    Unavailable,
    WrongEtag,
)

PAGED_RESULTS = "1.2.840.113556.1.4.319"
SCOPES = {"sub": SUBTREE, "one": LEVEL, "base": BASE}
Entry = tuple[str, Mapping[str, Sequence[bytes]]]


def _describe_socket_error(url: str, exc: Exception) -> str:
    text = str(exc)
    lowered = text.lower()
    if "certificate verify failed" in lowered and "hostname mismatch" not in lowered:
        return (
            f"{url}: its TLS certificate is not trusted; set tls_ca_file to the CA that "
            f"issued it ({text})"
        )
    if "hostname" in lowered or "doesn't match" in lowered:
        return f"{url}: the TLS certificate is not for this host name; use a name it was issued for ({text})"
    if "timed out" in lowered:
        return f"{url}: no answer (timed out): check the address, port and firewall"
    return f"{url}: cannot connect ({text})"


class InvalidCredentials(Unavailable):
    """A server answered the bind with invalid credentials (49): for the gateway's own
    bind_dn a configuration error like any Unavailable, for a user's bind a wrong password."""


class LdapClient:
    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings

    def _server(self, url: str) -> Server:
        parts = urlsplit(url)
        host, port, secure = _address(url)
        tls = None
        if secure or self.settings.starttls:
            tls = Tls(
                validate=ssl.CERT_REQUIRED if self.settings.tls_verify else ssl.CERT_NONE,
                ca_certs_file=str(self.settings.tls_ca_file) if self.settings.tls_ca_file else None,
                version=ssl.PROTOCOL_TLS_CLIENT,
                sni=parts.hostname,  # also what Python checks the certificate's names against
            )
        return Server(
            host,
            port=port,
            use_ssl=secure,
            tls=tls,
            get_info=NONE,
            connect_timeout=self.settings.timeout,
        )

    def open(self) -> Connection:
        """A bound connection to the first server in `url` that answers."""
        failures = []
        password = self.settings.password.get_secret_value() if self.settings.password else None
        for url in self.settings.url:
            conn = Connection(
                self._server(url),
                user=self.settings.bind_dn,
                password=password,
                client_strategy=SYNC,
                raise_exceptions=False,
                receive_timeout=max(1, round(self.settings.timeout)),  # ldap3 packs an int
                auto_referrals=False,
                # Each walks every attribute of every entry found: to add empty lists for
                # attributes an entry lacks (the mapping needs none), to find AD's ranged
                # values (only on attributes with over 1,500 values, never a phone's).
                return_empty_attributes=False,
                auto_range=False,
            )
            _decode_raw_entries(conn)
            try:
                conn.open()
                if (
                    self.settings.starttls
                    and not url.lower().startswith("ldaps")
                    and not conn.start_tls()
                ):
                    raise LDAPStartTLSError(conn.result.get("message") or "StartTLS refused")
                if conn.bind():
                    return conn
                result = conn.result
                conn.unbind()
            except (LDAPException, OSError) as exc:
                _close(conn)
                failures.append(_describe_socket_error(url, exc))
                continue
            except (KeyError, ValueError, IndexError, TypeError) as exc:
                # ldap3's BER decoder on an answer that is no LDAP message (an HTTP server
                # or proxy on that port) fails with whatever the bytes led it to.
                _close(conn)
                failures.append(
                    f"{url}: the answer is not LDAP ({type(exc).__name__}): "
                    "a wrong port, or a proxy in the way?"
                )
                continue
            if result.get("result") == 49:
                who = self.settings.bind_dn or "anonymous"
                raise InvalidCredentials(
                    f"bind as {who} rejected (invalid credentials): check bind_dn and password"
                )
            failures.append(f"{url}: bind failed: {describe(result)}")
        raise Unavailable("no LDAP server could be used: " + "; ".join(failures))

    def url_of(self, conn: Connection) -> str:
        """Which of the `url`s an open connection is to."""
        server = (conn.server.host, conn.server.port, conn.server.ssl)
        return next((url for url in self.settings.url if _address(url) == server), "")

    def paged(
        self, conn: Connection, base: str, search_filter: str, scope: str, attributes: list[str]
    ) -> Iterator[Entry]:
        """Every entry, page by page. Any result but success (a size limit, too) raises:
        a shortened directory is never returned."""
        cookie: bytes | None = None
        count = 0
        while True:
            self.call(
                conn.search,
                base,
                search_filter,
                search_scope=SCOPES[scope],
                attributes=attributes,
                paged_size=self.settings.page_size,
                paged_cookie=cookie,
                dereference_aliases=DEREF_NEVER,
            )
            if conn.result.get("result") == 32:
                raise Unavailable(f"base_dn {base!r} does not exist on the server: check base_dn")
            check(conn.result, f"search of {base}", returned=count)
            for item in conn.response or []:
                if item.get("type") == "searchResEntry":
                    count += 1
                    yield item["dn"], item["raw_attributes"]
            control = (conn.result.get("controls") or {}).get(PAGED_RESULTS)
            cookie = control["value"]["cookie"] if control else None
            if not cookie:
                return

    def read(self, conn: Connection, dn: str, attributes: list[str]) -> Entry:
        self.call(
            conn.search,
            dn,
            "(objectClass=*)",
            search_scope=BASE,
            attributes=attributes,
            dereference_aliases=DEREF_NEVER,
        )
        if conn.result.get("result") == 32:
            raise NotFound(dn)
        check(conn.result, f"read of {dn}")
        for item in conn.response or []:
            if item.get("type") == "searchResEntry":
                return item["dn"], item["raw_attributes"]
        raise NotFound(dn)

    def root_dse(self, conn: Connection, attributes: list[str]) -> Mapping[str, Sequence[bytes]]:
        try:
            return self.read(conn, "", attributes)[1]
        except ConnectorError:
            return {}

    @staticmethod
    def call(method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except LDAPException as exc:
            raise Unavailable(f"LDAP connection failed: {exc}") from exc


def _address(url: str) -> tuple[str, int, bool]:
    """(host, port, TLS from the start) of an ldap:// or ldaps:// URL."""
    parts = urlsplit(url)
    secure = parts.scheme.lower() == "ldaps"
    return parts.hostname or "localhost", parts.port or (636 if secure else 389), secure


def _decode_raw_entries(conn: Connection) -> None:
    """Search entries on `conn` carry `dn`, `raw_attributes` (a plain dict) and `controls`
    only. ldap3 also formats every value into `attributes` and builds two case-insensitive
    dicts per entry: 60% of its time on a 100k-entry pull, for values nothing here reads
    (the mapping looks names up without regard to case). Other responses decode as before."""
    strategy = conn.strategy
    decode_response = strategy.decode_response_fast
    decode_control = strategy.decode_control_fast

    def decode(message: dict[str, Any]) -> dict[str, Any]:
        if message["protocolOp"] != 4:  # searchResEntry
            return decode_response(message)  # type: ignore[no-any-return]
        dn, attributes = message["payload"][0][3], message["payload"][1][3]
        # Each attribute is a BER tuple whose value is (type, SET OF values).
        entry: dict[str, Any] = {
            "type": "searchResEntry",
            "dn": to_unicode(dn, from_server=True),
            "raw_attributes": {
                a[3][0][3].decode("utf-8", "replace"): [v[3] for v in a[3][1][3]]
                for a in attributes
            },
        }
        if message["controls"]:
            entry["controls"] = dict(decode_control(c[3]) for c in message["controls"])
        return entry

    strategy.decode_response_fast = decode


def _close(conn: Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    if conn.socket is not None:
        with contextlib.suppress(OSError):
            conn.socket.close()


def describe(result: Mapping[str, Any]) -> str:
    message = str(result.get("message") or "").strip()
    text = f"{result.get('description', 'error')} ({result.get('result')})"
    return f"{text}: {message}" if message else text


def check(result: Mapping[str, Any], action: str, returned: int | None = None) -> None:
    """Raise the typed error for an LDAP result that is not success."""
    code = result.get("result")
    if code == 0:
        return
    detail = describe(result)
    if code == 4:
        got = f" after {returned} entries" if returned is not None else ""
        raise Unavailable(
            f"{action}: the server's size limit was hit{got}; nothing was taken from this "
            "partial answer. Let bind_dn page past it (slapd: limits … size.prtotal=unlimited) "
            "or lower page_size to the server's maximum page size"
        )
    if code == 32:
        raise NotFound(
            f"{action}: {result.get('message') or 'no such object'} — does base_dn exist?"
        )
    if code == 49:
        raise Unavailable(f"{action}: invalid credentials: check bind_dn and password")
    if code == 50:
        raise ReadOnly(f"{action}: bind_dn may not do this (insufficient access rights)")
    if code in (16, 20):
        raise WrongEtag(f"{action}: the entry changed meanwhile ({detail})")
    if code == 68:
        raise AlreadyExists(f"{action}: {detail}")
    if code in (17, 18, 19, 21, 34, 64, 65, 67, 69):
        raise Rejected(f"{action}: refused by the directory's schema or rules: {detail}")
    raise Unavailable(f"{action}: {detail}")
