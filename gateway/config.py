"""The configuration file: loading, `${VAR}` and `password_file` expansion, validation.

Every problem is reported with the file, the table and the key, all at once, so an
administrator fixes a broken file in one pass.
"""

from __future__ import annotations

import builtins
import os
import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.config_files import (
    database_url_problem,
    tls_problem,
    users_file_report,
)
from gateway.config_types import ConfigPath, Duration, PositiveDuration
from gateway.connector import (
    Connector,
    ConnectorSettings,
    UnknownConnectorType,
    load_connector_class,
    template_in_host,
    template_names,
    templated_settings,
)
from gateway.formats import UnknownFormat, load_format
from gateway.listing import locale_error, template_error
from gateway.model import is_one_name, normalize_domain
from gateway.numbers import NumberFormat

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_.~-]+$")
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    file: Path
    table: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"[{self.table}]" if self.table else "(top level)"
        key = f" {self.key}" if self.key else ""
        return f"{self.file}: {where}{key}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    listen: list[str] = ["127.0.0.1:8080"]
    xcap_root: str = ""
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    # validate_default: the default, too, is taken from the configuration file's folder.
    state_dir: ConfigPath = Field(default=Path("var"), validate_default=True)
    max_body_size: int = Field(default=4 * 1024 * 1024, gt=0)
    #: HTTPS listeners beside the plain `listen` ones (with tls_cert and tls_key). Without
    #: it, tls_cert makes every `listen` address HTTPS.
    tls_listen: list[str] = []
    #: A request body must arrive within this time (slow bodies are cut off with 408).
    body_timeout: PositiveDuration = 30.0
    #: How long a PUT waits, after its changes are durable, for them to reach the sources.
    put_wait: Duration = 2.0
    #: On SIGTERM: how long pending changes may take to reach their sources before exit.
    shutdown_grace: PositiveDuration = 10.0
    #: How long `serve` waits for the first syncs before it listens anyway.
    startup_sync_wait: Duration = 10.0
    #: How long a request for a book with no data yet (a per-user book's first request)
    #: waits for its first sync before it is answered 503.
    first_sync_wait: Duration = 5.0
    #: A request's header must be complete within this time of its first byte (or of the
    #: connection opening): slow senders cannot hold connections.
    header_timeout: PositiveDuration = 10.0
    #: An idle keep-alive connection is closed after this (phones reconnect per poll).
    keepalive_timeout: PositiveDuration = 15.0
    #: Open client connections at most; further ones are closed at once. Never more than
    #: the descriptor limit allows, with headroom for the database, sources and logs.
    max_connections: int = Field(default=1000, ge=1)
    #: Open connections from one client address at most (a NAT or proxy carries many phones,
    #: but one client must not take every slot).
    max_connections_per_address: int = Field(default=100, ge=1)
    #: Bytes of request line and header fields together at most (431 beyond): the
    #: header_timeout bounds time, this bounds the memory a connection holds meanwhile.
    max_header_size: int = Field(default=16 * 1024, ge=1024)
    #: Where the phone formats other than XCAP live: {phonebook_root}/{format}/users/...
    phonebook_root: str = "/phonebook"
    #: Stored (not directory) documents one user may keep, e.g. Bria's buddy lists.
    max_stored_documents: int = Field(default=32, ge=1)
    #: Who may read /metrics: "open" (anyone), "admins" ([auth] admins log in), "off".
    metrics: Literal["open", "admins", "off"] = "open"
    #: Listeners that serve only /metrics (and /healthz, /readyz), open to anyone who
    #: reaches them; with it set, the XCAP listeners do not answer /metrics.
    metrics_listen: list[str] = []
    #: Listeners of the admin console (gateway.admin), for [auth] admins only; none: off.
    admin_listen: list[str] = []
    #: Per-user state (source instances, render caches, upstream sessions) unused this long
    #: is dropped from memory; its stored snapshot stays and is reloaded on the next request.
    user_idle_timeout: PositiveDuration = 3600.0
    #: Users whose per-user state is kept in memory at most (least recently used go first).
    max_active_users: int = Field(default=10_000, ge=1)

    @field_validator("listen", "tls_listen", "metrics_listen", "admin_listen", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("listen", "tls_listen", "metrics_listen", "admin_listen")
    @classmethod
    def _host_port(cls, value: list[str]) -> list[str]:
        for address in value:
            split_address(address)
        return value

    @field_validator("xcap_root")
    @classmethod
    def _root(cls, value: str) -> str:
        return "/" + value.strip("/") if value.strip("/") else ""

    @field_validator("phonebook_root")
    @classmethod
    def _phonebook_root(cls, value: str) -> str:
        if not value.strip("/"):
            raise ValueError('give a path prefix like "/phonebook" (the XCAP side has "/")')
        return "/" + value.strip("/")


class AuthConfig(_Strict):
    mode: Literal["none", "digest", "basic"] = "none"
    realm: str = "xcap"
    #: A realm per domain of the xui (the rest get `realm`).
    realms: dict[str, str] = {}
    #: htdigest file (digest) or htpasswd file (basic).
    users_file: ConfigPath | None = None
    #: Basic auth checked by a bind to this [sources.NAME] of type "ldap" (too, or instead).
    ldap_source: str | None = None
    #: The login must equal the xui's user part ("user") or the whole xui ("xui").
    match: Literal["user", "xui"] = "user"
    #: The domains served; an xui in any other domain is answered 404. Empty: any domain.
    domains: list[str] = []
    #: Logins that may reach every user's documents.
    admins: list[str] = []
    #: Basic auth sends passwords in clear: refused over plain HTTP unless this is true.
    allow_insecure_basic: bool = False
    nonce_lifetime: PositiveDuration = 300.0
    #: After this many failed logins within failure_window from one address for one user
    #: name, that address waits before it may try that name again.
    max_failures: int = Field(default=10, ge=1)
    #: Failures for one user name from all addresses together before the name is blocked.
    max_failures_per_user: int = Field(default=50, ge=1)
    #: Failures from one address for all names together before the address is blocked
    #: (highest: a NAT or reverse proxy carries many users).
    max_failures_per_address: int = Field(default=200, ge=1)
    failure_window: PositiveDuration = 300.0

    # Compared with the xui's normalized domain, so `B.COM.` here means b.com.
    @field_validator("realms")
    @classmethod
    def _realm_domains(cls, value: dict[str, str]) -> dict[str, str]:
        return {normalize_domain(domain): realm for domain, realm in value.items()}

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        domains = [normalize_domain(domain) for domain in value]
        for domain in domains:
            if not is_one_name(domain) or "@" in domain:
                raise ValueError(f'{domain!r} is not a domain name like "example.com"')
        return domains


class LoggingConfig(_Strict):
    #: "kv": key=value pairs; "json": one JSON object per line.
    format: Literal["kv", "json"] = "kv"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class SourceConfig(_Strict):
    """The keys every source has; the connector's own keys are in `settings`."""

    type: str
    interval: PositiveDuration = 900.0
    #: First retry after a failed sync; doubles with each failure, up to `interval`.
    retry_interval: PositiveDuration = 30.0
    #: A sync that would drop more than this share of the entries is held back.
    max_shrink: float = Field(default=0.5, gt=0, le=1)
    read_only: bool = False
    allow_delete: bool | None = None
    category: str | None = None
    settings: ConnectorSettings = ConnectorSettings()
    # Unsubscripted: pydantic cannot validate type[Connector[Any]].
    connector_class: builtins.type[Connector]  # type: ignore[type-arg]

    @property
    def deletes_allowed(self) -> bool:
        if self.read_only:
            return False
        if self.allow_delete is None:
            return self.connector_class.default_allow_delete
        return self.allow_delete


class DocumentConfig(_Strict):
    auid: str = ""
    name: str
    sources: list[str] = Field(min_length=1)
    write_to: str | None = None
    max_entries: int = Field(default=1000, gt=0)
    #: Fold an entry into an earlier source's entry with the same first email / first number.
    dedupe_by: list[Literal["email", "number"]] = []
    number_format: Literal["as-stored", "e164", "national"] = "as-stored"
    #: ISO 3166 region for numbers written without a country code, e.g. "DE".
    default_region: str | None = None
    #: Dialled before every outside number in national format (a PBX's "0").
    outside_line_prefix: str = ""
    #: Who wins when the phone and the upstream changed the same field.
    conflict_policy: Literal["phone-wins", "upstream-wins"] = "phone-wins"
    #: Answer 412 to a PUT whose If-Match is not the current ETag (RFC 4825) instead of
    #: merging it against the version it names.
    strict_etags: bool = False
    #: Versions served per user and document kept as merge bases, and for how long.
    keep_versions: int = Field(default=5, ge=1, le=100)
    keep_versions_for: PositiveDuration = 30 * 86400.0
    #: The formats this document is served in (see gateway.formats); "counterpath" is the
    #: XCAP document.
    formats: list[str] = ["counterpath"]
    #: What goes into the composition, for every format alike. The display-name template
    #: (fields: gateway.listing.TEMPLATE_FIELDS); unset: the contact's FN, else given name
    #: and surname, else company.
    name_format: str | None = None
    sort: Literal["display", "surname", "given"] = "display"
    #: The language whose collation orders the list ("sv", "de_DE@collation=phonebook");
    #: needs PyICU. Empty: the CLDR root order.
    sort_locale: str = ""
    #: Empty: every category; else only contacts in one of these (case ignored).
    include_categories: list[str] = []
    exclude_categories: list[str] = []
    #: Leave out contacts with no number and no SIP address: nothing to dial.
    require_number: bool = True
    #: Entries one PUT may create in write_to; the rest are kept out (logged).
    max_creations_per_put: int = Field(default=100, ge=0)
    #: Entries one user may create in this document within creation_window (logged beyond).
    max_creations_per_user: int = Field(default=500, ge=0)
    creation_window: PositiveDuration = 3600.0

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f'{value!r} is not a region code like "DE" or "US"')
        return value.upper() if value else None

    @model_validator(mode="after")
    def _region_for_formats(self) -> DocumentConfig:
        if self.number_format != "as-stored" and self.default_region is None:
            raise ValueError(
                f'number_format = "{self.number_format}" needs default_region (e.g. "DE")'
            )
        return self

    def numbers(self) -> NumberFormat:
        return NumberFormat(self.number_format, self.default_region, self.outside_line_prefix)

    @field_validator("name_format")
    @classmethod
    def _name_format(cls, value: str | None) -> str | None:
        if value is not None and (problem := template_error(value)):
            raise ValueError(problem)
        return value

    @field_validator("sort_locale")
    @classmethod
    def _sort_locale(cls, value: str) -> str:
        if value and (problem := locale_error(value)):
            raise ValueError(problem)
        return value

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        for name in value:
            try:
                load_format(name)
            except UnknownFormat as exc:
                raise ValueError(str(exc)) from None
        return list(dict.fromkeys(value))

    @field_validator("auid")
    @classmethod
    def _auid(cls, value: str) -> str:
        if value and not _NAME.match(value):
            raise ValueError("an AUID is one path segment of letters, digits, '.', '_', '-'")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError('a document name is one path segment like "tbook.xml"')
        return value


