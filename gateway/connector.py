"""The connector interface: what every source type implements, and how types are found.

Connectors do I/O and mapping only. Scheduling, merging, conflict policy and the
`read_only` / `allow_delete` settings are enforced by the engine, never here.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import PurePath
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from gateway.config_types import ConfigPath, Duration, PositiveDuration
from gateway.heap import bulk, give_back
from gateway.logs import event
from gateway.model import Contact, UserRef, is_one_name
from gateway.process_pool import die_with_parent, map_batches

__all__ = [
    "AlreadyExists",
    "event",
    # For the heavy work of big sources, off the event loop and its interpreter lock.
    "bulk",
    "die_with_parent",
    "give_back",
    "map_batches",
    "Capabilities",
    "Changes",
    "decode_token",
    "fill_template",
    "has_template",
    "template_in_host",
    "template_names",
    "templated_settings",
    "UnsafeTemplateValue",
    "ConfigPath",
    "Connector",
    "ConnectorError",
    "ConnectorSettings",
    "Duration",
    "PositiveDuration",
    "InvalidToken",
    "NotFound",
    "ReadOnly",
    "Rejected",
    "Unavailable",
    "WrongEtag",
    "load_connector_class",
]

ENTRY_POINT_GROUP = "xcap_gateway.connectors"
_TEMPLATE = re.compile(r"\{(user|domain|xui)\}")


class UnsafeTemplateValue(ValueError):
    """A {user}, {domain} or {xui} value that would name something outside the user's own
    book (`..`, empty, a slash, a NUL, an xui without a domain): no such user."""


def fill_template(text: str, values: Mapping[str, str], escape: Callable[[str], str] = str) -> str:
    """`text` with {user}, {domain} and {xui} replaced by `values`, each passed through
    `escape` (what is safe where it goes: a filter, a DN, a URL segment).
    Raises UnsafeTemplateValue for a value that is not one plain name."""

    def fill(match: re.Match[str]) -> str:
        value = values[match[1]]
        _check_value(match[1], value)
        return escape(value)

    return _TEMPLATE.sub(fill, text)


def _check_value(name: str, value: str) -> None:
    # Checked here as well as at the URL: whatever calls us, a value never climbs out of
    # its folder or URL path. Escaping cannot help: `..` is already "escaped".
    if name == "xui":
        # A domainless xui would name a book every domain's `alice` shares.
        user = UserRef(value)
        safe = "@" in value and user.names_one_user()
    else:
        safe = is_one_name(value)
    if not safe:
        raise UnsafeTemplateValue(f"{{{name}}} cannot be {value!r}")


def has_template(text: str) -> bool:
    return bool(_TEMPLATE.search(text))


def template_names(text: str) -> set[str]:
    """Which of user, domain, xui `text` uses."""
    return set(_TEMPLATE.findall(text))


def template_in_host(text: str) -> bool:
    """Whether a template is in the scheme or authority of the URL `text`: there a
    request's xui would choose the server the gateway connects (and logs in) to."""
    scheme, sep, rest = text.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return bool(sep) and has_template(scheme + sep + authority)


def templated_settings(settings: ConnectorSettings) -> dict[str, builtins.list[str]]:
    """The strings holding a template, by the name of the setting (top-level key) they are in."""
    found: dict[str, builtins.list[str]] = {}
    for key, value in settings.model_dump().items():

        def probe(text: str, key: str = key) -> str:
            if has_template(text):
                found.setdefault(key, []).append(text)
            return text

        _substitute(value, probe)
    return found


def decode_token(token: str) -> dict[str, Any]:
    """A sync token a connector wrote as a JSON object; InvalidToken when it is not one."""
    try:
        value = json.loads(token)
    except ValueError as exc:
        raise InvalidToken("unreadable sync token") from exc
    if not isinstance(value, dict):
        raise InvalidToken("unreadable sync token")
    return value


class ConnectorError(Exception):
    """Base of the typed errors a connector raises; the message is safe to log."""


class NotFound(ConnectorError):
    """The href does not exist upstream (any more)."""


class AlreadyExists(ConnectorError):
    """A create found the object already there (a retried create, or a clash). `href`:
    where it is, when the connector knows (the engine reads it back into its snapshot)."""

    def __init__(self, message: str, href: str | None = None) -> None:
        super().__init__(message)
        self.href = href


class WrongEtag(ConnectorError):
    """The upstream object changed since the ETag given: re-read and merge again."""


class ReadOnly(ConnectorError):
    """The upstream refuses writes (permissions, or a connector that cannot write)."""


class Unavailable(ConnectorError):
    """The upstream cannot be reached or answered badly; worth retrying later."""


class Rejected(ConnectorError):
    """The upstream refused this change for good (schema, constraint): retrying won't help."""


class InvalidToken(ConnectorError):
    """The incremental sync token is no longer valid: call `changes(None)` for a full pull."""


