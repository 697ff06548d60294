"""Preview jobs for clean evidence files (PDF pages, an enlarged image, a CSV table), on the
`media` queue: each runs in a forked work horse (jobs/worker.py), and the PDF renderer in a
limited child process of that horse (core.evidence.previews)."""
from __future__ import annotations

from jobs.context import job_context


def make_preview(file_id: int) -> str | None:
    """Idempotent: the final state (made | failed), or None when there was nothing to do."""
    from core.evidence.previews import make_file_preview

    with job_context():
        return make_file_preview(int(file_id))


def sweep_missing() -> int:
    """Enqueue previews that recent clean files still lack (Redis lost the job)."""
    from core.evidence.preview_sweep import sweep_missing as sweep

    with job_context():
        return sweep()
