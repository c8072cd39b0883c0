"""Checks the connectors' settings models share: a server URL that names a server, and a
CA file that holds certificates."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

from gateway.connector import has_template

# Letters (IDN host names too), digits, dots, hyphens, underscores; or an IPv6 address.
_HOST = re.compile(r"[\w.-]+|[0-9A-Fa-f:.]+")


def server_url_problem(url: str, kind: Literal["ldap", "http"]) -> str | None:
    """Why `url` (its scheme already checked) cannot be connected to; None if it can. A
    template in the path (`https://dav.example.com/{user}/`) leaves the server part to
    check (one in the server part is refused elsewhere: a request must not pick the
    server)."""
    parts = urlsplit(url)
    if has_template(parts.netloc):
        return None
    if has_template(url):
        server = urlsplit(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
        return _problem(server, url, kind, path_checked=False)
    return _problem(parts, url, kind, path_checked=True)


def _problem(
    parts: SplitResult, url: str, kind: Literal["ldap", "http"], path_checked: bool
) -> str | None:
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return f"{url!r}: the port must be a number from 1 to 65535"
    example = f"{parts.scheme}://HOST[:PORT]" + ("/PATH" if kind == "http" else "")
    if not parts.hostname:
        return f"{url!r} names no server (like {example})"
    if not _HOST.fullmatch(parts.hostname):
        return f"{url!r}: {parts.hostname!r} is not a host name or address"
    if kind == "ldap":
        if parts.username is not None:
            return f"{url!r}: give the account as bind_dn and password, not in the URL"
        if path_checked and (parts.path not in ("", "/") or parts.query or parts.fragment):
            return (
                f"{url!r}: only the server goes here ({example}); the search base is "
                "base_dn, the filter is filter"
            )
    return None


def ca_file_problems(file: Path | None) -> list[tuple[str, str]]:
    """[("tls_ca_file", why)] when `file` is set and holds no certificate to trust."""
    if file is None:
        return []
    try:
        with open(file, "rb") as stream:
            stream.read(1)
        ssl.create_default_context(cafile=str(file))
    except ssl.SSLError:  # an OSError too: first
        return [("tls_ca_file", f"{file} holds no PEM certificate")]
    except OSError as exc:
        return [("tls_ca_file", f"cannot read {file}: {exc.strerror}")]
    return []
