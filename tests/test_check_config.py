"""`xcap-gateway check-config` as an administrator runs it: configurations that load but
cannot serve (a missing folder, a users file of the other format, TLS files that do not
load, a malformed LDAP URL) are named by file, table and key, and `--connect` tries every
source once against real servers. And `--help` names every command."""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_key

from gateway.config import load_config
from tests.conftest import write_config
from tests.ldap.server import ADMIN_DN, ADMIN_PASSWORD, PEOPLE, Slapd
from tests.support import free_port

MakeSlapd = Callable[..., Slapd]


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def folder_config(folder: Path, extra: str = "") -> str:
    return f"""
[server]
state_dir = "var"

[sources.demo]
type = "vcard-dir"
path = "{folder}"

[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
{extra}"""


# --- --help ------------------------------------------------------------------------------


def test_help_names_every_command_with_its_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # The commands argparse knows, from its own complaint about an unknown one.
    unknown = subprocess.run(
        [sys.executable, "-m", "gateway", "no-such-command"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    commands = re.findall(r"'([a-z-]+)'", unknown.stderr.split("choose from", 1)[1])
    assert set(commands) == {"serve", "check-config", "render", "sync", "status"}
    for command in commands:
        (line,) = [row for row in result.stdout.splitlines() if row.split()[:1] == [command]]
        assert len(line.split()) > 3, line  # the command and its description, on one line


# --- what loading accepts but serving cannot use -------------------------------------------


def test_a_missing_vcard_folder_fails_the_check_but_not_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "contacts"
    path = write_config(tmp_path, folder_config(missing))
    result = check("--config", str(path))
    assert result.returncode == 2
    assert f"{path}: [sources.demo] path: folder {missing} does not exist" in result.stderr
    assert "OK" not in result.stdout
    # `serve` still starts (the source waits for its folder: a mount may come back).
    load_config(path)
    missing.write_text("a file, not a folder")
    result = check("--config", str(path))
    assert result.returncode == 2
    assert f"[sources.demo] path: folder {missing} is not a folder" in result.stderr


def test_a_per_user_folder_need_not_exist(tmp_path: Path, contacts_dir: Path) -> None:
    text = folder_config(contacts_dir).replace(
        'sources = ["demo"]', 'sources = ["demo", "personal"]'
    ) + (f'\n[sources.personal]\ntype = "vcard-dir"\npath = "{tmp_path}/books/{{user}}"\n')
    result = check("--config", str(write_config(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    assert "OK (2 sources, 1 documents)" in result.stdout


SHA_PW = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
HTDIGEST = f"alice:xcap:{hashlib.md5(b'alice:xcap:pw').hexdigest()}\n"  # noqa: S324 (htdigest)
BASIC = '\n[auth]\nmode = "basic"\nusers_file = "users"\nallow_insecure_basic = true\n'
DIGEST = '\n[auth]\nmode = "digest"\nusers_file = "users"\n'


@pytest.mark.parametrize(
    ("auth", "content", "message"),
    [
        (DIGEST, f"alice:{SHA_PW}\n", 'is an htpasswd file, which is for mode = "basic"'),
        (BASIC, HTDIGEST, 'is an htdigest file, which is for mode = "digest"'),
        (DIGEST.replace('"digest"\n', '"digest"\nrealm = "phones"\n'), HTDIGEST, "realm phones"),
        (DIGEST, "alice:secret\n", "is not htdigest"),
    ],
)
def test_a_users_file_nobody_can_log_in_with_is_refused(
    tmp_path: Path, contacts_dir: Path, auth: str, content: str, message: str
) -> None:
    (tmp_path / "users").write_text(content)
    path = write_config(tmp_path, folder_config(contacts_dir) + auth)
    result = check("--config", str(path))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}: [auth] users_file: ") and message in line, line
    assert str(tmp_path / "users") in line


def test_single_unusable_lines_of_the_users_file_fail_only_the_check(
    tmp_path: Path, contacts_dir: Path
) -> None:
    (tmp_path / "users").write_text(f"alice:{SHA_PW}\n# a comment\nbob:$2y$10$cut-short\n")
    path = write_config(tmp_path, folder_config(contacts_dir) + BASIC)
    result = check("--config", str(path))
    assert result.returncode == 2
    assert f"{path}: [auth] users_file: line 3 (bob): not a hash" in result.stderr
    load_config(path)  # alice can log in: the gateway serves
    (tmp_path / "users").write_text(f"alice:{SHA_PW}\n")
    assert check("--config", str(path)).returncode == 0


def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert = trustme.CA().issue_cert("xcap.example.com")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    return tmp_path / "cert.pem", tmp_path / "key.pem"


def test_tls_files_are_loaded_as_serving_loads_them(tmp_path: Path, contacts_dir: Path) -> None:
    cert, key = tls_files(tmp_path)
    tls = f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
    path = write_config(
        tmp_path, folder_config(contacts_dir).replace("[server]\n", "[server]\n" + tls)
    )
    assert check("--config", str(path)).returncode == 0

    def problem_after(change: Callable[[], object]) -> str:
        good_cert, good_key = cert.read_bytes(), key.read_bytes()
        change()
        try:
            result = check("--config", str(path))
        finally:
            cert.write_bytes(good_cert)
            key.write_bytes(good_key)
        assert result.returncode == 2
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"{path}: [server] tls_"), line
        return line

    line = problem_after(lambda: cert.write_text("not a certificate\n"))
    assert f"[server] tls_cert: {cert} holds no PEM certificate" in line
    other = trustme.CA().issue_cert("other.example.com").private_key_pem.bytes()
    line = problem_after(lambda: key.write_bytes(other))
    assert f"[server] tls_key: {key} is not the private key of the certificate in {cert}" in line
    line = problem_after(lambda: key.write_text("garbage\n"))
    assert f"[server] tls_key: {key} holds no PEM private key" in line
    # A key of another type than the certificate's is a mismatch too, said so.
    rsa = trustme.CA().issue_cert("rsa.example.com", key_type=trustme.KeyType.RSA)
    line = problem_after(lambda: cert.write_bytes(rsa.cert_chain_pems[0].bytes()))
    assert f"[server] tls_key: {key} is not the private key of the certificate in {cert}" in line

    def weak() -> None:
        small = rsa_key.generate_private_key(public_exponent=65537, key_size=1024)
        subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "weak")])
        now = datetime.datetime.now(datetime.UTC)
        signed = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(small.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(small, hashes.SHA256())
        )
        cert.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            small.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    line = problem_after(weak)
    assert f"[server] tls_cert: {cert} or its key is too weak" in line

    def encrypt() -> None:
        loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
        key.write_bytes(
            loaded.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            )
        )

    # Never a passphrase prompt on the terminal: a service has none.
    line = problem_after(encrypt)
    assert f"[server] tls_key: {key} is encrypted" in line


