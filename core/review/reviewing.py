"""Reviewing: claims with a lease, the queue, hints for reviewers, decisions behind a claim, and
per-reviewer progress. Decisions themselves (status, ledger, audit) live in core.review.approvals; this
module makes sure only the claim holder reaches them. Callers commit."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import and_, func, literal, not_, or_, select, true, union_all, update
from sqlalchemy.orm import selectinload

from core.platform import audit
from core.review import approvals
from core.platform.db import db, utcnow
from core.platform.errors import Conflict, NotFound, ValidationError
from core.platform.models import SUBMISSION_STATES, AuditEvent, Submission, User
from core.platform.numbers import BIGINT_MAX

LEASE = timedelta(minutes=30)
PAGE_SIZE = 50
BULK_MAX = 50
COUNT_CAP = 1_000  # counts stop here ("1000+"): past that the exact number changes nothing a reviewer does
UPLOADER_IDS_MAX = 500  # see _uploader_condition
DECISION_ACTIONS = ("submission.approved", "submission.rejected", "submission.changes_requested",
                    "submission.revoked")
# Sort key -> (column, descending). Each is paged by (column, id) and served by a (status, column) index.
SORTS = {
    "oldest": ("created_at", False),
    "newest": ("created_at", True),
    "session_date": ("session_date", False),
    "-session_date": ("session_date", True),
}


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


# ---- the queue ----------------------------------------------------------------------------

@dataclass
class QueueFilters:
    status: str = "in_review"
    activity: str = ""
    uploader: str = ""  # part of a name or e-mail
    date_from: date | None = None
    date_to: date | None = None
    claimed_by_me: bool = False
    reviewed_by_me: bool = False
    sort: str = "oldest"
    after: str = ""  # opaque keyset cursor


@dataclass
class QueuePage:
    items: list[Submission]
    next_cursor: str | None
    counts: dict[str, int]


def encode_cursor(value, row_id: int) -> str:
    raw = json.dumps([value.isoformat() if value is not None else None, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


CURSOR_MAX = 200  # characters of an `after` cursor


def decode_cursor(cursor: str, column: str):
    """(the sort column's value, row id) of an `after` cursor from encode_cursor. Raises
    ValidationError `cursor_invalid` for anything else: not base64 JSON, a row id that is not a
    whole number within bigint (1e999, 10**23), a moment that cannot be put in UTC (year 1 at
    +14:00 overflows)."""
    try:
        if len(cursor) > CURSOR_MAX:  # ours are under 100 characters; a deep one would recurse
            raise ValueError("cursor too long")
        value, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(row_id, bool) or not isinstance(row_id, int) or not 0 <= row_id <= BIGINT_MAX:
            raise ValueError("row id")
        if column == "session_date":
            return date.fromisoformat(value), row_id
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed.astimezone(timezone.utc)  # what the query's bind does: must not overflow
        return parsed, row_id
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ValidationError("cursor_invalid", "That page link is broken; start from the first page.",
                              [{"field": "after", "issue": "invalid"}]) from None


def _conditions(f: QueueFilters, reviewer_id: int) -> tuple[list, bool]:
    """The filters, and whether one of them pins a few people (uploader ids, claimer, decider):
    then an index led by that column finds every match cheaply (see status_counts)."""
    conds, anchored = [], f.claimed_by_me or f.reviewed_by_me
    if f.activity:
        conds.append(Submission.activity_code == f.activity)
    if f.uploader:
        cond, few = _uploader_condition(f.uploader)
        conds.append(cond)
        anchored = anchored or few
    if f.date_from:
        conds.append(Submission.session_date >= f.date_from)
    if f.date_to:
        conds.append(Submission.session_date <= f.date_to)
    if f.claimed_by_me:
        conds.append(Submission.claimed_by_id == reviewer_id)
        conds.append(Submission.claim_expires_at >= utcnow())
    if f.reviewed_by_me:
        conds.append(Submission.decided_by_id == reviewer_id)
    return conds, anchored


def _uploader_condition(text: str, limit: int = UPLOADER_IDS_MAX):
    """Resolved to user ids first, so the page's several queries do not each scan users and the
    planner sees a real list. Few people match -> `user_id IN (...)`, served by the (user_id,
    activity_code, status, session_date) index. Nearly everyone matches -> `NOT IN` the few who
    do not, a cheap filter on the status index scan. Both sets large -> a subquery. Returns the
    condition and whether it is the short id list."""
    pattern = "%" + text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    matches = or_(func.lower(User.name).like(pattern, escape="\\"), User.email.like(pattern, escape="\\"))
    ids = db.session.scalars(select(User.id).where(matches).limit(limit + 1)).all()
    if len(ids) <= limit:
        return Submission.user_id.in_(ids), True
    others = db.session.scalars(select(User.id).where(not_(matches)).limit(limit + 1)).all()
    if len(others) <= limit:
        return (Submission.user_id.not_in(others) if others else true()), False
    return Submission.user_id.in_(select(User.id).where(matches)), False


def queue(f: QueueFilters, reviewer_id: int, *, page_size: int = PAGE_SIZE) -> QueuePage:
    if f.status not in SUBMISSION_STATES:
        raise ValidationError("status_invalid", f"Unknown status {f.status!r}.", [{"field": "status", "issue": f.status}])
    column_name, descending = SORTS.get(f.sort, SORTS["oldest"])
    column = getattr(Submission, column_name)
    conds, anchored = _conditions(f, reviewer_id)
    # The template shows each row's uploader and claim holder: load them with the page, not per row,
    # by id after the LIMIT. Joined into the page query, PostgreSQL joined every match before its
    # top-N sort (1,667 rows and two hashes of the users table for 51 shown, at 5M submissions).
    query = (select(Submission).where(Submission.status == f.status, *conds)
             .options(selectinload(Submission.user), selectinload(Submission.claimed_by)))
    rows, next_cursor = keyset_page(query, column, f.after, descending=descending, page_size=page_size)
    return QueuePage(rows, next_cursor, status_counts(conds, anchored, dated=bool(f.date_from or f.date_to)))


def keyset_page(query, column, after: str, *, descending: bool, page_size: int) -> tuple[list[Submission], str | None]:
    """One page of submissions in (column, id) order, after the opaque cursor `after` (ValidationError
    `cursor_invalid` if it is broken); returns the rows and the next page's cursor, or None."""
    if after:
        value, row_id = decode_cursor(after, column.key)
        # Written as `col >= v AND (col > v OR id > i)` so the index range starts at v.
        if descending:
            query = query.where(column <= value, or_(column < value, and_(column == value, Submission.id < row_id)))
        else:
            query = query.where(column >= value, or_(column > value, and_(column == value, Submission.id > row_id)))
    order = (column.desc(), Submission.id.desc()) if descending else (column.asc(), Submission.id.asc())
    rows = list(db.session.scalars(query.order_by(*order).limit(page_size + 1)))
    if len(rows) <= page_size:
        return rows, None
    rows = rows[:page_size]
    return rows, encode_cursor(getattr(rows[-1], column.key), rows[-1].id)


def _capped(state: str, conds: list, anchored: bool, dated: bool = False):
    """Rows in `state` under the filters, at most COUNT_CAP + 1. Unanchored, the ORDER BY keeps the
    planner on the (status, created_at) index, not a sequential scan that a LIMIT makes look cheap.
    Anchored, no ORDER BY and no columns: the anchor's index (user ids; decided_by with its covering
    columns) answers index-only and stops at the cap, where a sort would have to fetch every match.
    Dated (a session-date filter), ordered by session_date instead: the (status, session_date) index
    then gives the range in order and stops at the cap. Ordered by created_at, PostgreSQL either
    fetched and sorted every match in the range or walked the status's rows filtering on the date
    (p95 77-169 ms at 2.5M submissions, docs/performance.md)."""
    if anchored:
        return select(literal(1)).where(Submission.status == state, *conds).limit(COUNT_CAP + 1)
    order = Submission.session_date if dated else Submission.created_at
    return select(order).where(Submission.status == state, *conds).order_by(order).limit(COUNT_CAP + 1)


def status_counts(conds: list, anchored: bool = False, *, dated: bool = False) -> dict[str, int]:
    """Per status, under the same filters, capped at COUNT_CAP: one bounded scan each. `dated`:
    the filters include a session-date bound (see _capped)."""
    parts = [select(literal(state).label("status"),
                    select(func.count()).select_from(_capped(state, conds, anchored, dated).subquery())
                    .scalar_subquery().label("n"))
             for state in SUBMISSION_STATES]
    return {status: int(n) for status, n in db.session.execute(union_all(*parts)).all()}


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
