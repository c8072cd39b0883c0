"""Paged searches through python-ldap (libldap, in C), when it is installed: the `ldap-c`
extra, or Debian's python3-ldap. ldap3 decodes every entry in pure Python; libldap hands
over finished (dn, {name: [bytes]}) tuples, several times faster on a 100k-entry pull.

Only the paged search goes this way, on the server the pull's ldap3 connection chose and
with the same bind and TLS settings; binds for logins, reads, writes and content sync stay
on ldap3. Everything here blocks: call it from a worker thread or process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ldap3 import Connection
from ldap3.core.results import RESULT_CODES

from connectors.ldap_client import PAGED_RESULTS, Entry, InvalidCredentials, LdapClient, check
from connectors.ldap_settings import LdapSettings, python_ldap_available
from gateway.connector import Unavailable, event


def available() -> bool:
    """Whether python-ldap can be imported and loads."""
    return python_ldap_available()


class PagedSearch:
    """A full pull's paged search, through the `client` the settings choose."""

    def __init__(self, source: str, settings: LdapSettings, client: LdapClient) -> None:
        self.source = source
        self.settings = settings
        self.client = client
        use_fast = settings.client == "python-ldap" or (settings.client == "auto" and available())
        self.fast = FastPager(settings) if use_fast else None

    def __call__(
        self, conn: Connection, search_filter: str, attributes: list[str]
    ) -> Iterator[Entry]:
        """Every entry under base_dn matching `search_filter`, from the server `conn` (an
        open ldap3 connection) is bound to; with python-ldap on a connection of its own."""
        base, scope = self.settings.base_dn, self.settings.scope
        url = self.client.url_of(conn)
        if self.fast is not None and url:
            try:
                fast = self.fast.open(url)
            except Unavailable as exc:
                if self.settings.client == "python-ldap":
                    raise Unavailable(f'{exc}; set client = "ldap3" to pull with ldap3') from exc
                event(
                    "ldap_client_fallback",
                    logging.WARNING,
                    source=self.source,
                    url=url,
                    client="ldap3",
                    reason=str(exc),
                )
            else:
                return self.fast.paged(fast, base, search_filter, scope, attributes)
        return self.client.paged(conn, base, search_filter, scope, attributes)


class FastPager:
    """Paged searches over libldap connections made from `settings`."""

    def __init__(self, settings: LdapSettings) -> None:
        import ldap  # imported here: an optional dependency
        import ldap.controls

        self.ldap: Any = ldap
        self.settings = settings

    def open(self, url: str) -> Any:
        """A bound libldap connection to `url`. Raises InvalidCredentials for a rejected
        bind, Unavailable (saying what to change) when the server cannot be used."""
        ldap = self.ldap
        settings = self.settings
        secure = urlsplit(url).scheme.lower() == "ldaps"
        conn = ldap.initialize(url)
        try:
            conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
            conn.set_option(ldap.OPT_REFERRALS, 0)  # as ldap3's auto_referrals=False
            conn.set_option(ldap.OPT_DEREF, ldap.DEREF_NEVER)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, settings.timeout)
            conn.set_option(ldap.OPT_TIMEOUT, settings.timeout)
            if secure or settings.starttls:
                demand = ldap.OPT_X_TLS_DEMAND if settings.tls_verify else ldap.OPT_X_TLS_NEVER
                conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, demand)
                if settings.tls_ca_file:
                    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(settings.tls_ca_file))
                conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # applies the options above
            if settings.starttls and not secure:
                conn.start_tls_s()
            password = settings.password.get_secret_value() if settings.password else ""
            conn.simple_bind_s(settings.bind_dn or "", password)
        except ldap.INVALID_CREDENTIALS as exc:
            self._unbind(conn)
            who = settings.bind_dn or "anonymous"
            raise InvalidCredentials(
                f"bind as {who} rejected (invalid credentials): check bind_dn and password"
            ) from exc
        except ldap.LDAPError as exc:
            self._unbind(conn)
            hint = ""
            if secure or settings.starttls:
                # libldap gives no reason for a certificate it refuses.
                hint = "; libldap checks the TLS certificate itself"
                if urlsplit(url).hostname == "localhost":
                    hint += ", and one for localhost against this machine's own host name"
            raise Unavailable(f"{url}: python-ldap cannot connect ({_text(exc)}){hint}") from exc
        return conn

    def paged(
        self, conn: Any, base: str, search_filter: str, scope: str, attributes: list[str]
    ) -> Iterator[Entry]:
        """Every entry, page by page, then unbinds `conn`. As LdapClient.paged: any result
        but success (a size limit, too) raises, so a shortened directory is never returned."""
        ldap = self.ldap
        scopes = {"sub": ldap.SCOPE_SUBTREE, "one": ldap.SCOPE_ONELEVEL, "base": ldap.SCOPE_BASE}
        control = ldap.controls.SimplePagedResultsControl(
            True, size=self.settings.page_size, cookie=b""
        )
        timeout = self.settings.timeout

        def ask() -> Any:
            return conn.search_ext(
                base, scopes[scope], search_filter, attributes, serverctrls=[control]
            )

        count = 0
        try:
            with self._answers(conn, base, count):
                message = ask()
            while True:
                with self._answers(conn, base, count):
                    _, found, _, controls = conn.result3(message, timeout=timeout)
                    cookie = next(
                        (c.cookie for c in controls if c.controlType == PAGED_RESULTS), None
                    )
                    if cookie:
                        # The next page is asked for before this one is handed on: the
                        # server reads it while this one is mapped.
                        control.cookie = cookie
                        message = ask()
                for dn, values in found:
                    if dn is not None:  # None: a search reference (a referral), not followed
                        count += 1
                        yield dn, values
                if not cookie:
                    return
        finally:
            self._unbind(conn)

    @contextlib.contextmanager
    def _answers(self, conn: Any, base: str, returned: int) -> Iterator[None]:
        """python-ldap's errors as the typed errors LdapClient.paged raises, alike worded."""
        ldap = self.ldap
        try:
            yield
        except ldap.NO_SUCH_OBJECT as exc:
            raise Unavailable(
                f"base_dn {base!r} does not exist on the server: check base_dn"
            ) from exc
        except (ldap.SERVER_DOWN, ldap.TIMEOUT) as exc:
            url = conn.get_option(ldap.OPT_URI)
            raise Unavailable(f"{url}: search of {base} failed: {_text(exc)}") from exc
        except ldap.LDAPError as exc:
            check(_result(exc), f"search of {base}", returned=returned)
            raise Unavailable(f"search of {base}: {_text(exc)}") from exc

    def _unbind(self, conn: Any) -> None:
        with contextlib.suppress(self.ldap.LDAPError):
            conn.unbind_s()


def _text(exc: Any) -> str:
    """python-ldap's error as one line: its description, then libldap's detail if any."""
    details = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    # ldap.TIMEOUT carries nothing: its class name is all there is to say.
    desc = str(details.get("desc") or exc) or type(exc).__name__.lower().replace("_", " ")
    info = str(details.get("info") or "").strip()
    return f"{desc} ({info})" if info and info != "(unknown error code)" else desc


def _result(exc: Any) -> dict[str, Any]:
    """An ldap3-style result for `check`, so both clients word their errors alike."""
    details = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    code = int(details.get("result", 80))
    return {
        "result": code,
        "description": RESULT_CODES.get(code, str(details.get("desc") or "error")),
        "message": str(details.get("info") or ""),
    }
