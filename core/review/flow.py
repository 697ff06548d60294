"""Moving through the queue from a detail page: the previous and next items of the queue the
reviewer came from (same filters and order), and, after a decision, the next item that reviewer
can take, claimed for them. Callers commit."""
from __future__ import annotations

from dataclasses import replace

from sqlalchemy import or_, select

from core.platform.db import db, utcnow
from core.platform.errors import Conflict, NotFound
from core.platform.models import Submission
from core.review.queue_query import SORTS, QueueFilters, conditions, encode_cursor, keyset_page
from core.review.reviewing import claim

SCAN = 50  # rows looked at per pass; a claim race lost on one row moves on to the next


def _order(f: QueueFilters):
    column_name, descending = SORTS.get(f.sort, SORTS["oldest"])
    return getattr(Submission, column_name), descending


def neighbours(f: QueueFilters, current: Submission, reviewer_id: int) -> tuple[int | None, int | None]:
    """(previous id, next id) around `current` in the queue under filters `f` (its status tab,
    sort and filters), or None at either end. Two one-row keyset reads."""
    column, descending = _order(f)
    conds, _ = conditions(replace(f, after=""), reviewer_id)
    query = select(Submission).where(Submission.status == f.status, Submission.id != current.id, *conds)
    cursor = encode_cursor(getattr(current, column.key), current.id)
    after, _ = keyset_page(query, column, cursor, descending=descending, page_size=1)
    before, _ = keyset_page(query, column, cursor, descending=not descending, page_size=1)
    return (before[0].id if before else None), (after[0].id if after else None)


def claim_next(f: QueueFilters, reviewer_id: int, after: Submission | None) -> Submission | None:
    """The first item in review after `after` in the queue's order (same filters and sort) that
    this reviewer may take: not their own, not held by someone else. It is claimed for them (the
    usual 30-minute lease, audited); when nothing follows, the queue is searched from its start.
    Returns None when nothing is left to take."""
    f = replace(f, status="in_review", after="")
    column, descending = _order(f)
    conds, _ = conditions(f, reviewer_id)
    free = or_(Submission.claimed_by_id.is_(None), Submission.claimed_by_id == reviewer_id,
               Submission.claim_expires_at < utcnow())
    query = select(Submission).where(Submission.status == "in_review", Submission.user_id != reviewer_id, free, *conds)
    cursors = [encode_cursor(getattr(after, column.key), after.id), ""] if after is not None else [""]
    for cursor in cursors:
        rows, _ = keyset_page(query, column, cursor, descending=descending, page_size=SCAN)
        for row in rows:
            if after is not None and row.id == after.id:
                continue
            savepoint = db.session.begin_nested()
            try:
                taken = claim(row.id, reviewer_id)
            except (Conflict, NotFound):  # taken by someone else between the read and the claim
                savepoint.rollback()
                continue
            savepoint.commit()
            return taken
    return None
