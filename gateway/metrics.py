"""Prometheus metrics: counters the gateway updates as it goes, and gauges read from the
engine at scrape time (entries, outbox). Served at /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


#: Methods counted by name; any other a client makes up is counted as OTHER (a label per
#: invented method would grow the metrics without bound).
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"})


class Metrics:
    def request_counter(self, method: str, status: int, document: str) -> Counter:
        """The counter of requests so answered: one dict lookup per request."""
        key = (method if method in METHODS else "OTHER", status, document)
        found = self._request_counters.get(key)
        if found is None:
            found = self.requests.labels(key[0], str(status), document)
            self._request_counters[key] = found
        return found

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: only noise here
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "xcap_requests",
            "HTTP requests answered",
            ["method", "status", "document"],
            registry=self.registry,
        )
        #: (method, status, document) -> its counter: one dict lookup per request.
        self._request_counters: dict[tuple[str, int, str], Counter] = {}
        self.syncs = Counter(
            "xcap_syncs",
            "Source syncs by result (ok, failed, held_back)",
            ["source", "result"],
            registry=self.registry,
        )
        self.sync_seconds = Histogram(
            "xcap_sync_duration_seconds",
            "Duration of source syncs",
            ["source"],
            registry=self.registry,
            buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300),
        )
        self.conflicts = Counter(
            "xcap_conflicts",
            "Write-back conflicts (a field changed on both sides)",
            ["document"],
            registry=self.registry,
        )
        self.creations_capped = Counter(
            "xcap_creations_capped",
            "Entries created on phones kept out by max_creations_per_put / _per_user",
            ["document"],
            registry=self.registry,
        )
        self.auth_failures = Counter("xcap_auth_failures", "Failed logins", registry=self.registry)
        self.writes = Counter(
            "xcap_writes",
            "Changes applied upstream by outcome",
            ["source", "outcome"],
            registry=self.registry,
        )

    def attach(self, engine: Engine) -> None:
        self.registry.register(_EngineCollector(engine, self))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector(Collector):
    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        entries = GaugeMetricFamily(
            "xcap_source_entries", "Entries in the last good snapshot", labels=["source"]
        )
        totals: dict[str, int] = {}
        for state in self.engine.sources.states():
            totals[state.name] = totals.get(state.name, 0) + len(state.contacts)
        for name, count in sorted(totals.items()):
            entries.add_metric([name], count)
        yield entries
        yield GaugeMetricFamily(
            "xcap_active_users",
            "Users whose per-user source instances are in memory",
            value=self.engine.sources.active_users,
        )
        outbox = self.engine.outbox
        yield GaugeMetricFamily(
            "xcap_outbox_depth", "Changes from phones not yet applied", value=outbox.depth
        )
        oldest = outbox.oldest()
        yield GaugeMetricFamily(
            "xcap_outbox_oldest_seconds",
            "Age of the oldest pending change",
            value=time.time() - oldest if oldest else 0.0,
        )
        yield GaugeMetricFamily(
            "xcap_outbox_failed",
            "Changes that failed for good (not archived yet)",
            value=outbox.failed_count,
        )
        yield GaugeMetricFamily(
            "xcap_outbox_parked",
            "Pending changes whose source or document is no longer configured",
            value=len(outbox.parked()),
        )
        replicas = self.engine.replicas
        store = self.engine.store
        yield GaugeMetricFamily(
            "xcap_store_up",
            "1 while the state database answers (PostgreSQL: 0 while it cannot be reached)",
            value=1.0 if store is None or store.available else 0.0,
        )
        yield GaugeMetricFamily(
            "xcap_replica_leader",
            "1 where the scheduled syncs run: a process alone, or the leading replica",
            value=1.0 if replicas is None or replicas.leader else 0.0,
        )
        yield GaugeMetricFamily(
            "xcap_not_modified_ratio",
            "Share of document GETs and HEADs answered 304, of those answered 2xx or 304",
            value=self._not_modified_ratio(),
        )

    def _not_modified_ratio(self) -> float:
        """How much of the phones' polling the ETags save. Only answers a cache can give
        count: a Digest challenge (401), a 404 or a probe of /healthz or /metrics (document
        "-") would otherwise dilute the share with requests no ETag could have spared."""
        answered = not_modified = 0.0
        for metric in self.metrics.requests.collect():
            for sample in metric.samples:
                labels = sample.labels
                if (
                    not sample.name.endswith("_total")
                    or labels.get("method") not in ("GET", "HEAD")
                    or labels.get("document", "-") == "-"
                ):
                    continue
                status = labels.get("status", "")
                if status == "304":
                    not_modified += sample.value
                elif not status.startswith("2"):
                    continue
                answered += sample.value
        return not_modified / answered if answered else 0.0
