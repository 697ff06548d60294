"""The gauges and counters the operations alerts read, beside core.monitoring.metrics.

- `points_ready{check}`: 1/0 per /readyz check (core.monitoring.readiness), so the ReadyzFailing
  alert sees what a load balancer sees.
- `points_kajabi_to_ledger_events_total` / `..._slow_events_total`: the tag -> ledger objective
  as counters, for the multi-window burn-rate alerts (rate over 5m/30m/1h/6h). An event counts
  once its outcome is known: ledgered (slow if more than TARGET_SECONDS after receipt), or still
  waiting past TARGET_SECONDS (slow already; when it lands it stays counted once). Same good/bad
  definition as /api/slo (core.monitoring.slo).
- `points_files_infected_total`, `points_files_unscannable_total`,
  `points_files_integrity_mismatch_total`: files that reached those states, ever (a file never
  leaves them). `unscannable` is the scan state another change adds; until then it stays 0.
Whole-table counts are cached for a minute in Redis like slo.table_counts_cached.
"""
from __future__ import annotations

from datetime import timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from core.monitoring import readiness, slo
from core.platform.db import db, is_postgres, utcnow
from core.platform.models import EvidenceFile, KajabiEvent


def kajabi_outcomes() -> dict:
    """{"events": N, "slow": M} over all time, as defined above (computed live)."""
    now = utcnow()
    if is_postgres():
        seconds = func.extract("epoch", KajabiEvent.ledgered_at - KajabiEvent.received_at)
        done, slow_done = db.session.execute(
            select(func.count(), func.count().filter(seconds > slo.TARGET_SECONDS))
            .where(KajabiEvent.ledgered_at.is_not(None))).one()
    else:
        rows = db.session.execute(select(KajabiEvent.received_at, KajabiEvent.ledgered_at)
                                  .where(KajabiEvent.ledgered_at.is_not(None))).all()
        done = len(rows)
        slow_done = sum(1 for r, l in rows if (l - r).total_seconds() > slo.TARGET_SECONDS)
    late = db.session.scalar(
        select(func.count()).select_from(KajabiEvent)
        .where(KajabiEvent.state == "received", KajabiEvent.ledgered_at.is_(None),
               KajabiEvent.received_at < now - timedelta(seconds=slo.TARGET_SECONDS))) or 0
    return {"events": (done or 0) + late, "slow": (slow_done or 0) + late}


def file_outcomes() -> dict:
    """{"infected", "unscannable", "integrity_mismatch"}: files ever in those states."""
    states = dict(db.session.execute(
        select(EvidenceFile.scan_state, func.count())
        .where(EvidenceFile.scan_state.in_(("infected", "unscannable"))).group_by(EvidenceFile.scan_state)).all())
    quarantined = db.session.scalar(select(func.count()).select_from(EvidenceFile)
                                    .where(EvidenceFile.quarantined_at.is_not(None))) or 0
    return {"infected": states.get("infected", 0), "unscannable": states.get("unscannable", 0),
            "integrity_mismatch": quarantined}


class OpsCollector:
    def __init__(self, services):
        self.services = services

    def collect(self):
        g = GaugeMetricFamily("points_ready", "1 when the /readyz check passes, else 0", labels=["check"])
        for name, result in readiness.checks(self.services).items():
            g.add_metric([name], 1 if result["ok"] else 0)
        yield g

        prefix = self.services.settings.queue_prefix
        k2l = slo._cached(self.services.redis, f"{prefix}slo:kajabi_outcomes", kajabi_outcomes)
        yield _counter("points_kajabi_to_ledger_events", "Kajabi tag events whose tag -> ledger outcome is known",
                       k2l["events"])
        yield _counter("points_kajabi_to_ledger_slow_events",
                       f"Kajabi tag events ledgered after {slo.TARGET_SECONDS} s, or still waiting past it", k2l["slow"])
        files = slo._cached(self.services.redis, f"{prefix}slo:file_outcomes", file_outcomes)
        yield _counter("points_files_infected", "Evidence files a scanner found infected", files["infected"])
        yield _counter("points_files_unscannable", "Evidence files a scanner could not read to the end",
                       files["unscannable"])
        yield _counter("points_files_integrity_mismatch",
                       "Evidence files quarantined because the stored bytes no longer match their SHA-256",
                       files["integrity_mismatch"])


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc)
    c.add_metric([], value)
    return c
