"""The LDAP pull process: killed (the OOM killer, an operator), it is replaced at the next
pull; before, the broken pool stayed broken and every later pull failed until a restart."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors import ldap_process
from connectors.ldap_client import LdapClient
from connectors.ldap_fast import PagedSearch
from connectors.ldap_settings import LdapSettings, python_ldap_available
from gateway.connector import Changes, Unavailable
from gateway.model import Contact


def killed() -> Changes:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


def pulled() -> Changes:
    return Changes("token", (Contact(uid="u1", source="people", href="uid=u1"),), complete=True)


async def test_a_killed_pull_process_is_replaced_at_the_next_pull() -> None:
    assert (await ldap_process.changes_in_process(pulled)).changed[0].uid == "u1"
    with pytest.raises(Unavailable, match="pull process ended abruptly"):
        await ldap_process.changes_in_process(killed)
    again = await ldap_process.changes_in_process(pulled)
    assert again.token == "token" and again.changed[0].href == "uid=u1"


def test_a_python_ldap_that_does_not_load_is_not_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed but broken (its libldap missing): "auto" must fall back to ldap3, and
    "python-ldap" be a configuration error, not an ImportError at the first pull."""
    shadow = tmp_path / "ldap"
    shadow.mkdir()
    (shadow / "__init__.py").write_text('raise ImportError("_ldap.so: cannot read file data")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ldap", raising=False)
    python_ldap_available.cache_clear()
    try:
        assert not python_ldap_available()
        with pytest.raises(ValidationError, match="does not load"):
            LdapSettings.model_validate(
                {"url": "ldap://ldap.example.com", "base_dn": "dc=example", "client": "python-ldap"}
            )
        settings = LdapSettings.model_validate(
            {"url": "ldap://ldap.example.com", "base_dn": "dc=example"}
        )
        assert settings.client == "auto"
        assert PagedSearch("people", settings, LdapClient(settings)).fast is None
    finally:
        python_ldap_available.cache_clear()


def test_a_python_ldap_timeout_says_so() -> None:
    """ldap.TIMEOUT carries no description: the message ended in 'failed: '."""
    ldap = pytest.importorskip("ldap")
    from connectors.ldap_fast import _text

    assert _text(ldap.TIMEOUT()) == "timeout"
    assert _text(ldap.SERVER_DOWN({"desc": "Can't contact LDAP server"})) == (
        "Can't contact LDAP server"
    )
