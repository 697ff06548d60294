"""The preview sweep (every 15 minutes on `maintenance`): queue the preview job again for clean
files whose job was lost (Redis) or died between a PDF's two stages (core.evidence.previews)."""
from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import and_, or_, select

from core.evidence.previews import MAX_PDF_PAGES, preview_job_meta, preview_job_timeout
from core.platform.db import db, utcnow
from core.platform.models import EvidenceFile
from core.platform.services import services

SWEEP_AFTER = 15  # minutes: a clean file without a preview outcome this long after its scan lost its job
SWEEP_BATCH = 200
SWEEP_WINDOW = timedelta(days=2)  # files older than this are left to a re-run by hand


def sweep_missing() -> int:
    """Enqueue the preview job of clean files scanned over SWEEP_AFTER minutes ago that still have no
    outcome (the job was lost with Redis), or PDFs still owed pages 2.. (the job died between its
    two stages), among files uploaded in the last SWEEP_WINDOW. Returns how many were queued. Job
    ids are per file and hour, so a sweep never queues a second job beside a live one more than
    once an hour."""
    svc = services()
    cutoff = utcnow() - timedelta(minutes=SWEEP_AFTER)
    # A bounded range of the (scan_state, created_at) index, not every clean file ever stored.
    # No outcome at all, or a PDF whose pages 2.. were never added (pages_owed, in SQL).
    lost = or_(EvidenceFile.preview_state.is_(None),
               and_(EvidenceFile.ext == "pdf", EvidenceFile.preview_state == "made",
                    EvidenceFile.preview_pages < EvidenceFile.preview_page_count,
                    EvidenceFile.preview_pages < MAX_PDF_PAGES))
    rows = db.session.execute(select(EvidenceFile.id, EvidenceFile.ext).where(
        EvidenceFile.scan_state == "clean", EvidenceFile.created_at >= cutoff - SWEEP_WINDOW,
        EvidenceFile.created_at <= cutoff, lost,
        EvidenceFile.deleted_at.is_(None)).order_by(EvidenceFile.id).limit(SWEEP_BATCH)).all()
    db.session.rollback()
    hour = int(time.time() // 3600)
    for file_id, ext in rows:
        svc.queues.enqueue("media", "jobs.previews.make_preview", file_id, job_id=f"preview-{file_id}-sweep-{hour}",
                           timeout=preview_job_timeout(), meta=preview_job_meta(ext))
    return len(rows)
