"""Basic-auth passwords checked by a bind to the directory of [auth] ldap_source."""

from __future__ import annotations

from gateway.auth.middleware import PasswordCheck, PasswordCheckUnavailable
from gateway.config import Config
from gateway.connector import ConnectorError
from gateway.engine import Engine
from gateway.model import UserRef


def directory_password_check(config: Config, engine: Engine) -> PasswordCheck | None:
    """Basic authentication against the directory of [auth] ldap_source, if set. A wrong
    password is False; a directory that cannot answer (down, or refusing the gateway's own
    bind) raises PasswordCheckUnavailable, so the client hears 503, not "wrong password"."""
    name = config.auth.ldap_source
    if name is None:
        return None

    async def check(login: str, password: str) -> bool:
        connector = engine.sources.state(name, UserRef("")).connector
        try:
            return await connector.check_password(login, password)
        except ConnectorError as exc:
            raise PasswordCheckUnavailable(f"source {name}: {exc}") from exc

    return check