class StoreConfig(_Strict):
    """Where the state lives: SQLite in [server] state_dir (the default), or PostgreSQL
    shared by several replicas."""

    #: "postgresql://user@host:port/database"; empty: SQLite in state_dir.
    url: str = ""
    #: The database password; `password_file = "/run/secrets/db"` reads it from a file (a
    #: mounted secret), like every password of the configuration.
    password: SecretStr | None = None
    #: How long a request waits for a database connection before answering 503.
    connect_timeout: PositiveDuration = 5.0
    #: Connections each replica keeps open at most.
    pool_size: int = Field(default=10, ge=4, le=1000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and (problem := database_url_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("password")
    @classmethod
    def _password_needs_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not info.data.get("url"):
            raise ValueError("a password is for a PostgreSQL url; set url too")
        return value

    @property
    def postgresql(self) -> bool:
        return bool(self.url)


class Config(_Strict):
    path: Path
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    logging: LoggingConfig = LoggingConfig()
    store: StoreConfig = StoreConfig()
    sources: dict[str, SourceConfig] = {}
    documents: dict[str, DocumentConfig] = {}

    def document_at(self, auid: str, name: str) -> tuple[str, DocumentConfig] | None:
        for key, document in self.documents.items():
            if document.auid == auid and document.name == name:
                return key, document
        return None


def split_address(address: str) -> tuple[str, int]:
    """("127.0.0.1", 8080) from "127.0.0.1:8080"; IPv6 as "[::1]:8080"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f'{address!r} is not host:port, like "127.0.0.1:8080"')
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def load_config(path: Path | str) -> Config:
    """Read and validate the file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([Problem(path, "", "", f"cannot read: {exc.strerror}")]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(path, "", "", f"not valid TOML: {exc}")]) from exc

    problems: list[Problem] = []
    data = _expand(raw, (), path, problems)
    context = {"base_dir": path.parent.resolve()}
    for key in data.keys() - {"server", "auth", "logging", "store", "sources", "documents"}:
        problems.append(Problem(path, "", key, "unknown table or key"))
    # Each table is validated on its own, so one bad table does not hide the others.
    server = _validate(ServerConfig, data.get("server", {}), ("server",), path, context, problems)
    auth = _validate(AuthConfig, data.get("auth", {}), ("auth",), path, context, problems)
    log = _validate(LoggingConfig, data.get("logging", {}), ("logging",), path, context, problems)
    store = _validate(StoreConfig, data.get("store", {}), ("store",), path, context, problems)
    sources = _load_sources(data.get("sources", {}), path, context, problems)
    documents: dict[str, DocumentConfig] = {}
    for name, table in _tables(data.get("documents", {}), "documents", path, problems):
        loc = ("documents", name)
        if (document := _validate(DocumentConfig, table, loc, path, context, problems)) is not None:
            documents[name] = document
    config = Config.model_construct(
        path=path,
        server=server or ServerConfig(),
        auth=auth or AuthConfig(),
        logging=log or LoggingConfig(),
        store=store or StoreConfig(),
        sources=sources,
        documents=documents,
    )
    declared = set(data["sources"]) if isinstance(data.get("sources"), dict) else set()
    problems.extend(_cross_checks(config, declared))
    if problems:
        raise ConfigError(problems)
    return config


def _validate(
    model: builtins.type[ModelT],
    data: Any,
    loc: tuple[str, ...],
    path: Path,
    context: dict[str, Any],
    problems: list[Problem],
) -> ModelT | None:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems.extend(_problems(path, loc, exc))
        return None


def _tables(
    raw: Any, name: str, path: Path, problems: list[Problem]
) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(raw, dict):
        problems.append(Problem(path, "", name, f"must be a table of [{name}.NAME] tables"))
        return
    for key, table in raw.items():
        if isinstance(table, dict):
            yield key, table
        else:
            problems.append(Problem(path, name, key, f"must be a [{name}.{key}] table"))


def _load_sources(
    raw: Any, path: Path, context: dict[str, Any], problems: list[Problem]
) -> dict[str, SourceConfig]:
    common = set(SourceConfig.model_fields) - {"settings", "connector_class"}
    sources: dict[str, SourceConfig] = {}
    for name, table in _tables(raw, "sources", path, problems):
        loc = ("sources", name)
        if "type" not in table:
            problems.append(Problem(path, f"sources.{name}", "type", 'missing (e.g. "vcard-dir")'))
            continue
        try:
            cls = load_connector_class(str(table["type"]))
        except UnknownConnectorType as exc:
            problems.append(Problem(path, f"sources.{name}", "type", str(exc)))
            continue
        # Both halves are validated even when one fails, so every problem shows at once.
        settings: ConnectorSettings | None = None
        try:
            settings = cls.settings_model.model_validate(
                {k: v for k, v in table.items() if k not in common}, context=context
            )
        except ValidationError as exc:
            problems.extend(_problems(path, loc, exc))
        try:
            source = SourceConfig.model_validate(
                {
                    **{k: v for k, v in table.items() if k in common},
                    "settings": settings or ConnectorSettings(),
                    "connector_class": cls,
                },
                context=context,
            )
        except ValidationError as exc:
            problems.extend(_problems(path, loc, exc))
            continue
        if settings is not None:
            sources[name] = source
    return sources


def _cross_checks(config: Config, declared_sources: set[str]) -> Iterator[Problem]:
    """Checks across tables. A source declared but invalid was reported already."""
    path = config.path
    seen: dict[tuple[str, str], str] = {}
    for key, document in config.documents.items():
        table = f"documents.{key}"
        for source in document.sources:
            if source not in declared_sources:
                yield Problem(path, table, "sources", f"no [sources.{source}] is configured")
        if document.write_to is not None:
            if document.write_to not in document.sources:
                yield Problem(path, table, "write_to", "must be one of this document's sources")
            elif (target := config.sources.get(document.write_to)) and target.read_only:
                yield Problem(path, table, "write_to", f"source {document.write_to!r} is read_only")
        place = (document.auid, document.name)
        if place in seen:
            yield Problem(path, table, "name", f"same auid and name as [documents.{seen[place]}]")
        seen[place] = key
    server = config.server
    if not server.listen and not server.tls_listen:
        yield Problem(path, "server", "listen", 'give at least one address, like "127.0.0.1:8080"')
    if server.tls_listen and server.tls_cert is None:
        yield Problem(path, "server", "tls_listen", "needs tls_cert and tls_key")
    if (server.tls_cert is None) != (server.tls_key is None):
        yield Problem(path, "server", "tls_key", "tls_cert and tls_key go together")
    missing = False
    for key in ("tls_cert", "tls_key"):
        file = getattr(server, key)
        if file is not None and not file.is_file():
            missing = True
            yield Problem(path, "server", key, f"no such file: {file}")
    # Loaded as serving loads them, so an unreadable or mismatched pair is named here and
    # not in a traceback at start.
    if (
        server.tls_cert
        and server.tls_key
        and not missing
        and (tls := tls_problem(server.tls_cert, server.tls_key)) is not None
    ):
        yield Problem(path, "server", *tls)
    if (clash := _phonebook_clash(config)) is not None:
        yield Problem(path, "server", "phonebook_root", clash)
    if server.metrics == "admins" and (config.auth.mode == "none" or not config.auth.admins):
        yield Problem(
            path, "server", "metrics", '"admins" needs [auth] mode digest or basic, and admins'
        )
    if server.admin_listen and (config.auth.mode == "none" or not config.auth.admins):
        yield Problem(
            path, "server", "admin_listen", "needs [auth] mode digest or basic, and admins"
        )
    yield from _auth_checks(config)
    yield from _template_checks(config)


def _phonebook_clash(config: Config) -> str | None:
    """Why phonebook URLs would hide XCAP ones, if they would."""
    root, xcap = config.server.phonebook_root, config.server.xcap_root
    if root == xcap:
        return "must differ from xcap_root"
    if xcap and not root.startswith(xcap + "/"):
        return None
    first = root[len(xcap) :].strip("/").split("/")[0]
    auids = {document.auid for document in config.documents.values()}
    if first in auids | {"resource-lists", "xcap-caps"}:
        return f"{root!r} is where the XCAP application {first!r} lives: choose another path"
    return None


def _problems(path: Path, prefix: tuple[str, ...], exc: ValidationError) -> Iterator[Problem]:
    for error in exc.errors():
        loc = prefix + tuple(str(part) for part in error["loc"] if part != "settings")
        # A list index is part of the key ("listen.1"), a table is everything before.
        tables = [part for part in loc if not part.isdigit()]
        table, key = ".".join(tables[:-1]), tables[-1] if tables else ""
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and the table it is in)"
        else:
            message = error["msg"].removeprefix("Value error, ")
        yield Problem(path, table, key, message)


