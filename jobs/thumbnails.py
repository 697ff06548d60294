"""Thumbnail jobs for clean evidence images."""
from __future__ import annotations

from jobs.context import job_context


def make_thumbnail(file_id: int) -> str | None:
    """Idempotent: returns the thumbnail key, or None when there was nothing to do."""
    from core.evidence.thumbnails import make_file_thumbnail

    with job_context():
        return make_file_thumbnail(int(file_id))


def sweep_missing() -> dict:
    """Periodic: re-enqueue lost thumbnail jobs and record a final failure after a failed retry."""
    from core.evidence.thumbnails import sweep_missing as sweep

    with job_context():
        return sweep()
