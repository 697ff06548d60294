"""Periodic work as data. The scheduler loop enqueues each entry at most once per interval
across any number of scheduler processes (a Redis SET NX lock per entry), so running two
schedulers by mistake does not double the work."""
from __future__ import annotations

import logging
import time

from core.platform.queues import Queues

log = logging.getLogger(__name__)


def periodic_job_definitions() -> list[dict]:
    return [
        {"name": "outbox-deliver", "func": "jobs.outbox.deliver_due", "queue": "outbox", "interval": 5, "timeout": 120},
        {"name": "scan-sweep", "func": "jobs.scans.sweep_pending", "queue": "scans", "interval": 60, "timeout": 120},
        {"name": "kajabi-sweep", "func": "jobs.kajabi.sweep_received", "queue": "ledger", "interval": 15, "timeout": 60},
        {"name": "kajabi-reconcile", "func": "jobs.kajabi.reconcile", "queue": "ledger", "interval": 300, "timeout": 600},
        {"name": "slo-hist-trim", "func": "jobs.kajabi.trim_latency_hist", "queue": "maintenance", "interval": 3600,
         "timeout": 300},
        {"name": "rollups-refresh", "func": "jobs.rollups.refresh_recent", "queue": "maintenance", "interval": 60, "timeout": 300},
        {"name": "thumbnail-sweep", "func": "jobs.thumbnails.sweep_missing", "queue": "media", "interval": 300, "timeout": 120},
        {"name": "preview-sweep", "func": "jobs.previews.sweep_missing", "queue": "maintenance", "interval": 900, "timeout": 120},
        {"name": "retention-requeue", "func": "jobs.retention.requeue_lost", "queue": "maintenance", "interval": 900, "timeout": 120},
        {"name": "notifications-sweep", "func": "jobs.notifications.sweep", "queue": "outbox", "interval": 600, "timeout": 120},
        {"name": "pending-uploads-purge", "func": "jobs.uploads.purge_pending", "queue": "maintenance", "interval": 3600, "timeout": 300},
        {"name": "admin-digest", "func": "jobs.notifications.daily_digest", "queue": "maintenance", "interval": 86400, "timeout": 300},
        {"name": "sink-keys-trim", "func": "jobs.outbox.trim_sink_keys", "queue": "maintenance", "interval": 3600, "timeout": 600},
        {"name": "ops-sample", "func": "jobs.ops.sample", "queue": "maintenance", "interval": 60, "timeout": 60},
        {"name": "integrity-sweep", "func": "jobs.integrity.sweep", "queue": "maintenance", "interval": 300, "timeout": 900},
        {"name": "orphan-sweep", "func": "jobs.uploads.sweep_orphans", "queue": "maintenance", "interval": 900, "timeout": 600},
    ]


def tick(queues: Queues, now: float | None = None, definitions: list[dict] | None = None) -> list[str]:
    """Enqueue every entry whose interval lock is free. Returns the names enqueued."""
    enqueued = []
    for entry in definitions or periodic_job_definitions():
        key = f"{queues.prefix}schedule:lock:{entry['name']}"
        if queues.redis.set(key, int(now or time.time()), nx=True, ex=entry["interval"]):
            queues.enqueue(entry["queue"], entry["func"], timeout=entry["timeout"])
            enqueued.append(entry["name"])
    return enqueued


HEARTBEAT_TTL_S = 30


def heartbeat_key(prefix: str = "") -> str:
    """Refreshed by every loop of run_forever; deploy/healthcheck.py reads it."""
    return f"{prefix}schedule:heartbeat"


def run_forever(queues: Queues, stop=lambda: False, sleep=time.sleep) -> None:
    while not stop():
        try:
            for name in tick(queues):
                # DEBUG: outbox delivery alone is enqueued every 5 s; at INFO it buried everything.
                log.debug("scheduled", extra={"job": name})
            queues.redis.set(heartbeat_key(queues.prefix), int(time.time()), ex=HEARTBEAT_TTL_S)
        except Exception:  # Redis blip: log and keep the loop alive
            log.exception("scheduler tick failed")
        sleep(1)
