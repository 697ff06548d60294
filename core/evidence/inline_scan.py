"""Small uploads are scanned in the upload request itself, right after its commit, instead of
through the `scans` queue.

Why: for a 1 MiB file the queue hop cost about as much as the scan's own work. The worker spent
11-14 ms of CPU per file, of which the scan (this same function) is about 8 ms; the rest was
RQ's bookkeeping (dequeue, job fetch, registries, result), plus the enqueue in the web process
and Redis's own work (docs/performance.md). The hop also added the worker's poll to the time until
`clean`. The scan itself is the same code the job runs
(core.evidence.scan_pipeline.scan_file): the stored object is read back, its SHA-256 checked,
clamd asked, and the verdict applied (clean, infected with the submission rejected and the
object deleted, unscannable...), so every outcome is the queued path's.

Fail closed, and never lose a scan: the rows are committed as `pending` first, exactly as before.
If the inline scan cannot conclude (clamd down or slow, the object unreadable, any error), the
file's usual job is queued under its usual id and RQ's retries and the sweeper take over; a web
process killed mid-scan leaves a pending file that the sweeper re-queues. Only files up to
INLINE_SCAN_MAX_MB (together, per request) are scanned here; 0 turns this off.
"""
from __future__ import annotations

import logging

from core.evidence.scanning import ClamdScanner
from core.evidence.scan_jobs import SCAN_TIMEOUT_S, scan_job_id, scan_retry
from core.platform.db import db
from core.platform.queues import enqueue_committed
from core.platform.services import services
from core.platform.settings import Settings

log = logging.getLogger(__name__)

# clamd answers a few MiB within milliseconds; a request must not wait the queued job's 30 s for
# a clamd that hangs. Past this the file goes to the queue.
INLINE_TIMEOUT_S = 5.0
_scanners: dict[str, ClamdScanner] = {}


def chosen(sizes: list[int], settings: Settings) -> list[bool]:
    """Which files (by position, sizes in bytes) to scan in the request: in order, while their
    total stays within INLINE_SCAN_MAX_MB; none when scanning is off or the limit is 0."""
    budget = settings.inline_scan_max_mb * 1024 * 1024 if settings.av_scan_enabled else 0
    out = []
    for size in sizes:
        take = size <= budget
        budget -= size if take else 0
        out.append(take)
    return out


def _scanner(settings: Settings):
    """The app's scanner, or for clamd the same server with a request-sized timeout."""
    if settings.av_scanner != "clamd":
        return None
    if settings.clamd_url not in _scanners:
        _scanners[settings.clamd_url] = ClamdScanner(settings.clamd_url, timeout=INLINE_TIMEOUT_S)
    return _scanners[settings.clamd_url]


def scan_now(file_ids: list[int]) -> dict[int, str | None]:
    """Scan committed `pending` files now, one after another. Returns {file_id: state} for the
    files concluded here (the state scan_file returned) and queues the usual scan job for every
    other one. After the first failure the rest are queued without trying, so a hung clamd costs
    the request one timeout, not one per file. Never raises for a scan that failed: that file's
    job does the retrying."""
    from core.evidence.scan_pipeline import scan_file  # it imports this package's uploads module

    settings = services().settings
    scanner = _scanner(settings)
    done: dict[int, str | None] = {}
    failed = False
    for file_id in file_ids:
        if not failed:
            try:
                done[file_id] = scan_file(file_id, scanner=scanner)
                continue
            except Exception as exc:  # noqa: BLE001 - any failure hands the file to its job
                db.session.rollback()
                failed = True
                log.info("inline scan did not conclude; queued", extra={"file_id": file_id, "error": type(exc).__name__})
        enqueue_committed("scans", "jobs.scans.scan_file", file_id, retry=scan_retry(),
                          job_id=scan_job_id(file_id), timeout=SCAN_TIMEOUT_S)
    return done
