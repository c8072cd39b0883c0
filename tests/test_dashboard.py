"""The Grafana dashboard in deploy/: its structure, and that every expression in it names
metrics a running gateway exports (scraped over a real socket after a GET, a 304 and a
failed login)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics
from tests.conftest import ROOT, write_config
from tests.support import free_port, start_gateway, stop_process, wait_listening

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "xcap-gateway.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DOCUMENT = "/users/sip:alice@example.com/tbook.xml"
DATASOURCE_REF = "${datasource}"

#: The series a sample of each metric type is exported as, as prometheus_client names them.
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

# PromQL words that are not series names: set operators, modifiers and literals.
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expression: str) -> set[str]:
    """The series names a PromQL expression reads: identifiers standing as a vector
    selector (bare, or before `{` or `[`), not functions, aggregations, label names in
    by/without/on/ignoring lists, keywords, strings, durations or Grafana variables."""
    text = _STRINGS.sub('""', expression)
    text = _BRACES.sub("{}", text)  # matchers name labels, not series
    text = _BRACKETS.sub("[]", text)
    text = _GROUPING.sub("", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("xcap_outbox_depth", {"xcap_outbox_depth"}),
        ('up{job="xcap-gateway", instance=~"$instance"}', {"up"}),
        (
            'sum by (source, le) (rate(xcap_sync_duration_seconds_bucket{source=~"a|b"}[5m]))',
            {"xcap_sync_duration_seconds_bucket"},
        ),
        (
            "sum(rate(a_total{x='y'}[$__rate_interval])) / ignoring (le) b_total or vector(0)",
            {"a_total", "b_total"},
        ),
        ("histogram_quantile(0.95, sum without (pod) (increase(h_bucket[1h])))", {"h_bucket"}),
        ("x_total offset 1h > bool 3", {"x_total"}),
    ],
)
def test_metric_names_are_read_from_promql(expression: str, names: set[str]) -> None:
    assert metric_names(expression) == names


def test_series_are_named_as_prometheus_client_exports_them() -> None:
    """A labelled counter with no sample yet is exported all the same (its family is
    declared), under its _total name; a histogram as _bucket, _sum and _count."""
    names = exported_series(Metrics().exposition().decode())
    assert {"xcap_conflicts_total", "xcap_requests_total", "xcap_auth_failures_total"} <= names
    assert {"xcap_sync_duration_seconds_bucket", "xcap_sync_duration_seconds_count"} <= names
    assert "xcap_conflicts" not in names and "xcap_sync_duration_seconds" not in names


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def graph_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that draws something, including those inside collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in graph_panels(dashboard):
        for target in panel["targets"]:
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", text)
            assert found, f"variable {variable['name']}: {text!r} is not label_values(…, label)"
            yield f"variable {variable['name']!r}", found.group(1)


def test_the_dashboard_is_a_provisionable_grafana_dashboard() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "xcap-gateway" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert datasource["current"]["value"] in {source["uid"] for source in provisioned}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    panels = list(graph_panels(dashboard))
    assert len(panels) >= 10
    for panel in panels:
        where = f"panel {panel.get('title')!r}"
        assert panel["title"] and panel["description"], where
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_REF}, where
        position = panel["gridPos"]
        assert position["w"] > 0 and position["h"] > 0, where
        assert position["x"] >= 0 and position["x"] + position["w"] <= 24, where
        assert panel["targets"], where
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_REF, where
            assert target["expr"].strip(), where
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE_REF, variable["name"]


def test_the_dashboard_covers_what_operators_asked_for() -> None:
    """Requests and 304 share, sync duration and result, entries, outbox depth and age,
    conflicts and failed logins each have a panel."""
    read = set().union(*(metric_names(expr) for _, expr in expressions(load_dashboard())))
    assert {
        "xcap_requests_total",
        "xcap_not_modified_ratio",
        "xcap_sync_duration_seconds_bucket",
        "xcap_syncs_total",
        "xcap_source_entries",
        "xcap_outbox_depth",
        "xcap_outbox_oldest_seconds",
        "xcap_conflicts_total",
        "xcap_auth_failures_total",
    } <= read


def prometheus_own_series() -> dict[str, set[str]]:
    """Series Prometheus itself writes for a scrape target, with the job they belong to:
    `up` is allowed only for the job prometheus.yml scrapes the gateway as."""
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    return {"up": jobs}


def exported_series(exposition: str) -> set[str]:
    """Every series name the exposition declares, samples or not (a labelled counter with
    no children yet is still exported: its family is there)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def sample_value(exposition: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def htdigest_line(user: str, realm: str, password: str) -> str:
    digest = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    return f"{user}:{realm}:{digest}\n"


async def scrape_after_traffic(tmp_path: Path, contacts_dir: Path) -> str:
    """Start a gateway configured like deploy/gateway-compose.toml (Digest logins, metrics on
    their own listener) over a vCard folder, poll it as a phone does, log in wrongly once,
    and return what Prometheus would scrape."""
    (tmp_path / "users.htdigest").write_text(htdigest_line("alice", "xcap", "alice-pw"))
    port, metrics_port = free_port(), free_port()
    config = write_config(
        tmp_path,
        f"""
[server]
listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:{metrics_port}"
state_dir = "var"

[auth]
mode = "digest"
users_file = "users.htdigest"

[sources.demo]
type = "vcard-dir"
path = "{contacts_dir}"
category = "work"

[documents.tbook]
name = "tbook.xml"
sources = ["demo"]
""",
    )
    log = tmp_path / "gateway.log"
    process = start_gateway(config, log)
    try:
        wait_listening(process, metrics_port, log)
        wait_listening(process, port, log)
        url, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(400):  # the first sync of the vCard folder makes it ready
                async with session.get(ops + "/readyz") as ready:
                    if ready.status == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the gateway never became ready:\n" + log.read_text())
        alice = aiohttp.DigestAuthMiddleware("alice", "alice-pw")
        async with aiohttp.ClientSession(middlewares=(alice,)) as session:
            async with session.get(url + DOCUMENT) as first:
                assert first.status == 200
                etag = first.headers["ETag"]
            async with session.get(url + DOCUMENT, headers={"If-None-Match": etag}) as again:
                assert again.status == 304
        wrong = aiohttp.DigestAuthMiddleware("alice", "not-her-password")
        async with (
            aiohttp.ClientSession(middlewares=(wrong,)) as session,
            session.get(url + DOCUMENT) as refused,
        ):
            assert refused.status == 401
        async with aiohttp.ClientSession() as session, session.get(ops + "/metrics") as scrape:
            assert scrape.status == 200
            return await scrape.text()
    finally:
        stop_process(process)


async def test_every_panel_reads_metrics_the_gateway_exports(
    tmp_path: Path, contacts_dir: Path
) -> None:
    exposition = await scrape_after_traffic(tmp_path, contacts_dir)
    # The traffic shows in the figures the dashboard draws.
    assert sample_value(exposition, "xcap_requests_total", method="GET", status="304") >= 1
    assert sample_value(exposition, "xcap_requests_total", method="GET", status="200") >= 1
    assert sample_value(exposition, "xcap_auth_failures_total") >= 1
    assert sample_value(exposition, "xcap_syncs_total", source="demo", result="ok") >= 1
    assert sample_value(exposition, "xcap_sync_duration_seconds_count", source="demo") >= 1
    assert sample_value(exposition, "xcap_source_entries", source="demo") > 0
    # One 200 and one 304: the Digest challenges and the failed login do not dilute it.
    assert sample_value(exposition, "xcap_not_modified_ratio") == 0.5

    exported = exported_series(exposition)
    own = prometheus_own_series()
    missing = []
    for where, expression in expressions(load_dashboard()):
        names = metric_names(expression)
        assert names, f"{where}: no metric in {expression!r}"
        for name in names:
            if name in own:
                jobs = set(re.findall(rf'{name}\{{[^}}]*job="([^"]+)"', expression))
                assert jobs and jobs <= own[name], f"{where}: {name} of a job not scraped"
            elif name not in exported:
                missing.append(f"{where}: {name}")
    assert not missing, "not exported by the gateway:\n" + "\n".join(missing)
