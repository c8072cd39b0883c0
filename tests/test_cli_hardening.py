"""`xcap-gateway render` refuses an xui that names no single user, before reading anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.test_cli import gateway


@pytest.mark.parametrize(
    "xui", ["sip:..@example.com", "./@example.com", "alice@..", "a/b@example.com"]
)
def test_render_refuses_an_xui_that_climbs_out_of_the_users_folder(
    tmp_path: Path, xui: str
) -> None:
    books = tmp_path / "books"
    (books / "alice").mkdir(parents=True)
    (books / "secret.vcf").write_text(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Secret Person\r\nEND:VCARD\r\n"
    )
    path = write_config(
        tmp_path,
        f"""
[server]
state_dir = "var"
[sources.personal]
type = "vcard-dir"
path = "{books}/{{user}}"
[documents.tbook]
name = "tbook.xml"
sources = ["personal"]
""",
    )
    result = gateway("render", "--config", str(path), "--document", "tbook", "--user", xui)
    assert result.returncode == 2, result.stderr
    assert b"Secret" not in result.stdout and b"not one user" in result.stderr
