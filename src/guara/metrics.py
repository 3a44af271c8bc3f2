"""What operators alert on, in the Prometheus text format.

Labels never carry user input beyond route templates (``/api/v1/services/{service_id}``), and never a
secret: methods come from a fixed set, preflight results are the six codes or ``ok``, deployment
statuses and limit names are guara's own words.

With ``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported, every process writes its values
to files there and ``render`` adds them up (``guara serve --workers N`` sets it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "guara_http_requests_total", "HTTP requests answered, by route template", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "guara_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"]
)
PREFLIGHTS = Counter(
    "guara_preflights_total", "Preflights run (Test Connection, verified saves, probes), by result", ["code"]
)
PREFLIGHT_DURATION = Histogram(
    "guara_preflight_duration_seconds",
    "How long a preflight took",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
)
DEPLOYMENTS = Counter("guara_deployments_total", "Deployments ended, by final status", ["status"])
DEPLOYMENT_DURATION = Histogram(
    "guara_deployment_duration_seconds",
    "From a deployment's creation to its end",
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
RATE_LIMITED = Counter("guara_rate_limited_total", "Events refused by a rate limit, by limit", ["limit"])


def count_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "OTHER"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def count_preflight(code: str | None, seconds: float) -> None:
    """``code`` is None for a preflight that passed."""
    PREFLIGHTS.labels(code or "ok").inc()
    PREFLIGHT_DURATION.observe(seconds)


def count_deployment(status: str, seconds: float | None) -> None:
    DEPLOYMENTS.labels(status).inc()
    if seconds is not None:
        DEPLOYMENT_DURATION.observe(max(0.0, seconds))


def count_rate_limited(limit: str) -> None:
    RATE_LIMITED.labels(limit).inc()


class _SealedSecrets(Collector):
    """``guara_secrets_sealed{key_version}``: read from the database at each scrape, so every process
    reports the same, current numbers (no per-process gauge to add up)."""

    def __init__(self, by_key_version: Mapping[int, int]) -> None:
        self.by_key_version = by_key_version

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "guara_secrets_sealed",
            "Stored secrets, by the master-key version sealing them",
            labels=["key_version"],
        )
        for version, count in sorted(self.by_key_version.items()):
            family.add_metric([str(version)], count)
        yield family


def render(secrets_by_key_version: Mapping[int, int]) -> bytes:
    """Every metric in the Prometheus text format (content type ``CONTENT_TYPE``)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted, path=directory)  # type: ignore[no-untyped-call]
    else:
        counted = REGISTRY
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(_SealedSecrets(secrets_by_key_version))
    return generate_latest(counted) + generate_latest(scraped)
