"""Shared fixtures: a private copy of the demo cards and a config that serves them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONTACTS = ROOT / "config" / "contacts"

ConfigFactory = Callable[..., Config]


@pytest.fixture
def contacts_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "contacts"
    shutil.copytree(DEMO_CONTACTS, folder)
    return folder


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def make_config(tmp_path: Path, contacts_dir: Path) -> ConfigFactory:
    """A loaded config serving `contacts_dir` as /users/{xui}/tbook.xml; `extra` is
    appended TOML, `source` replaces keys of [sources.demo]."""

    def make(
        source: str = "",
        extra: str = "",
        document: str = "",
        write_to: str | None = "demo",
        sources: str = '["demo"]',
    ) -> Config:
        write = f'write_to = "{write_to}"' if write_to else ""
        text = f"""
[server]
listen = "127.0.0.1:0"
state_dir = "var"

[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
category = "work"
{source}

[documents.tbook]
name = "tbook.xml"
sources = {sources}
{write}
{document}
{extra}
"""
        return load_config(write_config(tmp_path, text))

    return make
