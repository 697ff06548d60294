"""Reviewing: claims with a lease, hints for reviewers, decisions behind a claim, and per-reviewer
progress; the queue itself is core.review.queue_query. Decisions themselves (status, ledger,
audit) live in core.review.approvals; this module makes sure only the claim holder reaches them.
Callers commit."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update

from core.platform import audit
from core.review import approvals
from core.platform.db import db, utcnow
from core.platform.errors import Conflict, NotFound, ValidationError
from core.platform.models import AuditEvent, Submission, User

LEASE = timedelta(minutes=30)
BULK_MAX = 50
DECISION_ACTIONS = ("submission.approved", "submission.rejected", "submission.changes_requested",
                    "submission.revoked")


# ---- claims -------------------------------------------------------------------------------

def claim(submission_id: int, reviewer_id: int, *, now: datetime | None = None, record: bool = True) -> Submission:
    """Take (or renew) the 30-minute lease. One conditional UPDATE, so two reviewers racing for the
    same item cannot both win: the row is free, its lease has run out, or it is already ours."""
    now = now or utcnow()
    won = db.session.execute(
        update(Submission)
        .where(Submission.id == submission_id, Submission.status == "in_review",
               Submission.user_id != reviewer_id,  # nobody reviews their own evidence
               or_(Submission.claimed_by_id.is_(None), Submission.claim_expires_at < now,
                   Submission.claimed_by_id == reviewer_id))
        .values(claimed_by_id=reviewer_id, claim_expires_at=now + LEASE)
        .execution_options(synchronize_session=False)).rowcount
    submission = db.session.get(Submission, submission_id, populate_existing=True)
    if submission is None:
        raise NotFound("submission_not_found", f"There is no submission {submission_id}.")
    if not won:
        _explain_refusal(submission, reviewer_id, now)
    if record:
        audit.record("submission.claimed", "submission", submission_id, actor_id=reviewer_id,
                     until=submission.claim_expires_at.isoformat())
    return submission


def _explain_refusal(submission: Submission, reviewer_id: int, now: datetime) -> None:
    approvals.refuse_own(submission, reviewer_id)
    if submission.status != "in_review":
        raise Conflict("already_decided", f"Submission {submission.id} is already {label(submission.status)}; "
                                          "nothing was changed.")
    holder = submission.claimed_by
    until = submission.claim_expires_at
    if holder is None or until is None:  # the lease ended between our UPDATE and this read
        raise Conflict("claim_changed", "The claim on this submission just changed; try again.")
    raise Conflict("claimed_by_other",
                   f"{holder.name or holder.email} is reviewing submission {submission.id} until "
                   f"{until:%H:%M} UTC; nothing was changed.",
                   [{"field": "claimed_by", "issue": holder.email}])


def release(submission_id: int, reviewer_id: int) -> bool:
    """Give the lease back. Only the holder can; returns whether anything was released."""
    released = db.session.execute(
        update(Submission).where(Submission.id == submission_id, Submission.claimed_by_id == reviewer_id)
        .values(claimed_by_id=None, claim_expires_at=None).execution_options(synchronize_session=False)).rowcount
    if released:
        audit.record("submission.released", "submission", submission_id, actor_id=reviewer_id)
    return bool(released)


def holder(submission: Submission, now: datetime | None = None) -> User | None:
    """Who holds the lease right now (an expired lease is nobody's)."""
    now = now or utcnow()
    if submission.claimed_by_id and submission.claim_expires_at and submission.claim_expires_at >= now:
        return submission.claimed_by
    return None


# ---- decisions ----------------------------------------------------------------------------

def decide(submission_id: int, reviewer_id: int, action: str, reason: str | None = None) -> approvals.ApprovalResult:
    """approve | reject | changes: (re)claim first, so an item another reviewer holds, or one
    already decided, fails with Conflict before anything changes; then the approval rules."""
    if action not in ("approve", "reject", "changes"):
        raise ValidationError("action_invalid", f"Unknown decision {action!r}.", [{"field": "action", "issue": action}])
    if action != "approve" and not (reason or "").strip():
        raise ValidationError("reason_required", "Give a reason the uploader can act on.",
                              [{"field": "reason", "issue": "missing"}])
    claim(submission_id, reviewer_id, record=False)
    if action == "approve":
        return approvals.approve_submission(submission_id, reviewer_id, reason=(reason or "").strip() or None)
    if action == "reject":
        return approvals.reject_submission(submission_id, reviewer_id, reason)
    return approvals.request_changes(submission_id, reviewer_id, reason)


def revoke(submission_id: int, admin_id: int, reason: str | None) -> approvals.ApprovalResult:
    return approvals.revoke_submission(submission_id, admin_id, reason)


@dataclass
class BulkOutcome:
    done: list[int] = field(default_factory=list)
    points: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (id, message)


def decide_many(ids: list[int], reviewer_id: int, action: str, reason: str | None) -> BulkOutcome:
    """Up to BULK_MAX items, one reason. Each item in its own savepoint: one conflict (held by
    someone else, already decided) is reported and leaves the others to go through."""
    ids = list(dict.fromkeys(int(i) for i in ids))
    if not ids:
        raise ValidationError("nothing_selected", "Select at least one submission.",
                              [{"field": "submission_ids", "issue": "empty"}])
    if len(ids) > BULK_MAX:
        raise ValidationError("too_many", f"Decide at most {BULK_MAX} submissions at a time.",
                              [{"field": "submission_ids", "issue": f"{len(ids)} selected"}])
    if action not in ("approve", "reject"):
        raise ValidationError("action_invalid", "Bulk decisions are approve or reject.",
                              [{"field": "action", "issue": action}])
    outcome = BulkOutcome()
    for submission_id in ids:
        savepoint = db.session.begin_nested()
        try:
            result = decide(submission_id, reviewer_id, action, reason)
            savepoint.commit()
        except (Conflict, NotFound, ValidationError) as exc:
            savepoint.rollback()
            if isinstance(exc, ValidationError) and exc.code == "reason_required":
                raise
            outcome.failed.append((submission_id, exc.message))
            continue
        outcome.done.append(submission_id)
        outcome.points += result.delta_points
    return outcome


# ---- the detail page ----------------------------------------------------------------------

AMPLIFY_WINDOW = timedelta(minutes=45)
LARGE_COUNT_SHARE = 0.8  # a counter at 80% or more of its allowed maximum is worth a second look


def earlier_submissions(submission: Submission, limit: int = 20) -> list[Submission]:
    return list(db.session.scalars(
        select(Submission).where(Submission.user_id == submission.user_id,
                                 Submission.activity_code == submission.activity_code,
                                 Submission.id != submission.id, Submission.created_at <= submission.created_at)
        .order_by(Submission.created_at.desc()).limit(limit)))


def hints(submission: Submission) -> list[str]:
    """Things a reviewer should look at twice. Advice only: nothing here blocks a decision."""
    found = []
    if submission.activity_code == "AMPLIFY" and submission.session_start and submission.city:
        start = submission.session_start
        near = db.session.scalars(
            select(Submission).where(Submission.activity_code == "AMPLIFY", Submission.status == "approved",
                                     Submission.session_date.between(start.date() - timedelta(days=1),
                                                                     start.date() + timedelta(days=1)),
                                     func.lower(Submission.city) == submission.city.strip().lower(),
                                     Submission.session_start.between(start - AMPLIFY_WINDOW, start + AMPLIFY_WINDOW),
                                     Submission.id != submission.id).limit(5)).all()
        for other in near:
            found.append(f"An approved AMPLIFY session in {other.city} started at {other.session_start:%Y-%m-%d %H:%M} "
                         f"UTC (submission {other.id}, by {other.user.name or other.user.email}), within 45 minutes "
                         "of this one.")
    activity = submission.activity
    for spec in (activity.counters or []) if activity else []:
        value = int((submission.counters or {}).get(spec["name"], 0) or 0)
        maximum = spec.get("max")
        if maximum and value >= LARGE_COUNT_SHARE * maximum:
            found.append(f"{spec.get('label', spec['name'])}: {value} is unusually large (the most allowed is {maximum}).")
    # Repeated files (same SHA-256) and near-duplicate images: the page's "Reused evidence"
    # section, one entry per file with links (core.evidence.duplicates).
    if any(f.scan_state == "unscanned" for f in submission.files):
        found.append("Some files were not scanned for viruses (scanning is turned off).")
    if any(f.scan_state == "unscannable" and f.deleted_at is None for f in submission.files):
        found.append("Some files could not be fully checked for viruses; they cannot be downloaded. "
                     "Judge the submission by the other files, or ask for changes.")
    return found


# ---- progress -----------------------------------------------------------------------------

def progress(now: datetime | None = None) -> list[dict]:
    """Per reviewer: decisions today and this week (UTC, weeks start on Monday), from the audit
    trail, which the (actor_id, action, created_at) index serves."""
    now = now or utcnow()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    rows = db.session.execute(
        select(User.id, User.name, User.email, User.role,
               func.count(AuditEvent.id).filter(AuditEvent.created_at >= day),
               func.count(AuditEvent.id))
        .join(AuditEvent, and_(AuditEvent.actor_id == User.id, AuditEvent.action.in_(DECISION_ACTIONS),
                               AuditEvent.created_at >= week), isouter=True)
        .where(User.role.in_(("reviewer", "admin")))
        .group_by(User.id).order_by(User.name)).all()
    return [{"id": i, "name": n, "email": e, "role": r, "today": t, "week": w} for i, n, e, r, t, w in rows]


# ---- words for people ---------------------------------------------------------------------

STATUS_WORDS = {
    "scanning": "Checking files for viruses",
    "in_review": "In review",
    "changes_requested": "Changes requested",
    "approved": "Approved",
    "rejected": "Rejected",
    "revoked": "Approval withdrawn",
}
SCAN_WORDS = {
    "pending": "Being checked for viruses",
    "clean": "No virus found",
    "infected": "A virus was found; the file was deleted",
    "unscanned": "Not checked for viruses (scanning is off)",
    "unscannable": "Could not be fully checked for viruses; never downloadable",
}


def label(status: str) -> str:
    return STATUS_WORDS.get(status, status).lower()
