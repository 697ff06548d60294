"""Evidence retention: delete objects older than a cutoff, mark their rows, page through users.

Safe to run twice: the second run finds nothing old left to delete, and rows are matched by key
(or, when the object is already gone, by age), so a run that died between deleting and marking
is finished by the next one.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import false, or_, select, update

from core.platform import audit
from core.platform.db import db, utcnow
from core.platform.models import EvidenceFile, User
from core.platform.queues import ALIVE_STATES, job_statuses, rq_timeout_in
from core.platform.services import services
from core.points import kajabi

log = logging.getLogger(__name__)


@dataclass
class RetentionCounts:
    objects_deleted: int = 0
    thumbnails_deleted: int = 0
    rows_marked: int = 0
    previews_deleted: int = 0
    failed: int = 0

    def add(self, other: "RetentionCounts") -> "RetentionCounts":
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def enforce_user_retention(user_id: int, cutoff: datetime, *, dry_run: bool = False) -> RetentionCounts:
    """Delete this user's evidence, thumbnails and previews last modified before `cutoff` (tz-aware),
    and the previews of every file deleted, mark the matching evidence_files rows deleted, and commit.
    With dry_run, only count."""
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")
    storage = services().storage
    old_originals = {o.key for o in storage.list(f"evidence/{user_id}/", older_than=cutoff)}
    old_thumbs = {o.key for o in storage.list(f"thumbnails/{user_id}/", older_than=cutoff)}

    # Locked, so a thumbnail job cannot attach a new thumbnail to a row being deleted (it waits,
    # then sees deleted_at and removes its own object).
    rows = (db.session.query(EvidenceFile).with_for_update()
            .filter(EvidenceFile.user_id == user_id, EvidenceFile.deleted_at.is_(None))
            .filter(or_(EvidenceFile.storage_key.in_(old_originals) if old_originals else false(),
                        EvidenceFile.thumbnail_key.in_(old_thumbs) if old_thumbs else false(),
                        EvidenceFile.created_at < cutoff))
            .all())
    # A deleted original takes its thumbnail with it, however young the thumbnail is.
    doomed = [r for r in rows if r.storage_key in old_originals
                   or (r.created_at < cutoff and r.storage_key not in old_originals and not storage.exists(r.storage_key))]
    doomed_ids = {r.id for r in doomed}
    thumbs = set(old_thumbs) | {r.thumbnail_key for r in doomed if r.thumbnail_key}
    previews = _doomed_previews(storage, user_id, cutoff, {r.uuid for r in doomed})
    # CSV tables live in their rows (core/evidence/csv_preview.py): those of doomed rows go with
    # them, those of rows past the cutoff go as a preview object would. Counted as previews.
    tabled = _with_table([r.id for r in rows])
    tables = {r.id for r in rows if r.id in tabled and (r.id in doomed_ids or r.created_at < cutoff)}
    counts = RetentionCounts(objects_deleted=len(old_originals), thumbnails_deleted=len(thumbs),
                             rows_marked=len(doomed), previews_deleted=len(previews) + len(tables))
    if dry_run:
        db.session.rollback()
        return counts

    failed = set(storage.delete_many(sorted(old_originals | thumbs | previews)))
    counts.failed = len(failed)
    counts.objects_deleted -= len(failed & old_originals)
    counts.thumbnails_deleted -= len(failed & thumbs)
    counts.previews_deleted -= len(failed & previews) + len(tables)
    lost_previews = {_preview_uuid(k) for k in previews - failed}
    now = utcnow()
    marked = 0
    for row in rows:
        if row.id in doomed_ids and row.storage_key not in failed:
            row.mark_deleted(now)
            marked += 1
        elif row.thumbnail_key in thumbs and row.thumbnail_key not in failed:
            # The thumbnail is gone (it was old, or its original was due but could not be
            # deleted): the row keeps its original, without a key to a missing thumbnail.
            row.thumbnail_key = None
        # A kept row's table past the cutoff goes too (also when its original could not be
        # deleted this time); a doomed row's went with mark_deleted.
        aged_table = row.deleted_at is None and row.id in tables and row.created_at < cutoff
        if aged_table:
            row.preview_table = None
        counts.previews_deleted += int(row.id in tables and (aged_table or row.deleted_at is not None))
        if row.deleted_at is None and (row.uuid in lost_previews or aged_table):
            row.preview_state, row.preview_pages = "failed", 0
            row.preview_reason = "The preview was removed under the retention policy."
    counts.rows_marked = marked
    if any(asdict(counts).values()):
        audit.record("retention.enforced", "user", user_id, cutoff=cutoff.isoformat(), **counts.as_dict())
    db.session.commit()
    if failed:
        log.error("retention could not delete some objects", extra={"user_id": user_id, "keys": sorted(failed)[:20]})
    return counts


def _with_table(ids: list[int]) -> set[int]:
    """Which of these evidence_files rows hold a CSV table (without loading the tables)."""
    if not ids:
        return set()
    return set(db.session.scalars(select(EvidenceFile.id).where(EvidenceFile.id.in_(ids),
                                                                EvidenceFile.preview_table.is_not(None))))


def _preview_uuid(key: str) -> str:
    parts = key.split("/")  # previews/<user_id>/<activity_code>/<file_uuid>/<name>
    return parts[3] if len(parts) > 4 else ""


def _doomed_previews(storage, user_id: int, cutoff: datetime, doomed_uuids: set[str]) -> set[str]:
    """Preview objects (core.evidence.previews) to delete: those past the cutoff, and every preview
    of a file being deleted, however young (one listing of the user's previews/ prefix)."""
    keys = set()
    for obj in storage.list(f"previews/{user_id}/"):
        if obj.last_modified < cutoff or _preview_uuid(obj.key) in doomed_uuids:
            keys.add(obj.key)
    return keys


def plan_batch(limit: int, offset: int) -> list[int]:
    """User ids ordered by id: stable paging, and users added meanwhile land in later pages."""
    return [uid for (uid,) in db.session.query(User.id).order_by(User.id).limit(limit).offset(offset)]


def users_total() -> int:
    return db.session.query(User.id).count()


def anonymise_kajabi_raw(now: datetime | None = None) -> int:
    """Anonymise raw Kajabi payloads older than KAJABI_RAW_RETENTION_DAYS (playbook "Retention":
    raw Kajabi 12 months, then anonymise) through core.points.kajabi.anonymise_raw, and commit.
    Returns how many rows were anonymised."""
    days = services().settings.kajabi_raw_retention_days
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    result = kajabi.anonymise_raw(cutoff)
    db.session.commit()
    return int(result)


RUN_ALL_TIMEOUT_S = 6 * 3600  # a run_all job: every user's objects; a stuck run is stopped, a rerun is safe
BATCH_JOB_PREFIX = "retention-"  # + the Run's id: one cron batch's job (api/cron.py)
BATCH_JOB_TIMEOUT_S = 3600
LOST_AFTER_S = 2 * BATCH_JOB_TIMEOUT_S  # a batch still queued or running this long after its call was lost


def requeue_lost_batches(now: datetime | None = None) -> int:
    """Cron batches whose job Redis lost (the run stays `queued`) or whose worker died (`running`),
    enqueued again under the same job id; a batch is idempotent. Returns how many."""
    from core.platform.models import Run

    svc = services()
    cutoff = (now or utcnow()) - timedelta(seconds=LOST_AFTER_S)
    runs = db.session.scalars(select(Run).where(Run.kind == "retention", Run.status.in_(("queued", "running")),
                                                Run.started_by == "cron", Run.created_at < cutoff)
                              .order_by(Run.id).limit(100)).all()
    statuses = job_statuses(svc.queues, [f"{BATCH_JOB_PREFIX}{run.id}" for run in runs]) if runs else []
    requeued = 0
    for run, status in zip(runs, statuses):
        if status in ALIVE_STATES:
            continue  # alive, only slow
        params = run.params or {}
        # The same page of users as the call that made the run (ids only grow, so it is stable).
        user_ids = plan_batch(int(params.get("limit", 200)), int(params.get("offset", 0)))
        svc.queues.enqueue("maintenance", "jobs.retention.enforce_batch", user_ids, params["cutoff"], run.id,
                           job_id=f"{BATCH_JOB_PREFIX}{run.id}", timeout=BATCH_JOB_TIMEOUT_S)
        log.warning("retention batch requeued", extra={"run_id": run.id, "status": run.status})
        requeued += 1
    db.session.rollback()
    return requeued


def run_all(days: int, *, dry_run: bool = False, started_by: str | None = None,
            progress: Callable[[int], None] | None = None, batch: int = 200) -> dict:
    """Every user, inline (the CLI and the admin page). Records a Run unless dry_run; marks it
    failed and re-raises on error. `progress(n)` is called after each user."""
    from core.platform.models import Run

    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    # A broken store lists as empty; say so instead of reporting "nothing to delete".
    services().storage.check()
    totals = RetentionCounts()
    run_id = None
    if not dry_run:
        run = Run(kind="retention", status="running", started_by=started_by,
                  params={"days": days, "cutoff": cutoff.isoformat(), "users": users_total()})
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    users = 0
    try:
        offset = 0
        while ids := plan_batch(batch, offset):
            for user_id in ids:
                totals.add(enforce_user_retention(user_id, cutoff, dry_run=dry_run))
                users += 1
                if progress:
                    progress(1)
            offset += len(ids)
        anonymised = None if dry_run else anonymise_kajabi_raw()
    except Exception as exc:
        timeout = rq_timeout_in(exc)
        if timeout is not None:
            # Perhaps mid-statement: the session's connection may be busy, so the run is marked
            # failed on a connection of its own; job_context then cancels the statement.
            close_run(run_id, "failed", {**totals.as_dict(), "users": users, "error": "stopped by the job's timeout"},
                      own_connection=True)
            raise timeout from None
        db.session.rollback()
        close_run(run_id, "failed", {**totals.as_dict(), "users": users, "error": str(exc)[:500]})
        raise
    counts = {**totals.as_dict(), "users": users, "kajabi_anonymised": anonymised,
              "cutoff": cutoff.isoformat(), "dry_run": dry_run}
    close_run(run_id, "finished", counts)
    return counts


def close_run(run_id: int | None, status: str, counts: dict, *, own_connection: bool = False) -> None:
    """Record how a retention run ended (the inline run here, and the cron batch jobs). With
    `own_connection`, on a connection of its own: the session's may be busy with a statement
    that RQ's timeout interrupted."""
    from core.platform.models import Run

    if run_id is None:
        return
    change = update(Run).where(Run.id == run_id).values(status=status, counts=counts, finished_at=utcnow())
    if own_connection:
        with db.engine.begin() as conn:
            conn.execute(change)
        return
    db.session.execute(change)
    db.session.commit()
