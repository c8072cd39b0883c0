"""Configuration of the `carddav` connector."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator

from connectors.settings_checks import ca_file_problems, server_url_problem
from gateway.connector import ConfigPath, ConnectorSettings, PositiveDuration


class CardDavSettings(ConnectorSettings):
    #: An address book, or a server / principal URL to discover address books from.
    url: str
    username: str | None = None
    password: SecretStr | None = None
    #: "digest" for servers that only offer it (Baïkal's default).
    auth: Literal["basic", "digest"] = "basic"
    tls_verify: bool = True
    tls_ca_file: ConfigPath | None = None
    #: Which of the discovered address books to use (display name or last path segment);
    #: empty: all of them.
    addressbooks: list[str] = []
    timeout: PositiveDuration = 30.0
    #: vCard version of cards created from a phone.
    version: Literal["3.0", "4.0"] = "3.0"
    #: How many cards one addressbook-multiget asks for.
    batch_size: int = 100

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        if problem := server_url_problem(value, "http"):
            raise ValueError(problem)
        return value

    def preflight_problems(self) -> list[tuple[str, str]]:
        """What `check-config` reports beyond validation: files the connection needs."""
        return ca_file_problems(self.tls_ca_file)
