"""Outbox jobs: deliver due batches until none are due or time runs out; trim the sinks' keys."""
from __future__ import annotations

import time

from core.delivery import outbox, sink_keys
from core.platform.queues import clear_once
from core.platform.services import services
from jobs.context import job_context

TIME_BUDGET_S = 60.0  # under the schedule's 120 s timeout; the next kick or tick carries on
# Where the sinks remembered their keys before they moved to the database: nothing reads them now.
LEGACY_REDIS_KEYS = ("cache:seen", "analytics:seen", "analytics:inflight")


def deliver_due(batch_size: int = 500, time_budget_s: float = TIME_BUDGET_S) -> dict[str, int]:
    with job_context():
        clear_once(outbox.KICK)  # before claiming: a commit from now on kicks again
        totals = {"claimed": 0, "delivered": 0, "failed": 0, "dead": 0}
        deadline = time.monotonic() + time_budget_s
        while time.monotonic() < deadline:
            result = outbox.deliver_batch(batch_size)
            for name in totals:
                totals[name] += getattr(result, name)
            if result.claimed < batch_size:
                break
        return totals


def trim_sink_keys() -> dict[str, int]:
    """Delete the sinks' applied keys past the replay horizon (core.delivery.sink_keys.trim), and
    the Redis sets older releases kept them in."""
    with job_context():
        svc = services()
        svc.redis.delete(*(svc.settings.queue_prefix + key for key in LEGACY_REDIS_KEYS))
        return {"trimmed": sink_keys.trim()}