def _expand(value: Any, loc: tuple[str, ...], path: Path, problems: list[Problem]) -> Any:
    """`${VAR}` from the environment in every string; `password_file` into `password`."""
    if isinstance(value, str):

        def env(match: re.Match[str]) -> str:
            if match[1] not in os.environ:
                table, key = ".".join(loc[:-1]), loc[-1] if loc else ""
                problems.append(
                    Problem(path, table, key, f"environment variable {match[1]} is not set")
                )
                return ""
            return os.environ[match[1]]

        return _ENV_REF.sub(env, value)
    if isinstance(value, list):
        return [_expand(item, loc, path, problems) for item in value]
    if not isinstance(value, dict):
        return value
    table = {key: _expand(item, (*loc, key), path, problems) for key, item in value.items()}
    if "password_file" in table:
        where = ".".join(loc)
        if "password" in table:
            problems.append(
                Problem(path, where, "password_file", "give password or password_file, not both")
            )
        secret_path = Path(str(table.pop("password_file")))
        if not secret_path.is_absolute():
            secret_path = path.parent / secret_path
        try:
            table["password"] = secret_path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            problems.append(
                Problem(path, where, "password_file", f"cannot read {secret_path}: {exc.strerror}")
            )
    return table


def _auth_checks(config: Config) -> Iterator[Problem]:
    path, auth, server = config.path, config.auth, config.server
    if auth.mode == "none":
        return
    if auth.users_file is not None and not auth.users_file.is_file():
        yield Problem(path, "auth", "users_file", f"no such file: {auth.users_file}")
    elif auth.users_file is not None:
        report = users_file_report(
            auth.users_file, auth.mode, auth_realms(auth), auth.ldap_source is not None
        )
        if report.fatal is not None:
            yield Problem(path, "auth", "users_file", report.fatal)
    if auth.mode == "digest" and auth.users_file is None:
        yield Problem(path, "auth", "users_file", "digest needs an htdigest file")
    if auth.mode == "basic" and auth.users_file is None and auth.ldap_source is None:
        yield Problem(path, "auth", "users_file", "basic needs an htpasswd file or ldap_source")
    if auth.ldap_source is not None:
        source = config.sources.get(auth.ldap_source)
        if source is None or source.type != "ldap":
            yield Problem(path, "auth", "ldap_source", 'must name a [sources.NAME] of type "ldap"')
    if auth.mode == "basic" and server.tls_cert is None and not auth.allow_insecure_basic:
        yield Problem(
            path,
            "auth",
            "mode",
            "basic sends passwords in clear and no HTTPS is configured: set tls_cert and "
            "tls_key, use digest, or set allow_insecure_basic = true",
        )


def auth_realms(auth: AuthConfig) -> set[str]:
    """Every realm a digest login may be in."""
    return {auth.realm, *auth.realms.values()}


def _template_checks(config: Config) -> Iterator[Problem]:
    """A request's xui fills the templates of per-user sources: it must never choose the
    server, and it may choose a domain's book only when that domain is authenticated."""
    auth = config.auth
    domain_unchecked = auth.mode != "none" and auth.match == "user" and not auth.domains
    for name, source in config.sources.items():
        for key, texts in templated_settings(source.settings).items():
            problem = partial(Problem, config.path, f"sources.{name}", key)
            if any(template_in_host(text) for text in texts):
                yield problem(
                    "a template in the host part of a URL lets a request choose the server "
                    "the gateway connects and logs in to: keep {user}, {domain} and {xui} in "
                    "the path"
                )
            if domain_unchecked and any(template_names(t) & {"domain", "xui"} for t in texts):
                yield problem(
                    'uses {domain} or {xui}, but with [auth] match = "user" the domain is not '
                    "authenticated (alice could read alice@elsewhere's book): set [auth] "
                    'match = "xui", or list the domains served in [auth] domains'
                )