def ldap_config(contacts_dir: Path, url: str, extra: str = "") -> str:
    return (
        folder_config(contacts_dir)
        + f"""
[sources.people]
type = "ldap"
url = "{url}"
bind_dn = "{ADMIN_DN}"
password = "{ADMIN_PASSWORD}"
base_dn = "{PEOPLE}"
timeout = "5s"
{extra}"""
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ldap://ldap.example.com:38x9", "the port must be a number from 1 to 65535"),
        ("ldap://ldap.example.com:70000", "the port must be a number from 1 to 65535"),
        ("ldap://", "names no server (like ldap://HOST[:PORT])"),
        ("ldap://ldap example.com", "'ldap example.com' is not a host name or address"),
        ("ldap://ldap.example.com/dc=example,dc=com", "the search base is base_dn"),
        ("ldaps://admin:pw@ldap.example.com", "give the account as bind_dn and password"),
    ],
)
def test_a_malformed_ldap_url_is_named(
    tmp_path: Path, contacts_dir: Path, url: str, message: str
) -> None:
    path = write_config(tmp_path, ldap_config(contacts_dir, url))
    result = check("--config", str(path))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line == f"{path}: [sources.people] url: {url!r}: {message}" or (
        line.startswith(f"{path}: [sources.people] url: {url!r}") and message in line
    ), line


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://dav.example.com:99999/{user}/", "the port must be a number from 1 to 65535"),
        ("http:///{user}/contacts/", "names no server"),
    ],
)
def test_a_url_with_a_template_in_its_path_has_its_server_checked(
    tmp_path: Path, contacts_dir: Path, url: str, message: str
) -> None:
    """The template only hides the path: the server part is checked as in any URL."""
    dav = f'\n[sources.book]\ntype = "carddav"\nurl = "{url}"\n'
    result = check("--config", str(write_config(tmp_path, folder_config(contacts_dir) + dav)))
    assert result.returncode == 2
    assert f"[sources.book] url: {url!r}" in result.stderr and message in result.stderr, (
        result.stderr
    )
    fine = dav.replace(url, "https://dav.example.com:8443/{user}/book/")
    result = check("--config", str(write_config(tmp_path, folder_config(contacts_dir) + fine)))
    assert result.returncode == 0, result.stderr


