"""The gauges the operations alerts read, beside core.monitoring.metrics.

- `points_ready{check}`: 1/0 per /readyz check (core.monitoring.readiness), so the ReadyzFailing
  alert sees what a load balancer sees.
- `points_kajabi_to_ledger_window_ratio{window}` (and `..._window_events`): the tag -> ledger
  objective over BURN_WINDOWS, computed by core.monitoring.slo.kajabi_to_ledger, the very function
  behind `/api/slo?window=` (same definition: good = ledgered within 60 s; bad = ledgered later,
  or still waiting past 60 s), and sharing its one-minute cache per window. The multi-window
  burn-rate alerts compare these. Not counters: an event still waiting counts as bad and may
  later leave that set (matched to nobody), so a DB-derived "total" could go down, which
  Prometheus would read as a counter reset and a false burst.
- `points_files_infected`, `points_files_unscannable`, `points_files_quarantined`: files in
  those states now. The alerts fire when a count is above its value an hour earlier, so an
  operator's clean-up (a count going down) never pages. `unscannable` is the scan state another
  change adds; until then it stays 0.
"""
from __future__ import annotations

from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from core.monitoring import readiness, slo
from core.platform.db import db
from core.platform.models import EvidenceFile

BURN_WINDOWS = {"5m": timedelta(minutes=5), "30m": timedelta(minutes=30), "1h": timedelta(hours=1),
                "6h": timedelta(hours=6)}


def file_outcomes() -> dict:
    """{"infected", "unscannable", "integrity_mismatch"}: files in those states now (quarantined
    ones not yet deleted by retention)."""
    states = dict(db.session.execute(
        select(EvidenceFile.scan_state, func.count())
        .where(EvidenceFile.scan_state.in_(("infected", "unscannable"))).group_by(EvidenceFile.scan_state)).all())
    quarantined = db.session.scalar(select(func.count()).select_from(EvidenceFile).where(
        EvidenceFile.quarantined_at.is_not(None), EvidenceFile.deleted_at.is_(None))) or 0
    return {"infected": states.get("infected", 0), "unscannable": states.get("unscannable", 0),
            "integrity_mismatch": quarantined}


class OpsCollector:
    def __init__(self, services, windows: dict[str, dict]):
        self.services = services
        self.windows = windows  # {BURN_WINDOWS label: slo.kajabi_to_ledger figure}

    def collect(self):
        g = GaugeMetricFamily("points_ready", "1 when the /readyz check passes, else 0", labels=["check"])
        for name, result in readiness.checks(self.services, warnings=False).items():
            g.add_metric([name], 1 if result["ok"] else 0)
        yield g

        prefix = self.services.settings.queue_prefix
        ratio = GaugeMetricFamily("points_kajabi_to_ledger_window_ratio",
                                  "Share of Kajabi tag events ledgered within 60 s over the window (as /api/slo?window=)",
                                  labels=["window"])
        events = GaugeMetricFamily("points_kajabi_to_ledger_window_events",
                                   "Kajabi tag events judged over the window (as /api/slo?window=)", labels=["window"])
        for label, figure in self.windows.items():
            ratio.add_metric([label], figure["ratio"])
            events.add_metric([label], figure["events"])
        yield ratio
        yield events
        files = slo._cached(self.services.redis, f"{prefix}slo:file_outcomes", file_outcomes,
                            lambda value: slo.is_count_map(value) and set(value) == {"infected", "unscannable",
                                                                                     "integrity_mismatch"})
        for name, key, doc in (("points_files_infected", "infected", "Evidence files a scanner found infected"),
                               ("points_files_unscannable", "unscannable", "Evidence files a scanner could not read to the end"),
                               ("points_files_quarantined", "integrity_mismatch",
                                "Evidence files quarantined because the stored bytes no longer match their SHA-256")):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], files[key])
            yield g
