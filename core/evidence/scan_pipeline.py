"""Scanning stored evidence: pending -> clean | infected | unscannable | unscanned, then the
submission moves on.

Fail closed: a file is `clean` only because a scanner said so. When clamd cannot answer, the
attempt is counted and the error re-raised so RQ retries with back-off; the file stays pending
(never served) and the sweeper re-enqueues it if Redis lost the job.
"""
from __future__ import annotations

import hashlib
import io
import logging
import math
import time
from datetime import timedelta
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from core.platform import audit
from core.platform.db import db, utcnow
from core.platform.errors import ScannerUnavailable
from core.evidence.scan_jobs import IMAGE_EXTS, SCAN_RETRY, SCAN_TIMEOUT_S, scan_job_id, scan_retry
from core.platform.models import EvidenceFile, Submission, User
from core.platform.queues import ALIVE_STATES, enqueue_after_commit, job_statuses
from core.evidence.scanning import ScanResult, scan_file_buffer, unscannable_advice
from core.evidence.previews import enqueue_preview
from core.platform.services import services
from core.storage.base import ObjectNotFound

log = logging.getLogger(__name__)
# How long one file's retry chain can last: SCAN_RETRY's waits plus every attempt at its timeout.
RETRY_CHAIN = timedelta(seconds=sum(SCAN_RETRY[1]) + (SCAN_RETRY[0] + 1) * SCAN_TIMEOUT_S)
# After its own chain, how long the sweeper keeps checking an infected file's object is gone.
INFECTED_LEFTOVER_WINDOW = timedelta(days=1)


class IntegrityMismatch(RuntimeError):
    """The stored bytes are not the bytes that were uploaded; never mark such a file clean."""


class _StoredObject:
    """A forward-only storage stream that scan_file_buffer can rewind: seek(0) closes the current
    reader and reopens the object lazily on the next read. Hashes what it hands out, so the one
    read that feeds the scanner also proves the object still matches the upload's SHA-256.
    Plain read() (not io.RawIOBase.readinto) hands the storage's own bytes through without the
    two extra copies per chunk that the buffer protocol cost."""

    def __init__(self, storage, key: str):
        self._storage, self._key = storage, key
        self._fh: BinaryIO | None = None
        self._digest = hashlib.sha256()
        self._last_digest = ""
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        if self._fh is None:
            self._fh = self._storage.open(self._key)
        data = self._fh.read(size)
        self._digest.update(data)
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("only a rewind to the start is supported")
        self._reset()
        return 0

    def tell(self) -> int:
        return self.pos

    def sha256_of_last_pass(self) -> str:
        return self._last_digest

    def _reset(self) -> None:
        self._last_digest = self._digest.hexdigest()
        self.close()
        self._digest, self.pos = hashlib.sha256(), 0

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def scan_file(file_id: int, scanner=None) -> str | None:
    """Scan one pending file. Returns the new state, or None when there was nothing to do.
    `scanner` replaces the app's (the upload request's own scan uses a shorter timeout)."""
    svc = services()
    row = db.session.execute(select(EvidenceFile.storage_key, EvidenceFile.sha256, EvidenceFile.size_bytes,
                                    EvidenceFile.scan_state)
                             .where(EvidenceFile.id == file_id, EvidenceFile.deleted_at.is_(None))).one_or_none()
    db.session.rollback()  # hold no transaction open while clamd reads the file
    if row is None or row.scan_state not in ("pending", "infected"):
        return None
    key, expected_sha, expected_size, state = row
    if state == "infected":
        # A retry after the verdict's commit: the object may still be there if its delete failed.
        svc.storage.delete(key)
        return None

    reader = _StoredObject(svc.storage, key)
    try:
        result = scan_file_buffer(scanner or svc.scanner, reader)  # type: ignore[arg-type]
        scanned = reader.sha256_of_last_pass()
    except ScannerUnavailable as exc:
        _count_failed_attempt(file_id, exc)
        raise
    except ObjectNotFound:
        return _mark_missing(file_id)
    finally:
        reader.close()
    # Only a full clean pass read every byte (an infected verdict may stop early).
    if result.state == "clean" and scanned != expected_sha:
        _count_failed_attempt(file_id, None)
        raise IntegrityMismatch(f"evidence file {file_id}: stored object does not match its upload "
                                f"(size {expected_size}, sha256 {expected_sha[:12]}...)")
    return _apply(file_id, result)


