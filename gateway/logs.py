"""Structured logging: one event per line, as key=value pairs or as JSON (`[logging]`)."""

from __future__ import annotations

import atexit
import json
import logging
import re
import sys
import threading
import time
from typing import Any, TextIO

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


#: What makes a value need quotes: white space, `=`, quotes, a backslash, a control.
_NEEDS_QUOTES = re.compile(r'[\x00-\x20="\\\x7f]')


def _quote(value: object) -> str:
    if isinstance(value, int | float):  # bool too: never quoted
        return str(value)
    text = str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        return '"' + text.translate(_ESCAPES) + '"'
    return text


def _pairs(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


def event(name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log one event; fields whose value is None are left out. `exc_info=True` adds the
    traceback of the exception being handled."""
    if log.isEnabledFor(level):
        exc_info = bool(fields.pop("exc_info", False))
        present = {k: _clip(v) for k, v in fields.items() if v is not None}
        pairs = _pairs(present)
        log.log(
            level,
            f"event={name} {pairs}".rstrip(),
            exc_info=exc_info,
            extra={"event": name, "fields": present},
        )


class RequestLines:
    """The request log's fast path: one line per request, formatted here as the
    configured formatter would (no LogRecord, no Formatter per line), kept in a buffer
    that is written when it fills, every FLUSH_EVERY seconds (`flush`, called from the
    event loop), and before any other log line (so lines stay in order)."""

    #: Lines held before they are written.
    HELD = 256

    def __init__(self, stream: TextIO, style: str) -> None:
        self.stream = stream
        self.json = style == "json"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._second = -1
        self._stamp = ""

    def _time(self) -> str:
        """The time as logging.Formatter writes it (`2026-11-27 07:31:14,123`), the
        seconds formatted once a second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = (
                second,
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
            )
        return f"{self._stamp},{int((now - second) * 1000):03d}"

    def add(self, name: str, fields: dict[str, Any]) -> None:
        present = {k: _clip(v) for k, v in fields.items() if v is not None}
        if self.json:
            data: dict[str, Any] = {"time": self._time(), "level": "INFO", "event": name}
            data.update(
                {k: v if isinstance(v, int | float | bool) else str(v) for k, v in present.items()}
            )
            line = json.dumps(data, ensure_ascii=False)
        else:
            line = f"{self._time()} level=INFO event={name} {_pairs(present)}".rstrip()
        with self._lock:
            self._lines.append(line)
            full = len(self._lines) >= self.HELD
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._lines:
                return
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # a closed stream: as logging would, go on
                pass


#: Set by `setup`: the process logs through our handler, so request lines may take the
#: fast path. (Tests that capture records through logging do not call setup.)
_requests: RequestLines | None = None


def request_line(**fields: Any) -> None:
    """The `request` event, through the fast path when the process set up logging."""
    if not log.isEnabledFor(logging.INFO):
        return
    if _requests is None:
        event("request", **fields)
    else:
        _requests.add("request", fields)


def flush_requests() -> None:
    if _requests is not None:
        _requests.flush()


class _OrderedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes the buffered request lines before a record of its own."""

    def emit(self, record: logging.LogRecord) -> None:
        flush_requests()
        super().emit(record)


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
    global _requests
    if _requests is None:
        atexit.register(flush_requests)
    flush_requests()
    _requests = RequestLines(sys.stderr, style)
    handler = _OrderedHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if style == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler says "Running job …" at every run; our own sync events say more.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # Requests are logged once, by the gateway's own middleware.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
