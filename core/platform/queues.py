"""Named queues, and enqueueing that waits for the database commit.

A job must never run before the row it reads exists, so routes and core call
`enqueue_after_commit`; the jobs are handed to Redis only once the session commits, and are
dropped if it rolls back. If Redis is down at that moment, the periodic sweepers find the work.

A part like storage, built once in create_app (core.platform.services), so core never imports a door; the
job functions it names by dotted path live in jobs/.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time

from redis import Redis
from rq import Queue, Retry
from sqlalchemy import event
from sqlalchemy.orm import Session

from core.platform.db import db

log = logging.getLogger(__name__)

# A worker on several queues takes them in this order: delivery before Kajabi drains (docs/operations.md).
QUEUE_NAMES = ("scans", "media", "outbox", "ledger", "maintenance")
_PENDING = "points_after_commit_jobs"


_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def job_id_prefix(prefix: str) -> str:
    """QUEUE_PREFIX as it goes in front of every custom RQ job id ("" stays "").

    RQ allows only [A-Za-z0-9_-] in a job id (rq.job.JOB_ID_PATTERN), so a prefix with anything
    else (`breaka:`) is spelled safe and tagged with 8 hex of its SHA-256, which keeps two
    prefixes that spell the same (`a:` and `a_`) apart: `breaka_1a2b3c4d-`.
    """
    if not prefix:
        return ""
    safe = _UNSAFE_ID.sub("_", prefix)
    if safe == prefix:
        return prefix
    return f"{safe}{hashlib.sha256(prefix.encode()).hexdigest()[:8]}-"


class Queues:
    """The deployment's queues. Queue names AND custom job ids carry QUEUE_PREFIX (README), so
    deployments sharing one Redis never see or overwrite each other's jobs (`rq:job:<id>`)."""

    def __init__(self, redis: Redis, prefix: str = ""):
        self.redis = redis
        self.prefix = prefix
        self.id_prefix = job_id_prefix(prefix)
        self._queues = {name: Queue(prefix + name, connection=redis) for name in QUEUE_NAMES}
        # Once-marker name -> monotonic time just before this process last found it set
        # (enqueue_committed's trust_marker_s).
        self.once_seen: dict[str, float] = {}

    def job_id(self, logical_id: str) -> str:
        """The RQ id of this deployment's job `logical_id` (e.g. `retention-4`); the only place
        that adds the prefix. Enqueueing and every read by id go through it."""
        return self.id_prefix + logical_id

    def fetch(self, logical_id: str):
        """This deployment's RQ job `logical_id`, or None when Redis does not know it."""
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            return Job.fetch(self.job_id(logical_id), connection=self.redis)
        except NoSuchJobError:
            return None

    def __getitem__(self, name: str) -> Queue:
        return self._queues[name]

    def all(self) -> list[Queue]:
        return list(self._queues.values())

    def enqueue(self, queue: str, func: str, *args, retry: Retry | None = None, job_id: str | None = None,
                timeout: int | None = None, meta: dict | None = None):
        job_id = self.job_id(job_id) if job_id is not None else None
        return self._queues[queue].enqueue_call(func, args=args, retry=retry, job_id=job_id, timeout=timeout,
                                                meta=meta, failure_ttl=7 * 86400)


# Job meta key: a job on a forked queue (media) that decodes nothing in C, so the worker runs it
# in its own process (jobs/worker.py), sparing a fork. Set only by the app when it enqueues.
IN_PROCESS = "in_process"
ONCE_TTL_S = 60  # a "once" marker outlives a job lost with a dead worker by at most this


def once_marker(prefix: str, name: str) -> str:
    return f"{prefix}kick:{name}:pending"


def enqueue_after_commit(queue: str, func: str, *args, once: str | None = None, **options) -> None:
    """Queue `func(*args)` (a dotted path to a function in jobs/) once the current session commits.

    With `once=NAME`, at most one such job is pending at a time: the first in a transaction wins,
    and at commit it is enqueued only if no marker for NAME is set in Redis. The job calls
    `clear_once(NAME)` as it starts, so any commit after that start queues it again.
    """
    from core.platform.services import services  # needs the app context; bound now, used at commit

    # Make sure a transaction exists, so a rollback (which is a no-op without one) still drops it.
    session = db.session()
    if not session.in_transaction():
        session.begin()
    pending = session.info.setdefault(_PENDING, [])
    if once is not None and any(item[5] == once for item in pending):
        return
    svc = services()
    pending.append((svc.queues, queue, func, args, options, once))


