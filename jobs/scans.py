"""Scan jobs: one file at a time, and the periodic sweep for scans Redis may have lost."""
from __future__ import annotations

from jobs.context import job_context


def scan_file(file_id: int) -> str | None:
    """Idempotent; raises ScannerUnavailable when clamd cannot answer, so RQ retries."""
    from core.evidence.scan_pipeline import scan_file as scan

    with job_context():
        return scan(int(file_id))


def sweep_pending() -> dict:
    """Re-enqueue scans still pending after SCAN_SWEEP_MINUTES (deterministic job ids)."""
    from core.evidence.scan_pipeline import sweep_pending as sweep

    with job_context():
        return sweep()
