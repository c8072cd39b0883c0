"""The request log's fast path writes the lines the logging formatters would write, in
order with every other log line, and none is lost at the end."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from gateway.logs import JsonFormatter, KeyValueFormatter, RequestLines, event, log

FIELDS = {
    "method": "GET",
    "path": '/users/sip:a@b/"x y"\x1b[2J',
    "user": None,
    "document": "tbook",
    "status": 304,
    "bytes": 0,
    "ms": 0.4,
}
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def formatted(style: str) -> str:
    """The line logging's own formatter makes of the same event."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if style == "json" else KeyValueFormatter())
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        event("request", **FIELDS)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return stream.getvalue().strip()


@pytest.mark.parametrize("style", ["kv", "json"])
def test_a_fast_line_is_the_formatters_line(style: str) -> None:
    stream = io.StringIO()
    lines = RequestLines(stream, style)
    lines.add("request", dict(FIELDS))
    assert stream.getvalue() == ""  # held until flushed
    lines.flush()
    fast, slow = stream.getvalue().strip(), formatted(style)
    if style == "json":
        fast_data, slow_data = json.loads(fast), json.loads(slow)
        assert fast_data.pop("time")[:16] == slow_data.pop("time")[:16]
        assert fast_data == slow_data
    else:
        assert TIME.match(fast) and TIME.match(slow)
        assert fast[24:] == slow[24:]  # the same after the time
        assert "\x1b" not in fast and "user=" not in fast


def test_a_full_buffer_is_written_at_once() -> None:
    stream = io.StringIO()
    lines = RequestLines(stream, "kv")
    for _ in range(RequestLines.HELD):
        lines.add("request", {"status": 304})
    assert stream.getvalue().count("\n") == RequestLines.HELD


def test_a_closed_stream_loses_the_lines_not_the_request() -> None:
    stream = io.StringIO()
    lines = RequestLines(stream, "kv")
    lines.add("request", {"status": 200})
    stream.close()
    lines.flush()  # no exception: logging does not fail a request either


def test_lines_stay_in_order_with_other_events(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import logs

    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("apscheduler").level
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(logs, "_requests", None)
    try:
        logs.setup("INFO", "kv")
        logs.request_line(method="GET", status=304)
        event("sync", source="demo")
        logs.request_line(method="PUT", status=200)
        logs.flush_requests()
    finally:
        root.handlers[:], level, scheduler = saved
        root.setLevel(level)
        logging.getLogger("apscheduler").setLevel(scheduler)
    events = re.findall(r"event=(\w+)(?: method=(\w+))?", stream.getvalue())
    assert events == [("request", "GET"), ("sync", ""), ("request", "PUT")]
