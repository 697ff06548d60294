"""Integrity jobs: the scheduled sweep over stored evidence, and a check of one file on demand."""
from __future__ import annotations

from jobs.context import job_context


def sweep() -> dict:
    """One bounded integrity pass (core.evidence.integrity.sweep); raises on a storage outage."""
    from core.evidence import integrity
    from core.platform.services import services

    with job_context():
        return integrity.sweep(services().storage)


def verify_file(file_id: int) -> str | None:
    """Re-check one file now; enqueued when a local download saw its bytes differ."""
    from core.evidence import integrity
    from core.platform.services import services

    with job_context():
        return integrity.verify_by_id(services().storage, int(file_id), source="download")
