"""Notification rows: made in the transaction of the event that causes them, delivered by a job
after its commit, one e-mail per idempotency key however often that job runs.

States: pending -> sending (claimed) -> sent | skipped (recipient opted out, inactive, or
notifications off) | failed (the SMTP error; RQ and the sweeper retry it). A `sending` claim
older than CLAIM_LEASE is taken over: the worker died between claim and send. The one window
left is a crash after the SMTP server accepted the message and before `sent` is committed; that
message is sent again (at least once, never silently lost).
"""
from __future__ import annotations

from datetime import timedelta

from rq import Retry
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.platform.db import db, utcnow
from core.platform.models import AuditEvent, Badge, EvidenceFile, Notification, Submission, User
from core.platform.queues import enqueue_after_commit

CLAIM_LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 8
DELIVER = "jobs.notifications.deliver"
QUEUE = "outbox"  # delivery to the outside world; the worker already listens to it
DECISION_KINDS = {"approved": "approved", "rejected": "rejected", "changes_requested": "changes_requested"}
FILE_KINDS = ("infected", "unscannable")


def job_id(notification_id: int) -> str:
    return f"notify-{notification_id}"


def add(kind: str, key: str, user_id: int | None, payload: dict) -> int:
    """The row for `key` (made now, or the one an earlier call made), in the caller's transaction;
    its delivery job is queued after the commit. Returns the row's id."""
    existing = db.session.scalar(select(Notification.id).where(Notification.idempotency_key == key))
    if existing is not None:
        return existing
    try:
        with db.session.begin_nested():  # a parallel insert of the same key: keep theirs
            row = Notification(idempotency_key=key, kind=kind, user_id=user_id, payload=payload, state="pending")
            db.session.add(row)
            db.session.flush()
            row_id = row.id
    except IntegrityError:
        return db.session.scalar(select(Notification.id).where(Notification.idempotency_key == key))
    enqueue_after_commit(QUEUE, DELIVER, row_id, job_id=job_id(row_id), timeout=120,
                         retry=Retry(max=4, interval=[30, 120, 600, 1800]))
    return row_id


def for_decisions(submission_ids: list[int]) -> list[int]:
    """After a reviewer's decision (before its commit): one message per decided submission to its
    uploader. Approved: points and badges from the decision's audit event; rejected and changes
    requested: the reason (and, for changes, the revision it asks to correct)."""
    ids = []
    for submission_id in submission_ids:
        s = db.session.get(Submission, submission_id)
        if s is None or s.status not in DECISION_KINDS:
            continue
        payload = {"submission_id": s.id, "activity": s.activity.name if s.activity else s.activity_code,
                   "session_date": s.session_date.isoformat(), "reason": s.reason or "", "revision": s.revision}
        key = f"submission:{s.id}:{s.status}"
        if s.status == "approved":
            event = db.session.scalar(select(AuditEvent).where(
                AuditEvent.subject_type == "submission", AuditEvent.subject_id == str(s.id),
                AuditEvent.action == "submission.approved").order_by(AuditEvent.id.desc()).limit(1))
            details = event.details if event else {}
            codes = list(details.get("badge_codes") or [])
            names = dict(db.session.execute(select(Badge.code, Badge.name).where(Badge.code.in_(codes))).all()) if codes else {}
            payload.update(points=int(details.get("delta_points") or 0), cap_reached=details.get("code") == "cap_reached",
                           badges=[names.get(c, c) for c in codes])
        elif s.status == "changes_requested":
            key += f":r{s.revision}"  # each round of changes is its own message
        ids.append(add(DECISION_KINDS[s.status], key, s.user_id, payload))
    return ids


def for_file(file_id: int) -> int | None:
    """After a scan's verdict is committed: tell the uploader when a file is infected or could not
    be scanned (state `unscannable`, by name). Commits its own row. None when there is nothing to say."""
    f = db.session.get(EvidenceFile, file_id)
    if f is None or f.scan_state not in FILE_KINDS:
        return None
    s = f.submission
    payload = {"submission_id": s.id, "activity": s.activity.name if s.activity else s.activity_code,
               "file_name": f.original_name, "signature": f.scan_signature or "", "status": s.status}
    row_id = add(f.scan_state, f"file:{f.id}:{f.scan_state}", f.user_id, payload)
    db.session.commit()
    return row_id


def claim(notification_id: int) -> Notification | None:
    """Take the row for sending (committed), or None when it is sent, skipped, given up, or
    claimed by a live attempt. The claim is one conditional UPDATE, so two jobs cannot both win."""
    now = utcnow()
    won = db.session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.attempts < MAX_ATTEMPTS,
               or_(Notification.state.in_(("pending", "failed")),
                   and_(Notification.state == "sending", Notification.claimed_at < now - CLAIM_LEASE)))
        .values(state="sending", claimed_at=now, attempts=Notification.attempts + 1)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return db.session.get(Notification, notification_id) if won else None


def finish(notification_id: int, state: str, error: str | None = None) -> None:
    """sent | skipped | failed, committed."""
    values = {"state": state, "last_error": error}
    if state == "sent":
        values["sent_at"] = utcnow()
    db.session.execute(update(Notification).where(Notification.id == notification_id).values(**values)
                       .execution_options(synchronize_session=False))
    db.session.commit()


def recipient(notification: Notification) -> User | None:
    """The user to write to, or None when they opted out or are no longer active."""
    user = db.session.get(User, notification.user_id) if notification.user_id else None
    if user is None or not user.active or not user.notify_email:
        return None
    return user


def due_again(now=None, limit: int = 500) -> list[int]:
    """Rows whose delivery job may be lost: pending or failed for over a minute, or claimed and
    past the lease, with attempts left. The sweeper queues them again."""
    now = now or utcnow()
    rows = db.session.scalars(
        select(Notification.id).where(
            Notification.attempts < MAX_ATTEMPTS,
            or_(and_(Notification.state.in_(("pending", "failed")), Notification.created_at < now - timedelta(minutes=1)),
                and_(Notification.state == "sending", Notification.claimed_at < now - CLAIM_LEASE)))
        .order_by(Notification.id).limit(limit)).all()
    db.session.rollback()
    return list(rows)