def _mark_missing(file_id: int) -> str | None:
    """The object vanished before its scan (deleted by hand, or lost by the store). Retrying can
    never succeed, so the row is marked deleted instead."""
    submission, file = _locked_with_file(file_id)
    if file is None or file.scan_state != "pending":
        db.session.rollback()
        return None
    file.mark_deleted(utcnow())
    audit.record("file.object_missing", "evidence_file", file.id, submission_id=submission.id)
    log.error("pending evidence file has no stored object; marked deleted", extra={"file_id": file_id})
    _advance(submission)
    db.session.commit()
    return "missing"


def _count_failed_attempt(file_id: int, exc: Exception | None) -> None:
    db.session.rollback()
    file = db.session.get(EvidenceFile, file_id)
    if file is not None:
        file.scan_attempts = (file.scan_attempts or 0) + 1
        db.session.commit()
    log.warning("scan attempt failed; the file stays pending",
                extra={"file_id": file_id, "error": str(exc) if exc else "integrity mismatch",
                       "kind": getattr(exc, "kind", None) if exc else "integrity"})


def _locked(criterion) -> Submission | None:
    """The submission matching `criterion`, locked. Jobs for files of one submission serialise
    here, so the last one to finish sees every sibling's final state and moves the submission on.
    Its files are read after the lock in the same statement, since _advance needs them all (one
    round trip where the scan job used to make four)."""
    query = (select(Submission).where(criterion).options(joinedload(Submission.files))
             .with_for_update(of=Submission).execution_options(populate_existing=True))
    return db.session.scalars(query).unique().one_or_none()


def _locked_with_file(file_id: int) -> tuple[Submission | None, EvidenceFile | None]:
    owner = select(EvidenceFile.submission_id).where(EvidenceFile.id == file_id).scalar_subquery()
    submission = _locked(Submission.id == owner)
    return submission, next((f for f in submission.files if f.id == file_id), None) if submission else None


def _apply(file_id: int, result: ScanResult) -> str | None:
    svc = services()
    submission, file = _locked_with_file(file_id)
    if file is None or file.scan_state != "pending" or file.deleted_at is not None:  # another job won the race
        db.session.rollback()
        return None
    state, key = record_verdict(submission, file, result), file.storage_key  # read before the commit expires them
    db.session.commit()
    if state == "infected":
        # Only after the verdict and the rejection are committed (a file that is not clean is never
        # served meanwhile). If this delete fails, the job fails and RQ's retry deletes it (above).
        svc.storage.delete(key)
    return state


def record_verdict(submission: Submission, file: EvidenceFile, result: ScanResult, *,
                   queue_preview: bool = True) -> str:
    """Apply a scanner's verdict to a pending `file` of `submission` in the caller's transaction:
    its state, attempt count and audit events, a rejection for malware, the follow-up jobs of a
    clean file (queued after the commit; the preview's only with `queue_preview`, False when the
    caller makes it itself), and the submission moved on (_advance). Returns the new scan state.
    The caller holds the submission (locked, or not yet committed), commits, and then deletes an
    infected file's object."""
    file.scan_attempts = (file.scan_attempts or 0) + 1
    file.scanned_at = utcnow()
    if result.state == "infected":
        file.scan_state, file.scan_signature = "infected", result.signature or "unknown"
        audit.record("file.infected", "evidence_file", file.id, submission_id=submission.id,
                     signature=file.scan_signature, name=file.original_name)
        if submission.status in ("scanning", "in_review"):
            submission.status = "rejected"
            submission.reason = f"File {file.original_name} contains malware ({file.scan_signature})."
            submission.decided_at = utcnow()
            audit.record("submission.rejected", "submission", submission.id, reason=submission.reason,
                         by="virus_scan")
    elif result.state == "clean":
        file.scan_state = "clean"
        audit.record("file.scanned", "evidence_file", file.id, state="clean")
        if file.ext in IMAGE_EXTS:
            enqueue_after_commit("media", "jobs.thumbnails.make_thumbnail", file.id,
                                 job_id=f"thumbnail-{file.id}", timeout=120)
        if queue_preview:
            enqueue_preview(file.id, file.ext)  # PDF pages, an enlarged image, a CSV table (core.evidence.previews)
    elif result.state == "unscannable":
        # Neither clean nor infected: kept (an admin may look at it), never served.
        file.scan_state, file.scan_signature = "unscannable", (result.signature or "")[:255] or None
        file.scan_reason = result.reason or "limits_exceeded"
        audit.record("file.unscannable", "evidence_file", file.id, submission_id=submission.id,
                     reason=file.scan_reason, signature=file.scan_signature, name=file.original_name)
        log.warning("evidence file could not be fully scanned",
                    extra={"file_id": file.id, "reason": file.scan_reason, "signature": file.scan_signature})
        if submission.status == "scanning":
            _ask_for_other_files(submission, [file])
    else:
        file.scan_state = "unscanned"
        audit.record("file.scanned", "evidence_file", file.id, state="unscanned")
    _advance(submission)
    return file.scan_state


