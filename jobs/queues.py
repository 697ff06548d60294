"""Named queues, and enqueueing that waits for the database commit.

A job must never run before the row it reads exists, so routes and core call
`enqueue_after_commit`; the jobs are handed to Redis only once the session commits, and are
dropped if it rolls back. If Redis is down at that moment, the periodic sweepers find the work.
"""
from __future__ import annotations

import logging

from redis import Redis
from rq import Queue, Retry
from sqlalchemy import event
from sqlalchemy.orm import Session

from core.db import db

log = logging.getLogger(__name__)

QUEUE_NAMES = ("scans", "media", "ledger", "outbox", "maintenance")
_PENDING = "points_after_commit_jobs"


class Queues:
    def __init__(self, redis: Redis, prefix: str = ""):
        self.redis = redis
        self.prefix = prefix
        self._queues = {name: Queue(prefix + name, connection=redis) for name in QUEUE_NAMES}

    def __getitem__(self, name: str) -> Queue:
        return self._queues[name]

    def all(self) -> list[Queue]:
        return list(self._queues.values())

    def enqueue(self, queue: str, func: str, *args, retry: Retry | None = None, job_id: str | None = None,
                timeout: int | None = None, meta: dict | None = None):
        return self._queues[queue].enqueue_call(func, args=args, retry=retry, job_id=job_id, timeout=timeout,
                                                meta=meta, failure_ttl=7 * 86400)


def enqueue_after_commit(queue: str, func: str, *args, **options) -> None:
    """Queue `func(*args)` (a dotted path to a function in jobs/) once the current session commits."""
    from core.services import services  # needs the app context; bound now, used at commit

    # Make sure a transaction exists, so a rollback (which is a no-op without one) still drops it.
    session = db.session()
    if not session.in_transaction():
        session.begin()
    pending = session.info.setdefault(_PENDING, [])
    pending.append((services().queues, queue, func, args, options))


@event.listens_for(Session, "after_commit")
def _flush_jobs(session: Session) -> None:
    for queues, queue, func, args, options in session.info.pop(_PENDING, []):
        try:
            queues.enqueue(queue, func, *args, **options)
        except Exception:  # Redis down: the row is committed, a sweeper re-enqueues it later
            log.exception("enqueue failed after commit", extra={"queue": queue, "func": func})


@event.listens_for(Session, "after_soft_rollback")
def _drop_jobs(session: Session, previous_transaction) -> None:
    session.info.pop(_PENDING, None)
