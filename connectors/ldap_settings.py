"""Configuration of the `ldap` connector, and the attribute maps of the presets."""

from __future__ import annotations

import functools
import importlib.util
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.settings_checks import ca_file_problems, server_url_problem
from gateway.connector import (
    ConfigPath,
    ConnectorSettings,
    Duration,
    PositiveDuration,
)

#: The normalized fields an LDAP attribute can feed; list fields take every value.
TEXT_FIELDS = ("display_name", "given_name", "surname", "profession", "company", "comment")
LIST_FIELDS = ("emails", "sip", "mobile", "home", "business")
FIELDS = TEXT_FIELDS + LIST_FIELDS

Preset = Literal["openldap", "active-directory", "freeipa"]

_COMMON: dict[str, list[str]] = {
    "display_name": ["displayName", "cn"],
    "given_name": ["givenName"],
    "surname": ["sn"],
    "profession": ["title"],
    "emails": ["mail"],
}

PRESET_ATTRIBUTES: dict[str, dict[str, list[str]]] = {
    "openldap": {
        **_COMMON,
        "company": ["o"],
        "comment": ["description"],
        "sip": [],
        "mobile": ["mobile"],
        "home": ["homePhone"],
        "business": ["telephoneNumber"],
    },
    "active-directory": {
        **_COMMON,
        "company": ["company"],
        "comment": ["info"],
        "sip": ["msRTCSIP-PrimaryUserAddress"],
        "mobile": ["mobile", "otherMobile"],
        "home": ["homePhone", "otherHomePhone"],
        "business": ["telephoneNumber", "otherTelephone"],
    },
}
# FreeIPA users are inetOrgPersons: the same map as OpenLDAP.
PRESET_ATTRIBUTES["freeipa"] = PRESET_ATTRIBUTES["openldap"]
PRESET_UID = {"openldap": "entryUUID", "active-directory": "objectGUID", "freeipa": "ipaUniqueID"}
PRESET_FILTER = {
    "openldap": "(objectClass=inetOrgPerson)",
    # Enabled people only: bit 2 of userAccountControl marks a disabled account.
    "active-directory": "(&(objectCategory=person)(objectClass=user)"
    "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
    "freeipa": "(objectClass=person)",
}
PRESET_LOGIN = {"openldap": "uid", "active-directory": "sAMAccountName", "freeipa": "uid"}
PRESET_OBJECT_CLASSES = {
    "openldap": ["inetOrgPerson"],
    "active-directory": ["top", "person", "organizationalPerson", "contact"],
    "freeipa": ["inetOrgPerson"],
}


class LdapSettings(ConnectorSettings):
    url: list[str]
    starttls: bool = False
    tls_ca_file: ConfigPath | None = None
    tls_verify: bool = True
    bind_dn: str | None = None
    password: SecretStr | None = None
    base_dn: str
    scope: Literal["sub", "one", "base"] = "sub"
    filter: str | None = None
    page_size: int = Field(default=500, ge=1, le=10000)
    timeout: PositiveDuration = 10.0
    preset: Preset = "openldap"
    attributes: dict[str, str | list[str]] = {}
    uid_attribute: str | None = None
    #: "auto": RFC 4533 content sync when the server offers it, else modifyTimestamp.
    incremental: Literal["auto", "syncrepl", "timestamp", "off"] = "auto"
    #: With "timestamp", how often a full pull runs to notice deletions.
    full_sync_interval: Duration = 6 * 3600.0
    create_base_dn: str | None = None
    create_rdn_attribute: str = "cn"
    create_object_classes: list[str] | None = None
    #: An attribute that keeps a phone-created entry's entry_id (optional).
    entry_id_attribute: str | None = None
    #: The attribute a login name is looked up by, for [auth] ldap_source.
    login_attribute: str | None = None
    #: Which library pages through full pulls: "python-ldap" (libldap, in C: the `ldap-c`
    #: extra), "ldap3" (pure Python, always there), or "auto": python-ldap when installed,
    #: falling back to ldap3 (with a warning) where libldap cannot connect and ldap3 can.
    client: Literal["auto", "ldap3", "python-ldap"] = "auto"

    @field_validator("url", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('give at least one URL, like "ldaps://ldap.example.com"')
        for url in value:
            if not url.lower().startswith(("ldap://", "ldaps://")):
                raise ValueError(f"{url!r} must start with ldap:// or ldaps://")
            if problem := server_url_problem(url, "ldap"):
                raise ValueError(problem)
        return value

    def preflight_problems(self) -> list[tuple[str, str]]:
        """What `check-config` reports beyond validation: files the connection needs."""
        return ca_file_problems(self.tls_ca_file)

    @field_validator("client")
    @classmethod
    def _client_installed(cls, value: str) -> str:
        if value == "python-ldap" and not python_ldap_available():
            raise ValueError(
                "python-ldap is not installed, or does not load (its libldap): pip install "
                "'xcap-gateway[ldap-c]' (builds against libldap2-dev and libsasl2-dev) or apt "
                'install python3-ldap; or set "auto"'
            )
        return value

    @field_validator("attributes")
    @classmethod
    def _known_fields(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        if unknown := sorted(set(value) - set(FIELDS)):
            raise ValueError(f"unknown field {', '.join(unknown)} (known: {', '.join(FIELDS)})")
        return value

    @model_validator(mode="after")
    def _password_with_bind_dn(self) -> LdapSettings:
        if self.bind_dn and self.password is None:
            raise ValueError("bind_dn needs password or password_file")
        return self

    def attribute_map(self) -> dict[str, list[str]]:
        """Field -> LDAP attributes, the preset's with `attributes` overriding."""
        mapping = dict(PRESET_ATTRIBUTES[self.preset])
        for name, attrs in self.attributes.items():
            mapping[name] = [attrs] if isinstance(attrs, str) else list(attrs)
        return mapping

    @property
    def uid(self) -> str:
        return self.uid_attribute or PRESET_UID[self.preset]

    @property
    def search_filter(self) -> str:
        return self.filter or PRESET_FILTER[self.preset]

    @property
    def login(self) -> str:
        return self.login_attribute or PRESET_LOGIN[self.preset]

    @property
    def object_classes(self) -> list[str]:
        return self.create_object_classes or PRESET_OBJECT_CLASSES[self.preset]


@functools.cache
def python_ldap_available() -> bool:
    """Whether python-ldap can be imported (its module is `ldap`): really imported, since
    an installed one whose libldap is missing or broken fails only then."""
    if importlib.util.find_spec("ldap") is None:
        return False
    try:
        import ldap  # noqa: F401
    except ImportError:
        return False
    return True