def _advance(submission: Submission) -> bool:
    """scanning -> in_review once every live file is clean (or unscanned with scanning off);
    scanning -> changes_requested when no file is left (every object vanished), so the uploader
    can send them again instead of the submission waiting for ever."""
    if submission.status != "scanning":
        return False
    scanning_off = not services().settings.av_scan_enabled
    live = [f for f in submission.files if f.deleted_at is None]
    if not live:
        submission.status = "changes_requested"
        submission.reason = "We could not keep any of the files of this submission. Please upload them again."
        audit.record("submission.files_lost", "submission", submission.id)
        return True
    usable = [f for f in live if f.scan_state == "clean" or (f.scan_state == "unscanned" and scanning_off)]
    unscannable = [f for f in live if f.scan_state == "unscannable"]
    # An unscannable file blocks nothing once its uploader has been asked for other files (it stays
    # beside them, marked for the reviewer); a submission of nothing but such files goes back.
    ok = bool(usable) and len(usable) + len(unscannable) == len(live)
    if not usable and unscannable and len(unscannable) == len(live):
        _ask_for_other_files(submission, unscannable)
        return True
    if ok:
        submission.status = "in_review"
        audit.record("submission.ready_for_review", "submission", submission.id)
    return ok


def _ask_for_other_files(submission: Submission, files: list[EvidenceFile]) -> None:
    """scanning -> changes_requested, telling the uploader in plain words what to do."""
    names = ", ".join(f.original_name for f in files)
    submission.status = "changes_requested"
    submission.reason = (f"We could not fully check {names} for viruses: {unscannable_advice(files[0].scan_reason)}. "
                         f"Then add the new files here.")
    audit.record("submission.unscannable_files", "submission", submission.id, by="virus_scan",
                 files=[f.id for f in files])


def unscannable_files(limit: int = 500) -> list[tuple[EvidenceFile, str]]:
    """Every file the scanner could not fully read, newest verdict first, with its uploader's
    e-mail: [(EvidenceFile, email)], at most `limit` (the admin page lists them)."""
    return [tuple(row) for row in db.session.execute(
        select(EvidenceFile, User.email).join(User, User.id == EvidenceFile.user_id)
        .where(EvidenceFile.scan_state == "unscannable")
        .order_by(EvidenceFile.scanned_at.desc(), EvidenceFile.id.desc()).limit(limit)).all()]


def scan_again(file_id: int, admin_id: int) -> bool:
    """An admin asks for an `unscannable` file to be scanned again (e.g. after raising clamd's
    StreamMaxLength or MaxFileSize): the file goes back to `pending` (never served meanwhile),
    and a scan is queued after the caller's commit under the upload's job id (the sweeper knows it,
    so it starts no second chain beside this one; the old job ended long ago). A submission that
    went back to its uploader because of this file is left as it is: the uploader may already be
    sending other files. Returns False (nothing changed) when the file is not unscannable."""
    submission, file = _locked_with_file(file_id)
    if file is None or file.scan_state != "unscannable" or file.deleted_at is not None:
        return False
    audit.record("file.scan_again", "evidence_file", file.id, actor_id=admin_id, submission_id=submission.id,
                 previous_reason=file.scan_reason, previous_signature=file.scan_signature)
    file.scan_state, file.scan_reason, file.scan_signature = "pending", None, None
    enqueue_after_commit("scans", "jobs.scans.scan_file", file.id, retry=scan_retry(),
                         job_id=scan_job_id(file.id), timeout=SCAN_TIMEOUT_S)
    return True


