"""Outbox delivery job: claim due batches and deliver them until none are due or time runs out."""
from __future__ import annotations

import time

from core.delivery import outbox
from core.platform.queues import clear_once
from jobs.context import job_context

TIME_BUDGET_S = 60.0  # under the schedule's 120 s timeout; the next kick or tick carries on


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
