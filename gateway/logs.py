"""Structured logging: one event per line as key=value pairs."""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger("xcap_gateway")


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def event(name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log `event=name key=value …`; keys whose value is None are left out."""
    if log.isEnabledFor(level):
        pairs = " ".join(f"{k}={_quote(v)}" for k, v in fields.items() if v is not None)
        log.log(level, f"event={name} {pairs}".rstrip())


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s level=%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler says "Running job …" at every run; our own sync events say more.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
