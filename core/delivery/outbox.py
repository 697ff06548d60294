"""The transactional outbox: append in the ledger's transaction, deliver later, at least once.

A batch is claimed with `FOR UPDATE SKIP LOCKED` (PostgreSQL) so any number of workers share the
work without double-claiming; the row locks are held while the sinks run and released by the
commit that marks the batch. A worker killed mid-batch rolls back: its records stay pending and
the next worker redelivers them, which the sinks ignore by idempotency key.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from rq.timeouts import JobTimeoutException
from sqlalchemy import func, select, update

from core.platform.db import db, is_postgres, utcnow
from core.platform.models import OutboxRecord
from core.platform.queues import enqueue_after_commit
from core.delivery import sink_keys
from core.delivery.sinks import Message, build_sinks

MAX_BACKOFF_S = 3600


# The topics ledger writes append (core.points.ledger); `outbox replay --topic` accepts these and
# any other topic already in the table.
TOPICS = ("ledger.recorded", "badge.awarded")


def known_topics() -> list[str]:
    """TOPICS plus every topic the table holds, sorted."""
    stored = db.session.scalars(select(OutboxRecord.topic).distinct()).all()
    return sorted(set(TOPICS) | set(stored))


def append(topic: str, idempotency_key: str, payload: dict, ledger_id: int | None = None) -> OutboxRecord:
    """Add a record in the caller's transaction; delivery is kicked once the transaction commits."""
    record = OutboxRecord(topic=topic, idempotency_key=idempotency_key, payload=payload, ledger_id=ledger_id,
                          status="pending", attempts=0, next_attempt_at=utcnow())
    db.session.add(record)
    request_kick()
    return record


KICK = "outbox-deliver"


def request_kick() -> None:
    """Deliver soon after this transaction commits (at most one pending kick; see core.platform.queues.enqueue_after_commit)."""
    enqueue_after_commit("outbox", "jobs.outbox.deliver_due", once=KICK)


# --- delivery -----------------------------------------------------------------------------------

@dataclass
class BatchResult:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    untried: int = 0  # left pending, unattempted, because a sink ran out of time


def backoff_seconds(attempts: int, rng: random.Random | None = None) -> float:
    base = min(2 ** attempts, MAX_BACKOFF_S)
    return base * (1 + (rng or random).random() * 0.25)  # jitter spreads a burst of retries


def claim(batch_size: int, now: datetime) -> list[OutboxRecord]:
    query = (select(OutboxRecord).where(OutboxRecord.status == "pending", OutboxRecord.next_attempt_at <= now)
             .order_by(OutboxRecord.id).limit(batch_size))
    if is_postgres():
        query = query.with_for_update(skip_locked=True)
    # SQLite has one writer at a time, so a plain select cannot be claimed twice concurrently.
    return list(db.session.scalars(query))


def deliver_batch(batch_size: int = 500, *, now: datetime | None = None, sinks: list | None = None,
                  max_attempts: int | None = None) -> BatchResult:
    """Claim, deliver and mark one batch, in one transaction (committed here)."""
    from core.platform.services import services

    svc = services()
    now = now or utcnow()
    sinks = sinks if sinks is not None else build_sinks(svc.settings, svc.redis)
    max_attempts = max_attempts or svc.settings.outbox_max_attempts
    records = claim(batch_size, now)
    result = BatchResult(claimed=len(records))
    if not records:
        db.session.commit()
        return result
    messages = [Message(r.id, r.topic, r.idempotency_key, r.payload) for r in records]
    errors: dict[int, str] = {}
    untried: set[int] = set()  # a sink ran out of time before these: no attempt is counted
    for sink in sinks:
        try:
            outcome = sink.deliver(messages)
        except JobTimeoutException:
            raise  # RQ stopping the job: nothing is marked, the batch stays pending; never "failed" for all
        except Exception as exc:  # a sink down fails the whole batch for that sink
            outcome = {m.id: f"{sink.name}: {type(exc).__name__}: {exc}"[:500] for m in messages}
        untried.update(m.id for m in messages if m.id not in outcome)
        for record_id, error in outcome.items():
            if error and record_id not in errors:
                errors[record_id] = f"{sink.name}: {error}" if not error.startswith(sink.name) else error
    delivered_ids = [r.id for r in records if r.id not in errors and r.id not in untried]
    stamp = utcnow()
    if delivered_ids:
        db.session.execute(update(OutboxRecord).where(OutboxRecord.id.in_(delivered_ids))
                           .values(status="delivered", delivered_at=stamp, attempts=OutboxRecord.attempts + 1,
                                   last_error=None).execution_options(synchronize_session=False))
    for record in records:
        if record.id in errors:
            attempts = (record.attempts or 0) + 1
            record.attempts = attempts
            record.last_error = errors[record.id]
            if attempts >= max_attempts:
                record.status = "dead"
                result.dead += 1
            else:
                record.next_attempt_at = stamp + timedelta(seconds=backoff_seconds(attempts))
                result.failed += 1
    result.delivered = len(delivered_ids)
    result.untried = len(untried - set(errors))
    db.session.commit()
    return result


REPLAY_WINDOW = 10_000  # ids per UPDATE: each statement stays short, whatever the table's size


def _replay_conditions(since: datetime | None, topic: str | None) -> list:
    # Never before the horizon: the sinks' records of older keys may be trimmed (sink_keys).
    horizon = sink_keys.replay_horizon()
    conditions = [OutboxRecord.created_at >= (horizon if since is None else max(since, horizon))]
    if topic:
        conditions.append(OutboxRecord.topic == topic)
    return conditions


def replay_range(since: datetime | None = None, topic: str | None = None) -> tuple[int, int] | None:
    """The lowest and highest id replay() would reset, or None when nothing matches; a caller
    that shows progress asks once and hands it to replay()."""
    low, high = db.session.execute(select(func.min(OutboxRecord.id), func.max(OutboxRecord.id))
                                   .where(*_replay_conditions(since, topic))).one()
    db.session.rollback()
    return None if low is None else (low, high)


def replay(since: datetime | None = None, topic: str | None = None, *, progress=None, window: int = REPLAY_WINDOW,
           id_range: tuple[int, int] | None = None) -> int:
    """Reset delivered and dead records created since `since` (never before the replay horizon,
    core.delivery.sink_keys.REPLAY_HORIZON_DAYS) to pending; the sinks skip what they applied.

    Walks the id range in windows of `window` ids, one UPDATE and one commit each, so a replay
    of millions of records never holds its locks (or a statement) for long, and a stopped replay
    keeps what it did. `progress(n)` is called with the ids each window covered."""
    id_range = id_range or replay_range(since, topic)
    if id_range is None:
        return 0
    conditions, (low, high), count = _replay_conditions(since, topic), id_range, 0
    for start in range(low, high + 1, window):
        end = min(start + window, high + 1)
        query = (update(OutboxRecord).where(OutboxRecord.id >= start, OutboxRecord.id < end, *conditions)
                 .values(status="pending", attempts=0, next_attempt_at=utcnow(), last_error=None))
        count += db.session.execute(query.execution_options(synchronize_session=False)).rowcount
        request_kick()
        db.session.commit()
        if progress:
            progress(end - start)
    return count


def counts() -> dict[str, int]:
    rows = db.session.execute(select(OutboxRecord.status, func.count()).group_by(OutboxRecord.status)).all()
    return {status: n for status, n in rows}
