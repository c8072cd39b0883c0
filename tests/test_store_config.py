"""[store]: what the configuration accepts and refuses, what `check-config --connect` says
of the database, and a gateway that cannot reach it at start says where and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from tests.conftest import write_config
from tests.support import free_port

SOURCES = """
[sources.demo]
type = "vcard-dir"
path = "{contacts}"
[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
"""


def config_text(contacts: Path, store: str) -> str:
    return f'[server]\nstate_dir = "var"\n[store]\n{store}\n' + SOURCES.format(contacts=contacts)


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ('url = "mysql://db/xcap"', "a PostgreSQL URL like"),
        ('url = "postgresql://xcap:hunter2@db/xcap"', "put the password in password_file"),
        ('url = "postgresql://xcap:hunter2%zz@db/xcap"', "not a PostgreSQL URL"),
        ('url = "postgresql://xcap:hunter2@[::1/xcap"', "not a PostgreSQL URL"),
        ('password_file = "nowhere"', "cannot read"),
        ('url = ""\npassword = "x"', "set url too"),
        ('url = "postgresql://db/xcap"\npool_size = 1', "pool_size"),
    ],
)
def test_a_bad_store_table_names_the_key_and_what_to_change(
    tmp_path: Path, contacts_dir: Path, store: str, message: str
) -> None:
    path = write_config(tmp_path, config_text(contacts_dir, store))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    problems = [str(problem) for problem in raised.value.problems]
    assert any("[store]" in p and message in p for p in problems), problems
    assert all("hunter2" not in p for p in problems), "a password in an error message"


def test_the_password_comes_from_a_file(tmp_path: Path, contacts_dir: Path) -> None:
    (tmp_path / "db-password").write_text("s3cret\n")
    path = write_config(
        tmp_path,
        config_text(
            contacts_dir, 'url = "postgresql://xcap@db/xcap"\npassword_file = "db-password"'
        ),
    )
    store = load_config(path).store
    assert store.password is not None and store.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(store)


def test_check_config_connects_to_the_database_and_says_what_it_found(
    tmp_path: Path, contacts_dir: Path, pg_url: str
) -> None:
    path = write_config(tmp_path, config_text(contacts_dir, f'url = "{pg_url}"'))
    result = gateway("check-config", "--config", str(path), "--connect")
    assert result.returncode == 0, result.stderr
    assert "ok (empty: the first replica to start creates the tables)" in result.stdout
    # Nothing was created by the check.
    result = gateway("check-config", "--config", str(path), "--connect")
    assert "ok (empty" in result.stdout, result.stdout


def test_check_config_and_serve_name_an_unreachable_database(
    tmp_path: Path, contacts_dir: Path
) -> None:
    url = f"postgresql://xcap@127.0.0.1:{free_port()}/xcap"
    path = write_config(
        tmp_path, config_text(contacts_dir, f'url = "{url}"\nconnect_timeout = "1s"')
    )
    result = gateway("check-config", "--config", str(path), "--connect")
    assert result.returncode == 1
    assert "store (postgresql://127.0.0.1:" in result.stdout and "FAILED" in result.stdout
    served = gateway("serve", "--config", str(path))
    assert served.returncode == 1
    assert "[store] url: cannot connect to postgresql://127.0.0.1:" in served.stderr, served.stderr
    assert "Connection refused" in served.stderr, "libpq's reason is lost"
    assert "Traceback" not in served.stderr and len(served.stderr.splitlines()) < 5, served.stderr
