"""Per-minute samples of the backlogs, for the admin dashboard's 24-hour charts.

jobs/ops.py runs `sample()` every minute (jobs/schedule.py). Each run writes one row for the
current whole minute (a second run within the same minute writes nothing, so two schedulers or a
retried job are harmless) and deletes rows older than RETENTION, so the table stays at about
RETENTION / 1 minute rows (~10,000).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from core.monitoring import slo
from core.platform.db import db, utcnow
from core.platform.models import KajabiEvent, OpsSample, Submission

RETENTION = timedelta(days=7)
INTERVAL_S = 60


def _minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def sample(queues, now: datetime | None = None) -> dict:
    """Write this minute's sample and trim old ones; commits. `queues` is core.platform.queues.Queues
    (RQ queue depths). Returns {"written": bool, "trimmed": int}."""
    now = now or utcnow()
    minute = _minute(now)
    written = False
    if db.session.scalar(select(func.count()).select_from(OpsSample).where(OpsSample.taken_at == minute)) == 0:
        box = slo.outbox(now)
        db.session.add(OpsSample(
            taken_at=minute,
            in_review=db.session.scalar(select(func.count()).select_from(Submission)
                                        .where(Submission.status == "in_review")) or 0,
            scans_pending=slo.scans(now)["pending"],
            outbox_pending=box["pending"],
            outbox_lag_s=box["oldest_age_s"],
            unmatched=db.session.scalar(select(func.count()).select_from(KajabiEvent)
                                        .where(KajabiEvent.state == "queued_unmatched")) or 0,
            queue_depths={queue.name[len(queues.prefix):]: queue.count for queue in queues.all()},
        ))
        written = True
    trimmed = db.session.execute(delete(OpsSample).where(OpsSample.taken_at < minute - RETENTION)).rowcount or 0
    db.session.commit()
    return {"written": written, "trimmed": trimmed}


def recent(now: datetime | None = None, span: timedelta = timedelta(hours=24)) -> list[OpsSample]:
    """Samples of the last `span`, oldest first."""
    now = now or utcnow()
    return list(db.session.scalars(select(OpsSample).where(OpsSample.taken_at >= now - span)
                                   .order_by(OpsSample.taken_at)))
