"""Orphan sweep: delete stored objects that no row points at (break report api-jobs #4).

Uploads (core/evidence/uploads.py) and kept files of refused forms (core/evidence/pending.py)
write their objects before the database commit, and remove them again on an exception. A web
worker killed (SIGKILL, OOM) between the write and the commit raises nothing, so its object
stays under evidence/<user>/<activity>/ with no row; retention deletes by row and never sees it.
A thumbnail or preview job killed the same way, or a best-effort delete that failed after a
correction or retention, leaves thumbnails/ and previews/ objects in the same state.

An object is an orphan when it was last modified more than GRACE ago and:
- evidence/<...>: no live evidence_files row (deleted_at NULL) has it as storage_key and no
  pending_uploads row has it as storage_key (a row marked deleted means its object was due to go);
- thumbnails/<user>/<activity>/<uuid>.jpg and previews/<user>/<activity>/<uuid>/<name>: no live
  evidence_files row has that uuid (the thumbnail or preview of a live file is kept, even one a
  killed job never attached: the sweeps remake it under the same key).

Safe beside uploads: GRACE (1 hour) is far longer than any upload transaction, and an object
younger than it is never even considered. Safe to run twice or concurrently: deleting a deleted
object is not an error, and the cursor only says where the next run starts.

Bounded work: a run looks at no more than MAX_LISTED objects older than GRACE and deletes at most
MAX_DELETED, then stores its cursor (the last key it decided on) in Redis; the next run lists
from there (Storage.list's start_after) and the cursor wraps to the start after the last prefix.
Losing the cursor with Redis only means starting over. Each deletion is an audit event
`storage.orphan_deleted` (key, size, last_modified); the run returns its counts.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from core.platform import audit
from core.platform.db import db, utcnow
from core.platform.models import EvidenceFile, PendingUpload
from core.storage.base import ObjectInfo

log = logging.getLogger(__name__)

GRACE = timedelta(hours=1)
MAX_LISTED = 20_000
MAX_DELETED = 1_000
CHECK_BATCH = 500  # keys per database look-up
SWEEP_INTERVAL_S = 900
# In ascending key order, so one cursor (the last key decided) spans all three.
PREFIXES = ("evidence/", "previews/", "thumbnails/")


@dataclass
class OrphanCounts:
    listed: int = 0  # objects older than GRACE that were looked at
    deleted: int = 0
    failed: int = 0  # orphans the store could not delete (tried again next pass)
    wrapped: bool = False  # True when this run reached the end and the next starts over

    def as_dict(self) -> dict:
        return asdict(self)


def cursor_key(prefix: str) -> str:
    """The Redis key holding where the next run starts (QUEUE_PREFIX in front)."""
    return f"{prefix}orphan-sweep:cursor"


def file_uuid(key: str) -> str:
    """The evidence file uuid a thumbnail or preview key belongs to ("" for any other shape)."""
    parts = key.split("/")
    if parts[0] == "thumbnails" and len(parts) == 4:
        return parts[3].rsplit(".", 1)[0]
    if parts[0] == "previews" and len(parts) >= 5:
        return parts[3]
    return ""


def orphans_among(objects: list[ObjectInfo]) -> list[ObjectInfo]:
    """The objects (keys under PREFIXES) that no live row references, per the module rules.
    Two indexed look-ups per kind of key; reads only."""
    evidence = [o.key for o in objects if o.key.startswith("evidence/")]
    uuids = {file_uuid(o.key) for o in objects if not o.key.startswith("evidence/")} - {""}
    kept: set[str] = set()
    if evidence:
        kept |= set(db.session.scalars(select(EvidenceFile.storage_key).where(
            EvidenceFile.storage_key.in_(evidence), EvidenceFile.deleted_at.is_(None))))
        kept |= set(db.session.scalars(select(PendingUpload.storage_key).where(PendingUpload.storage_key.in_(evidence))))
    live_uuids = set(db.session.scalars(select(EvidenceFile.uuid).where(
        EvidenceFile.uuid.in_(uuids), EvidenceFile.deleted_at.is_(None)))) if uuids else set()
    return [o for o in objects
            if o.key not in kept and (o.key.startswith("evidence/") or file_uuid(o.key) not in live_uuids)]


def sweep(storage, redis=None, *, redis_prefix: str = "", now: datetime | None = None, grace: timedelta = GRACE,
          max_listed: int = MAX_LISTED, max_deleted: int = MAX_DELETED) -> dict:
    """One bounded pass from the stored cursor. Returns OrphanCounts as a dict.

    `redis` (optional) keeps the cursor between runs; without it every run starts at the first
    key. `now` (tz-aware, default the clock) is for tests that cannot backdate S3 objects.
    Raises StorageError when the store cannot list or answer; the cursor then stays put.
    """
    now = now or utcnow()
    cutoff = now - grace
    cursor = _read_cursor(redis, redis_prefix)
    counts = OrphanCounts()
    batch: list[ObjectInfo] = []
    last_decided = cursor
    exhausted = True
    for prefix in PREFIXES:
        if cursor is not None and cursor > prefix and not cursor.startswith(prefix):
            continue  # this whole prefix sorts before the cursor: done in an earlier run
        start_after = cursor if cursor is not None and cursor.startswith(prefix) else None
        for obj in storage.list(prefix, older_than=cutoff, start_after=start_after):
            batch.append(obj)
            counts.listed += 1
            # Never more in a batch than may still be deleted, so MAX_DELETED holds exactly.
            if len(batch) >= min(CHECK_BATCH, max_deleted - counts.deleted) or counts.listed >= max_listed:
                last_decided = _delete_orphans(storage, batch, counts)
                batch = []
                if counts.listed >= max_listed or counts.deleted >= max_deleted:
                    exhausted = False
                    break
        if not exhausted:
            break
    if batch:
        last_decided = _delete_orphans(storage, batch, counts)
    counts.wrapped = exhausted
    _write_cursor(redis, redis_prefix, None if exhausted else last_decided)
    if counts.deleted or counts.failed:
        log.warning("orphan sweep deleted stored objects no row points at", extra=counts.as_dict())
    return counts.as_dict()


def _delete_orphans(storage, batch: list[ObjectInfo], counts: OrphanCounts) -> str:
    """Delete the batch's orphans, audit each deletion, commit; returns the batch's last key."""
    orphans = orphans_among(batch)
    db.session.rollback()  # end the read transaction: nothing is held while the store works
    if orphans:
        failed = set(storage.delete_many([o.key for o in orphans]))
        for obj in orphans:
            if obj.key in failed:
                continue
            audit.record("storage.orphan_deleted", "storage_object", obj.key, key=obj.key, size=obj.size,
                         last_modified=obj.last_modified.isoformat())
            log.info("deleted orphan object", extra={"key": obj.key, "size": obj.size})
        counts.deleted += len(orphans) - len(failed)
        counts.failed += len(failed)
        db.session.commit()
    return batch[-1].key


def _read_cursor(redis, prefix: str) -> str | None:
    if redis is None:
        return None
    try:
        value = redis.get(cursor_key(prefix))
    except Exception:  # Redis down: start over, which is only more listing
        log.warning("orphan sweep cursor unreadable; starting from the first key")
        return None
    return value.decode() if isinstance(value, bytes) else value


def _write_cursor(redis, prefix: str, cursor: str | None) -> None:
    if redis is None:
        return
    try:
        if cursor is None:
            redis.delete(cursor_key(prefix))
        else:
            redis.set(cursor_key(prefix), cursor, ex=7 * 86400)
    except Exception:
        log.warning("orphan sweep cursor not saved; the next run starts from the first key")
