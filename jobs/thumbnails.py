"""Thumbnail jobs for clean evidence images."""
from __future__ import annotations

from jobs.context import job_context


def make_thumbnail(file_id: int) -> str | None:
    """Idempotent: returns the thumbnail key, or None when there was nothing to do."""
    from core.evidence.thumbnails import make_file_thumbnail

    with job_context():
        return make_file_thumbnail(int(file_id))
