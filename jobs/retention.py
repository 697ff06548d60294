"""Retention job: one batch of users per job, counts kept on the Run row."""
from __future__ import annotations

from datetime import datetime

from jobs.context import job_context


def enforce_batch(user_ids: list[int], cutoff_iso: str, run_id: int) -> dict:
    """Enforce retention for each user, then anonymise old raw Kajabi payloads. Idempotent:
    running a batch twice deletes nothing more. Raises on failure (the Run is marked failed)."""
    from core.platform.db import db
    from core.platform.models import Run
    from core.platform.queues import rq_timeout_in
    from core.retention.enforcement import RetentionCounts, anonymise_kajabi_raw, close_run, enforce_user_retention
    from core.platform.services import services

    with job_context():
        cutoff = datetime.fromisoformat(cutoff_iso)
        run = db.session.get(Run, run_id)
        if run is not None and run.status == "finished":
            return dict(run.counts or {})
        if run is not None:
            run.status = "running"
            db.session.commit()
        totals = RetentionCounts()
        users_done = 0
        try:
            services().storage.check()  # a broken store would list as empty and "succeed"
            for user_id in user_ids:
                totals.add(enforce_user_retention(int(user_id), cutoff))
                users_done += 1
            anonymised = anonymise_kajabi_raw()
        except Exception as exc:
            timeout = rq_timeout_in(exc)
            if timeout is not None:
                # Stopped mid-statement: the run stays `running`, and the scheduled re-queue of
                # lost batches (core.retention.enforcement.requeue_lost_batches) runs it again later.
                raise timeout from None
            db.session.rollback()
            close_run(run_id, "failed", {**totals.as_dict(), "users": users_done, "error": str(exc)[:500]})
            raise
        counts = {**totals.as_dict(), "users": users_done, "kajabi_anonymised": anonymised}
        close_run(run_id, "finished", counts)
        return counts


def requeue_lost() -> int:
    """Scheduled: cron batches whose job was lost are enqueued again (core.retention.enforcement)."""
    from core.retention import enforcement as retention

    with job_context():
        return retention.requeue_lost_batches()


def run_all(days: int, started_by: str | None = None) -> dict:
    """The admin page's "Run now": every user, as `flask retention run` does (core.retention.enforcement)."""
    from core.retention import enforcement as retention

    with job_context():
        return retention.run_all(days=int(days), started_by=started_by)

