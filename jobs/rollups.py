"""Daily rollup jobs for /api/stats."""
from __future__ import annotations

from datetime import date

from core.points import rollups
from jobs.context import job_context


def refresh_recent() -> int:
    with job_context():
        return rollups.refresh_recent()


def rebuild(since: str | None = None) -> int:
    """`since` is an ISO date (job arguments stay plain data)."""
    with job_context():
        return rollups.rebuild(date.fromisoformat(since) if since else None)
