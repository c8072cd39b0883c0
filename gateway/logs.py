"""Structured logging: one event per line, as key=value pairs or as JSON (`[logging]`)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

log = logging.getLogger("xcap_gateway")


#: Longest field value written: a client chooses paths and names, not the log's size.
MAX_FIELD = 512
#: Control characters (a terminal escape, a carriage return that hides a line) and the
#: quoting characters, as escapes.
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)} | {
    ord("\\"): "\\\\",
    ord('"'): '\\"',
    ord("\n"): "\\n",
}


def _clip(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return f"{value[:MAX_FIELD]}…(+{len(value) - MAX_FIELD} characters)"
    return value


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n') or text != text.translate(_ESCAPES):
        return '"' + text.translate(_ESCAPES) + '"'
    return text


def event(name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log one event; fields whose value is None are left out. `exc_info=True` adds the
    traceback of the exception being handled."""
    if log.isEnabledFor(level):
        exc_info = bool(fields.pop("exc_info", False))
        present = {k: _clip(v) for k, v in fields.items() if v is not None}
        pairs = " ".join(f"{k}={_quote(v)}" for k, v in present.items())
        log.log(
            level,
            f"event={name} {pairs}".rstrip(),
            exc_info=exc_info,
            extra={"event": name, "fields": present},
        )


class KeyValueFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s level=%(levelname)s %(message)s")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event and its fields (or the message)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname}
        if event_name := getattr(record, "event", None):
            data["event"] = event_name
            data.update(
                {
                    k: v if isinstance(v, int | float | bool) else str(v)
                    for k, v in getattr(record, "fields", {}).items()
                }
            )
        else:
            data["logger"], data["message"] = record.name, record.getMessage()
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup(level: str = "INFO", style: str = "kv") -> None:
    # A line per request: spare the record the fields no format here uses.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if style == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler says "Running job …" at every run; our own sync events say more.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # Requests are logged once, by the gateway's own middleware.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
