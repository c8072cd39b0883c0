"""Files the configuration names, read the way serving reads them: the server's TLS
certificate and key, and the users file of digest or basic authentication.

`load_config` refuses what would keep the gateway from serving anyone (a key that does
not load, a users file in the other format); `check-config` also reports single lines of
the users file nobody could log in with.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from gateway.auth.users import _parses as htpasswd_hash_parses

_HA1 = re.compile(r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{64}")
HTDIGEST = "htdigest (user:realm:HA1 lines, as `htdigest FILE REALM USER` writes)"
HTPASSWD = "htpasswd (user:hash lines, as `htpasswd -B FILE USER` writes)"


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal, and a service has none.
    raise _EncryptedKey


def tls_problem(cert: Path, key: Path) -> tuple[str, str] | None:
    """(the key to blame, why) when `cert` and `key` cannot serve HTTPS; else None."""
    for name, file in (("tls_cert", cert), ("tls_key", key)):
        try:
            with open(file, "rb") as stream:
                stream.read(1)
        except OSError as exc:
            return name, f"cannot read {file}: {exc.strerror}"
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(cert))
    except ssl.SSLError:
        return "tls_cert", f"{cert} holds no PEM certificate"
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _EncryptedKey:
        return "tls_key", (
            f"{key} is encrypted and a service cannot type its passphrase: store it "
            "unencrypted, readable by the gateway's user only (openssl pkey -in KEY -out NEW)"
        )
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        # NO_CERTIFICATE_ASSIGNED: a key of another type than the certificate's (EC for RSA).
        if reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
            return "tls_key", f"{key} is not the private key of the certificate in {cert}"
        if reason in ("EE_KEY_TOO_SMALL", "CA_MD_TOO_WEAK", "CA_KEY_TOO_SMALL"):
            return "tls_cert", (
                f"{cert} or its key is too weak for OpenSSL's security level ({reason}): "
                "use at least 2048-bit RSA or an EC key, signed with SHA-256"
            )
        return "tls_key", f"{key} holds no PEM private key for {cert} ({reason})"
    return None


@dataclass(frozen=True)
class UsersFileReport:
    """What `users_file_report` found: `fatal` when nobody could log in with the file,
    `lines`: single lines whose user could not (check-config reports these)."""

    fatal: str | None
    lines: list[str]
    users: int


def users_file_report(
    file: Path, mode: str, realms: set[str], has_ldap_source: bool = False
) -> UsersFileReport:
    """Read `file` as the gateway does (UTF-8, a byte-order mark ignored, `#` comments) and
    check each line against `mode` ("digest": htdigest in one of `realms`; "basic":
    htpasswd with a hash the gateway reads)."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        return UsersFileReport(f"cannot read {file}: {exc.strerror}", [], 0)
    except UnicodeDecodeError:
        return UsersFileReport(f"{file} is not UTF-8 text", [], 0)
    lines = [
        (number, raw.strip().split(":"))
        for number, raw in enumerate(text.splitlines(), 1)
        if raw.strip() and not raw.lstrip().startswith("#")
    ]
    usable, bad = 0, []
    other_format = other_realms = 0
    for number, fields in lines:
        login = fields[0] or "(an empty name)"
        if mode == "digest":
            if len(fields) == 3 and _HA1.fullmatch(fields[2]) and fields[0]:
                if fields[1] in realms:
                    usable += 1
                else:
                    other_realms += 1  # a file shared with other services: not a problem
                continue
            if len(fields) >= 2 and htpasswd_hash_parses(":".join(fields[1:])):
                other_format += 1
            bad.append(f"line {number} ({login}) is not an htdigest line user:realm:HA1")
        else:
            stored = ":".join(fields[1:])
            if fields[0] and htpasswd_hash_parses(stored):
                usable += 1
                continue
            if len(fields) == 3 and _HA1.fullmatch(fields[2]):
                other_format += 1
                bad.append(f"line {number} ({login}) is an htdigest line, not user:hash")
            else:
                bad.append(
                    f"line {number} ({login}): not a hash the gateway reads (bcrypt, "
                    "apr1 MD5, {SHA}, SHA-256/512-crypt)"
                )
    fatal = None
    if lines and not usable:
        wanted, other, other_mode = (
            (HTDIGEST, "htpasswd", "basic")
            if mode == "digest"
            else (HTPASSWD, "htdigest", "digest")
        )
        if other_format:
            fatal = (
                f'{file} is an {other} file, which is for mode = "{other_mode}"; '
                f'mode = "{mode}" needs {wanted}: nobody could log in'
            )
        elif other_realms:
            fatal = (
                f"no line of {file} is for the realm {', '.join(sorted(realms))} "
                "([auth] realm and realms): nobody could log in"
            )
        else:
            fatal = f"{file} is not {wanted}: nobody could log in"
        if has_ldap_source:
            # The directory's logins still work: worth a word from check-config, not a
            # refusal to start (the file may be shared with other services).
            bad.append(fatal.replace("nobody could log in", "only the directory's logins work"))
            fatal = None
    elif not lines and not has_ldap_source:
        bad.append(f"{file} names no users: nobody can log in")
    return UsersFileReport(fatal, [] if fatal else bad, usable)


def database_url_problem(url: str) -> str | None:
    """Why `url` cannot name a PostgreSQL database; None when it can."""
    # Imported here: psycopg takes ~0.2 s to import, and SQLite's users never need it.
    from psycopg.conninfo import conninfo_to_dict

    if not url.startswith(("postgresql://", "postgres://")):
        return 'a PostgreSQL URL like "postgresql://xcap@db.example.com/xcap"'
    try:
        parts = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: libpq's own words
        # Only what libpq says is wrong, not the part of the URL it quotes (which may be
        # a password).
        reason = str(exc).strip().split(":", 1)[0]
        return f"not a PostgreSQL URL ({reason})"
    if parts.get("password"):
        return "put the password in password_file (a secret), not in the URL"
    return None
