"""Pending uploads: the good files of a refused submission form, kept for the retry so the
uploader does not choose them again.

When a form is refused (a bad date, a bad file among good ones), each file that passes every
file check (size, type, image and PDF checks of core.evidence.uploads) is stored under the
evidence layout of the activity chosen, and recorded in `pending_uploads`. Such an object is
never served and never scanned. The retry sends the ids of the kept files it still wants; they
go through create_submission again like new files (read back from storage, checked, stored as
the submission's own objects, scanned), then the pending rows and objects are removed. Rows
older than KEEP (a form abandoned) are purged by a scheduled job with their objects.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from core.evidence import uploads
from core.evidence.uploads import IncomingFile
from core.platform.db import db, utcnow
from core.platform.errors import DomainError
from core.platform.models import Activity, PendingUpload
from core.platform.numbers import parse_id
from core.platform.services import services

log = logging.getLogger(__name__)

KEEP = timedelta(hours=24)


def keep(user_id: int, activity_code: str | None, files: list[IncomingFile]) -> list[PendingUpload]:
    """Store the files that pass every file check and record them (committed). Returns the rows
    made ([] when the activity is not one that takes evidence: the object key needs it). A bad
    file is skipped: the form already shows its own message. Never raises for a file; a storage
    or database failure keeps nothing (logged), and the page asks for the files again."""
    activity = db.session.get(Activity, activity_code) if isinstance(activity_code, str) and activity_code else None
    if activity is None or activity.source != "evidence" or not activity.active or not files:
        return []
    settings, storage = services().settings, services().storage
    spooled: list[uploads._Spooled] = []
    written: list[str] = []
    rows: list[PendingUpload] = []
    try:
        for index, incoming in enumerate(files[:uploads.MAX_FILES]):
            item = uploads._Spooled(index=index, name=uploads.sanitise_filename(incoming.filename),
                                    declared_type=incoming.declared_type)
            spooled.append(item)
            try:
                uploads._spool_one(incoming, item, settings)
            except DomainError:
                continue
            key = f"evidence/{user_id}/{activity.code}/{item.uuid}.{item.ext}"
            item.body.stream.seek(0)
            storage.put(key, item.body.stream, item.body.size, item.content_type)
            written.append(key)
            rows.append(PendingUpload(user_id=user_id, storage_key=key, original_name=item.name[:255],
                                      content_type=item.content_type, size_bytes=item.body.size,
                                      sha256=item.body.sha256))
        db.session.add_all(rows)
        db.session.commit()
        return rows
    except Exception:  # noqa: BLE001 - keeping is a convenience: the page falls back to "choose again"
        db.session.rollback()
        uploads._discard(storage, written)
        log.exception("could not keep the good files of a refused form", extra={"user_id": user_id})
        return []
    finally:
        for item in spooled:
            if item.body:
                item.body.close()


def load(user_id: int, ids: list[str | int], now: datetime | None = None) -> list[PendingUpload]:
    """The user's own kept files among `ids` (others' ids and expired ones are ignored)."""
    wanted = {n for n in (parse_id(str(i)) for i in ids) if n is not None}
    if not wanted:
        return []
    now = now or utcnow()
    return list(db.session.scalars(select(PendingUpload).where(
        PendingUpload.id.in_(wanted), PendingUpload.user_id == user_id,
        PendingUpload.created_at > now - KEEP).order_by(PendingUpload.id)))


def as_incoming(rows: list[PendingUpload], first_index: int) -> list[IncomingFile]:
    """Each kept file as an upload again, read from storage (the caller closes the streams). A
    kept file whose object is gone is left out (the form then asks for a file if none is left)."""
    storage = services().storage
    out = []
    for row in rows:
        try:
            stream = storage.open(row.storage_key)
        except DomainError:
            log.warning("a kept upload's object is missing", extra={"pending_id": row.id})
            continue
        out.append(IncomingFile(f"files[{first_index + len(out)}]", row.original_name, stream, row.content_type))
    return out


def discard(rows: list[PendingUpload]) -> None:
    """After the submission that used them is committed: the rows, then the objects (best effort)."""
    if not rows:
        return
    keys = [row.storage_key for row in rows]
    for row in rows:
        db.session.delete(row)
    db.session.commit()
    uploads._discard(services().storage, keys)


def purge(now: datetime | None = None, limit: int = 1000) -> int:
    """Remove kept files of abandoned forms (older than KEEP): rows, then objects. Returns how many."""
    now = now or utcnow()
    rows = list(db.session.scalars(select(PendingUpload).where(PendingUpload.created_at <= now - KEEP)
                                   .order_by(PendingUpload.id).limit(limit)))
    discard(rows)
    return len(rows)
