"""Upload housekeeping: purge the kept files of forms abandoned for a day (core.evidence.pending)."""
from __future__ import annotations

from jobs.context import job_context


def purge_pending() -> int:
    from core.evidence import pending

    with job_context():
        return pending.purge()
