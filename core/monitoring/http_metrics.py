"""Request counts and latencies by route template, method and status, for /metrics.

Under gunicorn every worker is its own process, so these are prometheus_client's multiprocess
metrics: with PROMETHEUS_MULTIPROC_DIR set (deploy/gunicorn.conf.py and scripts/run-local set it
and clear it per run), each process writes its values to files there and /metrics, whichever
worker answers, adds up every process's files (`MultiProcessCollector`). Without the variable
(tests, `flask run`) the values live in this process, in REGISTRY below.

Labels stay bounded: the route is the URL rule's template (`/api/files/<int:file_id>`), never
the path; an unrouted request is `unmatched`; an unknown method is `OTHER`.
"""
from __future__ import annotations

import os
import time

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

REGISTRY = CollectorRegistry(auto_describe=True)
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# Seconds. The portal's pages answer in tens of ms; uploads and exports take seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("points_http_requests", "HTTP requests answered, by route template, method and status",
                   ["route", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("points_http_request_duration_seconds", "Time to answer an HTTP request (seconds), by route template",
                    ["route", "method"], buckets=BUCKETS, registry=REGISTRY)


def multiprocess_dir() -> str | None:
    """The directory shared by the web processes, or None when this process counts alone."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def collect_into(registry: CollectorRegistry) -> None:
    """Add the request metrics to a scrape's registry: every process's files in multiprocess mode,
    else this process's own values."""
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Local())


class _Local:
    def collect(self):
        return REGISTRY.collect()


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def register_request_metrics(app: Flask) -> None:
    """Count every answered request, error handlers' answers included (after_request sees them)."""

    @app.before_request
    def _metrics_start():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _metrics_finish(response):
        route = _route()
        method = request.method if request.method in _METHODS else "OTHER"
        REQUESTS.labels(route, method, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            LATENCY.labels(route, method).observe(time.perf_counter() - started)
        return response
