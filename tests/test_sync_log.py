"""Every successful sync has an `event=sync` line: at INFO when it changed the contacts,
at DEBUG when it found nothing new (before, a sync without change logged nothing at all)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import write_config
from tests.test_check_config import folder_config


def sync(path: Path, level: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "sync", "--config", str(path), "--log-level", level],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stderr.splitlines() if "event=sync " in line]


def test_a_sync_without_change_logs_at_debug_one_with_change_at_info(
    tmp_path: Path, contacts_dir: Path
) -> None:
    path = write_config(tmp_path, folder_config(contacts_dir))
    (first,) = sync(path, "INFO")
    assert "source=demo entries=28 added=28 changed=0 deleted=0" in first
    # The same folder again (from the stored snapshot): nothing new.
    assert sync(path, "INFO") == []
    (quiet,) = sync(path, "DEBUG")
    assert "DEBUG" in quiet and "source=demo entries=28 added=0 changed=0 deleted=0" in quiet
    card = next(contacts_dir.glob("*.vcf"))
    card.write_text(card.read_text().replace("END:VCARD", "NOTE:changed\r\nEND:VCARD"))
    (changed,) = sync(path, "INFO")
    assert "INFO" in changed and "entries=28 added=0 changed=1 deleted=0" in changed


def test_the_first_sync_of_an_empty_source_logs_at_info(tmp_path: Path) -> None:
    """An empty folder finds nothing new on its very first sync: still its line at INFO,
    or at the default level a new source would never show it ran."""
    empty = tmp_path / "empty"
    empty.mkdir()
    path = write_config(tmp_path, folder_config(empty))
    (first,) = sync(path, "INFO")
    assert "INFO" in first and "source=demo entries=0" in first
    assert sync(path, "INFO") == []  # the next ones, nothing new: DEBUG
