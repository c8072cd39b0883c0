"""Which client pages through a full pull (`client`): python-ldap and ldap3 give the same
contacts, "auto" falls back to ldap3 where libldap cannot connect, and asking for
python-ldap where it is missing is a configuration error."""

from __future__ import annotations

import importlib.util
import logging
import socket
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from connectors.ldap import LdapConnector
from connectors.ldap_entry import etag_of
from connectors.ldap_fast import available
from connectors.ldap_settings import LdapSettings, python_ldap_available
from gateway.connector import Unavailable
from tests.connector_contract import listing
from tests.ldap.server import PEOPLE, READER_DN, SERVICE_PASSWORD, Slapd
from tests.test_ldap_connector import AD_PERSON

MakeSlapd = Callable[..., Slapd]

needs_python_ldap = pytest.mark.skipif(
    not available(), reason="python-ldap is not installed (make .venv/bin/.ldap-c)"
)


def settings(server: Slapd, **overrides: Any) -> LdapSettings:
    return LdapSettings.model_validate(
        {
            "url": server.url,
            "bind_dn": READER_DN,
            "password": SERVICE_PASSWORD,
            "base_dn": PEOPLE,
            "page_size": 7,
            **overrides,
        }
    )


@needs_python_ldap
@pytest.mark.parametrize("preset", ["openldap", "active-directory"])
async def test_both_clients_map_the_same_contacts(make_slapd: MakeSlapd, preset: str) -> None:
    server = make_slapd(people=40, extra_ldif=AD_PERSON)
    pulled = {}
    for client in ("ldap3", "python-ldap"):
        ldap = LdapConnector(
            "people",
            settings(
                server,
                preset=preset,
                filter="(objectClass=inetOrgPerson)",
                incremental="timestamp",
                client=client,
            ),
        )
        result = await ldap.changes(None)
        pulled[client] = sorted(result.changed, key=lambda c: c.href)
        assert len(pulled[client]) == 41
        assert all(c.etag == etag_of(c) for c in result.changed)
        assert '"since": "' in result.token  # the newest modifyTimestamp, from either
    assert pulled["ldap3"] == pulled["python-ldap"]
    jane = next(c for c in pulled["python-ldap"] if c.display_name == "Jane Roe")
    if preset == "active-directory":
        assert jane.uid == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"  # objectGUID, binary
        assert jane.business == ("+1 425 555 0100", "+1 425 555 0101", "+1 425 555 0102")
        assert jane.sip == ("jane@contoso.example",)


def test_auto_uses_python_ldap_when_it_is_installed() -> None:
    auto = LdapConnector("people", LdapSettings(url=["ldap://x"], base_dn="o=x"))  # type: ignore[arg-type]
    assert (auto.paged_search.fast is not None) == available()
    plain = LdapConnector("people", LdapSettings(url=["ldap://x"], base_dn="o=x", client="ldap3"))  # type: ignore[arg-type]
    assert plain.paged_search.fast is None


@needs_python_ldap
@pytest.mark.skipif(
    socket.gethostname() == "localhost", reason="libldap's localhost quirk is not seen here"
)
async def test_auto_falls_back_to_ldap3_where_libldap_cannot_connect(
    make_slapd: MakeSlapd, caplog: pytest.LogCaptureFixture
) -> None:
    """libldap checks a certificate for "localhost" against this machine's own name, which
    the test certificate (issued for localhost and 127.0.0.1) does not carry; ldap3 checks
    it against "localhost". A gateway that pulled with ldap3 keeps pulling."""
    server = make_slapd(people=3)
    tls = {"url": server.ldaps_url, "tls_ca_file": server.ca_file}
    caplog.set_level(logging.WARNING, logger="xcap_gateway")
    assert len(await listing(LdapConnector("people", settings(server, **tls)))) == 3
    (fallback,) = [r for r in caplog.records if getattr(r, "event", "") == "ldap_client_fallback"]
    assert fallback.__dict__["fields"]["url"] == server.ldaps_url
    assert "python-ldap cannot connect" in fallback.__dict__["fields"]["reason"]
    assert "localhost against this machine's own host name" in fallback.getMessage()
    # Asked for by name, python-ldap does not hand the pull to ldap3: it says what to set.
    chosen = LdapConnector("people", settings(server, client="python-ldap", **tls))
    with pytest.raises(Unavailable, match='set client = "ldap3"'):
        await listing(chosen)


def test_python_ldap_where_it_is_missing_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ldap" else find_spec(name)
    )
    python_ldap_available.cache_clear()  # it remembers what it found
    try:
        with pytest.raises(
            pydantic.ValidationError, match=r"client\n.*pip install 'xcap-gateway\[ldap-c\]'"
        ):
            LdapSettings(url=["ldap://x"], base_dn="o=x", client="python-ldap")  # type: ignore[arg-type]
        assert LdapSettings(url=["ldap://x"], base_dn="o=x").client == "auto"  # type: ignore[arg-type]
    finally:
        python_ldap_available.cache_clear()
