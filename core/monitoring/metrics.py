"""Prometheus metrics, computed at scrape time from the database, Redis and RQ.

A collector (not process-local counters) so that every gunicorn worker reports the same numbers
and a restart loses nothing. Names are prefixed `points_`; deploy/prometheus/alerts.yml uses them.
The costly whole-window figures come from core.monitoring.slo's one-minute cache; what alerts read is live.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select

from core.monitoring import http_metrics, ops_metrics, slo
from core.platform.db import db
from core.platform.models import LedgerEntry


class _Collector:
    def __init__(self, services, k2l: dict):
        self.services = services
        self.k2l = k2l  # the 28-day figure (slo.kajabi_to_ledger_cached)

    def collect(self):
        settings = self.services.settings
        k2l = self.k2l
        g = GaugeMetricFamily("points_kajabi_to_ledger_ratio", "Share of Kajabi tag events ledgered within 60 s (28 days)")
        g.add_metric([], k2l["ratio"])
        yield g
        g = GaugeMetricFamily("points_kajabi_to_ledger_seconds", "Kajabi received -> ledgered latency quantiles (28 days)",
                              labels=["quantile"])
        for q, key in (("0.5", "p50_seconds"), ("0.95", "p95_seconds"), ("0.99", "p99_seconds")):
            if k2l[key] is not None:
                g.add_metric([q], k2l[key])
        yield g
        counts = slo.table_counts_cached(self.services.redis, settings.queue_prefix)
        g = GaugeMetricFamily("points_kajabi_events", "Kajabi events by state (at most a minute old)", labels=["state"])
        for state, count in counts["kajabi_events"].items():
            g.add_metric([state], count)
        yield g

        unmatched = slo.queued_unmatched(self.services.redis, settings.unmatched_alert_threshold,
                                         key_prefix=settings.queue_prefix)
        yield _gauge("points_kajabi_queued_unmatched", "Kajabi events waiting for a user", unmatched["count"])
        yield _gauge("points_kajabi_queued_unmatched_threshold", "UNMATCHED_ALERT_THRESHOLD", settings.unmatched_alert_threshold)
        yield _gauge("points_kajabi_queued_unmatched_oldest_age_seconds", "Age of the oldest unmatched event",
                     unmatched["oldest_age_s"] or 0)

        box = slo.outbox()
        yield _gauge("points_outbox_pending", "Outbox records not yet delivered", box["pending"])
        yield _gauge("points_outbox_dead", "Outbox records that gave up", box["dead"])
        yield _gauge("points_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox record",
                     box["oldest_age_s"] or 0)

        scans = slo.scans()
        yield _gauge("points_scans_pending", "Evidence files waiting for a virus scan", scans["pending"])
        yield _gauge("points_scans_oldest_pending_age_seconds", "Age of the oldest pending scan", scans["oldest_age_s"] or 0)

        g = GaugeMetricFamily("points_submissions", "Submissions by status (at most a minute old)", labels=["status"])
        for status, count in counts["submissions"].items():
            g.add_metric([status], count)
        yield g
        # pg's reltuples would be cheaper on a huge ledger; max(id) is exact enough and index-only.
        yield _gauge("points_ledger_rows", "Highest ledger row id", db.session.scalar(select(func.max(LedgerEntry.id))) or 0)

        depth = GaugeMetricFamily("points_rq_queue_depth", "Jobs waiting per RQ queue", labels=["queue"])
        failed = GaugeMetricFamily("points_rq_failed_jobs", "Jobs in the failed registry per RQ queue", labels=["queue"])
        try:
            for queue in self.services.queues.all():
                depth.add_metric([queue.name], queue.count)
                failed.add_metric([queue.name], FailedJobRegistry(queue=queue).count)
        except RedisError:
            pass  # RQ lives in Redis: without it these gauges are absent, the rest of the scrape stands
        yield depth
        yield failed


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def render(services) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    # Every Kajabi window of the scrape (28 days and the burn-rate windows) read together.
    windows = slo.kajabi_to_ledger_cached_windows(services.redis, {"28d": slo.WINDOW, **ops_metrics.BURN_WINDOWS},
                                                  services.settings.queue_prefix)
    registry.register(_Collector(services, windows.pop("28d")))
    registry.register(ops_metrics.OpsCollector(services, windows))
    http_metrics.collect_into(registry)
    return generate_latest(registry)