def clear_once(name: str) -> None:
    from core.platform.services import services

    svc = services()
    svc.redis.delete(once_marker(svc.queues.prefix, name))


def enqueue_committed(queue: str, func: str, *args, once: str | None = None, trust_marker_s: float = 0.0,
                      **options) -> bool:
    """enqueue_after_commit for work whose rows are already committed outside the ORM session
    (a Core transaction that has ended). Never raises: see _enqueue.

    With `once` and `trust_marker_s` > 0: if this process found the marker set (or set it and
    queued the job) less than `trust_marker_s` seconds ago, Redis is not asked again. Only for a
    job that, once started, keeps reading for longer than that (the Kajabi drain's idle grace):
    then the job that marker stood for reads after this caller's commit. Returns True then too."""
    from core.platform.services import services

    queues = services().queues
    if once is not None and trust_marker_s > 0 and time.monotonic() - queues.once_seen.get(once, float("-inf")) < trust_marker_s:
        return True
    asked = time.monotonic()  # before asking: the marker was set at some moment after this
    answered = _enqueue(queues, queue, func, args, options, once)
    if answered and once is not None:
        queues.once_seen[once] = asked
    return answered


def _enqueue(queues: Queues, queue: str, func: str, args: tuple, options: dict, once: str | None) -> bool:
    """True when Redis answered: the job is queued, or (with `once`) one is already pending."""
    try:
        if once is None or queues.redis.set(once_marker(queues.prefix, once), 1, nx=True, ex=ONCE_TTL_S):
            queues.enqueue(queue, func, *args, **options)
        return True
    except Exception:  # Redis down: the rows are committed; sweepers and the schedule catch up
        log.exception("enqueue failed after commit", extra={"queue": queue, "func": func})
        return False


@event.listens_for(Session, "after_commit")
def _flush_jobs(session: Session) -> None:
    for queues, queue, func, args, options, once in session.info.pop(_PENDING, []):
        _enqueue(queues, queue, func, args, options, once)


@event.listens_for(Session, "after_soft_rollback")
def _drop_jobs(session: Session, previous_transaction) -> None:
    # Only the whole transaction's rollback drops its jobs. A savepoint that rolls back (a
    # duplicate caught by ledger._insert, one item of a bulk decision) leaves the outer work, and
    # its jobs, to commit; a job queued inside that savepoint finds its rows gone and returns.
    if previous_transaction.nested:
        return
    session.info.pop(_PENDING, None)


ALIVE_STATES = ("queued", "started", "scheduled", "deferred")  # a job that may still run


def job_statuses(queues: Queues, job_ids: list[str]) -> list[str | None]:
    """RQ's status of each of this deployment's logical job ids (None when Redis does not know
    it), in one pipelined read. A job whose record is damaged counts as unknown rather than
    failing the whole read. Takes the Queues, not a Redis, so the ids get QUEUE_PREFIX."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    if not isinstance(queues, Queues):  # a bare Redis would read another deployment's ids
        raise TypeError("job_statuses takes the Queues (services().queues), not a Redis connection")
    redis = queues.redis
    job_ids = [queues.job_id(job_id) for job_id in job_ids]

    try:
        jobs = Job.fetch_many(job_ids, connection=redis)
    except NoSuchJobError:  # a record without its data: read them one by one instead
        jobs = []
        for job_id in job_ids:
            try:
                jobs.append(Job.fetch(job_id, connection=redis))
            except NoSuchJobError:
                jobs.append(None)
    return [job.get_status(refresh=False) if job is not None else None for job in jobs]


def rq_timeout_in(exc: BaseException) -> BaseException | None:
    """RQ's job timeout, if it is `exc` or behind it: a savepoint or rollback that ran as the
    timeout unwound (on a connection still busy with the interrupted statement) raises its own
    error with the timeout as its context. Such a job must stop, not count one more failure."""
    from rq.timeouts import JobTimeoutException

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, JobTimeoutException):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
