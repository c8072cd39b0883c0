"""Configuration: every problem names the file, the table and the key, all at once."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import trustme

from gateway.config import ConfigError, load_config
from tests.conftest import ROOT, write_config

GOOD = """
[server]
listen = ["127.0.0.1:8080", "[::1]:8443"]

[sources.demo]
type = "vcard-dir"
path = "contacts"
interval = "15m"

[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
write_to = "demo"
"""


#: An htpasswd {SHA} hash of "pw".
SHA_PW = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, text))
    return [str(problem) for problem in raised.value.problems]


def test_the_demo_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "gateway.toml")
    assert config.documents["tbook"].name == "tbook.xml"
    assert config.sources["demo"].interval == 60
    # Relative paths are taken from the file's folder, wherever the process runs.
    assert config.sources["demo"].settings.path == ROOT / "config" / "contacts"  # type: ignore[attr-defined]


def test_durations_lists_and_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, GOOD))
    assert config.sources["demo"].interval == 900
    assert config.server.listen == ["127.0.0.1:8080", "[::1]:8443"]
    assert config.documents["tbook"].max_entries == 1000
    assert config.sources["demo"].deletes_allowed  # vcard-dir default
    assert not config.sources["demo"].read_only


def test_every_problem_is_reported_with_file_table_and_key(tmp_path: Path) -> None:
    text = GOOD.replace('interval = "15m"', 'interval = "15 minutes"\ncolour = "red"')
    text = text.replace(
        'listen = ["127.0.0.1:8080", "[::1]:8443"]', 'listen = "localhost"\nport = 1'
    )
    text += '\n[documents.other]\nname = "tbook.xml"\nsources = ["nope"]\nwrite_to = "demo"\n'
    found = problems(tmp_path, text)
    file = str(tmp_path / "gateway.toml")
    assert all(line.startswith(file + ": ") for line in found)
    joined = "\n".join(found)
    assert "[sources.demo] interval: '15 minutes' is not a duration" in joined
    assert "[sources.demo] colour: unknown key" in joined
    assert "[server] port: unknown key" in joined
    assert "[server] listen: 'localhost' is not host:port" in joined
    assert "[documents.other] sources: no [sources.nope] is configured" in joined
    assert "[documents.other] write_to: must be one of this document's sources" in joined
    assert "[documents.other] name: same auid and name as [documents.tbook]" in joined


def test_unknown_source_type_lists_the_known_ones(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, GOOD.replace('"vcard-dir"', '"vcard"'))
    assert "[sources.demo] type: unknown source type 'vcard' (known: " in line
    assert "vcard-dir" in line


def test_toml_syntax_errors_point_at_the_line(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, GOOD + "\n[documents\n")
    assert "not valid TOML" in line and "line 15" in line


def test_environment_variables_are_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOOK_DIR", "/srv/book")
    config = load_config(write_config(tmp_path, GOOD.replace('"contacts"', '"${BOOK_DIR}/x"')))
    assert config.sources["demo"].settings.path == Path("/srv/book/x")  # type: ignore[attr-defined]
    monkeypatch.delenv("BOOK_DIR")
    (line,) = problems(tmp_path, GOOD.replace('"contacts"', '"${BOOK_DIR}"'))
    assert "[sources.demo] path: environment variable BOOK_DIR is not set" in line


def test_password_file_is_read_into_password(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret\n")
    text = GOOD.replace('path = "contacts"', 'path = "contacts"\npassword_file = "secret"')
    # vcard-dir has no password: the key arrives as `password` and is refused as such.
    (line,) = problems(tmp_path, text)
    assert "[sources.demo] password: unknown key" in line
    assert "s3cret" not in line
    (line,) = problems(tmp_path, text.replace('"secret"', '"missing"'))
    assert "[sources.demo] password_file: cannot read" in line


def test_auth_settings_are_checked(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, GOOD + '\n[auth]\nmode = "digest"\n')
    assert "[auth] users_file: digest needs an htdigest file" in line
    (tmp_path / "users").write_text(f"alice:{SHA_PW}\n")
    (line,) = problems(tmp_path, GOOD + '\n[auth]\nmode = "basic"\nusers_file = "users"\n')
    assert "[auth] mode: basic sends passwords in clear and no HTTPS is configured" in line
    load_config(
        write_config(
            tmp_path,
            GOOD + '\n[auth]\nmode = "basic"\nusers_file = "users"\nallow_insecure_basic = true\n',
        )
    )
    (tmp_path / "users.htdigest").write_text(f"alice:xcap:{'0' * 32}\n")
    (line,) = problems(
        tmp_path,
        GOOD + '\n[auth]\nmode = "digest"\nusers_file = "users.htdigest"\nldap_source = "demo"\n',
    )
    assert '[auth] ldap_source: must name a [sources.NAME] of type "ldap"' in line


def test_tls_files_must_exist_and_come_in_pairs(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("[server]", '[server]\ntls_cert = "cert.pem"'))
    joined = "\n".join(found)
    assert "[server] tls_key: tls_cert and tls_key go together" in joined
    assert "[server] tls_cert: no such file" in joined


def test_check_config_command_exits_2_and_lists_problems(tmp_path: Path) -> None:
    path = write_config(tmp_path, GOOD.replace('"15m"', '"soon"') + "\nbogus = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert f"{path}: [sources.demo] interval:" in result.stderr
    assert (
        f"{path}: [documents.tbook] bogus: unknown key" in result.stderr or "bogus" in result.stderr
    )
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "check-config",
            "--config",
            str(ROOT / "config/gateway.toml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and "OK" in ok.stdout


@pytest.mark.parametrize("example", sorted((ROOT / "config" / "examples").glob("*.toml")))
def test_example_configs_are_valid(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Secrets and TLS files are the administrator's; stand them in where the examples expect them.
    monkeypatch.setenv("XCAP_AD_PASSWORD", "x")
    text = example.read_text()
    # The server's pair is loaded as serving loads it: a real certificate and its key.
    cert = trustme.CA().issue_cert("xcap.example.com")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    (tmp_path / "ldap-password").write_text("x")
    for name in (
        "/etc/xcap-gateway/tls/cert.pem",
        "/etc/xcap-gateway/tls/key.pem",
        "/run/secrets/ldap-password",
    ):
        text = text.replace(name, str(tmp_path / Path(name).name))
    load_config(write_config(tmp_path, text))


def test_the_default_state_dir_is_beside_the_config_file(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, GOOD))
    assert config.server.state_dir == tmp_path.resolve() / "var"


def _configmap_toml() -> str:
    text = (ROOT / "deploy" / "kubernetes.yaml").read_text()
    block = text.split("gateway.toml: |\n", 1)[1].split("\n---", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


@pytest.mark.parametrize("name", ["compose", "kubernetes"])
def test_deployment_configs_are_valid(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        (ROOT / "deploy" / "gateway-compose.toml").read_text()
        if name == "compose"
        else _configmap_toml()
    )
    for secret in (
        "/run/secrets/ldap_admin_password",
        "/etc/xcap-gateway/users.htdigest",
        "/etc/xcap-gateway/secrets/ldap-password",
        "/etc/xcap-gateway/users/users.htdigest",
    ):
        stand_in = tmp_path / Path(secret).name
        # A users file is read as the auth mode reads it: one htdigest line of its realm.
        realm = tomllib.loads(text)["auth"].get("realm", "xcap")
        stand_in.write_text(f"alice:{realm}:{'0' * 32}\n" if "htdigest" in secret else "x\n")
        text = text.replace(secret, str(stand_in))
    config = load_config(write_config(tmp_path, text))
    assert config.auth.mode == "digest" and config.documents["tbook"].name == "tbook.xml"


PER_USER = (
    GOOD
    + """
[sources.personal]
type = "carddav"
url = "CARDDAV"

[sources.directory]
type = "ldap"
url = ["ldap://ldap1.example.com", "LDAP"]
base_dn = "ou={user},dc=example,dc=com"
"""
)
XUI_AUTH = '\n[auth]\nmode = "digest"\nusers_file = "users"\nmatch = "xui"\n'


def per_user(tmp_path: Path, carddav: str, ldap: str, auth: str = XUI_AUTH) -> str:
    (tmp_path / "users").write_text("")
    return PER_USER.replace("CARDDAV", carddav).replace("LDAP", ldap) + auth


@pytest.mark.parametrize(
    ("carddav", "ldap"),
    [
        ("http://{domain}:5232/{user}/", "ldap://{domain}"),
        ("https://{user}.dav.example.com/", "ldaps://ldap.{domain}:636"),
        ("https://svc:pw@{xui}/", "ldap://ldap2.example.com:{user}"),
        ("https://dav.example.com@{domain}/", "ldap://x@{domain}/"),
    ],
)
def test_a_template_in_the_host_of_a_url_is_an_error(
    tmp_path: Path, carddav: str, ldap: str
) -> None:
    """A request's xui would choose where the gateway connects and sends its service
    password (today sip:alice@attacker.example received it)."""
    found = problems(tmp_path, per_user(tmp_path, carddav, ldap))
    file = tmp_path / "gateway.toml"
    message = (
        "a template in the host part of a URL lets a request choose the server the gateway "
        "connects and logs in to: keep {user}, {domain} and {xui} in the path"
    )
    assert found == [
        f"{file}: [sources.personal] url: {message}",
        f"{file}: [sources.directory] url: {message}",
    ]


def test_templates_in_the_path_of_a_url_are_fine(tmp_path: Path) -> None:
    text = per_user(
        tmp_path, "https://dav.example.com:8443/{domain}/{user}/?x={xui}", "ldap://ldap2:389"
    )
    load_config(write_config(tmp_path, text))


@pytest.mark.parametrize("template", ["{domain}/{user}", "{xui}"])
def test_match_user_with_a_domain_template_needs_the_domains_listed(
    tmp_path: Path, template: str
) -> None:
    """With match = "user", alice's login says nothing about the domain: today she read
    alice@c.com's book. Either the login covers the domain or only listed ones exist."""
    user_auth = XUI_AUTH.replace('"xui"', '"user"')
    text = per_user(tmp_path, f"https://dav.example.com/{template}/", "ldap://ldap2", auth="")
    (line,) = problems(tmp_path, text + user_auth)
    assert line == (
        f"{tmp_path / 'gateway.toml'}: [sources.personal] url: uses {{domain}} or {{xui}}, "
        'but with [auth] match = "user" the domain is not authenticated (alice could read '
        'alice@elsewhere\'s book): set [auth] match = "xui", or list the domains served '
        "in [auth] domains"
    )
    load_config(write_config(tmp_path, text + XUI_AUTH))
    load_config(write_config(tmp_path, text + user_auth + 'domains = ["example.com"]\n'))
    # Without authentication anyone reads any book anyway: nothing to check.
    load_config(write_config(tmp_path, text + '\n[auth]\nmode = "none"\n'))
    # {user} alone does not depend on the domain.
    load_config(
        write_config(tmp_path, per_user(tmp_path, "https://d/{user}/", "ldap://l2", user_auth))
    )


def test_domains_and_realms_are_normalized_and_checked(tmp_path: Path) -> None:
    auth = '\n[auth]\nrealms = { "B.COM." = "b" }\ndomains = ["A.com.", "b.com"]\n'
    config = load_config(write_config(tmp_path, GOOD + auth))
    assert config.auth.domains == ["a.com", "b.com"]
    assert config.auth.realms == {"b.com": "b"}
    (line,) = problems(tmp_path, GOOD + '\n[auth]\ndomains = ["a.com", "../x"]\n')
    assert line.endswith("[auth] domains: '../x' is not a domain name like \"example.com\"")
