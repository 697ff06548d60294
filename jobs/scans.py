"""Scan jobs: one file at a time, and the periodic sweep for scans Redis may have lost."""
from __future__ import annotations

from jobs.context import job_context


def scan_file(file_id: int) -> str | None:
    """Idempotent; raises ScannerUnavailable when clamd cannot answer, so RQ retries."""
    from core.evidence.scan_pipeline import scan_file as scan
    from core.notifications import messages

    with job_context():
        state = scan(int(file_id))
        if state in messages.FILE_KINDS:  # infected or unscannable: the verdict is committed; tell the uploader
            messages.for_file(int(file_id))
        return state


def sweep_pending() -> dict:
    """Re-enqueue scans still pending after SCAN_SWEEP_MINUTES (deterministic job ids)."""
    from core.evidence.scan_pipeline import sweep_pending as sweep

    with job_context():
        return sweep()
