"""Kajabi jobs: drain the received events; reconcile the unmatched ones; trim the SLO histogram."""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import func, select

from core.points import kajabi, kajabi_batch, latency_hist
from core.platform.db import db, is_postgres
from core.platform.models import KajabiEvent
from core.platform.queues import clear_once, enqueue_committed, rq_timeout_in
from jobs.context import job_context

log = logging.getLogger(__name__)

# One job drains for this long, so a burst costs one job and its RQ bookkeeping, not one per
# event; an idle drain lingers briefly for the next hooks before it exits. A short slice: a worker
# that also serves other queues gets back to them between slices (docs/operations.md, queues),
# and a drain that stops with work left queues the next slice itself (_next_slice).
DRAIN_BUDGET_S = 5.0
IDLE_GRACE_S = 0.3  # must stay well above kajabi.KICK_REUSE_S (see there)
IDLE_POLL_S = 0.05
# A short batch means the drain has caught up. Each batch costs about a dozen statements however
# few events it holds, so the drain then waits out the rest of this gap to let the next batch
# fill up: under a steady stream that buys larger batches (much less CPU per event) for at most
# this much added latency.
BATCH_GAP_S = 0.2
# A full batch means the drain is behind: the next claim takes twice as many, up to this. Under
# CPU contention a batch's time is mostly its dozen round trips waiting for a core, whatever its
# size, so bigger batches clear a backlog faster (100 -> 400 events a batch, about the same wall
# time). The price: a bigger batch holds more users' ledger locks for its transaction (about
# 0.1-0.3 s), and one that fails is retried event by event (docs/performance.md, hooks).
BATCH_MAX = 400


def process_event(event_row_id: int, drain: bool = True, budget_s: float = DRAIN_BUDGET_S) -> dict[str, int]:
    """Drain received events, oldest first, in batches: each batch is claimed with SKIP LOCKED and
    processed in one transaction, so several workers drain one backlog in parallel and never take
    the same event. A failed batch is rolled back and retried event by event (one transaction
    each), so one bad event cannot block the rest; reconcile retries what is left. Idempotent:
    final events are left alone. Raises on failure so RQ records it. After `budget_s` seconds the
    drain stops and queues its next slice if events are left."""
    with job_context():
        clear_once(kajabi.PROCESS_KICK)  # before draining: a hook from now on kicks again
        counts: dict[str, int] = {}
        if drain and is_postgres():
            _drain(counts, budget_s)
        else:  # SQLite (one writer anyway) or a single event: the per-event path
            kajabi.process_and_commit(event_row_id, counts)
            if drain:
                _drain_per_event(counts, budget_s)
        if counts.get("failed"):
            raise RuntimeError(f"kajabi process_event: {counts['failed']} event(s) failed: {counts}")
        return counts


def _next_slice(failed: set[int]) -> None:
    """The drain's budget ran out with events perhaps left: queue the next slice (or find one
    pending), so they never wait for the next hook or the reconcile safety net. Events that
    failed in this drain are reconcile's, not a reason for another slice."""
    query = select(KajabiEvent.id).where(KajabiEvent.state == "received")
    if failed:
        query = query.where(KajabiEvent.id.not_in(failed))
    remaining = db.session.scalar(query.order_by(KajabiEvent.id).limit(1))
    db.session.rollback()
    if remaining is not None:
        enqueue_committed("ledger", "jobs.kajabi.process_event", remaining, once=kajabi.PROCESS_KICK)


def _drain_per_event(counts: dict[str, int], budget_s: float) -> None:
    deadline = time.monotonic() + budget_s
    failed: set[int] = set()
    while True:
        batch = [row_id for row_id in kajabi.next_received() if row_id not in failed]
        if not batch:
            return
        for row_id in batch:
            if time.monotonic() >= deadline:
                return _next_slice(failed)
            if not kajabi.process_and_commit(row_id, counts, skip_locked=True):
                failed.add(row_id)  # not retried by this drain; reconcile retries it


def _drain(counts: dict[str, int], budget_s: float) -> None:
    failed: set[int] = set()
    deadline = time.monotonic() + budget_s
    idle_until = None
    size = kajabi_batch.BATCH_SIZE
    while True:
        if time.monotonic() >= deadline:
            return _next_slice(failed)
        claimed: list = []
        started = time.monotonic()
        try:
            claimed = kajabi_batch.claim(size, failed)
            if claimed:
                for state, n in kajabi_batch.process_batch(claimed).items():
                    counts[state] = counts.get(state, 0) + n
            db.session.commit()
        except Exception as exc:
            timeout = rq_timeout_in(exc)  # also behind the error a flush's own rollback raised over it
            if timeout is not None:
                # RQ is stopping the job, perhaps mid-statement: no rollback on a busy connection
                # here; job_context cancels the statement and drops it. The batch stays received.
                raise timeout from None
            db.session.rollback()
            log.warning("kajabi batch failed; retrying its events one by one", exc_info=True,
                        extra={"kajabi_events": len(claimed)})
            for row in claimed:
                if not kajabi.process_and_commit(row.id, counts, skip_locked=True):
                    failed.add(row.id)  # not claimed again by this drain; reconcile retries it
            continue
        if claimed:
            idle_until = None
            if len(claimed) < size:
                size = kajabi_batch.BATCH_SIZE
                time.sleep(max(0.0, BATCH_GAP_S - (time.monotonic() - started)))
            else:
                size = min(2 * size, BATCH_MAX)
        else:
            # Timed by when each empty claim began, so the last read begins IDLE_GRACE_S after the
            # first idle one however slow the claims are: a hook that skipped Redis on the
            # strength of this drain's marker (kajabi.KICK_REUSE_S) committed before that read.
            idle_until = idle_until or started + IDLE_GRACE_S
            if started >= idle_until:
                return
            time.sleep(IDLE_POLL_S)


STALE_RECEIVED_S = 10  # well past any drain's reach: a drain claims a new event within a second


def sweep_received(now=None) -> dict[str, int]:
    """Every 15 s (jobs/schedule.py): if an event has waited `received` for over 10 s, queue a
    drain, bypassing the once-marker. The marker's own job can be lost (a worker SIGKILLed between
    taking the job and clearing the marker), and the marker then stops every kick for up to a
    minute; without this the event would wait for reconcile's 60 s rule every 5 minutes."""
    from core.platform.db import utcnow
    from core.platform.services import services

    with job_context():
        cutoff = (now or utcnow()) - timedelta(seconds=STALE_RECEIVED_S)
        oldest = db.session.scalar(select(func.min(KajabiEvent.id))
                                   .where(KajabiEvent.state == "received", KajabiEvent.received_at < cutoff))
        db.session.rollback()
        if oldest is None:
            return {"queued": 0}
        services().queues.enqueue("ledger", "jobs.kajabi.process_event", oldest)
        return {"queued": 1}


def reconcile() -> dict[str, int]:
    with job_context():
        clear_once(kajabi.RECONCILE_KICK)  # before reading: a change from now on kicks again
        counts = kajabi.reconcile()
        if counts.get("failed"):  # the others are committed; RQ records the failure
            raise RuntimeError(f"kajabi reconcile: {counts['failed']} event(s) failed: {counts}")
        return counts


def trim_latency_hist() -> dict[str, int]:
    """Hourly (jobs/schedule.py): drop the SLO histogram's 5-minute and hour rows older than
    core.points.latency_hist.KEEP_FINE, which no window reads. Idempotent."""
    with job_context():
        return {"dropped": latency_hist.trim()}
