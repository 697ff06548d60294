"""Reviewer decisions on a submission: the state change, the ledger write and the audit event,
all in the caller's transaction (the caller commits). Claim/lease checks live in core.review.reviewing,
which calls these; here only the state machine and the ledger."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from core.platform import audit
from core.points import ledger
from core.platform.db import db, utcnow
from core.platform.errors import Conflict, NotFound, ValidationError
from core.platform.models import LedgerEntry, Submission

APPROVED_EVENT = "submission:{id}:approved:v1"
REVOKED_EVENT = "submission:{id}:revoked:v1"


@dataclass
class ApprovalResult:
    submission: Submission
    ledger_entry: LedgerEntry | None = None
    code: str | None = None
    delta_points: int = 0
    badge_codes: list[str] = field(default_factory=list)


def _load(submission_id: int) -> Submission:
    # Row lock so two reviewers deciding at once cannot both pass the status check.
    submission = db.session.scalar(select(Submission).where(Submission.id == submission_id).with_for_update())
    if submission is None:
        raise NotFound("submission_not_found", f"There is no submission {submission_id}.")
    return submission


def _check_status(submission: Submission, expected_status: str) -> None:
    if submission.status != expected_status:
        raise Conflict("already_decided", f"Submission {submission.id} is {submission.status}, not {expected_status}.",
                       [{"field": "status", "issue": submission.status}])


def refuse_own(submission: Submission, reviewer_id: int) -> None:
    """A reviewer (or admin) who uploaded this evidence may not decide it: that would be awarding
    themselves points. Another reviewer does."""
    if submission.user_id == reviewer_id:
        raise Conflict("own_submission", "This is your own submission, so another reviewer has to decide it.",
                       [{"field": "submission_id", "issue": str(submission.id)}])


def _decide(submission: Submission, status: str, reviewer_id: int, reason: str | None) -> None:
    submission.status = status
    submission.reason = reason
    submission.decided_by_id = reviewer_id
    submission.decided_at = utcnow()
    submission.claimed_by_id = None
    submission.claim_expires_at = None


def _require_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("reason_required", "Give a reason the uploader can act on.",
                              [{"field": "reason", "issue": "missing"}])
    return reason


def approve_submission(submission_id: int, reviewer_id: int, *, reason: str | None = None,
                       expected_status: str = "in_review") -> ApprovalResult:
    submission = _load(submission_id)
    refuse_own(submission, reviewer_id)
    _check_status(submission, expected_status)
    _decide(submission, "approved", reviewer_id, reason)
    result = ledger.record(submission.user_id, submission.activity_code, ledger.SUBMISSION_SOURCE,
                           APPROVED_EVENT.format(id=submission.id), utcnow(), counters=dict(submission.counters or {}),
                           session_date=submission.session_date,
                           meta={"submission_id": submission.id, "reviewer_id": reviewer_id})
    audit.record("submission.approved", "submission", submission.id, actor_id=reviewer_id, reason=reason,
                 ledger_id=result.entry.id, delta_points=result.delta_points, code=result.code,
                 badge_codes=result.badge_codes)
    return ApprovalResult(submission, result.entry, result.code, result.delta_points, result.badge_codes)


def reject_submission(submission_id: int, reviewer_id: int, reason: str | None, *,
                      expected_status: str = "in_review") -> ApprovalResult:
    return _decide_with_reason(submission_id, reviewer_id, reason, "rejected", expected_status)


def request_changes(submission_id: int, reviewer_id: int, reason: str | None, *,
                    expected_status: str = "in_review") -> ApprovalResult:
    return _decide_with_reason(submission_id, reviewer_id, reason, "changes_requested", expected_status)


def _decide_with_reason(submission_id: int, reviewer_id: int, reason: str | None, status: str,
                        expected_status: str) -> ApprovalResult:
    """Reject or ask for changes: no points move, and the uploader must be told why."""
    reason = _require_reason(reason)
    submission = _load(submission_id)
    refuse_own(submission, reviewer_id)
    _check_status(submission, expected_status)
    _decide(submission, status, reviewer_id, reason)
    audit.record(f"submission.{status}", "submission", submission.id, actor_id=reviewer_id, reason=reason)
    return ApprovalResult(submission)


def revoke_submission(submission_id: int, admin_id: int, reason: str | None) -> ApprovalResult:
    """Take back an approval's points with a compensating row. Badges are never taken back."""
    reason = _require_reason(reason)
    submission = _load(submission_id)
    _check_status(submission, "approved")
    original = ledger.find(ledger.SUBMISSION_SOURCE, APPROVED_EVENT.format(id=submission.id))
    if original is None:
        raise Conflict("not_in_ledger", f"Submission {submission.id} has no approval in the ledger.")
    result = ledger.revoke(original.id, reason, admin_id, external_source=ledger.SUBMISSION_SOURCE,
                           external_event_id=REVOKED_EVENT.format(id=submission.id))
    _decide(submission, "revoked", admin_id, reason)
    audit.record("submission.revoked", "submission", submission.id, actor_id=admin_id, reason=reason,
                 ledger_id=result.entry.id, delta_points=result.delta_points)
    return ApprovalResult(submission, result.entry, result.code, result.delta_points, [])


def points_earned(submissions) -> dict[int, tuple[int, str | None]]:
    """{submission id: (net points, why it is 0, or None)} for the given submissions that were
    ever approved, from their approval and revocation rows in the ledger (the unique
    (external_source, external_event_id) index finds them). Others are absent."""
    from core.points.worth import zero_reason

    by_event = {}
    for s in submissions:
        by_event[APPROVED_EVENT.format(id=s.id)] = s
        by_event[REVOKED_EVENT.format(id=s.id)] = s
    if not by_event:
        return {}
    rows = db.session.execute(select(LedgerEntry.external_event_id, LedgerEntry.delta_points, LedgerEntry.code)
                              .where(LedgerEntry.external_source == ledger.SUBMISSION_SOURCE,
                                     LedgerEntry.external_event_id.in_(list(by_event)))).all()
    codes: dict[int, list[str]] = {}
    totals: dict[int, int] = {}
    for event_id, delta, code in rows:
        s = by_event[event_id]
        totals[s.id] = totals.get(s.id, 0) + delta
        codes.setdefault(s.id, []).append(code)
    out = {}
    for sid, total in totals.items():
        s = by_event[APPROVED_EVENT.format(id=sid)]
        code = "revoked" if "revoked" in codes[sid] else codes[sid][0]
        period = s.activity.cap_period if s.activity else "none"
        out[sid] = (total, zero_reason(s.activity_code, period, code) if total == 0 else None)
    return out
