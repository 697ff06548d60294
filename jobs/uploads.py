"""Upload housekeeping: purge the kept files of forms abandoned for a day (core.evidence.pending)."""
from __future__ import annotations

from jobs.context import job_context


def purge_pending() -> int:
    from core.evidence import pending

    with job_context():
        return pending.purge()


def sweep_orphans() -> dict:
    """One bounded orphan sweep (core.evidence.orphans.sweep): deletes stored objects older than
    an hour that no row points at. Returns its counts; raises on a storage outage."""
    from core.evidence import orphans
    from core.platform.services import services

    with job_context():
        svc = services()
        return orphans.sweep(svc.storage, svc.redis, redis_prefix=svc.queues.prefix)
