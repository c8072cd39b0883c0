"""The admin console in a real headless browser: Debian's chromium driven by Playwright
(nothing downloaded), logging in with HTTP Digest like an administrator would.

Screenshots of every page are written to `tmp_path/screenshots` (kept with pytest's
temp folders), and also to $ADMIN_SCREENSHOTS when that is set."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.entry import Entry
from gateway.xcap import counterpath
from tests.conftest import write_config
from tests.ldap.server import PEOPLE, READER_DN, SERVICE_PASSWORD, Slapd
from tests.test_admin import (
    PASSWORDS,
    SCRIPT_NAME,
    Running,
    auth_toml,
    running,
    script_card,
    session_as,
    wait_for,
)

playwright_api = pytest.importorskip("playwright.async_api")
async_playwright = playwright_api.async_playwright
expect = playwright_api.expect

CHROMIUM = Path("/usr/bin/chromium")
ALICE_DOC = "/users/sip:alice@example.com/tbook.xml"


def ensure_chromium() -> None:
    """Debian's chromium, installed when missing (as root, as make test installs slapd)."""
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0:
        pytest.skip("chromium is needed: apt-get install chromium (as root, make test does it)")
    print("installing Debian's chromium for the admin console's browser tests (apt-get)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    ensure_chromium()
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


def browser_config(tmp_path: Path, contacts_dir: Path, slapd: Slapd) -> Config:
    """The demo cards (plus one named like markup) and a slapd whose bind DN may read
    but not write, in one document."""
    script_card(contacts_dir)
    (tmp_path / "ldap.password").write_text(SERVICE_PASSWORD + "\n")
    return load_config(
        write_config(
            tmp_path,
            f"""
[server]
# Shown in the phones' URLs only (the test serves on ports of its own): a wildcard
# address is shown with the host name the browser used.
listen = "0.0.0.0:8080"
state_dir = "var"

[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
category = "work"

[sources.people]
type = "ldap"
url = "{slapd.url}"
bind_dn = "{READER_DN}"
password_file = "ldap.password"
base_dn = "{PEOPLE}"
filter = "(objectClass=inetOrgPerson)"
interval = "1h"

[documents.tbook]
name = "tbook.xml"
sources = ["demo", "people"]
write_to = "demo"
formats = ["counterpath", "yealink", "cisco", "snom", "grandstream"]

{auth_toml(tmp_path)}
""",
        )
    )


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        extra = os.environ.get("ADMIN_SCREENSHOTS")
        self.extra = Path(extra) if extra else None

    async def take(self, page: object, name: str) -> None:
        path = self.folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.extra / path.name)


async def _edit_as_alice(gateway: Running, name: str, new_name: str) -> None:
    """What alice's phone does: fetch her document, rename one entry, PUT it back."""
    async with session_as("alice") as alice:
        async with alice.get(gateway.xcap + ALICE_DOC) as response:
            assert response.status == 200
            entries = counterpath.parse(await response.read())
        edited = [
            Entry(e.entry_id, new_name, e.fields) if e.display_name == name else e for e in entries
        ]
        assert edited != entries
        async with alice.put(gateway.xcap + ALICE_DOC, data=counterpath.render(edited)) as put:
            assert put.status == 200


async def test_the_console_in_a_browser(
    browser: object,
    make_slapd: Callable[..., Slapd],
    tmp_path: Path,
    contacts_dir: Path,
) -> None:
    slapd = make_slapd(people=3)
    shots = Shots(tmp_path / "screenshots")
    async with running(browser_config(tmp_path, contacts_dir, slapd)) as gateway:
        context = await browser.new_context(  # type: ignore[attr-defined]
            http_credentials={"username": "admin", "password": PASSWORDS["admin"]},
            viewport={"width": 1400, "height": 900},
        )
        page = await context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))

        # Logged in: every source, no error yet.
        response = await page.goto(gateway.admin + "/")
        assert response is not None and response.status == 200
        people = page.locator("#source-people")
        await expect(people.locator(".last-error")).to_have_text("none")
        await expect(people).to_contain_text("ldap")
        await expect(page.locator("#source-demo")).to_contain_text("vcard-dir")
        urls = page.locator("table.phone-urls").first
        await expect(urls).to_contain_text("remote_phonebook.data.1.url")
        await expect(urls).to_contain_text("http://127.0.0.1:8080/users/sip:{xui}/tbook.xml")
        await shots.take(page, "overview")

        # The upstream stops: "sync now" shows its error.
        slapd.stop()
        await people.get_by_role("button", name="Sync now").click()
        await expect(people.locator(".last-error")).not_to_have_text("none")
        await expect(people.locator("td.error")).to_be_visible()
        await shots.take(page, "overview-upstream-down")

        # It returns: "sync now" again, and the error is gone.
        slapd.start()
        await people.get_by_role("button", name="Sync now").click()
        await expect(people.locator(".last-error")).to_have_text("none")
        await shots.take(page, "overview-recovered")

        # A phone's edit the directory refuses (the bind DN may only read): it fails, is
        # listed with its reason, and the administrator discards it.
        await _edit_as_alice(gateway, "Person 000001", "Person One Renamed")
        outbox = gateway.engine.outbox
        await wait_for(lambda: outbox.failed_count == 1, "the refused write recorded as failed")
        await page.goto(gateway.admin + "/outbox")
        failed = page.locator("#failed")
        await expect(failed).to_contain_text("Person One Renamed")
        await expect(failed).to_contain_text("insufficient access")
        await shots.take(page, "outbox")
        await failed.get_by_role("button", name="Discard").click()
        await expect(page.get_by_text("No failed changes.")).to_be_visible()
        assert outbox.failed_count == 0

        # The refused write is among the recent events.
        await page.goto(gateway.admin + "/conflicts")
        await expect(page.locator("#events")).to_contain_text("write-back failed")
        await shots.take(page, "conflicts")

        # A user's view: the document as a table, markup from upstream shown as text.
        await page.goto(gateway.admin + "/user")
        await page.get_by_label("xui").fill("alice@example.com")
        await page.get_by_label("format").select_option("yealink")
        await page.get_by_role("button", name="Show").click()
        entries = page.locator("#entries")
        await expect(entries).to_contain_text("Anna Müller")
        await expect(entries).to_contain_text("Person 000001")
        await expect(entries.locator("td.name", has_text=SCRIPT_NAME)).to_have_count(1)
        assert await page.locator("script").count() == 0
        await expect(page.locator("table.phone-urls")).to_contain_text(
            "http://127.0.0.1:8080/phonebook/yealink/users/alice@example.com/tbook?q=#SEARCH"
        )
        await shots.take(page, "user")
        await page.locator("#raw-link").click()
        await expect(page.locator("body")).to_contain_text("YealinkIPPhoneDirectory")
        await expect(page.locator("body")).to_contain_text("&lt;script&gt;alert(1)&lt;/script&gt;")
        await shots.take(page, "user-raw")
        assert dialogs == []  # no script ran anywhere
        await context.close()

        # Another user, logged in: 403 on every page.
        other = await browser.new_context(  # type: ignore[attr-defined]
            http_credentials={"username": "alice", "password": PASSWORDS["alice"]}
        )
        alice_page = await other.new_page()
        for path in ("/", "/outbox", "/user"):
            response = await alice_page.goto(gateway.admin + path)
            assert response is not None and response.status == 403, path
        await shots.take(alice_page, "not-an-admin")
        await other.close()
