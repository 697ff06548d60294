"""Integrity of stored evidence: re-read stored objects and compare their SHA-256 with the one
taken at upload; a mismatch (or a missing object) quarantines the file for good.

Which files: those that can be served (scan state `clean` or `unscanned`, not deleted, not yet
quarantined) whose bytes were never verified or were last verified more than REVERIFY_AFTER ago.
Order: never verified first, newest upload first (fresh uploads are the ones people open), then
the least recently verified. Bounded work per run: at most MAX_FILES files and MAX_BYTES bytes
(the file that crosses the byte budget is still finished), so a run of the scheduled job
(jobs/integrity.py, every SWEEP_INTERVAL_S) never holds a worker long; at the defaults a run
reads up to 256 MB, i.e. every file is re-read at least weekly for a store of up to ~500 GB.

A quarantined file is never served again: api/files.py answers 410 `file_quarantined`, local
links refuse it, the admin dashboard lists it, `points_files_quarantined` counts it
and the alert EvidenceIntegrityMismatch fires. Each quarantine is an audit event
`file.quarantined` with the expected and actual digests.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from core.platform import audit
from core.platform.db import db, utcnow
from core.platform.models import EvidenceFile
from core.storage.base import DEFAULT_CHUNK_SIZE, ObjectNotFound

log = logging.getLogger(__name__)

REVERIFY_AFTER = timedelta(days=7)
MAX_FILES = 200
MAX_BYTES = 256 * 1024 * 1024
SWEEP_INTERVAL_S = 300
SERVABLE_STATES = ("clean", "unscanned")
MISMATCH, MISSING = "mismatch", "missing"


def due_files(now: datetime, limit: int) -> list[EvidenceFile]:
    """Up to `limit` files due for verification, in sweep order (see the module docstring)."""
    return list(db.session.scalars(
        select(EvidenceFile)
        .where(EvidenceFile.deleted_at.is_(None), EvidenceFile.quarantined_at.is_(None),
               EvidenceFile.scan_state.in_(SERVABLE_STATES),
               or_(EvidenceFile.last_verified_at.is_(None), EvidenceFile.last_verified_at < now - REVERIFY_AFTER))
        .order_by(EvidenceFile.last_verified_at.asc().nulls_first(), EvidenceFile.created_at.desc(),
                  EvidenceFile.id.desc())
        .limit(limit)))


def stored_digest(storage, key: str) -> tuple[str, int]:
    """(hex SHA-256, byte count) of a stored object, read in chunks. Raises ObjectNotFound, or
    StorageError when the store cannot answer."""
    digest, size = hashlib.sha256(), 0
    for chunk in storage.iter_chunks(key, DEFAULT_CHUNK_SIZE):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def quarantine(file: EvidenceFile, state: str, *, actual: str | None = None, source: str = "sweep",
               now: datetime | None = None) -> bool:
    """Mark `file` quarantined (`state` is MISMATCH or MISSING) with an audit event, in the
    caller's transaction. Returns False if it already was (idempotent)."""
    if file.quarantined_at is not None:
        return False
    file.integrity_state = state
    file.quarantined_at = now or utcnow()
    audit.record("file.quarantined", "evidence_file", file.id, integrity_state=state, source=source,
                 expected_sha256=file.sha256, actual_sha256=actual, storage_key=file.storage_key)
    log.error("evidence quarantined", extra={"file_id": file.id, "integrity_state": state, "source": source})
    return True


def verify_file(storage, file: EvidenceFile, *, source: str = "sweep", now: datetime | None = None) -> str:
    """Read `file`'s object and compare. Returns "ok" (last_verified_at set), MISMATCH or MISSING
    (quarantined). The caller commits. Raises StorageError when the store cannot answer: that is
    an outage, not evidence of tampering, so nothing is marked."""
    now = now or utcnow()
    try:
        actual, _size = stored_digest(storage, file.storage_key)
    except ObjectNotFound:
        quarantine(file, MISSING, source=source, now=now)
        return MISSING
    if not hmac.compare_digest(actual, file.sha256):
        quarantine(file, MISMATCH, actual=actual, source=source, now=now)
        return MISMATCH
    file.last_verified_at = now
    file.integrity_state = "ok"
    return "ok"


def sweep(storage, *, now: datetime | None = None, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> dict:
    """One bounded pass. Returns {"checked", "ok", "quarantined", "bytes"}. Commits after each
    file, so a run stopped halfway keeps what it verified. Raises StorageError on an outage."""
    now = now or utcnow()
    counts = {"checked": 0, "ok": 0, "quarantined": 0, "bytes": 0}
    for file in due_files(now, max_files):
        if counts["bytes"] >= max_bytes:
            break
        outcome = verify_file(storage, file, now=now)
        db.session.commit()
        counts["checked"] += 1
        counts["bytes"] += file.size_bytes or 0
        counts["ok" if outcome == "ok" else "quarantined"] += 1
    return counts


def verify_by_id(storage, file_id: int, *, source: str) -> str | None:
    """Verify one file now (a local download saw a mismatch while streaming). None if the file
    is gone or already quarantined."""
    file = db.session.get(EvidenceFile, int(file_id))
    if file is None or file.quarantined_at is not None or file.deleted_at is not None:
        return None
    outcome = verify_file(storage, file, source=source)
    db.session.commit()
    return outcome
