"""Thumbnails of clean evidence images, stored beside the originals with no metadata in them.

The original is only read, never rewritten, so its SHA-256 keeps matching the upload.
"""
from __future__ import annotations

import io
import logging
import tempfile
from datetime import timedelta

from rq.timeouts import JobTimeoutException
from sqlalchemy import select

from core.platform import audit
from core.platform.db import db, utcnow
from core.platform.errors import ValidationError
from core.evidence.scan_jobs import IMAGE_EXTS
from core.evidence.images import make_thumbnail
from core.platform.models import EvidenceFile
from core.platform.queues import ALIVE_STATES, job_statuses, rq_timeout_in
from core.platform.services import services

log = logging.getLogger(__name__)
MAX_PX = 512
JOB_TIMEOUT_S = 120


def thumbnail_key(file: EvidenceFile) -> str:
    return f"thumbnails/{file.user_id}/{file.activity_code}/{file.uuid}.jpg"


# What the reviewer and the API say when a thumbnail cannot be made, by make_thumbnail's code.
FAILURE_WORDS = {
    "image_unreadable": "the image is damaged",
    "image_too_large": "the image is too large to preview",
    "job_failed": "the preview could not be made",
}


def make_file_thumbnail(file_id: int) -> str | None:
    """Store the thumbnail of a clean JPEG/PNG and return its key; None when there is nothing to
    do (not an image, not clean, already done or already failed, deleted) or the image cannot be
    decoded. That last is a final outcome, stored on the row (thumbnail_state `failed` and its
    reason in words, FAILURE_WORDS) and audited, not raised: retrying would fail the same way."""
    storage = services().storage
    file = db.session.get(EvidenceFile, file_id)
    if (file is None or file.ext not in IMAGE_EXTS or file.scan_state != "clean"
            or file.deleted_at is not None or file.thumbnail_key or file.thumbnail_state == "failed"):
        return None
    source_key, key = file.storage_key, thumbnail_key(file)
    db.session.rollback()  # no transaction held open while Pillow works

    # Pillow needs to seek; a spool keeps small images in memory and large ones on disk.
    with tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024) as spool:
        for chunk in storage.iter_chunks(source_key):
            spool.write(chunk)
        spool.seek(0)
        try:
            data = make_thumbnail(spool, max_px=MAX_PX)
        except ValidationError as exc:
            if isinstance(exc.__cause__, JobTimeoutException):
                raise exc.__cause__ from None  # RQ stopped a slow decode: a failed job, not a bad image
            log.warning("no thumbnail for evidence file", extra={"file_id": file_id, "code": exc.code})
            _record_failure(file_id, exc.code)
            return None

    storage.put(key, io.BytesIO(data), len(data), "image/jpeg")
    try:
        file = db.session.get(EvidenceFile, file_id, with_for_update=True, populate_existing=True)
        if file is None or file.deleted_at is not None or file.scan_state != "clean":
            # Retention or a rescan got there while we worked: leave no stray thumbnail.
            db.session.rollback()
            storage.delete(key)
            return None
        file.thumbnail_key, file.thumbnail_state, file.thumbnail_error = key, "made", None
        audit.record("file.thumbnail_made", "evidence_file", file.id, key=key, size=len(data))
        db.session.commit()
    except Exception as exc:
        timeout = rq_timeout_in(exc)
        if timeout is not None:
            # Stopped mid-statement: no rollback on the busy connection (job_context handles it).
            # The unattached thumbnail is left for retention's age sweep of thumbnails/.
            raise timeout from None
        db.session.rollback()
        storage.delete(key)
        raise
    return key


def _record_failure(file_id: int, code: str) -> None:
    """The final outcome of an image no thumbnail can be made of; the original stays servable."""
    file = db.session.get(EvidenceFile, file_id, with_for_update=True, populate_existing=True)
    if file is None or file.thumbnail_key or file.deleted_at is not None:
        db.session.rollback()
        return
    file.thumbnail_state, file.thumbnail_error = "failed", FAILURE_WORDS.get(code, "the image is damaged")
    audit.record("file.thumbnail_failed", "evidence_file", file.id, code=code, reason=file.thumbnail_error)
    db.session.commit()


def thumbnail_job_id(file_id: int, suffix: str = "") -> str:
    return f"thumbnail-{file_id}{suffix}"


def sweep_missing(older_than_minutes: int = 15, limit: int = 500) -> dict:
    """Give every clean image an outcome, so none stays "not ready" for ever: for images scanned
    more than `older_than_minutes` ago with neither a thumbnail nor a recorded failure, enqueue
    the job again when Redis lost it; when it failed (an exception, or its work horse died on the
    image), try once more under a second id, and if that failed too, record the failure as final
    ("the preview could not be made"). Files whose job is queued or running are left alone.
    Returns {"enqueued", "retried", "failed", "skipped"} counts."""
    svc = services()
    cutoff = utcnow() - timedelta(minutes=older_than_minutes)
    ids = list(db.session.scalars(
        select(EvidenceFile.id).where(
            EvidenceFile.scan_state == "clean", EvidenceFile.ext.in_(IMAGE_EXTS), EvidenceFile.deleted_at.is_(None),
            EvidenceFile.thumbnail_key.is_(None), EvidenceFile.thumbnail_state.is_(None),
            EvidenceFile.scanned_at <= cutoff).order_by(EvidenceFile.id).limit(limit)))
    db.session.rollback()
    counts = {"enqueued": 0, "retried": 0, "failed": 0, "skipped": 0}
    if not ids:
        return counts
    job_ids = [j for i in ids for j in (thumbnail_job_id(i), thumbnail_job_id(i, "-retry"))]
    statuses = iter(job_statuses(svc.queues, job_ids))
    for file_id in ids:
        first, retry = next(statuses), next(statuses)
        if first in ALIVE_STATES or retry in ALIVE_STATES:
            counts["skipped"] += 1
        elif first is None and retry is None:
            _enqueue(svc, file_id, "")
            counts["enqueued"] += 1
        elif retry is None:
            _enqueue(svc, file_id, "-retry")
            counts["retried"] += 1
        else:
            _record_failure(file_id, "job_failed")
            counts["failed"] += 1
    return counts


def _enqueue(svc, file_id: int, suffix: str) -> None:
    svc.queues.enqueue("media", "jobs.thumbnails.make_thumbnail", file_id,
                       job_id=thumbnail_job_id(file_id, suffix), timeout=JOB_TIMEOUT_S)
