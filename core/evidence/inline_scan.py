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

A new submission's files are scanned before its one commit (scan_stored, then settle in the
upload's transaction), so the upload and the verdicts cost one transaction, not two with a lock
between them; the rows, states and audit events are the queued path's, and a file not concluded
is committed `pending` with its job queued, as above. A file whose spool was linked into local
storage (Storage.adopt) is sent to clamd from that spool, which is the stored object itself, and
whose bytes were hashed as they arrived: nothing to read back or hash again. Any other file is
read back from storage and its SHA-256 checked, as the job does. Files added to an existing
submission are scanned after the commit (scan_now), under the submission's lock.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import BinaryIO

from core.evidence.scanning import ClamdScanner, ScanResult
from core.evidence.scan_jobs import SCAN_TIMEOUT_S, scan_job_id, scan_retry
from core.platform.db import db
from core.platform.errors import ScannerUnavailable
from core.platform.queues import enqueue_after_commit, enqueue_committed
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


@dataclass
class Outcome:
    """One file's scan before its commit: the verdict, or None when the request could not
    conclude (the file stays pending and its job is queued); `counted` when that attempt counts
    (the scanner could not answer, or the stored bytes did not match), as the job counts it."""
    result: ScanResult | None
    counted: bool = False


def scan_stored(objects: list[tuple[str, int, str, BinaryIO | None]]) -> list[Outcome]:
    """Scan stored objects whose rows are not committed yet, one after another: (storage key,
    size in bytes, hex SHA-256 taken at upload, the adopted spool or None) -> one Outcome each.
    With a spool, clamd reads that file, which is the stored object; a clean verdict also needs
    the scanner to have consumed all `size` bytes. Without one, the object is read back and its
    SHA-256 compared, as scan_pipeline.scan_file does. After the first failure the rest are not
    tried. Never raises for a scan that failed."""
    # scan_pipeline imports this package's uploads module, which imports this one.
    from core.evidence.scan_pipeline import IntegrityMismatch, _StoredObject

    svc = services()
    scanner = _scanner(svc.settings) or svc.scanner
    out: list[Outcome] = []
    for key, size, sha256, spool in objects:
        if out and out[-1].result is None:
            out.append(Outcome(None))
            continue
        reader = spool if spool is not None else _StoredObject(svc.storage, key)
        try:
            reader.seek(0)
            result = scanner.scan(reader)
            if spool is not None:
                whole = reader.tell() == size
            else:
                reader.seek(0)  # ends the pass, so its digest is taken
                whole = reader.sha256_of_last_pass() == sha256
            if result.state == "clean" and not whole:  # only a full clean pass read every byte
                raise IntegrityMismatch(f"stored object {key} does not match its upload (size {size})")
            out.append(Outcome(result))
        except (ScannerUnavailable, IntegrityMismatch) as exc:
            out.append(Outcome(None, counted=True))
            log.warning("scan attempt failed; the file stays pending",
                        extra={"storage_key": key, "error": str(exc), "kind": getattr(exc, "kind", "integrity")})
        except Exception as exc:  # noqa: BLE001 - any failure hands the file to its job
            out.append(Outcome(None))
            log.info("inline scan did not conclude; queued", extra={"storage_key": key, "error": type(exc).__name__})
        finally:
            if spool is None:
                reader.close()
    return out


def settle(submission, pairs: list) -> list[tuple[int, str]]:
    """In the upload's transaction, once its rows are flushed and their `file.uploaded` events
    recorded: each (EvidenceFile, Outcome, source) gets its verdict (scan_pipeline.record_verdict,
    the job's own), or stays pending with its attempt counted and its job queued after the commit.
    A clean CSV's preview table is made here from `source`, the upload's bytes, and kept in its
    row (core/evidence/inline_preview.py). Returns (file id, storage key) of the infected files,
    whose objects delete_infected removes after the commit."""
    from core.evidence.inline_preview import make_table
    from core.evidence.scan_pipeline import record_verdict

    infected = []
    for row, outcome, source in pairs:
        if outcome.result is None:
            row.scan_attempts = 1 if outcome.counted else 0
            enqueue_after_commit("scans", "jobs.scans.scan_file", row.id, retry=scan_retry(),
                                 job_id=scan_job_id(row.id), timeout=SCAN_TIMEOUT_S)
            continue
        table_here = row.ext == "csv"
        state = record_verdict(submission, row, outcome.result, queue_preview=not table_here)
        if state == "infected":
            infected.append((row.id, row.storage_key))
        elif state == "clean" and table_here:
            make_table(row, source)
    return infected


def delete_infected(files: list[tuple[int, str]]) -> None:
    """After the verdict's commit, as the job does: delete each infected file's object. A delete
    that fails queues the file's job, whose first step for an infected file is that delete."""
    storage = services().storage
    for file_id, key in files:
        try:
            storage.delete(key)
        except Exception:  # noqa: BLE001 - the job retries the delete
            log.warning("could not delete an infected upload's object; its scan job will", extra={"file_id": file_id})
            enqueue_committed("scans", "jobs.scans.scan_file", file_id, retry=scan_retry(),
                              job_id=scan_job_id(file_id), timeout=SCAN_TIMEOUT_S)
