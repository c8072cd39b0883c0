"""What to enter in each phone model for a document: the XCAP settings, and the URL of
each phonebook format (as the README's tables say, per format)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from gateway.config import DocumentConfig, ServerConfig, split_address

#: The xui's place in a URL shown for no user in particular.
XUI_PLACEHOLDER = "{xui}"
_ANY_HOST = {"", "0.0.0.0", "::", "*"}


@dataclass(frozen=True)
class Setting:
    """One thing to type into one phone model."""

    phone: str
    setting: str
    value: str


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = (self.scheme == "http" and self.port == 80) or (
            self.scheme == "https" and self.port == 443
        )
        return host if default else f"{host}:{self.port}"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.authority}"


def phone_endpoint(server: ServerConfig, seen_host: str) -> Endpoint:
    """Where phones reach the gateway: the first HTTPS listener when there is one (phones
    default to TLS), else the first plain one; a wildcard address is shown as the host
    name the administrator's browser used."""
    if server.tls_listen:
        scheme, address = "https", server.tls_listen[0]
    else:
        scheme = "https" if server.tls_cert else "http"
        address = server.listen[0] if server.listen else "127.0.0.1:8080"
    host, port = split_address(address)
    if host in _ANY_HOST:
        host = seen_host or "gateway.example.com"
    return Endpoint(scheme, host, int(port))


def _xui_path(xui: str) -> str:
    return xui if XUI_PLACEHOLDER in xui else quote(xui, safe=":@")


def xcap_url(server: ServerConfig, endpoint: Endpoint, document: DocumentConfig, xui: str) -> str:
    auid = f"/{document.auid}" if document.auid else ""
    return f"{endpoint.base}{server.xcap_root}{auid}/users/{_xui_path(xui)}/{document.name}"


def format_url(server: ServerConfig, endpoint: Endpoint, fmt: str, key: str, xui: str) -> str:
    bare = xui if xui == XUI_PLACEHOLDER else xui.removeprefix("sip:")
    return f"{endpoint.base}{server.phonebook_root}/{fmt}/users/{_xui_path(bare)}/{key}"


def settings_for(
    server: ServerConfig,
    endpoint: Endpoint,
    key: str,
    document: DocumentConfig,
    xui: str = XUI_PLACEHOLDER,
) -> list[Setting]:
    """Every phone model's settings for `document` (its formats) as `xui` would use them."""
    found: list[Setting] = []
    for fmt in document.formats:
        url = format_url(server, endpoint, fmt, key, xui)
        found += _settings(fmt, url, server, endpoint, document, xui)
    found.append(
        Setting(
            "PBX caller-ID lookup",
            "URL (add the caller's number)",
            format_url(server, endpoint, "lookup", key, xui) + "?number=",
        )
    )
    return found


def _settings(
    fmt: str,
    url: str,
    server: ServerConfig,
    endpoint: Endpoint,
    document: DocumentConfig,
    xui: str,
) -> list[Setting]:
    if fmt == "counterpath":
        sip_xui = xui if xui.startswith("sip:") else f"sip:{xui}"
        tls = "true" if endpoint.scheme == "https" else "false"
        snom = (
            f"xcap_server_name={endpoint.host} xcap_server_port={endpoint.port} "
            f"xcap_directory_auid={document.auid} xcap_dir_doc_name={document.name} "
            f"xcap_via_tls={tls}"
        )
        return [
            Setting("XCAP document", "URL", xcap_url(server, endpoint, document, sip_xui)),
            Setting("Snom (identity server type bria)", "settings", snom),
            Setting("Bria (CounterPath)", "XCAP root", endpoint.base + server.xcap_root),
        ]
    if fmt == "cisco":
        return [
            Setting("Cisco 79xx/89xx", "directoryURL", url + "?form=menu"),
            Setting("Cisco SPA/MPP", "XML Directory Service URL", url),
        ]
    if fmt == "gigaset":
        return [Setting("Gigaset pro (N510, N720, N870)", "online directory URL", url + "?")]
    if fmt == "grandstream":
        mode = "3" if endpoint.scheme == "https" else "1"
        return [
            Setting("Grandstream", "P330", mode),
            Setting("Grandstream", "P331", url.split("://", 1)[1]),
        ]
    if fmt == "yealink":
        return [Setting("Yealink", "remote_phonebook.data.1.url", url + "?q=#SEARCH")]
    if fmt == "snom-browser":
        return [Setting("Snom (older firmware)", "dkey_directory", "url " + url)]
    if fmt == "snom":
        return [Setting("Snom (firmware ≥ 10.1.178)", "Remote XML Directory URL", url)]
    if fmt == "snom-dect":
        return [Setting("Snom DECT M300/M700/M900", "central directory URL", url)]
    if fmt == "polycom":
        return [Setting("Poly/Polycom", "<MAC>-directory.xml served from", url)]
    if fmt == "fanvil":
        return [Setting("Fanvil", "remote phonebook URL", url)]
    return [Setting(fmt, "URL", url)]
