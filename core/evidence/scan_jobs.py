"""How scan jobs are named and retried, and which files are images: shared by the upload path,
the scan pipeline, the in-request scan and previews, so none of them imports another for it (that
made an import circle between uploads, inline_scan, scan_pipeline and previews)."""
from __future__ import annotations

from rq import Retry

# RQ retries a scan whose scanner could not answer: 8 more tries, backing off up to 15 minutes.
SCAN_RETRY = (8, [5, 15, 30, 60, 120, 300, 600, 900])
SCAN_TIMEOUT_S = 600
IMAGE_EXTS = ("jpg", "jpeg", "png")


def scan_retry() -> Retry:
    """RQ's Retry for a scan job (SCAN_RETRY: count, back-off intervals in seconds)."""
    return Retry(max=SCAN_RETRY[0], interval=list(SCAN_RETRY[1]))


def scan_job_id(file_id: int, suffix: str = "upload") -> str:
    """The logical RQ job id of a file's scan (Queues adds QUEUE_PREFIX): one per file and reason."""
    return f"scan-file-{file_id}-{suffix}"