@dataclass(frozen=True, slots=True)
class Changes:
    """What `Connector.changes` found. `complete`: `changed` is every contact there is.
    Otherwise apply `changed` (by uid, so a moved entry replaces its old href), drop the
    uids in `deleted` and the hrefs in `deleted_hrefs`, and when `present` is given drop
    every uid that is in neither."""

    token: str
    changed: tuple[Contact, ...] = ()
    deleted: frozenset[str] = frozenset()
    present: frozenset[str] | None = None
    complete: bool = False
    deleted_hrefs: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Capabilities:
    read_only: bool = False
    can_delete: bool = True
    incremental: bool = False


class ConnectorSettings(BaseModel):
    """Base of each connector's own keys in its `[sources.NAME]` table; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


SettingsT = TypeVar("SettingsT", bound=ConnectorSettings)


class Connector(ABC, Generic[SettingsT]):
    """One configured source instance. Subclasses set `settings_model`.

    A per-user source (one whose settings use {user}, {domain} or {xui}) gets one
    instance per user, built from `settings_for_user`.
    """

    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    #: The default of `allow_delete` for sources of this type.
    default_allow_delete: ClassVar[bool] = True

    def __init__(self, source: str, settings: SettingsT, user: UserRef | None = None) -> None:
        self.source = source
        self.settings = settings
        #: Set for the instance of a per-user source that serves this user.
        self.user = user

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    @classmethod
    def settings_for_user(cls, settings: SettingsT, values: Mapping[str, str]) -> SettingsT:
        """Settings with {user}, {domain}, {xui} filled in. Connectors that put the
        values into a query language (LDAP filters, URLs) override this to escape them,
        and fill in with `fill_template` too. Raises UnsafeTemplateValue."""
        data = settings.model_dump()
        return settings.model_validate(_substitute(data, lambda text: fill_template(text, values)))

    @classmethod
    def is_per_user(cls, settings: ConnectorSettings) -> bool:
        return bool(templated_settings(settings))

    @abstractmethod
    def list(self) -> AsyncIterator[tuple[str, str]]:
        """Yield (href, etag) of every contact upstream. Raises Unavailable."""

    @abstractmethod
    async def get(self, href: str) -> Contact:
        """The contact at href, with its current etag. Raises NotFound, Unavailable."""

    async def get_many(self, hrefs: Iterable[str]) -> builtins.list[Contact]:
        """The contacts at hrefs; those that vanished meanwhile are left out."""
        results = await asyncio.gather(*(self.get(href) for href in hrefs), return_exceptions=True)
        contacts: builtins.list[Contact] = []
        for result in results:
            if isinstance(result, NotFound):
                continue
            if isinstance(result, BaseException):
                raise result
            contacts.append(result)
        return contacts

    @abstractmethod
    async def create(self, contact: Contact) -> Contact:
        """Store a new contact; return it with href and etag set.
        Raises AlreadyExists (same entry_id already stored), ReadOnly, Unavailable."""

    @abstractmethod
    async def update(self, href: str, contact: Contact, etag: str) -> Contact:
        """Change only the mapped fields of the object at href, if it still has etag;
        return the stored contact with its new etag.
        Raises NotFound, WrongEtag, ReadOnly, Unavailable."""

    @abstractmethod
    async def delete(self, href: str, etag: str) -> None:
        """Remove the object at href if it still has etag.
        Raises NotFound, WrongEtag, ReadOnly, Unavailable."""

    async def changes(self, token: str | None) -> Changes:
        """Contacts changed since `token` (all of them, `complete`, for None), with the
        token to pass next time. Only for connectors whose capabilities say incremental.
        Raises InvalidToken, Unavailable."""
        raise NotImplementedError(f"{type(self).__name__} has no incremental sync")

    async def check_password(self, login: str, password: str) -> bool:
        """Whether the upstream accepts `password` for the account `login` (for basic
        authentication against a directory). Raises Unavailable."""
        raise NotImplementedError(f"{type(self).__name__} cannot check passwords")

    async def close(self) -> None:
        """Release connections; the instance is not used afterwards."""


def _substitute(value: Any, change: Any) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, PurePath):
        return type(value)(change(str(value)))
    if isinstance(value, list):
        return [_substitute(item, change) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, change) for key, item in value.items()}
    return value


class UnknownConnectorType(LookupError):
    pass


def available_connector_types() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_connector_class(type_name: str) -> type[Connector[Any]]:
    """The connector class registered under `type_name` in the entry-point group."""
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=type_name):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise UnknownConnectorType(
                f"entry point {ep.value!r} for type {type_name!r} is not a Connector"
            )
        return cls
    known = ", ".join(available_connector_types()) or "none installed"
    raise UnknownConnectorType(f"unknown source type {type_name!r} (known: {known})")