def test_an_unreadable_ca_file_fails_the_check(tmp_path: Path, contacts_dir: Path) -> None:
    ca = tmp_path / "ca.pem"
    path = write_config(
        tmp_path, ldap_config(contacts_dir, "ldaps://ldap.example.com", f'tls_ca_file = "{ca}"')
    )
    result = check("--config", str(path))
    assert result.returncode == 2
    assert (
        f"{path}: [sources.people] tls_ca_file: cannot read {ca}: No such file or directory"
        in result.stderr
    )
    ca.write_text("not a certificate\n")
    result = check("--config", str(path))
    assert f"[sources.people] tls_ca_file: {ca} holds no PEM certificate" in result.stderr
    trustme.CA().cert_pem.write_to_path(str(ca))
    assert check("--config", str(path)).returncode == 0


# --- --connect -----------------------------------------------------------------------------


def test_connect_tries_every_source_once(
    tmp_path: Path, contacts_dir: Path, make_slapd: MakeSlapd
) -> None:
    slapd = make_slapd(people=3)
    personal = f'\n[sources.personal]\ntype = "vcard-dir"\npath = "{tmp_path}/books/{{user}}"\n'
    path = write_config(tmp_path, ldap_config(contacts_dir, slapd.url) + personal)
    result = check("--config", str(path), "--connect")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "source people (ldap): ok (3 entries)" in result.stdout
    assert "source demo (vcard-dir): ok (28 entries)" in result.stdout
    assert "source personal (vcard-dir): skipped: per-user source" in result.stdout
    # A per-user source is tried as the user given.
    result = check("--config", str(path), "--connect", "--user", "sip:alice@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "source personal (vcard-dir): ok (0 entries)" in result.stdout
    assert check("--config", str(path), "--connect", "--user", "../x").returncode == 2

    slapd.stop()
    result = check("--config", str(path), "--connect")
    assert result.returncode == 1
    assert "source people (ldap): FAILED: no LDAP server could be used" in result.stdout
    assert "source demo (vcard-dir): ok (28 entries)" in result.stdout


def test_connect_reports_each_failure_and_exits_non_zero(
    tmp_path: Path, contacts_dir: Path, make_slapd: MakeSlapd
) -> None:
    slapd = make_slapd(people=1)
    text = ldap_config(contacts_dir, slapd.url).replace(ADMIN_PASSWORD, "wrong-password")
    text += f"""
[sources.nowhere]
type = "ldap"
url = "ldap://127.0.0.1:{free_port()}"
base_dn = "{PEOPLE}"
timeout = "3s"
"""
    path = write_config(tmp_path, text)
    result = check("--config", str(path), "--connect")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{path}: OK" in result.stdout  # the file itself is fine
    assert (
        f"source people (ldap): FAILED: bind as {ADMIN_DN} rejected (invalid credentials)"
        in result.stdout
    )
    assert "source nowhere (ldap): FAILED: no LDAP server could be used" in result.stdout
    assert "source demo (vcard-dir): ok (28 entries)" in result.stdout
    assert "wrong-password" not in result.stdout + result.stderr


def test_connect_with_file_problems_reports_both(tmp_path: Path) -> None:
    missing = tmp_path / "contacts"
    path = write_config(tmp_path, folder_config(missing))
    result = check("--config", str(path), "--connect")
    assert result.returncode == 2  # the file's problem comes first
    assert f"[sources.demo] path: folder {missing} does not exist" in result.stderr
    assert f"source demo (vcard-dir): FAILED: folder {missing} does not exist" in result.stdout


def test_connect_names_a_carddav_server_that_never_answers(
    tmp_path: Path, contacts_dir: Path
) -> None:
    """A read timeout said `cannot connect ()`: an exception is true even when its message
    is empty, so the empty message was shown instead of its type."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/book/"
        dav = f'\n[sources.book]\ntype = "carddav"\nurl = "{url}"\ntimeout = "1s"\n'
        path = write_config(tmp_path, folder_config(contacts_dir) + dav)
        result = check("--config", str(path), "--connect")
    finally:
        silent.close()
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "source book" in line]
    assert "FAILED" in line and "()" not in line and "Timeout" in line, line


def test_a_users_file_nobody_can_use_does_not_stop_directory_logins(
    tmp_path: Path, contacts_dir: Path
) -> None:
    """Basic logins checked against an LDAP source work whatever the users file holds: its
    unreadable lines are check-config's concern, not a reason to refuse to start."""
    users = tmp_path / "des-only.htpasswd"
    users.write_text("svc:fwZ1wmCQE.5fI\n")  # DES crypt: a hash the gateway does not read
    auth = (
        f'\n[auth]\nmode = "basic"\nusers_file = "{users}"\nldap_source = "people"\n'
        "allow_insecure_basic = true\n"
    )
    path = write_config(tmp_path, ldap_config(contacts_dir, "ldap://ldap.example.com") + auth)
    assert load_config(path).auth.ldap_source == "people"  # serve starts
    result = check("--config", str(path))
    assert result.returncode == 2
    assert "[auth] users_file:" in result.stderr
    assert "only the directory's logins work" in result.stderr, result.stderr