def sweep_pending(older_than_minutes: int | None = None, *, now: float | None = None) -> dict:
    """Re-enqueue scans of files still pending after `older_than_minutes` (Redis may have lost
    the job, or RQ gave up retrying), and of recently infected files whose object is still
    stored (every delete after the verdict failed; the job deletes it), and move on submissions
    whose files are all done.

    Job ids are deterministic per file and sweep window. A file is left alone while any of its
    jobs is queued, scheduled (waiting for a retry) or running: the upload's, or a sweep's from
    any window whose retry chain (SCAN_RETRY's waits plus every attempt's timeout) may still be
    going, so repeated sweeps never start a second chain beside a live one."""
    svc = services()
    minutes = svc.settings.scan_sweep_minutes if older_than_minutes is None else older_than_minutes
    cutoff = utcnow() - timedelta(minutes=minutes)
    window_s = max(minutes, 1) * 60
    window = int((now or time.time()) // window_s)
    chain_windows = math.ceil(RETRY_CHAIN.total_seconds() / window_s) + 1
    file_ids = [i for (i,) in db.session.query(EvidenceFile.id).filter(
        EvidenceFile.scan_state == "pending", EvidenceFile.deleted_at.is_(None), EvidenceFile.created_at <= cutoff)
        .order_by(EvidenceFile.id).limit(1000)]
    file_ids += _infected_leftovers(svc.storage)
    job_ids = {f: [scan_job_id(f)] + [scan_job_id(f, f"sweep-{w}") for w in range(window - chain_windows, window + 1)]
               for f in file_ids}
    # One pipelined read for every job of every file, not a round trip each.
    statuses = iter(job_statuses(svc.queues, [j for ids in job_ids.values() for j in ids]))
    enqueued = skipped = 0
    for file_id, ids in job_ids.items():
        if any(status in ALIVE_STATES for status in [next(statuses) for _ in ids]):
            skipped += 1
            continue
        svc.queues.enqueue("scans", "jobs.scans.scan_file", file_id, retry=scan_retry(),
                           job_id=scan_job_id(file_id, f"sweep-{window}"), timeout=SCAN_TIMEOUT_S)
        enqueued += 1
    advanced = _advance_stuck(cutoff)
    return {"enqueued": enqueued, "skipped": skipped, "advanced": advanced}


def _infected_leftovers(storage) -> list[int]:
    """Infected files whose own job's retry chain is over (and at most a day past it) but whose
    object is still in the store: every delete after the verdict failed. Infected files are few,
    and each is checked for one day only, so the store is asked little on each sweep."""
    ended = utcnow() - RETRY_CHAIN
    rows = db.session.execute(select(EvidenceFile.id, EvidenceFile.storage_key).where(
        EvidenceFile.scan_state == "infected", EvidenceFile.deleted_at.is_(None),
        EvidenceFile.scanned_at <= ended, EvidenceFile.scanned_at >= ended - INFECTED_LEFTOVER_WINDOW)
        .order_by(EvidenceFile.id).limit(100)).all()
    return [file_id for file_id, key in rows if storage.exists(key)]


def _advance_stuck(cutoff) -> int:
    """Heal submissions left in `scanning` although every file is done (e.g. a crash between
    commits); cheap, because it looks only at old `scanning` rows."""
    ids = [sid for (sid,) in db.session.query(Submission.id)
           .filter(Submission.status == "scanning", Submission.created_at <= cutoff).limit(500)]
    moved = 0
    for sid in ids:
        submission = _locked(Submission.id == sid)
        if submission is not None and _advance(submission):
            moved += 1
        db.session.commit()
    return moved
